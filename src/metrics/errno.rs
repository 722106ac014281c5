//! Errno values as the label a dashboard shows: the symbolic name, a bounded set.

/// `OK` for 0, the name of every errno pxfs answers with (src/fs/error.rs and the FUSE
/// adapter's own), else `other`: a label never takes an unbounded set of values.
pub fn name(errno: i32) -> &'static str {
    match errno {
        0 => "OK",
        libc::ENOENT => "ENOENT",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::EINVAL => "EINVAL",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::EDQUOT => "EDQUOT",
        libc::EACCES => "EACCES",
        libc::EROFS => "EROFS",
        libc::EPERM => "EPERM",
        libc::ENODATA => "ENODATA",
        libc::ERANGE => "ERANGE",
        libc::E2BIG => "E2BIG",
        libc::EFBIG => "EFBIG",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EXDEV => "EXDEV",
        libc::EBADF => "EBADF",
        libc::EIO => "EIO",
        libc::ENOSPC => "ENOSPC",
        libc::EAGAIN => "EAGAIN",
        libc::ENOTTY => "ENOTTY",
        libc::ENOSYS => "ENOSYS",
        _ => "other",
    }
}
