//! Where a mount's tree keys come from. The core only asks: "open the tree whose usage
//! document says this `encryption`" and "what encryption does a new tree get". The mount
//! answers with the wallet or a passphrase (`crate::keys`); tests answer with a fixed key.

use std::fmt::Debug;

use crate::format::TokenId;
use crate::format::TreeCrypto;
use crate::format::usage::Encryption;

pub trait KeyRing: Send + Sync + Debug + 'static {
    /// The keys of token `token`'s tree, whose usage document says `encryption`. An error
    /// is one sentence saying why it cannot be opened and what would open it.
    fn open(&self, token: TokenId, encryption: &Encryption) -> Result<TreeCrypto, String>;

    /// [`KeyRing::open`], and the `encryption` the token's next commit should carry instead
    /// when opening it found one to replace (a legacy wallet wrap migrated to EIP-712,
    /// docs/FORMAT.md §6.4.1): same data key, other wraps. By default nothing is replaced.
    fn open_migrating(
        &self,
        token: TokenId,
        encryption: &Encryption,
    ) -> Result<(TreeCrypto, Option<Encryption>), String> {
        self.open(token, encryption).map(|c| (c, None))
    }

    /// The encryption a token without a tree gets (a fresh data key, wrapped), and its
    /// keys; `Encryption::None` for a plaintext tree.
    fn new_tree(&self, token: TokenId) -> Result<(Encryption, TreeCrypto), String>;
}

/// Plaintext trees only: new trees are plaintext, an encrypted one cannot be opened.
#[derive(Debug, Default)]
pub struct PlainOnly;

impl KeyRing for PlainOnly {
    fn open(&self, token: TokenId, encryption: &Encryption) -> Result<TreeCrypto, String> {
        match encryption {
            Encryption::None => Ok(TreeCrypto::Plain),
            Encryption::Sealed(info) => Err(format!(
                "sNFT {token} is encrypted (key id {}) and this mount has no key for it",
                info.key_id
            )),
        }
    }

    fn new_tree(&self, _token: TokenId) -> Result<(Encryption, TreeCrypto), String> {
        Ok((Encryption::None, TreeCrypto::Plain))
    }
}

/// One data key for every token, wrapped under a fixed stand-in "signature" (cheap to
/// open, unlike a passphrase's Argon2id): for tests and tools, never for real trees.
#[derive(Debug)]
pub struct FixedKey(pub crate::format::DataKey);

const FIXED_MESSAGE: &str = "pxfs fixed test key";
const FIXED_SIGNATURE: [u8; 65] = [27; 65];

impl KeyRing for FixedKey {
    fn open(&self, token: TokenId, encryption: &Encryption) -> Result<TreeCrypto, String> {
        match encryption {
            Encryption::None => Ok(TreeCrypto::Plain),
            Encryption::Sealed(info) => {
                let dk = info
                    .unlock_with_wallet(FIXED_MESSAGE, &FIXED_SIGNATURE)
                    .map_err(|e| format!("sNFT {token}: {e}"))?;
                Ok(TreeCrypto::sealed(&dk))
            }
        }
    }

    fn new_tree(&self, _token: TokenId) -> Result<(Encryption, TreeCrypto), String> {
        use crate::format::wrap::{EncryptionInfo, Kek, SCHEME, Wrap};
        let kek = Kek::from_wallet_signature(&FIXED_SIGNATURE).map_err(|e| e.to_string())?;
        let info = EncryptionInfo {
            scheme: SCHEME.into(),
            key_id: self.0.key_id().to_string(),
            wraps: vec![Wrap::wallet(FIXED_MESSAGE.into(), &kek, &self.0)],
        };
        Ok((Encryption::Sealed(info), TreeCrypto::sealed(&self.0)))
    }
}
