//! Directory manifests (`pxfs/dir/1`): the JSON each directory is stored as on the node.
//! Serialization is deterministic (fixed field order, entries sorted by name, xattrs
//! sorted), so an unchanged directory always has the same CID.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const SCHEMA: &str = "pxfs/dir/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub name: String,
    pub kind: EntryKind,
    /// File content, or a directory's manifest; absent for symlinks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    pub size: u64,
    /// Permission bits (`0o7777`); the type is `kind`.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Extended attributes, values hex-encoded (they are arbitrary bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<BTreeMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("not a pxfs/dir/1 manifest: {0}")]
    Malformed(String),
}

impl Manifest {
    /// Entries must already be sorted by name (the tree keeps them so).
    pub fn new(entries: Vec<Entry>) -> Manifest {
        Manifest {
            schema: SCHEMA.to_string(),
            entries,
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parse and validate: a malformed manifest is an error, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| ManifestError::Malformed(e.to_string()))?;
        if m.schema != SCHEMA {
            return Err(ManifestError::Malformed(format!("schema {:?}", m.schema)));
        }
        for e in &m.entries {
            let bad_name = e.name.is_empty()
                || e.name == "."
                || e.name == ".."
                || e.name.contains('/')
                || e.name.contains('\0')
                || e.name.len() > 255;
            if bad_name {
                return Err(ManifestError::Malformed(format!("entry name {:?}", e.name)));
            }
            let consistent = match e.kind {
                EntryKind::File | EntryKind::Dir => e.cid.is_some(),
                EntryKind::Symlink => e.target.is_some(),
            };
            if !consistent {
                return Err(ManifestError::Malformed(format!("entry {:?}", e.name)));
            }
        }
        Ok(m)
    }
}

pub fn encode_xattrs(x: &BTreeMap<String, Vec<u8>>) -> Option<BTreeMap<String, String>> {
    if x.is_empty() {
        None
    } else {
        Some(x.iter().map(|(k, v)| (k.clone(), hex::encode(v))).collect())
    }
}

pub fn decode_xattrs(x: &Option<BTreeMap<String, String>>) -> BTreeMap<String, Vec<u8>> {
    x.iter()
        .flatten()
        .filter_map(|(k, v)| hex::decode(v).ok().map(|v| (k.clone(), v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Entry {
        Entry {
            name: name.into(),
            kind: EntryKind::File,
            cid: Some("bafy".into()),
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 1,
            ctime_ns: 1,
            target: None,
            xattrs: None,
        }
    }

    #[test]
    fn manifest_round_trips_and_serializes_identically() {
        let m = Manifest::new(vec![entry("a"), entry("b")]);
        let json = m.to_json();
        assert_eq!(Manifest::parse(&json).unwrap(), m);
        assert_eq!(Manifest::parse(&json).unwrap().to_json(), json);
        assert!(
            String::from_utf8(json)
                .unwrap()
                .starts_with(r#"{"schema":"pxfs/dir/1""#)
        );
    }

    #[test]
    fn manifest_with_a_slash_in_a_name_is_rejected() {
        let m = Manifest::new(vec![entry("a/b")]);
        assert!(Manifest::parse(&m.to_json()).is_err());
        assert!(Manifest::parse(b"{not json").is_err());
    }
}
