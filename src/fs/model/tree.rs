//! The namespace: the inode table and the mutations of directories (link, unlink, rename)
//! shared by live operations and journal replay. Everything here runs under the core's
//! lock and never touches the network.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::format::{self, Name, Target};
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Body, DirBody, Entries, Ino, Inode, Kind, Meta, ROOT_INO, TokenId};
use crate::fs::model::ledger::Charge;
use crate::fs::model::stored;
use crate::fs::model::token::TokenFs;

/// Longest file name, as on ext4 (and what statfs reports).
pub use crate::format::name::NAME_MAX;

#[derive(Debug)]
pub struct Tree {
    /// Boxed: the table's buckets are a pointer each, so its free buckets (a hash table
    /// doubles: after growing past 57,344 inodes it has 131,072 buckets) and a growth's two
    /// tables side by side cost 16 bytes a bucket, not an inode's size.
    pub inodes: HashMap<Ino, Box<Inode>>,
    next_ino: Ino,
    pub tokens: BTreeMap<TokenId, TokenFs>,
    /// The kernel's references (FUSE lookup counts) per inode. An inode the kernel still
    /// knows stays valid after its last unlink (an `open` racing a rename over its name
    /// must find it) until the kernel forgets it.
    lookups: HashMap<Ino, u64>,
    /// Per token, its `px-dapp/` directory (`fs::model::dapp`), if shown.
    pub dapp_dirs: HashMap<TokenId, Ino>,
    /// Per format-3 token, its kept versions (`fs::model::snapshots`).
    pub snapshot_views: HashMap<TokenId, crate::fs::model::snapshots::SnapshotView>,
    /// Loaded directories by last use, for unloading (`fs::model::unload`).
    pub residency: crate::fs::model::unload::Residency,
    /// Inodes a commit must look at, so that it need not visit every inode.
    pub tracked: Tracked,
    /// Journal ops appended under this hold of the lock, written when it is dropped (see
    /// [`crate::fs::TreeGuard`]).
    pub journaled: Vec<(std::sync::Arc<crate::fs::data::journal::Journal>, u64)>,
}

/// Which inodes may have changed since the last commit looked (`touched`: every inode
/// made or borrowed mutably), and the few the commit's questions are about: files without
/// an uploaded version, non-directories with two or more names or a link group, files
/// with a staged copy. A commit sweeps `touched` into the others (`Tree::sweep`).
#[derive(Debug, Default)]
pub struct Tracked {
    pub(in crate::fs) touched: HashSet<Ino>,
    pub blobless: HashSet<Ino>,
    pub linked: HashSet<Ino>,
    pub staged: HashSet<Ino>,
    /// Files with an uploaded version their charge does not hold (a newer version
    /// pending, an open session, no name left): that version is still in use.
    pub unsettled: HashSet<Ino>,
}

/// A name as the kernel passed it, checked against what Linux allows in a directory
/// entry: 1–255 bytes, no `/`, no NUL, not `.` or `..`. Any other bytes are fine (names
/// need not be UTF-8).
pub fn check_name(name: &[u8]) -> FsResult<Name> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(FsError::Invalid("file name"));
    }
    if name == b"." || name == b".." {
        return Err(FsError::Exists);
    }
    Name::new(name).map_err(|_| FsError::Invalid("file name"))
}

/// A symlink target as the kernel passed it: 1–4095 bytes, no NUL.
pub fn check_target(target: &[u8]) -> FsResult<Target> {
    Target::new(target).map_err(|_| FsError::Invalid("symlink target"))
}

/// `dir/name` as bytes (`name` alone at the token's root).
pub fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(dir.len() + 1 + name.len());
    if !dir.is_empty() {
        out.extend_from_slice(dir);
        out.push(b'/');
    }
    out.extend_from_slice(name);
    out
}

/// What [`Tree::mark`] records in a directory.
enum Mark {
    All,
    Name(Name),
    /// Only the sNFT root's own attributes (in its root node).
    Own,
}

impl Tree {
    pub fn new() -> Tree {
        Tree {
            inodes: HashMap::new(),
            next_ino: ROOT_INO + 1,
            tokens: BTreeMap::new(),
            lookups: HashMap::new(),
            dapp_dirs: HashMap::new(),
            snapshot_views: HashMap::new(),
            residency: Default::default(),
            tracked: Tracked::default(),
            journaled: Vec::new(),
        }
    }

    pub fn alloc(&mut self, inode: Inode) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(ino, Box::new(inode));
        self.tracked.touched.insert(ino);
        ino
    }

    pub fn get(&self, ino: Ino) -> FsResult<&Inode> {
        self.inodes.get(&ino).map(|i| &**i).ok_or(FsError::NotFound)
    }

    pub fn get_mut(&mut self, ino: Ino) -> FsResult<&mut Inode> {
        self.tracked.touched.insert(ino);
        self.inodes
            .get_mut(&ino)
            .map(|i| &mut **i)
            .ok_or(FsError::NotFound)
    }

    /// `ino` was changed other than through [`Tree::get_mut`].
    pub fn touch(&mut self, ino: Ino) {
        self.tracked.touched.insert(ino);
    }

    /// Brings the charges of the inodes touched since the last sweep up to date and sorts
    /// them into the sets a commit asks about: O(inodes changed), not O(inodes).
    pub fn sweep(&mut self) {
        let touched = std::mem::take(&mut self.tracked.touched);
        for ino in touched {
            self.recharge(ino, false);
            let charge = self.desired_charge(ino);
            let tr = &mut self.tracked;
            let Some(inode) = self.inodes.get(&ino) else {
                tr.blobless.remove(&ino);
                tr.linked.remove(&ino);
                tr.staged.remove(&ino);
                tr.unsettled.remove(&ino);
                continue;
            };
            let file = inode.file();
            let set = |s: &mut HashSet<Ino>, on: bool| {
                if on {
                    s.insert(ino);
                } else {
                    s.remove(&ino);
                }
            };
            set(&mut tr.blobless, file.is_some_and(|f| f.blob.is_none()));
            set(&mut tr.staged, file.is_some_and(|f| f.staged.is_some()));
            set(
                &mut tr.unsettled,
                file.and_then(|f| f.blob.as_ref()).is_some_and(
                    |b| !matches!(&charge, Some(Charge::Object { cid, .. }) if *cid == b.cid),
                ),
            );
            set(
                &mut tr.linked,
                inode.dir().is_none() && (inode.links.len() >= 2 || inode.group.is_some()),
            );
            // Whatever changed in it (times a write bumped, say) shows in the entries
            // naming it: their directories' next commits look at those names (a kept
            // version's inodes never change and are never committed).
            let links = inode.snapshot_of.is_none().then(|| inode.links.clone());
            for (p, n) in links.into_iter().flatten() {
                self.note_changed(p, &n);
            }
        }
    }

    /// The entry `name` of `dir` may differ at its next commit, without making `dir` dirty
    /// (a commit of it, for whatever reason, looks at the name).
    pub fn note_changed(&mut self, dir: Ino, name: &Name) {
        if let Some(d) = self.inodes.get_mut(&dir).and_then(|i| i.dir_mut())
            && !d.changes.all
        {
            d.changes.names.insert(name.clone());
        }
    }

    /// The token `ino` belongs to; the multi-token mount root belongs to none and is
    /// read-only.
    pub fn token_of(&self, ino: Ino) -> FsResult<TokenId> {
        self.get(ino)?.token.ok_or(if ino == ROOT_INO {
            FsError::ReadOnly("the mount root lists sNFTs and is read-only")
        } else {
            FsError::ReadOnly(self.why_read_only(ino))
        })
    }

    pub fn token(&self, id: TokenId) -> FsResult<&TokenFs> {
        self.tokens.get(&id).ok_or(FsError::NotFound)
    }

    pub fn token_mut(&mut self, id: TokenId) -> FsResult<&mut TokenFs> {
        self.tokens.get_mut(&id).ok_or(FsError::NotFound)
    }

    /// The loaded entries of directory `dir` (callers load it first).
    pub fn entries(&self, dir: Ino) -> FsResult<&Entries> {
        match &self.get(dir)?.body {
            Body::Dir(DirBody {
                entries: Some(e), ..
            }) => Ok(e),
            Body::Dir(_) => Err(FsError::Unloaded),
            _ => Err(FsError::NotDir),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> FsResult<&mut Entries> {
        match &mut self.get_mut(dir)?.body {
            Body::Dir(DirBody {
                entries: Some(e), ..
            }) => Ok(e),
            Body::Dir(_) => Err(FsError::Unloaded),
            _ => Err(FsError::NotDir),
        }
    }

    pub fn child(&self, dir: Ino, name: &[u8]) -> FsResult<Option<Ino>> {
        Ok(self.entries(dir)?.get(name))
    }

    /// Path of `ino` relative to its token's root, as bytes (empty for the root itself):
    /// what the journal records. For people use [`Tree::display_path`].
    pub fn path_of(&self, ino: Ino) -> Vec<u8> {
        let mut parts = Vec::new();
        let mut cur = ino;
        while let Some(inode) = self.inodes.get(&cur) {
            let Some((parent, name)) = inode.links.first() else {
                break;
            };
            if self.is_token_root(cur) {
                break;
            }
            parts.push(name.as_bytes());
            cur = *parent;
        }
        parts.reverse();
        parts.join(&b'/')
    }

    /// [`Tree::path_of`] for status, logs and error messages: escaped with
    /// [`crate::format::name::escape`], never raw bytes.
    pub fn display_path(&self, ino: Ino) -> String {
        crate::format::name::escape(&self.path_of(ino))
    }

    pub fn is_token_root(&self, ino: Ino) -> bool {
        self.inodes
            .get(&ino)
            .and_then(|i| i.token)
            .and_then(|t| self.tokens.get(&t))
            .is_some_and(|t| t.root == ino)
    }

    /// Whether `ino` is `ancestor` or lies below it.
    pub fn is_within(&self, ino: Ino, ancestor: Ino) -> bool {
        let mut cur = ino;
        loop {
            if cur == ancestor {
                return true;
            }
            if self.is_token_root(cur) {
                return false;
            }
            match self.inodes.get(&cur).and_then(|i| i.links.first()) {
                Some((parent, _)) => cur = *parent,
                None => return false,
            }
        }
    }

    /// Mark `dir` and every directory above it as needing new pages; `dir`'s are built
    /// whole (what changed in it is not known).
    pub fn mark_dirty(&mut self, dir: Ino) {
        self.mark(dir, Mark::All);
    }

    /// `dir` changed as `changes` say (taken by a commit that was not published): dirty
    /// again, with the same names changed.
    pub fn restore_changes(&mut self, dir: Ino, changes: &crate::fs::model::inode::DirChanges) {
        if changes.all {
            self.mark(dir, Mark::All);
            return;
        }
        for name in &changes.names {
            self.mark(dir, Mark::Name(name.clone()));
        }
        // Dirty even with no name changed (its own attributes, the sNFT root's node).
        self.mark(dir, Mark::Own);
    }

    /// The entry `name` of `dir` changed (or appeared, or went): `dir` and every directory
    /// above it need new pages; `dir`'s are its previous ones with that entry updated.
    pub fn mark_changed(&mut self, dir: Ino, name: &Name) {
        self.mark(dir, Mark::Name(name.clone()));
    }

    /// What is stored of `ino` itself (attributes, xattrs, content) changed: the entries
    /// naming it, or for an sNFT root its root node.
    pub fn stored_inode_changed(&mut self, ino: Ino) {
        if self.is_token_root(ino) {
            self.mark(ino, Mark::Own);
            return;
        }
        let links = self
            .inodes
            .get(&ino)
            .map(|i| i.links.clone())
            .unwrap_or_default();
        for (p, n) in links {
            self.mark_changed(p, &n);
        }
    }

    fn mark(&mut self, dir: Ino, mut what: Mark) {
        let mut cur = dir;
        loop {
            let Some(inode) = self.inodes.get_mut(&cur) else {
                return;
            };
            let Some(token) = inode.token else { return };
            let link = inode.links.first().cloned();
            let Body::Dir(d) = &mut inode.body else {
                return;
            };
            if d.entries.is_none() {
                // Its next commit could not write its pages: every change loads the
                // directories holding what it changes first (`Fs::ensure_holders_loaded`).
                tracing::error!(dir = cur, "a directory not loaded was marked as changed");
            }
            assert!(
                d.entries.is_some() || !crate::fs::invariants::checked(),
                "directory {cur} not loaded was marked as changed"
            );
            match what {
                Mark::All => {
                    d.changes.all = true;
                    d.changes.names.clear();
                }
                Mark::Name(n) if !d.changes.all => {
                    d.changes.names.insert(n);
                }
                Mark::Name(_) | Mark::Own => {}
            }
            if d.dirty {
                // Everything above is dirty already, each with the name leading here.
                return;
            }
            d.dirty = true;
            let Some(t) = self.tokens.get_mut(&token) else {
                return;
            };
            t.dirty_dirs.insert(cur);
            if t.root == cur {
                return;
            }
            match link {
                Some((p, n)) => {
                    cur = p;
                    what = Mark::Name(n);
                }
                None => return,
            }
        }
    }

    /// A directory entry changed: bump the directory's times and mark it for commit.
    fn touch_dir(&mut self, dir: Ino, name: &Name) {
        self.residency.touch(dir);
        if let Ok(d) = self.get_mut(dir) {
            let now = crate::fs::model::inode::now_ns();
            d.meta.mtime_ns = now;
            d.meta.ctime_ns = now;
        }
        self.mark_changed(dir, name);
    }

    /// Put `ino` into `dir` under `name` (the name must be free).
    pub fn link_child(&mut self, dir: Ino, name: &Name, ino: Ino) -> FsResult<()> {
        let inode = self.get_mut(ino)?;
        inode.links.push((dir, name.clone()));
        let (kind, token) = (inode.kind(), inode.token);
        let entries = self.entries_mut(dir)?;
        entries.insert(name, ino);
        if kind == Kind::Dir {
            entries.subdirs += 1;
        }
        // `files` counts names, as the manifests list them; usage counts the content once
        // (docs/FORMAT.md §7: a hard link is one inode, equal contents one CID).
        if kind == Kind::File
            && let Some(t) = token.and_then(|t| self.tokens.get_mut(&t))
        {
            t.files += 1;
        }
        self.recharge(ino, false);
        self.touch_dir(dir, name);
        self.names_changed(ino);
        Ok(())
    }

    /// A non-directory gained or lost a name: how its other names are stored may change (an
    /// entry of its own, or a name of a link group, docs/FORMAT.md §4.4), so every directory
    /// holding one is rewritten.
    fn names_changed(&mut self, ino: Ino) {
        let links = match self.inodes.get(&ino) {
            Some(i) if i.dir().is_none() => i.links.clone(),
            _ => return,
        };
        for (p, n) in links {
            self.mark_changed(p, &n);
        }
    }

    /// Remove `name` from `dir`; returns the inode it named. An inode left with no link
    /// and no open handle is forgotten (its content no longer counts and gets unpinned).
    pub fn unlink_child(&mut self, dir: Ino, name: &[u8]) -> FsResult<Ino> {
        if let Some(ino) = self.child(dir, name)? {
            self.check_in_tree(ino)?;
        }
        let name = Name::new(name).map_err(|_| FsError::NotFound)?;
        let entries = self.entries_mut(dir)?;
        let ino = entries.remove(name.as_bytes()).ok_or(FsError::NotFound)?;
        let inode = self.get_mut(ino)?;
        if let Some(pos) = inode
            .links
            .iter()
            .position(|(p, n)| *p == dir && *n == name)
        {
            inode.links.remove(pos);
        }
        inode.meta.ctime_ns = crate::fs::model::inode::now_ns();
        let (kind, token, last) = (inode.kind(), inode.token, inode.links.is_empty());
        if kind == Kind::Dir
            && let Ok(e) = self.entries_mut(dir)
        {
            e.subdirs = e.subdirs.saturating_sub(1);
        }
        if kind == Kind::File
            && let Some(t) = token.and_then(|t| self.tokens.get_mut(&t))
        {
            t.files = t.files.saturating_sub(1);
        }
        self.recharge(ino, false);
        self.touch_dir(dir, &name);
        self.names_changed(ino);
        if last {
            self.forget_if_unused(ino);
        }
        Ok(ino)
    }

    /// The kernel was handed a reference to `ino` (an entry reply). Journal replay at
    /// mount goes through the same operations but hands the kernel nothing.
    pub fn remember(&mut self, ino: Ino) {
        let replaying = self
            .inodes
            .get(&ino)
            .and_then(|i| i.token)
            .and_then(|t| self.tokens.get(&t))
            .is_some_and(|t| t.replaying);
        if self.inodes.contains_key(&ino) && !replaying {
            *self.lookups.entry(ino).or_default() += 1;
        }
    }

    /// Every inode the kernel holds a reference to.
    pub fn remembered(&self) -> Vec<Ino> {
        self.lookups.keys().copied().collect()
    }

    /// Whether the kernel holds a reference to `ino`.
    pub fn is_remembered(&self, ino: Ino) -> bool {
        self.lookups.contains_key(&ino)
    }

    /// The kernel dropped `n` references to `ino`.
    pub fn forget(&mut self, ino: Ino, n: u64) {
        if let Some(count) = self.lookups.get_mut(&ino) {
            *count = count.saturating_sub(n);
            if *count == 0 {
                self.lookups.remove(&ino);
            }
        }
        self.forget_if_unused(ino);
    }

    /// Drop an inode nothing refers to any more: no name, no open handle, no kernel
    /// reference.
    pub fn forget_if_unused(&mut self, ino: Ino) {
        if self.named_in_unloaded_dir(ino) {
            self.forget_found_if_unused(ino);
            return;
        }
        let unused = self
            .inodes
            .get(&ino)
            .is_some_and(|i| i.links.is_empty() && i.open_handles == 0 && ino != ROOT_INO)
            && !self.lookups.contains_key(&ino)
            && !self.is_token_root(ino);
        if !unused {
            return;
        }
        let Some(inode) = self.inodes.remove(&ino) else {
            return;
        };
        let mut gone = Vec::new();
        match &inode.body {
            Body::File(f) => {
                if let Some(s) = &f.session {
                    s.remove(); // never closed: no journal op refers to it
                }
                if let Some(l) = &f.live {
                    l.abandon();
                }
                if let Some(b) = &f.blob {
                    gone.extend(b.objects().into_iter().map(|(c, _, _)| c));
                }
            }
            Body::Dir(d) => {
                match (&d.objects, &d.top) {
                    (Some(objects), _) => gone.extend(objects.iter().map(|(c, _)| c.clone())),
                    (None, Some(cid)) => gone.push(cid.clone()),
                    (None, None) => {}
                }
                self.residency.remove(ino);
                if let Some(t) = inode.token.and_then(|t| self.tokens.get_mut(&t))
                    && d.entries.is_none()
                {
                    t.unloaded_dirs = t.unloaded_dirs.saturating_sub(1);
                }
            }
            Body::Symlink(_) | Body::Special(_) => {}
        }
        if let Some(t) = inode.token.and_then(|t| self.tokens.get_mut(&t)) {
            t.superseded.extend(gone);
            // What it stored no longer counts toward usage (docs/FORMAT.md §7).
            t.ledger.set(ino, None, false);
            t.usage = t.ledger.usage();
        }
    }

    /// Whether `ino` has a name in a directory whose entries are not loaded: it was looked
    /// up alone (`DirBody::found`).
    pub fn named_in_unloaded_dir(&self, ino: Ino) -> bool {
        self.inodes.get(&ino).is_some_and(|i| {
            i.links.iter().any(|(p, _)| {
                self.inodes
                    .get(p)
                    .and_then(|d| d.dir())
                    .is_some_and(|d| d.entries.is_none())
            })
        })
    }

    /// The inode looked up alone as `dir/name`, if any.
    pub fn found_child(&self, dir: Ino, name: &[u8]) -> Option<Ino> {
        let d = self.inodes.get(&dir)?.dir()?;
        d.found.get(name).copied()
    }

    /// Make the inode for `dir/name` from its stored entry while `dir` is not loaded, as
    /// [`Tree::load_dir`] makes one for each entry; it joins `dir`'s `found` and is not
    /// charged (see `DirBody::found`). A subdirectory is made not loaded, whatever it holds.
    pub fn add_found(&mut self, dir: Ino, name: &Name, stored: format::Inode) -> FsResult<Ino> {
        if let Some(ino) = self.found_child(dir, name.as_bytes()) {
            return Ok(ino);
        }
        let (token, snapshot_of) = self.get(dir).map(|d| (d.token, d.snapshot_of))?;
        // (A chunked file is never looked up alone: its table is read with its directory.)
        let (_, mut inode) = stored::inode_read(
            token,
            stored,
            (dir, name.clone()),
            None,
            &Default::default(),
        );
        inode.snapshot_of = snapshot_of;
        let ino = self.alloc(inode);
        match self.get_mut(dir)?.dir_mut() {
            Some(d) if d.entries.is_none() => {
                d.found.insert(name.clone(), ino);
                self.residency.holds_found(dir, true);
                Ok(ino)
            }
            _ => {
                self.inodes.remove(&ino);
                Err(FsError::Journal(
                    "looked up alone in a loaded directory".into(),
                ))
            }
        }
    }

    /// Drop an inode looked up alone once nothing refers to it (no kernel reference, no
    /// open handle, nothing looked up alone inside it): from the tree and from its
    /// directory's `found`, then its directory too if that was looked up alone and is now
    /// unused. Nothing is unpinned or uncharged: what it stores is still in the committed
    /// tree, and counted in the figure of what is not loaded.
    fn forget_found_if_unused(&mut self, ino: Ino) {
        let Some(inode) = self.inodes.get(&ino) else {
            return;
        };
        let holds_found = inode.dir().is_some_and(|d| !d.found.is_empty());
        if inode.open_handles > 0 || self.lookups.contains_key(&ino) || holds_found {
            return;
        }
        let Some(inode) = self.inodes.remove(&ino) else {
            return;
        };
        self.tracked.touched.insert(ino);
        self.residency.remove(ino);
        for (dir, name) in &inode.links {
            if let Some(d) = self.inodes.get_mut(dir).and_then(|i| i.dir_mut())
                && d.found.get(name.as_bytes()) == Some(&ino)
            {
                d.found.remove(name.as_bytes());
                let held = !d.found.is_empty();
                self.residency.holds_found(*dir, held);
            }
        }
        if let Some((dir, _)) = inode.links.first()
            && self.named_in_unloaded_dir(*dir)
        {
            self.forget_found_if_unused(*dir);
        }
    }

    /// Create a new inode of `body` linked as `dir/name`.
    pub fn create(
        &mut self,
        dir: Ino,
        name: &Name,
        meta: Meta,
        body: Body,
        xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> FsResult<Ino> {
        let token = self.token_of(dir)?;
        if self.child(dir, name.as_bytes())?.is_some() {
            return Err(FsError::Exists);
        }
        let unloaded_dir = matches!(&body, Body::Dir(d) if d.entries.is_none());
        let ino = self.alloc(Inode {
            token: Some(token),
            meta,
            xattrs,
            links: Vec::new(),
            body,
            open_handles: 0,
            group: None,
            snapshot_of: None,
        });
        if unloaded_dir && let Ok(t) = self.token_mut(token) {
            t.unloaded_dirs += 1;
        }
        self.link_child(dir, name, ino)?;
        Ok(ino)
    }

    /// rename(2) / renameat2(2) within one token; callers have loaded both directories and
    /// a directory being replaced.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &Name,
        no_replace: bool,
        exchange: bool,
    ) -> FsResult<()> {
        let token = self.token_of(parent)?;
        if self.token_of(new_parent)? != token {
            return Err(FsError::CrossDevice);
        }
        let src = self.child(parent, name)?.ok_or(FsError::NotFound)?;
        // It names an entry, so it is a valid name.
        let name = &check_name(name)?;
        let dst = self.child(new_parent, new_name.as_bytes())?;
        self.check_in_tree(src)?;
        if let Some(d) = dst {
            self.check_in_tree(d)?;
        }
        let src_kind = self.get(src)?.kind();
        // Linux's order: the names first, then the subtree checks.
        match dst {
            None if exchange => return Err(FsError::NotFound),
            Some(_) if no_replace && !exchange => return Err(FsError::Exists),
            _ => {}
        }
        if src_kind == Kind::Dir && self.is_within(new_parent, src) {
            return Err(FsError::Invalid("cannot move a directory into itself"));
        }
        if let Some(d) = dst
            && parent != new_parent
            && self.get(d)?.kind() == Kind::Dir
            && self.is_within(parent, d)
        {
            // The target is an ancestor of the source.
            return Err(if exchange {
                FsError::Invalid("cannot move a directory into itself")
            } else {
                FsError::NotEmpty
            });
        }
        if exchange {
            let dst = dst.ok_or(FsError::NotFound)?;
            if self.get(dst)?.kind() == Kind::Dir && self.is_within(parent, dst) {
                return Err(FsError::Invalid("cannot move a directory into itself"));
            }
            self.move_entry(parent, name, new_parent, new_name, src)?;
            self.move_entry(new_parent, new_name, parent, name, dst)?;
            return Ok(());
        }
        if let Some(dst) = dst {
            if no_replace {
                return Err(FsError::Exists);
            }
            if dst == src {
                return Ok(()); // two names of one inode: rename(2) does nothing
            }
            let dst_inode = self.get(dst)?;
            match (src_kind, dst_inode.kind()) {
                (Kind::Dir, Kind::Dir) if !self.entries(dst)?.is_empty() => {
                    return Err(FsError::NotEmpty);
                }
                (Kind::Dir, Kind::Dir) => {}
                (Kind::Dir, _) => return Err(FsError::NotDir),
                (_, Kind::Dir) => return Err(FsError::IsDir),
                _ => {}
            }
            self.unlink_child(new_parent, new_name.as_bytes())?;
        }
        self.entries_mut(parent)?.remove(name.as_bytes());
        let inode = self.get_mut(src)?;
        if let Some(link) = inode
            .links
            .iter_mut()
            .find(|(p, n)| *p == parent && n == name)
        {
            *link = (new_parent, new_name.clone());
        }
        inode.meta.ctime_ns = crate::fs::model::inode::now_ns();
        if src_kind == Kind::Dir {
            if let Ok(e) = self.entries_mut(parent) {
                e.subdirs = e.subdirs.saturating_sub(1);
            }
            self.entries_mut(new_parent)?.subdirs += 1;
        }
        self.entries_mut(new_parent)?.insert(new_name, src);
        self.touch_dir(parent, name);
        self.touch_dir(new_parent, new_name);
        Ok(())
    }

    /// One half of an exchange: `ino` now sits at `to_dir/to_name` (which the other half
    /// overwrites or already vacated).
    fn move_entry(
        &mut self,
        from_dir: Ino,
        from_name: &Name,
        to_dir: Ino,
        to_name: &Name,
        ino: Ino,
    ) -> FsResult<()> {
        let inode = self.get_mut(ino)?;
        if let Some(link) = inode
            .links
            .iter_mut()
            .find(|(p, n)| *p == from_dir && n == from_name)
        {
            *link = (to_dir, to_name.clone());
        }
        let is_dir = inode.kind() == Kind::Dir;
        self.entries_mut(to_dir)?.insert(to_name, ino);
        if is_dir && from_dir != to_dir {
            if let Ok(e) = self.entries_mut(from_dir) {
                e.subdirs = e.subdirs.saturating_sub(1);
            }
            self.entries_mut(to_dir)?.subdirs += 1;
        }
        self.touch_dir(from_dir, from_name);
        self.touch_dir(to_dir, to_name);
        Ok(())
    }
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

/// A directory whose entries are in memory.
pub(crate) fn loaded_dir(tree: &Tree, ino: Ino) -> bool {
    tree.get(ino)
        .ok()
        .and_then(|i| i.dir())
        .is_some_and(|d| d.entries.is_some())
}
