//! Two writers, one sNFT (docs/FORMAT.md §9). A mount's **own** document is the one it
//! last published or applied. Before a commit publishes, the sNFT's BTNS name is resolved;
//! if another writer published a document that is neither own nor an ancestor of it, its
//! changes are folded into the tree in memory first: a three-way merge by path, base = the
//! tree of the nearest common ancestor of own and theirs (`ancestry`), theirs = the
//! published tree, ours = the tree in memory. The commit then publishes the merged tree on
//! top of theirs (`prev` = theirs, `merged` = this mount's previous document).
//!
//! The merge walks only what differs between base and theirs (equal directory CIDs are
//! skipped), loading ours along those paths. Per name that theirs changed:
//! - ours did not change it: theirs' version is taken (a deletion included);
//! - both made the same change: nothing to do;
//! - both changed a directory: merged inside, recursively;
//! - theirs deleted what ours changed: ours stays;
//! - ours deleted (or moved) what theirs changed: a directory ours moved gets theirs'
//!   changes where it is now; anything else comes back under its name with theirs' version;
//! - otherwise (both changed a file, or the kinds differ): theirs keeps the name and ours
//!   is renamed beside it to a **conflict copy**, `<stem>.conflict-<host>-<UTC time><.ext>`.
//!
//! What the merge changes is not journaled: a crash before the merge commit is published
//! replays the journal over the last committed root, and the next commit merges again.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::format::{self, Name};
use crate::fs::Fs;
use crate::fs::data::pages;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Body, DirBody, Entries, Ino, Kind, Meta, TokenId};
use crate::fs::model::stored;
use crate::fs::model::token::Onto;
use crate::fs::model::tree::Tree;
use crate::fs::store::Published;

use super::merge_gone::{gone_from_node, is_gone, settled_file};

/// One directory to merge: ours (in memory), and the tops of base's and theirs' versions.
struct Job {
    ours: Ino,
    base: Option<String>,
    theirs: String,
    /// The directory's own attributes after the merge (theirs', when ours did not change
    /// them); `None`: ours stay.
    own: Option<Own>,
}

/// A directory's own attributes and xattrs.
type Own = (Meta, BTreeMap<Vec<u8>, Vec<u8>>);

/// What one merge did, for the log and `pxfs status`.
#[derive(Debug, Default, Clone, Copy)]
struct Folded {
    dirs: usize,
    taken: usize,
    conflicts: usize,
}

/// The entries a merge changed, for the kernel to forget.
pub(super) type Changed = Vec<(Ino, Name)>;

impl Fs {
    /// This mount's own document(s) (docs/FORMAT.md §9.1): the last it published or
    /// applied; while a merge is folded in and not published yet, the merged document and
    /// its own previous one.
    pub(crate) fn own_heads(t: &crate::fs::model::token::TokenFs) -> Vec<String> {
        match &t.merged_onto {
            Some(o) => o.doc.iter().chain(o.ours.iter()).cloned().collect(),
            None => t.committed.usage_doc.iter().cloned().collect(),
        }
    }

    /// The document published under `token`'s BTNS name when it is not this mount's own
    /// nor an ancestor of it (another writer published since), with the root of the merge
    /// base (`None`: the empty tree); `None` when there is nothing to take in, or no name.
    /// A node that does not answer fails this (never a blind publish).
    pub(crate) async fn published_since_base(
        &self,
        token: TokenId,
    ) -> FsResult<Option<(Published, Option<String>)>> {
        let (btns, own, own_encryption) = {
            let tree = self.tree();
            let t = tree.token(token)?;
            // The key this mount's tree is sealed under (a merge folded in keeps it).
            (
                t.info.btns.clone(),
                Self::own_heads(t),
                t.committed.encryption.clone(),
            )
        };
        let Some(btns) = btns else { return Ok(None) };
        let store = self.store_of(Some(token));
        let resolved = store.resolve(&btns).await?;
        // What this commit's publication replaces (docs/FORMAT.md §9.3).
        self.tree().token_mut(token)?.record_seen = resolved.as_ref().map(|p| p.doc_cid.clone());
        let Some(p) = resolved else {
            return Ok(None);
        };
        let relation =
            crate::fs::persist::ancestry::relate(&self.inner.ancestry, &*store, &own, &p).await?;
        Ok(match relation {
            crate::fs::persist::ancestry::Relation::Behind => {
                if !own.contains(&p.doc_cid) {
                    // A node that has not seen the newest publication yet.
                    tracing::debug!(token, seq = p.seq, "resolved an older record; ignored");
                }
                None
            }
            crate::fs::persist::ancestry::Relation::Ahead { .. }
            | crate::fs::persist::ancestry::Relation::Diverged { .. }
                if !crate::fs::persist::rekey::same_tree_key(&own_encryption, &p.encryption) =>
            {
                if let Some(message) = self
                    .weakened_by(token, &own_encryption, &p.encryption, p.seq)
                    .await
                {
                    // Read-only at once when nothing here waits to be published (a token
                    // with unpublished changes commits nothing more: Rekeyed, below).
                    let mut tree = self.tree();
                    let t = tree.token_mut(token)?;
                    if !t.is_dirty() && t.pending_uploads == 0 && t.journal.pending_ops() == 0 {
                        if !t.read_only {
                            tracing::error!(token, seq = p.seq, "{message}");
                        }
                        t.read_only = true;
                        return Ok(None);
                    }
                    return Err(FsError::Rekeyed(message));
                }
                let message = crate::fs::persist::rekey::rekeyed_message(token, p.seq);
                tracing::error!(token, seq = p.seq, "{message}");
                return Err(FsError::Rekeyed(message));
            }
            crate::fs::persist::ancestry::Relation::Ahead { base_root } => {
                Some((p, Some(base_root)))
            }
            crate::fs::persist::ancestry::Relation::Diverged { base_root } => Some((p, base_root)),
        })
    }

    /// If another writer published since this mount's own document, fold its changes into
    /// the tree from their nearest common ancestor (see the module docs). `Ok(true)` when
    /// it did.
    pub(crate) async fn catch_up(&self, token: TokenId) -> FsResult<bool> {
        let Some((theirs, base_root)) = self.published_since_base(token).await? else {
            return Ok(false);
        };
        self.fold_in(token, theirs, base_root).await?;
        Ok(true)
    }

    /// Merge the published document `theirs` into `token`'s tree in memory.
    async fn fold_in(
        &self,
        token: TokenId,
        theirs: Published,
        base_root: Option<String>,
    ) -> FsResult<()> {
        let (root_ino, ours_doc, ours_seq) = {
            let tree = self.tree();
            let t = tree.token(token)?;
            // A second merge before the first is published keeps this mount's own
            // document as the second parent (the first merged one then is not named: a
            // later merge base may be farther, never wrong).
            let (ours, ours_seq) = match &t.merged_onto {
                Some(o) => (o.ours.clone(), o.ours_seq.max(o.seq)),
                None => (t.committed.usage_doc.clone(), t.committed.seq),
            };
            (t.root, ours, ours_seq)
        };
        let sealing = self.sealing(Some(token));
        let store = self.store_of(Some(token));
        let cache = &self.inner.pages;
        let mut done = Folded::default();
        let mut changed: Changed = Vec::new();
        if base_root.as_deref() != Some(theirs.root.as_str()) {
            let their_root = pages::read_dir(&*store, &sealing, cache, &theirs.root, true).await?;
            if let Some(why) = &their_root.read_only {
                // Entries or a format this pxfs cannot write back: merging would drop them.
                tracing::error!(
                    token,
                    "another writer published a tree this pxfs cannot merge ({why}); serving this sNFT read-only"
                );
                self.tree().token_mut(token)?.read_only = true;
                return Err(FsError::ReadOnly(
                    "another writer's tree holds what this pxfs cannot write",
                ));
            }
            let base_parts = match &base_root {
                Some(b) => match pages::read_dir(&*store, &sealing, cache, b, true).await {
                    Ok(read) => read.root,
                    // Collected (see `committed_entries`): theirs' attributes are taken.
                    Err(e) if is_gone(&e) => None,
                    Err(e) => return Err(e),
                },
                None => None,
            };
            // Link groups: theirs' records, to take names of groups this tree lacks.
            let mut groups: HashMap<[u8; 8], format::Inode> = HashMap::new();
            let mut own = None;
            if let Some(parts) = &their_root.root {
                for r in &parts.groups {
                    if let format::EntryKind::Inode(i) = &r.kind {
                        groups.insert(r.id.0, i.clone());
                    }
                }
                let tree = self.tree();
                let ours_attrs = stored::attrs_of(&tree.get(root_ino)?.meta);
                let base_attrs = base_parts.as_ref().map(|b| &b.attrs);
                if base_attrs.is_none_or(|b| *b == ours_attrs) {
                    own = Some((
                        stored::meta_of(&parts.attrs),
                        stored::tree_xattrs(parts.xattrs.clone()),
                    ));
                }
            }
            let mut jobs = vec![Job {
                ours: root_ino,
                base: base_root.clone(),
                theirs: theirs.root.clone(),
                own,
            }];
            // The chunk tables of theirs' chunked files, read with their directories (and the
            // root's link groups): a file taken from theirs takes its table along. Keyed by
            // content (top CID, size), so one map serves every directory.
            let mut their_tables = their_root.tables;
            // Directories merged against what this mount last committed there, their base's
            // pages being gone (`committed_entries`).
            let mut from_memory: BTreeSet<Ino> = BTreeSet::new();
            let mut doubtful: Changed = Vec::new();
            let mut first = Some(their_root.entries);
            while let Some(job) = jobs.pop() {
                let their_entries = match first.take() {
                    Some(e) => e,
                    None => {
                        let read =
                            pages::read_dir(&*store, &sealing, cache, &job.theirs, false).await?;
                        their_tables.extend(read.tables);
                        read.entries
                    }
                };
                let (base_entries, remembered) = match &job.base {
                    Some(b) => {
                        let is_root = job.ours == root_ino;
                        match pages::read_dir(&*store, &sealing, cache, b, is_root).await {
                            Ok(read) => (read.entries, false),
                            Err(e) if is_gone(&e) => {
                                let entries = self.base_from_memory(job.ours, Some(b)).await?;
                                (entries.ok_or(e)?, true)
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    // Below a directory merged against what this mount last committed, a
                    // directory changed here is merged against its own last commit too:
                    // what it holds unchanged since is not taken for a change of ours.
                    None if self.parent_in(job.ours, &from_memory) => {
                        match self.base_from_memory(job.ours, None).await? {
                            Some(entries) => (entries, true),
                            None => (Vec::new(), false),
                        }
                    }
                    None => (Vec::new(), false),
                };
                if remembered {
                    from_memory.insert(job.ours);
                }
                // What this mount kept against the other writer's change, merging against
                // what it knows of its last commit: perhaps a version the other writer
                // replaced and the node collected, checked below.
                let doubts = remembered.then_some(&mut doubtful);
                self.merge_dir(
                    token,
                    job,
                    base_entries,
                    their_entries,
                    &their_tables,
                    &groups,
                    &mut jobs,
                    &mut done,
                    &mut changed,
                    doubts,
                )
                .await?;
            }
            self.drop_collected_versions(token, doubtful).await?;
        }
        {
            let mut tree = self.tree();
            let t = tree.token_mut(token)?;
            if theirs.encryption != t.committed.encryption {
                tracing::info!(
                    token,
                    seq = theirs.seq,
                    "the sNFT's keys were changed; using the published wraps"
                );
            }
            t.conflicts += done.conflicts as u64;
            t.merged_onto = Some(Onto {
                doc: Some(theirs.doc_cid.clone()),
                seq: theirs.seq,
                root: Some(theirs.root.clone()),
                encryption: theirs.encryption.clone(),
                ours: ours_doc,
                ours_seq,
            });
        }
        let invalidate = self.invalidator();
        // Off this task: the kernel may hold a directory's lock while its request waits for
        // the commit this merge is part of (fsyncdir), and a notification needs that lock.
        if let Some(f) = invalidate
            && !changed.is_empty()
        {
            tokio::task::spawn_blocking(move || {
                for (dir, name) in &changed {
                    f(*dir, name.as_bytes());
                }
            });
        }
        tracing::info!(
            token,
            seq = theirs.seq,
            dirs = done.dirs,
            taken = done.taken,
            conflicts = done.conflicts,
            "merged another writer's commit"
        );
        Ok(())
    }

    /// Merge one directory (see the module docs); subdirectories both sides changed are
    /// pushed onto `jobs`.
    #[allow(clippy::too_many_arguments)]
    async fn merge_dir(
        &self,
        token: TokenId,
        job: Job,
        base: Vec<format::Entry>,
        theirs: Vec<format::Entry>,
        tables: &pages::ChunkTables,
        groups: &HashMap<[u8; 8], format::Inode>,
        jobs: &mut Vec<Job>,
        done: &mut Folded,
        touched: &mut Changed,
        mut doubtful: Option<&mut Changed>,
    ) -> FsResult<()> {
        done.dirs += 1;
        let dir = job.ours;
        self.ensure_loaded(dir).await?;
        let mut base: BTreeMap<Name, format::Entry> =
            base.into_iter().map(|e| (e.name.clone(), e)).collect();
        let theirs: BTreeMap<Name, format::Entry> =
            theirs.into_iter().map(|e| (e.name.clone(), e)).collect();
        self.follow_renames(dir, &mut base, &theirs, groups)?;
        let names: BTreeSet<&Name> = base.keys().chain(theirs.keys()).collect();
        let changed: Vec<&Name> = names
            .into_iter()
            .filter(|n| base.get(*n) != theirs.get(*n))
            .collect();
        // Directories ours did not change that theirs changed: a subtree theirs deleted is
        // loaded whole first, so its removal takes its charges and file counts with it; an
        // unloaded one theirs changed is loaded for the merge inside. If the node collected
        // either meanwhile, the removal goes as far as loaded, theirs' version is taken
        // unread (`collected`).
        let (mut removals, mut unloaded) = (Vec::new(), Vec::new());
        {
            let tree = self.tree();
            for name in &changed {
                let Some(o) = tree.child(dir, name.as_bytes())? else {
                    continue;
                };
                let Some(d) = tree.get(o)?.dir() else {
                    continue;
                };
                if !unchanged(&tree, o, name, base.get(*name)) {
                    continue;
                }
                match is_dir_entry(theirs.get(*name), groups) {
                    false => removals.push(o),
                    true if d.entries.is_none() => unloaded.push(o),
                    true => {}
                }
            }
        }
        for o in removals {
            match self.load_subtree(o).await {
                Err(e) if is_gone(&e) => gone_from_node(token, &e),
                r => r?,
            }
        }
        let mut collected = BTreeSet::new();
        for o in unloaded {
            match self.ensure_loaded(o).await {
                Err(e) if is_gone(&e) => {
                    gone_from_node(token, &e);
                    collected.insert(o);
                }
                r => r?,
            }
        }
        let mut guard = self.tree();
        let tree = &mut *guard;
        let before = tree.get(dir)?.meta;
        touched.extend(changed.iter().map(|n| (dir, (*n).clone())));
        for name in changed {
            let b = base.get(name);
            let th = theirs.get(name);
            let o = tree.child(dir, name.as_bytes())?;
            let ours_unchanged = match o {
                None => b.is_none(),
                Some(o) => unchanged(tree, o, name, b),
            };
            let o_dir = o.filter(|o| tree.get(*o).is_ok_and(|i| i.kind() == Kind::Dir));
            // Both sides have a directory here: merged inside.
            if let (Some(o), Some(top)) = (o_dir, th.and_then(|t| dir_top(t, groups))) {
                let their_inode = th.and_then(|t| inode_rec(t, groups));
                if collected.contains(&o)
                    && let Some(i) = &their_inode
                {
                    let meta = stored::meta_of(&i.attrs);
                    let xattrs = stored::tree_xattrs(i.xattrs.clone());
                    let dropped = tree.repoint_unloaded_dir(o, top, meta, xattrs)?;
                    touched.extend(dropped.into_iter().map(|n| (o, n)));
                    done.taken += 1;
                    continue;
                }
                let base_attrs = b.and_then(|b| inode_rec(b, groups)).map(|i| i.attrs);
                let ours_attrs = stored::attrs_of(&tree.get(o)?.meta);
                let own = their_inode
                    .filter(|_| base_attrs.is_none_or(|a| a == ours_attrs))
                    .map(|i| (stored::meta_of(&i.attrs), stored::tree_xattrs(i.xattrs)));
                jobs.push(Job {
                    ours: o,
                    base: b.and_then(|b| dir_top(b, groups)),
                    theirs: top,
                    own,
                });
                continue;
            }
            if ours_unchanged {
                if let Some(o) = o {
                    if o_dir.is_some() {
                        remove_tree(tree, token, o)?;
                    }
                    tree.unlink_child(dir, name.as_bytes())?;
                }
                if let Some(th) = th {
                    insert(tree, dir, th, tables, groups, jobs)?;
                }
                done.taken += 1;
                continue;
            }
            let Some(th) = th else {
                // Theirs deleted what ours changed: ours stays.
                if let (Some(d), Some(o)) = (doubtful.as_deref_mut(), o)
                    && settled_file(tree, o)
                {
                    d.push((dir, name.clone()));
                }
                // Paths only at debug: a log line must not reveal what an encrypted tree holds.
                tracing::info!(token, "deleted by another writer, changed here: kept");
                tracing::debug!(token, path = %tree.display_path(o.unwrap_or(dir)), "kept");
                continue;
            };
            let Some(o) = o else {
                // Ours deleted or moved what theirs changed.
                let moved = b
                    .and_then(|b| dir_top(b, groups))
                    .and_then(|top| moved_dir(tree, token, &top));
                match (moved, dir_top(th, groups)) {
                    (Some(m), Some(top)) => jobs.push(Job {
                        ours: m,
                        base: b.and_then(|b| dir_top(b, groups)),
                        theirs: top,
                        own: None,
                    }),
                    _ => {
                        insert(tree, dir, th, tables, groups, jobs)?;
                        tracing::info!(
                            token,
                            "deleted here, changed by another writer: kept theirs"
                        );
                        tracing::debug!(token, name = %name, "kept theirs");
                    }
                }
                done.taken += 1;
                continue;
            };
            if current_entry(tree, name, o).as_ref() == Some(th) {
                continue; // the same change on both sides
            }
            let is_dir = tree.get(o)?.kind() == Kind::Dir;
            let copy = conflict_name(tree, dir, name, is_dir)?;
            tree.rename(dir, name.as_bytes(), dir, &copy, true, false)?;
            touched.push((dir, copy.clone()));
            if let Some(d) = doubtful.as_deref_mut()
                && settled_file(tree, o)
            {
                d.push((dir, copy.clone()));
            }
            insert(tree, dir, th, tables, groups, jobs)?;
            done.conflicts += 1;
            tracing::warn!(
                token,
                "both writers changed a file: the other writer's version keeps the name, this one is kept as a conflict copy (names at debug level)"
            );
            tracing::debug!(token, path = %tree.display_path(dir), name = %name, copy = %copy, "conflict copy");
        }
        // The directory's own attributes: theirs' if ours did not change them, else ours
        // as they were (the entries the merge changed are not local changes).
        let inode = tree.get_mut(dir)?;
        match job.own {
            Some((meta, xattrs)) => {
                inode.meta = meta;
                inode.xattrs = xattrs;
            }
            None => inode.meta = before,
        }
        tree.stored_inode_changed(dir);
        Ok(())
    }

    /// A directory theirs only renamed within `dir` (its old name gone, a new name with the
    /// same top) that ours changed inside: ours moves to the new name too, with its changes
    /// (a rename across directories is not recognised: ours then stays at the old name
    /// beside theirs' copy, nothing lost). `base` is updated as if the base had the new
    /// name, so the walk sees nothing more to do there.
    fn follow_renames(
        &self,
        dir: Ino,
        base: &mut BTreeMap<Name, format::Entry>,
        theirs: &BTreeMap<Name, format::Entry>,
        groups: &HashMap<[u8; 8], format::Inode>,
    ) -> FsResult<()> {
        let mut tree = self.tree();
        let gone: Vec<(Name, String)> = base
            .iter()
            .filter(|(n, _)| !theirs.contains_key(*n))
            .filter_map(|(n, e)| Some((n.clone(), dir_top(e, groups)?)))
            .collect();
        for (old, top) in gone {
            let Some(new) = theirs
                .iter()
                .find(|(n, e)| !base.contains_key(*n) && dir_top(e, groups).as_ref() == Some(&top))
                .map(|(n, _)| n.clone())
            else {
                continue;
            };
            let Some(o) = tree.child(dir, old.as_bytes())? else {
                continue;
            };
            let is_dir = tree.get(o)?.kind() == Kind::Dir;
            if !is_dir
                || unchanged(&tree, o, &old, base.get(&old))
                || tree.child(dir, new.as_bytes())?.is_some()
            {
                continue;
            }
            tree.rename(dir, old.as_bytes(), dir, &new, true, false)?;
            if let Some(mut e) = base.remove(&old) {
                e.name = new.clone();
                base.insert(new, e);
            }
        }
        Ok(())
    }

    /// Load every directory under `dir` (what a removal of it must account for).
    async fn load_subtree(&self, dir: Ino) -> FsResult<()> {
        let mut dirs = vec![dir];
        while let Some(d) = dirs.pop() {
            self.ensure_loaded(d).await?;
            let tree = self.tree();
            for (_, child) in tree.entries(d)?.iter() {
                if tree.get(child).is_ok_and(|i| i.kind() == Kind::Dir) {
                    dirs.push(child);
                }
            }
        }
        Ok(())
    }
}

/// Empty the directory `dir` bottom-up, as `rm -r` would: what it held stops counting
/// (what is not loaded of it, collected from the node, stays in the committed figure of
/// what is not loaded). Its emptied directories have nothing left to commit.
fn remove_tree(tree: &mut Tree, token: TokenId, dir: Ino) -> FsResult<()> {
    let mut order = vec![dir];
    let mut i = 0;
    while let Some(d) = order.get(i).copied() {
        i += 1;
        if let Ok(e) = tree.entries(d) {
            let subdirs: Vec<Ino> = e
                .iter()
                .map(|(_, c)| c)
                .filter(|c| tree.get(*c).is_ok_and(|i| i.kind() == Kind::Dir))
                .collect();
            order.extend(subdirs);
        }
    }
    for d in order.iter().rev() {
        let names: Vec<Name> = match tree.entries(*d) {
            Ok(e) => e.iter().map(|(n, _)| n.clone()).collect(),
            Err(_) => {
                // Not loaded: its names looked up alone go with it.
                tree.detach_all_found(*d);
                continue;
            }
        };
        for n in names {
            tree.unlink_child(*d, n.as_bytes())?;
        }
    }
    for d in &order {
        if let Some(b) = tree.inodes.get_mut(d).and_then(|i| i.dir_mut()) {
            b.dirty = false;
            b.changes = Default::default();
        }
    }
    let t = tree.token_mut(token)?;
    for d in &order {
        t.dirty_dirs.remove(d);
    }
    Ok(())
}

/// Whether `ino` (named `name`) is as the base entry `base` stores it, with no local change
/// pending (a version written or uploading, a directory changed inside).
fn unchanged(tree: &Tree, ino: Ino, name: &Name, base: Option<&format::Entry>) -> bool {
    let Some(base) = base else { return false };
    let Ok(inode) = tree.get(ino) else {
        return false;
    };
    let pending = match &inode.body {
        Body::File(f) => {
            f.session.is_some() || f.upload_pending || f.writers > 0 || f.blob.is_none()
        }
        Body::Dir(d) => d.dirty || d.entries.as_ref().is_some_and(|_| d.top.is_none()),
        _ => false,
    };
    !pending && current_entry(tree, name, ino).as_ref() == Some(base)
}

/// The entry `ino` is stored as under `name` at the last commit (a directory with its
/// committed top).
pub(super) fn current_entry(tree: &Tree, name: &Name, ino: Ino) -> Option<format::Entry> {
    let inode = tree.get(ino).ok()?;
    let top = inode.dir().and_then(|d| d.top.clone());
    stored::entry_of(name, inode, top.as_deref())
}

/// What `entry` stores: its own inode, or its link group's.
fn inode_rec(
    entry: &format::Entry,
    groups: &HashMap<[u8; 8], format::Inode>,
) -> Option<format::Inode> {
    match &entry.kind {
        format::EntryKind::Inode(i) => Some(i.clone()),
        format::EntryKind::Link(id) => groups.get(&id.0).cloned(),
        format::EntryKind::Unknown(_) => None,
    }
}

fn dir_top(entry: &format::Entry, groups: &HashMap<[u8; 8], format::Inode>) -> Option<String> {
    match inode_rec(entry, groups)?.kind {
        format::InodeKind::Dir { top } => Some(top),
        _ => None,
    }
}

fn is_dir_entry(entry: Option<&format::Entry>, groups: &HashMap<[u8; 8], format::Inode>) -> bool {
    entry.and_then(|e| dir_top(e, groups)).is_some()
}

/// Put theirs' `entry` into `dir` (its name is free): a directory is made empty and filled
/// by a job; a name of a link group this tree lacks becomes a file of its own; a chunked
/// file takes its table from `tables` (read with theirs' directories).
fn insert(
    tree: &mut Tree,
    dir: Ino,
    entry: &format::Entry,
    tables: &pages::ChunkTables,
    groups: &HashMap<[u8; 8], format::Inode>,
    jobs: &mut Vec<Job>,
) -> FsResult<()> {
    let Some(rec) = inode_rec(entry, groups) else {
        tracing::warn!("an entry of unknown kind from another writer; not taken");
        tracing::debug!(name = %entry.name, "entry of unknown kind");
        return Ok(());
    };
    let meta = stored::meta_of(&rec.attrs);
    let xattrs = stored::tree_xattrs(rec.xattrs.clone());
    match rec.kind {
        format::InodeKind::Dir { top } => {
            let body = Body::Dir(DirBody {
                entries: Some(Entries::default()),
                ..Default::default()
            });
            let ino = tree.create(dir, &entry.name, meta, body, xattrs.clone())?;
            tree.mark_dirty(ino);
            jobs.push(Job {
                ours: ino,
                base: None,
                theirs: top,
                own: Some((meta, xattrs)),
            });
        }
        kind => {
            let (_, body) = stored::body_of(kind, tables);
            tree.create(dir, &entry.name, meta, body, xattrs)?;
        }
    }
    Ok(())
}

/// A directory of `token` this mount moved away from where the base had it: one with the
/// base's top `top`, now under another name (found among the names changed since the last
/// commit: O(changed)).
fn moved_dir(tree: &Tree, token: TokenId, top: &str) -> Option<Ino> {
    let t = tree.tokens.get(&token)?;
    for d in &t.dirty_dirs {
        let Some(dir) = tree.inodes.get(d).and_then(|i| i.dir()) else {
            continue;
        };
        let Some(entries) = &dir.entries else {
            continue;
        };
        for name in &dir.changes.names {
            let Some(child) = entries.get(name.as_bytes()) else {
                continue;
            };
            if let Some(c) = tree.inodes.get(&child).and_then(|i| i.dir())
                && c.top.as_deref() == Some(top)
            {
                return Some(child);
            }
        }
    }
    None
}

/// A free name for ours' version of `name` in `dir`:
/// `<stem>.conflict-<host>-<UTC yyyymmddThhmmssZ><.ext>` (docs/FORMAT.md §9), with `-2`,
/// `-3`… after the time if that is taken.
fn conflict_name(tree: &Tree, dir: Ino, name: &Name, is_dir: bool) -> FsResult<Name> {
    let bytes = name.as_bytes();
    let split = match is_dir {
        true => None,
        false => bytes.iter().rposition(|b| *b == b'.').filter(|i| *i > 0),
    };
    let (stem, ext) = match split {
        Some(i) => (&bytes[..i], &bytes[i..]),
        None => (bytes, &bytes[..0]),
    };
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
    let tag = format!(".conflict-{}-{stamp}", host_name());
    for n in 1u32.. {
        let suffix = match n {
            1 => tag.clone(),
            n => format!("{tag}-{n}"),
        };
        // Within NAME_MAX: the stem gives way.
        let room = crate::fs::model::tree::NAME_MAX.saturating_sub(suffix.len() + ext.len());
        let mut candidate = stem[..stem.len().min(room)].to_vec();
        candidate.extend_from_slice(suffix.as_bytes());
        candidate.extend_from_slice(ext);
        let candidate = Name::new(candidate).map_err(|_| FsError::Invalid("conflict name"))?;
        if tree.child(dir, candidate.as_bytes())?.is_none() {
            return Ok(candidate);
        }
    }
    Err(FsError::Invalid("no free conflict name"))
}

/// This machine's short host name, letters, digits and `-` only.
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let raw = match ok {
        true => {
            let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
            String::from_utf8_lossy(&buf[..end]).into_owned()
        }
        false => String::new(),
    };
    let short: String = raw
        .split('.')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(32)
        .collect();
    if short.is_empty() {
        "host".into()
    } else {
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_is_letters_digits_and_dashes() {
        let h = host_name();
        assert!(!h.is_empty());
        assert!(h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
