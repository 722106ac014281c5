//! `pxfs check --repair` (issue #30): puts each damaged block back on the node from where
//! a good copy still is: the local chunk cache (a lost content leaf or format-3 chunk
//! whose bytes a mount read earlier), then each replica. A copy is used only when it hashes to the block's
//! CID, and it goes back under that CID (`block/put`), so the tree and its content never
//! change: a repair can only make the node hold again what the root already names.

use std::collections::HashMap;

use bytes::Bytes;

use super::{Damage, DamagedBlock};
use crate::cache::CachedChunks;
use crate::storage::NodeClient;

/// Where good copies may be.
pub struct Sources<'a> {
    pub cache: Option<&'a CachedChunks>,
    /// Replicas, each with the name it is reported by (its URL).
    pub replicas: &'a [(String, NodeClient)],
}

/// What a repair of one damaged file (or page) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Every damaged block is back; from where (e.g. "the cache", a replica's URL).
    Repaired { from: Vec<String> },
    /// At least one block has no good copy anywhere, or the node refused it.
    NotRepaired { why: String },
}

/// Puts back the damaged blocks of `damage` on `node`. `done` remembers each block's
/// outcome over a whole repair, so a block shared by several files is put back once.
pub async fn repair(
    node: &NodeClient,
    damage: &Damage,
    sources: &Sources<'_>,
    done: &mut HashMap<String, Result<String, String>>,
) -> Repair {
    if damage.blocks.is_empty() {
        return Repair::NotRepaired {
            why: "no block to put back (the reference itself is malformed)".into(),
        };
    }
    let mut from = Vec::new();
    for block in &damage.blocks {
        let outcome = match done.get(&block.cid) {
            Some(o) => o.clone(),
            None => {
                let o = put_back(node, block, sources).await;
                done.insert(block.cid.clone(), o.clone());
                o
            }
        };
        match outcome {
            Ok(source) => {
                if !from.contains(&source) {
                    from.push(source)
                }
            }
            Err(why) => return Repair::NotRepaired { why },
        }
    }
    Repair::Repaired { from }
}

/// One block: a good copy found and stored, naming where it came from.
async fn put_back(
    node: &NodeClient,
    block: &DamagedBlock,
    sources: &Sources<'_>,
) -> Result<String, String> {
    let cid = crate::integrity::parse(&block.cid).map_err(|e| e.to_string())?;
    let (bytes, source) = match good_copy(&cid, block, sources).await {
        Ok(found) => found,
        Err(replicas) => {
            return Err(format!(
                "no good copy of block {} in the cache{}",
                block.cid,
                if sources.replicas.is_empty() {
                    " (no replica configured)".to_string()
                } else {
                    format!(" or on any replica ({})", replicas.join("; "))
                }
            ));
        }
    };
    node.block_put(&cid, bytes)
        .await
        .map_err(|e| format!("the node did not take block {} back: {e}", block.cid))?;
    tracing::debug!(cid = %block.cid, from = %source, "block put back");
    Ok(source)
}

/// A good copy and where it is from; else what each replica answered.
async fn good_copy(
    cid: &ipld_core::cid::Cid,
    block: &DamagedBlock,
    sources: &Sources<'_>,
) -> Result<(Bytes, String), Vec<String>> {
    if let (Some(cache), Some(leaf)) = (sources.cache, &block.leaf)
        && let Some(bytes) = cache.read(&leaf.object, leaf.start, leaf.len)
        && crate::integrity::check(cid, &bytes).is_ok()
    {
        return Ok((Bytes::from(bytes), "the cache".to_string()));
    }
    let mut answers = Vec::new();
    for (name, replica) in sources.replicas {
        // `integrity::block` checks the bytes against the CID.
        match crate::integrity::block(replica, cid).await {
            Ok(bytes) => return Ok((bytes, name.clone())),
            Err(e) => answers.push(format!("{name}: {e}")),
        }
    }
    Err(answers)
}
