//! Two machines, one sNFT (docs/FORMAT.md §9, docs/several-machines.md), through real
//! kernel mounts: two mounts of the devnet's sNFT with separate cache directories, as a
//! laptop and a desktop would have, and a third from an empty cache to see what was
//! published. Where a test needs one machine not to have seen the other's commit when it
//! writes, that machine never follows (`[upload] follow_every_secs = 0`): it takes the
//! other's changes in only when it commits, by merging.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pxfs::format::usage::{AnyUsageDoc, UsageDoc};
use support::{TestDevnet, TestMount, wait_until, xattr};

/// The sorted names in `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Waits up to `secs` for `dir` to list exactly `want`; returns what it listed last.
fn lists_within(dir: &Path, want: &[&str], secs: u64) -> Vec<String> {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let names = names(dir);
        if names == want || Instant::now() >= until {
            return names;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn write_and_fsync(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    std::io::Write::write_all(&mut f, data).unwrap();
    f.sync_all().unwrap();
}

/// fsync of a directory: every change journaled before it is published when it returns.
fn fsync_dir(dir: &Path) {
    std::fs::File::open(dir).unwrap().sync_all().unwrap();
}

/// A config for another machine (its own cache directory `caches/name`).
fn machine(devnet: &TestDevnet, caches: &Path, name: &str) -> PathBuf {
    devnet.config_with_cache(&caches.join(name))
}

/// Like [`machine`], for a machine that never follows the other's commits on its own: it
/// merges them only when it commits.
fn machine_that_never_follows(devnet: &TestDevnet, caches: &Path, name: &str) -> PathBuf {
    devnet.config_with(&caches.join(name), |cfg| {
        let upload = cfg
            .as_table_mut()
            .unwrap()
            .entry("upload")
            .or_insert_with(|| toml::Value::Table(Default::default()));
        upload
            .as_table_mut()
            .unwrap()
            .insert("follow_every_secs".into(), toml::Value::Integer(0));
    })
}

/// The names in `names` that are conflict copies of `<stem><ext>`.
fn conflict_copies(names: &[String], stem: &str, ext: &str) -> Vec<String> {
    names
        .iter()
        .filter(|n| n.starts_with(&format!("{stem}.conflict-")) && n.ends_with(ext))
        .cloned()
        .collect()
}

/// This machine's host name as conflict copies carry it: the short name, letters, digits
/// and `-` (docs/FORMAT.md §9).
fn short_host() -> String {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    name.trim()
        .split('.')
        .next()
        .unwrap()
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() || c == '-' {
            true => c,
            false => '-',
        })
        .take(32)
        .collect()
}

/// The usage document published under the devnet sNFT's BTNS name, and its CID.
fn published(devnet: &TestDevnet) -> (String, UsageDoc) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap();
    let (cid, doc) = rt.block_on(pxfs::btns::resolve(&client, btns)).unwrap();
    let AnyUsageDoc::V2(doc) = doc else {
        panic!("pxfs publishes pxfs/usage/2")
    };
    (cid, doc)
}

/// What the oracle measures for the tree under root node `root` (docs/FORMAT.md §7).
fn measured_usage(devnet: &TestDevnet, root: &str) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let limits = pxfs::oracle::Limits::default();
    rt.block_on(pxfs::oracle::measure_root(&client, root, &limits))
        .unwrap()
        .usage
}

/// `pxfs status --json` of the mount using `config`: the devnet sNFT's entry.
fn token_status(config: &Path) -> serde_json::Value {
    support::status_json(config)["tokens"][0].clone()
}

/// Every file under `dir`, by path relative to it, with its content.
fn all_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(root.join(rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let data = std::fs::read(root.join(&path)).unwrap();
                out.insert(path.to_str().unwrap().to_owned(), data);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, Path::new(""), &mut out);
    out
}

#[test]
fn two_machines_writing_different_files_see_each_others_within_seconds_and_a_third_sees_both() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let a = TestMount::mount(&machine(&devnet, caches.path(), "a"), &[]);
    let b = TestMount::mount(&machine(&devnet, caches.path(), "b"), &[]);
    let (on_a, on_b) = (a.token(devnet.token()), b.token(devnet.token()));
    write_and_fsync(&on_a.join("file-a"), b"written on a");
    write_and_fsync(&on_b.join("file-b"), b"written on b");
    let both = ["file-a", "file-b"];
    assert_eq!(lists_within(&on_a, &both, 10), both, "A shows B's file");
    assert_eq!(lists_within(&on_b, &both, 10), both, "B shows A's file");
    assert_eq!(std::fs::read(on_a.join("file-b")).unwrap(), b"written on b");
    assert_eq!(std::fs::read(on_b.join("file-a")).unwrap(), b"written on a");
    // Both change one file at once: one keeps the name, the other is a conflict copy.
    std::thread::scope(|s| {
        s.spawn(|| write_and_fsync(&on_a.join("file-a"), b"changed on a"));
        s.spawn(|| write_and_fsync(&on_b.join("file-a"), b"changed on b"));
    });
    drop((a, b));
    // A third machine: nothing cached.
    let c = TestMount::mount(&machine(&devnet, caches.path(), "c"), &[]);
    let on_c = c.token(devnet.token());
    let names = names(&on_c);
    assert!(names.contains(&"file-b".to_string()), "{names:?}");
    let mut versions: Vec<Vec<u8>> = names
        .iter()
        .filter(|n| n.starts_with("file-a"))
        .map(|n| std::fs::read(on_c.join(n)).unwrap())
        .collect();
    versions.sort();
    // Either both changes are there (a conflict copy), or one machine saw the other's
    // change before making its own (then its own is the last version): nothing lost.
    assert!(
        versions == [b"changed on a".to_vec(), b"changed on b".to_vec()]
            || versions.len() == 1 && versions[0].starts_with(b"changed on "),
        "{names:?}"
    );
}

#[test]
fn both_machines_changing_one_file_keep_the_first_published_under_its_name_and_the_other_as_a_conflict_copy()
 {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let a = TestMount::mount(&machine(&devnet, caches.path(), "a"), &[]);
    let on_a = a.token(devnet.token());
    std::fs::create_dir(on_a.join("docs")).unwrap();
    write_and_fsync(&on_a.join("docs/report.txt"), b"first version");
    let config_b = machine_that_never_follows(&devnet, caches.path(), "b");
    let b = TestMount::mount(&config_b, &[]);
    let on_b = b.token(devnet.token());
    assert_eq!(
        std::fs::read(on_b.join("docs/report.txt")).unwrap(),
        b"first version"
    );

    // A publishes its change; B, which has not taken it in, changes the same file.
    write_and_fsync(&on_a.join("docs/report.txt"), b"a's version");
    let (a_doc, a_record) = published(&devnet);
    let before = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    write_and_fsync(&on_b.join("docs/report.txt"), b"b's version, longer");
    let after = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();

    // On B: A's version (published first) keeps the name, B's is the conflict copy.
    let on_b_names = names(&on_b.join("docs"));
    let copies = conflict_copies(&on_b_names, "report", ".txt");
    assert_eq!(copies.len(), 1, "one conflict copy: {on_b_names:?}");
    assert_eq!(on_b_names.len(), 2, "{on_b_names:?}");
    let copy = &copies[0];
    let tag = copy
        .strip_prefix(&format!("report.conflict-{}-", short_host()))
        .and_then(|t| t.strip_suffix(".txt"))
        .unwrap_or_else(|| panic!("{copy} is not report.conflict-<host>-<time>.txt"));
    assert!(
        tag.len() == 16 && before.as_str() <= tag && tag <= after.as_str(),
        "{copy}: the time of the merge, yyyymmddThhmmssZ (between {before} and {after})"
    );
    assert_eq!(
        std::fs::read(on_b.join("docs/report.txt")).unwrap(),
        b"a's version"
    );
    assert_eq!(
        std::fs::read(on_b.join("docs").join(copy)).unwrap(),
        b"b's version, longer"
    );

    // History stays one chain: B's merge commit is on top of A's document.
    let (b_doc, b_record) = published(&devnet);
    assert_ne!(b_doc, a_doc, "B published its merge");
    assert_eq!(b_record.prev.as_deref(), Some(a_doc.as_str()));
    assert_eq!(b_record.seq, a_record.seq + 1);
    assert!(
        b_record.merged.is_some(),
        "a merge names B's previous document"
    );
    // The merged tree's usage is what B's quota decisions use, what B's commit claims,
    // what `pxfs status` shows and what the oracle measures.
    let usage: u64 = xattr(&on_b, "user.pxfs.usage").parse().unwrap();
    assert_eq!(usage, b_record.usage);
    assert_eq!(measured_usage(&devnet, &b_record.root), usage);
    // `pxfs status` (rewritten about every second) counts the conflict copy.
    wait_until(
        "B's status to show the merge",
        Duration::from_secs(10),
        || {
            let s = token_status(&config_b);
            s["mount"]["conflicts"] == 1 && s["mount"]["live_usage"] == usage
        },
    );

    // A takes B's merge in on its own (live follow); a third machine shows the same.
    wait_until(
        "A to show the conflict copy",
        Duration::from_secs(15),
        || names(&on_a.join("docs")) == on_b_names,
    );
    assert_eq!(
        std::fs::read(on_a.join("docs").join(copy)).unwrap(),
        b"b's version, longer"
    );
    assert_eq!(
        std::fs::read(on_a.join("docs/report.txt")).unwrap(),
        b"a's version"
    );
    drop((a, b));
    let c = TestMount::mount(&machine(&devnet, caches.path(), "c"), &[]);
    let on_c = c.token(devnet.token());
    assert_eq!(names(&on_c), ["docs"]);
    assert_eq!(names(&on_c.join("docs")), on_b_names);
    assert_eq!(
        std::fs::read(on_c.join("docs/report.txt")).unwrap(),
        b"a's version"
    );
    assert_eq!(
        std::fs::read(on_c.join("docs").join(copy)).unwrap(),
        b"b's version, longer"
    );
}

#[test]
fn a_file_deleted_or_a_directory_renamed_on_one_machine_keeps_what_the_other_wrote_there() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let a = TestMount::mount(
        &machine_that_never_follows(&devnet, caches.path(), "a"),
        &[],
    );
    let on_a = a.token(devnet.token());
    for dir in ["project", "archive", "old", "src"] {
        std::fs::create_dir(on_a.join(dir)).unwrap();
    }
    write_and_fsync(&on_a.join("notes.txt"), b"notes v1");
    write_and_fsync(&on_a.join("todo.txt"), b"todo v1");
    write_and_fsync(&on_a.join("project/plan.txt"), b"plan");
    write_and_fsync(&on_a.join("archive/2025.txt"), b"2025");
    write_and_fsync(&on_a.join("src/main.txt"), b"main");
    let b = TestMount::mount(
        &machine_that_never_follows(&devnet, caches.path(), "b"),
        &[],
    );
    let on_b = b.token(devnet.token());
    let read = |p: PathBuf| std::fs::read(p).unwrap();

    // B publishes first: it changes notes.txt and writes into project/ and archive/. A,
    // which has not seen that, deletes notes.txt, renames project/ within its parent and
    // moves archive/ into old/; its commit merges B's (docs/FORMAT.md §9): the deleted file
    // comes back with B's change, and the directories A moved get B's new files where A
    // moved them. (A commit of A's between its steps merges as much, the same way.)
    write_and_fsync(&on_b.join("notes.txt"), b"notes v2, changed on b");
    write_and_fsync(&on_b.join("project/new-by-b.txt"), b"into project on b");
    write_and_fsync(&on_b.join("archive/2026.txt"), b"into archive on b");
    std::fs::remove_file(on_a.join("notes.txt")).unwrap();
    std::fs::rename(on_a.join("project"), on_a.join("project-2026")).unwrap();
    std::fs::rename(on_a.join("archive"), on_a.join("old/archive")).unwrap();
    fsync_dir(&on_a);
    assert_eq!(read(on_a.join("notes.txt")), b"notes v2, changed on b");
    assert_eq!(
        names(&on_a.join("project-2026")),
        ["new-by-b.txt", "plan.txt"]
    );
    assert_eq!(names(&on_a.join("old/archive")), ["2025.txt", "2026.txt"]);

    // Now A publishes first: it deletes todo.txt and renames src/ within its parent. B,
    // which has not seen that, writes into src/ and changes todo.txt; its commit merges
    // A's: the file A deleted stays with B's change, and B's new file moves to src-2026/
    // with the rest. (A commit of B's between its two steps gives the same: todo.txt is
    // then written anew after A's delete was taken in.)
    std::fs::remove_file(on_a.join("todo.txt")).unwrap();
    std::fs::rename(on_a.join("src"), on_a.join("src-2026")).unwrap();
    fsync_dir(&on_a);
    std::fs::write(on_b.join("src/new.txt"), b"into src on b").unwrap();
    std::fs::write(on_b.join("todo.txt"), b"todo v2, changed on b").unwrap();
    fsync_dir(&on_b);

    let check = |root: &Path| {
        assert_eq!(
            names(root),
            ["notes.txt", "old", "project-2026", "src-2026", "todo.txt"]
        );
        assert_eq!(read(root.join("notes.txt")), b"notes v2, changed on b");
        assert_eq!(read(root.join("todo.txt")), b"todo v2, changed on b");
        assert_eq!(
            names(&root.join("project-2026")),
            ["new-by-b.txt", "plan.txt"]
        );
        assert_eq!(
            read(root.join("project-2026/new-by-b.txt")),
            b"into project on b"
        );
        assert_eq!(names(&root.join("old")), ["archive"]);
        assert_eq!(names(&root.join("old/archive")), ["2025.txt", "2026.txt"]);
        assert_eq!(
            read(root.join("old/archive/2026.txt")),
            b"into archive on b"
        );
        assert_eq!(names(&root.join("src-2026")), ["main.txt", "new.txt"]);
        assert_eq!(read(root.join("src-2026/new.txt")), b"into src on b");
    };
    check(&on_b);
    drop((a, b));
    let c = TestMount::mount(&machine(&devnet, caches.path(), "c"), &[]);
    check(&c.token(devnet.token()));
}

/// One writer's step in [`two_writer_run`].
#[derive(Debug)]
enum Step {
    Write(String),
    Delete(String),
    Rename(String, String),
}

/// A version left where a writer put it, which must be found afterwards: at `path`, or in a
/// conflict copy of it beside it.
fn found_at_or_beside(files: &BTreeMap<String, Vec<u8>>, path: &str, data: &[u8]) -> bool {
    let (dir, name) = path.rsplit_once('/').unwrap();
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let copy_prefix = format!("{dir}/{stem}.conflict-");
    files
        .iter()
        .any(|(p, d)| d == data && (p == path || (p.starts_with(&copy_prefix) && p.ends_with(ext))))
}

/// Seeded random steps (creates, overwrites, renames, deletes, each fsynced; one file in
/// four large enough to be stored in chunks) taken in turn by two machines that never
/// follow: each sees the other's changes only when its own
/// commit merges them, so many steps act on a view the other has changed since. The model
/// tracks every version: one is superseded only by a step on the machine where that step
/// read it (an overwrite, delete or rename over it there); every other version must be
/// found at the last path a step put it, or in a conflict copy beside it, on a third
/// machine afterwards.
fn two_writer_run(seed: u64, steps: usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let a = TestMount::mount(
        &machine_that_never_follows(&devnet, caches.path(), "a"),
        &[],
    );
    let a_root = a.token(devnet.token());
    for dir in ["x", "y"] {
        std::fs::create_dir(a_root.join(dir)).unwrap();
    }
    fsync_dir(&a_root);
    let b = TestMount::mount(
        &machine_that_never_follows(&devnet, caches.path(), "b"),
        &[],
    );
    let roots = [a_root, b.token(devnet.token())];
    let random_path = |rng: &mut rand::rngs::StdRng| {
        let dir = ["x", "y"][rng.random_range(0..2)];
        let name = ["f0", "f1", "f2.txt", "f3.txt"][rng.random_range(0..4)];
        format!("{dir}/{name}")
    };
    // Live versions (content → the path a step last put it at).
    let mut expected: BTreeMap<Vec<u8>, String> = BTreeMap::new();
    let mut log = Vec::new();
    for i in 0..steps {
        let w = rng.random_range(0..2);
        let root = &roots[w];
        let path = random_path(&mut rng);
        // What this machine shows there now: absent, or its bytes. Any other failure is a
        // file this machine cannot read (one a merge took in without its chunk table read
        // as EIO here, while a fresh machine read it fine).
        let here = match std::fs::read(root.join(&path)) {
            Ok(data) => Some(data),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!(
                "seed {seed} step {i}: {} cannot read {path}: {e}\nsteps: {log:#?}",
                ["a", "b"][w]
            ),
        };
        let step = match rng.random_range(0..5) {
            0 if here.is_some() => Step::Delete(path),
            1 | 2 if here.is_some() => Step::Rename(path, random_path(&mut rng)),
            _ => Step::Write(path),
        };
        match &step {
            Step::Write(path) => {
                // One write in four is stored in chunks (over 128 KiB): merges take those
                // in with their chunk tables.
                let pad = match rng.random_range(0..4) {
                    0 => "+".repeat(rng.random_range(130_000..400_000)),
                    _ => "+".repeat(rng.random_range(0..3000)),
                };
                let data = format!("seed {seed} step {i} on {}\n{pad}", ["a", "b"][w]);
                write_and_fsync(&root.join(path), data.as_bytes());
                if let Some(old) = here {
                    expected.remove(&old);
                }
                expected.insert(data.into_bytes(), path.clone());
            }
            Step::Delete(path) => {
                std::fs::remove_file(root.join(path)).unwrap();
                fsync_dir(root);
                expected.remove(&here.unwrap());
            }
            Step::Rename(from, to) => {
                let over = std::fs::read(root.join(to)).ok();
                std::fs::rename(root.join(from), root.join(to)).unwrap();
                fsync_dir(root);
                let moved = here.unwrap();
                if let Some(over) = over.filter(|o| *o != moved) {
                    expected.remove(&over);
                }
                if let Some(p) = expected.get_mut(&moved) {
                    *p = to.clone();
                }
            }
        }
        log.push(format!("{i}: {} {step:?}", ["a", "b"][w]));
    }
    drop((a, b));
    let c = TestMount::mount(&machine(&devnet, caches.path(), "c"), &[]);
    let files = all_files(&c.token(devnet.token()));
    let lost: Vec<String> = expected
        .iter()
        .filter(|(data, path)| !found_at_or_beside(&files, path, data))
        .map(|(data, path)| {
            let first_line = String::from_utf8_lossy(data)
                .lines()
                .next()
                .unwrap_or("")
                .to_owned();
            format!("{path}: {first_line:?}")
        })
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: {} versions lost: {lost:#?}\nthe third machine shows {:#?}\nsteps: {log:#?}",
        lost.len(),
        files.keys().collect::<Vec<_>>()
    );
    let copies = files.keys().filter(|p| p.contains(".conflict-")).count();
    assert!(
        copies > 0,
        "seed {seed}: the run made no conflict copy (it tests little)"
    );
    eprintln!(
        "seed {seed}: {steps} steps, {} versions kept, {copies} conflict copies",
        expected.len()
    );
}

#[test]
fn a_seeded_random_two_writer_run_loses_no_fsynced_version() {
    let seed = std::env::var("PXFS_TWO_WRITER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1818);
    two_writer_run(seed, 200);
}

/// Machine B ("b" under `caches`), never following, whose daemon pauses between merging
/// and publishing (a test hook), so that a kill lands in the middle of its merge; it
/// starts from A's first commit of `shared.txt`.
fn machine_pausing_in_merges(devnet: &TestDevnet, caches: &Path) -> TestMount {
    let config = machine_that_never_follows(devnet, caches, "b");
    let b = TestMount::mount_with_env(&config, &[], &[("PXFS_TEST_MERGE_PAUSE_MS", "8000")]);
    assert_eq!(names(&b.token(devnet.token())), ["shared.txt"]);
    b
}

/// Waits until B's daemon pauses in a merge, then sends it SIGKILL; returns its pid.
fn kill_in_the_middle_of_a_merge(caches: &Path, b: &TestMount) -> u32 {
    let log = caches.join("b/mount.log");
    wait_until(
        "B to be in the middle of a merge",
        Duration::from_secs(30),
        || std::fs::read_to_string(&log).is_ok_and(|l| l.contains("pausing before publishing")),
    );
    let pid = support::daemon_pid(b.path());
    // SAFETY: kill(2) of the daemon's pid, just looked up.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
    pid
}

#[test]
fn a_mount_killed_in_the_middle_of_a_merge_replays_its_journal_and_merges_again() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let a = TestMount::mount(&machine(&devnet, caches.path(), "a"), &[]);
    let on_a = a.token(devnet.token());
    write_and_fsync(&on_a.join("shared.txt"), b"shared v1");
    let b = machine_pausing_in_merges(&devnet, caches.path());
    let on_b = b.token(devnet.token());
    write_and_fsync(&on_a.join("file-a"), b"from a");
    write_and_fsync(&on_a.join("shared.txt"), b"shared v2 by a");
    let (a_doc, a_record) = published(&devnet);

    // B's changes, closed (journaled) but not yet published: its fsync is in the merge.
    // (shared.txt first: a commit between the two merges as much, and file-b is a name
    // A's commit does not have.)
    std::fs::write(on_b.join("shared.txt"), b"shared v2 by b").unwrap();
    std::fs::write(on_b.join("file-b"), b"from b").unwrap();
    let fsync_b = {
        let on_b = on_b.clone();
        // fsync of the file, not of the directory: the merge tells the kernel to forget
        // names in the directory, which needs the directory's lock, and the kernel holds
        // that lock through an fsync of the directory; a daemon killed then cannot exit
        // until the connection is aborted by hand.
        std::thread::spawn(move || {
            std::fs::File::open(on_b.join("file-b")).and_then(|f| f.sync_all())
        })
    };
    let pid = kill_in_the_middle_of_a_merge(caches.path(), &b);
    wait_until("the killed daemon to exit", Duration::from_secs(30), || {
        !support::pid_alive(pid)
    });
    assert!(
        fsync_b.join().unwrap().is_err(),
        "B's fsync returned success though B never published"
    );
    assert_eq!(published(&devnet).0, a_doc, "B died before publishing");

    // The same cache: the journal replays B's changes over its last commit, and the next
    // commit merges A's again.
    let b = b.remount(&[]);
    let on_b = b.token(devnet.token());
    assert_eq!(
        std::fs::read(on_b.join("file-b")).unwrap(),
        b"from b",
        "replayed"
    );
    fsync_dir(&on_b);
    let (_, record) = published(&devnet);
    assert_eq!(
        record.prev.as_deref(),
        Some(a_doc.as_str()),
        "merged on A's"
    );
    assert_eq!(record.seq, a_record.seq + 1);
    let want = |root: &Path| {
        let all = names(root);
        let copies = conflict_copies(&all, "shared", ".txt");
        assert_eq!(copies.len(), 1, "{all:?}");
        assert_eq!(all, ["file-a", "file-b", copies[0].as_str(), "shared.txt"]);
        let read = |n: &str| std::fs::read(root.join(n)).unwrap();
        assert_eq!(read("file-a"), b"from a");
        assert_eq!(read("file-b"), b"from b");
        assert_eq!(read("shared.txt"), b"shared v2 by a");
        assert_eq!(read(&copies[0]), b"shared v2 by b");
    };
    want(&on_b);
    wait_until("A to take in B's merge", Duration::from_secs(15), || {
        names(&on_a).len() == 4
    });
    want(&on_a);
    drop((a, b));
    let c = TestMount::mount(&machine(&devnet, caches.path(), "c"), &[]);
    want(&c.token(devnet.token()));
}

/// Threads of process `pid` that have not exited (a process whose main thread is a zombie
/// may still have others, stuck in the kernel).
fn live_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, r)| !matches!(r.trim_start().chars().next(), Some('Z' | 'X')))
            })
        })
        .count()
}

#[test]
fn a_daemon_killed_while_the_kernel_holds_a_directory_it_invalidates_is_ended_by_unmount_abort() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let a = TestMount::mount(&machine(&devnet, caches.path(), "a"), &[]);
    let on_a = a.token(devnet.token());
    write_and_fsync(&on_a.join("shared.txt"), b"shared v1");
    let mut b = machine_pausing_in_merges(&devnet, caches.path());
    let on_b = b.token(devnet.token());
    write_and_fsync(&on_a.join("file-a"), b"from a");
    let (a_doc, _) = published(&devnet);
    std::fs::write(on_b.join("file-b"), b"from b").unwrap();
    // An fsync of the directory: the kernel holds the directory's lock while it waits for
    // B's commit, and B's merge asks the kernel to forget file-a there, which needs that
    // lock. Killed then, B's daemon cannot exit until its connection is aborted.
    let fsync_b = {
        let on_b = on_b.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::fs::File::open(&on_b).and_then(|d| d.sync_all()));
        });
        rx
    };
    let pid = kill_in_the_middle_of_a_merge(caches.path(), &b);
    std::thread::sleep(Duration::from_secs(2));
    eprintln!(
        "2 s after SIGKILL the daemon has {} thread(s) left",
        live_threads(pid)
    );
    b.abort();
    wait_until(
        "every thread of the killed daemon to exit",
        Duration::from_secs(30),
        || live_threads(pid) == 0,
    );
    let fsynced = fsync_b
        .recv_timeout(Duration::from_secs(30))
        .expect("B's fsync still waits after the abort");
    assert!(
        fsynced.is_err(),
        "B's fsync returned success though B never published"
    );
    assert_eq!(published(&devnet).0, a_doc, "B died before publishing");
    // Nothing closed is lost: the journal replays file-b and the next commit merges.
    let b = b.remount(&[]);
    let on_b = b.token(devnet.token());
    fsync_dir(&on_b);
    assert_eq!(names(&on_b), ["file-a", "file-b", "shared.txt"]);
    assert_eq!(std::fs::read(on_b.join("file-b")).unwrap(), b"from b");
    wait_until("A to take in B's file", Duration::from_secs(15), || {
        names(&on_a).len() == 3
    });
}

/// A config for machine `name` whose commits (under load) and follows run every `secs`
/// seconds (`None`: the defaults).
fn machine_every(
    devnet: &TestDevnet,
    caches: &Path,
    name: &str,
    secs: Option<i64>,
    settle_ms: Option<i64>,
) -> PathBuf {
    devnet.config_with(&caches.join(name), |cfg| {
        let upload = cfg
            .as_table_mut()
            .unwrap()
            .entry("upload")
            .or_insert_with(|| toml::Value::Table(Default::default()));
        let upload = upload.as_table_mut().unwrap();
        if let Some(secs) = secs {
            upload.insert("commit_every_secs".into(), toml::Value::Integer(secs));
            upload.insert("follow_every_secs".into(), toml::Value::Integer(secs));
        }
        if let Some(ms) = settle_ms {
            upload.insert("settle_ms".into(), toml::Value::Integer(ms));
        }
    })
}

fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// `machines` mounts of one sNFT write at the same time (all writer threads start
/// together), each `PXFS_CONCURRENT_FILES` small files (200 by default) from
/// `PXFS_CONCURRENT_THREADS` threads (16), fsyncing each one; a fresh mount afterwards must
/// show every fsynced file with its content (docs/FORMAT.md §9: a fsync returns once its
/// commit holds). With `settle_ms`, each machine's settle window: every fsync must return
/// well within it (the devnet's node checks publications: a commit holds once taken).
fn machines_writing_at_once_lose_no_fsynced_file(
    machines: usize,
    every: Option<i64>,
    settle_ms: Option<i64>,
) {
    let files = env_count("PXFS_CONCURRENT_FILES", 200);
    let threads = env_count("PXFS_CONCURRENT_THREADS", 16).clamp(1, files.max(1));
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..machines).map(|m| format!("m{m}")).collect();
    let mounts: Vec<TestMount> = names
        .iter()
        .map(|n| {
            let config = machine_every(&devnet, caches.path(), n, every, settle_ms);
            TestMount::mount(&config, &[])
        })
        .collect();
    let roots: Vec<PathBuf> = mounts.iter().map(|m| m.token(devnet.token())).collect();
    let start = std::sync::Barrier::new(machines * threads);
    let began = Instant::now();
    let acked: Vec<(String, Vec<u8>)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (m, root) in roots.iter().enumerate() {
            for t in 0..threads {
                let start = &start;
                handles.push(s.spawn(move || {
                    start.wait();
                    let mut acked = Vec::new();
                    for i in (t..files).step_by(threads) {
                        let name = format!("m{m}-{i:05}.txt");
                        let data = format!("machine {m} file {i}\n").into_bytes();
                        let asked = Instant::now();
                        write_and_fsync(&root.join(&name), &data);
                        if let Some(ms) = settle_ms {
                            let took = asked.elapsed();
                            assert!(
                                took < Duration::from_millis(ms as u64 / 60),
                                "{name}: fsync took {took:?}, waiting out a settle window of {ms} ms"
                            );
                        }
                        acked.push((name, data));
                    }
                    acked
                }));
            }
        }
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    eprintln!(
        "{machines} machines wrote and fsynced {} files in {:.1} s",
        acked.len(),
        began.elapsed().as_secs_f64()
    );
    drop(mounts);
    let fresh = TestMount::mount(&machine(&devnet, caches.path(), "fresh"), &[]);
    let shown = all_files(&fresh.token(devnet.token()));
    let lost: Vec<&String> = acked
        .iter()
        .filter(|(name, data)| shown.get(name) != Some(data))
        .map(|(name, _)| name)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} fsynced files are not on a fresh mount (it shows {} files): {lost:?}",
        lost.len(),
        acked.len(),
        shown.len()
    );
    let copies = shown.keys().filter(|p| p.contains(".conflict-")).count();
    assert_eq!(copies, 0, "no file was written twice: no conflict copy");
}

#[test]
fn two_machines_fsyncing_at_the_same_time_lose_no_file() {
    machines_writing_at_once_lose_no_fsynced_file(2, None, None);
}

#[test]
fn two_machines_fsyncing_at_the_same_time_with_1_second_intervals_lose_no_file() {
    machines_writing_at_once_lose_no_fsynced_file(2, Some(1), None);
}

#[test]
fn three_machines_fsyncing_at_the_same_time_lose_no_file() {
    machines_writing_at_once_lose_no_fsynced_file(3, None, None);
}

/// On a node that checks publications (the devnet's: pxfs's own, docs/FORMAT.md §9.3) a
/// commit holds once the node takes it: with a settle window of an hour, three machines
/// fsyncing at the same time each get every fsync back within a minute (none waits the
/// window out), their publications refused and merged again whenever another got in first,
/// and none loses a file.
#[test]
fn three_machines_fsyncing_at_once_on_a_checking_node_wait_no_settle_window_and_lose_no_file() {
    machines_writing_at_once_lose_no_fsynced_file(3, None, Some(3_600_000));
}

/// `pxfs ARGS --config CONFIG` with the dev wallet's key, run as on another machine: in a
/// mount namespace of its own where this host's pxfs mounts are detached (another machine
/// does not see them): (success, stdout + stderr).
fn pxfs_elsewhere(config: &Path, mounts: &[&Path], args: &[&str]) -> (bool, String) {
    let detach: String = mounts
        .iter()
        .map(|m| format!("umount -l '{}' && ", m.display()))
        .collect();
    let out = std::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!("{detach}exec \"$0\" \"$@\""))
        .arg(support::PXFS)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PXFS_PRIVATE_KEY", support::DEV_WALLET_KEY)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("pxfs {args:?} (elsewhere): {text}");
    (out.status.success(), text)
}

/// What one of machine B's writers did: files whose fsync returned 0, and files closed
/// whose fsync failed (a mount that stopped committing: they stay in its cache).
#[derive(Default)]
struct Written {
    acked: Vec<(String, Vec<u8>)>,
    closed: Vec<(String, Vec<u8>)>,
    errors: Vec<std::io::Error>,
}

/// Writer `t` of `phase` on `root`: a new file and a change to one of `old/before-NN.txt`,
/// each fsynced, until `stop` or an fsync fails.
fn write_until(
    root: &Path,
    phase: usize,
    t: usize,
    stop: &std::sync::atomic::AtomicBool,
) -> Written {
    let mut w = Written::default();
    let mut i = 0;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let data = format!("written on b during conversion {phase}, writer {t}, {i}\n");
        let new = format!("b-{phase}-{t}-{i:05}.txt");
        let old = format!("old/before-{:02}.txt", (i * 2 + t) % 20);
        for name in [new, old] {
            // A mount that turned read-only (a downgrade it refuses) fails the create.
            let mut f = match std::fs::File::create(root.join(&name)) {
                Ok(f) => f,
                Err(e) => {
                    w.errors.push(e);
                    return w;
                }
            };
            std::io::Write::write_all(&mut f, data.as_bytes()).unwrap();
            match f.sync_all() {
                Ok(()) => w.acked.push((name, data.clone().into_bytes())),
                Err(e) => {
                    drop(f);
                    w.closed.push((name, data.into_bytes()));
                    w.errors.push(e);
                    return w;
                }
            }
        }
        i += 1;
        std::thread::sleep(Duration::from_millis(1500));
    }
    w
}

/// Machine B writes and fsyncs file after file the whole time machine A (the sNFT not
/// mounted there) runs `pxfs encrypt`, and again while A runs `pxfs decrypt`. A command
/// that another machine's commit beats tries again on its own, and if it gives up says that
/// nothing was published and to run it again (which the test does, up to 5 times). Once A's conversion takes, B commits nothing more (an fsync fails
/// with EIO at once, not after a grace period) until it is mounted again, which replays
/// what it held onto the converted tree. Afterwards a fresh mount shows every file B
/// fsynced, and every file it closed, with its bytes, and the encryption the owner last
/// chose.
#[test]
fn encrypt_and_decrypt_while_another_machine_writes_lose_no_fsynced_file() {
    let devnet = TestDevnet::start(&["--plaintext"]);
    let token = devnet.token().to_string();
    let caches = tempfile::tempdir().unwrap();
    let config_b = machine(&devnet, caches.path(), "b");
    let mut b = TestMount::mount(&config_b, &[]);
    let on_b = b.token(devnet.token());
    std::fs::create_dir(on_b.join("old")).unwrap();
    let mut last: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for i in 0..20 {
        let name = format!("old/before-{i:02}.txt");
        let data = format!("written on b before the conversions, {i}\n").into_bytes();
        write_and_fsync(&on_b.join(&name), &data);
        last.insert(name, data);
    }
    let config_a = machine(&devnet, caches.path(), "a");
    let mut encrypted = false;
    let sealed = "pxfs-aes256gcm/2 key ";
    for (phase, args) in [&["encrypt", &token][..], &["decrypt", "--yes", &token][..]]
        .into_iter()
        .enumerate()
    {
        let on_b = b.token(devnet.token());
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (written, ok) = std::thread::scope(|s| {
            let writer = {
                let (on_b, stop) = (&on_b, &stop);
                s.spawn(move || write_until(on_b, phase, 0, stop))
            };
            std::thread::sleep(Duration::from_secs(2));
            // Run again, as its message says, until it takes (B keeps writing).
            let mut ok = false;
            for _ in 0..5 {
                let (done, out) = pxfs_elsewhere(&config_a, &[b.path()], args);
                let gave_up = out.contains("nothing was published") && out.contains("run");
                assert!(done || gave_up, "pxfs {args:?}: {out}");
                if done {
                    ok = true;
                    break;
                }
            }
            std::thread::sleep(Duration::from_secs(4));
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            (vec![writer.join().unwrap()], ok)
        });
        assert!(ok, "pxfs {args:?} never took in 5 runs while B wrote");
        encrypted = phase == 0;
        for w in &written {
            for e in &w.errors {
                let code = e.raw_os_error();
                assert!(
                    code == Some(libc::EIO) || phase == 1 && code == Some(libc::EROFS),
                    "write on B: {e}"
                );
            }
        }
        eprintln!(
            "phase {phase}: pxfs {args:?} took; B fsynced {} files, {} fsyncs failed",
            written.iter().map(|w| w.acked.len()).sum::<usize>(),
            written.iter().map(|w| w.errors.len()).sum::<usize>(),
        );
        for w in written {
            for (name, data) in w.acked.into_iter().chain(w.closed) {
                last.insert(name, data);
            }
        }
        // Mounted again, B is on the converted tree, with what it held replayed onto it.
        // (An unmount after a conversion says its final commit failed: the journal keeps it.)
        let out = b.unmount_outcome();
        eprintln!("unmount B: {}", String::from_utf8_lossy(&out.stderr));
        if phase == 1 {
            // B saw the tree encrypted: the owner confirms the plaintext tree there
            // (src/fs/strongest.rs), or B stays read-only.
            let (ok, out) = pxfs_elsewhere(&config_b, &[], &["decrypt", "--yes", &token]);
            assert!(ok && out.contains("accepts"), "{out}");
        }
        b = TestMount::mount(&config_b, &[]);
        let shows = xattr(&b.token(devnet.token()), "user.pxfs.encryption");
        assert_eq!(
            shows.starts_with(sealed),
            encrypted,
            "B after phase {phase}: {shows}"
        );
    }
    let on_b = b.token(devnet.token());
    fsync_dir(&on_b);
    drop(b);
    let fresh = TestMount::mount(&machine(&devnet, caches.path(), "fresh"), &[]);
    let on_fresh = fresh.token(devnet.token());
    let shown = all_files(&on_fresh);
    let lost: Vec<&String> = last
        .iter()
        .filter(|(name, data)| shown.get(*name) != Some(data))
        .map(|(name, _)| name)
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} files B wrote are not on a fresh mount with their last bytes: {lost:?}",
        lost.len(),
        last.len()
    );
    let copies: Vec<&String> = shown.keys().filter(|p| p.contains(".conflict-")).collect();
    assert!(
        copies.is_empty(),
        "no file changed on two machines: {copies:?}"
    );
    let shows = xattr(&on_fresh, "user.pxfs.encryption");
    assert_eq!(
        shows.starts_with(sealed),
        encrypted,
        "the owner's last choice: {shows}"
    );
}

/// What whoever holds the sNFT's BTNS key (a hosted node does) can do without the owner:
/// publish, as the next document after the current one, an empty tree sealed with `crypto`
/// and declaring `encryption`.
fn publish_empty_tree_as_btns_holder(
    devnet: &TestDevnet,
    crypto: &pxfs::format::TreeCrypto,
    encryption: pxfs::format::usage::Encryption,
) {
    let (cid, doc) = published(devnet);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (empty, usage) = rt
        .block_on(pxfs::devnet::add_empty_tree(&client, crypto, now))
        .unwrap();
    let mut next = doc.clone();
    next.seq = doc.seq + 1;
    next.prev = Some(cid);
    next.merged = None;
    next.root = empty;
    next.usage = usage;
    // An encrypted tree's document names no file counts (docs/FORMAT.md §8).
    next.files = encryption.is_none().then_some(0);
    next.last_upload = None;
    next.updated_at = now;
    next.encryption = encryption;
    let key = rt
        .block_on(pxfs::btns::key_name_for(&client, btns))
        .unwrap()
        .unwrap();
    let replaces = rt.block_on(client.name_resolve(btns)).ok();
    rt.block_on(pxfs::btns::publish_v2(
        &client,
        &key,
        &next,
        replaces.as_deref(),
    ))
    .unwrap();
}

/// The BTNS key holder publishes a tree sealed under a data key of its own choosing (wrapped
/// for a passphrase it knows, not for the owner's wallet or this machine's passphrase).
/// This machine cannot open it, so it could only ever write under a key it did not choose:
/// the sNFT turns read-only here (EROFS, what it read before still reads), still mounts
/// (read-only, at the tree it knows) after a remount, and publishes nothing more.
#[test]
fn a_document_sealed_under_a_key_this_machine_cannot_open_leaves_it_read_only() {
    let devnet = TestDevnet::start(&[]);
    let caches = tempfile::tempdir().unwrap();
    let config = machine(&devnet, caches.path(), "a");
    let mut a = TestMount::mount(&config, &[]);
    let root = a.token(devnet.token());
    write_and_fsync(&root.join("before.txt"), b"sealed before");

    let token_ref = pxfs::keys::TokenRef {
        chain_id: 31337,
        contract: Default::default(),
        token_id: devnet.token(),
    };
    let (data_key, info) =
        pxfs::keys::new_encryption(&token_ref, None, Some(b"the btns holder's own")).unwrap();
    publish_empty_tree_as_btns_holder(
        &devnet,
        &pxfs::format::TreeCrypto::sealed(&data_key),
        pxfs::format::usage::Encryption::Sealed(info),
    );
    let (theirs, _) = published(&devnet);

    wait_until(
        "the sNFT to turn read-only",
        Duration::from_secs(20),
        || token_status(&config)["mount"]["read_only"] == true,
    );
    let refused = |root: &Path| {
        let e = std::fs::write(root.join("after.txt"), b"under whose key?").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    };
    refused(&root);
    assert_eq!(
        std::fs::read(root.join("before.txt")).unwrap(),
        b"sealed before"
    );
    a.unmount();
    let a = TestMount::mount(&config, &[]);
    let root = a.token(devnet.token());
    assert_eq!(
        token_status(&config)["mount"]["read_only"],
        true,
        "after a remount"
    );
    refused(&root);
    assert_eq!(
        std::fs::read(root.join("before.txt")).unwrap(),
        b"sealed before",
        "the remount serves the tree this machine knows"
    );
    assert_eq!(
        published(&devnet).0,
        theirs,
        "this machine published nothing more"
    );
}

/// Whoever holds an sNFT's BTNS key (a hosted node does) republishes the record with a
/// document declaring no encryption over a plaintext tree. A machine that has seen the tree
/// encrypted does not follow: the sNFT turns read-only there (EROFS; what it read before
/// still reads), stays so when mounted again, and nothing written there reaches the node in
/// clear; once the owner confirms with `pxfs decrypt --yes` on that machine, writes work.
#[test]
fn a_document_declaring_no_encryption_leaves_a_machine_that_saw_the_tree_encrypted_read_only() {
    const MARK: &str = "pangolin-marker-8161";
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token().to_string();
    let caches = tempfile::tempdir().unwrap();
    let config = machine(&devnet, caches.path(), "a");
    let mut a = TestMount::mount(&config, &[]);
    let root = a.token(devnet.token());
    assert!(xattr(&root, "user.pxfs.encryption").starts_with("pxfs-aes256gcm/2 key "));
    write_and_fsync(&root.join("before.txt"), b"sealed before");

    publish_empty_tree_as_btns_holder(
        &devnet,
        &pxfs::format::TreeCrypto::Plain,
        pxfs::format::usage::Encryption::None,
    );

    wait_until(
        "the sNFT to turn read-only",
        Duration::from_secs(20),
        || token_status(&config)["mount"]["read_only"] == true,
    );
    let refused = |root: &Path| {
        let e = std::fs::write(root.join("after.txt"), MARK).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    };
    refused(&root);
    assert_eq!(
        std::fs::read(root.join("before.txt")).unwrap(),
        b"sealed before"
    );
    let out = a.unmount_outcome();
    eprintln!("unmount: {}", String::from_utf8_lossy(&out.stderr));
    let mut a = TestMount::mount(&config, &[]);
    let root = a.token(devnet.token());
    assert_eq!(
        token_status(&config)["mount"]["read_only"],
        true,
        "after a remount"
    );
    refused(&root);
    let repo = devnet.info["node_repo"].as_str().unwrap();
    let found = support::sh(&format!("grep -rl '{MARK}' '{repo}' || true"));
    assert!(
        found.trim().is_empty(),
        "the marker is on the node: {found}"
    );

    a.unmount();
    let (ok, out) = pxfs_elsewhere(&config, &[], &["decrypt", "--yes", &token]);
    assert!(ok && out.contains("accepts"), "{out}");
    let a = TestMount::mount(&config, &[]);
    let root = a.token(devnet.token());
    assert_eq!(token_status(&config)["mount"]["read_only"], false);
    write_and_fsync(&root.join("after.txt"), b"the owner chose plaintext");
    assert_eq!(xattr(&root, "user.pxfs.encryption"), "none");
}
