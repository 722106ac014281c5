//! `Outage`: whether the storage node is down, as the write path sees it. Uploads and
//! commits report each attempt here; the first failure of an outage is logged at warn, the
//! rest at debug, and the first success after it at warn too (so that the default log shows
//! when it ended), so a long outage is two log lines, not one per retry. `fsync`, the unmount drain and writers held back by the staging
//! limit ask how long the node has been down to decide when to stop waiting (`grace`).

use std::fmt::Display;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

    /// A waiter that started waiting at `waiting_since` should give up: the node has been
    /// down for the whole grace period, and so has the waiter.
    pub fn gives_up(&self, waiting_since: Instant) -> Option<Duration> {
        let down = self.down_for()?;
        (down >= self.grace && waiting_since.elapsed() >= self.grace).then_some(down)
    }
}
