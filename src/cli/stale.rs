//! Stale mounts: a mount point whose FUSE daemon is gone (killed, crashed). The kernel
//! keeps the mount and answers every access with `ENOTCONN` ("Transport endpoint is not
//! connected") until someone unmounts it; `pxfs mount` and `pxfs unmount` do that
//! themselves (a lazy unmount), or say exactly what to run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;

/// How long a mount point may take to answer `stat` before we call its daemon hung.
const STAT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `stat` on a mount point found.
#[derive(Debug, PartialEq, Eq)]
pub enum State {
    /// It answers (a directory, mounted or not).
    Live,
    /// A FUSE mount whose daemon is gone.
    Stale,
}

/// `mountpoint` made absolute without following symlinks or touching it: a stale mount
/// cannot be canonicalized.
pub fn absolute(mountpoint: &Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(mountpoint)?)
}

/// Stat `mountpoint` on a helper thread, so a hung daemon cannot hang us too.
pub fn probe(mountpoint: &Path) -> anyhow::Result<State> {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = mountpoint.to_path_buf();
    std::thread::spawn(move || {
        // The kernel may answer `stat` from its attribute cache even for a dead mount;
        // `statfs` always asks the daemon.
        let _ = tx.send(std::fs::metadata(&path).and_then(|_| statfs(&path)));
    });
    match rx.recv_timeout(STAT_TIMEOUT) {
        Ok(Ok(_)) => Ok(State::Live),
        // ECONNABORTED: the request was caught while the kernel tore the connection down.
        Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::ENOTCONN | libc::ECONNABORTED)) => {
            Ok(State::Stale)
        }
        // Anything else (missing, not a directory, permissions) is the caller's to report.
        Ok(Err(_)) => Ok(State::Live),
        Err(_) => bail!(
            "{} does not answer within {}s: its pxfs daemon may be hung; `pxfs unmount --abort {}` ends its connection and unmounts it (what was closed and not yet committed stays in its cache directory's journal)",
            mountpoint.display(),
            STAT_TIMEOUT.as_secs(),
            mountpoint.display()
        ),
    }
}

fn statfs(path: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: an all-zero statfs is a valid out-buffer for statfs(2) to fill.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid NUL-terminated path and a buffer of the right type.
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The command a user would run to remove a stale mount by hand.
pub fn command(mountpoint: &Path) -> String {
    format!("fusermount3 -u -z {}", mountpoint.display())
}

/// If `mountpoint` is a stale mount, detach it (lazily: processes still inside it keep
/// their references until they leave). `Ok(true)` if one was removed.
pub fn clean_up(mountpoint: &Path) -> anyhow::Result<bool> {
    if probe(mountpoint)? == State::Live {
        return Ok(false);
    }
    detach(mountpoint)?;
    if probe(mountpoint)? == State::Stale {
        // Several stale mounts stacked on one another: one detach removes one.
        detach(mountpoint)?;
    }
    Ok(true)
}

fn detach(mountpoint: &Path) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    // As root the syscall needs no helper; otherwise fusermount3 (setuid) may do it for
    // the user who mounted.
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(mountpoint.as_os_str().as_bytes())?;
        // SAFETY: a valid NUL-terminated path; umount2 has no other preconditions.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        tracing::debug!(error = %std::io::Error::last_os_error(), "umount2 failed; trying fusermount3");
    }
    let out = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mountpoint)
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => bail!(
            "{} is a stale mount (its pxfs daemon is gone) and could not be unmounted ({}); run `{}`",
            mountpoint.display(),
            String::from_utf8_lossy(&o.stderr).trim(),
            command(mountpoint)
        ),
        Err(e) => bail!(
            "{} is a stale mount (its pxfs daemon is gone) and fusermount3 could not run ({e}); run `{}` or, as root, `umount -l {}`",
            mountpoint.display(),
            command(mountpoint),
            mountpoint.display()
        ),
    }
}

/// Where the kernel lists FUSE connections (the `fusectl` filesystem).
const CONNECTIONS: &str = "/sys/fs/fuse/connections";

/// End the FUSE connection of the mount on `mountpoint` (every request waiting on its
/// daemon fails, and so does the daemon's device), then detach the mount. For a daemon
/// that neither answers nor exits: e.g. one killed while one of its threads waited in the
/// kernel for a directory lock that a request waiting on that daemon held.
pub fn abort(mountpoint: &Path) -> anyhow::Result<()> {
    let Some(connection) = connection_of(mountpoint) else {
        bail!("{} is not a FUSE mount", mountpoint.display());
    };
    let dir = Path::new(CONNECTIONS).join(connection.to_string());
    if !dir.exists() {
        mount_fusectl()?;
    }
    std::fs::write(dir.join("abort"), "1").map_err(|e| {
        anyhow::anyhow!(
            "cannot abort FUSE connection {connection} ({}): {e}",
            dir.display()
        )
    })?;
    detach(mountpoint)
}

/// The FUSE connection of the mount on `mountpoint` (the topmost, if stacked): its
/// device's minor number, which names its directory under [`CONNECTIONS`].
fn connection_of(mountpoint: &Path) -> Option<u32> {
    crate::mountinfo::mounts()
        .into_iter()
        .filter(|m| m.mount_point == mountpoint && m.is_fuse())
        .filter_map(|m| {
            let (major, minor) = m.device.split_once(':')?;
            (major == "0").then(|| minor.parse().ok()).flatten()
        })
        .next_back()
}

fn mount_fusectl() -> anyhow::Result<()> {
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (source, target, fstype) = (c("fusectl"), c(CONNECTIONS), c("fusectl"));
    // SAFETY: valid NUL-terminated strings; no mount data.
    let r = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        // Already mounted (by another process meanwhile): fine.
        if e.raw_os_error() != Some(libc::EBUSY) {
            bail!("cannot mount fusectl on {CONNECTIONS} (needs root): {e}");
        }
    }
    Ok(())
}

/// "TYPE SOURCE" of the mount on `mountpoint` (the topmost, if stacked), when it is a
/// FUSE mount (`fuse.pxfs pxfs`, `fuse pxfs`, `fuse.sshfs host:`, ...). Read from `/proc/self/mountinfo`, without
/// touching the mount.
pub fn mounted_fuse_type(mountpoint: &Path) -> Option<String> {
    crate::mountinfo::mounts()
        .into_iter()
        .filter(|m| m.mount_point == mountpoint && m.is_fuse())
        .map(|m| format!("{} {}", m.fs_type, m.source))
        .next_back()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_directory_is_not_a_stale_mount() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(probe(&dir.path().join("nope")).unwrap(), State::Live);
        assert!(!clean_up(dir.path()).unwrap());
    }
}
