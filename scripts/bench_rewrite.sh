#!/usr/bin/env bash
# The rewrite benchmark of issue #39 (`bash scripts/bench.sh rewrite`, or this script
# directly). Not part of the tests.
#
# On one sNFT of its own devnet (whose node is the bundled `pxfs node`), what a small change
# in place costs, against a local directory (ext4) and rclone mount (a `local` remote over a
# local directory, --vfs-cache-mode writes; skipped when rclone is not installed):
# - the reference: a new one-chunk file (128 KiB) written and fsynced, BENCH_REWRITE_REF
#   times (issue #39's bound: a small rewrite takes at most 2x this);
# - BENCH_REWRITE_WRITES random 4 KiB `pwrite` + `fsync` (4 KiB-aligned, fresh random bytes
#   each) into a BENCH_REWRITE_MIB file written and committed before: seconds per write, and
#   for pxfs the bytes the node's repository grew per write (`repo/stat` RepoSize), i.e.
#   what each write uploaded; with BENCH_REWRITE_BIG=1 the same into a 4 GiB file;
# - the sparse file: `truncate -s 1G`, one byte written at 512 MiB, fsync: seconds, the
#   node's growth and the growth of the sNFT's usage (`user.pxfs.usage`); on ext4, its
#   allocated bytes.
# The node collects garbage (the devnet runs it with --enable-gc) only past its watermark
# or its period (an hour), so growth within the run is what was uploaded.
#
# Environment:
#   BENCH_REWRITE_MIB=256      the rewritten file's size
#   BENCH_REWRITE_WRITES=30    random 4 KiB writes into it
#   BENCH_REWRITE_BIG=0        1: also the 4 GiB file
#   BENCH_REWRITE_REF=5        one-chunk files for the reference
#   BENCH_LOCAL_DIR=           the local directory to compare with (default: under the work
#                              directory; the report names its file system type)
#   BENCH_DIR=       work directory (default: a new one under /var/tmp), deleted at the end
#   BENCH_BUILD=1    0: use the binary as it is
#   BENCH_SETUP=1    0: skip `scripts/setup.sh --deps-only`
#   BENCH_PXFS=target/release/pxfs   the binary to measure
#   BENCH_OUT=BENCHMARKS.md   the report is appended there ("-": standard output only)
#   BENCH_NOTE=      free text for the report (e.g. what else loads the machine)
#   PXFS_ANVIL=      anvil binary, if neither PATH nor contracts/node_modules has one
# A quick run of the machinery:
#   BENCH_BUILD=0 BENCH_PXFS=target/debug/pxfs BENCH_REWRITE_MIB=16 BENCH_REWRITE_WRITES=5 \
#     BENCH_OUT=- bash scripts/bench.sh rewrite
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh

size_mib=${BENCH_REWRITE_MIB:-256}
writes=${BENCH_REWRITE_WRITES:-30}
big=${BENCH_REWRITE_BIG:-0}
refs=${BENCH_REWRITE_REF:-5}
out=${BENCH_OUT:-BENCHMARKS.md}
note=${BENCH_NOTE:-}
for n in "$size_mib" "$writes" "$refs"; do
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] ||
        { echo "bench rewrite: BENCH_REWRITE_MIB, _WRITES and _REF take whole numbers >= 1" >&2; exit 2; }
done
bench_prepare curl jq python3 openssl getfattr fusermount3 mountpoint
bench_workdir rewrite
mp=$work/mnt
raw=$work/raw.tsv
: >"$raw"
devnet_pid=
mount_pid=
rclone_pid=
rclone_mp=$work/rclone-mnt
have_rclone=0
command -v rclone >/dev/null && have_rclone=1

stop_rclone() {
    [[ -n $rclone_pid ]] || return 0
    fusermount3 -u "$rclone_mp" 2>/dev/null || kill -TERM "$rclone_pid" 2>/dev/null || true
    wait "$rclone_pid" 2>/dev/null || true
    rclone_pid=
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if ((rc != 0)); then
        log "failed (exit $rc); last lines of the logs:"
        tail -n 20 "$work/devnet.log" "$work/mount.log" "$work/rclone.log" >&2 2>/dev/null
    fi
    stop_rclone
    unmount_px
    stop_devnet
    local m
    for m in "$mp" "$rclone_mp"; do
        if mountpoint -q "$m" 2>/dev/null; then fusermount3 -uz "$m"; fi
    done
    rm -rf "$work" "${local_dir:-}"
    log "cleaned up $work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

repo_size() { curl -sS --fail -X POST "$node/api/v0/repo/stat" | jq -r .RepoSize; }
usage_of() { getfattr -n user.pxfs.usage --only-values "$tokdir" 2>/dev/null || echo 0; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
kib() { awk -v b="$1" 'BEGIN { if (b == "n/a") print "n/a"; else printf "%.0f", b / 1024 }'; }

# rewrites PREFIX FILE N SEED: N random 4 KiB-aligned pwrite + fsync into FILE, each write's
# seconds recorded as PREFIX.write.
rewrites() {
    python3 - "$2" "$3" "$4" <<'EOF' | while read -r s; do record "$1.write" "$s"; done
import os, random, sys, time
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(seed)
fd = os.open(path, os.O_WRONLY)
pages = os.fstat(fd).st_size // 4096
for _ in range(n):
    at = rng.randrange(pages) * 4096
    data = os.urandom(4096)
    t = time.monotonic()
    os.pwrite(fd, data, at)
    os.fsync(fd)
    print("%.4f" % (time.monotonic() - t), flush=True)
os.close(fd)
EOF
}

# one_chunk PREFIX DIR N: N new 128 KiB files written and fsynced in DIR (PREFIX.ref).
one_chunk() {
    python3 - "$2" "$3" <<'EOF' | while read -r s; do record "$1.ref" "$s"; done
import os, sys, time
top, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    data = os.urandom(131072)
    t = time.monotonic()
    fd = os.open(os.path.join(top, "ref-%d" % i), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    print("%.4f" % (time.monotonic() - t), flush=True)
EOF
}

# sparse PREFIX FILE: truncate to 1 GiB, one byte at 512 MiB, fsync (PREFIX.sparse.secs).
sparse() {
    local s
    s=$(python3 - "$2" <<'EOF'
import os, sys, time
t = time.monotonic()
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.ftruncate(fd, 1 << 30)
os.pwrite(fd, b"x", 512 << 20)
os.fsync(fd)
os.close(fd)
print("%.4f" % (time.monotonic() - t))
EOF
    )
    record "$1.sparse.secs" "$s"
}

# rewrite_file PREFIX DIR MIB SEED [pxfs]: a MIB file made in DIR (and committed), then the
# rewrites; for pxfs the node's growth per write (PREFIX.grown_per_write).
rewrite_file() {
    local prefix=$1 dir=$2 size=$3 seed=$4 on_pxfs=${5:-}
    gen "$seed" "$size" "$work/src-$size"
    cp "$work/src-$size" "$dir/rewrite-$size"
    # fsync the file (on pxfs: uploaded and committed when it returns; `sync -f` does not
    # wait for uploads), so the node's growth below is the rewrites' alone.
    python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd)' "$dir/rewrite-$size"
    rm -f "$work/src-$size"
    local before=0
    if [[ -n $on_pxfs ]]; then before=$(repo_size); fi
    rewrites "$prefix" "$dir/rewrite-$size" "$writes" "$seed"
    if [[ -n $on_pxfs ]]; then
        record "$prefix.grown_per_write" $((($(repo_size) - before) / writes))
    fi
    rm -f "$dir/rewrite-$size"
}

machine=$(machine_line)
rev=$(revision)
sizes=("$size_mib")
[[ $big == 1 ]] && sizes+=(4096)
log "machine: $machine; pxfs $rev; work dir $work; files of ${sizes[*]} MiB, $writes writes each"
start_devnet "$pxfs" $((1 << 40))
local_dir=${BENCH_LOCAL_DIR:-$work/ext4}/pxfs-bench-rewrite.$$
mkdir -p "$mp" "$local_dir"
local_fs=$(stat -f -c %T "$local_dir")
"$pxfs" mount "$mp" --config "$cfg" --foreground >>"$work/mount.log" 2>&1 &
mount_pid=$!
wait_mounted "pxfs mount"
if ((have_rclone)); then
    mkdir -p "$rclone_mp" "$work/rclone-backing"
    rclone mount "$work/rclone-backing" "$rclone_mp" --vfs-cache-mode writes \
        --cache-dir "$work/rclone-cache" >"$work/rclone.log" 2>&1 &
    rclone_pid=$!
    for _ in $(seq 200); do mountpoint -q "$rclone_mp" && break; sleep 0.05; done
    mountpoint -q "$rclone_mp" || die "rclone mount did not come up"
fi

# The reference: new one-chunk files.
before=$(repo_size)
one_chunk px "$tokdir" "$refs"
record px.ref_grown $((($(repo_size) - before) / refs))
one_chunk ext4 "$local_dir" "$refs"

# The rewrites.
for size in "${sizes[@]}"; do
    rewrite_file "px$size" "$tokdir" "$size" 39 pxfs
    rewrite_file "ext4$size" "$local_dir" "$size" 39
    if ((have_rclone)); then rewrite_file "rclone$size" "$rclone_mp" "$size" 39; fi
done

# The sparse file.
before=$(repo_size)
usage_before=$(usage_of)
sparse px "$tokdir/sparse"
sync -f "$tokdir"
record px.sparse.grown $(($(repo_size) - before))
record px.sparse.usage $(($(usage_of) - usage_before))
sparse ext4 "$local_dir/sparse"
record ext4.sparse.stored "$(du -B1 "$local_dir/sparse" | cut -f1)"
if ((have_rclone)); then sparse rclone "$rclone_mp/sparse"; fi
stop_rclone
unmount_px

ref=$(median px.ref)
rows=""
for size in "${sizes[@]}"; do
    px_w=$(median "px$size.write")
    rows+="| ${size} MiB file: 4 KiB pwrite + fsync | $px_w | $(kib "$(median "px$size.grown_per_write")") | $(div "$px_w" "$ref")x | $(median "ext4$size.write") | $( ((have_rclone)) && median "rclone$size.write" || echo n/a) |"$'\n'
done
report=$(
    cat <<EOF

## Small rewrites in place (issue #39)

Run: $(date -u '+%Y-%m-%d %H:%M') UTC, \`BENCH_REWRITE_MIB=$size_mib BENCH_REWRITE_WRITES=$writes BENCH_REWRITE_BIG=$big bash scripts/bench.sh rewrite\`,
pxfs $rev, $(basename "$pxfs") build. Machine: $machine.${note:+ $note}
The devnet's bundled node on the same machine; rclone: $( ((have_rclone)) && rclone version 2>/dev/null | head -n 1 || echo "not installed") (a \`local\` remote, --vfs-cache-mode writes).
Medians; "node grew" is the node's repository growth (\`repo/stat\`) per operation: what it uploaded.

| What | pxfs s | pxfs node grew, KiB | pxfs vs one-chunk file | local dir ($local_fs) s | rclone mount s |
|---|---|---|---|---|---|
| Reference: a new 128 KiB file, write + fsync | $ref | $(kib "$(median px.ref_grown)") | 1x | $(median ext4.ref) | |
${rows}| 1 GiB sparse file, one byte at 512 MiB, fsync | $(median px.sparse.secs) | $(kib "$(median px.sparse.grown)") | | $(median ext4.sparse.secs) | $( ((have_rclone)) && median rclone.sparse.secs || echo n/a) |

The sparse file: the sNFT's usage grew by $(mib "$(median px.sparse.usage)") MiB on pxfs; the local dir allocated
$(kib "$(median ext4.sparse.stored)") KiB for it. Issue #39's goal: a 4 KiB rewrite uploads at most one sealed
chunk plus 64 KiB of metadata (about 192 KiB) and takes at most 2x the reference.
EOF
)
printf '%s\n' "$report"
if [[ $out != - ]]; then printf '%s\n' "$report" >>"$out"; fi
