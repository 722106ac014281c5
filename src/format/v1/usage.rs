//! The usage document `pxfs/usage/1` (docs/FORMAT.md §10): what an sNFT stored (quota,
//! usage, file count, root manifest, last upload) and a link to the previous document.
//! Publishing and resolving documents on a node is `crate::btns`'s.

use serde::{Deserialize, Serialize};

pub use super::super::usage::AnyUsageDoc;

pub const SCHEMA: &str = "pxfs/usage/1";

/// Why a usage document's bytes are not a document this pxfs reads.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("usage document is not valid JSON: {0}")]
    Malformed(String),
    #[error("usage document has schema {found:?}, expected {SCHEMA:?}")]
    ForeignSchema { found: String },
    #[error("usage document cannot be encoded: {0}")]
    Encode(String),
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
    pub fn parse(bytes: &[u8]) -> Result<UsageDoc, DocError> {
        #[derive(Deserialize)]
        struct Probe {
            schema: Option<serde_json::Value>,
        }
        let probe: Probe =
            serde_json::from_slice(bytes).map_err(|e| DocError::Malformed(e.to_string()))?;
        match probe.schema {
            Some(serde_json::Value::String(s)) if s == SCHEMA => {}
            Some(other) => {
                let found = match other {
                    serde_json::Value::String(s) => s,
                    v => v.to_string(),
                };
                return Err(DocError::ForeignSchema { found });
            }
            None => {
                return Err(DocError::ForeignSchema {
                    found: "(none)".into(),
                });
            }
        }
        serde_json::from_slice(bytes).map_err(|e| DocError::Malformed(e.to_string()))
    }

    pub fn to_json(&self) -> Result<Vec<u8>, DocError> {
        serde_json::to_vec(self).map_err(|e| DocError::Encode(e.to_string()))
    }
}

/// A usage document of either version: `pxfs/usage/2` (docs/FORMAT.md §8) or
/// `pxfs/usage/1`; any other schema is refused by name.
pub fn parse_any(bytes: &[u8]) -> Result<AnyUsageDoc, DocError> {
    if super::super::schema_of(bytes).as_deref() == Some(super::super::SCHEMA_USAGE) {
        return super::super::usage::UsageDoc::parse(bytes)
            .map(AnyUsageDoc::V2)
            .map_err(|e| DocError::Malformed(e.to_string()));
    }
    UsageDoc::parse(bytes).map(AnyUsageDoc::V1)
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
        assert!(matches!(err, DocError::ForeignSchema { .. }), "{err}");
        assert!(err.to_string().contains("pxfs/dir/1"), "{err}");
    }

    #[test]
    fn malformed_json_is_malformed() {
        let err = UsageDoc::parse(b"{\"schema\":").unwrap_err();
        assert!(matches!(err, DocError::Malformed(_)), "{err}");
    }

    #[test]
    fn a_right_schema_with_missing_fields_is_malformed() {
        let err = UsageDoc::parse(br#"{"schema":"pxfs/usage/1","usage":5}"#).unwrap_err();
        assert!(matches!(err, DocError::Malformed(_)), "{err}");
    }
}
