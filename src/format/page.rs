//! Pages of a paged table (FORMAT.md §5): leaves `{"type":"leaf","entries":[…]}` and
//! branches `{"type":"branch","level":L,"count":N,"children":[…]}`, for directories
//! (`pxfs/dir/2`, keyed by name) and the link-group table (`pxfs/inodes/2`, keyed by id).

use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::canonical::{from_json, to_json};
use super::entry::{Entry, EntryKind, GroupId, InodeRecord, WireEntry};
use super::envelope::{self, Indexer, Lists, Resolver};
use super::keys::TreeCrypto;
use super::name::{Name, from_members, to_members};
use super::{FormatError, Result, SCHEMA_DIR, SCHEMA_INODES};

/// An item a table's leaves hold: a directory [`Entry`], a link-group [`InodeRecord`], a
/// file's chunk (`chunks::ChunkRef`, §13) or a retained version (`history::Version`, §14).
/// The hidden methods are the page codec's; they are not part of the API.
pub trait Record: Clone + PartialEq + fmt::Debug {
    /// The schema of the table's pages.
    const SCHEMA: &'static str;
    /// The record as written in a leaf's `entries`.
    #[doc(hidden)]
    type Wire: Serialize + DeserializeOwned;
    /// A table of at most this many records (and [`Record::SMALL_BYTES`]) is one leaf
    /// (§5; smaller for chunk and history tables, whose leaves a commit rewrites).
    const SMALL_ENTRIES: usize = super::prolly::SMALL_ENTRIES;
    const SMALL_BYTES: usize = super::prolly::SMALL_BYTES;
    /// The key the table is ordered by (name bytes, or the group id's 8 bytes).
    fn key(&self) -> &[u8];
    /// A kind this version cannot read: kept when reading, refused when writing.
    fn is_unknown(&self) -> bool;
    #[doc(hidden)]
    fn refs<'a>(&'a self, nodes: &mut Vec<&'a str>, data: &mut Vec<&'a str>);
    #[doc(hidden)]
    fn to_wire(&self, ix: &Indexer) -> Self::Wire;
    #[doc(hidden)]
    fn from_wire(w: Self::Wire, res: &mut Resolver) -> Result<Self>;
    #[doc(hidden)]
    fn key_to_item(key: &[u8], item: &mut WireItem);
    #[doc(hidden)]
    fn key_from_item(item: &mut WireItem) -> Result<Vec<u8>>;
}

impl Record for Entry {
    const SCHEMA: &'static str = SCHEMA_DIR;
    type Wire = WireEntry;
    fn key(&self) -> &[u8] {
        self.name.as_bytes()
    }
    fn is_unknown(&self) -> bool {
        matches!(self.kind, EntryKind::Unknown(_))
    }
    fn refs<'a>(&'a self, nodes: &mut Vec<&'a str>, data: &mut Vec<&'a str>) {
        if let EntryKind::Inode(i) = &self.kind {
            i.refs(nodes, data)
        }
    }
    fn to_wire(&self, ix: &Indexer) -> WireEntry {
        Entry::to_wire(self, ix)
    }
    fn from_wire(w: WireEntry, res: &mut Resolver) -> Result<Self> {
        Entry::from_wire(w, res)
    }
    fn key_to_item(key: &[u8], item: &mut WireItem) {
        (item.n, item.nb) = to_members(key);
    }
    fn key_from_item(item: &mut WireItem) -> Result<Vec<u8>> {
        let bytes = from_members(item.n.take(), item.nb.take(), "n")?;
        Ok(Name::new(bytes)?.as_bytes().to_vec())
    }
}

impl Record for InodeRecord {
    const SCHEMA: &'static str = SCHEMA_INODES;
    type Wire = WireEntry;
    fn key(&self) -> &[u8] {
        &self.id.0
    }
    fn is_unknown(&self) -> bool {
        matches!(self.kind, EntryKind::Unknown(_))
    }
    fn refs<'a>(&'a self, nodes: &mut Vec<&'a str>, data: &mut Vec<&'a str>) {
        if let EntryKind::Inode(i) = &self.kind {
            i.refs(nodes, data)
        }
    }
    fn to_wire(&self, ix: &Indexer) -> WireEntry {
        InodeRecord::to_wire(self, ix)
    }
    fn from_wire(w: WireEntry, res: &mut Resolver) -> Result<Self> {
        InodeRecord::from_wire(w, res)
    }
    fn key_to_item(key: &[u8], item: &mut WireItem) {
        item.first = Some(hex::encode(key));
    }
    fn key_from_item(item: &mut WireItem) -> Result<Vec<u8>> {
        Ok(GroupId::parse(&item.take_first()?)?.0.to_vec())
    }
}

/// One child of a branch: its first key, its CID, and how many records are below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildRef {
    pub first: Vec<u8>,
    pub node: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    /// 1 for a branch over leaves.
    pub level: u8,
    pub count: u64,
    pub children: Vec<ChildRef>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Page<R> {
    Leaf(Vec<R>),
    Branch(Branch),
}

impl<R: Record> Page<R> {
    pub fn level(&self) -> u8 {
        match self {
            Page::Leaf(_) => 0,
            Page::Branch(b) => b.level,
        }
    }

    /// Records below this page.
    pub fn count(&self) -> u64 {
        match self {
            Page::Leaf(v) => v.len() as u64,
            Page::Branch(b) => b.count,
        }
    }

    /// The first key below this page (`None` for an empty leaf).
    pub fn first_key(&self) -> Option<&[u8]> {
        match self {
            Page::Leaf(v) => v.first().map(|r| r.key()),
            Page::Branch(b) => b.children.first().map(|c| c.first.as_slice()),
        }
    }
}

/// A branch item as written: `{"n"|"nb"|"first":KEY,"node":I,"count":C}`.
#[doc(hidden)]
#[derive(Serialize, Deserialize, Default)]
pub struct WireItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    first: Option<String>,
    node: u64,
    count: u64,
}

impl WireItem {
    /// The `first` member (tables keyed by 8 bytes written as 16 hex digits).
    pub(crate) fn set_first(&mut self, first: String) {
        self.first = Some(first);
    }

    pub(crate) fn take_first(&mut self) -> Result<String> {
        self.first
            .take()
            .ok_or_else(|| FormatError::invalid("a branch item has no \"first\""))
    }
}

#[derive(Serialize)]
struct WireLeaf<W> {
    #[serde(rename = "type")]
    ty: &'static str,
    entries: Vec<W>,
}

#[derive(Serialize)]
struct WireBranch {
    #[serde(rename = "type")]
    ty: &'static str,
    level: u64,
    count: u64,
    children: Vec<WireItem>,
}

#[derive(Deserialize)]
#[serde(bound = "W: DeserializeOwned")]
struct WireBody<W> {
    #[serde(rename = "type")]
    ty: String,
    #[serde(default)]
    level: Option<u64>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    entries: Option<Vec<W>>,
    #[serde(default)]
    children: Option<Vec<WireItem>>,
}

fn item_to_wire<R: Record>(c: &ChildRef, ix: &Indexer) -> WireItem {
    let mut w = WireItem {
        node: ix.node(&c.node),
        count: c.count,
        ..Default::default()
    };
    R::key_to_item(&c.first, &mut w);
    w
}

/// A record's size for the paging rules: its canonical JSON with indices written as 0,
/// plus the length of every CID it refers to (FORMAT.md §5).
pub fn record_size<R: Record>(r: &R) -> usize {
    let (mut nodes, mut data) = (Vec::new(), Vec::new());
    r.refs(&mut nodes, &mut data);
    to_json(&r.to_wire(&Indexer::Zero)).len()
        + nodes.iter().chain(&data).map(|c| c.len()).sum::<usize>()
}

/// A branch item's size for the paging rules (index written as 0, plus its CID's length).
pub fn child_size<R: Record>(c: &ChildRef) -> usize {
    to_json(&item_to_wire::<R>(c, &Indexer::Zero)).len() + c.node.len()
}

/// Encodes a page as its node object. Refuses records of unknown kinds (a commit drops
/// them) and records out of order.
pub fn encode<R: Record>(page: &Page<R>, crypto: &TreeCrypto) -> Result<Vec<u8>> {
    let (lists, body) = match page {
        Page::Leaf(records) => {
            if records.iter().any(Record::is_unknown) {
                return Err(FormatError::invalid(
                    "cannot write an entry of an unknown kind",
                ));
            }
            check_increasing(records.iter().map(|r| r.key()))?;
            let (mut nodes, mut data) = (Vec::new(), Vec::new());
            for r in records {
                r.refs(&mut nodes, &mut data);
            }
            let lists = Lists::collect(nodes, data);
            let ix = Indexer::Of(&lists);
            let entries = records.iter().map(|r| r.to_wire(&ix)).collect();
            let body = to_json(&WireLeaf {
                ty: "leaf",
                entries,
            });
            (lists, body)
        }
        Page::Branch(b) => {
            check_increasing(b.children.iter().map(|c| c.first.as_slice()))?;
            let lists = Lists::collect(b.children.iter().map(|c| c.node.as_str()), []);
            let ix = Indexer::Of(&lists);
            let children = b
                .children
                .iter()
                .map(|c| item_to_wire::<R>(c, &ix))
                .collect();
            let body = to_json(&WireBranch {
                ty: "branch",
                level: b.level.into(),
                count: b.count,
                children,
            });
            (lists, body)
        }
    };
    Ok(envelope::write(R::SCHEMA, &lists, &body, crypto))
}

/// Decodes and checks one page: keys strictly increasing, a branch's count the sum of its
/// children's, indices in range, every listed CID used.
pub fn decode<R: Record>(bytes: &[u8], crypto: &TreeCrypto) -> Result<Page<R>> {
    let (lists, body) = envelope::read(bytes, R::SCHEMA, crypto)?;
    let w: WireBody<R::Wire> = from_json(&body, "page body")?;
    let mut res = Resolver::new(&lists, crypto.is_sealed());
    let page = match w.ty.as_str() {
        "leaf" => {
            let entries = w
                .entries
                .ok_or_else(|| FormatError::invalid("a leaf has no \"entries\""))?;
            let records = entries
                .into_iter()
                .map(|e| R::from_wire(e, &mut res))
                .collect::<Result<Vec<R>>>()?;
            check_increasing(records.iter().map(|r| r.key()))?;
            Page::Leaf(records)
        }
        "branch" => {
            let level = w
                .level
                .ok_or_else(|| FormatError::invalid("a branch has no \"level\""))?;
            let level = u8::try_from(level)
                .ok()
                .filter(|l| *l >= 1)
                .ok_or_else(|| {
                    FormatError::invalid(format!("branch level {level} is not 1-255"))
                })?;
            let count = w
                .count
                .ok_or_else(|| FormatError::invalid("a branch has no \"count\""))?;
            let items = w
                .children
                .ok_or_else(|| FormatError::invalid("a branch has no \"children\""))?;
            if items.is_empty() {
                return Err(FormatError::invalid("a branch has no children"));
            }
            let mut children = Vec::with_capacity(items.len());
            for mut item in items {
                children.push(ChildRef {
                    first: R::key_from_item(&mut item)?,
                    node: res.node(item.node)?,
                    count: item.count,
                });
            }
            check_increasing(children.iter().map(|c| c.first.as_slice()))?;
            let sum = children
                .iter()
                .try_fold(0u64, |s, c| s.checked_add(c.count));
            if sum != Some(count) || children.iter().any(|c| c.count == 0) {
                return Err(FormatError::invalid(format!(
                    "branch count {count} is not the sum of its children's non-zero counts"
                )));
            }
            Page::Branch(Branch {
                level,
                count,
                children,
            })
        }
        other => return Err(FormatError::invalid(format!("unknown page type {other:?}"))),
    };
    res.finish()?;
    Ok(page)
}

fn check_increasing<'a>(keys: impl Iterator<Item = &'a [u8]>) -> Result<()> {
    let mut prev: Option<&[u8]> = None;
    for k in keys {
        if prev.is_some_and(|p| p >= k) {
            return Err(FormatError::invalid(format!(
                "keys are not strictly increasing at \"{}\"",
                super::name::escape(k)
            )));
        }
        prev = Some(k);
    }
    Ok(())
}
