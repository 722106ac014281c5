//! Unmounting an in-process FUSE session in a test binary whose other tests fork children.
//!
//! A `Command` forks the whole test process: until the child execs, it holds a copy of every
//! descriptor, including files another test just closed in its mount, and `umount` of that
//! mount fails with `EBUSY` for that instant. Unmount waits the instant out (a mount busy for
//! longer is a real failure and still panics).
#![allow(dead_code)]

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Unmounts `dir` (a no-op when it is not mounted), retrying `EBUSY` for up to 10 s.
pub fn umount_when_free(dir: &Path) {
    let path = CString::new(dir.as_os_str().as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if unsafe { libc::umount2(path.as_ptr(), 0) } == 0 {
            return;
        }
        let err = std::io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINVAL) => return, // not (or no longer) a mount point
            Some(libc::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => panic!("umount {}: {err}", dir.display()),
        }
    }
}
