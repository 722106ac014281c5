#!/usr/bin/env bash
# Installs pxfs for use as a service (run as root): the optimized binary as
# $PREFIX/bin/pxfs (a copy, so rebuilding the clone changes nothing until the next install),
# /sbin/mount.pxfs (so mount(8) handles fstab type `pxfs`), and the systemd units of
# systemd/ with their ExecStart pointing at that binary. Upgrading is running it again: the
# config (/etc/pxfs) and the cache (/var/cache/pxfs) are never touched, and running units
# keep the old binary until they are restarted (the script names them).
#
#   bash scripts/install.sh               build with the release profile, then install
#   bash scripts/install.sh --no-build    install target/release/pxfs as it is
#   bash scripts/install.sh --units-only  only mount.pxfs and the units, for a binary that is
#                                         already $PREFIX/bin/pxfs, e.g. from
#                                         `cargo install --path . --locked --root /usr/local`
#
# Environment: PREFIX=/usr/local; DESTDIR= (stage into another root, as packagers do: no
# systemctl calls then); PXFS_BINARY= (the binary to install instead of target/release/pxfs).
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
binary=1
for arg in "$@"; do
    case "$arg" in
        --no-build) build=0 ;;
        --units-only) build=0; binary=0 ;;
        *) echo "install: unknown argument $arg (expected --no-build or --units-only)" >&2; exit 2 ;;
    esac
done
prefix=${PREFIX:-/usr/local}
dest=${DESTDIR:-}
log() { printf '\033[1minstall:\033[0m %s\n' "$*"; }

if [[ -z $dest && $(id -u) != 0 ]]; then
    echo "install: run as root (it writes $prefix/bin, /sbin and /etc/systemd/system)" >&2
    exit 1
fi

installed=$prefix/bin/pxfs
if ((binary)); then
    src=${PXFS_BINARY:-${CARGO_TARGET_DIR:-$PWD/target}/release/pxfs}
    if ((build)); then
        log "building pxfs with the release profile (about 10 minutes on 2 cores when nothing is built yet)"
        cargo build --release --locked --quiet
    fi
    [[ -x $src ]] || { echo "install: $src is missing: build it first (cargo build --release --locked)" >&2; exit 1; }
    if ! "$src" --version | grep -q '(optimized build'; then
        echo "install: $src is not an optimized build ($("$src" --version)); build it with --release" >&2
        exit 1
    fi
    mkdir -p "$dest$prefix/bin"
    # A new file renamed over the old one: a running daemon keeps its (old) binary intact.
    install -m 0755 "$src" "$dest$installed.new"
    mv -f "$dest$installed.new" "$dest$installed"
    log "$installed: $("$dest$installed" --version)"
else
    [[ -x $dest$installed ]] || { echo "install: $installed is missing (cargo install --path . --locked --root $prefix)" >&2; exit 1; }
fi

mkdir -p "$dest/sbin"
ln -sfn "$installed" "$dest/sbin/mount.pxfs"
log "/sbin/mount.pxfs -> $installed"

units=$dest/etc/systemd/system
mkdir -p "$units"
for unit in systemd/*.service systemd/*.timer; do
    name=$(basename "$unit")
    sed "s|/usr/local/bin/pxfs|$installed|g" "$unit" >"$units/$name.new"
    chmod 0644 "$units/$name.new"
    mv -f "$units/$name.new" "$units/$name"
    log "$units/$name"
done
# The config and its secrets live here; an existing one is kept as it is.
mkdir -p "$dest/etc/pxfs"
chmod 0700 "$dest/etc/pxfs"
if [[ ! -e $dest/etc/pxfs/config.toml ]]; then
    log "no /etc/pxfs/config.toml yet: write one (docs/configuration.md; the service: docs/operations.md) before starting pxfs@"
fi

if [[ -z $dest ]] && [[ -d /run/systemd/system ]]; then
    systemctl daemon-reload
    running=$(systemctl list-units --state=active --plain --no-legend 'pxfs*' | awk '{ print $1 }' | paste -sd' ' -)
    if [[ -n $running ]]; then
        log "running units keep the old binary until restarted: systemctl restart $running"
        log "(a mount's restart drains its uploads first)"
    fi
fi
log "done"
