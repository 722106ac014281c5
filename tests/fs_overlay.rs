//! Overlay sessions (issue #39, docs/FORMAT.md §13.5) through the filesystem core on an
//! in-memory node: a change to a large chunked file stages only the chunks it writes and
//! fetches only the chunks at its edges, never the file; partial rewrites, appends,
//! truncates and holes read back identically on a fresh cache; a crash after the close
//! (the journal replays the overlay over its base) loses nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pxfs::format::DataKey;
use pxfs::format::chunks::CHUNK;
use pxfs::fs::store::MemoryStore;
use pxfs::fs::{Fs, FsConfig, ROOT_INO, SetAttr, TokenInfo};
use pxfs::keys::keyring::{FixedKey, KeyRing, PlainOnly};

const TOKEN: u64 = 7;

fn info() -> TokenInfo {
    TokenInfo {
        token_id: TOKEN,
        quota: u64::MAX,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some("k51-token-7".into()),
        synced_usage: 0,
    }
}

fn keys_of(sealed: bool) -> Arc<dyn KeyRing> {
    match sealed {
        true => Arc::new(FixedKey(DataKey::from_bytes([42; 32]))),
        false => Arc::new(PlainOnly),
    }
}

/// A mount whose cache is `cache` (a fresh directory: a fresh cache; the same one again: a
/// restart after a crash, which replays the journal).
async fn mount_at(store: &Arc<MemoryStore>, sealed: bool, cache: &Path) -> Fs {
    let mut cfg = FsConfig::new(cache.to_path_buf());
    cfg.single_token = true;
    cfg.commit_interval = std::time::Duration::from_secs(3600);
    cfg.keys = keys_of(sealed);
    let fs = Fs::new(cfg, store.clone()).unwrap();
    fs.add_token(info()).await.unwrap();
    fs
}

fn fresh_cache() -> PathBuf {
    tempfile::tempdir().unwrap().keep()
}

async fn open_rw(fs: &Fs, name: &str) -> u64 {
    let ino = fs.lookup(ROOT_INO, name).await.unwrap().ino;
    fs.open(ino, libc::O_RDWR).await.unwrap()
}

async fn read_all(fs: &Fs, name: &str) -> Vec<u8> {
    let ino = fs.lookup(ROOT_INO, name).await.unwrap().ino;
    let fh = fs.open(ino, libc::O_RDONLY).await.unwrap();
    let mut out = Vec::new();
    loop {
        let part = fs.read(fh, out.len() as u64, 1 << 20).await.unwrap();
        if part.is_empty() {
            break;
        }
        out.extend_from_slice(&part);
    }
    fs.release(fh).await.unwrap();
    out
}

/// Bytes the staging directory's files hold on disk (sparse files count what is allocated).
fn staged_on_disk(cache: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let Ok(tokens) = std::fs::read_dir(cache.join("staging")) else {
        return 0;
    };
    for t in tokens.flatten() {
        for f in std::fs::read_dir(t.path()).into_iter().flatten().flatten() {
            total += f.metadata().map(|m| m.blocks() * 512).unwrap_or(0);
        }
    }
    total
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A committed chunked file of `len` bytes: written, then rewritten once (a file streamed
/// in order goes to the node whole; its first rewrite stores it as chunks).
async fn chunked_file(fs: &Fs, name: &str, len: usize) -> Vec<u8> {
    let mut data = pattern(len, 99);
    let (_, fh) = fs
        .create(ROOT_INO, name, 0o644, libc::O_RDWR, 0, 0)
        .await
        .unwrap();
    fs.write(fh, 0, &data).await.unwrap();
    fs.fsync(fh).await.unwrap();
    fs.write(fh, 1, b"x").await.unwrap();
    data[1] = b'x';
    fs.fsync(fh).await.unwrap();
    fs.release(fh).await.unwrap();
    data
}

#[tokio::test]
async fn a_small_change_on_a_fresh_cache_stages_and_fetches_only_its_chunks() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let fs = mount_at(&store, sealed, &fresh_cache()).await;
        let mut data = chunked_file(&fs, "image", 16 << 20).await;
        fs.flush_all().await.unwrap();
        fs.abort();

        let cache = fresh_cache();
        let fs = mount_at(&store, sealed, &cache).await;
        let fh = open_rw(&fs, "image").await;
        let (fetched, served) = (store.fetches(), store.served_bytes());
        // 4 KiB straddling two chunks, unaligned: both edge chunks are fetched, no other.
        let at = 9 * CHUNK as usize - 2048;
        let page = vec![0xAB; 4096];
        fs.write(fh, at as u64, &page).await.unwrap();
        data[at..at + 4096].copy_from_slice(&page);
        let fetched = store.fetches() - fetched;
        let served = store.served_bytes() - served;
        assert!(
            fetched <= 2 && served <= 2 * (CHUNK + 16),
            "sealed {sealed}: a 4 KiB change fetched {fetched} objects, {served} bytes"
        );
        // Staged: the two chunks, not the 16 MiB file.
        let staged = staged_on_disk(&cache);
        assert!(
            staged <= 2 * CHUNK + 8192,
            "sealed {sealed}: {staged} bytes staged"
        );
        // The session reads as the file: its chunks from the staging, the rest from the node.
        let mid = fs.read(fh, at as u64 - 100, 8192).await.unwrap();
        assert_eq!(&mid[..], &data[at - 100..at - 100 + 8192]);
        let before: u64 = store.objects().iter().map(|o| o.len() as u64).sum();
        fs.fsync(fh).await.unwrap();
        fs.release(fh).await.unwrap();
        let grew = store.objects().iter().map(|o| o.len() as u64).sum::<u64>() - before;
        assert!(
            grew <= 2 * (CHUNK + 16) + 64 * 1024,
            "sealed {sealed}: the change stored {grew} bytes"
        );
        fs.abort();
        let other = mount_at(&store, sealed, &fresh_cache()).await;
        assert!(read_all(&other, "image").await == data, "sealed {sealed}");
        other.abort();
    }
}

/// Random partial rewrites, appends, truncates and extensions (holes), some in one session
/// and some across fsyncs, each read back from a fresh cache against a plain vector.
#[tokio::test]
async fn random_changes_to_a_chunked_file_read_back_on_a_fresh_cache() {
    for seed in 1..=6u64 {
        let sealed = seed % 2 == 0;
        let store = Arc::new(MemoryStore::new());
        let fs = mount_at(&store, sealed, &fresh_cache()).await;
        let mut data = chunked_file(&fs, "f", 3 * CHUNK as usize + 777).await;
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n.max(1)
        };
        for round in 0..10 {
            let fh = open_rw(&fs, "f").await;
            for _ in 0..1 + next(4) {
                match next(5) {
                    0 | 1 => {
                        let at = next(data.len() as u64 + CHUNK) as usize;
                        let len = 1 + next(2 * CHUNK) as usize;
                        let bytes = pattern(len, next(1 << 30));
                        fs.write(fh, at as u64, &bytes).await.unwrap();
                        if data.len() < at + len {
                            data.resize(at + len, 0);
                        }
                        data[at..at + len].copy_from_slice(&bytes);
                    }
                    2 => {
                        let bytes = pattern(1 + next(1000) as usize, round);
                        let at = data.len();
                        fs.write(fh, at as u64, &bytes).await.unwrap();
                        data.extend_from_slice(&bytes);
                    }
                    _ => {
                        let size = next(6 * CHUNK) as usize;
                        let ino = fs.lookup(ROOT_INO, "f").await.unwrap().ino;
                        let set = SetAttr {
                            size: Some(size as u64),
                            fh: Some(fh),
                            ..Default::default()
                        };
                        fs.setattr(ino, set).await.unwrap();
                        data.resize(size, 0);
                    }
                }
            }
            let now = read_all(&fs, "f").await;
            assert!(now == data, "seed {seed} round {round}: the session reads");
            if next(2) == 0 {
                fs.fsync(fh).await.unwrap();
            }
            fs.release(fh).await.unwrap();
            if next(3) == 0 {
                fs.flush_all().await.unwrap();
                let other = mount_at(&store, sealed, &fresh_cache()).await;
                assert!(
                    read_all(&other, "f").await == data,
                    "seed {seed} round {round}: reads back on a fresh cache"
                );
                other.abort();
            }
        }
        fs.flush_all().await.unwrap();
        fs.abort();
        let other = mount_at(&store, sealed, &fresh_cache()).await;
        assert!(
            read_all(&other, "f").await == data,
            "seed {seed}: at the end"
        );
        other.abort();
    }
}

/// Closed (journaled) but not uploaded when the daemon dies: the restart replays the
/// overlay over its base and uploads it.
#[tokio::test]
async fn a_crash_after_the_close_of_an_overlay_session_loses_nothing() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let cache = fresh_cache();
        let fs = mount_at(&store, sealed, &cache).await;
        let mut data = chunked_file(&fs, "db", 2 << 20).await;
        fs.flush_all().await.unwrap();
        let fh = open_rw(&fs, "db").await;
        fs.write(fh, 300_000, b"changed in place").await.unwrap();
        data[300_000..300_016].copy_from_slice(b"changed in place");
        let ino = fs.lookup(ROOT_INO, "db").await.unwrap().ino;
        let set = SetAttr {
            size: Some(5 * CHUNK + 5),
            fh: Some(fh),
            ..Default::default()
        };
        fs.setattr(ino, set).await.unwrap();
        data.resize(5 * CHUNK as usize + 5, 0);
        // The node goes away: the close stays staged and journaled.
        store.set_offline(true);
        fs.flush(fh).await.unwrap();
        fs.release(fh).await.unwrap();
        fs.abort();
        store.set_offline(false);

        let fs = mount_at(&store, sealed, &cache).await;
        fs.flush_all().await.unwrap();
        fs.abort();
        let other = mount_at(&store, sealed, &fresh_cache()).await;
        assert!(read_all(&other, "db").await == data, "sealed {sealed}");
        other.abort();
    }
}
