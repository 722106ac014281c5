//! The write-back delay: a closed small file waits `writeback_delay` before its upload
//! starts, as rclone's `--vfs-write-back` and the kernel's delayed writeback do. Churn (build
//! trees, mail and package caches: files created and deleted, or rewritten, within seconds)
//! then cancels itself: a version that is moot when its delay ends (unlinked, or a newer
//! close) is dropped with its staged copy and never reaches the node. What must be durable
//! now (`fsync`, `fsyncdir`, `sync`, the unmount drain) hurries the versions it waits for
//! ([`Writeback::hurry`]). The journal is written at close as before, so a crash during the
//! delay replays the close and uploads it.
//!
//! What waits is bounded ([`WAITING_FILES`], [`WAITING_BYTES`]): beyond that the oldest leave
//! early. A copy of many small files then uploads while it runs, instead of holding the
//! first five seconds of it (thousands of files) for the `fsync` at its end to send at once;
//! churn within the bound still cancels itself.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::fs::model::inode::{Ino, TokenId};
use crate::fs::upload::Job;

/// Versions waiting out the delay at most: more and the oldest go at once.
const WAITING_FILES: usize = 2048;
/// And their bytes.
const WAITING_BYTES: u64 = 64 << 20;

/// Closed versions waiting out their delay, oldest first (one delay for all: the order of
/// closes is the order of deadlines).
#[derive(Debug)]
pub(crate) struct Writeback {
    delay: Duration,
    waiting: Mutex<Waiting>,
    /// A job came in while the queue was empty (the releaser sleeps until told).
    arrived: Notify,
}

/// The versions waiting, oldest first, and their bytes.
#[derive(Debug, Default)]
struct Waiting {
    jobs: VecDeque<(Instant, Job)>,
    bytes: u64,
}

impl Waiting {
    fn push(&mut self, entry: (Instant, Job)) {
        self.bytes += entry.1.size;
        self.jobs.push_back(entry);
    }

    fn pop(&mut self) -> Option<Job> {
        let (_, job) = self.jobs.pop_front()?;
        self.bytes = self.bytes.saturating_sub(job.size);
        Some(job)
    }

    /// More wait than the bound allows.
    fn over(&self) -> bool {
        self.jobs.len() > WAITING_FILES || self.bytes > WAITING_BYTES
    }
}

impl Writeback {
    pub fn new(delay: Duration) -> Writeback {
        Writeback {
            delay,
            waiting: Mutex::new(Waiting::default()),
            arrived: Notify::new(),
        }
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keep `job` for its delay; given back if it has none (no delay configured).
    pub fn hold(&self, job: Job) -> Option<Job> {
        if self.delay.is_zero() {
            return Some(job);
        }
        let mut waiting = self.waiting();
        let was_empty = waiting.jobs.is_empty();
        waiting.push((Instant::now() + self.delay, job));
        let over = waiting.over();
        drop(waiting);
        if was_empty || over {
            // `notify_one` keeps the wake-up if the releaser is not waiting yet.
            self.arrived.notify_one();
        }
        None
    }

    /// The jobs whose delay ended by `now`, and when the next one ends.
    fn due(&self, now: Instant) -> (Vec<Job>, Option<Instant>) {
        let mut waiting = self.waiting();
        let mut due = Vec::new();
        while waiting.over() || waiting.jobs.front().is_some_and(|(at, _)| *at <= now) {
            match waiting.pop() {
                Some(job) => due.push(job),
                None => break,
            }
        }
        (due, waiting.jobs.front().map(|(at, _)| *at))
    }

    /// Take the waiting jobs of `token` (of its file `ino` only, if given) out of their
    /// delay, in order.
    pub fn hurry(&self, token: TokenId, ino: Option<Ino>) -> Vec<Job> {
        let mut waiting = self.waiting();
        if !waiting
            .jobs
            .iter()
            .any(|(_, j)| j.token == token && ino.is_none_or(|i| j.ino == i))
        {
            return Vec::new();
        }
        let (hurried, kept): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut waiting.jobs)
            .into_iter()
            .partition(|(_, j)| j.token == token && ino.is_none_or(|i| j.ino == i));
        waiting.bytes = kept.iter().map(|(_, j)| j.size).sum();
        waiting.jobs = kept;
        hurried.into_iter().map(|(_, j)| j).collect()
    }

    /// Jobs waiting out their delay (tests).
    #[cfg(test)]
    fn waiting_jobs(&self) -> usize {
        self.waiting().jobs.len()
    }

    /// Hand each job whose delay ended to `release`, until `cancel` fires.
    pub async fn run(
        &self,
        cancel: &tokio_util::sync::CancellationToken,
        mut release: impl FnMut(Job),
    ) {
        loop {
            let arrived = self.arrived.notified();
            let (due, next) = self.due(Instant::now());
            for job in due {
                release(job);
            }
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => arrived.await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = sleep => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::data::staged::StagedFile;
    use std::sync::Arc;

    fn job(token: TokenId, ino: Ino, dir: &std::path::Path) -> Job {
        Job {
            token,
            ino,
            version: 1,
            path: String::new(),
            staged: Arc::new(StagedFile::create(dir).unwrap()),
            size: 1,
            live: None,
        }
    }

    #[test]
    fn no_delay_gives_the_job_back_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let wb = Writeback::new(Duration::ZERO);
        assert!(wb.hold(job(1, 2, dir.path())).is_some());
        assert_eq!(wb.waiting_jobs(), 0);
    }

    #[test]
    fn jobs_wait_their_delay_and_hurry_takes_only_what_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let wb = Writeback::new(Duration::from_secs(60));
        for (token, ino) in [(1, 10), (1, 11), (2, 20)] {
            assert!(wb.hold(job(token, ino, dir.path())).is_none());
        }
        let (due, next) = wb.due(Instant::now());
        assert!(due.is_empty());
        assert!(next.is_some_and(|at| at > Instant::now() + Duration::from_secs(50)));
        let one: Vec<Ino> = wb.hurry(1, Some(11)).iter().map(|j| j.ino).collect();
        assert_eq!(one, vec![11]);
        let rest: Vec<Ino> = wb.hurry(1, None).iter().map(|j| j.ino).collect();
        assert_eq!(rest, vec![10]);
        assert_eq!(wb.waiting_jobs(), 1);
        let (due, _) = wb.due(Instant::now() + Duration::from_secs(61));
        assert_eq!(due.iter().map(|j| j.ino).collect::<Vec<_>>(), vec![20]);
        assert_eq!(wb.waiting_jobs(), 0);
    }

    #[test]
    fn beyond_the_bound_the_oldest_leave_before_their_delay() {
        let dir = tempfile::tempdir().unwrap();
        let wb = Writeback::new(Duration::from_secs(60));
        let extra = 5;
        for ino in 0..(WAITING_FILES + extra) as Ino {
            assert!(wb.hold(job(1, ino, dir.path())).is_none());
        }
        let (due, next) = wb.due(Instant::now());
        assert_eq!(
            due.iter().map(|j| j.ino).collect::<Vec<_>>(),
            (0..extra as Ino).collect::<Vec<_>>(),
            "the oldest leave, in order"
        );
        assert_eq!(wb.waiting_jobs(), WAITING_FILES);
        assert!(next.is_some_and(|at| at > Instant::now() + Duration::from_secs(50)));
        // Bytes bound the wait too: one large version pushes out what is older.
        let mut big = job(1, 99_999, dir.path());
        big.size = WAITING_BYTES;
        assert!(wb.hold(big).is_none());
        let (due, _) = wb.due(Instant::now());
        assert!(!due.is_empty() && due.iter().all(|j| j.ino != 99_999));
        assert!(wb.waiting().bytes <= WAITING_BYTES);
        assert!(wb.waiting().jobs.len() <= WAITING_FILES);
    }
}
