//! Directories on the node as format v2 writes them (docs/FORMAT.md §3–§5): a directory is
//! a tree of `pxfs/dir/2` pages, the sNFT root adds a `pxfs/root/2` node on top. This
//! module turns the tree's view of a directory into pages and back; the page codec and the
//! paging rules are `crate::format`'s.
//!
//! Writing is a pure computation: pages are built in memory with the CIDs the node will
//! give them (every object of at most 262,144 bytes is one raw block, §1.1), and only the
//! pages the directory did not have before are added. A page too large to know its CID
//! beforehand (an entry with large xattrs) is added first and the build is done again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::error::{FsError, FsResult};
use super::store::ContentStore;
use crate::format::{self, Entry, PageStore, TreeCrypto, page::Page, root::Root};

/// The objects a committed directory is stored as: the CID its parent (or the usage
/// document, for the sNFT root) refers to, and every object of the directory with its
/// stored size (the root node first, then the pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirObjects {
    pub top: String,
    pub objects: Arc<[(String, u64)]>,
}

/// What a commit added to the node (its tree objects; not the usage document).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    pub objects: u64,
    pub bytes: u64,
}

impl Added {
    fn one(&mut self, bytes: usize) {
        self.objects += 1;
        self.bytes += bytes as u64;
    }
}

/// What a directory's objects hold, read back.
#[derive(Debug)]
pub struct ReadDir {
    /// The sNFT root's own attributes and link groups (from its root node, or a v1
    /// manifest's `self`).
    pub root: Option<RootParts>,
    pub entries: Vec<Entry>,
    pub objects: DirObjects,
    /// Why the sNFT must be served read-only (unknown kinds or members), if it must.
    pub read_only: Option<String>,
    /// The directory was stored in format v1: the next commit rewrites the tree as v2.
    pub v1: bool,
    /// The CID and size of an empty directory's page: a subdirectory stored as that is
    /// known whole without reading it (so usage counts it once, docs/FORMAT.md §7).
    pub empty_dir: Option<(String, u64)>,
}

/// The one page of an empty directory, and the CID the store gives it.
pub fn empty_dir(store: &dyn ContentStore, crypto: &TreeCrypto) -> Option<(String, u64)> {
    let bytes = format::page::encode::<Entry>(&Page::Leaf(Vec::new()), crypto).ok()?;
    Some((store.object_cid(&bytes)?, bytes.len() as u64))
}

/// A page store over what a build produces: CIDs are computed as the node will compute
/// them; pages too large for that are reported back (the caller adds them and retries).
struct Builder<'a> {
    store: &'a dyn ContentStore,
    /// CIDs of large pages already added, by the SHA-256 of their bytes.
    added_large: &'a HashMap<[u8; 32], String>,
    pages: Vec<(String, Bytes)>,
    /// Index of `pages` by CID.
    index: HashMap<String, usize>,
    large: Option<Bytes>,
}

impl PageStore for Builder<'_> {
    fn get(&self, cid: &str) -> format::Result<Vec<u8>> {
        self.index
            .get(cid)
            .map(|i| self.pages[*i].1.to_vec())
            .ok_or_else(|| format::FormatError::Store(format!("{cid} is not a page of this build")))
    }

    fn put(&mut self, bytes: Vec<u8>) -> format::Result<String> {
        let cid = match self.store.object_cid(&bytes) {
            Some(c) => c,
            None => {
                let digest: [u8; 32] = Sha256::digest(&bytes).into();
                match self.added_large.get(&digest) {
                    Some(c) => c.clone(),
                    None => {
                        self.large = Some(Bytes::from(bytes));
                        return Err(format::FormatError::Store("large page".into()));
                    }
                }
            }
        };
        if !self.index.contains_key(&cid) {
            self.index.insert(cid.clone(), self.pages.len());
            self.pages.push((cid.clone(), Bytes::from(bytes)));
        }
        Ok(cid)
    }
}

fn format_error(what: &str, e: format::FormatError) -> FsError {
    FsError::Journal(format!("{what}: {e}"))
}

/// What the sNFT root's node holds besides its directory (docs/FORMAT.md §3.2, §4.4): the
/// sNFT directory's own attributes and the link-group table's records.
#[derive(Debug, Clone)]
pub struct RootParts {
    pub attrs: format::Attrs,
    pub xattrs: Vec<format::Xattr>,
    /// Sorted by id, ids unique.
    pub groups: Vec<format::InodeRecord>,
}

/// Writes directory `entries` (sorted by name) as pages, and for the sNFT root (`root`)
/// the link-group table and the root node over both. Adds to the node only the objects not
/// in `have` (the directory's previous objects, and what this commit added already), and
/// records what it added in `have` and `added`.
pub async fn write_dir(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    entries: Vec<Entry>,
    root: Option<RootParts>,
    have: &mut HashSet<String>,
    added: &mut Added,
) -> FsResult<DirObjects> {
    let mut added_large: HashMap<[u8; 32], String> = HashMap::new();
    loop {
        let mut b = Builder {
            store,
            added_large: &added_large,
            pages: Vec::new(),
            index: HashMap::new(),
            large: None,
        };
        let built = format::prolly::build(&mut b, crypto, entries.clone()).and_then(|top| {
            let Some(parts) = &root else {
                return Ok(top);
            };
            let inodes = match parts.groups.is_empty() {
                true => None,
                false => Some(format::prolly::build(&mut b, crypto, parts.groups.clone())?),
            };
            let node = Root {
                attrs: parts.attrs,
                xattrs: parts.xattrs.clone(),
                dir: top,
                inodes,
            }
            .encode(crypto);
            b.put(node)
        });
        let top = match built {
            Ok(top) => top,
            Err(e) => match b.large.take() {
                Some(bytes) => {
                    let digest: [u8; 32] = Sha256::digest(&bytes).into();
                    added.one(bytes.len());
                    let cid = store.add_manifest(bytes).await?;
                    have.insert(cid.clone());
                    added_large.insert(digest, cid);
                    continue;
                }
                None => return Err(format_error("cannot write a directory", e)),
            },
        };
        let mut objects: Vec<(String, u64)> = Vec::with_capacity(b.pages.len());
        // The root node first (it is what the usage document names), then the pages.
        b.pages.sort_by_key(|(c, _)| *c != top);
        for (cid, bytes) in b.pages {
            objects.push((cid.clone(), bytes.len() as u64));
            if have.contains(&cid) {
                continue;
            }
            added.one(bytes.len());
            let got = store.add_manifest(bytes).await?;
            if got != cid {
                return Err(FsError::Journal(format!(
                    "the node stored a page as {got}, expected {cid}: it does not add objects \
                     as docs/FORMAT.md §1.1 says (cid-version=1, raw-leaves=true)"
                )));
            }
            have.insert(cid);
        }
        return Ok(DirObjects {
            top,
            objects: objects.into(),
        });
    }
}

/// Every record of the paged table whose top page is `level[0]` (already fetched as
/// `fetched[0]`), in key order; each page's CID and size go to `objects`.
async fn read_table<R: format::Record>(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    mut level: Vec<String>,
    mut fetched: Vec<Bytes>,
    objects: &mut Vec<(String, u64)>,
) -> FsResult<Vec<R>> {
    let mut records = Vec::new();
    loop {
        let mut next = Vec::new();
        for (cid, bytes) in level.iter().zip(&fetched) {
            match format::page::decode::<R>(bytes, crypto)
                .map_err(|e| format_error(&format!("page {cid}"), e))?
            {
                Page::Leaf(r) => records.extend(r),
                Page::Branch(b) => next.extend(b.children.into_iter().map(|c| c.node)),
            }
        }
        if next.is_empty() {
            return Ok(records);
        }
        fetched = futures::future::try_join_all(next.iter().map(|c| store.fetch(c))).await?;
        for (cid, bytes) in next.iter().zip(&fetched) {
            objects.push((cid.clone(), bytes.len() as u64));
        }
        level = next;
    }
}

/// Reads the directory whose top object is `top`: a v2 page tree, a v2 root node (the sNFT
/// root, `is_root`) over one and over the link-group table, or a v1 manifest. Pages of one
/// level are fetched together.
pub async fn read_dir(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    top: &str,
    is_root: bool,
) -> FsResult<ReadDir> {
    let first = store.fetch(top).await?;
    let mut objects = vec![(top.to_owned(), first.len() as u64)];
    let schema = format::schema_of(&first);
    if schema.as_deref() == Some(super::manifest::SCHEMA) && !crypto.is_sealed() {
        // (v1 subdirectories are read as they are loaded: the tree is rewritten whole.)
        return super::manifest::Manifest::parse(&first)
            .map_err(|e| FsError::Journal(format!("manifest {top}: {e}")))
            .map(|m| m.into_v2(objects.into()));
    }
    let mut read_only = None;
    let mut root = None;
    let mut level = vec![top.to_owned()];
    let mut fetched = vec![first];
    if is_root {
        let r = Root::decode(&fetched[0], crypto)
            .map_err(|e| format_error(&format!("root node {top}"), e))?;
        if r.read_only {
            read_only = Some("its root node has members this pxfs does not know".to_owned());
        }
        let mut groups = Vec::new();
        if let Some(table) = &r.root.inodes {
            let bytes = store.fetch(table).await?;
            objects.push((table.clone(), bytes.len() as u64));
            groups = read_table::<format::InodeRecord>(
                store,
                crypto,
                vec![table.clone()],
                vec![bytes],
                &mut objects,
            )
            .await?;
        }
        root = Some(RootParts {
            attrs: r.root.attrs,
            xattrs: r.root.xattrs,
            groups,
        });
        level = vec![r.root.dir.clone()];
        fetched = vec![store.fetch(&r.root.dir).await?];
        objects.push((r.root.dir, fetched[0].len() as u64));
    }
    let entries: Vec<Entry> = read_table(store, crypto, level, fetched, &mut objects).await?;
    if entries
        .iter()
        .any(|e| matches!(e.kind, format::EntryKind::Unknown(_)))
        || root.as_ref().is_some_and(|r| {
            r.groups
                .iter()
                .any(|g| !matches!(g.kind, format::EntryKind::Inode(_)))
        })
    {
        read_only
            .get_or_insert_with(|| "it holds entries of a kind this pxfs does not know".to_owned());
    }
    Ok(ReadDir {
        root,
        entries,
        objects: DirObjects {
            top: top.to_owned(),
            objects: objects.into(),
        },
        read_only,
        v1: false,
        empty_dir: empty_dir(store, crypto),
    })
}
