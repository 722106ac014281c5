//! Content addressing (docs/FORMAT.md §1.1, §3.1): every block a node returns is checked
//! against the CID it was asked for before anything uses it, in the mount (pages, root
//! nodes, manifests, file content), in the oracle and wherever a usage document is read.
//! A block whose SHA2-256 does not match its CID is refused: the reader gets an error
//! (`EIO` through the mount), the CID is logged at `warn`, and the process-wide count
//! ([`corrupt_blocks`]) is shown by `pxfs status`.
//!
//! How blocks are fetched so that checking costs little: a raw block (`bafk…`, every object
//! of at most 256 KiB and every leaf of a larger one) is fetched with `block/get` and hashed
//! once; a DAG (`bafy…`) has its dag-pb nodes fetched the same way (checked, then decoded for
//! their links and `blocksizes`), and a ranged read descends from the root to the leaves
//! that cover the range and fetches only those ([`ContentIndex`]), so a read of one 256 KiB
//! chunk is one request for one leaf, as a `cat` of that range was.
//!
//! A node without `block/get` (PollinationX's hosted gateway passes only `add`, `cat` and
//! `get`): a raw block comes from `cat` (a raw CID's `cat` is its block); a whole DAG object
//! is fetched with `cat` and its CID recomputed from the bytes with the importer's own
//! layout; a ranged read of a DAG cannot be checked there and is served as `cat` returns it,
//! with one warning per process (docs/threat-model.md).

pub mod dagpb;
mod index;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use ipld_core::cid::Cid;
use sha2::{Digest, Sha256};

use crate::storage::{NodeClient, StorageError};

pub use index::ContentIndex;

pub const RAW_CODEC: u64 = 0x55;
pub const DAG_PB_CODEC: u64 = 0x70;
pub const SHA2_256: u64 = 0x12;
/// Deeper content DAGs than this are refused (Kubo's balanced layout needs 4 levels for
/// petabytes), so a DAG that links back to itself through a lying node ends in an error.
pub const MAX_DAG_DEPTH: u32 = 32;
/// The importer's leaf size (docs/FORMAT.md §1.1).
const LEAF_SIZE: usize = 262_144;

static CORRUPT_BLOCKS: AtomicU64 = AtomicU64::new(0);
static UNCHECKED_WARNED: AtomicBool = AtomicBool::new(false);

/// Blocks refused by this process because their bytes did not match their CID.
pub fn corrupt_blocks() -> u64 {
    CORRUPT_BLOCKS.load(Ordering::Relaxed)
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum IntegrityError {
    /// The node returned bytes that do not hash to the CID asked for.
    #[error("the node returned a block that does not match its CID {cid}")]
    Corrupt { cid: String },
    /// Not a CID pxfs reads, or a DAG that does not decode or nest as a file's should.
    #[error("object {cid}: {reason}")]
    Invalid { cid: String, reason: String },
    #[error("object {cid} is larger than {limit} bytes")]
    TooLarge { cid: String, limit: u64 },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl IntegrityError {
    /// Worth trying again: the node did not answer, it did not lie.
    pub fn is_transient(&self) -> bool {
        matches!(self, IntegrityError::Storage(e) if e.is_transient())
    }

    fn invalid(cid: &Cid, reason: impl Into<String>) -> IntegrityError {
        IntegrityError::Invalid {
            cid: cid.to_string(),
            reason: reason.into(),
        }
    }
}

/// Parses a CID a document or the node gave.
pub fn parse(cid: &str) -> Result<Cid, IntegrityError> {
    cid.parse().map_err(|e| IntegrityError::Invalid {
        cid: cid.chars().take(128).collect(),
        reason: format!("not a CID: {e}"),
    })
}

/// Checks `data` against `cid`'s multihash (SHA2-256 only: what pxfs and Kubo write).
pub fn check(cid: &Cid, data: &[u8]) -> Result<(), IntegrityError> {
    let hash = cid.hash();
    if hash.code() != SHA2_256 {
        return Err(IntegrityError::invalid(
            cid,
            format!(
                "unsupported multihash 0x{:x} (pxfs uses sha2-256)",
                hash.code()
            ),
        ));
    }
    if Sha256::digest(data).as_slice() != hash.digest() {
        corrupt(cid, data.len());
        return Err(IntegrityError::Corrupt {
            cid: cid.to_string(),
        });
    }
    Ok(())
}

/// Whether `data` is the block `cid` (a CID's text) names, without counting or logging a
/// mismatch: for bytes whose reader fetches the block alone, checked, when they are not.
pub fn names(cid: &str, data: &[u8]) -> bool {
    cid.parse::<Cid>()
        .is_ok_and(|cid| crate::storage::cid::names_block(&cid, data))
}

fn corrupt(cid: &Cid, len: usize) {
    CORRUPT_BLOCKS.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        cid = %cid,
        len,
        "refused a block from the node: its bytes do not match its CID (altered, damaged or substituted)"
    );
}

/// The node answered that it does not offer the call (a hosted gateway).
fn no_block_api(e: &StorageError) -> bool {
    matches!(
        e,
        StorageError::Unsupported { .. }
            | StorageError::Node {
                status: 404 | 405 | 501,
                ..
            }
    )
}

fn warn_unchecked(cid: &Cid) {
    if !UNCHECKED_WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            cid = %cid,
            "the node does not offer block/get: ranged reads of files over 256 KiB cannot be \
             checked against their CIDs on it (encrypted content is still authenticated)"
        );
    }
}

/// One block, fetched and checked against its CID.
pub async fn block(client: &NodeClient, cid: &Cid) -> Result<Bytes, IntegrityError> {
    let data = block_unchecked(client, cid).await?;
    check(cid, &data)?;
    Ok(data)
}

/// A sealed chunk's bytes that did not open (their reader authenticates them instead of
/// hashing, `ContentIndex::read_sealed`): counted and logged as a block refused.
pub fn refused(cid: &str, len: usize) {
    CORRUPT_BLOCKS.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(
        cid,
        len,
        "refused a chunk from the node: its bytes do not open under its key (altered, damaged or substituted)"
    );
}

/// One block as the node gives it, not checked: for a caller that authenticates it.
pub(crate) async fn block_unchecked(
    client: &NodeClient,
    cid: &Cid,
) -> Result<Bytes, IntegrityError> {
    let text = cid.to_string();
    // PollinationX's hosted gateway passes only `add`, `cat` and `get`: not asked.
    let asked = if client.is_hosted() {
        Err(StorageError::Unsupported {
            path: "block/get".into(),
            status: 404,
        })
    } else {
        client.block_get(&text).await
    };
    let data = match asked {
        Ok(data) => data,
        // A raw CID's `cat` is its block.
        Err(e) if no_block_api(&e) && cid.codec() == RAW_CODEC => {
            client.cat(&text, 0, None).await?
        }
        Err(e) => return Err(e.into()),
    };
    Ok(data)
}

/// The whole bytes of the object `cid` (a page, a manifest, a usage document), every block
/// checked against its CID; at most `limit` bytes.
pub async fn object(client: &NodeClient, cid: &str, limit: u64) -> Result<Bytes, IntegrityError> {
    let cid = parse(cid)?;
    match cid.codec() {
        RAW_CODEC => {
            let data = block(client, &cid).await?;
            if data.len() as u64 > limit {
                return Err(IntegrityError::TooLarge {
                    cid: cid.to_string(),
                    limit,
                });
            }
            Ok(data)
        }
        DAG_PB_CODEC => {
            let mut out = Vec::new();
            match dag_object(client, &cid, 0, limit, &mut out).await {
                Ok(()) => Ok(Bytes::from(out)),
                Err(IntegrityError::Storage(e)) if no_block_api(&e) => {
                    object_by_cat(client, &cid, limit).await
                }
                Err(e) => Err(e),
            }
        }
        other => Err(IntegrityError::invalid(
            &cid,
            format!("codec 0x{other:x} is not a pxfs object (raw or dag-pb)"),
        )),
    }
}

fn dag_object<'a>(
    client: &'a NodeClient,
    cid: &'a Cid,
    depth: u32,
    limit: u64,
    out: &'a mut Vec<u8>,
) -> futures::future::BoxFuture<'a, Result<(), IntegrityError>> {
    Box::pin(async move {
        if depth > MAX_DAG_DEPTH {
            return Err(IntegrityError::invalid(
                cid,
                "the DAG is deeper than pxfs allows",
            ));
        }
        let data = block(client, cid).await?;
        let piece = match cid.codec() {
            RAW_CODEC => data,
            DAG_PB_CODEC => {
                let node =
                    dagpb::FileNode::decode(&data).map_err(|r| IntegrityError::invalid(cid, r))?;
                out.extend_from_slice(&node.data);
                for link in &node.links {
                    dag_object(client, link, depth + 1, limit, out).await?;
                }
                Bytes::new()
            }
            other => {
                return Err(IntegrityError::invalid(
                    cid,
                    format!("codec 0x{other:x} in a file DAG"),
                ));
            }
        };
        out.extend_from_slice(&piece);
        if out.len() as u64 > limit {
            return Err(IntegrityError::TooLarge {
                cid: cid.to_string(),
                limit,
            });
        }
        Ok(())
    })
}

/// A whole DAG object from a node without `block/get`: fetched with `cat`, then its CID
/// recomputed with the importer pxfs's own node uses (Kubo's layout) and compared.
async fn object_by_cat(
    client: &NodeClient,
    cid: &Cid,
    limit: u64,
) -> Result<Bytes, IntegrityError> {
    let text = cid.to_string();
    let data = client.cat(&text, 0, Some(limit.saturating_add(1))).await?;
    if data.len() as u64 > limit {
        return Err(IntegrityError::TooLarge { cid: text, limit });
    }
    let bytes = data.clone();
    let computed = tokio::task::spawn_blocking(move || import_cid(&bytes))
        .await
        .map_err(|e| IntegrityError::invalid(cid, e.to_string()))?;
    if computed != Some(*cid) {
        corrupt(cid, data.len());
        return Err(IntegrityError::Corrupt { cid: text });
    }
    Ok(data)
}

/// The CID `add` with `cid-version=1`, `raw-leaves=true`, `chunker=size-262144` gives
/// `bytes`.
pub fn import_cid(bytes: &[u8]) -> Option<Cid> {
    use rust_ipfs::unixfs::ll::file::adder::{Chunker, FileAdder};
    let mut adder = FileAdder::builder()
        .with_chunker(Chunker::Size(LEAF_SIZE))
        .with_cid_version(ipld_core::cid::Version::V1)
        .with_raw_leaves(true)
        .build();
    let mut last = None;
    let mut consumed = 0;
    while consumed < bytes.len() {
        let (ready, used) = adder.push(&bytes[consumed..]);
        if let Some((cid, _)) = ready.last() {
            last = Some(cid);
        }
        consumed += used;
    }
    adder.finish().last().map(|(cid, _)| cid).or(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_that_does_not_hash_to_its_cid_is_refused_and_counted() {
        let cid = parse(&crate::format::store::raw_cid(b"hello")).unwrap();
        assert!(check(&cid, b"hello").is_ok());
        let before = corrupt_blocks();
        assert!(matches!(
            check(&cid, b"hellp"),
            Err(IntegrityError::Corrupt { .. })
        ));
        assert!(corrupt_blocks() > before);
    }

    #[test]
    fn the_importer_layout_gives_the_cids_the_node_gives() {
        // One leaf: the raw CID of the bytes.
        let small = vec![7u8; 1000];
        assert_eq!(
            import_cid(&small).map(|c| c.to_string()),
            Some(crate::format::store::raw_cid(&small))
        );
        // Two leaves: a dag-pb root.
        let big = vec![7u8; LEAF_SIZE + 10];
        let cid = import_cid(&big).unwrap();
        assert_eq!(cid.codec(), DAG_PB_CODEC);
    }
}
