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

/// Writes `blocks` (blocking). Existing blocks are left as they are: same CID, same bytes.
/// Not durable until [`sync`].
pub fn write_blocks(store: &Path, blocks: &[(Cid, Vec<u8>)]) -> Result<(), BlockWriteError> {
    // Unique temp names so concurrent writers of the same block never share a file.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    for (cid, data) in blocks {
        let path = block_path(store, cid);
        let write_error = |source| BlockWriteError::Write {
            path: path.clone(),
            source,
        };
        if path.exists() {
            continue;
        }
        let temp = path.with_extension(format!(
            "{}.{}.tmp",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            if let Some(shard) = path.parent() {
                std::fs::create_dir_all(shard)?;
            }
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(data)?;
            // A hard link publishes only complete files, as rust-ipfs does; a block that
            // appeared meanwhile has the same bytes.
            match std::fs::hard_link(&temp, &path) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => Ok(()),
            }
        };
        let written = write();
        let _ = std::fs::remove_file(&temp);
        written.map_err(write_error)?;
    }
    Ok(())
}

/// Writes one block (blocking), replacing a file already there whose bytes differ: what
/// `block/put` does to put back a block damaged on disk. `data` hashes to `cid` (the caller
/// made the CID from it). Not durable until [`sync`].
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
        if let Some(shard) = path.parent() {
            std::fs::create_dir_all(shard)?;
        }
        let mut file = std::fs::File::create(&temp)?;
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

/// Flushes everything written to the block store's filesystem (blocking): one `syncfs`
/// instead of two fsyncs per block.
pub fn sync(store: &Path) -> Result<(), BlockWriteError> {
    let sync_error = |source| BlockWriteError::Sync {
        path: store.to_owned(),
        source,
    };
    let dir = std::fs::File::open(store).map_err(sync_error)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(sync_error(std::io::Error::last_os_error()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
