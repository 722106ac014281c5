//! The usage document `pxfs/usage/2` (FORMAT.md §8), always plaintext, and reading a
//! usage document of either version: v1 through [`super::v1::usage`], v2 here, anything else
//! refused with a message naming its schema.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::canonical::{from_json, required_nullable, to_json};
use super::name::{from_members, to_members};
use super::v1::usage as v1;
use super::wrap::{EncryptionInfo, SCHEME};
use super::{FormatError, Result, SCHEMA_USAGE};

/// `"none"`, or the wrapped data key (§6.4).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Encryption {
    #[default]
    None,
    Sealed(EncryptionInfo),
}

// The wraps compare by value (`Wrap`'s `PartialEq` is total).
impl Eq for Encryption {}

impl Encryption {
    pub fn is_none(&self) -> bool {
        matches!(self, Encryption::None)
    }
}

impl Serialize for Encryption {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Encryption::None => s.serialize_str("none"),
            Encryption::Sealed(info) => info.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Encryption {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Encryption, D::Error> {
        use serde::de::Error;
        let raw = Box::<RawValue>::deserialize(d)?;
        if raw.get().starts_with('"') {
            let t: String = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
            if t == "none" {
                return Ok(Encryption::None);
            }
            return Err(D::Error::custom(format!("unknown encryption {t:?}")));
        }
        serde_json::from_str(raw.get())
            .map(Encryption::Sealed)
            .map_err(D::Error::custom)
    }
}

/// Path, CID and size of the last file uploaded (plaintext trees only). The path is bytes
/// (names need not be UTF-8): `path` when valid UTF-8, else `pathb` (base64).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastUpload {
    pub path: Vec<u8>,
    pub cid: String,
    pub size: u64,
}

#[derive(Serialize, Deserialize)]
struct WireLastUpload {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pathb: Option<String>,
    cid: String,
    size: u64,
}

/// `pxfs/usage/2`, members in the spec's order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsageDoc {
    pub schema: String,
    pub chain_id: u64,
    pub contract: String,
    pub token_id: u64,
    pub quota: u64,
    /// Stored bytes of the public graph (§7).
    pub usage: u64,
    /// CID of the `pxfs/root/2` node.
    pub root: String,
    pub seq: u64,
    /// Unix seconds.
    pub updated_at: u64,
    /// The document this commit was made on top of; always written (`null` for the first).
    #[serde(with = "required_nullable_ser")]
    pub prev: Option<String>,
    pub encryption: Encryption,
    /// On a merge commit: the writer's own previous document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "last_upload_serde"
    )]
    pub last_upload: Option<LastUpload>,
    /// PX.sol bookkeeping, kept verbatim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub px: Option<Box<RawValue>>,
}

impl PartialEq for UsageDoc {
    fn eq(&self, other: &UsageDoc) -> bool {
        self.to_json().ok() == other.to_json().ok()
    }
}

mod required_nullable_ser {
    use serde::{Serialize, Serializer};

    pub use super::required_nullable::deserialize;

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        v.serialize(s)
    }
}

mod last_upload_serde {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{LastUpload, WireLastUpload, from_members, to_members};

    pub fn serialize<S: Serializer>(v: &Option<LastUpload>, s: S) -> Result<S::Ok, S::Error> {
        let l = v.as_ref().expect("skipped when None");
        let (path, pathb) = to_members(&l.path);
        WireLastUpload {
            path,
            pathb,
            cid: l.cid.clone(),
            size: l.size,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<LastUpload>, D::Error> {
        use serde::de::Error;
        let w = WireLastUpload::deserialize(d)?;
        let path = from_members(w.path, w.pathb, "path").map_err(D::Error::custom)?;
        Ok(Some(LastUpload {
            path,
            cid: w.cid,
            size: w.size,
        }))
    }
}

impl UsageDoc {
    /// Parses a `pxfs/usage/2` document; any other schema is refused by name.
    pub fn parse(bytes: &[u8]) -> Result<UsageDoc> {
        let schema = probe_schema(bytes)?;
        if schema != SCHEMA_USAGE {
            return Err(FormatError::Schema {
                what: "usage document",
                found: schema,
                expected: SCHEMA_USAGE.into(),
            });
        }
        let doc: UsageDoc = from_json(bytes, "usage document")?;
        doc.validate()?;
        Ok(doc)
    }

    /// Canonical bytes; refuses a document that breaks §8 (an encrypted tree must not name
    /// its files).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        self.validate()?;
        Ok(to_json(self))
    }

    fn validate(&self) -> Result<()> {
        if let Encryption::Sealed(info) = &self.encryption {
            if info.scheme != SCHEME {
                return Err(FormatError::invalid(format!(
                    "usage document: unknown encryption scheme {:?} (this pxfs knows {SCHEME})",
                    info.scheme
                )));
            }
            info.key_id()?;
            if self.files.is_some() || self.last_upload.is_some() {
                return Err(FormatError::invalid(
                    "usage document of an encrypted tree names files (\"files\"/\"last_upload\")",
                ));
            }
        }
        Ok(())
    }
}

/// A usage document of either version.
#[derive(Debug, Clone, PartialEq)]
pub enum AnyUsageDoc {
    V1(v1::UsageDoc),
    V2(UsageDoc),
}

impl AnyUsageDoc {
    pub fn schema(&self) -> &str {
        match self {
            AnyUsageDoc::V1(d) => &d.schema,
            AnyUsageDoc::V2(d) => &d.schema,
        }
    }
    pub fn token_id(&self) -> u64 {
        match self {
            AnyUsageDoc::V1(d) => d.token_id,
            AnyUsageDoc::V2(d) => d.token_id,
        }
    }
    pub fn quota(&self) -> u64 {
        match self {
            AnyUsageDoc::V1(d) => d.quota,
            AnyUsageDoc::V2(d) => d.quota,
        }
    }
    /// The claimed usage (the oracle measures, §7).
    pub fn usage(&self) -> u64 {
        match self {
            AnyUsageDoc::V1(d) => d.usage,
            AnyUsageDoc::V2(d) => d.usage,
        }
    }
    /// The file count, when the document states it (an encrypted tree's does not).
    pub fn files(&self) -> Option<u64> {
        match self {
            AnyUsageDoc::V1(d) => Some(d.files),
            AnyUsageDoc::V2(d) => d.files,
        }
    }
    /// CID of the tree's root: a `pxfs/dir/1` manifest or a `pxfs/root/2` node.
    pub fn root(&self) -> &str {
        match self {
            AnyUsageDoc::V1(d) => &d.root,
            AnyUsageDoc::V2(d) => &d.root,
        }
    }
    pub fn seq(&self) -> u64 {
        match self {
            AnyUsageDoc::V1(d) => d.seq,
            AnyUsageDoc::V2(d) => d.seq,
        }
    }
    pub fn prev(&self) -> Option<&str> {
        match self {
            AnyUsageDoc::V1(d) => d.prev.as_deref(),
            AnyUsageDoc::V2(d) => d.prev.as_deref(),
        }
    }
    /// The second parent of a merge commit (docs/FORMAT.md §9.1); v1 has none.
    pub fn merged(&self) -> Option<&str> {
        match self {
            AnyUsageDoc::V1(_) => None,
            AnyUsageDoc::V2(d) => d.merged.as_deref(),
        }
    }
    /// The tree's encryption: v1 trees are plaintext.
    pub fn encryption(&self) -> Encryption {
        match self {
            AnyUsageDoc::V1(_) => Encryption::None,
            AnyUsageDoc::V2(d) => d.encryption.clone(),
        }
    }
}

/// Reads a usage document of a version this pxfs knows; names the schema of any other.
pub fn parse_any(bytes: &[u8]) -> Result<AnyUsageDoc> {
    match probe_schema(bytes)?.as_str() {
        v1::SCHEMA => v1::UsageDoc::parse(bytes)
            .map(AnyUsageDoc::V1)
            .map_err(|e| FormatError::invalid(e.to_string())),
        SCHEMA_USAGE => UsageDoc::parse(bytes).map(AnyUsageDoc::V2),
        other => Err(FormatError::Schema {
            what: "usage document",
            found: other.into(),
            expected: format!("{} and {SCHEMA_USAGE}", v1::SCHEMA),
        }),
    }
}

fn probe_schema(bytes: &[u8]) -> Result<String> {
    #[derive(Deserialize)]
    struct Probe {
        schema: Option<serde_json::Value>,
    }
    let p: Probe = from_json(bytes, "usage document")?;
    Ok(match p.schema {
        Some(serde_json::Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => "(none)".into(),
    })
}
