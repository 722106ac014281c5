//! On-disk chunk cache for reads of uploaded content (DESIGN.md §4 "Read path").
//!
//! File content is cut into aligned chunks (256 KiB by default) keyed by (CID, chunk index).
//! A read is served from the chunks on disk; a missing chunk is fetched from the blocks
//! under it, each checked against its CID ([`crate::integrity::ContentIndex`]: the leaves
//! of a 256 KiB chunk are one `block/get`), and readers of the same missing chunk share that
//! one fetch. Only checked bytes are written to disk.
//! Sequential reading starts background fetches of the next few chunks. The chunks are
//! appended to a few large pack files (`store`, `pack`); the cache keeps under its byte
//! limit by deleting the oldest pack (a chunk read from the older half is copied forward
//! first: least recently used, a pack at a time), and survives restarts.
//!
//! A fetch fails after the storage client's bounded retries and timeouts; the fs maps the
//! error to `EIO`. Chunks already on disk are served while the node is down.

mod keeper;
mod pack;
mod peek;
mod run_budget;
mod store;

pub use peek::CachedChunks;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use futures::future::{BoxFuture, Shared};
use futures::{FutureExt, StreamExt, TryStreamExt};
use lru::LruCache;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use crate::storage::{NodeClient, StorageError};
use store::{ChunkKey, ChunkStore};

/// One UnixFS leaf (Kubo's default chunker): a sealed content chunk of an encrypted tree
/// (docs/FORMAT.md §6.2) is exactly one cache chunk, so a small read fetches one or two.
pub const DEFAULT_CHUNK_SIZE: u64 = 256 << 10;
/// Chunks fetched ahead of a sequential reader (8 MiB).
pub const DEFAULT_READAHEAD_CHUNKS: u32 = 32;
/// Read-ahead fetches running at once over all files, so that many sequential readers
/// cannot flood the node.
const MAX_BACKGROUND_FETCHES: usize = 16;
/// Largest just-uploaded file copied into the cache by `insert_local`.
pub const MAX_SEED_BYTES: u64 = 64 << 20;
/// Chunks of one read fetched at the same time.
const MAX_CHUNKS_PER_READ: usize = 4;
/// Files whose access pattern is remembered for read-ahead.
const TRACKED_STREAMS: usize = 256;

#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    #[error("fetching chunk {index} of {cid}: {source}")]
    Fetch {
        cid: String,
        index: u64,
        #[source]
        source: StorageError,
    },
    #[error("node returned {got} bytes for chunk {index} of {cid}, expected {expected}")]
    ShortChunk {
        cid: String,
        index: u64,
        expected: u64,
        got: u64,
    },
    #[error("chunk cache {}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("reading chunk {index} of {cid}: {source}")]
    Integrity {
        cid: String,
        index: u64,
        #[source]
        source: crate::integrity::IntegrityError,
    },
    #[error("not a CID: {0:?}")]
    BadCid(String),
    #[error("chunk fetch aborted: {0}")]
    Aborted(String),
}

/// Tuning knobs; [`ChunkCache::open`] uses the defaults.
#[derive(Debug, Clone, Copy)]
pub struct CacheOptions {
    pub chunk_size: u64,
    pub readahead_chunks: u32,
    /// Free space the cache leaves on its disk (`[cache] reserve_bytes`): below it, chunks read
    /// are served but not kept, so the cache never takes the room new data needs.
    pub keep_free: u64,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            chunk_size: DEFAULT_CHUNK_SIZE,
            readahead_chunks: DEFAULT_READAHEAD_CHUNKS,
            keep_free: 0,
        }
    }
}

type ChunkFetch = Shared<BoxFuture<'static, Result<Bytes, CacheError>>>;

/// Objects of a run read ([`ChunkCache::read_sealed_run`]) waiting for their reader.
const RUN_QUEUE: usize = 4;

/// Bytes of run reads asked of the node and not arrived yet, at most (twice the
/// bandwidth × delay of 200 Mbit/s over 160 ms); the runs past it wait their turn, in the
/// order they were asked for. Runs at once share a link: without a bound, a reader's
/// read-ahead sent as many runs at once has each arrive late and all at the same time,
/// the reader waits for the oldest while the rest takes the link, then the link stands
/// idle until the next runs are asked for (one round trip each time; issue #34).
const RUN_BYTES_OUT: u64 = 8 << 20;
/// [`RUN_BYTES_OUT`] is counted in units of this many bytes.
const RUN_BYTES_UNIT: u64 = 4 << 10;

/// An object's share of [`RUN_BYTES_OUT`].
fn run_units(len: u64) -> u64 {
    len.div_ceil(RUN_BYTES_UNIT)
}

/// The read cache. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ChunkCache {
    inner: Arc<Inner>,
    /// Where this cache fetches from; [`ChunkCache::with_client`] shares the chunks with
    /// another client (a hosted node's other sNFT).
    client: NodeClient,
}

struct Inner {
    store: Arc<ChunkStore>,
    /// Writes opened chunks ([`ChunkCache::keep`]) to `store` off the readers' path.
    keeper: keeper::Keeper,
    options: CacheOptions,
    in_flight: Mutex<HashMap<ChunkKey, ChunkFetch>>,
    /// CID → end offset of its last read, to recognise sequential reading.
    streams: Mutex<LruCache<Arc<str>, u64>>,
    background: Arc<Semaphore>,
    /// [`RUN_BYTES_OUT`], in [`RUN_BYTES_UNIT`]s.
    run_bytes: Arc<run_budget::RunBudget>,
    /// The content DAGs' inner nodes, checked and decoded.
    index: crate::integrity::ContentIndex,
}

impl ChunkCache {
    /// Opens (or creates) the cache in `dir`, which it owns, keeping it under `size_limit`
    /// bytes. Chunks left by an earlier run are kept.
    pub fn open(dir: &Path, size_limit: u64, client: NodeClient) -> Result<ChunkCache, CacheError> {
        Self::open_with(dir, size_limit, client, CacheOptions::default())
    }

    pub fn open_with(
        dir: &Path,
        size_limit: u64,
        client: NodeClient,
        options: CacheOptions,
    ) -> Result<ChunkCache, CacheError> {
        let options = CacheOptions {
            chunk_size: options.chunk_size.max(1),
            ..options
        };
        let store = Arc::new(
            ChunkStore::open(dir, size_limit, options.chunk_size)?.keeping_free(options.keep_free),
        );
        let keeper = keeper::Keeper::start(store.clone());
        let tracked =
            std::num::NonZeroUsize::new(TRACKED_STREAMS).unwrap_or(std::num::NonZeroUsize::MIN);
        Ok(ChunkCache {
            inner: Arc::new(Inner {
                store,
                keeper,
                options,
                in_flight: Mutex::new(HashMap::new()),
                streams: Mutex::new(LruCache::new(tracked)),
                background: Arc::new(Semaphore::new(MAX_BACKGROUND_FETCHES)),
                run_bytes: run_budget::RunBudget::new(RUN_BYTES_OUT / RUN_BYTES_UNIT),
                index: crate::integrity::ContentIndex::default(),
            }),
            client,
        })
    }

    /// The same cache (chunks on disk, fetches in flight) fetching through `client`.
    pub fn with_client(&self, client: NodeClient) -> ChunkCache {
        ChunkCache {
            inner: self.inner.clone(),
            client,
        }
    }

    /// Bytes the cache's packs take on disk (copies a newer one replaced included).
    pub fn cached_bytes(&self) -> u64 {
        self.inner.store.total()
    }

    /// Evict the oldest packs until about `bytes` are freed (the disk is
    /// short of room for data that must be kept); returns what was freed.
    pub fn give_back(&self, bytes: u64) -> u64 {
        self.inner.store.give_back(bytes)
    }

    /// Up to `len` bytes of the file `cid` (of `file_size` bytes) from `offset`; short only
    /// at the end of the file.
    pub async fn read(
        &self,
        cid: &str,
        file_size: u64,
        offset: u64,
        len: u32,
    ) -> Result<Bytes, CacheError> {
        if !store::valid_cid(cid) {
            return Err(CacheError::BadCid(cid.to_string()));
        }
        if offset >= file_size || len == 0 {
            return Ok(Bytes::new());
        }
        let end = file_size.min(offset.saturating_add(u64::from(len)));
        let cs = self.inner.options.chunk_size;
        let (first, last) = (offset / cs, (end - 1) / cs);
        let cid: Arc<str> = Arc::from(cid);

        self.inner
            .read_ahead(&self.client, &cid, file_size, offset, end, last);

        let pieces = (first..=last).map(|index| {
            let chunk_start = index * cs;
            let from = offset.max(chunk_start) - chunk_start;
            let to = end.min(chunk_start + cs) - chunk_start;
            let key = ChunkKey {
                cid: cid.clone(),
                index,
            };
            self.inner
                .clone()
                .chunk_range(&self.client, key, file_size, from, to)
        });
        // Several chunks at once (a large read), but not unboundedly many.
        let mut pieces: Vec<Bytes> = futures::stream::iter(pieces)
            .buffered(MAX_CHUNKS_PER_READ)
            .try_collect()
            .await?;
        if pieces.len() == 1 {
            return Ok(pieces.swap_remove(0));
        }
        let mut out = BytesMut::with_capacity((end - offset) as usize);
        for piece in pieces {
            out.extend_from_slice(&piece);
        }
        Ok(out.freeze())
    }

    /// The whole object `cid` of `len` bytes (one chunk at most) for a reader that
    /// authenticates it itself (a sealed chunk): from disk when cached, else fetched without
    /// hashing it against its CID, and kept only once the reader says it opened
    /// ([`ChunkCache::keep`]), so the disk never holds bytes nobody checked. Larger
    /// objects are read checked.
    pub async fn read_sealed(&self, cid: &str, len: u64) -> Result<Bytes, CacheError> {
        if !store::valid_cid(cid) {
            return Err(CacheError::BadCid(cid.to_string()));
        }
        if len == 0 || len > self.inner.options.chunk_size {
            return self
                .read(cid, len, 0, u32::try_from(len).unwrap_or(u32::MAX))
                .await;
        }
        let key = ChunkKey {
            cid: Arc::from(cid),
            index: 0,
        };
        if let Some(data) = self.inner.cached(&key, 0, len as usize).await {
            return Ok(data);
        }
        let data = self
            .inner
            .index
            .read_sealed(&self.client, cid, len)
            .await
            .map_err(|source| fetch_error(&key, source))?;
        if data.len() as u64 != len {
            return Err(CacheError::ShortChunk {
                cid: cid.to_string(),
                index: 0,
                expected: len,
                got: data.len() as u64,
            });
        }
        Ok(data)
    }

    /// Whole objects as [`ChunkCache::read_sealed`] gives them (sealed chunks of at most a
    /// chunk each, raw CIDs), in order, as a stream: those on disk from there, each run of
    /// the others in one `cat` of several paths (one request, its bytes in order, instead
    /// of a request per chunk: on a link shared by many requests each would finish late).
    /// The stream ends early, or with an error, when the node does not answer so (one path
    /// per `cat`, a failure) or an object does not fit: the reader reads the rest one by one.
    pub fn read_sealed_run(
        &self,
        objects: Vec<(String, u64)>,
    ) -> futures::stream::BoxStream<'static, Result<Bytes, CacheError>> {
        let (tx, rx) = tokio::sync::mpsc::channel(RUN_QUEUE);
        let this = self.clone();
        // Its place among the runs out at the node is taken now, in the order asked.
        let units = objects.iter().map(|(_, len)| run_units(*len)).sum();
        let turn = self.inner.run_bytes.reserve(units);
        tokio::spawn(async move { this.send_run(objects, turn, tx).await });
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
            .boxed()
    }

    async fn send_run(
        &self,
        objects: Vec<(String, u64)>,
        turn: run_budget::Reservation,
        tx: tokio::sync::mpsc::Sender<Result<Bytes, CacheError>>,
    ) {
        // Taken at the first request to the node (objects on disk need none), then each
        // object's units go back as it arrives.
        let mut turn = Some(turn);
        let mut lease: Option<run_budget::Lease> = None;
        let mut served_before = 0;
        let chunk_size = self.inner.options.chunk_size;
        let fits = |(cid, len): &(String, u64)| {
            *len > 0
                && *len <= chunk_size
                && store::valid_cid(cid)
                && crate::integrity::parse(cid)
                    .is_ok_and(|c| c.codec() == crate::integrity::RAW_CODEC)
        };
        if !objects.iter().all(fits) {
            return;
        }
        let key = |cid: &str| ChunkKey {
            cid: Arc::from(cid),
            index: 0,
        };
        let mut at = 0;
        while at < objects.len() {
            let (cid, len) = &objects[at];
            if let Some(data) = self.inner.cached(&key(cid), 0, *len as usize).await {
                match &mut lease {
                    Some(lease) => lease.give_back(run_units(*len)),
                    None => served_before += run_units(*len),
                }
                if tx.send(Ok(data)).await.is_err() {
                    return;
                }
                at += 1;
                continue;
            }
            let mut end = at + 1;
            while end < objects.len() && !self.inner.store.touch(&key(&objects[end].0)) {
                end += 1;
            }
            let cids: Vec<&str> = objects[at..end].iter().map(|(c, _)| c.as_str()).collect();
            if let Some(turn) = turn.take() {
                lease = turn.granted().await;
                if let Some(lease) = &mut lease {
                    lease.give_back(served_before);
                }
            }
            let mut body = match self.client.cat_many(&cids).await {
                Ok(body) => body,
                Err(source) => {
                    let _ = tx.send(Err(fetch_error(&key(cid), source.into()))).await;
                    return;
                }
            };
            // The body's bytes not handed out yet. An object that arrived within one piece
            // is handed out as a view of it; one across pieces is put together.
            let mut rest = Bytes::new();
            for (cid, len) in &objects[at..end] {
                let len = *len as usize;
                let mut joined = BytesMut::new();
                let object = loop {
                    if joined.is_empty() && rest.len() >= len {
                        break rest.split_to(len);
                    }
                    let take = (len - joined.len()).min(rest.len());
                    if take > 0 {
                        joined.reserve(len - joined.len());
                        joined.extend_from_slice(&rest.split_to(take));
                        if joined.len() == len {
                            break joined.freeze();
                        }
                    }
                    match body.next().await {
                        Some(Ok(piece)) => rest = piece,
                        Some(Err(source)) => {
                            let _ = tx.send(Err(fetch_error(&key(cid), source.into()))).await;
                            return;
                        }
                        // Shorter than asked: the node gave fewer objects (or other ones).
                        None => return,
                    }
                };
                // Arrived: its bytes no longer count as out.
                if let Some(lease) = &mut lease {
                    lease.give_back(run_units(len as u64));
                }
                if tx.send(Ok(object)).await.is_err() {
                    return;
                }
            }
            at = end;
        }
    }

    /// Keeps a whole object [`ChunkCache::read_sealed`] gave, now that its reader opened it
    /// (in the background, by one writer: it is only a cache, and not kept when the writer
    /// is far behind).
    pub fn keep(&self, cid: &str, data: Bytes) {
        if !store::valid_cid(cid)
            || data.is_empty()
            || data.len() as u64 > self.inner.options.chunk_size
        {
            return;
        }
        let key = ChunkKey {
            cid: Arc::from(cid),
            index: 0,
        };
        if self.inner.store.touch(&key) {
            return;
        }
        self.inner.keeper.keep(key, data);
    }

    /// Seeds the cache with a just-uploaded file so the first read after the upload is
    /// local. Blocking file I/O: call it from a blocking context. Only files up to
    /// `MAX_SEED_BYTES` (and half the cache) are copied: for a large file the copy would cost
    /// more disk bandwidth than the uploads it competes with, and a large file's first read
    /// streams well from the node anyway.
    pub fn insert_local(&self, cid: &str, path: &Path) -> Result<(), CacheError> {
        if !store::valid_cid(cid) {
            return Err(CacheError::BadCid(cid.to_string()));
        }
        let size = std::fs::metadata(path)
            .map_err(|e| CacheError::Io {
                path: path.to_path_buf(),
                source: Arc::new(e),
            })?
            .len();
        if size > MAX_SEED_BYTES.min(self.inner.store.limit() / 2) {
            debug!(cid, size, "not seeding the cache with a large file");
            return Ok(());
        }
        self.inner
            .store
            .insert_file(cid, path, self.inner.options.chunk_size)?;
        Ok(())
    }
}

impl Inner {
    fn chunk_len(&self, index: u64, file_size: u64) -> u64 {
        let start = index * self.options.chunk_size;
        self.options.chunk_size.min(file_size - start)
    }

    /// `len` bytes at `from` of a chunk on disk (read off the runtime), counted as a hit;
    /// `None`, counted as a miss, when it is not there whole.
    async fn cached(self: &Arc<Self>, key: &ChunkKey, from: u64, len: usize) -> Option<Bytes> {
        let mut hit = None;
        if self.store.touch(key) {
            let this = self.clone();
            let k = key.clone();
            hit = tokio::task::spawn_blocking(move || this.store.read(&k, from, len))
                .await
                .ok()
                .flatten();
        }
        crate::metrics::chunk_cache(hit.is_some());
        hit.map(Bytes::from)
    }

    /// Bytes `from..to` of one chunk: from disk if there, else from the (shared) fetch.
    async fn chunk_range(
        self: Arc<Self>,
        client: &NodeClient,
        key: ChunkKey,
        file_size: u64,
        from: u64,
        to: u64,
    ) -> Result<Bytes, CacheError> {
        if let Some(data) = self.cached(&key, from, (to - from) as usize).await {
            return Ok(data);
        }
        let expected = self.chunk_len(key.index, file_size);
        let (cid, index) = (key.cid.to_string(), key.index);
        let chunk = self.fetch(client, key, expected, None).await?;
        // A fetch joined from another reader was sized by that reader's idea of the file
        // size; if the two disagree, this reader must not slice past what arrived.
        if (chunk.len() as u64) < to {
            return Err(CacheError::ShortChunk {
                cid,
                index,
                expected: to,
                got: chunk.len() as u64,
            });
        }
        Ok(chunk.slice(from as usize..to as usize))
    }

    /// The fetch of a chunk, started if nobody is fetching it yet. Runs as its own task so
    /// a reader that gives up (an interrupted syscall) does not cancel it for the others.
    fn fetch(
        self: &Arc<Self>,
        client: &NodeClient,
        key: ChunkKey,
        expected: u64,
        permit: Option<OwnedSemaphorePermit>,
    ) -> ChunkFetch {
        let mut in_flight = self.lock_in_flight();
        if let Some(running) = in_flight.get(&key) {
            return running.clone();
        }
        let this = self.clone();
        let k = key.clone();
        let client = client.clone();
        let task = tokio::spawn(async move {
            let result = this.fetch_and_store(&client, &k, expected).await;
            this.lock_in_flight().remove(&k);
            drop(permit);
            result
        });
        let shared = async move {
            match task.await {
                Ok(result) => result,
                Err(e) => Err(CacheError::Aborted(e.to_string())),
            }
        }
        .boxed()
        .shared();
        in_flight.insert(key, shared.clone());
        shared
    }

    async fn fetch_and_store(
        self: &Arc<Self>,
        client: &NodeClient,
        key: &ChunkKey,
        expected: u64,
    ) -> Result<Bytes, CacheError> {
        let offset = key.index * self.options.chunk_size;
        let data = self
            .index
            .read(client, &key.cid, offset, expected)
            .await
            .map_err(|source| fetch_error(key, source))?;
        if data.len() as u64 != expected {
            return Err(CacheError::ShortChunk {
                cid: key.cid.to_string(),
                index: key.index,
                expected,
                got: data.len() as u64,
            });
        }
        let this = self.clone();
        let (k, d) = (key.clone(), data.clone());
        let stored = tokio::task::spawn_blocking(move || this.store.insert(k, &d)).await;
        match stored {
            Ok(Ok(())) => {}
            // The data is good even if the disk is not: serve it, just uncached.
            Ok(Err(e)) => warn!(error = %e, "cannot cache chunk"),
            Err(e) => warn!(error = %e, "cannot cache chunk"),
        }
        Ok(data)
    }

    /// Notes this read and, when the file is being read sequentially, starts fetching the
    /// chunks after `last` in the background.
    fn read_ahead(
        self: &Arc<Self>,
        client: &NodeClient,
        cid: &Arc<str>,
        file_size: u64,
        offset: u64,
        end: u64,
        last: u64,
    ) {
        if self.options.readahead_chunks == 0 {
            return;
        }
        let cs = self.options.chunk_size;
        let sequential = {
            let mut streams = self
                .streams
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            // The kernel's read-ahead may reorder requests a little: "near where the last
            // read ended" counts as sequential.
            let sequential = match streams.get(cid) {
                Some(&prev_end) => offset.abs_diff(prev_end) <= cs,
                None => offset == 0,
            };
            streams.put(cid.clone(), end);
            sequential
        };
        if !sequential {
            return;
        }
        let chunks = file_size.div_ceil(cs);
        let upto = chunks.min(last + 1 + u64::from(self.options.readahead_chunks));
        for index in last + 1..upto {
            let key = ChunkKey {
                cid: cid.clone(),
                index,
            };
            if self.store.touch(&key) || self.lock_in_flight().contains_key(&key) {
                continue;
            }
            let Ok(permit) = self.background.clone().try_acquire_owned() else {
                return;
            };
            debug!(cid = %cid, index, "read-ahead");
            // Dropped: the task runs on its own, and readers join it through `in_flight`.
            drop(self.fetch(client, key, self.chunk_len(index, file_size), Some(permit)));
        }
    }

    fn lock_in_flight(&self) -> std::sync::MutexGuard<'_, HashMap<ChunkKey, ChunkFetch>> {
        self.in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn fetch_error(key: &ChunkKey, source: crate::integrity::IntegrityError) -> CacheError {
    match source {
        crate::integrity::IntegrityError::Storage(source) => CacheError::Fetch {
            cid: key.cid.to_string(),
            index: key.index,
            source,
        },
        source => CacheError::Integrity {
            cid: key.cid.to_string(),
            index: key.index,
            source,
        },
    }
}
