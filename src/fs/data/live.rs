//! Live uploads: a file written sequentially from empty is sent to the node while it is
//! being written, so that `close`/`fsync` of a large file waits only for the last bytes,
//! not for the whole upload after the whole write.
//!
//! A session that starts empty gets a [`LiveUpload`]. Each write at the current end moves
//! it forward; once it passes [`START_BYTES`] (larger than the small-file batches) an `add`
//! starts whose body follows the staged file as it grows and ends at the close. Anything
//! else (a write elsewhere, a truncate, an unlink, a writer idle for [`IDLE_LIMIT`]) abandons
//! it, and the version is uploaded from its staged file after the close as usual. The
//! staged file and the journal are the same either way, so crash recovery does not change.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::task::{AbortHandle, JoinHandle};

use crate::format::TreeCrypto;
use crate::format::seal::{ContentSalt, VersionKey};
use crate::fs::data::content::{Sealing, seal_stream};
use crate::fs::data::staged::StagedFile;
use crate::fs::store::{ContentStore, StoreError};

/// Files smaller than this are uploaded after their close (in batches when small).
pub const START_BYTES: u64 = 4 << 20;
/// Bytes read from the staged file per body chunk.
const READ_CHUNK: u64 = 1 << 20;
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
    task: Mutex<Option<JoinHandle<Result<String, StoreError>>>>,
    /// Stops the `add` even once `finish` holds its task (a version that became moot).
    abort: Mutex<Option<AbortHandle>>,
    /// The content salt the upload seals with (sealed trees).
    salt: Mutex<Option<ContentSalt>>,
}

impl LiveUpload {
    /// For a session whose staged file starts empty.
    pub fn new(staged: Arc<StagedFile>) -> Arc<LiveUpload> {
        Arc::new(LiveUpload {
            staged,
            tail: watch::Sender::new(Tail::default()),
            started: AtomicBool::new(false),
            task: Mutex::new(None),
            abort: Mutex::new(None),
            salt: Mutex::new(None),
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

    /// Start the `add` on `rt`, holding `permit` (the bound on live uploads) until it ends;
    /// sealed under a fresh content salt when the tree is encrypted.
    pub fn start(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        store: Arc<dyn ContentStore>,
        sealing: Sealing,
        permit: OwnedSemaphorePermit,
    ) {
        if self.started.swap(true, Ordering::Relaxed) {
            return;
        }
        // A fresh content salt, so a fresh version key, for every attempt (the storage
        // client calls `open` again for each retry): a retry reads the staged file again,
        // and should an overwrite land before the abandon mark, the same (key, nonce) must
        // never seal other bytes (docs/FORMAT.md §6.2). The salt of the last attempt, the
        // one whose CID `finish` returns, is the version's.
        let this = self.clone();
        let seed = matches!(&*sealing, TreeCrypto::Plain);
        let open: Arc<crate::fs::store::ContentStream> = Arc::new(move || match &*sealing {
            TreeCrypto::Plain => this.stream(),
            TreeCrypto::Sealed(keys) => {
                let salt = ContentSalt::random();
                *this.salt.lock().unwrap_or_else(|e| e.into_inner()) = Some(salt);
                seal_stream(this.stream(), Arc::new(VersionKey::new(keys, &salt)))
            }
        });
        let path = self.staged.path().to_path_buf();
        let task = rt.spawn(async move {
            let r = store.add_stream(&path, open, seed).await;
            drop(permit);
            r
        });
        *self.abort.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        *self.lock_task() = Some(task);
    }

    /// The version became moot while its `add` was out: drop the request (the node never
    /// gets the rest, and pins nothing of an `add` that did not end).
    pub fn cancel(&self) {
        self.abandon();
        if let Some(a) = self.abort.lock().unwrap_or_else(|e| e.into_inner()).take() {
            a.abort();
        }
    }

    /// The CID of the closed session's content and its content salt (sealed trees), if its
    /// live upload ran to the end; `None` when it never started, was abandoned or failed
    /// (the caller uploads the staged file).
    pub async fn finish(&self) -> Option<(String, Option<ContentSalt>)> {
        let task = self.lock_task().take()?;
        let tail = *self.tail.borrow();
        if tail.abandoned || !tail.closed {
            task.abort();
            return None;
        }
        match task.await {
            Ok(Ok(cid)) => Some((cid, *self.salt.lock().unwrap_or_else(|e| e.into_inner()))),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "live upload failed; uploading the staged file");
                None
            }
            Err(_) => None,
        }
    }

    /// The content from the start, as it is written; ends at the close.
    fn stream(self: &Arc<Self>) -> BoxStream<'static, io::Result<Bytes>> {
        let state = (self.clone(), self.tail.subscribe(), 0u64);
        futures::stream::try_unfold(state, |(this, mut rx, pos)| async move {
            loop {
                let t = *rx.borrow_and_update();
                if t.abandoned {
                    return Err(io::Error::other("live upload abandoned"));
                }
                if pos < t.end {
                    let len = (t.end - pos).min(READ_CHUNK) as usize;
                    let staged = this.staged.clone();
                    let data = tokio::task::spawn_blocking(move || staged.read_at(pos, len))
                        .await
                        .map_err(io::Error::other)??;
                    if data.is_empty() {
                        return Err(io::Error::other("staged file shorter than written"));
                    }
                    let next = pos + data.len() as u64;
                    return Ok(Some((Bytes::from(data), (this, rx, next))));
                }
                if t.closed {
                    return Ok(None);
                }
                match tokio::time::timeout(IDLE_LIMIT, rx.changed()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => return Err(io::Error::other("live upload dropped")),
                    Err(_) => {
                        this.abandon();
                        return Err(io::Error::other("writer idle; upload after close"));
                    }
                }
            }
        })
        .boxed()
    }

    fn lock_task(
        &self,
    ) -> std::sync::MutexGuard<'_, Option<JoinHandle<Result<String, StoreError>>>> {
        self.task.lock().unwrap_or_else(|e| e.into_inner())
    }
}
