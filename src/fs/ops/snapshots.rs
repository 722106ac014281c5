//! Looking up `.snapshots` in an sNFT's root (`fs::model::snapshots`): the view is not
//! one of the root's entries, so its lookup reads the root's history table (once) and
//! makes the listing of the kept versions.

use crate::fs::Fs;
use crate::fs::Step;
use crate::fs::error::FsResult;
use crate::fs::model::inode::{Attr, Ino};

/// Lookups that lost a race with the root being read again.
const ATTEMPTS: usize = 4;

impl Fs {
    /// [`Fs::lookup`] of `parent/name` when it may be the snapshot view; `None` when it is
    /// not (`name` is looked up as any other).
    pub(in crate::fs) fn lookup_snapshots(
        &self,
        parent: Ino,
        name: &[u8],
    ) -> Option<Step<FsResult<Attr>>> {
        let mut tree = self.tree();
        if name != crate::fs::model::snapshots::SNAPSHOTS_DIR.as_bytes()
            || !tree.is_token_root(parent)
        {
            return None;
        }
        let token = tree.get(parent).ok()?.token?;
        if let Some(dir) = tree.snapshot_views.get(&token).and_then(|v| v.dir) {
            let attr = tree.get(dir).map(|i| i.attr(dir));
            tree.remember(dir);
            return Some(Step::Ready(attr));
        }
        drop(tree);
        let (fs, name) = (self.clone(), name.to_vec());
        Some(Step::wait(async move {
            match fs.snapshots_dir(parent).await? {
                Some(dir) => {
                    let mut tree = fs.tree();
                    let attr = tree.get(dir)?.attr(dir);
                    tree.remember(dir);
                    Ok(attr)
                }
                None => fs.lookup_loading(parent, &name).await,
            }
        }))
    }

    /// The sNFT root `root`'s `.snapshots/`, made at its first use; `None` when its tree
    /// is not in format 3 (it has no view).
    async fn snapshots_dir(&self, root: Ino) -> FsResult<Option<Ino>> {
        for _ in 0..ATTEMPTS {
            self.ensure_root_loaded(root).await?;
            let (token, history) = {
                let tree = self.tree();
                let Some(token) = tree.get(root)?.token else {
                    return Ok(None);
                };
                match tree.snapshot_views.get(&token) {
                    None => return Ok(None),
                    Some(v) => match v.dir {
                        Some(dir) => return Ok(Some(dir)),
                        None => (token, v.history.clone()),
                    },
                }
            };
            let versions = match &history {
                Some(top) => {
                    let store = self.store_of(Some(token));
                    let sealing = self.sealing(Some(token));
                    crate::fs::data::pages::read_history(&*store, &sealing, &self.inner.pages, top)
                        .await?
                        .0
                }
                None => Vec::new(),
            };
            if let Ok(dir) = self.tree().attach_snapshots(token, &history, versions) {
                return Ok(Some(dir));
            }
        }
        Err(crate::fs::error::FsError::Thrashing)
    }
}
