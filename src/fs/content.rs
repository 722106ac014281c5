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
use futures::StreamExt;
use futures::stream::BoxStream;

use super::store::{Blob, ContentStore, ContentStream, StoreError};
use crate::format::seal::{self, ContentSalt, PLAIN_CHUNK, SEALED_CHUNK, VersionKey};
use crate::format::{TreeCrypto, TreeKeys};

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
    match blob.salt {
        Some(_) if blob.size > 0 => seal::sealed_len(blob.size),
        _ => blob.size,
    }
}

/// Bytes the node will store for a version of `size` bytes of a tree sealed so.
pub fn stored_len(sealing: &Sealing, size: u64) -> u64 {
    match keys(sealing) {
        Some(_) => seal::sealed_len(size),
        None => size,
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
    Ok(Blob {
        cid,
        size,
        salt: Some(salt),
    })
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
        .map(|(cid, (_, size, salt))| Blob {
            cid,
            size,
            salt: Some(salt),
        })
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

/// Seals a plaintext stream chunk by chunk. A chunk is sealed once the next byte (or the
/// end) is known, since the last chunk is sealed differently. Each chunk is gathered into
/// the buffer it is sealed and sent in: its bytes are copied once.
pub fn seal_stream(
    plain: BoxStream<'static, io::Result<Bytes>>,
    key: Arc<VersionKey>,
) -> BoxStream<'static, io::Result<Bytes>> {
    struct State {
        plain: BoxStream<'static, io::Result<Bytes>>,
        key: Arc<VersionKey>,
        /// The chunk being gathered (room for its tag).
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
        key,
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
                let mut chunk = std::mem::replace(&mut s.chunk, new_chunk());
                let (key, index) = (s.key.clone(), s.index);
                let sealed = tokio::task::spawn_blocking(move || {
                    key.seal_chunk_in_place(index, &mut chunk, last)
                        .map(|()| chunk)
                })
                .await
                .map_err(io::Error::other)?
                .map_err(io::Error::other)?;
                s.index += 1;
                return Ok(Some((Bytes::from(sealed), s)));
            }
            if s.ended {
                return Ok(None);
            }
            match s.plain.next().await {
                // `rest` is empty here: it is only left over when `chunk` is full, and a
                // full chunk with a byte after it was sealed above.
                Some(data) => s.rest = data?,
                None => s.ended = true,
            }
        }
    })
    .boxed()
}

/// Opened chunks kept in memory, so that the kernel's reads of one chunk in pieces open it
/// once. Small: the read cache keeps the sealed chunks on disk.
#[derive(Debug, Default)]
pub struct OpenChunks {
    recent: Mutex<std::collections::VecDeque<((String, u64), Bytes)>>,
}

const OPEN_CHUNKS_KEPT: usize = 16;

impl OpenChunks {
    fn get(&self, cid: &str, index: u64) -> Option<Bytes> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent
            .iter()
            .find(|((c, i), _)| c == cid && *i == index)
            .map(|(_, b)| b.clone())
    }

    fn put(&self, cid: &str, index: u64, plain: Bytes) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() >= OPEN_CHUNKS_KEPT {
            recent.pop_front();
        }
        recent.push_back(((cid.to_owned(), index), plain));
    }
}

/// Up to `len` bytes of `blob`'s content at `offset` (short only at its end).
pub async fn read(
    store: &dyn ContentStore,
    sealing: &Sealing,
    opened: &OpenChunks,
    blob: &Blob,
    offset: u64,
    len: u64,
) -> Result<Bytes, ContentError> {
    let (Some(keys), Some(salt)) = (keys(sealing), &blob.salt) else {
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
    let stored = seal::sealed_len(blob.size);
    let mut out = match first == last {
        true => BytesMut::new(),
        false => BytesMut::with_capacity((end - offset) as usize),
    };
    let mut key = None;
    for index in first..=last {
        let plain = match opened.get(&blob.cid, index) {
            Some(p) => p,
            None => {
                let from = index * SEALED_CHUNK as u64;
                let want = (SEALED_CHUNK as u64).min(stored - from);
                let sealed = store.read(&blob.cid, stored, from, want).await?;
                let key = key.get_or_insert_with(|| Arc::new(VersionKey::new(keys, salt)));
                let is_last = index + 1 == chunks;
                let (k, cid) = (key.clone(), blob.cid.clone());
                let plain = tokio::task::spawn_blocking(move || {
                    k.open_chunk_owned(index, Vec::from(sealed), is_last)
                        .map_err(|e| Tampered(format!("content {cid}: {e}")))
                })
                .await
                .map_err(io::Error::other)??;
                let plain = Bytes::from(plain);
                opened.put(&blob.cid, index, plain.clone());
                plain
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::DataKey;

    fn sealing() -> Sealing {
        Arc::new(TreeCrypto::sealed(&DataKey::from_bytes([7; 32])))
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
        let store = super::super::store::MemoryStore::new();
        let sealing = sealing();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let size = 3 * PLAIN_CHUNK + 10;
        let data: Vec<u8> = (0..size).map(|i| (i % 253) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let blob = add_file(&store, &sealing, &path, size as u64)
            .await
            .unwrap();
        assert_eq!(
            store.get(&blob.cid).unwrap().len() as u64,
            stored_size(&blob)
        );
        let opened = OpenChunks::default();
        for (off, len) in [
            (0u64, 10u64),
            (PLAIN_CHUNK as u64 - 5, 10),
            (0, size as u64),
        ] {
            let got = read(&store, &sealing, &opened, &blob, off, len)
                .await
                .unwrap();
            assert_eq!(&got[..], &data[off as usize..(off + len) as usize]);
        }
        // Flip one byte of chunk 1 on the "node": chunk 0 still reads, chunk 1 does not.
        let mut stored = store.get(&blob.cid).unwrap().to_vec();
        stored[SEALED_CHUNK + 100] ^= 1;
        let forged = store.add_manifest(Bytes::from(stored)).await.unwrap();
        let bad = Blob {
            cid: forged,
            ..blob.clone()
        };
        let fresh = OpenChunks::default();
        assert!(read(&store, &sealing, &fresh, &bad, 0, 100).await.is_ok());
        let err = read(&store, &sealing, &fresh, &bad, PLAIN_CHUNK as u64, 100)
            .await
            .unwrap_err();
        assert!(matches!(err, ContentError::Tampered(_)), "{err}");
    }
}
