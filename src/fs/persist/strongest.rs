//! The strongest encryption this machine has seen per sNFT (issue #29 item 2): whoever
//! holds an sNFT's BTNS key (a hosted node does) can publish a usage document declaring no
//! encryption over a plaintext tree. A machine that has seen the sNFT encrypted does not
//! follow it there: the sNFT turns read-only on this machine (`EROFS` for writes; what it
//! can still read stays readable) until the owner confirms here with `pxfs decrypt --yes`,
//! which records the plaintext tree as chosen. Kept in `CACHE/encryption/<token>` (0600 in
//! a 0700 directory), so it survives restarts; a fresh cache has seen nothing.
//!
//! A document sealed under a data key this machine cannot open weakens the tree for this
//! machine just as much (its writes could only go under a key someone else chose): the
//! sNFT stays read-only here at the tree it knows until this machine's keys open the
//! published one (the owner adds this machine's wallet or passphrase where the key opens),
//! whereupon the next mount takes it in as a key change.

use std::path::{Path, PathBuf};

use crate::format::usage::Encryption;
use crate::fs::Fs;
use crate::fs::model::inode::TokenId;

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

/// What the log says when a document is sealed under a data key this machine cannot open.
pub fn unopenable_message(token: u64, seq: u64, why: &str) -> String {
    format!(
        "token {token}'s published usage document (seq {seq}) is sealed under a data key this \
         machine cannot open ({why}): it stays read-only here at the tree this machine knows, \
         so that nothing is written under a key it did not choose; if the owner changed the \
         key, add this machine's wallet or passphrase to it where it opens (`pxfs key \
         add-passphrase`, `pxfs key import`) and mount again"
    )
}

impl Fs {
    /// Why `published` (a document's encryption, `seq`) weakens token `id`'s tree for this
    /// machine, whose own tree is sealed under `own`: no encryption where this machine has
    /// seen it encrypted, or another data key that this machine's keys do not open. `None`
    /// when it does not (the same key, or one that opens: a key change, not a downgrade).
    pub(in crate::fs) async fn weakened_by(
        &self,
        id: TokenId,
        own: &Encryption,
        published: &Encryption,
        seq: u64,
    ) -> Option<String> {
        if weakens(&self.config().cache_dir, id, published) {
            return Some(downgrade_message(id, seq));
        }
        if published.is_none() || crate::fs::persist::rekey::same_tree_key(own, published) {
            return None;
        }
        let keys = self.config().keys.clone();
        let published = published.clone();
        let opened = tokio::task::spawn_blocking(move || keys.open(id, &published)).await;
        match opened {
            Ok(Ok(_)) => None,
            Ok(Err(why)) => Some(unopenable_message(id, seq, &why)),
            Err(e) => Some(unopenable_message(id, seq, &format!("key task: {e}"))),
        }
    }
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
