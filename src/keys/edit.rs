//! Changes to a document's wrapped keys (`pxfs key add-passphrase|remove-passphrase|import`):
//! pure functions from one `encryption` member to the next. Wraps of unknown kinds and
//! other wallets' wraps are kept as they are.

use alloy::signers::local::PrivateKeySigner;

use super::{KeyError, TokenRef, new_wallet_wrap, open_with_wallet};
use crate::format::DataKey;
use crate::format::wrap::{EncryptionInfo, Kek, Wrap};

fn check_key(info: &EncryptionInfo, dk: &DataKey) -> Result<(), KeyError> {
    let id = info.key_id()?;
    if dk.key_id() != id {
        return Err(KeyError::Refused(format!(
            "key id mismatch: the key has id {}, the token's document says {id}",
            dk.key_id()
        )));
    }
    Ok(())
}

/// `info` with a passphrase wrap of `dk` added (fresh salt and nonce).
pub fn add_passphrase(
    info: &EncryptionInfo,
    dk: &DataKey,
    passphrase: &[u8],
) -> Result<EncryptionInfo, KeyError> {
    check_key(info, dk)?;
    let mut next = info.clone();
    next.wraps.push(Wrap::passphrase(passphrase, dk)?);
    Ok(next)
}

/// Which passphrase wraps to remove.
pub enum Remove<'a> {
    /// The wraps this passphrase opens (wrong passphrase: nothing removed, an error).
    Opened(&'a [u8]),
    /// Every passphrase wrap.
    All,
}

/// `info` without the chosen passphrase wraps, and how many went. Refused when what is
/// left has no way in known to work: another passphrase wrap, or a wallet wrap with the
/// token's message that `wallet` (this machine's) opens. A wallet wrap for some other
/// wallet (the previous owner's after a transfer) does not count.
pub fn remove_passphrase(
    token: &TokenRef,
    info: &EncryptionInfo,
    which: Remove<'_>,
    wallet: Option<&PrivateKeySigner>,
) -> Result<(EncryptionInfo, usize), KeyError> {
    let key_id = info.key_id()?;
    if !info
        .wraps
        .iter()
        .any(|w| matches!(w, Wrap::Passphrase { .. }))
    {
        return Err(KeyError::Refused(format!(
            "token {} has no passphrase to remove",
            token.token_id
        )));
    }
    let mut kept = Vec::new();
    let mut removed = 0;
    for w in &info.wraps {
        let goes = match (w, &which) {
            (Wrap::Passphrase { .. }, Remove::All) => true,
            (Wrap::Passphrase { kdf, .. }, Remove::Opened(p)) => {
                w.open(&Kek::from_passphrase(p, kdf)?, &key_id).is_ok()
            }
            _ => false,
        };
        if goes {
            removed += 1;
        } else {
            kept.push(w.clone());
        }
    }
    if removed == 0 {
        // Only a passphrase that opens none of the passphrase wraps gets here.
        return Err(KeyError::WrongPassphrase {
            token: token.token_id,
            key_id,
            wallet_failed: None,
        });
    }
    let next = EncryptionInfo {
        wraps: kept,
        ..info.clone()
    };
    let other_passphrase = next
        .wraps
        .iter()
        .any(|w| matches!(w, Wrap::Passphrase { .. }));
    if !other_passphrase && !wallet_opens(token, &next, wallet)? {
        let how = match wallet {
            Some(s) => format!("this wallet ({}) does not unlock it", s.address()),
            None => "no wallet key is configured here to check that the owner's wallet unlocks it (PXFS_PRIVATE_KEY or the config's keystore)".into(),
        };
        return Err(KeyError::Refused(format!(
            "refusing to remove the last way to unlock token {} (key id {key_id}): {how}; without it the data would be lost",
            token.token_id
        )));
    }
    Ok((next, removed))
}

/// Whether `wallet` opens one of `info`'s wallet wraps (an EIP-712 one, or a legacy one
/// carrying the token's message).
pub fn wallet_opens(
    token: &TokenRef,
    info: &EncryptionInfo,
    wallet: Option<&PrivateKeySigner>,
) -> Result<bool, KeyError> {
    let Some(signer) = wallet else {
        return Ok(false);
    };
    Ok(open_with_wallet(token, info, signer)?.is_some())
}

/// `info` with every wallet wrap `signer` opens (EIP-712 or legacy) replaced by one new
/// EIP-712 wrap with a fresh salt, so only a new signature opens it (`pxfs key
/// rotate-wallet`); wraps of other wallets and other kinds are kept. Refused when `dk` is
/// not the document's key or `signer` opens no wallet wrap.
pub fn rotate_wallet(
    token: &TokenRef,
    info: &EncryptionInfo,
    dk: &DataKey,
    signer: &PrivateKeySigner,
) -> Result<EncryptionInfo, KeyError> {
    check_key(info, dk)?;
    let key_id = info.key_id()?;
    let mut mine = Vec::new();
    for (i, w) in info.wraps.iter().enumerate() {
        let one = EncryptionInfo {
            wraps: vec![w.clone()],
            ..info.clone()
        };
        if matches!(w, Wrap::Wallet { .. } | Wrap::WalletTyped { .. })
            && open_with_wallet(token, &one, signer)?.is_some_and(|(k, _)| k.key_id() == key_id)
        {
            mine.push(i);
        }
    }
    if mine.is_empty() {
        return Err(KeyError::Refused(format!(
            "this wallet ({}) has no wallet wrap of token {} to rotate; `pxfs key import {}` wraps the key for it",
            signer.address(),
            token.token_id,
            token.token_id
        )));
    }
    super::migrate_wallet(token, info, &mine, signer, dk)
}

/// `info` with a wallet wrap of `dk` for `signer` added, or `None` when that wallet
/// already unlocks it. Refused when `dk` is not the document's key.
pub fn add_wallet(
    token: &TokenRef,
    info: &EncryptionInfo,
    dk: &DataKey,
    signer: &PrivateKeySigner,
) -> Result<Option<EncryptionInfo>, KeyError> {
    check_key(info, dk)?;
    if wallet_opens(token, info, Some(signer))? {
        return Ok(None);
    }
    let mut next = info.clone();
    next.wraps.push(new_wallet_wrap(token, signer, dk)?);
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{Means, PassphraseSource, new_encryption, unlock};

    const ANVIL_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ANVIL_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn token() -> TokenRef {
        TokenRef {
            chain_id: 31337,
            contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
                .parse()
                .unwrap(),
            token_id: 7,
        }
    }

    fn signer(k: &str) -> PrivateKeySigner {
        k.parse().unwrap()
    }

    #[test]
    fn an_added_passphrase_unlocks_and_removing_it_leaves_the_wallet() {
        let owner = signer(ANVIL_0);
        let (dk, info) = new_encryption(&token(), Some(&owner), None).unwrap();
        let with = add_passphrase(&info, &dk, b"pass phrase one").unwrap();
        assert_eq!(with.wraps.len(), 2);
        let means = Means {
            wallet: None,
            passphrase: PassphraseSource::Given(zeroize::Zeroizing::new("pass phrase one".into())),
        };
        assert_eq!(
            unlock(&token(), &with, &means).unwrap().data_key.expose(),
            dk.expose()
        );
        let err =
            remove_passphrase(&token(), &with, Remove::Opened(b"nope"), Some(&owner)).unwrap_err();
        assert!(err.to_string().starts_with("wrong passphrase"), "{err}");
        let (without, n) = remove_passphrase(
            &token(),
            &with,
            Remove::Opened(b"pass phrase one"),
            Some(&owner),
        )
        .unwrap();
        assert_eq!((n, without), (1, info));
    }

    #[test]
    fn the_last_way_in_is_not_removed() {
        let owner = signer(ANVIL_0);
        let (_, only_pass) = new_encryption(&token(), None, Some(b"only way in")).unwrap();
        let err = remove_passphrase(&token(), &only_pass, Remove::All, Some(&owner)).unwrap_err();
        assert!(
            err.to_string().contains("last way to unlock token 7"),
            "{err}"
        );

        // A wallet wrap this wallet cannot open (the previous owner's) does not count.
        let (dk, info) = new_encryption(&token(), Some(&signer(ANVIL_1)), None).unwrap();
        let with = add_passphrase(&info, &dk, b"only way in").unwrap();
        let err = remove_passphrase(&token(), &with, Remove::All, Some(&owner)).unwrap_err();
        assert!(err.to_string().contains("does not unlock it"), "{err}");
        let err = remove_passphrase(&token(), &with, Remove::All, None).unwrap_err();
        assert!(err.to_string().contains("no wallet key"), "{err}");
    }

    #[test]
    fn a_wallet_wrap_is_added_once_and_only_for_the_documents_key() {
        let (old, new) = (signer(ANVIL_1), signer(ANVIL_0));
        let (dk, info) = new_encryption(&token(), Some(&old), None).unwrap();
        let next = add_wallet(&token(), &info, &dk, &new).unwrap().unwrap();
        assert!(wallet_opens(&token(), &next, Some(&new)).unwrap());
        assert!(add_wallet(&token(), &next, &dk, &new).unwrap().is_none());
        let err = add_wallet(&token(), &info, &DataKey::random(), &new).unwrap_err();
        assert!(err.to_string().starts_with("key id mismatch"), "{err}");
    }

    #[test]
    fn rotating_the_wallet_wrap_needs_a_new_signature() {
        let owner = signer(ANVIL_0);
        let (dk, info) = new_encryption(&token(), Some(&owner), Some(b"pass phrase")).unwrap();
        let old_salt = info.wraps[0].typed_salt().unwrap().unwrap();
        let old_kek = crate::keys::wallet_kek(&token(), &owner, &old_salt).unwrap();
        let next = rotate_wallet(&token(), &info, &dk, &owner).unwrap();
        assert_eq!(next.wraps.len(), 2);
        assert_eq!(next.wraps[1], info.wraps[1]);
        let new_salt = next.wraps[0].typed_salt().unwrap().unwrap();
        assert_ne!(new_salt, old_salt);
        // The signature of the old wrap's typed data opens nothing any more.
        assert!(
            next.wraps
                .iter()
                .all(|w| w.open(&old_kek, &dk.key_id()).is_err())
        );
        assert!(wallet_opens(&token(), &next, Some(&owner)).unwrap());
        // A wallet without a wrap of its own has nothing to rotate.
        let err = rotate_wallet(&token(), &info, &dk, &signer(ANVIL_1)).unwrap_err();
        assert!(err.to_string().contains("no wallet wrap"), "{err}");
    }
}
