//! Closing: `flush` (close(2)) turns a write session into a closed version, journaled
//! before close(2) returns so that it survives a crash; `release` drops the handle;
//! `fsync` and `fsyncdir` wait until what they cover is committed.

use crate::fs::data::journal::Op;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::Ino;
use crate::fs::model::tree::Tree;
use crate::fs::{Fs, Step};

impl Fs {
    /// close(2) (of any descriptor of the handle). close(2) waits for this, but not for
    /// `release`, which the kernel sends later and asynchronously: so the version is
    /// journaled here, and a close that returned survives a crash of the daemon. Writes
    /// through a descriptor still open start a new session, closed at `release`.
    /// Never waits (journaling is one write to local disk): always a ready step.
    pub fn flush(&self, fh: u64) -> Step<FsResult<()>> {
        Step::Ready(self.close_handle_session(fh))
    }

    pub(in crate::fs) fn close_handle_session(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        if !h.session {
            return Ok(());
        }
        let mut guard = self.tree();
        self.checkpoint(&mut guard, h.ino)?;
        guard.unlock()
    }

    /// Close the session of a file that still has a name, so its content so far is a
    /// journaled version; an unlinked file keeps its session (other descriptors may still
    /// read it) until its last release drops it.
    pub(in crate::fs) fn checkpoint(&self, tree: &mut Tree, ino: Ino) -> FsResult<()> {
        if tree.get(ino)?.links.is_empty() {
            return Ok(());
        }
        self.close_session(tree, ino)
    }

    /// The last close of a writer turns its session into a closed version.
    /// Never waits: always a ready step.
    pub fn release(&self, fh: u64) -> Step<FsResult<()>> {
        Step::Ready(self.release_handle(fh))
    }

    pub(in crate::fs) fn release_handle(&self, fh: u64) -> FsResult<()> {
        let Some(h) = self.handles().remove(&fh) else {
            return Err(FsError::BadHandle);
        };
        let mut guard = self.tree();
        let tree = &mut *guard;
        let inode = tree.get_mut(h.ino)?;
        inode.open_handles = inode.open_handles.saturating_sub(1);
        let mut result = Ok(());
        if h.session
            && let Some(f) = inode.file_mut()
        {
            f.writers = f.writers.saturating_sub(1);
            if f.writers == 0 {
                result = self.close_session(tree, h.ino);
            }
        }
        tree.forget_if_unused(h.ino);
        guard.unlock().and(result)
    }

    /// Session → closed version: journal it and queue its upload. An unlinked file's
    /// session is dropped, once no descriptor reads it.
    pub(crate) fn close_session(&self, tree: &mut Tree, ino: Ino) -> FsResult<()> {
        let token = tree.token_of(ino)?;
        let inode = tree.get_mut(ino)?;
        let linked = !inode.links.is_empty();
        let held = inode.open_handles > 0;
        let meta = inode.meta;
        let Some(f) = inode.file_mut() else {
            return Ok(());
        };
        if !linked && held {
            // Unlinked, and other descriptors still read it: the session stays their data
            // (POSIX keeps it until the last close); it never becomes a version, and goes
            // with the inode (`Tree::forget_if_unused`).
            if let Some(l) = f.live.take() {
                l.abandon();
                unpin_orphans(tree, token, &l);
            }
            return Ok(());
        }
        let Some(session) = f.session.take() else {
            return Ok(());
        };
        // Writes still in flight (outside the tree lock) belong to this version.
        drop(session.settled());
        let live = f.live.take();
        if !linked {
            if let Some(l) = &live {
                l.cancel();
                unpin_orphans(tree, token, l);
            }
            session.remove();
            return Ok(());
        }
        if let Some(l) = &live {
            l.close();
        }
        // Waiting for upload and commit holds no descriptor.
        session.release();
        if let Some(o) = session.overlay() {
            o.freeze();
        }
        f.staged = Some(session.clone());
        f.upload_pending = true;
        let first_close = f.version == 0;
        f.version += 1;
        let version = f.version;
        let size = f.size;
        let path = tree.path_of(ino);
        let shown = crate::format::name::escape(&path);
        self.journal(
            tree,
            token,
            Op::Close {
                path: path.clone(),
                staged: session.path().to_path_buf(),
                size: session.len().ok(),
                overlay: session.overlay().map(|o| o.record()),
                mode: meta.mode,
                uid: meta.uid,
                gid: meta.gid,
                mtime_ns: meta.mtime_ns,
            },
        )?;
        if first_close {
            // Names linked and attributes set before the first close were journaled when
            // the file did not exist for a replay yet: journal them again, after the close
            // that makes it.
            let others: Vec<(Ino, crate::format::Name)> =
                tree.get(ino)?.links.iter().skip(1).cloned().collect();
            for (dir, name) in others {
                let to = crate::fs::model::tree::join(&tree.path_of(dir), name.as_bytes());
                let link = Op::Link {
                    from: path.clone(),
                    to,
                };
                self.journal(tree, token, link)?;
            }
            // So were its extended attributes.
            let xattrs: Vec<(Vec<u8>, Vec<u8>)> = tree
                .get(ino)?
                .xattrs
                .iter()
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect();
            for (name, value) in xattrs {
                let set = Op::SetXattr {
                    path: path.clone(),
                    name,
                    value: hex::encode(value),
                };
                self.journal(tree, token, set)?;
            }
        }
        if let Ok(t) = tree.token_mut(token) {
            t.pending_uploads += 1;
        }
        self.inner.uploads.push(crate::fs::upload::Job {
            token,
            ino,
            version,
            path: shown,
            staged: session,
            size,
            live,
        });
        Ok(())
    }

    /// fsync: the file's current content is on the node and committed when this returns.
    pub async fn fsync(&self, fh: u64) -> FsResult<()> {
        let h = self.handle(fh)?;
        let (token, seq) = {
            let mut guard = self.tree();
            let tree = &mut *guard;
            let token = tree.token_of(h.ino)?;
            tree.get(h.ino)?.file().ok_or(FsError::IsDir)?;
            // The staged file needs no fsync of its own: we wait until it is on the node.
            self.checkpoint(tree, h.ino)?;
            let t = tree.token(token)?;
            let (journal, seq) = (t.journal.clone(), t.journal.last_seq());
            guard.unlock()?;
            journal.sync_through(seq).map_err(|e| self.disk_failed(e))?;
            (token, seq)
        };
        self.commit_through(token, seq, Some(h.ino)).await
    }

    /// fsyncdir: the directory's changes are committed when this returns.
    pub async fn fsyncdir(&self, ino: Ino) -> FsResult<()> {
        let token = {
            let tree = self.tree();
            match tree.get(ino)?.token {
                Some(t) => {
                    let journal = tree.token(t)?.journal.clone();
                    let seq = journal.last_seq();
                    drop(tree);
                    journal.sync_through(seq).map_err(|e| self.disk_failed(e))?;
                    Some((t, seq))
                }
                None => None,
            }
        };
        match token {
            Some((t, seq)) => self.commit_through(t, seq, None).await,
            None => self.flush_all().await,
        }
    }
}

/// What a live upload that will not become a version added goes with the next commit's
/// superseded objects (unpinned unless the tree still holds it).
fn unpin_orphans(
    tree: &mut Tree,
    token: crate::fs::model::inode::TokenId,
    live: &crate::fs::data::live::LiveUpload,
) {
    let orphans = live.orphans();
    if let Ok(t) = tree.token_mut(token) {
        t.superseded.extend(orphans);
    }
}
