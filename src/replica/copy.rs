//! Copying one committed tree to a replica: every block reachable from the root (tree
//! nodes through their public `nodes`/`data` lists, docs/FORMAT.md §3.1, so an encrypted
//! tree is copied without its key; content DAGs through their links) that the replica
//! lacks is read from the primary, checked against its CID and put on the replica with
//! `block/put`; each object (tree node, content object, usage document) is pinned there
//! once its blocks are, as the primary pins each object it adds.
//!
//! Incremental: a block is put only after everything below it, so a block the replica
//! already holds means its whole subtree is there, and an unchanged subtree costs one
//! `block/stat`. Memory holds the blocks on the way down and the requests in flight.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use ipld_core::cid::Cid;
use tokio::sync::Semaphore;

use crate::integrity::dagpb::FileNode;
use crate::integrity::{DAG_PB_CODEC, IntegrityError, MAX_DAG_DEPTH, RAW_CODEC};
use crate::storage::{NodeClient, StorageError};

/// Node requests in flight per copy (over both nodes).
const CONCURRENCY: usize = 8;
/// Largest tree node read.
const MAX_NODE_BYTES: u64 = 64 << 20;
/// Children of one node copied at a time (requests are bounded by the semaphore).
const FAN_OUT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("reading block {cid} from the primary: {source}")]
    Source {
        cid: String,
        #[source]
        source: IntegrityError,
    },
    #[error("block {cid} is not a pxfs tree node: {reason}")]
    Malformed { cid: String, reason: String },
    #[error("the replica: {0}")]
    Replica(#[from] StorageError),
}

/// What a copy did.
#[derive(Debug, Default)]
pub struct Copied {
    /// Blocks put on the replica, and their bytes.
    pub blocks: AtomicU64,
    pub bytes: AtomicU64,
}

pub(super) struct Copier<'a> {
    pub from: &'a NodeClient,
    pub to: &'a NodeClient,
    pub timeout: Duration,
    permits: Semaphore,
    pub copied: Copied,
}

#[derive(Clone, Copy)]
enum Kind {
    TreeNode,
    Content,
}

impl<'a> Copier<'a> {
    pub fn new(from: &'a NodeClient, to: &'a NodeClient, timeout: Duration) -> Copier<'a> {
        Copier {
            from,
            to,
            timeout,
            permits: Semaphore::new(CONCURRENCY),
            copied: Copied::default(),
        }
    }

    /// The tree under the v2 root node `root`.
    pub async fn tree(&self, root: &str) -> Result<(), CopyError> {
        self.copy(parse(root)?, Kind::TreeNode, 0).await
    }

    /// One object (a usage document): its blocks, without following what it names.
    pub async fn object(&self, cid: &str) -> Result<(), CopyError> {
        self.copy(parse(cid)?, Kind::Content, 0).await
    }

    /// Whether the replica holds the block. Its definite "no" and its silence both count
    /// as absent (the put that follows finds out whether it is down).
    async fn held(&self, cid: &Cid) -> Result<bool, CopyError> {
        let _p = self.permits.acquire().await.expect("never closed");
        match tokio::time::timeout(self.timeout, self.to.block_stat(&cid.to_string())).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(StorageError::Node { .. } | StorageError::Timeout { .. })) | Err(_) => Ok(false),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    async fn read(&self, cid: &Cid) -> Result<Bytes, CopyError> {
        let _p = self.permits.acquire().await.expect("never closed");
        crate::integrity::block(self.from, cid)
            .await
            .map_err(|source| CopyError::Source {
                cid: cid.to_string(),
                source,
            })
    }

    async fn put(&self, cid: &Cid, bytes: Bytes) -> Result<(), CopyError> {
        let _p = self.permits.acquire().await.expect("never closed");
        let len = bytes.len() as u64;
        self.to.block_put(cid, bytes).await?;
        self.copied.blocks.fetch_add(1, Ordering::Relaxed);
        self.copied.bytes.fetch_add(len, Ordering::Relaxed);
        Ok(())
    }

    fn copy(&self, cid: Cid, kind: Kind, depth: u32) -> BoxFuture<'_, Result<(), CopyError>> {
        Box::pin(async move {
            if depth > MAX_DAG_DEPTH {
                return Err(CopyError::Malformed {
                    cid: cid.to_string(),
                    reason: "deeper than pxfs writes".into(),
                });
            }
            if self.held(&cid).await? {
                return Ok(());
            }
            let mut below: Vec<(Cid, Kind)> = Vec::new();
            if let Kind::TreeNode = kind {
                let whole = {
                    let _p = self.permits.acquire().await.expect("never closed");
                    crate::integrity::object(self.from, &cid.to_string(), MAX_NODE_BYTES)
                        .await
                        .map_err(|source| CopyError::Source {
                            cid: cid.to_string(),
                            source,
                        })?
                };
                let (_, lists) =
                    crate::format::envelope::public(&whole).map_err(|e| CopyError::Malformed {
                        cid: cid.to_string(),
                        reason: e.to_string(),
                    })?;
                for n in lists.nodes {
                    below.push((parse(&n)?, Kind::TreeNode));
                }
                for d in lists.data {
                    below.push((parse(&d)?, Kind::Content));
                }
            }
            let block = self.read(&cid).await?;
            match cid.codec() {
                DAG_PB_CODEC => {
                    let node = FileNode::decode(&block).map_err(|r| CopyError::Malformed {
                        cid: cid.to_string(),
                        reason: r.to_string(),
                    })?;
                    // The node's own DAG first (a large tree node is a DAG too).
                    futures::stream::iter(node.links)
                        .map(|l| self.copy(l, Kind::Content, depth + 1))
                        .buffer_unordered(FAN_OUT)
                        .try_collect::<()>()
                        .await?;
                }
                RAW_CODEC => {}
                other => {
                    return Err(CopyError::Malformed {
                        cid: cid.to_string(),
                        reason: format!("codec 0x{other:x}"),
                    });
                }
            }
            futures::stream::iter(below)
                .map(|(c, k)| self.copy(c, k, 0))
                .buffer_unordered(FAN_OUT)
                .try_collect::<()>()
                .await?;
            // Last: its presence says everything below it is there.
            self.put(&cid, block).await?;
            // Each object on its own pin, as the primary pins each object it adds: a v2 root
            // is a raw block (its recursive pin holds nothing below it), so a replica that
            // collects garbage would otherwise keep only the root.
            if depth == 0 {
                let _p = self.permits.acquire().await.expect("never closed");
                self.to.pin_add(&cid.to_string()).await?;
            }
            Ok(())
        })
    }
}

fn parse(cid: &str) -> Result<Cid, CopyError> {
    crate::integrity::parse(cid).map_err(|e| CopyError::Malformed {
        cid: cid.chars().take(128).collect(),
        reason: e.to_string(),
    })
}
