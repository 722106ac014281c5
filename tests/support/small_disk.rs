//! A disk that fills up, for the tests of what pxfs does when one does.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::process::Command;

/// A small tmpfs of its own (a cache disk or a node's repository that fills up); unmounted
/// on drop. Mounting it needs root.
pub struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    pub fn mount(bytes: u64) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("pxfs-small-disk-")
            .tempdir()
            .unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fill what is left of the disk with `name`; returns once a write got ENOSPC.
    pub fn fill(&self, name: &str) {
        let mut f = std::fs::File::create(self.path().join(name)).unwrap();
        let block = vec![7u8; 64 << 10];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return,
                Err(e) => panic!("filling the small disk: {e}"),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
