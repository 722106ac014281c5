//! Where `pxfs node` keeps a block on disk, for tests that damage or remove one.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The file of block `cid` (a CIDv1 string) in the node repository `repo`, in rust-ipfs's
/// layout: `blockstore/<the two characters before the CID's last>/<CID>.data`.
pub fn block_file(repo: &Path, cid: &str) -> PathBuf {
    let shard = &cid[cid.len() - 3..cid.len() - 1];
    repo.join("blockstore")
        .join(shard)
        .join(format!("{cid}.data"))
}
