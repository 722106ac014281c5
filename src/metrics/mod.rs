//! The daemon's Prometheus metrics: one registry and the handles every layer counts with
//! (docs/monitoring.md lists them). It sits at the bottom so that the FUSE adapter, the
//! core, the node client, the chain layer and the chunk cache each count what they do with
//! a one-line call here, without knowing of each other or of HTTP; the mount daemon serves
//! the registry on `[metrics] listen` ([`serve`]).
//!
//! Counters live for the process, whether or not anything serves them (an atomic add
//! each). What `pxfs status` already knows (quota, usage, the sync deadline, pending
//! uploads, node and chain health) is not counted here a second time: the daemon hands it
//! in as a [`MountSample`] just before each scrape.

mod errno;
mod serve;

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

pub use serve::{Bound, MetricsServer, Refresh, serve};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpErrno {
    op: &'static str,
    /// `OK`, or the errno's symbolic name (`ENOENT`, `EDQUOT`, …).
    errno: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

/// A node RPC command (`add`, `block/get`, `name/publish`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cmd {
    cmd: String,
}

/// A chain read or transaction of the chain layer (`token`, `owned_tokens`, …).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Call {
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Token {
    token: String,
}

type Histograms<S> = Family<S, Histogram, fn() -> Histogram>;

/// Request latencies from 100 µs (an answer from memory) to 10 s (a node that is slow),
/// at round values a dashboard can name.
fn latency_buckets() -> Histogram {
    Histogram::new([
        0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0,
    ])
}

/// Commits take from a few milliseconds to minutes (a long copy's first commit).
fn commit_buckets() -> Histogram {
    Histogram::new([
        0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}

struct Metrics {
    registry: Registry,
    fuse_requests: Family<OpErrno, Counter>,
    fuse_latency: Histograms<Op>,
    uploaded_bytes: Counter,
    uploaded_files: Counter,
    downloaded_bytes: Counter,
    downloaded_blocks: Counter,
    commits: Family<Outcome, Counter>,
    commit_latency: Histogram,
    node_requests: Family<Cmd, Counter>,
    node_errors: Family<Cmd, Counter>,
    node_retries: Family<Cmd, Counter>,
    chain_requests: Family<Call, Counter>,
    chain_errors: Family<Call, Counter>,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_drops: Counter,
    mount: MountGauges,
}

/// What the daemon's status knows, as gauges.
#[derive(Default)]
struct MountGauges {
    queue_files: Gauge,
    queue_bytes: Gauge,
    loaded_inodes: Gauge,
    node_up: Gauge,
    chain_up: Gauge,
    chain_stale: Gauge,
    quota: Family<Token, Gauge>,
    usage: Family<Token, Gauge>,
    sync_deadline: Family<Token, Gauge>,
    overdue: Family<Token, Gauge>,
    pending_files: Family<Token, Gauge>,
    pending_bytes: Family<Token, Gauge>,
    conflicts: Family<Token, Gauge>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("pxfs"),
            fuse_requests: Family::default(),
            fuse_latency: Family::new_with_constructor(latency_buckets),
            uploaded_bytes: Counter::default(),
            uploaded_files: Counter::default(),
            downloaded_bytes: Counter::default(),
            downloaded_blocks: Counter::default(),
            commits: Family::default(),
            commit_latency: commit_buckets(),
            node_requests: Family::default(),
            node_errors: Family::default(),
            node_retries: Family::default(),
            chain_requests: Family::default(),
            chain_errors: Family::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_drops: Counter::default(),
            mount: MountGauges::default(),
        };
        m.registered()
    }

    /// The registry holding clones of every handle (clones share their value).
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "fuse_requests",
            "Kernel requests answered, by operation and errno (OK when it succeeded)",
            self.fuse_requests.clone(),
        );
        r.register_with_unit(
            "fuse_request_duration",
            "Time from a kernel request to its answer, by operation",
            Unit::Seconds,
            self.fuse_latency.clone(),
        );
        r.register_with_unit(
            "uploaded",
            "File content uploaded to the node (plaintext bytes of each version)",
            Unit::Bytes,
            self.uploaded_bytes.clone(),
        );
        r.register(
            "uploaded_files",
            "File versions uploaded to the node",
            self.uploaded_files.clone(),
        );
        r.register_with_unit(
            "downloaded",
            "Bytes read from the node (block/get and cat)",
            Unit::Bytes,
            self.downloaded_bytes.clone(),
        );
        r.register(
            "downloaded_blocks",
            "Blocks read from the node with block/get",
            self.downloaded_blocks.clone(),
        );
        r.register(
            "commits",
            "Commits (a new root published under BTNS), by result",
            self.commits.clone(),
        );
        r.register_with_unit(
            "commit_duration",
            "Time a published commit took, from catching up to the recorded root",
            Unit::Seconds,
            self.commit_latency.clone(),
        );
        r.register(
            "node_requests",
            "Requests to the storage node, by RPC command (each retry counts)",
            self.node_requests.clone(),
        );
        r.register(
            "node_errors",
            "Node requests that failed, by RPC command",
            self.node_errors.clone(),
        );
        r.register(
            "node_retries",
            "Node requests retried after a transient failure, by RPC command",
            self.node_retries.clone(),
        );
        r.register(
            "chain_requests",
            "Chain reads and transactions, by call (one may take several RPC requests)",
            self.chain_requests.clone(),
        );
        r.register(
            "chain_errors",
            "Chain calls that failed, by call",
            self.chain_errors.clone(),
        );
        r.register(
            "chunk_cache_hits",
            "File chunks read from the local chunk cache",
            self.cache_hits.clone(),
        );
        r.register(
            "chunk_cache_misses",
            "File chunks fetched from the node because the cache lacked them",
            self.cache_misses.clone(),
        );
        r.register(
            "chunk_cache_drops",
            "Opened file chunks not kept in the cache because its writer was behind",
            self.cache_drops.clone(),
        );
        let g = &self.mount;
        r.register(
            "upload_queue_files",
            "Closed files waiting for (or in) upload",
            g.queue_files.clone(),
        );
        r.register_with_unit(
            "upload_queue",
            "Bytes of the closed files waiting for (or in) upload",
            Unit::Bytes,
            g.queue_bytes.clone(),
        );
        r.register(
            "loaded_inodes",
            "Files and directories the daemon holds in memory",
            g.loaded_inodes.clone(),
        );
        r.register(
            "node_up",
            "1 when the last request reached the storage node",
            g.node_up.clone(),
        );
        r.register(
            "chain_up",
            "1 when the last chain poll succeeded",
            g.chain_up.clone(),
        );
        r.register(
            "chain_stale",
            "1 while quota and sync state are the last known ones (polls fail or are late)",
            g.chain_stale.clone(),
        );
        r.register_with_unit(
            "token_quota",
            "The sNFT's quota as the chain last said",
            Unit::Bytes,
            g.quota.clone(),
        );
        r.register_with_unit(
            "token_usage",
            "The sNFT's live usage: committed and staged bytes",
            Unit::Bytes,
            g.usage.clone(),
        );
        r.register_with_unit(
            "token_sync_deadline",
            "When the sNFT's sync is due (Unix time)",
            Unit::Seconds,
            g.sync_deadline.clone(),
        );
        r.register(
            "token_overdue",
            "1 while the sNFT's sync is overdue (writes fail with EACCES)",
            g.overdue.clone(),
        );
        r.register(
            "token_pending_files",
            "The sNFT's closed files waiting for upload",
            g.pending_files.clone(),
        );
        r.register_with_unit(
            "token_pending",
            "Bytes of the sNFT's closed files waiting for upload",
            Unit::Bytes,
            g.pending_bytes.clone(),
        );
        r.register(
            "token_conflict_copies",
            "Conflict copies made by merges with other machines' commits since the mount",
            g.conflicts.clone(),
        );
        self
    }
}

/// The registry in the text exposition format (OpenMetrics, which Prometheus reads).
pub fn encode() -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &METRICS.registry);
    out
}

/// One kernel request answered: `errno` 0 for success.
pub fn fuse_request(op: &'static str, errno: i32, took: Duration) {
    let m = &*METRICS;
    let errno = errno::name(errno);
    m.fuse_requests.get_or_create(&OpErrno { op, errno }).inc();
    m.fuse_latency
        .get_or_create(&Op { op })
        .observe(took.as_secs_f64());
}

/// A file version is on the node.
pub fn uploaded(bytes: u64) {
    METRICS.uploaded_bytes.inc_by(bytes);
    METRICS.uploaded_files.inc();
}

/// Bytes read from the node, in `blocks` blocks (0 for a `cat`).
pub fn downloaded(bytes: u64, blocks: u64) {
    METRICS.downloaded_bytes.inc_by(bytes);
    METRICS.downloaded_blocks.inc_by(blocks);
}

/// A commit published its root after `took`.
pub fn committed(took: Duration) {
    let m = &*METRICS;
    m.commits.get_or_create(&Outcome { result: "ok" }).inc();
    m.commit_latency.observe(took.as_secs_f64());
}

/// A commit failed (it is retried).
pub fn commit_failed() {
    METRICS
        .commits
        .get_or_create(&Outcome { result: "failed" })
        .inc();
}

/// One node request sent (`cmd`: the RPC command).
pub fn node_request(cmd: &str) {
    let cmd = Cmd { cmd: cmd.into() };
    METRICS.node_requests.get_or_create(&cmd).inc();
}

/// A node request that failed, and whether it is tried again.
pub fn node_failed(cmd: &str, retried: bool) {
    let cmd = Cmd { cmd: cmd.into() };
    METRICS.node_errors.get_or_create(&cmd).inc();
    if retried {
        METRICS.node_retries.get_or_create(&cmd).inc();
    }
}

/// One call of the chain layer and whether it succeeded; the result passes through.
pub fn chain_call<T, E>(call: &'static str, result: Result<T, E>) -> Result<T, E> {
    METRICS.chain_requests.get_or_create(&Call { call }).inc();
    if result.is_err() {
        METRICS.chain_errors.get_or_create(&Call { call }).inc();
    }
    result
}

/// A chunk read from the cache (`hit`) or fetched from the node.
pub fn chunk_cache(hit: bool) {
    match hit {
        true => METRICS.cache_hits.inc(),
        false => METRICS.cache_misses.inc(),
    };
}

/// An opened chunk not kept: the cache's writer was too far behind the readers.
pub fn chunk_cache_drop() {
    METRICS.cache_drops.inc();
}

/// What a mount's status says at one instant (plain data: the daemon fills it in from
/// what it publishes for `pxfs status`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountSample {
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub loaded_inodes: u64,
    pub node_reachable: bool,
    pub chain_reachable: bool,
    pub chain_stale: bool,
    pub tokens: Vec<TokenSample>,
}

/// One mounted sNFT.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenSample {
    pub token_id: u64,
    pub quota: u64,
    pub usage: u64,
    pub sync_deadline: u64,
    pub overdue: bool,
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub conflicts: u64,
}

/// Replace the status gauges with `s`: an sNFT no longer mounted leaves them.
pub fn observe_mount(s: &MountSample) {
    let g = &METRICS.mount;
    let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    g.queue_files.set(int(s.pending_files));
    g.queue_bytes.set(int(s.pending_bytes));
    g.loaded_inodes.set(int(s.loaded_inodes));
    g.node_up.set(i64::from(s.node_reachable));
    g.chain_up.set(i64::from(s.chain_reachable));
    g.chain_stale.set(i64::from(s.chain_stale));
    let families = [
        &g.quota,
        &g.usage,
        &g.sync_deadline,
        &g.overdue,
        &g.pending_files,
        &g.pending_bytes,
        &g.conflicts,
    ];
    for f in families {
        f.clear();
    }
    for t in &s.tokens {
        let label = Token {
            token: t.token_id.to_string(),
        };
        let values = [
            t.quota,
            t.usage,
            t.sync_deadline,
            u64::from(t.overdue),
            t.pending_files,
            t.pending_bytes,
            t.conflicts,
        ];
        for (f, v) in families.iter().zip(values) {
            f.get_or_create(&label).set(int(v));
        }
    }
}

#[cfg(test)]
mod tests;
