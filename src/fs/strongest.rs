//! The strongest encryption this machine has seen per sNFT (issue #29 item 2): whoever
//! holds an sNFT's BTNS key (a hosted node does) can publish a usage document declaring no
//! encryption over a plaintext tree. A machine that has seen the sNFT encrypted does not
//! follow it there: the sNFT turns read-only on this machine (`EROFS` for writes; what it
//! can still read stays readable) until the owner confirms here with `pxfs decrypt --yes`,
//! which records the plaintext tree as chosen. Kept in `CACHE/encryption/<token>` (0600 in
//! a 0700 directory), so it survives restarts; a fresh cache has seen nothing.

use std::path::{Path, PathBuf};

use crate::format::usage::Encryption;

fn path(cache_dir: &Path, token: u64) -> PathBuf {
    cache_dir.join("encryption").join(token.to_string())
}

/// This machine has seen `token`'s tree encrypted (and not been told otherwise).
pub fn seen_sealed(cache_dir: &Path, token: u64) -> bool {
    std::fs::read_to_string(path(cache_dir, token)).is_ok_and(|s| s.starts_with("sealed"))
}

/// `encryption` is weaker than what this machine has seen for `token`.
pub fn weakens(cache_dir: &Path, token: u64, encryption: &Encryption) -> bool {
    matches!(encryption, Encryption::None) && seen_sealed(cache_dir, token)
}

/// Remember that `token`'s tree is encrypted under `key_id`.
pub fn remember_sealed(cache_dir: &Path, token: u64, key_id: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let file = path(cache_dir, token);
    let dir = file.parent().expect("a file under the cache");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{token}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    writeln!(f, "sealed {key_id}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file)
}

/// The owner chose a plaintext tree for `token` on this machine.
pub fn accept_plaintext(cache_dir: &Path, token: u64) -> std::io::Result<()> {
    match std::fs::remove_file(path(cache_dir, token)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What the log says when a document weakens the encryption.
pub fn downgrade_message(token: u64, seq: u64) -> String {
    format!(
        "token {token}'s published usage document (seq {seq}) declares no encryption, but \
         this machine has seen its tree encrypted: it stays read-only here so that nothing is \
         written in clear; if the owner decrypted it, confirm on this machine with `pxfs \
         decrypt --yes {token}` (with it unmounted here) and mount it again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_that_saw_a_tree_encrypted_refuses_plaintext_until_the_owner_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            !weakens(dir.path(), 7, &Encryption::None),
            "a fresh cache saw nothing"
        );
        remember_sealed(dir.path(), 7, "0123456789abcdef").unwrap();
        assert!(weakens(dir.path(), 7, &Encryption::None));
        assert!(!weakens(dir.path(), 8, &Encryption::None), "per sNFT");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(dir.path(), 7))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        accept_plaintext(dir.path(), 7).unwrap();
        assert!(!weakens(dir.path(), 7, &Encryption::None));
        accept_plaintext(dir.path(), 7).unwrap();
    }
}
