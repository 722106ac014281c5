//! The core's side of uploads: the uploader (`upload`) asks whether a job is still worth
//! uploading and hands back its result, which lands in the tree here.

use super::Fs;
use super::store::{Blob, LastUpload};
use super::upload::{Job, UploadResults};

impl UploadResults for Fs {
    fn sealing(&self, token: super::inode::TokenId) -> super::content::Sealing {
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

    /// Record an upload's result (`None`: the job was moot).
    fn uploaded(&self, job: &Job, blob: Option<Blob>) {
        {
            let mut guard = self.tree();
            let tree = &mut *guard;
            if let Ok(t) = tree.token_mut(job.token) {
                t.pending_uploads = t.pending_uploads.saturating_sub(1);
            }
            if let Some(blob) = blob {
                let current = tree
                    .get_mut(job.ino)
                    .ok()
                    .and_then(|i| i.file_mut())
                    .filter(|f| f.version == job.version);
                let mut superseded = None;
                let applied = match current {
                    Some(f) => {
                        if let Some(old) = f.blob.replace(blob.clone())
                            && old.cid != blob.cid
                        {
                            superseded = Some(old.cid);
                        }
                        f.upload_pending = false;
                        true
                    }
                    None => {
                        superseded = Some(blob.cid.clone());
                        false
                    }
                };
                if applied {
                    tree.stored_inode_changed(job.ino);
                    tree.recharge(job.ino, false);
                }
                // The v1 usage document holds the path as a string: shown escaped.
                let path = tree.display_path(job.ino);
                if let Ok(t) = tree.token_mut(job.token) {
                    t.superseded.extend(superseded);
                    if applied {
                        t.last_upload = Some(LastUpload {
                            path,
                            cid: blob.cid,
                            size: blob.size,
                        });
                    }
                }
            }
        }
        self.inner.progress.notify_waiters();
    }
}
