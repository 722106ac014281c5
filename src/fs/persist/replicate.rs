//! The one place the core hands committed trees to the replicas (src/replica): when a
//! commit's document holds (where superseded content is unpinned), and when a mount loads
//! a tree (so a replica configured later, or behind when the last mount ended, catches up).

use crate::format::TokenId;
use crate::fs::Fs;

impl Fs {
    /// Queues the committed tree of `token` for every replica; never waits.
    pub(crate) fn replicate(&self, token: TokenId) {
        let Some(replicas) = self.config().replicas.clone() else {
            return;
        };
        let tree = {
            let tree = self.tree();
            let Ok(t) = tree.token(token) else { return };
            match (&t.committed.root, &t.committed.usage_doc, &t.info.btns) {
                (Some(root), Some(doc), Some(btns)) => crate::replica::Tree {
                    root: root.clone(),
                    doc: doc.clone(),
                    btns: btns.clone(),
                },
                _ => return,
            }
        };
        replicas.committed(token, tree);
    }

    /// What the replicas hold, for `pxfs status`.
    pub fn replica_status(&self) -> Vec<crate::replica::ReplicaStatus> {
        self.config()
            .replicas
            .as_ref()
            .map(|r| r.status())
            .unwrap_or_default()
    }
}
