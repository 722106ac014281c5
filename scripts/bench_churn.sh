#!/usr/bin/env bash
# The churn soak of issue #41 (`bash scripts/bench.sh churn [--minutes N]`, or this script
# directly). Not part of the tests.
#
# On one sNFT of its own devnet, for N minutes (default 30): rounds of 300 small files
# (100 B to 30 KB) created, a third of them renamed, all deleted, and one 1 KB file kept per
# round (at most 1,000 kept: the live tree stays under 2 MB), as backup tools, build trees,
# mail and package caches do. Once a minute it samples the mount daemon's RSS and open
# descriptors, the cache's staging and journal, and the node's repository, and prints them
# as a table; then the bytes written against the bytes that reached the node (the growth of
# its repository, manifests included) and how long the unmount took to drain.
#
# Environment:
#   BENCH_DIR=       work directory (default: a new one under /var/tmp), deleted at the end
#   BENCH_BUILD=1    0: use the binary as it is
#   BENCH_SETUP=1    0: skip `scripts/setup.sh --deps-only`
#   BENCH_PXFS=target/release/pxfs   the binary to measure
#   BENCH_NOTE=      free text for the report (e.g. what else loads the machine)
#   PXFS_ANVIL=      anvil binary, if neither PATH nor contracts/node_modules has one
# A quick run of the machinery:
#   BENCH_BUILD=0 BENCH_PXFS=target/debug/pxfs bash scripts/bench.sh churn --minutes 2
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh

minutes=30
while (($#)); do
    case $1 in
        --minutes) minutes=${2:?--minutes needs a number}; shift 2 ;;
        *) echo "bench churn: unknown argument $1 (--minutes N)" >&2; exit 2 ;;
    esac
done
[[ $minutes =~ ^[0-9]+$ && $minutes -ge 1 ]] || { echo "bench churn: --minutes takes a whole number >= 1" >&2; exit 2; }
note=${BENCH_NOTE:-}

if [[ $(id -u) == 0 && ${BENCH_SETUP:-1} != 0 ]]; then
    bash scripts/setup.sh --deps-only
fi
for tool in curl jq python3 fusermount3 mountpoint; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
done
pxfs=$(realpath -m "${BENCH_PXFS:-target/release/pxfs}")
if [[ ${BENCH_BUILD:-1} != 0 ]]; then cargo build --release --locked; fi
[[ -x $pxfs ]] || { echo "bench: $pxfs missing (BENCH_BUILD=0 needs a build)" >&2; exit 1; }

work=${BENCH_DIR:-$(mktemp -d /var/tmp/pxfs-bench-churn.XXXXXX)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
mp=$work/mnt
devnet_pid=
mount_pid=
churn_pid=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    [[ -n $churn_pid ]] && kill "$churn_pid" 2>/dev/null && wait "$churn_pid" 2>/dev/null
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

mib() { awk -v b="${1:-0}" 'BEGIN { printf "%.1f", b / 1048576 }'; }
# Files come and go under du while it walks (it then exits non-zero): what it counted.
bytes_of() { { du -sb "$1" 2>/dev/null || true; } | awk 'NR == 1 { b = $1 } END { print b + 0 }'; }

machine=$(machine_line)
rev=$(revision)
log "machine: $machine; pxfs $rev; work dir $work"
start_devnet "$pxfs" $((1 << 40))
node_repo=$(curl -sS --fail -X POST "$node/api/v0/repo/stat" | jq -r '.RepoPath')
mkdir -p "$mp"
"$pxfs" mount "$mp" --config "$cfg" --foreground >>"$work/mount.log" 2>&1 &
mount_pid=$!
wait_mounted "pxfs mount"
delay=$(grep -Po '^writeback_delay_ms\s*=\s*\K[0-9]+' "$cfg" || echo "5000 (the default)")
log "mounted sNFT $token at $mp (daemon pid $mount_pid); write-back delay (ms): $delay"

# The churn: writes its running totals (rounds, files, bytes) to $work/churn.count.
python3 - "$tokdir/churn" "$work/churn.count" <<'EOF' &
import os, random, sys, time
top, count = sys.argv[1], sys.argv[2]
os.makedirs(os.path.join(top, "keep"), exist_ok=True)
rng = random.Random(41)
rounds = files = written = 0
while True:
    d = os.path.join(top, "r%d" % (rounds % 4))
    os.makedirs(d, exist_ok=True)
    names = []
    for i in range(300):
        # Unique bytes: the node would otherwise deduplicate equal files.
        body = b"%d-%d-" % (rounds, i) + rng.randbytes(rng.randint(100, 30000))
        p = os.path.join(d, "f%d" % i)
        with open(p, "wb") as f:
            f.write(body)
        names.append(p)
        written += len(body)
    for i in range(0, 300, 3):
        os.rename(names[i], names[i] + ".renamed")
        names[i] += ".renamed"
    for p in names:
        os.unlink(p)
    kept = b"%d-" % rounds + rng.randbytes(1024)
    with open(os.path.join(top, "keep", "k%d" % (rounds % 1000)), "wb") as f:
        f.write(kept)
    written += len(kept)
    files += 301
    rounds += 1
    with open(count + ".tmp", "w") as f:
        f.write("%d %d %d\n" % (rounds, files, written))
    os.replace(count + ".tmp", count)
EOF
churn_pid=$!

node_start=$(bytes_of "$node_repo")
rows=()
max_first=(0 0 0) # RSS, staging, journal: the first ten minutes' maxima
max_last=(0 0 0)  # and the last ten minutes'
start=$(now)
for m in $(seq 1 "$minutes"); do
    # Sample at each whole minute since the start.
    while (($(now) - start < m * 60 * 1000000000)); do
        kill -0 "$churn_pid" 2>/dev/null || die "the churn stopped"
        kill -0 "$mount_pid" 2>/dev/null || die "the mount daemon exited"
        sleep 1
    done
    rss=$(awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$mount_pid/status")
    fds=$(ls "/proc/$mount_pid/fd" | wc -l)
    staging=$(bytes_of "$cache/staging")
    journal=$(bytes_of "$cache/journal")
    repo=$(bytes_of "$node_repo")
    read -r rounds files written <"$work/churn.count"
    rows+=("| $m | $(mib "$rss") | $fds | $(mib "$staging") | $(mib "$journal") | $(mib $((repo - node_start))) | $files | $(mib "$written") |")
    log "${rows[-1]}"
    i=0
    for v in "$rss" "$staging" "$journal"; do
        if ((m <= 10)) && ((v > max_first[i])); then max_first[i]=$v; fi
        if ((m > minutes - 10)) && ((v > max_last[i])); then max_last[i]=$v; fi
        i=$((i + 1))
    done
done
kill "$churn_pid"
wait "$churn_pid" 2>/dev/null || true
churn_pid=
read -r rounds files written <"$work/churn.count"
drain_start=$(now)
unmount_px
drain=$(since "$drain_start")
uploaded=$(($(bytes_of "$node_repo") - node_start))

echo
echo "## Churn soak (issue #41): $minutes minutes, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo
echo "Machine: $machine. pxfs $rev ($pxfs). Write-back delay (ms): $delay.${note:+ $note}"
echo
echo "| minute | daemon RSS (MiB) | descriptors | staging (MiB) | journal (MiB) | node repo growth (MiB) | files created | MiB written |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
echo "Written: $(mib "$written") MiB in $files files ($rounds rounds); reached the node: $(mib "$uploaded") MiB" \
    "($(awk -v u="$uploaded" -v w="$written" 'BEGIN { printf "%.1f", 100 * u / w }') % of written; target at most 10 %)."
if ((minutes >= 20)); then
    names=(RSS staging journal)
    for i in 0 1 2; do
        echo "${names[i]}: maximum of the first ten minutes $(mib "${max_first[i]}") MiB, of the last ten $(mib "${max_last[i]}") MiB" \
            "($(awk -v a="${max_first[i]}" -v b="${max_last[i]}" 'BEGIN { if (a == 0) print "n/a"; else printf "%+.0f %%", 100 * (b - a) / a }'); target within 20 %)."
    done
fi
echo "Unmount drain after the churn: ${drain} s."
