//! Commit: make the tree on the node match the tree in memory. Rewrites only the
//! manifests of changed directories (bottom-up, so each parent gets its children's new
//! CIDs), publishes the usage document under the token's BTNS name, records the new root
//! in the journal, and only then unpins what the new root no longer references.
//! Commits run at most once per `commit_interval` under load, and on demand for fsync,
//! fsyncdir, unmount and `flush_all`.
//!
//! A commit does not wait for uploads in flight: files whose new version is still
//! uploading keep their last uploaded version in it (new ones are left out), and their
//! closes are carried in the journal's state (see `journal`). While uploads run, the
//! committer commits at least every `commit_max_delay`, so a long copy publishes a
//! steady series of roots and its journal and staging shrink as it goes.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use super::Fs;
use super::backoff::Backoff;
use super::error::{FsError, FsResult};
use super::inode::{Body, Ino, Kind, TokenId};
use super::journal::CommittedState;
use super::ledger::CommittedUsage;
use super::manifest::{self, DirAttrs, Entry, EntryKind, Manifest};
use super::store::UsageRecord;
use super::tree::Tree;

/// A dirty directory as it was when the commit started.
struct DirSnapshot {
    ino: Ino,
    /// The sNFT root's own attributes (`None` for any other directory).
    self_attrs: Option<DirAttrs>,
    entries: Vec<Entry>,
    /// Entries that are dirty subdirectories: their CIDs are known once written.
    pending_children: Vec<(usize, Ino)>,
}

struct Snapshot {
    dirs: Vec<DirSnapshot>,
    root: Ino,
    record: UsageRecord,
    btns: Option<String>,
    journal_seq: u64,
    superseded: Vec<String>,
    /// Closes of versions still uploading (not in this commit).
    carried: Vec<super::journal::Op>,
    /// The usage to publish, but for the manifests the commit writes (docs/FORMAT.md §7).
    usage: CommittedUsage,
}

pub(crate) fn spawn_committer(fs: Fs) {
    let cancel = fs.inner.cancel.clone();
    let interval = fs.config().commit_interval;
    let max_delay = fs.config().commit_max_delay;
    tokio::spawn(async move {
        let mut last: HashMap<TokenId, std::time::Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for token in fs.tokens() {
                fs.save_unsaved_state(token);
                let since = *last.entry(token).or_insert_with(std::time::Instant::now);
                let uploading = fs
                    .tree()
                    .token(token)
                    .map(|t| t.pending_uploads > 0)
                    .unwrap_or(false);
                // While uploads run, commit what is uploaded every `max_delay`, not after
                // each upload: a commit rewrites the manifests of the changed directories.
                if uploading && since.elapsed() < max_delay {
                    continue;
                }
                match fs.commit_token(token).await {
                    Ok(true) => {
                        last.insert(token, std::time::Instant::now());
                    }
                    // Reported once by `outage`.
                    Err(e) if e.is_node_outage() => {
                        tracing::debug!(token, error = %e, "commit failed; will retry")
                    }
                    Err(e) => tracing::warn!(token, error = %e, "commit failed; will retry"),
                    Ok(_) => {}
                }
            }
        }
    });
}

/// A failed commit is retried after a backoff (100 ms doubling, at most 10 s); node outages are
/// logged once by [`outage`](super::outage), so a failure from one is only a debug line.
async fn commit_failed_backoff(token: TokenId, e: &FsError, backoff: &mut Backoff) {
    if e.is_node_outage() {
        tracing::debug!(token, error = %e, "commit failed; retrying");
    } else {
        tracing::warn!(token, error = %e, "commit failed; retrying");
    }
    backoff.wait().await;
}

fn commit_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
}

impl Fs {
    /// Retry recording a published commit that the journal could not record.
    fn save_unsaved_state(&self, token: TokenId) {
        let mut tree = self.tree();
        let Ok(t) = tree.token_mut(token) else { return };
        if !t.state_unsaved {
            return;
        }
        let state = t.committed.clone();
        match t.journal.committed(&state) {
            Ok(delete) => {
                t.state_unsaved = false;
                self.inner.outage.local_ok("journal");
                remove_staged(delete);
            }
            Err(e) => self.inner.outage.local_failed("journal", &e),
        }
    }

    /// Wait until every closed file of every token is on the node, then commit them all.
    pub async fn flush_all(&self) -> FsResult<()> {
        for token in self.tokens() {
            self.flush_token(token).await?;
        }
        Ok(())
    }

    /// Wait for `token`'s uploads, then commit; returns once the commit is published.
    /// Fails with [`FsError::NodeDown`] once the node has been down for the outage grace
    /// period while this waited; what is staged stays staged (and journaled) then.
    pub async fn flush_token(&self, token: TokenId) -> FsResult<()> {
        let mut backoff = commit_backoff();
        let waiting_since = std::time::Instant::now();
        loop {
            if let Some(stalled) = self.inner.outage.gives_up(waiting_since) {
                return Err(stalled);
            }
            let progress = self.inner.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let pending = self.tree().token(token)?.pending_uploads;
            if pending == 0 {
                match self.commit_token(token).await {
                    Ok(_) if self.tree().token(token)?.pending_uploads == 0 => return Ok(()),
                    Ok(_) => continue, // a close slipped in: wait for it too
                    Err(e) => {
                        commit_failed_backoff(token, &e, &mut backoff).await;
                        continue;
                    }
                }
            }
            if self.inner.cancel.is_cancelled() {
                return Err(FsError::Journal("shutting down".into()));
            }
            // The timeout covers a notification sent before `enable`.
            let _ = tokio::time::timeout(Duration::from_secs(1), progress).await;
        }
    }

    /// Wait until a commit covers journal op `seq` of `token` (fsync, fsyncdir): unlike
    /// [`Fs::flush_token`], closes that come in meanwhile from other writers are not
    /// waited for once a commit has covered `seq`. With `file` (fsync), the commit must
    /// include that file's content, not carry it; other files still uploading are not
    /// waited for. Without it (fsyncdir), it must carry nothing.
    /// Fails with [`FsError::NodeDown`] like [`Fs::flush_token`].
    pub async fn commit_through(
        &self,
        token: TokenId,
        seq: u64,
        file: Option<Ino>,
    ) -> FsResult<()> {
        let mut backoff = commit_backoff();
        let waiting_since = std::time::Instant::now();
        loop {
            if let Some(stalled) = self.inner.outage.gives_up(waiting_since) {
                return Err(stalled);
            }
            let progress = self.inner.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let (covered, pending) = {
                let tree = self.tree();
                let t = tree.token(token)?;
                let file_uploading = file
                    .and_then(|ino| tree.get(ino).ok())
                    .filter(|i| !i.links.is_empty())
                    .and_then(|i| i.file())
                    .is_some_and(|f| f.upload_pending);
                let pending = match file {
                    Some(_) => u64::from(file_uploading),
                    None => t.pending_uploads,
                };
                let carries = match file {
                    Some(_) => file_uploading,
                    None => !t.committed.carried.is_empty(),
                };
                (t.committed.journal_seq >= seq && !carries, pending)
            };
            if covered {
                return Ok(());
            }
            if pending == 0 {
                match self.commit_token(token).await {
                    Ok(true) => continue,
                    // Nothing to write (the ops since changed nothing a manifest holds,
                    // or the token is read-only), unless a close slipped in.
                    Ok(false) if self.tree().token(token)?.pending_uploads == 0 => {
                        return Ok(());
                    }
                    // Cannot commit before other uploads end: wait for them.
                    Ok(false) => {}
                    Err(e) => {
                        commit_failed_backoff(token, &e, &mut backoff).await;
                        continue;
                    }
                }
            }
            if self.inner.cancel.is_cancelled() {
                return Err(FsError::Journal("shutting down".into()));
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), progress).await;
        }
    }

    /// Commit `token` if it has changes; versions still uploading are carried (see the
    /// module docs). `Ok(true)` if a new root was published.
    pub async fn commit_token(&self, token: TokenId) -> FsResult<bool> {
        let _one_at_a_time = self.inner.commit_lock.lock().await;
        let Some(snap) = self.snapshot(token)? else {
            return Ok(false);
        };
        let started = std::time::Instant::now();
        match self.write_snapshot(&snap).await {
            Ok((written, doc_cid)) => {
                self.inner.outage.succeeded(self.pending());
                self.committed(token, snap, written, doc_cid).await?;
                Ok(true)
            }
            Err(e) => {
                if e.is_node_outage() {
                    self.inner.outage.failed("commit", started, &e);
                }
                let mut tree = self.tree();
                for d in &snap.dirs {
                    tree.mark_dirty(d.ino);
                }
                if let Ok(t) = tree.token_mut(token) {
                    t.superseded.extend(snap.superseded);
                }
                Err(e)
            }
        }
    }

    fn snapshot(&self, token: TokenId) -> FsResult<Option<Snapshot>> {
        let mut guard = self.tree();
        let tree = &mut *guard;
        let t = tree.token(token)?;
        if !t.is_dirty() || t.read_only || t.replaying {
            return Ok(None);
        }
        let carried = if t.pending_uploads > 0 {
            match carried_closes(tree, token) {
                Some(c) => c,
                None => return Ok(None),
            }
        } else {
            Vec::new()
        };
        let root = t.root;
        let dirty: HashSet<Ino> = t.dirty_dirs.clone();
        let mut order: Vec<(usize, Ino)> = dirty
            .iter()
            .filter(|d| tree.inodes.contains_key(d))
            .map(|d| (depth(tree, *d), *d))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let mut dirs = Vec::with_capacity(order.len());
        for (_, ino) in order {
            dirs.push(snapshot_dir(tree, ino, &dirty)?);
        }
        for d in &dirs {
            if let Ok(i) = tree.get_mut(d.ino)
                && let Some(dir) = i.dir_mut()
            {
                dir.dirty = false;
            }
        }
        tree.recharge_token(token);
        let rewritten: Vec<Ino> = dirs.iter().map(|d| d.ino).collect();
        let (usage, files) = tree.committed_usage(token, &rewritten)?;
        let t = tree.token_mut(token)?;
        t.dirty_dirs.clear();
        let record = UsageRecord {
            token_id: token,
            quota: t.info.quota,
            usage: 0, // known once the manifests are written
            files,
            root: String::new(),
            last_upload: t.last_upload.clone(),
            seq: t.committed.seq + 1,
            prev: t.committed.usage_doc.clone(),
        };
        Ok(Some(Snapshot {
            dirs,
            root,
            record,
            btns: t.info.btns.clone(),
            journal_seq: t.journal.last_seq(),
            superseded: std::mem::take(&mut t.superseded),
            carried,
            usage,
        }))
    }

    /// Add the manifests bottom-up, then the usage document.
    async fn write_snapshot(
        &self,
        snap: &Snapshot,
    ) -> FsResult<(HashMap<Ino, (String, u64)>, String)> {
        let mut written: HashMap<Ino, (String, u64)> = HashMap::new();
        for d in &snap.dirs {
            let mut entries = d.entries.clone();
            for (idx, child) in &d.pending_children {
                let (cid, size) = written
                    .get(child)
                    .cloned()
                    .ok_or_else(|| FsError::Journal("child manifest missing".into()))?;
                entries[*idx].cid = Some(cid);
                entries[*idx].size = size;
            }
            let mut m = Manifest::new(entries);
            m.self_attrs = d.self_attrs.clone();
            let json = m.to_json();
            let size = json.len() as u64;
            let cid = self.store().add_manifest(Bytes::from(json)).await?;
            written.insert(d.ino, (cid, size));
        }
        let root = written
            .get(&snap.root)
            .map(|(c, _)| c.clone())
            .ok_or_else(|| FsError::Journal("root not among the changed directories".into()))?;
        let record = UsageRecord {
            root,
            usage: snap.usage.with_manifests(written.values()),
            ..snap.record.clone()
        };
        let doc = self
            .store()
            .publish_usage(snap.btns.as_deref(), &record)
            .await?;
        Ok((written, doc))
    }

    /// The new root is published: remember it, drop the journal ops it covers, delete
    /// staged files nothing needs any more, unpin superseded content.
    async fn committed(
        &self,
        token: TokenId,
        snap: Snapshot,
        written: HashMap<Ino, (String, u64)>,
        doc_cid: String,
    ) -> FsResult<()> {
        let mut unpin = snap.superseded;
        let root_cid = written.get(&snap.root).map(|(c, _)| c.clone());
        let (delete, live) = {
            let mut guard = self.tree();
            let tree = &mut *guard;
            for (ino, new) in &written {
                if let Ok(i) = tree.get_mut(*ino)
                    && let Some(d) = i.dir_mut()
                    && let Some((old, _)) = d.manifest.replace(new.clone())
                    && old != new.0
                {
                    unpin.push(old);
                }
            }
            // The new manifests count instead of the old ones.
            for ino in written.keys() {
                tree.recharge(*ino, false);
            }
            let t = tree.token_mut(token)?;
            let state = CommittedState {
                root: root_cid,
                usage_doc: Some(doc_cid),
                seq: snap.record.seq,
                journal_seq: snap.journal_seq,
                usage: snap.usage.with_manifests(written.values()),
                files: snap.record.files,
                carried: snap.carried,
            };
            // Published: that holds even if the journal cannot record it (a crash then
            // replays the same ops over the previous root, giving the same tree).
            let delete = match t.journal.committed(&state) {
                Ok(d) => {
                    self.inner.outage.local_ok("journal");
                    t.state_unsaved = false;
                    d
                }
                Err(e) => {
                    self.inner.outage.local_failed("journal", &e);
                    t.state_unsaved = true;
                    Vec::new()
                }
            };
            let mut delete: HashSet<PathBuf> = delete.into_iter().collect();
            t.committed = state;
            t.last_commit = Some(std::time::SystemTime::now());
            let fully_loaded = t.unloaded_dirs == 0;
            let mut live = HashSet::new();
            for inode in tree.inodes.values_mut() {
                if inode.token != Some(token) {
                    continue;
                }
                match &mut inode.body {
                    Body::File(f) => {
                        // An upload in flight still reads it.
                        if f.upload_pending
                            && let Some(s) = &f.staged
                        {
                            delete.remove(s.path());
                        }
                        // The committed version is on the node: read it from there.
                        if !f.upload_pending
                            && let Some(s) = f.staged.as_ref().filter(|s| delete.contains(s.path()))
                        {
                            if inode.links.is_empty() {
                                // Unlinked under an open handle: it keeps reading this.
                                s.hold();
                            } else {
                                f.staged = None;
                            }
                        }
                        if let Some(b) = &f.blob {
                            live.insert(b.cid.clone());
                        }
                    }
                    Body::Dir(d) => {
                        if let Some((c, _)) = &d.manifest {
                            live.insert(c.clone());
                        }
                    }
                    Body::Symlink(_) | Body::Special(_) => {}
                }
            }
            // Content may be shared (equal files have equal CIDs); only a fully loaded tree
            // proves a CID unused.
            if !fully_loaded {
                unpin.clear();
            }
            (delete, live)
        };
        remove_staged(delete);
        let unpin: HashSet<String> = unpin.into_iter().filter(|c| !live.contains(c)).collect();
        for cid in unpin {
            if let Err(e) = self.store().unpin(&cid).await {
                tracing::debug!(cid, error = %e, "unpin failed");
            }
        }
        self.inner.progress.notify_waiters();
        tracing::debug!(token, seq = snap.record.seq, "committed");
        Ok(())
    }
}

/// The closes a commit taken now cannot include: every linked file of `token` whose
/// newest version is still uploading, at its current path, with its current attributes.
/// `None` when one cannot be carried as a close (a new file with more than one link or
/// with extended attributes): the commit then waits until the uploads are done.
fn carried_closes(tree: &Tree, token: TokenId) -> Option<Vec<super::journal::Op>> {
    let mut carried = Vec::new();
    for (ino, inode) in &tree.inodes {
        if inode.token != Some(token) || inode.links.is_empty() {
            continue;
        }
        let Some(f) = inode.file() else { continue };
        if !f.upload_pending {
            continue;
        }
        let staged = f.staged.as_ref()?;
        if f.blob.is_none() && (inode.links.len() > 1 || !inode.xattrs.is_empty()) {
            return None;
        }
        let m = inode.meta;
        carried.push(super::journal::Op::Close {
            path: tree.path_of(*ino),
            staged: staged.path().to_path_buf(),
            size: staged.len().ok(),
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime_ns: m.mtime_ns,
        });
    }
    Some(carried)
}

/// Delete staged files no commit needs any more. Thousands of small files after a big
/// copy: off the commit's path.
fn remove_staged(delete: impl IntoIterator<Item = PathBuf> + Send + 'static) {
    tokio::task::spawn_blocking(move || {
        for path in delete {
            if let Err(e) = std::fs::remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove staged file");
            }
        }
    });
}

fn depth(tree: &Tree, ino: Ino) -> usize {
    let mut n = 0;
    let mut cur = ino;
    while !tree.is_token_root(cur) {
        match tree.get(cur).ok().and_then(|i| i.links.first()) {
            Some((p, _)) => {
                cur = *p;
                n += 1;
            }
            None => break,
        }
    }
    n
}

fn snapshot_dir(tree: &Tree, ino: Ino, dirty: &HashSet<Ino>) -> FsResult<DirSnapshot> {
    let mut entries = Vec::new();
    let mut pending_children = Vec::new();
    for (name, child) in tree.entries(ino)?.iter() {
        let inode = tree.get(child)?;
        let m = inode.meta;
        let mut e = Entry {
            name: manifest::to_v1(name.as_bytes(), "file name")?,
            kind: EntryKind::File,
            cid: None,
            size: 0,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime_ns: m.mtime_ns,
            ctime_ns: m.ctime_ns,
            target: None,
            xattrs: manifest::encode_xattrs(&inode.xattrs)?,
            rdev: None,
        };
        match &inode.body {
            Body::File(f) => match &f.blob {
                // Never closed yet: the file is not part of any commit.
                None => continue,
                Some(b) => {
                    e.cid = Some(b.cid.clone());
                    e.size = b.size;
                }
            },
            Body::Dir(d) => {
                e.kind = EntryKind::Dir;
                if dirty.contains(&child) {
                    pending_children.push((entries.len(), child));
                } else if let Some((cid, size)) = &d.manifest {
                    e.cid = Some(cid.clone());
                    e.size = *size;
                } else {
                    continue;
                }
            }
            Body::Symlink(target) => {
                e.kind = EntryKind::Symlink;
                e.size = target.as_bytes().len() as u64;
                e.target = Some(manifest::to_v1(target.as_bytes(), "symlink target")?);
            }
            Body::Special(s) => {
                e.kind = s.kind.into();
                if matches!(s.kind, Kind::CharDev | Kind::BlockDev) {
                    e.rdev = Some(s.rdev);
                }
            }
        }
        entries.push(e);
    }
    let dir = tree.get(ino)?;
    let self_attrs = match tree.is_token_root(ino) {
        true => Some(DirAttrs {
            mode: dir.meta.mode,
            uid: dir.meta.uid,
            gid: dir.meta.gid,
            mtime_ns: dir.meta.mtime_ns,
            ctime_ns: dir.meta.ctime_ns,
            xattrs: manifest::encode_xattrs(&dir.xattrs)?,
        }),
        false => None,
    };
    Ok(DirSnapshot {
        ino,
        self_attrs,
        entries,
        pending_children,
    })
}
