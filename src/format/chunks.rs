//! Chunked content (FORMAT.md §13): a file version as a table of independently stored
//! chunks, so a new version reuses every chunk it did not touch. The table is paged exactly
//! like a directory (§5, `pxfs/chunks/3`), keyed by the chunk index's 8 bytes big-endian;
//! an index the table does not hold is a hole (zeros, no object). In an encrypted tree each
//! chunk is sealed under its own key (a fresh random salt per sealing), with its index and
//! length as associated data; the salt and the chunk's CID live in the sealed table page.

use std::collections::BTreeMap;
use std::ops::Range;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};

use super::canonical::{b64_array, b64_encode};
use super::envelope::{Indexer, Resolver};
use super::keys::{TreeCrypto, TreeKeys, hkdf32};
use super::page::{Record, WireItem};
use super::seal::{ContentSalt, TAG};
use super::store::PageStore;
use super::{FormatError, Result, SCHEMA_CHUNKS, prolly};

/// Plaintext bytes per chunk: 128 KiB. A power of two, so an aligned write of any
/// power-of-two size up to it (4 KiB pages, 16 KiB database pages, 64 KiB image clusters)
/// touches one chunk; sealed (+16) it is still one raw block (≤ 262,144 bytes, §1.1).
pub const CHUNK: u64 = 131_072;
/// Stored bytes of a full sealed chunk.
pub const SEALED_CHUNK: u64 = CHUNK + TAG as u64;
/// A file of at most this many bytes keeps the v2 form (§6.2: one object, `content`);
/// larger files are chunked.
pub const INLINE_MAX: u64 = CHUNK;

/// HKDF info of a chunk key, and the prefix of a chunk's associated data.
const LABEL: &[u8] = b"pxfs/3 chunk";

/// Chunks of a `size`-byte file (holes included).
pub fn chunk_count(size: u64) -> u64 {
    size.div_ceil(CHUNK)
}

/// Plaintext length of chunk `index` of a `size`-byte file (`None` past the end): every
/// chunk is [`CHUNK`] bytes but the last.
pub fn chunk_len(size: u64, index: u64) -> Option<u64> {
    let start = index.checked_mul(CHUNK)?;
    (start < size).then(|| (size - start).min(CHUNK))
}

/// The chunks a byte range touches (empty for an empty range).
pub fn chunks_touched(offset: u64, len: u64) -> Range<u64> {
    if len == 0 {
        return 0..0;
    }
    let end = offset.saturating_add(len);
    offset / CHUNK..end.div_ceil(CHUNK)
}

/// An all-zero chunk is a hole: it is not stored and the table holds no item for it.
pub fn is_hole(plain: &[u8]) -> bool {
    plain.iter().all(|b| *b == 0)
}

/// One stored chunk of a file version: its index, its object, and in an encrypted tree the
/// salt it was sealed with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    at: [u8; 8],
    pub cid: String,
    pub salt: Option<ContentSalt>,
}

impl ChunkRef {
    pub fn new(index: u64, cid: String, salt: Option<ContentSalt>) -> ChunkRef {
        ChunkRef {
            at: index.to_be_bytes(),
            cid,
            salt,
        }
    }

    pub fn index(&self) -> u64 {
        u64::from_be_bytes(self.at)
    }
}

/// A chunk item as written: `{"i":INDEX,"content":I,"key":BASE64?}`.
#[doc(hidden)]
#[derive(Serialize, Deserialize)]
pub struct WireChunk {
    i: u64,
    content: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// A chunk or history table of at most 64 items and 16,384 bytes of them is one leaf
/// (§13.2, §14.1): a commit rewrites the leaf it changes, so leaves stay small.
pub const SMALL_TABLE_ENTRIES: usize = 64;
pub const SMALL_TABLE_BYTES: usize = 16_384;

impl Record for ChunkRef {
    const SCHEMA: &'static str = SCHEMA_CHUNKS;
    type Wire = WireChunk;
    const SMALL_ENTRIES: usize = SMALL_TABLE_ENTRIES;
    const SMALL_BYTES: usize = SMALL_TABLE_BYTES;
    fn key(&self) -> &[u8] {
        &self.at
    }
    fn is_unknown(&self) -> bool {
        false
    }
    fn refs<'a>(&'a self, _nodes: &mut Vec<&'a str>, data: &mut Vec<&'a str>) {
        data.push(&self.cid);
    }
    fn to_wire(&self, ix: &Indexer) -> WireChunk {
        WireChunk {
            i: self.index(),
            content: ix.data(&self.cid),
            key: self.salt.map(|s| b64_encode(&s.0)),
        }
    }
    fn from_wire(w: WireChunk, res: &mut Resolver) -> Result<ChunkRef> {
        let salt = match (w.key, res.sealed()) {
            (Some(k), true) => Some(ContentSalt(b64_array::<32>(&k, "key")?)),
            (None, false) => None,
            (None, true) => {
                return Err(FormatError::invalid(format!(
                    "chunk {} of an encrypted tree has no \"key\"",
                    w.i
                )));
            }
            (Some(_), false) => {
                return Err(FormatError::invalid(format!(
                    "chunk {} of a plaintext tree has a \"key\"",
                    w.i
                )));
            }
        };
        Ok(ChunkRef::new(w.i, res.data(w.content)?, salt))
    }
    fn key_to_item(key: &[u8], item: &mut WireItem) {
        item.set_first(hex::encode(key));
    }
    fn key_from_item(item: &mut WireItem) -> Result<Vec<u8>> {
        let first = item.take_first()?;
        super::keys::parse_hex16(&first)
            .map(|k| k.to_vec())
            .ok_or_else(|| {
                FormatError::invalid(format!(
                    "chunk table key {first:?} is not 16 lowercase hex digits"
                ))
            })
    }
}

/// Builds a chunk table from its stored chunks (any order; holes are simply absent) and
/// returns its top's CID. A file of holes only has the empty leaf as its table.
pub fn build(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    mut chunks: Vec<ChunkRef>,
) -> Result<String> {
    chunks.sort_by_key(ChunkRef::index);
    prolly::build(store, crypto, chunks)
}

/// The chunk at `index`: `None` is a hole.
pub fn lookup(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
    index: u64,
) -> Result<Option<ChunkRef>> {
    prolly::lookup(store, crypto, top, &index.to_be_bytes())
}

/// Every stored chunk of a table, by index, checked against the file's size: an index at
/// or past `chunk_count(size)` is refused (a node cannot lengthen a file through it).
pub fn chunks(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
    size: u64,
) -> Result<Vec<ChunkRef>> {
    let all: Vec<ChunkRef> = prolly::records(store, crypto, top)?;
    if let Some(c) = all.last().filter(|c| c.index() >= chunk_count(size)) {
        return Err(FormatError::invalid(format!(
            "chunk table holds chunk {} of a {size}-byte file",
            c.index()
        )));
    }
    Ok(all)
}

/// A new version's table: `edits` maps a chunk index to its new chunk, or to `None` when it
/// became a hole or was cut off by a truncate. Rewrites only the pages the edits reach.
pub fn update(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
    edits: BTreeMap<u64, Option<ChunkRef>>,
) -> Result<prolly::Updated> {
    let edits = edits
        .into_iter()
        .map(|(i, c)| (i.to_be_bytes().to_vec(), c))
        .collect();
    prolly::update_tracked(store, crypto, top, edits)
}

/// `aad = "pxfs/3 chunk" ‖ index (8 bytes BE) ‖ plaintext length (8 bytes BE)`.
fn aad(index: u64, len: u64) -> [u8; 28] {
    let mut a = [0u8; 28];
    a[..12].copy_from_slice(LABEL);
    a[12..20].copy_from_slice(&index.to_be_bytes());
    a[20..].copy_from_slice(&len.to_be_bytes());
    a
}

/// `HKDF-SHA-256(K_content, chunk salt, "pxfs/3 chunk")`: a key that seals one plaintext.
fn chunk_cipher(keys: &TreeKeys, salt: &ContentSalt) -> Aes256Gcm {
    let k = hkdf32(keys.content.as_ref(), &salt.0, LABEL);
    Aes256Gcm::new_from_slice(k.as_ref()).expect("32-byte key")
}

/// Seals chunk `index` (1–[`CHUNK`] bytes) under a fresh random salt: `(salt, sealed)`.
/// Every call draws a new salt, so no key ever seals two plaintexts, retries included.
pub fn seal_chunk(keys: &TreeKeys, index: u64, plain: &[u8]) -> Result<(ContentSalt, Vec<u8>)> {
    let salt = ContentSalt::random();
    Ok((salt, seal_chunk_with(keys, &salt, index, plain)?))
}

/// [`seal_chunk`] with a given salt: for test vectors only (a salt must never be reused).
pub fn seal_chunk_with(
    keys: &TreeKeys,
    salt: &ContentSalt,
    index: u64,
    plain: &[u8],
) -> Result<Vec<u8>> {
    if plain.is_empty() || plain.len() as u64 > CHUNK {
        return Err(FormatError::invalid(format!(
            "chunk {index} has {} bytes (1–{CHUNK})",
            plain.len()
        )));
    }
    let a = aad(index, plain.len() as u64);
    chunk_cipher(keys, salt)
        .encrypt(
            &Nonce::default(),
            Payload {
                msg: plain,
                aad: &a,
            },
        )
        .map_err(|_| FormatError::invalid("AES-GCM refused to seal a chunk"))
}

/// Opens chunk `index` of a `size`-byte file with the salt its table item holds. Refuses a
/// chunk of the wrong length for its place, one moved from another index, or altered.
pub fn open_chunk(
    keys: &TreeKeys,
    salt: &ContentSalt,
    index: u64,
    size: u64,
    sealed: &[u8],
) -> Result<Vec<u8>> {
    let len = expected_len(index, size)?;
    if sealed.len() as u64 != len + TAG as u64 {
        return Err(FormatError::Tampered(format!(
            "chunk {index} ({} bytes stored, {len} expected in clear)",
            sealed.len()
        )));
    }
    let a = aad(index, len);
    chunk_cipher(keys, salt)
        .decrypt(
            &Nonce::default(),
            Payload {
                msg: sealed,
                aad: &a,
            },
        )
        .map_err(|_| FormatError::Tampered(format!("chunk {index}")))
}

/// A plaintext tree's chunk as stored: its length must be the one its place gives.
pub fn open_plain_chunk(index: u64, size: u64, stored: Vec<u8>) -> Result<Vec<u8>> {
    let len = expected_len(index, size)?;
    if stored.len() as u64 != len {
        return Err(FormatError::Tampered(format!(
            "chunk {index} ({} bytes stored, {len} expected)",
            stored.len()
        )));
    }
    Ok(stored)
}

fn expected_len(index: u64, size: u64) -> Result<u64> {
    chunk_len(size, index).ok_or_else(|| {
        FormatError::invalid(format!(
            "chunk {index} is past the end of a {size}-byte file"
        ))
    })
}

#[cfg(test)]
mod tests;
