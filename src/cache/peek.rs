//! Reading cached chunks without opening the cache: what `pxfs check --repair` takes a lost
//! block back from (src/check/repair.rs), also while a mount owns the cache. Nothing is
//! written, evicted or recorded; the caller checks the bytes against the block's CID.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The chunk files of a cache directory (`CACHE/chunks`), read only.
pub struct CachedChunks {
    dir: PathBuf,
    chunk_size: u64,
}

impl CachedChunks {
    /// `None` when there is no cache there (or it does not say how its chunks were cut).
    pub fn open(dir: &Path) -> Option<CachedChunks> {
        let recorded = std::fs::read_to_string(dir.join(super::store::CHUNK_SIZE_FILE)).ok()?;
        let chunk_size = recorded.trim().parse::<u64>().ok().filter(|s| *s > 0)?;
        Some(CachedChunks {
            dir: dir.to_path_buf(),
            chunk_size,
        })
    }

    /// The `len` bytes at `start` of the stored object `cid`, when every chunk they span is
    /// on disk.
    pub fn read(&self, cid: &str, start: u64, len: u64) -> Option<Vec<u8>> {
        let mut out = Vec::with_capacity(usize::try_from(len).ok()?);
        let end = start.checked_add(len)?;
        let mut at = start;
        while at < end {
            let index = at / self.chunk_size;
            let within = at % self.chunk_size;
            let take = (self.chunk_size - within).min(end - at);
            let file = std::fs::File::open(self.dir.join(format!("{cid}.{index}"))).ok()?;
            let mut buf = vec![0u8; usize::try_from(take).ok()?];
            file.read_exact_at(&mut buf, within).ok()?;
            out.extend_from_slice(&buf);
            at += take;
        }
        Some(out)
    }
}
