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

use crate::backoff::Backoff;
use crate::fs::Fs;
use crate::fs::data::journal::CommittedState;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Body, Ino, TokenId};
use crate::fs::model::tree::Tree;

use super::commit_tree::{Snapshot, Written, all_objects};

/// A commit whose publication another writer's overwrote merges that and publishes again,
/// at most this often in one go (the committer tries again later).
const MERGE_ROUNDS: usize = 4;

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
                    Err(e) => tracing::debug!(token, error = %e, "commit failed; will retry"),
                    Ok(_) => {}
                }
            }
            // What the commits made clean may be unloaded.
            fs.trim_tree();
        }
    });
}

/// A commit under way, for the tree's unloading (`Fs::trim_tree`): marked under the tree's
/// lock, so a pass either ends before the commit first reads the tree or sees the mark;
/// cleared when the commit ends, however it ends.
struct Committing<'a>(&'a Fs);

impl<'a> Committing<'a> {
    fn start(fs: &'a Fs) -> Committing<'a> {
        let _tree = fs.tree();
        fs.inner
            .committing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        Committing(fs)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0
            .inner
            .committing
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Live follow: every `follow_interval`, what other writers published is taken in
/// ([`Fs::follow_all`]).
pub(crate) fn spawn_follower(fs: Fs) {
    let interval = fs.config().follow_interval;
    if interval.is_zero() {
        return;
    }
    let cancel = fs.inner.cancel.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if let Err(e) = fs.follow_all().await {
                tracing::debug!(error = %e, "following other writers failed; will retry");
            }
        }
    });
}

/// A failed commit is retried after a backoff (100 ms doubling, at most 10 s); failures are
/// logged once by [`outage`](crate::fs::outage), so each attempt is only a debug line.
async fn commit_failed_backoff(token: TokenId, e: &FsError, backoff: &mut Backoff) {
    tracing::debug!(token, error = %e, "commit failed; retrying");
    backoff.wait().await;
}

fn commit_backoff() -> Backoff {
    Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
}

impl Fs {
    /// Nothing of `token` is uploading and every commit of it holds.
    fn settled(&self, token: TokenId) -> FsResult<bool> {
        let tree = self.tree();
        let t = tree.token(token)?;
        Ok(t.pending_uploads == 0 && (t.held() || t.read_only || self.config().read_only))
    }

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
            Err(e) => self.inner.outage.local_io_failed("journal", &e),
        }
    }

    /// Take in what other writers published for each sNFT with no change of its own
    /// waiting (docs/FORMAT.md §9); a token with changes merges at its next commit.
    /// Returns how many sNFTs took something in. One resolve per sNFT.
    pub async fn follow_all(&self) -> FsResult<usize> {
        let mut n = 0;
        for token in self.tokens() {
            let idle = {
                let tree = self.tree();
                let Ok(t) = tree.token(token) else { continue };
                !t.is_dirty()
                    && t.pending_uploads == 0
                    && !t.read_only
                    && !t.replaying
                    && t.info.btns.is_some()
            };
            if idle && !self.config().read_only && self.commit_or_follow(token, true).await? {
                n += 1;
            }
        }
        Ok(n)
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
            // What waits out the write-back delay is wanted now (closes keep coming).
            self.inner.uploads.hurry(token, None);
            let pending = self.tree().token(token)?.pending_uploads;
            if pending == 0 {
                match self.commit_token(token).await {
                    Ok(_) if self.settled(token)? => {
                        // What the commits superseded is unpinned too.
                        self.unpins_done().await;
                        return Ok(());
                    }
                    Ok(_) => continue, // a close slipped in: wait for it too
                    // Waiting cannot help (src/fs/rekey.rs).
                    Err(e @ FsError::Rekeyed(_)) => return Err(e),
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
            // fsync wants its file on the node now, fsyncdir every closed file.
            self.inner.uploads.hurry(token, file);
            let (covered, pending) = {
                let tree = self.tree();
                let t = tree.token(token)?;
                let linked = file
                    .and_then(|ino| tree.get(ino).ok())
                    .filter(|i| !i.links.is_empty())
                    .and_then(|i| i.file());
                let file_uploading = linked.is_some_and(|f| f.upload_pending);
                let pending = match file {
                    Some(_) => u64::from(file_uploading),
                    None => t.pending_uploads,
                };
                // A commit taken while the file was uploading carried its version: the
                // published tree does not hold it until a commit after the upload.
                let carries = match file {
                    Some(_) => {
                        file_uploading
                            || linked.and_then(|f| f.staged.as_ref()).is_some_and(|s| {
                                t.committed.carried.iter().any(|op| op.stages(s.path()))
                            })
                    }
                    None => !t.committed.carried.is_empty(),
                };
                // Durable once its commit holds (docs/FORMAT.md §9.3).
                let held = t.held_seq >= seq || t.held();
                (t.committed.journal_seq >= seq && held && !carries, pending)
            };
            if covered {
                return Ok(());
            }
            if pending == 0 {
                match self.commit_token(token).await {
                    Ok(true) => continue,
                    // Nothing to write (the ops since changed nothing a manifest holds,
                    // or the token is read-only), unless a close slipped in.
                    Ok(false) if self.settled(token)? => return Ok(()),
                    // Cannot commit before other uploads end: wait for them.
                    Ok(false) => {}
                    Err(e @ FsError::Rekeyed(_)) => return Err(e),
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
    /// module docs). `Ok(true)` if a new root was published. A failure that is not a node
    /// outage is reported to `outage` until a commit of `token` succeeds.
    pub async fn commit_token(&self, token: TokenId) -> FsResult<bool> {
        let result = self.commit_or_follow(token, false).await;
        let mounted = self.tree().tokens.contains_key(&token);
        match &result {
            // A token no longer mounted has nothing left to commit.
            _ if !mounted => self.inner.outage.unstuck("commit", token),
            Ok(_) => self.inner.outage.unstuck("commit", token),
            // Contention, not a failure: retried at once.
            Err(FsError::Raced(_)) => {}
            Err(e) if !e.is_node_outage() => self.inner.outage.stuck("commit", token, e),
            Err(_) => {}
        }
        result
    }

    /// [`Fs::commit_token`]; with `follow`, also when nothing changed here, to take in
    /// what another writer published (live follow). Before publishing, the published
    /// document is resolved and merged if it is not this mount's own nor an ancestor of it;
    /// after publishing, the record is checked until the document holds, and if another
    /// writer's publication replaced it, that is merged and the result published
    /// (docs/FORMAT.md §9.3). A commit published but not held yet is checked again by the
    /// next call, even with nothing new to write.
    pub(crate) async fn commit_or_follow(&self, token: TokenId, follow: bool) -> FsResult<bool> {
        let _one_at_a_time = self.inner.commit_lock.lock().await;
        let _reading = Committing::start(self);
        self.upgrade_v1(token).await?;
        let mut published = false;
        let mut force = follow;
        // The last round's publication was refused (another writer got in first).
        let mut raced = false;
        for _ in 0..MERGE_ROUNDS {
            raced = false;
            let started = std::time::Instant::now();
            let wanted = {
                let tree = self.tree();
                let t = tree.token(token)?;
                (t.is_dirty() || force || !t.held()) && !t.read_only && !t.replaying
            };
            if wanted && !force && self.record_is_ours(token)? {
                // The node took this mount's last publication as a check and takes none
                // that does not name it: if another writer's got in since, this commit's
                // is refused, and the next round (forced) resolves and merges it
                // (docs/FORMAT.md §9.3). One resolve and one fetch less per commit.
            } else if wanted {
                match self.catch_up(token).await {
                    Ok(merged) => self.merge_pause(token, merged).await,
                    Err(e) => {
                        if e.is_node_outage() {
                            self.inner.outage.failed("commit", started, &e);
                        }
                        return Err(e);
                    }
                }
            }
            if let Some(mut snap) = self.snapshot(token)? {
                match self.write_snapshot(&snap, started).await {
                    Ok(written) => {
                        self.inner.outage.succeeded(self.pending());
                        if let Ok(t) = self.tree().token_mut(token) {
                            t.last_commit_added = written.added;
                        }
                        if written.adopted
                            && let Some(o) = &snap.onto
                        {
                            snap.record.seq = o.seq;
                        }
                        self.committed(token, snap, written).await?;
                        crate::metrics::committed(started.elapsed());
                        published = true;
                    }
                    Err(e) => {
                        crate::metrics::commit_failed();
                        if e.is_node_outage() {
                            self.inner.outage.failed("commit", started, &e);
                        }
                        let mut tree = self.tree();
                        for d in &snap.dirs {
                            tree.restore_changes(d.ino, &d.changes);
                        }
                        if let Ok(t) = tree.token_mut(token) {
                            t.superseded.extend(snap.superseded);
                            t.ledger.give_back_released(snap.released);
                        }
                        if matches!(e, FsError::Raced(_)) {
                            // Another writer published since the resolve: the next round
                            // merges it (docs/FORMAT.md §9.3).
                            tracing::debug!(token, "{e}");
                            force = true;
                            raced = true;
                            continue;
                        }
                        return Err(e);
                    }
                }
            }
            if self.hold(token).await? {
                return Ok(published);
            }
            force = true;
        }
        if raced {
            // Not "nothing to write": the changes are still to publish (retried).
            return Err(FsError::Raced(
                "other writers kept publishing first; committing again".into(),
            ));
        }
        Ok(published)
    }

    /// The BTNS record names this mount's committed document, as far as the node's check
    /// of its publication proves: the node replaced exactly the record resolved, and takes
    /// no later publication that does not name this one. Sets it as what the next
    /// publication replaces.
    fn record_is_ours(&self, token: TokenId) -> FsResult<bool> {
        let mut tree = self.tree();
        let t = tree.token_mut(token)?;
        let ours = t.checked_doc.is_some()
            && t.checked_doc == t.committed.usage_doc
            && t.merged_onto.is_none();
        if ours {
            t.record_seen = t.checked_doc.clone();
        }
        Ok(ours)
    }

    /// Check the record until this mount's committed document holds (docs/FORMAT.md
    /// §9.3): a resolve at least the settle window after the first resolve that showed it
    /// still shows it or a descendant. `Ok(false)`: another writer's publication replaced it (the next round
    /// merges that). A failed resolve, or an older record, proves nothing: checked again,
    /// until the outage grace period.
    async fn hold(&self, token: TokenId) -> FsResult<bool> {
        let (doc, journal_seq, btns, root, seq, checked) = {
            let tree = self.tree();
            let t = tree.token(token)?;
            if t.held() || t.read_only || t.replaying {
                return Ok(true);
            }
            (
                t.committed.usage_doc.clone(),
                t.committed.journal_seq,
                t.info.btns.clone(),
                t.committed.root.clone(),
                t.committed.seq,
                t.checked_doc.is_some() && t.checked_doc == t.committed.usage_doc,
            )
        };
        let held = |tree: &mut Tree| {
            if let Ok(t) = tree.token_mut(token)
                && t.committed.journal_seq == journal_seq
            {
                t.held_seq = journal_seq;
                if let Some(root) = &root {
                    for listener in &self.config().held_roots {
                        listener.held(token, root, seq);
                    }
                }
            }
        };
        let (Some(doc), Some(btns)) = (doc, btns) else {
            held(&mut self.tree());
            return Ok(true);
        };
        let window = self.config().settle_window;
        let step = (window / 4).max(Duration::from_millis(10));
        let store = self.store_of(Some(token));
        let checking_since = std::time::Instant::now();
        // The first resolve that showed the document: it had landed by then.
        let mut seen: Option<std::time::Instant> = None;
        loop {
            let asked = std::time::Instant::now();
            // The node replaced exactly the record this commit was merged against, and
            // takes no publication that does not name this one: it holds.
            let shows = checked
                || match store.resolve(&btns).await {
                    Ok(Some(p)) if p.doc_cid == doc => true,
                    Ok(Some(p)) => {
                        let own = [doc.clone()];
                        match crate::fs::persist::ancestry::relate(
                            &self.inner.ancestry,
                            &*store,
                            &own,
                            &p,
                        )
                        .await
                        {
                            Ok(crate::fs::persist::ancestry::Relation::Ahead { .. }) => true,
                            Ok(crate::fs::persist::ancestry::Relation::Diverged { .. }) => {
                                // The document that replaced it may use what this commit
                                // superseded: kept pinned.
                                if let Ok(t) = self.tree().token_mut(token) {
                                    t.unpin_when_held.clear();
                                }
                                tracing::warn!(
                                    token,
                                    seq = p.seq,
                                    "another writer's publication replaced this mount's; merging it"
                                );
                                return Ok(false);
                            }
                            // An older record, or its ancestry cannot be read now: unknown.
                            Ok(crate::fs::persist::ancestry::Relation::Behind) | Err(_) => false,
                        }
                    }
                    Ok(None) | Err(_) => false,
                };
            if shows {
                let first = *seen.get_or_insert(asked);
                if checked || first.elapsed() >= window {
                    let unpin = {
                        let mut tree = self.tree();
                        held(&mut tree);
                        // Not what the tree took back meanwhile (a merge, equal content):
                        // `unpin_later` checks each when it runs.
                        tree.token_mut(token)
                            .map(|t| std::mem::take(&mut t.unpin_when_held))
                            .unwrap_or_default()
                    };
                    if !unpin.is_empty() {
                        self.unpin_later(token, unpin);
                    }
                    self.replicate(token);
                    return Ok(true);
                }
            }
            if !shows && checking_since.elapsed() > self.config().outage_grace {
                return Err(FsError::Store(crate::fs::store::StoreError::transient(
                    "the published record could not be checked (resolves fail or show an \
                     older record)",
                )));
            }
            tokio::time::sleep(step).await;
        }
    }

    /// Tests: after a merge and before its commit is written and published, wait
    /// [`crate::fs::FsConfig::merge_pause`] (a `kill -9` then is a crash in the middle of a
    /// merge). Nothing by default.
    async fn merge_pause(&self, token: TokenId, merged: bool) {
        let pause = self.config().merge_pause;
        if merged && !pause.is_zero() {
            tracing::info!(
                token,
                ?pause,
                "merged; pausing before publishing (test hook)"
            );
            tokio::time::sleep(pause).await;
        }
    }

    /// A tree read from format v1 manifests is rewritten whole as v2 by its next commit
    /// (docs/FORMAT.md §10): every directory is loaded and marked changed. One-time cost
    /// proportional to the tree.
    async fn upgrade_v1(&self, token: TokenId) -> FsResult<()> {
        {
            let tree = self.tree();
            let t = tree.token(token)?;
            if !t.v1_tree || !t.is_dirty() || t.read_only || t.replaying {
                return Ok(());
            }
        }
        let all = self.load_all(token).await?;
        let mut tree = self.tree();
        for dir in &all {
            if let Some(d) = tree.get_mut(*dir)?.dir_mut() {
                d.dirty = true;
                d.changes.all = true;
            }
        }
        let t = tree.token_mut(token)?;
        t.dirty_dirs.extend(all.iter().copied());
        t.v1_tree = false;
        tracing::info!(
            token,
            dirs = all.len(),
            "rewriting the format v1 tree as v2"
        );
        Ok(())
    }

    /// The new root is published: remember it, drop the journal ops it covers, delete
    /// staged files nothing needs any more, unpin superseded content.
    async fn committed(&self, token: TokenId, snap: Snapshot, w: Written) -> FsResult<()> {
        // A document the node took checked holds at once; so does one adopted from a node
        // that checks publications: nothing replaces it there without naming it.
        let adopted_checked = w.adopted && self.store_of(Some(token)).checks_publications().await;
        let checked = (w.checked || adopted_checked).then(|| w.doc.clone());
        let (written, doc_cid) = (w.dirs, w.doc);
        let mut unpin = snap.superseded;
        if let Some(h) = &w.history {
            // Unpinned only if no loaded inode uses them (`unpins::unused`).
            unpin.extend(h.dropped.iter().cloned());
        }
        let root_cid = written.get(&snap.root).map(|o| o.top.clone());
        // A merge that gave exactly theirs adopts their document: its parents are its own.
        let adopted = snap.onto.as_ref().and_then(|o| o.doc.as_ref()) == Some(&doc_cid);
        if let Some(root) = root_cid.as_ref().filter(|_| !adopted) {
            let parents = snap.record.prev.iter().chain(snap.record.merged.iter());
            self.inner.ancestry.remember(
                &doc_cid,
                crate::fs::persist::ancestry::DocNode {
                    seq: snap.record.seq,
                    root: root.clone(),
                    parents: parents.cloned().collect(),
                },
            );
        }
        let (delete, fully_loaded) = {
            let mut guard = self.tree();
            let tree = &mut *guard;
            for (ino, new) in &written {
                if let Ok(i) = tree.get_mut(*ino)
                    && let Some(d) = i.dir_mut()
                {
                    d.top = Some(new.top.clone());
                    d.table = new.table.clone();
                    if let Some(old) = d.objects.replace(new.objects.clone()) {
                        let kept: HashSet<&str> =
                            new.objects.iter().map(|(c, _)| c.as_str()).collect();
                        unpin.extend(
                            old.iter()
                                .filter(|(c, _)| !kept.contains(c.as_str()))
                                .map(|(c, _)| c.clone()),
                        );
                    }
                }
            }
            // The new manifests count instead of the old ones. (What that releases is not
            // the tree's to keep counting: the graph's count covered it.)
            let released = tree.token_mut(token)?.ledger.take_released();
            for ino in written.keys() {
                tree.recharge(*ino, false);
            }
            let ledger = &mut tree.token_mut(token)?.ledger;
            ledger.take_released();
            ledger.give_back_released(released);
            let t = tree.token_mut(token)?;
            // Inodes made for groups' names loaded meanwhile stay theirs.
            let mut groups = snap.groups;
            for (id, slot) in &mut groups {
                if slot.ino.is_none() {
                    slot.ino = t.groups.get(id).and_then(|s| s.ino);
                }
            }
            t.groups = groups;
            let tree_usage = snap.usage.with_manifests(all_objects(&written));
            if let Some(h) = &w.history {
                // History's share: what the graph holds beyond the tree (FORMAT.md §14.5).
                t.ledger.counted(h.published, h.tree);
                t.usage = t.ledger.usage();
            }
            t.tree_usage = tree_usage;
            let state = CommittedState {
                root: root_cid.clone(),
                usage_doc: Some(doc_cid),
                seq: snap.record.seq,
                journal_seq: snap.journal_seq,
                usage: w.usage,
                files: snap.record.files,
                carried: snap.carried,
                encryption: snap.record.encryption.clone(),
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
                    self.inner.outage.local_io_failed("journal", &e);
                    t.state_unsaved = true;
                    Vec::new()
                }
            };
            let mut delete: HashSet<PathBuf> = delete.into_iter().collect();
            t.committed = state;
            t.checked_doc = checked;
            t.merged_onto = None;
            t.last_commit = Some(std::time::SystemTime::now());
            let fully_loaded = t.unloaded_dirs == 0;
            // Staged copies the journal no longer needs: only files with one (swept).
            tree.sweep();
            let staged: Vec<Ino> = tree.tracked.staged.iter().copied().collect();
            for ino in staged {
                let Some(inode) = tree.inodes.get_mut(&ino) else {
                    continue;
                };
                if inode.token != Some(token) {
                    continue;
                }
                let Body::File(f) = &mut inode.body else {
                    continue;
                };
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
                        tree.tracked.staged.remove(&ino);
                    }
                }
            }
            (delete, fully_loaded)
        };
        remove_staged(delete);
        // `.snapshots/` shows what the new root keeps (also none: it exists in every
        // format-3 root, which this commit may have written first).
        if let Some(root) = &root_cid {
            let versions = w.history.map(|h| h.versions).unwrap_or_default();
            self.history_committed(token, root, versions);
        }
        // Content may be shared (equal files have equal CIDs, a copy may be moved to a
        // directory not loaded): the published graph's counts, or a fully loaded tree,
        // prove a CID unused.
        self.move_counts(token, root_cid.as_deref(), &mut unpin, fully_loaded)
            .await;
        let unpin = super::unpins::unused(&self.tree(), token, unpin);
        // Unpinned once the document holds (`hold`): until then another machine's
        // publication made on the previous document may still use them.
        if let Ok(t) = self.tree().token_mut(token) {
            t.unpin_when_held.extend(unpin);
        }
        self.tell_committed();
        self.inner.progress.notify_waiters();
        tracing::debug!(token, seq = snap.record.seq, "committed");
        Ok(())
    }
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
