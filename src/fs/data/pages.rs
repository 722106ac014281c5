//! Directories on the node as format v2 writes them (docs/FORMAT.md §3–§5): a directory is
//! a tree of `pxfs/dir/2` pages, the sNFT root adds a `pxfs/root/2` node on top. This
//! module turns the tree's view of a directory into pages and back; the page codec and the
//! paging rules are `crate::format`'s.
//!
//! Writing is a pure computation: pages are built in memory with the CIDs the node will
//! give them (every object of at most 262,144 bytes is one raw block, §1.1), and only the
//! pages the directory did not have before are added. A page too large to know its CID
//! beforehand (an entry with large xattrs) is added first and the build is done again.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::format::v1::manifest as v1;
use crate::format::{self, Entry, PageStore, TreeCrypto, page::Page, root::Root};
use crate::fs::error::{FsError, FsResult};
use crate::fs::store::{ChunkTable, ContentStore};

/// The objects a committed directory is stored as: the CID its parent (or the usage
/// document, for the sNFT root) refers to, and every object of the directory with its
/// stored size (the root node first, then the pages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirObjects {
    pub top: String,
    pub objects: Arc<[(String, u64)]>,
    /// The directory's own page table (for the sNFT root, the one below its root node);
    /// `None` for a v1 manifest.
    pub table: Option<Table>,
}

/// A directory's page table: its top page and every page with its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub top: String,
    pub pages: Arc<[(String, u64)]>,
}

/// What a commit writes for one directory: all its entries, or the entries that changed
/// since its table was written (`None`: the name is gone).
#[derive(Debug, Clone)]
pub enum DirContents {
    All(Vec<Entry>),
    Edits {
        table: Table,
        edits: BTreeMap<Vec<u8>, Option<Entry>>,
    },
}

/// Pages recently written or read, by CID, so an update in place of a large directory
/// finds the pages on its paths without asking the node. Bounded; the oldest go first.
#[derive(Debug, Default)]
pub struct PageCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    pages: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

/// What the page cache holds at most.
const PAGE_CACHE_BYTES: usize = 32 << 20;

impl PageCache {
    pub fn get(&self, cid: &str) -> Option<Bytes> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.pages.get(cid).cloned()
    }

    /// Let every page go, as a long-running mount's bounded cache does in time.
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        *inner = CacheInner::default();
    }

    pub fn insert(&self, cid: &str, bytes: &Bytes) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.pages.contains_key(cid) {
            return;
        }
        inner.bytes += bytes.len();
        inner.pages.insert(cid.to_owned(), bytes.clone());
        inner.order.push_back(cid.to_owned());
        while inner.bytes > PAGE_CACHE_BYTES {
            let Some(old) = inner.order.pop_front() else {
                break;
            };
            if let Some(b) = inner.pages.remove(&old) {
                inner.bytes -= b.len();
            }
        }
    }
}

/// What a commit added to the node (its tree objects; not the usage document).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Added {
    pub objects: u64,
    pub bytes: u64,
}

impl Added {
    pub(super) fn one(&mut self, bytes: usize) {
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
    /// The chunk tables of its chunked files (and of the link groups' files, at the root).
    pub tables: ChunkTables,
    /// The sNFT root of a format-3 tree: `Some`, with the top of its history table if
    /// versions are kept (docs/FORMAT.md §14.1).
    pub v3_history: Option<Option<String>>,
}

/// The one page of an empty directory and its CID: known without the node.
fn empty_page(store: &dyn ContentStore, crypto: &TreeCrypto) -> Option<(String, Bytes)> {
    let bytes = format::page::encode::<Entry>(&Page::Leaf(Vec::new()), crypto).ok()?;
    Some((store.object_cid(&bytes)?, bytes.into()))
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
    /// Pages of the directory's previous table, as far as recently seen.
    cache: Option<&'a PageCache>,
    /// A page the build needed that neither it nor the cache has (fetched, then retried).
    missing: Mutex<Option<String>>,
}

impl<'a> Builder<'a> {
    fn new(
        store: &'a dyn ContentStore,
        added_large: &'a HashMap<[u8; 32], String>,
        cache: Option<&'a PageCache>,
    ) -> Self {
        Builder {
            store,
            added_large,
            pages: Vec::new(),
            index: HashMap::new(),
            large: None,
            cache,
            missing: Mutex::new(None),
        }
    }
}

impl PageStore for Builder<'_> {
    fn get(&self, cid: &str) -> format::Result<Vec<u8>> {
        if let Some(i) = self.index.get(cid) {
            return Ok(self.pages[*i].1.to_vec());
        }
        if let Some(b) = self.cache.and_then(|c| c.get(cid)) {
            return Ok(b.to_vec());
        }
        *self.missing.lock().unwrap_or_else(|e| e.into_inner()) = Some(cid.to_owned());
        Err(format::FormatError::Store(format!(
            "{cid} is not a page of this build"
        )))
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

/// What the sNFT root's node is written with besides its directory.
pub struct RootWrite<'a> {
    pub parts: &'a RootParts,
    /// The commit time (docs/FORMAT.md §12.1).
    pub t: i64,
    /// The versions it keeps, sorted by time (§14); empty: no history table.
    pub history: &'a [format::history::Version],
}

/// Writes a directory as pages: all its entries, or the changed ones applied to its
/// previous table (the pages on the changed paths come from `cache` or the node); for the
/// sNFT root (`root`) also the link-group table, the history table and the root node over
/// them. Sends to the node (through `outbox`) only the objects not in its `have` (the
/// directory's previous objects, and what this commit added already), and records what it
/// added in its `have` and `added`.
/// The sNFT root's objects are its root node, then the pages of its link-group and history
/// tables, then its directory's.
pub async fn write_dir(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    contents: &DirContents,
    root: Option<&RootWrite<'_>>,
    outbox: &mut super::outbox::Outbox,
) -> FsResult<DirObjects> {
    let mut added_large: HashMap<[u8; 32], String> = HashMap::new();
    loop {
        let mut b = Builder::new(store, &added_large, Some(cache));
        // The table's top, the pages that left it, and how many of `b.pages` are its own.
        let built = (|| -> format::Result<(String, String, Option<Vec<String>>, usize)> {
            let (top, removed) = match contents {
                DirContents::All(entries) => (
                    format::prolly::build(&mut b, crypto, entries.clone())?,
                    None,
                ),
                DirContents::Edits { table, edits } => {
                    let u =
                        format::prolly::update_tracked(&mut b, crypto, &table.top, edits.clone())?;
                    (u.top, Some(u.removed))
                }
            };
            let own = b.pages.len();
            let Some(w) = root else {
                return Ok((top.clone(), top, removed, own));
            };
            let parts = w.parts;
            let inodes = match parts.groups.is_empty() {
                true => None,
                false => Some(format::prolly::build(&mut b, crypto, parts.groups.clone())?),
            };
            // Built whole: its pages are a function of its records (§5), so the pages an
            // update would keep have the same CIDs and are not added again (`have`).
            let history = match w.history.is_empty() {
                true => None,
                false => Some(format::prolly::build(&mut b, crypto, w.history.to_vec())?),
            };
            // Format 3 (docs/FORMAT.md §12.1): the root carries its commit time.
            let node = format::root::RootV3 {
                root: Root {
                    attrs: parts.attrs,
                    xattrs: parts.xattrs.clone(),
                    dir: top.clone(),
                    inodes,
                },
                t: w.t,
                history,
            }
            .encode(crypto)?;
            Ok((b.put(node)?, top, removed, own))
        })();
        let (top, table_top, removed, own) = match built {
            Ok(t) => t,
            Err(e) => {
                if let Some(bytes) = b.large.take() {
                    let digest: [u8; 32] = Sha256::digest(&bytes).into();
                    outbox.added.one(bytes.len());
                    let cid = store.add_manifest(bytes).await?;
                    outbox.have.insert(cid.clone());
                    added_large.insert(digest, cid);
                    continue;
                }
                let missing = b.missing.lock().unwrap_or_else(|e| e.into_inner()).take();
                if let Some(cid) = missing {
                    let bytes = store.fetch(&cid).await?;
                    cache.insert(&cid, &bytes);
                    continue;
                }
                return Err(format_error("cannot write a directory", e));
            }
        };
        // The table's pages: all this build made, or the old ones updated.
        let table_pages: Vec<(String, u64)> = match (contents, &removed) {
            (DirContents::Edits { table, .. }, Some(removed)) => {
                let removed: HashSet<&str> = removed.iter().map(String::as_str).collect();
                let mut seen: HashSet<&str> = HashSet::new();
                let mut pages = Vec::with_capacity(table.pages.len() + own);
                for (cid, size) in b.pages[..own]
                    .iter()
                    .map(|(c, bytes)| (c, bytes.len() as u64))
                    .chain(table.pages.iter().map(|(c, s)| (c, *s)))
                {
                    if !removed.contains(cid.as_str()) && seen.insert(cid.as_str()) {
                        pages.push((cid.clone(), size));
                    }
                }
                pages
            }
            _ => b.pages[..own]
                .iter()
                .map(|(c, bytes)| (c.clone(), bytes.len() as u64))
                .collect(),
        };
        let mut objects: Vec<(String, u64)> = Vec::with_capacity(b.pages.len() + 1);
        let new: HashMap<&str, &Bytes> = b.pages.iter().map(|(c, b)| (c.as_str(), b)).collect();
        // The root node first (it is what the usage document names), then the pages.
        if root.is_some() {
            objects.push((
                top.clone(),
                new.get(top.as_str()).map_or(0, |b| b.len()) as u64,
            ));
            objects.extend(
                b.pages[own..]
                    .iter()
                    .filter(|(c, _)| *c != top)
                    .map(|(c, bytes)| (c.clone(), bytes.len() as u64)),
            );
        }
        objects.extend(table_pages.iter().cloned());
        if root.is_none() {
            // The table's top first.
            if let Some(i) = objects.iter().position(|(c, _)| *c == top) {
                objects.swap(0, i);
            }
        }
        for (cid, _) in &objects {
            let Some(bytes) = new.get(cid.as_str()) else {
                continue; // a page of the previous table
            };
            if outbox.have.contains(cid) {
                continue;
            }
            outbox.added.one(bytes.len());
            outbox.push(cid.clone(), (*bytes).clone());
            cache.insert(cid, bytes);
            outbox.have.insert(cid.clone());
        }
        return Ok(DirObjects {
            top,
            objects: objects.into(),
            table: Some(Table {
                top: table_top,
                pages: table_pages.into(),
            }),
        });
    }
}

/// The top CID a full build of `entries` gives, and its pages' CIDs (nothing is added):
/// what an update in place must equal (checked in debug builds).
pub fn full_build(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    entries: Vec<Entry>,
) -> Option<(String, Vec<String>)> {
    let none = HashMap::new();
    let mut b = Builder::new(store, &none, None);
    let top = format::prolly::build(&mut b, crypto, entries).ok()?;
    Some((top, b.pages.into_iter().map(|(c, _)| c).collect()))
}

/// What looking up one name in a directory's stored table found.
#[derive(Debug)]
pub enum Looked {
    Found(Entry),
    Absent,
    /// The directory is a v1 manifest, not a page table: it is read whole.
    NotPaged,
}

/// A page store over the pages a lookup has fetched so far and the page cache; a page
/// neither holds is recorded as missing (the caller fetches it and descends again).
struct Descent<'a> {
    cache: &'a PageCache,
    fetched: HashMap<String, Bytes>,
    missing: Mutex<Option<String>>,
}

impl PageStore for Descent<'_> {
    fn get(&self, cid: &str) -> format::Result<Vec<u8>> {
        if let Some(b) = self
            .fetched
            .get(cid)
            .cloned()
            .or_else(|| self.cache.get(cid))
        {
            return Ok(b.to_vec());
        }
        *self.missing.lock().unwrap_or_else(|e| e.into_inner()) = Some(cid.to_owned());
        Err(format::FormatError::Store(format!(
            "{cid} is not fetched yet"
        )))
    }

    fn put(&mut self, _bytes: Vec<u8>) -> format::Result<String> {
        Err(format::FormatError::Store("a lookup writes nothing".into()))
    }
}

/// Object `cid` from the page cache, else fetched from the node and kept there: pages are
/// named by their content, so a page this mount wrote or read before reads again without
/// the node (a directory unloaded while the node is down lists again).
pub async fn page(store: &dyn ContentStore, cache: &PageCache, cid: &str) -> FsResult<Bytes> {
    if let Some(b) = cache.get(cid) {
        return Ok(b);
    }
    let b = store.fetch(cid).await?;
    cache.insert(cid, &b);
    Ok(b)
}

/// The entry `name` of the directory whose page table's top page is `top`, fetching only
/// the pages on the path to it (one per level of the table, docs/FORMAT.md §5) that the
/// page cache does not hold: a name in a directory of a million entries costs a few
/// fetches, not the whole directory. Each descent starts again from the top over the
/// pages fetched so far, so the fetches are at most the table's depth.
pub async fn lookup_entry(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    top: &str,
    name: &[u8],
) -> FsResult<Looked> {
    let mut descent = Descent {
        cache,
        fetched: HashMap::new(),
        missing: Mutex::new(None),
    };
    let first = match cache.get(top) {
        Some(b) => b,
        None => {
            let b = store.fetch(top).await?;
            cache.insert(top, &b);
            descent.fetched.insert(top.to_owned(), b.clone());
            b
        }
    };
    if format::schema_of(&first).as_deref() == Some(crate::format::v1::manifest::SCHEMA)
        && !crypto.is_sealed()
    {
        return Ok(Looked::NotPaged);
    }
    loop {
        let looked = format::prolly::lookup::<Entry>(&mut descent, crypto, top, name);
        let missing = descent
            .missing
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match (looked, missing) {
            (Ok(Some(e)), _) => return Ok(Looked::Found(e)),
            (Ok(None), _) => return Ok(Looked::Absent),
            (Err(_), Some(cid)) if !descent.fetched.contains_key(&cid) => {
                let bytes = store.fetch(&cid).await?;
                cache.insert(&cid, &bytes);
                descent.fetched.insert(cid, bytes);
            }
            (Err(e), _) => return Err(format_error(&format!("directory {top}"), e)),
        }
    }
}

/// A chunked file's table top and size (docs/FORMAT.md §13), if `kind` is one.
pub fn chunked_content(kind: &format::EntryKind) -> Option<(String, u64)> {
    match kind {
        format::EntryKind::Inode(format::Inode {
            kind:
                format::InodeKind::File {
                    size,
                    content: Some(format::FileContent::Chunks(top)),
                },
            ..
        }) => Some((top.clone(), *size)),
        _ => None,
    }
}

/// The chunk tables of a directory's chunked files, keyed by (top, size), a few read at a
/// time. A table that does not decode, or names a chunk past its file's end (§13.2), is
/// kept as invalid: that file's reads fail, the rest of the directory reads.
pub async fn read_chunk_tables(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    files: HashSet<(String, u64)>,
) -> FsResult<ChunkTables> {
    let wanted = files;
    let mut out = ChunkTables::new();
    let mut reads = futures::stream::iter(wanted)
        .map(|(top, size)| async move {
            let table = read_chunk_table(store, crypto, cache, &top, size).await;
            (top, size, table)
        })
        .buffer_unordered(TABLE_READS);
    while let Some((top, size, table)) = reads.next().await {
        out.insert((top, size), Arc::new(table?));
    }
    Ok(out)
}

/// Chunk tables read at once while a directory loads.
const TABLE_READS: usize = 16;

/// Chunk tables by (top CID, file size).
pub type ChunkTables = HashMap<(String, u64), Arc<ChunkTable>>;

pub async fn read_chunk_table(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    top: &str,
    size: u64,
) -> FsResult<ChunkTable> {
    let first = page(store, cache, top).await?;
    let mut pages = vec![(top.to_owned(), first.len() as u64)];
    let read = read_table::<format::chunks::ChunkRef>(
        store,
        crypto,
        cache,
        vec![top.to_owned()],
        vec![first],
        &mut pages,
    )
    .await;
    let mut table = ChunkTable {
        pages,
        ..ChunkTable::default()
    };
    match read {
        Ok(chunks) => {
            let count = format::chunks::chunk_count(size);
            if let Some(c) = chunks.iter().find(|c| c.index() >= count) {
                table.invalid = Some(format!(
                    "chunk table {top} names chunk {} of a {size}-byte file",
                    c.index()
                ));
            }
            table.chunks = chunks.into_iter().map(|c| (c.index(), c)).collect();
        }
        // A transient fault reads again later; a page that does not decode never will.
        Err(e @ FsError::Store(_)) => return Err(e),
        Err(e) => table.invalid = Some(format!("chunk table {top}: {e}")),
    }
    Ok(table)
}

/// Every record of the paged table whose top page is `level[0]` (already fetched as
/// `fetched[0]`), in key order; each page's CID and size go to `objects`.
async fn read_table<R: format::Record>(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    mut level: Vec<String>,
    mut fetched: Vec<Bytes>,
    objects: &mut Vec<(String, u64)>,
) -> FsResult<Vec<R>> {
    let mut records = Vec::new();
    // The level every page of this round must declare: the top's, then one less per round,
    // so the descent ends after at most the top's level + 1 rounds whatever the node serves
    // (a branch page listed as its own child is refused, never read again and again).
    let mut expected: Option<u8> = None;
    loop {
        let mut next = Vec::new();
        for (cid, bytes) in level.iter().zip(&fetched) {
            let page = format::page::decode::<R>(bytes, crypto)
                .map_err(|e| format_error(&format!("page {cid}"), e))?;
            let declared = match &page {
                Page::Leaf(_) => 0,
                Page::Branch(b) => b.level,
            };
            if *expected.get_or_insert(declared) != declared
                || matches!(&page, Page::Branch(b) if b.level == 0)
            {
                return Err(FsError::Journal(format!(
                    "page {cid}: declares level {declared} where the page table needs level {}",
                    expected.unwrap_or(0)
                )));
            }
            match page {
                Page::Leaf(r) => records.extend(r),
                Page::Branch(b) => next.extend(b.children.into_iter().map(|c| c.node)),
            }
        }
        expected = expected.map(|l| l.saturating_sub(1));
        if next.is_empty() {
            return Ok(records);
        }
        fetched = futures::future::try_join_all(next.iter().map(|c| page(store, cache, c))).await?;
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
    cache: &PageCache,
    top: &str,
    is_root: bool,
) -> FsResult<ReadDir> {
    // Computed once: it also tells which subdirectories are known empty (`empty_dir`).
    let empty = empty_page(store, crypto);
    let first = match &empty {
        Some((cid, bytes)) if cid == top => bytes.clone(),
        _ => page(store, cache, top).await?,
    };
    let mut objects = vec![(top.to_owned(), first.len() as u64)];
    let schema = format::schema_of(&first);
    if schema.as_deref() == Some(v1::SCHEMA) && !crypto.is_sealed() {
        // (v1 subdirectories are read as they are loaded: the tree is rewritten whole.)
        return v1::Manifest::parse(&first)
            .map_err(|e| FsError::Journal(format!("manifest {top}: {e}")))
            .map(|m| read_v1(m, objects.into()));
    }
    let mut read_only = None;
    let mut root = None;
    let mut v3_history = None;
    let mut table_from = 0;
    let mut level = vec![top.to_owned()];
    let mut fetched = vec![first];
    if is_root {
        let r = Root::decode_any(&fetched[0], crypto)
            .map_err(|e| format_error(&format!("root node {top}"), e))?;
        if r.read_only {
            read_only = Some("its root node has members this pxfs does not know".to_owned());
        }
        v3_history = r.v3.as_ref().map(|(_, history)| history.clone());
        let mut groups = Vec::new();
        if let Some(table) = &r.root.inodes {
            let bytes = page(store, cache, table).await?;
            objects.push((table.clone(), bytes.len() as u64));
            groups = read_table::<format::InodeRecord>(
                store,
                crypto,
                cache,
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
        table_from = objects.len();
        level = vec![r.root.dir.clone()];
        fetched = vec![page(store, cache, &r.root.dir).await?];
        objects.push((r.root.dir, fetched[0].len() as u64));
    }
    let table_top = level[0].clone();
    let entries: Vec<Entry> =
        read_table(store, crypto, cache, level, fetched, &mut objects).await?;
    let chunked = entries
        .iter()
        .map(|e| &e.kind)
        .chain(root.iter().flat_map(|r| r.groups.iter().map(|g| &g.kind)))
        .filter_map(chunked_content)
        .collect();
    let tables = read_chunk_tables(store, crypto, cache, chunked).await?;
    // A table an earlier paging rule shaped reads as it is, but is not updated in place
    // (docs/FORMAT.md §5): without a table, its next commit writes it whole.
    let table = full_build(store, crypto, entries.clone())
        .filter(|(t, _)| *t == table_top)
        .map(|_| Table {
            top: table_top,
            pages: objects[table_from..].into(),
        });
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
            table,
        },
        read_only,
        v1: false,
        empty_dir: empty.map(|(cid, bytes)| (cid, bytes.len() as u64)),
        tables,
        v3_history,
    })
}

/// The records of a link-group table whose top is `top` (docs/FORMAT.md §4.4), with the
/// chunk tables of their chunked files: a kept version's (`.snapshots/`), read with its
/// root directory.
pub async fn read_groups(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    top: &str,
) -> FsResult<(Vec<format::InodeRecord>, ChunkTables)> {
    let first = page(store, cache, top).await?;
    let mut pages = Vec::new();
    let records: Vec<format::InodeRecord> = read_table(
        store,
        crypto,
        cache,
        vec![top.to_owned()],
        vec![first],
        &mut pages,
    )
    .await?;
    let chunked = records
        .iter()
        .filter_map(|r| chunked_content(&r.kind))
        .collect();
    let tables = read_chunk_tables(store, crypto, cache, chunked).await?;
    Ok((records, tables))
}

/// The versions a format-3 root's history table keeps (docs/FORMAT.md §14.1), oldest
/// first, and the table's pages with their sizes; `top` is the table's top page.
pub async fn read_history(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    top: &str,
) -> FsResult<(Vec<format::history::Version>, Vec<(String, u64)>)> {
    let first = page(store, cache, top).await?;
    let mut pages = vec![(top.to_owned(), first.len() as u64)];
    let versions = read_table(
        store,
        crypto,
        cache,
        vec![top.to_owned()],
        vec![first],
        &mut pages,
    )
    .await?;
    Ok((versions, pages))
}

/// A v1 manifest (`top`, the only object in `objects`) as the directory the tree loads.
fn read_v1(m: v1::Manifest, objects: Arc<[(String, u64)]>) -> ReadDir {
    let parts = m.into_v2_parts();
    let top = objects.first().map(|(c, _)| c.clone()).unwrap_or_default();
    ReadDir {
        root: parts.self_attrs.map(|(attrs, xattrs)| RootParts {
            attrs,
            xattrs,
            groups: Vec::new(),
        }),
        entries: parts.entries,
        objects: DirObjects {
            top,
            objects,
            table: None,
        },
        read_only: (!parts.unknown.is_empty()).then(|| {
            format!(
                "entries of a kind this pxfs does not know: {:?}",
                parts.unknown
            )
        }),
        v1: true,
        empty_dir: None,
        tables: ChunkTables::new(),
        v3_history: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::page::{Branch, ChildRef};
    use crate::fs::store::MemoryStore;

    /// A node that serves a branch page in place of its child: the table would go on
    /// forever (each round asks for the same child again); the declared levels end it.
    #[test]
    fn a_branch_page_served_as_its_own_child_ends_in_an_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let crypto = TreeCrypto::Plain;
        let child = format::store::raw_cid(b"the child page the node will not serve");
        let top: Page<Entry> = Page::Branch(Branch {
            level: 1,
            count: 1,
            children: vec![ChildRef {
                first: b"a".to_vec(),
                node: child.clone(),
                count: 1,
            }],
        });
        let bytes = Bytes::from(format::page::encode(&top, &crypto).unwrap());
        let top_cid = format::store::raw_cid(&bytes);
        let store = MemoryStore::new();
        store.replace(&top_cid, bytes.clone());
        store.replace(&child, bytes);
        // On its own thread: a descent that never ends never yields to a timer either.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let read = rt.block_on(read_dir(
                &store,
                &crypto,
                &PageCache::default(),
                &top_cid,
                false,
            ));
            let _ = tx.send(read.map(|_| ()));
        });
        let read = rx.recv_timeout(std::time::Duration::from_secs(10));
        let read = read.expect("the descent ends");
        let Err(err) = read else {
            panic!("a table whose child is its parent is refused");
        };
        assert_eq!(err.errno(), libc::EIO, "{err}");
    }
}
