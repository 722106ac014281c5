//! Directory manifests (`pxfs/dir/1`): the JSON each directory was stored as on the node
//! before format v2. pxfs still reads them (a v1 tree mounts and is rewritten as v2 by its
//! next commit, docs/FORMAT.md §10) and the oracle still measures them.
//! Serialization is deterministic (fixed field order, entries sorted by name, xattrs
//! sorted), so an unchanged directory always has the same CID.
//!
//! Additions since DESIGN.md's first version, all optional so older manifests still parse
//! (and serialize to the same bytes): entry kinds `fifo`, `socket`, `chardev` and
//! `blockdev` (with `rdev`), and the token root's own attributes under `self`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::format;

pub const SCHEMA: &str = "pxfs/dir/1";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: String,
    /// The directory's own attributes; written for an sNFT's root only (any other
    /// directory's attributes are its entry in the parent's manifest).
    #[serde(rename = "self", default, skip_serializing_if = "Option::is_none")]
    pub self_attrs: Option<DirAttrs>,
    pub entries: Vec<Entry>,
}

/// Attributes of the directory a manifest describes (the `self` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirAttrs {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    /// Extended attributes, values hex-encoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xattrs: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// A named pipe: local to each mount (the kernel connects its readers and writers).
    Fifo,
    /// A socket's name: nothing listens on it after a remount.
    Socket,
    /// A character device (`rdev`).
    Chardev,
    /// A block device (`rdev`).
    Blockdev,
    /// A kind this version does not know (written by a newer pxfs): the entry is not
    /// served and its sNFT is served read-only, so no commit drops it.
    #[serde(other)]
    Unknown,
}

impl EntryKind {
    /// Kinds whose entries carry no content of their own (0 bytes of usage).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            EntryKind::Fifo | EntryKind::Socket | EntryKind::Chardev | EntryKind::Blockdev
        )
    }
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
    /// Device number of a `chardev` or `blockdev` entry, as Linux encodes a `dev_t` in
    /// 32 bits (major in bits 8..20, minor in bits 0..8 and 20..32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdev: Option<u32>,
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
            self_attrs: None,
            entries,
        }
    }

    /// Names of entries whose kind this version does not know.
    pub fn unknown_entries(&self) -> impl Iterator<Item = &str> {
        self.entries
            .iter()
            .filter(|e| e.kind == EntryKind::Unknown)
            .map(|e| e.name.as_str())
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
                EntryKind::Fifo
                | EntryKind::Socket
                | EntryKind::Chardev
                | EntryKind::Blockdev
                | EntryKind::Unknown => true,
            };
            if !consistent {
                return Err(ManifestError::Malformed(format!("entry {:?}", e.name)));
            }
        }
        Ok(m)
    }
}

/// A v1 manifest read as v2 parts (docs/FORMAT.md §10: a v2 reader reads v1 trees).
pub struct V2Parts {
    /// The token root's own attributes and xattrs (`self`), if recorded.
    pub self_attrs: Option<(format::Attrs, Vec<format::Xattr>)>,
    pub entries: Vec<format::Entry>,
    /// Names of entries of a kind this pxfs does not know.
    pub unknown: Vec<String>,
}

impl Manifest {
    /// This v1 manifest as the v2 entries the tree loads.
    pub fn into_v2_parts(self) -> V2Parts {
        let unknown: Vec<String> = self.unknown_entries().map(str::to_owned).collect();
        let self_attrs = self.self_attrs.map(|a| {
            let attrs = format::Attrs {
                mode: a.mode & 0o7777,
                uid: a.uid,
                gid: a.gid,
                mtime_ns: a.mtime_ns,
                ctime_ns: a.ctime_ns,
            };
            (attrs, xattrs_v2(&a.xattrs))
        });
        let entries = self.entries.into_iter().filter_map(entry_v2).collect();
        V2Parts {
            self_attrs,
            entries,
            unknown,
        }
    }
}

fn xattrs_v2(x: &Option<BTreeMap<String, String>>) -> Vec<format::Xattr> {
    decode_xattrs(x)
        .into_iter()
        .filter_map(|(name, value)| {
            Some(format::Xattr {
                name: format::XattrName::new(name.into_bytes()).ok()?,
                value,
            })
        })
        .collect()
}

fn entry_v2(e: Entry) -> Option<format::Entry> {
    use format::InodeKind as K;
    let name = format::Name::new(e.name.into_bytes()).ok()?;
    let kind = match e.kind {
        EntryKind::File => K::File {
            size: e.size,
            content: (e.size > 0).then(|| {
                format::FileContent::Whole(format::Content {
                    cid: e.cid.clone().unwrap_or_default(),
                    salt: None,
                })
            }),
        },
        EntryKind::Dir => K::Dir {
            top: e.cid.clone().unwrap_or_default(),
        },
        EntryKind::Symlink => K::Symlink(format::Target::new(e.target.clone()?.into_bytes()).ok()?),
        EntryKind::Fifo => K::Fifo,
        EntryKind::Socket => K::Socket,
        EntryKind::Chardev => K::CharDev(e.rdev.unwrap_or(0)),
        EntryKind::Blockdev => K::BlockDev(e.rdev.unwrap_or(0)),
        EntryKind::Unknown => {
            return Some(format::Entry {
                name,
                kind: format::EntryKind::Unknown("unknown".into()),
            });
        }
    };
    Some(format::Entry {
        name,
        kind: format::EntryKind::Inode(format::Inode {
            kind,
            attrs: format::Attrs {
                mode: e.mode & 0o7777,
                uid: e.uid,
                gid: e.gid,
                mtime_ns: e.mtime_ns,
                ctime_ns: e.ctime_ns,
            },
            xattrs: xattrs_v2(&e.xattrs),
        }),
    })
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
            rdev: None,
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

    #[test]
    fn manifest_of_an_older_version_parses_and_serializes_to_the_same_bytes() {
        let old = br#"{"schema":"pxfs/dir/1","entries":[{"name":"a","kind":"file","cid":"bafy","size":1,"mode":420,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1}]}"#;
        let m = Manifest::parse(old).unwrap();
        assert_eq!(m.self_attrs, None);
        assert_eq!(m.entries[0].rdev, None);
        assert_eq!(m.to_json(), old.to_vec());
    }

    #[test]
    fn special_entries_and_root_attributes_round_trip() {
        let mut dev = entry("dev");
        dev.kind = EntryKind::Chardev;
        dev.cid = None;
        dev.size = 0;
        dev.rdev = Some(0x103);
        let mut fifo = entry("fifo");
        fifo.kind = EntryKind::Fifo;
        fifo.cid = None;
        let mut m = Manifest::new(vec![dev, fifo]);
        m.self_attrs = Some(DirAttrs {
            mode: 0o700,
            uid: 5,
            gid: 6,
            mtime_ns: 7,
            ctime_ns: 8,
            xattrs: Some([("user.a".to_string(), "00ff".to_string())].into()),
        });
        let json = m.to_json();
        let text = String::from_utf8(json.clone()).unwrap();
        assert!(text.contains(r#""kind":"chardev""#), "{text}");
        assert!(text.contains(r#""rdev":259"#), "{text}");
        assert!(text.contains(r#""self":{"mode":448"#), "{text}");
        assert_eq!(Manifest::parse(&json).unwrap(), m);
    }

    #[test]
    fn an_unknown_entry_kind_parses_and_is_reported() {
        let newer = br#"{"schema":"pxfs/dir/1","entries":[{"name":"w","kind":"whiteout","size":0,"mode":0,"uid":0,"gid":0,"mtime_ns":1,"ctime_ns":1}]}"#;
        let m = Manifest::parse(newer).unwrap();
        assert_eq!(m.entries[0].kind, EntryKind::Unknown);
        assert_eq!(m.unknown_entries().collect::<Vec<_>>(), vec!["w"]);
    }
}
