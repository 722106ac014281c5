//! The upload queue: closed versions go to the node in the background, several at once
//! (`upload.parallelism`), small files batched into one request. Errors are retried with
//! backoff (capped at `MAX_BACKOFF`) for as long as it takes; the data stays staged
//! meanwhile, so a node outage never fails a write that was already accepted. An outage is
//! logged once (see `outage`), not once per attempt.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use super::Fs;
use super::backoff::Backoff;
use super::content;
use super::inode::{Ino, TokenId};
use super::live::LiveUpload;
use super::staged::StagedFile;
use super::store::{Blob, LastUpload};

/// At most this many small files per batch request.
const BATCH_FILES: usize = 64;
/// And at most this many bytes.
const BATCH_BYTES: u64 = 8 << 20;
/// Batches of small files uploading at once. Few, so that while they are out the next
/// files pile up into the next batch: one request (and one flush on the node) per batch
/// rather than per file.
const SMALL_LANES: usize = 2;
/// Short enough that uploads resume within seconds of the node coming back.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// One closed version of a file to upload.
#[derive(Debug, Clone)]
pub struct Job {
    pub token: TokenId,
    pub ino: Ino,
    /// The file's version at close; a newer close makes this job moot.
    pub version: u64,
    /// The file's path when closed, escaped: for messages only.
    pub path: String,
    pub staged: Arc<StagedFile>,
    pub size: u64,
    /// Its upload while it was written, if it had one.
    pub live: Option<Arc<LiveUpload>>,
}

#[derive(Debug)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    files: AtomicU64,
    bytes: AtomicU64,
    /// The same per token (files, bytes), for `pxfs status`.
    per_token: std::sync::Mutex<std::collections::HashMap<TokenId, (u64, u64)>>,
}

impl Queue {
    pub fn new() -> (Queue, mpsc::UnboundedReceiver<Job>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Queue {
                tx,
                files: AtomicU64::new(0),
                bytes: AtomicU64::new(0),
                per_token: Default::default(),
            },
            rx,
        )
    }

    pub fn push(&self, job: Job) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(job.size, Ordering::Relaxed);
        {
            let mut per = self.per_token();
            let e = per.entry(job.token).or_default();
            e.0 += 1;
            e.1 += job.size;
        }
        if self.tx.send(job).is_err() {
            // Workers are gone (shutting down): the journal re-queues it at next mount.
            tracing::debug!("upload queue closed");
        }
    }

    /// Files and bytes queued or uploading.
    pub fn pending(&self) -> (u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Files and bytes of `token` queued or uploading.
    pub fn pending_of(&self, token: TokenId) -> (u64, u64) {
        self.per_token().get(&token).copied().unwrap_or_default()
    }

    fn per_token(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<TokenId, (u64, u64)>> {
        self.per_token.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self, job: &Job) {
        self.files.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(job.size, Ordering::Relaxed);
        let mut per = self.per_token();
        if let Some(e) = per.get_mut(&job.token) {
            e.0 = e.0.saturating_sub(1);
            e.1 = e.1.saturating_sub(job.size);
            if e.0 == 0 {
                per.remove(&job.token);
            }
        }
    }
}

pub(crate) fn spawn_workers(fs: Fs, mut rx: mpsc::UnboundedReceiver<Job>) {
    let cancel = fs.inner.cancel.clone();
    let permits = Arc::new(Semaphore::new(fs.config().upload_parallelism.max(1)));
    let lanes = Arc::new(Semaphore::new(
        SMALL_LANES.min(fs.config().upload_parallelism).max(1),
    ));
    let small = fs.config().small_file_limit;
    tokio::spawn(async move {
        let mut held: Option<Job> = None;
        loop {
            let first = match held.take() {
                Some(j) => j,
                None => tokio::select! {
                    _ = cancel.cancelled() => return,
                    j = rx.recv() => match j { Some(j) => j, None => return },
                },
            };
            let gate = if first.size <= small {
                &lanes
            } else {
                &permits
            };
            let permit = tokio::select! {
                _ = cancel.cancelled() => return,
                p = gate.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            };
            // Waiting for a permit lets small files pile up: take them all in one batch.
            let mut batch = vec![first];
            if batch[0].size <= small {
                let mut bytes = batch[0].size;
                while batch.len() < BATCH_FILES && bytes < BATCH_BYTES {
                    match rx.try_recv() {
                        // One token per batch: each token seals with its own keys.
                        Ok(j) if j.size <= small && j.token == batch[0].token => {
                            bytes += j.size;
                            batch.push(j);
                        }
                        Ok(j) => {
                            held = Some(j);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            let fs = fs.clone();
            tokio::spawn(async move {
                upload(&fs, batch).await;
                drop(permit);
            });
        }
    });
}

/// One request per sNFT: each may have its own node (PollinationX's hosted nodes). The
/// sNFTs' uploads run side by side, so one whose node is down holds back no other.
async fn upload(fs: &Fs, batch: Vec<Job>) {
    let mut by_token: std::collections::BTreeMap<TokenId, Vec<Job>> = Default::default();
    for job in batch {
        by_token.entry(job.token).or_default().push(job);
    }
    futures::future::join_all(by_token.into_values().map(|jobs| upload_token(fs, jobs))).await;
}

async fn upload_token(fs: &Fs, batch: Vec<Job>) {
    let mut next = batch;
    let mut backoff = Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
    loop {
        // Jobs whose staged file cannot be read wait here, so that they do not hold back
        // the rest of their batch; they are retried until they succeed or become moot.
        let stuck = upload_batch(fs, next).await;
        if stuck.is_empty() || !backoff.wait_unless(&fs.inner.cancel).await {
            return;
        }
        next = stuck;
    }
}

/// Upload `batch`, retrying node errors; returns the jobs split off because their staged
/// file cannot be read (a local fault), for the caller to retry.
async fn upload_batch(fs: &Fs, batch: Vec<Job>) -> Vec<Job> {
    // Uploaded while it was written: done once the last bytes are in. (Even when a newer
    // version made it moot: `finish` then records the CID as superseded, to be unpinned.)
    if let [job] = &batch[..]
        && let Some(live) = &job.live
        && let Some((cid, salt)) = live.finish().await
    {
        let blob = Blob {
            cid,
            size: job.size,
            salt,
        };
        finish(fs, job, Some(blob));
        fs.inner.outage.succeeded(fs.pending());
        return Vec::new();
    }
    let mut stuck = Vec::new();
    let mut backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
    let mut batch = batch;
    // Holds the `Outage` entry while this batch fails for a reason that is not an outage.
    let _failing = Failing::new(fs);
    loop {
        // Drop jobs a newer close or an unlink made moot before spending a request on them.
        let (live, moot): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|j| is_current(fs, j));
        for j in moot {
            finish(fs, &j, None);
        }
        if live.is_empty() {
            // Whatever stopped these (a staged file deleted under us) is moot too.
            if stuck.is_empty() {
                fs.inner.outage.local_ok("upload");
            }
            return stuck;
        }
        let started = std::time::Instant::now();
        // A batch holds one token's jobs (see `spawn_workers`).
        let sealing = fs.sealing(Some(live[0].token));
        let result = if live.len() == 1 {
            content::add_file(
                &*fs.store_of(Some(live[0].token)),
                &sealing,
                live[0].staged.path(),
                live[0].size,
            )
            .await
            .map(|b| vec![b])
        } else {
            let paths: Vec<_> = live.iter().map(|j| j.staged.path().to_path_buf()).collect();
            content::add_files(&*fs.store_of(Some(live[0].token)), &sealing, &paths).await
        };
        match result {
            Ok(blobs) if blobs.len() == live.len() => {
                for (j, b) in live.iter().zip(blobs) {
                    finish(fs, j, Some(b));
                }
                fs.inner.outage.succeeded(fs.pending());
                if stuck.is_empty() {
                    fs.inner.outage.local_ok("upload");
                }
                return stuck;
            }
            Ok(blobs) => _failing.failed(
                live.len(),
                &format!(
                    "node answered a batch add of {} files with {} results",
                    live.len(),
                    blobs.len()
                ),
            ),
            Err(e) => {
                let (bad, good): (Vec<Job>, Vec<Job>) =
                    live.iter().cloned().partition(|j| unreadable(j).is_some());
                if let Some(why) = bad.first().and_then(unreadable) {
                    tracing::debug!(error = %e, "upload failed for a local reason");
                    fs.inner.outage.local_failed("upload", &why);
                    stuck.extend(bad);
                    // The others go again at once.
                    batch = good;
                    continue;
                } else if e.transient {
                    fs.inner.outage.failed("upload", started, &e);
                } else {
                    _failing.failed(live.len(), &e);
                }
            }
        }
        if !backoff.wait_unless(&fs.inner.cancel).await {
            return stuck;
        }
        batch = live;
    }
}

/// An upload batch failing with an error that is neither an outage nor a local fault (the
/// node refusing it, content that does not seal): reported to `Outage` (logged once, shown
/// by `pxfs status`, `fsync` gives up after the grace) until the batch ends, whether it
/// succeeded, became moot or the mount stops.
struct Failing<'a> {
    fs: &'a Fs,
    id: u64,
}

impl<'a> Failing<'a> {
    fn new(fs: &'a Fs) -> Failing<'a> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Failing {
            fs,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn failed(&self, files: usize, error: &dyn std::fmt::Display) {
        tracing::debug!(files, error = %error, "upload failed; data stays staged and is retried");
        self.fs.inner.outage.stuck("upload", self.id, error);
    }
}

impl Drop for Failing<'_> {
    fn drop(&mut self) {
        self.fs.inner.outage.unstuck("upload", self.id);
    }
}

/// Why a job's upload cannot read its input, if it cannot: its staged file is gone or
/// unreadable (deleted under the mount, too many open files, a failing cache disk).
fn unreadable(job: &Job) -> Option<String> {
    std::fs::File::open(job.staged.path()).err().map(|e| {
        format!(
            "staged file {} of {}: {e}",
            job.staged.path().display(),
            job.path
        )
    })
}

/// The job's version is still the file's newest, and the file still has a name (an
/// unlinked file is in no commit).
fn is_current(fs: &Fs, job: &Job) -> bool {
    let tree = fs.tree();
    tree.get(job.ino)
        .ok()
        .filter(|i| !i.links.is_empty())
        .and_then(|i| i.file())
        .is_some_and(|f| f.version == job.version)
}

/// Record an upload's result (`None`: the job was moot).
fn finish(fs: &Fs, job: &Job, blob: Option<Blob>) {
    fs.inner.uploads.done(job);
    {
        let mut guard = fs.tree();
        let tree = &mut *guard;
        if let Ok(t) = tree.token_mut(job.token) {
            t.pending_uploads = t.pending_uploads.saturating_sub(1);
        }
        if let Some(blob) = blob {
            let current = tree
                .get_mut(job.ino)
                .ok()
                .and_then(|i| i.file_mut())
                .filter(|f| f.version == job.version);
            let mut superseded = None;
            let applied = match current {
                Some(f) => {
                    if let Some(old) = f.blob.replace(blob.clone())
                        && old.cid != blob.cid
                    {
                        superseded = Some(old.cid);
                    }
                    f.upload_pending = false;
                    true
                }
                None => {
                    superseded = Some(blob.cid.clone());
                    false
                }
            };
            if applied {
                tree.stored_inode_changed(job.ino);
                tree.recharge(job.ino, false);
            }
            // The v1 usage document holds the path as a string: shown escaped.
            let path = tree.display_path(job.ino);
            if let Ok(t) = tree.token_mut(job.token) {
                t.superseded.extend(superseded);
                if applied {
                    t.last_upload = Some(LastUpload {
                        path,
                        cid: blob.cid,
                        size: blob.size,
                    });
                }
            }
        }
    }
    fs.inner.progress.notify_waiters();
}
