//! The node envelope (FORMAT.md §3.1): `schema`, the public `nodes` and `data` lists, and
//! the body, in clear (`body`) or sealed (`salt`, `sealed`; §6.3). Bodies refer to other
//! objects only by index into the lists; [`Indexer`] and [`Resolver`] translate.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::canonical::{b64_array, b64_decode, b64_encode, from_json, to_json};
use super::keys::TreeCrypto;
use super::seal::{open_body, seal_body};
use super::{FormatError, Result};

/// The public part `{"schema","nodes","data"}`: also the sealed body's associated data.
#[derive(Serialize)]
struct Public<'a> {
    schema: &'a str,
    nodes: &'a [String],
    data: &'a [String],
}

#[derive(Deserialize)]
struct WireEnvelope {
    schema: String,
    nodes: Vec<String>,
    data: Vec<String>,
    #[serde(default)]
    body: Option<Box<RawValue>>,
    #[serde(default)]
    salt: Option<String>,
    #[serde(default)]
    sealed: Option<String>,
}

/// A node's reference lists: sorted ascending by the CID string's bytes, no duplicates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    pub nodes: Vec<String>,
    pub data: Vec<String>,
}

impl Lists {
    /// The lists for the given references (any order, repeats allowed).
    pub fn collect<'a>(
        nodes: impl IntoIterator<Item = &'a str>,
        data: impl IntoIterator<Item = &'a str>,
    ) -> Lists {
        let sorted = |it: &mut dyn Iterator<Item = &'a str>| {
            let mut v: Vec<String> = it.map(str::to_owned).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        Lists {
            nodes: sorted(&mut nodes.into_iter()),
            data: sorted(&mut data.into_iter()),
        }
    }
}

/// CID → index while writing a body; [`Indexer::Zero`] writes every index as 0, which is
/// how page sizes are measured (§5), independent of how items are grouped into pages.
#[doc(hidden)]
pub enum Indexer<'a> {
    Zero,
    Of(&'a Lists),
}

impl Indexer<'_> {
    fn find(list: &[String], cid: &str) -> u64 {
        list.binary_search_by(|c| c.as_str().cmp(cid))
            .expect("the lists were collected from the body's references") as u64
    }

    pub(crate) fn node(&self, cid: &str) -> u64 {
        match self {
            Indexer::Zero => 0,
            Indexer::Of(l) => Self::find(&l.nodes, cid),
        }
    }

    pub(crate) fn data(&self, cid: &str) -> u64 {
        match self {
            Indexer::Zero => 0,
            Indexer::Of(l) => Self::find(&l.data, cid),
        }
    }
}

/// Index → CID while reading a body: refuses an index out of range, and remembers which
/// listed CIDs the body used so an unreferenced one can be refused.
#[doc(hidden)]
pub struct Resolver<'a> {
    lists: &'a Lists,
    sealed: bool,
    used_nodes: Vec<bool>,
    used_data: Vec<bool>,
    unknown: bool,
}

impl<'a> Resolver<'a> {
    pub(crate) fn new(lists: &'a Lists, sealed: bool) -> Resolver<'a> {
        Resolver {
            lists,
            sealed,
            used_nodes: vec![false; lists.nodes.len()],
            used_data: vec![false; lists.data.len()],
            unknown: false,
        }
    }

    pub(crate) fn sealed(&self) -> bool {
        self.sealed
    }

    pub(crate) fn node(&mut self, i: u64) -> Result<String> {
        let cid = self.lists.nodes.get(i as usize).ok_or_else(|| {
            FormatError::invalid(format!(
                "node index {i} is out of range ({} nodes)",
                self.lists.nodes.len()
            ))
        })?;
        self.used_nodes[i as usize] = true;
        Ok(cid.clone())
    }

    pub(crate) fn data(&mut self, i: u64) -> Result<String> {
        let cid = self.lists.data.get(i as usize).ok_or_else(|| {
            FormatError::invalid(format!(
                "data index {i} is out of range ({} data)",
                self.lists.data.len()
            ))
        })?;
        self.used_data[i as usize] = true;
        Ok(cid.clone())
    }

    /// The body held an item of a kind this version does not know (it may refer to
    /// listed CIDs through members we cannot read).
    pub(crate) fn saw_unknown(&mut self) {
        self.unknown = true;
    }

    /// Every listed CID must be referenced by the body, unless it holds unknown kinds.
    pub(crate) fn finish(self) -> Result<()> {
        if !self.unknown && (self.used_nodes.contains(&false) || self.used_data.contains(&false)) {
            return Err(FormatError::invalid(
                "the node lists a CID its body does not refer to",
            ));
        }
        Ok(())
    }
}

/// Writes a node: the public part, then `body`, or `salt` and `sealed` for an encrypted
/// tree. `body` must be canonical JSON.
pub fn write(schema: &str, lists: &Lists, body: &[u8], crypto: &TreeCrypto) -> Vec<u8> {
    let public = to_json(&Public {
        schema,
        nodes: &lists.nodes,
        data: &lists.data,
    });
    // Sized exactly: a page is kept in memory (the mount's page cache) as written.
    match crypto {
        TreeCrypto::Plain => {
            let mut out = Vec::with_capacity(public.len() + 8 + body.len());
            out.extend_from_slice(&public[..public.len() - 1]);
            out.extend_from_slice(b",\"body\":");
            out.extend_from_slice(body);
            out.push(b'}');
            out
        }
        TreeCrypto::Sealed(keys) => {
            let (salt, ct) = seal_body(keys, &public, body);
            let (salt, sealed) = (to_json(&b64_encode(&salt)), to_json(&b64_encode(&ct)));
            let mut out = Vec::with_capacity(public.len() + 18 + salt.len() + sealed.len());
            out.extend_from_slice(&public[..public.len() - 1]);
            out.extend_from_slice(b",\"salt\":");
            out.extend(salt);
            out.extend_from_slice(b",\"sealed\":");
            out.extend(sealed);
            out.push(b'}');
            out
        }
    }
}

/// The public part of any v2 node (its schema and lists), without reading the body: what
/// the oracle follows to measure a tree it holds no key for (§3.1, §7).
pub fn public(bytes: &[u8]) -> Result<(String, Lists)> {
    let w: WireEnvelope = from_json(bytes, "node")?;
    check_lists(&w)?;
    Ok((
        w.schema,
        Lists {
            nodes: w.nodes,
            data: w.data,
        },
    ))
}

fn check_lists(w: &WireEnvelope) -> Result<()> {
    let schema = &w.schema;
    for (name, list) in [("nodes", &w.nodes), ("data", &w.data)] {
        if list.windows(2).any(|p| p[0] >= p[1]) {
            return Err(FormatError::invalid(format!(
                "{schema} node: \"{name}\" is not sorted ascending without duplicates"
            )));
        }
        if list.iter().any(|c| c.is_empty() || !c.is_ascii()) {
            return Err(FormatError::invalid(format!(
                "{schema} node: \"{name}\" holds a malformed CID"
            )));
        }
    }
    Ok(())
}

/// Reads a node of schema `schema`: its lists and its body's JSON (opened, if sealed).
/// Refuses a foreign schema, unsorted or repeated list entries, and a node whose form does
/// not match the tree (a plaintext body in an encrypted tree, or the reverse).
pub fn read(bytes: &[u8], schema: &str, crypto: &TreeCrypto) -> Result<(Lists, Vec<u8>)> {
    let w: WireEnvelope = from_json(bytes, "node")?;
    if w.schema != schema {
        return Err(FormatError::Schema {
            what: "node",
            found: w.schema,
            expected: schema.into(),
        });
    }
    check_lists(&w)?;
    let body = match (crypto, w.body, w.salt, w.sealed) {
        (TreeCrypto::Plain, Some(body), None, None) => body.get().as_bytes().to_vec(),
        (TreeCrypto::Sealed(keys), None, Some(salt), Some(sealed)) => {
            let salt = b64_array::<32>(&salt, "salt")?;
            let sealed = b64_decode(&sealed, "sealed")?;
            let public = to_json(&Public {
                schema: &w.schema,
                nodes: &w.nodes,
                data: &w.data,
            });
            open_body(keys, &public, &salt, &sealed)?
        }
        (TreeCrypto::Plain, ..) => {
            return Err(FormatError::invalid(format!(
                "{schema} node is not a plaintext node, but the tree is plaintext"
            )));
        }
        (TreeCrypto::Sealed(_), ..) => {
            return Err(FormatError::invalid(format!(
                "{schema} node is not sealed, but the tree is encrypted"
            )));
        }
    };
    Ok((
        Lists {
            nodes: w.nodes,
            data: w.data,
        },
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::keys::DataKey;

    #[test]
    fn a_node_is_written_into_exactly_its_own_size() {
        let lists = Lists {
            nodes: vec!["bafyreia".into()],
            data: vec!["bafkreib".into(), "bafkreic".into()],
        };
        for crypto in [
            TreeCrypto::Plain,
            TreeCrypto::sealed(&DataKey::from_bytes([7; 32])),
        ] {
            for n in [0, 1, 2, 3, 100, 4097] {
                let body = format!("{{\"x\":\"{}\"}}", "y".repeat(n));
                let node = write("pxfs/test", &lists, body.as_bytes(), &crypto);
                assert_eq!(node.len(), node.capacity(), "body of {n}");
                assert_eq!(public(&node).unwrap().1.data, lists.data);
            }
        }
    }
}
