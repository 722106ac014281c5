//! The storage node goes away under a real kernel mount (DESIGN.md §4 Errors): killed and
//! restarted on the same repo and port (connections refused), or frozen with SIGSTOP
//! (connections hang). Writes keep succeeding, nothing closed is lost, reads of content that
//! is neither cached nor staged fail with `EIO` within a bound, and everything works again
//! once the node is back.
//!
//! The mount talks to a node this test runs itself (the devnet stops when its own node
//! dies); it holds a copy of the devnet node's keys, so the sNFT's BTNS name is published
//! there and a remount resolves it from there.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{PXFS, TestDevnet, TestMount, assert_same_tree, generate_tree, wait_until};

/// How long the node stays away: the outage of issue #6.
const OUTAGE: Duration = Duration::from_secs(30);

/// A `pxfs node` on a fixed port that the test can kill, restart, freeze and thaw.
struct OutageNode {
    repo: PathBuf,
    listen: String,
    child: Option<Child>,
    frozen: bool,
}

impl OutageNode {
    /// A node with a copy of the devnet node's keys (so it can publish the sNFT's name).
    fn start(devnet: &TestDevnet) -> OutageNode {
        let repo = devnet.dir.path().join("outage-node");
        let keys = repo.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        for entry in std::fs::read_dir(devnet.dir.path().join("node/keys")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), keys.join(entry.file_name())).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut node = OutageNode {
            repo,
            listen: format!("127.0.0.1:{port}"),
            child: None,
            frozen: false,
        };
        node.restart();
        node
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// Starts the node on its repo and port; returns once it answers.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "node already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.repo.with_extension("log"))
            .unwrap();
        let mut child = Command::new(PXFS)
            .arg("node")
            .arg("--repo")
            .arg(&self.repo)
            .arg("--listen")
            .arg(&self.listen)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn pxfs node");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("pxfs node listening on") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        assert!(
            rx.recv_timeout(Duration::from_secs(60)).is_ok(),
            "pxfs node did not start within 60 s (log: {})",
            self.repo.with_extension("log").display()
        );
    }

    /// SIGKILL: from now on connections are refused.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("node running");
        if self.frozen {
            signal(&child, libc::SIGCONT);
            self.frozen = false;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGSTOP: connections are accepted by the kernel but never answered.
    fn freeze(&mut self) {
        signal(self.child.as_ref().expect("node running"), libc::SIGSTOP);
        self.frozen = true;
    }

    fn thaw(&mut self) {
        signal(self.child.as_ref().expect("node running"), libc::SIGCONT);
        self.frozen = false;
    }
}

impl Drop for OutageNode {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.kill();
        }
    }
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    let r = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(r, 0, "kill({}, {sig})", child.id());
}

/// A config for the devnet's chain and `node`, with its own cache directory.
fn config(
    devnet: &TestDevnet,
    node: &OutageNode,
    name: &str,
    timeout_secs: i64,
    retries: i64,
    staging_limit: Option<i64>,
) -> (PathBuf, PathBuf) {
    let text = std::fs::read_to_string(devnet.config()).unwrap();
    let mut cfg: toml::Value = toml::from_str(&text).unwrap();
    let cache = devnet.dir.path().join(format!("cache-{name}"));
    cfg["node"]["api_url"] = toml::Value::String(node.url());
    cfg["node"]["timeout_secs"] = toml::Value::Integer(timeout_secs);
    cfg["node"]["retries"] = toml::Value::Integer(retries);
    cfg["cache"]["dir"] = toml::Value::String(cache.display().to_string());
    if let Some(limit) = staging_limit {
        cfg["cache"]["staging_max"] = toml::Value::Integer(limit);
    }
    let path = devnet.dir.path().join(format!("{name}.toml"));
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    (path, cache)
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(_) => n += 1,
                Err(_) => {}
            }
        }
    }
    n
}

fn random_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    std::fs::write(path, &data).unwrap();
    data
}

/// Lines of the mount's log containing `needle`.
fn log_lines(cache: &Path, needle: &str) -> Vec<String> {
    std::fs::read_to_string(cache.join("mount.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// Waits for `child` to exit within `timeout`; kills it and panics otherwise.
fn wait_exit(child: &mut Child, what: &str, timeout: Duration) -> std::process::Output {
    let deadline = Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut out = std::process::Output {
        status: child.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    if let Some(mut e) = child.stderr.take() {
        let _ = std::io::Read::read_to_end(&mut e, &mut out.stderr);
    }
    out
}

/// Reads `path` expecting `EIO`; returns how long the failure took.
fn read_fails_with_eio(path: &Path) -> Duration {
    let started = Instant::now();
    let err = std::fs::read(path).expect_err("read of unreachable content must fail");
    let took = started.elapsed();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "read of {} failed with {err}",
        path.display()
    );
    took
}

#[test]
fn a_copy_survives_a_node_restart_mid_copy_and_reads_back_from_the_node() {
    let devnet = TestDevnet::start(&[]);
    let mut node = OutageNode::start(&devnet);
    let src = tempfile::tempdir().unwrap();
    generate_tree(src.path(), 6, 1500, 24 << 20);
    for i in 0..4u64 {
        random_file(
            &src.path().join(format!("d{i}/mib-{i}.bin")),
            (1 << 20) * (i as usize + 1) + 12_345,
            100 + i,
        );
    }
    let total = count_files(src.path());

    let (cfg, cache) = config(&devnet, &node, "copy", 5, 4, None);
    let mut mount = TestMount::mount(&cfg, &[]);
    let dst = mount.token(devnet.token()).join("copy");
    let mut cp = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.path().display()))
        .arg(&dst)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    wait_until("the copy to get going", Duration::from_secs(120), || {
        count_files(&dst) >= 100
    });
    node.kill();
    let at_kill = count_files(&dst);
    assert!(
        cp.try_wait().unwrap().is_none(),
        "the copy finished before the node was stopped"
    );
    std::thread::sleep(OUTAGE);
    let at_restart = count_files(&dst);
    node.restart();

    let out = wait_exit(&mut cp, "cp -a", Duration::from_secs(600));
    assert!(
        out.status.success(),
        "cp -a failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        at_restart > at_kill,
        "writes stalled while the node was down ({at_kill} files at the kill, {at_restart} 30 s later)"
    );
    assert_same_tree(src.path(), &dst);

    // Unmount drains the queue; then another cache must get everything from the node.
    mount.unmount();
    let outage_lines = log_lines(&cache, "storage node unreachable");
    assert_eq!(
        outage_lines.len(),
        1,
        "the outage is logged once, not per attempt: {outage_lines:#?}"
    );
    assert!(
        !log_lines(&cache, "storage node reachable again").is_empty(),
        "the end of the outage is logged"
    );
    let (fresh, _) = config(&devnet, &node, "copy-fresh", 5, 4, None);
    let remount = TestMount::mount(&fresh, &[]);
    let back = remount.token(devnet.token()).join("copy");
    assert_eq!(count_files(&back), total);
    assert_same_tree(src.path(), &back);
}

#[test]
fn reads_of_content_not_cached_fail_with_eio_while_the_node_is_down_and_work_after() {
    let devnet = TestDevnet::start(&[]);
    let mut node = OutageNode::start(&devnet);
    // 3 s timeout, 2 retries: fsync gives up after the node is down for 9 s.
    let (cfg, _) = config(&devnet, &node, "write", 3, 2, None);
    let mut mount = TestMount::mount(&cfg, &[]);
    let dir = mount.token(devnet.token()).join("reads");
    std::fs::create_dir(&dir).unwrap();
    let a = random_file(&dir.join("a.bin"), 3 << 20, 1);
    let b = random_file(&dir.join("b.bin"), (2 << 20) + 77, 2);
    mount.unmount();

    // Another cache: nothing of a.bin or b.bin is on this machine.
    let (cfg, cache) = config(&devnet, &node, "read", 3, 2, None);
    let mut mount = TestMount::mount(&cfg, &[]);
    let dir = mount.token(devnet.token()).join("reads");
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");

    // Killed: connections refused.
    node.kill();
    let took = read_fails_with_eio(&dir.join("a.bin"));
    assert!(took < Duration::from_secs(60), "EIO took {took:?}");
    // Metadata and new writes are local and keep working; staged content reads back.
    assert_eq!(std::fs::metadata(dir.join("a.bin")).unwrap().len(), 3 << 20);
    let during = random_file(&dir.join("during.bin"), 500_000, 3);
    assert_eq!(std::fs::read(dir.join("during.bin")).unwrap(), during);
    // fsync cannot put the file on the node: it fails within a bound, the data stays staged.
    let synced = b"fsync during an outage\n".repeat(1000);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o644)
        .open(dir.join("synced.txt"))
        .unwrap();
    f.write_all(&synced).unwrap();
    let started = Instant::now();
    let err = f.sync_all().expect_err("fsync while the node is down");
    let took = started.elapsed();
    assert_eq!(
        err.raw_os_error(),
        Some(libc::EIO),
        "fsync failed with {err}"
    );
    assert!(took < Duration::from_secs(120), "fsync took {took:?}");
    drop(f);
    assert_eq!(std::fs::read(dir.join("synced.txt")).unwrap(), synced);

    node.restart();
    assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), a);

    // Frozen: connections hang; the timeout must still end the read.
    node.freeze();
    let took = read_fails_with_eio(&dir.join("b.bin"));
    assert!(took < Duration::from_secs(60), "EIO took {took:?}");
    // What was read before is cached and still served.
    assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), a);
    node.thaw();
    assert_eq!(std::fs::read(dir.join("b.bin")).unwrap(), b);
    assert!(
        !log_lines(&cache, "storage node unreachable").is_empty(),
        "the outage is in the log"
    );

    // Nothing written during the outage was lost, fsync'ed or not.
    mount.unmount();
    let (fresh, _) = config(&devnet, &node, "check", 3, 2, None);
    let check = TestMount::mount(&fresh, &[]);
    let dir = check.token(devnet.token()).join("reads");
    assert_eq!(std::fs::read(dir.join("during.bin")).unwrap(), during);
    assert_eq!(std::fs::read(dir.join("synced.txt")).unwrap(), synced);
    assert_eq!(std::fs::read(dir.join("a.bin")).unwrap(), a);
    assert_eq!(std::fs::read(dir.join("b.bin")).unwrap(), b);
}

#[test]
fn writers_wait_at_the_staging_limit_while_the_node_is_frozen_and_resume_after() {
    let devnet = TestDevnet::start(&[]);
    let mut node = OutageNode::start(&devnet);
    let src = tempfile::tempdir().unwrap();
    for i in 0..12u64 {
        random_file(
            &src.path().join(format!("part-{i:02}.bin")),
            2 << 20,
            50 + i,
        );
    }
    // 4 MiB of staging; 5 s timeout and 11 retries: writers give up only after a minute.
    let (cfg, cache) = config(&devnet, &node, "limit", 5, 11, Some(4 << 20));
    let mut mount = TestMount::mount(&cfg, &[]);
    let dst = mount.token(devnet.token()).join("parts");

    node.freeze();
    let mut cp = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.path().display()))
        .arg(&dst)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(OUTAGE);
    // 24 MiB to local disk takes well under a second: a copy still running is waiting.
    assert!(
        cp.try_wait().unwrap().is_none(),
        "the copy did not wait at the staging limit"
    );
    let staged = count_files(&dst);
    assert!(staged < 12, "all {staged} files written past a 4 MiB limit");
    let why = log_lines(&cache, "staging limit reached");
    assert_eq!(why.len(), 1, "the wait is logged once at warn: {why:#?}");
    assert!(why[0].contains("WARN"), "{}", why[0]);

    node.thaw();
    let out = wait_exit(&mut cp, "cp -a", Duration::from_secs(300));
    assert!(
        out.status.success(),
        "cp -a failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_tree(src.path(), &dst);

    mount.unmount();
    let (fresh, _) = config(&devnet, &node, "limit-fresh", 5, 11, None);
    let check = TestMount::mount(&fresh, &[]);
    assert_same_tree(src.path(), &check.token(devnet.token()).join("parts"));
}

// The same decisions in the filesystem core, without a kernel, with a one-second grace.

mod core {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use pxfs::fs::store::MemoryStore;
    use pxfs::fs::{Fs, FsConfig, ROOT_INO, TokenInfo};

    const RW: i32 = libc::O_RDWR;

    async fn core(store: Arc<MemoryStore>, cache: &std::path::Path, staging_limit: u64) -> Fs {
        let mut cfg = FsConfig::new(cache.to_path_buf());
        cfg.single_token = true;
        cfg.staging_limit = staging_limit;
        cfg.outage_grace = Duration::from_secs(1);
        let fs = Fs::new(cfg, store).unwrap();
        fs.add_token(TokenInfo {
            token_id: 7,
            quota: 1 << 20,
            overdue: false,
            last_sync: 1,
            sync_deadline: 2,
            btns: Some("k51-token-7".into()),
            synced_usage: 0,
        })
        .await
        .unwrap();
        fs
    }

    async fn read_all(fs: &Fs, name: &str) -> Vec<u8> {
        let ino = fs.lookup(ROOT_INO, name).await.unwrap().ino;
        let fh = fs.open(ino, libc::O_RDONLY).await.unwrap();
        let data = fs.read(fh, 0, 1 << 20).await.unwrap().to_vec();
        fs.release(fh).await.unwrap();
        data
    }

    #[tokio::test]
    async fn fsync_fails_with_eio_once_the_node_is_down_past_the_grace_and_the_data_stays() {
        let store = Arc::new(MemoryStore::new());
        let cache = tempfile::tempdir().unwrap();
        let fs = core(store.clone(), cache.path(), u64::MAX).await;
        store.set_offline(true);
        let (_, fh) = fs.create(ROOT_INO, "f", 0o644, RW, 0, 0).await.unwrap();
        fs.write(fh, 0, b"fsynced during an outage").await.unwrap();
        let started = Instant::now();
        let err = tokio::time::timeout(Duration::from_secs(60), fs.fsync(fh))
            .await
            .expect("fsync is bounded")
            .expect_err("fsync cannot succeed while the node is down");
        assert_eq!(err.errno(), libc::EIO, "{err}");
        assert!(started.elapsed() >= Duration::from_secs(1));
        fs.release(fh).await.unwrap();
        assert_eq!(read_all(&fs, "f").await, b"fsynced during an outage");

        store.set_offline(false);
        fs.flush_all().await.unwrap();
        fs.abort();
        let other = tempfile::tempdir().unwrap();
        let fs = core(store, other.path(), u64::MAX).await;
        assert_eq!(read_all(&fs, "f").await, b"fsynced during an outage");
    }

    #[tokio::test]
    async fn writers_at_the_staging_limit_get_enospc_once_the_node_is_down_past_the_grace() {
        let store = Arc::new(MemoryStore::new());
        let cache = tempfile::tempdir().unwrap();
        let fs = core(store.clone(), cache.path(), 10).await;
        store.set_offline(true);
        let (_, fh) = fs.create(ROOT_INO, "a", 0o644, RW, 0, 0).await.unwrap();
        fs.write(fh, 0, &[1; 20]).await.unwrap();
        fs.release(fh).await.unwrap();
        let (_, fh) = fs.create(ROOT_INO, "b", 0o644, RW, 0, 0).await.unwrap();
        let err = tokio::time::timeout(Duration::from_secs(60), fs.write(fh, 0, b"x"))
            .await
            .expect("the wait is bounded")
            .expect_err("no room while the node is down");
        assert_eq!(err.errno(), libc::ENOSPC, "{err}");

        store.set_offline(false);
        let n = tokio::time::timeout(Duration::from_secs(30), fs.write(fh, 0, b"x"))
            .await
            .expect("writers go on once uploads catch up")
            .unwrap();
        assert_eq!(n, 1);
        fs.release(fh).await.unwrap();
        fs.flush_all().await.unwrap();
        assert_eq!(read_all(&fs, "a").await, [1; 20]);
    }
}

/// Issue #37: an unmount that could not commit says so. With the node killed before the
/// files are written and a short grace, `pxfs unmount` exits non-zero, names the files,
/// bytes, journal and error that stay, and never says "committed"; the next mount with
/// that cache commits them, which a mount with a fresh cache then sees.
#[test]
fn an_unmount_that_cannot_commit_says_what_stays_and_the_next_mount_commits_it() {
    let devnet = TestDevnet::start(&[]);
    let mut node = OutageNode::start(&devnet);
    let (cfg, cache) = config(&devnet, &node, "truth", 2, 1, None);
    let mut mount = TestMount::mount(&cfg, &[]);
    let dir = mount.token(devnet.token()).join("kept");
    std::fs::create_dir(&dir).unwrap();
    node.kill();
    let small = random_file(&dir.join("small.bin"), 1000, 1);
    let big = random_file(&dir.join("big.bin"), 3 << 20, 2);
    std::fs::write(dir.join("empty"), b"").unwrap();

    let out = mount.unmount_outcome();
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "pxfs unmount exited 0: {said}");
    assert!(!said.contains("uploaded and committed"), "{said}");
    assert!(said.contains("NOT committed"), "{said}");
    let bytes = 1000 + (3u64 << 20);
    assert!(
        said.contains(&format!("3 file(s), {bytes} byte(s) not uploaded")),
        "files and bytes left: {said}"
    );
    assert!(
        said.contains(&cache.join("journal").display().to_string()),
        "names the journal: {said}"
    );
    assert!(said.contains("Last error: "), "says why: {said}");

    // The node is back: the next mount with that cache uploads and commits, so its
    // unmount succeeds, and a fresh cache sees the files from the node.
    node.restart();
    let mut again = TestMount::mount(&cfg, &[]);
    again.unmount();
    let (fresh, _) = config(&devnet, &node, "truth-fresh", 5, 4, None);
    let remount = TestMount::mount(&fresh, &[]);
    let back = remount.token(devnet.token()).join("kept");
    assert_eq!(std::fs::read(back.join("small.bin")).unwrap(), small);
    assert_eq!(std::fs::read(back.join("big.bin")).unwrap(), big);
    assert_eq!(std::fs::read(back.join("empty")).unwrap(), b"");
}

/// A small tmpfs of its own for the cache (a cache disk that fills up); unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(bytes: u64) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("pxfs-small-disk-")
            .tempdir()
            .unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill what is left of the disk with `name`; returns once a write got ENOSPC.
    fn fill(&self, name: &str) {
        let mut f = std::fs::File::create(self.path().join(name)).unwrap();
        let block = vec![7u8; 64 << 10];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
                Err(e) => panic!("filling the small disk: {e}"),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Create `path` with `data` and close it, reporting the close's own error (which
/// `std::fs::write` drops).
fn write_and_close(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    let mut f = std::fs::File::create(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: `fd` was just taken from the file, which no longer owns it.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The errno of a failed operation on the mount; `ENOSPC` is the only one a full disk may
/// give (never `EIO`, never `ENOTCONN`).
fn full_disk_errno<T>(what: &str, r: std::io::Result<T>) -> Option<i32> {
    let code = r.err().map(|e| e.raw_os_error().unwrap_or(0));
    assert!(
        code.is_none() || code == Some(libc::ENOSPC),
        "{what} on a full cache disk failed with errno {code:?}, not ENOSPC"
    );
    code
}

fn mount_faults(cfg: &Path) -> Vec<String> {
    let s = support::status_json(cfg);
    s["mounts"][0]["local_faults"]
        .as_array()
        .expect("a running mount with local_faults")
        .iter()
        .map(|f| f.as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_full_cache_disk_gives_enospc_keeps_the_mount_up_and_writes_resume_when_space_is_freed() {
    const MIB: u64 = 1 << 20;
    let devnet = TestDevnet::start(&[]);
    let mut node = OutageNode::start(&devnet);
    // The cache on a 64 MiB disk, 24 MiB of it taken by something else, 8 MiB kept free.
    let disk = SmallDisk::mount(64 * MIB);
    let ballast = disk.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; (24 * MIB) as usize]).unwrap();
    let (cfg, _) = config(&devnet, &node, "fulldisk", 2, 1, None);
    let cache = disk.path().join("cache");
    let mut doc: toml::Value = toml::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    doc["cache"]["dir"] = toml::Value::String(cache.display().to_string());
    doc["cache"]["reserve_bytes"] = toml::Value::Integer((8 * MIB) as i64);
    std::fs::write(&cfg, toml::to_string(&doc).unwrap()).unwrap();
    let mut mount = TestMount::mount(&cfg, &[]);
    // The daemon's log is on that same small disk: it must not take the daemon down.
    assert!(cache.join("mount.log").exists());
    let dir = mount.token(devnet.token()).join("backup");
    std::fs::create_dir(&dir).unwrap();

    // The node stalls: closed files stay staged on the small disk until it fills.
    node.freeze();
    let mut closed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut refused = 0;
    for i in 0..64u64 {
        let name = format!("f{i:02}.bin");
        let data = random_file_bytes(MIB as usize, 100 + i);
        match full_disk_errno("write+close", write_and_close(&dir.join(&name), &data)) {
            None => closed.push((name, data)),
            Some(_) => refused += 1,
        }
        if refused >= 4 {
            break;
        }
    }
    assert_eq!(refused, 4, "the 64 MiB disk never filled");
    assert!(closed.len() >= 20, "only {} files fit", closed.len());

    // Below the reserve: new data is refused, what the daemon needs still fits.
    assert!(support::is_mounted(mount.path()), "the mount is gone");
    full_disk_errno("mkdir", std::fs::create_dir(dir.join("sub")));
    full_disk_errno(
        "rename",
        std::fs::rename(dir.join(&closed[0].0), dir.join("renamed.bin")),
    );
    if dir.join("renamed.bin").exists() {
        closed[0].0 = "renamed.bin".into();
    }
    let listed = std::fs::read_dir(&dir).unwrap().count();
    assert!(listed >= closed.len(), "ls shows {listed} entries");
    for (name, data) in &closed {
        assert_eq!(
            std::fs::metadata(dir.join(name)).unwrap().len(),
            data.len() as u64
        );
    }
    assert_eq!(std::fs::read(dir.join(&closed[1].0)).unwrap(), closed[1].1);
    // The status file is published every second.
    wait_until(
        "pxfs status to name the fault",
        Duration::from_secs(10),
        || {
            mount_faults(&cfg)
                .iter()
                .any(|f| f.contains("cache disk is full"))
        },
    );

    // The disk full to the last byte (another program filled it): still ENOSPC or success,
    // never EIO or ENOTCONN, and the daemon stays up.
    disk.fill("filler");
    full_disk_errno(
        "write+close",
        write_and_close(&dir.join("late.bin"), b"late"),
    );
    full_disk_errno("mkdir", std::fs::create_dir(dir.join("sub2")));
    full_disk_errno(
        "setxattr",
        set_xattr(&dir.join(&closed[1].0), "user.note", b"kept"),
    );
    assert!(support::is_mounted(mount.path()), "the mount is gone");
    assert_eq!(std::fs::read(dir.join(&closed[2].0)).unwrap(), closed[2].1);

    // Space comes back: writes resume by themselves, without a remount.
    std::fs::remove_file(disk.path().join("filler")).unwrap();
    std::fs::remove_file(&ballast).unwrap();
    for i in 0..3u64 {
        let name = format!("after{i}.bin");
        let data = random_file_bytes(MIB as usize, 500 + i);
        write_and_close(&dir.join(&name), &data).expect("a write after space was freed");
        closed.push((name, data));
    }
    wait_until("the fault to clear", Duration::from_secs(10), || {
        mount_faults(&cfg).iter().all(|f| !f.contains("cache disk"))
    });
    // One line when the episode started and one when it ended, not one per request.
    assert_eq!(
        log_lines(&cache, "the cache disk is full: new data").len(),
        1
    );
    assert_eq!(log_lines(&cache, "local fault over").len(), 1);
    assert!(log_lines(&cache, "request failed").is_empty());

    // The node is back: the unmount drains everything, and a fresh cache reads it back.
    node.thaw();
    mount.unmount();
    let (fresh, _) = config(&devnet, &node, "fulldisk-fresh", 5, 4, None);
    let remount = TestMount::mount(&fresh, &[]);
    let back = remount.token(devnet.token()).join("backup");
    for (name, data) in &closed {
        assert_eq!(&std::fs::read(back.join(name)).unwrap(), data, "{name}");
    }
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and `value` is valid for its length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn random_file_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut data = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut data);
    data
}
