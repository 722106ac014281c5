//! Live uploads: a file written sequentially from empty is sent to the node while it is
//! being written, so that `close`/`fsync` of a large file waits only for the last bytes,
//! not for the whole upload after the whole write.
//!
//! A session that starts empty gets a [`LiveUpload`]. Each write at the current end moves
//! it forward; once it passes [`START_BYTES`] (larger than the small-file batches) the
//! upload starts: the file's 128 KiB chunks (docs/FORMAT.md §13) are sealed and added in
//! batches as the writer passes them, and the chunk table at the close. Anything
//! else (a write elsewhere, a truncate, an unlink, a writer idle for [`IDLE_LIMIT`]) abandons
//! it, and the version is uploaded from its staged file after the close as usual. The
//! staged file and the journal are the same either way, so crash recovery does not change.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::format::chunks::{self, ChunkRef};
use crate::fs::data::chunked;
use crate::fs::data::content::Sealing;
use crate::fs::data::staged::StagedFile;
use crate::fs::store::{Blob, ChunkTable, ContentStore, StoreError, Stored};

/// Files smaller than this are uploaded after their close (in batches when small).
pub const START_BYTES: u64 = 4 << 20;
/// Chunks added per request while the file is written (1 MiB); a few requests are out at
/// once (`chunked::Adds`): what a close may still have to send is those and the last
/// partial batch.
const LIVE_BATCH: u64 = 16;
/// A writer that adds nothing for this long loses its live upload (the request would
/// otherwise stay open indefinitely); its version is uploaded after the close instead.
const IDLE_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, Default)]
struct Tail {
    /// Bytes written so far, all of them in order from 0.
    end: u64,
    /// The session was closed at `end`.
    closed: bool,
    abandoned: bool,
}

/// The live upload of one write session.
#[derive(Debug)]
pub struct LiveUpload {
    staged: Arc<StagedFile>,
    tail: watch::Sender<Tail>,
    started: AtomicBool,
    task: Mutex<Option<JoinHandle<Result<Blob, StoreError>>>>,
    /// Stops the upload even once `finish` holds its task (a version that became moot).
    abort: Mutex<Option<AbortHandle>>,
    /// The CIDs of the chunks and table pages added so far.
    added: Mutex<Vec<String>>,
    /// The upload ended and its blob was taken: what it added is the version's.
    done: AtomicBool,
    /// The version handed over before the node answered its last adds (`finish`).
    hand_over: Mutex<Option<oneshot::Sender<(Blob, Stored)>>>,
    handed: Mutex<Option<oneshot::Receiver<(Blob, Stored)>>>,
}

/// A live upload's version: its content, and whether it is stored yet (`None`: it is; a
/// [`Stored`] to wait for when it was handed over with its last adds still out).
#[derive(Debug)]
pub struct Finished {
    pub blob: Blob,
    pub stored: Option<Stored>,
}

impl LiveUpload {
    /// For a session whose staged file starts empty.
    pub fn new(staged: Arc<StagedFile>) -> Arc<LiveUpload> {
        let (hand_over, handed) = oneshot::channel();
        Arc::new(LiveUpload {
            staged,
            tail: watch::Sender::new(Tail::default()),
            started: AtomicBool::new(false),
            task: Mutex::new(None),
            abort: Mutex::new(None),
            added: Mutex::new(Vec::new()),
            done: AtomicBool::new(false),
            hand_over: Mutex::new(Some(hand_over)),
            handed: Mutex::new(Some(handed)),
        })
    }

    /// `len` bytes were written at `offset`. True when the upload should start now.
    pub fn wrote(&self, offset: u64, len: u64) -> bool {
        let mut start = false;
        self.tail.send_if_modified(|t| {
            if t.abandoned || t.closed {
                return false;
            }
            if offset != t.end {
                t.abandoned = true;
                return true;
            }
            t.end += len;
            start = t.end >= START_BYTES && !self.started.load(Ordering::Relaxed);
            len > 0
        });
        start
    }

    /// The session's size was set to `size`: fine while nothing is sent yet (an `O_TRUNC`
    /// of a new file), otherwise the sent bytes no longer match.
    pub fn resized(&self, size: u64) {
        self.tail.send_if_modified(|t| {
            if t.abandoned || size == t.end {
                return false;
            }
            if size == 0 && !self.started.load(Ordering::Relaxed) {
                t.end = 0;
            } else {
                t.abandoned = true;
            }
            true
        });
    }

    /// An `add` was started for it (a version without one uploads after its close).
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Relaxed)
    }

    /// The session was closed: the content ends here.
    pub fn close(&self) {
        self.tail.send_modify(|t| t.closed = true);
    }

    /// The session will not become a version (unlinked), or the upload is given up.
    pub fn abandon(&self) {
        self.tail.send_modify(|t| t.abandoned = true);
    }

    /// Start the upload on `rt`, holding `permit` (the bound on live uploads) until it
    /// ends. The content is stored as chunks (docs/FORMAT.md §13), sent in batches as the
    /// writer passes them, each chunk sealed under its own fresh salt in an encrypted tree;
    /// the table is built at the close.
    pub fn start(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        store: Arc<dyn ContentStore>,
        sealing: Sealing,
        pages: Arc<crate::fs::data::pages::PageCache>,
        permit: OwnedSemaphorePermit,
    ) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        let this = self.clone();
        let task = rt.spawn(async move {
            let r = this.upload(&store, &sealing, &pages).await;
            drop(permit);
            r
        });
        *self.abort.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        *self.lock_task() = Some(task);
    }

    /// The chunks as the writer passes them, then the table.
    async fn upload(
        &self,
        store: &Arc<dyn ContentStore>,
        sealing: &Sealing,
        cache: &crate::fs::data::pages::PageCache,
    ) -> Result<Blob, StoreError> {
        let mut rx = self.tail.subscribe();
        let mut refs: BTreeMap<u64, ChunkRef> = BTreeMap::new();
        let mut next = 0u64;
        let mut adds = chunked::Adds::new(store.clone());
        let store = &**store;
        loop {
            let t = *rx.borrow_and_update();
            if t.abandoned {
                // The adds out still land on the node: their answers are taken, so that
                // what they added is given back with the rest (`orphans`).
                self.drain(&mut adds, &mut refs).await;
                return Err(StoreError::permanent("live upload abandoned"));
            }
            // The chunks whose bytes are final: every full one, and at the close the last.
            let ready = match t.closed {
                true => chunks::chunk_count(t.end),
                false => t.end / chunks::CHUNK,
            };
            if ready - next >= LIVE_BATCH || (t.closed && ready > next) {
                let upto = ready.min(next + LIVE_BATCH);
                let (staged, crypto, from) = (self.staged.clone(), sealing.clone(), next);
                let prepare = move || chunked::prepare_batch(&staged, &crypto, from, upto, t.end);
                let added = adds.push_prepared(prepare, &mut refs).await?;
                self.note_added(added);
                next = upto;
                continue;
            }
            if t.closed {
                return self.end(adds, refs, store, sealing, cache, t.end).await;
            }
            // Wait for the writer, meanwhile taking the answers of the adds out.
            tokio::select! {
                changed = tokio::time::timeout(IDLE_LIMIT, rx.changed()) => match changed {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(StoreError::permanent("live upload dropped")),
                    Err(_) => {
                        self.abandon();
                        self.drain(&mut adds, &mut refs).await;
                        return Err(StoreError::permanent("writer idle; upload after close"));
                    }
                },
                added = adds.next(&mut refs), if adds.busy() => self.note_added(added?),
            }
        }
    }

    /// The close: the last chunk adds are out; the table goes with them and the version
    /// is handed over at once ([`LiveUpload::finish`]) with a [`Stored`] that tells once
    /// the node answered every add: the commit holding the version sends its own objects
    /// meanwhile and publishes once it is stored, a round trip less over a slow link. The
    /// table is built from the CIDs the chunks' bytes give; an add the node answers with
    /// other CIDs fails the upload, and `Stored` with it. A store that cannot name CIDs
    /// beforehand gets the table after the answers, and the version once all is stored.
    async fn end(
        &self,
        mut adds: chunked::Adds,
        mut refs: BTreeMap<u64, ChunkRef>,
        store: &dyn ContentStore,
        sealing: &Sealing,
        cache: &crate::fs::data::pages::PageCache,
        size: u64,
    ) -> Result<Blob, StoreError> {
        let Some((out, told)) = adds.expected().await else {
            self.note_added(adds.finish(&mut refs).await?);
            let (top, pages) = chunked::build_table(store, sealing, cache, &refs).await?;
            self.note_added(pages.iter().map(|(c, _)| c.clone()).collect());
            let table = ChunkTable {
                chunks: refs,
                pages,
                invalid: None,
                plain: adds.take_digests(),
            };
            return Ok(Blob::chunked(top, size, table));
        };
        let mut expected = refs.clone();
        expected.extend(out);
        let chunked::PlannedTable { top, pages, to_add } =
            chunked::plan_table(store, sealing, cache, &expected)?;
        let mut plain = adds.take_digests();
        plain.extend(told);
        let table = ChunkTable {
            chunks: expected.clone(),
            pages: pages.clone(),
            invalid: None,
            plain,
        };
        let blob = Blob::chunked(top, size, table);
        let (tell, stored) = Stored::new();
        if let Some(h) = self
            .hand_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            let _ = h.send((blob.clone(), stored));
        }
        let none = HashSet::new();
        let (added, table) = tokio::join!(adds.finish(&mut refs), to_add.add(store, cache, &none));
        if table.is_ok() {
            self.note_added(pages.iter().map(|(c, _)| c.clone()).collect());
        }
        let result = added.map(|added| self.note_added(added)).and(table);
        let result = result.and_then(|()| match refs == expected {
            true => Ok(()),
            false => Err(StoreError::permanent(
                "the node named chunks otherwise than their bytes",
            )),
        });
        if result.is_ok() {
            // What it added is the version's (before anyone hears it is stored).
            self.done.store(true, Ordering::Relaxed);
        }
        tell.tell(result.clone());
        result.map(|()| blob)
    }

    /// The answers of the adds still out, noted (a failed one added nothing to note).
    async fn drain(&self, adds: &mut chunked::Adds, refs: &mut BTreeMap<u64, ChunkRef>) {
        while adds.busy() {
            match adds.next(refs).await {
                Ok(added) => self.note_added(added),
                Err(e) => tracing::debug!(error = %e, "an abandoned live upload's add failed"),
            }
        }
    }

    fn note_added(&self, cids: Vec<String>) {
        self.added
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(cids);
    }

    /// The version became moot while its upload was out: stop it (what it added is given
    /// back by [`LiveUpload::orphans`]).
    pub fn cancel(&self) {
        self.abandon();
        if let Some(a) = self.abort.lock().unwrap_or_else(|e| e.into_inner()).take() {
            a.abort();
        }
    }

    /// The closed session's content, if its live upload ran to the end or handed its
    /// version over with its last adds out ([`Finished::stored`]); `None` when it never
    /// started, was abandoned or failed (the caller uploads the staged file, and unpins
    /// the [`LiveUpload::orphans`]).
    pub async fn finish(&self) -> Option<Finished> {
        let mut task = self.lock_task().take()?;
        let tail = *self.tail.borrow();
        if tail.abandoned {
            // It ends by itself once the answers of its adds out are in, noted for
            // `orphans` (aborted, what they stored would stay pinned on the node).
            let _ = task.await;
            return None;
        }
        if !tail.closed {
            task.abort();
            return None;
        }
        let handed = self.handed.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut handed) = handed {
            tokio::select! {
                biased;
                h = &mut handed => if let Ok((blob, stored)) = h {
                    // The task goes on: the answers tell `stored`.
                    return Some(Finished { blob, stored: Some(stored) });
                },
                ended = &mut task => return self.ended(ended),
            }
        }
        self.ended(task.await)
    }

    fn ended(
        &self,
        ended: Result<Result<Blob, StoreError>, tokio::task::JoinError>,
    ) -> Option<Finished> {
        match ended {
            Ok(Ok(blob)) => {
                self.done.store(true, Ordering::Relaxed);
                Some(Finished { blob, stored: None })
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "live upload failed; uploading the staged file");
                None
            }
            Err(_) => None,
        }
    }

    /// What an upload that did not end (cancelled, abandoned, failed) added to the node:
    /// no version refers to it, so it is unpinned with what the next commit supersedes.
    pub fn orphans(&self) -> Vec<String> {
        if self.done.load(Ordering::Relaxed) {
            return Vec::new();
        }
        std::mem::take(&mut *self.added.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn lock_task(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<Result<Blob, StoreError>>>> {
        self.task.lock().unwrap_or_else(|e| e.into_inner())
    }
}
