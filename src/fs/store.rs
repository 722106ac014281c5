//! `ContentStore`: exactly what the filesystem core needs from the storage node, and an
//! in-memory implementation the core's tests run against (with a switch that simulates a
//! node outage).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::format::usage::Encryption;
pub use crate::storage::ContentStream;

/// What publishing a usage document did (docs/FORMAT.md §9.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publish {
    /// Published as document `doc`. `checked`: the node replaced exactly the record named,
    /// so the document holds at once; otherwise it holds once the settle window shows it.
    Published { doc: String, checked: bool },
    /// The name no longer held the record named (another writer published since it was
    /// resolved): nothing was published.
    Moved,
}

impl Publish {
    /// The document published, `None` when nothing was.
    pub fn doc(&self) -> Option<&str> {
        match self {
            Publish::Published { doc, .. } => Some(doc),
            Publish::Moved => None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    pub message: String,
    /// Worth retrying: the node was unreachable or answered 5xx.
    pub transient: bool,
}

impl StoreError {
    pub fn transient(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: true,
        }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            transient: false,
        }
    }
}

/// Whether a version's objects are all on the node: a live upload hands its version over
/// once the bytes of its last adds are out, before the node answered them, so that a
/// commit can add its own objects meanwhile; the commit publishes only once every such
/// version it holds is [`Stored::wait`]ed for (issue #34: a round trip less at the end of
/// a large write).
#[derive(Debug, Clone)]
pub struct Stored(tokio::sync::watch::Receiver<Option<Result<(), StoreError>>>);

/// The uploader's side of a [`Stored`]: dropped without telling, the version counts as
/// not stored.
#[derive(Debug)]
pub struct TellStored(tokio::sync::watch::Sender<Option<Result<(), StoreError>>>);

impl Stored {
    pub fn new() -> (TellStored, Stored) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (TellStored(tx), Stored(rx))
    }

    /// Waits until the node answered every add of the version: `Ok` once all stored what
    /// they were asked to, the first failure otherwise.
    pub async fn wait(&self) -> Result<(), StoreError> {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(told) => told.clone().unwrap_or(Ok(())),
            Err(_) => Err(StoreError::permanent(
                "the upload ended without telling whether its version is stored",
            )),
        }
    }

    /// Every one of `all` stored (the first failure otherwise).
    pub async fn all(all: &[Stored]) -> Result<(), StoreError> {
        for s in all {
            s.wait().await?;
        }
        Ok(())
    }
}

impl TellStored {
    pub fn tell(self, result: Result<(), StoreError>) {
        self.0.send_replace(Some(result));
    }
}

/// Content added to the node: one object (the v2 form, docs/FORMAT.md §6.2), or a chunk
/// table (format 3, §13; `cid` is then the table's top page).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub cid: String,
    /// The file's size (plaintext bytes).
    pub size: u64,
    /// The content salt of a sealed version (docs/FORMAT.md §6.2); `None`: stored as written.
    pub salt: Option<crate::format::seal::ContentSalt>,
    /// The chunk table of a chunked version, as read with its directory.
    pub chunks: Option<std::sync::Arc<ChunkTable>>,
}

impl Blob {
    /// Content stored as written.
    pub fn plain(cid: String, size: u64) -> Blob {
        Blob {
            cid,
            size,
            salt: None,
            chunks: None,
        }
    }

    /// A chunked version (docs/FORMAT.md §13): the top of its table, and the table.
    pub fn chunked(top: String, size: u64, table: ChunkTable) -> Blob {
        Blob {
            cid: top,
            size,
            salt: None,
            chunks: Some(std::sync::Arc::new(table)),
        }
    }

    /// A sealed or plaintext one-object version.
    pub fn whole(cid: String, size: u64, salt: Option<crate::format::seal::ContentSalt>) -> Blob {
        Blob {
            cid,
            size,
            salt,
            chunks: None,
        }
    }

    /// Every object the version stores, with its stored size and whether it is metadata
    /// (a table page) rather than content: what usage counts and a superseding commit
    /// unpins (docs/FORMAT.md §7, §15).
    pub fn objects(&self) -> Vec<(String, u64, bool)> {
        match &self.chunks {
            None if self.size == 0 => Vec::new(),
            None => {
                let stored = match self.salt {
                    Some(_) => crate::format::seal::sealed_len(self.size),
                    None => self.size,
                };
                vec![(self.cid.clone(), stored, false)]
            }
            Some(t) => t.objects(self.size),
        }
    }
}

/// A chunked version's table (docs/FORMAT.md §13.2): its stored chunks by index (an index
/// it does not hold is a hole) and the table's own pages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChunkTable {
    pub chunks: std::collections::BTreeMap<u64, crate::format::chunks::ChunkRef>,
    /// The table's pages (CID, bytes), top first.
    pub pages: Vec<(String, u64)>,
    /// Why the table cannot be trusted (it names a chunk past the file's end): reads fail.
    pub invalid: Option<String>,
    /// A digest of each stored chunk's plaintext, for a version this mount wrote in an
    /// encrypted tree: the next version reuses a chunk whose bytes did not change
    /// (`fs::data::chunked::plain_digest`).
    pub plain: std::collections::HashMap<u64, PlainDigest>,
}

/// A digest of a chunk's plaintext, kept only in this process's memory
/// (`fs::data::chunked::plain_digest`).
pub type PlainDigest = [u8; 16];

impl ChunkTable {
    /// The table's pages and its distinct chunks with their stored sizes (a sealed chunk
    /// carries a 16-byte tag, §13.1).
    pub fn objects(&self, size: u64) -> Vec<(String, u64, bool)> {
        let mut seen = std::collections::HashSet::new();
        let mut out: Vec<(String, u64, bool)> = Vec::new();
        for (cid, bytes) in &self.pages {
            if seen.insert(cid.as_str()) {
                out.push((cid.clone(), *bytes, true));
            }
        }
        for (index, c) in &self.chunks {
            let plain = crate::format::chunks::chunk_len(size, *index).unwrap_or(0);
            let tag = if c.salt.is_some() {
                crate::format::seal::TAG as u64
            } else {
                0
            };
            if seen.insert(c.cid.as_str()) {
                out.push((c.cid.clone(), plain + tag, false));
            }
        }
        out
    }
}

/// What a commit publishes for a token; the store adds the chain-side fields (chain id,
/// contract, quota) and the timestamp when it builds the usage document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageRecord {
    pub token_id: u64,
    pub quota: u64,
    pub usage: u64,
    pub files: u64,
    pub root: String,
    pub last_upload: Option<LastUpload>,
    pub seq: u64,
    pub prev: Option<String>,
    /// On a merge commit, the writer's own previous document (docs/FORMAT.md §9).
    #[serde(default)]
    pub merged: Option<String>,
    /// The tree's `encryption` member (docs/FORMAT.md §6.4).
    #[serde(default)]
    pub encryption: Encryption,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastUpload {
    pub path: String,
    pub cid: String,
    pub size: u64,
}

/// A token's last published state, as found under its BTNS name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub doc_cid: String,
    pub root: String,
    pub usage: u64,
    pub files: u64,
    pub seq: u64,
    pub encryption: Encryption,
    /// Its parents (docs/FORMAT.md §9.1): the document it was made on top of, and on a
    /// merge commit the writer's own previous one.
    pub prev: Option<String>,
    pub merged: Option<String>,
}

impl Published {
    /// What `doc`, stored as `cid`, says.
    pub fn of(cid: &str, doc: &crate::format::usage::AnyUsageDoc) -> Published {
        Published {
            doc_cid: cid.to_owned(),
            root: doc.root().to_owned(),
            usage: doc.usage(),
            files: doc.files().unwrap_or(0),
            seq: doc.seq(),
            encryption: doc.encryption(),
            prev: doc.prev().map(str::to_owned),
            merged: doc.merged().map(str::to_owned),
        }
    }

    pub fn of_record(cid: &str, r: &UsageRecord) -> Published {
        Published {
            doc_cid: cid.to_owned(),
            root: r.root.clone(),
            usage: r.usage,
            files: r.files,
            seq: r.seq,
            encryption: r.encryption.clone(),
            prev: r.prev.clone(),
            merged: r.merged.clone(),
        }
    }
}

#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Add (and pin) one staged file, streamed from disk.
    async fn add_file(&self, path: &Path) -> Result<Blob, StoreError>;
    /// Add (and pin) many small staged files in one request; results in input order.
    async fn add_files(&self, paths: &[PathBuf]) -> Result<Vec<Blob>, StoreError>;
    /// Add (and pin) the staged file at `path` while it is still being written: `open`
    /// streams its content from the start and ends when the writer closes it (see
    /// `fs::data::live`). Returns the CID. `seed`: the stream is the staged file's bytes as they
    /// are, which may serve the first reads (not so for sealed content).
    async fn add_stream(
        &self,
        path: &Path,
        open: Arc<ContentStream>,
        seed: bool,
    ) -> Result<String, StoreError>;
    /// Add (and pin) many small in-memory objects in one request (sealed small files);
    /// their CIDs in input order.
    async fn add_objects(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError>;
    /// Add (and pin) a metadata object (a directory page, a root node).
    async fn add_manifest(&self, json: Bytes) -> Result<String, StoreError>;
    /// Add (and pin) several metadata objects (one commit's new pages); their CIDs, in
    /// order. A node that takes many files in one `add` gets one request.
    async fn add_manifests(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        let mut cids = Vec::with_capacity(objects.len());
        for object in objects {
            cids.push(self.add_manifest(object).await?);
        }
        Ok(cids)
    }
    /// The CID `add_manifest` will give `bytes`, when it can be known beforehand.
    fn object_cid(&self, bytes: &[u8]) -> Option<String>;
    /// The whole of a (small) object: a directory manifest.
    async fn fetch(&self, cid: &str) -> Result<Bytes, StoreError>;
    /// Read `len` bytes at `offset` of content `cid` whose total size is `size`.
    async fn read(&self, cid: &str, size: u64, offset: u64, len: u64) -> Result<Bytes, StoreError>;
    /// The whole of a sealed chunk object of `len` bytes, for a reader that authenticates it
    /// itself (AES-GCM under the chunk's own salt and index, docs/FORMAT.md §13.3: only the
    /// bytes the writer sealed open), so the node's answer need not also be hashed against
    /// the CID. The reader hands what opened to [`ContentStore::keep_opened`]. A store
    /// without a cheaper way reads it checked.
    async fn read_sealed(&self, cid: &str, len: u64) -> Result<Bytes, StoreError> {
        self.read(cid, len, 0, len).await
    }
    /// Several chunk objects, each as [`ContentStore::read_sealed`] reads one (unchecked:
    /// the reader opens a sealed chunk, and hashes a plaintext tree's chunk against its
    /// CID), in order as a stream: one request for many, where the store can (its bytes
    /// arrive in the order they are read). It may end early or with an error: the reader
    /// reads the rest one by one. `None`: this store reads them one by one only.
    fn read_sealed_run(
        &self,
        objects: Vec<(String, u64)>,
    ) -> Option<futures::stream::BoxStream<'static, Result<Bytes, StoreError>>> {
        let _ = objects;
        None
    }
    /// A chunk from [`ContentStore::read_sealed`] or a run that opened (or, plain,
    /// matched its CID): worth keeping.
    fn keep_opened(&self, cid: &str, sealed: Bytes) {
        let _ = (cid, sealed);
    }
    async fn unpin(&self, cid: &str) -> Result<(), StoreError>;
    /// Pin an object already on the node again (a new version refers to it once more).
    async fn pin(&self, cid: &str) -> Result<(), StoreError>;
    /// Add the usage document and publish it under the BTNS name `btns` in place of
    /// `replaces`, the document the name was resolved to (`None`: none) (`btns` `None`: the
    /// token has no BTNS key; the document is only added).
    async fn publish_usage(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        replaces: Option<&str>,
    ) -> Result<Publish, StoreError>;
    /// [`ContentStore::publish_usage`] once `pages` (a commit's new tree pages, each named
    /// by the CID computed for it) are on the node: a store that can sends them in the
    /// document's add request, a round trip less per commit over a slow link. A page that
    /// comes back under another CID fails it before anything is published. Publishes only
    /// once every version of `stored` is on the node (their last adds may still be out
    /// while the document's goes), and not at all if one is not.
    async fn publish_usage_with(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        replaces: Option<&str>,
        pages: Vec<(String, Bytes)>,
        stored: &[Stored],
    ) -> Result<Publish, StoreError> {
        if !pages.is_empty() {
            let cids = self
                .add_manifests(pages.iter().map(|(_, b)| b.clone()).collect())
                .await?;
            check_added(&pages, &cids).map_err(StoreError::permanent)?;
        }
        Stored::all(stored).await?;
        self.publish_usage(btns, record, replaces).await
    }
    /// The state last published under `btns`, `None` when nothing was ever published.
    async fn resolve(&self, btns: &str) -> Result<Option<Published>, StoreError>;
    /// Whether the node checks publications (docs/FORMAT.md §9.3): a record there is
    /// replaced only by a publication that names it, so what it shows holds.
    async fn checks_publications(&self) -> bool {
        false
    }
    /// Learn now what the first publication under `btns` needs (whether the node checks
    /// publications, the key's name there), so the first commit does not wait for it.
    async fn prepare_publishing(&self, _btns: &str) {}
    /// The usage document `cid` (published before under some name), for its ancestry
    /// (docs/FORMAT.md §9.1).
    async fn usage_doc(&self, cid: &str) -> Result<Published, StoreError> {
        let bytes = self.fetch(cid).await?;
        let doc = crate::format::usage::parse_any(&bytes)
            .map_err(|e| StoreError::permanent(format!("usage document {cid}: {e}")))?;
        Ok(Published::of(cid, &doc))
    }
    /// This store for sNFT `token` alone, when sNFTs are stored apart (PollinationX's
    /// hosted nodes: each sNFT has its own endpoint and login); `None`: this store serves
    /// every sNFT.
    fn for_token(&self, token: u64) -> Option<Arc<dyn ContentStore>> {
        let _ = token;
        None
    }
    /// Free about `bytes` of the read cache's disk space (the cache disk is short of room
    /// for new data); returns what was freed. A store without a disk cache frees nothing.
    fn give_back_cache(&self, bytes: u64) -> u64 {
        let _ = bytes;
        0
    }
}

mod memory;
pub use memory::{MemoryStore, RunAnswer};

/// The node answered an add of `pages` with `cids`: each must have come back under the CID
/// computed for it here, or the tree would name objects the node does not hold.
pub fn check_added(pages: &[(String, Bytes)], cids: &[String]) -> Result<(), String> {
    if cids.len() != pages.len() {
        return Err(format!(
            "the node answered an add of {} pages with {} CIDs",
            pages.len(),
            cids.len()
        ));
    }
    match pages.iter().zip(cids).find(|((cid, _), got)| *got != cid) {
        Some(((cid, _), got)) => Err(format!(
            "the node stored a page as {got}, expected {cid}: it does not add objects as \
             docs/FORMAT.md §1.1 says (cid-version=1, raw-leaves=true)"
        )),
        None => Ok(()),
    }
}
