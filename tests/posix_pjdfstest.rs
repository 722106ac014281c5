//! POSIX compliance: the pjdfstest suite against a real kernel mount of a devnet sNFT.
//! pjdfstest switches to unprivileged users, so the mount is `--allow-other` (the kernel
//! checks modes itself: `default_permissions`). The number of passing cases must not drop
//! below the count recorded in `tests/pjdfstest.expected`, and no case may fail (the only
//! ones not run are skipped by pjdfstest itself, see docs/test-coverage.md).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{TestDevnet, TestMount};

/// The suite takes well under a minute on ext4; a mount that hangs or crawls fails here.
const RUN_BOUND: Duration = Duration::from_secs(150);

/// pjdfstest's closing line: `Summary: F failed, S skipped, P passed, E expected failures, T total`.
#[derive(Debug, PartialEq)]
struct Summary {
    failed: u32,
    skipped: u32,
    passed: u32,
}

fn parse_summary(output: &str) -> Option<Summary> {
    let line = output.lines().rev().find(|l| l.contains("Summary:"))?;
    let count = |word: &str| -> Option<u32> {
        let before = line.split(&format!(" {word}")).next()?;
        before
            .rsplit([' ', ',', ':'])
            .find(|s| !s.is_empty())?
            .parse()
            .ok()
    };
    Some(Summary {
        failed: count("failed")?,
        skipped: count("skipped")?,
        passed: count("passed")?,
    })
}

/// Drops ANSI colour sequences, should the runner colour its output anyway.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn repo_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(name)
}

fn recorded_pass_count() -> u32 {
    let text = std::fs::read_to_string(repo_file("pjdfstest.expected")).unwrap();
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .and_then(|l| l.parse().ok())
        .expect("tests/pjdfstest.expected holds the number of passing cases")
}

/// Runs pjdfstest on `dir` and returns its output, killing it after `bound`.
fn run_pjdfstest(dir: &Path, secondary: &Path, bound: Duration) -> (String, Duration) {
    run_pjdfstest_cases(dir, secondary, bound, &[])
}

/// [`run_pjdfstest`] of the cases whose names match `patterns` (all when empty).
fn run_pjdfstest_cases(
    dir: &Path,
    secondary: &Path,
    bound: Duration,
    patterns: &[&str],
) -> (String, Duration) {
    let log = tempfile::NamedTempFile::new().unwrap();
    // One open file for both streams, so they share an offset and do not overwrite each other.
    let sink = log.reopen().unwrap();
    let started = Instant::now();
    let mut child = Command::new("pjdfstest")
        .arg("-c")
        .arg(repo_file("pjdfstest.toml"))
        .arg("-p")
        .arg(dir)
        .arg("-s")
        .arg(secondary)
        .args(patterns)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(sink.try_clone().unwrap())
        .stderr(sink)
        .spawn()
        .expect("pjdfstest not on PATH: run scripts/setup.sh");
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            let out = std::fs::read_to_string(log.path()).unwrap_or_default();
            let tail: Vec<&str> = out.lines().rev().take(20).collect();
            panic!(
                "pjdfstest still running after {bound:?}; last lines:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = std::fs::read(log.path()).unwrap();
    // The whole run, for reading the failures' details.
    let _ = std::fs::write(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("pjdfstest.log"),
        &out,
    );
    (
        strip_ansi(&String::from_utf8_lossy(&out)),
        started.elapsed(),
    )
}

#[test]
fn summary_line_is_parsed_into_its_counts() {
    let out = "chmod::foo   ok\n\nSummary: 3 failed, 47 skipped, 351 passed, 0 expected failures, 401 total\n";
    assert_eq!(
        parse_summary(out),
        Some(Summary {
            failed: 3,
            skipped: 47,
            passed: 351
        })
    );
    assert_eq!(parse_summary("error: no such directory\n"), None);
    assert_eq!(strip_ansi("\u{1b}[1;32mpassed\u{1b}[0m"), "passed");
}

#[test]
fn pjdfstest_passes_at_least_the_recorded_number_of_cases_on_a_mounted_snft() {
    let expected = recorded_pass_count();
    // open::interact_2gb writes (sparsely) past 2 GiB: the sNFT's quota must allow that.
    let devnet = TestDevnet::start(&["--quota", &(4u64 << 30).to_string()]);
    let mount = TestMount::mount(&devnet.config(), &["--allow-other"]);
    let dir = mount.token(devnet.token()).join("pjd");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Cross-filesystem cases (EXDEV) need a second file system: a local directory.
    let secondary = tempfile::tempdir().unwrap();
    std::fs::set_permissions(secondary.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let (out, took) = run_pjdfstest(&dir, secondary.path(), RUN_BOUND);
    let summary = parse_summary(&out).unwrap_or_else(|| panic!("no summary line in:\n{out}"));
    println!(
        "pjdfstest on pxfs: {} failed, {} skipped, {} passed in {took:.0?} (recorded: {expected} passed)",
        summary.failed, summary.skipped, summary.passed
    );
    let failed: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_end().ends_with("FAILED"))
        .map(|l| l.split_whitespace().next().unwrap_or(l))
        .collect();
    assert_eq!(
        failed.len(),
        summary.failed as usize,
        "every failed case is listed by name"
    );
    assert!(
        failed.is_empty(),
        "pjdfstest cases failed (see target/tmp/pjdfstest.log):\n{}",
        failed.join("\n")
    );
    assert!(
        summary.passed >= expected,
        "pjdfstest passed {} cases, fewer than the {expected} recorded in tests/pjdfstest.expected; \
         failed:\n{}",
        summary.passed,
        failed.join("\n")
    );
}

/// Runs pjdfstest's `link` cases in a fresh directory `name` of `token`; panics on a failure.
fn link_cases(token: &Path, name: &str, secondary: &Path) -> u32 {
    let dir = token.join(name);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (out, _) = run_pjdfstest_cases(&dir, secondary, RUN_BOUND, &["link::"]);
    let summary = parse_summary(&out).unwrap_or_else(|| panic!("no summary line in:\n{out}"));
    assert_eq!(summary.failed, 0, "pjdfstest link cases failed:\n{out}");
    assert!(summary.passed > 0, "no link case ran:\n{out}");
    summary.passed
}

/// docs/FORMAT.md §4.4 through a kernel mount: trees with hard links copied by `cp -a` and
/// `rsync -aH` keep them on another machine (one inode, the link count, writes through any
/// name, content counted once), and pjdfstest's `link` cases pass before and after.
#[test]
fn hard_links_copied_by_cp_and_rsync_are_one_inode_on_another_machine() {
    use std::os::unix::fs::MetadataExt;
    let devnet = TestDevnet::start(&[]);
    let secondary = tempfile::tempdir().unwrap();
    std::fs::set_permissions(secondary.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cache = tempfile::tempdir().unwrap();
    let mut mount = TestMount::mount(&devnet.config_with_cache(cache.path()), &["--allow-other"]);
    let token = mount.token(devnet.token());
    let before = link_cases(&token, "pjd-before", secondary.path());

    // A tree with two link groups across directories, and a file of its own.
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    for d in ["a", "b/c", "d"] {
        std::fs::create_dir_all(s.join(d)).unwrap();
    }
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(s.join("a/big"), &big).unwrap();
    for name in ["a/big2", "b/big", "b/c/big", "d/big", "top-big"] {
        std::fs::hard_link(s.join("a/big"), s.join(name)).unwrap();
    }
    std::fs::write(s.join("d/small"), b"small").unwrap();
    std::fs::hard_link(s.join("d/small"), s.join("b/small")).unwrap();
    std::fs::write(s.join("alone"), b"alone").unwrap();
    support::sh(&format!("cp -a {}/. {}/cp", s.display(), token.display()));
    support::sh(&format!(
        "rsync -aH {}/ {}/rs/",
        s.display(),
        token.display()
    ));
    mount.unmount();

    // Another machine (an empty cache).
    let other = tempfile::tempdir().unwrap();
    let mut mount = TestMount::mount(&devnet.config_with_cache(other.path()), &["--allow-other"]);
    let token = mount.token(devnet.token());
    for copy in ["cp", "rs"] {
        let t = token.join(copy);
        // Look the group up from a deep name first: the whole group must be there.
        let first = std::fs::metadata(t.join("b/c/big")).unwrap();
        assert_eq!(first.nlink(), 6, "{copy}: the link count");
        for name in ["a/big", "a/big2", "b/big", "d/big", "top-big"] {
            let m = std::fs::metadata(t.join(name)).unwrap();
            assert_eq!((m.ino(), m.nlink()), (first.ino(), 6), "{copy}/{name}");
        }
        let small = std::fs::metadata(t.join("d/small")).unwrap();
        assert_eq!(small.nlink(), 2, "{copy}");
        assert_eq!(
            std::fs::metadata(t.join("b/small")).unwrap().ino(),
            small.ino()
        );
        assert_eq!(std::fs::metadata(t.join("alone")).unwrap().nlink(), 1);
        assert_eq!(std::fs::read(t.join("d/big")).unwrap(), big);
    }
    // Renaming one name leaves the others.
    let cp = token.join("cp");
    std::fs::rename(cp.join("a/big2"), cp.join("d/renamed")).unwrap();
    let renamed = std::fs::metadata(cp.join("d/renamed")).unwrap();
    let other = std::fs::metadata(cp.join("b/big")).unwrap();
    assert_eq!((renamed.ino(), renamed.nlink()), (other.ino(), 6));
    assert!(!cp.join("a/big2").exists());
    // A write through one name is seen through the others.
    support::sh(&format!("printf tail >> {}/cp/b/small", token.display()));
    assert_eq!(
        std::fs::read(token.join("cp/d/small")).unwrap(),
        b"smalltail"
    );
    // Unlinking names one by one: the content goes with the last.
    std::fs::remove_file(token.join("rs/d/small")).unwrap();
    assert_eq!(
        std::fs::metadata(token.join("rs/b/small")).unwrap().nlink(),
        1
    );
    // Usage counts linked content once per link group: the cp and the rsync copy are two
    // inodes of six names each. (The tree is encrypted: each copy has its own content
    // salt, so equal bytes are two objects, docs/FORMAT.md §7.)
    let usage: u64 = support::xattr(&token, "user.pxfs.usage").parse().unwrap();
    let one = pxfs::format::seal::sealed_len(big.len() as u64);
    assert!(
        usage > 2 * one && usage < 2 * one + 64 * 1024,
        "usage {usage}: 12 names of two 1 MiB inodes count each once"
    );
    mount.unmount();

    // And a third machine sees what the second committed; pjdfstest's link cases pass there.
    let third = tempfile::tempdir().unwrap();
    let mount = TestMount::mount(&devnet.config_with_cache(third.path()), &["--allow-other"]);
    let token = mount.token(devnet.token());
    assert_eq!(
        std::fs::read(token.join("cp/b/small")).unwrap(),
        b"smalltail"
    );
    assert_eq!(
        std::fs::metadata(token.join("cp/b/small")).unwrap().nlink(),
        2
    );
    assert_eq!(
        std::fs::metadata(token.join("rs/b/small")).unwrap().nlink(),
        1
    );
    let renamed = std::fs::metadata(token.join("cp/d/renamed")).unwrap();
    assert_eq!(renamed.nlink(), 6);
    let top = std::fs::metadata(token.join("cp/top-big")).unwrap();
    assert_eq!(top.ino(), renamed.ino());
    let after = link_cases(&token, "pjd-after", secondary.path());
    assert_eq!(
        after, before,
        "the same link cases pass on a remounted tree"
    );
}
