//! `StagedFile`: one version of a file's content held on local disk under
//! `CACHE/staging/<token>/` until a commit no longer needs it. Each open-for-write session
//! writes its own staged file, so a crash leaves every file as it was at some close.
//!
//! A staged file holds an open descriptor only while it is written (its session) or while
//! it has been removed from the staging directory under open handles; otherwise each
//! access opens it by path. So the descriptors the mount holds are bounded by its open
//! handles and in-flight uploads, never by how many files wait for upload or commit.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::overlay::Overlay;

#[derive(Debug)]
pub struct StagedFile {
    path: PathBuf,
    /// The descriptor kept open, if any (see the module docs).
    held: Mutex<Option<File>>,
    /// Shared by writes in flight, which run outside the tree lock; taken exclusively by
    /// what must see them all done (the session's close, a resize).
    writes: RwLock<()>,
    /// A version staged as the chunks written over a committed one (`super::overlay`): the
    /// file is sparse, and only its present chunks are content.
    overlay: Option<Arc<Overlay>>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl StagedFile {
    /// A new empty staged file in `dir`, held open (it is about to be written).
    pub fn create(dir: &Path) -> io::Result<StagedFile> {
        // Unique across restarts (time) and within this process (counter).
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let name = format!(
            "{nanos:x}-{}-{:x}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(StagedFile {
            path,
            held: Mutex::new(Some(file)),
            writes: RwLock::new(()),
            overlay: None,
        })
    }

    /// A new session over a committed chunked version: a sparse file of `size` bytes that
    /// will hold only the chunks written (see `super::overlay`).
    pub fn create_over(dir: &Path, overlay: Overlay, size: u64) -> io::Result<StagedFile> {
        let mut new = StagedFile::create(dir)?;
        if let Err(e) = new.set_len(size) {
            new.remove_unheld();
            return Err(e);
        }
        new.overlay = Some(Arc::new(overlay));
        Ok(new)
    }

    pub fn overlay(&self) -> Option<&Arc<Overlay>> {
        self.overlay.as_ref()
    }

    /// A new staged file in `dir` holding a copy of `self` (copy-on-open). An overlay
    /// version copies its present chunks only, and the copy is an overlay on the same base.
    pub fn copy_to_new(&self, dir: &Path) -> io::Result<StagedFile> {
        if let Some(overlay) = &self.overlay {
            let new = StagedFile::create_over(dir, overlay.reopened(), self.len()?)?;
            let copied = (|| {
                for index in overlay.state().present {
                    let at = index * crate::format::chunks::CHUNK;
                    let bytes = self.read_at(at, crate::format::chunks::CHUNK as usize)?;
                    if !crate::format::chunks::is_hole(&bytes) {
                        new.write_at(at, &bytes)?;
                    }
                }
                Ok(())
            })();
            if let Err(e) = copied {
                new.remove_unheld();
                return Err(e);
            }
            return Ok(new);
        }
        let new = StagedFile::create(dir)?;
        self.with_file(false, |src| {
            new.with_file(true, |dst| {
                let (mut src, mut dst) = (src, dst);
                // std::io::copy uses copy_file_range/sendfile between files: no user-space
                // buffer.
                io::Seek::seek(&mut src, io::SeekFrom::Start(0))?;
                io::copy(&mut src, &mut dst).map(|_| ())
            })
        })?;
        Ok(new)
    }

    /// A staged file left by an earlier run (journal replay); not held open.
    pub fn open_existing(path: &Path, overlay: Option<Overlay>) -> io::Result<StagedFile> {
        std::fs::metadata(path)?;
        Ok(StagedFile {
            path: path.to_path_buf(),
            held: Mutex::new(None),
            writes: RwLock::new(()),
            overlay: overlay.map(Arc::new),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Close the held descriptor (the session ended): later accesses open the path.
    pub fn release(&self) {
        self.lock().take();
    }

    /// Keep a descriptor open from now on: the path is about to be deleted while an open
    /// handle may still read this version.
    pub fn hold(&self) {
        let mut held = self.lock();
        if held.is_none() {
            // Read-only if it cannot be written (a read-only cache disk): what is held is
            // only ever read.
            *held = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&self.path)
                .or_else(|_| File::open(&self.path))
                .ok();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<File>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Run `f` on the held descriptor, or on one opened for this call (for writing only
    /// with `write`: reading a staged file works on a read-only cache disk).
    fn with_file<T>(&self, write: bool, f: impl FnOnce(&File) -> io::Result<T>) -> io::Result<T> {
        let held = self.lock();
        if let Some(file) = held.as_ref() {
            return f(file);
        }
        drop(held);
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(&self.path)?;
        f(&file)
    }

    pub fn len(&self) -> io::Result<u64> {
        if let Some(file) = self.lock().as_ref() {
            return Ok(file.metadata()?.len());
        }
        Ok(std::fs::metadata(&self.path)?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Read up to `len` bytes at `offset`; short only at end of file. Holes read as zeros.
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        self.with_file(false, |file| {
            let mut buf = vec![0u8; len];
            let mut done = 0;
            while done < len {
                match file.read_at(&mut buf[done..], offset + done as u64) {
                    Ok(0) => break,
                    Ok(n) => done += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            buf.truncate(done);
            Ok(buf)
        })
    }

    /// A write is about to happen outside the tree lock: hold this until it is done (taken
    /// under the tree lock, where no [`StagedFile::settled`] is held, so it never waits).
    pub fn writing(&self) -> RwLockReadGuard<'_, ()> {
        self.writes.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for the writes in flight; none starts while this is held.
    pub fn settled(&self) -> RwLockWriteGuard<'_, ()> {
        self.writes.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.with_file(true, |f| f.write_all_at(data, offset))
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.with_file(true, |f| f.set_len(len))
    }

    /// Make the content durable (only on `fsync`: no per-op fsync of data).
    pub fn sync_data(&self) -> io::Result<()> {
        self.with_file(false, |f| f.sync_data())
    }

    /// Delete the file from the staging directory when no handle can read it any more
    /// (without holding a descriptor for them, unlike [`StagedFile::remove`]).
    pub fn remove_unheld(&self) {
        self.lock().take();
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove staged file");
        }
    }

    /// Delete the file from the staging directory. Open handles keep reading it: the
    /// descriptor is held from here on (until the last handle drops this).
    pub fn remove(&self) {
        self.hold();
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove staged file");
        }
    }
}
