//! Uploading a file version as chunks (docs/FORMAT.md §13): the staged file is cut into
//! 128 KiB chunks; an all-zero chunk is a hole (nothing stored); a chunk whose bytes the
//! previous version already stores at the same index is reused by CID and salt, so a small
//! change uploads the chunks it touched and the table's pages. Every other chunk is sealed
//! under its own fresh salt (an encrypted tree) and added.
//!
//! Which chunks are unchanged is known by a digest of their plaintext ([`plain_digest`]),
//! kept in memory for the versions this mount wrote (`ChunkTable::plain`); in a plaintext
//! tree a chunk's CID is computed locally, so it needs no digest. A version whose digests are not
//! known (written before a remount) has every chunk uploaded once more: the next version
//! after that shares again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::Bytes;
use rand::RngCore;

use crate::format::chunks::{self, ChunkRef};
use crate::format::{PageStore, TreeCrypto};
use crate::fs::data::overlay::Overlay;
use crate::fs::data::pages::PageCache;
use crate::fs::store::{Blob, ChunkTable, ContentStore, PlainDigest, StoreError};

/// Chunks added per request: 2 MiB, so requests do not grow with the file, and several
/// are out at once ([`Adds`]).
const CHUNKS_PER_ADD: usize = 16;

/// A version larger than one chunk is stored chunked (§13.1).
pub fn stores_chunked(size: u64) -> bool {
    size > chunks::INLINE_MAX
}

/// A closed version to store: its staged file, size, and overlay if it is one.
pub struct Version<'a> {
    pub path: &'a Path,
    pub size: u64,
    pub overlay: Option<&'a Overlay>,
}

/// Adds `version` as a chunked version, reusing what `base` (the file's previous version on
/// the node) stores unchanged; an overlay version reuses every chunk of its own base it
/// does not hold, unread. The table is updated from the base's (only the pages the changes
/// reach are new) when the base's table is known, else built.
pub async fn add_chunked(
    store: &Arc<dyn ContentStore>,
    crypto: &Arc<TreeCrypto>,
    cache: &PageCache,
    version: Version<'_>,
    base: Option<&Blob>,
) -> Result<Blob, StoreError> {
    let size = version.size;
    // What stays pinned until this version replaces it: the file's version on the node.
    let pinned: HashSet<String> = base
        .map(|b| b.objects().into_iter().map(|(c, _, _)| c).collect())
        .unwrap_or_default();
    // Chunks of an overlay's base that the file's version on the node no longer holds
    // (it changed since the overlay began): pinned again for this version.
    let mut repin: Vec<String> = Vec::new();
    // The table the new one is an update of, and the overlay's view of it.
    let overlay = version.overlay.map(|o| (o.state(), o.base()));
    let base = match &overlay {
        Some((_, b)) => Some(*b),
        None => base,
    }
    .filter(|b| b.chunks.as_ref().is_some_and(|t| t.invalid.is_none()));
    let table = base.and_then(|b| b.chunks.clone());
    let mut refs: BTreeMap<u64, ChunkRef> = BTreeMap::new();
    let mut plain_digests: HashMap<u64, PlainDigest> = HashMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    let mut adds = Adds::new(store.clone());
    let store = &**store;
    let file = Reader::open(version.path)?;
    for index in 0..chunks::chunk_count(size) {
        if let Some((state, _)) = &overlay
            && !state.present.contains(&index)
        {
            // Not written: the base's chunk as it is (below what is left of the base), or
            // a hole (past it).
            if index * chunks::CHUNK < state.base_len
                && let Some(t) = &table
                && let Some(c) = t.chunks.get(&index)
            {
                if !pinned.contains(&c.cid) {
                    repin.push(c.cid.clone());
                }
                refs.insert(index, c.clone());
                if let Some(d) = t.plain.get(&index) {
                    plain_digests.insert(index, *d);
                }
            }
            continue;
        }
        let len = chunks::chunk_len(size, index).unwrap_or(0) as usize;
        let plain = file.read(index * chunks::CHUNK, len)?;
        if chunks::is_hole(&plain) {
            continue;
        }
        let digest = plain_digest(crypto, &plain);
        if let Some(d) = digest {
            plain_digests.insert(index, d);
        }
        if let Some(reused) = unchanged(store, crypto, table.as_deref(), index, &plain, digest) {
            refs.insert(index, reused);
            continue;
        }
        let (salt, object) = seal(crypto, index, plain).await?;
        pending.push((index, salt, object));
        if pending.len() >= CHUNKS_PER_ADD {
            adds.push(&mut pending, &mut refs).await?;
        }
    }
    adds.push(&mut pending, &mut refs).await?;
    adds.finish(&mut refs).await?;
    repin.sort();
    repin.dedup();
    for cid in &repin {
        store.pin(cid).await?;
    }
    let (top, pages) = match (base, &table) {
        (Some(b), Some(t)) => {
            update_table(store, crypto, cache, (&b.cid, t), &refs, &pinned).await?
        }
        _ => build_table(store, crypto, cache, &refs).await?,
    };
    let table = ChunkTable {
        chunks: refs,
        pages,
        invalid: None,
        plain: plain_digests,
    };
    Ok(Blob::chunked(top, size, table))
}

/// A new table of `refs`: its top and pages (all added).
pub(super) async fn build_table(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    refs: &BTreeMap<u64, ChunkRef>,
) -> Result<(String, Vec<(String, u64)>), StoreError> {
    let planned = plan_table(store, crypto, cache, refs)?;
    planned.to_add.add(store, cache, &HashSet::new()).await?;
    Ok((planned.top, planned.pages))
}

/// A table built, as its pages' bytes name it, its pages not added yet.
pub(super) struct PlannedTable<'a> {
    pub top: String,
    /// Each page's CID and size, top first.
    pub pages: Vec<(String, u64)>,
    pub to_add: TablePages<'a>,
}

/// A new table of `refs`, nothing added yet.
pub(super) fn plan_table<'a>(
    store: &'a dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &'a PageCache,
    refs: &BTreeMap<u64, ChunkRef>,
) -> Result<PlannedTable<'a>, StoreError> {
    let mut to_add = TablePages::new(store, cache);
    let top = chunks::build(&mut to_add, crypto, refs.values().cloned().collect())
        .map_err(|e| StoreError::permanent(format!("cannot build a chunk table: {e}")))?;
    let pages = to_add.sizes();
    Ok(PlannedTable { top, pages, to_add })
}

/// `old` (the table at `top`) updated to hold `refs`: the new top and pages; only the pages
/// the old table did not have are added. A page of the old table that is in neither the
/// page cache nor this build is fetched, and the update tried again.
async fn update_table(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    cache: &PageCache,
    (top, old): (&str, &ChunkTable),
    refs: &BTreeMap<u64, ChunkRef>,
    pinned: &HashSet<String>,
) -> Result<(String, Vec<(String, u64)>), StoreError> {
    let mut edits: BTreeMap<u64, Option<ChunkRef>> = BTreeMap::new();
    for (index, c) in &old.chunks {
        if refs.get(index) != Some(c) {
            edits.insert(*index, refs.get(index).cloned());
        }
    }
    for (index, c) in refs {
        if old.chunks.get(index) != Some(c) {
            edits.insert(*index, Some(c.clone()));
        }
    }
    loop {
        let mut pages = TablePages::new(store, cache);
        match chunks::update(&mut pages, crypto, top, edits.clone()) {
            Ok(updated) => {
                let removed: HashSet<&str> = updated.removed.iter().map(String::as_str).collect();
                let mut seen: HashSet<String> = HashSet::new();
                let mut all: Vec<(String, u64)> = Vec::new();
                // Top first, then the rest: what the build put, and the old pages kept.
                for (cid, size) in pages.sizes().into_iter().chain(old.pages.iter().cloned()) {
                    if !removed.contains(cid.as_str()) && seen.insert(cid.clone()) {
                        all.push((cid, size));
                    }
                }
                if let Some(i) = all.iter().position(|(c, _)| *c == updated.top) {
                    all[..=i].rotate_right(1);
                }
                // Pages the version on the node holds stay pinned; the rest are added (a
                // page of an overlay's base that version dropped: added, so pinned again).
                let kept: Vec<String> = old
                    .pages
                    .iter()
                    .map(|(c, _)| c.clone())
                    .filter(|c| !pinned.contains(c) && !removed.contains(c.as_str()))
                    .collect();
                for cid in &kept {
                    store.pin(cid).await?;
                }
                pages.add(store, cache, pinned).await?;
                return Ok((updated.top, all));
            }
            Err(e) => match pages.missing() {
                Some(cid) => {
                    let bytes = store.fetch(&cid).await?;
                    cache.insert(&cid, &bytes);
                }
                None => {
                    return Err(StoreError::permanent(format!(
                        "cannot update a chunk table: {e}"
                    )));
                }
            },
        }
    }
}

/// The previous version's chunk at `index`, if it holds these very bytes.
fn unchanged(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    base: Option<&ChunkTable>,
    index: u64,
    plain: &[u8],
    digest: Option<PlainDigest>,
) -> Option<ChunkRef> {
    let old = base?.chunks.get(&index)?;
    let same = match crypto {
        // A plaintext chunk is its own object: the same bytes have the same CID.
        TreeCrypto::Plain => store.object_cid(plain).as_deref() == Some(old.cid.as_str()),
        TreeCrypto::Sealed(_) => digest.is_some() && base?.plain.get(&index) == digest.as_ref(),
    };
    same.then(|| old.clone())
}

/// What tells a chunk's plaintext from another's in an encrypted tree (`None` in a
/// plaintext tree, whose chunks are known by their CID): GMAC (AES-GCM sealing nothing, with
/// the chunk as associated data) under a key made at random for this process, never stored
/// or shown. Without the key nobody can make two chunks share a digest (the chance is below
/// 2^-110 for chunks of 128 KiB); GHASH costs a fraction of the SHA-256 it replaces, which
/// was a second pass over every byte written besides the sealed chunk's CID.
pub(super) fn plain_digest(crypto: &TreeCrypto, plain: &[u8]) -> Option<PlainDigest> {
    static KEY: std::sync::OnceLock<Aes256Gcm> = std::sync::OnceLock::new();
    let TreeCrypto::Sealed(_) = crypto else {
        return None;
    };
    let gmac = KEY.get_or_init(|| {
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(&mut key[..]);
        Aes256Gcm::new_from_slice(&key[..]).expect("32-byte key")
    });
    let tag = gmac
        .encrypt_inout_detached(&Nonce::default(), plain, (&mut [][..]).into())
        .ok()?;
    Some(tag.into())
}

pub(super) async fn seal(
    crypto: &Arc<TreeCrypto>,
    index: u64,
    plain: Vec<u8>,
) -> Result<(Option<crate::format::seal::ContentSalt>, Bytes), StoreError> {
    let TreeCrypto::Sealed(_) = &**crypto else {
        return Ok((None, Bytes::from(plain)));
    };
    let crypto = crypto.clone();
    // Sealing is CPU work: off the runtime's threads.
    tokio::task::spawn_blocking(move || seal_now(&crypto, index, &plain))
        .await
        .map_err(|e| StoreError::permanent(format!("sealing a chunk: {e}")))?
}

/// Chunk `index`'s object (blocking): sealed under a fresh salt in an encrypted tree, the
/// bytes themselves in a plaintext one.
fn seal_now(
    crypto: &TreeCrypto,
    index: u64,
    plain: &[u8],
) -> Result<(Option<crate::format::seal::ContentSalt>, Bytes), StoreError> {
    match crypto {
        TreeCrypto::Sealed(keys) => chunks::seal_chunk(keys, index, plain)
            .map(|(salt, sealed)| (Some(salt), Bytes::from(sealed)))
            .map_err(|e| StoreError::permanent(e.to_string())),
        _ => Ok((None, Bytes::copy_from_slice(plain))),
    }
}

/// A sealed chunk waiting to be added: its index, salt (encrypted trees) and object.
pub(super) type Pending = (u64, Option<crate::format::seal::ContentSalt>, Bytes);

/// A batch of chunks read and sealed, ready to add, and their plaintext digests.
#[derive(Default)]
pub(super) struct Prepared {
    pub pending: Vec<Pending>,
    pub digests: Vec<(u64, PlainDigest)>,
}

/// Reads chunks `from..to` of a staged file whose bytes end at `end` in one read and seals
/// them (blocking: call it off the runtime); all-zero chunks are holes, left out.
pub(super) fn prepare_batch(
    staged: &crate::fs::data::staged::StagedFile,
    crypto: &TreeCrypto,
    from: u64,
    to: u64,
    end: u64,
) -> Result<Prepared, StoreError> {
    let start = from * chunks::CHUNK;
    let len = (to * chunks::CHUNK).min(end).saturating_sub(start);
    let bytes = staged
        .read_at(start, len as usize)
        .map_err(|e| StoreError::permanent(format!("staged file: {e}")))?;
    if bytes.len() as u64 != len {
        return Err(StoreError::permanent("staged file shorter than written"));
    }
    let mut prepared = Prepared::default();
    for (index, plain) in (from..to).zip(bytes.chunks(chunks::CHUNK as usize)) {
        if chunks::is_hole(plain) {
            continue;
        }
        if let Some(d) = plain_digest(crypto, plain) {
            prepared.digests.push((index, d));
        }
        let (salt, object) = seal_now(crypto, index, plain)?;
        prepared.pending.push((index, salt, object));
    }
    Ok(prepared)
}

/// Batches of chunks being added, at most [`ADDS_IN_FLIGHT`] at once, each a task of its
/// own (it goes on whether or not the caller is waiting for it; dropped, they are
/// aborted). One add at a time leaves the link idle for a round trip (and the node's flush)
/// between batches: over a link 20 ms away, 1 MiB batches one after another used half of
/// 200 Mbit/s. An add that ends frees its place at once, whichever batch it was: adds out
/// together share the link and end in any order, and waiting for the oldest left the link
/// idle while it was the last (issue #34). Their answers are taken in order, and at most
/// [`ADDS_SPAN`] batches are out from the oldest not taken: a request the node holds stops
/// the upload after a few more batches (a version that becomes moot meanwhile has sent
/// little more).
pub(super) struct Adds {
    store: Arc<dyn ContentStore>,
    running: std::collections::VecDeque<Running>,
    /// One per add out; an add's task holds its own until it ends.
    slots: Arc<tokio::sync::Semaphore>,
    /// The plaintext digests of the prepared batches whose adds ended.
    digests: HashMap<u64, PlainDigest>,
}

type BatchResult = Result<(Vec<(u64, ChunkRef)>, Vec<(u64, PlainDigest)>), StoreError>;

/// The references a batch's bytes give (the CIDs the store must name them by), known once
/// it is sealed; `None` when the store cannot tell them beforehand.
type Expected = Option<Vec<(u64, ChunkRef)>>;

/// What a batch's bytes tell once it is sealed, before the node answers: its references
/// ([`Expected`]) and its chunks' plaintext digests.
struct Told {
    refs: Expected,
    digests: Vec<(u64, PlainDigest)>,
}

/// The references and digests of the adds out, as their bytes give them.
pub(super) type Out = (Vec<(u64, ChunkRef)>, Vec<(u64, PlainDigest)>);

/// An add out: its task, and its references as its bytes give them, before the answer.
struct Running {
    task: tokio::task::JoinHandle<BatchResult>,
    expected: Option<tokio::sync::oneshot::Receiver<Told>>,
}

/// The references `expected` names `batch`'s objects by, where it names all.
fn expected_refs(batch: &[Pending], expected: &[Option<String>]) -> Expected {
    batch
        .iter()
        .zip(expected)
        .map(|((index, salt, _), cid)| Some((*index, ChunkRef::new(*index, cid.clone()?, *salt))))
        .collect()
}

/// Chunk adds in flight at once per version being uploaded (24 MiB of 2 MiB live batches).
/// Adds out together share a link and finish together; the next start only as their
/// answers come back, leaving the link idle about a round trip each time: with 6 out that
/// was every 12 MiB of a write over 50 ms / 50 Mbit (issue #34), with 12 it is rarely.
const ADDS_IN_FLIGHT: usize = 12;
/// Batches out from the oldest whose answer is not taken yet, ended or not.
const ADDS_SPAN: usize = 2 * ADDS_IN_FLIGHT;

impl Drop for Adds {
    fn drop(&mut self) {
        for r in &self.running {
            r.task.abort();
        }
    }
}

impl Adds {
    pub(super) fn new(store: Arc<dyn ContentStore>) -> Adds {
        Adds {
            store,
            running: std::collections::VecDeque::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(ADDS_IN_FLIGHT)),
            digests: HashMap::new(),
        }
    }

    /// Like [`Adds::push`], for a batch still to be read and sealed: `prepare` runs on a
    /// blocking thread in the batch's own task, so the batches out are sealed in parallel
    /// and the caller goes on at once (one task reading and sealing chunk after chunk was
    /// what bounded a streamed write).
    pub(super) async fn push_prepared(
        &mut self,
        prepare: impl FnOnce() -> Result<Prepared, StoreError> + Send + 'static,
        refs: &mut BTreeMap<u64, ChunkRef>,
    ) -> Result<Vec<String>, StoreError> {
        let (added, slot) = self.make_room(refs).await?;
        self.spawn_add(slot, |store, tell| async move {
            let named = store.clone();
            let (prepared, expected) = tokio::task::spawn_blocking(move || {
                let prepared = prepare()?;
                let expected = expected_cids(&*named, &prepared.pending);
                Ok::<_, StoreError>((prepared, expected))
            })
            .await
            .map_err(|e| StoreError::permanent(format!("sealing chunks: {e}")))??;
            let _ = tell.send(Told {
                refs: expected_refs(&prepared.pending, &expected),
                digests: prepared.digests.clone(),
            });
            if prepared.pending.is_empty() {
                return Ok((Vec::new(), prepared.digests));
            }
            let refs = add_batch(&*store, prepared.pending, expected).await?;
            Ok((refs, prepared.digests))
        });
        Ok(added)
    }

    /// Starts `add` (given the store and where to tell the references it expects) as a task
    /// of its own, out with the others; the task holds `slot`, its place, until it ends.
    fn spawn_add<F>(
        &mut self,
        slot: tokio::sync::OwnedSemaphorePermit,
        add: impl FnOnce(Arc<dyn ContentStore>, tokio::sync::oneshot::Sender<Told>) -> F,
    ) where
        F: std::future::Future<Output = BatchResult> + Send + 'static,
    {
        let (tell, told) = tokio::sync::oneshot::channel();
        let add = add(self.store.clone(), tell);
        let task = tokio::spawn(async move {
            let r = add.await;
            drop(slot);
            r
        });
        self.running.push_back(Running {
            task,
            expected: Some(told),
        });
    }

    /// A place for one more add: waits for any add out to end while as many as allowed
    /// are out, and for the oldest while the span is full. Takes the answers of the oldest
    /// adds that ended (an error among them ends the upload here); returns the CIDs they
    /// added, now in `refs`, and the place.
    async fn make_room(
        &mut self,
        refs: &mut BTreeMap<u64, ChunkRef>,
    ) -> Result<(Vec<String>, tokio::sync::OwnedSemaphorePermit), StoreError> {
        let mut added = Vec::new();
        while self.running.len() >= ADDS_SPAN {
            added.extend(self.next(refs).await?);
        }
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::permanent("chunk adds closed"))?;
        while self.running.front().is_some_and(|r| r.task.is_finished()) {
            added.extend(self.next(refs).await?);
        }
        Ok((added, slot))
    }

    /// The plaintext digests of the prepared batches added so far.
    pub(super) fn take_digests(&mut self) -> HashMap<u64, PlainDigest> {
        std::mem::take(&mut self.digests)
    }

    /// Starts adding `batch` (taken, leaving it empty), first waiting for a place if as
    /// many as allowed are out ([`Adds::make_room`]). Returns the CIDs of the chunks whose adds
    /// ended, now in `refs`.
    pub(super) async fn push(
        &mut self,
        batch: &mut Vec<Pending>,
        refs: &mut BTreeMap<u64, ChunkRef>,
    ) -> Result<Vec<String>, StoreError> {
        let (added, slot) = self.make_room(refs).await?;
        if !batch.is_empty() {
            let batch = std::mem::take(batch);
            self.spawn_add(slot, |store, tell| async move {
                let expected = expected_cids(&*store, &batch);
                let _ = tell.send(Told {
                    refs: expected_refs(&batch, &expected),
                    digests: Vec::new(),
                });
                Ok((add_batch(&*store, batch, expected).await?, Vec::new()))
            });
        }
        Ok(added)
    }

    /// Waits for every add out; the CIDs they added, now in `refs`.
    pub(super) async fn finish(
        &mut self,
        refs: &mut BTreeMap<u64, ChunkRef>,
    ) -> Result<Vec<String>, StoreError> {
        let mut added = Vec::new();
        while !self.running.is_empty() {
            added.extend(self.next(refs).await?);
        }
        Ok(added)
    }

    /// The references of every add out as their bytes give them, before the node answers
    /// (once each batch is sealed), with their chunks' digests; `None` when the store cannot
    /// tell some beforehand or a batch failed before. An add whose answer names otherwise
    /// fails (`add_batch`). Once.
    pub(super) async fn expected(&mut self) -> Option<Out> {
        let (mut refs, mut digests) = (Vec::new(), Vec::new());
        for r in &mut self.running {
            let told = r.expected.take()?.await.ok()?;
            refs.extend(told.refs?);
            digests.extend(told.digests);
        }
        Some((refs, digests))
    }

    /// Some add is out.
    pub(super) fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Waits for the oldest add out to end (at once when none is); the CIDs it added, now
    /// in `refs`. Cancel-safe: dropped before the end, the add stays out.
    pub(super) async fn next(
        &mut self,
        refs: &mut BTreeMap<u64, ChunkRef>,
    ) -> Result<Vec<String>, StoreError> {
        let Some(oldest) = self.running.front_mut() else {
            return Ok(Vec::new());
        };
        let done = (&mut oldest.task).await;
        self.running.pop_front();
        let done = done.map_err(|e| StoreError::permanent(format!("adding chunks: {e}")))?;
        let (done, digests) = done?;
        self.digests.extend(digests);
        let mut added = Vec::new();
        for (index, r) in done {
            added.push(r.cid.clone());
            refs.insert(index, r);
        }
        Ok(added)
    }
}

/// The CIDs the store must name `batch`'s objects by, where it can tell beforehand: a
/// hash of every byte, so the streamed upload computes them on the blocking thread that
/// sealed the batch, in parallel with the other batches out.
fn expected_cids(store: &dyn ContentStore, batch: &[Pending]) -> Vec<Option<String>> {
    batch
        .iter()
        .map(|(_, _, object)| store.object_cid(object))
        .collect()
}

/// One add request for `batch`: the chunks' references. `expected` holds the CID each
/// object must come back named by ([`expected_cids`]).
async fn add_batch(
    store: &dyn ContentStore,
    batch: Vec<Pending>,
    expected: Vec<Option<String>>,
) -> Result<Vec<(u64, ChunkRef)>, StoreError> {
    let objects: Vec<Bytes> = batch.iter().map(|(_, _, b)| b.clone()).collect();
    let cids = store.add_objects(objects).await?;
    if cids.len() != batch.len() {
        return Err(StoreError::permanent(format!(
            "the node answered an add of {} chunks with {} CIDs",
            batch.len(),
            cids.len()
        )));
    }
    let mut refs = Vec::with_capacity(batch.len());
    for (((index, salt, _), cid), expected) in batch.into_iter().zip(cids).zip(expected) {
        // The node names what it stored; a CID that is not the bytes' is refused here
        // rather than read back as EIO later.
        if expected.is_some_and(|c| c != cid) {
            return Err(StoreError::permanent(format!(
                "the node named chunk {index} by another CID than its bytes give"
            )));
        }
        refs.push((index, ChunkRef::new(index, cid, salt)));
    }
    Ok(refs)
}

/// The staged file, read a chunk at a time (an overlay's only where it is present).
struct Reader {
    file: std::fs::File,
    path: PathBuf,
}

impl Reader {
    fn open(path: &Path) -> Result<Reader, StoreError> {
        let file = std::fs::File::open(path)
            .map_err(|e| StoreError::permanent(format!("{}: {e}", path.display())))?;
        Ok(Reader {
            file,
            path: path.to_path_buf(),
        })
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|e| StoreError::permanent(format!("{}: {e}", self.path.display())))?;
        Ok(buf)
    }
}

/// The pages of a table being built or updated, named as the node will name them; the
/// previous table's pages come from the page cache.
pub(super) struct TablePages<'a> {
    store: &'a dyn ContentStore,
    cache: &'a PageCache,
    pages: Vec<(String, Bytes)>,
    index: HashMap<String, usize>,
    /// A page the update needed that neither it nor the cache has.
    missing: std::sync::Mutex<Option<String>>,
}

impl<'a> TablePages<'a> {
    fn new(store: &'a dyn ContentStore, cache: &'a PageCache) -> Self {
        TablePages {
            store,
            cache,
            pages: Vec::new(),
            index: HashMap::new(),
            missing: std::sync::Mutex::new(None),
        }
    }

    fn missing(&self) -> Option<String> {
        self.missing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    fn sizes(&self) -> Vec<(String, u64)> {
        self.pages
            .iter()
            .map(|(c, b)| (c.clone(), b.len() as u64))
            .collect()
    }

    /// Add the pages put that are not in `had`, checking the CIDs the node gives them.
    pub(super) async fn add(
        self,
        store: &dyn ContentStore,
        cache: &PageCache,
        had: &HashSet<String>,
    ) -> Result<(), StoreError> {
        let new: Vec<(String, Bytes)> = self
            .pages
            .into_iter()
            .filter(|(c, _)| !had.contains(c))
            .collect();
        if new.is_empty() {
            return Ok(());
        }
        let added = store
            .add_objects(new.iter().map(|(_, b)| b.clone()).collect())
            .await?;
        if added.len() != new.len() || added.iter().zip(&new).any(|(a, (c, _))| a != c) {
            return Err(StoreError::permanent(
                "the node named a chunk table page by another CID than its bytes give",
            ));
        }
        for (cid, bytes) in &new {
            cache.insert(cid, bytes);
        }
        Ok(())
    }
}

impl PageStore for TablePages<'_> {
    fn get(&self, cid: &str) -> crate::format::Result<Vec<u8>> {
        if let Some(i) = self.index.get(cid) {
            return Ok(self.pages[*i].1.to_vec());
        }
        if let Some(b) = self.cache.get(cid) {
            return Ok(b.to_vec());
        }
        *self.missing.lock().unwrap_or_else(|e| e.into_inner()) = Some(cid.to_owned());
        Err(crate::format::FormatError::Store(format!(
            "{cid} not in the page cache"
        )))
    }

    fn put(&mut self, bytes: Vec<u8>) -> crate::format::Result<String> {
        let cid = self.store.object_cid(&bytes).ok_or_else(|| {
            crate::format::FormatError::Store("a table page larger than one block".into())
        })?;
        if !self.index.contains_key(&cid) {
            let bytes = Bytes::from(bytes);
            // At hand from now on, before the node has it: a commit holding the version while
            // its table's add is out counts the new tree from its pages (`persist/history.rs`).
            self.cache.insert(&cid, &bytes);
            self.index.insert(cid.clone(), self.pages.len());
            self.pages.push((cid.clone(), bytes));
        }
        Ok(cid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DataKey;

    /// Pushes one-chunk batches 0, 1, … until a push waits (half a second); how many went
    /// out, and the batch that waits.
    async fn push_until_one_waits(
        adds: &mut Adds,
        refs: &mut BTreeMap<u64, ChunkRef>,
    ) -> (usize, Vec<Pending>) {
        for i in 0.. {
            let mut batch = vec![(i, None, batch_object(i))];
            let push = adds.push(&mut batch, refs);
            match tokio::time::timeout(std::time::Duration::from_millis(500), push).await {
                Ok(r) => assert!(r.is_ok(), "push {i}: {r:?}"),
                Err(_) => return (i as usize, batch),
            }
        }
        unreachable!()
    }

    fn batch_object(i: u64) -> Bytes {
        Bytes::from(format!("chunk {i}"))
    }

    #[tokio::test]
    async fn adds_out_at_once_stay_within_the_window() {
        let mem = Arc::new(crate::fs::store::MemoryStore::new());
        mem.hold_adds_of((0..64).map(batch_object).collect());
        let mut adds = Adds::new(mem.clone());
        let mut refs = BTreeMap::new();
        let (out, mut waiting) = push_until_one_waits(&mut adds, &mut refs).await;
        assert_eq!(
            out, ADDS_IN_FLIGHT,
            "the node answers none: the window fills"
        );
        mem.release_held();
        adds.push(&mut waiting, &mut refs).await.unwrap();
        adds.finish(&mut refs).await.unwrap();
        assert_eq!(
            refs.len(),
            ADDS_IN_FLIGHT + 1,
            "every batch added: {refs:?}"
        );
    }

    #[tokio::test]
    async fn an_add_that_ends_frees_its_place_though_an_older_one_is_held() {
        // The node sits on the first batch and answers the rest at once: the upload goes
        // on past the window (the link kept busy), up to the span from the held one.
        let mem = Arc::new(crate::fs::store::MemoryStore::new());
        mem.hold_adds_of(vec![batch_object(0)]);
        let mut adds = Adds::new(mem.clone());
        let mut refs = BTreeMap::new();
        let (out, mut waiting) = push_until_one_waits(&mut adds, &mut refs).await;
        assert_eq!(out, ADDS_SPAN, "batches out from the held one");
        assert!(refs.is_empty(), "answers are taken in order: {refs:?}");
        mem.release_held();
        adds.push(&mut waiting, &mut refs).await.unwrap();
        adds.finish(&mut refs).await.unwrap();
        assert_eq!(refs.len(), ADDS_SPAN + 1, "every batch added: {refs:?}");
        for (i, r) in &refs {
            assert_eq!(Some(&r.cid), mem.object_cid(&batch_object(*i)).as_ref());
        }
    }

    #[test]
    fn plain_digests_tell_chunks_apart_in_encrypted_trees_only() {
        let sealed = TreeCrypto::sealed(&DataKey::random());
        let chunk: Vec<u8> = (0..chunks::CHUNK as u32).map(|i| (i % 251) as u8).collect();
        let d = plain_digest(&sealed, &chunk).expect("an encrypted tree's digest");
        assert_eq!(plain_digest(&sealed, &chunk.clone()), Some(d), "same bytes");
        let mut other = chunk.clone();
        other[4_000] ^= 1;
        assert_ne!(plain_digest(&sealed, &other), Some(d), "one bit apart");
        assert_ne!(plain_digest(&sealed, &chunk[..100]), Some(d), "a prefix");
        // Another tree's key does not matter: the digest's key is this process's.
        let again = TreeCrypto::sealed(&DataKey::random());
        assert_eq!(plain_digest(&again, &chunk), Some(d));
        assert_eq!(plain_digest(&TreeCrypto::Plain, &chunk), None);
    }
}
