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
# - the largest rewritten file (4 GiB with BENCH_REWRITE_BIG=1) changed on a fresh cache:
#   the mount is remounted with an empty cache and 4 KiB written over a chunk boundary in
#   the middle of the file; the chunks it fetched from the node (the daemon's chunk cache misses, one per
#   object: a 128 KiB chunk fits one cache chunk) against issue #39's bound of two.
# - with BENCH_REWRITE_CHURN_MIN=N (issue #39: 15), N minutes of sustained random rewrites
#   by BENCH_REWRITE_PROCS processes (default 4), each on 12 files of its own: 70 % writes
#   of 4 KiB to 1 MiB at random offsets (files up to 48 MiB, sparse; a third fsynced), 10 %
#   truncates (to between half and all of the size), 15 % renames over each other, 5 %
#   deletes (so the tree grows to a few GiB, as a working set does); then every file fsynced, one
#   collection (`repo/gc`), and the node's repository against the tree's usage (issue #39:
#   at most 1.5x), with the largest repository seen during the run (sampled every 10 s).
# The node collects garbage (the devnet runs it with --enable-gc) only past its watermark
# or its period (an hour), so growth within the run is what was uploaded.
#
# Environment:
#   BENCH_REWRITE_MIB=256      the rewritten file's size
#   BENCH_REWRITE_WRITES=30    random 4 KiB writes into it
#   BENCH_REWRITE_BIG=0        1: also the 4 GiB file
#   BENCH_REWRITE_REF=5        one-chunk files for the reference
#   BENCH_REWRITE_CHURN_MIN=0  minutes of sustained random rewrites (0: none)
#   BENCH_REWRITE_PROCS=4      processes of the sustained rewrites
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
churn_min=${BENCH_REWRITE_CHURN_MIN:-0}
procs=${BENCH_REWRITE_PROCS:-4}
out=${BENCH_OUT:-BENCHMARKS.md}
note=${BENCH_NOTE:-}
[[ $churn_min =~ ^[0-9]+$ ]] || { echo "bench rewrite: BENCH_REWRITE_CHURN_MIN takes whole minutes" >&2; exit 2; }
for n in "$size_mib" "$writes" "$refs" "$procs"; do
    [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] ||
        { echo "bench rewrite: BENCH_REWRITE_MIB, _WRITES, _REF and _PROCS take whole numbers >= 1" >&2; exit 2; }
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
    # The largest file on pxfs stays for the fresh-cache change.
    [[ -n $on_pxfs && $size == "$fresh_size" ]] || rm -f "$dir/rewrite-$size"
}

# misses: the mount daemon's chunk cache misses so far (its metrics endpoint).
misses() {
    curl -sS --fail "http://$metrics_at/metrics" |
        awk '/^pxfs_chunk_cache_misses_total / { print $2; found = 1 } END { if (!found) print 0 }'
}

# fresh_cache_change: remount pxfs on an empty cache (metrics on), change 4 KiB over the
# chunk boundary at the middle of the largest file, fsync; the chunks fetched
# (px.fresh.fetched) and the seconds (px.fresh.secs). Leaves pxfs mounted on that cache.
fresh_cache_change() {
    unmount_px
    metrics_at=127.0.0.1:$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local fresh_cfg=$work/fresh.toml before s
    python3 - "$cfg" "$fresh_cfg" "$work/fresh-cache" "$metrics_at" <<'EOF'
import sys, tomllib
src, dst, cache, listen = sys.argv[1:]
text = open(src).read()
old = tomllib.loads(text)["cache"]["dir"]
assert text.count('"%s"' % old) == 1, "the cache dir appears once"
text = text.replace('"%s"' % old, '"%s"' % cache)
open(dst, "w").write(text + '\n[metrics]\nlisten = "%s"\n' % listen)
EOF
    "$pxfs" mount "$mp" --config "$fresh_cfg" --foreground >>"$work/mount.log" 2>&1 &
    mount_pid=$!
    wait_mounted "pxfs mount (fresh cache)"
    ls -l "$tokdir" >/dev/null
    before=$(misses)
    s=$(python3 - "$tokdir/rewrite-$fresh_size" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
middle = os.fstat(fd).st_size // 2 // 131072 * 131072
t = time.monotonic()
os.pwrite(fd, os.urandom(4096), middle - 2048)
os.fsync(fd)
print("%.4f" % (time.monotonic() - t))
os.close(fd)
EOF
    )
    record px.fresh.secs "$s"
    record px.fresh.fetched $(($(misses) - before))
    rm -f "$tokdir/rewrite-$fresh_size"
}

# churn: BENCH_REWRITE_PROCS writers for BENCH_REWRITE_CHURN_MIN minutes under
# $tokdir/churn-N, then every file fsynced and one collection; records the repository
# before and after it, its largest sample during the run, the usage and the operations.
churn() {
    local deadline pids=() i max=0 r ops=0 n
    deadline=$(($(date +%s) + churn_min * 60))
    for ((i = 0; i < procs; i++)); do
        python3 - "$tokdir/churn-$i" "$i" "$deadline" >"$work/churn-$i.ops" <<'EOF' &
import os, random, sys, time
top, seed, deadline = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
rng = random.Random(seed)
os.makedirs(top, exist_ok=True)
names = [os.path.join(top, "f%d" % i) for i in range(12)]
ops = 0
while time.time() < deadline:
    name = rng.choice(names)
    r = rng.random()
    try:
        if r < 0.7:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT, 0o644)
            size = os.fstat(fd).st_size
            at = min(rng.randrange(0, size + (4 << 20)), 48 << 20)
            os.pwrite(fd, os.urandom(rng.choice([4096, 65536, 1 << 20])), at)
            if rng.random() < 0.33:
                os.fsync(fd)
            os.close(fd)
        elif r < 0.8:
            size = os.path.getsize(name)
            os.truncate(name, rng.randrange(size // 2, size + 1))
        elif r < 0.95:
            os.rename(name, rng.choice(names))
        else:
            os.unlink(name)
    except FileNotFoundError:
        pass
    ops += 1
print(ops)
EOF
        pids+=($!)
    done
    while (($(date +%s) < deadline)); do
        r=$(repo_size)
        ((r > max)) && max=$r
        sleep 10
    done
    for i in "${pids[@]}"; do wait "$i"; done
    for ((i = 0; i < procs; i++)); do
        n=$(cat "$work/churn-$i.ops")
        ops=$((ops + n))
    done
    # Everything committed: each file fsynced (a commit covers the whole tree).
    python3 - "$tokdir" <<'EOF'
import os, sys
for d, _, files in os.walk(sys.argv[1]):
    for f in files:
        fd = os.open(os.path.join(d, f), os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
EOF
    record churn.ops "$ops"
    record churn.max_repo "$max"
    record churn.usage "$(usage_of)"
    record churn.repo_before "$(repo_size)"
    curl -sS --fail -X POST "$node/api/v0/repo/gc" >/dev/null
    record churn.repo_after "$(repo_size)"
}

machine=$(machine_line)
rev=$(revision)
sizes=("$size_mib")
[[ $big == 1 ]] && sizes+=(4096)
fresh_size=${sizes[-1]}
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
# (The fresh-cache change first: the churn's collection then also frees its file.)
fresh_cache_change
if ((churn_min > 0)); then churn; fi
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
The devnet's bundled node on the same machine; rclone: $( ((have_rclone)) && rclone version 2>/dev/null | sed -n 1p || echo "not installed") (a \`local\` remote, --vfs-cache-mode writes).
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
report+=$'\n\n'"The $fresh_size MiB file on a fresh cache (remounted with an empty cache): 4 KiB written over the chunk boundary in its middle and fsynced fetched $(median px.fresh.fetched) chunks from the node (issue #39's bound: 2) and took $(median px.fresh.secs) s."
if ((churn_min > 0)); then
    usage=$(median churn.usage)
    report+=$'\n\n'"Sustained random rewrites: $procs processes for $churn_min minutes ($(median churn.ops) operations: 70 % writes of 4 KiB to 1 MiB at random offsets in files up to 48 MiB, a third of them fsynced; 10 % truncates, 15 % renames, 5 % deletes). Then the tree's usage was $(mib "$usage") MiB; the node's repository $(mib "$(median churn.repo_before)") MiB before one collection (\`repo/gc\`) and $(mib "$(median churn.repo_after)") MiB after: $(div "$(median churn.repo_after)" "$usage")x the usage (issue #39's bound: 1.5x). Largest repository sampled during the run (the node collects past its watermark on its own): $(mib "$(median churn.max_repo)") MiB."
fi
printf '%s\n' "$report"
if [[ $out != - ]]; then printf '%s\n' "$report" >>"$out"; fi
