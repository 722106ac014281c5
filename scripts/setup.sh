#!/usr/bin/env bash
# Installs everything pxfs needs on a Debian machine (run as root), idempotently:
# Debian packages, the pinned npm packages (solc, OpenZeppelin, Chainlink, anvil),
# and the optimized (release) build of pxfs, linked as /usr/local/bin/pxfs. Safe to run
# again; it only does what is missing. `--deps-only` stops before pjdfstest and the build
# (what scripts/bench.sh needs).
set -euo pipefail
cd "$(dirname "$0")/.."
deps_only=0
case "${1:-}" in
    --deps-only) deps_only=1 ;;
    "") ;;
    *) echo "setup: unknown argument ${1} (expected --deps-only or nothing)" >&2; exit 2 ;;
esac

log() { printf '\033[1msetup:\033[0m %s\n' "$*"; }

need_apt=()
for pkg in fuse3 rsync restic fio rclone attr acl libacl1-dev git pkg-config ca-certificates tar procps psmisc util-linux systemd curl jq openssl nodejs npm chromium; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need_apt+=("$pkg")
done
# nodejs/npm may come from elsewhere than Debian (the machine image has its own Node 20).
if command -v node >/dev/null && command -v npm >/dev/null; then
    need_apt=("${need_apt[@]/nodejs}"); need_apt=("${need_apt[@]/npm}")
fi
read -r -a need_apt <<<"${need_apt[*]}"
if ((${#need_apt[@]})); then
    log "installing Debian packages: ${need_apt[*]}"
    if [ "$(id -u)" -ne 0 ]; then echo "setup: run as root (apt-get install ${need_apt[*]})" >&2; exit 1; fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
    echo "setup: cargo not found: install a Rust toolchain >= 1.94 (rustup) and run again" >&2
    exit 1
fi

# Tests switch to these users (pjdfstest) and need /etc/fuse.conf to allow allow_other.
id -u tests >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin tests 2>/dev/null || true
grep -qs '^user_allow_other' /etc/fuse.conf || echo user_allow_other >> /etc/fuse.conf

log "npm packages (contracts/package-lock.json)"
if [ ! -f contracts/node_modules/.package-lock.json ] || ! cmp -s contracts/package-lock.json contracts/node_modules/.pxfs-lock; then
    (cd contracts && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.pxfs-lock)
fi
anvil_bin=$(find "$PWD/contracts/node_modules/@foundry-rs" -type f -name anvil -perm -u+x 2>/dev/null | head -n1)
if [ -z "$anvil_bin" ]; then echo "setup: anvil binary not found in contracts/node_modules/@foundry-rs" >&2; exit 1; fi
ln -sf "$anvil_bin" /usr/local/bin/anvil
if ((deps_only)); then
    log "done (dependencies only)"
    exit 0
fi

# The POSIX suite (tests/posix_pjdfstest.rs); it links libacl, hence libacl1-dev above.
if ! command -v pjdfstest >/dev/null; then
    log "installing pjdfstest 0.2.2 (cargo install, about a minute)"
    cargo install pjdfstest --version 0.2.2 --locked --quiet
fi

# The optimized build: what the demo, `pxfs` on PATH and the tests (scripts/test.sh builds
# its test binaries with the same release profile, so the tree is compiled once) all run.
# An unoptimized pxfs moves big files 10-20x slower (issue #43).
log "building pxfs (release profile; a fresh machine takes about 10 minutes on 2 cores)"
cargo build --release --locked --quiet
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
ln -sf "$target_dir/release/pxfs" /usr/local/bin/pxfs
log "done: $(pxfs --version), anvil $(anvil --version | head -n1 | awk '{print $NF}')"
