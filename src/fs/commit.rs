//! Commit: make the tree on the node match the tree in memory. Rewrites only the
//! manifests of changed directories (bottom-up, so each parent gets its children's new
//! CIDs), publishes the usage document under the token's BTNS name, records the new root
//! in the journal, and only then unpins what the new root no longer references.
//! Commits run at most once per `commit_interval` under load, and on demand for fsync,
//! fsyncdir, unmount and `flush_all`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

use super::Fs;
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
    /// The usage to publish, but for the manifests the commit writes (docs/FORMAT.md §7).
    usage: CommittedUsage,
}

pub(crate) fn spawn_committer(fs: Fs) {
    let cancel = fs.inner.cancel.clone();
    let interval = fs.config().commit_interval;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            for token in fs.tokens() {
                match fs.commit_token(token).await {
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

/// A failed commit is retried after `delay` (doubling, at most 10 s); node outages are
/// logged once by [`outage`](super::outage), so a failure from one is only a debug line.
async fn commit_failed_backoff(token: TokenId, e: &FsError, delay: &mut Duration) {
    if e.is_node_outage() {
        tracing::debug!(token, error = %e, "commit failed; retrying");
    } else {
        tracing::warn!(token, error = %e, "commit failed; retrying");
    }
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(Duration::from_secs(10));
}

impl Fs {
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
        let mut delay = Duration::from_millis(100);
        let waiting_since = std::time::Instant::now();
        loop {
            if let Some(down) = self.inner.outage.gives_up(waiting_since) {
                return Err(FsError::NodeDown(down));
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
                        commit_failed_backoff(token, &e, &mut delay).await;
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
    /// waited for once a commit has covered `seq`.
    /// Fails with [`FsError::NodeDown`] like [`Fs::flush_token`].
    pub async fn commit_through(&self, token: TokenId, seq: u64) -> FsResult<()> {
        let mut delay = Duration::from_millis(100);
        let waiting_since = std::time::Instant::now();
        loop {
            if let Some(down) = self.inner.outage.gives_up(waiting_since) {
                return Err(FsError::NodeDown(down));
            }
            let progress = self.inner.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            let (covered, pending) = {
                let tree = self.tree();
                let t = tree.token(token)?;
                (t.committed.journal_seq >= seq, t.pending_uploads)
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
                    Ok(false) => continue,
                    Err(e) => {
                        commit_failed_backoff(token, &e, &mut delay).await;
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

    /// Commit `token` if it has changes and no upload in flight. `Ok(true)` if a new root
    /// was published.
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
        if !t.is_dirty() || t.pending_uploads > 0 || t.read_only || t.replaying {
            return Ok(None);
        }
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
            };
            let delete: HashSet<PathBuf> = t.journal.committed(&state)?.into_iter().collect();
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
                        // The committed version is on the node: read it from there.
                        if !f.upload_pending
                            && f.staged.as_ref().is_some_and(|s| delete.contains(s.path()))
                        {
                            f.staged = None;
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
        // Thousands of small files after a big copy: off the commit's path.
        tokio::task::spawn_blocking(move || {
            for path in delete {
                if let Err(e) = std::fs::remove_file(&path)
                    && e.kind() != std::io::ErrorKind::NotFound
                {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove staged file");
                }
            }
        });
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
            name: name.to_string(),
            kind: EntryKind::File,
            cid: None,
            size: 0,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime_ns: m.mtime_ns,
            ctime_ns: m.ctime_ns,
            target: None,
            xattrs: manifest::encode_xattrs(&inode.xattrs),
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
                e.size = target.len() as u64;
                e.target = Some(target.clone());
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
    let self_attrs = tree.is_token_root(ino).then(|| DirAttrs {
        mode: dir.meta.mode,
        uid: dir.meta.uid,
        gid: dir.meta.gid,
        mtime_ns: dir.meta.mtime_ns,
        ctime_ns: dir.meta.ctime_ns,
        xattrs: manifest::encode_xattrs(&dir.xattrs),
    });
    Ok(DirSnapshot {
        ino,
        self_attrs,
        entries,
        pending_children,
    })
}
