#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the demo: a local devnet (anvil + pxfs node +
# deployed contracts + one minted sNFT) with the wallet's sNFTs mounted at $PXFS_DEMO_MOUNT
# (default /mnt/px). Stays in the foreground; Ctrl-C drains uploads, unmounts and stops.
# It keeps its data in $PXFS_DEMO_DIR: run again, it resumes the same chain, sNFT and drive;
# `bash scripts/demo.sh --fresh` starts over (saying what it deletes). Other arguments go to
# `pxfs devnet up` too (e.g. --allow-other to share the drive with other local users).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dir="${PXFS_DEMO_DIR:-/var/lib/pxfs-devnet}"
mnt="${PXFS_DEMO_MOUNT:-/mnt/px}"
# A dead mount left behind by a killed demo ("Transport endpoint is not connected") would
# make the new one fail; a live one (a demo still running) is left alone.
if grep -qs " $mnt fuse" /proc/mounts && ! stat "$mnt" >/dev/null 2>&1; then
  fusermount3 -uz "$mnt" || umount -l "$mnt" || true
fi
exec pxfs devnet up --dir "$dir" --mount "$mnt" "$@"
