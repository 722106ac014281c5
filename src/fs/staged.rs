//! `StagedFile`: one version of a file's content held on local disk under
//! `CACHE/staging/<token>/` until a commit no longer needs it. Each open-for-write session
//! writes its own staged file, so a crash leaves every file as it was at some close.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug)]
pub struct StagedFile {
    path: PathBuf,
    file: File,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl StagedFile {
    /// A new empty staged file in `dir`.
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
        Ok(StagedFile { path, file })
    }

    /// A new staged file in `dir` holding a copy of `self` (copy-on-open).
    pub fn copy_to_new(&self, dir: &Path) -> io::Result<StagedFile> {
        let new = StagedFile::create(dir)?;
        let mut src = &self.file;
        let mut dst = &new.file;
        // std::io::copy uses copy_file_range/sendfile between files: no user-space buffer.
        io::Seek::seek(&mut src, io::SeekFrom::Start(0))?;
        io::copy(&mut src, &mut dst)?;
        Ok(new)
    }

    /// Reopen a staged file left by an earlier run (journal replay).
    pub fn open_existing(path: &Path) -> io::Result<StagedFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(StagedFile {
            path: path.to_path_buf(),
            file,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Read up to `len` bytes at `offset`; short only at end of file. Holes read as zeros.
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            match self.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    pub fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.file.write_all_at(data, offset)
    }

    pub fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    /// Make the content durable (only on `fsync`: no per-op fsync of data).
    pub fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Delete the file from the staging directory (open handles keep reading it).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove staged file");
        }
    }
}
