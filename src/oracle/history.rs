//! The usage documents published since the last sync (docs/FORMAT.md §8, §9.1): from the
//! current document, its parents (`prev`, `merged`) are followed back, highest `seq` first,
//! to the document whose root the chain last recorded as synced. Every root on the way is
//! measured (`walk`), so a tree hidden behind an empty one at sync time still counts.
//!
//! A document that does not chain back to the synced root within
//! [`Limits::max_documents`](super::Limits) is refused: the request is not answered (the
//! token becomes due, and the owner makes it usable again by publishing a document that
//! chains back, which every pxfs commit does). Without a synced root (a first sync), every
//! document back to the first one counts, within the same bound.

use std::collections::{BinaryHeap, HashSet};

use super::{Limits, WalkError};
use crate::format::usage::AnyUsageDoc;
use crate::storage::NodeClient;

pub struct History {
    /// The current document (what the name points at).
    pub doc: AnyUsageDoc,
    /// The roots to measure, oldest first; the current document's root last.
    pub roots: Vec<String>,
    /// Documents read.
    pub documents: u64,
}

/// The documents under `btns` since the one whose root is `synced_root`.
pub async fn since(
    node: &NodeClient,
    btns: &str,
    synced_root: Option<&str>,
    limits: &Limits,
) -> Result<History, WalkError> {
    let (cid, doc) = crate::btns::resolve(node, btns)
        .await
        .map_err(|source| WalkError::Usage {
            btns: btns.to_string(),
            source,
        })?;
    let current_root = doc.root().to_string();
    if synced_root == Some(current_root.as_str()) {
        return Ok(History {
            doc,
            roots: vec![current_root],
            documents: 1,
        });
    }
    let mut documents = 1u64;
    let mut visited: HashSet<String> = HashSet::from([cid.clone()]);
    // Highest seq first, ties by CID (as §9.1's walk).
    let mut queue: BinaryHeap<(u64, String)> = BinaryHeap::new();
    let mut docs: Vec<(u64, String)> = Vec::new();
    let mut found: Option<u64> = None;
    let mut by_cid = std::collections::HashMap::from([(cid.clone(), doc.clone())]);
    queue.push((doc.seq(), cid.clone()));
    while let Some((seq, c)) = queue.pop() {
        let d = by_cid.remove(&c).expect("queued documents are held");
        if found.is_some_and(|f| seq < f) {
            continue;
        }
        if synced_root == Some(d.root()) {
            found = Some(found.map_or(seq, |f| f.max(seq)));
            continue;
        }
        docs.push((seq, d.root().to_string()));
        for parent in [d.prev(), d.merged()].into_iter().flatten() {
            if !visited.insert(parent.to_string()) {
                continue;
            }
            documents += 1;
            if documents > limits.max_documents as u64 {
                return Err(WalkError::History {
                    reason: format!(
                        "the usage document {cid} under {btns} does not chain back to the \
                         last synced root {} within {} documents",
                        synced_root.unwrap_or("(none: first sync)"),
                        limits.max_documents
                    ),
                });
            }
            let p = fetch(node, parent, limits).await?;
            queue.push((p.seq(), parent.to_string()));
            by_cid.insert(parent.to_string(), p);
        }
    }
    if let Some(root) = synced_root
        && found.is_none()
    {
        return Err(WalkError::History {
            reason: format!(
                "the usage document {cid} under {btns} does not chain back to the last synced \
                 root {root} (its `prev`/`merged` ancestry, {documents} documents, never reaches \
                 a document with that root)"
            ),
        });
    }
    docs.sort();
    let mut roots: Vec<String> = Vec::new();
    for (_, r) in docs {
        if roots.last() != Some(&r) && r != current_root {
            roots.push(r);
        }
    }
    roots.push(current_root);
    Ok(History {
        doc,
        roots,
        documents,
    })
}

async fn fetch(node: &NodeClient, cid: &str, limits: &Limits) -> Result<AnyUsageDoc, WalkError> {
    let usage = |reason: String| WalkError::Object {
        cid: cid.chars().take(128).collect(),
        reason,
    };
    let bytes = tokio::time::timeout(
        limits.object_timeout,
        crate::integrity::object(node, cid, crate::btns::MAX_DOC_BYTES),
    )
    .await
    .map_err(|_| WalkError::Missing {
        cid: cid.chars().take(128).collect(),
        secs: limits.object_timeout.as_secs(),
        reason: "timed out".into(),
    })?
    .map_err(|e| match e {
        crate::integrity::IntegrityError::TooLarge { cid, limit } => {
            WalkError::TooLarge { cid, limit }
        }
        crate::integrity::IntegrityError::Storage(s) => WalkError::Missing {
            cid: cid.chars().take(128).collect(),
            secs: limits.object_timeout.as_secs(),
            reason: s.to_string(),
        },
        other => usage(other.to_string()),
    })?;
    crate::btns::parse_any(&bytes).map_err(|e| usage(e.to_string()))
}
