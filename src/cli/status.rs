//! `pxfs status`: the wallet's sNFTs with quota, usage and sync state from the chain,
//! merged with what running mounts of the same config publish (pending uploads, last
//! commit, node and chain health). As a table, `--json`, or refreshed with `--watch`.
//!
//! With the chain unreachable, a running mount's last known state is shown, marked stale.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::ConfigArg;
use super::mount_status::{self, ChainReport, MountStatus, MountedToken, NodeReport};
use crate::chain::{Chain, Flavour, TokenId, TokenState};
use crate::check::record::CheckHistory;
use crate::config::Config;

/// The chain read gives up after this long (a running mount's data is shown instead).
const CHAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
    /// Refresh every SECS seconds (default 2) until interrupted
    #[arg(
        long,
        value_name = "SECS",
        num_args = 0..=1,
        default_missing_value = "2"
    )]
    pub watch: Option<u64>,
}

/// The `--json` document; field names are a stable interface for scripts.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub wallet: String,
    pub chain_id: u64,
    pub contract: String,
    /// Which contract this is (`px-storage-nft`, `px-sol-v2`, `px-sol-v1`); `null` when
    /// the chain did not answer.
    pub flavour: Option<Flavour>,
    /// What pxfs can do with this contract's tokens, one phrase each.
    pub operations: Vec<String>,
    /// This command's own read of the chain.
    pub chain: ChainRead,
    /// Mounts of this config's sNFTs running on this machine.
    pub mounts: Vec<MountReport>,
    pub tokens: Vec<TokenReport>,
}

#[derive(Debug, Serialize)]
pub struct ChainRead {
    pub reachable: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct MountReport {
    pub mountpoint: String,
    pub pid: u32,
    /// `mounted` or `draining`.
    pub state: String,
    pub started_at: u64,
    pub updated_at: u64,
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub tokens: Vec<TokenId>,
    pub node: NodeReport,
    pub chain: ChainReport,
    pub local_faults: Vec<String>,
    /// Files and directories the daemon holds in memory.
    pub loaded_inodes: u64,
    /// Log lines the daemon could not write and dropped.
    pub dropped_log_lines: u64,
    pub replicas: Vec<super::mount_status::ReplicaReport>,
}

#[derive(Debug, Serialize)]
pub struct TokenReport {
    pub token_id: TokenId,
    pub quota: u64,
    /// Usage as last synced on-chain (the mount's copy while the chain is unreachable).
    pub usage: u64,
    /// Live usage (a mount's, with what is staged) if mounted, else `usage`, in % of quota.
    pub used_percent: u64,
    pub last_sync: u64,
    pub sync_deadline: u64,
    pub time_left: u64,
    pub overdue: bool,
    pub btns_key: Option<String>,
    /// PX.sol v2: uploads left on the token's bandwidth counter; `null` elsewhere.
    pub bandwidth: Option<u64>,
    /// Quota and sync state are last known, not current (the chain is not answering).
    pub stale: bool,
    /// What a running mount knows about this token; `null` when it is not mounted.
    pub mount: Option<TokenMountReport>,
    /// The last `pxfs check` of this token on this machine, and damage it found that no
    /// intact check has cleared since (src/check/record.rs).
    #[serde(skip_serializing_if = "is_unchecked")]
    pub checks: CheckHistory,
}

fn is_unchecked(h: &CheckHistory) -> bool {
    h.last.is_none()
}

#[derive(Debug, Serialize)]
pub struct TokenMountReport {
    pub mountpoint: String,
    /// Committed and staged file bytes.
    pub live_usage: u64,
    pub files: u64,
    pub pending_uploads: u64,
    pub pending_bytes: u64,
    pub last_commit: Option<u64>,
    pub last_root: Option<String>,
    pub usage_doc: Option<String>,
    pub read_only: bool,
    pub node_reachable: bool,
    pub chain_stale: bool,
    pub chain_last_poll: Option<u64>,
    /// "none" (a plaintext tree anyone can read), or the scheme and key id.
    pub encryption: String,
    /// Conflict copies made by merges with other machines' commits since the mount.
    pub conflicts: u64,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let Some(every) = args.watch else {
        let report = gather(&cfg).await?;
        print(&report, args.json)?;
        return Ok(());
    };
    let every = Duration::from_secs(every.max(1));
    let terminal = std::io::stdout().is_terminal();
    loop {
        let report = gather(&cfg).await;
        if terminal {
            // Clear the screen and go home, like watch(1).
            crate::output::out_text(format_args!("\x1b[2J\x1b[H"));
        }
        match report {
            Ok(r) => print(&r, args.json)?,
            Err(e) => crate::say!("pxfs: {e:#}"),
        }
        if !terminal && !args.json {
            crate::say!();
        }
        use std::io::Write;
        std::io::stdout().flush()?;
        tokio::time::sleep(every).await;
    }
}

fn print(report: &StatusReport, json: bool) -> anyhow::Result<()> {
    if json {
        crate::say!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print_table(report);
    }
    Ok(())
}

/// Read the chain (bounded) and the running mounts, and merge them.
pub async fn gather(cfg: &Config) -> anyhow::Result<StatusReport> {
    let mounts: Vec<MountStatus> = mount_status::running(&cfg.cache.dir)
        .into_iter()
        .filter(|m| {
            m.chain_id == cfg.chain.chain_id
                && m.contract == cfg.chain.contract.trim().to_lowercase()
                && m.wallet == cfg.chain.wallet.trim().to_lowercase()
        })
        .collect();
    let chain = match tokio::time::timeout(CHAIN_TIMEOUT, read_chain(cfg)).await {
        Ok(r) => r,
        Err(_) => Err(anyhow::anyhow!(
            "cannot reach the chain RPC: no answer within {} s",
            CHAIN_TIMEOUT.as_secs()
        )),
    };
    let flavour = chain.as_ref().ok().map(|(c, _)| c.flavour());
    let (wallet, chain_id, contract, chain_read, tokens) = match chain {
        Ok((chain, tokens)) => (
            chain.wallet().to_checksum(None),
            chain.chain_id(),
            chain.contract().to_checksum(None),
            ChainRead {
                reachable: true,
                error: None,
            },
            Some(tokens),
        ),
        // Without the chain, a running mount still knows the last state.
        Err(e) if !mounts.is_empty() => (
            cfg.chain.wallet.clone(),
            cfg.chain.chain_id,
            cfg.chain.contract.clone(),
            ChainRead {
                reachable: false,
                error: Some(format!("{e:#}")),
            },
            None,
        ),
        Err(e) => return Err(e),
    };
    let mut report = merge(wallet, chain_id, contract, chain_read, tokens, &mounts);
    for t in &mut report.tokens {
        t.checks = crate::check::record::load(&cfg.cache.dir, t.token_id);
    }
    report.flavour = flavour;
    report.operations = flavour
        .map(|f| f.operations().iter().map(|o| o.to_string()).collect())
        .unwrap_or_default();
    Ok(report)
}

async fn read_chain(cfg: &Config) -> anyhow::Result<(Chain, Vec<TokenState>)> {
    let chain = Chain::connect(&cfg.chain)
        .await?
        .with_cache_dir(&cfg.cache.dir);
    let mut tokens = Vec::new();
    for id in chain.owned_tokens().await? {
        tokens.push(
            chain
                .token(id)
                .await
                .map_err(|e| anyhow::anyhow!("token {id}: {e}"))?,
        );
    }
    Ok((chain, tokens))
}

fn merge(
    wallet: String,
    chain_id: u64,
    contract: String,
    chain: ChainRead,
    from_chain: Option<Vec<TokenState>>,
    mounts: &[MountStatus],
) -> StatusReport {
    // The first mount that serves a token speaks for it.
    let mut mounted: BTreeMap<TokenId, (&MountStatus, &MountedToken)> = BTreeMap::new();
    for m in mounts {
        for t in &m.tokens {
            mounted.entry(t.token_id).or_insert((m, t));
        }
    }
    let mount_part = |id: TokenId| {
        mounted.get(&id).map(|(m, t)| TokenMountReport {
            mountpoint: m.mountpoint.display().to_string(),
            live_usage: t.usage,
            files: t.files,
            pending_uploads: t.pending_uploads,
            pending_bytes: t.pending_bytes,
            last_commit: t.last_commit,
            last_root: t.last_root.clone(),
            usage_doc: t.usage_doc.clone(),
            read_only: t.read_only,
            node_reachable: m.node.reachable,
            chain_stale: m.chain.stale,
            chain_last_poll: m.chain.last_poll,
            encryption: t.encryption.clone(),
            conflicts: t.conflicts,
        })
    };
    let percent = |used: u64, quota: u64| match quota {
        0 => 0,
        q => (u128::from(used) * 100 / u128::from(q)) as u64,
    };
    let tokens: Vec<TokenReport> = match from_chain {
        Some(states) => states
            .iter()
            .map(|t| {
                let mount = mount_part(t.token_id);
                let live = mount.as_ref().map_or(t.usage, |m| m.live_usage);
                TokenReport {
                    token_id: t.token_id,
                    quota: t.quota,
                    usage: t.usage,
                    used_percent: percent(live, t.quota),
                    last_sync: t.last_sync,
                    sync_deadline: t.sync_deadline,
                    time_left: t.seconds_left(),
                    overdue: t.overdue,
                    btns_key: t.btns_key.clone(),
                    bandwidth: t.bandwidth,
                    stale: false,
                    mount,
                    checks: CheckHistory::default(),
                }
            })
            .collect(),
        None => mounted
            .iter()
            .map(|(id, (_, t))| TokenReport {
                token_id: *id,
                quota: t.quota,
                usage: t.usage,
                used_percent: percent(t.usage, t.quota),
                last_sync: t.last_sync,
                sync_deadline: t.sync_deadline,
                time_left: t.sync_deadline.saturating_sub(mount_status::now()),
                overdue: t.overdue,
                btns_key: t.btns_key.clone(),
                bandwidth: None,
                stale: true,
                mount: mount_part(*id),
                checks: CheckHistory::default(),
            })
            .collect(),
    };
    StatusReport {
        wallet,
        chain_id,
        contract,
        flavour: None,
        operations: Vec::new(),
        chain,
        mounts: mounts
            .iter()
            .map(|m| MountReport {
                mountpoint: m.mountpoint.display().to_string(),
                pid: m.pid,
                state: m.state.clone(),
                started_at: m.started_at,
                updated_at: m.updated_at,
                pending_files: m.pending_files,
                pending_bytes: m.pending_bytes,
                tokens: m.tokens.iter().map(|t| t.token_id).collect(),
                node: m.node.clone(),
                chain: m.chain.clone(),
                local_faults: m.local_faults.clone(),
                loaded_inodes: m.loaded_inodes,
                dropped_log_lines: m.dropped_log_lines,
                replicas: m.replicas.clone(),
            })
            .collect(),
        tokens,
    }
}

fn print_table(r: &StatusReport) {
    crate::say!(
        "wallet {} on chain {}, contract {}",
        r.wallet,
        r.chain_id,
        r.contract
    );
    if let Some(f) = r.flavour {
        crate::say!(
            "contract: {}; pxfs can: {}",
            f.name(),
            r.operations.join("; ")
        );
    }
    if let Some(e) = &r.chain.error {
        crate::say!("chain: UNREACHABLE ({e}); showing the mounts' last known state");
    }
    for m in &r.mounts {
        let mut node = if m.node.reachable {
            "ok".to_string()
        } else {
            format!(
                "DOWN ({})",
                m.node.last_error.as_deref().unwrap_or("no answer")
            )
        };
        if m.node.corrupt_blocks > 0 {
            node.push_str(&format!(
                ", {} block(s) refused: bytes did not match their CID (see the log)",
                m.node.corrupt_blocks
            ));
        }
        let chain = match (m.chain.stale, m.chain.last_poll) {
            (false, _) => "ok".to_string(),
            (true, Some(t)) => format!("STALE since {}", utc(t)),
            (true, None) => "STALE".to_string(),
        };
        crate::say!(
            "mount {} (pid {}, {}): {} file(s), {} to upload; node {node}; chain {chain}",
            m.mountpoint,
            m.pid,
            m.state,
            m.pending_files,
            human_bytes(m.pending_bytes),
        );
        for f in &m.local_faults {
            crate::say!("  STUCK: {f}");
        }
        if m.dropped_log_lines > 0 {
            crate::say!(
                "  {} log lines dropped (the log could not be written: disk full or reader gone)",
                m.dropped_log_lines
            );
        }
        for (i, rep) in m.replicas.iter().enumerate() {
            crate::say!("  {}", replica_line(i + 1, rep));
        }
    }
    if r.tokens.is_empty() {
        crate::say!("no sNFTs; mint one with `pxfs mint --package 0`");
        return;
    }
    crate::say!(
        "{:>8}  {:>10}  {:>10}  {:>5}  {:>16}  {:>19}  {:>20}  {:>12}  {:<8}  {:<6}  {:<6}  btns key",
        "token",
        "quota",
        "used",
        "%",
        "pending uploads",
        "last commit (UTC)",
        "sync deadline (UTC)",
        "time left",
        "state",
        "node",
        "chain"
    );
    for t in &r.tokens {
        let used = t.mount.as_ref().map_or(t.usage, |m| m.live_usage);
        let (pending, commit, node) = match &t.mount {
            Some(m) => (
                format!("{} ({})", m.pending_uploads, human_bytes(m.pending_bytes)),
                m.last_commit.map_or("-".to_string(), utc),
                if m.node_reachable { "ok" } else { "DOWN" },
            ),
            None => ("-".to_string(), "-".to_string(), "-"),
        };
        let chain = if t.stale || t.mount.as_ref().is_some_and(|m| m.chain_stale) {
            "STALE"
        } else {
            "ok"
        };
        crate::say!(
            "{:>8}  {:>10}  {:>10}  {:>4}%  {:>16}  {:>19}  {:>20}  {:>12}  {:<8}  {:<6}  {:<6}  {}",
            t.token_id,
            human_bytes(t.quota),
            human_bytes(used),
            t.used_percent,
            pending,
            commit,
            utc(t.sync_deadline),
            human_duration(t.time_left),
            if t.overdue { "OVERDUE" } else { "ok" },
            node,
            chain,
            match t.bandwidth {
                Some(b) => format!(
                    "{}  ({b} uploads left)",
                    t.btns_key.as_deref().unwrap_or("-")
                ),
                None => t.btns_key.as_deref().unwrap_or("-").to_string(),
            },
        );
        print_checks(t);
        if let Some(m) = &t.mount {
            match m.encryption.as_str() {
                "none" => crate::say!(
                    "{:>8}  plaintext (encryption = none): anyone who reads the chain reads this drive",
                    ""
                ),
                "" => {}
                e => crate::say!("{:>8}  encrypted: {e}", ""),
            }
            if m.conflicts > 0 {
                crate::say!(
                    "{:>8}  {} conflict cop{} made merging other machines' commits (*.conflict-*)",
                    "",
                    m.conflicts,
                    if m.conflicts == 1 { "y" } else { "ies" }
                );
            }
        }
    }
}

/// The last check's line, and the damage no intact check has cleared since.
fn print_checks(t: &TokenReport) {
    use crate::check::record::Outcome;
    let Some(last) = &t.checks.last else {
        return;
    };
    let kind = if last.read_data {
        "check --read-data"
    } else {
        "check"
    };
    match last.outcome {
        Outcome::Intact => crate::say!(
            "{:>8}  last {kind} {}: intact ({})",
            "",
            utc(last.finished_at),
            last.message
        ),
        Outcome::Damaged => {}
        Outcome::NotChecked => crate::say!(
            "{:>8}  last {kind} {}: COULD NOT CHECK: {}",
            "",
            utc(last.finished_at),
            last.message
        ),
    }
    if let Some(d) = &t.checks.damage {
        crate::say!(
            "{:>8}  DAMAGED at the check of {}: {} file(s), {} missing and {} corrupt block(s); \
             `pxfs check {}` names them",
            "",
            utc(d.finished_at),
            d.damaged,
            d.missing,
            d.corrupt,
            t.token_id
        );
    }
}

pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{n} B"),
        _ => format!("{v:.1} {}", UNITS[unit]),
    }
}

fn human_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m {}s", secs % 60),
        (0, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS` (UTC).
fn utc(secs: u64) -> String {
    i64::try_from(secs)
        .ok()
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or_else(
            || format!("{secs} s after 1970"),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
}

/// One replica of a mount: its health, the roots it holds and its lag.
fn replica_line(n: usize, r: &super::mount_status::ReplicaReport) -> String {
    let health = match (&r.last_error, r.failing_since) {
        (Some(e), Some(since)) if !r.healthy => {
            format!(
                "FAILING since {} ({} attempts: {e})",
                utc(since),
                r.attempts
            )
        }
        _ if r.healthy => "ok".to_string(),
        _ => "not asked yet".to_string(),
    };
    let held: Vec<String> = r
        .held
        .iter()
        .map(|h| format!("sNFT {} at root {}", h.token_id, h.root))
        .collect();
    let lag = if r.behind.is_empty() {
        "up to date".to_string()
    } else {
        let behind: Vec<String> = r.behind.iter().map(|t| t.to_string()).collect();
        format!("BEHIND on sNFT {}", behind.join(", "))
    };
    format!(
        "replica {n} ({}): {health}; {lag}; holds {}",
        r.host,
        if held.is_empty() {
            "nothing yet".to_string()
        } else {
            held.join(", ")
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(100 << 20), "100.0 MiB");
        assert_eq!(human_duration(30 * 86_400 + 3_600), "30d 1h");
        assert_eq!(human_duration(59), "0m 59s");
    }
}
