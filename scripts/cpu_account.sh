#!/usr/bin/env bash
# CPU accounting of one command, the probe quoted in BENCHMARKS.md:
#   bash scripts/cpu_account.sh "PID..." COMMAND [ARG...]
# runs COMMAND and prints its wall time, the CPU-seconds the whole machine spent busy, idle
# and in iowait meanwhile (from /proc/stat), and the CPU-seconds of each PID (e.g. the mount
# daemon and the node) over the same interval (utime + stime from /proc/PID/stat).
set -euo pipefail
(($# >= 2)) || { echo "usage: $0 \"PID...\" COMMAND [ARG...]" >&2; exit 2; }
read -r -a pids <<<"$1"
shift
hz=$(getconf CLK_TCK)
machine() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8, $5, $6 }' /proc/stat; }
process() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
secs() { awk -v t="$1" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }'; }

declare -A before
for p in "${pids[@]}"; do before[$p]=$(process "$p"); done
read -r busy0 idle0 wait0 < <(machine)
t0=$(date +%s%N)
"$@"
t1=$(date +%s%N)
read -r busy1 idle1 wait1 < <(machine)
printf 'wall %s s; machine busy %s CPU-s, idle %s, iowait %s\n' \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b - a) / 1e9 }')" \
    "$(secs $((busy1 - busy0)))" "$(secs $((idle1 - idle0)))" "$(secs $((wait1 - wait0)))"
for p in "${pids[@]}"; do
    printf '  pid %s (%s): %s CPU-s\n' "$p" "$(cat "/proc/$p/comm")" "$(secs $(($(process "$p") - before[$p])))"
done
