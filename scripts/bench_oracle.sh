#!/usr/bin/env bash
# The oracle benchmark (issue #29): `bash scripts/bench.sh oracle`. Starts its own devnet
# node, adds a tree of BENCH_ORACLE_FILES distinct files (directories of 1,000), and has the
# oracle's walk measure it through a proxy adding BENCH_ORACLE_DELAY_MS to every node
# request, with the default [oracle] limits; then measures again after one file changed
# (the memo: only the changed path is fetched). Writes the figures into BENCHMARKS.md between
# the `oracle:begin`/`oracle:end` markers. Not part of the tests; the full run adds a million
# objects to the node first (tens of minutes) and needs an otherwise idle machine.
#
# Environment:
#   BENCH_ORACLE_FILES=1000000   files in the tree
#   BENCH_ORACLE_DELAY_MS=40     added to every node request
#   BENCH_OUT=BENCHMARKS.md
#   BENCH_NOTE=                  free text for the report
# A quick run: BENCH_ORACLE_FILES=20000 BENCH_OUT=/tmp/bench.md bash scripts/bench.sh oracle
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh
files=${BENCH_ORACLE_FILES:-1000000}
delay=${BENCH_ORACLE_DELAY_MS:-40}
out=${BENCH_OUT:-BENCHMARKS.md}
note=${BENCH_NOTE:-}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
PXFS_ORACLE_BENCH_FILES=$files PXFS_ORACLE_BENCH_DELAY_MS=$delay \
    cargo test --release --test sync_oracle -- --ignored --exact oracle_benchmark --nocapture \
    2>&1 | tee "$log"
line=$(grep -o 'oracle-bench {.*}' "$log" | tail -1 | sed 's/^oracle-bench //')
[[ -n $line ]] || { echo "bench oracle: no result" >&2; exit 1; }
j() { jq -r "$1" <<<"$line"; }
section=$(cat <<MD
<!-- oracle:begin -->
Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(machine_line) (load $load_start at the start)${note:+; $note}:
\`BENCH_ORACLE_FILES=$files BENCH_ORACLE_DELAY_MS=$delay bash scripts/bench.sh oracle\`

| figure | value |
|---|---|
| files (distinct contents, directories of 1,000) | $(j .files) |
| delay added to every node request | $(j .delay_ms) ms |
| first measurement | $(j '.first_secs*10|round/10') s, $(j .first_requests) node requests ($(j .walk_concurrency) in flight) |
| budget (default limits) | $(j .limit_secs) s, $(j .limit_requests) node requests |
| after one file changed (memo) | $(j '.second_secs*1000|round/1000') s, $(j .second_requests) node requests |
| measured usage | $(j .usage) bytes |
| peak RSS of the measuring process | $(j .peak_rss) |
<!-- oracle:end -->
MD
)
python3 - "$out" "$section" <<'PY'
import sys
path, section = sys.argv[1], sys.argv[2]
try:
    text = open(path).read()
except FileNotFoundError:
    text = ""
b, e = "<!-- oracle:begin -->", "<!-- oracle:end -->"
if b in text and e in text:
    text = text[: text.index(b)] + section + text[text.index(e) + len(e):]
else:
    text = text.rstrip("\n") + "\n\n## Oracle: measuring a 1,000,000-file tree 40 ms away (issue #29)\n\n" + section + "\n"
open(path, "w").write(text)
PY
echo "bench oracle: written to $out"
