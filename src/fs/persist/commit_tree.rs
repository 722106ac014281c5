//! The tree a commit writes: the snapshot of its changed directories taken under the
//! core's lock (with the closes still uploading, carried in the journal, and the link
//! groups it stores), then their pages added to the node bottom-up and the usage document
//! published (`commit` drives both and records the outcome).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::format;
use crate::fs::Fs;
use crate::fs::data::pages::{self, DirContents, DirObjects, RootParts};
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Body, Ino, TokenId};
use crate::fs::model::ledger::CommittedUsage;
use crate::fs::model::stored;
use crate::fs::model::token::GroupSlot;
use crate::fs::model::tree::Tree;
use crate::fs::store::{Publish, UsageRecord};

/// A dirty directory as it was when the commit started.
pub(in crate::fs) struct DirSnapshot {
    pub(in crate::fs) ino: Ino,
    /// The sNFT root's own attributes and link groups (`None` for any other directory).
    pub(in crate::fs) root: Option<RootParts>,
    pub(in crate::fs) contents: DirContents,
    /// Entries (by name) that are dirty subdirectories: their CIDs are known once written.
    pub(in crate::fs) pending_children: Vec<(Vec<u8>, Ino)>,
    /// In debug builds, for a directory updated in place and not too large: all its
    /// entries, to check the update gives the pages a full build gives.
    pub(in crate::fs) check: Option<Vec<format::Entry>>,
    /// The objects the directory was stored as until now (on the node, pinned).
    pub(in crate::fs) old: Option<Arc<[(String, u64)]>>,
    /// What changed in it since the last commit, as the tree recorded it: given back if
    /// this commit is not published (a merge then finds the directories this mount moved
    /// by the names changed, `merge::moved_dir`).
    pub(in crate::fs) changes: crate::fs::model::inode::DirChanges,
}

pub(in crate::fs) struct Snapshot {
    /// How the token's tree is stored.
    pub(in crate::fs) sealing: crate::fs::data::content::Sealing,
    pub(in crate::fs) dirs: Vec<DirSnapshot>,
    pub(in crate::fs) root: Ino,
    pub(in crate::fs) record: UsageRecord,
    pub(in crate::fs) btns: Option<String>,
    pub(in crate::fs) journal_seq: u64,
    pub(in crate::fs) superseded: Vec<String>,
    /// Closes of versions still uploading (not in this commit).
    pub(in crate::fs) carried: Vec<crate::fs::data::journal::Op>,
    /// The usage to publish, but for the manifests the commit writes (docs/FORMAT.md §7).
    pub(in crate::fs) usage: CommittedUsage,
    /// The link groups this commit stores.
    pub(in crate::fs) groups: HashMap<u64, GroupSlot>,
    /// Another writer's document merged into this commit (docs/FORMAT.md §9).
    pub(in crate::fs) onto: Option<crate::fs::model::token::Onto>,
    /// The document the name showed when this commit was merged: what it replaces.
    pub(in crate::fs) replaces: Option<String>,
    /// What the tree released since the last snapshot (history keeps it): this commit's
    /// count covers it; given back to the ledger if the commit fails.
    pub(in crate::fs) released: crate::fs::model::ledger::Released,
    /// What the last counted commit found beyond the tree (`Ledger::history_share`).
    pub(in crate::fs) history_share: i64,
    /// The versions in the tree whose last adds were not answered yet: published only
    /// once all are stored (`Stored`).
    pub(in crate::fs) unstored: Vec<crate::fs::store::Stored>,
}

/// A snapshot written and published.
pub(in crate::fs) struct Written {
    pub(in crate::fs) dirs: HashMap<Ino, DirObjects>,
    /// The usage document now published: this commit's, or the other writer's it adopted.
    pub(in crate::fs) doc: String,
    pub(in crate::fs) added: pages::Added,
    /// A merge gave exactly the other writer's tree: its document is taken as it is.
    pub(in crate::fs) adopted: bool,
    /// The history written (when the commit keeps or drops some, docs/FORMAT.md §14.3):
    /// the usage counted from the graph, and what moving the counts dropped.
    pub(in crate::fs) history: Option<WrittenHistory>,
    /// The usage the commit's document states.
    pub(in crate::fs) usage: u64,
    /// The node checked the publication: it holds at once (docs/FORMAT.md §9.3).
    pub(in crate::fs) checked: bool,
}

/// `a` + `b`, within `u64`.
fn add_signed(a: u64, b: i64) -> u64 {
    u64::try_from((a as i128 + b as i128).max(0)).unwrap_or(u64::MAX)
}

pub(in crate::fs) struct WrittenHistory {
    pub(in crate::fs) versions: Vec<crate::format::history::Version>,
    /// The whole published graph's usage (§14.5).
    pub(in crate::fs) published: u64,
    /// The tree's usage as the ledger counts it (history left out).
    pub(in crate::fs) tree: u64,
    /// What the published graph no longer reaches (unpin candidates).
    pub(in crate::fs) dropped: Vec<String>,
}

impl Fs {
    pub(in crate::fs) fn snapshot(&self, token: TokenId) -> FsResult<Option<Snapshot>> {
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
        // A directory removed since (rmdir'd, its inode still known to the kernel) is not
        // in the tree: writing it would count its page in the usage.
        let mut order: Vec<(usize, Ino)> = dirty
            .iter()
            .filter(|d| {
                tree.inodes
                    .get(d)
                    .is_some_and(|i| **d == root || !i.links.is_empty())
            })
            .map(|d| (depth(tree, *d), *d))
            .collect();
        order.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // Charges up to date, and the sets the questions below are about (O(changed)).
        let before = tree.token(token)?.ledger.usage();
        tree.sweep();
        if crate::fs::invariants::checked() && tree.inodes.len() <= CHECKED_ENTRIES {
            let swept = tree.token(token)?.ledger.usage();
            tree.recharge_token(token);
            assert_eq!(
                swept,
                tree.token(token)?.ledger.usage(),
                "an inode changed without being touched (usage before the sweep: {before})"
            );
        }
        let (records, groups) = link_groups(tree, token)?;
        let mut records = Some(records);
        let mut dirs = Vec::with_capacity(order.len());
        for (_, ino) in order {
            let groups = if ino == root { records.take() } else { None };
            dirs.push(snapshot_dir(tree, ino, &dirty, groups)?);
        }
        for d in &mut dirs {
            if let Ok(i) = tree.get_mut(d.ino)
                && let Some(dir) = i.dir_mut()
            {
                dir.dirty = false;
                d.changes = std::mem::take(&mut dir.changes);
            }
        }
        let rewritten: Vec<Ino> = dirs.iter().map(|d| d.ino).collect();
        let (usage, files) = tree.committed_usage(token, &rewritten)?;
        let t = tree.token_mut(token)?;
        t.dirty_dirs.clear();
        let released = t.ledger.take_released();
        let history_share = t.ledger.history_share();
        // On top of the base: another writer's document once merged (docs/FORMAT.md §9).
        let onto = t.merged_onto.clone();
        // `seq` is above both parents' (docs/FORMAT.md §8).
        let (prev, parents_seq, encryption) = match &onto {
            Some(o) => (o.doc.clone(), o.seq.max(o.ours_seq), o.encryption.clone()),
            None => (
                t.committed.usage_doc.clone(),
                t.committed.seq,
                t.committed.encryption.clone(),
            ),
        };
        let record = UsageRecord {
            token_id: token,
            quota: t.info.quota,
            usage: 0, // known once the manifests are written
            files,
            root: String::new(),
            // An encrypted tree's document says nothing about what it holds (FORMAT §8).
            last_upload: t.last_upload.clone().filter(|_| !t.sealing.is_sealed()),
            seq: parents_seq + 1,
            prev,
            merged: onto.as_ref().and_then(|o| o.ours.clone()),
            encryption,
        };
        Ok(Some(Snapshot {
            sealing: t.sealing.clone(),
            dirs,
            root,
            record,
            btns: t.info.btns.clone(),
            journal_seq: t.journal.last_seq(),
            superseded: std::mem::take(&mut t.superseded),
            carried,
            usage,
            groups,
            onto,
            replaces: t.record_seen.clone(),
            released,
            history_share,
            unstored: t.unstored.values().map(|u| u.stored.clone()).collect(),
        }))
    }

    /// Add the directories' new objects bottom-up (the root with the history it keeps),
    /// then the usage document. A merge that gave exactly the tree of the other writer's
    /// document takes that document as it is instead of publishing another.
    pub(in crate::fs) async fn write_snapshot(
        &self,
        snap: &Snapshot,
        resolved_at: std::time::Instant,
    ) -> FsResult<Written> {
        let token = snap.record.token_id;
        let mut written: HashMap<Ino, DirObjects> = HashMap::new();
        let store = self.store_of(Some(token));
        let plan = self.plan_history(snap).await?;
        if plan.counted {
            self.ensure_counts(token).await?;
        }
        // Objects on the node already: the rewritten directories' old ones, the replaced
        // history tables' pages, and what this commit added so far.
        let have: HashSet<String> = snap
            .dirs
            .iter()
            .flat_map(|d| d.old.iter().flat_map(|o| o.iter().map(|(c, _)| c.clone())))
            .chain(plan.old_pages.iter().cloned())
            .collect();
        let mut outbox = crate::fs::data::outbox::Outbox::new(have);
        for d in &snap.dirs {
            let mut contents = d.contents.clone();
            let mut check = d.check.clone();
            for (name, child) in &d.pending_children {
                let top = written
                    .get(child)
                    .map(|o| o.top.clone())
                    .ok_or_else(|| FsError::Journal("child directory not written".into()))?;
                let entry = match &mut contents {
                    DirContents::All(entries) => entries
                        .iter_mut()
                        .find(|e| e.name.as_bytes() == name.as_slice()),
                    DirContents::Edits { edits, .. } => {
                        edits.get_mut(name.as_slice()).and_then(|e| e.as_mut())
                    }
                };
                let in_check = check
                    .iter_mut()
                    .flatten()
                    .find(|e| e.name.as_bytes() == name.as_slice());
                for e in entry.into_iter().chain(in_check) {
                    if let format::EntryKind::Inode(i) = &mut e.kind {
                        i.kind = format::InodeKind::Dir { top: top.clone() };
                    }
                }
            }
            let root = d.root.as_ref().map(|parts| pages::RootWrite {
                parts,
                t: plan.t,
                history: &plan.versions,
            });
            let objects = pages::write_dir(
                &*store,
                &snap.sealing,
                &self.inner.pages,
                &contents,
                root.as_ref(),
                &mut outbox,
            )
            .await?;
            if let Some(all) = check
                && let Some(table) = &objects.table
                && let Some((top, pages)) = pages::full_build(&*store, &snap.sealing, all)
            {
                // Determinism (docs/FORMAT.md §5): an update in place gives the pages of a
                // full build of the same entries.
                let mut want: Vec<&str> = pages.iter().map(String::as_str).collect();
                let mut got: Vec<&str> = table.pages.iter().map(|(c, _)| c.as_str()).collect();
                want.sort_unstable();
                got.sort_unstable();
                assert_eq!(
                    table.top, top,
                    "an updated directory differs from a full build"
                );
                assert_eq!(
                    got, want,
                    "an updated directory's pages differ from a full build's"
                );
            }
            written.insert(d.ino, objects);
        }
        // Every new page on the node before the name moves: a few go in the document's add
        // (a round trip less), more go first. Counting reads them here (`unsent`); only a
        // merge that may adopt the other writer's document reads them at the node.
        let adoptable = snap.onto.as_ref().is_some_and(|o| o.doc.is_some());
        if adoptable || !outbox.fits_one_request() {
            outbox.send(&*store).await?;
        }
        let added = std::mem::take(&mut outbox.added);
        let root = written
            .get(&snap.root)
            .map(|o| o.top.clone())
            .ok_or_else(|| FsError::Journal("root not among the changed directories".into()))?;
        let tree_usage = snap.usage.with_manifests(all_objects(&written));
        let mut record = UsageRecord {
            root,
            // Without history, the tree's figure, corrected by what the last counted commit
            // found beyond it (after pruning: none, while the figure the mount started from
            // still holds the pruned versions' share).
            usage: add_signed(tree_usage, snap.history_share),
            ..snap.record.clone()
        };
        // The whole graph's usage (§14.5): the counts, moved to the new root.
        let mut history = None;
        let mut counted_from = None;
        if plan.counted {
            let (published, dropped, from) = self
                .count_commit(token, &record.root, Some(&outbox))
                .await?;
            record.usage = published;
            counted_from = Some(from);
            history = Some(WrittenHistory {
                versions: plan.versions,
                published,
                tree: tree_usage,
                dropped,
            });
        }
        if let Some(o) = &snap.onto
            && let Some(doc) = &o.doc
            && let Some(theirs) = o.root.as_deref()
            && (theirs == record.root
                || same_tree(
                    &*store,
                    &snap.sealing,
                    &self.inner.pages,
                    theirs,
                    &record.root,
                )
                .await)
        {
            // Taken as this commit's publication: what it holds must be on the node too.
            crate::fs::store::Stored::all(&snap.unstored).await?;
            // (The counts stay at this commit's root, which becomes the committed one.)
            return Ok(Written {
                dirs: written,
                doc: doc.clone(),
                added,
                adopted: true,
                history,
                usage: record.usage,
                checked: false,
            });
        }
        match self
            .publish(snap, &record, resolved_at, outbox.take())
            .await
        {
            Ok((doc, checked)) => Ok(Written {
                dirs: written,
                doc,
                added,
                adopted: false,
                history,
                usage: record.usage,
                checked,
            }),
            Err(e) => {
                if let Some(from) = counted_from {
                    self.uncount_commit(token, &from).await;
                }
                Err(e)
            }
        }
    }

    /// Publishes `record` in place of the document the name showed when the commit was
    /// merged: within half the settle window of that resolve (docs/FORMAT.md §9.3), else
    /// checked again first, unless the node checks publications. `pages`, the commit's
    /// pages not sent yet, go to the node with the document. Returns the document's CID
    /// and whether the node checked the publication (it holds at once). [`FsError::Raced`]
    /// when another writer published meanwhile: nothing was published; the next round
    /// merges that.
    async fn publish(
        &self,
        snap: &Snapshot,
        record: &UsageRecord,
        resolved_at: std::time::Instant,
        pages: Vec<(String, bytes::Bytes)>,
    ) -> FsResult<(String, bool)> {
        let store = self.store_of(Some(snap.record.token_id));
        let window = self.config().settle_window;
        let raced = || FsError::Raced("another writer published meanwhile; merging it".into());
        let mut replaces = snap.replaces.clone();
        // A node that checks publications refuses this one if the record moved since the
        // merge: no second look needed (one round trip less on every commit).
        if !window.is_zero()
            && resolved_at.elapsed() > window / 2
            && let Some(btns) = &snap.btns
            && !store.checks_publications().await
        {
            let now = store.resolve(btns).await?.map(|p| p.doc_cid);
            if now.is_some() && now != record.prev {
                return Err(raced());
            }
            replaces = now;
        }
        match store
            .publish_usage_with(
                snap.btns.as_deref(),
                record,
                replaces.as_deref(),
                pages,
                &snap.unstored,
            )
            .await?
        {
            Publish::Published { doc, checked } => Ok((doc, checked)),
            Publish::Moved => Err(raced()),
        }
    }
}

/// The closes a commit taken now cannot include: every linked file of `token` whose
/// newest version is still uploading, at its current path, with its current attributes.
/// `None` when one cannot be carried as a close (a new file with more than one link or
/// with extended attributes): the commit then waits until the uploads are done.
pub(in crate::fs) fn carried_closes(
    tree: &Tree,
    token: TokenId,
) -> Option<Vec<crate::fs::data::journal::Op>> {
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
        carried.push(crate::fs::data::journal::Op::Close {
            path: tree.path_of(*ino),
            staged: staged.path().to_path_buf(),
            size: staged.len().ok(),
            overlay: staged.overlay().map(|o| o.record()),
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            mtime_ns: m.mtime_ns,
        });
    }
    Some(carried)
}

pub(in crate::fs) fn depth(tree: &Tree, ino: Ino) -> usize {
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

/// Every object of the written directories, for the usage figure.
pub(in crate::fs) fn all_objects(
    written: &HashMap<Ino, DirObjects>,
) -> impl Iterator<Item = &(String, u64)> {
    written.values().flat_map(|o| o.objects.iter())
}

/// The link-group table a commit stores (docs/FORMAT.md §4.4), in one pass over the
/// inodes: every non-directory with two or more names gets a group id (one left with a single
/// name loses it: a record exists iff `nlink` ≥ 2), and every loaded group inode is recorded
/// as it is now; groups none of whose names is loaded keep their committed records.
pub(in crate::fs) fn link_groups(
    tree: &mut Tree,
    token: TokenId,
) -> FsResult<(Vec<format::InodeRecord>, HashMap<u64, GroupSlot>)> {
    let mut slots: HashMap<u64, GroupSlot> = HashMap::new();
    // Only inodes with two or more names or a group (swept): O(those), not O(inodes).
    let candidates: Vec<Ino> = tree.tracked.linked.iter().copied().collect();
    let mut regrouped = Vec::new();
    for ino in &candidates {
        let Some(inode) = tree.inodes.get_mut(ino) else {
            continue;
        };
        if inode.token != Some(token) || inode.dir().is_some() {
            continue;
        }
        let before = inode.group;
        match (inode.links.len() >= 2, inode.group) {
            (true, None) => inode.group = Some(rand::random::<u64>()),
            (false, Some(_)) => inode.group = None,
            _ => {}
        }
        if inode.group != before {
            regrouped.extend(inode.links.iter().cloned());
        }
        let Some(id) = inode.group else { continue };
        if let Some(stored) = stored::inode_of(inode, None) {
            slots.insert(
                id,
                GroupSlot {
                    nlink: inode.links.len() as u64,
                    inode: stored,
                    ino: Some(*ino),
                    table: inode
                        .file()
                        .and_then(|f| f.blob.as_ref())
                        .and_then(|b| b.chunks.clone()),
                },
            );
        }
    }
    // Their entries change kind (`link` or not): the directories holding them look again.
    for (p, n) in regrouped {
        tree.note_changed(p, &n);
    }
    for ino in candidates {
        if tree
            .inodes
            .get(&ino)
            .is_none_or(|i| i.links.len() < 2 && i.group.is_none())
        {
            tree.tracked.linked.remove(&ino);
        }
    }
    for (id, slot) in &tree.token(token)?.groups {
        if slot.ino.is_none() {
            slots.entry(*id).or_insert_with(|| slot.clone());
        }
    }
    let mut records: Vec<format::InodeRecord> = slots
        .iter()
        .map(|(id, s)| format::InodeRecord {
            id: format::GroupId::from_u64(*id),
            nlink: s.nlink,
            kind: format::EntryKind::Inode(s.inode.clone()),
        })
        .collect();
    records.sort_by_key(|r| r.id);
    Ok((records, slots))
}

/// Directories up to this many entries are also built whole when invariants are checked
/// (`invariants::checked`: debug builds and the test suite), to check
/// that their update in place gives the same pages.
const CHECKED_ENTRIES: usize = 5_000;

pub(in crate::fs) fn snapshot_dir(
    tree: &Tree,
    ino: Ino,
    dirty: &HashSet<Ino>,
    groups: Option<Vec<format::InodeRecord>>,
) -> FsResult<DirSnapshot> {
    let dir = tree.get(ino)?;
    let d = dir.dir().ok_or(FsError::NotDir)?;
    let entries = tree.entries(ino)?;
    let mut pending_children = Vec::new();
    let (contents, check) = match (&d.table, d.changes.all) {
        (Some(table), false) => {
            let mut edits = std::collections::BTreeMap::new();
            for name in &d.changes.names {
                let e = match entries.get(name.as_bytes()) {
                    Some(child) => entry_at(tree, name, child, dirty, &mut pending_children)?,
                    None => None,
                };
                edits.insert(name.as_bytes().to_vec(), e);
            }
            let check = (crate::fs::invariants::checked() && entries.len() <= CHECKED_ENTRIES)
                .then(|| all_entries(tree, ino, dirty, &mut Vec::new()))
                .transpose()?;
            let contents = DirContents::Edits {
                table: table.clone(),
                edits,
            };
            (contents, check)
        }
        _ => (
            DirContents::All(all_entries(tree, ino, dirty, &mut pending_children)?),
            None,
        ),
    };
    let root = tree.is_token_root(ino).then(|| RootParts {
        attrs: stored::attrs_of(&dir.meta),
        xattrs: stored::xattrs_of(&dir.xattrs),
        groups: groups.unwrap_or_default(),
    });
    Ok(DirSnapshot {
        ino,
        root,
        contents,
        pending_children,
        check,
        old: d.objects.clone(),
        changes: Default::default(),
    })
}

/// Every committable entry of `dir`, in name order.
pub(in crate::fs) fn all_entries(
    tree: &Tree,
    dir: Ino,
    dirty: &HashSet<Ino>,
    pending: &mut Vec<(Vec<u8>, Ino)>,
) -> FsResult<Vec<format::Entry>> {
    let mut out = Vec::new();
    for (name, child) in tree.entries(dir)?.iter() {
        out.extend(entry_at(tree, name, child, dirty, pending)?);
    }
    Ok(out)
}

/// The entry `name` → `child` as the commit stores it, if it stores one.
pub(in crate::fs) fn entry_at(
    tree: &Tree,
    name: &format::Name,
    child: Ino,
    dirty: &HashSet<Ino>,
    pending: &mut Vec<(Vec<u8>, Ino)>,
) -> FsResult<Option<format::Entry>> {
    let inode = tree.get(child)?;
    if inode.token.is_none() {
        return Ok(None); // `px-dapp/`: shown, never committed (fs::dapp)
    }
    let top = match &inode.body {
        // Known once written: a placeholder until then.
        Body::Dir(_) if dirty.contains(&child) => {
            pending.push((name.as_bytes().to_vec(), child));
            Some("")
        }
        Body::Dir(d) => d.top.as_deref(),
        _ => None,
    };
    // Never closed, or never committed: not part of any commit yet.
    Ok(stored::entry_of(name, inode, top))
}

/// Two roots hold the same tree (attributes, root directory, link groups) whatever their
/// commit times and histories (docs/FORMAT.md §12.1): a merge that gave exactly theirs
/// adopts their document rather than publishing an equal tree under a new time. (Their
/// history is theirs: a machine that only follows another never publishes, so two idle
/// machines do not answer each other's commits with commits that only add a version.)
async fn same_tree(
    store: &dyn crate::fs::store::ContentStore,
    crypto: &crate::format::TreeCrypto,
    cache: &pages::PageCache,
    a: &str,
    b: &str,
) -> bool {
    let read = |cid: &str| {
        let cid = cid.to_owned();
        async move {
            let bytes = match cache.get(&cid) {
                Some(b) => b,
                None => store.fetch(&cid).await.ok()?,
            };
            format::root::Root::decode_any(&bytes, crypto).ok()
        }
    };
    match (read(a).await, read(b).await) {
        (Some(a), Some(b)) => a.root == b.root && !a.read_only && !b.read_only,
        _ => false,
    }
}
