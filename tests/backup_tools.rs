//! Backup software and version control inside a real kernel mount of a devnet sNFT:
//! restic (init, backup, check --read-data, restore, incremental backup, forget --prune)
//! and git (init, commits, gc --aggressive, fsck, clone), each checked again after a
//! remount with an empty cache, so everything is read back from the node.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{TestDevnet, TestMount, assert_same_tree, generate_tree, sh};

const RESTIC_PASSWORD: &str = "pxfs-test-repository";

/// Runs a command in `dir`; panics with its output if it fails. Returns stdout.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "`{program} {}` in {} failed ({}):\n{}{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// restic against a repository inside the mount; the password comes from the
/// environment, never argv; restic's own cache is off so every read hits the mount.
struct Restic {
    repo: PathBuf,
}

impl Restic {
    fn run(&self, cwd: &Path, args: &[&str]) -> String {
        let mut all = vec!["--no-cache", "--quiet", "-r"];
        let repo = self.repo.to_str().unwrap();
        all.push(repo);
        all.extend_from_slice(args);
        run(cwd, "restic", &all, &[("RESTIC_PASSWORD", RESTIC_PASSWORD)])
    }

    fn snapshots(&self) -> usize {
        let json = self.run(Path::new("/"), &["snapshots", "--json"]);
        serde_json::from_str::<serde_json::Value>(&json)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    }
}

/// Modify, add and delete some files of a generated tree (an incremental change).
fn change_some_files(tree: &Path) {
    use std::os::unix::fs::FileExt;
    for i in [0usize, 13, 256, 1999] {
        let p = tree.join(format!("d{}/sub{}/file-{i:05}.dat", (i % 20) % 5, i % 20));
        let f = std::fs::OpenOptions::new().write(true).open(&p);
        if let Ok(f) = f {
            f.write_all_at(b"CHANGED BY THE SECOND BACKUP", 0).unwrap();
            drop(f);
            support::set_mtime(&p, 1_700_000_000);
        }
    }
    std::fs::remove_file(tree.join("d1/sub1/file-00001.dat")).unwrap();
    std::fs::create_dir_all(tree.join("new/deeper")).unwrap();
    for i in 0..50 {
        let p = tree.join(format!("new/deeper/added-{i}.txt"));
        std::fs::write(&p, format!("added file {i}\n").repeat(i + 1)).unwrap();
        support::set_mtime(&p, 1_700_000_000 + i as i64);
    }
    support::set_mtime(&tree.join("new/deeper"), 1_700_000_000);
    support::set_mtime(&tree.join("new"), 1_700_000_000);
    support::set_mtime(&tree.join("d1/sub1"), 1_700_000_000);
}

#[test]
fn restic_backs_up_checks_and_restores_through_the_mount_also_from_an_empty_cache() {
    let devnet = TestDevnet::start(&[]);
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    // Thousands of small files and a few MiB-sized ones.
    generate_tree(&tree, 61, 3000, 6 << 20);
    for i in 0..3u64 {
        let p = tree.join(format!("d3/mib-{i}.bin"));
        sh(&format!(
            "head -c {} /dev/urandom > {}",
            (i + 1) << 20,
            p.display()
        ));
    }
    support::set_mtime(&tree.join("d3"), 1_650_000_000);

    let mount = TestMount::mount(&devnet.config(), &[]);
    let restic = Restic {
        repo: mount.token(devnet.token()).join("backups/restic"),
    };
    std::fs::create_dir(mount.token(devnet.token()).join("backups")).unwrap();
    restic.run(Path::new("/"), &["init"]);
    restic.run(src.path(), &["backup", "."]);
    restic.run(Path::new("/"), &["check", "--read-data"]);
    assert_eq!(restic.snapshots(), 1);

    // Incremental: change a few files, back up again, drop the first snapshot and prune.
    change_some_files(&tree);
    restic.run(src.path(), &["backup", "."]);
    assert_eq!(restic.snapshots(), 2);
    restic.run(Path::new("/"), &["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(restic.snapshots(), 1);
    restic.run(Path::new("/"), &["check"]);
    drop(mount);

    // Another machine: nothing cached, the repository comes from the node.
    let other_cache = tempfile::tempdir().unwrap();
    let config = devnet.config_with_cache(&other_cache.path().join("c"));
    let mount = TestMount::mount(&config, &[]);
    let restic = Restic {
        repo: mount.token(devnet.token()).join("backups/restic"),
    };
    restic.run(Path::new("/"), &["check", "--read-data"]);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().to_str().unwrap();
    restic.run(Path::new("/"), &["restore", "latest", "--target", target]);
    assert_same_tree(&tree, &out.path().join("tree"));
}

/// `git` in `dir` with a fixed identity and no global config.
fn git(dir: &Path, args: &[&str]) -> String {
    run(
        dir,
        "git",
        args,
        &[
            ("GIT_CONFIG_NOSYSTEM", "1"),
            ("GIT_CONFIG_GLOBAL", "/dev/null"),
            ("GIT_AUTHOR_NAME", "pxfs test"),
            ("GIT_AUTHOR_EMAIL", "test@pxfs.invalid"),
            ("GIT_COMMITTER_NAME", "pxfs test"),
            ("GIT_COMMITTER_EMAIL", "test@pxfs.invalid"),
            ("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z"),
            ("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z"),
        ],
    )
}

/// Working trees equal: same names, symlink targets and contents (git keeps neither
/// modes beyond the executable bit nor times).
fn assert_same_worktree(a: &Path, b: &Path) {
    sh(&format!(
        "diff -r --no-dereference --exclude=.git {} {}",
        a.display(),
        b.display()
    ));
}

#[test]
fn git_commits_gc_fsck_and_clone_work_inside_the_mount_also_from_an_empty_cache() {
    let devnet = TestDevnet::start(&[]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let repo = mount.token(devnet.token()).join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    // Packs, refs and the index are fsynced (loose objects are not, as git's default).
    git(
        &repo,
        &[
            "config",
            "core.fsync",
            "pack,pack-metadata,commit-graph,index,reference",
        ],
    );
    generate_tree(&repo.join("src"), 71, 1500, 2 << 20);
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "first"]);

    // More history: edits, a rename, a delete, a chmod.
    for round in 0..3 {
        std::fs::write(
            repo.join(format!("notes-{round}.txt")),
            format!("round {round}\n").repeat(100),
        )
        .unwrap();
        // Files 1, 21, 41 all live in src/d1/sub1.
        let moved = 1 + 20 * round;
        sh(&format!(
            "cd {} && echo edit-{round} >> src/d0/sub0/file-00000.dat",
            repo.display()
        ));
        git(
            &repo,
            &[
                "mv",
                &format!("src/d1/sub1/file-{moved:05}.dat"),
                &format!("src/moved-{round}.dat"),
            ],
        );
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", &format!("round {round}")]);
    }
    git(&repo, &["rm", "-q", "-r", "src/d4/sub9"]);
    sh(&format!("chmod 755 {}/notes-0.txt", repo.display()));
    git(&repo, &["add", "-A"]);
    git(&repo, &["commit", "-q", "-m", "remove and chmod"]);
    git(&repo, &["tag", "v1"]);

    git(&repo, &["gc", "--aggressive", "--prune=now", "--quiet"]);
    git(&repo, &["fsck", "--full", "--strict"]);
    let log_before = git(&repo, &["log", "--format=%H %s"]);
    assert_eq!(log_before.lines().count(), 5, "{log_before}");
    let head = git(&repo, &["rev-parse", "HEAD"]);
    drop(mount);

    let other_cache = tempfile::tempdir().unwrap();
    let config = devnet.config_with_cache(&other_cache.path().join("c"));
    let mount = TestMount::mount(&config, &[]);
    let repo = mount.token(devnet.token()).join("repo");
    assert_eq!(git(&repo, &["log", "--format=%H %s"]), log_before);
    assert_eq!(git(&repo, &["rev-parse", "HEAD"]), head);
    git(&repo, &["fsck", "--full", "--strict"]);
    let status = git(&repo, &["status", "--porcelain", "--untracked-files=all"]);
    assert!(status.is_empty(), "working tree not clean:\n{status}");

    let out = tempfile::tempdir().unwrap();
    let clone = out.path().join("clone");
    git(
        out.path(),
        &[
            "clone",
            "-q",
            repo.to_str().unwrap(),
            clone.to_str().unwrap(),
        ],
    );
    assert_eq!(git(&clone, &["rev-parse", "HEAD"]), head);
    git(&clone, &["fsck", "--full", "--strict"]);
    assert_same_worktree(&repo, &clone);

    // And one more commit after the remount lands too.
    std::fs::write(repo.join("after-remount.txt"), "still writable\n").unwrap();
    git(&repo, &["add", "after-remount.txt"]);
    git(&repo, &["commit", "-q", "-m", "after remount"]);
    git(&repo, &["fsck", "--full"]);
}
