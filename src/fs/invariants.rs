//! Whether the core checks its own invariants as it runs (a recharge after every sweep, each
//! updated directory against a full build, no unloaded directory marked as changed): always
//! in debug builds, and in an optimized build when `PXFS_CHECK_INVARIANTS=1` — the test
//! suite runs the release build it ships (scripts/test.sh) and sets it, so the daemons and
//! in-process cores it tests still check themselves. Users' daemons do not pay for it.

use std::sync::OnceLock;

/// True when invariant checks run in this process.
pub fn checked() -> bool {
    static CHECKED: OnceLock<bool> = OnceLock::new();
    cfg!(debug_assertions)
        || *CHECKED
            .get_or_init(|| std::env::var_os("PXFS_CHECK_INVARIANTS").is_some_and(|v| v == "1"))
}
