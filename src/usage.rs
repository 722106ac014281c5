//! The usage document (`pxfs/usage/1`) published under an sNFT's BTNS key: what the token
//! stores (quota, usage, file count, root manifest, last upload) and a link to the previous
//! document, so the history of roots is a chain. The oracle reads it on `sync`.

use bytes::Bytes;
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub use crate::format::usage::AnyUsageDoc;
use crate::storage::{NodeClient, StorageError};

pub const SCHEMA: &str = "pxfs/usage/1";

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error("usage document is not valid JSON: {0}")]
    Malformed(String),
    #[error("usage document has schema {found:?}, expected {SCHEMA:?}")]
    ForeignSchema { found: String },
    #[error("usage document cannot be encoded: {0}")]
    Encode(String),
    #[error("storage node: {0}")]
    Storage(#[from] StorageError),
    /// The document's bytes do not match its CID, or it is over [`MAX_DOC_BYTES`].
    #[error("usage document: {0}")]
    Integrity(crate::integrity::IntegrityError),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageDoc {
    pub schema: String,
    pub chain_id: u64,
    pub contract: String,
    pub token_id: u64,
    /// Bytes the token may hold.
    pub quota: u64,
    /// Total size of live file content in bytes.
    pub usage: u64,
    pub files: u64,
    /// CID of the root directory manifest.
    pub root: String,
    #[serde(default)]
    pub last_upload: Option<LastUpload>,
    /// Increases by one with every document published for the token.
    pub seq: u64,
    /// Unix seconds.
    pub updated_at: u64,
    /// CID of the previous usage document.
    #[serde(default)]
    pub prev: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUpload {
    pub path: String,
    pub cid: String,
    pub size: u64,
}

impl UsageDoc {
    /// Parses a document, refusing anything that is not `pxfs/usage/1`. The schema is
    /// checked first so that a foreign document is reported as such, not as bad fields.
    pub fn parse(bytes: &[u8]) -> Result<UsageDoc, UsageError> {
        #[derive(Deserialize)]
        struct Probe {
            schema: Option<serde_json::Value>,
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| UsageError::Malformed(e.to_string()))?;
        match probe.schema {
            Some(serde_json::Value::String(s)) if s == SCHEMA => {}
            Some(other) => {
                let found = match other {
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                };
                return Err(UsageError::ForeignSchema { found });
            }
            None => {
                return Err(UsageError::ForeignSchema {
                    found: "(none)".into(),
                });
            }
        }
        serde_json::from_slice(bytes).map_err(|e| UsageError::Malformed(e.to_string()))
    }

    pub fn to_json(&self) -> Result<Vec<u8>, UsageError> {
        serde_json::to_vec(self).map_err(|e| UsageError::Encode(e.to_string()))
    }
}

/// Adds the document (pinned) and publishes it under the node's key `key_name`.
/// Returns the document's CID.
pub async fn publish(
    client: &NodeClient,
    key_name: &str,
    doc: &UsageDoc,
) -> Result<String, UsageError> {
    publish_json(client, key_name, doc.token_id, doc.seq, doc.to_json()?).await
}

/// [`publish`] for a `pxfs/usage/2` document (what pxfs writes now, docs/FORMAT.md §8).
pub async fn publish_v2(
    client: &NodeClient,
    key_name: &str,
    doc: &crate::format::usage::UsageDoc,
) -> Result<String, UsageError> {
    let json = doc
        .to_json()
        .map_err(|e| UsageError::Encode(e.to_string()))?;
    publish_json(client, key_name, doc.token_id, doc.seq, json).await
}

async fn publish_json(
    client: &NodeClient,
    key_name: &str,
    token_id: u64,
    seq: u64,
    json: Vec<u8>,
) -> Result<String, UsageError> {
    let name = format!("usage-{token_id}-{seq}.json");
    let added = client.add_bytes(&name, Bytes::from(json)).await?;
    client.name_publish(key_name, &added.hash, None).await?;
    tracing::info!(token = token_id, seq, cid = %added.hash, key = key_name, "usage document published");
    Ok(added.hash)
}

/// Largest usage document read: a document is a few hundred bytes plus its wraps, and a
/// forged one must not exhaust a reader's memory.
pub const MAX_DOC_BYTES: u64 = 1 << 20;

/// Resolves `btns_name`, fetches the document it points at and parses it (either version).
/// Returns the document's CID and the document.
pub async fn resolve(
    client: &NodeClient,
    btns_name: &str,
) -> Result<(String, AnyUsageDoc), UsageError> {
    let cid = client.name_resolve(btns_name).await?;
    Ok((cid.clone(), fetch(client, &cid).await?))
}

/// The usage document `cid` (checked against its CID, size-capped).
pub async fn fetch(client: &NodeClient, cid: &str) -> Result<AnyUsageDoc, UsageError> {
    let bytes = crate::integrity::object(client, cid, MAX_DOC_BYTES)
        .await
        .map_err(|e| match e {
            crate::integrity::IntegrityError::Storage(e) => UsageError::Storage(e),
            other => UsageError::Integrity(other),
        })?;
    parse_any(&bytes)
}

/// A usage document of either version: `pxfs/usage/2` (docs/FORMAT.md §8) or
/// `pxfs/usage/1`; any other schema is refused by name.
pub fn parse_any(bytes: &[u8]) -> Result<AnyUsageDoc, UsageError> {
    if crate::format::schema_of(bytes).as_deref() == Some(crate::format::SCHEMA_USAGE) {
        return crate::format::usage::UsageDoc::parse(bytes)
            .map(AnyUsageDoc::V2)
            .map_err(|e| UsageError::Malformed(e.to_string()));
    }
    UsageDoc::parse(bytes).map(AnyUsageDoc::V1)
}

/// The name of the node's key whose id is `btns_name` (the contract stores the id, publishing
/// needs the name). `None` when this node does not hold that key.
pub async fn key_name_for(
    client: &NodeClient,
    btns_name: &str,
) -> Result<Option<String>, UsageError> {
    let keys = client.key_list().await?;
    Ok(keys
        .into_iter()
        .find(|k| crate::storage::cid::same_name(&k.id, btns_name))
        .map(|k| k.name))
}

/// A fresh key name for `key/gen` at mint or register time.
pub fn new_key_name() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("pxfs-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> UsageDoc {
        UsageDoc {
            schema: SCHEMA.into(),
            chain_id: 31337,
            contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
            token_id: 1,
            quota: 1 << 30,
            usage: 12,
            files: 1,
            root: "bafyroot".into(),
            last_upload: Some(LastUpload {
                path: "/a.txt".into(),
                cid: "bafkfile".into(),
                size: 12,
            }),
            seq: 3,
            updated_at: 1_700_000_000,
            prev: Some("bafyprev".into()),
        }
    }

    #[test]
    fn a_document_survives_encoding_and_parsing() {
        let doc = sample();
        assert_eq!(UsageDoc::parse(&doc.to_json().unwrap()).unwrap(), doc);
    }

    #[test]
    fn the_encoded_document_uses_the_design_field_names() {
        let v: serde_json::Value = serde_json::from_slice(&sample().to_json().unwrap()).unwrap();
        for field in [
            "schema",
            "chain_id",
            "contract",
            "token_id",
            "quota",
            "usage",
            "files",
            "root",
            "last_upload",
            "seq",
            "updated_at",
            "prev",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["last_upload"]["path"], "/a.txt");
    }

    #[test]
    fn a_foreign_schema_is_named_in_the_error() {
        let err = UsageDoc::parse(br#"{"schema":"pxfs/dir/1","entries":[]}"#).unwrap_err();
        assert!(matches!(err, UsageError::ForeignSchema { .. }), "{err}");
        assert!(err.to_string().contains("pxfs/dir/1"), "{err}");
    }

    #[test]
    fn malformed_json_is_malformed() {
        let err = UsageDoc::parse(b"{\"schema\":").unwrap_err();
        assert!(matches!(err, UsageError::Malformed(_)), "{err}");
    }

    #[test]
    fn a_right_schema_with_missing_fields_is_malformed() {
        let err = UsageDoc::parse(br#"{"schema":"pxfs/usage/1","usage":5}"#).unwrap_err();
        assert!(matches!(err, UsageError::Malformed(_)), "{err}");
    }

    #[test]
    fn key_names_are_fresh_and_prefixed() {
        let (a, b) = (new_key_name(), new_key_name());
        assert!(a.starts_with("pxfs-") && a.len() == 5 + 16, "{a}");
        assert_ne!(a, b);
    }
}
