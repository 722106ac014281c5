//! The node's repo directory and the few files pxfs writes there itself.
//!
//! ```text
//! REPO/
//!   api                 http://ADDR of the running node (removed on shutdown)
//!   config              optional, Kubo's: Datastore.StorageMax etc. (`datastore_config`)
//!   blockstore/         rust-ipfs flatfs blocks
//!   datastore/          rust-ipfs pins and key-value data
//!   repo_lock           rust-ipfs: one node per repo
//!   keys/<name>.key     named keys, `self` is the node identity (see `names`)
//!   names/<name>.ipns   the latest signed IPNS record of each published name
//! ```
//!
//! Writes that must survive a crash go through a temporary file, fsync and rename.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("background file task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> RepoError {
    let path = path.to_owned();
    move |source| RepoError::Io {
        action,
        path,
        source,
    }
}

pub fn keys_dir(repo: &Path) -> PathBuf {
    repo.join("keys")
}

pub fn names_dir(repo: &Path) -> PathBuf {
    repo.join("names")
}

pub fn api_file(repo: &Path) -> PathBuf {
    repo.join("api")
}

/// Creates `dir` (and parents) readable by the owner only: it may hold private keys.
pub fn create_private_dir(dir: &Path) -> Result<(), RepoError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_error("create directory", dir))
}

/// Every `*.EXT` file in `dir`, as (stem, contents).
pub fn read_dir_files(dir: &Path, ext: &str) -> Result<Vec<(String, Vec<u8>)>, RepoError> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error("list", dir))? {
        let path = entry.map_err(io_error("list", dir))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some(ext) {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let bytes = std::fs::read(&path).map_err(io_error("read", &path))?;
        files.push((stem.to_owned(), bytes));
    }
    Ok(files)
}

/// Writes `bytes` to `path` atomically and durably, readable by the owner only.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let temp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Some(parent) = path.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(io_error("write", path))
}

/// [`write_private_file`] off the async runtime.
pub async fn write_file_atomically(path: &Path, bytes: &[u8]) -> Result<(), RepoError> {
    let path = path.to_owned();
    let bytes = bytes.to_vec();
    tokio::task::spawn_blocking(move || write_private_file(&path, &bytes)).await?
}

/// The contents of `path`, or `None` if it does not exist.
pub async fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, RepoError> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("read", path)(e)),
    }
}

/// Writes the `api` file the devnet and tests read to find the node.
pub fn write_api_file(repo: &Path, url: &str) -> Result<(), RepoError> {
    let path = api_file(repo);
    std::fs::write(&path, url).map_err(io_error("write", &path))
}

/// Removes the `api` file so nobody dials a node that is gone.
pub fn remove_api_file(repo: &Path) {
    let path = api_file(repo);
    if let Err(e) = std::fs::remove_file(&path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove api file");
    }
}

/// Waits until rust-ipfs has released the repo lock: its background tasks drop their handles
/// shortly after `exit_daemon`, and a node restarted on the same repo must find it free.
pub async fn wait_for_release(repo: &Path, timeout: std::time::Duration) {
    use std::os::fd::AsRawFd;

    let path = repo.join("repo_lock");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let free = match std::fs::File::open(&path) {
            // SAFETY: flock on a descriptor `file` keeps open; a lock we get is ours alone.
            Ok(file) => unsafe {
                libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
            },
            Err(_) => true,
        };
        if free {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(path = %path.display(), "repo lock still held after shutdown");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
