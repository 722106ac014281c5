//! Bringing an sNFT into the mount: its last committed root (from the journal's
//! `state.json`, else from its BTNS name), journal replay over it, re-queued uploads;
//! and lazy loading of directories from their manifests.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use crate::backoff::Backoff;
use crate::fs::data::journal::{CommittedState, Journal, Op, Record};
use crate::fs::data::staged::StagedFile;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{
    Body, DirBody, Entries, FileBody, Ino, Inode, Kind, Meta, ROOT_INO, TokenId,
};
use crate::fs::model::token::{ChainGate, TokenFs, TokenInfo};
use crate::fs::store::Blob;
use crate::fs::{Fs, SetAttr, TimeSet};

/// A journal op whose replay fails because the node does not answer is tried this often,
/// waiting from `REPLAY_RETRY_FIRST` up to `REPLAY_RETRY_MAX` between tries.
const REPLAY_ATTEMPTS: u32 = 8;
const REPLAY_RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(500);
const REPLAY_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(15);

impl Fs {
    /// The keys of token `id`'s tree: opened from its `encryption`, or for a token with no
    /// tree yet, what the key ring gives new trees (then `true`: `committed` now holds the
    /// new `encryption`, to be recorded before anything is sealed with it).
    async fn tree_keys(
        &self,
        id: TokenId,
        committed: &mut CommittedState,
        read_only: bool,
    ) -> FsResult<(crate::fs::data::content::Sealing, bool)> {
        let keys = self.config().keys.clone();
        let fresh = committed.root.is_none() && committed.encryption.is_none() && !read_only;
        let encryption = committed.encryption.clone();
        let opened = tokio::task::spawn_blocking(move || match fresh {
            true => keys.new_tree(id).map(|(e, c)| (c, Some(e), None)),
            false => keys
                .open_migrating(id, &encryption)
                .map(|(c, m)| (c, None, m)),
        })
        .await
        .map_err(|e| FsError::Locked(format!("sNFT {id}: key task: {e}")))?
        .map_err(FsError::Locked)?;
        let (crypto, new, migrated) = opened;
        let is_new = new.as_ref().is_some_and(|e| !e.is_none());
        if let Some(e) = new {
            committed.encryption = e;
        }
        // Opened through a legacy wallet wrap: the next commit publishes the same data key
        // with an EIP-712 wrap in its place (docs/FORMAT.md §6.4.1).
        if let Some(e) = migrated
            && !read_only
        {
            tracing::info!(
                token = id,
                "the tree was opened through a legacy wallet wrap; its next commit replaces it with an EIP-712 wrap"
            );
            committed.encryption = e;
        }
        if crypto.is_sealed() {
            tracing::info!(token = id, "the sNFT's tree is encrypted");
        }
        Ok((Arc::new(crypto), is_new))
    }

    /// The document published under `btns`, or `None` when the node does not answer soon
    /// (best effort: the cached state is then used as it is).
    async fn published_now(&self, id: TokenId, btns: &str) -> Option<crate::fs::store::Published> {
        let resolved = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.store_of(Some(id)).resolve(btns),
        )
        .await;
        match resolved {
            Ok(Ok(p)) => p,
            _ => None,
        }
    }

    /// What other writers published while this cache was not mounted. `pxfs key` edits
    /// publish documents of the same tree with other wraps; `pxfs encrypt`/`decrypt` and
    /// mounts on other machines publish other trees. A cache that remembers an older
    /// document than the published one takes the published one: its `encryption`, `seq`
    /// and CID as `prev` when the tree is the same; the whole state when it is not and this
    /// cache holds nothing unpublished (`idle`: no journal ops, nothing carried), as an
    /// empty cache would. (Local changes over another writer's tree are a merge, not this,
    /// unless `rebase`: this cache's own tree is gone from the node, so there is nothing to
    /// merge from, and its changes are replayed onto the published tree, see
    /// [`Fs::own_tree_gone`].)
    /// Best effort: a node that does not answer soon leaves the cached state as it is.
    fn adopt_published(
        &self,
        id: TokenId,
        p: crate::fs::store::Published,
        c: &mut CommittedState,
        idle: bool,
        rebase: bool,
    ) -> bool {
        if p.seq <= c.seq {
            return false;
        }
        if Some(&p.root) == c.root.as_ref() {
            if p.encryption != c.encryption {
                tracing::info!(
                    token = id,
                    seq = p.seq,
                    "the sNFT's keys were changed; using the published wraps"
                );
            }
            c.encryption = p.encryption;
            c.usage_doc = Some(p.doc_cid);
            c.seq = p.seq;
            return true;
        }
        // Converted on another machine (src/fs/rekey.rs): this cache's tree cannot be
        // merged with it, so what it holds unpublished (journal ops, carried closes) is
        // replayed onto the converted tree instead, uploaded under its key. (A document
        // that weakens the tree never gets here: the caller serves it read-only.)
        let rekeyed = !crate::fs::persist::rekey::same_tree_key(&c.encryption, &p.encryption);
        if (!idle || !c.carried.is_empty()) && !rekeyed && !rebase {
            return false;
        }
        match (rekeyed || rebase) && !idle {
            true if !rekeyed => tracing::warn!(
                token = id,
                seq = p.seq,
                known = c.root.as_deref().unwrap_or_default(),
                "the tree this cache last committed is gone from the node (another writer's \
                 commits superseded it and the node collected it); replaying this cache's \
                 unpublished changes onto the published tree"
            ),
            true => tracing::warn!(
                token = id,
                seq = p.seq,
                "the sNFT's tree was converted on another machine; replaying this cache's \
                 unpublished changes onto it"
            ),
            false => tracing::info!(
                token = id,
                seq = p.seq,
                "another writer published a newer tree; starting from it"
            ),
        }
        *c = CommittedState {
            root: Some(p.root),
            usage_doc: Some(p.doc_cid),
            seq: p.seq,
            journal_seq: c.journal_seq,
            usage: p.usage,
            files: p.files,
            carried: std::mem::take(&mut c.carried),
            encryption: p.encryption,
        };
        true
    }

    /// Mount one sNFT: load its committed root, replay its journal, resume its uploads.
    pub async fn add_token(&self, info: TokenInfo) -> FsResult<()> {
        let id = info.token_id;
        let btns_name = info.btns.clone();
        if self.tree().tokens.contains_key(&id) {
            self.update_token(info);
            return Ok(());
        }
        let cache = &self.config().cache_dir;
        let staging = cache.join("staging").join(id.to_string());
        std::fs::create_dir_all(&staging)?;
        let recovered = Journal::open(&cache.join("journal").join(id.to_string()))
            .map_err(|e| FsError::Journal(format!("token {id}: {e}")))?;
        let mut read_only = false;
        let had_state = recovered.state.is_some();
        let committed = match (recovered.state, &info.btns) {
            (Some(state), _) => state,
            (None, None) => CommittedState::default(),
            (None, Some(name)) => match self.store_of(Some(id)).resolve(name).await {
                Ok(Some(p)) => CommittedState {
                    root: Some(p.root),
                    usage_doc: Some(p.doc_cid),
                    seq: p.seq,
                    journal_seq: 0,
                    usage: p.usage,
                    files: p.files,
                    carried: Vec::new(),
                    encryption: p.encryption,
                },
                Ok(None) if info.synced_usage > 0 => {
                    // The chain recorded a synced tree: an empty tree served writable would
                    // publish over it. The node lost the name's record, or hides it.
                    tracing::error!(
                        token = id,
                        synced_usage = info.synced_usage,
                        "the node has no tree under the sNFT's BTNS name, but the chain records \
                         a synced one; serving it read-only (point [node] api_url at a node \
                         that holds it, or name one in [node] replicas)"
                    );
                    read_only = true;
                    CommittedState::default()
                }
                Ok(None) => CommittedState::default(),
                Err(e) => {
                    // Serving an empty tree writable would publish over the real one.
                    tracing::error!(token = id, error = %e,
                        "cannot resolve the sNFT's BTNS name; serving it read-only");
                    read_only = true;
                    CommittedState::default()
                }
            },
        };
        let mut committed = committed;
        let mut changed = false;
        let mut rebased = false;
        // What is published now, for a cache that knows a tree of its own: taken in when it
        // is newer, unless it weakens the tree for this machine (no encryption where it has
        // seen it encrypted, or a data key it cannot open: src/fs/strongest.rs); then the
        // sNFT is served read-only at the tree this cache knows.
        if had_state
            && !read_only
            && let Some(name) = &info.btns
            && let Some(p) = self.published_now(id, name).await
        {
            // A cache seeded with no tree yet (a conversion's target) has no key of its own
            // to compare: only a declared downgrade counts there.
            let refusal = match committed.root {
                Some(_) => {
                    self.weakened_by(id, &committed.encryption, &p.encryption, p.seq)
                        .await
                }
                None => crate::fs::persist::strongest::weakens(
                    &self.config().cache_dir,
                    id,
                    &p.encryption,
                )
                .then(|| crate::fs::persist::strongest::downgrade_message(id, p.seq)),
            };
            match refusal {
                Some(message) => {
                    tracing::error!(token = id, "{message}");
                    read_only = true;
                }
                None => {
                    let idle = recovered.ops.is_empty();
                    rebased = !idle && self.own_tree_gone(id, &committed, &p).await;
                    changed = self.adopt_published(id, p, &mut committed, idle, rebased);
                }
            }
        }
        let cache_dir = self.config().cache_dir.clone();
        let (sealing, new_key) = self.tree_keys(id, &mut committed, read_only).await?;
        if let crate::format::usage::Encryption::Sealed(e) = &committed.encryption
            && let Err(e) =
                crate::fs::persist::strongest::remember_sealed(&cache_dir, id, &e.key_id)
        {
            tracing::warn!(token = id, error = %e, "cannot record that the sNFT is encrypted");
        }
        if (!had_state || new_key || changed) && !read_only {
            recovered.journal.record_state(&committed)?;
        }
        let ops = recovered.ops;
        let mut journal = recovered.journal;
        journal.set_disk_delay(self.config().disk_delay);
        {
            let mut tree = self.tree();
            let root_dir = DirBody {
                entries: if committed.root.is_some() {
                    None
                } else {
                    Some(Entries::default())
                },
                top: committed.root.clone(),
                ..Default::default()
            };
            let root_inode = Inode {
                token: Some(id),
                meta: Meta::new(0o755, self.config().uid, self.config().gid),
                xattrs: Default::default(),
                links: Vec::new(),
                body: Body::Dir(root_dir),
                open_handles: 0,
                group: None,
                snapshot_of: None,
            };
            let root = if self.config().single_token {
                tree.inodes.insert(ROOT_INO, Box::new(root_inode));
                tree.touch(ROOT_INO);
                ROOT_INO
            } else {
                tree.alloc(root_inode)
            };
            if committed.root.is_none() {
                // A tree this pxfs writes first is format 3 from its first commit: the
                // snapshot view's name is taken from the start (FORMAT.md §12.2).
                tree.root_read(id, Some(None));
            }
            tree.tokens.insert(
                id,
                TokenFs {
                    info,
                    root,
                    usage: committed.usage,
                    tree_usage: committed.usage,
                    ledger: {
                        let mut l = crate::fs::model::ledger::Ledger::new(committed.usage);
                        l.keep_released(!self.config().history.is_off());
                        l
                    },
                    files: committed.files,
                    read_only,
                    dirty_dirs: HashSet::new(),
                    pending_uploads: 0,
                    unloaded_dirs: u64::from(committed.root.is_some()),
                    // The last run's commit: if another writer's replaced it, the next
                    // commit or follow merges it back (docs/FORMAT.md §9.3).
                    held_seq: committed.journal_seq,
                    unpin_when_held: Vec::new(),
                    committed,
                    journal: std::sync::Arc::new(journal),
                    superseded: Vec::new(),
                    unstored: std::collections::HashMap::new(),
                    staging_dir: staging.clone(),
                    last_upload: None,
                    replaying: true,
                    last_commit: None,
                    chain_gate: ChainGate::default(),
                    state_unsaved: false,
                    v1_tree: false,
                    last_commit_added: Default::default(),
                    groups: Default::default(),
                    loading_all: false,
                    sealing,
                    merged_onto: None,
                    conflicts: 0,
                    record_seen: None,
                    checked_doc: None,
                    graph: Default::default(),
                },
            );
        }
        let replayed = ops.len();
        let moot = crate::fs::data::journal::moot_closes(&ops);
        for (i, record) in ops.into_iter().enumerate() {
            if let Err(e) = self
                .replay_or_retry(id, &record, moot.contains(&i), rebased)
                .await
            {
                // Going on would commit a tree without this op and drop it from the
                // journal: leave the journal as it is for the next attempt instead.
                self.forget_token(id);
                return Err(FsError::Journal(format!(
                    "token {id}: cannot replay journal op {} ({e}); nothing was lost, \
                     it is replayed at the next mount",
                    record.seq
                )));
            }
        }
        let mut tree = self.tree();
        let root = {
            let t = tree.token_mut(id)?;
            t.replaying = false;
            t.root
        };
        clean_staging(&tree, id, &staging);
        if !self.config().single_token {
            let name = crate::format::Name::new(id.to_string())
                .map_err(|_| FsError::Invalid("token id"))?;
            tree.get_mut(root)?.links.push((ROOT_INO, name.clone()));
            if let Ok(Some(e)) = tree
                .get_mut(ROOT_INO)
                .map(|r| r.dir_mut().and_then(|d| d.entries.as_mut()))
            {
                e.insert(&name, root);
                e.subdirs += 1;
            }
        }
        drop(tree);
        // A replica behind on this tree (or configured since) gets it now.
        self.replicate(id);
        if !read_only && let Some(name) = btns_name {
            let store = self.store_of(Some(id));
            self.inner
                .rt
                .spawn(async move { store.prepare_publishing(&name).await });
        }
        tracing::info!(token = id, replayed, "sNFT mounted");
        Ok(())
    }

    /// PX.sol: the contract's on-chain usage and bandwidth, for quota and `statfs`.
    pub fn set_chain_gate(&self, token: TokenId, gate: ChainGate) {
        if let Some(t) = self.tree().tokens.get_mut(&token) {
            t.chain_gate = gate;
        }
    }

    /// New chain state for a mounted token (quota, overdue, BTNS name).
    pub fn update_token(&self, info: TokenInfo) {
        if let Some(t) = self.tree().tokens.get_mut(&info.token_id) {
            t.info = info;
        }
    }

    /// The wallet no longer owns `token`: hide it. Its journal stays in the cache.
    pub fn remove_token(&self, token: TokenId) {
        let mut guard = self.tree();
        let tree = &mut *guard;
        if self.config().single_token {
            return; // the mount root cannot go away under the user
        }
        let Some(t) = tree.tokens.get(&token) else {
            return;
        };
        let root = t.root;
        if let Ok(Some(e)) = tree
            .get_mut(ROOT_INO)
            .map(|r| r.dir_mut().and_then(|d| d.entries.as_mut()))
        {
            e.remove(token.to_string().as_bytes());
            e.subdirs = e.subdirs.saturating_sub(1);
        }
        if let Ok(r) = tree.get_mut(root) {
            r.links.clear();
        }
        tree.tokens.remove(&token);
    }

    /// Whether the tree this cache last committed (`known`) is gone from the node while
    /// another writer's tree `published` is there: that writer's commits superseded it and
    /// the node collected what they unpinned (a node collects by itself once its
    /// repository fills). Journal ops cannot be replayed onto it then, at any mount. A
    /// root the node still holds keeps every page below it (what a published root or a
    /// kept version reaches stays pinned), so its root page decides. A node that does not
    /// answer decides nothing: the replay goes on as before and waits for it.
    async fn own_tree_gone(
        &self,
        id: TokenId,
        known: &CommittedState,
        published: &crate::fs::store::Published,
    ) -> bool {
        let Some(root) = known.root.as_deref() else {
            return false;
        };
        if root == published.root || published.seq <= known.seq {
            return false;
        }
        match self.store_of(Some(id)).fetch(root).await {
            Ok(_) => false,
            Err(e) => !e.transient,
        }
    }

    /// Makes the directories on the way to `path` that the tree lacks, for an op replayed
    /// onto another writer's tree that removed one this cache wrote into: what the op
    /// made is kept, under the path it had.
    async fn make_parents(&self, token: TokenId, path: &[u8]) -> FsResult<()> {
        if let Some(end) = path.iter().rposition(|b| *b == b'/') {
            self.walk(token, &path[..end], true).await?;
        }
        Ok(())
    }

    /// The inode at `path` in `token`, loading directories on the way.
    async fn resolve(&self, token: TokenId, path: &[u8]) -> FsResult<Ino> {
        self.walk(token, path, false).await
    }

    /// [`Fs::resolve`]; with `make_missing`, a directory missing on the way is made
    /// ([`Fs::make_parents`]) instead of failing with `NotFound`.
    async fn walk(&self, token: TokenId, path: &[u8], make_missing: bool) -> FsResult<Ino> {
        let mut cur = self.tree().token(token)?.root;
        for part in path.split(|b| *b == b'/').filter(|p| !p.is_empty()) {
            self.ensure_loaded(cur).await?;
            let child = self.tree().child(cur, part)?;
            cur = match child {
                Some(ino) => ino,
                None if make_missing => {
                    tracing::warn!(token, path = %String::from_utf8_lossy(path),
                        "another writer removed a directory this cache wrote into; made again");
                    let (uid, gid) = (self.config().uid, self.config().gid);
                    self.mkdir(cur, part, 0o755, uid, gid).await?.ino
                }
                None => return Err(FsError::NotFound),
            };
        }
        Ok(cur)
    }

    async fn resolve_parent<'a>(
        &self,
        token: TokenId,
        path: &'a [u8],
    ) -> FsResult<(Ino, &'a [u8])> {
        let (dir, name) = match path.iter().rposition(|b| *b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], path),
        };
        let parent = self.resolve(token, dir).await?;
        self.ensure_loaded(parent).await?;
        Ok((parent, name))
    }

    /// Replay one op. An op that no longer applies (it touched a file that was never
    /// closed, so was never journaled) is skipped; one that could not be replayed because
    /// the node or the cache disk failed is retried, then reported.
    /// `moot`: a close whose version a later op does away with (see `journal::moot_closes`).
    /// `rebased`: replayed onto another writer's tree (see [`Fs::adopt_published`]), where a
    /// directory this cache wrote into may be gone: it is made again first.
    async fn replay_or_retry(
        &self,
        token: TokenId,
        record: &Record,
        moot: bool,
        rebased: bool,
    ) -> FsResult<()> {
        let mut backoff = Backoff::new(REPLAY_RETRY_FIRST, REPLAY_RETRY_MAX);
        let mut attempt = 1;
        loop {
            match self.replay(token, record, moot, rebased).await {
                Ok(()) => return Ok(()),
                Err(FsError::Store(e)) if e.transient && attempt < REPLAY_ATTEMPTS => {
                    tracing::warn!(token, seq = record.seq, attempt, error = %e,
                        retry_in_ms = backoff.next_delay().as_millis() as u64,
                        "node did not answer during journal replay; retrying");
                    backoff.wait().await;
                    attempt += 1;
                }
                Err(e @ FsError::Store(_)) => return Err(e),
                Err(FsError::Io(e)) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(FsError::Io(e));
                }
                Err(e) => {
                    tracing::info!(token, seq = record.seq, op = %record.op.describe(), error = %e,
                        "journal op does not apply (it touched a file never closed); skipped");
                    return Ok(());
                }
            }
        }
    }

    /// Undo a half-done [`Fs::add_token`]: its inodes go, its journal is closed.
    fn forget_token(&self, token: TokenId) {
        let mut tree = self.tree();
        tree.tokens.remove(&token);
        tree.inodes
            .retain(|ino, i| *ino == ROOT_INO || i.reads_as() != Some(token));
    }

    async fn replay(
        &self,
        token: TokenId,
        record: &Record,
        moot: bool,
        rebased: bool,
    ) -> FsResult<()> {
        if rebased && let Some(path) = record.op.created() {
            self.make_parents(token, path).await?;
        }
        match &record.op {
            Op::Mkdir {
                path,
                mode,
                uid,
                gid,
                mtime_ns,
            } => {
                let (parent, name) = self.resolve_parent(token, path).await?;
                let attr = self.mkdir(parent, name, *mode, *uid, *gid).await?;
                self.set_mtime(attr.ino, *mtime_ns);
            }
            Op::Close {
                path,
                staged,
                size,
                overlay,
                mode,
                uid,
                gid,
                mtime_ns,
            } => {
                let meta = Meta::new(*mode, *uid, *gid);
                let version = Staged {
                    path: staged,
                    size: *size,
                    overlay: overlay.as_ref(),
                };
                self.replay_close(token, path, version, meta, *mtime_ns, moot)
                    .await?;
            }
            Op::Setattr {
                path,
                mode,
                uid,
                gid,
                mtime_ns,
            } => {
                let ino = self.resolve(token, path).await?;
                let set = SetAttr {
                    mode: *mode,
                    uid: *uid,
                    gid: *gid,
                    mtime: mtime_ns.map(TimeSet::At),
                    ..Default::default()
                };
                self.setattr(ino, set).await?;
            }
            Op::Rename { from, to, exchange } => {
                let (p1, n1) = self.resolve_parent(token, from).await?;
                let (p2, n2) = self.resolve_parent(token, to).await?;
                self.replay_rename(p1, n1, p2, n2, *exchange).await?;
            }
            Op::Unlink { path } => {
                let (parent, name) = self.resolve_parent(token, path).await?;
                self.unlink(parent, name).await?;
            }
            Op::Rmdir { path } => {
                let (parent, name) = self.resolve_parent(token, path).await?;
                self.rmdir(parent, name).await?;
            }
            Op::Symlink {
                path,
                target,
                uid,
                gid,
                mtime_ns,
            } => {
                let (parent, name) = self.resolve_parent(token, path).await?;
                let attr = self.symlink(parent, name, target, *uid, *gid).await?;
                self.set_mtime(attr.ino, *mtime_ns);
            }
            Op::Link { from, to } => {
                let ino = self.resolve(token, from).await?;
                let (parent, name) = self.resolve_parent(token, to).await?;
                self.link(ino, parent, name).await?;
            }
            Op::Mknod {
                path,
                kind,
                mode,
                rdev,
                uid,
                gid,
                mtime_ns,
            } => {
                let kind = Kind::from_entry_kind(*kind)
                    .ok_or(FsError::Invalid("mknod of an unknown kind"))?;
                let (parent, name) = self.resolve_parent(token, path).await?;
                let attr = self
                    .mknod(parent, name, kind, *mode, *rdev, *uid, *gid)
                    .await?;
                self.set_mtime(attr.ino, *mtime_ns);
            }
            Op::SetXattr { path, name, value } => {
                let ino = self.resolve(token, path).await?;
                let value = hex::decode(value).map_err(|_| FsError::Invalid("xattr value"))?;
                self.setxattr(ino, name, &value, 0).await?;
            }
            Op::RemoveXattr { path, name } => {
                let ino = self.resolve(token, path).await?;
                self.removexattr(ino, name).await?;
            }
        }
        Ok(())
    }

    /// A journaled rename whose source is missing moved a file that was never closed (so
    /// is not in the replayed tree): what it replaced at the destination is still gone,
    /// and what an exchange moved to the source's name still moves there.
    async fn replay_rename(
        &self,
        p1: Ino,
        n1: &[u8],
        p2: Ino,
        n2: &[u8],
        exchange: bool,
    ) -> FsResult<()> {
        let (src, dst) = {
            let tree = self.tree();
            let dst = tree
                .child(p2, n2)?
                .map(|d| tree.get(d).map(|i| i.kind()))
                .transpose()?;
            (tree.child(p1, n1)?, dst)
        };
        match (src, dst) {
            (None, Some(_)) if exchange => self.rename(p2, n2, p1, n1, false, false).await,
            (None, Some(kind)) if kind != Kind::Dir => self.unlink(p2, n2).await,
            (Some(_), None) if exchange => self.rename(p1, n1, p2, n2, false, false).await,
            _ => self.rename(p1, n1, p2, n2, false, exchange).await,
        }
    }

    fn set_mtime(&self, ino: Ino, mtime_ns: i64) {
        if let Ok(i) = self.tree().get_mut(ino) {
            i.meta.mtime_ns = mtime_ns;
            i.meta.atime_ns = mtime_ns;
        }
    }

    /// A closed version found in the journal: it becomes the file's content again and is
    /// queued for upload.
    async fn replay_close(
        &self,
        token: TokenId,
        path: &[u8],
        version: Staged<'_>,
        meta: Meta,
        mtime_ns: i64,
        moot: bool,
    ) -> FsResult<()> {
        let (parent, name) = self.resolve_parent(token, path).await?;
        let (staged, expected) = (version.path, version.size);
        let overlay = match version.overlay {
            Some(record) => Some(self.overlay_base(token, parent, name, record).await?),
            None => None,
        };
        let staged = match StagedFile::open_existing(staged, overlay) {
            Ok(s) => Arc::new(s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && moot => {
                // Dropped before the crash: a later op removes or replaces this version.
                tracing::debug!(token, staged = %staged.display(),
                    "staged content of a moot close is gone; skipped");
                return Ok(());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Deleted by someone else: this version is gone; the previous one stays.
                tracing::error!(token, staged = %staged.display(), error = %e,
                    "staged content is missing; this close is not replayed");
                tracing::debug!(token, path = %crate::format::name::escape(path), "close not replayed");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        let size = staged.len()?;
        if expected.is_some_and(|e| e != size) {
            // Only a power loss does this (the journal line reached the disk, the content
            // did not): never resurrect a torn version; the previous one stays.
            tracing::error!(token, expected, found = size, staged = %staged.path().display(),
                "staged content did not reach the disk whole; this close is not replayed");
            tracing::debug!(token, path = %crate::format::name::escape(path), "close not replayed");
            return Ok(());
        }
        let mut guard = self.tree();
        let tree = &mut *guard;
        let ino = match tree.child(parent, name)? {
            Some(ino) if tree.get(ino)?.kind() == Kind::File => ino,
            Some(_) => return Err(FsError::IsDir),
            None => {
                // The file was created before this close; the parent's times as replayed
                // so far already account for that (a `utimes` of the parent after the
                // create is journaled before this op), so the create must not touch them.
                let parent_meta = tree.get(parent)?.meta;
                let body = Body::File(FileBody::default());
                let name = crate::fs::model::tree::check_name(name)?;
                let ino = tree.create(parent, &name, meta, body, Default::default())?;
                tree.get_mut(parent)?.meta = parent_meta;
                ino
            }
        };
        let inode = tree.get_mut(ino)?;
        inode.meta.mode = meta.mode;
        inode.meta.uid = meta.uid;
        inode.meta.gid = meta.gid;
        inode.meta.mtime_ns = mtime_ns;
        let Some(f) = inode.file_mut() else {
            return Err(FsError::IsDir);
        };
        let old = f.size;
        f.session = Some(staged);
        f.size = size;
        f.writers = 0;
        tree.size_changed(ino, old, size);
        // Goes through the normal close: upload queued, journal untouched (replaying).
        self.close_session(tree, ino)?;
        // Counted as the version it now is (not on the node yet), whether or not its size
        // changed: a change in place over a committed version keeps the size.
        tree.recharge(ino, false);
        Ok(())
    }
}

/// A closed version as the journal names it.
struct Staged<'a> {
    path: &'a std::path::Path,
    /// Its length at close.
    size: Option<u64>,
    overlay: Option<&'a crate::fs::data::overlay::Record>,
}

impl Fs {
    /// The overlay a journaled close describes, over its base: the file's committed version
    /// if it is that base (its table already read), else the base's table read again.
    async fn overlay_base(
        &self,
        token: TokenId,
        parent: Ino,
        name: &[u8],
        record: &crate::fs::data::overlay::Record,
    ) -> FsResult<crate::fs::data::overlay::Overlay> {
        let committed = {
            let tree = self.tree();
            tree.child(parent, name)?
                .and_then(|ino| tree.get(ino).ok())
                .and_then(|i| i.file())
                .and_then(|f| f.blob.clone())
                .filter(|b| {
                    b.cid == record.base && b.size == record.base_size && b.chunks.is_some()
                })
        };
        let base = match committed {
            Some(b) => b,
            None => {
                let store = self.store_of(Some(token));
                let sealing = self.sealing(Some(token));
                let table = crate::fs::data::pages::read_chunk_table(
                    &*store,
                    &sealing,
                    &self.inner.pages,
                    &record.base,
                    record.base_size,
                )
                .await?;
                Blob::chunked(record.base.clone(), record.base_size, table)
            }
        };
        Ok(crate::fs::data::overlay::Overlay::from_record(base, record))
    }
}

/// Delete staged files no journal op and no inode refers to (sessions a crash cut short).
fn clean_staging(tree: &crate::fs::model::tree::Tree, token: TokenId, dir: &std::path::Path) {
    let Ok(t) = tree.token(token) else { return };
    let keep: HashSet<PathBuf> = t.journal.referenced_staged().into_iter().collect();
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in read.flatten() {
        let path = entry.path();
        if !keep.contains(&path) {
            let _ = std::fs::remove_file(&path);
        }
    }
}
