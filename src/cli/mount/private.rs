//! The daemon's local files are its owner's alone: staged plaintext, the operation journal
//! (plaintext paths and xattrs), the chunk cache, the status files and `mount.log`. The
//! daemon runs with umask 077, whatever umask it was started under, so everything it
//! creates is 0700 (directories) or 0600 (files); a cache directory made by an earlier pxfs
//! under a wider umask is narrowed once, the first time it is seen without mode 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Sets the process's umask to 077 and narrows `cache_dir` (created if missing) and what is
/// in it to 0700 / 0600.
pub fn make_private(cache_dir: &Path) -> std::io::Result<()> {
    // SAFETY: umask has no preconditions; it only sets the process's file creation mask.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(cache_dir)?;
    let mode = std::fs::metadata(cache_dir)?.permissions().mode() & 0o777;
    if mode != 0o700 {
        tracing::info!(
            dir = %cache_dir.display(),
            "cache directory made private to its owner (0700, files 0600)"
        );
        narrow(cache_dir)?;
    }
    Ok(())
}

/// Directories 0700, files 0600, below and including `path`; symlinks are left alone.
fn narrow(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        for entry in std::fs::read_dir(path)? {
            narrow(&entry?.path())?;
        }
    } else if meta.is_file() {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn cache_and_staging_files_are_private_under_umask_022() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        // An earlier pxfs under umask 022 left readable files behind.
        // SAFETY: see make_private.
        unsafe {
            libc::umask(0o022);
        }
        std::fs::create_dir_all(cache.join("staging")).unwrap();
        std::fs::write(cache.join("staging/old"), b"plaintext").unwrap();
        assert_eq!(mode(&cache.join("staging/old")), 0o644);

        make_private(&cache).unwrap();
        assert_eq!(mode(&cache), 0o700);
        assert_eq!(mode(&cache.join("staging")), 0o700);
        assert_eq!(mode(&cache.join("staging/old")), 0o600);
        // What the daemon creates from now on, as the cache, the stager and the journal do.
        std::fs::create_dir_all(cache.join("chunks/ab")).unwrap();
        std::fs::write(cache.join("chunks/ab/chunk"), b"x").unwrap();
        std::fs::write(cache.join("staging/new"), b"plaintext").unwrap();
        assert_eq!(mode(&cache.join("chunks/ab")), 0o700);
        assert_eq!(mode(&cache.join("chunks/ab/chunk")), 0o600);
        assert_eq!(mode(&cache.join("staging/new")), 0o600);
    }
}
