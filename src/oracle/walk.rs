//! Measuring a token's tree: resolve its BTNS name to the usage document, then walk the
//! directory manifests from the document's root and add up the file sizes. The claimed
//! usage in the document is reported, never trusted.

use crate::fs::manifest::EntryKind;
use crate::storage::NodeClient;

/// At most this many manifest entries are walked; a larger tree is refused, not guessed.
const MAX_ENTRIES: u64 = 50_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUsage {
    pub token_id: u64,
    /// Bytes of live file content, measured from the manifests.
    pub usage: u64,
    /// What the usage document claimed.
    pub claimed_usage: u64,
    pub files: u64,
    pub root: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot load the usage document under {btns}: {source}")]
    Usage {
        btns: String,
        source: crate::usage::UsageError,
    },
    #[error("cannot load manifest {cid}: {reason}")]
    Manifest { cid: String, reason: String },
    #[error("the tree under {root} has more than {MAX_ENTRIES} entries")]
    TooLarge { root: String },
}

pub async fn measure_tree(node: &NodeClient, btns: &str) -> Result<TreeUsage, WalkError> {
    let (_doc_cid, doc) =
        crate::usage::resolve(node, btns)
            .await
            .map_err(|source| WalkError::Usage {
                btns: btns.to_string(),
                source,
            })?;
    let mut usage = 0u64;
    let mut files = 0u64;
    let mut entries = 0u64;
    let mut pending = vec![doc.root.clone()];
    while let Some(cid) = pending.pop() {
        let bytes = node
            .cat(&cid, 0, None)
            .await
            .map_err(|e| WalkError::Manifest {
                cid: cid.clone(),
                reason: e.to_string(),
            })?;
        let manifest =
            crate::fs::manifest::Manifest::parse(&bytes).map_err(|e| WalkError::Manifest {
                cid: cid.clone(),
                reason: e.to_string(),
            })?;
        for entry in manifest.entries {
            entries += 1;
            if entries > MAX_ENTRIES {
                return Err(WalkError::TooLarge { root: doc.root });
            }
            match entry.kind {
                EntryKind::File => {
                    usage += entry.size;
                    files += 1;
                }
                EntryKind::Dir => {
                    let Some(child) = entry.cid else {
                        return Err(WalkError::Manifest {
                            cid,
                            reason: format!("directory entry {:?} has no cid", entry.name),
                        });
                    };
                    pending.push(child);
                }
                // Names without content: no bytes of usage.
                EntryKind::Symlink
                | EntryKind::Fifo
                | EntryKind::Socket
                | EntryKind::Chardev
                | EntryKind::Blockdev => {}
                // Its size may or may not be content: refuse rather than guess.
                EntryKind::Unknown => {
                    return Err(WalkError::Manifest {
                        cid,
                        reason: format!("entry {:?} is of an unknown kind", entry.name),
                    });
                }
            }
        }
    }
    Ok(TreeUsage {
        token_id: doc.token_id,
        usage,
        claimed_usage: doc.usage,
        files,
        root: doc.root,
    })
}
