//! History written by the mount (docs/FORMAT.md §14): every commit keeps the versions the
//! retention policy promises, `.snapshots/` shows them, and usage counts every distinct
//! object of the tree and of the kept versions once — on the mount, in the published
//! document and as the node measures the graph — until pruning gives it back.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use pxfs::format::history::{Policy, retain, snapshot_name};
use pxfs::fs::store::MemoryStore;
use pxfs::fs::{Attr, Clock, ContentStore, Fs, FsConfig, FsError, ROOT_INO, TokenInfo};
use pxfs::keys::keyring::{FixedKey, KeyRing, PlainOnly};

const TOKEN: u64 = 7;
const BTNS: &str = "k51-token-7";
const NS: i64 = 1_000_000_000;
/// 2026-11-30T12:00:00Z.
const T0: i64 = 1_796_040_000 * NS;

fn info() -> TokenInfo {
    TokenInfo {
        token_id: TOKEN,
        quota: u64::MAX,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some(BTNS.into()),
        synced_usage: 0,
    }
}

fn keys_of(sealed: bool) -> Arc<dyn KeyRing> {
    match sealed {
        true => Arc::new(FixedKey(pxfs::format::DataKey::from_bytes([42; 32]))),
        false => Arc::new(PlainOnly),
    }
}

/// A simulated clock the commits take their time from.
#[derive(Clone)]
struct SimClock(Arc<AtomicI64>);

impl SimClock {
    fn new() -> SimClock {
        SimClock(Arc::new(AtomicI64::new(T0)))
    }
    fn advance(&self, secs: i64) {
        self.0.fetch_add(secs * NS, Ordering::SeqCst);
    }
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

async fn mount(store: &Arc<MemoryStore>, sealed: bool, policy: Policy, clock: &SimClock) -> Fs {
    let mut cfg = FsConfig::new(tempfile::tempdir().unwrap().keep());
    cfg.single_token = true;
    cfg.commit_interval = std::time::Duration::from_secs(3600);
    cfg.keys = keys_of(sealed);
    cfg.history = policy;
    let c = clock.0.clone();
    cfg.clock = Some(Clock(Arc::new(move || c.load(Ordering::SeqCst))));
    let fs = Fs::new(cfg, store.clone()).unwrap();
    fs.add_token(info()).await.unwrap();
    fs
}

fn errno<T: std::fmt::Debug>(r: Result<T, FsError>) -> i32 {
    r.unwrap_err().errno()
}

async fn put(fs: &Fs, name: &str, data: &[u8]) {
    let fh = match fs.lookup(ROOT_INO, name).await {
        Ok(a) => {
            let fh = fs.open(a.ino, libc::O_RDWR).await.unwrap();
            fs.setattr(
                a.ino,
                pxfs::fs::SetAttr {
                    size: Some(0),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            fh
        }
        Err(_) => {
            fs.create(ROOT_INO, name, 0o644, libc::O_RDWR, 0, 0)
                .await
                .unwrap()
                .1
        }
    };
    fs.write(fh, 0, data).await.unwrap();
    fs.release(fh).await.unwrap();
}

async fn walk(fs: &Fs, path: &str) -> Result<Attr, FsError> {
    let mut attr = fs.getattr(ROOT_INO).await?;
    for part in path.split('/') {
        attr = fs.lookup(attr.ino, part).await?;
    }
    Ok(attr)
}

async fn read_path(fs: &Fs, path: &str) -> Result<Vec<u8>, FsError> {
    let ino = walk(fs, path).await?.ino;
    let fh = fs.open(ino, libc::O_RDONLY).await?;
    let r = fs.read(fh, 0, 1 << 24).await.map(|b| b.to_vec());
    fs.release(fh).await.unwrap();
    r
}

async fn listing(fs: &Fs, ino: u64) -> Vec<String> {
    let mut names: Vec<String> = fs
        .readdir(ino, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    names
}

async fn snapshots(fs: &Fs) -> Vec<String> {
    let dir = fs.lookup(ROOT_INO, ".snapshots").await.unwrap().ino;
    listing(fs, dir).await
}

/// What the node holds for the published graph, each distinct object once (§7).
fn measured(store: &MemoryStore) -> u64 {
    let r = store.published(BTNS).unwrap();
    let (c, m) = store.measure(&r.root).unwrap();
    c + m
}

/// The published usage is the graph's, the mount's live figure agrees once committed, and
/// a node's collection keeps exactly the graph.
fn assert_counted(fs: &Fs, store: &MemoryStore, what: &str) {
    let published = store.published(BTNS).unwrap().usage;
    assert_eq!(published, measured(store), "{what}: published usage");
    let (parts, _) = fs.usage_parts(TOKEN).unwrap();
    assert_eq!(
        parts.total(),
        published,
        "{what}: the mount's usage ({parts:?})"
    );
    store.collect_garbage();
    assert_eq!(
        store.pinned_bytes() - pinned_documents(store),
        published,
        "{what}: what the node keeps pinned besides usage documents"
    );
}

/// Bytes of the usage documents pinned (each commit's; not part of any tree).
fn pinned_documents(store: &MemoryStore) -> u64 {
    store
        .objects()
        .iter()
        .filter(|o| serde_json::from_slice::<pxfs::fs::store::UsageRecord>(o).is_ok())
        .filter(|o| store.is_pinned(&store.object_cid(o).unwrap()))
        .map(|o| o.len() as u64)
        .sum()
}

fn bytes(tag: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31) ^ tag).collect()
}

/// Overwrite then delete a file: both versions read back under `.snapshots/`, on this
/// mount and after a remount from an empty cache; usage counts each distinct object once.
#[tokio::test]
async fn an_overwritten_then_deleted_file_reads_back_from_both_snapshots() {
    for sealed in [false, true] {
        let store = Arc::new(MemoryStore::new());
        let clock = SimClock::new();
        let fs = mount(&store, sealed, Policy::default(), &clock).await;
        let (a, b) = (bytes(1, 300_000), bytes(2, 5_000));
        put(&fs, "f", &a).await;
        put(&fs, "keep", b"unchanged").await;
        fs.flush_all().await.unwrap();
        let t1 = clock.now();
        assert_counted(&fs, &store, "first commit");
        clock.advance(10);
        put(&fs, "f", &b).await;
        fs.flush_all().await.unwrap();
        let t2 = clock.now();
        assert_counted(&fs, &store, "overwritten");
        clock.advance(10);
        fs.unlink(ROOT_INO, "f").await.unwrap();
        // Deleting frees nothing while history keeps it.
        let (before, _) = fs.usage_parts(TOKEN).unwrap();
        assert!(
            before.total() >= store.published(BTNS).unwrap().usage,
            "a deletion history keeps lowered usage: {before:?}"
        );
        fs.flush_all().await.unwrap();
        assert_counted(&fs, &store, "deleted");
        let names = [snapshot_name(t1), snapshot_name(t2)];
        for round in 0..2 {
            let fs = match round {
                0 => fs.clone(),
                _ => mount(&store, sealed, Policy::default(), &clock).await,
            };
            assert_eq!(listing(&fs, ROOT_INO).await, ["keep"], "round {round}");
            assert_eq!(snapshots(&fs).await, names, "round {round}");
            assert_eq!(
                read_path(&fs, &format!(".snapshots/{}/f", names[0]))
                    .await
                    .unwrap(),
                a
            );
            assert_eq!(
                read_path(&fs, &format!(".snapshots/{}/f", names[1]))
                    .await
                    .unwrap(),
                b
            );
            assert_eq!(
                read_path(&fs, &format!(".snapshots/{}/keep", names[1]))
                    .await
                    .unwrap(),
                b"unchanged"
            );
            let v = walk(&fs, &format!(".snapshots/{}", names[0]))
                .await
                .unwrap()
                .ino;
            assert_eq!(
                errno(fs.create(v, "new", 0o644, libc::O_WRONLY, 0, 0).await),
                libc::EROFS
            );
            assert_eq!(errno(fs.unlink(v, "f").await), libc::EROFS);
        }
        fs.abort();
    }
}

/// A browsing shell keeps its place: the versions listed before a commit keep their
/// inodes when the commit adds one.
#[tokio::test]
async fn a_commit_adds_a_version_without_disturbing_the_ones_being_read() {
    let store = Arc::new(MemoryStore::new());
    let clock = SimClock::new();
    let fs = mount(&store, false, Policy::default(), &clock).await;
    put(&fs, "f", b"one").await;
    fs.flush_all().await.unwrap();
    clock.advance(5);
    put(&fs, "f", b"two").await;
    fs.flush_all().await.unwrap();
    let [first] = <[String; 1]>::try_from(snapshots(&fs).await).unwrap();
    let held = walk(&fs, &format!(".snapshots/{first}")).await.unwrap().ino;
    clock.advance(5);
    put(&fs, "f", b"three").await;
    fs.flush_all().await.unwrap();
    assert_eq!(snapshots(&fs).await.len(), 2);
    let again = walk(&fs, &format!(".snapshots/{first}")).await.unwrap().ino;
    assert_eq!(held, again, "the version kept its inode");
    let f = fs.lookup(held, "f").await.unwrap().ino;
    let fh = fs.open(f, libc::O_RDONLY).await.unwrap();
    assert_eq!(&fs.read(fh, 0, 100).await.unwrap()[..], b"one");
    fs.release(fh).await.unwrap();
    fs.abort();
}

/// Commits over simulated weeks, at irregular intervals: after each, `.snapshots/` lists
/// exactly what the policy applied once to every commit ever made keeps (§14.2), and
/// usage stays the graph's as versions are dropped.
#[tokio::test]
async fn the_policy_over_simulated_time_keeps_exactly_the_versions_it_promises() {
    let policy = Policy {
        keep_all_secs: 600,
        hourly: 6,
        daily: 3,
        monthly: 2,
    };
    for seed in 0..3u64 {
        let store = Arc::new(MemoryStore::new());
        let clock = SimClock::new();
        let fs = mount(&store, seed == 1, policy, &clock).await;
        let mut times = Vec::new();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for step in 0..60 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // Seconds to days between commits.
            let gap = match x % 4 {
                0 => 1 + (x >> 8) % 120,
                1 => 60 + (x >> 8) % 3_600,
                2 => 3_600 + (x >> 8) % 20_000,
                _ => 86_400 + (x >> 8) % 400_000,
            };
            clock.advance(gap as i64);
            put(
                &fs,
                &format!("f{}", step % 5),
                &bytes(step as u8, 1_000 + step * 10),
            )
            .await;
            fs.flush_all().await.unwrap();
            let now = clock.now();
            times.push(now);
            let earlier = &times[..times.len() - 1];
            let want: BTreeSet<String> = retain(earlier, now, &policy, now)
                .into_iter()
                .map(snapshot_name)
                .collect();
            let got: BTreeSet<String> = snapshots(&fs).await.into_iter().collect();
            assert_eq!(got, want, "seed {seed} step {step}");
        }
        assert_counted(&fs, &store, "after weeks of commits");
        fs.abort();
    }
}

/// Pruning (a lower policy; here history off) drops the versions at the next commit and
/// gives their space back: usage falls to the tree's, and a collection frees the rest.
#[tokio::test]
async fn pruning_gives_the_space_back_at_the_next_commit() {
    let store = Arc::new(MemoryStore::new());
    let clock = SimClock::new();
    let fs = mount(&store, true, Policy::default(), &clock).await;
    for i in 0..4u8 {
        put(&fs, "big", &bytes(i, 400_000)).await;
        fs.flush_all().await.unwrap();
        clock.advance(30);
    }
    assert_counted(&fs, &store, "four versions");
    let with_history = store.published(BTNS).unwrap().usage;
    assert!(with_history > 4 * 400_000, "{with_history}");
    fs.abort();
    let fs = mount(&store, true, Policy::OFF, &clock).await;
    put(&fs, "small", b"x").await;
    fs.flush_all().await.unwrap();
    assert_counted(&fs, &store, "pruned");
    let pruned = store.published(BTNS).unwrap().usage;
    assert!(pruned < 500_000, "{pruned}");
    assert!(snapshots(&fs).await.is_empty());
    // Later commits (no history to count) still publish the graph's figure.
    put(&fs, "later", &bytes(9, 1_000)).await;
    fs.flush_all().await.unwrap();
    assert_counted(&fs, &store, "a commit after pruning");
    fs.abort();
}

/// Two machines with history: one that only follows the other takes its commits in
/// without publishing (no commit that only adds a version, so two idle machines never
/// answer each other's commits forever), shows its versions, and both sides' versions
/// stay when both write at once.
#[tokio::test]
async fn a_follower_takes_commits_in_without_publishing_and_a_merge_keeps_both_sides() {
    let store = Arc::new(MemoryStore::new());
    let clock = SimClock::new();
    let a = mount(&store, false, Policy::default(), &clock).await;
    let b = mount(&store, false, Policy::default(), &clock).await;
    put(&a, "f", b"one").await;
    a.flush_all().await.unwrap();
    clock.advance(5);
    put(&a, "f", b"two").await;
    a.flush_all().await.unwrap();
    let published = store.published_cid(BTNS).unwrap();
    for _ in 0..3 {
        b.follow_all().await.unwrap();
        a.follow_all().await.unwrap();
        clock.advance(5);
    }
    assert_eq!(
        store.published_cid(BTNS).unwrap(),
        published,
        "following published nothing"
    );
    assert_eq!(read_path(&b, "f").await.unwrap(), b"two");
    let first = snapshots(&a).await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        read_path(&b, &format!(".snapshots/{}/f", first[0]))
            .await
            .unwrap(),
        b"one"
    );
    // Both write, then each commits: the second merges, and keeps both sides' roots.
    clock.advance(5);
    put(&a, "from-a", b"a").await;
    put(&b, "from-b", b"b").await;
    a.flush_all().await.unwrap();
    clock.advance(5);
    b.flush_all().await.unwrap();
    clock.advance(5);
    a.follow_all().await.unwrap();
    let kept = snapshots(&b).await;
    assert!(kept.len() >= 3, "{kept:?}");
    let names = listing(&a, ROOT_INO).await;
    assert_eq!(names, ["f", "from-a", "from-b"]);
    let mut with_a_only = false;
    for n in &kept {
        let v = walk(&b, &format!(".snapshots/{n}")).await.unwrap().ino;
        let names = listing(&b, v).await;
        with_a_only |=
            names.contains(&"from-a".to_string()) && !names.contains(&"from-b".to_string());
    }
    assert!(with_a_only, "a's own commit is kept as a version: {kept:?}");
    // Usage is the graph's. The node may also keep, pinned, the root each machine wrote
    // for its last merge that adopted the other's document (never published; unpinned by
    // its next commit or adoption): a root node and a few history pages, no more.
    let published = store.published(BTNS).unwrap().usage;
    assert_eq!(published, measured(&store));
    store.collect_garbage();
    let pinned = store.pinned_bytes() - pinned_documents(&store);
    assert!(
        (published..published + 16 * 1024).contains(&pinned),
        "pinned {pinned}, published {published}"
    );
    a.abort();
    b.abort();
}

/// A tree an old pxfs wrote in format v1 (one manifest per directory): with history on,
/// the commit that rewrites it keeps no version of it (its manifests are not pages), and
/// the commits after keep history as usual, counted exactly.
#[tokio::test]
async fn a_format_v1_tree_upgrades_and_then_keeps_history() {
    use pxfs::format::v1::manifest::{Entry, EntryKind, Manifest};
    let store = Arc::new(MemoryStore::new());
    let content = bytes::Bytes::from_static(b"written by an old pxfs");
    let file = store
        .add_objects(vec![content.clone()])
        .await
        .unwrap()
        .remove(0);
    let entry = |name: &str, kind: EntryKind, cid: Option<String>, size: u64| Entry {
        name: name.into(),
        kind,
        cid,
        size,
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_ns: 1,
        ctime_ns: 1,
        target: None,
        xattrs: None,
        rdev: None,
    };
    let sub = Manifest::new(vec![entry(
        "old.txt",
        EntryKind::File,
        Some(file),
        content.len() as u64,
    )]);
    let sub_cid = store
        .add_objects(vec![bytes::Bytes::from(sub.to_json())])
        .await
        .unwrap()
        .remove(0);
    let root = Manifest::new(vec![entry("d", EntryKind::Dir, Some(sub_cid), 0)]);
    let root_cid = store
        .add_objects(vec![bytes::Bytes::from(root.to_json())])
        .await
        .unwrap()
        .remove(0);
    let record = pxfs::fs::store::UsageRecord {
        token_id: TOKEN,
        quota: u64::MAX,
        usage: 0,
        files: 1,
        root: root_cid,
        last_upload: None,
        seq: 1,
        prev: None,
        merged: None,
        encryption: Default::default(),
    };
    store
        .publish_usage(Some(BTNS), &record, None)
        .await
        .unwrap();
    let clock = SimClock::new();
    let fs = mount(&store, false, Policy::default(), &clock).await;
    assert_eq!(read_path(&fs, "d/old.txt").await.unwrap(), &content[..]);
    put(&fs, "new", b"first commit: the tree becomes format 3").await;
    fs.flush_all().await.unwrap();
    assert!(snapshots(&fs).await.is_empty(), "no version of the v1 tree");
    clock.advance(10);
    put(&fs, "new", b"second commit").await;
    fs.flush_all().await.unwrap();
    let kept = snapshots(&fs).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(
        read_path(&fs, &format!(".snapshots/{}/d/old.txt", kept[0]))
            .await
            .unwrap(),
        &content[..]
    );
    assert_counted(&fs, &store, "after the upgrade");
    fs.abort();
}
