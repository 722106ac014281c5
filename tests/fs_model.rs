//! A reference-model property test of the filesystem core (after mountpoint-s3's
//! `reftests`): random scripts of namespace, file and xattr operations, commits, crashes
//! (journal replay), remounts from an empty cache and node outages run against `Fs` and
//! against a plain in-memory model (`fs_model/model.rs`); after every step the whole tree
//! is compared. A failure prints the shrunk script, one step per line.
//!
//! `PROPTEST_CASES` raises the number of scripts (default [`CASES`]),
//! `PROPTEST_RNG_SEED` changes the seed (default fixed: runs are reproducible),
//! `PXFS_MODEL_STEPS` the longest script (default [`STEPS`]).

#[path = "fs_model/harness.rs"]
mod harness;
#[path = "fs_model/model.rs"]
mod model;
#[path = "fs_model/ops.rs"]
mod ops;
#[path = "fs_model/snapshots.rs"]
mod snapshots;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

use ops::{Op, P, RenameFlag, Script};

const CASES: u32 = 64;
const STEPS: usize = 50;
const SEED: u64 = 0x7078_6673_6d6f_6465;

fn config() -> Config {
    let mut cfg = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        cfg.cases = CASES;
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        cfg.rng_seed = RngSeed::Fixed(SEED);
    }
    cfg.max_shrink_iters = 4096;
    // The seed is fixed: a failure is found again by the next run. Pin it as a plain
    // test below rather than in a file proptest writes into the source tree.
    cfg.failure_persistence = None;
    cfg
}

fn steps() -> usize {
    std::env::var("PXFS_MODEL_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(STEPS)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A property test's script: the known failures (`harness::Setup::known_failures`,
/// pinned below) not reported, so that it looks for others.
fn run(ops: &[Op], sealed: bool) -> Result<(), String> {
    let setup = harness::Setup {
        sealed,
        known_failures: true,
        ..harness::Setup::default()
    };
    runtime().block_on(harness::run_script_with(ops, setup))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_core_behaves_like_the_reference_model(script in ops::script(steps())) {
        if let Err(e) = run(&script.0, false) {
            return Err(TestCaseError::fail(format!("{e}\nscript: {script:?}")));
        }
    }
}

proptest! {
    // A quarter of the budget: sealing changes how content and pages are stored, not the
    // operations' logic, which the plaintext run covers in full.
    #![proptest_config(Config { cases: config().cases.div_ceil(4), ..config() })]

    #[test]
    fn the_core_behaves_like_the_reference_model_on_an_encrypted_tree(
        script in ops::script(steps())
    ) {
        if let Err(e) = run(&script.0, true) {
            return Err(TestCaseError::fail(format!("{e}\nscript: {script:?}")));
        }
    }
}

proptest! {
    // History (docs/FORMAT.md §14) on: the same steps with more commits and simulated time
    // passing, and `.snapshots/` checked after each (listing, contents, EROFS); scripts
    // twice as long (a third of their steps are commits, waits and reconnects, which cost
    // little), half as many; a quarter of them on an encrypted tree.
    #![proptest_config(Config { cases: config().cases.div_ceil(2), ..config() })]

    #[test]
    fn snapshots_keep_what_the_policy_promises_and_never_change(
        (sealed, script) in (prop::bool::weighted(0.25), ops::history_script(2 * steps()))
    ) {
        let setup = harness::Setup { sealed, history: true, known_failures: true };
        if let Err(e) = runtime().block_on(harness::run_script_with(&script.0, setup)) {
            return Err(TestCaseError::fail(format!("sealed: {sealed}: {e}\nscript: {script:?}")));
        }
    }
}

/// Paths for the pinned scripts below.
fn p(path: &str) -> P {
    P(path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| ops::NAMES.iter().position(|n| *n == s).unwrap() as u8)
        .collect())
}

fn check(ops: Vec<Op>) {
    check_on(&ops, false);
}

/// `ops` on a plaintext or an encrypted (`sealed`) tree; a divergence panics with the script.
fn check_on(ops: &[Op], sealed: bool) {
    check_setup(ops, sealed, true);
}

/// [`check_on`], `known_failures` reported or not (`harness::Setup::known_failures`).
fn check_setup(ops: &[Op], sealed: bool, known_failures: bool) {
    let setup = harness::Setup {
        sealed,
        known_failures,
        ..harness::Setup::default()
    };
    if let Err(e) = runtime().block_on(harness::run_script_with(ops, setup)) {
        panic!("sealed: {sealed}: {e}\nscript: {:?}", Script(ops.to_vec()));
    }
}

/// `ops` on a mount that keeps history, plaintext then encrypted; a divergence panics.
/// `known_failures`: those of `harness::Setup::known_failures` not reported.
fn check_history(ops: &[Op], known_failures: bool) {
    for sealed in [false, true] {
        let setup = harness::Setup {
            sealed,
            history: true,
            known_failures,
        };
        if let Err(e) = runtime().block_on(harness::run_script_with(ops, setup)) {
            panic!("sealed: {sealed}: {e}\nscript: {:?}", Script(ops.to_vec()));
        }
    }
}

#[test]
fn a_model_script_with_every_kind_of_step_passes() {
    check(vec![
        Op::Mkdir {
            path: p("a"),
            mode: 0o755,
        },
        Op::Create {
            path: p("a/b"),
            excl: true,
            mode: 0o644,
        },
        Op::Write {
            h: 0,
            offset: 3,
            len: 10,
            byte: 1,
        },
        Op::Close { h: 0 },
        Op::Link {
            from: p("a/b"),
            to: p("c"),
        },
        Op::Commit,
        Op::Unload,
        Op::Rename {
            from: p("c"),
            to: p("a/c"),
            flag: RenameFlag::None,
        },
        Op::Crash,
        Op::Remount,
        Op::Unload,
    ]);
}

fn mkdir(path: &str, mode: u32) -> Op {
    Op::Mkdir {
        path: p(path),
        mode,
    }
}

fn write(path: &str, len: usize, byte: u8) -> Vec<Op> {
    vec![
        Op::Create {
            path: p(path),
            excl: true,
            mode: 0o644,
        },
        Op::Write {
            h: 0,
            offset: 0,
            len,
            byte,
        },
        Op::Close { h: 0 },
    ]
}

#[test]
fn unloaded_directories_read_again_keep_their_tree_and_usage() {
    check(unloaded_directories_script());
}

/// Directories unloaded and read again, sharing content and pages with loaded ones.
fn unloaded_directories_script() -> Vec<Op> {
    let mut ops = vec![
        Op::Mkdir {
            path: p("a"),
            mode: 0o755,
        },
        Op::Mkdir {
            path: p("a/b"),
            mode: 0o700,
        },
        Op::Mkdir {
            path: p("a/c"),
            mode: 0o755,
        },
        Op::Mkdir {
            path: p("b"),
            mode: 0o755,
        },
    ];
    ops.extend(write("a/b/a", 20, 1));
    ops.extend(write("a/a", 20, 1)); // the same content in two directories
    ops.extend(write("b/a", 7, 2));
    ops.extend([Op::Commit, Op::Unload, Op::Remount, Op::Unload]);
    // A copy of a/a's content in a loaded directory, then gone while a is unloaded.
    ops.extend(write("b/b", 20, 1));
    ops.extend([Op::Commit, Op::Unload, Op::Unlink { path: p("b/b") }]);
    ops.extend([
        Op::Commit,
        Op::Unload,
        Op::Mkdir {
            path: p("c"),
            mode: 0o755,
        },
    ]);
    ops.extend([
        Op::Commit,
        Op::Unload,
        Op::Rmdir { path: p("a/c") },
        Op::Commit,
        Op::Unload,
        Op::Crash,
        Op::Unload,
        Op::Remount,
    ]);
    ops
}

/// Every kind of change to a name looked up alone in directories not loaded (issue #14:
/// after `Unload`, a path walk looks names up through their pages only): each change
/// loads the directories holding it first, and the tree, usage and inode numbers stay
/// what the model says, across commits and a remount.
#[test]
fn changes_to_names_looked_up_alone_load_their_directories_first() {
    let mut ops = vec![mkdir("a", 0o755), mkdir("a/b", 0o750)];
    ops.extend(write("a/b/a", 20, 1));
    ops.extend(write("a/b/b", 9, 2));
    ops.extend(write("a/a", 5, 3));
    let unloaded = [Op::Commit, Op::Unload];
    let changes = vec![
        Op::Chmod {
            path: p("a/b/a"),
            mode: 0o600,
        },
        Op::Truncate {
            path: p("a/b/b"),
            size: 3,
        },
        Op::Open {
            path: p("a/b/a"),
            write: true,
            trunc: false,
            append: true,
        },
        Op::SetXattr {
            path: p("a/a"),
            name: 0,
            value: 7,
            flags: 0,
        },
        Op::Link {
            from: p("a/b/b"),
            to: p("b"),
        },
        Op::RemoveXattr {
            path: p("a/a"),
            name: 0,
        },
        Op::Utimes {
            path: p("a/b"),
            mtime: 1_000_000_000,
        },
        Op::Rename {
            from: p("a/b/a"),
            to: p("a/c"),
            flag: RenameFlag::None,
        },
    ];
    for change in changes {
        ops.extend(unloaded.clone());
        let write_after = matches!(change, Op::Open { .. });
        ops.push(change);
        if write_after {
            ops.extend([
                Op::Write {
                    h: 0,
                    offset: 0,
                    len: 4,
                    byte: 9,
                },
                Op::Close { h: 0 },
            ]);
        }
    }
    ops.extend([Op::Commit, Op::Remount, Op::Unload]);
    check(ops);
}

// Scripts the property test found, pinned (each failed before its fix in src/fs).

#[test]
fn renaming_the_second_name_of_a_hard_link_journals_that_name() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: true,
            mode: 0o644,
        },
        Op::Write {
            h: 0,
            offset: 0,
            len: 5,
            byte: 1,
        },
        Op::Close { h: 0 },
        Op::Link {
            from: p("a"),
            to: p("c"),
        },
        Op::Commit,
        Op::Rename {
            from: p("c"),
            to: p("b"),
            flag: RenameFlag::None,
        },
        Op::Unlink { path: p("b") },
        Op::Crash,
    ]);
}

#[test]
fn usage_counts_a_hard_link_once_across_a_crash() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: true,
            mode: 0o644,
        },
        Op::Write {
            h: 0,
            offset: 0,
            len: 13,
            byte: 1,
        },
        Op::Close { h: 0 },
        Op::Link {
            from: p("a"),
            to: p("b"),
        },
        Op::Commit,
        Op::Crash,
        Op::Unlink { path: p("a") },
    ]);
}

#[test]
fn link_onto_an_existing_name_is_eexist_even_for_a_directory() {
    check(vec![
        Op::Mkdir {
            path: p("b"),
            mode: 0o644,
        },
        Op::Symlink {
            path: p("a"),
            target: 0,
        },
        Op::Link {
            from: p("b"),
            to: p("a"),
        },
    ]);
}

#[test]
fn a_directory_utimes_survives_the_replay_of_a_close_that_creates_a_file_in_it() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::Utimes {
            path: p(""),
            mtime: 1_000_000_007,
        },
        Op::Flush { h: 0 },
        Op::Crash,
    ]);
}

#[test]
fn a_directory_not_loaded_yet_reports_an_unknown_link_count_then_the_right_one() {
    check(vec![
        Op::Mkdir {
            path: p("a"),
            mode: 0o644,
        },
        Op::Mkdir {
            path: p("a/a"),
            mode: 0o644,
        },
        Op::Commit,
        Op::Crash,
    ]);
}

#[test]
fn a_commit_publishes_the_usage_of_what_it_holds_not_of_open_sessions() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::Write {
            h: 0,
            offset: 0,
            len: 1,
            byte: 0,
        },
        Op::Commit,
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::Crash,
    ]);
}

#[test]
fn an_exchange_with_a_missing_target_is_enoent_before_the_subtree_check() {
    check(vec![
        Op::Mkdir {
            path: p("b"),
            mode: 0o644,
        },
        Op::Rename {
            from: p("b"),
            to: p("b/a"),
            flag: RenameFlag::Exchange,
        },
    ]);
}

#[test]
fn a_write_of_nothing_past_the_end_does_not_grow_the_file() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::Write {
            h: 0,
            offset: 1,
            len: 0,
            byte: 0,
        },
        Op::Remount,
    ]);
}

/// A name linked before the file's first close was journaled when a replay could not make
/// it yet; the first close journals it again after itself. Found by the property test with
/// `PROPTEST_CASES=1000`.
#[test]
fn a_hard_link_made_before_the_first_close_survives_a_crash() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::Link {
            from: p("a"),
            to: p("b"),
        },
        Op::Flush { h: 0 },
        Op::Crash,
    ]);
}

#[test]
fn an_xattr_set_before_the_first_close_survives_a_crash() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::SetXattr {
            path: p("a"),
            name: 0,
            value: 0,
            flags: 0,
        },
        Op::Flush { h: 0 },
        Op::Crash,
    ]);
}

#[test]
fn a_file_never_closed_renamed_over_another_still_replaces_it_after_a_crash() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: true,
            mode: 0o644,
        },
        Op::Write {
            h: 0,
            offset: 0,
            len: 3,
            byte: 1,
        },
        Op::Close { h: 0 },
        Op::Create {
            path: p("b"),
            excl: true,
            mode: 0o644,
        },
        Op::Rename {
            from: p("b"),
            to: p("a"),
            flag: RenameFlag::None,
        },
        Op::Crash,
    ]);
}

#[test]
fn renaming_a_hard_link_onto_its_other_name_keeps_both_after_a_crash() {
    check(vec![
        Op::Create {
            path: p("a"),
            excl: true,
            mode: 0o644,
        },
        Op::Close { h: 0 },
        Op::Link {
            from: p("a"),
            to: p("b"),
        },
        Op::Commit,
        Op::Rename {
            from: p("a"),
            to: p("b"),
            flag: RenameFlag::None,
        },
        Op::Crash,
    ]);
}

#[test]
fn truncating_a_file_loaded_from_a_fresh_cache_commits_its_new_content() {
    let rn = |from: &str, to: &str| Op::Rename {
        from: p(from),
        to: p(to),
        flag: RenameFlag::None,
    };
    check(vec![
        Op::Online,
        rn("b", "a/c/c"),
        Op::Utimes {
            path: p("c"),
            mtime: 3_000_000_021,
        },
        Op::Unlink { path: p("b/a/b") },
        rn("a/a", "a/c"),
        Op::Link {
            from: p("b/b/c"),
            to: p("b"),
        },
        Op::Chmod {
            path: p("a"),
            mode: 0o644,
        },
        Op::Unlink { path: p("a") },
        Op::Mkdir {
            path: p("b"),
            mode: 0o600,
        },
        Op::Read {
            h: 1,
            offset: 187,
            len: 31,
        },
        Op::Open {
            path: p("b/b"),
            write: false,
            trunc: false,
            append: false,
        },
        rn("c/c", "c"),
        Op::Create {
            path: p("c"),
            excl: false,
            mode: 0o644,
        },
        Op::Online,
        Op::Remount,
        Op::Write {
            h: 2,
            offset: 62,
            len: 16,
            byte: 0x58,
        },
        Op::Unlink { path: p("b/a") },
        Op::Truncate {
            path: p("c"),
            size: 110,
        },
        Op::Link {
            from: p("a/a"),
            to: p("a/b"),
        },
        Op::Commit,
    ]);
}

#[test]
fn a_write_of_no_bytes_bumps_the_times_stored_by_the_next_commit() {
    check(vec![
        Op::Create {
            path: p("c"),
            excl: false,
            mode: 0o644,
        },
        Op::Remount,
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::Release { h: 0 },
        Op::Open {
            path: p("c"),
            write: true,
            trunc: false,
            append: false,
        },
        Op::Write {
            h: 0,
            offset: 0,
            len: 0,
            byte: 0,
        },
        Op::Commit,
    ]);
}

/// Found by the model at 600 cases: a directory made and removed in the commit that also
/// creates a file was still written (its inode known to the kernel), so the published usage
/// counted its page.
#[test]
fn a_directory_made_and_removed_before_a_commit_leaves_no_usage_behind() {
    check(vec![
        Op::Mkdir {
            path: p("b"),
            mode: 0o644,
        },
        Op::Rmdir { path: p("b") },
        Op::Create {
            path: p("a"),
            excl: false,
            mode: 0o644,
        },
        Op::Close { h: 0 },
        Op::Remount,
    ]);
}

/// A directory committed and unloaded lists again from the pages the mount wrote while the
/// node is down (found by the generator at 600 cases: a lookup read the page cache, a
/// listing always asked the node).
#[test]
fn an_unloaded_directory_lists_while_the_node_is_down() {
    check(vec![
        Op::Mkdir {
            path: p("a"),
            mode: 0o755,
        },
        Op::Mkdir {
            path: p("b"),
            mode: 0o755,
        },
        Op::Create {
            path: p("b/c"),
            excl: false,
            mode: 0o644,
        },
        Op::Close { h: 0 },
        Op::Commit,
        Op::Unload,
        Op::Offline,
    ]);
    // After a remount, an empty one is known without the node (its page is computed).
    check(vec![
        Op::Mkdir {
            path: p("a"),
            mode: 0o644,
        },
        Op::Remount,
        Op::Offline,
    ]);
}

/// A change in place that keeps a committed file's size, closed, then a crash: the replayed
/// close counts as a version not on the node yet (found by the generator, seed 15 at 600
/// cases: the replay left the committed version's charge, as the size did not move).
#[test]
fn a_replayed_close_of_a_same_size_change_is_counted_as_pending() {
    for sealed in [false, true] {
        let ops = vec![
            Op::Create {
                path: p("b"),
                excl: false,
                mode: 0o644,
            },
            Op::Write {
                h: 0,
                offset: 655_337,
                len: 52,
                byte: 0,
            },
            Op::Remount,
            Op::Create {
                path: p("b"),
                excl: false,
                mode: 0o644,
            },
            Op::Write {
                h: 0,
                offset: 131_040,
                len: 60,
                byte: 6,
            },
            Op::Close { h: 0 },
            Op::Crash,
        ];
        check_on(&ops, sealed);
    }
}

/// Two empty directories are stored as one page. One is unloaded and read again while the
/// other stays loaded, then both change: the page's bytes must leave usage once, not come
/// back as "not loaded" (found with an unload after every step: the ledger kept a flag,
/// not a count, of the references unloads dropped, and a read-back did not give its back).
#[test]
fn a_page_two_directories_share_leaves_usage_once_after_one_was_unloaded_and_read_again() {
    let script = ops::parse_script(
        "0: mkdir c 644\n1: mkdir b 644\n2: REMOUNT (fresh cache)\n3: symlink c/a -> \"a\"\n\
         4: kernel forgets all; unload\n5: create b/a O_RDWR|O_CREAT 644\n6: flush h0\n\
         7: commit\n",
    )
    .unwrap();
    for sealed in [false, true] {
        check_on(&script.0, sealed);
    }
}

/// History over simulated days: versions made by commits, remounts and a crash read back
/// as their commits published them (a file never closed left out), retention drops them as
/// the days pass, and changes under `.snapshots/` are refused.
#[test]
fn versions_over_simulated_days_read_back_as_their_commits_published_them() {
    let script = ops::parse_script(
        "0: mkdir a 755\n1: create a/b O_RDWR|O_CREAT|O_EXCL 644\n\
         2: write h0 at 0 10 bytes from 0x01\n3: close h0\n4: commit\n5: wait 30 s\n\
         6: link a/b c\n7: symlink b -> \"a\"\n8: create a/c O_RDWR|O_CREAT 644\n\
         9: commit\n10: wait 4000 s\n11: rename c a/a\n12: setxattr a user.x=3\n\
         13: chmod a 700\n14: commit\n15: change a snapshot: version 0 change 3\n\
         16: wait 90000 s\n17: REMOUNT (fresh cache)\n18: wait 200000 s\n\
         19: unlink a/b\n20: commit\n21: change a snapshot: version 1 change 8\n\
         22: CRASH\n23: kernel forgets all; unload\n24: wait 5 s\n\
         25: write h0 at 0 3 bytes from 0x07\n26: commit\n\
         27: change a snapshot: version 0 change 12\n28: REMOUNT (fresh cache)\n",
    )
    .unwrap();
    check_history(&script.0, true);
}

/// Found by the model with history on: in a version, a file of two names looked up first
/// through the name whose other name lies in a directory not read yet reports `nlink` 1;
/// once the other name was looked up, the same inode reports 2. A version's attributes
/// change as it is read (and `rsync -H`, `tar`, `find -links` see a lone file at first).
#[test]
fn a_link_group_in_a_version_counts_all_its_names_at_the_first_lookup() {
    let script = ops::parse_script(
        "0: mkdir a 755\n1: create a/b O_RDWR|O_CREAT 644\n2: close h0\n3: link a/b c\n\
         4: commit\n5: wait 30 s\n6: chmod a 700\n7: commit\n",
    )
    .unwrap();
    check_history(&script.0, false);
}

/// Found by the model with history on: two directories stored as one page (both empty),
/// committed; one gets an entry while the other is not loaded, and the next commit
/// publishes the right usage (what the node measures), but the mount's own figure
/// (`user.pxfs.usage`, `usage_parts().total()`) stays over by that page (80 B, counted
/// in `UsageParts::history` though no version keeps anything the tree does not). Not
/// with history off; not when the entry is a directory (which is stored as the same page).
/// Also without history, the commit published the figure without that page (808 B, the
/// node measures 888): the ledger left out a page whose last loaded reference went while
/// an unloaded directory still used it.
#[test]
fn a_page_two_directories_share_is_counted_once_by_the_mount_after_a_commit_with_history() {
    let script = ops::parse_script(
        "0: mkdir b 644\n1: mkdir c 644\n2: commit\n3: symlink b/a -> \"a\"\n4: commit\n",
    )
    .unwrap();
    check_history(&script.0, false);
    for sealed in [false, true] {
        check_setup(&script.0, sealed, false);
    }
}

/// Found by the model's check of each publication (without history the commit publishes
/// the ledger's figure): the script of `unloaded_directories_read_again_keep_their_tree_and_usage`
/// after a remount commits a file whose content equals that of files in directories not
/// loaded: published 1,924 B, measured 1,904 (the 20 B content counted again until those
/// directories are read; the ledger cannot know without reading them). Never under the
/// measure; with history on, the publication is counted from the graph and is exact.
#[test]
#[ignore = "known limitation: without history, content equal to a file's in a directory not loaded is counted twice until that directory is read"]
fn a_commit_publishes_the_usage_the_node_measures_with_objects_shared_with_unloaded_directories() {
    check_setup(&unloaded_directories_script(), false, false);
}

/// Replays the script in the file `PXFS_MODEL_REPLAY` (as a failure prints it; add
/// `PXFS_MODEL_SEALED=1` for an encrypted tree, `PXFS_MODEL_HISTORY=1` for a mount that
/// keeps history, `PXFS_MODEL_KNOWN_FAILURES=1` to leave the known failures unreported):
/// `cargo test --test fs_model replay -- --ignored`. A tool for shrinking
/// a failure by hand, not a test.
#[test]
#[ignore = "a tool: replays a script from a file (PXFS_MODEL_REPLAY)"]
fn replay() {
    let path = std::env::var("PXFS_MODEL_REPLAY").expect("PXFS_MODEL_REPLAY=<script file>");
    let text = std::fs::read_to_string(&path).expect("the script file");
    let script = ops::parse_script(&text).expect("a script");
    let setup = harness::Setup {
        sealed: std::env::var_os("PXFS_MODEL_SEALED").is_some(),
        history: std::env::var_os("PXFS_MODEL_HISTORY").is_some(),
        known_failures: std::env::var_os("PXFS_MODEL_KNOWN_FAILURES").is_some(),
    };
    if let Err(e) = runtime().block_on(harness::run_script_with(&script.0, setup)) {
        panic!("{setup:?}: {e}\nscript: {script:?}");
    }
}
