//! Key management for encrypted sNFTs (docs/FORMAT.md §6.4): getting a token's data key
//! from its published `pxfs/usage/2` document with the owner's wallet or a passphrase,
//! making the data key of a newly encrypted sNFT, and changing which ways in a document
//! offers (`pxfs key`).
//!
//! The wallet signs only EIP-712 typed data pxfs computes for the token
//! ([`format::wrap::wallet_typed_digest`]: a pxfs domain with chain and contract, the token,
//! a statement, and the wrap's own random salt), never a message read from a document.
//! Legacy wallet wraps (an EIP-191 signature of a fixed per-token text) are still opened,
//! only when they carry exactly the text computed for the token, and an unlock through one
//! gives the document to publish instead: the legacy wrap replaced by a typed one
//! ([`Unlocked::migrated`]). Data keys, passphrases and signatures stay in wiped memory and
//! are never logged or shown by `Debug`.

pub mod document;
pub mod edit;
pub mod keyring;
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
    /// The legacy message the owner's wallet signed for this token's KEK (FORMAT §6.4.1).
    pub fn wallet_message(&self) -> String {
        wrap::wallet_message(self.chain_id, &self.contract.to_string(), self.token_id)
            .expect("an Address always formats as a valid address")
    }

    /// The EIP-712 digest the owner's wallet signs for a wallet wrap with `salt`.
    pub fn wallet_typed_digest(&self, salt: &[u8; 32]) -> [u8; 32] {
        wrap::wallet_typed_digest(
            self.chain_id,
            &self.contract.to_string(),
            self.token_id,
            salt,
        )
        .expect("an Address always formats as a valid address")
    }
}

/// The legacy wallet KEK of `token`: `signer`'s EIP-191 signature of the computed message.
/// Only to open (and migrate) legacy wraps.
pub fn legacy_wallet_kek(token: &TokenRef, signer: &PrivateKeySigner) -> Result<Kek, KeyError> {
    let sig = signer
        .sign_message_sync(token.wallet_message().as_bytes())
        .map_err(|e| KeyError::Sign(e.to_string()))?;
    let bytes = Zeroizing::new(sig.as_bytes());
    Ok(Kek::from_wallet_signature(bytes.as_ref())?)
}

/// The KEK of `token`'s EIP-712 wallet wrap with `salt`: `signer`'s signature of the typed
/// data (`eth_signTypedData_v4`: the signature of its EIP-712 digest).
pub fn wallet_kek(
    token: &TokenRef,
    signer: &PrivateKeySigner,
    salt: &[u8; 32],
) -> Result<Kek, KeyError> {
    let digest = alloy::primitives::B256::from(token.wallet_typed_digest(salt));
    let sig = signer
        .sign_hash_sync(&digest)
        .map_err(|e| KeyError::Sign(e.to_string()))?;
    let bytes = Zeroizing::new(sig.as_bytes());
    Ok(Kek::from_wallet_typed_signature(bytes.as_ref(), salt)?)
}

/// A new EIP-712 wallet wrap of `dk` for `signer`, with a fresh salt (so a fresh
/// signature).
pub fn new_wallet_wrap(
    token: &TokenRef,
    signer: &PrivateKeySigner,
    dk: &DataKey,
) -> Result<Wrap, KeyError> {
    let salt = wrap::random_salt();
    Ok(Wrap::wallet_typed(
        &salt,
        &wallet_kek(token, signer, &salt)?,
        dk,
    ))
}

/// Opens the first of `info`'s wallet wraps that `signer` opens: EIP-712 wraps (each
/// signed with its own salt), then legacy wraps carrying the token's computed message.
/// Returns the key and, when a legacy wrap opened it, the position of every legacy wrap
/// that `signer`'s legacy signature opens (to be migrated).
pub(crate) fn open_with_wallet(
    token: &TokenRef,
    info: &EncryptionInfo,
    signer: &PrivateKeySigner,
) -> Result<Option<(DataKey, Vec<usize>)>, KeyError> {
    let key_id = info.key_id()?;
    for w in &info.wraps {
        let Some(salt) = w.typed_salt() else {
            continue;
        };
        let Ok(salt) = salt else {
            continue;
        };
        if let Ok(dk) = w.open(&wallet_kek(token, signer, &salt)?, &key_id) {
            return Ok(Some((dk, Vec::new())));
        }
    }
    let message = token.wallet_message();
    if !info
        .wraps
        .iter()
        .any(|w| matches!(w, Wrap::Wallet { message: m, .. } if *m == message))
    {
        return Ok(None);
    }
    let kek = legacy_wallet_kek(token, signer)?;
    let mut key = None;
    let mut legacy = Vec::new();
    for (i, w) in info.wraps.iter().enumerate() {
        if let Wrap::Wallet { message: m, .. } = w
            && *m == message
            && let Ok(dk) = w.open(&kek, &key_id)
        {
            key.get_or_insert(dk);
            legacy.push(i);
        }
    }
    Ok(key.map(|dk| (dk, legacy)))
}

/// `info` with the wraps at `legacy` (legacy wallet wraps `signer` opens) replaced by one
/// EIP-712 wallet wrap of `dk` for `signer` (fresh salt), in the first one's place.
pub fn migrate_wallet(
    token: &TokenRef,
    info: &EncryptionInfo,
    legacy: &[usize],
    signer: &PrivateKeySigner,
    dk: &DataKey,
) -> Result<EncryptionInfo, KeyError> {
    let typed = new_wallet_wrap(token, signer, dk)?;
    let mut wraps = Vec::with_capacity(info.wraps.len());
    let mut typed = Some(typed);
    for (i, w) in info.wraps.iter().enumerate() {
        if legacy.contains(&i) {
            if let Some(t) = typed.take() {
                wraps.push(t);
            }
        } else {
            wraps.push(w.clone());
        }
    }
    wraps.extend(typed);
    Ok(EncryptionInfo {
        wraps,
        ..info.clone()
    })
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
    /// Opened through a legacy (EIP-191) wallet wrap: the `encryption` to publish in its
    /// place, with that wrap replaced by an EIP-712 one (FORMAT §6.4.1).
    pub migrated: Option<EncryptionInfo>,
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
    /// Wallet wraps pxfs can try: EIP-712 ones and legacy ones carrying the message pxfs
    /// computes for the token.
    pub wallet: usize,
    /// Of those, legacy (EIP-191) ones, migrated on the next unlock.
    pub wallet_legacy: usize,
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
                Wrap::Wallet { message: m, .. } if *m == message => {
                    c.wallet += 1;
                    c.wallet_legacy += 1;
                }
                Wrap::WalletTyped { .. } => c.wallet += 1,
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
        match open_with_wallet(token, info, signer)? {
            Some((data_key, legacy)) => {
                let migrated = match legacy.is_empty() {
                    true => None,
                    false => {
                        tracing::info!(
                            token = token.token_id,
                            "a legacy (EIP-191) wallet wrap opened the data key: it is replaced by an EIP-712 one at the next publish"
                        );
                        Some(migrate_wallet(token, info, &legacy, signer, &data_key)?)
                    }
                };
                return Ok(Unlocked {
                    data_key,
                    by: UnlockedBy::Wallet(signer.address()),
                    migrated,
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
                migrated: None,
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
        wraps.push(new_wallet_wrap(token, signer, &data_key)?);
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
    fn the_signed_typed_data_names_the_chain_contract_and_token() {
        let owner = signer(ANVIL_0);
        let (_, info) = new_encryption(&token(), Some(&owner), None).unwrap();
        // The same wallet and wrap, another token, chain or contract: another digest, so
        // the signature pxfs makes does not open it.
        for f in [
            |t: &mut TokenRef| t.token_id = 2,
            |t: &mut TokenRef| t.chain_id = 1,
            |t: &mut TokenRef| t.contract = Address::ZERO,
        ] {
            let mut other = token();
            f(&mut other);
            let err = unlock(&other, &info, &means(Some(&owner), None)).unwrap_err();
            assert!(matches!(err, KeyError::WalletCannotUnlock { .. }), "{err}");
        }
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

    /// Public test vector: the digest and signature `ethers` 5.8 (`_TypedDataEncoder.hash`,
    /// `Wallet._signTypedData`) gives for this typed data; tests/fixtures/eip712_vector.js
    /// computes them (`NODE_PATH=contracts/node_modules node tests/fixtures/eip712_vector.js`).
    #[test]
    fn the_typed_data_digest_and_signature_match_ethers() {
        let t = TokenRef {
            token_id: 7,
            ..token()
        };
        let salt = [0x11u8; 32];
        assert_eq!(
            hex::encode(t.wallet_typed_digest(&salt)),
            "c8f7090cca230285713a7b003806a30a1c788187e2b76ed244abf0afe324b74b"
        );
        let sig = signer(ANVIL_0)
            .sign_hash_sync(&t.wallet_typed_digest(&salt).into())
            .unwrap();
        assert_eq!(
            hex::encode(sig.as_bytes()),
            "29b0b9ca9f3b22e6cbd22709e56db439d6a0c0dcee18cc39e0804aeaf0169cb8\
             5caa24e549d8a818bd4857d1b67e8da6fe8af2f6fd39ed10f77fc12b25a6fdad1b"
        );
        // Every field counts: another salt, token, chain or contract is another digest.
        let mut others = vec![t.wallet_typed_digest(&[0x12; 32])];
        for f in [
            |t: &mut TokenRef| t.token_id = 8,
            |t: &mut TokenRef| t.chain_id = 1,
            |t: &mut TokenRef| t.contract = Address::ZERO,
        ] {
            let mut o = t;
            f(&mut o);
            others.push(o.wallet_typed_digest(&salt));
        }
        for o in others {
            assert_ne!(o, t.wallet_typed_digest(&salt));
        }
    }

    fn legacy_signature(t: &TokenRef, s: &PrivateKeySigner) -> Vec<u8> {
        s.sign_message_sync(t.wallet_message().as_bytes())
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    /// Whether a signature of the legacy EIP-191 message opens any wrap of `info`.
    fn legacy_signature_opens(info: &EncryptionInfo, sig: &[u8]) -> bool {
        let kek = Kek::from_wallet_signature(sig).unwrap();
        let id = info.key_id().unwrap();
        info.wraps.iter().any(|w| w.open(&kek, &id).is_ok())
    }

    #[test]
    fn a_new_wallet_wrap_is_eip712_and_the_eip191_signature_does_not_open_it() {
        let owner = signer(ANVIL_0);
        let (dk, info) = new_encryption(&token(), Some(&owner), None).unwrap();
        assert!(
            matches!(info.wraps[..], [Wrap::WalletTyped { .. }]),
            "{info:?}"
        );
        let u = unlock(&token(), &info, &means(Some(&owner), None)).unwrap();
        assert_eq!(u.data_key.expose(), dk.expose());
        assert!(u.migrated.is_none());
        // The phishable signature (EIP-191 of the public per-token text) opens nothing,
        // nor does the right wallet's typed signature for another salt.
        assert!(!legacy_signature_opens(
            &info,
            &legacy_signature(&token(), &owner)
        ));
        let other_salt = wallet_kek(&token(), &owner, &[9; 32]).unwrap();
        assert!(info.wraps[0].open(&other_salt, &dk.key_id()).is_err());
        // Two wraps of the same key have different salts: one signature opens one wrap.
        let (_, again) = new_encryption(&token(), Some(&owner), None).unwrap();
        assert_ne!(
            info.wraps[0].typed_salt().unwrap().unwrap(),
            again.wraps[0].typed_salt().unwrap().unwrap()
        );
    }

    #[test]
    fn a_legacy_wallet_wrap_opens_once_and_migrates_to_eip712() {
        let owner = signer(ANVIL_0);
        let dk = DataKey::random();
        let legacy_sig = legacy_signature(&token(), &owner);
        let passphrase = Wrap::passphrase(b"pass phrase", &dk).unwrap();
        let old = EncryptionInfo {
            scheme: SCHEME.into(),
            key_id: dk.key_id().to_string(),
            wraps: vec![
                Wrap::wallet(
                    token().wallet_message(),
                    &Kek::from_wallet_signature(&legacy_sig).unwrap(),
                    &dk,
                ),
                passphrase.clone(),
            ],
        };
        assert!(legacy_signature_opens(&old, &legacy_sig));
        assert_eq!(WrapCounts::of(&old, &token()).wallet_legacy, 1);

        let u = unlock(&token(), &old, &means(Some(&owner), None)).unwrap();
        assert_eq!(u.data_key.expose(), dk.expose());
        let migrated = u.migrated.expect("a legacy wrap is migrated");
        assert_eq!(migrated.key_id, old.key_id);
        assert!(
            matches!(
                migrated.wraps[..],
                [Wrap::WalletTyped { .. }, Wrap::Passphrase { .. }]
            ),
            "{migrated:?}"
        );
        assert_eq!(migrated.wraps[1], passphrase);
        // After the migration the old signature opens nothing; the wallet still does.
        assert!(!legacy_signature_opens(&migrated, &legacy_sig));
        let again = unlock(&token(), &migrated, &means(Some(&owner), None)).unwrap();
        assert_eq!(again.data_key.expose(), dk.expose());
        assert!(again.migrated.is_none());
        assert_eq!(WrapCounts::of(&migrated, &token()).wallet_legacy, 0);

        // Another wallet's legacy wrap is not this wallet's to migrate: kept.
        let other = signer(ANVIL_1);
        let theirs = Wrap::wallet(
            token().wallet_message(),
            &Kek::from_wallet_signature(&legacy_signature(&token(), &other)).unwrap(),
            &dk,
        );
        let both = EncryptionInfo {
            wraps: vec![theirs.clone(), old.wraps[0].clone()],
            ..old.clone()
        };
        let m = unlock(&token(), &both, &means(Some(&owner), None))
            .unwrap()
            .migrated
            .unwrap();
        assert_eq!(m.wraps.len(), 2);
        assert_eq!(m.wraps[0], theirs);
        assert!(matches!(m.wraps[1], Wrap::WalletTyped { .. }));
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
