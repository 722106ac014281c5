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

fn run(ops: &[Op]) -> Result<(), String> {
    runtime().block_on(harness::run_script(ops))
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_core_behaves_like_the_reference_model(script in ops::script(steps())) {
        if let Err(e) = run(&script.0) {
            return Err(TestCaseError::fail(format!("{e}\nscript: {script:?}")));
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
    if let Err(e) = run(&ops) {
        panic!("{e}\nscript: {:?}", Script(ops));
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
        Op::Rename {
            from: p("c"),
            to: p("a/c"),
            flag: RenameFlag::None,
        },
        Op::Crash,
        Op::Remount,
    ]);
}
