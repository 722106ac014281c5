//! Test support: a real devnet (`pxfs devnet up` as a child process) and real mounts.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const PXFS: &str = env!("CARGO_BIN_EXE_pxfs");
pub const DEV_WALLET_KEY: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// A devnet started for one test; stopped (SIGTERM, then waited for) on drop.
pub struct TestDevnet {
    pub dir: tempfile::TempDir,
    pub info: serde_json::Value,
    child: Option<Child>,
    /// Everything it wrote to stderr so far (also echoed to the test's stderr).
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// The suite's mounts keep no history (a deletion frees its space, a rewrite unpins the
/// old version: what most tests are about); history's own tests turn it on
/// ([`history_on`]). The devnet writes the config without `[history]`: the default keeps it.
fn history_off(config: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let mut cfg: toml::Value = toml::from_str(&text).unwrap();
    let mut off = toml::map::Map::new();
    for key in ["keep_all_secs", "hourly", "daily", "monthly"] {
        off.insert(key.into(), toml::Value::Integer(0));
    }
    cfg.as_table_mut()
        .unwrap()
        .insert("history".into(), toml::Value::Table(off));
    std::fs::write(config, toml::to_string(&cfg).unwrap()).unwrap();
}

/// For [`TestDevnet::config_with`]: the default retention policy (every commit of the last
/// hour, hourly for two days, daily for 30 days), as a user's config without `[history]`.
pub fn history_on(cfg: &mut toml::Value) {
    cfg.as_table_mut().unwrap().remove("history");
}

impl TestDevnet {
    pub fn start(extra: &[&str]) -> TestDevnet {
        let dir = tempfile::Builder::new()
            .prefix("pxfs-devnet-")
            .tempdir()
            .unwrap();
        Self::start_in(dir, extra, false)
    }

    /// `pxfs devnet up --dir DIR EXTRA...`; with `group_leader`, in a process group of its
    /// own, as a shell starts a foreground job (see [`TestDevnet::interrupt_group`]).
    pub fn start_in(dir: tempfile::TempDir, extra: &[&str], group_leader: bool) -> TestDevnet {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(PXFS);
        cmd.args(["devnet", "up", "--dir"])
            .arg(dir.path())
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if group_leader {
            cmd.process_group(0);
        }
        let mut child = cmd.spawn().expect("spawn pxfs devnet up");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.trim() == "devnet ready" && !ready {
                    ready = true;
                    let _ = tx.send(());
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let errors = child.stderr.take().unwrap();
        let collected = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(errors).lines().map_while(Result::ok) {
                eprintln!("devnet: {line}");
                let mut all = collected.lock().unwrap();
                all.push_str(&line);
                all.push('\n');
            }
        });
        if rx.recv_timeout(Duration::from_secs(180)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "devnet did not print `devnet ready` within 180 s; stderr:\n{}",
                stderr.lock().unwrap()
            );
        }
        let info: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("devnet.json")).unwrap())
                .unwrap();
        history_off(&dir.path().join("pxfs.toml"));
        TestDevnet {
            dir,
            info,
            child: Some(child),
            stderr,
        }
    }

    /// What the devnet wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// SIGINT to the devnet's whole process group, as a terminal's Ctrl-C (the devnet must
    /// have been started as a group leader); returns its exit status once it has exited.
    pub fn interrupt_group(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.signal_group(libc::SIGINT);
        self.wait_exit(timeout)
    }

    /// `sig` to the devnet's whole process group (it must have been started as a leader).
    pub fn signal_group(&self, sig: i32) {
        unsafe { libc::kill(-(self.pid() as i32), sig) };
    }

    /// SIGINT to the devnet alone (a second Ctrl-C is delivered the same way).
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid() as i32, sig) };
    }

    /// Waits for the devnet to exit; kills it and panics after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("devnet running");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                // Let the stderr reader catch up with the last lines.
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "devnet did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The devnet's directory, to start it again (it must have exited).
    pub fn into_dir(mut self) -> tempfile::TempDir {
        assert!(self.child.is_none(), "the devnet is still running");
        let placeholder = tempfile::tempdir().unwrap();
        std::mem::replace(&mut self.dir, placeholder)
    }

    /// A config for this devnet's chain and node with its own cache directory (an empty
    /// one is "another machine"), written beside it as `CACHE.toml`.
    pub fn config_with_cache(&self, cache: &Path) -> PathBuf {
        self.config_with(cache, |_| {})
    }

    /// Like [`TestDevnet::config_with_cache`], with `edit` applied to the config too.
    pub fn config_with(&self, cache: &Path, edit: impl FnOnce(&mut toml::Value)) -> PathBuf {
        let text = std::fs::read_to_string(self.config()).unwrap();
        let mut cfg: toml::Value = toml::from_str(&text).unwrap();
        cfg["cache"]["dir"] = toml::Value::String(cache.display().to_string());
        edit(&mut cfg);
        let path = cache.with_extension("toml");
        std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
        path
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("pxfs.toml")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn node_url(&self) -> String {
        self.info["node_url"].as_str().unwrap().to_string()
    }

    pub fn rpc_url(&self) -> String {
        self.info["rpc_url"].as_str().unwrap().to_string()
    }

    pub fn token(&self) -> u64 {
        self.info["token_ids"][0].as_u64().unwrap()
    }

    /// Runs `pxfs ARGS --config <devnet config>` with the dev wallet's key in the environment.
    pub fn pxfs(&self, args: &[&str]) -> Output {
        Command::new(PXFS)
            .args(args)
            .arg("--config")
            .arg(self.config())
            .env("PXFS_PRIVATE_KEY", DEV_WALLET_KEY)
            .output()
            .unwrap()
    }

    /// Stops the devnet with SIGTERM and returns once it has exited.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(120))
    }
}

impl Drop for TestDevnet {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
    }
}

/// Pids of processes whose parent is `pid`.
pub fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) {
            // Field 4 (after the parenthesised command name) is the parent pid.
            if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
                let ppid: u32 = rest
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                if ppid == pid {
                    out.push(p);
                }
            }
        }
    }
    out
}

pub fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit_once(')')
                    .map(|(_, r)| r.trim_start().starts_with('Z'))
                    .unwrap_or(false)
            })
            .unwrap_or(true)
}

/// Whether `mp` is a mount point now.
pub fn is_mounted(mp: &Path) -> bool {
    pxfs::mountinfo::on(mp).is_some()
}

/// A kernel mount of a devnet's sNFTs; unmounted (draining uploads) on drop.
pub struct TestMount {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    mounted: bool,
    /// Environment the daemon gets on every (re)mount, e.g. `PXFS_LOG`.
    env: Vec<(String, String)>,
}

impl TestMount {
    /// `pxfs mount MP --config CFG ARGS...` in the background; returns once usable.
    pub fn mount(config: &Path, args: &[&str]) -> TestMount {
        Self::unmounted(config).remount_with(args)
    }

    /// Like [`TestMount::mount`], with the daemon's open-file limit (soft and hard) set to
    /// `nofile`, as `prlimit --nofile=N pxfs mount ...` does.
    pub fn mount_with_nofile(config: &Path, args: &[&str], nofile: u64) -> TestMount {
        Self::unmounted(config).remount_limited(args, Some(nofile))
    }

    /// Like [`TestMount::mount`], with `env` set for the daemon (on remounts too).
    pub fn mount_with_env(config: &Path, args: &[&str], env: &[(&str, &str)]) -> TestMount {
        let mut m = Self::unmounted(config);
        m.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.remount_with(args)
    }

    /// A fresh mount point for `config`, not mounted yet.
    fn unmounted(config: &Path) -> TestMount {
        TestMount {
            dir: tempfile::Builder::new()
                .prefix("pxfs-mnt-")
                .tempdir()
                .unwrap(),
            config: config.to_path_buf(),
            mounted: false,
            env: Vec::new(),
        }
    }

    fn remount_with(self, args: &[&str]) -> TestMount {
        self.remount_limited(args, None)
    }

    fn remount_limited(mut self, args: &[&str], nofile: Option<u64>) -> TestMount {
        use std::os::unix::process::CommandExt;
        let mut cmd = Command::new(PXFS);
        if let Some(n) = nofile {
            let limit = libc::rlimit {
                rlim_cur: n,
                rlim_max: n,
            };
            // SAFETY: setrlimit is async-signal-safe; `limit` is a plain value moved in.
            unsafe {
                cmd.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        // The owner's machine: the wallet key opens the sNFTs' data keys.
        let out = cmd
            .env("PXFS_PRIVATE_KEY", DEV_WALLET_KEY)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .arg("mount")
            .arg(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pxfs mount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            is_mounted(self.dir.path()),
            "pxfs mount returned before the mount was usable"
        );
        self.mounted = true;
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory of sNFT `token`.
    pub fn token(&self, token: u64) -> PathBuf {
        self.dir.path().join(token.to_string())
    }

    /// `pxfs unmount`, which drains pending uploads and commits before it returns.
    pub fn unmount(&mut self) {
        if !self.mounted {
            return;
        }
        let out = self.unmount_outcome();
        assert!(
            out.status.success(),
            "pxfs unmount failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pxfs unmount ARGS MOUNTPOINT --config CFG`.
    fn pxfs_unmount(&self, args: &[&str]) -> Output {
        Command::new(PXFS)
            .arg("unmount")
            .args(args)
            .arg(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .output()
            .unwrap()
    }

    /// `pxfs unmount` whatever its outcome: its output, once the mount point is detached.
    pub fn unmount_outcome(&mut self) -> Output {
        let out = self.pxfs_unmount(&[]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while is_mounted(self.dir.path()) {
            assert!(
                Instant::now() < deadline,
                "still mounted 120 s after pxfs unmount"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.mounted = false;
        out
    }

    /// `pxfs unmount --abort`: ends the mount's FUSE connection and detaches it, for a
    /// daemon that neither answers nor exits.
    pub fn abort(&mut self) {
        let out = self.pxfs_unmount(&["--abort"]);
        assert!(
            out.status.success(),
            "pxfs unmount --abort failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!is_mounted(self.dir.path()), "still mounted after --abort");
        self.mounted = false;
    }

    /// Unmount, then mount the same directory again with the same config.
    pub fn remount(mut self, args: &[&str]) -> TestMount {
        self.unmount();
        self.remount_with(args)
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        if self.mounted && !std::thread::panicking() {
            self.unmount();
        } else if self.mounted {
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// `pxfs status --json --config CFG`, parsed; fails the test if the command fails.
pub fn status_json(config: &Path) -> serde_json::Value {
    let out = Command::new(PXFS)
        .args(["status", "--json", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pxfs status failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The pid of the `pxfs mount` daemon serving `mountpoint`.
pub fn daemon_pid(mountpoint: &Path) -> u32 {
    let mp = mountpoint.to_string_lossy();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).is_some_and(|a| a == "mount") && args.iter().any(|a| *a == mp) {
            return pid;
        }
    }
    panic!("no pxfs mount daemon found for {mp}");
}

/// The value of extended attribute `name` of `p`, as text; panics if it has none.
pub fn xattr(p: &Path, name: &str) -> String {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 512];
    // SAFETY: valid C strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name} of {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    String::from_utf8(buf[..len as usize].to_vec()).unwrap()
}

/// Runs a shell command; panics with its output if it fails.
pub fn sh(script: &str) -> String {
    let out = Command::new("bash")
        .arg("-ec")
        .arg(script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "`{script}` failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A JSON-RPC call to the devnet's anvil.
pub fn rpc(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let resp: serde_json::Value = rt.block_on(async {
        reqwest::Client::new()
            .post(url)
            .json(&body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    if let Some(err) = resp.get("error") {
        panic!("{method} failed: {err}");
    }
    resp["result"].clone()
}

/// Moves the devnet chain's clock forward and mines a block.
pub fn advance_chain_time(rpc_url: &str, secs: u64) {
    rpc(rpc_url, "evm_increaseTime", serde_json::json!([secs]));
    rpc(rpc_url, "evm_mine", serde_json::json!([]));
}

/// Waits until `f` returns true, polling every 200 ms; panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Compares two trees: same names, kinds, sizes, modes, mtimes (to the second), symlink
/// targets and file contents. Returns the differences.
/// Panics with the first differences if the trees at `a` and `b` differ.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let diffs = tree_differences(a, b);
    assert!(
        diffs.is_empty(),
        "{} differences, first: {:#?}",
        diffs.len(),
        &diffs[..diffs.len().min(10)]
    );
}

pub fn tree_differences(a: &Path, b: &Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut diffs = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = match (
            std::fs::symlink_metadata(&pa),
            std::fs::symlink_metadata(&pb),
        ) {
            (Ok(x), Ok(y)) => (x, y),
            (x, y) => {
                diffs.push(format!(
                    "{}: present {} vs {}",
                    rel.display(),
                    x.is_ok(),
                    y.is_ok()
                ));
                continue;
            }
        };
        if ma.file_type() != mb.file_type() {
            diffs.push(format!("{}: kind differs", rel.display()));
            continue;
        }
        if ma.mode() != mb.mode() {
            diffs.push(format!(
                "{}: mode {:o} vs {:o}",
                rel.display(),
                ma.mode(),
                mb.mode()
            ));
        }
        if !ma.is_dir() && ma.size() != mb.size() {
            diffs.push(format!(
                "{}: size {} vs {}",
                rel.display(),
                ma.size(),
                mb.size()
            ));
        }
        if !ma.file_type().is_symlink() && ma.mtime() != mb.mtime() && !rel.as_os_str().is_empty() {
            diffs.push(format!(
                "{}: mtime {} vs {}",
                rel.display(),
                ma.mtime(),
                mb.mtime()
            ));
        }
        if ma.file_type().is_symlink() {
            if std::fs::read_link(&pa).ok() != std::fs::read_link(&pb).ok() {
                diffs.push(format!("{}: symlink target differs", rel.display()));
            }
        } else if ma.is_file() {
            if !files_equal(&pa, &pb) {
                diffs.push(format!("{}: content differs", rel.display()));
            }
        } else if ma.is_dir() {
            let names = |p: &Path| {
                let mut v: Vec<_> = std::fs::read_dir(p)
                    .unwrap()
                    .map(|e| e.unwrap().file_name())
                    .collect();
                v.sort();
                v
            };
            let (na, nb) = (names(&pa), names(&pb));
            if na != nb {
                diffs.push(format!(
                    "{}: entries differ: {na:?} vs {nb:?}",
                    rel.display()
                ));
            }
            for n in na {
                stack.push(rel.join(n));
            }
        }
    }
    diffs
}

pub fn files_equal(a: &Path, b: &Path) -> bool {
    use std::io::Read;
    let (mut fa, mut fb) = match (std::fs::File::open(a), std::fs::File::open(b)) {
        (Ok(x), Ok(y)) => (x, y),
        _ => return false,
    };
    let (mut ba, mut bb) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
    loop {
        let na = read_full(&mut fa, &mut ba);
        let nb = read_full(&mut fb, &mut bb);
        if na != nb || ba[..na] != bb[..nb] {
            return false;
        }
        if na == 0 {
            return true;
        }
    }
    fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> usize {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => panic!("read: {e}"),
            }
        }
        n
    }
}

/// A seeded tree: nested dirs, `small` small files, one big file of `big` bytes, symlinks,
/// assorted modes and mtimes in the past.
pub fn generate_tree(root: &Path, seed: u64, small: usize, big: u64) {
    use rand::{Rng, RngCore, SeedableRng};
    use std::os::unix::fs::PermissionsExt;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dirs: Vec<PathBuf> = (0..20)
        .map(|i| root.join(format!("d{}/sub{}", i % 5, i)))
        .collect();
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let modes = [0o644, 0o600, 0o755, 0o640, 0o444];
    for i in 0..small {
        let d = &dirs[i % dirs.len()];
        let p = d.join(format!("file-{i:05}.dat"));
        let mut data = vec![0u8; rng.random_range(0..16 * 1024)];
        rng.fill_bytes(&mut data);
        std::fs::write(&p, &data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(modes[i % modes.len()]))
            .unwrap();
        let t = 1_600_000_000 + rng.random_range(0..100_000_000);
        set_mtime(&p, t);
    }
    if big > 0 {
        let p = root.join("big.bin");
        let mut f = std::fs::File::create(&p).unwrap();
        let mut left = big;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            rng.fill_bytes(&mut buf);
            let n = left.min(buf.len() as u64) as usize;
            std::io::Write::write_all(&mut f, &buf[..n]).unwrap();
            left -= n as u64;
        }
    }
    std::os::unix::fs::symlink("d0/sub0/file-00000.dat", root.join("link-to-file")).unwrap();
    std::os::unix::fs::symlink("d1", root.join("link-to-dir")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("dangling")).unwrap();
    std::fs::set_permissions(root.join("d2"), std::fs::Permissions::from_mode(0o750)).unwrap();
    for d in dirs.iter().rev() {
        set_mtime(d, 1_650_000_000);
    }
}

pub fn set_mtime(p: &Path, secs: i64) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    ];
    let r = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            ts.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(r, 0, "utimensat {}", p.display());
}

/// Every `Synced(tokenId, usage, root)` event of the devnet contract so far: (token, usage, root).
pub fn synced_events(devnet: &TestDevnet) -> Vec<(u64, u64, String)> {
    use alloy::sol_types::SolEvent;
    alloy::sol! {
        event Synced(uint256 indexed tokenId, uint256 usage, string root);
    }
    let logs = rpc(
        &devnet.rpc_url(),
        "eth_getLogs",
        serde_json::json!([{
            "address": devnet.info["contract"],
            "fromBlock": "0x0",
            "toBlock": "latest",
            "topics": [Synced::SIGNATURE_HASH.to_string()],
        }]),
    );
    logs.as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let topics: Vec<alloy::primitives::B256> = l["topics"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().parse().unwrap())
                .collect();
            let data: alloy::primitives::Bytes = l["data"].as_str().unwrap().parse().unwrap();
            let ev = Synced::decode_raw_log(topics, &data).unwrap();
            (ev.tokenId.to::<u64>(), ev.usage.to::<u64>(), ev.root)
        })
        .collect()
}

/// Pids of the devnet's children whose command line contains `needle`.
pub fn devnet_child(devnet: &TestDevnet, needle: &str) -> Option<u32> {
    children_of(devnet.pid()).into_iter().find(|p| {
        std::fs::read(format!("/proc/{p}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(needle))
            .unwrap_or(false)
    })
}

/// The node seen as a page store (blocking), for reading v2 trees in tests.
pub struct NodePages<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub client: &'a pxfs::storage::NodeClient,
}

impl pxfs::format::PageStore for NodePages<'_> {
    fn get(&self, cid: &str) -> pxfs::format::Result<Vec<u8>> {
        self.rt
            .block_on(self.client.cat(cid, 0, None))
            .map(|b| b.to_vec())
            .map_err(|e| pxfs::format::FormatError::Store(e.to_string()))
    }
    fn put(&mut self, _bytes: Vec<u8>) -> pxfs::format::Result<String> {
        Err(pxfs::format::FormatError::Store("read-only".into()))
    }
}

/// The keys of a devnet tree whose usage document is `doc`, opened as the owner's machine
/// opens them: with the devnet wallet.
pub fn devnet_crypto(
    devnet: &TestDevnet,
    doc: &pxfs::format::usage::AnyUsageDoc,
) -> pxfs::format::TreeCrypto {
    let signer: alloy::signers::local::PrivateKeySigner = DEV_WALLET_KEY.parse().unwrap();
    let token = pxfs::keys::TokenRef {
        chain_id: devnet.info["chain_id"].as_u64().unwrap(),
        contract: devnet.info["contract"].as_str().unwrap().parse().unwrap(),
        token_id: doc.token_id(),
    };
    let means = pxfs::keys::Means {
        wallet: Some(&signer),
        passphrase: pxfs::keys::PassphraseSource::None,
    };
    pxfs::keys::tree_crypto(&token, &doc.encryption(), &means).expect("the wallet opens it")
}

/// Every entry of the v2 tree under the root node `root` (sealed with `crypto`, or
/// plaintext), by path (`/a/b`, lossy UTF-8 for display), with (kind, declared size,
/// content CID).
pub fn node_tree(
    rt: &tokio::runtime::Runtime,
    client: &pxfs::storage::NodeClient,
    root: &str,
    crypto: &pxfs::format::TreeCrypto,
) -> Vec<(String, &'static str, u64, Option<String>)> {
    use pxfs::format::{EntryKind, InodeKind};
    let mut pages = NodePages { rt, client };
    let (_, entries) = pxfs::format::walk::entries(&mut pages, crypto, root)
        .expect("the published tree reads as format v2");
    entries
        .into_iter()
        .map(|(path, e)| {
            let path = format!("/{}", String::from_utf8_lossy(&path));
            match e.kind {
                EntryKind::Inode(i) => match i.kind {
                    InodeKind::File { size, content } => (
                        path,
                        "file",
                        size,
                        content.map(|c| match c {
                            pxfs::format::FileContent::Whole(c) => c.cid,
                            pxfs::format::FileContent::Chunks(top) => top,
                        }),
                    ),
                    InodeKind::Dir { .. } => (path, "dir", 0, None),
                    InodeKind::Symlink(_) => (path, "symlink", 0, None),
                    _ => (path, "special", 0, None),
                },
                EntryKind::Link(_) => (path, "link", 0, None),
                EntryKind::Unknown(_) => (path, "unknown", 0, None),
            }
        })
        .collect()
}
