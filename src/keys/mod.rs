//! Key management for encrypted sNFTs (docs/FORMAT.md §6.4): getting a token's data key
//! from its published `pxfs/usage/2` document with the owner's wallet or a passphrase,
//! making the data key of a newly encrypted sNFT, and changing which ways in a document
//! offers (`pxfs key`).
//!
//! The wallet signs only the message pxfs computes for the token
//! ([`format::wrap::wallet_message`]), never one read from a document, and only wallet
//! wraps carrying exactly that message are tried. Data keys, passphrases and signatures
//! stay in wiped memory and are never logged or shown by `Debug`.

pub mod document;
pub mod edit;
pub mod passphrase;
pub mod ring;

use alloy::primitives::Address;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use zeroize::Zeroizing;

use crate::format::usage::Encryption;
use crate::format::wrap::{self, EncryptionInfo, Kek, SCHEME, Wrap};
use crate::format::{DataKey, FormatError, KeyId, TreeCrypto};
pub use passphrase::{PASSPHRASE_FILE_ENV, Passphrase, PassphraseSource};

/// What can keep a data key from being had or changed. Each message is one sentence.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("wrong passphrase: it does not unlock token {token} (key id {key_id}){}", wallet_note(*.wallet_failed))]
    WrongPassphrase {
        token: u64,
        key_id: KeyId,
        /// The wallet was tried first and could not unlock it either.
        wallet_failed: Option<Address>,
    },
    #[error(
        "this wallet ({wallet}) cannot unlock token {token} (key id {key_id}): the data key was not wrapped for it; import a paper backup (pxfs key import {token}) or use a passphrase"
    )]
    WalletCannotUnlock {
        token: u64,
        key_id: KeyId,
        wallet: Address,
    },
    #[error("no way to unlock token {token} (key id {key_id}): {why}")]
    NoWayToUnlock {
        token: u64,
        key_id: KeyId,
        why: String,
    },
    #[error("{0}")]
    Passphrase(String),
    #[error("cannot sign with the wallet: {0}")]
    Sign(String),
    /// The document or a key does not follow docs/FORMAT.md.
    #[error("{0}")]
    Format(#[from] FormatError),
    /// A change that would leave a document without a way in, or that does not apply.
    #[error("{0}")]
    Refused(String),
    /// The storage node failed while reading or publishing the usage document.
    #[error("storage node: {0}")]
    Node(String),
}

fn wallet_note(wallet: Option<Address>) -> String {
    match wallet {
        Some(w) => format!(", and this wallet ({w}) cannot unlock it either"),
        None => String::new(),
    }
}

/// The token a key belongs to: the wallet message names all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRef {
    pub chain_id: u64,
    pub contract: Address,
    pub token_id: u64,
}

impl TokenRef {
    /// The message the owner's wallet signs for this token's KEK (FORMAT §6.4).
    pub fn wallet_message(&self) -> String {
        wrap::wallet_message(self.chain_id, &self.contract.to_string(), self.token_id)
            .expect("an Address always formats as a valid address")
    }
}

/// The wallet KEK of `token`: `signer`'s EIP-191 signature of the computed message.
pub fn wallet_kek(token: &TokenRef, signer: &PrivateKeySigner) -> Result<Kek, KeyError> {
    let sig = signer
        .sign_message_sync(token.wallet_message().as_bytes())
        .map_err(|e| KeyError::Sign(e.to_string()))?;
    let bytes = Zeroizing::new(sig.as_bytes());
    Ok(Kek::from_wallet_signature(bytes.as_ref())?)
}

/// How a data key was unlocked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlockedBy {
    Wallet(Address),
    Passphrase,
}

impl std::fmt::Display for UnlockedBy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UnlockedBy::Wallet(a) => write!(f, "the wallet {a}"),
            UnlockedBy::Passphrase => f.write_str("the passphrase"),
        }
    }
}

/// A data key and how it was had.
#[derive(Debug)]
pub struct Unlocked {
    pub data_key: DataKey,
    pub by: UnlockedBy,
}

/// What this machine has to unlock with.
#[derive(Debug, Clone)]
pub struct Means<'a> {
    /// The configured wallet signer (`PXFS_PRIVATE_KEY` or the keystore), if any.
    pub wallet: Option<&'a PrivateKeySigner>,
    pub passphrase: PassphraseSource,
}

/// The wraps of a document by kind, as this machine sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WrapCounts {
    /// Wallet wraps carrying the message pxfs computes for the token.
    pub wallet: usize,
    /// Wallet wraps carrying any other message: never signed, never used.
    pub wallet_foreign: usize,
    pub passphrase: usize,
    /// Wraps of kinds this version does not know (kept as they are).
    pub unknown: usize,
}

impl WrapCounts {
    pub fn of(info: &EncryptionInfo, token: &TokenRef) -> WrapCounts {
        let message = token.wallet_message();
        let mut c = WrapCounts::default();
        for w in &info.wraps {
            match w {
                Wrap::Wallet { message: m, .. } if *m == message => c.wallet += 1,
                Wrap::Wallet { .. } => c.wallet_foreign += 1,
                Wrap::Passphrase { .. } => c.passphrase += 1,
                Wrap::Unknown(_) => c.unknown += 1,
            }
        }
        c
    }
}

/// The tree's crypto for a usage document's `encryption`: plaintext, or the keys of the
/// data key unlocked with `means` (see [`unlock`]).
pub fn tree_crypto(
    token: &TokenRef,
    encryption: &Encryption,
    means: &Means<'_>,
) -> Result<TreeCrypto, KeyError> {
    match encryption {
        Encryption::None => Ok(TreeCrypto::Plain),
        Encryption::Sealed(info) => {
            let u = unlock(token, info, means)?;
            Ok(TreeCrypto::sealed(&u.data_key))
        }
    }
}

/// The data key of an encrypted token. The wallet is tried first (it asks nobody), on the
/// wallet wraps whose message is the one computed for `token`; then the passphrase, which
/// is asked for only when the document has a passphrase wrap.
pub fn unlock(
    token: &TokenRef,
    info: &EncryptionInfo,
    means: &Means<'_>,
) -> Result<Unlocked, KeyError> {
    if info.scheme != SCHEME {
        return Err(KeyError::Refused(format!(
            "token {} is encrypted with {:?}, which this pxfs does not know (it knows {SCHEME})",
            token.token_id, info.scheme
        )));
    }
    let key_id = info.key_id()?;
    let counts = WrapCounts::of(info, token);
    if counts.wallet_foreign > 0 {
        // Info, not warn: the mount's log shows it; a command's error already says it.
        tracing::info!(
            token = token.token_id,
            wraps = counts.wallet_foreign,
            "ignoring wallet wraps whose message is not the one pxfs computes for this token"
        );
    }
    let mut wallet_failed = None;
    if let Some(signer) = means.wallet
        && counts.wallet > 0
    {
        let message = token.wallet_message();
        let kek = wallet_kek(token, signer)?;
        let opened = info.wraps.iter().find_map(|w| match w {
            Wrap::Wallet { message: m, .. } if *m == message => w.open(&kek, &key_id).ok(),
            _ => None,
        });
        match opened {
            Some(data_key) => {
                return Ok(Unlocked {
                    data_key,
                    by: UnlockedBy::Wallet(signer.address()),
                });
            }
            None => wallet_failed = Some(signer.address()),
        }
    }
    if counts.passphrase > 0
        && let Some(p) = means.passphrase.get(&format!(
            "Passphrase of token {} (key id {key_id}): ",
            token.token_id
        ))?
    {
        return match info.unlock_with_passphrase(p.as_bytes()) {
            Ok(data_key) => Ok(Unlocked {
                data_key,
                by: UnlockedBy::Passphrase,
            }),
            Err(FormatError::WrongKey(_)) => Err(KeyError::WrongPassphrase {
                token: token.token_id,
                key_id,
                wallet_failed,
            }),
            Err(e) => Err(e.into()),
        };
    }
    if let Some(wallet) = wallet_failed {
        return Err(KeyError::WalletCannotUnlock {
            token: token.token_id,
            key_id,
            wallet,
        });
    }
    Err(KeyError::NoWayToUnlock {
        token: token.token_id,
        key_id,
        why: no_way_why(&counts, means),
    })
}

/// Why nothing could be tried: what the document offers against what this machine has.
fn no_way_why(c: &WrapCounts, means: &Means<'_>) -> String {
    let mut offers = Vec::new();
    if c.wallet > 0 {
        offers.push("the owner's wallet");
    }
    if c.passphrase > 0 {
        offers.push("a passphrase");
    }
    if offers.is_empty() {
        let foreign = if c.wallet_foreign > 0 {
            " (its wallet wraps name another message, which pxfs never signs)"
        } else {
            ""
        };
        return format!(
            "its usage document offers no wallet or passphrase wrap pxfs can use{foreign}; import a paper backup"
        );
    }
    let mut missing = Vec::new();
    if c.wallet > 0 && means.wallet.is_none() {
        missing.push("no wallet key is configured (PXFS_PRIVATE_KEY or the config's keystore)");
    }
    if c.passphrase > 0 && matches!(means.passphrase, PassphraseSource::None) {
        missing.push(
            "no passphrase is available (PXFS_PASSPHRASE_FILE, [keys] passphrase_file, or a terminal)",
        );
    }
    format!(
        "it opens with {}, and {}",
        offers.join(" or "),
        if missing.is_empty() {
            "this machine has neither".to_string()
        } else {
            missing.join(" and ")
        }
    )
}

/// A fresh data key for a token being encrypted (the mount's first commit of a new sNFT),
/// wrapped for `wallet` (the owner) and/or a passphrase; at least one is needed.
pub fn new_encryption(
    token: &TokenRef,
    wallet: Option<&PrivateKeySigner>,
    passphrase: Option<&[u8]>,
) -> Result<(DataKey, EncryptionInfo), KeyError> {
    if wallet.is_none() && passphrase.is_none() {
        return Err(KeyError::Refused(format!(
            "cannot encrypt token {}: no wallet key and no passphrase to wrap its data key with \
             (set PXFS_PRIVATE_KEY or the config's keystore, or a passphrase file with \
             PXFS_PASSPHRASE_FILE or [keys] passphrase_file; or make its tree plaintext with \
             [keys] encryption = \"none\")",
            token.token_id
        )));
    }
    let data_key = DataKey::random();
    let mut wraps = Vec::new();
    if let Some(signer) = wallet {
        wraps.push(Wrap::wallet(
            token.wallet_message(),
            &wallet_kek(token, signer)?,
            &data_key,
        ));
    }
    if let Some(p) = passphrase {
        wraps.push(Wrap::passphrase(p, &data_key)?);
    }
    let info = EncryptionInfo {
        scheme: SCHEME.into(),
        key_id: data_key.key_id().to_string(),
        wraps,
    };
    Ok((data_key, info))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ANVIL_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const ANVIL_1: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

    fn token() -> TokenRef {
        TokenRef {
            chain_id: 31337,
            contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3"
                .parse()
                .unwrap(),
            token_id: 1,
        }
    }

    fn signer(k: &str) -> PrivateKeySigner {
        k.parse().unwrap()
    }

    fn means<'a>(wallet: Option<&'a PrivateKeySigner>, p: Option<&str>) -> Means<'a> {
        Means {
            wallet,
            passphrase: match p {
                Some(p) => PassphraseSource::Given(Zeroizing::new(p.into())),
                None => PassphraseSource::None,
            },
        }
    }

    #[test]
    fn the_owners_wallet_unlocks_a_new_key_and_another_wallet_cannot() {
        let owner = signer(ANVIL_0);
        let (dk, info) = new_encryption(&token(), Some(&owner), None).unwrap();
        let u = unlock(&token(), &info, &means(Some(&owner), None)).unwrap();
        assert_eq!(u.data_key.expose(), dk.expose());
        assert_eq!(u.by, UnlockedBy::Wallet(owner.address()));

        let other = signer(ANVIL_1);
        let err = unlock(&token(), &info, &means(Some(&other), None)).unwrap_err();
        assert!(matches!(err, KeyError::WalletCannotUnlock { .. }), "{err}");
        assert!(err.to_string().starts_with("this wallet"), "{err}");
    }

    #[test]
    fn the_wallet_message_names_the_chain_contract_and_token() {
        let mut other = token();
        other.token_id = 2;
        let owner = signer(ANVIL_0);
        let (_, info) = new_encryption(&token(), Some(&owner), None).unwrap();
        // The same wallet, another token: its message differs, so the wrap is not even tried.
        let err = unlock(&other, &info, &means(Some(&owner), None)).unwrap_err();
        assert!(matches!(err, KeyError::NoWayToUnlock { .. }), "{err}");
    }

    #[test]
    fn a_wrong_passphrase_is_one_sentence_naming_the_token() {
        let (_, info) = new_encryption(&token(), None, Some(b"correct horse battery")).unwrap();
        let ok = unlock(&token(), &info, &means(None, Some("correct horse battery"))).unwrap();
        assert_eq!(ok.by, UnlockedBy::Passphrase);
        let err = unlock(&token(), &info, &means(None, Some("wrong horse"))).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("wrong passphrase"), "{text}");
        assert!(text.contains("token 1"), "{text}");
        assert!(!text.contains("wrong horse"), "{text}");
    }

    #[test]
    fn a_wallet_wrap_with_another_message_is_never_used() {
        let owner = signer(ANVIL_0);
        let dk = DataKey::random();
        // A forger's document: the owner's signature of the forger's text would open it.
        let forged = "pxfs data key\nchain: 31337\ncontract: 0x0\ntoken: 1".to_string();
        let kek = Kek::from_wallet_signature(
            &owner
                .sign_message_sync(forged.as_bytes())
                .unwrap()
                .as_bytes(),
        )
        .unwrap();
        let info = EncryptionInfo {
            scheme: SCHEME.into(),
            key_id: dk.key_id().to_string(),
            wraps: vec![Wrap::wallet(forged, &kek, &dk)],
        };
        let err = unlock(&token(), &info, &means(Some(&owner), None)).unwrap_err();
        assert!(matches!(err, KeyError::NoWayToUnlock { .. }), "{err}");
        assert!(err.to_string().contains("never signs"), "{err}");
    }

    #[test]
    fn nothing_to_unlock_with_says_what_is_missing() {
        let owner = signer(ANVIL_0);
        let (_, info) = new_encryption(&token(), Some(&owner), Some(b"pass phrase")).unwrap();
        let err = unlock(&token(), &info, &means(None, None)).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("no way to unlock token 1"), "{text}");
        assert!(text.contains("PXFS_PRIVATE_KEY"), "{text}");
        assert!(text.contains("PXFS_PASSPHRASE_FILE"), "{text}");
    }

    #[test]
    fn debug_output_shows_no_key_material() {
        let owner = signer(ANVIL_0);
        let (dk, info) = new_encryption(&token(), Some(&owner), None).unwrap();
        let u = unlock(&token(), &info, &means(Some(&owner), None)).unwrap();
        let shown = format!("{u:?} {:?}", means(None, Some("secret words")));
        assert!(!shown.contains(&hex::encode(dk.expose())), "{shown}");
        assert!(!shown.contains("secret words"), "{shown}");
    }
}
