//! Crash recovery in the filesystem core, without a kernel: an in-memory node, a real
//! cache directory with its journal, one sNFT, and crashes (`abort`: nothing drained,
//! nothing committed) at the awkward moments.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pxfs::fs::store::{ContentStore, MemoryStore};
use pxfs::fs::{Fs, FsConfig, Ino, ROOT_INO, TokenInfo};

const TOKEN: u64 = 7;
const BTNS: &str = "k51-token-7";
const RW: i32 = libc::O_RDWR;

struct Mount {
    fs: Fs,
    store: Arc<MemoryStore>,
    cache: tempfile::TempDir,
}

async fn mount_with(store: Arc<MemoryStore>, cache: tempfile::TempDir) -> Mount {
    mount_with_grace(store, cache, Duration::from_secs(300)).await
}

async fn mount_with_grace(
    store: Arc<MemoryStore>,
    cache: tempfile::TempDir,
    grace: Duration,
) -> Mount {
    let mut cfg = FsConfig::new(cache.path().to_path_buf());
    cfg.outage_grace = grace;
    cfg.single_token = true;
    cfg.commit_interval = Duration::from_secs(3600); // commits only when asked
    let fs = Fs::new(cfg, store.clone()).unwrap();
    fs.add_token(TokenInfo {
        token_id: TOKEN,
        quota: u64::MAX,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some(BTNS.into()),
        synced_usage: 0,
    })
    .await
    .unwrap();
    Mount { fs, store, cache }
}

async fn mount() -> Mount {
    mount_with(Arc::new(MemoryStore::new()), tempfile::tempdir().unwrap()).await
}

impl Mount {
    /// A crash: nothing drained, nothing committed; the same cache mounted again.
    async fn crash_and_remount(self) -> Mount {
        self.fs.abort();
        drop(self.fs);
        mount_with(self.store, self.cache).await
    }

    /// Another machine: the same node, an empty cache.
    async fn fresh_cache(&self) -> Mount {
        mount_with(self.store.clone(), tempfile::tempdir().unwrap()).await
    }

    /// Another machine with an empty cache and a short outage grace: a commit that cannot
    /// go through fails within seconds.
    async fn another_machine(&self) -> Mount {
        mount_with_grace(
            self.store.clone(),
            tempfile::tempdir().unwrap(),
            Duration::from_secs(5),
        )
        .await
    }

    /// The root of the tree published under the sNFT's name.
    async fn published_root(&self) -> String {
        self.store.resolve(BTNS).await.unwrap().unwrap().root
    }

    /// The names in `dir`, sorted (without `.` and `..`).
    async fn listing(&self, dir: Ino) -> Vec<Vec<u8>> {
        let entries = self.fs.readdir(dir, 0).await.unwrap();
        let mut names: Vec<Vec<u8>> = entries.into_iter().skip(2).map(|e| e.name).collect();
        names.sort();
        names
    }

    async fn write_file(&self, dir: Ino, name: impl AsRef<[u8]>, data: &[u8]) -> Ino {
        let (attr, fh) = self.fs.create(dir, name, 0o644, RW, 0, 0).await.unwrap();
        self.fs.write(fh, 0, data).await.unwrap();
        self.fs.flush(fh).await.unwrap();
        self.fs.release(fh).await.unwrap();
        attr.ino
    }

    async fn read(&self, dir: Ino, name: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let ino = self.fs.lookup(dir, name).await.ok()?.ino;
        let fh = self.fs.open(ino, libc::O_RDONLY).await.unwrap();
        let data = self.fs.read(fh, 0, 1 << 24).await.unwrap().to_vec();
        self.fs.release(fh).await.unwrap();
        Some(data)
    }

    fn journal_dir(&self) -> PathBuf {
        self.cache.path().join("journal").join(TOKEN.to_string())
    }

    fn staging_dir(&self) -> PathBuf {
        self.cache.path().join("staging").join(TOKEN.to_string())
    }
}

/// Copies what `from` holds right now. The daemon deletes staged files of an
/// earlier commit in the background, so a file listed may be gone by the time it
/// is copied: that is what a crash at that moment would have left, too.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        match std::fs::copy(e.path(), to.join(e.file_name())) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => panic!("copying {}: {err}", e.path().display()),
        }
    }
}

#[tokio::test]
async fn names_that_are_not_utf8_are_replayed_byte_for_byte_after_a_crash() {
    let m = mount().await;
    let dir =
        m.fs.mkdir(ROOT_INO, b"d\xff", 0o755, 0, 0)
            .await
            .unwrap()
            .ino;
    m.write_file(dir, b"r\xe9sum\xe9.txt", b"latin-1").await;
    m.write_file(dir, b"tmp\xfe", b"renamed").await;
    m.fs.rename(dir, b"tmp\xfe", ROOT_INO, b"\xfe\n\x01", false, false)
        .await
        .unwrap();
    let f = m.fs.lookup(dir, b"r\xe9sum\xe9.txt").await.unwrap().ino;
    m.fs.link(f, ROOT_INO, b"link\x80").await.unwrap();
    m.fs.symlink(ROOT_INO, b"s\xff", b"d\xff/r\xe9sum\xe9.txt", 0, 0)
        .await
        .unwrap();
    m.fs.mknod(dir, b"fifo\xc0", pxfs::fs::Kind::Fifo, 0o644, 0, 0, 0)
        .await
        .unwrap();
    m.fs.setxattr(f, b"user.\xff\xfe", b"v\x00\xff", 0)
        .await
        .unwrap();
    let long = vec![0xe9u8; 255];
    m.write_file(ROOT_INO, &long, b"255 bytes of name").await;

    let m = m.crash_and_remount().await;
    let mut want_root: Vec<Vec<u8>> = vec![
        b"d\xff".to_vec(),
        b"\xfe\n\x01".to_vec(),
        b"link\x80".to_vec(),
        b"s\xff".to_vec(),
        long.clone(),
    ];
    want_root.sort();
    assert_eq!(m.listing(ROOT_INO).await, want_root);
    let dir = m.fs.lookup(ROOT_INO, b"d\xff").await.unwrap().ino;
    assert_eq!(
        m.listing(dir).await,
        vec![b"fifo\xc0".to_vec(), b"r\xe9sum\xe9.txt".to_vec()]
    );
    assert_eq!(m.read(dir, b"r\xe9sum\xe9.txt").await.unwrap(), b"latin-1");
    assert_eq!(m.read(ROOT_INO, b"link\x80").await.unwrap(), b"latin-1");
    assert_eq!(m.read(ROOT_INO, b"\xfe\n\x01").await.unwrap(), b"renamed");
    assert_eq!(m.read(ROOT_INO, &long).await.unwrap(), b"255 bytes of name");
    let s = m.fs.lookup(ROOT_INO, b"s\xff").await.unwrap().ino;
    assert_eq!(m.fs.readlink(s).await.unwrap(), b"d\xff/r\xe9sum\xe9.txt");
    let f = m.fs.lookup(dir, b"r\xe9sum\xe9.txt").await.unwrap().ino;
    assert_eq!(
        m.fs.getxattr(f, b"user.\xff\xfe").await.unwrap(),
        b"v\x00\xff"
    );
    assert!(
        m.fs.listxattr(f)
            .await
            .unwrap()
            .contains(&b"user.\xff\xfe".to_vec())
    );
}

#[tokio::test]
async fn a_close_is_durable_once_flush_returns_even_if_release_never_comes() {
    // close(2) waits for FLUSH only; RELEASE reaches the daemon later, if at all.
    let m = mount().await;
    let (_, fh) = m.fs.create(ROOT_INO, "f", 0o644, RW, 0, 0).await.unwrap();
    m.fs.write(fh, 0, b"closed").await.unwrap();
    m.fs.flush(fh).await.unwrap();
    let m = m.crash_and_remount().await;
    assert_eq!(m.read(ROOT_INO, "f").await.unwrap(), b"closed");
}

#[tokio::test]
async fn writes_after_a_flush_are_a_new_version_and_never_half_replayed() {
    let m = mount().await;
    let (_, fh) = m.fs.create(ROOT_INO, "f", 0o644, RW, 0, 0).await.unwrap();
    m.fs.write(fh, 0, b"first").await.unwrap();
    m.fs.flush(fh).await.unwrap(); // one descriptor of a dup'ed pair closed
    m.fs.write(fh, 5, b" second").await.unwrap();
    assert_eq!(m.read(ROOT_INO, "f").await.unwrap(), b"first second");
    // Crash before the last close: the file is as of the first close, not half of it.
    let m = m.crash_and_remount().await;
    assert_eq!(m.read(ROOT_INO, "f").await.unwrap(), b"first");
}

#[tokio::test]
async fn an_unlinked_open_file_keeps_its_content_when_one_descriptor_closes() {
    let m = mount().await;
    let (_, fh) =
        m.fs.create(ROOT_INO, "scratch", 0o600, RW, 0, 0)
            .await
            .unwrap();
    m.fs.write(fh, 0, b"scratch data").await.unwrap();
    m.fs.unlink(ROOT_INO, "scratch").await.unwrap();
    m.fs.flush(fh).await.unwrap();
    m.fs.fsync(fh).await.unwrap();
    assert_eq!(&m.fs.read(fh, 0, 100).await.unwrap()[..], b"scratch data");
    m.fs.release(fh).await.unwrap();
    let m = m.crash_and_remount().await;
    assert!(m.read(ROOT_INO, "scratch").await.is_none());
}

#[tokio::test]
async fn a_file_created_but_never_closed_does_not_come_back() {
    let m = mount().await;
    m.write_file(ROOT_INO, "old", b"committed version").await;
    m.fs.flush_all().await.unwrap();
    // Rewritten in place and renamed while open, never closed.
    let ino = m.fs.lookup(ROOT_INO, "old").await.unwrap().ino;
    let fh = m.fs.open(ino, RW | libc::O_TRUNC).await.unwrap();
    m.fs.write(fh, 0, b"half").await.unwrap();
    m.fs.rename(ROOT_INO, "old", ROOT_INO, "renamed", false, false)
        .await
        .unwrap();
    let (_, new) = m.fs.create(ROOT_INO, "new", 0o644, RW, 0, 0).await.unwrap();
    m.fs.write(new, 0, b"partial").await.unwrap();
    let m = m.crash_and_remount().await;
    assert_eq!(
        m.read(ROOT_INO, "renamed").await.unwrap(),
        b"committed version"
    );
    assert!(m.read(ROOT_INO, "new").await.is_none());
    assert!(m.read(ROOT_INO, "old").await.is_none());
}

#[tokio::test]
async fn a_crash_after_publishing_but_before_recording_the_commit_replays_to_the_same_tree() {
    let m = mount().await;
    let d = m.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    m.write_file(d, "a", b"aaa").await;
    m.write_file(d, "gone", b"to be deleted").await;
    m.fs.flush_all().await.unwrap();

    // Changes since that commit, journaled; then a commit publishes them, but the
    // daemon dies before `state.json` records it (and before staged files are deleted).
    m.write_file(d, "b", b"bbb").await;
    m.fs.unlink(d, "gone").await.unwrap();
    m.fs.rename(d, "a", ROOT_INO, "a-moved", false, false)
        .await
        .unwrap();
    m.fs.mkdir(d, "e", 0o700, 0, 0).await.unwrap();
    let saved = tempfile::tempdir().unwrap();
    copy_dir(&m.journal_dir(), &saved.path().join("journal"));
    copy_dir(&m.staging_dir(), &saved.path().join("staging"));
    m.fs.flush_all().await.unwrap();
    m.fs.abort();
    // The commit deletes the staged files it covered in the background: let it finish
    // before putting back what the crash would have left.
    let staging = m.staging_dir();
    for _ in 0..100 {
        if std::fs::read_dir(&staging).unwrap().next().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    copy_dir(&saved.path().join("journal"), &m.journal_dir());
    copy_dir(&saved.path().join("staging"), &m.staging_dir());

    let m = m.crash_and_remount().await;
    let check = |m: Mount| async move {
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        assert_eq!(m.read(d, "b").await.unwrap(), b"bbb");
        assert_eq!(m.read(ROOT_INO, "a-moved").await.unwrap(), b"aaa");
        assert!(m.read(d, "gone").await.is_none());
        assert!(m.read(d, "a").await.is_none());
        assert_eq!(m.fs.lookup(d, "e").await.unwrap().meta.mode, 0o700);
        m
    };
    let m = check(m).await;
    m.fs.flush_all().await.unwrap();
    check(m.fresh_cache().await).await;
}

#[tokio::test]
async fn a_staged_version_cut_short_by_a_power_loss_is_not_replayed() {
    let m = mount().await;
    m.write_file(ROOT_INO, "f", b"version one").await;
    m.fs.flush_all().await.unwrap();
    m.store.set_offline(true);
    let ino = m.fs.lookup(ROOT_INO, "f").await.unwrap().ino;
    let fh = m.fs.open(ino, RW | libc::O_TRUNC).await.unwrap();
    m.fs.write(fh, 0, b"version two, longer").await.unwrap();
    m.fs.flush(fh).await.unwrap();
    m.fs.release(fh).await.unwrap();
    // The journal line reached the disk, the staged content only in part.
    for e in std::fs::read_dir(m.staging_dir()).unwrap().flatten() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(e.path())
            .unwrap()
            .set_len(4)
            .unwrap();
    }
    m.store.set_offline(false);
    let m = m.crash_and_remount().await;
    assert_eq!(m.read(ROOT_INO, "f").await.unwrap(), b"version one");
}

#[tokio::test]
async fn replay_waits_for_a_node_that_is_slow_to_come_back() {
    let m = mount().await;
    let d = m.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    m.write_file(d, "a", b"a").await;
    m.fs.flush_all().await.unwrap();
    // Replaying this op needs `d`'s manifest from the node.
    m.write_file(d, "b", b"b").await;
    m.store.set_offline(true);
    let store = m.store.clone();
    let back = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        store.set_offline(false);
    });
    let m = m.crash_and_remount().await;
    back.await.unwrap();
    let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    assert_eq!(m.read(d, "a").await.unwrap(), b"a");
    assert_eq!(m.read(d, "b").await.unwrap(), b"b");
}

/// The staged files of the token, newest last.
fn staged_files(m: &Mount) -> Vec<PathBuf> {
    let mut v: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(m.staging_dir())
        .unwrap()
        .flatten()
        .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
        .collect();
    v.sort();
    v.into_iter().map(|(_, p)| p).collect()
}

/// Closes "b" while the node is down, then moves its staged file away: its upload is
/// stuck (a local fault) until the file is moved back. Returns (staged, moved-to).
async fn stuck_upload(m: &Mount) -> (PathBuf, PathBuf) {
    m.store.set_offline(true);
    m.write_file(ROOT_INO, "b", b"still uploading").await;
    let staged = staged_files(m).pop().unwrap();
    let away = m.cache.path().join("away");
    std::fs::rename(&staged, &away).unwrap();
    m.store.set_offline(false);
    (staged, away)
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = std::time::Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_commit_during_an_upload_publishes_the_rest_and_carries_the_upload() {
    let m = mount().await;
    let (staged, away) = stuck_upload(&m).await;
    m.write_file(ROOT_INO, "c", b"uploaded").await;
    wait_until("c uploaded", || m.fs.pending().0 == 1).await;
    assert!(
        m.fs.commit_token(TOKEN).await.unwrap(),
        "a commit is published while b still uploads"
    );
    // The journal keeps only b's close, as carried in state.json.
    let state = std::fs::read_to_string(m.journal_dir().join("state.json")).unwrap();
    assert!(state.contains("carried"), "{state}");
    let ops = std::fs::read_to_string(m.journal_dir().join("ops.log")).unwrap();
    assert!(ops.is_empty(), "{ops}");
    // Another machine sees c, and not b yet.
    let other = m.fresh_cache().await;
    assert_eq!(other.read(ROOT_INO, "c").await.unwrap(), b"uploaded");
    assert!(other.read(ROOT_INO, "b").await.is_none());
    other.fs.abort();
    drop(other);
    // A crash now loses nothing: b is replayed from its staged file.
    std::fs::rename(&away, &staged).unwrap();
    let m = m.crash_and_remount().await;
    assert_eq!(m.read(ROOT_INO, "b").await.unwrap(), b"still uploading");
    assert_eq!(m.read(ROOT_INO, "c").await.unwrap(), b"uploaded");
    m.fs.flush_all().await.unwrap();
    let other = m.fresh_cache().await;
    assert_eq!(other.read(ROOT_INO, "b").await.unwrap(), b"still uploading");
}

#[tokio::test]
async fn fsync_returns_once_its_own_file_is_committed_while_another_upload_is_stuck() {
    let m = mount().await;
    let _stuck = stuck_upload(&m).await;
    let (_, fh) = m.fs.create(ROOT_INO, "d", 0o644, RW, 0, 0).await.unwrap();
    m.fs.write(fh, 0, b"mine").await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), m.fs.fsync(fh))
        .await
        .expect("fsync waits only for its own file")
        .unwrap();
    m.fs.release(fh).await.unwrap();
    let other = m.fresh_cache().await;
    assert_eq!(other.read(ROOT_INO, "d").await.unwrap(), b"mine");
}

#[tokio::test]
async fn a_staged_file_removed_under_the_daemon_gives_eio_within_the_grace_and_recovers() {
    let m = mount_with_grace(
        Arc::new(MemoryStore::new()),
        tempfile::tempdir().unwrap(),
        Duration::from_secs(2),
    )
    .await;
    let (staged, away) = stuck_upload(&m).await;
    let t = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(15), m.fs.flush_all())
        .await
        .expect("never a hang")
        .unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert!(t.elapsed() < Duration::from_secs(12));
    let faults = m.fs.status().local_faults;
    assert!(faults.iter().any(|f| f.contains("upload")), "{faults:?}");
    // The cause is gone: everything uploads and commits.
    std::fs::rename(&away, &staged).unwrap();
    tokio::time::timeout(Duration::from_secs(15), m.fs.flush_all())
        .await
        .expect("recovers")
        .unwrap();
    assert!(m.fs.status().local_faults.is_empty());
    let other = m.fresh_cache().await;
    assert_eq!(other.read(ROOT_INO, "b").await.unwrap(), b"still uploading");
}

#[tokio::test]
async fn an_upload_the_node_refuses_for_good_gives_eio_within_the_grace_and_recovers() {
    let store = Arc::new(MemoryStore::new());
    let m = mount_with_grace(
        store.clone(),
        tempfile::tempdir().unwrap(),
        Duration::from_secs(2),
    )
    .await;
    store.set_refusing_content(true);
    let (_, fh) = m.fs.create(ROOT_INO, "r", 0o644, RW, 0, 0).await.unwrap();
    m.fs.write(fh, 0, b"refused for now").await.unwrap();
    let t = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(15), m.fs.fsync(fh))
        .await
        .expect("fsync never hangs")
        .unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    assert!(t.elapsed() < Duration::from_secs(12));
    m.fs.release(fh).await.unwrap();
    // Unmount's drain gives up likewise.
    let err = tokio::time::timeout(Duration::from_secs(15), m.fs.flush_all())
        .await
        .expect("the drain never hangs")
        .unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    let faults = m.fs.status().local_faults;
    assert!(faults.iter().any(|f| f.contains("upload")), "{faults:?}");
    // Nothing closed is lost: it uploads once the node takes it.
    store.set_refusing_content(false);
    // The next retry (at most 10 s away) succeeds and ends the fault.
    let t = std::time::Instant::now();
    while !m.fs.status().local_faults.is_empty() {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "the fault never ends"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    m.fs.flush_all().await.unwrap();
    let other = m.fresh_cache().await;
    assert_eq!(other.read(ROOT_INO, "r").await.unwrap(), b"refused for now");
}

#[tokio::test]
async fn below_the_cache_disks_reserve_writes_get_enospc_while_directory_changes_commit() {
    let cache = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::new());
    let mut cfg = FsConfig::new(cache.path().to_path_buf());
    cfg.single_token = true;
    cfg.commit_interval = Duration::from_secs(3600);
    // More than any disk has free: every byte of new data would go below the reserve.
    cfg.disk_reserve = u64::MAX / 2;
    let fs = Fs::new(cfg, store.clone()).unwrap();
    fs.add_token(TokenInfo {
        token_id: TOKEN,
        quota: u64::MAX,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some(BTNS.into()),
        synced_usage: 0,
    })
    .await
    .unwrap();
    let m = Mount { fs, store, cache };

    let (_, fh) = m.fs.create(ROOT_INO, "f", 0o644, RW, 0, 0).await.unwrap();
    for _ in 0..3 {
        let err = m.fs.write(fh, 0, b"new data").await.unwrap_err();
        assert_eq!(err.errno(), libc::ENOSPC, "{err}");
    }
    m.fs.release(fh).await.unwrap();
    let faults = m.fs.status().local_faults;
    assert!(
        faults.len() == 1 && faults[0].contains("the cache disk is full"),
        "{faults:?}"
    );
    // The journal and directory changes still fit, and what they made is committed.
    let d = m.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    m.fs.rename(ROOT_INO, "f", d, "f", false, false)
        .await
        .unwrap();
    m.fs.flush_all().await.unwrap();
    let other = m.fresh_cache().await;
    let d = other.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    assert_eq!(other.read(d, "f").await.unwrap(), b"");
}

/// Waits until `cid` (a tree `m`'s commits superseded) is unpinned, collecting the node's
/// garbage meanwhile, as a node with a full repository does by itself.
async fn collected(m: &Mount, cid: &str) {
    let t = std::time::Instant::now();
    loop {
        m.fs.flush_all().await.unwrap();
        m.store.collect_garbage();
        if m.store.fetch(cid).await.is_err() {
            return;
        }
        assert!(t.elapsed() < Duration::from_secs(20), "{cid} stays pinned");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A machine that crashed with changes of its own journaled comes back after another
/// writer has moved the tree on and the node has collected what that writer's commits
/// superseded, the tree this cache knew among it: its changes are replayed onto the tree
/// published now instead of failing every mount for good (a node collects unpinned blocks
/// by itself once its repository fills; a laptop may stay away for weeks).
#[tokio::test]
async fn changes_on_a_tree_the_node_collected_since_are_replayed_onto_the_published_one() {
    replayed_onto_the_published_tree(false).await;
}

/// As above, when the other writer removed the directory this machine wrote into: it is
/// made again, with what this machine wrote in it.
#[tokio::test]
async fn changes_in_a_directory_removed_and_collected_since_are_replayed_into_it_made_again() {
    replayed_onto_the_published_tree(true).await;
}

async fn replayed_onto_the_published_tree(a_removes_the_directory: bool) {
    let a = mount().await;
    let d = a.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    a.write_file(d, "a0", b"written on a first").await;
    assert!(a.fs.commit_token(TOKEN).await.unwrap());
    let known = a.store.resolve(BTNS).await.unwrap().unwrap().root;

    // Machine b mounts that tree, writes into it and under a directory of its own, and
    // crashes before any of it is committed.
    let b = a.fresh_cache().await;
    let bd = b.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    b.write_file(bd, "b1", b"written on b").await;
    let sub = b.fs.mkdir(bd, "sub", 0o750, 0, 0).await.unwrap().ino;
    b.write_file(sub, "b2", b"deeper, on b").await;
    b.fs.abort();
    let Mount { fs, store, cache } = b;
    drop(fs);

    // Machine a changes the same directory in several commits (or removes it); what they
    // superseded is unpinned, and the node collects it.
    let a_files: Vec<String> = match a_removes_the_directory {
        false => (1..4).map(|i| format!("a{i}")).collect(),
        true => Vec::new(),
    };
    for name in &a_files {
        a.write_file(d, name, format!("a's change {name}").as_bytes())
            .await;
        assert!(a.fs.commit_token(TOKEN).await.unwrap());
    }
    if a_removes_the_directory {
        a.fs.unlink(d, "a0").await.unwrap();
        a.fs.rmdir(ROOT_INO, "d").await.unwrap();
        assert!(a.fs.commit_token(TOKEN).await.unwrap());
    }
    collected(&a, &known).await;

    // b comes back: its changes land on a's tree, nothing of either is lost, and a
    // machine mounting afterwards sees both.
    let b = mount_with(store, cache).await;
    b.fs.flush_all().await.unwrap();
    let c = b.fresh_cache().await;
    for m in [&b, &c] {
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        assert_eq!(m.read(d, "b1").await.unwrap(), b"written on b");
        let sub = m.fs.lookup(d, "sub").await.unwrap().ino;
        assert_eq!(m.read(sub, "b2").await.unwrap(), b"deeper, on b");
        for name in &a_files {
            assert_eq!(
                m.read(d, name).await.unwrap(),
                format!("a's change {name}").as_bytes()
            );
        }
        let a0 = m.read(d, "a0").await;
        match a_removes_the_directory {
            false => assert_eq!(a0.unwrap(), b"written on a first"),
            true => assert_eq!(a0, None, "a's removal stands"),
        }
    }
}

/// A file another writer added or rewrote, large enough to be stored in chunks, reads back
/// on a machine that merged it into a directory it had loaded: the merge takes the file's
/// chunk table with its entry (it used to take the entry alone, and the file read as EIO on
/// that machine until its next mount).
#[tokio::test]
async fn chunked_files_another_writer_added_or_rewrote_read_back_after_a_merge() {
    let a = mount().await;
    let d = a.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    let old: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    a.write_file(d, "rewritten", &old).await;
    a.fs.flush_all().await.unwrap();

    let b = a.fresh_cache().await;
    let bd = b.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    assert_eq!(b.read(bd, "rewritten").await.unwrap(), old);
    // a adds a chunked file and rewrites one b has read; b changed the directory too, so
    // its commit merges rather than follows.
    let added: Vec<u8> = (0..400_000u32).map(|i| (i % 241) as u8).collect();
    let new: Vec<u8> = (0..350_000u32).map(|i| (i % 239) as u8).collect();
    a.write_file(d, "added", &added).await;
    a.write_file(d, "rewritten", &new).await;
    a.fs.flush_all().await.unwrap();
    b.write_file(bd, "from-b", b"b's own").await;
    b.fs.flush_all().await.unwrap();

    for m in [&b, &a.fresh_cache().await] {
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        assert_eq!(m.read(d, "added").await.unwrap(), added);
        assert_eq!(m.read(d, "rewritten").await.unwrap(), new);
        assert_eq!(m.read(d, "from-b").await.unwrap(), b"b's own");
    }
}

/// A machine writing while another writer moves the same directory on, and the node
/// collects what that writer's commits superseded, the tree the two would merge from
/// among it: the merge goes on without that base and keeps both sides' changes, instead
/// of failing every commit from then on (and every write with EIO after the grace).
#[tokio::test]
async fn a_merge_whose_common_base_was_collected_keeps_both_sides_changes() {
    let a = mount().await;
    let d = a.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    a.write_file(d, "a0", b"written on a first").await;
    a.fs.flush_all().await.unwrap();
    let known = a.store.resolve(BTNS).await.unwrap().unwrap().root;

    let b = a.fresh_cache().await;
    let bd = b.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    assert_eq!(b.read(bd, "a0").await.unwrap(), b"written on a first");
    b.write_file(bd, "b1", b"written on b meanwhile").await;

    for i in 1..4 {
        a.write_file(d, format!("a{i}"), format!("a's change {i}").as_bytes())
            .await;
        a.fs.flush_all().await.unwrap();
    }
    collected(&a, &known).await;

    b.fs.flush_all().await.unwrap();
    for m in [&b, &a.fresh_cache().await] {
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        assert_eq!(m.read(d, "b1").await.unwrap(), b"written on b meanwhile");
        assert_eq!(m.read(d, "a0").await.unwrap(), b"written on a first");
        for i in 1..4 {
            assert_eq!(
                m.read(d, format!("a{i}")).await.unwrap(),
                format!("a's change {i}").as_bytes()
            );
        }
    }
}

/// As above, when the directory the other writer changed is one this machine never loaded:
/// its pages at the base are what the node collected. The merge cannot read this
/// machine's version of it (nor the base's, the same pages); unchanged here, it takes the
/// other writer's version unread, and the commit goes through.
#[tokio::test]
async fn a_merge_over_a_directory_never_loaded_here_whose_pages_were_collected_keeps_both() {
    let a = mount().await;
    let d = a.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    let e = a.fs.mkdir(d, "e", 0o755, 0, 0).await.unwrap().ino;
    a.write_file(e, "a0", b"written on a first").await;
    a.fs.flush_all().await.unwrap();
    let known = a.published_root().await;

    // b loads only the root, and writes there.
    let b = a.another_machine().await;
    b.write_file(ROOT_INO, "b1", b"written on b meanwhile")
        .await;

    for i in 1..4 {
        a.write_file(e, format!("a{i}"), format!("a's change {i}").as_bytes())
            .await;
        a.fs.flush_all().await.unwrap();
    }
    collected(&a, &known).await;

    b.fs.flush_all().await.unwrap();
    for m in [&b, &a.fresh_cache().await] {
        assert_eq!(
            m.read(ROOT_INO, "b1").await.unwrap(),
            b"written on b meanwhile"
        );
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let e = m.fs.lookup(d, "e").await.unwrap().ino;
        assert_eq!(m.read(e, "a0").await.unwrap(), b"written on a first");
        for i in 1..4 {
            assert_eq!(
                m.read(e, format!("a{i}")).await.unwrap(),
                format!("a's change {i}").as_bytes()
            );
        }
    }
}

/// As above, with names this machine looked up alone in the directory never loaded (as
/// `stat d/e/a0` does): once the other writer's version is taken, they name what that
/// version holds, not what the collected one held.
#[tokio::test]
async fn names_looked_up_alone_in_a_directory_collected_meanwhile_name_the_other_writers_version() {
    let a = mount().await;
    let d = a.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    let e = a.fs.mkdir(d, "e", 0o755, 0, 0).await.unwrap().ino;
    a.write_file(e, "f", b"v0").await;
    a.fs.flush_all().await.unwrap();
    let known = a.published_root().await;

    let b = a.another_machine().await;
    let bd = b.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    let be = b.fs.lookup(bd, "e").await.unwrap().ino;
    assert_eq!(b.read(be, "f").await.unwrap(), b"v0");
    b.write_file(ROOT_INO, "b1", b"written on b meanwhile")
        .await;
    b.fs.forget_cached_pages();

    for i in 1..4 {
        a.write_file(e, "f", format!("v{i}").as_bytes()).await;
        a.write_file(e, format!("a{i}"), b"new on a").await;
        a.fs.flush_all().await.unwrap();
    }
    collected(&a, &known).await;

    b.fs.flush_all().await.unwrap();
    for m in [&b, &a.fresh_cache().await] {
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let e = m.fs.lookup(d, "e").await.unwrap().ino;
        assert_eq!(m.read(e, "f").await.unwrap(), b"v3");
        assert_eq!(m.read(e, "a3").await.unwrap(), b"new on a");
        assert_eq!(
            m.read(ROOT_INO, "b1").await.unwrap(),
            b"written on b meanwhile"
        );
    }
}

/// The other writer removed a directory this machine never loaded, and the node collected
/// its pages: the removal is taken (nothing of it comes back) and this machine's own
/// change elsewhere is published with it.
#[tokio::test]
async fn a_directory_removed_by_another_writer_and_collected_stays_removed() {
    let a = mount().await;
    let d = a.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    let e = a.fs.mkdir(d, "e", 0o755, 0, 0).await.unwrap().ino;
    a.write_file(e, "f", b"to be removed").await;
    a.write_file(ROOT_INO, "kept", b"stays").await;
    a.fs.flush_all().await.unwrap();
    let known = a.published_root().await;

    let b = a.another_machine().await;
    let bd = b.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    b.fs.lookup(bd, "e").await.unwrap();
    b.write_file(ROOT_INO, "b1", b"written on b meanwhile")
        .await;
    b.fs.forget_cached_pages();

    a.fs.unlink(e, "f").await.unwrap();
    a.fs.rmdir(d, "e").await.unwrap();
    a.fs.rmdir(ROOT_INO, "d").await.unwrap();
    a.fs.flush_all().await.unwrap();
    a.write_file(ROOT_INO, "later", b"another commit").await;
    a.fs.flush_all().await.unwrap();
    collected(&a, &known).await;

    b.fs.flush_all().await.unwrap();
    for m in [&b, &a.fresh_cache().await] {
        assert!(m.fs.lookup(ROOT_INO, "d").await.is_err());
        assert_eq!(m.read(ROOT_INO, "kept").await.unwrap(), b"stays");
        assert_eq!(m.read(ROOT_INO, "later").await.unwrap(), b"another commit");
        assert_eq!(
            m.read(ROOT_INO, "b1").await.unwrap(),
            b"written on b meanwhile"
        );
    }
}

/// This machine changed a directory the other writer changed too, and since then the node
/// collected the pages of this machine's last commit, the merge base (as for a machine that
/// slept through the other's commits, its bounded page cache long turned over). The merge
/// goes on against what this machine last committed there: the other writer's edit,
/// removal and addition are taken, this machine's new file is kept, no conflict copy is
/// made, and every name reads back (nothing refers to what the node collected).
#[tokio::test]
async fn a_merge_into_a_directory_changed_here_whose_base_pages_were_collected_keeps_both() {
    let (a, d) = with_f_and_g().await;
    let known = a.published_root().await;

    let b = a.another_machine().await;
    let bd = b.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    b.write_file(bd, "b1", b"written on b meanwhile").await;

    edit_remove_add(&a, d).await;
    collected(&a, &known).await;
    b.fs.forget_cached_pages();

    b.fs.flush_all().await.unwrap();
    for m in [&b, &a.fresh_cache().await] {
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let listed = m.listing(d).await;
        assert_eq!(listed, [b"a1".to_vec(), b"b1".to_vec(), b"f".to_vec()]);
        assert_eq!(m.read(d, "f").await.unwrap(), b"v1");
        assert_eq!(m.read(d, "a1").await.unwrap(), b"new on a");
        assert_eq!(m.read(d, "b1").await.unwrap(), b"written on b meanwhile");
    }
}

/// As above, where this machine had read the directory before its last commit: that commit
/// noted the names it had read as possibly changed (it cannot tell), so the merge keeps
/// this machine's versions of them against the other writer's edit and removal, as a
/// conflict copy and a file come back. Those versions are the ones the other writer
/// replaced and the node collected: such unreadable names are dropped, not published.
#[tokio::test]
async fn a_merge_against_a_collected_base_keeps_no_name_whose_content_the_node_collected() {
    let (a, d) = with_f_and_g().await;

    let b = a.another_machine().await;
    let bd = b.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
    assert_eq!(b.read(bd, "f").await.unwrap(), b"v0");
    b.write_file(ROOT_INO, "x", b"committed on b").await;
    b.fs.flush_all().await.unwrap();
    let known = a.published_root().await;
    b.write_file(bd, "b1", b"written on b meanwhile").await;

    a.fs.flush_all().await.unwrap(); // takes in b's commit
    edit_remove_add(&a, d).await;
    // b's root, pinned by b: a node keeping one pin per object (Kubo) lets it go when a
    // unpins what its commits superseded; this in-memory node counts pins, so b's goes here.
    a.store.unpin(&known).await.unwrap();
    collected(&a, &known).await;
    b.fs.forget_cached_pages();

    b.fs.flush_all().await.unwrap();
    for m in [&b, &a.fresh_cache().await] {
        let d = m.fs.lookup(ROOT_INO, "d").await.unwrap().ino;
        let listed = m.listing(d).await;
        for name in &listed {
            assert!(m.read(d, name).await.is_some(), "{name:?} does not read");
        }
        assert_eq!(listed, [b"a1".to_vec(), b"b1".to_vec(), b"f".to_vec()]);
        assert_eq!(m.read(d, "f").await.unwrap(), b"v1");
        assert_eq!(m.read(ROOT_INO, "x").await.unwrap(), b"committed on b");
    }
}

/// A mount whose committed tree holds `d/f` ("v0") and `d/g`; returns it and `d`.
async fn with_f_and_g() -> (Mount, Ino) {
    let a = mount().await;
    let d = a.fs.mkdir(ROOT_INO, "d", 0o755, 0, 0).await.unwrap().ino;
    a.write_file(d, "f", b"v0").await;
    a.write_file(d, "g", b"to be removed").await;
    a.fs.flush_all().await.unwrap();
    (a, d)
}

/// `a` rewrites `d/f` ("v1") and removes `d/g` in one commit, adds `d/a1` in the next.
async fn edit_remove_add(a: &Mount, d: Ino) {
    a.write_file(d, "f", b"v1").await;
    a.fs.unlink(d, "g").await.unwrap();
    a.fs.flush_all().await.unwrap();
    a.write_file(d, "a1", b"new on a").await;
    a.fs.flush_all().await.unwrap();
}
