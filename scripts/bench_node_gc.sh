#!/usr/bin/env bash
# Repo size of `pxfs node` against live data while a 20 MiB file is overwritten N times
# (each version added and pinned, the previous one unpinned, as a commit does), once without
# collection and once with --enable-gc (StorageMax 100MB, watermark 90, GCPeriod 5s).
# Usage: scripts/bench_node_gc.sh [PXFS_BINARY] [ROUNDS]
set -euo pipefail

PXFS=${1:-target/debug/pxfs}
ROUNDS=${2:-30}
SIZE=$((20 * 1024 * 1024))
WORK=$(mktemp -d)
NODE_PID=
trap 'if [ -n "$NODE_PID" ]; then kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; fi; rm -rf "$WORK"' EXIT

repo_size() { curl -sf -X POST "$1/api/v0/repo/stat" | python3 -c 'import json,sys; print(json.load(sys.stdin)["RepoSize"])'; }

run() { # run NAME [node flags...]
	local name=$1
	shift
	local repo=$WORK/$name
	mkdir -p "$repo"
	printf '{"Datastore":{"StorageMax":"100MB","StorageGCWatermark":90,"GCPeriod":"5s"}}' >"$repo/config"
	PXFS_LOG=info "$PXFS" node --repo "$repo" --listen 127.0.0.1:0 "$@" >"$WORK/$name.out" 2>"$WORK/$name.log" &
	NODE_PID=$!
	until grep -q "listening on" "$WORK/$name.out" 2>/dev/null; do sleep 0.1; done
	local url
	url=$(awk '{print $NF}' "$WORK/$name.out")
	local previous= peak=0 started
	started=$(date +%s.%N)
	for round in $(seq 1 "$ROUNDS"); do
		head -c "$SIZE" /dev/urandom >"$WORK/file"
		local cid
		cid=$(curl -sf -X POST -F "file=@$WORK/file" "$url/api/v0/add?cid-version=1&pin=true" |
			python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["Hash"])')
		if [ -n "$previous" ]; then
			curl -sf -X POST "$url/api/v0/pin/rm?arg=$previous" >/dev/null
		fi
		previous=$cid
		local size
		size=$(repo_size "$url")
		[ "$size" -gt "$peak" ] && peak=$size
	done
	local elapsed end
	elapsed=$(python3 -c "import time; print(round(time.time() - $started, 1))")
	end=$(repo_size "$url")
	local collections
	collections=$(grep -c "garbage collected" "$WORK/$name.log" || true)
	printf '| %s | %d | %.1f | %.1f | %.1f | %d | %s |\n' "$name" "$ROUNDS" \
		"$(echo "$SIZE / 1048576" | bc -l)" "$(echo "$peak / 1048576" | bc -l)" \
		"$(echo "$end / 1048576" | bc -l)" "$collections" "$elapsed"
	kill "$NODE_PID"
	wait "$NODE_PID" || true
	NODE_PID=
}

echo "| node | overwrites | live MiB | peak repo MiB | final repo MiB | collections | seconds |"
echo "|---|---:|---:|---:|---:|---:|---:|"
run without-gc
run enable-gc --enable-gc
