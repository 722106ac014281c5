#!/usr/bin/env bash
# `bash scripts/bench.sh installed` (issue #43): is the pxfs that users run the fast one?
# Measures a 1 GiB write + fsync and a cold read of it through a mount run by `pxfs` on PATH
# (what scripts/setup.sh and scripts/install.sh put there) and through target/release/pxfs,
# in the same run on one devnet, alternating which goes first, and prints each median and
# the ratio (goal: within 1.2x). BENCH_ALSO=target/debug/pxfs adds a third binary (e.g. the
# dev profile's, to show what an unoptimized build costs). Figures go into BENCHMARKS.md
# between the `bench-installed:begin`/`end` markers.
#
# Environment: BENCH_REPEAT=3  BENCH_SEQ_MIB=1024  BENCH_ALSO=  BENCH_OUT=BENCHMARKS.md
#              BENCH_DIR= (work directory, deleted at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh

repeat=${BENCH_REPEAT:-3}
seq_mib=${BENCH_SEQ_MIB:-1024}
out=${BENCH_OUT:-BENCHMARKS.md}
release=$(realpath -m "${CARGO_TARGET_DIR:-target}/release/pxfs")
on_path=$(command -v pxfs || true)
[[ -n $on_path ]] || { echo "bench: no pxfs on PATH (run scripts/setup.sh or scripts/install.sh)" >&2; exit 1; }
[[ -x $release ]] || { echo "bench: $release missing (cargo build --release --locked)" >&2; exit 1; }
binaries=("$on_path" "$release")
labels=("pxfs on PATH" "target/release/pxfs")
if [[ -n ${BENCH_ALSO:-} ]]; then
    binaries+=("$(realpath -m "$BENCH_ALSO")")
    labels+=("$BENCH_ALSO")
fi

bench_workdir installed
mp=$work/mnt
devdir=$work/devnet
raw=$work/raw.tsv
: >"$raw"
devnet_pid=
mount_pid=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    ((rc != 0)) && tail -n 20 "$work/devnet.log" "$work/mount.log" 2>/dev/null >&2
    unmount_px
    stop_devnet
    mountpoint -q "$mp" 2>/dev/null && fusermount3 -uz "$mp"
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_px() { # mount_px BINARY
    "$1" mount "$mp" --config "$cfg" --foreground >>"$work/mount.log" 2>&1 &
    mount_pid=$!
    wait_mounted "pxfs mount ($1)"
}

log "binaries: $(for i in "${!binaries[@]}"; do printf '%s = %s (%s); ' "${labels[$i]}" "$(realpath "${binaries[$i]}")" "$("${binaries[$i]}" --version)"; done)"
log "starting the devnet"
start_devnet "$release" $((64 << 30))
mkdir -p "$mp"

for r in $(seq "$repeat"); do
    # Alternate the order, so neither binary always runs on a warmer machine.
    order=("${!binaries[@]}")
    ((r % 2 == 0)) && order=($(printf '%s\n' "${order[@]}" | tac))
    for i in "${order[@]}"; do
        bin=${binaries[$i]}
        log "run $r/$repeat: ${labels[$i]}"
        gen "installed-$r-$i" "$seq_mib" "$work/seq.bin"
        sync
        mount_px "$bin"
        t=$(now)
        dd if="$work/seq.bin" of="$tokdir/seq-$r-$i.bin" bs=1M conv=fsync status=none
        record "write_$i" "$(since "$t")"
        unmount_px
        rm -rf "$cache/chunks"
        drop_kernel_caches
        mount_px "$bin"
        t=$(now)
        dd if="$tokdir/seq-$r-$i.bin" of=/dev/null bs=1M status=none
        record "read_$i" "$(since "$t")"
        cmp -s "$work/seq.bin" "$tokdir/seq-$r-$i.bin" || die "${labels[$i]}: the file read back differs"
        rm -f "$tokdir/seq-$r-$i.bin" "$work/seq.bin"
        sync "$tokdir"
        unmount_px
    done
done

machine=$(machine_line)
rev=$(revision)
report=$work/report.md
{
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bash scripts/bench.sh installed\` (BENCH_REPEAT=$repeat BENCH_SEQ_MIB=$seq_mib${BENCH_ALSO:+ BENCH_ALSO=$BENCH_ALSO}), pxfs $rev, $machine; encrypted sNFT (the default); cold read = new daemon, chunk cache and page cache dropped; medians of $repeat, seconds."
    echo
    echo "| binary | \`--version\` | $seq_mib MiB write + fsync | cold read | write / release's | read / release's |"
    echo "|---|---|---:|---:|---:|---:|"
    for i in "${!binaries[@]}"; do
        w=$(median "write_$i"); rd=$(median "read_$i")
        echo "| ${labels[$i]} | $("${binaries[$i]}" --version) | $w | $rd | $(div "$w" "$(median write_1)") | $(div "$rd" "$(median read_1)") |"
    done
    echo
    echo "Goal: pxfs on PATH within 1.2x of target/release/pxfs on both."
} >"$report"
cat "$report"
if [[ -f $out ]] && grep -q 'bench-installed:begin' "$out"; then
    awk -v f="$report" '
        /bench-installed:begin/ { print; while ((getline l < f) > 0) print l; skip = 1; next }
        /bench-installed:end/ { skip = 0 }
        !skip' "$out" >"$out.new" && mv "$out.new" "$out"
else
    { echo; echo "## The binary users run (issue #43)"; echo; echo "<!-- bench-installed:begin -->"; cat "$report"; echo "<!-- bench-installed:end -->"; } >>"$out"
fi
log "wrote $out"
