#!/usr/bin/env bash
# The churn soak of issue #41 (`bash scripts/bench.sh churn [--minutes N]`, or this script
# directly). Not part of the tests.
#
# On one sNFT of its own devnet, for N minutes (default 30): rounds of 300 small files
# (100 B to 30 KB) created, a third of them renamed, all deleted, and one 1 KB file kept per
# round (at most 1,000 kept: the live tree stays under 2 MB), as backup tools, build trees,
# mail and package caches do. Once a minute it samples the mount daemon's RSS and open
# descriptors, the cache's staging and journal, and the node's repository, and prints them
# as a table (the maxima of RSS, staging and journal are sampled every 5 s); then the bytes
# written against the bytes that reached the node (the growth of its repository, manifests
# included), how long the unmount took to drain, and the verdicts of issue #41's Done-when:
# the last ten minutes' maxima of RSS, staging and journal within 20 % of the first ten
# minutes' (halves of the run when it is shorter than 20 minutes), the bytes uploaded at
# most 10 % of the bytes written, the drain within a minute.
#
# --mixed: the churn plus a large file (BENCH_BIG_MIB, default 128 MiB) rewritten every
# BENCH_BIG_EVERY seconds (default 150), deleted 30 s after every other rewrite. Large files
# reach the node while they are written (live uploads), deleted or not, so the upload
# verdict then counts the small files only (uploaded minus the large files' bytes).
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
mixed=0
while (($#)); do
    case $1 in
        --minutes) minutes=${2:?--minutes needs a number}; shift 2 ;;
        --mixed) mixed=1; shift ;;
        *) echo "bench churn: unknown argument $1 (--minutes N, --mixed)" >&2; exit 2 ;;
    esac
done
big_mib=${BENCH_BIG_MIB:-128}
big_every=${BENCH_BIG_EVERY:-150}
[[ $big_mib =~ ^[0-9]+$ && $big_every =~ ^[0-9]+$ && $big_every -ge 60 ]] ||
    { echo "bench churn: BENCH_BIG_MIB takes MiB, BENCH_BIG_EVERY seconds >= 60" >&2; exit 2; }
[[ $minutes =~ ^[0-9]+$ && $minutes -ge 1 ]] || { echo "bench churn: --minutes takes a whole number >= 1" >&2; exit 2; }
note=${BENCH_NOTE:-}

bench_prepare curl jq python3 fusermount3 mountpoint
bench_workdir churn
mp=$work/mnt
devnet_pid=
mount_pid=
churn_pid=
big_pid=

stop_writers() {
    local p
    for p in $churn_pid $big_pid; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    churn_pid=
    big_pid=
    return 0
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    stop_writers
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

# --mixed: the large file. Its running totals (rewrites, bytes written) go to $work/big.count.
echo "0 0" >"$work/big.count"
if ((mixed)); then
    python3 - "$tokdir/big" "$work/big.count" "$big_mib" "$big_every" <<'EOF' &
import os, sys, time
path, count, mib, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rewrites = written = 0
while True:
    started = time.monotonic()
    with open(path, "wb") as f:
        for _ in range(mib):
            f.write(os.urandom(1 << 20))
    rewrites += 1
    written += mib << 20
    time.sleep(30)
    if rewrites % 2 == 0:
        os.unlink(path)
    with open(count + ".tmp", "w") as f:
        f.write("%d %d\n" % (rewrites, written))
    os.replace(count + ".tmp", count)
    time.sleep(max(0, every - (time.monotonic() - started)))
EOF
    big_pid=$!
    log "mixed: a ${big_mib} MiB file rewritten every ${big_every} s, deleted after every other rewrite"
fi

# The windows the verdicts compare: the first and the last ten minutes (halves of a
# shorter run).
window=$((minutes >= 20 ? 10 : (minutes + 1) / 2))
node_start=$(bytes_of "$node_repo")
rows=()
max_first=(0 0 0) # RSS, staging, journal: the first window's maxima
max_last=(0 0 0)  # and the last window's
start=$(now)
for m in $(seq 1 "$minutes"); do
    # Maxima every 5 s; a table row at each whole minute since the start.
    while true; do
        kill -0 "$churn_pid" 2>/dev/null || die "the churn stopped"
        [[ -z $big_pid ]] || kill -0 "$big_pid" 2>/dev/null || die "the large-file writer stopped"
        kill -0 "$mount_pid" 2>/dev/null || die "the mount daemon exited"
        rss=$(awk '/^VmRSS/ { print $2 * 1024 }' "/proc/$mount_pid/status")
        staging=$(bytes_of "$cache/staging")
        journal=$(bytes_of "$cache/journal")
        i=0
        for v in "$rss" "$staging" "$journal"; do
            if ((m <= window)) && ((v > max_first[i])); then max_first[i]=$v; fi
            if ((m > minutes - window)) && ((v > max_last[i])); then max_last[i]=$v; fi
            i=$((i + 1))
        done
        (($(now) - start < m * 60 * 1000000000)) || break
        sleep 5
    done
    fds=$(ls "/proc/$mount_pid/fd" | wc -l)
    repo=$(bytes_of "$node_repo")
    read -r rounds files written <"$work/churn.count"
    read -r big_n big_written <"$work/big.count"
    rows+=("| $m | $(mib "$rss") | $fds | $(mib "$staging") | $(mib "$journal") | $(mib $((repo - node_start))) | $files | $(mib $((written + big_written))) |")
    log "${rows[-1]}"
done
stop_writers
read -r rounds files written <"$work/churn.count"
read -r big_n big_written <"$work/big.count"
drain_start=$(now)
unmount_px
drain=$(since "$drain_start")
uploaded=$(($(bytes_of "$node_repo") - node_start))

verdicts=0
# verdict OK TEXT: one Done-when line, PASS or FAIL.
verdict() {
    if (($1)); then echo "- PASS: $2"; else echo "- FAIL: $2"; verdicts=1; fi
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.1f", 100 * a / b }'; }

echo
if ((mixed)); then
    echo "## Mixed churn soak (issue #41): $minutes minutes, $(date -u '+%Y-%m-%d %H:%M UTC')"
else
    echo "## Churn soak (issue #41): $minutes minutes, $(date -u '+%Y-%m-%d %H:%M UTC')"
fi
echo
echo "Machine: $machine. pxfs $rev ($pxfs). Write-back delay (ms): $delay.${note:+ $note}"
if ((mixed)); then
    echo "Besides the churn, a $big_mib MiB file rewritten every $big_every s ($big_n times), deleted 30 s after every other rewrite."
fi
echo
echo "| minute | daemon RSS (MiB) | descriptors | staging (MiB) | journal (MiB) | node repo growth (MiB) | files created | MiB written |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"
echo
big_part=
if ((mixed)); then big_part=", $(mib "$big_written") MiB in large files"; fi
echo "Written: $(mib "$written") MiB in $files small files ($rounds rounds)$big_part; reached the node:" \
    "$(mib "$uploaded") MiB. Unmount drain: ${drain} s."
echo
echo "Verdicts (issue #41, Done-when; maxima sampled every 5 s, windows of $window minutes):"
names=(RSS staging journal)
for i in 0 1 2; do
    a=${max_first[i]} b=${max_last[i]}
    verdict "$(awk -v a="$a" -v b="$b" 'BEGIN { print (b <= 1.2 * a) ? 1 : 0 }')" \
        "${names[i]}: maximum of the last $window minutes $(mib "$b") MiB vs $(mib "$a") MiB in the first $window ($(awk -v a="$a" -v b="$b" 'BEGIN { if (a == 0) print "n/a"; else printf "%+.0f %%", 100 * (b - a) / a }'); at most +20 %)"
done
if ((mixed)); then
    # The large files reach the node as they are written (live uploads).
    small_up=$((uploaded > big_written ? uploaded - big_written : 0))
    verdict "$(awk -v u="$small_up" -v w="$written" 'BEGIN { print (u <= 0.1 * w) ? 1 : 0 }')" \
        "uploaded beyond the large files $(mib "$small_up") MiB = $(pct "$small_up" "$written") % of the small files written (at most 10 %)"
else
    verdict "$(awk -v u="$uploaded" -v w="$written" 'BEGIN { print (u <= 0.1 * w) ? 1 : 0 }')" \
        "uploaded $(mib "$uploaded") MiB = $(pct "$uploaded" "$written") % of the $(mib "$written") MiB written (at most 10 %)"
fi
verdict "$(awk -v d="$drain" 'BEGIN { print (d < 60) ? 1 : 0 }')" "unmount drain ${drain} s (seconds, not minutes: under 60 s)"
if ((minutes < 20)); then
    echo "(Shorter than the Done-when's 30 minutes: the windows are halves of the run.)"
fi
if ((verdicts)); then echo "Some verdicts fail."; else echo "All verdicts pass."; fi
