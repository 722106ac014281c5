//! Reads that fall back to replicas (issue #30, `[node] replicas`): a block or a name the
//! primary cannot give (it lacks it, or it is down) is asked of each replica in turn. A
//! block the primary said it lacks is put back on it, once checked against its CID. A
//! primary found unreachable is not asked again for a short while, so a mount whose primary
//! is gone reads at the replica's pace instead of paying the primary's retries per block.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{NodeClient, StorageError};

/// How long an unreachable primary is skipped before it is asked again.
const SKIP_DOWN_PRIMARY: Duration = Duration::from_secs(10);

#[derive(Default)]
pub(super) struct Fallbacks {
    pub replicas: Vec<NodeClient>,
    skip_primary_until: Mutex<Option<Instant>>,
}

impl Fallbacks {
    pub fn new(replicas: Vec<NodeClient>) -> Fallbacks {
        Fallbacks {
            replicas,
            skip_primary_until: Mutex::new(None),
        }
    }

    /// Whether the primary is known down (recently unreachable).
    pub fn skip_primary(&self) -> bool {
        let until = self
            .skip_primary_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        until.is_some_and(|u| Instant::now() < u)
    }

    /// Whether `e` is worth asking a replica after; notes a primary that is down.
    pub fn worth_falling_back(&self, e: &StorageError) -> bool {
        if self.replicas.is_empty() {
            return false;
        }
        match e {
            StorageError::Unreachable { .. }
            | StorageError::Timeout { .. }
            | StorageError::Unavailable { .. } => {
                *self
                    .skip_primary_until
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + SKIP_DOWN_PRIMARY);
                true
            }
            StorageError::Node { .. } => true,
            _ => false,
        }
    }
}

/// The primary's answer said it does not have the block (as opposed to being down).
pub(super) fn lacks(e: &StorageError) -> bool {
    matches!(e, StorageError::Node { .. })
}

/// Puts a block a replica gave back on `primary`, in the background, if it hashes to `cid`.
pub(super) fn put_back(primary: NodeClient, cid: &str, bytes: Bytes) {
    let Ok(cid) = cid::Cid::try_from(cid) else {
        return;
    };
    if !super::cid::names_block(&cid, &bytes) {
        return;
    }
    tokio::spawn(async move {
        match primary.block_put(&cid, bytes).await {
            Ok(()) => tracing::info!(%cid, "a block the node lacked was put back from a replica"),
            Err(e) => tracing::debug!(%cid, error = %e, "putting a block back failed"),
        }
    });
}
