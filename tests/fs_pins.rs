//! Unpinning exactly what no published root lists (docs/FORMAT.md §15, issue #39) in a tree
//! the mount has only partly loaded: after a remount, a rewrite's replaced versions are
//! given back although most directories were never read, and content that a directory
//! never read still lists (equal plaintext files share their chunks) is never given back.
//! Each test ends with a collection of everything unpinned (`repo/gc`) and a fresh mount
//! that reads the whole tree back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pxfs::fs::store::MemoryStore;
use pxfs::fs::{Fs, FsConfig, ROOT_INO, TokenInfo};
use pxfs::keys::keyring::{FixedKey, KeyRing, PlainOnly};
use rand::{Rng, SeedableRng};

const BTNS: &str = "k51-token-7";

fn keys_of(sealed: bool) -> Arc<dyn KeyRing> {
    match sealed {
        true => Arc::new(FixedKey(pxfs::format::DataKey::from_bytes([42; 32]))),
        false => Arc::new(PlainOnly),
    }
}

async fn mount_with(store: &Arc<MemoryStore>, sealed: bool, max_loaded: usize) -> Fs {
    let mut cfg = FsConfig::new(tempfile::tempdir().unwrap().keep());
    cfg.single_token = true;
    cfg.commit_interval = Duration::from_secs(3600);
    cfg.keys = keys_of(sealed);
    cfg.max_loaded_inodes = max_loaded;
    let fs = Fs::new(cfg, store.clone()).unwrap();
    let info = TokenInfo {
        token_id: 7,
        quota: u64::MAX,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some(BTNS.into()),
        synced_usage: 0,
    };
    fs.add_token(info).await.unwrap();
    fs
}

async fn mount(store: &Arc<MemoryStore>, sealed: bool) -> Fs {
    mount_with(store, sealed, usize::MAX).await
}

async fn dir(fs: &Fs, name: &str) -> u64 {
    match fs.lookup(ROOT_INO, name).await {
        Ok(a) => a.ino,
        Err(_) => fs.mkdir(ROOT_INO, name, 0o755, 0, 0).await.unwrap().ino,
    }
}

/// Writes `data` as the whole of `dir/name` (created, or replaced in place).
async fn put(fs: &Fs, dir_name: &str, name: &str, data: &[u8]) {
    let d = dir(fs, dir_name).await;
    if fs.lookup(d, name).await.is_ok() {
        fs.unlink(d, name).await.unwrap();
    }
    let (_, fh) = fs.create(d, name, 0o644, libc::O_RDWR, 0, 0).await.unwrap();
    fs.write(fh, 0, data).await.unwrap();
    fs.release(fh).await.unwrap();
}

/// Overwrites `len` bytes of `dir/name` at `at` with `byte`, with an fsync (a commit).
async fn rewrite(fs: &Fs, dir_name: &str, name: &str, at: u64, len: usize, byte: u8) {
    let d = fs.lookup(ROOT_INO, dir_name).await.unwrap().ino;
    let f = fs.lookup(d, name).await.unwrap().ino;
    let fh = fs.open(f, libc::O_RDWR).await.unwrap();
    fs.write(fh, at, &vec![byte; len]).await.unwrap();
    fs.fsync(fh).await.unwrap();
    fs.release(fh).await.unwrap();
}

async fn read(fs: &Fs, dir_name: &str, name: &str) -> Vec<u8> {
    let d = fs.lookup(ROOT_INO, dir_name).await.unwrap().ino;
    let f = fs.lookup(d, name).await.unwrap().ino;
    let fh = fs.open(f, libc::O_RDONLY).await.unwrap();
    let mut out = Vec::new();
    loop {
        let b = fs
            .read(fh, out.len() as u64, 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{dir_name}/{name}: {e}"));
        if b.is_empty() {
            break;
        }
        out.extend_from_slice(&b);
    }
    fs.release(fh).await.unwrap();
    out
}

/// The published tree's usage, measured from the store (§7).
fn usage_of(store: &MemoryStore) -> u64 {
    let r = store.published(BTNS).unwrap();
    let (c, m) = store.measure(&r.root).unwrap();
    c + m
}

/// Waits (the graph is counted in the background) until the pinned bytes are at most
/// 1.5x the tree's usage; the last figures either way.
async fn settle_pins(fs: &Fs, store: &MemoryStore) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        fs.flush_all().await.unwrap();
        let (pinned, usage) = (store.pinned_bytes(), usage_of(store));
        if pinned * 2 <= usage * 3 || Instant::now() > deadline {
            return (pinned, usage);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

#[tokio::test]
async fn after_a_remount_rewrites_in_one_directory_give_back_what_they_replace() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let fs = mount(&store, sealed).await;
        for (i, d) in ["d1", "d2", "d3"].into_iter().enumerate() {
            put(&fs, d, "f", &bytes(i as u64, 1 << 20)).await;
        }
        fs.flush_all().await.unwrap();
        fs.abort();
        // Only d1 is ever loaded by this mount.
        let fs = mount(&store, sealed).await;
        let mut f = bytes(0, 1 << 20);
        for round in 0..6u8 {
            // Whole rewrites: every chunk of the previous version is replaced.
            rewrite(&fs, "d1", "f", 0, 1 << 20, round + 1).await;
            f.fill(round + 1);
        }
        let (pinned, usage) = settle_pins(&fs, &store).await;
        assert!(
            pinned * 2 <= usage * 3,
            "sealed {sealed}: {pinned} bytes pinned for a tree of {usage}"
        );
        // The counts that decided it give the published graph's usage as measured.
        let (root, total) = fs.counted_usage(7).expect("the graph was counted");
        let (c, m) = store.measure(&root).unwrap();
        assert_eq!(total, c + m, "sealed {sealed}");
        fs.abort();
        store.collect_garbage();
        let fresh = mount(&store, sealed).await;
        assert!(read(&fresh, "d1", "f").await == f, "sealed {sealed}");
        for (i, d) in ["d2", "d3"].into_iter().enumerate() {
            assert!(
                read(&fresh, d, "f").await == bytes(i as u64 + 1, 1 << 20),
                "sealed {sealed}: {d}/f"
            );
        }
        fresh.abort();
    }
}

/// Equal plaintext files have equal chunks (one CID each): replacing one copy must not give
/// back the chunks another copy, in a directory this mount never loaded, still lists.
#[tokio::test]
async fn chunks_a_directory_never_loaded_still_lists_stay_pinned() {
    let store = Arc::new(MemoryStore::new());
    let fs = mount(&store, false).await;
    let big = bytes(9, 700_000);
    let small = bytes(10, 5_000);
    for d in ["a", "b"] {
        put(&fs, d, "big", &big).await;
        put(&fs, d, "small", &small).await;
    }
    fs.flush_all().await.unwrap();
    fs.abort();
    let fs = mount(&store, false).await;
    // `a`'s copies replaced and deleted; `b` is never loaded.
    for round in 0..4u8 {
        rewrite(&fs, "a", "big", 0, 700_000, round + 1).await;
        rewrite(&fs, "a", "small", 0, 5_000, round + 1).await;
    }
    let a = fs.lookup(ROOT_INO, "a").await.unwrap().ino;
    fs.unlink(a, "big").await.unwrap();
    fs.unlink(a, "small").await.unwrap();
    put(&fs, "a", "new", b"a last commit after the deletions").await;
    let (pinned, usage) = settle_pins(&fs, &store).await;
    assert!(pinned * 2 <= usage * 3, "{pinned} bytes pinned for {usage}");
    fs.abort();
    store.collect_garbage();
    let fresh = mount(&store, false).await;
    assert!(read(&fresh, "b", "big").await == big);
    assert!(read(&fresh, "b", "small").await == small);
    fresh.abort();
}

/// Random trees where copies of one content sit in several directories, a mount that keeps
/// few inodes loaded (so directories come and go), random rewrites, copies, moves and
/// deletions, a collection, and a fresh mount that must read exactly the expected tree.
#[tokio::test]
async fn random_changes_in_a_partly_loaded_tree_never_lose_what_it_still_lists() {
    for seed in 0..6u64 {
        let sealed = seed % 2 == 1;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let store = Arc::new(MemoryStore::new());
        let contents: Vec<Vec<u8>> = (0..5)
            .map(|i| bytes(seed * 100 + i, [3_000, 200_000, 300_000][i as usize % 3]))
            .collect();
        let dirs = ["d0", "d1", "d2", "d3", "d4", "d5"];
        let mut expect: BTreeMap<(String, String), Vec<u8>> = BTreeMap::new();
        let fs = mount(&store, sealed).await;
        for d in dirs {
            for n in 0..3 {
                let c = contents[rng.random_range(0..contents.len())].clone();
                put(&fs, d, &format!("f{n}"), &c).await;
                expect.insert((d.into(), format!("f{n}")), c);
            }
        }
        fs.flush_all().await.unwrap();
        fs.abort();
        let fs = mount_with(&store, sealed, 8).await;
        for step in 0..30u32 {
            let d = dirs[rng.random_range(0..dirs.len())];
            let names: Vec<String> = expect
                .keys()
                .filter(|(dd, _)| dd == d)
                .map(|(_, n)| n.clone())
                .collect();
            match rng.random_range(0..4) {
                // A copy of a shared content (plaintext: the same chunks).
                0 => {
                    let c = contents[rng.random_range(0..contents.len())].clone();
                    let n = format!("c{step}");
                    put(&fs, d, &n, &c).await;
                    expect.insert((d.into(), n), c);
                }
                1 if !names.is_empty() => {
                    let n = &names[rng.random_range(0..names.len())];
                    let e = expect.get_mut(&(d.to_string(), n.clone())).unwrap();
                    let at = rng.random_range(0..e.len());
                    let len = rng.random_range(1..=(e.len() - at).min(20_000));
                    let b = rng.random();
                    rewrite(&fs, d, n, at as u64, len, b).await;
                    e[at..at + len].fill(b);
                }
                2 if !names.is_empty() => {
                    let n = &names[rng.random_range(0..names.len())];
                    let dd = fs.lookup(ROOT_INO, d).await.unwrap().ino;
                    fs.unlink(dd, n).await.unwrap();
                    expect.remove(&(d.to_string(), n.clone()));
                }
                3 if !names.is_empty() => {
                    let n = &names[rng.random_range(0..names.len())];
                    let to = dirs[rng.random_range(0..dirs.len())];
                    let new = format!("m{step}");
                    let (from_ino, to_ino) = (dir(&fs, d).await, dir(&fs, to).await);
                    fs.rename(from_ino, n, to_ino, &new, false, false)
                        .await
                        .unwrap();
                    let c = expect.remove(&(d.to_string(), n.clone())).unwrap();
                    expect.insert((to.into(), new), c);
                }
                _ => {}
            }
            if rng.random_range(0..3) == 0 {
                fs.flush_all().await.unwrap();
            }
        }
        let (pinned, usage) = settle_pins(&fs, &store).await;
        assert!(
            pinned * 2 <= usage * 3,
            "seed {seed}: {pinned} bytes pinned for {usage}"
        );
        if let Some((root, total)) = fs.counted_usage(7) {
            let (c, m) = store.measure(&root).unwrap();
            assert_eq!(total, c + m, "seed {seed}: the counts' usage");
        }
        fs.abort();
        store.collect_garbage();
        let fresh = mount(&store, sealed).await;
        for ((d, n), c) in &expect {
            assert!(read(&fresh, d, n).await == *c, "seed {seed}: {d}/{n}");
        }
        for d in dirs {
            let ino = fresh.lookup(ROOT_INO, d).await.unwrap().ino;
            let listed = fresh
                .readdir(ino, 0)
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e.name != b"." && e.name != b"..")
                .count();
            let expected = expect.keys().filter(|(dd, _)| dd == d).count();
            assert_eq!(listed, expected, "seed {seed}: {d}");
        }
        fresh.abort();
    }
}
