#!/usr/bin/env bash
# Round trips over a slow link, request by request (issue #34): a devnet, the link proxy
# (scripts/slow_link.py) in front of its node, a mount through it with the node's requests
# in the debug log, and one workload:
#   write  MIB of random bytes written and fsynced twice (the second on a warm mount)
#   read   MIB written locally first, then read cold through the link
# Prints the times, the node requests after the workload started (time, command) and the
# link's idle gaps of 10 ms or more (the proxy's `--log-gaps-ms`), so
# the round trips after the last chunk, or the link's idle gaps, can be counted.
#
#   bash scripts/trace_link.sh write|read [MIB] [DELAY_MS] [RATE_MBIT]
#
# TRACE_SMALL_FILES=N (write): first untar N small files (1–16 KiB) and `sync` them, as the
# link benchmark does before its large write; the write is traced from there.
#
# Uses target/release/pxfs as built (`cargo build --release`); root, /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
mib=${2:-16}
delay=${3:-50}
mbit=${4:-50}
case $mode in
write | read) ;;
*) echo "usage: bash scripts/trace_link.sh write|read [MIB] [DELAY_MS] [RATE_MBIT]" >&2; exit 2 ;;
esac
pxfs=$PWD/target/release/pxfs
[[ -x $pxfs ]] || { echo "trace: build first: cargo build --release" >&2; exit 1; }

work=$(mktemp -d /var/tmp/pxfs-trace.XXXXXX)
mp=$work/mp
mkdir -p "$mp"
pids=()
cleanup() {
    mountpoint -q "$mp" && { fusermount3 -u "$mp" 2>/dev/null || umount -l "$mp" || true; }
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ -n ${TRACE_KEEP_LOG:-} ]] && cp "$work/mount.log" "$TRACE_KEEP_LOG" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

"$pxfs" devnet up --dir "$work/devnet" --quota $((64 << 30)) --no-oracle >"$work/devnet.log" 2>&1 &
pids+=($!)
for _ in $(seq 3000); do grep -q '^devnet ready' "$work/devnet.log" && break; sleep 0.1; done
grep -q '^devnet ready' "$work/devnet.log" || { echo "trace: the devnet did not start" >&2; exit 1; }
node=$(jq -r .node_url "$work/devnet/devnet.json")
token=$(jq -r '.token_ids[0]' "$work/devnet/devnet.json")
python3 scripts/slow_link.py --to "${node#http://}" --delay-ms "$delay" --rate-mbit "$mbit" --log-gaps-ms 10 >"$work/proxy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening ' "$work/proxy.log" && break; sleep 0.05; done
link="http://$(awk '/^listening / { print $2 }' "$work/proxy.log")"
sed -e "s|^api_url = .*|api_url = \"$link\"|" "$work/devnet/pxfs.toml" >"$work/link.toml"

# mount CONFIG LOG [ENV...]: a daemon in the background, waited for.
mount_with() {
    local config=$1 logf=$2
    shift 2
    env "$@" "$pxfs" mount "$mp" --config "$config" --foreground >"$logf" 2>&1 &
    mount_pid=$!
    for _ in $(seq 1200); do
        mountpoint -q "$mp" && [[ -d $mp/$token ]] && return 0
        sleep 0.05
    done
    echo "trace: the mount did not come up: $(tail -5 "$logf")" >&2
    exit 1
}
unmount() { fusermount3 -u "$mp"; wait "$mount_pid" || true; }
seconds() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }
floor=$(awk -v m="$mib" -v r="$mbit" 'BEGIN { printf "%.3f", m * 1048576 * 8 / (r * 1e6) }')

head -c $((mib << 20)) /dev/urandom >"$work/data.bin"
if [[ $mode == write ]]; then
    mount_with "$work/link.toml" "$work/mount.log" PXFS_LOG=pxfs::storage=debug,pxfs::fs::persist=debug
    sleep 1
    small=${TRACE_SMALL_FILES:-0}
    if ((small > 0)); then
        python3 - "$work/small" "$small" <<'PY'
import os, random, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "files", f"d{i // 1000:03}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:06}"), "wb") as f:
        f.write(os.urandom(random.randint(1024, 16384)))
PY
        tar -cf "$work/small.tar" -C "$work/small" files
        s=$(date +%s.%N)
        mkdir "$mp/$token/small"
        tar -xf "$work/small.tar" -C "$mp/$token/small"
        sync "$mp/$token"
        echo "untar of $small small files + sync: $(seconds "$s" "$(date +%s.%N)") s"
        sleep "${TRACE_SMALL_PAUSE:-2}"
    fi
    started=$(date -u +%H:%M:%S.%N)
    for n in 1 2; do
        s=$(date +%s.%N)
        dd if="$work/data.bin" of="$mp/$token/data-$n.bin" bs=1M conv=fsync status=none
        echo "write $n: $(seconds "$s" "$(date +%s.%N)") s (the link's floor $floor s)"
    done
    unmount
else
    mount_with "$work/devnet/pxfs.toml" "$work/mount0.log"
    cp "$work/data.bin" "$mp/$token/data.bin"
    sync "$mp/$token"
    unmount
    rm -rf "$work/devnet/cache/chunks"
    sync
    echo 3 >/proc/sys/vm/drop_caches
    mount_with "$work/link.toml" "$work/mount.log" PXFS_LOG=pxfs::storage=debug
    ls -ld "$mp/$token" >/dev/null
    started=$(date -u +%H:%M:%S.%N)
    s=$(date +%s.%N)
    dd if="$mp/$token/data.bin" of=/dev/null bs=1M status=none
    echo "cold read: $(seconds "$s" "$(date +%s.%N)") s (the link's floor $floor s)"
    unmount
fi
echo "node requests and the link's idle gaps (10 ms or more) from $started (UTC):"
{
    awk '/ idle /' "$work/proxy.log"
    sed -E 's/\x1b\[[0-9;]*m//g' "$work/mount.log" |
    awk -v from="$started" '{ t = substr($1, 12, 15) } t >= from && /node request|added files|committed token/' |
    sed -E 's/^[0-9-]+T([0-9:.]+)Z.*url=[^ ]*\/api\/v0\/([a-z/]+).*/\1  \2/; s/^[0-9-]+T([0-9:.]+)Z.*(added files=[0-9]+|committed token=[0-9]+ seq=[0-9]+).*/\1  \2/'
} | awk -v from="$started" 'substr($1, 1, 15) >= substr(from, 1, 15)' | sort
