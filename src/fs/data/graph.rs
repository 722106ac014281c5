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
//! read: no key is needed, and a sealed tree is counted as a plain one.
//!
//! Objects are keyed by 16 bytes of a SHA-256 of their multihash: about 20 bytes an object
//! held in memory (a million-object tree: some 30 MB), and two CIDs of one multihash count
//! as one object (a node pins and collects blocks by multihash). A collision of two keys
//! (2^-64 for a pair) would merge two objects' counts; that can keep an object pinned,
//! never unpin one still listed, except by skipping the descent into a page first met
//! under the other's key, which at that probability is not a practical concern.

use std::collections::HashMap;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use sha2::{Digest, Sha256};

use crate::fs::data::pages::PageCache;
use crate::fs::error::{FsError, FsResult};
use crate::fs::store::ContentStore;

/// Pages fetched at once while counting a tree for the first time.
const FETCHES_AT_ONCE: usize = 8;

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
/// else the node. Pages read from the node are not kept in the cache: a first count of a
/// large tree would push out the pages the mount is using.
#[derive(Clone, Copy)]
pub struct PageSource<'a> {
    pub store: &'a dyn ContentStore,
    pub cache: &'a PageCache,
}

impl PageSource<'_> {
    async fn lists(&self, cid: &str) -> FsResult<crate::format::envelope::Lists> {
        let bytes: Bytes = match self.cache.get(cid) {
            Some(b) => b,
            None => self.store.fetch(cid).await?,
        };
        let (_, lists) = crate::format::envelope::public(&bytes).map_err(|e| {
            FsError::Store(crate::fs::store::StoreError::permanent(format!(
                "tree node {cid}: {e}"
            )))
        })?;
        Ok(lists)
    }
}

/// The counts for one published root.
#[derive(Debug, Clone, Default)]
pub struct GraphIndex {
    root: String,
    refs: HashMap<Key, u32>,
}

impl GraphIndex {
    /// Counts every object reachable from `root` (fetching each of its pages once).
    pub async fn count(root: &str, pages: PageSource<'_>) -> FsResult<GraphIndex> {
        let mut index = GraphIndex {
            root: root.to_owned(),
            refs: HashMap::new(),
        };
        index.add_tree(root, pages).await?;
        Ok(index)
    }

    /// The root these counts are of.
    pub fn root(&self) -> &str {
        &self.root
    }

    /// Distinct objects counted.
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Whether the counted root reaches `cid`.
    pub fn holds(&self, cid: &str) -> bool {
        self.refs.contains_key(&key(cid))
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
        self.drop_tree(&old, pages).await
    }

    fn add(&mut self, cid: &str) -> bool {
        let n = self.refs.entry(key(cid)).or_insert(0);
        *n = n.saturating_add(1);
        *n == 1
    }

    /// Takes one reference; `true` when it was the last.
    fn take(&mut self, cid: &str) -> FsResult<bool> {
        let k = key(cid);
        match self.refs.get_mut(&k) {
            Some(n) if *n > 1 => {
                *n -= 1;
                Ok(false)
            }
            Some(_) => {
                self.refs.remove(&k);
                Ok(true)
            }
            None => Err(FsError::Store(crate::fs::store::StoreError::permanent(
                format!("graph counts: {cid} is not counted"),
            ))),
        }
    }

    /// One reference to tree node `root`, and, for each node met for the first time, one
    /// to everything it lists.
    async fn add_tree(&mut self, root: &str, pages: PageSource<'_>) -> FsResult<()> {
        let mut next = Vec::new();
        if self.add(root) {
            next.push(root.to_owned());
        }
        while !next.is_empty() {
            let mut reading: FuturesUnordered<_> = FuturesUnordered::new();
            let batch: Vec<String> = next.split_off(next.len().saturating_sub(FETCHES_AT_ONCE));
            for cid in batch {
                reading.push(async move { pages.lists(&cid).await });
            }
            while let Some(lists) = reading.next().await {
                let lists = lists?;
                for node in lists.nodes {
                    if self.add(&node) {
                        next.push(node);
                    }
                }
                for data in &lists.data {
                    self.add(data);
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
            next.push(root.to_owned());
        }
        while let Some(node) = next.pop() {
            let lists = pages.lists(&node).await?;
            dropped.push(node);
            for child in lists.nodes {
                if self.take(&child)? {
                    next.push(child);
                }
            }
            for data in lists.data {
                if self.take(&data)? {
                    dropped.push(data);
                }
            }
        }
        Ok(dropped)
    }
}

#[cfg(test)]
mod tests;
