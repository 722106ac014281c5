//! Garbage collection: `repo/gc` and Kubo's `--enable-gc`, a mark and sweep over the block
//! store that deletes every block no pin keeps.
//!
//! Mark: the pin store's recursive, direct and indirect pins (a recursive pin records every
//! block below its root, the importer's or the DAG walk's of `pin/add`). Sweep: every
//! `*.data` file of `REPO/blockstore` whose CID is not marked. CIDs are compared by their
//! block file name (the CIDv1 of codec and hash), so a block pinned by its CIDv0 is kept;
//! rust-ipfs's own `Ipfs::gc` compares the CIDs themselves and would delete it. Its lock is
//! not used either: its pin and fetch paths take its read lock twice, which deadlocks once a
//! writer queues between the two.
//!
//! Writers of unpinned blocks hold [`Collector::guard`] from their first block until their
//! pin is stored (`add`, `pin/add`); a collection holds the exclusive side from mark to the
//! end of the sweep, so it never sees a block that is written but not yet pinned. IPNS
//! records are files in `REPO/names`, not blocks: names need no pin of their own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use ipld_core::cid::Cid;
use tokio::sync::{Notify, OwnedRwLockWriteGuard, RwLock, RwLockReadGuard};

use super::Node;
use super::blocks;
use super::datastore_config::StorageLimits;

/// The least time between two collections that adds trigger, so a repo whose pinned data
/// alone passes the watermark is not walked again after every add.
const ADD_TRIGGER_GAP: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error("cannot list the pins: {0:#}")]
    Pins(anyhow::Error),
    #[error("cannot walk the block store {path}: {source}")]
    Walk {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("background collection task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The collector's shared state: the lock writers hold and what the automatic runs need.
pub(crate) struct Collector {
    lock: Arc<RwLock<()>>,
    limits: StorageLimits,
    /// The repo's size when last measured, plus the blocks adds wrote since, minus what
    /// collections removed: what a collection woken by adds goes by, instead of walking
    /// the store (a `stat` per block: about a second of CPU per 100,000 blocks, and adds
    /// past the watermark woke it every gigabyte). Blocks written by other paths (bitswap,
    /// `block/put`) count from the next measure, at the start and every `GCPeriod`.
    /// Passing the threshold wakes the collector.
    estimate: AtomicU64,
    /// The repo's size after the last collection when pinned blocks alone passed the
    /// watermark (0 otherwise): adds wake the collector again only once they have written
    /// [`Collector::margin`] past it, or a pin was removed. Otherwise every add past the
    /// watermark would walk the whole store again, a full CPU for a large repo.
    floor: AtomicU64,
    wake: Notify,
    stop: Notify,
}

impl Collector {
    pub fn new(limits: StorageLimits) -> Self {
        Collector {
            lock: Arc::new(RwLock::new(())),
            limits,
            estimate: AtomicU64::new(0),
            floor: AtomicU64::new(0),
            wake: Notify::new(),
            stop: Notify::new(),
        }
    }

    pub fn limits(&self) -> StorageLimits {
        self.limits
    }

    /// Held by whoever writes blocks that are not pinned yet, until they are: no collection
    /// runs meanwhile. Never take it twice in one task (a queued collection would wait for
    /// the first and the second for the collection).
    pub async fn guard(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read().await
    }

    /// Tells the automatic collector that an add wrote `bytes` of new blocks.
    pub fn note_added(&self, bytes: u64) {
        let estimate = self.estimate.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let floor = self.floor.load(Ordering::Relaxed);
        let worth = match floor {
            0 => self.limits.threshold(),
            floor => floor.saturating_add(self.margin()),
        };
        if estimate > worth {
            self.wake.notify_one();
        }
    }

    /// A collection removed `bytes`: the estimate after it.
    fn forget(&self, bytes: u64) -> u64 {
        let before = self
            .estimate
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |e| {
                Some(e.saturating_sub(bytes))
            })
            .unwrap_or_default();
        before.saturating_sub(bytes)
    }

    /// A pin was removed: a collection may free something again.
    pub fn note_unpinned(&self) {
        self.floor.store(0, Ordering::Relaxed);
    }

    /// What adds write past a collection that could not get under the watermark before the
    /// next: a tenth of `StorageMax`.
    fn margin(&self) -> u64 {
        (self.limits.storage_max / 10).max(1)
    }

    /// Ends [`run_automatic`] once it is between collections.
    pub fn stop(&self) {
        self.stop.notify_one();
    }

    /// Waits until no collection runs: a stopping node must not release its repo to the
    /// next one while a sweep still deletes in it.
    pub async fn quiesce(&self) {
        drop(self.lock.write().await);
    }
}

/// One collection's result.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Collected {
    pub blocks: u64,
    pub bytes: u64,
    pub failures: u64,
}

/// What a sweep reports per block.
pub(crate) enum Swept {
    Removed(Cid),
    Failed(String),
}

/// The live set, taken with every writer of unpinned blocks held off until the sweep ends.
pub(crate) struct Marked {
    _exclusive: OwnedRwLockWriteGuard<()>,
    live: HashSet<String>,
    started: Instant,
}

/// Waits for running adds and pins to finish, then marks every pinned block.
pub(crate) async fn mark(node: &Node) -> Result<Marked, GcError> {
    let exclusive = node.gc.lock.clone().write_owned().await;
    let started = Instant::now();
    // A listing that fails half-way leaves the live set incomplete: nothing is swept then.
    let live = node
        .ipfs
        .repo()
        .list_pins(None)
        .await
        .map_ok(|(cid, _)| blocks::block_key(&cid))
        .try_collect::<HashSet<String>>()
        .await
        .map_err(GcError::Pins)?;
    Ok(Marked {
        _exclusive: exclusive,
        live,
        started,
    })
}

impl Marked {
    /// Deletes every unmarked block of `store`, reporting each, and logs the collection.
    pub async fn sweep(
        self,
        store: PathBuf,
        trigger: &'static str,
        mut report: impl FnMut(Swept) + Send + 'static,
    ) -> Result<Collected, GcError> {
        let Marked {
            _exclusive,
            live,
            started,
        } = self;
        let pinned = live.len();
        let collected =
            tokio::task::spawn_blocking(move || sweep_store(&store, &live, &mut report)).await??;
        drop(_exclusive);
        tracing::info!(
            trigger,
            blocks_freed = collected.blocks,
            bytes_freed = collected.bytes,
            failures = collected.failures,
            pinned_blocks = pinned,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "garbage collected"
        );
        Ok(collected)
    }
}

fn walk_error(path: &Path) -> impl FnOnce(std::io::Error) -> GcError + '_ {
    move |source| GcError::Walk {
        path: path.to_owned(),
        source,
    }
}

/// Every block file of the store, as (CIDv1 name, path), shard by shard (blocking).
fn for_each_block(store: &Path, mut visit: impl FnMut(&str, PathBuf)) -> Result<(), GcError> {
    let shards = match std::fs::read_dir(store) {
        Ok(shards) => shards,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(walk_error(store)(e)),
    };
    for shard in shards {
        let shard = shard.map_err(walk_error(store))?.path();
        if !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).map_err(walk_error(&shard))? {
            let path = entry.map_err(walk_error(&shard))?.path();
            // Temporary files of writers in flight end in `.tmp`, never `.data`.
            if path.extension().and_then(|e| e.to_str()) != Some("data") {
                continue;
            }
            if let Some(key) = path.file_stem().and_then(|s| s.to_str()) {
                let key = key.to_owned();
                visit(&key, path);
            }
        }
    }
    Ok(())
}

fn sweep_store(
    store: &Path,
    live: &HashSet<String>,
    report: &mut impl FnMut(Swept),
) -> Result<Collected, GcError> {
    let mut collected = Collected::default();
    for_each_block(store, |key, path| {
        if live.contains(key) {
            return;
        }
        // Only files named by a CID are blocks; anything else is not ours to delete.
        let Ok(cid) = Cid::try_from(key) else {
            return;
        };
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                collected.blocks += 1;
                collected.bytes += size;
                report(Swept::Removed(cid));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                collected.failures += 1;
                report(Swept::Failed(format!("could not remove {cid}: {e}")));
            }
        }
    })?;
    Ok(collected)
}

/// The store's block count and bytes, as `repo/stat` reports them (blocking).
pub(crate) fn measure(store: &Path) -> Result<(u64, u64), GcError> {
    let (mut count, mut bytes) = (0u64, 0u64);
    for_each_block(store, |_, path| {
        // A block deleted meanwhile simply no longer counts.
        if let Ok(meta) = std::fs::metadata(&path) {
            count += 1;
            bytes += meta.len();
        }
    })?;
    Ok((count, bytes))
}

async fn measure_async(store: &Path) -> Result<(u64, u64), GcError> {
    let store = store.to_owned();
    tokio::task::spawn_blocking(move || measure(&store)).await?
}

/// Kubo's `--enable-gc`: every `GCPeriod`, and whenever adds may have passed the watermark,
/// measures the repo and collects if it holds more than `StorageGCWatermark`% of
/// `StorageMax`. Returns after [`Collector::stop`].
pub(crate) async fn run_automatic(node: Arc<Node>) {
    let collector = &node.gc;
    let limits = collector.limits();
    let store = blocks::store_dir(&node.repo);
    tracing::info!(
        storage_max = limits.storage_max,
        watermark_percent = limits.watermark,
        period_s = limits.gc_period.as_secs_f64(),
        "automatic garbage collection on"
    );
    let mut last_add_triggered: Option<Instant> = None;
    // Walk the store at the start and on the period; a wake by adds goes by the estimate.
    let mut measure = true;
    loop {
        if let Err(e) = check(&node, &store, "watermark", measure).await {
            tracing::warn!(error = %e, "automatic garbage collection failed");
        }
        let period = async {
            if limits.gc_period.is_zero() {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(limits.gc_period).await;
            }
        };
        measure = false;
        tokio::select! {
            _ = collector.stop.notified() => return,
            _ = period => measure = true,
            _ = collector.wake.notified() => {
                if let Some(last) = last_add_triggered {
                    let gap = ADD_TRIGGER_GAP.saturating_sub(last.elapsed());
                    tokio::select! {
                        _ = collector.stop.notified() => return,
                        _ = tokio::time::sleep(gap) => {}
                    }
                }
                last_add_triggered = Some(Instant::now());
            }
        }
    }
}

/// Kubo's `maybeGC`: collects when the repo holds more than the watermark.
/// With `measure` the store is walked for its size; otherwise the estimate stands for it.
async fn check(
    node: &Node,
    store: &Path,
    trigger: &'static str,
    measure: bool,
) -> Result<(), GcError> {
    let collector = &node.gc;
    let threshold = collector.limits().threshold();
    let size = match measure {
        true => {
            let (_, size) = measure_async(store).await?;
            collector.estimate.store(size, Ordering::Relaxed);
            size
        }
        false => collector.estimate.load(Ordering::Relaxed),
    };
    if size <= threshold {
        collector.floor.store(0, Ordering::Relaxed);
        return Ok(());
    }
    if size > collector.limits().storage_max {
        tracing::warn!(
            repo_size = size,
            storage_max = collector.limits().storage_max,
            "repo is over StorageMax; collecting"
        );
    }
    let collected = mark(node)
        .await?
        .sweep(store.to_owned(), trigger, |_| {})
        .await?;
    let size = collector.forget(collected.bytes);
    collector
        .floor
        .store(if size > threshold { size } else { 0 }, Ordering::Relaxed);
    if size > threshold {
        tracing::warn!(
            repo_size = size,
            threshold,
            "pinned blocks alone pass the GC watermark; raise Datastore.StorageMax"
        );
    }
    Ok(())
}

/// One line of Kubo's `repo/gc` answer: `{"Key":{"/":"CID"}}` per removed block, and
/// `{"Key":null,"Error":"…"}` for a failure (Go's encoding of an undefined CID).
fn gc_line(swept: &Swept) -> String {
    let value = match swept {
        Swept::Removed(cid) => serde_json::json!({ "Key": { "/": cid.to_string() } }),
        Swept::Failed(error) => serde_json::json!({ "Key": null, "Error": error }),
    };
    let mut line = value.to_string();
    line.push('\n');
    line
}

/// `repo/gc[?stream-errors=true][&quiet=true]`: collects now and streams one line per
/// removed block. With `stream-errors` each failure is its own line as it happens;
/// otherwise, as Kubo, failures end the answer with one error line. `quiet` only shortens
/// Kubo's text output, so it changes nothing here.
pub async fn repo_gc(
    axum::extract::State(node): axum::extract::State<super::NodeState>,
    args: super::http::Args,
) -> Result<axum::response::Response, super::error::ApiError> {
    use axum::response::IntoResponse;

    let stream_errors = args.bool("stream-errors", false)?;
    args.bool("quiet", false)?;
    let marked = mark(&node).await.map_err(super::error::ApiError::failed)?;
    let store = blocks::store_dir(&node.repo);
    // Unbounded: a caller that reads slowly (or not at all) must not stall the sweep, which
    // holds every add off; a line is about 80 bytes per removed block.
    let (lines, receiver) = tokio::sync::mpsc::unbounded_channel::<String>();
    // The sweep finishes even if the caller hangs up, as Kubo's does.
    let node = node.clone();
    tokio::spawn(async move {
        let sender = lines.clone();
        let report = move |swept: Swept| {
            if stream_errors || matches!(swept, Swept::Removed(_)) {
                let _ = sender.send(gc_line(&swept));
            }
        };
        let swept = marked.sweep(store, "repo/gc", report).await;
        if let Ok(collected) = &swept {
            node.gc.forget(collected.bytes);
        }
        let last = match swept {
            Ok(collected) if collected.failures > 0 && !stream_errors => {
                Some(Swept::Failed(format!(
                    "garbage collection incomplete: could not delete {} blocks",
                    collected.failures
                )))
            }
            Ok(_) => None,
            Err(e) => Some(Swept::Failed(e.to_string())),
        };
        if let Some(last) = last {
            let _ = lines.send(gc_line(&last));
        }
    });
    let body = futures::stream::unfold(receiver, |mut receiver| async move {
        let line = receiver.recv().await?;
        Some((Ok::<_, std::convert::Infallible>(line), receiver))
    });
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}
