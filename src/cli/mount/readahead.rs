//! The kernel reads ahead of a sequential reader of a FUSE mount only 128 KiB by default
//! (the BDI's `read_ahead_kb`; the `max_readahead` of FUSE's INIT can only lower it). That
//! leaves one small request in flight, so each read waits for the daemon's round trip. The
//! limit is raised through sysfs once mounted; it needs root, and failing only costs speed.

use std::path::Path;

/// What sequential readers get ahead of them.
pub const READ_AHEAD_KIB: u32 = 4096;

/// Sets `read_ahead_kb` of the filesystem mounted at `mountpoint` (best effort).
pub fn raise(mountpoint: &Path) {
    let Some(dev) = device_of(mountpoint) else {
        tracing::debug!(mountpoint = %mountpoint.display(), "mount not found in mountinfo; read-ahead left as is");
        return;
    };
    let knob = format!("/sys/class/bdi/{dev}/read_ahead_kb");
    match std::fs::write(&knob, READ_AHEAD_KIB.to_string()) {
        Ok(()) => tracing::debug!(%knob, kib = READ_AHEAD_KIB, "read-ahead raised"),
        Err(e) => tracing::debug!(%knob, error = %e, "cannot raise read-ahead (needs root)"),
    }
}

/// `major:minor` of the last mount on `mountpoint`, from /proc/self/mountinfo.
fn device_of(mountpoint: &Path) -> Option<String> {
    let want = std::fs::canonicalize(mountpoint).ok()?;
    crate::mountinfo::mounts()
        .into_iter()
        .rev()
        .find(|m| m.mount_point == want)
        .map(|m| m.device)
}
