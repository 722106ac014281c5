//! The mount's [`KeyRing`]: opens an encrypted sNFT's tree with the owner's wallet or a
//! passphrase (see [`super::unlock`]), and gives a new sNFT a fresh data key wrapped for the
//! wallet (or, on a machine without one, the passphrase), unless `[keys] encryption =
//! "none"` asks for plaintext trees.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;

use super::keyring::KeyRing;
use super::{Means, PassphraseSource, TokenRef};
use crate::format::TokenId;
use crate::format::TreeCrypto;
use crate::format::usage::Encryption;

pub struct MountKeys {
    pub chain_id: u64,
    pub contract: Address,
    pub wallet: Option<PrivateKeySigner>,
    pub passphrase: PassphraseSource,
    /// New trees are encrypted (the default).
    pub encrypt_new: bool,
}

impl std::fmt::Debug for MountKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountKeys")
            .field("wallet", &self.wallet.as_ref().map(|w| w.address()))
            .field("passphrase", &self.passphrase)
            .field("encrypt_new", &self.encrypt_new)
            .finish()
    }
}

impl MountKeys {
    fn token(&self, token: TokenId) -> TokenRef {
        TokenRef {
            chain_id: self.chain_id,
            contract: self.contract,
            token_id: token,
        }
    }
}

impl KeyRing for MountKeys {
    fn open(&self, token: TokenId, encryption: &Encryption) -> Result<TreeCrypto, String> {
        self.open_migrating(token, encryption).map(|(c, _)| c)
    }

    fn open_migrating(
        &self,
        token: TokenId,
        encryption: &Encryption,
    ) -> Result<(TreeCrypto, Option<Encryption>), String> {
        let Encryption::Sealed(info) = encryption else {
            return Ok((TreeCrypto::Plain, None));
        };
        let means = Means {
            wallet: self.wallet.as_ref(),
            passphrase: self.passphrase.clone(),
        };
        let u = super::unlock(&self.token(token), info, &means).map_err(|e| e.to_string())?;
        Ok((
            TreeCrypto::sealed(&u.data_key),
            u.migrated.map(Encryption::Sealed),
        ))
    }

    fn new_tree(&self, token: TokenId) -> Result<(Encryption, TreeCrypto), String> {
        if !self.encrypt_new {
            return Ok((Encryption::None, TreeCrypto::Plain));
        }
        // The wallet wrap is enough where there is a wallet: it opens on any machine.
        let passphrase = match &self.wallet {
            Some(_) => None,
            None => self
                .passphrase
                .get(&format!("New passphrase for sNFT {token}'s data key: "))
                .map_err(|e| e.to_string())?,
        };
        let (dk, info) = super::new_encryption(
            &self.token(token),
            self.wallet.as_ref(),
            passphrase.as_ref().map(|p| p.as_bytes()),
        )
        .map_err(|e| e.to_string())?;
        tracing::info!(
            token,
            key_id = %info.key_id,
            "new sNFT tree: encrypted (docs/FORMAT.md §6); `pxfs key export` makes a paper backup"
        );
        Ok((Encryption::Sealed(info), TreeCrypto::sealed(&dk)))
    }
}

/// The keys of a tree being made under a data key chosen beforehand (`pxfs encrypt`): new
/// trees get exactly this key and its wraps; only it opens.
pub struct GivenKey {
    pub encryption: Encryption,
    pub key: crate::format::DataKey,
}

impl std::fmt::Debug for GivenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GivenKey").finish_non_exhaustive()
    }
}

impl KeyRing for GivenKey {
    fn open(&self, token: TokenId, encryption: &Encryption) -> Result<TreeCrypto, String> {
        if *encryption == self.encryption {
            Ok(TreeCrypto::sealed(&self.key))
        } else {
            Err(format!("sNFT {token}: not the tree this key was made for"))
        }
    }

    fn new_tree(&self, _token: TokenId) -> Result<(Encryption, TreeCrypto), String> {
        Ok((self.encryption.clone(), TreeCrypto::sealed(&self.key)))
    }
}
