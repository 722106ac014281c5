//! PollinationX's dApp drive, read-only: the per-sNFT file index the dApp keeps encrypted
//! on the node, found on chain with the dApp's secret (../shared/POLLINATIONX.md, "The
//! dApp's drive"). `pxfs key import-dapp` stores the secret ([`secret`]); the mount reads
//! the index ([`read_index`]) and shows it under `px-dapp/` (`fs::model::dapp`).
//!
//! - The secret: 32 random bytes written as 64 hex characters; the AES-256-GCM key is the
//!   decoded bytes.
//! - The index's CID: `getExtraContent(token, base64(SHA-512(secret as its hex text)))`
//!   answers `{"cid":"<CID>"}`.
//! - The index: 12-byte IV, then the ciphertext with its 16-byte tag at the end.

pub mod index;
pub mod secret;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit};
use base64::Engine;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use crate::chain::{Chain, ChainError, TokenId};
use crate::storage::{NodeClient, StorageError};
pub use index::{DappEntry, DappIndex, DappKind, IndexError};

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Largest encrypted index fetched from the node.
pub const MAX_SEALED_BYTES: usize = index::MAX_INDEX_BYTES + IV_LEN + TAG_LEN;

#[derive(Debug, thiserror::Error)]
pub enum DappError {
    #[error("a dApp secret is 64 hexadecimal characters (32 bytes), as the dApp shows it")]
    BadSecret,
    #[error(
        "no dApp index is recorded for sNFT {0} under this secret: the secret is wrong, or \
         the dApp has not saved a file index for this sNFT"
    )]
    NoIndex(TokenId),
    #[error("the dApp index record of sNFT {token} is not {{\"cid\": \"…\"}}")]
    BadRecord { token: TokenId },
    #[error(
        "the dApp index of sNFT {token} ({cid}) does not decrypt with this secret: it is \
         damaged or was not written by the dApp"
    )]
    Undecryptable { token: TokenId, cid: String },
    #[error("the dApp index of sNFT {token} ({cid}) is larger than {MAX_SEALED_BYTES} bytes")]
    TooLarge { token: TokenId, cid: String },
    #[error("the dApp index of sNFT {token} ({cid}) cannot be read from the node: {source}")]
    Node {
        token: TokenId,
        cid: String,
        source: StorageError,
    },
    #[error("the dApp index of sNFT {token} ({cid}) is unreadable: {source}")]
    Index {
        token: TokenId,
        cid: String,
        source: IndexError,
    },
    #[error("cannot read the dApp index record of sNFT {token} on chain: {source}")]
    Chain { token: TokenId, source: ChainError },
    #[error("dApp secret file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The dApp's per-sNFT secret. Never printed: `Debug` shows nothing of it.
pub struct DappSecret {
    text: Zeroizing<String>,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for DappSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DappSecret(redacted)")
    }
}

impl DappSecret {
    /// The secret as the dApp shows it: 64 hex characters (surrounding blanks ignored).
    pub fn parse(text: &str) -> Result<DappSecret, DappError> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DappError::BadSecret);
        }
        let mut key = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(text, &mut *key).map_err(|_| DappError::BadSecret)?;
        Ok(DappSecret {
            text: Zeroizing::new(text.to_string()),
            key,
        })
    }

    /// The hex text, for storing it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The extra-content keys the index may be recorded under: base64(SHA-512(hex text)),
    /// for the text as given and (if different) in lower case, as the dApp writes it.
    fn chain_keys(&self) -> Vec<String> {
        let mut keys = vec![chain_key(&self.text)];
        let lower = Zeroizing::new(self.text.to_ascii_lowercase());
        if *lower != *self.text {
            keys.push(chain_key(&lower));
        }
        keys
    }

    /// Decrypt a sealed index: IV (12 bytes) ‖ ciphertext ‖ tag (16 bytes).
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < IV_LEN + TAG_LEN {
            return None;
        }
        let (iv, body) = sealed.split_at(IV_LEN);
        let cipher = Aes256Gcm::new_from_slice(&*self.key).ok()?;
        let iv: &[u8; IV_LEN] = iv.try_into().ok()?;
        cipher.decrypt(iv.into(), body).ok()
    }
}

/// The extra-content key of a secret: base64 (standard, padded) of SHA-512 of its text.
pub fn chain_key(secret_text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha512::digest(secret_text.as_bytes()))
}

/// The CID of `token`'s index, from its extra content.
pub async fn find_index(
    chain: &Chain,
    token: TokenId,
    secret: &DappSecret,
) -> Result<String, DappError> {
    for key in secret.chain_keys() {
        let record = chain
            .extra_content(token, &key)
            .await
            .map_err(|source| DappError::Chain { token, source })?;
        if let Some(record) = record {
            return parse_record(&record).ok_or(DappError::BadRecord { token });
        }
    }
    Err(DappError::NoIndex(token))
}

/// `{"cid":"<CID>"}` (other members ignored).
fn parse_record(record: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(record).ok()?;
    let cid = v.get("cid")?.as_str()?.trim();
    (!cid.is_empty() && cid.len() <= 128 && cid.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| cid.to_string())
}

/// Fetch, decrypt and parse the index at `cid`.
pub async fn load_index(
    client: &NodeClient,
    token: TokenId,
    cid: &str,
    secret: &DappSecret,
) -> Result<DappIndex, DappError> {
    // Checked against its CID: the sealed index opens wherever it sits, so without the
    // check a node could serve an older index in place of this one.
    let sealed = match crate::integrity::object(client, cid, MAX_SEALED_BYTES as u64).await {
        Ok(sealed) => sealed,
        Err(crate::integrity::IntegrityError::Storage(source)) => {
            return Err(DappError::Node {
                token,
                cid: cid.to_string(),
                source,
            });
        }
        Err(crate::integrity::IntegrityError::TooLarge { .. }) => {
            return Err(DappError::TooLarge {
                token,
                cid: cid.to_string(),
            });
        }
        Err(e) => {
            return Err(DappError::Node {
                token,
                cid: cid.to_string(),
                source: crate::storage::StorageError::Decode {
                    path: "block/get".into(),
                    detail: e.to_string(),
                },
            });
        }
    };
    let json = Zeroizing::new(
        secret
            .open(&sealed)
            .ok_or_else(|| DappError::Undecryptable {
                token,
                cid: cid.to_string(),
            })?,
    );
    DappIndex::parse(&json).map_err(|source| DappError::Index {
        token,
        cid: cid.to_string(),
        source,
    })
}

/// [`find_index`] then [`load_index`]: the index's CID and what it lists.
pub async fn read_index(
    chain: &Chain,
    client: &NodeClient,
    token: TokenId,
    secret: &DappSecret,
) -> Result<(String, DappIndex), DappError> {
    let cid = find_index(chain, token, secret).await?;
    let index = load_index(client, token, &cid, secret).await?;
    Ok((cid, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn seal(key: &[u8], iv: [u8; 12], plain: &[u8]) -> Vec<u8> {
        let c = Aes256Gcm::new_from_slice(key).unwrap();
        let mut out = iv.to_vec();
        out.extend(c.encrypt((&iv).into(), plain).unwrap());
        out
    }

    #[test]
    fn a_secret_is_64_hex_characters_and_is_never_shown() {
        for bad in [
            "",
            "xyz",
            &SECRET[..62],
            &format!("{SECRET}00"),
            &SECRET.replace('a', "g"),
        ] {
            assert!(
                matches!(DappSecret::parse(bad), Err(DappError::BadSecret)),
                "{bad}"
            );
        }
        let s = DappSecret::parse(&format!("  {SECRET}\n")).unwrap();
        assert_eq!(s.text(), SECRET);
        assert!(!format!("{s:?}").contains("0011"));
    }

    #[test]
    fn the_chain_key_is_base64_of_sha512_of_the_hex_text() {
        // base64(SHA-512("abc")), a published test vector.
        assert_eq!(
            chain_key("abc"),
            "3a81oZNherrMQXNJriBBMRLm+k6JqX6iCp7u5ktV05ohkpkqJ0/BqDa6PCOj/uu9RU1EI2Q86A4qmslPpUyknw=="
        );
        let s = DappSecret::parse(&SECRET.to_uppercase()).unwrap();
        assert_eq!(
            s.chain_keys(),
            vec![chain_key(&SECRET.to_uppercase()), chain_key(SECRET)]
        );
    }

    #[test]
    fn an_index_sealed_as_the_dapp_does_opens_and_a_flipped_byte_does_not() {
        let s = DappSecret::parse(SECRET).unwrap();
        let key = hex::decode(SECRET).unwrap();
        let plain = br#"[{"name":"a","type":"file","status":"uploaded","hash":"Qm1","size":1}]"#;
        let mut sealed = seal(&key, [7; 12], plain);
        assert_eq!(s.open(&sealed).unwrap(), plain);
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(s.open(&sealed).is_none());
        assert!(s.open(&sealed[..20]).is_none());
        let other = DappSecret::parse(&SECRET.replace('0', "1")).unwrap();
        assert!(other.open(&seal(&key, [1; 12], plain)).is_none());
    }

    #[test]
    fn the_record_is_a_cid_in_json() {
        assert_eq!(
            parse_record(r#"{"cid":"QmAbc","other":1}"#).as_deref(),
            Some("QmAbc")
        );
        for bad in [
            "",
            "QmAbc",
            r#"{"cid":""}"#,
            r#"{"cid":"a/b"}"#,
            r#"{"cid":5}"#,
        ] {
            assert_eq!(parse_record(bad), None, "{bad}");
        }
    }
}
