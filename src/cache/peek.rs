//! Reading cached chunks without opening the cache: what `pxfs check --repair` takes a lost
//! block back from (src/check/repair.rs), also while a mount owns the cache. Nothing is
//! written, evicted or recorded; each chunk's checksum is checked, and the caller checks the
//! bytes against the block's CID.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The packs of a cache directory (`CACHE/chunks`) as they were at `open`, read only.
pub struct CachedChunks {
    dir: PathBuf,
    chunk_size: u64,
    /// (CID, chunk index) → (pack, offset, length, CRC-32C); the newest copy.
    chunks: HashMap<(String, u64), (u64, u64, u32, u32)>,
}

impl CachedChunks {
    /// `None` when there is no cache there (or it does not say how its chunks were cut).
    pub fn open(dir: &Path) -> Option<CachedChunks> {
        let recorded = std::fs::read_to_string(dir.join(super::store::CHUNK_SIZE_FILE)).ok()?;
        let chunk_size = recorded.trim().parse::<u64>().ok().filter(|s| *s > 0)?;
        let mut packs: Vec<u64> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| super::pack::parse_name(&e.ok()?.file_name().to_string_lossy()))
            .collect();
        packs.sort_unstable();
        let mut chunks = HashMap::new();
        for seq in packs {
            // A pack the mount evicts meanwhile is simply not there.
            let Ok(file) = File::open(dir.join(super::pack::name(seq))) else {
                continue;
            };
            for r in super::pack::records(&file, chunk_size).unwrap_or_default() {
                chunks.insert((r.cid, r.index), (seq, r.data_offset, r.len, r.crc));
            }
        }
        Some(CachedChunks {
            dir: dir.to_path_buf(),
            chunk_size,
            chunks,
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
            let &(seq, offset, chunk_len, crc) = self.chunks.get(&(cid.to_string(), index))?;
            let file = File::open(self.dir.join(super::pack::name(seq))).ok()?;
            let mut chunk = vec![0u8; chunk_len as usize];
            file.read_exact_at(&mut chunk, offset).ok()?;
            if crc32c::crc32c(&chunk) != crc {
                return None;
            }
            let take = (u64::from(chunk_len).checked_sub(within)?).min(end - at);
            if take == 0 {
                return None;
            }
            out.extend_from_slice(&chunk[within as usize..(within + take) as usize]);
            at += take;
        }
        Some(out)
    }
}
