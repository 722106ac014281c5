//! Keys of an encrypted tree (FORMAT.md §6.1): the per-sNFT data key, the subkeys HKDF
//! derives from it, and the key id published in the usage document. Key material is
//! zeroized on drop and never printed (`Debug` shows only the key id).

use std::fmt;

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{FormatError, Result};

pub(crate) type HmacSha256 = Hmac<Sha256>;

/// A 32-byte secret that is wiped when dropped.
pub(crate) type Secret = Zeroizing<[u8; 32]>;

/// `HKDF-SHA-256(ikm, salt, info)`, 32 bytes. An empty `salt` is HKDF's default (zeros).
pub(crate) fn hkdf32(ikm: &[u8], salt: &[u8], info: &[u8]) -> Secret {
    let hk = Hkdf::<Sha256>::new(if salt.is_empty() { None } else { Some(salt) }, ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(info, out.as_mut())
        .expect("32 bytes is a valid HKDF-SHA-256 length");
    out
}

/// The per-sNFT data key `DK`.
#[derive(Clone)]
pub struct DataKey(Secret);

impl DataKey {
    /// A fresh random key (encryption being turned on).
    pub fn random() -> DataKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(k.as_mut());
        DataKey(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> DataKey {
        DataKey(Zeroizing::new(bytes))
    }

    pub fn from_slice(bytes: &[u8]) -> Result<DataKey> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| FormatError::invalid("a data key is 32 bytes"))?;
        Ok(DataKey::from_bytes(arr))
    }

    /// The raw key, for wrapping and the paper backup only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn key_id(&self) -> KeyId {
        TreeKeys::derive(self).key_id
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey(id {})", self.key_id())
    }
}

/// The first 8 bytes of `K_id`, written as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    pub fn parse(text: &str) -> Result<KeyId> {
        parse_hex16(text).map(KeyId).ok_or_else(|| {
            FormatError::invalid(format!("key id {text:?} is not 16 lowercase hex digits"))
        })
    }
}

/// 16 lowercase hex digits → 8 bytes (key ids and link-group ids).
pub(crate) fn parse_hex16(text: &str) -> Option<[u8; 8]> {
    if text.len() != 16 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    let mut out = [0u8; 8];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The subkeys of a data key (§6.1).
pub struct TreeKeys {
    pub(crate) node: Secret,
    pub(crate) content: Secret,
    /// `HMAC(K_shape, ·)` with the key already absorbed: page boundaries (§5).
    pub(crate) shape: HmacSha256,
    pub(crate) synth: HmacSha256,
    pub key_id: KeyId,
}

impl TreeKeys {
    pub fn derive(dk: &DataKey) -> TreeKeys {
        let sub = |label: &str| hkdf32(dk.expose(), b"", label.as_bytes());
        let mac = |k: Secret| HmacSha256::new_from_slice(k.as_ref()).expect("HMAC takes any key");
        let id = sub("pxfs/2 key id");
        let mut key_id = [0u8; 8];
        key_id.copy_from_slice(&id[..8]);
        TreeKeys {
            node: sub("pxfs/2 node"),
            content: sub("pxfs/2 content"),
            shape: mac(sub("pxfs/2 shape")),
            synth: mac(sub("pxfs/2 synthetic salt")),
            key_id: KeyId(key_id),
        }
    }

    /// The five subkeys by label, for the test vectors only.
    pub fn subkeys_for_test(dk: &DataKey) -> Vec<(&'static str, [u8; 32])> {
        [
            "pxfs/2 node",
            "pxfs/2 content",
            "pxfs/2 shape",
            "pxfs/2 synthetic salt",
            "pxfs/2 key id",
        ]
        .into_iter()
        .map(|l| (l, *hkdf32(dk.expose(), b"", l.as_bytes())))
        .collect()
    }
}

impl fmt::Debug for TreeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeKeys(id {})", self.key_id)
    }
}

/// Whether a tree is plaintext or encrypted, with the keys of the latter. Everything that
/// writes or reads nodes takes one: it decides `body` vs `sealed` and the boundary hash.
#[derive(Debug)]
pub enum TreeCrypto {
    Plain,
    Sealed(Box<TreeKeys>),
}

impl TreeCrypto {
    pub fn sealed(dk: &DataKey) -> TreeCrypto {
        TreeCrypto::Sealed(Box::new(TreeKeys::derive(dk)))
    }

    pub fn is_sealed(&self) -> bool {
        matches!(self, TreeCrypto::Sealed(_))
    }

    /// `h = SHA-256(key ‖ level)` or `HMAC-SHA-256(K_shape, key ‖ level)` (§5).
    pub fn boundary_hash(&self, key: &[u8], level: u8) -> [u8; 32] {
        match self {
            TreeCrypto::Plain => {
                let mut h = Sha256::new();
                h.update(key);
                h.update([level]);
                h.finalize().into()
            }
            TreeCrypto::Sealed(k) => {
                let mut m = k.shape.clone();
                m.update(key);
                m.update(&[level]);
                m.finalize().into_bytes().into()
            }
        }
    }

    /// Whether `key` ends a page at `level` by rule 1 of §5 (1 in 32).
    pub fn boundary(&self, key: &[u8], level: u8) -> bool {
        let h = self.boundary_hash(key, level);
        u32::from_be_bytes([h[0], h[1], h[2], h[3]]) < 0x0800_0000
    }
}
