//! One sNFT in the filesystem core, in this process and without a kernel, as the `fs_*`
//! tests set it up: the token's terms, a core that commits only when the test asks, and
//! what a directory lists.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use pxfs::fs::{Fs, FsConfig, Ino, TokenInfo};

/// The sNFT `token_id`, paid up, with `quota` bytes, its tree published under `btns`.
pub fn paid_up(token_id: u64, quota: u64, btns: &str) -> TokenInfo {
    TokenInfo {
        token_id,
        quota,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some(btns.into()),
    }
}

/// A core for one sNFT caching in `cache` that commits only when the test asks (fsync,
/// `commit`, unmount), so what a test observes never depends on the commit timer.
pub fn committing_on_request(cache: &Path) -> FsConfig {
    let mut cfg = FsConfig::new(cache.to_path_buf());
    cfg.single_token = true;
    cfg.commit_interval = Duration::from_secs(3600);
    cfg
}

/// The names `readdir` lists in `dir`, without `.` and `..`, sorted.
pub async fn names(fs: &Fs, dir: Ino) -> Vec<String> {
    let mut names: Vec<String> = fs
        .readdir(dir, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}
