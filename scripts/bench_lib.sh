# Helpers shared by the benchmark scripts (sourced, not run). The sourcing script sets, before
# calling what uses them: `work` (its work directory), `raw` (its raw numbers file), `mp` (the
# mountpoint), `tokdir` (the sNFT directory under it), `mount_pid` and `devnet_pid`.

# bench_prepare TOOL...: what a fresh machine lacks (as root, unless BENCH_SETUP=0: the same
# idempotent setup as the demo and the tests, without their debug build), the tools the run
# needs, and `pxfs`, the binary to measure (BENCH_PXFS; built unless BENCH_BUILD=0).
bench_prepare() {
    if [[ $(id -u) == 0 && ${BENCH_SETUP:-1} != 0 ]]; then
        bash scripts/setup.sh --deps-only
    fi
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || { echo "bench: $tool is required" >&2; exit 1; }
    done
    pxfs=$(realpath -m "${BENCH_PXFS:-target/release/pxfs}")
    if [[ ${BENCH_BUILD:-1} != 0 ]]; then cargo build --release --locked; fi
    [[ -x $pxfs ]] || { echo "bench: $pxfs missing (BENCH_BUILD=0 needs a build)" >&2; exit 1; }
}

# bench_workdir [NAME]: sets `work`, the run's directory as an absolute path (BENCH_DIR, or a
# new /var/tmp/pxfs-bench-NAME.XXXXXX).
bench_workdir() {
    work=${BENCH_DIR:-$(mktemp -d "/var/tmp/pxfs-bench${1:+-$1}.XXXXXX")}
    mkdir -p "$work"
    work=$(cd "$work" && pwd)
}

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

now() { date +%s%N; }
# Seconds since $1 (from `now`).
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'; }
# record KEY VALUE: one raw number.
record() { printf '%s\t%s\n' "$1" "$2" >>"$raw"; log "$1 = $2"; }
median() {
    awk -F'\t' -v k="$1" '$1 == k { print $2 }' "$raw" | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
all() { awk -F'\t' -v k="$1" '$1 == k { printf "%s%s", s, $2; s = " " }' "$raw"; }
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "n/a"; else printf "%.2f", a / b }'; }
# rate MIB SECS: MiB/s.
rate() { awk -v m="$1" -v s="$2" 'BEGIN { printf "%.1f", m / s }'; }

# gen SEED MIB FILE: MIB of pseudo-random bytes, different for each seed (AES-CTR keystream).
gen() {
    (openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass "pass:$1" </dev/zero 2>/dev/null || true) |
        head -c "$(($2 << 20))" >"$3"
}
# gen_tree SEED DIR N: N files of 1-16 KiB, different for each seed, all in DIR/files (one
# big directory).
gen_tree() {
    python3 - "$1" "$2" "$3" <<'EOF'
import os, random, sys
seed, top, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = random.Random(seed)
d = os.path.join(top, "files")
os.makedirs(d)
for i in range(n):
    with open(os.path.join(d, "f%05d" % i), "wb") as f:
        f.write(rng.randbytes(rng.randint(1024, 16384)))
EOF
}
# The kernel's page cache, as root; without root nothing (the reports say which).
drop_kernel_caches() {
    if [[ -w /proc/sys/vm/drop_caches ]]; then
        sync
        echo 3 >/proc/sys/vm/drop_caches
    fi
}

machine_line() {
    echo "$(nproc) CPUs, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo), Linux $(uname -r)"
}
revision() {
    echo "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo '+dirty')"
}

# start_devnet PXFS QUOTA_BYTES [devnet up options...]: a devnet in $work/devnet (log in
# $work/devnet.log), waited for; sets devnet_pid, devdir, cfg, cache, node, token, tokdir.
start_devnet() {
    local bin=$1 quota=$2
    shift 2
    devdir=$work/devnet
    "$bin" devnet up --dir "$devdir" --quota "$quota" --no-oracle "$@" >"$work/devnet.log" 2>&1 &
    devnet_pid=$!
    for _ in $(seq 3000); do
        grep -q '^devnet ready' "$work/devnet.log" && break
        kill -0 "$devnet_pid" 2>/dev/null || die "the devnet exited"
        sleep 0.1
    done
    grep -q '^devnet ready' "$work/devnet.log" || die "the devnet was not ready within 300 s"
    cfg=$devdir/pxfs.toml
    cache=$devdir/cache
    node=$(jq -r .node_url "$devdir/devnet.json")
    token=$(jq -r '.token_ids[0]' "$devdir/devnet.json")
    tokdir=$mp/$token
}
stop_devnet() {
    if [[ -n ${devnet_pid:-} ]] && kill -0 "$devnet_pid" 2>/dev/null; then
        kill -TERM "$devnet_pid"
        for _ in $(seq 600); do kill -0 "$devnet_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$devnet_pid" 2>/dev/null
        wait "$devnet_pid" 2>/dev/null
    fi
    devnet_pid=
}

# wait_mounted WHAT: until the daemon $mount_pid shows the sNFT directory (60 s at most).
wait_mounted() {
    for _ in $(seq 1200); do
        if mountpoint -q "$mp" && [[ -d $tokdir ]]; then return 0; fi
        kill -0 "$mount_pid" 2>/dev/null || die "$1 exited"
        sleep 0.05
    done
    die "$1 not ready after 60 s"
}
# An external unmount makes the daemon drain its uploads, commit and exit.
unmount_px() {
    [[ -n ${mount_pid:-} ]] || return 0
    if mountpoint -q "$mp"; then
        fusermount3 -u "$mp" 2>/dev/null || kill -TERM "$mount_pid" 2>/dev/null || true
    fi
    wait "$mount_pid" 2>/dev/null || true
    mount_pid=
}
# Peak RSS (VmHWM) of the mount daemon, reset first with clear_refs so it covers one phase.
reset_peak() { echo 5 >"/proc/$mount_pid/clear_refs"; }
peak_mib() { awk '/^VmHWM/ { printf "%.1f", $2 / 1024 }' "/proc/$mount_pid/status"; }
