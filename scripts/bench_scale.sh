#!/usr/bin/env bash
# The scale parts of the benchmark (`bash scripts/bench.sh scale` or `... dirs`, or this
# script directly with the part as its argument). Not part of the tests.
#
#   scale  issue #13: `cp -a` of a generated tree of BENCH_SCALE_FILES files (0-16 KiB) in
#          BENCH_SCALE_DIRS directories into a mount whose daemon runs under
#          `ulimit -n BENCH_SCALE_NOFILE`, against the same copy to local disk; peak RSS, open
#          fds, journal and staging size, commits published during the copy (and the longest
#          gap between two), time from the copy's end to the last commit; then a fresh-cache
#          remount: `find | wc -l` time and peak RSS.
#   dirs   issue #14: in directories of BENCH_DIR_SIZES entries, one-file change + `fsync`
#          latency and the bytes that commit added to the node; fresh-cache `stat` of one
#          name and `ls -l` of the directory at the sizes of 100,000 and more.
#
# Environment:
#   BENCH_SCALE_FILES=1000000  BENCH_SCALE_DIRS=1000  BENCH_SCALE_NOFILE=1024
#   BENCH_DIR_SIZES="1000 10000 100000 1000000"  BENCH_DIR_REPEAT=5
#   BENCH_DIR=  BENCH_OUT=BENCHMARKS.md  BENCH_BUILD=1  BENCH_SETUP=1
#   BENCH_PXFS=target/release/pxfs  BENCH_NOTE=  PXFS_ANVIL=
# A quick run of the machinery:
#   BENCH_SCALE_FILES=3000 BENCH_SCALE_DIRS=30 BENCH_DIR_SIZES="100 1000" BENCH_OUT=/tmp/b.md \
#     bash scripts/bench.sh scale
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh

part=${1:?usage: bench_scale.sh scale|dirs}
[[ $part == scale || $part == dirs ]] || { echo "bench: unknown part $part (scale or dirs)" >&2; exit 2; }
n_files=${BENCH_SCALE_FILES:-1000000}
n_dirs=${BENCH_SCALE_DIRS:-1000}
nofile=${BENCH_SCALE_NOFILE:-1024}
dir_sizes=${BENCH_DIR_SIZES:-1000 10000 100000 1000000}
dir_repeat=${BENCH_DIR_REPEAT:-5}
out=${BENCH_OUT:-BENCHMARKS.md}
note=${BENCH_NOTE:-}

bench_prepare curl jq python3 fusermount3 mountpoint getfattr prlimit
bench_workdir "$part"
mp=$work/mnt
devdir=$work/devnet
devnet_pid=
mount_pid=
sampler_pid=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [[ -n $sampler_pid ]] && kill "$sampler_pid" 2>/dev/null
    if ((rc != 0)); then
        log "failed (exit $rc); last lines of the logs:"
        tail -n 20 "$work/devnet.log" "$work/mount.log" >&2
        # The work dir goes (the node's repo is tens of GB at the largest sizes); its logs stay.
        mkdir -p "$work.logs" && cp "$work"/*.log "$work.logs/" && log "logs kept in $work.logs"
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

# The daemon runs in the foreground under the descriptor limit, as a user's `ulimit -n` would
# set it; the limit is checked in /proc afterwards.
mount_px() {
    (ulimit -n "$nofile" && exec "$pxfs" mount "$mp" --config "$cfg" --foreground) >>"$work/mount.log" 2>&1 &
    mount_pid=$!
    wait_mounted "pxfs mount"
    grep -q "^Max open files *$nofile " "/proc/$mount_pid/limits" || die "the daemon's fd limit is not $nofile"
}
fresh_remount() { unmount_px; rm -rf "$cache"; mount_px; }
root_cid() { getfattr --only-values -n user.pxfs.root "$tokdir" 2>/dev/null || echo none; }
# Bytes of the node's repository on disk (its blocks are files; nothing is collected meanwhile).
node_bytes() { du -sb "$node_repo" | cut -f1; }

# sample FILE: every second, one line "unix_s fds rss_kib journal_bytes staging_bytes root".
sample() {
    # Files come and go under du while it walks (it then exits non-zero): a sample is what
    # it counted, never the end of sampling.
    set +e +o pipefail
    local f=$1 n=0 staging=0
    while kill -0 "$mount_pid" 2>/dev/null; do
        # du over a large staging tree is slow: every fifth second.
        if ((n % 5 == 0)); then staging=$(du -sb "$cache/staging" 2>/dev/null | cut -f1); fi
        printf '%s %s %s %s %s %s\n' "$(date +%s)" \
            "$(ls "/proc/$mount_pid/fd" 2>/dev/null | wc -l)" \
            "$(awk '/^VmRSS/ { print $2 }' "/proc/$mount_pid/status" 2>/dev/null)" \
            "$(du -sb "$cache/journal" 2>/dev/null | cut -f1)" "${staging:-0}" "$(root_cid)" >>"$f"
        n=$((n + 1))
        sleep 1
    done
}

machine=$(machine_line)
rev=$(revision)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
log "machine: $machine; pxfs $rev; work dir $work ($(df -h --output=avail "$work" | tail -1 | tr -d ' ') free)"

start_devnet "$pxfs" $((1 << 40))
node_repo=$(curl -sS --fail -X POST "$node/api/v0/repo/stat" | jq -r '.RepoPath')
mkdir -p "$mp"
mount_px
log "mounted sNFT $token at $mp (daemon pid $mount_pid, ulimit -n $nofile)"

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); }
# met VALUE OP TARGET: "met" or "**missed**".
met() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { if (v == "n/a") print ""; else if (op == ">=" ? v + 0 >= t + 0 : v + 0 < t + 0) print "met"; else print "**missed**" }'; }

if [[ $part == scale ]]; then
    log "generating $n_files files in $n_dirs directories"
    python3 - "$work/src" "$n_files" "$n_dirs" <<'EOF'
import os, random, sys
top, n, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(13)
blob = rng.randbytes(1 << 20)
for d in range(dirs):
    os.makedirs(os.path.join(top, "d%04d" % d))
for i in range(n):
    size = rng.randint(0, 16384)
    off = rng.randint(0, len(blob) - size - 8)
    with open(os.path.join(top, "d%04d" % (i % dirs), "f%07d" % i), "wb") as f:
        # A unique prefix: the node would otherwise deduplicate equal small files.
        f.write(i.to_bytes(8, "little") + blob[off : off + size])
EOF
    sync
    log "local copy"
    t=$(now)
    cp -a "$work/src" "$work/local-copy"
    sync -f "$work/local-copy"
    local_secs=$(since "$t")
    rm -rf "$work/local-copy"
    sync

    log "copy into the mount"
    reset_peak
    sample "$work/samples.txt" &
    sampler_pid=$!
    t=$(now)
    cp -a "$work/src" "$tokdir/scale"
    copy_secs=$(since "$t")
    t2=$(now)
    sync "$tokdir"
    commit_secs=$(since "$t2")
    total_secs=$(awk -v a="$copy_secs" -v b="$commit_secs" 'BEGIN { printf "%.3f", a + b }')
    rss_copy=$(peak_mib)
    kill "$sampler_pid" 2>/dev/null || die "the sampler stopped during the copy"
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
    read -r peak_fds peak_journal peak_staging < <(awk '{ if ($2 > f) f = $2; if ($4 > j) j = $4; if ($5 > s) s = $5 } END { print f + 0, j + 0, s + 0 }' "$work/samples.txt")
    # Commits seen during the copy: changes of the published root in the samples; the longest
    # time the root stayed the same while the copy ran.
    read -r commits max_gap < <(awk '
        NR == 1 { last = $6; since = $1; next }
        $6 != last { n++; gap = $1 - since; if (gap > g) g = gap; last = $6; since = $1 }
        END { if ($1 - since > g) g = $1 - since; print n + 0, g + 0 }' "$work/samples.txt")
    files_s=$(awk -v n="$n_files" -v s="$total_secs" 'BEGIN { printf "%.0f", n / s }')
    local_s=$(awk -v n="$n_files" -v s="$local_secs" 'BEGIN { printf "%.0f", n / s }')
    row "\`cp -a\` of $n_files files, files/s incl. the final commit (local \`cp -a\` + \`sync -f\`)" "$files_s" "$local_s" "≥ 1,000/s" "$(met "$files_s" ">=" 1000)"
    row "Peak RSS during the copy, MiB" "$rss_copy" "" "< 300 MiB" "$(met "$rss_copy" "<" 300)"
    row "Peak open fds (daemon under \`ulimit -n $nofile\`)" "$peak_fds" "" "< 256" "$(met "$peak_fds" "<" 256)"
    row "Peak journal size, bytes" "$peak_journal" "" "" ""
    row "Peak staging size, bytes (sampled every 5 s)" "$peak_staging" "" "" ""
    row "Commits published during the copy (root changes seen once a second)" "$commits" "" "" ""
    row "Longest time without a new commit during the copy, s" "$max_gap" "" "≤ 10 s" "$(met "$max_gap" "<" 10.001)"
    row "Copy's end to the last commit (\`sync\` of the sNFT directory), s" "$commit_secs" "" "" ""

    log "fresh-cache remount, find"
    fresh_remount
    reset_peak
    t=$(now)
    found=$(find "$tokdir/scale" | wc -l)
    find_secs=$(since "$t")
    rss_find=$(peak_mib)
    ((found == n_files + n_dirs + 1)) || die "find saw $found names, expected $((n_files + n_dirs + 1))"
    t=$(now)
    find "$work/src" | wc -l >/dev/null
    find_local=$(since "$t")
    row "\`find | wc -l\` after a fresh-cache remount, s (local, warm)" "$find_secs" "$find_local" "" ""
    row "Peak RSS during that \`find\`, MiB" "$rss_find" "" "< 300 MiB" "$(met "$rss_find" "<" 300)"
    title="Scale: $n_files files"
    marker=bench-scale
else
    for size in $dir_sizes; do
        d=$tokdir/dir-$size
        log "directory of $size entries"
        mkdir "$d"
        python3 - "$d" "$size" <<'EOF'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open(os.path.join(d, "photo-%07d.jpg" % i), "wb") as f:
        f.write(i.to_bytes(8, "little"))
EOF
        # Commit the directory's creation first (FUSE does not pass sync(1) on): an fsync
        # also waits for everything journaled before it, so without this the first
        # measurement would time the upload backlog of the whole directory.
        python3 -c 'import os, sys; f = os.open(sys.argv[1], os.O_RDONLY); os.fsync(f); os.close(f)' "$d"
        lat=()
        added=()
        for r in $(seq "$dir_repeat"); do
            before=$(node_bytes)
            t=$(now)
            python3 -c 'import os, sys; f = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC); os.write(f, os.urandom(64)); os.fsync(f); os.close(f)' "$d/changed-$r.txt"
            lat+=("$(since "$t")")
            added+=("$(($(node_bytes) - before))")
        done
        med() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
        row "One-file change + \`fsync\` in a directory of $size, s (median of $dir_repeat)" "$(med "${lat[@]}")" "" "" ""
        row "Bytes added to the node by that commit, directory of $size" "$(med "${added[@]}")" "" "< 65,536" "$(met "$(med "${added[@]}")" "<" 65536)"
        eval "lat_$size=$(med "${lat[@]}")"
        if ((size >= 100000)); then
            fresh_remount
            t=$(now)
            stat "$d/photo-$(printf %07d $((size / 2))).jpg" >/dev/null
            row "Fresh-cache \`stat\` of one name in a directory of $size, s" "$(since "$t")" "" "" ""
            fresh_remount
            t=$(now)
            ls -l "$d" >/dev/null
            row "Fresh-cache \`ls -l\` of a directory of $size, s" "$(since "$t")" "" "" ""
        fi
    done
    if [[ -n ${lat_1000:-} && -n ${lat_100000:-} ]]; then
        ratio=$(awk -v a="$lat_100000" -v b="$lat_1000" 'BEGIN { printf "%.2f", a / b }')
        row "Commit latency, 100,000 entries / 1,000 entries" "${ratio}×" "" "≤ 3×" "$(met "$ratio" "<" 3.001)"
    fi
    title="Huge directories"
    marker=bench-dirs
fi

table=$(
    echo "| Measurement | pxfs mount | baseline | target | |"
    echo "|---|---:|---:|---|---|"
    printf '%s\n' "${rows[@]}"
)
report=$(
    cat <<EOF
<!-- $marker:begin (written by scripts/bench.sh $part; edit outside these markers) -->
## $title

Run: $started_at, \`bash scripts/bench.sh $part\` (BENCH_SCALE_FILES=$n_files BENCH_SCALE_DIRS=$n_dirs BENCH_SCALE_NOFILE=$nofile BENCH_DIR_SIZES="$dir_sizes"), pxfs $rev

- Machine: $machine; load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)${note:+
- Note: $note}

$table
<!-- $marker:end -->
EOF
)
echo
echo "$report"
if [[ -f $out ]] && grep -q "^<!-- $marker:begin" "$out"; then
    printf '%s\n' "$report" >"$work/report.md"
    awk -v rf="$work/report.md" -v b="^<!-- $marker:begin" -v e="^<!-- $marker:end" '
        $0 ~ b { while ((getline l <rf) > 0) print l; skip = 1; next }
        $0 ~ e { skip = 0; next }
        !skip { print }' "$out" >"$out.new"
    mv "$out.new" "$out"
else
    printf '\n%s\n' "$report" >>"$out"
fi
log "wrote $out"
