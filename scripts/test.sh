#!/usr/bin/env bash
# Runs the whole pxfs test suite: formatting, lints, unit tests, and the end-to-end tests
# against a real anvil, a real `pxfs node` and real kernel mounts (needs root and /dev/fuse).
# Installs what it needs first (scripts/setup.sh), so it works on a fresh Debian machine.
#
# `--fast`: the inner loop while working (docs/testing.md): the formatting check and the
# tests that run in this process alone (no kernel mount, anvil, node process or Node.js),
# dev profile, no setup, no root; a few minutes once built.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--fast" ]; then
    # Chosen by measuring each binary (docs/testing.md has the times); a binary joins when
    # it needs nothing outside the test process and keeps the tier under 5 minutes.
    fast=(layering docs_links format_v2 fs_core fs_format3 fs_history fs_overlay fs_model fs_recovery fs_two_machines_model node_add node_cat node_gc
        node_gateway node_names storage_cache storage_client storage_fixtures)
    # The one test of storage_cache that starts a `pxfs node` process.
    skip=(a_real_file_is_read_through_the_cache_and_survives_the_node_dying)
    args=(--lib)
    for t in "${fast[@]}"; do
        # A renamed or removed binary must not silently leave the tier.
        if [ ! -f "tests/$t.rs" ]; then echo "test: fast tier names tests/$t.rs, which is gone" >&2; exit 2; fi
        args+=(--test "$t")
    done
    filters=()
    for s in "${skip[@]}"; do filters+=(--skip "$s"); done
    echo "== cargo fmt --check"
    cargo fmt --all -- --check
    echo "== cargo test (fast tier, dev profile)"
    PXFS_CHECK_INVARIANTS=1 RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}" \
        exec cargo test --locked --no-fail-fast "${args[@]}" -- "${filters[@]}"
elif [ -n "${1:-}" ]; then
    echo "test: unknown argument ${1} (expected --fast or nothing)" >&2; exit 2
fi

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
# while working is `--fast` above (dev profile), or one binary: `cargo test --test fs_core`.
# PXFS_CHECK_INVARIANTS: the core checks itself as debug builds do (src/fs/invariants.rs).
PXFS_CHECK_INVARIANTS=1 RUST_TEST_THREADS="${RUST_TEST_THREADS:-2}" cargo test --release --locked --no-fail-fast 2>&1 | tee /tmp/pxfs-test.log
status=${PIPESTATUS[0]}
set -e
exit "$status"
