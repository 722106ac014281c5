//! The chunks on disk and their index. Chunks are appended to pack files (`pack-<seq>`, the
//! sequence number in hex), each a run of records ([`super::pack`]): creating, renaming and
//! deleting one file per 128 KiB chunk cost more CPU than everything else a cold read does
//! (inode allocation and the directory's lock, on ext4 without a journal above all).
//!
//! The cache keeps under its limit by deleting whole packs, oldest first. A chunk read from
//! a pack in the older half is copied forward into the newest pack, so what is read stays
//! and what is not ages out: least recently used at the granularity of a pack (the limit
//! over [`PACKS`]). At open the index is rebuilt from the packs' record headers; a record's
//! checksum is checked at its first read after that, so a record a crash cut short is
//! fetched again, never served.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::{debug, warn};

use super::CacheError;
use super::pack::{self, Record};

/// Records the chunk size the packs were cut with; chunks of another size are useless.
pub(super) const CHUNK_SIZE_FILE: &str = "chunk-size";
/// The cache's limit is split into about this many packs: what eviction deletes at once,
/// and (with the pack being written and a few held by readers) the descriptors it holds.
const PACKS: u64 = 32;
/// The largest pack, whatever the limit.
const MAX_PACK_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ChunkKey {
    pub cid: Arc<str>,
    pub index: u64,
}

pub(crate) struct ChunkStore {
    dir: PathBuf,
    limit: u64,
    /// A pack takes records until it holds this many bytes.
    pack_bytes: u64,
    /// Free space left on the disk for data that must be kept (see `CacheOptions`).
    keep_free: u64,
    state: Mutex<State>,
}

/// Where a chunk's bytes are.
#[derive(Debug, Clone, Copy)]
struct Place {
    pack: u64,
    /// Of the chunk's first byte in the pack file.
    offset: u64,
    len: u32,
    crc: u32,
    /// Written by this process, or read whole and its checksum found right since the open.
    checked: bool,
}

struct Pack {
    file: Arc<File>,
    /// The end of the last record written or reserved.
    end: u64,
    /// Bytes of records in it (headers and chunks), counted against the limit.
    bytes: u64,
    /// The chunks whose current place is in this pack (eviction forgets them).
    keys: Vec<ChunkKey>,
}

struct State {
    chunks: HashMap<ChunkKey, Place>,
    /// Oldest first; the last one takes new records.
    packs: BTreeMap<u64, Pack>,
    next_seq: u64,
    /// The pack this process appends to.
    head: Option<u64>,
    /// Bytes of records in all packs, including those a newer copy replaced: what the
    /// packs take on disk.
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

        let mut found = Vec::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == CHUNK_SIZE_FILE {
                continue;
            }
            match pack::parse_name(&name) {
                Some(seq) if same_cut => found.push(seq),
                // Packs of another chunk size, and the one-file-per-chunk cache of earlier
                // versions (`<cid>.<index>`, `.tmp-…`): nothing in them is used any more.
                _ => {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
        if !same_cut {
            fs::write(&marker, chunk_size.to_string()).map_err(io)?;
        }
        found.sort_unstable();

        let mut state = State {
            chunks: HashMap::new(),
            packs: BTreeMap::new(),
            next_seq: found.last().map_or(0, |last| last + 1),
            head: None,
            total: 0,
        };
        for seq in found {
            let path = dir.join(pack::name(seq));
            match load_pack(&path, seq, chunk_size, &mut state) {
                Ok(pack) if pack.bytes > 0 => {
                    state.total += pack.bytes;
                    state.packs.insert(seq, pack);
                }
                Ok(_) => {
                    let _ = fs::remove_file(&path);
                }
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "unreadable cache pack, dropped");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        let store = ChunkStore {
            dir: dir.to_path_buf(),
            limit,
            pack_bytes: (limit / PACKS).clamp(1, MAX_PACK_BYTES),
            keep_free: 0,
            state: Mutex::new(state),
        };
        // A smaller limit than the last run's.
        let evicted = store.lock().evict_above(limit);
        store.delete(evicted);
        let state = store.lock();
        debug!(
            dir = %dir.display(),
            chunks = state.chunks.len(),
            packs = state.packs.len(),
            bytes = state.total,
            "chunk cache opened"
        );
        drop(state);
        Ok(store)
    }

    pub fn keeping_free(self, keep_free: u64) -> ChunkStore {
        ChunkStore { keep_free, ..self }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Evict the oldest packs until `bytes` are freed or none is left.
    pub fn give_back(&self, bytes: u64) -> u64 {
        let (freed, evicted) = {
            let mut state = self.lock();
            let above = state.total.saturating_sub(bytes);
            let before = state.total;
            let evicted = state.evict_above(above);
            (before - state.total, evicted)
        };
        self.delete(evicted);
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

    /// Whether the chunk is cached.
    pub fn touch(&self, key: &ChunkKey) -> bool {
        self.lock().chunks.contains_key(key)
    }

    /// Reads `len` bytes at `start` of a cached chunk. `None` when the chunk is not (or no
    /// longer) on disk in full, or its bytes are not what was written; the index forgets it
    /// then. A chunk in the older half of the cache is copied forward (it is in use).
    pub fn read(&self, key: &ChunkKey, start: u64, len: usize) -> Option<Vec<u8>> {
        let (place, file, forward) = {
            let state = self.lock();
            let place = *state.chunks.get(key)?;
            let file = state.packs.get(&place.pack)?.file.clone();
            (place, file, state.is_old(place.pack, self.limit))
        };
        let end = start.checked_add(len as u64)?;
        if end > u64::from(place.len) {
            return None;
        }
        if place.checked && !forward {
            let mut buf = vec![0u8; len];
            return match file.read_exact_at(&mut buf, place.offset + start) {
                Ok(()) => Some(buf),
                Err(e) => {
                    self.unreadable(key, place, &e);
                    None
                }
            };
        }
        let mut whole = vec![0u8; place.len as usize];
        if let Err(e) = file.read_exact_at(&mut whole, place.offset) {
            self.unreadable(key, place, &e);
            return None;
        }
        if !place.checked {
            if crc32c::crc32c(&whole) != place.crc {
                warn!(cid = %key.cid, index = key.index, "cached chunk damaged, fetching again");
                self.forget(key, place);
                return None;
            }
            if let Some(now) = self.lock().chunks.get_mut(key)
                && now.pack == place.pack
                && now.offset == place.offset
            {
                now.checked = true;
            }
        }
        if forward && let Err(e) = self.insert(key.clone(), &whole) {
            debug!(error = %e, "cannot copy a chunk forward");
        }
        if start == 0 && len == whole.len() {
            return Some(whole);
        }
        Some(whole[start as usize..end as usize].to_vec())
    }

    /// Appends a chunk to the newest pack, records it and evicts down to the limit. Below
    /// the disk's reserve the chunk is not kept (and that is no error: it is only a cache).
    pub fn insert(&self, key: ChunkKey, data: &[u8]) -> Result<(), CacheError> {
        if data.is_empty() {
            return Ok(());
        }
        if !self.has_room(data.len() as u64) {
            debug!(cid = %key.cid, "cache disk under its reserve: chunk not cached");
            return Ok(());
        }
        let record = Record {
            cid: &key.cid,
            index: key.index,
            crc: crc32c::crc32c(data),
            len: data.len() as u32,
        };
        let header = record.header();
        // Room in the newest pack, taken under the lock; the bytes are written outside it.
        let (seq, file, at, evicted) = {
            let mut state = self.lock();
            let seq = self.writable_pack(&mut state)?;
            let pack = state.packs.get_mut(&seq).expect("the newest pack exists");
            let at = pack.end;
            let record_len = (header.len() + data.len()) as u64;
            pack.end += record_len;
            pack.bytes += record_len;
            let file = pack.file.clone();
            state.total += record_len;
            let evicted = state.evict_above(self.limit);
            (seq, file, at, evicted)
        };
        self.delete(evicted);
        let path = self.dir.join(pack::name(seq));
        let written = file
            .write_all_at(&header, at)
            .and_then(|()| file.write_all_at(data, at + header.len() as u64));
        if let Err(source) = written {
            // The room stays taken (and counted): a later open stops reading the pack here.
            return Err(CacheError::Io {
                path,
                source: Arc::new(source),
            });
        }
        let mut state = self.lock();
        let State { chunks, packs, .. } = &mut *state;
        // Evicted while the bytes were written: then they are not kept.
        if let Some(pack) = packs.get_mut(&seq) {
            let place = Place {
                pack: seq,
                offset: at + header.len() as u64,
                len: record.len,
                crc: record.crc,
                checked: true,
            };
            chunks.insert(key.clone(), place);
            pack.keys.push(key);
        }
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
        let mut file = File::open(source).map_err(open_err)?;
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

    /// The pack new records go to: the newest, or a new one when that one is full.
    fn writable_pack(&self, state: &mut State) -> Result<u64, CacheError> {
        // Packs loaded at open are never appended to: a record a crash cut short may end them.
        if let Some(seq) = state.head
            && state
                .packs
                .get(&seq)
                .is_some_and(|p| p.bytes < self.pack_bytes)
        {
            return Ok(seq);
        }
        let seq = state.next_seq;
        let path = self.dir.join(pack::name(seq));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| CacheError::Io {
                path: path.clone(),
                source: Arc::new(e),
            })?;
        state.next_seq += 1;
        state.head = Some(seq);
        state.packs.insert(
            seq,
            Pack {
                file: Arc::new(file),
                end: 0,
                bytes: 0,
                keys: Vec::new(),
            },
        );
        Ok(seq)
    }

    fn unreadable(&self, key: &ChunkKey, place: Place, e: &std::io::Error) {
        warn!(cid = %key.cid, index = key.index, error = %e, "cached chunk unreadable, fetching again");
        self.forget(key, place);
    }

    /// Forgets a chunk if it is still where `place` says.
    fn forget(&self, key: &ChunkKey, place: Place) {
        let mut state = self.lock();
        if let Some(now) = state.chunks.get(key)
            && now.pack == place.pack
            && now.offset == place.offset
        {
            state.chunks.remove(key);
        }
    }

    /// Deletes evicted packs' files (outside the lock; a reader that holds one keeps its data).
    fn delete(&self, packs: Vec<u64>) {
        for seq in packs {
            debug!(pack = seq, "evicting a cache pack");
            let _ = fs::remove_file(self.dir.join(pack::name(seq)));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The index stays consistent at every await-free step, so a panic elsewhere while
        // holding the lock leaves nothing half-done: keep using it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Drops the oldest packs while more than `limit` bytes are cached; returns them.
    fn evict_above(&mut self, limit: u64) -> Vec<u64> {
        let mut evicted = Vec::new();
        while self.total > limit {
            let Some((seq, pack)) = self.packs.pop_first() else {
                break;
            };
            self.total -= pack.bytes;
            for key in pack.keys {
                if self.chunks.get(&key).is_some_and(|place| place.pack == seq) {
                    self.chunks.remove(&key);
                }
            }
            evicted.push(seq);
        }
        evicted
    }

    /// The pack is in the older half of the cache: the next half-limit of new chunks would
    /// evict it.
    fn is_old(&self, seq: u64, limit: u64) -> bool {
        let newer: u64 = self
            .packs
            .range(seq + 1..)
            .map(|(_, pack)| pack.bytes)
            .sum();
        newer >= limit / 2
    }
}

/// Reads a pack's record headers into the index; stops at the first record that is not
/// whole (what a crash while appending leaves).
fn load_pack(path: &Path, seq: u64, chunk_size: u64, state: &mut State) -> std::io::Result<Pack> {
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut pack = Pack {
        end: 0,
        bytes: 0,
        keys: Vec::new(),
        file: Arc::new(file),
    };
    for found in pack::records(&pack.file, chunk_size)? {
        let key = ChunkKey {
            cid: Arc::from(found.cid.as_str()),
            index: found.index,
        };
        let place = Place {
            pack: seq,
            offset: found.data_offset,
            len: found.len,
            crc: found.crc,
            checked: false,
        };
        // A later pack's copy of the same chunk replaces this one when that pack is read.
        state.chunks.insert(key.clone(), place);
        pack.keys.push(key);
        let end = found.data_offset + u64::from(found.len);
        pack.bytes += end - pack.end;
        pack.end = end;
    }
    Ok(pack)
}

/// CIDs are base32/base58 strings; anything else is not a CID a pack may name.
pub(crate) fn valid_cid(cid: &str) -> bool {
    !cid.is_empty() && cid.len() <= 128 && cid.bytes().all(|b| b.is_ascii_alphanumeric())
}
