//! Crash recovery on a real devnet and a real kernel mount: the mount daemon is killed
//! with SIGKILL at seeded random points while writers copy files into an sNFT. What a
//! writer saw closed is never lost, nothing comes back torn, what was fsynced is already
//! on the node, and the dead mount a killed daemon leaves behind is cleaned up by
//! `pxfs mount` and `pxfs unmount` themselves.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::os::fd::IntoRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, RngCore, SeedableRng};
use support::{PXFS, TestDevnet, is_mounted};

/// Files copied per seed (the kill comes somewhere in the middle).
const FILES: usize = 2000;
/// Writers running at once, each owning every step on its files.
const WRITERS: usize = 3;

// ---------------------------------------------------------------------------------------
// The workload: a seeded plan of steps; file contents derive from (seed, path, version).

#[derive(Debug, Clone)]
enum Step {
    /// Create or truncate `path`, write version `v`, close.
    Write {
        path: String,
        v: u32,
    },
    /// Write version `v` to a temporary name, close it, rename it over `path`.
    Replace {
        path: String,
        v: u32,
    },
    Unlink {
        path: String,
    },
}

impl Step {
    fn path(&self) -> &str {
        match self {
            Step::Write { path, .. } | Step::Replace { path, .. } | Step::Unlink { path } => path,
        }
    }

    /// The file's state once this step is done.
    fn after(&self) -> State {
        match self {
            Step::Write { v, .. } | Step::Replace { v, .. } => State::Version(*v),
            Step::Unlink { .. } => State::Absent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Absent,
    Version(u32),
}

struct Plan {
    seed: u64,
    /// Steps per writer, in the order that writer runs them.
    writers: Vec<Vec<Step>>,
}

impl Plan {
    /// A copy: every file written, some rewritten, replaced or deleted a while later.
    fn new(seed: u64) -> Plan {
        Plan::with_later(seed, 1.0..300.0, [5, 9, 12])
    }

    /// Churn (issue #41): most files are deleted, rewritten or replaced within a few steps of
    /// their close, well inside the write-back delay, while their uploads have not started.
    fn churn(seed: u64) -> Plan {
        Plan::with_later(seed, 1.0..6.0, [15, 30, 75])
    }

    /// `later`: how many steps after a file's first version its second step comes;
    /// `odds`: percent of files rewritten, then replaced, then deleted (cumulative).
    fn with_later(seed: u64, later: std::ops::Range<f64>, odds: [u32; 3]) -> Plan {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut keyed: Vec<(f64, usize, Step)> = Vec::new();
        for i in 0..FILES {
            let path = if i % 3 == 0 {
                format!("d{:02}/sub/f{i:04}.bin", i % 16)
            } else {
                format!("d{:02}/f{i:04}.bin", i % 16)
            };
            let first = if rng.random_range(0..100) < 15 {
                Step::Replace {
                    path: path.clone(),
                    v: 1,
                }
            } else {
                Step::Write {
                    path: path.clone(),
                    v: 1,
                }
            };
            keyed.push((i as f64, i, first));
            // Some files get a second version or are deleted a little later.
            let later = i as f64 + rng.random_range(later.clone());
            match rng.random_range(0..100u32) {
                n if n <= odds[0] => keyed.push((later, i, Step::Write { path, v: 2 })),
                n if n <= odds[1] => keyed.push((later, i, Step::Replace { path, v: 2 })),
                n if n <= odds[2] => keyed.push((later, i, Step::Unlink { path })),
                _ => {}
            }
        }
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut writers = vec![Vec::new(); WRITERS];
        for (_, i, step) in keyed {
            writers[i % WRITERS].push(step);
        }
        Plan { seed, writers }
    }

    fn steps(&self) -> usize {
        self.writers.iter().map(Vec::len).sum()
    }

    /// Every step on `path`, in order.
    fn steps_of(&self) -> HashMap<String, Vec<Step>> {
        let mut by_path: HashMap<String, Vec<Step>> = HashMap::new();
        for s in self.writers.iter().flatten() {
            by_path
                .entry(s.path().to_string())
                .or_default()
                .push(s.clone());
        }
        by_path
    }

    /// Version `v` of `path`: a few bytes to a few hundred KiB.
    fn content(&self, path: &str, v: u32) -> Vec<u8> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, path, v).hash(&mut h);
        let mut rng = rand::rngs::StdRng::seed_from_u64(h.finish());
        let len = match rng.random_range(0..100) {
            0..=54 => rng.random_range(1..4096),
            55..=89 => rng.random_range(4096..64 << 10),
            _ => rng.random_range(64 << 10..400 << 10),
        };
        let mut data = vec![0u8; len];
        rng.fill_bytes(&mut data);
        data
    }
}

fn tmp_name(path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, name)) => format!("{dir}/.{name}.tmp"),
        None => format!(".{path}.tmp"),
    }
}

/// Write `data` to `path` and close it, reporting the close's own result (a closed file
/// is what the log records).
fn write_and_close(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    f.write_all(data)?;
    let fd = f.into_raw_fd();
    // SAFETY: we own fd (taken out of the File) and close it exactly once.
    if unsafe { libc::close(fd) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn run_step(plan: &Plan, root: &Path, step: &Step) -> std::io::Result<()> {
    let target = root.join(step.path());
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir)?;
    }
    match step {
        Step::Write { path, v } => write_and_close(&target, &plan.content(path, *v)),
        Step::Replace { path, v } => {
            let tmp = root.join(tmp_name(path));
            write_and_close(&tmp, &plan.content(path, *v))?;
            std::fs::rename(&tmp, &target)
        }
        Step::Unlink { .. } => std::fs::remove_file(&target),
    }
}

/// The log of completed steps, kept outside the mount: one line per step, appended and
/// fsynced as soon as the step returned.
struct DoneLog {
    file: Mutex<std::fs::File>,
    count: AtomicUsize,
}

impl DoneLog {
    fn record(&self, writer: usize, index: usize) {
        let mut f = self.file.lock().unwrap();
        writeln!(f, "{writer} {index}").unwrap();
        f.sync_data().unwrap();
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    /// For each writer, how many of its steps completed.
    fn read(path: &Path) -> Vec<usize> {
        let mut done = vec![0; WRITERS];
        for line in std::fs::read_to_string(path).unwrap().lines() {
            let (w, i) = line.split_once(' ').unwrap();
            let (w, i): (usize, usize) = (w.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, done[w], "writer {w} logged step {i} out of order");
            done[w] = i + 1;
        }
        done
    }
}

/// Runs the plan's writers against `root` until they finish or the mount dies under them.
fn start_writers(
    plan: &Arc<Plan>,
    root: &Path,
    log: &Arc<DoneLog>,
) -> Vec<std::thread::JoinHandle<Option<String>>> {
    (0..WRITERS)
        .map(|w| {
            let (plan, root, log) = (plan.clone(), root.to_path_buf(), log.clone());
            std::thread::spawn(move || {
                for (i, step) in plan.writers[w].iter().enumerate() {
                    if let Err(e) = run_step(&plan, &root, step) {
                        return Some(format!("{step:?}: {e}"));
                    }
                    log.record(w, i);
                }
                None
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// What may be found after the crash.

/// For each path, the states allowed after recovery: the one after its last logged step
/// and, since the step after it may have completed without being logged yet, the one
/// after that. A temporary name may hold any complete version written to it, or nothing.
struct Expectation {
    allowed: BTreeMap<String, BTreeSet<State>>,
    temporaries: BTreeMap<String, (String, BTreeSet<u32>)>,
}

impl Expectation {
    fn new(plan: &Plan, done: &[usize]) -> Expectation {
        // Position of every step in its writer's sequence, per path.
        let mut positions: HashMap<&str, Vec<(usize, usize)>> = HashMap::new();
        for (w, steps) in plan.writers.iter().enumerate() {
            for (i, s) in steps.iter().enumerate() {
                positions.entry(s.path()).or_default().push((w, i));
            }
        }
        let by_path = plan.steps_of();
        let mut allowed = BTreeMap::new();
        let mut temporaries = BTreeMap::new();
        for (path, steps) in &by_path {
            let pos = &positions[path.as_str()];
            let logged = pos.iter().filter(|(w, i)| *i < done[*w]).count();
            let mut set = BTreeSet::new();
            set.insert(if logged == 0 {
                State::Absent
            } else {
                steps[logged - 1].after()
            });
            if let Some(next) = steps.get(logged) {
                set.insert(next.after());
            }
            allowed.insert(path.clone(), set);
            let versions: BTreeSet<u32> = steps
                .iter()
                .filter_map(|s| match s {
                    Step::Replace { v, .. } => Some(*v),
                    _ => None,
                })
                .collect();
            if !versions.is_empty() {
                temporaries.insert(tmp_name(path), (path.clone(), versions));
            }
        }
        Expectation {
            allowed,
            temporaries,
        }
    }

    /// Walks `root` and returns (what each planned path holds, every violation).
    fn check(&self, plan: &Plan, root: &Path) -> (BTreeMap<String, State>, Vec<String>) {
        let mut found = BTreeMap::new();
        let mut problems = Vec::new();
        let mut files = Vec::new();
        list_files(root, Path::new(""), &mut files);
        let files: BTreeSet<String> = files.into_iter().collect();
        for rel in &files {
            let data = std::fs::read(root.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
            if let Some(allowed) = self.allowed.get(rel) {
                let state = allowed
                    .iter()
                    .find(|s| match s {
                        State::Version(v) => plan.content(rel, *v) == data,
                        State::Absent => false,
                    })
                    .copied();
                match state {
                    Some(s) => {
                        found.insert(rel.clone(), s);
                    }
                    None => problems.push(format!(
                        "{rel}: {} bytes match none of the allowed states {allowed:?} (torn or lost version)",
                        data.len()
                    )),
                }
            } else if let Some((path, versions)) = self.temporaries.get(rel) {
                if !versions.iter().any(|v| plan.content(path, *v) == data) {
                    problems.push(format!(
                        "{rel}: temporary holds {} bytes, no complete version",
                        data.len()
                    ));
                }
            } else {
                problems.push(format!("{rel}: a file the writers never created"));
            }
        }
        for (path, allowed) in &self.allowed {
            if !files.contains(path) {
                if allowed.contains(&State::Absent) {
                    found.insert(path.clone(), State::Absent);
                } else {
                    problems.push(format!("{path}: missing, expected one of {allowed:?}"));
                }
            }
        }
        (found, problems)
    }
}

fn list_files(root: &Path, rel: &Path, out: &mut Vec<String>) {
    let dir = root.join(rel);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if rel.as_os_str().is_empty() && e.kind() == std::io::ErrorKind::NotFound => {
            return; // killed before the first directory was created
        }
        Err(e) => panic!("{}: {e}", dir.display()),
    };
    for e in entries {
        let e = e.unwrap();
        let r = rel.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            list_files(root, &r, out);
        } else {
            out.push(r.to_string_lossy().into_owned());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Mount helpers that survive a killed daemon (TestMount expects a clean unmount).

fn pxfs(args: &[&str], mountpoint: &Path, config: &Path) -> Output {
    Command::new(PXFS)
        .args(args)
        .arg(mountpoint)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

fn mount(mountpoint: &Path, config: &Path) -> String {
    let out = pxfs(&["mount"], mountpoint, config);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pxfs mount failed: {stderr}");
    assert!(
        is_mounted(mountpoint),
        "pxfs mount returned before mounting"
    );
    stderr
}

fn unmount(mountpoint: &Path, config: &Path) -> String {
    let out = pxfs(&["unmount"], mountpoint, config);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "pxfs unmount failed: {stderr}");
    assert!(!is_mounted(mountpoint), "still mounted after pxfs unmount");
    stderr
}

/// Lazily unmounts whatever is left on drop (a failed test must not leave mounts).
struct MountPoint(tempfile::TempDir);

impl MountPoint {
    fn new() -> MountPoint {
        MountPoint(
            tempfile::Builder::new()
                .prefix("pxfs-crash-")
                .tempdir()
                .unwrap(),
        )
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for MountPoint {
    fn drop(&mut self) {
        while is_mounted(self.0.path()) {
            let ok = Command::new("fusermount3")
                .arg("-uz")
                .arg(self.0.path())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                break;
            }
        }
    }
}

/// SIGKILL the daemon of `mountpoint` and wait until it is gone.
fn kill_daemon(mountpoint: &Path) {
    let pid = support::daemon_pid(mountpoint);
    // SAFETY: plain kill(2) of a pid we just looked up.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    support::wait_until("the killed daemon to exit", Duration::from_secs(30), || {
        !support::pid_alive(pid)
    });
}

/// A proxy in front of the devnet's node that holds every `name/publish` back (5 minutes:
/// no commit lands through it), and a copy of the config `direct` that talks to the node
/// through it (same cache), written in `dir`.
fn stalled_publications(devnet: &TestDevnet, direct: &Path, dir: &Path) -> (proxy::Proxy, PathBuf) {
    let stall = proxy::Proxy::start_delaying(
        &devnet.node_url(),
        Some(proxy::Delay {
            needle: b"name/publish".to_vec(),
            delay: Duration::from_secs(300),
        }),
    );
    let mut cfg: toml::Value = toml::from_str(&std::fs::read_to_string(direct).unwrap()).unwrap();
    cfg["node"]["api_url"] = toml::Value::String(stall.url());
    let stalled = dir.join("stalled.toml");
    std::fs::write(&stalled, toml::to_string(&cfg).unwrap()).unwrap();
    (stall, stalled)
}

fn token_dir(mountpoint: &Path, devnet: &TestDevnet) -> PathBuf {
    mountpoint.join(devnet.token().to_string())
}

// ---------------------------------------------------------------------------------------

#[test]
fn kill_9_during_a_copy_loses_no_closed_file_and_leaves_none_torn() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    for seed in [11u64, 22, 33] {
        kill_9_and_check(&devnet, caches.path(), seed, Plan::new(seed));
    }
}

/// With the write-back delay (5 s by default), most of what churn closes is still waiting
/// to upload when the daemon dies: each closed file still present must come back from the
/// journal, and nothing deleted may.
#[test]
fn kill_9_during_churn_loses_no_closed_file_that_still_existed() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    for seed in [44u64, 55] {
        kill_9_and_check(&devnet, caches.path(), seed, Plan::churn(seed));
    }
}

/// Run `plan` on a mount, kill -9 its daemon somewhere in the middle, then check the tree
/// the journal rebuilds (same cache) and the one the node holds (fresh cache).
fn kill_9_and_check(devnet: &TestDevnet, caches: &Path, seed: u64, plan: Plan) {
    let started = Instant::now();
    let plan = Arc::new(plan);
    let kill_at = rand::rngs::StdRng::seed_from_u64(seed ^ 0xdead)
        .random_range(plan.steps() / 10..plan.steps() * 9 / 10);
    let config = devnet.config_with_cache(&caches.join(format!("a{seed}")));
    let mp = MountPoint::new();
    mount(mp.path(), &config);
    let root = token_dir(mp.path(), devnet).join(format!("seed-{seed}"));

    let log_path = caches.join(format!("done-{seed}.log"));
    let log = Arc::new(DoneLog {
        file: Mutex::new(std::fs::File::create(&log_path).unwrap()),
        count: AtomicUsize::new(0),
    });
    let writers = start_writers(&plan, &root, &log);
    while log.count.load(Ordering::SeqCst) < kill_at {
        assert!(
            writers.iter().any(|w| !w.is_finished()),
            "seed {seed}: writers finished before step {kill_at}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    kill_daemon(mp.path());
    for w in writers {
        // Each writer stops at its first failed step (the mount is dead).
        let _ = w.join().unwrap();
    }
    let done = DoneLog::read(&log_path);
    let expect = Expectation::new(&plan, &done);
    let logged: usize = done.iter().sum();

    // The same cache: the dead mount is cleaned up and the journal replayed.
    let said = mount(mp.path(), &config);
    assert!(
        said.contains("stale mount"),
        "pxfs mount did not say it removed the stale mount: {said}"
    );
    let (replayed, problems) = expect.check(&plan, &root);
    assert!(
        problems.is_empty(),
        "seed {seed}, killed after {logged} logged steps: after remount with the same cache, {} problems: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    unmount(mp.path(), &config); // drains the uploads and commits

    // Nothing cached: the tree comes from the node, as the journal rebuilt it.
    let fresh = devnet.config_with_cache(&caches.join(format!("b{seed}")));
    mount(mp.path(), &fresh);
    let (from_node, problems) = expect.check(&plan, &root);
    assert!(
        problems.is_empty(),
        "seed {seed}: from the node with a fresh cache, {} problems: {:#?}",
        problems.len(),
        &problems[..problems.len().min(20)]
    );
    let changed: Vec<_> = replayed
        .iter()
        .filter(|(p, s)| from_node.get(*p) != Some(s))
        .take(10)
        .collect();
    assert!(
        changed.is_empty(),
        "seed {seed}: what the node holds differs from what the remount showed: {changed:?}"
    );
    unmount(mp.path(), &fresh);
    eprintln!(
        "seed {seed}: killed after {logged}/{} steps; {} files present; {:.1}s",
        plan.steps(),
        from_node.values().filter(|s| **s != State::Absent).count(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_file_fsynced_before_kill_9_is_on_the_node_and_pxfs_unmount_removes_the_dead_mount() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let config = devnet.config_with_cache(&caches.path().join("a"));
    let mp = MountPoint::new();
    mount(mp.path(), &config);

    // Mounting over a live pxfs mount is refused, with the way out.
    let again = pxfs(&["mount"], mp.path(), &config);
    assert!(
        !again.status.success(),
        "a second pxfs mount on a live one succeeded"
    );
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already a pxfs mount"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut synced = vec![0u8; 300 << 10];
    rng.fill_bytes(&mut synced);
    let mut closed = vec![0u8; 5000];
    rng.fill_bytes(&mut closed);
    let dir = token_dir(mp.path(), &devnet).join("docs");
    std::fs::create_dir(&dir).unwrap();
    {
        let mut f = std::fs::File::create(dir.join("synced.bin")).unwrap();
        f.write_all(&synced).unwrap();
        f.sync_all().unwrap();
    }
    std::fs::write(dir.join("closed.bin"), &closed).unwrap();
    kill_daemon(mp.path());
    assert!(
        is_mounted(mp.path()),
        "the killed daemon's mount should be left behind"
    );
    // ENOTCONN, or ECONNABORTED for a request caught while the kernel tears down the
    // connection of the dead daemon.
    let err = std::fs::read_dir(mp.path()).unwrap_err();
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ENOTCONN | libc::ECONNABORTED)
        ),
        "{err}"
    );

    // `pxfs unmount` on the dead mount removes it and says what happened.
    let said = unmount(mp.path(), &config);
    assert!(said.contains("stale mount"), "{said}");

    // Another cache, so nothing local: the fsynced file comes from the node.
    let fresh = devnet.config_with_cache(&caches.path().join("b"));
    mount(mp.path(), &fresh);
    let dir = token_dir(mp.path(), &devnet).join("docs");
    assert_eq!(std::fs::read(dir.join("synced.bin")).unwrap(), synced);
    unmount(mp.path(), &fresh);

    // The first cache's journal still has the file that was only closed.
    mount(mp.path(), &config);
    assert_eq!(std::fs::read(dir.join("synced.bin")).unwrap(), synced);
    assert_eq!(std::fs::read(dir.join("closed.bin")).unwrap(), closed);
    unmount(mp.path(), &config);
}

/// Issue #39: a kill -9 after a change's chunks reached the node and before the commit that
/// would publish them loses nothing that was closed. The node sits behind a proxy that
/// holds every `name/publish` back, so the commit never lands: a committed chunked file
/// changed in place (4 KiB inside, a tail appended: an overlay over its chunks) and a new
/// file written in order (a live upload, sent as chunks while written) are closed, their
/// uploads end, the commit hangs at its publication, and the daemon is killed there. The
/// journal brings both back on the same cache, and the node has them after the next
/// unmount (a fresh cache reads them).
#[test]
fn kill_9_between_chunk_uploads_and_their_commit_loses_no_closed_change() {
    use std::os::unix::fs::FileExt;
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let direct = devnet.config_with_cache(&caches.path().join("a"));
    let mp = MountPoint::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(39);
    let mut base = vec![0u8; 3 << 20];
    rng.fill_bytes(&mut base);
    mount(mp.path(), &direct);
    let dir = token_dir(mp.path(), &devnet);
    {
        let mut f = std::fs::File::create(dir.join("base.bin")).unwrap();
        f.write_all(&base).unwrap();
        f.sync_all().unwrap();
    }
    unmount(mp.path(), &direct);

    // The same cache, the node behind a proxy that holds every publication back.
    let (stall, stalled) = stalled_publications(&devnet, &direct, caches.path());
    mount(mp.path(), &stalled);
    let mut changed = base.clone();
    let mut patch = vec![0u8; 4096];
    rng.fill_bytes(&mut patch);
    let at = (1 << 20) + 100;
    changed[at..at + patch.len()].copy_from_slice(&patch);
    let mut tail = vec![0u8; 200 << 10];
    rng.fill_bytes(&mut tail);
    changed.extend_from_slice(&tail);
    {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("base.bin"))
            .unwrap();
        f.write_all_at(&patch, at as u64).unwrap();
        f.write_all_at(&tail, base.len() as u64).unwrap();
    }
    let mut new = vec![0u8; 2 << 20];
    rng.fill_bytes(&mut new);
    std::fs::write(dir.join("new.bin"), &new).unwrap();
    support::wait_until(
        "the uploads to end and a commit to reach its publication",
        Duration::from_secs(120),
        || {
            let s = support::status_json(&stalled);
            s["mounts"][0]["pending_files"] == 0 && stall.delayed() >= 1
        },
    );
    kill_daemon(mp.path());
    unmount(mp.path(), &stalled);

    // The same cache, the node direct: the journal's closes come back, and are committed.
    mount(mp.path(), &direct);
    assert!(
        std::fs::read(dir.join("base.bin")).unwrap() == changed,
        "base.bin changed"
    );
    assert!(
        std::fs::read(dir.join("new.bin")).unwrap() == new,
        "new.bin"
    );
    unmount(mp.path(), &direct);
    let fresh = devnet.config_with_cache(&caches.path().join("b"));
    mount(mp.path(), &fresh);
    assert!(
        std::fs::read(dir.join("base.bin")).unwrap() == changed,
        "base.bin from the node"
    );
    assert!(
        std::fs::read(dir.join("new.bin")).unwrap() == new,
        "new.bin from the node"
    );
    unmount(mp.path(), &fresh);
}

/// Issue #34: a kill -9 while a file is streamed to the node (its chunks sent as it is
/// written, before its close) loses nothing that was closed, and the unclosed session leaves
/// no torn file. The node sits behind a proxy that holds `name/publish` back, so nothing
/// written here is committed: `done.bin` was streamed and closed (its close returned), and
/// `open.bin` is being written in order, its first chunks already on the node, when the
/// daemon is killed. The journal brings `done.bin` back and `old.bin` (committed before)
/// as it was; `open.bin` is absent or holds a prefix of what was written (as a disk
/// filesystem keeps some of a file's unsynced writes), never other bytes, and the node then
/// serves the same.
#[test]
fn kill_9_while_a_file_streams_to_the_node_loses_no_closed_file() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let direct = devnet.config_with_cache(&caches.path().join("a"));
    let mp = MountPoint::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(34);
    let mut old = vec![0u8; 1 << 20];
    rng.fill_bytes(&mut old);
    mount(mp.path(), &direct);
    let dir = token_dir(mp.path(), &devnet);
    {
        let mut f = std::fs::File::create(dir.join("old.bin")).unwrap();
        f.write_all(&old).unwrap();
        f.sync_all().unwrap();
    }
    unmount(mp.path(), &direct);

    // The same cache, the node behind a proxy that holds every publication back.
    let (stall, stalled) = stalled_publications(&devnet, &direct, caches.path());
    mount(mp.path(), &stalled);
    let sent_before = stall.bytes_to_server();
    // Streamed and closed: more than the size at which a file streams (4 MiB).
    let mut done = vec![0u8; 6 << 20];
    rng.fill_bytes(&mut done);
    {
        let mut f = std::fs::File::create(dir.join("done.bin")).unwrap();
        for piece in done.chunks(1 << 20) {
            f.write_all(piece).unwrap();
        }
    }
    // Streaming, not closed.
    let mut new = vec![0u8; 7 << 20];
    rng.fill_bytes(&mut new);
    let mut open = std::fs::File::create(dir.join("open.bin")).unwrap();
    for piece in new.chunks(1 << 20) {
        open.write_all(piece).unwrap();
    }
    let want = sent_before + (10 << 20);
    support::wait_until(
        "done.bin and the first chunks of the open file to reach the node",
        Duration::from_secs(120),
        || {
            let sent = stall.bytes_to_server();
            eprintln!("sent {} of {want} bytes", sent);
            sent >= want
        },
    );
    kill_daemon(mp.path());
    drop(open);
    unmount(mp.path(), &stalled);

    let check = |what: &str| -> Option<Vec<u8>> {
        assert!(
            std::fs::read(dir.join("done.bin")).unwrap() == done,
            "done.bin, closed before the kill ({what})"
        );
        assert!(
            std::fs::read(dir.join("old.bin")).unwrap() == old,
            "old.bin ({what})"
        );
        let got = std::fs::read(dir.join("open.bin")).ok();
        if let Some(got) = &got {
            assert!(
                new.starts_with(got),
                "open.bin is not a prefix of what was written ({} bytes, {what})",
                got.len()
            );
        }
        got
    };
    mount(mp.path(), &direct);
    let replayed = check("replayed");
    unmount(mp.path(), &direct);
    let fresh = devnet.config_with_cache(&caches.path().join("b"));
    mount(mp.path(), &fresh);
    assert!(
        check("from the node") == replayed,
        "open.bin from the node differs"
    );
    unmount(mp.path(), &fresh);
}
