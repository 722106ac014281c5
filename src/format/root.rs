//! The root node `pxfs/root/2` (FORMAT.md §3.2): the sNFT directory's own attributes, the
//! top of its root directory, and the top of the link-group table; and its format-3 form
//! `pxfs/root/3` (§12), which adds the commit time and the top of the history table (§14).
//! A reader of format 2 only refuses a `pxfs/root/3` node by its schema.

use serde::Serialize;

use super::canonical::{from_json, to_json};
use super::entry::{Attrs, WireAttrs, Xattr, attrs_from_wire, attrs_to_wire};
use super::envelope::{self, Indexer, Lists, Resolver};
use super::keys::TreeCrypto;
use super::{FormatError, Result, SCHEMA_ROOT, SCHEMA_ROOT3};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The sNFT directory's attributes (`self`).
    pub attrs: Attrs,
    pub xattrs: Vec<Xattr>,
    /// CID of the root directory's top node.
    pub dir: String,
    /// CID of the link-group table's top node; `None` when the tree has no hard links.
    pub inodes: Option<String>,
}

/// A root as read, with whether its body had members this version does not know (a newer
/// writer's features): such a tree is served read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRoot {
    pub root: Root,
    pub read_only: bool,
}

/// A format-3 root (§12): the tree as [`Root`] says, when it was committed, and the top of
/// its history table (`None`: no retained versions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootV3 {
    pub root: Root,
    /// Commit time, Unix nanoseconds (≥ 0): the version's name once it is history.
    pub t: i64,
    pub history: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRootV3 {
    pub root: RootV3,
    pub read_only: bool,
}

/// A root node of format 2 or 3, as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnyRoot {
    pub root: Root,
    /// A `pxfs/root/3` node's commit time and history table top.
    pub v3: Option<(i64, Option<String>)>,
    /// Members this version does not know: the tree is served read-only.
    pub read_only: bool,
}

#[derive(Serialize)]
struct WireRoot {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    t: Option<i64>,
    #[serde(rename = "self")]
    attrs: WireAttrs,
    dir: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    inodes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<u64>,
}

const KNOWN: [&str; 4] = ["type", "self", "dir", "inodes"];
const KNOWN_V3: [&str; 6] = ["type", "t", "self", "dir", "inodes", "history"];

impl RootV3 {
    pub fn encode(&self, crypto: &TreeCrypto) -> Result<Vec<u8>> {
        if self.t < 0 {
            return Err(FormatError::invalid("a root's commit time is before 1970"));
        }
        Ok(self
            .root
            .encode_as(SCHEMA_ROOT3, Some(self.t), self.history.as_deref(), crypto))
    }

    /// Reads a `pxfs/root/3` node (any other schema is refused by name).
    pub fn decode(bytes: &[u8], crypto: &TreeCrypto) -> Result<ReadRootV3> {
        let (read, t, history) = Root::decode_as(bytes, SCHEMA_ROOT3, crypto)?;
        let t = t.ok_or_else(|| FormatError::invalid("root body has no \"t\""))?;
        Ok(ReadRootV3 {
            root: RootV3 {
                root: read.root,
                t,
                history,
            },
            read_only: read.read_only,
        })
    }
}

impl Root {
    pub fn encode(&self, crypto: &TreeCrypto) -> Vec<u8> {
        self.encode_as(SCHEMA_ROOT, None, None, crypto)
    }

    fn encode_as(
        &self,
        schema: &str,
        t: Option<i64>,
        history: Option<&str>,
        crypto: &TreeCrypto,
    ) -> Vec<u8> {
        let lists = Lists::collect(
            std::iter::once(self.dir.as_str())
                .chain(self.inodes.as_deref())
                .chain(history),
            [],
        );
        let ix = Indexer::Of(&lists);
        let body = to_json(&WireRoot {
            ty: "root",
            t,
            attrs: attrs_to_wire(&self.attrs, &self.xattrs),
            dir: ix.node(&self.dir),
            inodes: self.inodes.as_deref().map(|c| ix.node(c)),
            history: history.map(|c| ix.node(c)),
        });
        envelope::write(schema, &lists, &body, crypto)
    }

    pub fn decode(bytes: &[u8], crypto: &TreeCrypto) -> Result<ReadRoot> {
        Ok(Root::decode_as(bytes, SCHEMA_ROOT, crypto)?.0)
    }

    /// Reads a root node of either format (§3.2, §12.1), by its schema: what every reader
    /// of a tree starts with.
    pub fn decode_any(bytes: &[u8], crypto: &TreeCrypto) -> Result<AnyRoot> {
        let schema = envelope::public(bytes)?.0;
        if schema == SCHEMA_ROOT3 {
            let r = RootV3::decode(bytes, crypto)?;
            return Ok(AnyRoot {
                root: r.root.root,
                v3: Some((r.root.t, r.root.history)),
                read_only: r.read_only,
            });
        }
        let r = Root::decode(bytes, crypto)?;
        Ok(AnyRoot {
            root: r.root,
            v3: None,
            read_only: r.read_only,
        })
    }

    /// The root body of `schema`, with a format-3 root's `t` and `history`.
    fn decode_as(
        bytes: &[u8],
        schema: &str,
        crypto: &TreeCrypto,
    ) -> Result<(ReadRoot, Option<i64>, Option<String>)> {
        let v3 = schema == SCHEMA_ROOT3;
        let known: &[&str] = if v3 { &KNOWN_V3 } else { &KNOWN };
        let (lists, body) = envelope::read(bytes, schema, crypto)?;
        let mut v: serde_json::Map<String, serde_json::Value> = from_json(&body, "root body")?;
        match v.get("type") {
            Some(serde_json::Value::String(t)) if t == "root" => {}
            other => {
                return Err(FormatError::invalid(format!(
                    "root body has type {other:?}, expected \"root\""
                )));
            }
        }
        let read_only = v.keys().any(|k| !known.contains(&k.as_str()));
        let take = |v: &mut serde_json::Map<String, serde_json::Value>, k: &str| {
            v.remove(k)
                .ok_or_else(|| FormatError::invalid(format!("root body has no \"{k}\"")))
        };
        let index = |val: serde_json::Value, k: &str| {
            val.as_u64()
                .ok_or_else(|| FormatError::invalid(format!("root body's \"{k}\" is not an index")))
        };
        let attrs: WireAttrs = serde_json::from_value(take(&mut v, "self")?)
            .map_err(|e| FormatError::invalid(format!("root body's \"self\": {e}")))?;
        let (attrs, xattrs) = attrs_from_wire(attrs)?;
        let mut res = Resolver::new(&lists, crypto.is_sealed());
        let dir = res.node(index(take(&mut v, "dir")?, "dir")?)?;
        let inodes = match v.remove("inodes") {
            Some(i) => Some(res.node(index(i, "inodes")?)?),
            None => None,
        };
        if inodes.as_ref() == Some(&dir) {
            return Err(FormatError::invalid(
                "root body's \"dir\" and \"inodes\" are the same node",
            ));
        }
        let (mut t, mut history) = (None, None);
        if v3 {
            t = match v.remove("t") {
                Some(val) => Some(val.as_i64().filter(|t| *t >= 0).ok_or_else(|| {
                    FormatError::invalid("root body's \"t\" is not a time after 1970")
                })?),
                None => None,
            };
            if let Some(i) = v.remove("history") {
                let h = res.node(index(i, "history")?)?;
                if h == dir || inodes.as_ref() == Some(&h) {
                    return Err(FormatError::invalid(
                        "root body's \"history\" is the same node as another member",
                    ));
                }
                history = Some(h);
            }
        }
        if !read_only {
            res.finish()?;
        }
        let read = ReadRoot {
            root: Root {
                attrs,
                xattrs,
                dir,
                inodes,
            },
            read_only,
        };
        Ok((read, t, history))
    }
}
