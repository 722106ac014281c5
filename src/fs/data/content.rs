//! A file version's content on the node, as its token stores it: as written (a plaintext
//! tree) or sealed as a STREAM of AES-256-GCM chunks under a fresh content salt
//! (docs/FORMAT.md §6.2). Uploads and reads of content go through here, so the rest of the
//! core sees plaintext and [`Blob`]s only.
//!
//! A sealed chunk of 262,144 bytes is exactly one leaf of the object the node stores, and
//! the read cache fetches whole leaves: a read opens only the chunks it touches.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::StreamExt;
use futures::future::{BoxFuture, Shared};
use futures::stream::BoxStream;

use super::read_runs::Run;
use crate::format::chunks;
use crate::format::seal::{self, ContentSalt, PLAIN_CHUNK, SEALED_CHUNK, VersionKey};
use crate::format::{TreeCrypto, TreeKeys};
use crate::fs::store::{Blob, ContentStore, ContentStream, StoreError};

/// How a token stores its tree: plaintext, or sealed with its keys.
pub type Sealing = Arc<TreeCrypto>;

fn keys(sealing: &Sealing) -> Option<&TreeKeys> {
    match &**sealing {
        TreeCrypto::Plain => None,
        TreeCrypto::Sealed(k) => Some(k),
    }
}

/// A sealed read that does not open: the node changed, swapped or cut the content.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Tampered(pub String);

/// What can go wrong reading or adding content.
#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tampered(#[from] Tampered),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Bytes the node stores for `blob` (what usage counts, docs/FORMAT.md §7).
pub fn stored_size(blob: &Blob) -> u64 {
    if blob.chunks.is_some() {
        return blob.objects().iter().map(|(_, n, _)| n).sum();
    }
    match blob.salt {
        Some(_) if blob.size > 0 => seal::sealed_len(blob.size),
        _ => blob.size,
    }
}

/// Bytes the node will store for a version of `size` bytes of a tree sealed so.
pub fn stored_len(sealing: &Sealing, size: u64) -> u64 {
    // A version over one chunk is stored chunked (docs/FORMAT.md §13.1): a tag per chunk
    // when sealed; holes and shared chunks only make it smaller. (Its table's pages count
    // with the manifests, as directory pages do.)
    let sealed = keys(sealing).is_some();
    match (crate::fs::data::chunked::stores_chunked(size), sealed) {
        (true, true) => size + seal::TAG as u64 * chunks::chunk_count(size),
        (true, false) => size,
        (false, true) => seal::sealed_len(size),
        (false, false) => size,
    }
}

/// Adds one staged file of `size` bytes (`size` > 0).
pub async fn add_file(
    store: &dyn ContentStore,
    sealing: &Sealing,
    path: &Path,
    size: u64,
) -> Result<Blob, StoreError> {
    let Some(keys) = keys(sealing) else {
        return store.add_file(path).await;
    };
    let salt = ContentSalt::random();
    let key = Arc::new(VersionKey::new(keys, &salt));
    let staged = path.to_path_buf();
    let open: Arc<ContentStream> = Arc::new(move || {
        let plain = file_stream(staged.clone());
        seal_stream(plain, key.clone())
    });
    let cid = store.add_stream(path, open, false).await?;
    Ok(Blob::whole(cid, size, Some(salt)))
}

/// Adds many small staged files in one request; results in input order.
pub async fn add_files(
    store: &dyn ContentStore,
    sealing: &Sealing,
    paths: &[PathBuf],
) -> Result<Vec<Blob>, StoreError> {
    if keys(sealing).is_none() {
        return store.add_files(paths).await;
    }
    let sealing = sealing.clone();
    let paths = paths.to_vec();
    // Small files (the batches' bound keeps this to a few MiB): sealed in memory.
    let sealed = tokio::task::spawn_blocking(move || {
        let Some(keys) = keys(&sealing) else {
            return Err(StoreError::permanent("the tree has no keys"));
        };
        paths
            .iter()
            .map(|p| {
                let plain = std::fs::read(p)
                    .map_err(|e| StoreError::permanent(format!("{}: {e}", p.display())))?;
                let salt = ContentSalt::random();
                // An empty file stores no content (docs/FORMAT.md §4.1): nothing to seal.
                let bytes = match plain.is_empty() {
                    true => Vec::new(),
                    false => seal::seal_content(&VersionKey::new(keys, &salt), &plain)
                        .map_err(|e| StoreError::permanent(e.to_string()))?,
                };
                Ok((Bytes::from(bytes), plain.len() as u64, salt))
            })
            .collect::<Result<Vec<_>, StoreError>>()
    })
    .await
    .map_err(|e| StoreError::permanent(format!("sealing task: {e}")))??;
    let objects: Vec<Bytes> = sealed.iter().map(|(b, _, _)| b.clone()).collect();
    let cids = store.add_objects(objects).await?;
    if cids.len() != sealed.len() {
        return Err(StoreError::transient(format!(
            "node answered {} objects for {} files",
            cids.len(),
            sealed.len()
        )));
    }
    Ok(cids
        .into_iter()
        .zip(sealed)
        .map(|(cid, (_, size, salt))| Blob::whole(cid, size, Some(salt)))
        .collect())
}

/// A staged file's bytes from the start, read off the runtime's threads.
fn file_stream(path: PathBuf) -> BoxStream<'static, io::Result<Bytes>> {
    const READ: usize = 4 * PLAIN_CHUNK;
    futures::stream::try_unfold((path, 0u64), |(path, pos)| async move {
        let p = path.clone();
        let data = tokio::task::spawn_blocking(move || -> io::Result<Vec<u8>> {
            use std::os::unix::fs::FileExt;
            let f = std::fs::File::open(&p)?;
            let mut buf = vec![0u8; READ];
            let mut got = 0;
            while got < READ {
                let n = f.read_at(&mut buf[got..], pos + got as u64)?;
                if n == 0 {
                    break;
                }
                got += n;
            }
            buf.truncate(got);
            Ok(buf)
        })
        .await
        .map_err(io::Error::other)??;
        if data.is_empty() {
            return Ok(None);
        }
        let next = pos + data.len() as u64;
        Ok(Some((Bytes::from(data), (path, next))))
    })
    .boxed()
}

/// Chunks sealed ahead of the one being sent: sealing runs on another thread while the
/// upload sends, instead of between two sends.
const SEAL_AHEAD: usize = 4;

/// Seals a plaintext stream chunk by chunk, up to [`SEAL_AHEAD`] chunks ahead of the
/// consumer.
pub fn seal_stream(
    plain: BoxStream<'static, io::Result<Bytes>>,
    key: Arc<VersionKey>,
) -> BoxStream<'static, io::Result<Bytes>> {
    plain_chunks(plain)
        .map(move |chunk| {
            let key = key.clone();
            async move {
                let (index, mut buf, last) = chunk?;
                let sealed = tokio::task::spawn_blocking(move || {
                    key.seal_chunk_in_place(index, &mut buf, last).map(|()| buf)
                })
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
                Ok(Bytes::from(sealed))
            }
        })
        .buffered(SEAL_AHEAD)
        .boxed()
}

/// A plaintext stream cut into content chunks: `(index, bytes, last)`. A chunk is complete
/// once the next byte (or the end) is known, since the last chunk is sealed differently.
/// Each chunk is gathered into the buffer it is sealed and sent in (room for its tag): its
/// bytes are copied once.
fn plain_chunks(
    plain: BoxStream<'static, io::Result<Bytes>>,
) -> BoxStream<'static, io::Result<(u64, Vec<u8>, bool)>> {
    struct State {
        plain: BoxStream<'static, io::Result<Bytes>>,
        /// The chunk being gathered.
        chunk: Vec<u8>,
        /// Received bytes not in `chunk` yet.
        rest: Bytes,
        index: u64,
        ended: bool,
    }
    fn new_chunk() -> Vec<u8> {
        Vec::with_capacity(PLAIN_CHUNK + seal::TAG)
    }
    let state = State {
        plain,
        chunk: new_chunk(),
        rest: Bytes::new(),
        index: 0,
        ended: false,
    };
    futures::stream::try_unfold(state, |mut s| async move {
        loop {
            let room = PLAIN_CHUNK - s.chunk.len();
            let take = room.min(s.rest.len());
            s.chunk.extend_from_slice(&s.rest.split_to(take));
            // A full chunk with more to come is not the last one.
            let full_and_more = s.chunk.len() == PLAIN_CHUNK && !s.rest.is_empty();
            if full_and_more || (s.ended && !s.chunk.is_empty()) {
                let last = s.ended && s.rest.is_empty();
                let chunk = std::mem::replace(&mut s.chunk, new_chunk());
                let index = s.index;
                s.index += 1;
                return Ok(Some(((index, chunk, last), s)));
            }
            if s.ended {
                return Ok(None);
            }
            match s.plain.next().await {
                // `rest` is empty here: it is only left over when `chunk` is full, and a
                // full chunk with a byte after it was returned above.
                Some(data) => s.rest = data?,
                None => s.ended = true,
            }
        }
    })
    .boxed()
}

/// Opened chunks kept in memory, so that the kernel's reads of one chunk in pieces open it
/// once, and chunks being opened, so that a sequential reader finds the next chunk opened
/// (or opening, on another thread) when it gets there. Small: the read cache keeps the
/// sealed chunks on disk. Clones share the same chunks.
#[derive(Debug, Default, Clone)]
pub struct OpenChunks {
    inner: Arc<Mutex<Opened>>,
}

type ChunkKey = (String, u64);
pub(super) type Opening = Shared<BoxFuture<'static, Result<Bytes, OpenError>>>;

#[derive(Default)]
struct Opened {
    recent: std::collections::VecDeque<(ChunkKey, Bytes)>,
    opening: std::collections::HashMap<ChunkKey, Opening>,
    /// The latest runs of reads, one per content (a read near one continues it), oldest
    /// first.
    runs: std::collections::VecDeque<Run>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("recent", &self.recent.len())
            .field("opening", &self.opening.len())
            .finish()
    }
}

/// A chunk open that failed, shared by everyone who waited for it.
#[derive(Debug, Clone)]
pub(super) enum OpenError {
    Store(StoreError),
    Tampered(String),
    Io(String),
}

impl From<OpenError> for ContentError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Store(s) => ContentError::Store(s),
            OpenError::Tampered(t) => ContentError::Tampered(Tampered(t)),
            OpenError::Io(m) => ContentError::Io(io::Error::other(m)),
        }
    }
}

/// Opened chunks kept in memory: the chunks opened ahead of a sequential reader (at most
/// [`super::read_runs::OPEN_AHEAD_MAX`] past where it has reached) and those the kernel is reading
/// now.
const OPEN_CHUNKS_KEPT: usize = 256;
/// Chunks opened ahead fetched in one request at most (4 MiB): the kernel's read-ahead
/// (`cli::mount::readahead`) asks for that much at once.
pub(super) const RUN_CHUNKS: usize = 32;
/// Files whose runs of reads are remembered.
const RUNS_KEPT: usize = 8;

/// Chunks opened ahead of a reader of one content (`super::chunked_read`): told as they
/// arrive, it may open more.
pub(super) trait Refill: Send + Sync {
    /// The content's CID (its run of reads).
    fn content(&self) -> &str;
    /// `bytes` of its chunks opened ahead arrived.
    fn arrived(&self, opened: &OpenChunks, bytes: u64);
}

/// One chunk of a version, what opening it needs.
pub(super) struct ChunkRef {
    pub(super) store: Arc<dyn ContentStore>,
    pub(super) sealing: Sealing,
    pub(super) cid: String,
    pub(super) index: u64,
    pub(super) form: ChunkForm,
}

/// Where a chunk lies: inside one sealed object (the v2 form, §6.2), or as an object of its
/// own named by a chunk table (format 3, §13).
#[derive(Clone, Copy)]
pub(super) enum ChunkForm {
    /// Chunk `index` of the sealed stream under `salt`; the version's stored size and
    /// chunk count.
    Stream {
        salt: ContentSalt,
        stored: u64,
        chunks: u64,
    },
    /// A chunk object of a `size`-byte file, sealed with `salt` in an encrypted tree.
    Table {
        salt: Option<ContentSalt>,
        size: u64,
    },
}

impl ChunkRef {
    /// The bytes its object holds (a table chunk: its plaintext and, sealed, the tag).
    fn stored_len(&self) -> u64 {
        match self.form {
            ChunkForm::Stream { .. } => 0,
            ChunkForm::Table { salt, size } => {
                let plain = chunks::chunk_len(size, self.index).unwrap_or(0);
                plain + if salt.is_some() { seal::TAG as u64 } else { 0 }
            }
        }
    }

    /// A table chunk [`OpenChunks::open_run`] takes: sealed in a tree that holds the key
    /// (opening it authenticates it), or plain in a plaintext tree (its CID does).
    pub(super) fn in_runs(&self) -> bool {
        match self.form {
            ChunkForm::Table { salt: Some(_), .. } => keys(&self.sealing).is_some(),
            ChunkForm::Table { salt: None, .. } => keys(&self.sealing).is_none(),
            ChunkForm::Stream { .. } => false,
        }
    }
}

impl OpenChunks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Opened> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Chunk `c` opened: from memory, from an open under way, or opened now (on a blocking
    /// thread; a task of its own, so a reader that gives up does not cancel it for others).
    pub(super) fn open(&self, c: ChunkRef) -> Opening {
        let id = (c.cid.clone(), c.index);
        let mut inner = self.lock();
        if let Some((_, plain)) = inner.recent.iter().find(|(k, _)| *k == id) {
            let plain = plain.clone();
            return futures::future::ready(Ok(plain)).boxed().shared();
        }
        if let Some(running) = inner.opening.get(&id) {
            return running.clone();
        }
        let this = self.clone();
        let key = id.clone();
        let task = tokio::spawn(async move {
            let r = open_chunk(&c).await;
            this.settle(key, &r);
            r
        });
        let shared = async move {
            task.await
                .unwrap_or_else(|e| Err(OpenError::Io(format!("opening a chunk: {e}"))))
        }
        .boxed()
        .shared();
        inner.opening.insert(id, shared.clone());
        shared
    }

    /// Chunk `key`'s open is over: no longer under way, and kept when it opened.
    fn settle(&self, key: ChunkKey, r: &Result<Bytes, OpenError>) {
        let mut inner = self.lock();
        inner.opening.remove(&key);
        if let Ok(plain) = r {
            if inner.recent.len() >= OPEN_CHUNKS_KEPT {
                inner.recent.pop_front();
            }
            inner.recent.push_back((key, plain.clone()));
        }
    }

    /// Opens sealed chunks `run` (of one store, in the order a reader will want them) that
    /// are neither opened nor opening, fetched together where the store can: one request
    /// whose bytes arrive in order ([`ContentStore::read_sealed_run`]), each chunk opened
    /// as it arrives. What that does not give, or gives but does not open, is opened alone
    /// ([`open_chunk`]: fetched again, refused if it still does not open). With `ahead`
    /// (opened ahead of a reader), its run of reads counts the bytes on their way, and
    /// `ahead` hears of each chunk's arrival (to keep the link busy).
    pub(super) fn open_run(&self, run: Vec<ChunkRef>, ahead: Option<Arc<dyn Refill>>) {
        let mut todo = Vec::with_capacity(run.len());
        {
            let mut inner = self.lock();
            for c in run {
                let id = (c.cid.clone(), c.index);
                if inner.opening.contains_key(&id) || inner.recent.iter().any(|(k, _)| *k == id) {
                    continue;
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                let shared = async move {
                    rx.await
                        .unwrap_or_else(|_| Err(OpenError::Io("a chunk's opening stopped".into())))
                }
                .boxed()
                .shared();
                inner.opening.insert(id, shared);
                todo.push((c, tx));
            }
        }
        let Some(first) = todo.first() else {
            return;
        };
        let lens = todo.iter().map(|(c, _)| (c.cid.clone(), c.stored_len()));
        let fetched = first.0.store.read_sealed_run(lens.collect());
        if let Some(a) = &ahead {
            let bytes = todo.iter().map(|(c, _)| c.stored_len()).sum();
            let mut inner = self.lock();
            if let Some(run) = inner.runs.iter_mut().find(|r| r.cid == a.content()) {
                run.sent(bytes);
            }
        }
        let this = self.clone();
        tokio::spawn(async move {
            let mut todo = todo.into_iter();
            if let Some(mut fetched) = fetched {
                while let Some(Ok(sealed)) = fetched.next().await {
                    let Some((c, tx)) = todo.next() else {
                        break;
                    };
                    let len = c.stored_len();
                    tokio::spawn(this.clone().finish(c, Some(sealed), tx));
                    if let Some(a) = &ahead {
                        a.arrived(&this, len);
                    }
                }
            }
            let rest: Vec<_> = todo.collect();
            if let Some(a) = &ahead {
                // Fetched alone now: no longer on the run's way.
                a.arrived(&this, rest.iter().map(|(c, _)| c.stored_len()).sum());
            }
            for (c, tx) in rest {
                tokio::spawn(this.clone().finish(c, None, tx));
            }
        });
    }

    /// `bytes` of content `cid`'s chunks opened ahead arrived: what to open next, at most
    /// `step` bytes (see [`Run::refill`]).
    pub(super) fn arrived(
        &self,
        cid: &str,
        bytes: u64,
        step: u64,
        size: u64,
    ) -> std::ops::Range<u64> {
        let mut inner = self.lock();
        match inner.runs.iter_mut().find(|r| r.cid == cid) {
            Some(run) => {
                run.arrived(bytes);
                run.refill(step, size)
            }
            None => 0..0,
        }
    }

    /// Chunk `c` of a run opened (from `sealed`, the run's bytes for it, when it gave them
    /// and they open; else alone), settled and handed to those waiting for it.
    async fn finish(
        self,
        c: ChunkRef,
        sealed: Option<Bytes>,
        tx: tokio::sync::oneshot::Sender<Result<Bytes, OpenError>>,
    ) {
        let from_run = match (sealed, c.form) {
            (Some(plain), ChunkForm::Table { salt: None, .. }) => open_table_plain(&c, plain).ok(),
            (Some(sealed), _) => open_table_sealed(&c, sealed).await.ok(),
            (None, _) => None,
        };
        let r = match from_run {
            Some(plain) => Ok(plain),
            None => open_chunk(&c).await,
        };
        self.settle((c.cid.clone(), c.index), &r);
        let _ = tx.send(r);
    }

    /// A read of `cid` from `offset` to `end`: the bytes past `from` (where this read's
    /// chunks end) whose chunks to open ahead of it now (see [`Run::ahead`]).
    pub(super) fn ahead(
        &self,
        cid: &str,
        offset: u64,
        end: u64,
        from: u64,
    ) -> std::ops::Range<u64> {
        let mut inner = self.lock();
        let found = inner.runs.iter().position(|r| r.cid == cid);
        let run = found.and_then(|i| inner.runs.remove(i));
        let mut run = match run {
            Some(mut run) if run.continued_by(offset) => {
                run.extend(offset, end);
                run
            }
            _ => Run::new(cid, offset, end),
        };
        let ahead = run.ahead(from);
        tracing::trace!(?run, ?ahead, offset, end, "read run");
        if inner.runs.len() >= RUNS_KEPT {
            inner.runs.pop_front();
        }
        inner.runs.push_back(run);
        ahead
    }
}

async fn open_chunk(c: &ChunkRef) -> Result<Bytes, OpenError> {
    match c.form {
        ChunkForm::Stream {
            salt,
            stored,
            chunks,
        } => open_stream_chunk(c, salt, stored, chunks).await,
        ChunkForm::Table { salt, size } => open_table_chunk(c, salt, size).await,
    }
}

async fn open_stream_chunk(
    c: &ChunkRef,
    salt: ContentSalt,
    stored: u64,
    chunks: u64,
) -> Result<Bytes, OpenError> {
    let from = c.index * SEALED_CHUNK as u64;
    let want = (SEALED_CHUNK as u64).min(stored - from);
    let sealed = c
        .store
        .read(&c.cid, stored, from, want)
        .await
        .map_err(OpenError::Store)?;
    let sealing = c.sealing.clone();
    let (index, last) = (c.index, c.index + 1 == chunks);
    let cid = c.cid.clone();
    tokio::task::spawn_blocking(move || {
        // The version's key is derived here, when a chunk is opened, not on every read.
        let Some(keys) = keys(&sealing) else {
            return Err(OpenError::Tampered(format!(
                "content {cid}: the tree holds no key"
            )));
        };
        VersionKey::new(keys, &salt)
            .open_chunk_owned(index, Vec::from(sealed), last)
            .map(Bytes::from)
            .map_err(|e| OpenError::Tampered(format!("content {cid}: {e}")))
    })
    .await
    .map_err(|e| OpenError::Io(format!("opening a chunk: {e}")))?
}

/// A chunk object (one block, checked against its CID by the store), opened at the index
/// and length its place in the table gives (docs/FORMAT.md §13.3).
async fn open_table_chunk(
    c: &ChunkRef,
    salt: Option<ContentSalt>,
    size: u64,
) -> Result<Bytes, OpenError> {
    let stored = c.stored_len();
    // A sealed chunk is authenticated by opening it: its bytes need no CID check besides.
    if salt.is_some() && keys(&c.sealing).is_some() {
        let sealed = c.store.read_sealed(&c.cid, stored).await;
        let sealed = sealed.map_err(OpenError::Store)?;
        return match open_table_sealed(c, sealed.clone()).await {
            Ok(plain) => Ok(plain),
            Err(e) => {
                crate::integrity::refused(&c.cid, sealed.len());
                Err(e)
            }
        };
    }
    let bytes = c.store.read(&c.cid, stored, 0, stored).await;
    let bytes = bytes.map_err(OpenError::Store)?;
    let (sealing, cid, index) = (c.sealing.clone(), c.cid.clone(), c.index);
    tokio::task::spawn_blocking(move || {
        let opened = match (keys(&sealing), salt) {
            (None, None) => chunks::open_plain_chunk(index, size, bytes.to_vec()),
            _ => Err(crate::format::FormatError::Tampered(
                "a chunk sealed in a plaintext tree, or plain in a sealed one".into(),
            )),
        };
        opened
            .map(Bytes::from)
            .map_err(|e| OpenError::Tampered(format!("chunk {cid}: {e}")))
    })
    .await
    .map_err(|e| OpenError::Io(format!("opening a chunk: {e}")))?
}

/// Sealed chunk object `c`, its bytes `sealed` as the node gave them (unchecked), opened;
/// kept by the store when it opens. Not counted as refused when it does not: the caller
/// decides whether its bytes came from the node as this chunk's.
async fn open_table_sealed(c: &ChunkRef, sealed: Bytes) -> Result<Bytes, OpenError> {
    let ChunkForm::Table {
        salt: Some(salt),
        size,
    } = c.form
    else {
        return Err(OpenError::Tampered(format!("chunk {}: not sealed", c.cid)));
    };
    // Opened here, on the runtime: a chunk takes tens of microseconds (AES-NI), less than
    // handing it to a blocking thread and back.
    let Some(keys) = keys(&c.sealing) else {
        return Err(OpenError::Tampered(format!(
            "chunk {}: the tree holds no key",
            c.cid
        )));
    };
    let opened = chunks::open_chunk(keys, &salt, c.index, size, &sealed)
        .map(Bytes::from)
        .map_err(|e| OpenError::Tampered(format!("chunk {}: {e}", c.cid)))?;
    c.store.keep_opened(&c.cid, sealed);
    Ok(opened)
}

/// Plaintext chunk object `c`, its bytes `stored` as a run gave them (unchecked): they are
/// its content when their length is its place's and their hash its CID's, and then kept by
/// the store. Not counted as refused when they are not (the caller reads the chunk alone).
fn open_table_plain(c: &ChunkRef, stored: Bytes) -> Result<Bytes, OpenError> {
    let ChunkForm::Table { salt: None, .. } = c.form else {
        return Err(OpenError::Tampered(format!("chunk {}: sealed", c.cid)));
    };
    if stored.len() as u64 != c.stored_len() || !crate::integrity::names(&c.cid, &stored) {
        return Err(OpenError::Tampered(format!(
            "chunk {}: the run's bytes are not its own",
            c.cid
        )));
    }
    c.store.keep_opened(&c.cid, stored.clone());
    Ok(stored)
}

/// What [`read`] reads: `len` bytes at `offset`, for a reader (whose reads in order get
/// the next chunks opened ahead) or not (a fill: one chunk a change needs, nothing after).
#[derive(Debug, Clone, Copy)]
pub struct Range {
    pub offset: u64,
    pub len: u64,
    pub reader: bool,
}

/// Up to `len` bytes of `blob`'s content at `offset` (short only at its end).
pub async fn read(
    store: &Arc<dyn ContentStore>,
    sealing: &Sealing,
    opened: &OpenChunks,
    blob: &Blob,
    range: Range,
) -> Result<Bytes, ContentError> {
    let Range { offset, len, .. } = range;
    if let Some(table) = &blob.chunks {
        return super::chunked_read::read_chunked(store, sealing, opened, blob, table, range).await;
    }
    let (Some(_), Some(salt)) = (keys(sealing), blob.salt) else {
        if blob.salt.is_some() {
            return Err(Tampered(format!(
                "content {} is sealed but the tree holds no key for it",
                blob.cid
            ))
            .into());
        }
        return Ok(store.read(&blob.cid, blob.size, offset, len).await?);
    };
    if offset >= blob.size || len == 0 {
        return Ok(Bytes::new());
    }
    let end = blob.size.min(offset.saturating_add(len));
    let plain_chunk = PLAIN_CHUNK as u64;
    let (first, last) = (offset / plain_chunk, (end - 1) / plain_chunk);
    let chunks = seal::chunk_count(blob.size);
    let chunk = |index: u64| ChunkRef {
        store: store.clone(),
        sealing: sealing.clone(),
        cid: blob.cid.clone(),
        index,
        form: ChunkForm::Stream {
            salt,
            stored: seal::sealed_len(blob.size),
            chunks,
        },
    };
    // The chunks of this read open together (each on its own thread), and a sequential
    // reader gets the next ones opened meanwhile.
    let opening: Vec<_> = (first..=last).map(|i| opened.open(chunk(i))).collect();
    if range.reader {
        let ahead = opened.ahead(&blob.cid, offset, end, (last + 1) * plain_chunk);
        let upto = ahead.end.div_ceil(plain_chunk).min(chunks);
        for index in ahead.start / plain_chunk..upto {
            drop(opened.open(chunk(index)));
        }
    }
    let mut out = match first == last {
        true => BytesMut::new(),
        false => BytesMut::with_capacity((end - offset) as usize),
    };
    for (index, opening) in (first..=last).zip(opening) {
        let plain = opening.await?;
        let chunk_start = index * plain_chunk;
        let from = (offset.max(chunk_start) - chunk_start) as usize;
        let to = (end.min(chunk_start + plain_chunk) - chunk_start) as usize;
        if to > plain.len() {
            return Err(Tampered(format!(
                "content {} chunk {index} is shorter than the file's size says",
                blob.cid
            ))
            .into());
        }
        // A read within one chunk (the kernel's usual request) is that chunk's slice.
        if first == last {
            return Ok(plain.slice(from..to));
        }
        out.extend_from_slice(&plain[from..to]);
    }
    Ok(out.freeze())
}

impl From<ContentError> for crate::fs::FsError {
    fn from(e: ContentError) -> crate::fs::FsError {
        match e {
            ContentError::Store(s) => crate::fs::FsError::Store(s),
            ContentError::Tampered(t) => crate::fs::FsError::Tampered(t.0),
            ContentError::Io(e) => crate::fs::FsError::Io(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DataKey;

    fn sealing() -> Sealing {
        Arc::new(TreeCrypto::sealed(&DataKey::from_bytes([7; 32])))
    }

    fn at(offset: u64, len: u64) -> Range {
        Range {
            offset,
            len,
            reader: true,
        }
    }

    fn pieces(data: &[u8], sizes: &[usize]) -> BoxStream<'static, io::Result<Bytes>> {
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < data.len() {
            let n = sizes[i % sizes.len()].min(data.len() - pos);
            out.push(Ok(Bytes::copy_from_slice(&data[pos..pos + n])));
            pos += n;
            i += 1;
        }
        futures::stream::iter(out).boxed()
    }

    #[tokio::test]
    async fn a_sealed_stream_equals_sealing_the_whole_content_at_once() {
        let sealing = sealing();
        let keys = keys(&sealing).unwrap();
        for size in [
            1,
            PLAIN_CHUNK - 1,
            PLAIN_CHUNK,
            PLAIN_CHUNK + 1,
            3 * PLAIN_CHUNK,
        ] {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
            let salt = ContentSalt([3; 32]);
            let key = Arc::new(VersionKey::new(keys, &salt));
            let whole = seal::seal_content(&key, &data).unwrap();
            for split in [&[1000usize][..], &[PLAIN_CHUNK], &[7, 300_000, 5]] {
                let streamed: Vec<u8> = seal_stream(pieces(&data, split), key.clone())
                    .map(|b| b.unwrap().to_vec())
                    .concat()
                    .await;
                assert_eq!(streamed, whole, "size {size}, pieces {split:?}");
            }
        }
    }

    #[tokio::test]
    async fn reads_open_only_the_chunks_they_touch_and_refuse_a_changed_byte() {
        let mem = Arc::new(crate::fs::store::MemoryStore::new());
        let store: Arc<dyn ContentStore> = mem.clone();
        let sealing = sealing();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 3 * PLAIN_CHUNK + 10;
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let blob = add_file(&*store, &sealing, &path, size as u64)
            .await
            .unwrap();
        assert_eq!(mem.get(&blob.cid).unwrap().len() as u64, stored_size(&blob));
        let opened = OpenChunks::default();
        for (off, len) in [
            (0u64, 10u64),
            (PLAIN_CHUNK as u64 - 5, 10),
            (0, size as u64),
        ] {
            let got = read(&store, &sealing, &opened, &blob, at(off, len))
                .await
                .unwrap();
            assert_eq!(&got[..], &data[off as usize..(off + len) as usize]);
        }
        // Flip one byte of chunk 1 on the "node": chunk 0 still reads, chunk 1 does not.
        let mut stored = mem.get(&blob.cid).unwrap().to_vec();
        stored[SEALED_CHUNK + 100] ^= 1;
        let forged = store.add_manifest(Bytes::from(stored)).await.unwrap();
        let bad = Blob {
            cid: forged,
            ..blob.clone()
        };
        let fresh = OpenChunks::default();
        assert!(
            read(&store, &sealing, &fresh, &bad, at(0, 100))
                .await
                .is_ok()
        );
        let err = read(&store, &sealing, &fresh, &bad, at(PLAIN_CHUNK as u64, 100))
            .await
            .unwrap_err();
        assert!(matches!(err, ContentError::Tampered(_)), "{err}");
    }
}
