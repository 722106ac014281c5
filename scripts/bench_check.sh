#!/usr/bin/env bash
# `pxfs check` against a plain read of the same tree (issue #30; `bash scripts/bench.sh check`,
# or this script directly). Not part of the tests.
#
# On one sNFT of its own devnet: N files (1-16 KiB of distinct bytes, 100 per directory) are
# copied in through a mount and committed; then, with the mount gone, `pxfs check TOKEN` and
# `pxfs check TOKEN --read-data` each walk the committed tree (blocks/s, peak RSS, peak open
# descriptors), and a fresh-cache read-only mount reads every file (`cat` of each) as the
# plain read to compare `--read-data` with (goal: >= 0.8x its blocks/s).
#
# Environment:
#   BENCH_CHECK_FILES=100000   files in the tree
#   BENCH_DIR=       work directory (default: a new one under /var/tmp), deleted at the end
#   BENCH_BUILD=1    0: use the binary as it is
#   BENCH_SETUP=1    0: skip `scripts/setup.sh --deps-only`
#   BENCH_PXFS=target/release/pxfs   the binary to measure
#   BENCH_OUT=BENCHMARKS.md   the report is appended there ("-": standard output only)
#   BENCH_NOTE=      free text for the report (e.g. what else loads the machine)
#   PXFS_ANVIL=      anvil binary, if neither PATH nor contracts/node_modules has one
# A quick run of the machinery:
#   BENCH_BUILD=0 BENCH_PXFS=target/debug/pxfs BENCH_CHECK_FILES=1000 BENCH_OUT=- bash scripts/bench.sh check
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh

files=${BENCH_CHECK_FILES:-100000}
out=${BENCH_OUT:-BENCHMARKS.md}
note=${BENCH_NOTE:-}
bench_prepare curl jq python3 fusermount3 mountpoint
bench_workdir check
mp=$work/mnt
raw=$work/raw.tsv
: >"$raw"
devnet_pid=
mount_pid=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if ((rc != 0)); then
        log "failed (exit $rc); last lines of the logs:"
        tail -n 20 "$work/devnet.log" "$work/mount.log" >&2
    fi
    unmount_px
    stop_devnet
    if mountpoint -q "$mp" 2>/dev/null; then fusermount3 -uz "$mp"; fi
    rm -rf "$work"
    log "cleaned up $work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# measure NAME CMD...: runs CMD, sampling its peak RSS (VmHWM) and open descriptors every
# 0.1 s; records NAME.secs, NAME.rss_mib, NAME.fds. CMD's stdout goes to $work/NAME.out.
measure() {
    local name=$1
    shift
    local start pid fds=0 hwm=0 n h
    start=$(now)
    "$@" >"$work/$name.out" 2>"$work/$name.err" &
    pid=$!
    while kill -0 "$pid" 2>/dev/null; do
        n=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
        ((n > fds)) && fds=$n
        h=$(awk '/^VmHWM/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
        ((${h:-0} > hwm)) && hwm=$h
        sleep 0.1
    done
    local rc=0
    wait "$pid" || rc=$?
    record "$name.secs" "$(since "$start")"
    record "$name.rss_mib" "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')"
    record "$name.fds" "$fds"
    return $rc
}

machine=$(machine_line)
rev=$(revision)
log "machine: $machine; pxfs $rev; work dir $work; $files files"
start_devnet "$pxfs" $((1 << 40))

# The tree: $files files in directories of 100, written locally, then copied in.
python3 - "$work/src" "$files" <<'EOF'
import os, random, sys
top, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(30)
for i in range(n):
    d = os.path.join(top, "d%04d" % (i // 100))
    if i % 100 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%d" % i), "wb") as f:
        f.write(b"%d-" % i + rng.randbytes(rng.randint(1024, 16384)))
EOF
src_bytes=$(du -sb "$work/src" | cut -f1)
mkdir -p "$mp"
"$pxfs" mount "$mp" --config "$cfg" --foreground >>"$work/mount.log" 2>&1 &
mount_pid=$!
wait_mounted "pxfs mount"
start=$(now)
cp -a "$work/src" "$tokdir/tree"
sync -f "$tokdir"
unmount_px # drains the uploads and commits
record copy.secs "$(since "$start")"

# The checks (no mount running; the node serves them).
measure check "$pxfs" check "$token" --config "$cfg" --json || die "check found damage or could not check"
measure check_data "$pxfs" check "$token" --read-data --config "$cfg" --json ||
    die "check --read-data found damage or could not check"
blocks=$(tail -n 1 "$work/check_data.out" | jq -r .blocks)
checked_files=$(tail -n 1 "$work/check_data.out" | jq -r .files)
((checked_files == files)) || die "the check saw $checked_files files, not $files"

# The plain read: a fresh-cache read-only mount, every file read once.
rm -rf "$cache"
"$pxfs" mount "$mp" --config "$cfg" --foreground --read-only >>"$work/mount.log" 2>&1 &
mount_pid=$!
wait_mounted "pxfs mount (fresh cache)"
drop_kernel_caches
start=$(now)
read_bytes=$(find "$tokdir/tree" -type f -print0 | xargs -0 -P 16 -n 200 cat | wc -c)
record read.secs "$(since "$start")"
[[ $read_bytes == "$src_bytes" ]] || log "note: read $read_bytes bytes, wrote $src_bytes (directory sizes differ)"
unmount_px

mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
rate_of() { awk -v b="$blocks" -v s="$(median "$1.secs")" 'BEGIN { printf "%.0f", b / s }'; }
check_rate=$(rate_of check)
data_rate=$(rate_of check_data)
read_rate=$(rate_of read)
ratio=$(div "$data_rate" "$read_rate")
verdict=$(awk -v r="$ratio" 'BEGIN { print (r != "n/a" && r >= 0.8) ? "met" : "**missed**" }')
report=$(
    cat <<EOF

## Checking a tree: \`pxfs check\` over $files files

Run: $(date -u '+%Y-%m-%d %H:%M') UTC, \`BENCH_CHECK_FILES=$files bash scripts/bench.sh check\`, pxfs $rev,
$(basename "$pxfs") build. Machine: $machine.${note:+ $note}
The tree: $files files of 1-16 KiB ($(mib "$src_bytes") MiB) in directories of 100, one block each
($blocks blocks with the pages); copied in and committed in $(median copy.secs) s.

| What | s | blocks/s | peak RSS, MiB | peak descriptors |
|---|---|---|---|---|
| \`pxfs check\` (presence, block/stat) | $(median check.secs) | $check_rate | $(median check.rss_mib) | $(median check.fds) |
| \`pxfs check --read-data\` (every block fetched and hashed) | $(median check_data.secs) | $data_rate | $(median check_data.rss_mib) | $(median check_data.fds) |
| Plain read: \`cat\` of every file, fresh-cache read-only mount (16 at a time) | $(median read.secs) | $read_rate | | |

\`--read-data\` against the plain read: **${ratio}x** (goal >= 0.8x: $verdict). Descriptors and
RSS are the check process's own (sampled every 0.1 s).
EOF
)
printf '%s\n' "$report"
if [[ $out != - ]]; then printf '%s\n' "$report" >>"$out"; fi
