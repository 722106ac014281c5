//! The mounts of this process's namespace, from `/proc/self/mountinfo`, read as bytes: a
//! mount point is any path, UTF-8 or not (the kernel writes it raw, escaping only space,
//! tab, newline and backslash as `\ooo`), and one such mount anywhere on the machine must
//! not hide all the others.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One line: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the mounted device.
    pub device: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

impl Mount {
    /// A FUSE mount (`fuse`, `fuse.pxfs`, `fuseblk`, ...).
    pub fn is_fuse(&self) -> bool {
        self.fs_type.starts_with("fuse")
    }

    /// A mount of pxfs (`fuse.pxfs`, or `fuse` with source `pxfs`).
    pub fn is_pxfs(&self) -> bool {
        self.fs_type == "fuse.pxfs" || (self.fs_type == "fuse" && self.source == "pxfs")
    }
}

/// Every mount, in mountinfo's order (a later one on the same point is on top); none when
/// the file cannot be read.
pub fn mounts() -> Vec<Mount> {
    std::fs::read("/proc/self/mountinfo")
        .map(|bytes| parse(&bytes))
        .unwrap_or_default()
}

/// The topmost mount on `mount_point`, compared as given and canonicalized (a dead FUSE
/// mount cannot be canonicalized).
pub fn on(mount_point: &Path) -> Option<Mount> {
    let canonical = mount_point.canonicalize().ok();
    mounts().into_iter().rev().find(|m| {
        m.mount_point == mount_point || canonical.as_deref() == Some(m.mount_point.as_path())
    })
}

pub fn parse(bytes: &[u8]) -> Vec<Mount> {
    bytes
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let split = line.windows(3).position(|w| w == b" - ")?;
            let (left, right) = (&line[..split], &line[split + 3..]);
            let mut fields = left.split(|&b| b == b' ');
            let device = text(fields.nth(2)?);
            let mount_point = PathBuf::from(OsString::from_vec(unescape(fields.nth(1)?)));
            let mut fields = right.split(|&b| b == b' ');
            let fs_type = text(fields.next()?);
            let source = fields
                .next()
                .map(|s| text(&unescape(s)))
                .unwrap_or_default();
            Some(Mount {
                device,
                mount_point,
                fs_type,
                source,
            })
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\'
            && i + 3 < field.len()
            && let Some(v) = std::str::from_utf8(&field[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn escapes_and_bytes_that_are_not_utf8_come_back_as_the_path() {
        let info = b"36 35 98:0 / /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                     37 35 0:52 / /mnt/caf\xe9 rw - fuse pxfs rw,user_id=0\n\
                     38 35 0:53 / /mnt/x\\134y rw - fuse.sshfs host: rw\n";
        let m = parse(info);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, Path::new("/mnt/a b"));
        assert_eq!(m[0].device, "98:0");
        assert_eq!(
            m[1].mount_point.as_os_str().as_bytes(),
            b"/mnt/caf\xe9".as_slice()
        );
        assert!(m[1].is_pxfs() && m[1].is_fuse());
        assert_eq!(m[2].mount_point, Path::new("/mnt/x\\y"));
        assert!(m[2].is_fuse() && !m[2].is_pxfs());
    }
}
