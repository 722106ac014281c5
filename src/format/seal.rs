//! Sealing (FORMAT.md §6.2, §6.3): file content as a STREAM of AES-256-GCM chunks bound to
//! the file version, position and end; node bodies under a synthetic salt with the public
//! lists as associated data.

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::Mac;
use rand::RngCore;

use super::keys::{TreeKeys, hkdf32};
use super::{FormatError, Result};

/// Plaintext bytes per content chunk.
pub const PLAIN_CHUNK: usize = 262_128;
/// Sealed bytes per content chunk (one UnixFS leaf).
pub const SEALED_CHUNK: usize = 262_144;
/// Bytes of the tag AES-GCM appends to each chunk.
pub const TAG: usize = 16;

/// Number of chunks of a `size`-byte file (0 for an empty file: no content object).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(PLAIN_CHUNK as u64)
}

/// Stored size of a `size`-byte file's sealed content: `size + 16 × ceil(size / 262128)`.
pub fn sealed_len(size: u64) -> u64 {
    size + TAG as u64 * chunk_count(size)
}

/// A file version's random 32-byte content salt (the entry's `key`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ContentSalt(pub [u8; 32]);

impl ContentSalt {
    /// A fresh salt: every write of a file makes a new version with a new one.
    pub fn random() -> ContentSalt {
        let mut s = [0u8; 32];
        rand::rng().fill_bytes(&mut s);
        ContentSalt(s)
    }
}

/// The key of one file version: `HKDF(K_content, content salt, "pxfs/2 chunk")`.
pub struct VersionKey(Aes256Gcm);

impl VersionKey {
    pub fn new(keys: &TreeKeys, salt: &ContentSalt) -> VersionKey {
        let k = hkdf32(keys.content.as_ref(), &salt.0, b"pxfs/2 chunk");
        VersionKey(Aes256Gcm::new_from_slice(k.as_ref()).expect("32-byte key"))
    }

    fn nonce(index: u64, last: bool) -> [u8; 12] {
        let mut n = [0u8; 12];
        n[3..11].copy_from_slice(&index.to_be_bytes());
        n[11] = last as u8;
        n
    }

    /// Seals plaintext chunk `index` (1–262,128 bytes; `last` for the final chunk).
    pub fn seal_chunk(&self, index: u64, plain: &[u8], last: bool) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(plain.len() + TAG);
        buf.extend_from_slice(plain);
        self.seal_chunk_in_place(index, &mut buf, last)?;
        Ok(buf)
    }

    /// [`VersionKey::seal_chunk`] on a buffer holding the plaintext: it becomes the sealed
    /// chunk (the tag is appended; give it [`TAG`] bytes of spare capacity to avoid a copy).
    pub fn seal_chunk_in_place(&self, index: u64, buf: &mut Vec<u8>, last: bool) -> Result<()> {
        if buf.is_empty() || buf.len() > PLAIN_CHUNK || (!last && buf.len() != PLAIN_CHUNK) {
            return Err(FormatError::invalid(format!(
                "content chunk {index} has {} bytes",
                buf.len()
            )));
        }
        let nonce = Self::nonce(index, last);
        self.0
            .encrypt_in_place((&nonce).into(), b"", buf)
            .map_err(|_| FormatError::invalid("AES-GCM refused to seal a chunk"))
    }

    /// Opens sealed chunk `index` (262,144 bytes, or 17–262,144 if `last`): the plaintext,
    /// or an error naming the chunk if it was changed, moved, or its end flag is wrong.
    pub fn open_chunk(&self, index: u64, sealed: &[u8], last: bool) -> Result<Vec<u8>> {
        self.open_chunk_owned(index, sealed.to_vec(), last)
    }

    /// [`VersionKey::open_chunk`] in the sealed chunk's own buffer (no copy).
    pub fn open_chunk_owned(&self, index: u64, mut sealed: Vec<u8>, last: bool) -> Result<Vec<u8>> {
        let ok_len = if last {
            (TAG + 1..=SEALED_CHUNK).contains(&sealed.len())
        } else {
            sealed.len() == SEALED_CHUNK
        };
        if !ok_len {
            return Err(FormatError::Tampered(format!(
                "content chunk {index} ({} bytes{})",
                sealed.len(),
                if last { ", last" } else { "" }
            )));
        }
        let nonce = Self::nonce(index, last);
        self.0
            .decrypt_in_place((&nonce).into(), b"", &mut sealed)
            .map_err(|_| FormatError::Tampered(format!("content chunk {index}")))?;
        Ok(sealed)
    }
}

/// Seals a whole file version (non-empty).
pub fn seal_content(key: &VersionKey, plain: &[u8]) -> Result<Vec<u8>> {
    if plain.is_empty() {
        return Err(FormatError::invalid("an empty file has no content object"));
    }
    let n = plain.len().div_ceil(PLAIN_CHUNK);
    let mut out = Vec::with_capacity(sealed_len(plain.len() as u64) as usize);
    for (i, chunk) in plain.chunks(PLAIN_CHUNK).enumerate() {
        out.extend(key.seal_chunk(i as u64, chunk, i + 1 == n)?);
    }
    Ok(out)
}

/// Opens a whole sealed content object of a `size`-byte file; its length must be exactly
/// [`sealed_len`]`(size)` (a truncated or extended object is refused).
pub fn open_content(key: &VersionKey, sealed: &[u8], size: u64) -> Result<Vec<u8>> {
    if size == 0 || sealed.len() as u64 != sealed_len(size) {
        return Err(FormatError::Tampered(format!(
            "content object ({} bytes stored for a {size}-byte file)",
            sealed.len()
        )));
    }
    let n = sealed.len().div_ceil(SEALED_CHUNK);
    let mut out = Vec::with_capacity(size as usize);
    for (i, chunk) in sealed.chunks(SEALED_CHUNK).enumerate() {
        out.extend(key.open_chunk(i as u64, chunk, i + 1 == n)?);
    }
    Ok(out)
}

/// `salt = HMAC-SHA-256(K_synth, A ‖ 0x00 ‖ body)`: the same node content (public part and
/// body) always seals to the same object.
pub(crate) fn synthetic_salt(keys: &TreeKeys, public: &[u8], body: &[u8]) -> [u8; 32] {
    let mut m = keys.synth.clone();
    m.update(public);
    m.update(&[0]);
    m.update(body);
    m.finalize().into_bytes().into()
}

fn node_cipher(keys: &TreeKeys, salt: &[u8; 32]) -> Aes256Gcm {
    let k = hkdf32(keys.node.as_ref(), salt, b"pxfs/2 node");
    Aes256Gcm::new_from_slice(k.as_ref()).expect("32-byte key")
}

/// Seals a node body: `(salt, sealed)` for the envelope.
pub(crate) fn seal_body(keys: &TreeKeys, public: &[u8], body: &[u8]) -> ([u8; 32], Vec<u8>) {
    let salt = synthetic_salt(keys, public, body);
    let ct = node_cipher(keys, &salt)
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: body,
                aad: public,
            },
        )
        .expect("AES-GCM seals any node body");
    (salt, ct)
}

/// Opens a sealed node body against its public part `A`, and checks the salt is the
/// synthetic one (so the node is the canonical form of its content).
pub(crate) fn open_body(
    keys: &TreeKeys,
    public: &[u8],
    salt: &[u8; 32],
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let body = node_cipher(keys, salt)
        .decrypt(
            &Nonce::default(),
            Payload {
                msg: sealed,
                aad: public,
            },
        )
        .map_err(|_| FormatError::Tampered("sealed node".into()))?;
    if synthetic_salt(keys, public, &body) != *salt {
        return Err(FormatError::invalid(
            "sealed node's salt is not its synthetic salt",
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DataKey;

    #[test]
    fn sealed_length_adds_a_tag_per_chunk() {
        assert_eq!(sealed_len(0), 0);
        assert_eq!(sealed_len(1), 17);
        assert_eq!(sealed_len(PLAIN_CHUNK as u64), SEALED_CHUNK as u64);
        assert_eq!(sealed_len(PLAIN_CHUNK as u64 + 10), 262_170);
    }

    #[test]
    fn a_short_middle_chunk_is_refused_when_sealing() {
        let keys = TreeKeys::derive(&DataKey::from_bytes([7; 32]));
        let vk = VersionKey::new(&keys, &ContentSalt([1; 32]));
        assert!(vk.seal_chunk(0, b"abc", false).is_err());
        assert!(vk.seal_chunk(0, b"", true).is_err());
    }
}
