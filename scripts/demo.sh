#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the demo: a local devnet (anvil + pxfs node +
# deployed contracts + one minted sNFT) with the wallet's sNFTs mounted at $PXFS_DEMO_MOUNT
# (default /mnt/px). Stays in the foreground; Ctrl-C drains uploads, unmounts and stops.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dir="${PXFS_DEMO_DIR:-/var/lib/pxfs-devnet}"
mnt="${PXFS_DEMO_MOUNT:-/mnt/px}"
# A mount left behind by a killed demo would make the new one fail.
if grep -qs " $mnt fuse" /proc/mounts; then fusermount3 -uz "$mnt" || umount -l "$mnt" || true; fi
exec pxfs devnet up --dir "$dir" --mount "$mnt" "$@"
