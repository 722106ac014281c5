//! The published graph's reference counts (docs/FORMAT.md §15): for every object reachable
//! from a token's published root (the root node, directory, link-group, chunk-table and
//! history pages, and the content they list), how many tree nodes list it. With them a
//! commit knows exactly what it made unreachable, wherever the rest of the tree is: an
//! object dropped on a changed path but still listed by a page of a directory this mount
//! never loaded (equal plaintext content, a conflict copy moved away) keeps a count above
//! zero and stays pinned; one nothing lists any more reaches zero and is unpinned.
//!
//! Moving from root `old` to root `new` adds one reference to `new` and takes one from
//! `old`. Adding descends only into nodes seen for the first time, taking only descends
//! into nodes whose count reaches zero, so a subtree both roots share costs nothing and a
//! commit's work is the objects it added and dropped. Only the public lists (§3.1) are
//! read for the references; the bodies are read (with the tree's key) for the stored size
//! of each content object, so the counts also give the whole graph's usage (§7: each
//! distinct object once, the kept versions' included) without asking the node for sizes.
//!
//! Objects are keyed by 16 bytes of a SHA-256 of their multihash: 24 bytes an object held
//! in memory, some 40 MB for a million-object tree with the tables' free room ([`Counts`]),
//! and two CIDs of one multihash count as one object (a node pins and collects blocks by
//! multihash). A collision of two keys (2^-64 for a pair) would merge two objects' counts;
//! that can keep an object pinned, never unpin one still listed, except by skipping the
//! descent into a page first met under the other's key, which at that probability is not a
//! practical concern.

use std::collections::HashMap;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};

use crate::format::TreeCrypto;
use crate::format::children::{Children, Reach};
use crate::fs::data::outbox::Outbox;
use crate::fs::data::pages::PageCache;
use crate::fs::error::{FsError, FsResult};
use crate::fs::store::ContentStore;

/// Pages fetched at once while counting a tree for the first time: enough to keep a link
/// with latency busy (each is one small request).
const FETCHES_AT_ONCE: usize = 32;

type Key = [u8; 16];

fn key(cid: &str) -> Key {
    let mut h = Sha256::new();
    match ipld_core::cid::Cid::try_from(cid) {
        Ok(c) => h.update(c.hash().to_bytes()),
        Err(_) => {
            h.update(b"unparsed:");
            h.update(cid.as_bytes());
        }
    }
    let digest = h.finalize();
    let mut k = [0u8; 16];
    k.copy_from_slice(&digest[..16]);
    k
}

/// Where pages are read: the mount's page cache first (a commit's new pages are there),
/// then a commit's pages not sent yet, else the node. Pages read from the node are not kept
/// in the cache: a first count of a large tree would push out the pages the mount is using.
/// `crypto` opens the bodies.
#[derive(Clone, Copy)]
pub struct PageSource<'a> {
    pub store: &'a dyn ContentStore,
    pub cache: &'a PageCache,
    pub crypto: &'a TreeCrypto,
    /// A commit's new pages, counted before they go to the node with its document.
    pub unsent: Option<&'a Outbox>,
}

impl PageSource<'_> {
    /// Node `cid`'s stored size and references, reached as `reach`.
    async fn children(&self, cid: &str, reach: Reach) -> FsResult<(u64, Children)> {
        let unsent = || self.unsent.and_then(|o| o.get(cid));
        let bytes: Bytes = match self.cache.get(cid).or_else(unsent) {
            Some(b) => b,
            None => self.store.fetch(cid).await?,
        };
        let children =
            crate::format::children::children(&bytes, reach, self.crypto).map_err(|e| {
                FsError::Store(crate::fs::store::StoreError::permanent(format!(
                    "tree node {cid}: {e}"
                )))
            })?;
        Ok((bytes.len() as u64, children))
    }
}

/// The counts for one published root.
#[derive(Debug, Clone, Default)]
pub struct GraphIndex {
    root: String,
    refs: Counts,
    total: u64,
}

impl GraphIndex {
    /// Counts every object reachable from `root` (reading each of its nodes once).
    pub async fn count(root: &str, pages: PageSource<'_>) -> FsResult<GraphIndex> {
        let mut index = GraphIndex {
            root: root.to_owned(),
            refs: Counts::default(),
            total: 0,
        };
        index.add_tree(root, pages).await?;
        Ok(index)
    }

    /// The counts of an sNFT that has published nothing yet (no root: nothing counted).
    pub fn empty() -> GraphIndex {
        GraphIndex::default()
    }

    /// The root these counts are of (empty: none).
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Distinct objects counted.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.len() == 0
    }

    /// The stored bytes of every distinct object the root reaches: its usage (§7).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Whether the counted root reaches `cid`.
    pub fn holds(&self, cid: &str) -> bool {
        self.refs.contains(&key(cid))
    }

    /// Moves the counts to root `new`; returns the objects the old root reached and `new`
    /// does not. On an error (a page that cannot be read) the counts are left half-moved:
    /// the caller drops them and counts again.
    pub async fn advance(&mut self, new: &str, pages: PageSource<'_>) -> FsResult<Vec<String>> {
        if new == self.root {
            return Ok(Vec::new());
        }
        self.add_tree(new, pages).await?;
        let old = std::mem::replace(&mut self.root, new.to_owned());
        if old.is_empty() {
            return Ok(Vec::new());
        }
        self.drop_tree(&old, pages).await
    }

    /// One more reference to `cid`, of `size` stored bytes; `true` when it is new.
    fn add(&mut self, cid: &str, size: u64) -> bool {
        let new = self.refs.add(key(cid), size);
        if new {
            self.total += size;
        }
        new
    }

    /// A node's size, known once it is read (it was added with 0).
    fn sized(&mut self, cid: &str, size: u64) {
        if let Some(old) = self.refs.set_size(&key(cid), size) {
            self.total = self.total - old + size;
        }
    }

    /// Takes one reference; `true` when it was the last.
    fn take(&mut self, cid: &str) -> FsResult<bool> {
        match self.refs.decrement(&key(cid)) {
            Some(Taken::Last { size }) => {
                self.total -= size;
                Ok(true)
            }
            Some(Taken::More) => Ok(false),
            None => Err(FsError::Store(crate::fs::store::StoreError::permanent(
                format!("graph counts: {cid} is not counted"),
            ))),
        }
    }

    /// One reference to tree node `root`, and, for each node met for the first time, one
    /// to everything it lists.
    async fn add_tree(&mut self, root: &str, pages: PageSource<'_>) -> FsResult<()> {
        let mut next = Vec::new();
        if self.add(root, 0) {
            next.push((root.to_owned(), Reach::Tree));
        }
        while !next.is_empty() {
            let mut reading: FuturesUnordered<_> = FuturesUnordered::new();
            let batch = next.split_off(next.len().saturating_sub(FETCHES_AT_ONCE));
            for (cid, reach) in batch {
                reading.push(async move {
                    let read = pages.children(&cid, reach).await;
                    (cid, read)
                });
            }
            while let Some((cid, read)) = reading.next().await {
                let (size, children) = read?;
                self.sized(&cid, size);
                for (node, reach) in children.nodes {
                    if self.add(&node, 0) {
                        next.push((node, reach));
                    }
                }
                for (data, size) in &children.data {
                    self.add(data, *size);
                }
            }
        }
        Ok(())
    }

    /// Takes one reference from tree node `root`, and, for each node whose count reaches
    /// zero, one from everything it lists. Returns the objects whose count reached zero.
    async fn drop_tree(&mut self, root: &str, pages: PageSource<'_>) -> FsResult<Vec<String>> {
        let mut dropped = Vec::new();
        let mut next = Vec::new();
        if self.take(root)? {
            next.push((root.to_owned(), Reach::Tree));
        }
        while let Some((node, reach)) = next.pop() {
            let (_, children) = pages.children(&node, reach).await?;
            dropped.push(node);
            for (child, reach) in children.nodes {
                if self.take(&child)? {
                    next.push((child, reach));
                }
            }
            for (data, _) in children.data {
                if self.take(&data)? {
                    dropped.push(data);
                }
            }
        }
        Ok(dropped)
    }
}

/// The counts, kept small for a tree of millions of objects: an entry is 24 bytes (a size
/// of 4 GiB or more, which only a v2 file's single object can have, is kept aside), and
/// the keys are spread over [`SHARDS`] tables, so growing one table copies a sixty-fourth
/// of the entries instead of holding the whole old table beside one twice its size (at a
/// million objects that was some 100 MB for a moment).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counts {
    shards: Vec<HashMap<Key, Counted>>,
    large: HashMap<Key, u64>,
}

/// Tables the keys are spread over (by their first byte, itself uniform).
const SHARDS: usize = 64;

/// One counted object: how many nodes list it, and its stored size ([`LARGE`]: in
/// `Counts::large`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Counted {
    refs: u32,
    size: u32,
}

const LARGE: u32 = u32::MAX;

/// What taking a reference left.
enum Taken {
    More,
    Last { size: u64 },
}

impl Default for Counts {
    fn default() -> Self {
        Counts {
            shards: vec![HashMap::new(); SHARDS],
            large: HashMap::new(),
        }
    }
}

impl Counts {
    fn shard(k: &Key) -> usize {
        usize::from(k[0]) % SHARDS
    }

    fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    fn contains(&self, k: &Key) -> bool {
        self.shards[Self::shard(k)].contains_key(k)
    }

    /// One more reference; a new key gets `size`. Returns whether the key is new.
    fn add(&mut self, k: Key, size: u64) -> bool {
        let c = self.shards[Self::shard(&k)]
            .entry(k)
            .or_insert(Counted { refs: 0, size: 0 });
        c.refs = c.refs.saturating_add(1);
        let new = c.refs == 1;
        if new {
            c.size = pack(&mut self.large, &k, size);
        }
        new
    }

    /// Sets a counted key's size; returns the size it had (`None`: not counted).
    fn set_size(&mut self, k: &Key, size: u64) -> Option<u64> {
        let c = self.shards[Self::shard(k)].get_mut(k)?;
        let old = unpack(&mut self.large, k, c.size);
        c.size = pack(&mut self.large, k, size);
        Some(old)
    }

    /// Takes one reference, removing the key with its last (`None`: not counted).
    fn decrement(&mut self, k: &Key) -> Option<Taken> {
        let shard = &mut self.shards[Self::shard(k)];
        let c = shard.get_mut(k)?;
        if c.refs > 1 {
            c.refs -= 1;
            return Some(Taken::More);
        }
        let packed = shard.remove(k)?.size;
        Some(Taken::Last {
            size: unpack(&mut self.large, k, packed),
        })
    }
}

/// `size` as a [`Counted`] holds it: itself, or [`LARGE`] with the size put in `large`.
fn pack(large: &mut HashMap<Key, u64>, k: &Key, size: u64) -> u32 {
    match u32::try_from(size) {
        Ok(s) if s != LARGE => s,
        _ => {
            large.insert(*k, size);
            LARGE
        }
    }
}

/// The size a [`Counted`] holds as `packed`, taking it out of `large` if it is there.
fn unpack(large: &mut HashMap<Key, u64>, k: &Key, packed: u32) -> u64 {
    match packed {
        LARGE => large.remove(k).unwrap_or(0),
        s => u64::from(s),
    }
}

#[cfg(test)]
mod tests;
