//! Writing imported blocks into the repo's block store.
//!
//! rust-ipfs's flatfs store takes one store-wide write lock per put and fsyncs every block
//! file and its directory (about 5 ms each here), so adds ran one block at a time at roughly
//! 80 small files/s and 20 MiB/s. The importer instead writes blocks straight into the same
//! on-disk layout, concurrently and without per-block fsync, and makes a whole add durable
//! with one `syncfs` before answering. rust-ipfs reads these files like its own: the store
//! keeps no in-memory index. What is lost is its new-block event, which only an online node
//! (bitswap) would use. Reads go straight to the same files ([`read_block`]).
//!
//! The layout mirrors rust-ipfs 0.16 `repo/paths.rs` (`block_path`, `shard`):
//! `blockstore/<2 chars before the last of the CIDv1 string>/<CIDv1>.data`.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use ipld_core::cid::{Cid, Version};
use rust_ipfs::Block;

#[derive(Debug, thiserror::Error)]
pub enum BlockWriteError {
    /// The path names the block: it ends in the block's CID.
    #[error("cannot write block {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot flush the block store {path} to disk: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The block store directory of a repo, as rust-ipfs lays it out.
pub fn store_dir(repo: &Path) -> PathBuf {
    repo.join("blockstore")
}

/// The name of the block `cid` in the store: rust-ipfs names CIDv0 blocks by their CIDv1
/// (same codec and hash), so both versions of a CID name one block.
pub fn block_key(cid: &Cid) -> String {
    match cid.version() {
        Version::V1 => cid.to_string(),
        Version::V0 => Cid::new_v1(cid.codec(), *cid.hash()).to_string(),
    }
}

/// Where rust-ipfs keeps the block `cid`.
pub fn block_path(store: &Path, cid: &Cid) -> PathBuf {
    let key = block_key(cid);
    let shard = match key.len().checked_sub(3) {
        Some(start) => &key[start..start + 2],
        None => "_",
    };
    store.join(shard).join(format!("{key}.data"))
}

/// Reads the block `cid` from the store (blocking); `None` when it is not there. Like
/// Kubo's default (`Datastore.HashOnRead` off), the bytes are not hashed again: they were
/// hashed when written, and re-hashing every block read cost a third of a cold read's CPU.
pub fn read_block(store: &Path, cid: &Cid) -> std::io::Result<Option<Block>> {
    match std::fs::read(block_path(store, cid)) {
        Ok(data) => Ok(Some(Block::new_unchecked(*cid, data))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads the blocks `cids` from the store (blocking), in order; `None` for one not there.
/// All are opened and asked of the disk first (`POSIX_FADV_WILLNEED`), so that the disk
/// fetches them together while they are read one after another. One blocking task reads
/// several blocks of a `cat` this way: a task each kept the blocking pool's threads
/// waking, and contending to be woken, for every block of a cold read. An error names the
/// block it came from.
pub fn read_blocks(
    store: &Path,
    cids: &[Cid],
) -> Result<Vec<Option<Block>>, (Cid, std::io::Error)> {
    let mut files = Vec::with_capacity(cids.len());
    for cid in cids {
        match std::fs::File::open(block_path(store, cid)) {
            Ok(file) => {
                // Advice only: a kernel that ignores it still reads the block below.
                // SAFETY: `file` is an open descriptor for the duration of the call.
                unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_WILLNEED) };
                files.push(Some(file));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => files.push(None),
            Err(e) => return Err((*cid, e)),
        }
    }
    let read = |(file, cid): (Option<std::fs::File>, &Cid)| {
        let Some(mut file) = file else {
            return Ok(None);
        };
        let len = file.metadata().map_err(|e| (*cid, e))?.len();
        let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        std::io::Read::read_to_end(&mut file, &mut data).map_err(|e| (*cid, e))?;
        Ok(Some(Block::new_unchecked(*cid, data)))
    };
    files.into_iter().zip(cids).map(read).collect()
}

/// The CIDv1 of `data` under `codec`, by its SHA2-256 hash (what Kubo names blocks by).
pub fn cid_v1(codec: u64, data: &[u8]) -> Cid {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    let hash = ipld_core::cid::multihash::Multihash::<64>::wrap(SHA2_256, &digest)
        .expect("a 32-byte digest fits a 64-byte multihash");
    Cid::new_v1(codec, hash)
}

const SHA2_256: u64 = 0x12;

/// Writes `blocks` (blocking). Existing blocks are left as they are: same CID, same bytes.
/// Not durable until a flush ([`Flushes::sync`]). Returns the bytes of the blocks that
/// were not there yet (what the store grew by).
pub fn write_blocks(store: &Path, blocks: &[(Cid, Vec<u8>)]) -> Result<u64, BlockWriteError> {
    let mut grew = 0;
    for (cid, data) in blocks {
        let path = block_path(store, cid);
        // A block that appeared meanwhile has the same bytes.
        let created = publish_new(&path, "tmp", data).map_err(|source| BlockWriteError::Write {
            path: path.clone(),
            source,
        })?;
        if created {
            grew += data.len() as u64;
        }
    }
    Ok(grew)
}

/// Publishes a complete file holding `data` at `path` unless a file of its length is there
/// already (`false` then; it is left as it is), creating its shard directory if that is
/// missing. Only complete files ever appear under the name, as with rust-ipfs's own writes:
/// the bytes go to a temporary (`…<pid>.<n>.<suffix>`) that is linked in and removed. Not
/// durable until a flush ([`Flushes::sync`]).
///
/// A file of another length under the name is what a crash before the flush leaves (the
/// name reached the disk, the bytes did not: an empty file): it is replaced, so that adding
/// the block again repairs it instead of keeping a block that no longer holds its bytes.
///
/// (An `O_TMPFILE` linked in by its `/proc/self/fd` name would spare the temporary's name
/// and its removal; tried, it made no difference measurable through the noise of the
/// probe's 1 GiB streamed write, and it needs `/proc` and a filesystem that has them.)
pub fn publish_new(path: &Path, suffix: &str, data: &[u8]) -> std::io::Result<bool> {
    // Unique temp names so concurrent writers of the same file never share one.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let damaged = match std::fs::metadata(path) {
        Ok(held) if held.len() == data.len() as u64 => return Ok(false),
        Ok(_) => true,
        Err(_) => false,
    };
    let temp = path.with_extension(format!(
        "{}.{}.{suffix}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<bool> {
        create_in_shard(&temp)?.write_all(data)?;
        if damaged {
            std::fs::rename(&temp, path)?;
            return Ok(true);
        }
        match std::fs::hard_link(&temp, path) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
            Ok(()) => Ok(true),
        }
    };
    let written = write();
    let _ = std::fs::remove_file(&temp);
    written
}

/// Creates the file at `path`, and its shard directory first if that is missing (tried
/// after the create fails: the shards exist after the first blocks, and a `mkdir` and
/// `stat` per file were two of the dozen calls each added chunk cost).
pub fn create_in_shard(path: &Path) -> std::io::Result<std::fs::File> {
    match std::fs::File::create(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(shard) = path.parent() {
                std::fs::create_dir_all(shard)?;
            }
            std::fs::File::create(path)
        }
        created => created,
    }
}

/// Writes one block (blocking), replacing a file already there whose bytes differ: what
/// `block/put` does to put back a block damaged on disk. `data` hashes to `cid` (the caller
/// made the CID from it). Not durable until a flush ([`Flushes::sync`]).
pub fn replace_block(store: &Path, cid: &Cid, data: &[u8]) -> Result<(), BlockWriteError> {
    let path = block_path(store, cid);
    if std::fs::read(&path).is_ok_and(|held| held == data) {
        return Ok(());
    }
    let write_error = |source| BlockWriteError::Write {
        path: path.clone(),
        source,
    };
    // Unique temp names so concurrent puts of the same block never share a file.
    static PUTS: AtomicU64 = AtomicU64::new(0);
    let temp = path.with_extension(format!(
        "{}.{}.put.tmp",
        std::process::id(),
        PUTS.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> std::io::Result<()> {
        let mut file = create_in_shard(&temp)?;
        file.write_all(data)?;
        // A rename publishes only complete files and replaces a damaged one at once.
        std::fs::rename(&temp, &path)
    };
    let written = write();
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(write_error)
}

/// The flushes of one block store, shared by the writers waiting at once (a group commit):
/// a writer needs a flush that *begins* after its writes ended, so while one runs, every
/// writer that finishes meanwhile waits for it to end and then shares the next. Concurrent
/// adds (a mount keeps several out while a file is written) paid a `syncfs` each, one after
/// another: each is a journal commit and a cache flush of the disk, and 1,024 of them per
/// GiB written in 1 MiB adds cost more than the writes.
#[derive(Debug, Default)]
pub struct Flushes {
    state: Mutex<FlushState>,
    ended: Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    /// Flushes begun and ended: one runs while `ended < begun` (then `begun == ended + 1`).
    begun: u64,
    ended: u64,
    /// How the last one to end went (a later flush covers what an earlier one did, so a
    /// waiter takes the latest's outcome).
    last: Option<Arc<std::io::Error>>,
}

impl Flushes {
    /// Makes everything written to `store`'s filesystem before the call durable (blocking).
    pub fn sync(&self, store: &Path) -> Result<(), BlockWriteError> {
        self.shared(|| syncfs(store))
            .map_err(|source| BlockWriteError::Sync {
                path: store.to_owned(),
                source,
            })
    }

    /// Runs `flush` or waits for one that began after this call (blocking).
    fn shared(&self, flush: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        let mut flush = Some(flush);
        let mut state = self.lock();
        // A flush beginning from now on covers this caller's writes; one running may not.
        let needed = state.begun + 1;
        loop {
            if state.ended >= needed {
                return match &state.last {
                    None => Ok(()),
                    Some(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
                };
            }
            if state.ended == state.begun
                && let Some(flush) = flush.take()
            {
                state.begun += 1;
                let this = state.begun;
                drop(state);
                let outcome = flush();
                state = self.lock();
                state.ended = this;
                state.last = outcome.err().map(Arc::new);
                self.ended.notify_all();
                continue;
            }
            state = self.ended.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FlushState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Flushes everything written to the block store's filesystem (blocking): one `syncfs`
/// instead of two fsyncs per block. Concurrent writers share them through [`Flushes`].
fn syncfs(store: &Path) -> std::io::Result<()> {
    let dir = std::fs::File::open(store)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_blocks_read_at_once_come_back_in_order_with_the_missing_ones_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("blockstore");
        let blocks: Vec<(Cid, Vec<u8>)> = (0..6u8)
            .map(|i| {
                let data = vec![i; 1 + usize::from(i) * 70_000];
                (cid_v1(0x55, &data), data)
            })
            .collect();
        // Blocks 1 and 4 are never written.
        let kept: Vec<_> = blocks
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1 && *i != 4)
            .map(|(_, b)| b.clone())
            .collect();
        write_blocks(&store, &kept).unwrap();
        let mut asked: Vec<Cid> = blocks.iter().map(|(cid, _)| *cid).collect();
        asked.push(blocks[2].0); // the same block twice
        asked.reverse();
        let got = read_blocks(&store, &asked).unwrap();
        assert_eq!(got.len(), asked.len());
        for (cid, block) in asked.iter().zip(&got) {
            let want = blocks.iter().find(|(c, _)| c == cid).unwrap();
            match block {
                Some(block) => {
                    assert_eq!(block.cid(), cid);
                    assert!(block.data() == &want.1[..], "block {cid} has other bytes");
                    assert!(kept.iter().any(|(c, _)| c == cid));
                }
                None => assert!(!kept.iter().any(|(c, _)| c == cid), "{cid} was written"),
            }
        }
        assert_eq!(got.iter().filter(|b| b.is_none()).count(), 2);
        assert!(read_blocks(&store, &[]).unwrap().is_empty());
    }

    /// Writers finishing at once share flushes, and none returns before a flush that began
    /// after its write ended.
    #[test]
    fn concurrent_writers_share_flushes_that_began_after_their_writes() {
        use std::sync::atomic::AtomicUsize;
        use std::time::Duration;
        for seed in 0..20u64 {
            let flushes = Flushes::default();
            let written = AtomicU64::new(0);
            let durable = AtomicU64::new(0);
            let runs = AtomicUsize::new(0);
            let writers = 8u64;
            std::thread::scope(|s| {
                for w in 0..writers {
                    let (flushes, written, durable, runs) = (&flushes, &written, &durable, &runs);
                    s.spawn(move || {
                        std::thread::sleep(Duration::from_micros((seed * 7 + w * 13) % 5 * 300));
                        let mine = written.fetch_add(1, Ordering::SeqCst) + 1;
                        flushes
                            .shared(|| {
                                runs.fetch_add(1, Ordering::SeqCst);
                                // What a flush covers is what was written when it began.
                                let covered = written.load(Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(3));
                                durable.fetch_max(covered, Ordering::SeqCst);
                                Ok(())
                            })
                            .unwrap();
                        assert!(
                            durable.load(Ordering::SeqCst) >= mine,
                            "seed {seed}: write {mine} returned before a flush covered it"
                        );
                    });
                }
            });
            let runs = runs.load(Ordering::SeqCst);
            assert!(
                (1..=writers as usize).contains(&runs),
                "seed {seed}: {runs} flushes"
            );
        }
        // Writers that all wait at once share: far fewer flushes than writers.
        let flushes = Flushes::default();
        let runs = AtomicUsize::new(0);
        let barrier = std::sync::Barrier::new(16);
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| {
                    barrier.wait();
                    flushes
                        .shared(|| {
                            runs.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            Ok(())
                        })
                        .unwrap();
                });
            }
        });
        assert!(
            runs.load(Ordering::SeqCst) <= 4,
            "{runs:?} flushes for 16 writers"
        );
    }

    #[test]
    fn a_failed_flush_fails_every_writer_it_covered_and_the_next_one_retries() {
        let flushes = Flushes::default();
        let err = flushes.shared(|| Err(std::io::Error::other("disk gone")));
        assert_eq!(err.unwrap_err().to_string(), "disk gone");
        let mut ran = false;
        flushes
            .shared(|| {
                ran = true;
                Ok(())
            })
            .unwrap();
        assert!(ran, "a later writer runs a flush of its own");
    }

    #[test]
    fn a_block_a_crash_left_empty_or_short_is_written_again_and_a_whole_one_is_kept() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("blockstore");
        let data = vec![7u8; 1000];
        let cid = cid_v1(0x55, &data);
        let path = block_path(&store, &cid);
        let blocks = [(cid, data.clone())];
        assert_eq!(write_blocks(&store, &blocks).unwrap(), 1000, "new");
        let whole = std::fs::metadata(&path).unwrap().ino();
        assert_eq!(write_blocks(&store, &blocks).unwrap(), 0, "held already");
        assert_eq!(
            std::fs::metadata(&path).unwrap().ino(),
            whole,
            "left as it was"
        );
        for len in [0, 999, 1001] {
            std::fs::File::create(&path).unwrap().set_len(len).unwrap();
            assert_eq!(write_blocks(&store, &blocks).unwrap(), 1000, "length {len}");
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
            assert_eq!(read_block(&store, &cid).unwrap().unwrap().data(), &data[..]);
        }
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left.len(), 1, "no temporary left behind: {left:?}");
    }

    #[test]
    fn block_paths_match_rust_ipfs_sharding() {
        let cid =
            Cid::try_from("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am").unwrap();
        assert_eq!(
            block_path(Path::new("/r"), &cid),
            Path::new("/r/6a/bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am.data")
        );
        let v0 = Cid::try_from("QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN").unwrap();
        let v1 = Cid::new_v1(v0.codec(), *v0.hash());
        assert_eq!(
            block_path(Path::new("/r"), &v0),
            block_path(Path::new("/r"), &v1)
        );
    }
}
