//! `Outage`: whether the storage node is down, as the write path sees it. Uploads and
//! commits report each attempt here; the first failure of an outage is logged at warn, the
//! rest at debug, and the first success after it at warn too (so that the default log shows
//! when it ended), so a long outage is two log lines, not one per retry. `fsync`, the unmount drain and writers held back by the staging
//! limit ask how long the node has been down to decide when to stop waiting (`grace`).
//!
//! The same holds for local faults: work that cannot proceed for a reason on this machine
//! (a staged file gone or unreadable, too many open files, the cache disk full or
//! read-only) is logged once when it starts and once when it ends, shown by `pxfs status`,
//! and makes waiters give up with `EIO` after the same grace (`ENOSPC` when the disk is
//! full; new data refused below the reserve, `disk_space`, makes no waiter give up: it stops
//! no work they wait for). The work itself is retried: nothing closed is dropped.
//!
//! And for errors that are neither: the node refusing an upload or a commit for good (a
//! 4xx, content that does not seal). Each failing piece of work (an upload batch, a
//! token's commits) holds the fault until it succeeds or becomes moot: it is logged when
//! the first starts failing and when the last stops, shown by `pxfs status`, and makes
//! waiters give up with `EIO` after the grace like a local fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::fs::error::FsError;

#[derive(Debug)]
pub(crate) struct Outage {
    state: Mutex<State>,
    /// How long the node may stay down before waiters give up (`EIO`/`ENOSPC`); their data
    /// stays staged either way.
    pub grace: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// Since when every attempt has failed (`None`: the node is up, as far as we know).
    down_since: Option<Instant>,
    last_success: Option<Instant>,
    /// Local faults by what they stop (`upload`, `commit`): since when, the error, and
    /// whether it is the cache disk being full (waiters then give up with `ENOSPC`).
    local: BTreeMap<&'static str, (Instant, String, bool)>,
    /// Work failing with errors that are neither, by what it is (`upload`, `commit`).
    stuck: BTreeMap<&'static str, Stuck>,
}

#[derive(Debug)]
struct Stuck {
    since: Instant,
    error: String,
    /// Which pieces of work fail (upload batches, tokens): the fault lasts until none does.
    holders: BTreeSet<u64>,
}

impl Outage {
    pub fn new(grace: Duration) -> Outage {
        Outage {
            state: Mutex::new(State::default()),
            grace,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An attempt started at `started` failed with a transient error (node unreachable,
    /// timed out, 5xx). A failure of an attempt older than the last success says nothing
    /// new: a request that hung through a freeze must not reopen an outage that is over.
    pub fn failed(&self, what: &'static str, started: Instant, error: &dyn Display) {
        let mut s = self.lock();
        if s.down_since.is_some() || s.last_success.is_some_and(|ok| ok > started) {
            tracing::debug!(what, error = %error, "node still unreachable");
            return;
        }
        s.down_since = Some(started);
        tracing::warn!(
            what,
            error = %error,
            "storage node unreachable: closed files stay staged and uploads are retried \
             with backoff until it is back; reads of content not cached fail with EIO"
        );
    }

    /// An attempt succeeded; `pending` is (files, bytes) still waiting to upload.
    pub fn succeeded(&self, pending: (u64, u64)) {
        let mut s = self.lock();
        s.last_success = Some(Instant::now());
        if let Some(since) = s.down_since.take() {
            tracing::warn!(
                down_for = ?since.elapsed(),
                files = pending.0,
                bytes = pending.1,
                "storage node reachable again: uploads resume"
            );
        }
    }

    /// How long the node has been down, if it is.
    pub fn down_for(&self) -> Option<Duration> {
        self.lock().down_since.map(|since| since.elapsed())
    }

    /// `what` cannot proceed for a local reason. Logged at error the first time.
    pub fn local_failed(&self, what: &'static str, error: &dyn Display) {
        self.local_fault(what, error, false);
    }

    /// `what` failed to write to the cache disk: a full disk is its own kind of fault.
    pub fn local_io_failed(&self, what: &'static str, error: &std::io::Error) {
        self.local_fault(
            what,
            error,
            crate::fs::data::disk_space::is_disk_full(error),
        );
    }

    /// `what` cannot proceed because the cache disk is full (or below its reserve).
    pub fn disk_full(&self, what: &'static str, error: &dyn Display) {
        self.local_fault(what, error, true);
    }

    fn local_fault(&self, what: &'static str, error: &dyn Display, full: bool) {
        let mut s = self.lock();
        if s.local.contains_key(what) {
            tracing::debug!(what, error = %error, "local fault persists");
            return;
        }
        if full {
            tracing::error!(
                what,
                error = %error,
                "the cache disk is full: new data gets ENOSPC until space is freed ([cache] \
                 reserve); what is staged and journaled stays and is uploaded as always"
            );
        } else {
            tracing::error!(
                what,
                error = %error,
                "cannot proceed for a local reason: the data stays staged and journaled and is \
                 retried; fsync and unmount fail with EIO after the outage grace until it is fixed"
            );
        }
        s.local
            .insert(what, (Instant::now(), error.to_string(), full));
    }

    /// `what` proceeded: its local fault, if any, is over.
    pub fn local_ok(&self, what: &'static str) {
        let mut s = self.lock();
        if let Some((since, ..)) = s.local.remove(what) {
            tracing::warn!(what, lasted = ?since.elapsed(), "local fault over: work resumes");
        }
    }

    /// Work `holder` of kind `what` failed with an error that is neither an outage nor a
    /// known local fault. Logged at error when it is the first such failure of `what`.
    pub fn stuck(&self, what: &'static str, holder: u64, error: &dyn Display) {
        let mut s = self.lock();
        if let Some(stuck) = s.stuck.get_mut(what) {
            stuck.holders.insert(holder);
            tracing::debug!(what, error = %error, "still failing");
            return;
        }
        tracing::error!(
            what,
            error = %error,
            "failing with an error that is not a node outage: the data stays staged and \
             journaled and is retried; fsync and unmount fail with EIO after the outage \
             grace until it succeeds"
        );
        s.stuck.insert(
            what,
            Stuck {
                since: Instant::now(),
                error: error.to_string(),
                holders: BTreeSet::from([holder]),
            },
        );
    }

    /// Work `holder` of kind `what` succeeded or became moot.
    pub fn unstuck(&self, what: &'static str, holder: u64) {
        let mut s = self.lock();
        let Some(stuck) = s.stuck.get_mut(what) else {
            return;
        };
        stuck.holders.remove(&holder);
        if stuck.holders.is_empty() {
            let lasted = stuck.since.elapsed();
            s.stuck.remove(what);
            tracing::warn!(what, ?lasted, "no longer failing: work resumes");
        }
    }

    /// The local faults and failing work now: (what, since how long, error).
    pub fn local_faults(&self) -> Vec<(&'static str, Duration, String)> {
        let s = self.lock();
        let local = s
            .local
            .iter()
            .map(|(w, (since, e, _))| (*w, since.elapsed(), e.clone()));
        let stuck = s
            .stuck
            .iter()
            .map(|(w, f)| (*w, f.since.elapsed(), f.error.clone()));
        local.chain(stuck).collect()
    }

    /// A waiter that started waiting at `waiting_since` should give up: the node has been
    /// down (or a local fault has lasted) for the whole grace period, and so has the
    /// waiter. The error to return: `NodeDown`, `LocalFault` or `Failing`, all `EIO`, or
    /// `DiskFull` (`ENOSPC`) when the local fault is a full cache disk.
    pub fn gives_up(&self, waiting_since: Instant) -> Option<FsError> {
        if waiting_since.elapsed() < self.grace {
            return None;
        }
        let s = self.lock();
        if let Some(down) = s.down_since.map(|d| d.elapsed())
            && down >= self.grace
        {
            return Some(FsError::NodeDown(down));
        }
        let local = s
            .local
            .iter()
            // Refused new data stops no work a waiter waits for (uploads, commits).
            .filter(|(what, _)| **what != crate::fs::data::disk_space::DISK_FULL)
            .find(|(_, (since, ..))| since.elapsed() >= self.grace)
            .map(|(what, (since, e, full))| {
                let secs = since.elapsed().as_secs();
                if *full {
                    FsError::DiskFull(format!("{what} failing for {secs}s: {e}"))
                } else {
                    FsError::LocalFault {
                        what,
                        secs,
                        error: e.clone(),
                    }
                }
            });
        local.or_else(|| {
            s.stuck
                .iter()
                .find(|(_, f)| f.since.elapsed() >= self.grace)
                .map(|(what, f)| FsError::Failing {
                    what,
                    secs: f.since.elapsed().as_secs(),
                    error: f.error.clone(),
                })
        })
    }
}
