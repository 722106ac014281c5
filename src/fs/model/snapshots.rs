//! `.snapshots/`: the versions of an sNFT's tree that its format-3 root's history table
//! keeps (docs/FORMAT.md §14.1), shown read-only in the sNFT's root.
//!
//! The view is reachable by name in the sNFT root but not one of its entries: its readdir
//! does not list it (ZFS's `snapdir=hidden`, so `du`, `find` and backups of the mount do
//! not walk every version) and no commit writes it. Its listing is made from the history
//! table at the first lookup; each version is an unloaded directory inode whose `top` is
//! the version's root directory, so it loads, reads and unloads through the live tree's
//! paths. Its inodes belong to no token (`token: None`): every change is refused (EROFS,
//! whatever state the live tree is in), and nothing is charged, journaled or committed
//! (usage counts the kept versions already: they stay in the committed figure of what is
//! not loaded). They are read with their token's keys (`Inode::snapshot_of`). Only a
//! format-3 tree has the view; a v2 tree's own entry of that name is shown as it is.

use std::collections::{BTreeMap, HashMap};

use crate::format::Name;
use crate::format::history::Version;
use crate::fs::data::pages::ChunkTables;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Body, DirBody, Entries, Ino, Inode, Meta, TokenId};
use crate::fs::model::stored;
use crate::fs::model::token::GroupSlot;
use crate::fs::model::tree::Tree;

/// The view's name in an sNFT's root.
pub const SNAPSHOTS_DIR: &str = ".snapshots";
/// Why a change under it is refused.
pub const READ_ONLY: &str = "a snapshot under .snapshots is a kept version and read-only";

/// What the tree knows of a format-3 sNFT's kept versions.
#[derive(Debug, Default)]
pub struct SnapshotView {
    /// The top of the root's history table; `None`: no version is kept.
    pub history: Option<String>,
    /// `.snapshots/`, once looked up.
    pub dir: Option<Ino>,
    /// Per version's directory in it: its link groups.
    pub versions: HashMap<Ino, VersionGroups>,
}

/// A kept version's link groups (docs/FORMAT.md §4.4), read with its root directory.
#[derive(Debug, Default)]
pub struct VersionGroups {
    /// The top of its link-group table, if it had hard links.
    pub inodes: Option<String>,
    /// Its groups by id, once read.
    pub groups: Option<HashMap<u64, GroupSlot>>,
    /// Its usage as its writer recorded it (`user.pxfs.usage` of its directory).
    pub usage: u64,
}

impl Tree {
    /// `token`'s root node was read: `v3_history` is `Some` for a format-3 tree, with the
    /// top of its history table. A view made from another table is dropped.
    pub(in crate::fs) fn root_read(&mut self, token: TokenId, v3_history: Option<Option<String>>) {
        let same = matches!((self.snapshot_views.get(&token), &v3_history),
            (Some(v), Some(h)) if v.history == *h);
        if !same {
            self.detach_snapshots(token);
        }
        match v3_history {
            Some(history) => self.snapshot_views.entry(token).or_default().history = history,
            None => {
                self.snapshot_views.remove(&token);
            }
        }
    }

    /// Whether `name` in `dir` is the snapshot view: `.snapshots` in the root of a
    /// format-3 sNFT (its root loaded).
    pub fn is_snapshots_name(&self, dir: Ino, name: &[u8]) -> bool {
        name == SNAPSHOTS_DIR.as_bytes()
            && self.is_token_root(dir)
            && self
                .get(dir)
                .ok()
                .and_then(|i| i.token)
                .is_some_and(|t| self.snapshot_views.contains_key(&t))
    }

    /// A name a new entry of `dir` may take: not the snapshot view's, which exists in
    /// every format-3 sNFT root (EEXIST, as for any name that exists: a lookup finds it).
    pub fn check_new_name(&self, dir: Ino, name: &Name) -> FsResult<()> {
        match self.is_snapshots_name(dir, name.as_bytes()) {
            true => Err(FsError::Exists),
            false => Ok(()),
        }
    }

    /// Refuse to remove or rename `name` of `dir` when it is the snapshot view (EROFS).
    pub fn check_not_view(&self, dir: Ino, name: &[u8]) -> FsResult<()> {
        match self.is_snapshots_name(dir, name) {
            true => Err(FsError::ReadOnly(READ_ONLY)),
            false => Ok(()),
        }
    }

    /// Why `ino`, which belongs to no token, is read-only.
    pub fn why_read_only(&self, ino: Ino) -> &'static str {
        match self.inodes.get(&ino).and_then(|i| i.snapshot_of) {
            Some(_) => READ_ONLY,
            None => crate::fs::model::dapp::READ_ONLY,
        }
    }

    /// `token`'s `.snapshots/`, listing `versions` (of the history table whose top is
    /// `history`), linked under its root; the one already made if there is one.
    pub(in crate::fs) fn attach_snapshots(
        &mut self,
        token: TokenId,
        history: &Option<String>,
        versions: Vec<Version>,
    ) -> FsResult<Ino> {
        let root = self.token(token)?.root;
        match self.snapshot_views.get(&token) {
            Some(v) if v.history == *history => {
                if let Some(dir) = v.dir {
                    return Ok(dir);
                }
            }
            // The root was read again meanwhile, with other versions: look again.
            _ => return Err(FsError::NotFound),
        }
        let r = self.get(root)?;
        let name = Name::new(SNAPSHOTS_DIR).map_err(|_| FsError::Invalid("snapshots name"))?;
        let dir = self.alloc(Inode {
            token: None,
            meta: Meta {
                mode: 0o555,
                ..r.meta
            },
            xattrs: Default::default(),
            links: vec![(root, name)],
            body: Body::Dir(DirBody::default()),
            open_handles: 0,
            group: None,
            snapshot_of: Some(token),
        });
        // One version per UTC second (§14.2); names sort as their times do.
        let by_name: BTreeMap<String, Version> =
            versions.into_iter().map(|v| (v.name(), v)).collect();
        let mut listed = Entries::default();
        let mut groups = HashMap::new();
        for (name, v) in by_name {
            self.add_version(dir, token, &name, v, &mut listed, &mut groups);
        }
        if let Some(d) = self.inodes.get_mut(&dir).and_then(|i| i.dir_mut()) {
            d.entries = Some(listed);
        }
        if let Some(v) = self.snapshot_views.get_mut(&token) {
            v.dir = Some(dir);
            v.versions = groups;
        }
        Ok(dir)
    }

    /// Version `v`, named `name`, as a directory of `.snapshots/` (`dir`).
    fn add_version(
        &mut self,
        dir: Ino,
        token: TokenId,
        name: &str,
        v: Version,
        listed: &mut Entries,
        groups: &mut HashMap<Ino, VersionGroups>,
    ) {
        let Ok(name) = Name::new(name.as_bytes()) else {
            return;
        };
        let version = self.alloc(Inode {
            token: None,
            meta: stored::meta_of(&v.attrs),
            xattrs: stored::tree_xattrs(v.xattrs),
            links: vec![(dir, name.clone())],
            body: Body::Dir(DirBody {
                top: Some(v.dir),
                ..Default::default()
            }),
            open_handles: 0,
            group: None,
            snapshot_of: Some(token),
        });
        listed.insert(&name, version);
        listed.subdirs += 1;
        groups.insert(
            version,
            VersionGroups {
                inodes: v.inodes,
                groups: None,
                usage: v.usage,
            },
        );
    }

    /// `token`'s root now keeps `versions` (its history table's top: `history`), as this
    /// mount's commit wrote it: `.snapshots/`, if made, lists them. A version listed before
    /// keeps its inodes (a shell or an open file inside it stays where it is); one dropped
    /// leaves, as a file removed by another machine does.
    pub(in crate::fs) fn refresh_snapshots(
        &mut self,
        token: TokenId,
        history: Option<String>,
        versions: Vec<Version>,
    ) {
        let view = self.snapshot_views.entry(token).or_default();
        view.history = history;
        let Some(dir) = view.dir else {
            return;
        };
        let mut wanted: BTreeMap<String, Version> =
            versions.into_iter().map(|v| (v.name(), v)).collect();
        let Some(mut listed) = self
            .inodes
            .get_mut(&dir)
            .and_then(|i| i.dir_mut())
            .and_then(|d| d.entries.take())
        else {
            return;
        };
        let mut groups = self
            .snapshot_views
            .get_mut(&token)
            .map(|v| std::mem::take(&mut v.versions))
            .unwrap_or_default();
        let before: Vec<(Name, Ino)> = listed.iter().map(|(n, i)| (n.clone(), i)).collect();
        for (name, ino) in before {
            let key = String::from_utf8_lossy(name.as_bytes()).into_owned();
            let same = wanted.get(&key).is_some_and(|v| {
                self.inodes
                    .get(&ino)
                    .and_then(|i| i.dir())
                    .is_some_and(|d| d.top.as_deref() == Some(v.dir.as_str()))
                    && groups.get(&ino).map(|g| g.inodes.as_ref()) == Some(v.inodes.as_ref())
            });
            if same {
                wanted.remove(&key);
                continue;
            }
            listed.remove(name.as_bytes());
            listed.subdirs = listed.subdirs.saturating_sub(1);
            groups.remove(&ino);
            self.detach_subtree(ino);
        }
        for (name, v) in wanted {
            self.add_version(dir, token, &name, v, &mut listed, &mut groups);
        }
        if let Some(d) = self.inodes.get_mut(&dir).and_then(|i| i.dir_mut()) {
            d.entries = Some(listed);
        }
        if let Some(v) = self.snapshot_views.get_mut(&token) {
            v.versions = groups;
        }
    }

    /// The recorded usage of the kept version whose directory in `.snapshots/` is `ino`.
    pub fn version_usage(&self, ino: Ino) -> Option<u64> {
        let token = self.inodes.get(&ino)?.snapshot_of?;
        Some(self.snapshot_views.get(&token)?.versions.get(&ino)?.usage)
    }

    /// When loaded directory `dir` is in a kept version and holds a name of a link group
    /// whose other names are not loaded yet: the version's directory (to load it whole, so
    /// the inode's link count is the group's from the first lookup, as in the live tree).
    pub(in crate::fs) fn version_incomplete(&self, dir: Ino) -> Option<Ino> {
        let (token, version) = self.version_of(dir)?;
        let groups = self
            .snapshot_views
            .get(&token)?
            .versions
            .get(&version)?
            .groups
            .as_ref()?;
        // (A version's inodes carry no group id: its groups know their inodes.)
        groups
            .values()
            .filter_map(|slot| Some((slot.nlink, self.inodes.get(&slot.ino?)?)))
            .any(|(nlink, i)| {
                (i.links.len() as u64) < nlink && i.links.iter().any(|(d, _)| *d == dir)
            })
            .then_some(version)
    }

    /// The kept version `ino` belongs to: its token and its directory in `.snapshots/`.
    fn version_of(&self, ino: Ino) -> Option<(TokenId, Ino)> {
        let token = self.inodes.get(&ino)?.snapshot_of?;
        let view = self.snapshot_views.get(&token)?;
        let mut cur = ino;
        // Bounded by the depth of the tree: each step goes one directory up.
        for _ in 0..self.inodes.len() {
            if view.versions.contains_key(&cur) {
                return Some((token, cur));
            }
            cur = self.inodes.get(&cur)?.links.first()?.0;
        }
        None
    }

    fn version_groups(&mut self, ino: Ino) -> Option<&mut VersionGroups> {
        let (token, version) = self.version_of(ino)?;
        self.snapshot_views
            .get_mut(&token)?
            .versions
            .get_mut(&version)
    }

    /// The link-group table to read before loading `dir`, when it is a kept version's
    /// directory whose groups are not read yet: the table's top.
    pub(in crate::fs) fn version_groups_wanted(&self, dir: Ino) -> Option<String> {
        let (token, version) = self.version_of(dir)?;
        let v = self.snapshot_views.get(&token)?.versions.get(&version)?;
        match (&v.inodes, &v.groups) {
            (Some(top), None) => Some(top.clone()),
            _ => None,
        }
    }

    /// The link groups of the version `dir` belongs to, read from its table `top`.
    pub(in crate::fs) fn set_version_groups(
        &mut self,
        dir: Ino,
        top: &str,
        (records, tables): (Vec<crate::format::InodeRecord>, ChunkTables),
    ) {
        let Some(v) = self.version_groups(dir) else {
            return;
        };
        if v.inodes.as_deref() != Some(top) || v.groups.is_some() {
            return;
        }
        let slots = records
            .into_iter()
            .filter_map(|r| GroupSlot::of_record(r, &tables));
        v.groups = Some(slots.collect());
    }

    /// The link groups names in `dir` refer to: its token's, or its kept version's.
    pub(in crate::fs) fn groups_of(&mut self, dir: Ino) -> Option<&mut HashMap<u64, GroupSlot>> {
        let inode = self.inodes.get(&dir)?;
        match inode.token {
            Some(t) => self.tokens.get_mut(&t).map(|t| &mut t.groups),
            None => self.version_groups(dir)?.groups.as_mut(),
        }
    }

    /// Drop `token`'s `.snapshots/`: what the kernel or an open file still refers to
    /// lives on, nameless, until it lets go.
    fn detach_snapshots(&mut self, token: TokenId) {
        let Some(view) = self.snapshot_views.get_mut(&token) else {
            return;
        };
        view.versions.clear();
        let Some(dir) = view.dir.take() else {
            return;
        };
        self.detach_subtree(dir);
    }

    /// `ino` and everything under it leave the tree: what the kernel or an open file still
    /// refers to lives on, nameless, until it lets go.
    fn detach_subtree(&mut self, ino: Ino) {
        let mut stack = vec![ino];
        let mut all = Vec::new();
        while let Some(ino) = stack.pop() {
            let Some(inode) = self.inodes.get_mut(&ino) else {
                continue;
            };
            inode.links.clear();
            if let Some(e) = inode.dir().and_then(|d| d.entries.as_ref()) {
                stack.extend(e.iter().map(|(_, c)| c));
            }
            all.push(ino);
        }
        for ino in all {
            self.residency.remove(ino);
            self.forget_if_unused(ino);
        }
    }
}
