//! Checked ranged reads of file content: the DAG's dag-pb nodes are fetched once (checked
//! and decoded, kept in a bounded LRU), a read descends from the root by the nodes'
//! `blocksizes` to the leaves under the range and fetches only those, each checked against
//! the CID its verified parent names. The descent is bounded by [`MAX_DAG_DEPTH`].

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use ipld_core::cid::Cid;
use lru::LruCache;

use super::dagpb::FileNode;
use super::{
    DAG_PB_CODEC, IntegrityError, MAX_DAG_DEPTH, RAW_CODEC, block, no_block_api, parse,
    warn_unchecked,
};
use crate::storage::NodeClient;

/// dag-pb nodes kept decoded: one node of Kubo's layout covers up to 174 leaves (43.5 MiB),
/// and is a few KiB, so this indexes files of tens of GiB in a few MiB.
const NODES_KEPT: usize = 1024;

/// The decoded inner nodes of the content DAGs being read. Cheap to share.
pub struct ContentIndex {
    nodes: Mutex<LruCache<Cid, Arc<FileNode>>>,
}

impl Default for ContentIndex {
    fn default() -> Self {
        ContentIndex {
            nodes: Mutex::new(LruCache::new(
                NonZeroUsize::new(NODES_KEPT).unwrap_or(NonZeroUsize::MIN),
            )),
        }
    }
}

impl ContentIndex {
    /// Bytes `offset..offset + len` of the content object `cid` (fewer at its end), every
    /// block they come from checked against its CID.
    pub async fn read(
        &self,
        client: &NodeClient,
        cid: &str,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, IntegrityError> {
        let root = parse(cid)?;
        let end = offset.saturating_add(len);
        match root.codec() {
            RAW_CODEC => Ok(clip(block(client, &root).await?, 0, offset, end)),
            DAG_PB_CODEC => {
                let mut out = BytesMut::with_capacity(len.min(1 << 26) as usize);
                match self
                    .descend(client, &root, 0, offset, end, 0, &mut out)
                    .await
                {
                    Ok(()) => Ok(out.freeze()),
                    // A hosted gateway: the range as `cat` gives it (see the module docs).
                    Err(IntegrityError::Storage(e)) if no_block_api(&e) => {
                        warn_unchecked(&root);
                        Ok(client.cat(cid, offset, Some(len)).await?)
                    }
                    Err(e) => Err(e),
                }
            }
            other => Err(IntegrityError::invalid(
                &root,
                format!("codec 0x{other:x} is not file content (raw or dag-pb)"),
            )),
        }
    }

    /// The whole object `cid` of `len` bytes for a reader that authenticates it (a sealed
    /// chunk): a raw block as the node gives it, unhashed; anything else read checked.
    pub async fn read_sealed(
        &self,
        client: &NodeClient,
        cid: &str,
        len: u64,
    ) -> Result<Bytes, IntegrityError> {
        let root = parse(cid)?;
        if root.codec() == RAW_CODEC {
            return super::block_unchecked(client, &root).await;
        }
        self.read(client, cid, 0, len).await
    }

    /// Appends to `out` the part of `offset..end` under the node `cid`, whose bytes start at
    /// `start` in the file.
    #[allow(clippy::too_many_arguments)]
    fn descend<'a>(
        &'a self,
        client: &'a NodeClient,
        cid: &'a Cid,
        start: u64,
        offset: u64,
        end: u64,
        depth: u32,
        out: &'a mut BytesMut,
    ) -> futures::future::BoxFuture<'a, Result<(), IntegrityError>> {
        Box::pin(async move {
            if depth > MAX_DAG_DEPTH {
                return Err(IntegrityError::invalid(
                    cid,
                    "the DAG is deeper than pxfs allows",
                ));
            }
            let node = self.node(client, cid).await?;
            if node.blocksizes.len() != node.links.len() {
                return Err(IntegrityError::invalid(
                    cid,
                    "blocksizes and links differ in number",
                ));
            }
            let mut pos = start;
            let inline = node.data_len;
            if pos < end && pos + inline > offset {
                out.extend_from_slice(&clip(node.data.clone(), pos, offset, end));
            }
            pos += inline;
            for (link, &size) in node.links.iter().zip(&node.blocksizes) {
                let (from, to) = (pos, pos.saturating_add(size));
                pos = to;
                if to <= offset {
                    continue;
                }
                if from >= end {
                    break;
                }
                match link.codec() {
                    RAW_CODEC => {
                        let leaf = block(client, link).await?;
                        if leaf.len() as u64 != size {
                            return Err(IntegrityError::invalid(
                                cid,
                                format!(
                                    "leaf {link} has {} bytes, its parent declares {size}",
                                    leaf.len()
                                ),
                            ));
                        }
                        out.extend_from_slice(&clip(leaf, from, offset, end));
                    }
                    DAG_PB_CODEC => {
                        self.descend(client, link, from, offset, end, depth + 1, out)
                            .await?;
                    }
                    other => {
                        return Err(IntegrityError::invalid(
                            cid,
                            format!("link {link} of codec 0x{other:x} in a file DAG"),
                        ));
                    }
                }
            }
            Ok(())
        })
    }

    /// The decoded dag-pb node `cid`, checked against its CID when first fetched.
    async fn node(&self, client: &NodeClient, cid: &Cid) -> Result<Arc<FileNode>, IntegrityError> {
        if let Some(node) = self.lock().get(cid) {
            return Ok(node.clone());
        }
        let data = block(client, cid).await?;
        let node = Arc::new(FileNode::decode(&data).map_err(|r| IntegrityError::invalid(cid, r))?);
        self.lock().put(*cid, node.clone());
        Ok(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LruCache<Cid, Arc<FileNode>>> {
        self.nodes.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The part of `piece` (file bytes from `start`) inside `offset..end`.
fn clip(piece: Bytes, start: u64, offset: u64, end: u64) -> Bytes {
    let len = piece.len() as u64;
    let from = offset.saturating_sub(start).min(len);
    let to = end.saturating_sub(start).min(len).max(from);
    piece.slice(from as usize..to as usize)
}
