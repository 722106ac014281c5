//! `CacheDisk`: the free space of the filesystem holding the cache directory, and the
//! reserve kept on it (`[cache] reserve_bytes`). New data (bytes written to staged files, copies
//! of content for a write session) is refused with `ENOSPC` once free space would fall
//! below the reserve, so that what the daemon needs to keep committing what it already
//! holds (journal appends, `state.json`, directory changes, the log) still fits. Before
//! refusing, the read cache is asked to give space back: cached chunks are never needed
//! for durability.
//!
//! A full disk is an episode, not one event per request: its start and its end are each
//! logged once (by [`Outage`], as the local fault `writes`), `pxfs status` shows it while
//! it lasts, and it ends by itself at the first write that finds room again.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::fs::Fs;
use crate::fs::data::outage::Outage;
use crate::fs::error::{FsError, FsResult};
use crate::fs::store::ContentStore;
use crate::local_disk::free_bytes;

/// What the episode is named in `pxfs status` and the log.
pub(crate) const DISK_FULL: &str = "writes";

pub(crate) struct CacheDisk {
    dir: PathBuf,
    reserve: u64,
    outage: Arc<Outage>,
    /// An episode is under way (saves taking the outage lock on every write otherwise).
    full: AtomicBool,
}

impl CacheDisk {
    pub fn new(dir: PathBuf, reserve: u64, outage: Arc<Outage>) -> CacheDisk {
        CacheDisk {
            dir,
            reserve,
            outage,
            full: AtomicBool::new(false),
        }
    }

    /// Room for `want` more bytes of new data above the reserve, after the read cache of
    /// `store` gave back what it can if needed; otherwise `DiskFull` (`ENOSPC`).
    pub fn room_for(&self, want: u64, store: &dyn ContentStore) -> FsResult<()> {
        // No reserve and no episode: nothing to measure; a full disk answers for itself.
        if self.reserve == 0 && !self.full.load(Ordering::Relaxed) {
            return Ok(());
        }
        // Without a measurement there is nothing to refuse on: the write itself will tell.
        let Ok(free) = free_bytes(&self.dir) else {
            return Ok(());
        };
        let needed = self.reserve.saturating_add(want);
        if free >= needed {
            self.room_again();
            return Ok(());
        }
        let given = store.give_back_cache(needed - free);
        if given > 0 {
            tracing::debug!(bytes = given, "read cache gave space back to new data");
            if free_bytes(&self.dir).is_ok_and(|f| f >= needed) {
                self.room_again();
                return Ok(());
            }
        }
        let error = FsError::DiskFull(format!(
            "{free} bytes free on the cache disk, under the reserve of {} bytes ([cache] reserve_bytes)",
            self.reserve
        ));
        self.begins(&error);
        Err(error)
    }

    /// A write to the cache disk failed with `e`: the error the caller returns, which is
    /// `ENOSPC` (and starts an episode) when the disk is full.
    pub fn failed(&self, e: std::io::Error) -> FsError {
        if is_disk_full(&e) {
            let error = FsError::DiskFull(e.to_string());
            self.begins(&error);
            return error;
        }
        FsError::Io(e)
    }

    fn begins(&self, error: &FsError) {
        self.full.store(true, Ordering::Relaxed);
        self.outage.disk_full(DISK_FULL, error);
    }

    fn room_again(&self) {
        if self.full.swap(false, Ordering::Relaxed) {
            self.outage.local_ok(DISK_FULL);
        }
    }
}

impl Fs {
    /// Room on the cache disk for `want` bytes of new data (see [`CacheDisk::room_for`]).
    pub(crate) fn room_for_data(&self, want: u64) -> FsResult<()> {
        self.inner.disk.room_for(want, &*self.inner.stores.of(None))
    }

    /// The error of a failed write to the cache disk (see [`CacheDisk::failed`]).
    pub(crate) fn disk_failed(&self, e: std::io::Error) -> FsError {
        self.inner.disk.failed(e)
    }
}

/// The disk is out of space. (`EDQUOT`, the user's quota on it, stays `EDQUOT`.)
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_full_disk_is_disk_full() {
        assert!(is_disk_full(&std::io::Error::from_raw_os_error(
            libc::ENOSPC
        )));
        assert!(!is_disk_full(&std::io::Error::from_raw_os_error(
            libc::EDQUOT
        )));
        assert!(!is_disk_full(&std::io::Error::from_raw_os_error(libc::EIO)));
    }
}
