//! The core's side of uploads: the uploader (`upload`) asks whether a job is still worth
//! uploading and hands back its result, which lands in the tree here.

use crate::fs::Fs;
use crate::fs::model::token::Unstored;
use crate::fs::model::tree::Tree;
use crate::fs::store::{Blob, LastUpload, Stored};
use crate::fs::upload::{Answered, Job, UploadResults};

impl UploadResults for Fs {
    fn sealing(
        &self,
        token: crate::fs::model::inode::TokenId,
    ) -> crate::fs::data::content::Sealing {
        Fs::sealing(self, Some(token))
    }

    /// The job's version is still the file's newest, and the file still has a name (an
    /// unlinked file is in no commit).
    fn is_current(&self, job: &Job) -> bool {
        let tree = self.tree();
        tree.get(job.ino)
            .ok()
            .filter(|i| !i.links.is_empty())
            .and_then(|i| i.file())
            .is_some_and(|f| f.version == job.version)
    }

    fn pages(&self) -> &crate::fs::data::pages::PageCache {
        &self.inner.pages
    }

    fn orphaned(&self, job: &Job, cids: Vec<String>) {
        if cids.is_empty() {
            return;
        }
        if let Ok(t) = self.tree().token_mut(job.token) {
            t.superseded.extend(cids);
        }
    }

    /// A version not known to be stored yet is no base: its chunks may never land. The
    /// one it replaced is.
    fn base(&self, job: &Job) -> Option<Blob> {
        let tree = self.tree();
        let f = tree.get(job.ino).ok()?.file()?;
        let unstored = tree.token(job.token).ok()?.unstored.get(&job.ino);
        match unstored {
            Some(u) if f.blob.as_ref().is_some_and(|b| b.cid == u.cid) => u.replaced.clone(),
            _ => f.blob.clone(),
        }
    }

    fn uploaded_unstored(&self, job: &Job, blob: &Blob, stored: &Stored) -> bool {
        {
            let mut guard = self.tree();
            let tree = &mut *guard;
            let Ok(t) = tree.token(job.token) else {
                return false;
            };
            // One at a time per file: what a failed one puts back is then always stored.
            if t.unstored.contains_key(&job.ino) {
                return false;
            }
            let Some(replaced) = apply(tree, job, blob) else {
                return false;
            };
            let superseded = replaced
                .as_ref()
                .map(|old| gone(old, Some(blob)))
                .unwrap_or_default();
            if let Ok(t) = tree.token_mut(job.token) {
                t.pending_uploads = t.pending_uploads.saturating_sub(1);
                t.unstored.insert(
                    job.ino,
                    Unstored {
                        stored: stored.clone(),
                        cid: blob.cid.clone(),
                        replaced,
                        superseded,
                    },
                );
            }
        }
        self.inner.progress.notify_waiters();
        true
    }

    /// Stored: what it replaced is superseded. Not: the file's blob, if still this one, is
    /// put back (whatever version the file is at now: a commit writes a file's blob while
    /// its newer version uploads, and must not write this one), and the version is
    /// uploaded again if it is still the file's.
    fn stored(&self, job: &Job, blob: &Blob, ok: bool) -> Answered {
        let answered = {
            let mut guard = self.tree();
            let tree = &mut *guard;
            let Some(u) = tree
                .token_mut(job.token)
                .ok()
                .and_then(|t| t.unstored.remove(&job.ino))
            else {
                return if ok { Answered::Stored } else { Answered::Moot };
            };
            if ok {
                if let Ok(t) = tree.token_mut(job.token) {
                    t.superseded.extend(u.superseded);
                }
                Answered::Stored
            } else {
                put_back(tree, job, blob, u)
            }
        };
        self.inner.progress.notify_waiters();
        answered
    }

    /// Record an upload's result (`None`: the job was moot).
    fn uploaded(&self, job: &Job, blob: Option<Blob>) {
        {
            let mut guard = self.tree();
            let tree = &mut *guard;
            if let Ok(t) = tree.token_mut(job.token) {
                t.pending_uploads = t.pending_uploads.saturating_sub(1);
            }
            if blob.is_none() {
                drop_moot_copy(tree, job);
            }
            if let Some(blob) = blob {
                let superseded = match apply(tree, job, &blob) {
                    Some(replaced) => replaced
                        .map(|old| gone(&old, Some(&blob)))
                        .unwrap_or_default(),
                    None => {
                        // A moot chunked version shares its unchanged chunks with the
                        // file's version on the node (its base): those stay.
                        let current = tree
                            .get(job.ino)
                            .ok()
                            .and_then(|i| i.file())
                            .and_then(|f| f.blob.clone());
                        gone(&blob, current.as_ref())
                    }
                };
                if let Ok(t) = tree.token_mut(job.token) {
                    t.superseded.extend(superseded);
                }
            }
        }
        self.inner.progress.notify_waiters();
    }
}

/// `blob` becomes the file's content if `job`'s version is still the file's: `Some` of the
/// blob it replaced; `None` (nothing changed) when the version is moot.
fn apply(tree: &mut Tree, job: &Job, blob: &Blob) -> Option<Option<Blob>> {
    let f = tree
        .get_mut(job.ino)
        .ok()
        .and_then(|i| i.file_mut())
        .filter(|f| f.version == job.version)?;
    let replaced = f.blob.replace(blob.clone());
    f.upload_pending = false;
    tree.stored_inode_changed(job.ino);
    tree.recharge(job.ino, false);
    // The v1 usage document holds the path as a string: shown escaped.
    let path = tree.display_path(job.ino);
    if let Ok(t) = tree.token_mut(job.token) {
        t.last_upload = Some(LastUpload {
            path,
            cid: blob.cid.clone(),
            size: blob.size,
        });
    }
    Some(replaced)
}

/// What `old` stored and `new` does not (a chunked version shares chunks with the one
/// before it, docs/FORMAT.md §15).
fn gone(old: &Blob, new: Option<&Blob>) -> Vec<String> {
    let kept: std::collections::HashSet<String> = new
        .map(|n| n.objects().into_iter().map(|(c, _, _)| c).collect())
        .unwrap_or_default();
    old.objects()
        .into_iter()
        .map(|(c, _, _)| c)
        .filter(|c| !kept.contains(c))
        .collect()
}

/// A version handed over unstored turned out not stored ([`UploadResults::stored`]).
fn put_back(tree: &mut Tree, job: &Job, blob: &Blob, u: Unstored) -> Answered {
    let file = tree.get_mut(job.ino).ok().and_then(|i| i.file_mut());
    let Some(f) = file.filter(|f| f.blob.as_ref().is_some_and(|b| b.cid == blob.cid)) else {
        // Replaced meanwhile (a newer version, another writer's): what it replaced is not
        // the file's any more.
        if let Ok(t) = tree.token_mut(job.token) {
            t.superseded.extend(u.superseded);
        }
        return Answered::Moot;
    };
    f.blob = u.replaced;
    let again = f.version == job.version;
    if again {
        f.upload_pending = true;
    }
    tree.stored_inode_changed(job.ino);
    tree.recharge(job.ino, false);
    if !again {
        return Answered::Moot;
    }
    if let Ok(t) = tree.token_mut(job.token) {
        t.pending_uploads += 1;
    }
    Answered::Again
}

/// A moot version's staged copy goes now rather than at the next commit (churn would
/// otherwise fill the cache disk between commits) when its file is gone: unlinked, and no
/// handle reads it. Its close stays in the journal until the next commit; a replay after a
/// crash expects the copy gone (`journal::moot_closes`) since a later op removes the file.
/// A version a newer close replaced keeps its copy until the commit, as before: a replay
/// needs the file to exist for what was journaled between the two closes (xattrs, links).
fn drop_moot_copy(tree: &mut crate::fs::model::tree::Tree, job: &Job) {
    let same = |s: &Option<std::sync::Arc<crate::fs::data::staged::StagedFile>>| {
        s.as_ref()
            .is_some_and(|s| std::sync::Arc::ptr_eq(s, &job.staged))
    };
    if let Ok(inode) = tree.get(job.ino) {
        let Some(f) = inode.file() else { return };
        if !inode.links.is_empty() || inode.open_handles > 0 || same(&f.session) {
            return;
        }
        if same(&f.staged)
            && let Some(f) = tree.get_mut(job.ino).ok().and_then(|i| i.file_mut())
        {
            f.staged = None;
            f.upload_pending = false;
        }
    }
    job.staged.remove_unheld();
}
