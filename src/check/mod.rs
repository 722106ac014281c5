//! Checking a published tree (`pxfs check`, issue #30): walk every directory page and every
//! content DAG node reachable from a v2 root (docs/FORMAT.md §3–§5) and ask the node for
//! each block: its presence (`block/stat`), or with `read_data` its bytes, checked against
//! the CID (`crate::integrity`). Damage is reported per file path as it is found (a block
//! shared by several files names each of them), then a summary.
//!
//! A format-3 root (§12) adds chunked files (§13: every page of a file's chunk table and
//! every chunk it names; holes have no block) and history (§14): every version the history
//! table keeps is checked as well as the current tree, its files named
//! `/.snapshots/<name>/path`. Versions share most of their pages and blocks with the
//! current tree; each distinct one is asked for once ([`tree`], [`blocks`]).
//!
//! Why not `oracle::walk`: the oracle follows only the envelopes' public `nodes`/`data`
//! lists, which carry no names, and stops at the first missing object; a check must name
//! each damaged file and go on past damage, so it decodes the pages (with the key of an
//! encrypted tree) and keeps walking. What it shares: the checked fetches of
//! `crate::integrity` (`object`, `block`), the dag-pb decoder and the page/root codecs.
//!
//! Streaming: pages are walked depth first and a page's files are checked before more
//! pages are opened, so memory holds the pages on the way down and the requests in flight,
//! never a list of the tree's files. Content found intact or damaged is remembered up to
//! a bound (so a content shared by many files is fetched once, and reported for every
//! file).
//!
//! In an encrypted tree with `read_data`, each content leaf is also opened as the sealed
//! chunk its position makes it (docs/FORMAT.md §6.2: chunk `i` is leaf `i`, the last one
//! flagged), with the file version's key: a chunk that hashes right but does not
//! authenticate (sealed with another key, moved, truncated) is reported as unreadable.

mod blocks;
pub mod record;
mod repair;
mod tree;

use std::time::Duration;

use crate::format::TreeCrypto;
use crate::format::history::Version;
use crate::format::page::{self, Page};
use crate::format::root::Root;
use crate::storage::{NodeClient, StorageError};

pub use repair::{Repair, Sources, repair};

#[derive(Debug, Clone)]
pub struct Options {
    /// Fetch every block and check it against its CID (otherwise `block/stat` only).
    pub read_data: bool,
    /// Node requests in flight at a time.
    pub concurrency: usize,
    /// A block the node does not give within this time counts as missing.
    pub block_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_data: false,
            concurrency: 16,
            block_timeout: Duration::from_secs(60),
        }
    }
}

/// What is wrong with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The node does not have it (or does not give it in time).
    Missing(String),
    /// Its bytes do not hash to its CID.
    Corrupt,
    /// It hashes right but is not what pxfs wrote there (does not decode, wrong key).
    Invalid(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing(why) => write!(f, "missing ({why})"),
            Problem::Corrupt => f.write_str("corrupt (its bytes do not match its CID)"),
            Problem::Invalid(why) => write!(f, "unreadable ({why})"),
        }
    }
}

/// What was damaged: a file's content, or a directory page (the entries it holds cannot be
/// named or checked), or the hard-link table, or the history table (the versions it holds
/// cannot be checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    File,
    Directory,
    LinkTable,
    History,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// `/`-joined from the sNFT's root (`/` for the root itself).
    pub path: String,
    pub part: Part,
    /// The damaged block (the first one found, for a file).
    pub cid: String,
    pub problem: Problem,
    /// Every damaged block found (what a repair puts back).
    pub blocks: Vec<DamagedBlock>,
}

/// One damaged block, and for file content where its bytes lie in a stored object, so
/// that the chunk cache can give them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBlock {
    pub cid: String,
    pub leaf: Option<Leaf>,
}

/// Where a content block's bytes lie: `len` bytes at `start` of the stored object
/// `object` (a v2 file's content object; a format-3 chunk is an object of its own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub object: String,
    pub start: u64,
    pub len: u64,
}

impl DamagedBlock {
    fn node(cid: &str) -> Vec<DamagedBlock> {
        vec![DamagedBlock {
            cid: cid.to_string(),
            leaf: None,
        }]
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.part {
            Part::File => write!(f, "{}: block {} {}", self.path, self.cid, self.problem),
            Part::Directory => write!(
                f,
                "{} (directory): page {} {}; the entries it holds are not checked",
                self.path, self.cid, self.problem
            ),
            Part::LinkTable => write!(
                f,
                "the hard-link table: page {} {}; files with several names are not checked",
                self.cid, self.problem
            ),
            Part::History => write!(
                f,
                "the history table: page {} {}; the versions it keeps are not checked",
                self.cid, self.problem
            ),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Files and directories checked (one in a page that versions share, once).
    pub files: u64,
    pub directories: u64,
    /// Earlier versions kept by the history table, checked besides the current tree.
    pub versions: u64,
    /// Blocks asked for (pages and content), and their bytes.
    pub blocks: u64,
    pub bytes: u64,
    pub missing: u64,
    pub corrupt: u64,
    /// Blocks that hash right but do not decode as what pxfs wrote.
    pub invalid: u64,
    /// Files (and directories) reported damaged.
    pub damaged: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn intact(&self) -> bool {
        self.damaged == 0 && self.missing == 0 && self.corrupt == 0 && self.invalid == 0
    }
}

pub enum Event<'a> {
    Damaged(&'a Damage),
    Progress(&'a Summary),
}

/// Why a check could not be done (as opposed to damage found).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the node cannot be asked: {0}")]
    Node(StorageError),
    #[error("the node does not offer {0}, which checking needs")]
    Unsupported(String),
    #[error("root node {cid} cannot be read: {reason}")]
    Root { cid: String, reason: String },
}

/// Checks the tree under the root node `root` (`pxfs/root/2`, or `pxfs/root/3` with the
/// versions its history keeps) on `node`, calling `on` for each damage found and now and
/// then with the figures so far.
pub async fn check_tree(
    node: &NodeClient,
    root: &str,
    crypto: &TreeCrypto,
    opts: &Options,
    on: &mut (dyn for<'e> FnMut(Event<'e>) + Send),
) -> Result<Summary, CheckError> {
    let asker = blocks::Asker::new(node, opts);
    let mut walk = tree::Walker::new(&asker, crypto, on);

    // The root node: without it nothing can be named.
    walk.sum.blocks += 1;
    let bytes = match asker.node(root).await? {
        Ok(bytes) => bytes,
        Err(p) => {
            walk.damaged_node("/", Part::Directory, root, p);
            return Ok(walk.finish());
        }
    };
    walk.sum.bytes += bytes.len() as u64;
    let (tree, history) = decode_root(root, &bytes, crypto)?;
    walk.tree("/", &tree.dir, tree.inodes.as_deref()).await?;
    if let Some(top) = history {
        // Newest first: a version shares most with the one after it.
        for v in kept_versions(&mut walk, &top).await?.into_iter().rev() {
            walk.sum.versions += 1;
            let prefix = format!("/.snapshots/{}", v.name());
            walk.tree(&prefix, &v.dir, v.inodes.as_deref()).await?;
        }
    }
    Ok(walk.finish())
}

/// A format-2 or format-3 root: its tree, and the top of its history table.
fn decode_root(
    cid: &str,
    bytes: &[u8],
    crypto: &TreeCrypto,
) -> Result<(Root, Option<String>), CheckError> {
    let bad = |e: crate::format::FormatError| CheckError::Root {
        cid: cid.to_string(),
        reason: e.to_string(),
    };
    let read = Root::decode_any(bytes, crypto).map_err(bad)?;
    Ok((read.root, read.v3.and_then(|(_, history)| history)))
}

/// Every version the history table under `top` keeps, oldest first. A damaged page is
/// reported (the versions it holds cannot be checked); the others are.
async fn kept_versions(
    walk: &mut tree::Walker<'_, '_>,
    top: &str,
) -> Result<Vec<Version>, CheckError> {
    let mut versions = Vec::new();
    let mut pages = vec![top.to_string()];
    while let Some(cid) = pages.pop() {
        walk.sum.blocks += 1;
        let got = walk.asker.node(&cid).await?;
        let decoded = got.and_then(|b| {
            walk.sum.bytes += b.len() as u64;
            page::decode::<Version>(&b, walk.crypto).map_err(|e| Problem::Invalid(e.to_string()))
        });
        match decoded {
            Ok(Page::Leaf(records)) => versions.extend(records),
            Ok(Page::Branch(b)) => pages.extend(b.children.into_iter().map(|c| c.node)),
            Err(problem) => walk.damaged_node("/.snapshots", Part::History, &cid, problem),
        }
    }
    versions.sort_by_key(Version::t);
    Ok(versions)
}
