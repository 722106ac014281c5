//! Another machine changed the tree's data key (`pxfs encrypt`, `pxfs encrypt --new-key`,
//! `pxfs decrypt`: docs/FORMAT.md §10). A running mount's tree is sealed under the key it
//! loaded, so it cannot merge a document sealed under another: its commit stops with
//! [`crate::fs::FsError::Rekeyed`] (fsync fails at once with `EIO`, status shows why) instead
//! of reading the new tree with the wrong key. Its changes stay in the journal; the next
//! mount from the same cache starts from the converted tree and replays them onto it,
//! uploaded under the new key (`load::adopt_published`). Key edits (passphrases, imports)
//! keep the data key: those merge as before.

use crate::format::usage::Encryption;

/// Both trees are sealed under the same data key (or both plaintext).
pub fn same_tree_key(a: &Encryption, b: &Encryption) -> bool {
    match (a, b) {
        (Encryption::None, Encryption::None) => true,
        (Encryption::Sealed(a), Encryption::Sealed(b)) => a.key_id == b.key_id,
        _ => false,
    }
}

/// What the log and status say about a change of data key seen by a running mount.
pub fn rekeyed_message(token: u64, seq: u64) -> String {
    format!(
        "token {token}'s tree was converted on another machine (pxfs encrypt/decrypt, usage \
         document seq {seq}): this mount cannot merge across a change of data key, so it \
         commits nothing more; unmount and mount it again: this cache's changes not yet \
         published are then replayed onto the converted tree (nothing is lost)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::wrap::EncryptionInfo;

    fn sealed(key_id: &str, scheme: &str) -> Encryption {
        Encryption::Sealed(EncryptionInfo {
            scheme: scheme.into(),
            key_id: key_id.into(),
            wraps: Vec::new(),
        })
    }

    #[test]
    fn only_a_change_of_data_key_counts() {
        let s = "pxfs-aes256gcm/2";
        assert!(same_tree_key(&Encryption::None, &Encryption::None));
        assert!(same_tree_key(&sealed("aa", s), &sealed("aa", s)));
        assert!(!same_tree_key(&sealed("aa", s), &sealed("bb", s)));
        assert!(!same_tree_key(&Encryption::None, &sealed("aa", s)));
        assert!(!same_tree_key(&sealed("aa", s), &Encryption::None));
    }
}
