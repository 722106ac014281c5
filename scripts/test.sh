#!/usr/bin/env bash
# Runs the whole pxfs test suite: formatting, lints, unit tests, and the end-to-end tests
# against a real anvil, a real `pxfs node` and real kernel mounts (needs root and /dev/fuse).
# Installs what it needs first (scripts/setup.sh), so it works on a fresh Debian machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ ! -e /dev/fuse ]; then echo "test: /dev/fuse is missing; the mount tests need FUSE" >&2; exit 1; fi
if [ "$(id -u)" -ne 0 ]; then echo "test: run as root (the mount tests mount for real)" >&2; exit 1; fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== contract artifacts match a fresh compile"
(cd contracts && node compile.js --check)
echo "== cargo clippy"
cargo clippy --locked --all-targets --quiet -- -D warnings
echo "== cargo test"
# Tests that mount or start anvil/node each use their own ports and directories;
# two at a time keeps a 2-core machine responsive.
set +e
# The release profile, like the binary setup.sh built: the dependencies are compiled once
# for both, and the mount tests run the optimized daemon users get. The quick inner loop
# while working is the dev profile: `cargo test --lib`, `cargo test --test fs_core`.
# PXFS_CHECK_INVARIANTS: the core checks itself as debug builds do (src/fs/invariants.rs).
PXFS_CHECK_INVARIANTS=1 RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}" cargo test --release --locked --no-fail-fast 2>&1 | tee /tmp/pxfs-test.log
status=${PIPESTATUS[0]}
set -e
exit "$status"
