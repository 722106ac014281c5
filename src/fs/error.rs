//! `FsError`: every way a filesystem operation can fail, and the one place that maps each
//! to the errno the kernel (and so the user) sees.

use crate::fs::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("no such file or directory")]
    NotFound,
    #[error("file exists")]
    Exists,
    #[error("not a directory")]
    NotDir,
    #[error("is a directory")]
    IsDir,
    #[error("directory not empty")]
    NotEmpty,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("file name longer than 255 bytes")]
    NameTooLong,
    #[error("the sNFT's quota would be exceeded")]
    QuotaExceeded,
    #[error("the sNFT's sync is overdue: uploads are blocked until the next sync")]
    SyncOverdue,
    #[error("read-only: {0}")]
    ReadOnly(&'static str),
    #[error("operation not permitted: {0}")]
    NotPermitted(&'static str),
    #[error("no such extended attribute")]
    NoXattr,
    #[error("value does not fit in the buffer or is too large")]
    Range,
    #[error("extended attribute value too large")]
    TooBig,
    #[error("the file would be larger than the maximum file size (2^53 bytes)")]
    FileTooBig,
    /// `lseek(SEEK_DATA/SEEK_HOLE)` at or past the end, or no data after the offset.
    #[error("no data at or after the offset")]
    NoMoreData,
    #[error("only user.* extended attributes are supported")]
    Unsupported,
    #[error("rename across sNFTs")]
    CrossDevice,
    #[error("bad file handle")]
    BadHandle,
    #[error("the handle is not open for writing")]
    NotWritable,
    #[error("node: {0}")]
    Store(#[from] StoreError),
    #[error("the storage node has been unreachable for {}s; the data stays staged and is uploaded once it is back", .0.as_secs())]
    NodeDown(std::time::Duration),
    #[error("the staging limit is reached and the storage node has been unreachable for {}s", .0.as_secs())]
    StagingFull(std::time::Duration),
    #[error(
        "{what} has been failing for {secs}s for a local reason ({error}); the data stays staged and journaled"
    )]
    LocalFault {
        what: &'static str,
        secs: u64,
        error: String,
    },
    #[error("{what} has been failing for {secs}s ({error}); the data stays staged and journaled")]
    Failing {
        what: &'static str,
        secs: u64,
        error: String,
    },
    /// The cache disk is full, or below its reserve (`[cache] reserve_bytes`): like any full disk.
    #[error("the cache disk is full: {0}")]
    DiskFull(String),
    #[error("local cache: {0}")]
    Io(#[from] std::io::Error),
    #[error("journal: {0}")]
    Journal(String),
    /// Stored data did not authenticate: the node changed, swapped or cut it.
    #[error("{0}")]
    Tampered(String),
    /// An encrypted tree's keys cannot be had.
    #[error("{0}")]
    Locked(String),
    /// Another machine published to the sNFT at the same time (docs/FORMAT.md §9): what
    /// this one did was not published; nothing is lost; doing it again works.
    #[error("{0}")]
    Raced(String),
    /// Another machine changed the tree's data key (src/fs/rekey.rs): this mount commits
    /// nothing more until it is mounted again.
    #[error("{0}")]
    Rekeyed(String),
    #[error(
        "a directory was unloaded again each time it was read: [cache] max_loaded_inodes is too low for this load"
    )]
    Thrashing,
    /// A directory was unloaded (`fs::model::unload`) between its load and its use: the
    /// operation loads it again (only a directory unloaded each time reaches the user).
    #[error("a directory was unloaded while in use")]
    Unloaded,
}

impl FsError {
    /// The errno for this error; the FUSE adapter replies with exactly this.
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::Exists => libc::EEXIST,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::Invalid(_) => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::QuotaExceeded => libc::EDQUOT,
            FsError::SyncOverdue => libc::EACCES,
            FsError::ReadOnly(_) => libc::EROFS,
            FsError::NotPermitted(_) => libc::EPERM,
            FsError::NoXattr => libc::ENODATA,
            FsError::Range => libc::ERANGE,
            FsError::TooBig => libc::E2BIG,
            FsError::FileTooBig => libc::EFBIG,
            FsError::NoMoreData => libc::ENXIO,
            FsError::Unsupported => libc::EOPNOTSUPP,
            FsError::CrossDevice => libc::EXDEV,
            FsError::BadHandle => libc::EBADF,
            FsError::NotWritable => libc::EBADF,
            FsError::Store(_) => libc::EIO,
            FsError::NodeDown(_) => libc::EIO,
            FsError::LocalFault { .. } | FsError::Failing { .. } => libc::EIO,
            // Like a full disk: the local staging area cannot take more until the node is back.
            FsError::StagingFull(_) => libc::ENOSPC,
            FsError::DiskFull(_) => libc::ENOSPC,
            FsError::Io(e) => match e.raw_os_error() {
                // EFBIG: past the largest file the cache's filesystem holds (ext4: 16 TiB).
                Some(code) if [libc::ENOSPC, libc::EDQUOT, libc::EFBIG].contains(&code) => code,
                _ => libc::EIO,
            },
            FsError::Journal(_) => libc::EIO,
            FsError::Tampered(_) => libc::EIO,
            FsError::Locked(_) => libc::EACCES,
            FsError::Raced(_) => libc::EAGAIN,
            FsError::Rekeyed(_) => libc::EIO,
            FsError::Thrashing | FsError::Unloaded => libc::EIO,
        }
    }
}

impl FsError {
    /// The node could not be reached (or timed out, or a proxy failed): worth retrying.
    pub fn is_node_outage(&self) -> bool {
        matches!(self, FsError::Store(e) if e.transient)
    }
}

pub type FsResult<T> = Result<T, FsError>;
