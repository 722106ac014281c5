#!/usr/bin/env bash
# Benchmarks a pxfs mount against the node it writes to and against local disk (issue #7):
# builds release pxfs, starts its own devnet (anvil + pxfs node + contracts, one sNFT),
# mounts it, measures, prints the machine, the versions, the raw numbers, the medians and
# the ratios against the targets, and writes them into BENCHMARKS.md (between the
# `bench:begin`/`bench:end` markers; text outside them is kept). Not part of the tests.
#
# Every ratio compares two figures measured in this run on this machine. Each measurement
# runs BENCH_REPEAT times with fresh content (the node deduplicates blocks, so re-sending
# the same bytes would measure nothing) and the median is reported.
#
# Environment (the defaults are the full run):
#   BENCH_REPEAT=3      repetitions of each measurement
#   BENCH_SEQ_MIB=1024  sequential write/read file size
#   BENCH_BIG_MIB=8192  large write for the peak-RSS comparison (0 skips it)
#   BENCH_FILES=10000   small files (1-16 KiB) in the tar
#   BENCH_FIO_MIB=256   fio file size
#   BENCH_DIR=          work directory (default: a new one under /var/tmp), deleted at the end
#   BENCH_OUT=BENCHMARKS.md
#   BENCH_BUILD=1       0: use the binary as it is
#   BENCH_SETUP=1       0: skip `scripts/setup.sh --deps-only` (as root it installs what is missing)
#   BENCH_PXFS=target/release/pxfs   the binary to measure
#   BENCH_NOTE=         free text for the report (e.g. what else loads the machine)
#   BENCH_PLAINTEXT=1   0: skip the encrypted-vs-plaintext comparison (the devnet's sNFT is
#                       encrypted, the default; a second, plaintext sNFT is minted for it)
#   BENCH_NODE_FS=own   own: the node's repository on its own ext4 filesystem (a loop device,
#                       as root), as a node on another machine would be: the node flushes its
#                       adds with syncfs(2), which on a shared filesystem also writes out the
#                       mount's staged copies. shared: everything on the work directory's.
#   BENCH_JUICEFS=1     0: skip JuiceFS (installed into the work directory from the Python
#                       package registry, version pinned in scripts/bench_peers.sh)
#   BENCH_RCLONE=1      0: skip rclone mount
#   PXFS_ANVIL=         anvil binary, if neither PATH nor contracts/node_modules has one
# A quick run:
#   BENCH_REPEAT=1 BENCH_SEQ_MIB=128 BENCH_BIG_MIB=0 BENCH_FILES=1000 BENCH_FIO_MIB=32 \
#     BENCH_OUT=/tmp/bench.md bash scripts/bench.sh
#
# Cold reads drop the kernel's page cache (/proc/sys/vm/drop_caches, as root) besides the
# mount's chunk cache; without root only the chunk cache is dropped, which the report says.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bench_lib.sh
source scripts/bench_peers.sh
# `bash scripts/bench.sh scale` / `dirs`: the scale parts (issues #13, #14), in their own script;
# `installed`: the pxfs on PATH against target/release/pxfs (issue #43); `oracle`: the oracle's
# walk of a 1,000,000-file tree through a 40 ms link (issue #29), scripts/bench_oracle.sh;
# `churn [--minutes N] [--mixed]`: small files created and deleted for N minutes (issue #41;
# --mixed: plus a large file rewritten and deleted every few minutes), with its verdicts,
# scripts/bench_churn.sh; `check`: `pxfs check` against a plain read (issue #30),
# scripts/bench_check.sh; `rewrite`: small rewrites in place, the sparse file and the
# one-chunk reference against ext4 and rclone mount (issue #39), scripts/bench_rewrite.sh;
# `link`: pxfs and rclone mount over a slow link (issue #34), scripts/bench_link.sh.
case "${1:-}" in
    scale | dirs) exec bash scripts/bench_scale.sh "$1" ;;
    installed) exec bash scripts/bench_installed.sh ;;
    oracle) exec bash scripts/bench_oracle.sh ;;
    churn) shift; exec bash scripts/bench_churn.sh "$@" ;;
    check) exec bash scripts/bench_check.sh ;;
    rewrite) exec bash scripts/bench_rewrite.sh ;;
    link) exec bash scripts/bench_link.sh ;;
    "") ;;
    *) echo "bench: unknown part ${1} (scale, dirs, installed, oracle, churn, check, rewrite, link, or nothing for the I/O benchmark)" >&2; exit 2 ;;
esac

repeat=${BENCH_REPEAT:-3}
seq_mib=${BENCH_SEQ_MIB:-1024}
big_mib=${BENCH_BIG_MIB:-8192}
files=${BENCH_FILES:-10000}
fio_mib=${BENCH_FIO_MIB:-256}
node_fs=${BENCH_NODE_FS:-own}
[[ $node_fs == own && $(id -u) != 0 ]] && node_fs=shared
out=${BENCH_OUT:-BENCHMARKS.md}
note=${BENCH_NOTE:-}
command_line="${BENCH_PXFS:+BENCH_PXFS=$BENCH_PXFS }BENCH_NODE_FS=$node_fs BENCH_REPEAT=$repeat BENCH_SEQ_MIB=$seq_mib BENCH_BIG_MIB=$big_mib BENCH_FILES=$files BENCH_FIO_MIB=$fio_mib bash scripts/bench.sh"

bench_prepare curl jq fio openssl python3 fusermount3 mountpoint getfattr
bench_workdir
mp=$work/mnt
devdir=$work/devnet
raw=$work/raw.tsv
: >"$raw"
devnet_pid=
mount_pid=
node_loop=

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if ((rc != 0)); then
        log "failed (exit $rc); last lines of the logs:"
        tail -n 20 "$work/devnet.log" "$work/mount.log" 2>/dev/null >&2
    fi
    unmount_px
    peers_cleanup
    stop_devnet
    if mountpoint -q "$mp" 2>/dev/null; then fusermount3 -uz "$mp"; fi
    if mountpoint -q "$work/mnt-plain" 2>/dev/null; then fusermount3 -u "$work/mnt-plain" || fusermount3 -uz "$work/mnt-plain"; fi
    if mountpoint -q "$work/node-fs" 2>/dev/null; then umount "$work/node-fs"; fi
    if [[ -n $node_loop ]]; then losetup -d "$node_loop"; fi
    rm -rf "$work"
    log "cleaned up $work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mount_px() {
    "$pxfs" mount "$mp" --config "$cfg" --foreground >>"$work/mount.log" 2>&1 &
    mount_pid=$!
    wait_mounted "pxfs mount"
}
remount() { unmount_px; mount_px; }

fsync_one() { # fsync_one KEY FILE: a new file of one byte written and fsynced, timed
    local t
    t=$(now)
    dd if=/dev/zero of="$2" bs=1 count=1 conv=fsync status=none
    record "$1" "$(since "$t")"
}

node_add() { # node_add FILE... : one add call, prints the node's answer
    local args=()
    for f in "$@"; do args+=(-F "file=@$f"); done
    curl -sS --fail -H 'Expect:' "${args[@]}" "$node/api/v0/add?pin=true&cid-version=1&raw-leaves=true"
}

# --- machine, versions, devnet --------------------------------------------------------------
machine=$(machine_line)
rev=$(revision)
versions="pxfs $rev; $(rustc --version 2>/dev/null || echo 'rustc ?'); fuse3 $(fusermount3 --version 2>&1 | awk '{ print $NF }'); $(fio --version); curl $(curl --version | awk 'NR == 1 { print $2 }')"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
log "machine: $machine"
log "versions: $versions"
log "load average: $load_start; work dir $work ($(df -h --output=avail "$work" | tail -1 | tr -d ' ') free)"
[[ -w /proc/sys/vm/drop_caches ]] && cold_note="kernel page cache and chunk cache dropped" ||
    cold_note="chunk cache dropped; kernel page cache NOT dropped (not root)"

node_repo_args=()
if [[ $node_fs == own ]]; then
    # Sparse: it takes only what the node stores.
    # What the node stores: per repetition two sequential files in section 1 and two in
    # section 7, besides the large write and small files.
    truncate -s $(((big_mib + 4 * repeat * seq_mib + 8192) << 20)) "$work/node.img"
    mkfs.ext4 -q -F "$work/node.img"
    mkdir -p "$work/node-fs"
    # Direct I/O to the image: the node's writes are cached once (in its own filesystem),
    # not a second time in the work directory's.
    node_loop=$(losetup -f --show --direct-io=on "$work/node.img")
    mount "$node_loop" "$work/node-fs"
    node_repo_args=(--node-repo "$work/node-fs/repo")
    node_fs_note="the node's repository on its own ext4 filesystem (a direct-I/O loop device on the same disk)"
else
    node_fs_note="the node's repository and the mount's cache on the same filesystem"
fi
log "starting the devnet ($node_fs_note)"
start_devnet "$pxfs" $((64 << 30)) "${node_repo_args[@]}"
mkdir -p "$mp" "$work/local"
mount_px
log "mounted sNFT $token at $mp (daemon pid $mount_pid), node $node"
node_pid=$(pgrep -f -n -- "node --repo $work" || true)
[[ -n $node_pid ]] || die "cannot find the devnet's node process"
peers_prepare
peer_versions=$(peers_versions)
log "peers: $peer_versions"
((have_jfs)) && mount_jfs
((have_rclone)) && mount_rclone

# --- 1, 2, 5: sequential write and read, peak RSS ------------------------------------------
for r in $(seq "$repeat"); do
    log "sequential $seq_mib MiB, run $r/$repeat"
    gen "mount-$r" "$seq_mib" "$work/seq-mount.bin"
    gen "node-$r" "$seq_mib" "$work/seq-node.bin"
    # The inputs are on disk before the clock starts: otherwise the first measurement pays
    # for writing them out (2 GiB of dirty pages) and the others do not.
    sync

    reset_peak
    c_daemon=$(cpu_ticks "$mount_pid")
    c_node=$(cpu_ticks "$node_pid")
    t=$(now)
    dd if="$work/seq-mount.bin" of="$tokdir/seq-$r.bin" bs=1M conv=fsync status=none
    record write_mount "$(rate "$seq_mib" "$(since "$t")")"
    record cpu_write_daemon "$(cpu_per_gib "$c_daemon" "$(cpu_ticks "$mount_pid")" "$seq_mib")"
    record cpu_write_node "$(cpu_per_gib "$c_node" "$(cpu_ticks "$node_pid")" "$seq_mib")"
    record rss_seq "$(peak_mib)"
    if ((have_jfs)); then
        t=$(now)
        dd if="$work/seq-mount.bin" of="$jfs_mp/seq-$r.bin" bs=1M conv=fsync status=none
        record write_jfs "$(rate "$seq_mib" "$(since "$t")")"
        # Its local-directory bucket writes objects without fsync (write, close, rename): its
        # fsync returns with the bytes in the page cache. The node flushes its blocks before
        # it answers an add, so the comparison with the same guarantee goes on until the
        # bucket's filesystem has them on disk.
        sync -f "$work/jfs-bucket"
        record write_jfs_disk "$(rate "$seq_mib" "$(since "$t")")"
    fi
    if ((have_rclone)); then
        base=$(stored_bytes "$work/rclone-backing")
        t=$(now)
        dd if="$work/seq-mount.bin" of="$rclone_mp/seq-$r.bin" bs=1M conv=fsync status=none
        rclone_stored $((base + (seq_mib << 20)))
        record write_rclone "$(rate "$seq_mib" "$(since "$t")")"
    fi

    # The fixed cost of one fsync: a new file of one byte. pxfs's is a commit, which returns
    # once the published root holds (docs/FORMAT.md §9.3: at once on pxfs's node, which checks
    # publications; elsewhere after the settle window); every write + fsync above pays it once.
    fsync_one fsync_one_mount "$tokdir/one-$r"
    fsync_one fsync_one_local "$cache/one-$r"
    ((have_jfs)) && fsync_one fsync_one_jfs "$jfs_mp/one-$r"

    t=$(now)
    node_add "$work/seq-node.bin" >"$work/add.json"
    record write_add "$(rate "$seq_mib" "$(since "$t")")"
    cid=$(jq -r .Hash "$work/add.json")

    t=$(now)
    dd if="$work/seq-mount.bin" of="$cache/local-seq.bin" bs=1M conv=fsync status=none
    record write_local "$(rate "$seq_mib" "$(since "$t")")"

    # Cold: a new daemon, an empty chunk cache and (as root) an empty page cache; the node's
    # blocks are read from disk by both.
    unmount_px
    rm -rf "$cache/chunks"
    ((have_jfs)) && cold_jfs
    ((have_rclone)) && cold_rclone
    drop_kernel_caches
    t=$(now)
    curl -sS --fail -X POST "$node/api/v0/cat?arg=$cid" -o /dev/null
    record read_cold_cat "$(rate "$seq_mib" "$(since "$t")")"
    drop_kernel_caches
    mount_px
    c_daemon=$(cpu_ticks "$mount_pid")
    c_node=$(cpu_ticks "$node_pid")
    t=$(now)
    dd if="$tokdir/seq-$r.bin" of=/dev/null bs=1M status=none
    record read_cold_mount "$(rate "$seq_mib" "$(since "$t")")"
    record cpu_read_daemon "$(cpu_per_gib "$c_daemon" "$(cpu_ticks "$mount_pid")" "$seq_mib")"
    record cpu_read_node "$(cpu_per_gib "$c_node" "$(cpu_ticks "$node_pid")" "$seq_mib")"
    if ((have_jfs)); then
        mount_jfs
        t=$(now)
        dd if="$jfs_mp/seq-$r.bin" of=/dev/null bs=1M status=none
        record read_cold_jfs "$(rate "$seq_mib" "$(since "$t")")"
        rm -f "$jfs_mp/seq-$r.bin"
    fi
    if ((have_rclone)); then
        mount_rclone
        t=$(now)
        dd if="$rclone_mp/seq-$r.bin" of=/dev/null bs=1M status=none
        record read_cold_rclone "$(rate "$seq_mib" "$(since "$t")")"
        rm -f "$rclone_mp/seq-$r.bin"
    fi

    # Warm from the chunk cache: every chunk is on local disk, the page cache is dropped
    # (as root): the mount reads its chunk files, the baseline the same bytes in one file,
    # both from the same disk.
    drop_kernel_caches
    t=$(now)
    dd if="$tokdir/seq-$r.bin" of=/dev/null bs=1M status=none
    record read_warm_mount "$(rate "$seq_mib" "$(since "$t")")"
    # Re-read: now in the kernel's page cache (the mount keeps its pages across opens;
    # dropping caches would evict the inode and its pages, so the baseline comes after).
    t=$(now)
    dd if="$tokdir/seq-$r.bin" of=/dev/null bs=1M status=none
    record reread_mount "$(rate "$seq_mib" "$(since "$t")")"
    drop_kernel_caches
    t=$(now)
    dd if="$cache/local-seq.bin" of=/dev/null bs=1M status=none
    record read_warm_local "$(rate "$seq_mib" "$(since "$t")")"
    t=$(now)
    dd if="$cache/local-seq.bin" of=/dev/null bs=1M status=none
    record reread_local "$(rate "$seq_mib" "$(since "$t")")"

    rm -f "$work/seq-mount.bin" "$work/seq-node.bin" "$cache/local-seq.bin" "$tokdir/seq-$r.bin"
done

if ((big_mib > 0)); then
    # Staged in the cache and stored by the node: about twice the size on this filesystem.
    need=$((big_mib * 2 + 4096))
    avail=$(df -m --output=avail "$work" | tail -1 | tr -d ' ')
    if ((avail < need)); then
        log "skipping the $big_mib MiB write: $avail MiB free, $need MiB needed"
        record rss_big "n/a"
    else
        log "large write of $big_mib MiB (peak RSS)"
        reset_peak
        t=$(now)
        (openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:big </dev/zero 2>/dev/null || true) |
            head -c "$((big_mib << 20))" |
            dd of="$tokdir/big.bin" bs=1M iflag=fullblock conv=fsync status=none
        record write_big_mount "$(rate "$big_mib" "$(since "$t")")"
        record rss_big "$(peak_mib)"
        rm -f "$tokdir/big.bin"
        sync "$tokdir"
    fi
fi

# --- 3: small files -------------------------------------------------------------------------
for r in $(seq "$repeat"); do
    log "$files small files, run $r/$repeat"
    rm -rf "$work/tree-mount" "$work/tree-node"
    gen_tree "mount-$r" "$work/tree-mount" "$files"
    gen_tree "node-$r" "$work/tree-node" "$files"
    tar -cf "$work/small.tar" -C "$work/tree-mount" files
    sync # as above: the inputs are written out before any clock starts

    mkdir "$tokdir/small-$r"
    t=$(now)
    tar -xf "$work/small.tar" -C "$tokdir/small-$r"
    sync "$tokdir"
    record small_mount "$(awk -v n="$files" -v s="$(since "$t")" 'BEGIN { printf "%.0f", n / s }')"

    rm -rf "$work/local/small-$r"
    mkdir -p "$work/local/small-$r"
    t=$(now)
    tar -xf "$work/small.tar" -C "$work/local/small-$r"
    sync -f "$work/local/small-$r"
    record small_local "$(awk -v n="$files" -v s="$(since "$t")" 'BEGIN { printf "%.0f", n / s }')"

    if ((have_jfs)); then
        mkdir "$jfs_mp/small-$r"
        t=$(now)
        tar -xf "$work/small.tar" -C "$jfs_mp/small-$r"
        sync "$jfs_mp/small-$r"
        record small_jfs "$(awk -v n="$files" -v s="$(since "$t")" 'BEGIN { printf "%.0f", n / s }')"
    fi
    if ((have_rclone)); then
        mkdir "$rclone_mp/small-$r"
        base=$(stored_bytes "$work/rclone-backing")
        t=$(now)
        tar -xf "$work/small.tar" -C "$rclone_mp/small-$r"
        rclone_stored $((base + $(stored_bytes "$work/tree-mount")))
        record small_rclone "$(awk -v n="$files" -v s="$(since "$t")" 'BEGIN { printf "%.0f", n / s }')"
    fi

    # One add call per file, one after another over one kept-alive connection.
    : >"$work/curl.cfg"
    for f in "$work/tree-node/files"/*; do
        printf 'url = "%s/api/v0/add?pin=true&cid-version=1&raw-leaves=true"\nform = "file=@%s"\nheader = "Expect:"\nfail\nnext\n' \
            "$node" "$f" >>"$work/curl.cfg"
    done
    sed -i '$d' "$work/curl.cfg" # no `next` after the last
    t=$(now)
    curl -sS -K "$work/curl.cfg" >"$work/added.json"
    secs=$(since "$t")
    added=$(grep -c '"Hash"' "$work/added.json" || true)
    ((added == files)) || die "direct adds: $added of $files answered"
    record small_add "$(awk -v n="$files" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')"
    rm -rf "$work/small.tar" "$work/tree-mount" "$work/tree-node" "$work/curl.cfg" "$work/added.json"
done

# --- 4: metadata ----------------------------------------------------------------------------
# time_cmd KEY CMD...: wall time of CMD in seconds.
time_cmd() {
    local key=$1 t
    shift
    t=$(now)
    "$@" >/dev/null
    record "$key" "$(since "$t")"
}
ls_l() { ls -l "$1" >/dev/null; }
find_count() { find "$1" | wc -l >/dev/null; }
stat_all() { find "$1" -type f -exec stat --format=%s {} + >/dev/null; }
big_dir=$tokdir/small-1/files
log "metadata: ls -l of $(find "$big_dir" -maxdepth 1 -type f | wc -l) entries, find over $(find "$tokdir" | wc -l) names"
ls_l "$big_dir"
find_count "$tokdir"
stat_all "$tokdir"
ls_l "$work/local"
find_count "$work/local"
stat_all "$work/local"
for r in $(seq "$repeat"); do
    time_cmd ls_warm_mount ls_l "$big_dir"
    time_cmd ls_warm_local ls_l "$work/local/small-1/files"
    time_cmd find_warm_mount find_count "$tokdir"
    time_cmd find_warm_local find_count "$work/local"
    time_cmd stat_warm_mount stat_all "$tokdir"
    time_cmd stat_warm_local stat_all "$work/local"
done
for r in $(seq "$repeat"); do
    log "metadata after remount, run $r/$repeat"
    # The peers' cold listing: new clients, empty caches, the page cache dropped.
    ((have_jfs)) && cold_jfs
    ((have_rclone)) && cold_rclone
    drop_kernel_caches
    time_cmd ls_cold_local ls_l "$work/local/small-1/files"
    if ((have_jfs)); then mount_jfs; time_cmd ls_cold_jfs ls_l "$jfs_mp/small-1/files"; fi
    if ((have_rclone)); then mount_rclone; time_cmd ls_cold_rclone ls_l "$rclone_mp/small-1/files"; fi
    unmount_px
    rm -rf "$cache/chunks"
    drop_kernel_caches
    mount_px
    time_cmd ls_cold_mount ls_l "$big_dir"
    remount
    time_cmd find_cold_mount find_count "$tokdir"
    remount
    time_cmd stat_cold_mount stat_all "$tokdir"
done

# --- 6: random I/O --------------------------------------------------------------------------
# fio_iops KEY FILE: 4 KiB random read/write, verified with crc32c; IOPS of reads + writes.
fio_iops() {
    fio --name=randrw --filename="$2" --size="${fio_mib}M" --rw=randrw --bs=4k \
        --ioengine=psync --verify=crc32c --verify_state_save=0 --output-format=json --output="$work/fio.json"
    jq -e '.jobs[0].error == 0' "$work/fio.json" >/dev/null || die "fio on $2 failed"
    record "$1" "$(jq '.jobs[0] | .read.iops + .write.iops | floor' "$work/fio.json")"
    rm -f "$2" "$work/fio.json"
}
for r in $(seq "$repeat"); do
    log "fio ${fio_mib} MiB, run $r/$repeat"
    fio_iops fio_mount "$tokdir/fio-$r.dat"
    fio_iops fio_local "$cache/fio-local.dat"
done
sync "$tokdir"

# --- 7: encrypted (the devnet's sNFT) vs plaintext ---------------------------------------
# A second sNFT whose tree is plaintext (`[keys] encryption = "none"`), mounted on its own
# with its own cache: the cost of encryption in this run.
if [[ ${BENCH_PLAINTEXT:-1} != 0 ]]; then
    log "encryption: a plaintext sNFT for comparison"
    cfg_plain=$work/plain.toml
    # Another wallet (anvil's well-known account 2, devnet only): the free package is once
    # per wallet, and the devnet's wallet has had it.
    plain_key=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a
    plain_wallet=0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC
    sed -e "s|^dir = \"$cache\"|dir = \"$work/plain-cache\"|" \
        -e "s|^wallet = .*|wallet = \"$plain_wallet\"|" \
        -e 's|^\[keys\]$|[keys]\nencryption = "none"|' "$cfg" >"$cfg_plain"
    grep -q '^encryption = "none"' "$cfg_plain" || printf '\n[keys]\nencryption = "none"\n' >>"$cfg_plain"
    # shellcheck disable=SC1091
    (source "$devdir/devnet.env" && PXFS_PRIVATE_KEY=$plain_key "$pxfs" mint --package 0 --config "$cfg_plain") >>"$work/mint.log" 2>&1 ||
        die "minting the plaintext sNFT failed (see $work/mint.log)"
    (source "$devdir/devnet.env" && PXFS_PRIVATE_KEY=$plain_key "$pxfs" status --json --config "$cfg_plain") >"$work/status.json"
    tok_plain=$(jq '[.tokens[].token_id] | max' "$work/status.json")
    mp_plain=$work/mnt-plain
    mkdir -p "$mp_plain"
    plain_pid=
    mount_plain() {
        PXFS_PRIVATE_KEY=$plain_key "$pxfs" mount "$mp_plain" --config "$cfg_plain" --token "$tok_plain" --foreground >>"$work/mount-plain.log" 2>&1 &
        plain_pid=$!
        for _ in $(seq 1200); do
            mountpoint -q "$mp_plain" && return 0
            kill -0 "$plain_pid" 2>/dev/null || die "the plaintext mount exited"
            sleep 0.05
        done
        die "the plaintext mount was not ready after 60 s"
    }
    unmount_plain() {
        fusermount3 -u "$mp_plain" 2>/dev/null || kill -TERM "$plain_pid" 2>/dev/null || true
        wait "$plain_pid" 2>/dev/null || true
    }
    mount_plain
    [[ $(getfattr --only-values -n user.pxfs.encryption "$mp_plain") == none ]] ||
        die "the comparison sNFT is not plaintext"
    # Both sNFTs measured in one loop, alternately (which goes first alternates too), on the
    # same inputs' sizes, with nothing else running in between (the sections above measure
    # the encrypted mount between node adds and local writes, which would bias a ratio).
    # step WHICH KIND R: one measurement of KIND (write, cold or small) on the encrypted
    # (WHICH=enc) or the plaintext (plain) sNFT, recorded as cmp_KIND_WHICH.
    step() {
        local which=$1 kind=$2 r=$3 dir file
        if [[ $which == enc ]]; then dir=$tokdir; else dir=$mp_plain; fi
        file=$dir/cmp-$r.bin
        case $kind in
        write)
            t=$(now)
            dd if="$work/cmp-$which.bin" of="$file" bs=1M conv=fsync status=none
            record "cmp_write_$which" "$(rate "$seq_mib" "$(since "$t")")"
            ;;
        cold)
            t=$(now)
            dd if="$file" of=/dev/null bs=1M status=none
            record "cmp_cold_$which" "$(rate "$seq_mib" "$(since "$t")")"
            ;;
        small)
            mkdir "$dir/cmp-small-$r"
            t=$(now)
            tar -xf "$work/cmp-$which.tar" -C "$dir/cmp-small-$r"
            sync "$dir"
            record "cmp_small_$which" "$(awk -v n="$files" -v s="$(since "$t")" 'BEGIN { printf "%.0f", n / s }')"
            ;;
        esac
    }
    for r in $(seq "$repeat"); do
        log "encrypted vs plaintext: sequential $seq_mib MiB and $files small files, run $r/$repeat"
        for which in enc plain; do
            gen "cmp-$which-$r" "$seq_mib" "$work/cmp-$which.bin"
            rm -rf "$work/tree-cmp"
            gen_tree "cmp-$which-$r" "$work/tree-cmp" "$files"
            tar -cf "$work/cmp-$which.tar" -C "$work/tree-cmp" files
        done
        rm -rf "$work/tree-cmp"
        sync
        order="enc plain"
        ((r % 2 == 0)) && order="plain enc"
        for which in $order; do step "$which" write "$r"; done
        # Cold: new daemons, empty chunk caches, an empty page cache.
        unmount_px
        unmount_plain
        rm -rf "$cache/chunks" "$work/plain-cache/chunks"
        drop_kernel_caches
        mount_px
        mount_plain
        for which in $order; do step "$which" cold "$r"; done
        for which in $order; do step "$which" small "$r"; done
        rm -f "$work/cmp-enc.bin" "$work/cmp-plain.bin" "$work/cmp-enc.tar" "$work/cmp-plain.tar"
        rm -rf "$tokdir/cmp-$r.bin" "$mp_plain/cmp-$r.bin"
    done
    unmount_plain
fi
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report ---------------------------------------------------------------------------------
# row NAME MOUNT_KEY BASE_KEY CHECK TARGET_TEXT: one table line of medians. CHECK is
# "ratio>=X" (mount/baseline), "min>=X" or "max<X" (the mount figure), or empty.
rows=()
row() {
    local name=$1 check=$4 text=$5 m b="" ratio="" met=""
    m=$(median "$2")
    if [[ -n $3 ]]; then
        b=$(median "$3")
        ratio=$(div "$m" "$b")
    fi
    case $check in
    ratio\>=*) met=$(awk -v v="$ratio" -v t="${check#ratio>=}" 'BEGIN { if (v != "n/a") print (v + 0 >= t + 0 ? "met" : "**missed**") }') ;;
    min\>=*) met=$(awk -v v="$m" -v t="${check#min>=}" 'BEGIN { if (v != "n/a") print (v + 0 >= t + 0 ? "met" : "**missed**") }') ;;
    max\<*) met=$(awk -v v="$m" -v t="${check#max<}" 'BEGIN { if (v != "n/a") print (v + 0 < t + 0 ? "met" : "**missed**") }') ;;
    esac
    rows+=("| $name | $m | $b | ${ratio:+$ratio×} | $text | $met |")
}
row "Sequential write ${seq_mib} MiB, MiB/s (vs direct \`add\`)" write_mount write_add "ratio>=0.9" "≥ 0.9×"
row "Sequential write ${seq_mib} MiB, MiB/s (vs local \`dd conv=fsync\`)" write_mount write_local "" ""
row "Cold read, MiB/s (vs node \`cat\`)" read_cold_mount read_cold_cat "ratio>=0.9" "≥ 0.9×"
row "Warm read from the chunk cache, MiB/s (vs local file; page cache dropped for both)" read_warm_mount read_warm_local "ratio>=0.7" "≥ 0.7×"
row "Re-read, MiB/s (vs local file; both in the page cache)" reread_mount reread_local "ratio>=0.7" "≥ 0.7×"
row "${files} small files, files/s (vs one \`add\` per file)" small_mount small_add "ratio>=2" "≥ 2×"
row "${files} small files, files/s (absolute)" small_mount "" "min>=1000" "≥ 1,000/s"
row "${files} small files, files/s (vs local tar + \`sync -f\`)" small_mount small_local "" ""
row "\`ls -l\` of ${files} entries warm, s (vs local)" ls_warm_mount ls_warm_local "max<0.2" "< 0.2 s"
row "\`ls -l\` of ${files} entries after remount, s" ls_cold_mount "" "" ""
row "\`find | wc -l\` warm, s (vs local)" find_warm_mount find_warm_local "" ""
row "\`find | wc -l\` after remount, s" find_cold_mount "" "" ""
row "\`stat\` of every file warm, s (vs local)" stat_warm_mount stat_warm_local "" ""
row "\`stat\` of every file after remount, s" stat_cold_mount "" "" ""
row "Peak RSS of the daemon, ${seq_mib} MiB write, MiB" rss_seq "" "max<200" "< 200 MiB"
if ((big_mib > 0)); then
    row "Peak RSS of the daemon, ${big_mib} MiB write, MiB (vs ${seq_mib} MiB write)" rss_big rss_seq "max<200" "< 200 MiB, ≈ 1×"
    row "Write of ${big_mib} MiB from a generator, MiB/s" write_big_mount "" "" ""
fi
row "fio 4 KiB randrw on ${fio_mib} MiB, crc32c, IOPS (vs local)" fio_mount fio_local "" ""
row "CPU-seconds per GiB written, daemon (vs node)" cpu_write_daemon cpu_write_node "" ""
row "CPU-seconds per GiB read cold, daemon (vs node)" cpu_read_daemon cpu_read_node "" ""
if [[ ${BENCH_PLAINTEXT:-1} != 0 ]]; then
    row "Encrypted vs plaintext sNFT: sequential write ${seq_mib} MiB, MiB/s" cmp_write_enc cmp_write_plain "ratio>=0.9" "≥ 0.9×"
    row "Encrypted vs plaintext sNFT: cold read, MiB/s" cmp_cold_enc cmp_cold_plain "ratio>=0.9" "≥ 0.9×"
    row "Encrypted vs plaintext sNFT: ${files} small files, files/s" cmp_small_enc cmp_small_plain "ratio>=0.9" "≥ 0.9×"
fi

table=$(
    echo "| Measurement | pxfs mount | baseline | mount / baseline | target | |"
    echo "|---|---:|---:|---:|---|---|"
    printf '%s\n' "${rows[@]}"
)

# The peers (issue #44): one line per workload, every figure of this run.
# peer_row NAME EXT4_KEY RCLONE_KEY JFS_KEY PXFS_KEY LOWER_IS_BETTER TARGET (a key of no
# figure, e.g. -, shows n/a; an empty TARGET, no goal)
peer_rows=()
peer_row() {
    local name=$1 lower=$6 target=$7 e rc j p ratio met
    e=$(median "$2")
    rc=$(median "$3")
    j=$(median "$4")
    p=$(median "$5")
    if [[ $lower == 1 ]]; then ratio=$(div "$j" "$p"); else ratio=$(div "$p" "$j"); fi
    if [[ -z $target ]]; then
        peer_rows+=("| $name | $e | $rc | $j | **$p** | ${ratio}× | – |")
        return
    fi
    met=$(awk -v v="$ratio" -v t="${target#*:}" 'BEGIN { if (v != "n/a") print (v + 0 >= t + 0 ? "met" : "**missed**") }')
    peer_rows+=("| $name | $e | $rc | $j | **$p** | ${ratio}× | ${target%%:*}: ${met:-–} |")
}
peer_row "untar ${files} files of 1–16 KiB + sync, files/s" small_local small_rclone small_jfs small_mount 0 "ahead:1.0001"
peer_row "${seq_mib} MiB write + fsync, MiB/s" write_local write_rclone write_jfs write_mount 0 "≥ 0.9×:0.9"
peer_row "${seq_mib} MiB write + fsync until on disk (JuiceFS: + \`sync -f\` of its bucket), MiB/s" write_local write_rclone write_jfs_disk write_mount 0 "≥ 0.9×:0.9"
peer_row "a new 1-byte file + fsync (pxfs: a commit the node checks), s" fsync_one_local - fsync_one_jfs fsync_one_mount 1 ""
peer_row "cold \`ls -l\` of ${files} entries, s" ls_cold_local ls_cold_rclone ls_cold_jfs ls_cold_mount 1 "ahead:1.0001"
peer_row "cold read of the ${seq_mib} MiB, MiB/s" read_warm_local read_cold_rclone read_cold_jfs read_cold_mount 0 "≥ 0.9×:0.9"
peer_table=$(
    echo "| workload | ext4 | rclone mount | JuiceFS | pxfs | pxfs vs JuiceFS | goal |"
    echo "|---|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${peer_rows[@]}"
)
keys=$(cut -f1 "$raw" | awk '!seen[$0]++')
raw_lines=$(for k in $keys; do printf -- "- \`%s\`: %s\n" "$k" "$(all "$k")"; done)
report=$(
    cat <<EOF
<!-- bench:begin (written by scripts/bench.sh; edit outside these markers) -->
## Results

Run: $started_at, \`$command_line\`

- Machine: $machine
- Load average at start: $load_start; at end: $load_end${note:+
- Note: $note}
- Versions: $versions
- Medians of $repeat runs; every ratio compares two figures of this run. Cold reads: $cold_note.
- Storage: $node_fs_note.
- Throughput includes \`fsync\` (mount: upload to the node and commit; local: \`dd conv=fsync\`);
  small files include \`sync\` of the token directory (the commit) or \`sync -f\` locally.

$table

Peers in the same run ($peer_versions; JuiceFS: sqlite metadata, a local directory as the
bucket, \`--trash-days 0\`, no encryption; its bucket writes objects without \`fsync\`, so its
write + fsync returns before the bytes are on disk: the second write row times it until
\`sync -f\` of the bucket's filesystem returns, the guarantee pxfs's node gives before it answers
an add; rclone: a local directory,
\`--vfs-cache-mode writes --vfs-write-back 0s\`, timed until the directory holds every byte;
pxfs encrypted, its default). Cold: new clients, caches emptied, the page cache dropped
(ext4: the page cache dropped). "ahead" compares with JuiceFS (for \`ls\`, JuiceFS's time
÷ pxfs's).

$peer_table

Raw numbers (MiB/s, files/s, s, MiB, IOPS, CPU-s/GiB, in run order):

$raw_lines
<!-- bench:end -->
EOF
)
echo
echo "$report"
if [[ -f $out ]] && grep -q '^<!-- bench:begin' "$out" && grep -q '^<!-- bench:end' "$out"; then
    printf '%s\n' "$report" >"$work/report.md"
    awk -v rf="$work/report.md" '
        /^<!-- bench:begin/ { while ((getline l <rf) > 0) print l; skip = 1; next }
        /^<!-- bench:end/ { skip = 0; next }
        !skip { print }' "$out" >"$out.new"
    mv "$out.new" "$out"
else
    printf '# Benchmarks\n\n%s\n' "$report" >"$out"
fi
log "wrote $out"
