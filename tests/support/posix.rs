//! What a user's tools ask of a mounted file through libc, for the tests that look at a
//! kernel mount: extended attributes (`getfattr`/`setfattr`) and `statvfs` (`df`). Each call
//! panics, naming the path, the attribute and the errno, where the tool would print an error.
#![allow(dead_code)]

use std::ffi::CString;
use std::path::Path;

fn c_path(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

/// The value of extended attribute `name` of `p`, as text.
pub fn xattr(p: &Path, name: &str) -> String {
    let c = c_path(p);
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name} of {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    String::from_utf8(buf).unwrap()
}

/// The value of extended attribute `name` of `p`, a decimal number (`user.pxfs.usage`, …).
pub fn xattr_u64(p: &Path, name: &str) -> u64 {
    let value = xattr(p, name);
    value
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number: {value:?}"))
}

/// Sets extended attribute `name` of `p` to `value`.
pub fn set_xattr(p: &Path, name: &str, value: &[u8]) {
    let c = c_path(p);
    let n = CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of value.len() bytes.
    let r = unsafe {
        libc::setxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        r,
        0,
        "setxattr {name} of {}: {}",
        p.display(),
        std::io::Error::last_os_error()
    );
}

/// What `statvfs(2)` says of the filesystem holding `p` (what `df` shows).
pub fn statvfs(p: &Path) -> libc::statvfs {
    let c = c_path(p);
    // SAFETY: a zeroed statvfs is a valid out-parameter; c is a valid C string.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(
            libc::statvfs(c.as_ptr(), &mut s),
            0,
            "statvfs {}: {}",
            p.display(),
            std::io::Error::last_os_error()
        );
        s
    }
}
