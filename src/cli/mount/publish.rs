//! The daemon's side of `pxfs status`: how the chain polls went ([`ChainHealth`]) and the
//! task that publishes the mount's state ([`Publisher`]) every second and after every commit
//! (`Fs::set_on_commit`: `pxfs status` right after an `fsync` shows what it committed).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::cli::mount_status::{self, ChainReport, MountStatus, MountedToken, NodeReport};
use crate::fs::Fs;
use crate::storage::{NodeClient, StorageError};

/// Chain polls: the last success, the current outage. Logs at warn once when an outage
/// starts and at info when it ends, not on every failed poll.
#[derive(Debug)]
pub struct ChainHealth {
    inner: Mutex<ChainState>,
    /// Later than this after the last success, the state is stale even without an error
    /// (a poll that hangs).
    stale_after: Duration,
}

#[derive(Debug, Default)]
struct ChainState {
    last_ok: Option<SystemTime>,
    last_ok_at: Option<Instant>,
    last_error: Option<String>,
    last_error_at: Option<SystemTime>,
    failed_polls: u64,
    outage_since: Option<Instant>,
}

impl ChainHealth {
    pub fn new(poll_interval: Duration) -> ChainHealth {
        ChainHealth {
            inner: Mutex::new(ChainState {
                // The mount just read everything from the chain.
                last_ok: Some(SystemTime::now()),
                last_ok_at: Some(Instant::now()),
                ..ChainState::default()
            }),
            stale_after: poll_interval * 3 + super::POLL_TIMEOUT,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ChainState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A poll read everything it needed.
    pub fn polled(&self) {
        let mut s = self.lock();
        if let Some(since) = s.outage_since.take() {
            tracing::info!(
                after_secs = since.elapsed().as_secs(),
                "chain RPC reachable again; quota and sync state are current"
            );
        }
        s.failed_polls = 0;
        s.last_ok = Some(SystemTime::now());
        s.last_ok_at = Some(Instant::now());
    }

    /// A poll failed: the mount keeps serving with the last known state.
    pub fn poll_failed(&self, error: &str) {
        let mut s = self.lock();
        if s.outage_since.is_none() {
            s.outage_since = Some(Instant::now());
            tracing::warn!(
                error,
                "chain RPC unreachable: serving with the last known quota and sync state \
                 (marked stale in `pxfs status`) until it answers again"
            );
        } else {
            tracing::debug!(error, "chain poll failed again");
        }
        s.failed_polls += 1;
        s.last_error = Some(error.to_string());
        s.last_error_at = Some(SystemTime::now());
    }

    pub fn report(&self) -> ChainReport {
        let s = self.lock();
        let late = s.last_ok_at.is_none_or(|t| t.elapsed() > self.stale_after);
        ChainReport {
            reachable: s.failed_polls == 0,
            stale: s.failed_polls > 0 || late,
            last_poll: s.last_ok.map(mount_status::unix),
            last_error: s.last_error.clone(),
            last_error_at: s.last_error_at.map(mount_status::unix),
            failed_polls: s.failed_polls,
        }
    }
}

/// Writes the mount's status file; removes it (and its link) when done or dropped.
pub struct Publisher {
    fs: Fs,
    chain: Arc<ChainHealth>,
    path: PathBuf,
    link: PathBuf,
    base: Mutex<MountStatus>,
    /// The final outcome is recorded: the file stays for `pxfs unmount` to read.
    finished: std::sync::atomic::AtomicBool,
}

impl Publisher {
    pub fn new(
        fs: Fs,
        chain: Arc<ChainHealth>,
        cfg: &crate::config::Config,
        mountpoint: &std::path::Path,
    ) -> Publisher {
        let path = mount_status::status_file(&cfg.cache.dir, mountpoint);
        let link = mount_status::status_link(mountpoint);
        let now = mount_status::now();
        let base = MountStatus {
            schema: mount_status::SCHEMA.into(),
            pid: std::process::id(),
            mountpoint: mountpoint.to_path_buf(),
            chain_id: cfg.chain.chain_id,
            contract: cfg.chain.contract.trim().to_lowercase(),
            wallet: cfg.chain.wallet.trim().to_lowercase(),
            state: "mounted".into(),
            started_at: now,
            updated_at: now,
            pending_files: 0,
            pending_bytes: 0,
            node: NodeReport::default(),
            chain: ChainReport::default(),
            tokens: Vec::new(),
            local_faults: Vec::new(),
            loaded_inodes: 0,
            dropped_log_lines: 0,
            replicas: Vec::new(),
            outcome: None,
        };
        let p = Publisher {
            fs,
            chain,
            path,
            link,
            base: Mutex::new(base),
            finished: std::sync::atomic::AtomicBool::new(false),
        };
        p.publish();
        if let Some(dir) = p.link.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::remove_file(&p.link);
        if let Err(e) = std::os::unix::fs::symlink(&p.path, &p.link) {
            tracing::debug!(link = %p.link.display(), error = %e, "cannot link the status file");
        }
        p
    }

    /// `mounted` → `draining`: published at once.
    pub fn set_state(&self, state: &str) {
        self.base.lock().unwrap_or_else(|e| e.into_inner()).state = state.into();
        self.publish();
    }

    /// Write the current state now.
    pub fn publish(&self) {
        let doc = self.current();
        if let Err(e) = mount_status::write(&self.path, &doc) {
            tracing::debug!(path = %self.path.display(), error = %e, "cannot write the status file");
        }
    }

    /// The mount's state at this instant, as `pxfs status` reads it.
    pub fn current(&self) -> MountStatus {
        let core = self.fs.status();
        {
            let mut base = self.base.lock().unwrap_or_else(|e| e.into_inner());
            base.updated_at = mount_status::now();
            base.pending_files = core.pending_files;
            base.pending_bytes = core.pending_bytes;
            base.node = NodeReport::from_health(&core.node);
            base.chain = self.chain.report();
            base.tokens = MountedToken::from_core(&core);
            base.local_faults = core.local_faults.clone();
            base.loaded_inodes = core.loaded_inodes;
            base.dropped_log_lines = crate::output::dropped_lines();
            base.replicas = mount_status::ReplicaReport::from_core(&core);
            base.clone()
        }
    }

    /// Publish every second; ask the node for its version when the core has not heard
    /// from it for a while, so an idle mount's node health stays current.
    pub async fn run(self: Arc<Self>, node: NodeClient) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut probe_due = Instant::now() + Duration::from_secs(10);
        loop {
            tick.tick().await;
            if Instant::now() >= probe_due {
                probe_due = Instant::now() + Duration::from_secs(10);
                let quiet = self
                    .fs
                    .status()
                    .node
                    .last_ok
                    .is_none_or(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(10));
                // A hosted node is reached through one of the mounted sNFTs' logins.
                let probe = match node.hosted_token() {
                    None if node.is_hosted() => {
                        self.fs.tokens().first().map(|t| node.for_token(*t))
                    }
                    _ => Some(node.clone()),
                };
                if quiet && let Some(probe) = probe {
                    let answer = tokio::time::timeout(super::POLL_TIMEOUT, probe.version()).await;
                    self.fs.record_node_probe(match answer {
                        Ok(Ok(_)) => Ok(()),
                        // A hosted gateway that does not pass `version` answered: it is up.
                        Ok(Err(StorageError::Unsupported { .. })) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("no answer within the poll timeout".into()),
                    });
                }
            }
            self.publish();
        }
    }
}

impl Publisher {
    /// The daemon's last word: state `stopped` and its outcome, written now and left in
    /// place (no longer listed as running) for whoever stopped it to read.
    pub fn finish(&self, outcome: crate::cli::mount_outcome::Outcome) {
        {
            let mut base = self.base.lock().unwrap_or_else(|e| e.into_inner());
            base.state = "stopped".into();
            base.outcome = Some(outcome);
        }
        self.publish();
        self.finished
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// The mount is gone: so is its status (unless it holds the final outcome).
    pub fn remove(&self) {
        if self.finished.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
        if std::fs::read_link(&self.link).is_ok_and(|t| t == self.path) {
            let _ = std::fs::remove_file(&self.link);
        }
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.remove();
    }
}
