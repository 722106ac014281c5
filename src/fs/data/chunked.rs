//! Uploading a file version as chunks (docs/FORMAT.md §13): the staged file is cut into
//! 128 KiB chunks; an all-zero chunk is a hole (nothing stored); a chunk whose bytes the
//! previous version already stores at the same index is reused by CID and salt, so a small
//! change uploads the chunks it touched and the table's pages. Every other chunk is sealed
//! under its own fresh salt (an encrypted tree) and added.
//!
//! Which chunks are unchanged is known by their plaintext's SHA-256, kept in memory for the
//! versions this mount wrote or read back (`ChunkTable::plain`); in a plaintext tree a
//! chunk's CID is computed locally, so it needs no digest. A version whose digests are not
//! known (written before a remount) has every chunk uploaded once more: the next version
//! after that shares again.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::format::chunks::{self, ChunkRef};
use crate::format::{PageStore, TreeCrypto};
use crate::fs::store::{Blob, ChunkTable, ContentStore, StoreError};

/// Chunks added per request: 8 MiB, so requests do not grow with the file.
const CHUNKS_PER_ADD: usize = 64;

/// A version larger than one chunk is stored chunked (§13.1).
pub fn stores_chunked(size: u64) -> bool {
    size > chunks::INLINE_MAX
}

/// Adds the staged file `path` of `size` bytes as a chunked version, reusing what `base` (the
/// file's previous version on the node) stores unchanged.
pub async fn add_chunked(
    store: &dyn ContentStore,
    crypto: &Arc<TreeCrypto>,
    path: &Path,
    size: u64,
    base: Option<&Blob>,
) -> Result<Blob, StoreError> {
    let base = base.and_then(|b| b.chunks.clone());
    let mut refs: BTreeMap<u64, ChunkRef> = BTreeMap::new();
    let mut plain_digests: HashMap<u64, [u8; 32]> = HashMap::new();
    let mut pending: Vec<(u64, Option<crate::format::seal::ContentSalt>, Bytes)> = Vec::new();
    let mut file = Reader::open(path)?;
    for index in 0..chunks::chunk_count(size) {
        let len = chunks::chunk_len(size, index).unwrap_or(0) as usize;
        let plain = file.next(len)?;
        if chunks::is_hole(&plain) {
            continue;
        }
        let digest: [u8; 32] = Sha256::digest(&plain).into();
        plain_digests.insert(index, digest);
        if let Some(reused) = unchanged(store, crypto, base.as_deref(), index, &plain, &digest) {
            refs.insert(index, reused);
            continue;
        }
        let (salt, object) = seal(crypto, index, plain).await?;
        pending.push((index, salt, object));
        if pending.len() >= CHUNKS_PER_ADD {
            add_pending(store, &mut pending, &mut refs).await?;
        }
    }
    add_pending(store, &mut pending, &mut refs).await?;
    let mut pages = TablePages::new(store);
    let top = chunks::build(&mut pages, crypto, refs.values().cloned().collect())
        .map_err(|e| StoreError::permanent(format!("cannot build a chunk table: {e}")))?;
    let page_sizes: Vec<(String, u64)> = pages
        .pages
        .iter()
        .map(|(c, b)| (c.clone(), b.len() as u64))
        .collect();
    let added = store
        .add_objects(pages.pages.into_iter().map(|(_, b)| b).collect())
        .await?;
    if added.iter().zip(&page_sizes).any(|(a, (c, _))| a != c) {
        return Err(StoreError::permanent(
            "the node named a chunk table page by another CID than its bytes give",
        ));
    }
    Ok(Blob {
        cid: top,
        size,
        salt: None,
        chunks: Some(Arc::new(ChunkTable {
            chunks: refs,
            pages: page_sizes,
            invalid: None,
            plain: plain_digests,
        })),
    })
}

/// The previous version's chunk at `index`, if it holds these very bytes.
fn unchanged(
    store: &dyn ContentStore,
    crypto: &TreeCrypto,
    base: Option<&ChunkTable>,
    index: u64,
    plain: &[u8],
    digest: &[u8; 32],
) -> Option<ChunkRef> {
    let old = base?.chunks.get(&index)?;
    let same = match crypto {
        // A plaintext chunk is its own object: the same bytes have the same CID.
        TreeCrypto::Plain => store.object_cid(plain).as_deref() == Some(old.cid.as_str()),
        TreeCrypto::Sealed(_) => base?.plain.get(&index) == Some(digest),
    };
    same.then(|| old.clone())
}

async fn seal(
    crypto: &Arc<TreeCrypto>,
    index: u64,
    plain: Vec<u8>,
) -> Result<(Option<crate::format::seal::ContentSalt>, Bytes), StoreError> {
    let TreeCrypto::Sealed(_) = &**crypto else {
        return Ok((None, Bytes::from(plain)));
    };
    let crypto = crypto.clone();
    // Sealing is CPU work: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        let TreeCrypto::Sealed(keys) = &*crypto else {
            return Err(StoreError::permanent("the tree has no keys"));
        };
        chunks::seal_chunk(keys, index, &plain)
            .map(|(salt, sealed)| (Some(salt), Bytes::from(sealed)))
            .map_err(|e| StoreError::permanent(e.to_string()))
    })
    .await
    .map_err(|e| StoreError::permanent(format!("sealing a chunk: {e}")))?
}

async fn add_pending(
    store: &dyn ContentStore,
    pending: &mut Vec<(u64, Option<crate::format::seal::ContentSalt>, Bytes)>,
    refs: &mut BTreeMap<u64, ChunkRef>,
) -> Result<(), StoreError> {
    if pending.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(pending);
    let objects: Vec<Bytes> = batch.iter().map(|(_, _, b)| b.clone()).collect();
    let cids = store.add_objects(objects).await?;
    if cids.len() != batch.len() {
        return Err(StoreError::permanent(format!(
            "the node answered an add of {} chunks with {} CIDs",
            batch.len(),
            cids.len()
        )));
    }
    for ((index, salt, object), cid) in batch.into_iter().zip(cids) {
        // The node names what it stored; a CID that is not the bytes' is refused here
        // rather than read back as EIO later.
        if store.object_cid(&object).is_some_and(|c| c != cid) {
            return Err(StoreError::permanent(format!(
                "the node named chunk {index} by another CID than its bytes give"
            )));
        }
        refs.insert(index, ChunkRef::new(index, cid, salt));
    }
    Ok(())
}

/// The staged file, read one chunk at a time.
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

    fn next(&mut self, len: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact(&mut buf)
            .map_err(|e| StoreError::permanent(format!("{}: {e}", self.path.display())))?;
        Ok(buf)
    }
}

/// The pages of a table being built, named as the node will name them.
struct TablePages<'a> {
    store: &'a dyn ContentStore,
    pages: Vec<(String, Bytes)>,
    index: HashMap<String, usize>,
}

impl<'a> TablePages<'a> {
    fn new(store: &'a dyn ContentStore) -> Self {
        TablePages {
            store,
            pages: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl PageStore for TablePages<'_> {
    fn get(&self, cid: &str) -> crate::format::Result<Vec<u8>> {
        self.index
            .get(cid)
            .map(|i| self.pages[*i].1.to_vec())
            .ok_or_else(|| crate::format::FormatError::Store(format!("{cid} not built here")))
    }

    fn put(&mut self, bytes: Vec<u8>) -> crate::format::Result<String> {
        let cid = self.store.object_cid(&bytes).ok_or_else(|| {
            crate::format::FormatError::Store("a table page larger than one block".into())
        })?;
        if !self.index.contains_key(&cid) {
            self.index.insert(cid.clone(), self.pages.len());
            self.pages.push((cid.clone(), Bytes::from(bytes)));
        }
        Ok(cid)
    }
}
