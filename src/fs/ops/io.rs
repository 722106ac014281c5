//! File handles and the write path: open/create stage the file, writes go to the staged
//! session, the last close turns the session into a closed version (journaled, queued for
//! upload). Reads come from the newest version: session, staged, or the node.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::format::Name;
use crate::fs::data::content;
use crate::fs::data::live::LiveUpload;
use crate::fs::data::staged::StagedFile;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Attr, Body, FileBody, Ino, Kind, Meta, TokenId, now_ns};
use crate::fs::model::quota::Change;
use crate::fs::model::tree::{Tree, check_name};
use crate::fs::store::Blob;
use crate::fs::{Fs, Handle, Step};

/// Content fetched from the node into a staged file this many bytes per request.
const FETCH_CHUNK: u64 = 1 << 20;

/// The largest file the mount holds: 2^53 bytes (8 PiB), the largest size a manifest or
/// usage document states exactly to every JSON reader (an IEEE double, as in JavaScript).
/// A truncate, write or fallocate past it fails with `EFBIG`.
pub const MAX_FILE_SIZE: u64 = 1 << 53;

/// Open flags the core cares about.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenMode {
    pub write: bool,
    pub truncate: bool,
    pub append: bool,
    pub exclusive: bool,
}

impl OpenMode {
    /// From `open(2)` flags.
    pub fn from_flags(flags: i32) -> OpenMode {
        let acc = flags & libc::O_ACCMODE;
        OpenMode {
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }
}

impl Fs {
    fn new_handle(&self, h: Handle) -> u64 {
        let fh = self.inner.next_fh.fetch_add(1, Ordering::Relaxed);
        self.handles().insert(fh, h);
        fh
    }

    pub(in crate::fs) fn handle(&self, fh: u64) -> FsResult<Handle> {
        self.handles().get(&fh).copied().ok_or(FsError::BadHandle)
    }

    fn staging_dir(&self, token: TokenId) -> std::path::PathBuf {
        self.config()
            .cache_dir
            .join("staging")
            .join(token.to_string())
    }

    pub async fn open(&self, ino: Ino, flags: i32) -> FsResult<u64> {
        let mode = OpenMode::from_flags(flags);
        if mode.write {
            // What is written goes into its directory's pages: load them first.
            self.ensure_holders_loaded(ino).await?;
        }
        {
            let mut guard = self.tree();
            let tree = &mut *guard;
            let inode = tree.get(ino)?;
            match inode.kind() {
                Kind::Dir if mode.write => return Err(FsError::IsDir),
                Kind::Dir => {}
                Kind::Symlink => return Err(FsError::Invalid("open of a symlink")),
                // The kernel opens FIFOs and device nodes itself; nothing to read here.
                Kind::Fifo | Kind::Socket | Kind::CharDev | Kind::BlockDev => {
                    return Err(FsError::Invalid("open of a special file"));
                }
                Kind::File => {}
            }
            if mode.write {
                let token = tree.token_of(ino)?;
                self.allow(tree, token, Change::AddsEntry)?;
            }
            let inode = tree.get_mut(ino)?;
            inode.open_handles += 1;
            if mode.write
                && let Some(f) = inode.file_mut()
            {
                f.writers += 1;
            }
        }
        let fh = self.new_handle(Handle {
            ino,
            write: mode.write,
            append: mode.append,
            session: mode.write,
        });
        if mode.write
            && let Err(e) = self.ensure_session(ino, mode.truncate).await
        {
            let _ = self.release(fh).await;
            return Err(e);
        }
        Ok(fh)
    }

    /// Create and open `parent/name` (`O_EXCL` honoured: an existing name is `EEXIST`).
    #[allow(clippy::too_many_arguments)]
    /// Answered at once when the directory is loaded and the name is new (memory and an
    /// empty staged file).
    pub fn create(
        &self,
        parent: Ino,
        name: impl AsRef<[u8]>,
        mode: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> Step<FsResult<(Attr, u64)>> {
        let name = name.as_ref();
        if let Some(done) = self.create_in_memory(parent, name, mode, flags, uid, gid) {
            return Step::Ready(done);
        }
        let (fs, name) = (self.clone(), name.to_vec());
        Step::wait(async move {
            fs.create_loading(parent, &name, mode, flags, uid, gid)
                .await
        })
    }

    async fn create_loading(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> FsResult<(Attr, u64)> {
        let name = check_name(name)?;
        let open = OpenMode::from_flags(flags);
        // The staged file is made outside the tree lock (disk), then the entry is inserted
        // under the guard that holds `parent` loaded: no unload can come in between.
        let mut session: Option<Arc<StagedFile>> = None;
        loop {
            let (existing, created) = {
                let mut tree = self.lock_loaded(&[parent]).await?;
                match (tree.child(parent, name.as_bytes())?, &session) {
                    (Some(ino), _) => (Some(ino), None),
                    (None, None) => (None, None),
                    (None, Some(s)) => (
                        None,
                        Some(self.insert_created(&mut tree, parent, &name, mode, uid, gid, s)),
                    ),
                }
            };
            let existing = match (existing, created) {
                (Some(ino), _) => ino,
                (None, None) => {
                    session = Some(self.new_session(parent, &name)?);
                    continue;
                }
                (None, Some(created)) => match created? {
                    Some(ino) => return self.opened_created(ino, open),
                    // Created by a racing create (`insert_created` removed ours).
                    None => {
                        session = None;
                        continue;
                    }
                },
            };
            if let Some(s) = session.take() {
                s.remove();
            }
            // The name exists (maybe created a moment ago by a racing create): without
            // O_EXCL, open(2) opens what is there.
            if open.exclusive {
                return Err(FsError::Exists);
            }
            let fh = match self.open(existing, flags).await {
                Err(FsError::NotFound) => continue, // unlinked meanwhile: create it after all
                other => other?,
            };
            let mut tree = self.tree();
            let attr = tree.get(existing)?.attr(existing);
            tree.remember(existing);
            return Ok((attr, fh));
        }
    }

    /// [`Fs::create`] from memory; `None` when it must wait.
    fn create_in_memory(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> Option<FsResult<(Attr, u64)>> {
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return Some(Err(e)),
        };
        if !crate::fs::model::tree::loaded_dir(&self.tree(), parent) {
            return None;
        }
        let open = OpenMode::from_flags(flags);
        match self.create_new(parent, &name, mode, open, uid, gid) {
            Ok(Some(created)) => Some(Ok(created)),
            Ok(None) if open.exclusive => Some(Err(FsError::Exists)),
            Ok(None) => None, // opening what is there may fetch it: see `create`
            Err(e) => Some(Err(e)),
        }
    }

    /// Create `parent/name` and open it; `None` if the name exists. For a loaded `parent`.
    fn create_new(
        &self,
        parent: Ino,
        name: &Name,
        mode: u32,
        open: OpenMode,
        uid: u32,
        gid: u32,
    ) -> FsResult<Option<(Attr, u64)>> {
        if self.tree().child(parent, name.as_bytes())?.is_some() {
            return Ok(None);
        }
        let session = self.new_session(parent, name)?;
        let created = {
            let mut tree = self.tree();
            self.insert_created(&mut tree, parent, name, mode, uid, gid, &session)
        };
        created?
            .map(|ino| self.opened_created(ino, open))
            .transpose()
    }

    /// A staged file for a new entry `parent/name`, made after the checks that need no
    /// disk (the name's form, the token's).
    fn new_session(&self, parent: Ino, name: &Name) -> FsResult<Arc<StagedFile>> {
        let token = {
            let tree = self.tree();
            tree.check_new_name(parent, name)?;
            tree.token_of(parent)?
        };
        Ok(Arc::new(
            StagedFile::create(&self.staging_dir(token)).map_err(|e| self.disk_failed(e))?,
        ))
    }

    /// Insert the new file `parent/name` staged in `session`, open once; `None` (and the
    /// session removed) if the name exists. The session is removed on an error too.
    #[allow(clippy::too_many_arguments)]
    fn insert_created(
        &self,
        tree: &mut Tree,
        parent: Ino,
        name: &Name,
        mode: u32,
        uid: u32,
        gid: u32,
        session: &Arc<StagedFile>,
    ) -> FsResult<Option<Ino>> {
        let inserted = (|| {
            let token = tree.token_of(parent)?;
            self.allow(tree, token, Change::AddsEntry)?;
            let body = Body::File(FileBody {
                session: Some(session.clone()),
                live: Some(LiveUpload::new(session.clone())),
                writers: 1,
                ..Default::default()
            });
            match tree.create(
                parent,
                name,
                Meta::new(mode, uid, gid),
                body,
                Default::default(),
            ) {
                Ok(ino) => Ok(Some(ino)),
                Err(FsError::Exists) => Ok(None),
                Err(e) => Err(e),
            }
        })();
        match inserted {
            Ok(Some(ino)) => {
                tree.get_mut(ino)?.open_handles += 1;
                tree.remember(ino);
                Ok(Some(ino))
            }
            other => {
                session.remove();
                other
            }
        }
    }

    /// The attributes and the handle of a file `insert_created` made.
    fn opened_created(&self, ino: Ino, open: OpenMode) -> FsResult<(Attr, u64)> {
        let attr = self.tree().get(ino)?.attr(ino);
        let fh = self.new_handle(Handle {
            ino,
            write: open.write,
            append: open.append,
            session: true,
        });
        Ok((attr, fh))
    }

    /// Make sure `ino` has an open-for-write session; `truncate` empties it.
    pub(crate) async fn ensure_session(&self, ino: Ino, truncate: bool) -> FsResult<()> {
        loop {
            enum Need {
                Copy(Arc<StagedFile>),
                Fetch(Blob),
                /// A chunked version: the session stages only what is written over it.
                Over(Blob),
                Empty,
            }
            let (token, need) = {
                let mut guard = self.tree();
                let tree = &mut *guard;
                let token = tree.token_of(ino)?;
                let f = tree.get_mut(ino)?.file_mut().ok_or(FsError::IsDir)?;
                if f.session.is_some() {
                    if truncate && f.size != 0 {
                        f.resize_session(0)?;
                        let old = std::mem::replace(&mut f.size, 0);
                        touch(tree, ino);
                        tree.size_changed(ino, old, 0);
                    }
                    return Ok(());
                }
                let need = if truncate {
                    Need::Empty
                } else if let Some(s) = &f.staged {
                    Need::Copy(s.clone())
                } else if let Some(b) = &f.blob
                    && b.size > 0
                {
                    match &b.chunks {
                        Some(t) if t.invalid.is_none() => Need::Over(b.clone()),
                        _ => Need::Fetch(b.clone()),
                    }
                } else {
                    Need::Empty
                };
                (token, need)
            };
            let dir = self.staging_dir(token);
            // A copy of the content to write into is new data on the cache disk.
            let copying = match &need {
                Need::Copy(src) => match src.overlay() {
                    Some(o) => o.state().present.len() as u64 * crate::format::chunks::CHUNK,
                    None => src.len()?,
                },
                Need::Fetch(blob) => blob.size,
                Need::Over(_) | Need::Empty => 0,
            };
            if copying > 0 {
                self.room_for_data(copying)?;
            }
            let disk_failed = |e| self.disk_failed(e);
            let (new, from_staged, from_blob) = match need {
                Need::Empty => (StagedFile::create(&dir).map_err(disk_failed)?, None, None),
                Need::Copy(src) => {
                    let from = src.clone();
                    let copy = tokio::task::spawn_blocking(move || from.copy_to_new(&dir))
                        .await
                        .map_err(|e| FsError::Journal(e.to_string()))?;
                    match copy {
                        Ok(c) => (c, Some(src), None),
                        // A newer version made it moot and it was dropped: copy that one.
                        Err(e)
                            if e.kind() == std::io::ErrorKind::NotFound
                                && !self.is_staged_version(ino, &src) =>
                        {
                            continue;
                        }
                        Err(e) => return Err(disk_failed(e)),
                    }
                }
                Need::Over(blob) => {
                    let overlay = crate::fs::data::overlay::Overlay::new(blob.clone());
                    let new =
                        StagedFile::create_over(&dir, overlay, blob.size).map_err(disk_failed)?;
                    (new, None, Some(blob.cid))
                }
                Need::Fetch(blob) => {
                    let new = StagedFile::create(&dir).map_err(disk_failed)?;
                    if let Err(e) = self.fetch_into(token, &new, &blob).await {
                        new.remove();
                        return Err(e);
                    }
                    (new, None, Some(blob.cid))
                }
            };
            let mut guard = self.tree();
            let tree = &mut *guard;
            let f = tree.get_mut(ino)?.file_mut().ok_or(FsError::IsDir)?;
            // Install only if nothing changed while we copied; otherwise start over.
            let unchanged = f.session.is_none()
                && match (&from_staged, &f.staged) {
                    (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                    (Some(_), None) => false,
                    (None, _) => true,
                }
                && (from_blob.is_none() || f.blob.as_ref().map(|b| &b.cid) == from_blob.as_ref());
            if !unchanged {
                new.remove();
                continue;
            }
            let old = f.size;
            let size = new.len()?;
            let new = Arc::new(new);
            // Content that starts empty can go to the node while it is written.
            f.live = (size == 0).then(|| LiveUpload::new(new.clone()));
            f.session = Some(new);
            f.size = size;
            if old != size {
                touch(tree, ino);
            }
            // A session's bytes count on their own (they may stop being the stored content).
            tree.recharge(ino, false);
            return Ok(());
        }
    }

    /// `staged` is still the newest closed version of `ino`.
    fn is_staged_version(&self, ino: Ino, staged: &Arc<StagedFile>) -> bool {
        let tree = self.tree();
        tree.get(ino)
            .ok()
            .and_then(|i| i.file())
            .and_then(|f| f.staged.as_ref())
            .is_some_and(|s| Arc::ptr_eq(s, staged))
    }

    async fn fetch_into(&self, token: TokenId, dst: &StagedFile, blob: &Blob) -> FsResult<()> {
        let sealing = self.sealing(Some(token));
        let mut offset = 0;
        let size = blob.size;
        while offset < size {
            let len = FETCH_CHUNK.min(size - offset);
            let data = self
                .read_content(Some(token), &sealing, blob, offset, len)
                .await?;
            if data.is_empty() {
                return Err(FsError::Store(crate::fs::store::StoreError::permanent(
                    "content shorter than its size",
                )));
            }
            dst.write_at(offset, &data)
                .map_err(|e| self.disk_failed(e))?;
            offset += data.len() as u64;
        }
        Ok(())
    }

    /// Write at `offset` (end of file for `O_APPEND`); holes in between read as zeros.
    pub async fn write(&self, fh: u64, offset: u64, data: &[u8]) -> FsResult<u32> {
        let mut waiting_since = None;
        loop {
            if self.over_staging_limit() {
                self.wait_for_staging_room(&mut waiting_since).await?;
                continue;
            }
            if let Some(done) = self.try_write(fh, offset, data) {
                return done;
            }
            // fsync closed the session; the next write starts a new one. Or the write
            // reaches chunks of an overlay's base: they are fetched first.
            let ino = self.handle(fh)?.ino;
            self.ensure_session(ino, false).await?;
            self.fill_for_write(fh, offset, data.len() as u64).await?;
        }
    }

    /// The write, if it can happen without waiting (the session is open: local disk
    /// only); `None` when a session must be started first (see [`Fs::write`]).
    pub fn try_write(&self, fh: u64, offset: u64, data: &[u8]) -> Option<FsResult<u32>> {
        if self.over_staging_limit() {
            return None;
        }
        let h = match self.handle(fh) {
            Ok(h) if h.write => h,
            Ok(_) => return Some(Err(FsError::NotWritable)),
            Err(e) => return Some(Err(e)),
        };
        // New data must leave the cache disk's reserve free (see `disk_space`).
        if let Err(e) = self.room_for_data(data.len() as u64) {
            return Some(Err(e));
        }
        // Under the tree lock: check, charge and size the write; the bytes go to the staged
        // file after the lock is dropped (a slow cache disk stalls only this writer).
        struct Reserved {
            token: TokenId,
            session: Arc<StagedFile>,
            /// An overlay session's fill lock, while this write lands in chunks not present.
            filling: Option<tokio::sync::OwnedMutexGuard<()>>,
            live: Option<Arc<LiveUpload>>,
            sealing: content::Sealing,
            offset: u64,
            len: usize,
            old: u64,
            new: u64,
        }
        let reserve = |tree: &mut Tree| -> FsResult<Option<Reserved>> {
            let token = tree.token_of(h.ino)?;
            let f = tree.get(h.ino)?.file().ok_or(FsError::IsDir)?;
            let Some(session) = f.session.clone() else {
                return Ok(None);
            };
            let old = f.size;
            let offset = if h.append { old } else { offset };
            if offset >= MAX_FILE_SIZE {
                return Err(FsError::FileTooBig);
            }
            // Like a local filesystem at its limit: a write crossing it is cut short there.
            let mut len = data.len().min((MAX_FILE_SIZE - offset) as usize);
            let sealing = tree.token(token)?.sealing.clone();
            let stored = |n| crate::fs::data::content::stored_len(&sealing, n);
            // A write of nothing changes nothing, even past the end.
            let new_size = |len: usize| {
                if len == 0 {
                    old
                } else {
                    old.max(offset + len as u64)
                }
            };
            let growth = |len: usize| stored(new_size(len)) - stored(old);
            match self.allow(tree, token, Change::Grows(growth(len))) {
                Ok(()) => {}
                // And at the quota: what fits is written and its length returned; the next
                // write gets EDQUOT (a copy fills the sNFT to within a few bytes).
                Err(FsError::QuotaExceeded) => {
                    len = fitting_len(len, self.room(tree, token)?, growth);
                    if len == 0 {
                        return Err(FsError::QuotaExceeded);
                    }
                }
                Err(e) => return Err(e),
            }
            let new = new_size(len);
            // An overlay's chunks that this write changes only in part are fetched first.
            let mut filling = None;
            if let Some(overlay) = session.overlay() {
                if !overlay
                    .to_fill_for_write(offset, len as u64, old)
                    .is_empty()
                {
                    return Ok(None);
                }
                match overlay.guard_write(offset, len as u64) {
                    Some(guard) => filling = guard,
                    None => return Ok(None),
                }
            }
            let f = tree.get_mut(h.ino)?.file_mut().ok_or(FsError::IsDir)?;
            let live = f.live.clone();
            f.size = new;
            touch(tree, h.ino);
            tree.size_changed(h.ino, old, new);
            Ok(Some(Reserved {
                token,
                session,
                filling,
                live,
                sealing,
                offset,
                len,
                old,
                new,
            }))
        };
        let mut tree = self.tree();
        let w = match reserve(&mut tree) {
            Ok(Some(w)) => w,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        // Taken before the lock is dropped: the session's close waits for this write.
        let writing = w.session.writing();
        drop(tree);
        self.slow_disk();
        if let Err(e) = w.session.write_at(w.offset, &data[..w.len]) {
            drop(writing);
            // Give back the size this write claimed, unless another write grew it since.
            let mut tree = self.tree();
            if let Ok(f) = tree.get_mut(h.ino).map(|i| i.file_mut())
                && let Some(f) = f
                && f.size == w.new
                && f.session
                    .as_ref()
                    .is_some_and(|s| Arc::ptr_eq(s, &w.session))
            {
                f.size = w.old;
                tree.size_changed(h.ino, w.new, w.old);
            }
            return Some(Err(self.disk_failed(e)));
        }
        if let Some(overlay) = w.session.overlay() {
            overlay.wrote(w.offset, w.len as u64);
        }
        drop(w.filling);
        if let Some(live) = &w.live
            && live.wrote(w.offset, w.len as u64)
        {
            self.start_live(live, w.token, w.sealing);
        }
        drop(writing);
        Some(Ok(w.len as u32))
    }

    /// Tests: a slow cache disk (see [`crate::fs::FsConfig::disk_delay`]).
    fn slow_disk(&self) {
        let delay = self.config().disk_delay;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }

    /// Start a session's live upload if fewer than `upload_parallelism` run; otherwise
    /// the session is uploaded after its close like any other.
    fn start_live(&self, live: &Arc<LiveUpload>, token: TokenId, sealing: content::Sealing) {
        match self.inner.live_permits.clone().try_acquire_owned() {
            Ok(permit) => live.start(
                &self.inner.rt,
                self.store_of(Some(token)),
                sealing,
                self.inner.pages.clone(),
                permit,
            ),
            Err(_) => live.abandon(),
        }
    }

    fn over_staging_limit(&self) -> bool {
        let (files, bytes) = self.inner.uploads.pending();
        let cfg = self.config();
        let over = bytes > cfg.staging_limit || files > cfg.staging_limit_files;
        if !over {
            self.inner.staging.room_again();
        }
        over
    }

    /// Back-pressure: let the uploads catch up before staging more. Writers wait as long as
    /// the node is reachable; once it has been down for the outage grace period (and this
    /// writer has waited that long) the write fails with `ENOSPC`, like a full disk.
    async fn wait_for_staging_room(&self, waiting_since: &mut Option<Instant>) -> FsResult<()> {
        let since = *waiting_since.get_or_insert_with(Instant::now);
        let cfg = self.config();
        self.inner.staging.full(
            self.pending(),
            (cfg.staging_limit_files, cfg.staging_limit),
            self.inner.outage.down_for(),
        );
        match self.inner.outage.gives_up(since) {
            Some(FsError::NodeDown(down)) => return Err(FsError::StagingFull(down)),
            Some(local) => return Err(local),
            None => {}
        }
        let progress = self.inner.progress.notified();
        let _ = tokio::time::timeout(Duration::from_millis(500), progress).await;
        Ok(())
    }

    /// truncate(2)/ftruncate(2).
    pub(crate) async fn truncate(&self, ino: Ino, size: u64, _fh: Option<u64>) -> FsResult<()> {
        if size > MAX_FILE_SIZE {
            return Err(FsError::FileTooBig);
        }
        let opened;
        {
            let mut guard = self.tree();
            let tree = &mut *guard;
            let token = tree.token_of(ino)?;
            let inode = tree.get_mut(ino)?;
            match inode.kind() {
                Kind::File => {}
                Kind::Dir => return Err(FsError::IsDir),
                _ => return Err(FsError::Invalid("truncate of a symlink or special file")),
            }
            let f = inode.file_mut().ok_or(FsError::IsDir)?;
            let old = f.size;
            let change = if size > old {
                let sealing = &tree.token(token)?.sealing;
                let stored = |n| crate::fs::data::content::stored_len(sealing, n);
                Change::Extends {
                    growth: stored(size) - stored(old),
                    stored_size: stored(size),
                }
            } else {
                Change::Shrinks
            };
            self.allow(tree, token, change)?;
            let f = tree.get_mut(ino)?.file_mut().ok_or(FsError::IsDir)?;
            // No session: open one just for this change, closed right after.
            opened = f.session.is_none();
            if opened {
                f.writers += 1;
            }
        }
        let result = async {
            if opened {
                self.ensure_session(ino, size == 0).await?;
            }
            self.resize_open_session(ino, size).await
        }
        .await;
        if !opened {
            return result;
        }
        let mut guard = self.tree();
        let tree = &mut *guard;
        if let Some(f) = tree.get_mut(ino)?.file_mut() {
            f.writers -= 1;
            if f.writers == 0 {
                self.close_session(tree, ino)?;
            }
        }
        guard.unlock()?;
        result
    }

    /// Resize the session of `ino` to `size` (an overlay's chunks that the new size cuts or
    /// extends fetched first).
    async fn resize_open_session(&self, ino: Ino, size: u64) -> FsResult<()> {
        loop {
            let (token, session, fill) = {
                let mut guard = self.tree();
                let tree = &mut *guard;
                let token = tree.token_of(ino)?;
                let f = tree.get_mut(ino)?.file_mut().ok_or(FsError::IsDir)?;
                let old = f.size;
                let fill = f
                    .session
                    .as_ref()
                    .and_then(|s| s.overlay())
                    .map(|o| o.to_fill_for_resize(old, size))
                    .unwrap_or_default();
                if fill.is_empty() {
                    if f.session.is_some() {
                        f.resize_session(size)?;
                        f.size = size;
                    }
                    touch(tree, ino);
                    tree.size_changed(ino, old, size);
                    return Ok(());
                }
                (token, f.session.clone(), fill)
            };
            if let Some(session) = session {
                self.fill(token, &session, fill).await?;
            }
        }
    }

    /// An open directory stays loaded until [`Fs::releasedir`] (its readdir offsets are
    /// cookies of the loaded entries).
    pub async fn opendir(&self, ino: Ino) -> FsResult<u64> {
        let mut tree = self.tree();
        let inode = tree.get_mut(ino)?;
        if inode.kind() != Kind::Dir {
            return Err(FsError::NotDir);
        }
        inode.open_handles += 1;
        Ok(0)
    }

    /// The kernel closed a handle [`Fs::opendir`] gave.
    pub fn releasedir(&self, ino: Ino) {
        let mut tree = self.tree();
        if let Ok(inode) = tree.get_mut(ino) {
            inode.open_handles = inode.open_handles.saturating_sub(1);
        }
        tree.forget_if_unused(ino);
    }
}

/// Writers waiting at the staging limit: logged at warn when they start waiting (at most
/// once a minute: a node slower than the writers makes them wait again and again, which is
/// back-pressure working, not news), at info when they may go on.
#[derive(Debug, Default)]
pub(crate) struct StagingGate {
    waiting: AtomicBool,
    last_warned: Mutex<Option<Instant>>,
}

const STAGING_WARN_INTERVAL: Duration = Duration::from_secs(60);

impl StagingGate {
    /// `limits`: (files, bytes).
    fn full(&self, pending: (u64, u64), limits: (u64, u64), node_down_for: Option<Duration>) {
        if self.waiting.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut last = self.last_warned.lock().unwrap_or_else(|e| e.into_inner());
        let (files, bytes) = pending;
        if last.is_some_and(|t| t.elapsed() < STAGING_WARN_INTERVAL) {
            tracing::debug!(files, bytes, ?limits, "staging limit reached again");
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            files,
            bytes,
            limit_files = limits.0,
            limit_bytes = limits.1,
            ?node_down_for,
            "staging limit reached: writers wait until uploads to the node catch up \
             ([cache] staging_limit_files, staging_max)"
        );
    }

    fn room_again(&self) {
        if self.waiting.load(Ordering::Relaxed) && self.waiting.swap(false, Ordering::Relaxed) {
            tracing::info!("staging has room again: writers resume");
        }
    }
}

/// Content changed: bump mtime and ctime.
fn touch(tree: &mut Tree, ino: Ino) {
    if let Ok(i) = tree.get_mut(ino) {
        let now = now_ns();
        i.meta.mtime_ns = now;
        i.meta.ctime_ns = now;
    }
}

/// The longest prefix (at most `len` bytes) of a write whose `growth` of stored bytes fits
/// in `room`. `growth` never shrinks as the prefix grows, so a binary search finds it.
fn fitting_len(len: usize, room: u64, growth: impl Fn(usize) -> u64) -> usize {
    let (mut fits, mut too_long) = (0, len + 1);
    while too_long - fits > 1 {
        let mid = fits + (too_long - fits) / 2;
        if growth(mid) <= room {
            fits = mid;
        } else {
            too_long = mid;
        }
    }
    fits
}

#[cfg(test)]
mod fitting_tests {
    use super::fitting_len;

    #[test]
    fn a_write_is_cut_to_what_the_room_holds() {
        let plain = |n: usize| n as u64;
        assert_eq!(fitting_len(100, 40, plain), 40);
        assert_eq!(fitting_len(100, 100, plain), 100);
        assert_eq!(fitting_len(100, 1000, plain), 100);
        assert_eq!(fitting_len(100, 0, plain), 0);
        // Sealed chunks: every started 16-byte chunk stores 4 more.
        let sealed = |n: usize| (n + n.div_ceil(16) * 4) as u64;
        assert_eq!(fitting_len(100, 40, sealed), 32);
        assert_eq!(fitting_len(100, 39, sealed), 31);
        for room in 0..130 {
            let n = fitting_len(100, room, sealed);
            assert!(sealed(n) <= room && (n == 100 || sealed(n + 1) > room));
        }
    }
}
