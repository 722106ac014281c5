//! The root node `pxfs/root/2` (FORMAT.md §3.2): the sNFT directory's own attributes, the
//! top of its root directory, and the top of the link-group table.

use serde::Serialize;

use super::canonical::{from_json, to_json};
use super::entry::{Attrs, WireAttrs, Xattr, attrs_from_wire, attrs_to_wire};
use super::envelope::{self, Indexer, Lists, Resolver};
use super::keys::TreeCrypto;
use super::{FormatError, Result, SCHEMA_ROOT};

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

#[derive(Serialize)]
struct WireRoot {
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(rename = "self")]
    attrs: WireAttrs,
    dir: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    inodes: Option<u64>,
}

const KNOWN: [&str; 4] = ["type", "self", "dir", "inodes"];

impl Root {
    pub fn encode(&self, crypto: &TreeCrypto) -> Vec<u8> {
        let lists = Lists::collect(
            std::iter::once(self.dir.as_str()).chain(self.inodes.as_deref()),
            [],
        );
        let ix = Indexer::Of(&lists);
        let body = to_json(&WireRoot {
            ty: "root",
            attrs: attrs_to_wire(&self.attrs, &self.xattrs),
            dir: ix.node(&self.dir),
            inodes: self.inodes.as_deref().map(|c| ix.node(c)),
        });
        envelope::write(SCHEMA_ROOT, &lists, &body, crypto)
    }

    pub fn decode(bytes: &[u8], crypto: &TreeCrypto) -> Result<ReadRoot> {
        let (lists, body) = envelope::read(bytes, SCHEMA_ROOT, crypto)?;
        let mut v: serde_json::Map<String, serde_json::Value> = from_json(&body, "root body")?;
        match v.get("type") {
            Some(serde_json::Value::String(t)) if t == "root" => {}
            other => {
                return Err(FormatError::invalid(format!(
                    "root body has type {other:?}, expected \"root\""
                )));
            }
        }
        let read_only = v.keys().any(|k| !KNOWN.contains(&k.as_str()));
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
        if !read_only {
            res.finish()?;
        }
        Ok(ReadRoot {
            root: Root {
                attrs,
                xattrs,
                dir,
                inodes,
            },
            read_only,
        })
    }
}
