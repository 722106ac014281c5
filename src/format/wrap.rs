//! Wrapped data keys (FORMAT.md §6.4): key-encryption keys from the owner's wallet
//! signature or a passphrase, `DK` sealed under each, and the usage document's
//! `encryption` member that carries them.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::canonical::{b64_array, b64_encode};
use super::keys::{DataKey, KeyId, Secret, hkdf32};
use super::{FormatError, Result};

pub const SCHEME: &str = "pxfs-aes256gcm/2";

/// Argon2id costs a writer uses (§6.4).
pub const ARGON2_M_KIB: u32 = 65_536;
pub const ARGON2_T: u32 = 3;
pub const ARGON2_P: u32 = 1;
/// Costs above these are refused on reading: a forged document must not make a mount
/// allocate gigabytes or spin for minutes.
const ARGON2_M_KIB_MAX: u32 = 1_048_576;
const ARGON2_T_MAX: u32 = 16;
const ARGON2_P_MAX: u32 = 16;

/// A key-encryption key. Wiped on drop; `Debug` shows nothing.
pub struct Kek(Secret);

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    /// `HKDF-SHA-256(signature, "", "pxfs/2 wallet kek")` of the 65-byte `r ‖ s ‖ v`
    /// signature of [`wallet_message`]; `v` is taken as 27/28 (0/1 is normalized).
    ///
    /// The legacy derivation (FORMAT §6.4.1): read to open and migrate old wraps, never
    /// used for a new wrap.
    pub fn from_wallet_signature(signature: &[u8]) -> Result<Kek> {
        let sig = normalized_signature(signature)?;
        Ok(Kek(hkdf32(sig.as_ref(), b"", b"pxfs/2 wallet kek")))
    }

    /// `HKDF-SHA-256(signature, salt, "pxfs/2 wallet-eip712 kek")` of the 65-byte
    /// `r ‖ s ‖ v` EIP-712 signature of [`wallet_typed_digest`] for this wrap's `salt`
    /// (the same salt is the HKDF salt); `v` as in [`Kek::from_wallet_signature`].
    pub fn from_wallet_typed_signature(signature: &[u8], salt: &[u8; 32]) -> Result<Kek> {
        let sig = normalized_signature(signature)?;
        Ok(Kek(hkdf32(sig.as_ref(), salt, b"pxfs/2 wallet-eip712 kek")))
    }

    /// Argon2id of the passphrase's bytes (as typed, no normalization) with the wrap's
    /// salt and costs.
    pub fn from_passphrase(passphrase: &[u8], kdf: &PassphraseKdf) -> Result<Kek> {
        if kdf.kdf != "argon2id" {
            return Err(FormatError::invalid(format!(
                "unknown passphrase kdf {:?}",
                kdf.kdf
            )));
        }
        if kdf.m_kib > ARGON2_M_KIB_MAX || kdf.t > ARGON2_T_MAX || kdf.p > ARGON2_P_MAX {
            return Err(FormatError::invalid(format!(
                "passphrase costs m_kib={} t={} p={} exceed what pxfs accepts",
                kdf.m_kib, kdf.t, kdf.p
            )));
        }
        let salt = b64_array::<16>(&kdf.salt, "salt")?;
        let params = Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
            .map_err(|e| FormatError::invalid(format!("passphrase costs: {e}")))?;
        let mut out = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase, &salt, out.as_mut())
            .map_err(|e| FormatError::invalid(format!("argon2id: {e}")))?;
        Ok(Kek(out))
    }

    /// The KEK's bytes, for the test vectors.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new_from_slice(self.0.as_ref()).expect("32-byte key")
    }

    /// `AES-256-GCM(KEK, nonce, "pxfs/2 wrap " ‖ key id, DK)`: the 48-byte `ct`.
    pub fn wrap(&self, dk: &DataKey, nonce: &[u8; 12]) -> Vec<u8> {
        let aad = aad(&dk.key_id());
        self.cipher()
            .encrypt(
                nonce.into(),
                Payload {
                    msg: dk.expose(),
                    aad: &aad,
                },
            )
            .expect("AES-GCM wraps 32 bytes")
    }

    /// Opens a wrap made for `key_id`; the key must also have that id.
    pub fn unwrap(&self, key_id: &KeyId, nonce: &[u8; 12], ct: &[u8]) -> Result<DataKey> {
        let plain = Zeroizing::new(
            self.cipher()
                .decrypt(
                    nonce.into(),
                    Payload {
                        msg: ct,
                        aad: &aad(key_id),
                    },
                )
                .map_err(|_| {
                    FormatError::WrongKey(
                        "the passphrase or wallet does not unlock this sNFT's data key".into(),
                    )
                })?,
        );
        let dk = DataKey::from_slice(&plain)?;
        if dk.key_id() != *key_id {
            return Err(FormatError::WrongKey(format!(
                "the unwrapped data key has id {}, the document says {key_id}",
                dk.key_id()
            )));
        }
        Ok(dk)
    }
}

/// The 65-byte `r ‖ s ‖ v` signature with `v` as 27/28 (0/1 is normalized).
fn normalized_signature(signature: &[u8]) -> Result<Zeroizing<[u8; 65]>> {
    let mut sig: Zeroizing<[u8; 65]> = Zeroizing::new(
        signature
            .try_into()
            .map_err(|_| FormatError::invalid("a wallet signature is 65 bytes (r, s, v)"))?,
    );
    sig[64] = match sig[64] {
        0 | 27 => 27,
        1 | 28 => 28,
        v => {
            return Err(FormatError::invalid(format!(
                "wallet signature has v = {v}"
            )));
        }
    };
    Ok(sig)
}

fn aad(key_id: &KeyId) -> Vec<u8> {
    format!("pxfs/2 wrap {key_id}").into_bytes()
}

/// The statement of the typed data a wallet signs for a wallet wrap (FORMAT §6.4). A
/// login message may neither equal nor contain it.
pub const WALLET_STATEMENT: &str = "Signing this unlocks the private files of this PX Storage sNFT in pxfs. Sign it only in pxfs, never on a website.";

/// The first line of the legacy wallet message ([`wallet_message`]).
pub const LEGACY_MESSAGE_PREFIX: &str = "pxfs data key";

/// The EIP-712 domain's `name` and `version`.
pub const EIP712_NAME: &str = "pxfs";
pub const EIP712_VERSION: &str = "2";

alloy::sol! {
    /// The EIP-712 message of a wallet wrap (FORMAT §6.4).
    struct UnlockPrivateFiles {
        string statement;
        uint256 tokenId;
        bytes32 salt;
    }
}

/// The EIP-712 signing digest (`keccak256(0x19 ‖ 0x01 ‖ domainSeparator ‖
/// hashStruct(message))`, what `eth_signTypedData_v4` signs) of a wallet wrap: domain
/// `{name: "pxfs", version: "2", chainId, verifyingContract: contract}`, message
/// `UnlockPrivateFiles {statement, tokenId, salt}`. A mount computes every field itself
/// except `salt` (the wrap's own, random), and never signs anything else a document says.
pub fn wallet_typed_digest(
    chain_id: u64,
    contract: &str,
    token_id: u64,
    salt: &[u8; 32],
) -> Result<[u8; 32]> {
    use alloy::sol_types::SolStruct;
    let addr: alloy::primitives::Address = contract
        .parse()
        .map_err(|e| FormatError::invalid(format!("contract address {contract:?}: {e}")))?;
    let domain = alloy::sol_types::Eip712Domain {
        name: Some(EIP712_NAME.into()),
        version: Some(EIP712_VERSION.into()),
        chain_id: Some(alloy::primitives::U256::from(chain_id)),
        verifying_contract: Some(addr),
        salt: None,
    };
    let message = UnlockPrivateFiles {
        statement: WALLET_STATEMENT.into(),
        tokenId: alloy::primitives::U256::from(token_id),
        salt: (*salt).into(),
    };
    Ok(message.eip712_signing_hash(&domain).0)
}

/// A fresh random wallet-wrap salt.
pub fn random_salt() -> [u8; 32] {
    let mut s = [0u8; 32];
    rand::rng().fill_bytes(&mut s);
    s
}

/// The legacy message the owner's wallet signed (EIP-191 `personal_sign`) for the wallet
/// KEK: fixed per token, naming chain, contract (EIP-55 checksummed) and token. Only read
/// (to open and migrate old wraps); a mount never signs a message taken from a document.
pub fn wallet_message(chain_id: u64, contract: &str, token_id: u64) -> Result<String> {
    let addr: alloy::primitives::Address = contract
        .parse()
        .map_err(|e| FormatError::invalid(format!("contract address {contract:?}: {e}")))?;
    Ok(format!(
        "{LEGACY_MESSAGE_PREFIX}\nchain: {chain_id}\ncontract: {}\ntoken: {token_id}",
        addr.to_checksum(None)
    ))
}

/// A fresh random wrap nonce.
pub fn random_nonce() -> [u8; 12] {
    let mut n = [0u8; 12];
    rand::rng().fill_bytes(&mut n);
    n
}

/// The usage document's `encryption` object (without the `"none"` case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncryptionInfo {
    pub scheme: String,
    pub key_id: String,
    pub wraps: Vec<Wrap>,
}

/// The passphrase KDF's parameters as a wrap writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassphraseKdf {
    pub kdf: String,
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
    pub salt: String,
}

impl PassphraseKdf {
    /// The writer's costs with a fresh 16-byte salt.
    pub fn fresh() -> PassphraseKdf {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        PassphraseKdf {
            kdf: "argon2id".into(),
            m_kib: ARGON2_M_KIB,
            t: ARGON2_T,
            p: ARGON2_P,
            salt: b64_encode(&salt),
        }
    }
}

/// One wrapped copy of `DK`. A kind this version does not know is kept verbatim, so a
/// commit never drops another machine's way in.
#[derive(Debug, Clone)]
pub enum Wrap {
    /// Legacy (EIP-191 `personal_sign` of [`wallet_message`]): opened and migrated,
    /// never written.
    Wallet {
        message: String,
        nonce: String,
        ct: String,
    },
    /// EIP-712 typed data ([`wallet_typed_digest`]) with this wrap's random `salt`.
    WalletTyped {
        salt: String,
        nonce: String,
        ct: String,
    },
    Passphrase {
        kdf: PassphraseKdf,
        nonce: String,
        ct: String,
    },
    Unknown(Box<RawValue>),
}

impl PartialEq for Wrap {
    fn eq(&self, other: &Wrap) -> bool {
        serde_json::to_string(self).ok() == serde_json::to_string(other).ok()
    }
}

#[derive(Serialize, Deserialize)]
struct WireWallet {
    kind: String,
    message: String,
    nonce: String,
    ct: String,
}

#[derive(Serialize, Deserialize)]
struct WireWalletTyped {
    kind: String,
    salt: String,
    nonce: String,
    ct: String,
}

/// The `kind` of an EIP-712 wallet wrap.
pub const WALLET_TYPED_KIND: &str = "wallet-eip712";

#[derive(Serialize, Deserialize)]
struct WirePassphrase {
    kind: String,
    #[serde(flatten)]
    kdf: PassphraseKdf,
    nonce: String,
    ct: String,
}

impl Serialize for Wrap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Wrap::Wallet { message, nonce, ct } => WireWallet {
                kind: "wallet".into(),
                message: message.clone(),
                nonce: nonce.clone(),
                ct: ct.clone(),
            }
            .serialize(s),
            Wrap::WalletTyped { salt, nonce, ct } => WireWalletTyped {
                kind: WALLET_TYPED_KIND.into(),
                salt: salt.clone(),
                nonce: nonce.clone(),
                ct: ct.clone(),
            }
            .serialize(s),
            Wrap::Passphrase { kdf, nonce, ct } => WirePassphrase {
                kind: "passphrase".into(),
                kdf: kdf.clone(),
                nonce: nonce.clone(),
                ct: ct.clone(),
            }
            .serialize(s),
            Wrap::Unknown(raw) => raw.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Wrap {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Wrap, D::Error> {
        use serde::de::Error;
        let raw = Box::<RawValue>::deserialize(d)?;
        #[derive(Deserialize)]
        struct Kind {
            kind: String,
        }
        let kind: Kind = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        Ok(match kind.kind.as_str() {
            "wallet" => {
                let w: WireWallet = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
                Wrap::Wallet {
                    message: w.message,
                    nonce: w.nonce,
                    ct: w.ct,
                }
            }
            WALLET_TYPED_KIND => {
                let w: WireWalletTyped =
                    serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
                Wrap::WalletTyped {
                    salt: w.salt,
                    nonce: w.nonce,
                    ct: w.ct,
                }
            }
            "passphrase" => {
                let w: WirePassphrase =
                    serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
                Wrap::Passphrase {
                    kdf: w.kdf,
                    nonce: w.nonce,
                    ct: w.ct,
                }
            }
            _ => Wrap::Unknown(raw),
        })
    }
}

impl Wrap {
    /// An EIP-712 wallet wrap of `dk` under `kek`, the KEK of the signature of the typed
    /// data with `salt` (see [`Kek::from_wallet_typed_signature`]).
    pub fn wallet_typed(salt: &[u8; 32], kek: &Kek, dk: &DataKey) -> Wrap {
        let nonce = random_nonce();
        Wrap::WalletTyped {
            salt: b64_encode(salt),
            nonce: b64_encode(&nonce),
            ct: b64_encode(&kek.wrap(dk, &nonce)),
        }
    }

    /// The salt of an EIP-712 wallet wrap (`None` for other kinds).
    pub fn typed_salt(&self) -> Option<Result<[u8; 32]>> {
        match self {
            Wrap::WalletTyped { salt, .. } => Some(b64_array::<32>(salt, "salt")),
            _ => None,
        }
    }

    /// A legacy wallet wrap of `dk` for the token's message (tests and the fixed test key
    /// only: pxfs never writes one for a real tree).
    pub fn wallet(message: String, kek: &Kek, dk: &DataKey) -> Wrap {
        let nonce = random_nonce();
        Wrap::Wallet {
            message,
            nonce: b64_encode(&nonce),
            ct: b64_encode(&kek.wrap(dk, &nonce)),
        }
    }

    /// A passphrase wrap of `dk` with fresh salt and nonce.
    pub fn passphrase(passphrase: &[u8], dk: &DataKey) -> Result<Wrap> {
        let kdf = PassphraseKdf::fresh();
        let kek = Kek::from_passphrase(passphrase, &kdf)?;
        let nonce = random_nonce();
        Ok(Wrap::Passphrase {
            kdf,
            nonce: b64_encode(&nonce),
            ct: b64_encode(&kek.wrap(dk, &nonce)),
        })
    }

    /// Opens this wrap with `kek` (from this wrap's kind), for the document's key id.
    pub fn open(&self, kek: &Kek, key_id: &KeyId) -> Result<DataKey> {
        let (nonce, ct) = match self {
            Wrap::Wallet { nonce, ct, .. }
            | Wrap::WalletTyped { nonce, ct, .. }
            | Wrap::Passphrase { nonce, ct, .. } => (nonce, ct),
            Wrap::Unknown(_) => return Err(FormatError::invalid("a wrap of an unknown kind")),
        };
        kek.unwrap(
            key_id,
            &b64_array::<12>(nonce, "nonce")?,
            &b64_array::<48>(ct, "ct")?,
        )
    }
}

impl EncryptionInfo {
    pub fn key_id(&self) -> Result<KeyId> {
        KeyId::parse(&self.key_id)
    }

    /// Unlocks with a passphrase: tries each passphrase wrap.
    pub fn unlock_with_passphrase(&self, passphrase: &[u8]) -> Result<DataKey> {
        let id = self.key_id()?;
        let mut tried = false;
        for w in &self.wraps {
            if let Wrap::Passphrase { kdf, .. } = w {
                tried = true;
                if let Ok(dk) = w.open(&Kek::from_passphrase(passphrase, kdf)?, &id) {
                    return Ok(dk);
                }
            }
        }
        Err(FormatError::WrongKey(if tried {
            "the passphrase does not unlock this sNFT".into()
        } else {
            "this sNFT has no passphrase".into()
        }))
    }

    /// Unlocks a legacy wallet wrap with the owner's EIP-191 signature of
    /// `expected_message` (computed by the caller with [`wallet_message`]); wraps naming
    /// another message, and EIP-712 wraps, are not used (see `crate::keys::unlock`).
    pub fn unlock_with_wallet(&self, expected_message: &str, signature: &[u8]) -> Result<DataKey> {
        let id = self.key_id()?;
        let kek = Kek::from_wallet_signature(signature)?;
        for w in &self.wraps {
            if let Wrap::Wallet { message, .. } = w
                && message == expected_message
                && let Ok(dk) = w.open(&kek, &id)
            {
                return Ok(dk);
            }
        }
        Err(FormatError::WrongKey(
            "this wallet does not unlock this sNFT's data key".into(),
        ))
    }
}
