//! The uploader: closed versions go to the node in the background, several at once
//! (`upload.parallelism`), small files batched into one request. Errors are retried with
//! backoff (capped at `MAX_BACKOFF`) for as long as it takes; the data stays staged
//! meanwhile, so a node outage never fails a write that was already accepted. An outage is
//! logged once (see `outage`), not once per attempt.
//!
//! Small files first wait out the write-back delay (`writeback`): churn cancels itself there.
//!
//! The [`Uploader`] owns its queue and uploads through the node client ([`Stores`]); it
//! never edits the tree. What it needs from the core (is a job still worth uploading, here
//! is its result) goes through [`UploadResults`], which the core implements (`uploaded`).
//! May use `fs::model`, `fs::data` and the base; never `fs::persist` or `fs::ops::namespace`.

pub(in crate::fs) mod uploaded;
pub(in crate::fs) mod writeback;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};

use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::fs::data::chunked;
use crate::fs::data::content::{self, Sealing};
use crate::fs::data::live::{Finished, LiveUpload};
use crate::fs::data::outage::Outage;
use crate::fs::data::staged::StagedFile;
use crate::fs::data::stores::Stores;
use crate::fs::model::inode::{Ino, TokenId};
use crate::fs::store::{Blob, Stored};
use crate::fs::upload::writeback::Writeback;

/// At most this many small files per batch request.
const BATCH_FILES: usize = 64;
/// And at most this many bytes.
const BATCH_BYTES: u64 = 8 << 20;
/// Batches of small files uploading at once. Few, so that while they are out the next
/// files pile up into the next batch: one request (and one flush on the node) per batch
/// rather than per file.
const SMALL_LANES: usize = 2;
/// More lanes, taken only by a batch that is full already: waiting would pile up nothing
/// more, and over a link with latency two requests out at a time cap the rate (64 files per
/// round trip and lane).
const FULL_BATCH_LANES: usize = 4;
/// Short enough that uploads resume within seconds of the node coming back.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an upload in flight looks whether its versions became moot (deleted or
/// superseded), to cancel it. A look is one lookup per job under the tree's lock.
const MOOT_CHECK: Duration = Duration::from_millis(250);

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

impl Job {
    /// What the version holds on the cache disk until it is uploaded: the file, or an
    /// overlay's present chunks (fixed once closed).
    fn staged_bytes(&self) -> u64 {
        match self.staged.overlay() {
            Some(o) => {
                (o.state().present.len() as u64 * crate::format::chunks::CHUNK).min(self.size)
            }
            None => self.size,
        }
    }
}

/// What the uploader asks of the core, and tells it.
pub(crate) trait UploadResults: Send + Sync + 'static {
    /// The job's version is still worth uploading (no newer close, the file has a name).
    fn is_current(&self, job: &Job) -> bool;
    /// How `token` stores content now.
    fn sealing(&self, token: TokenId) -> Sealing;
    /// The job is done: uploaded as `blob`, or moot (`None`).
    fn uploaded(&self, job: &Job, blob: Option<Blob>);
    /// The job's version is `blob`, whose last adds the node has not answered yet: in the
    /// tree now if still current (true), for commits to publish once `stored` says so.
    /// [`UploadResults::stored`] follows.
    fn uploaded_unstored(&self, job: &Job, blob: &Blob, stored: &Stored) -> bool;
    /// The node answered the last adds of a version [`UploadResults::uploaded_unstored`]
    /// put in the tree: all stored (`ok`), or not, and then the file's previous blob is put
    /// back if it is still this version (to be uploaded again).
    fn stored(&self, job: &Job, blob: &Blob, ok: bool) -> Answered;
    /// The file's version on the node that the job's version replaces: what a chunked
    /// upload reuses (docs/FORMAT.md §13.1).
    fn base(&self, job: &Job) -> Option<Blob>;
    /// Pages recently written or read: a chunk table is updated from its previous version's.
    fn pages(&self) -> &crate::fs::data::pages::PageCache;
    /// Objects an upload added that no version refers to (a live upload that did not end):
    /// unpinned with what the next commit supersedes.
    fn orphaned(&self, job: &Job, cids: Vec<String>);
}

/// What became of a version handed over before it was stored ([`UploadResults::stored`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answered {
    /// All on the node: the job is done.
    Stored,
    /// Not stored, and the file's version still: uploaded again from its staged file.
    Again,
    /// Not stored, but moot meanwhile (a newer close, an unlink): the job is done.
    Moot,
}

/// The queue of closed versions and the workers that upload them.
pub(crate) struct Uploader {
    queue: Queue,
    writeback: Writeback,
    stores: Arc<Stores>,
    outage: Arc<Outage>,
    cancel: CancellationToken,
    parallelism: usize,
    small_file_limit: u64,
}

#[derive(Debug)]
struct Queue {
    tx: mpsc::UnboundedSender<Job>,
    files: AtomicU64,
    bytes: AtomicU64,
    /// The same per token (files, bytes), for `pxfs status`.
    per_token: std::sync::Mutex<std::collections::HashMap<TokenId, (u64, u64)>>,
}

impl Queue {
    fn new() -> (Queue, mpsc::UnboundedReceiver<Job>) {
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

    /// Count `job` as queued (from its close until it is done, its delay included).
    fn count(&self, job: &Job) {
        self.files.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(job.staged_bytes(), Ordering::Relaxed);
        {
            let mut per = self.per_token();
            let e = per.entry(job.token).or_default();
            e.0 += 1;
            e.1 += job.staged_bytes();
        }
    }

    /// Hand a counted job to the workers.
    fn send(&self, job: Job) {
        if self.tx.send(job).is_err() {
            // Workers are gone (shutting down): the journal re-queues it at next mount.
            tracing::debug!("upload queue closed");
        }
    }

    /// Files and bytes queued or uploading.
    fn pending(&self) -> (u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }

    /// Files and bytes of `token` queued or uploading.
    fn pending_of(&self, token: TokenId) -> (u64, u64) {
        self.per_token().get(&token).copied().unwrap_or_default()
    }

    fn per_token(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<TokenId, (u64, u64)>> {
        self.per_token.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self, job: &Job) {
        self.files.fetch_sub(1, Ordering::Relaxed);
        self.bytes.fetch_sub(job.staged_bytes(), Ordering::Relaxed);
        let mut per = self.per_token();
        if let Some(e) = per.get_mut(&job.token) {
            e.0 = e.0.saturating_sub(1);
            e.1 = e.1.saturating_sub(job.staged_bytes());
            if e.0 == 0 {
                per.remove(&job.token);
            }
        }
    }
}

type Results = Arc<dyn UploadResults>;

impl Uploader {
    /// An uploader and the receiving end of its queue, for [`Uploader::start`].
    pub fn new(
        stores: Arc<Stores>,
        outage: Arc<Outage>,
        cancel: CancellationToken,
        parallelism: usize,
        small_file_limit: u64,
        writeback_delay: Duration,
    ) -> (Arc<Uploader>, mpsc::UnboundedReceiver<Job>) {
        let (queue, rx) = Queue::new();
        let up = Uploader {
            queue,
            writeback: Writeback::new(writeback_delay),
            stores,
            outage,
            cancel,
            parallelism: parallelism.max(1),
            small_file_limit,
        };
        (Arc::new(up), rx)
    }

    /// Queue a closed version for upload: a small one after the write-back delay.
    pub fn push(&self, job: Job) {
        self.queue.count(&job);
        // A live upload already on its way is not held back (small files never start one).
        let delayed =
            job.size <= self.small_file_limit && job.live.as_ref().is_none_or(|l| !l.is_started());
        let job = if delayed {
            self.writeback.hold(job)
        } else {
            Some(job)
        };
        if let Some(job) = job {
            self.queue.send(job);
        }
    }

    /// Start the uploads of `token`'s closed versions (of file `ino` only, if given) that
    /// wait out the write-back delay: something waits for them to be durable.
    pub fn hurry(&self, token: TokenId, ino: Option<Ino>) {
        for job in self.writeback.hurry(token, ino) {
            self.queue.send(job);
        }
    }

    /// Files and bytes queued or uploading.
    pub fn pending(&self) -> (u64, u64) {
        self.queue.pending()
    }

    /// Files and bytes of `token` queued or uploading.
    pub fn pending_of(&self, token: TokenId) -> (u64, u64) {
        self.queue.pending_of(token)
    }

    /// Start the workers: they take jobs from `rx` until the mount stops, and report each
    /// job's end to `results`.
    pub fn start(self: &Arc<Self>, mut rx: mpsc::UnboundedReceiver<Job>, results: Results) {
        // Versions whose delay ended: moot ones end here, with no request; the rest queue.
        let (up, res) = (self.clone(), results.clone());
        tokio::spawn(async move {
            up.writeback
                .run(&up.cancel, |job| {
                    if res.is_current(&job) {
                        up.queue.send(job);
                    } else {
                        up.finish(&*res, &job, None);
                    }
                })
                .await;
        });
        let up = self.clone();
        let permits = Arc::new(Semaphore::new(up.parallelism));
        let lanes = Arc::new(Semaphore::new(SMALL_LANES.min(up.parallelism)));
        let full_lanes = Arc::new(Semaphore::new(FULL_BATCH_LANES));
        let small = up.small_file_limit;
        tokio::spawn(async move {
            let cancel = up.cancel.clone();
            let mut held: Option<Job> = None;
            loop {
                let first = match held.take() {
                    Some(j) => j,
                    None => tokio::select! {
                        _ = cancel.cancelled() => return,
                        j = rx.recv() => match j { Some(j) => j, None => return },
                    },
                };
                let gate = if batched(&first, small) {
                    &lanes
                } else {
                    &permits
                };
                // A full batch waiting takes a lane of its own if one is free.
                let full = batched(&first, small) && rx.len() + 1 >= BATCH_FILES;
                let spare = match full {
                    true => full_lanes.clone().try_acquire_owned().ok(),
                    false => None,
                };
                let permit = match spare {
                    Some(p) => p,
                    None => tokio::select! {
                        _ = cancel.cancelled() => return,
                        p = gate.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                    },
                };
                // Waiting for a permit lets small files pile up: take them all in one batch.
                let mut batch = vec![first];
                if batched(&batch[0], small) {
                    let mut bytes = batch[0].size;
                    while batch.len() < BATCH_FILES && bytes < BATCH_BYTES {
                        match rx.try_recv() {
                            // One token per batch: each token seals with its own keys.
                            Ok(j) if batched(&j, small) && j.token == batch[0].token => {
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
                let up = up.clone();
                let results = results.clone();
                tokio::spawn(async move {
                    up.upload(&*results, batch).await;
                    drop(permit);
                });
            }
        });
    }

    /// One request per sNFT: each may have its own node (PollinationX's hosted nodes). The
    /// sNFTs' uploads run side by side, so one whose node is down holds back no other.
    async fn upload(&self, results: &dyn UploadResults, batch: Vec<Job>) {
        let mut by_token: std::collections::BTreeMap<TokenId, Vec<Job>> = Default::default();
        for job in batch {
            by_token.entry(job.token).or_default().push(job);
        }
        futures::future::join_all(
            by_token
                .into_values()
                .map(|jobs| self.upload_token(results, jobs)),
        )
        .await;
    }

    async fn upload_token(&self, results: &dyn UploadResults, batch: Vec<Job>) {
        let mut next = batch;
        let mut backoff = Backoff::new(Duration::from_millis(500), MAX_BACKOFF);
        loop {
            // Jobs whose staged file cannot be read wait here, so that they do not hold back
            // the rest of their batch; they are retried until they succeed or become moot.
            let stuck = self.upload_batch(results, next).await;
            if stuck.is_empty() || !backoff.wait_unless(&self.cancel).await {
                return;
            }
            next = stuck;
        }
    }

    /// Upload `batch`, retrying node errors; returns the jobs split off because their staged
    /// file cannot be read (a local fault), for the caller to retry.
    async fn upload_batch(&self, results: &dyn UploadResults, batch: Vec<Job>) -> Vec<Job> {
        // Uploaded while it was written: done once the last bytes are in. One that becomes
        // moot (deleted, a newer close) before then is cancelled; one that ended first is
        // recorded by `finish` as superseded, to be unpinned.
        if let [job] = &batch[..]
            && let Some(live) = &job.live
        {
            match unless_moot(results, &batch, live.finish()).await {
                Some(Some(done)) if done.blob.size == job.size => {
                    if self.take_live(results, job, live, done).await {
                        self.outage.succeeded(self.pending());
                        return Vec::new();
                    }
                }
                // Not uploaded live: from the staged file below.
                Some(_) => {}
                // Moot in flight: the loop below drops it, staged copy and all.
                None => {
                    live.cancel();
                    tracing::debug!("live upload of a moot version cancelled");
                }
            }
            // What it added no version refers to.
            results.orphaned(job, live.orphans());
        }
        let mut stuck = Vec::new();
        let mut backoff = Backoff::new(Duration::from_millis(200), MAX_BACKOFF);
        let mut batch = batch;
        // Holds the `Outage` entry while this batch fails for a reason that is not an outage.
        let _failing = Failing::new(&self.outage);
        loop {
            // Drop jobs a newer close or an unlink made moot before spending a request on them.
            let (live, moot): (Vec<Job>, Vec<Job>) =
                batch.into_iter().partition(|j| results.is_current(j));
            for j in moot {
                self.finish(results, &j, None);
            }
            if live.is_empty() {
                // Whatever stopped these (a staged file deleted under us) is moot too.
                if stuck.is_empty() {
                    self.outage.local_ok("upload");
                }
                return stuck;
            }
            let started = std::time::Instant::now();
            // A batch holds one token's jobs (see `spawn_workers`).
            let store = self.stores.of(Some(live[0].token));
            let sealing = &results.sealing(live[0].token);
            let add = async {
                let overlay = live[0].staged.overlay();
                if live.len() == 1 && (chunked::stores_chunked(live[0].size) || overlay.is_some()) {
                    let base = results.base(&live[0]);
                    let version = chunked::Version {
                        path: live[0].staged.path(),
                        size: live[0].size,
                        overlay: overlay.map(|o| &**o),
                    };
                    chunked::add_chunked(&store, sealing, results.pages(), version, base.as_ref())
                        .await
                        .map(|b| vec![b])
                } else if live.len() == 1 {
                    content::add_file(&*store, sealing, live[0].staged.path(), live[0].size)
                        .await
                        .map(|b| vec![b])
                } else {
                    let paths: Vec<_> =
                        live.iter().map(|j| j.staged.path().to_path_buf()).collect();
                    content::add_files(&*store, sealing, &paths).await
                }
            };
            // Dropping the request when all of it became moot meanwhile: the node pins
            // nothing of an `add` that did not end, and the next turn of the loop drops the
            // jobs and their staged copies.
            let Some(result) = unless_moot(results, &live, add).await else {
                tracing::debug!(files = live.len(), "upload of moot versions cancelled");
                batch = live;
                continue;
            };
            match result {
                Ok(blobs) if blobs.len() == live.len() => {
                    for (j, b) in live.iter().zip(blobs) {
                        self.finish(results, j, Some(b));
                    }
                    self.outage.succeeded(self.pending());
                    if stuck.is_empty() {
                        self.outage.local_ok("upload");
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
                        self.outage.local_failed("upload", &why);
                        stuck.extend(bad);
                        // The others go again at once.
                        batch = good;
                        continue;
                    } else if e.transient {
                        self.outage.failed("upload", started, &e);
                    } else {
                        _failing.failed(live.len(), &e);
                    }
                }
            }
            if !backoff.wait_unless(&self.cancel).await {
                return stuck;
            }
            batch = live;
        }
    }

    /// A live upload's version: in the tree at once, if handed over with its last adds out
    /// (commits hold it but publish once it is stored); the job ends once it is stored.
    /// False when it is not: the job goes on from the staged file.
    async fn take_live(
        &self,
        results: &dyn UploadResults,
        job: &Job,
        live: &LiveUpload,
        done: Finished,
    ) -> bool {
        let Finished { blob, stored } = done;
        let Some(stored) = stored else {
            self.finish(results, job, Some(blob));
            return true;
        };
        if !results.uploaded_unstored(job, &blob, &stored) {
            // Moot, or the file's previous version is not known stored yet (what a failure
            // puts back must be): recorded as before, once the node has it all.
            if stored.wait().await.is_err() {
                return false;
            }
            self.finish(results, job, Some(blob));
            return true;
        }
        let ok = match stored.wait().await {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(error = %e, path = %job.path, "a live upload's last adds failed; uploading the staged file");
                false
            }
        };
        match results.stored(job, &blob, ok) {
            Answered::Stored => crate::metrics::uploaded(blob.size),
            Answered::Again => return false,
            // What it added no version refers to.
            Answered::Moot => results.orphaned(job, live.orphans()),
        }
        self.queue.done(job);
        true
    }

    /// A job ends: it leaves the queue, and the core records its result.
    fn finish(&self, results: &dyn UploadResults, job: &Job, blob: Option<Blob>) {
        blob.iter().for_each(|b| crate::metrics::uploaded(b.size));
        self.queue.done(job);
        results.uploaded(job, blob);
    }
}

/// A small version, uploaded in a batch with others as one whole object: one that is stored
/// as chunks (over one chunk, or an overlay) goes alone, whatever the small-file limit.
fn batched(job: &Job, small_file_limit: u64) -> bool {
    job.size <= small_file_limit
        && !chunked::stores_chunked(job.size)
        && job.staged.overlay().is_none()
}

/// `work` (an upload of `jobs`), or `None` once every one of `jobs` is moot: the work is
/// then dropped, whatever it had sent.
async fn unless_moot<T>(
    results: &dyn UploadResults,
    jobs: &[Job],
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    let moot = async {
        loop {
            tokio::time::sleep(MOOT_CHECK).await;
            if !jobs.iter().any(|j| results.is_current(j)) {
                return;
            }
        }
    };
    tokio::select! {
        r = work => Some(r),
        _ = moot => None,
    }
}

/// An upload batch failing with an error that is neither an outage nor a local fault (the
/// node refusing it, content that does not seal): reported to `Outage` (logged once, shown
/// by `pxfs status`, `fsync` gives up after the grace) until the batch ends, whether it
/// succeeded, became moot or the mount stops.
struct Failing<'a> {
    outage: &'a Outage,
    id: u64,
}

impl<'a> Failing<'a> {
    fn new(outage: &'a Outage) -> Failing<'a> {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Failing {
            outage,
            id: NEXT.fetch_add(1, Ordering::Relaxed),
        }
    }

    fn failed(&self, files: usize, error: &dyn std::fmt::Display) {
        tracing::debug!(files, error = %error, "upload failed; data stays staged and is retried");
        self.outage.stuck("upload", self.id, error);
    }
}

impl Drop for Failing<'_> {
    fn drop(&mut self) {
        self.outage.unstuck("upload", self.id);
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
