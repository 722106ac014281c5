//! A directory read from the node entering the tree (`Tree::load_dir`): its entries
//! become inodes (or refresh the ones already known by a lookup), its link groups are
//! matched to their inodes, and its charge is recorded.

use std::collections::BTreeMap;

use crate::format::{self, Name};
use crate::fs::data::pages::{ReadDir, chunked_content};
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Body, DirBody, Entries, Ino, Kind, TokenId};
use crate::fs::model::stored;
use crate::fs::model::token::GroupSlot;

use super::tree::Tree;

impl Tree {
    /// Fill an unloaded directory from what its stored objects hold (and an sNFT root's own
    /// attributes and link groups). Entries of a kind this version does not know are left
    /// out. Returns true when a link group has names in directories not loaded yet: the
    /// caller loads the rest of the tree, so a group's inode always has all its names.
    pub fn load_dir(&mut self, dir: Ino, read: ReadDir) -> FsResult<bool> {
        let is_token_root = self.is_token_root(dir);
        let inode = self.get_mut(dir)?;
        let (token, snapshot_of) = (inode.token, inode.snapshot_of);
        let d = inode.dir_mut().ok_or(FsError::NotDir)?;
        if d.entries.is_some() {
            return Ok(false); // loaded meanwhile by another request
        }
        d.top = Some(read.objects.top.clone());
        d.objects = Some(read.objects.objects.clone());
        d.table = read.objects.table.clone();
        // Names looked up alone keep their inodes: the kernel holds those numbers.
        let mut found = std::mem::take(&mut d.found);
        // What an unload of this directory dropped comes back with the charges set below.
        if snapshot_of.is_none()
            && let Some(t) = token.and_then(|t| self.tokens.get_mut(&t))
        {
            t.ledger.reading(&read.objects.top);
        }
        if is_token_root && let Some(t) = token {
            self.root_read(t, read.v3_history.clone());
        }
        let inode = self.get_mut(dir)?;
        if is_token_root && let Some(root) = read.root {
            inode.meta = stored::meta_of(&root.attrs);
            inode.xattrs = stored::tree_xattrs(root.xattrs);
            if let Some(t) = token.and_then(|t| self.tokens.get_mut(&t)) {
                t.groups = root
                    .groups
                    .into_iter()
                    .filter_map(|r| GroupSlot::of_record(r, &read.tables))
                    .collect();
            }
        }
        let mut entries = Entries::default();
        let mut new_unloaded = 0;
        let mut loaded = vec![dir];
        let mut groups_met = Vec::new();
        for e in read.entries {
            let name = e.name;
            let i = match e.kind {
                format::EntryKind::Inode(i) => i,
                format::EntryKind::Link(id) => {
                    let id = u64::from_be_bytes(id.0);
                    match self.link_group_name(token, id, dir, &name)? {
                        Some(ino) => {
                            entries.insert(&name, ino);
                            loaded.push(ino);
                            groups_met.push(ino);
                        }
                        None => {
                            tracing::error!(
                                dir,
                                name = %name,
                                group = id,
                                "a name of a link group the tree does not record; not shown"
                            );
                        }
                    }
                    continue;
                }
                format::EntryKind::Unknown(_) => continue,
            };
            if let Some(ino) = found.remove(&name)
                && let Some(inode) = self.inodes.get_mut(&ino)
            {
                self.tracked.touched.insert(ino);
                let kind = inode.kind();
                if let Body::Dir(d) = &mut inode.body
                    && d.found.is_empty()
                {
                    known_empty(d, &read.empty_dir);
                }
                if matches!(&inode.body, Body::Dir(d) if d.entries.is_none()) {
                    new_unloaded += 1;
                }
                if kind == Kind::Dir {
                    entries.subdirs += 1;
                }
                entries.insert(&name, ino);
                loaded.push(ino);
                continue;
            }
            let (kind, mut inode) =
                stored::inode_read(token, i, (dir, name.clone()), None, &read.tables);
            // Below `.snapshots/`, a kept version's entries are of that version too.
            inode.snapshot_of = snapshot_of;
            if let Body::Dir(d) = &mut inode.body {
                known_empty(d, &read.empty_dir);
            }
            let unloaded = matches!(&inode.body, Body::Dir(d) if d.entries.is_none());
            let ino = self.alloc(inode);
            if kind == Kind::Dir {
                entries.subdirs += 1;
            }
            if unloaded {
                new_unloaded += 1;
            }
            entries.insert(&name, ino);
            loaded.push(ino);
        }
        if let Some(d) = self.get_mut(dir)?.dir_mut() {
            d.entries = Some(entries);
        }
        self.residency.holds_found(dir, false);
        self.drop_stale_found(found);
        self.residency.touch(dir);
        if let Some(t) = token.and_then(|t| self.tokens.get_mut(&t)) {
            t.unloaded_dirs = (t.unloaded_dirs + new_unloaded).saturating_sub(1);
            if read.v1 {
                t.v1_tree = true;
            }
        }
        // A group met here with fewer names loaded than it has.
        let incomplete = token.and_then(|t| self.tokens.get(&t)).is_some_and(|t| {
            groups_met
                .iter()
                .filter_map(|ino| self.inodes.get(ino))
                .any(|i| {
                    let nlink = i
                        .group
                        .and_then(|g| t.groups.get(&g))
                        .map_or(0, |s| s.nlink);
                    (i.links.len() as u64) < nlink
                })
        });
        // Its objects and its entries' are in the committed figure: they move into the
        // ledger (docs/FORMAT.md §7).
        for ino in loaded {
            self.recharge(ino, true);
        }
        Ok(incomplete)
    }

    /// Point the unloaded, unchanged directory `dir` at another stored version of it (`top`,
    /// with its attributes), unread: what it was is not read again (the node may have
    /// collected it), what it becomes is read at its next use. Its names looked up alone
    /// lose their inodes (returned, for the kernel to forget); its parent's entry is
    /// rewritten at the next commit. Neither version's objects are known one by one: the
    /// committed figure of what is not loaded keeps the old version's share in place of the
    /// new one's (docs/FORMAT.md §9.3).
    pub(in crate::fs) fn repoint_unloaded_dir(
        &mut self,
        dir: Ino,
        top: String,
        meta: crate::fs::model::inode::Meta,
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> FsResult<Vec<Name>> {
        let inode = self.get_mut(dir)?;
        let d = inode.dir_mut().ok_or(FsError::NotDir)?;
        if d.entries.is_some() || d.dirty {
            return Err(FsError::Invalid(
                "only an unloaded, unchanged directory is repointed",
            ));
        }
        d.top = Some(top);
        d.objects = None;
        d.table = None;
        inode.meta = meta;
        inode.xattrs = xattrs;
        let names = self.detach_all_found(dir);
        // Its old pages, if they were charged, leave the tree.
        self.recharge(dir, false);
        self.stored_inode_changed(dir);
        Ok(names)
    }

    /// Inodes looked up alone under names the directory's stored entries, read whole, do
    /// not hold (as found, or as entries of their own): only if its stored table changed
    /// meanwhile, which what changes a directory prevents by loading it first. They lose
    /// their name, as a file unlinked by someone else would, and go once unused.
    pub(in crate::fs) fn drop_stale_found(&mut self, found: BTreeMap<Name, Ino>) {
        for (name, ino) in &found {
            tracing::warn!(ino, "a name looked up alone is gone from its directory");
            tracing::debug!(ino, name = %name, "name gone");
        }
        self.detach_found(found);
    }

    /// Every name looked up alone in the unloaded directory `dir` loses its inode
    /// ([`Tree::detach_found`]); returns those names, for the kernel to forget.
    pub(in crate::fs) fn detach_all_found(&mut self, dir: Ino) -> Vec<Name> {
        let Some(d) = self.inodes.get_mut(&dir).and_then(|i| i.dir_mut()) else {
            return Vec::new();
        };
        let found = std::mem::take(&mut d.found);
        self.residency.holds_found(dir, false);
        let names = found.keys().cloned().collect();
        self.detach_found(found);
        names
    }

    /// Inodes looked up alone that lose their name (their directory's stored entries are
    /// replaced, or gone): as a file unlinked by someone else, they go once unused.
    pub(in crate::fs) fn detach_found(&mut self, found: BTreeMap<Name, Ino>) {
        for ino in found.into_values() {
            let Some(i) = self.inodes.get_mut(&ino) else {
                continue;
            };
            i.links.clear();
            // Counted as not loaded from now on, as every directory inode outside `found`.
            if let Body::Dir(d) = &i.body
                && d.entries.is_none()
                && let Some(t) = i.token.and_then(|t| self.tokens.get_mut(&t))
            {
                t.unloaded_dirs += 1;
            }
            self.tracked.touched.insert(ino);
            self.forget_if_unused(ino);
        }
    }

    /// A loaded name of link group `id`: the group's inode, made at its first name.
    pub(in crate::fs) fn link_group_name(
        &mut self,
        token: Option<TokenId>,
        id: u64,
        dir: Ino,
        name: &Name,
    ) -> FsResult<Option<Ino>> {
        // The token's groups, or in `.snapshots/` the kept version's.
        let Some(slot) = self.groups_of(dir).and_then(|g| g.get(&id)).cloned() else {
            return Ok(None);
        };
        if let Some(ino) = slot.ino
            && let Some(inode) = self.inodes.get_mut(&ino)
        {
            self.tracked.touched.insert(ino);
            inode.links.push((dir, name.clone()));
            return Ok(Some(ino));
        }
        let tables: crate::fs::data::pages::ChunkTables = slot
            .table
            .iter()
            .filter_map(|t| {
                let key = chunked_content(&format::EntryKind::Inode(slot.inode.clone()))?;
                Some((key, t.clone()))
            })
            .collect();
        let snapshot_of = self.get(dir)?.snapshot_of;
        // A kept version's inode is never committed: it is no group's to store.
        let group = snapshot_of.is_none().then_some(id);
        let (_, mut inode) =
            stored::inode_read(token, slot.inode, (dir, name.clone()), group, &tables);
        inode.snapshot_of = snapshot_of;
        let ino = self.alloc(inode);
        if let Some(slot) = self.groups_of(dir).and_then(|g| g.get_mut(&id)) {
            slot.ino = Some(ino);
        }
        Ok(Some(ino))
    }
}

/// A subdirectory stored as the empty directory's page is known whole without reading
/// it (so usage counts that page once, docs/FORMAT.md §7).
pub(in crate::fs) fn known_empty(d: &mut DirBody, empty_dir: &Option<(String, u64)>) {
    if let Some((empty, size)) = empty_dir
        && d.entries.is_none()
        && d.top.as_ref() == Some(empty)
    {
        d.entries = Some(Entries::default());
        d.objects = Some(vec![(empty.clone(), *size)].into());
    }
}
