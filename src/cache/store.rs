//! The chunks on disk and their LRU index. One file per chunk, `<cid>.<index>`, written to a
//! temporary name and renamed into place so a crash never leaves a half chunk under a real
//! name. The index is rebuilt from the directory at open (oldest modification first), so
//! the cache survives restarts.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use lru::LruCache;
use rand::RngCore;
use tracing::{debug, warn};

use super::CacheError;

/// Records the chunk size the files were cut with; chunks of another size are useless.
pub(super) const CHUNK_SIZE_FILE: &str = "chunk-size";
const TEMP_PREFIX: &str = ".tmp-";
/// Allocation unit assumed for chunk files when accounting their size.
const DISK_BLOCK: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChunkKey {
    pub cid: Arc<str>,
    pub index: u64,
}

pub(crate) struct ChunkStore {
    dir: PathBuf,
    limit: u64,
    /// Free space left on the disk for data that must be kept (see `CacheOptions`).
    keep_free: u64,
    index: Mutex<Index>,
}

struct Index {
    /// Chunk → its size on disk (rounded up to whole blocks); least recently used first out.
    lru: LruCache<ChunkKey, u64>,
    total: u64,
}

impl ChunkStore {
    pub fn open(dir: &Path, limit: u64, chunk_size: u64) -> Result<ChunkStore, CacheError> {
        let io = |source| CacheError::Io {
            path: dir.to_path_buf(),
            source: Arc::new(source),
        };
        fs::create_dir_all(dir).map_err(io)?;
        let marker = dir.join(CHUNK_SIZE_FILE);
        let recorded = fs::read_to_string(&marker)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let same_cut = recorded == Some(chunk_size);

        let mut found: Vec<(SystemTime, ChunkKey, u64)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(TEMP_PREFIX) {
                // Left behind by a crash mid-write.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let Some(key) = parse_chunk_name(name) else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            // Chunks are never empty; an empty file is a write the crash cut short.
            if !same_cut || meta.len() == 0 || meta.len() > chunk_size {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((mtime, key, meta.len()));
        }
        if !same_cut {
            fs::write(&marker, chunk_size.to_string()).map_err(io)?;
        }
        found.sort_by_key(|(mtime, _, _)| *mtime);

        let store = ChunkStore {
            dir: dir.to_path_buf(),
            limit,
            keep_free: 0,
            index: Mutex::new(Index {
                lru: LruCache::unbounded(),
                total: 0,
            }),
        };
        let chunks = found.len();
        for (_, key, len) in found {
            store.record(key, len);
        }
        debug!(dir = %dir.display(), chunks, bytes = store.total(), "chunk cache opened");
        Ok(store)
    }

    pub fn keeping_free(self, keep_free: u64) -> ChunkStore {
        ChunkStore { keep_free, ..self }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Evict least recently used chunks until `bytes` are freed or none is left.
    pub fn give_back(&self, bytes: u64) -> u64 {
        let evicted = {
            let mut index = self.lock();
            let mut freed = 0;
            let mut evicted = Vec::new();
            while freed < bytes {
                let Some((k, l)) = index.lru.pop_lru() else {
                    break;
                };
                index.total -= l;
                freed += l;
                evicted.push(k);
            }
            evicted
        };
        let mut freed = 0;
        for key in evicted {
            let path = self.path(&key);
            let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if fs::remove_file(&path).is_ok() {
                freed += len;
            }
        }
        freed
    }

    /// The disk has room for `len` more bytes of cache above what it keeps free.
    fn has_room(&self, len: u64) -> bool {
        self.keep_free == 0
            || crate::local_disk::free_bytes(&self.dir)
                .map_or(true, |free| free >= self.keep_free.saturating_add(len))
    }

    pub fn total(&self) -> u64 {
        self.lock().total
    }

    /// Whether the chunk is cached; counts as a use.
    pub fn touch(&self, key: &ChunkKey) -> bool {
        self.lock().lru.get(key).is_some()
    }

    /// Reads `len` bytes at `start` of a cached chunk. `None` when the chunk is not (or no
    /// longer) on disk in full; the index forgets it then.
    pub fn read(&self, key: &ChunkKey, start: u64, len: usize) -> Option<Vec<u8>> {
        let path = self.path(key);
        let result = fs::File::open(&path).and_then(|f| {
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, start)?;
            // The modification time is the recency the index is rebuilt from at the next
            // open; failing to set it only makes that order less exact.
            let _ = f.set_modified(SystemTime::now());
            Ok(buf)
        });
        match result {
            Ok(buf) => Some(buf),
            Err(e) => {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(path = %path.display(), error = %e, "cached chunk unreadable, fetching again");
                }
                self.forget(key);
                None
            }
        }
    }

    /// Writes a chunk (temp file + rename), records it and evicts down to the limit. Below
    /// the disk's reserve the chunk is not kept (and that is no error: it is only a cache).
    pub fn insert(&self, key: ChunkKey, data: &[u8]) -> Result<(), CacheError> {
        if !self.has_room(data.len() as u64) {
            debug!(cid = %key.cid, "cache disk under its reserve: chunk not cached");
            return Ok(());
        }
        let path = self.path(&key);
        let temp = self.dir.join(format!("{TEMP_PREFIX}{}", random_hex()));
        let written = fs::File::create(&temp)
            .and_then(|mut f| f.write_all(data))
            .and_then(|()| fs::rename(&temp, &path));
        if let Err(source) = written {
            let _ = fs::remove_file(&temp);
            return Err(CacheError::Io {
                path,
                source: Arc::new(source),
            });
        }
        self.record(key, data.len() as u64);
        Ok(())
    }

    /// Copies the chunks of a local file (an upload's staged copy) into the cache.
    pub fn insert_file(
        &self,
        cid: &str,
        source: &Path,
        chunk_size: u64,
    ) -> Result<u64, CacheError> {
        let open_err = |e: std::io::Error| CacheError::Io {
            path: source.to_path_buf(),
            source: Arc::new(e),
        };
        let mut file = fs::File::open(source).map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        let cid: Arc<str> = Arc::from(cid);
        let mut buf = vec![0u8; chunk_size as usize];
        let mut index = 0u64;
        let mut offset = 0u64;
        while offset < size {
            let len = chunk_size.min(size - offset) as usize;
            file.read_exact(&mut buf[..len]).map_err(open_err)?;
            self.insert(
                ChunkKey {
                    cid: cid.clone(),
                    index,
                },
                &buf[..len],
            )?;
            offset += len as u64;
            index += 1;
        }
        Ok(size)
    }

    fn record(&self, key: ChunkKey, len: u64) {
        // What the file occupies on disk: many small files would otherwise fill far more
        // disk than the limit says.
        let len = len.div_ceil(DISK_BLOCK) * DISK_BLOCK;
        let evicted = {
            let mut index = self.lock();
            if let Some(old) = index.lru.put(key, len) {
                index.total -= old;
            }
            index.total += len;
            let mut evicted = Vec::new();
            while index.total > self.limit {
                let Some((k, l)) = index.lru.pop_lru() else {
                    break;
                };
                index.total -= l;
                evicted.push(k);
            }
            evicted
        };
        // Files go outside the lock; a reader that already opened one keeps its data.
        for key in evicted {
            debug!(cid = %key.cid, index = key.index, "evicting chunk");
            let _ = fs::remove_file(self.path(&key));
        }
    }

    fn forget(&self, key: &ChunkKey) {
        let mut index = self.lock();
        if let Some(len) = index.lru.pop(key) {
            index.total -= len;
        }
    }

    fn path(&self, key: &ChunkKey) -> PathBuf {
        self.dir.join(format!("{}.{}", key.cid, key.index))
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // The index stays consistent at every await-free step, so a panic elsewhere while
        // holding the lock leaves nothing half-done: keep using it.
        self.index
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn parse_chunk_name(name: &str) -> Option<ChunkKey> {
    let (cid, index) = name.rsplit_once('.')?;
    if !valid_cid(cid) {
        return None;
    }
    Some(ChunkKey {
        cid: Arc::from(cid),
        index: index.parse().ok()?,
    })
}

/// CIDs are base32/base58 strings; anything else must not become a file name.
pub(crate) fn valid_cid(cid: &str) -> bool {
    !cid.is_empty() && cid.len() <= 128 && cid.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn random_hex() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
