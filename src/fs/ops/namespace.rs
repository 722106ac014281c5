//! Namespace operations: lookup, getattr, setattr, mkdir, mknod, unlink, rmdir, symlink,
//! readlink, link, rename, readdir, statfs. Each validates, asks the quota decision,
//! changes the tree and journals the change, all under one lock.

use crate::format;
use crate::fs::data::journal::Op;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{
    Attr, Body, DirBody, Entries, Ino, Kind, Meta, ROOT_INO, Special, TokenId, now_ns,
};
use crate::fs::model::quota::{self, Change};
use crate::fs::model::tree::{Tree, check_name, check_target, join, loaded_dir};
use crate::fs::persist::load_dirs::RELOAD_ATTEMPTS;
use crate::fs::{DirEntry, DirSink, Fs, SetAttr, StatFs, Step};

/// Entries for [`Fs::readdir`]: one batch.
struct Listing(Vec<DirEntry>);

impl DirSink for Listing {
    fn offer(&mut self, entry: &DirEntry) -> bool {
        if self.0.len() >= READDIR_BATCH {
            return true;
        }
        self.0.push(entry.clone());
        false
    }
}

/// Readdir answers at most this many entries per call; the kernel asks again from the
/// last offset, so a huge directory is never copied whole per call.
const READDIR_BATCH: usize = 512;

impl Fs {
    /// The one gate for changes: read-only, overdue and quota, via [`quota::decide`].
    pub(crate) fn allow(&self, tree: &Tree, token: TokenId, change: Change) -> FsResult<()> {
        let t = tree.token(token)?;
        if t.replaying {
            return Ok(()); // allowed when it was first made
        }
        let mut allowance = t.allowance();
        allowance.read_only |= self.config().read_only;
        quota::decide(allowance, t.usage, change)
    }

    /// How many bytes `token`'s live content may still grow by (see [`quota::room`]).
    pub(crate) fn room(&self, tree: &Tree, token: TokenId) -> FsResult<u64> {
        let t = tree.token(token)?;
        if t.replaying {
            return Ok(u64::MAX);
        }
        let mut allowance = t.allowance();
        allowance.read_only |= self.config().read_only;
        quota::room(allowance, t.usage)
    }

    pub(crate) fn journal(&self, tree: &mut Tree, token: TokenId, op: Op) -> FsResult<()> {
        let t = tree.token_mut(token)?;
        if t.replaying {
            return Ok(());
        }
        let journal = t.journal.clone();
        let seq = journal.append(op);
        tree.journaled.push((journal, seq));
        Ok(())
    }

    pub fn lookup(&self, parent: Ino, name: impl AsRef<[u8]>) -> Step<FsResult<Attr>> {
        let name = name.as_ref();
        if let Some(view) = self.lookup_snapshots(parent, name) {
            return view;
        }
        if let Some(found) = self.lookup_in_memory(parent, name) {
            return Step::Ready(found);
        }
        let (fs, name) = (self.clone(), name.to_vec());
        Step::wait(async move { fs.lookup_loading(parent, &name).await })
    }

    pub(in crate::fs) async fn lookup_loading(&self, parent: Ino, name: &[u8]) -> FsResult<Attr> {
        // The directory may be unloaded again between two holds of the lock (`unload`):
        // then it is loaded again.
        for _ in 0..RELOAD_ATTEMPTS {
            if let Some(found) = self.lookup_in_memory(parent, name) {
                return found;
            }
            if let Some(found) = self.lookup_paged(parent, name).await? {
                return Ok(found);
            }
            self.ensure_loaded(parent).await?;
            let ino = {
                let tree = self.tree();
                if !loaded_dir(&tree, parent) {
                    continue;
                }
                child_or_dot(&tree, parent, name)?
            };
            self.load_root_attrs(ino).await;
            let mut tree = self.tree();
            if let Ok(inode) = tree.get(ino) {
                let attr = inode.attr(ino);
                tree.remember(ino);
                return Ok(attr);
            }
        }
        Err(FsError::Thrashing)
    }

    /// One name of a directory not loaded, from the pages on the path to it alone (see
    /// `DirBody::found`): `None` when the directory must be loaded whole instead (the sNFT
    /// root, a v1 manifest, a name of a link group, an entry of unknown kind, a page that
    /// does not read, or the directory loaded or changed meanwhile).
    async fn lookup_paged(&self, parent: Ino, name: &[u8]) -> FsResult<Option<Attr>> {
        let Ok(name) = check_name(name) else {
            return Ok(None);
        };
        let (top, token) = {
            let tree = self.tree();
            match paged_lookup_top(&tree, parent) {
                Some(found) => found,
                None => return Ok(None),
            }
        };
        let sealing = self.sealing(Some(token));
        let store = self.store_of(Some(token));
        let looked = crate::fs::data::pages::lookup_entry(
            &*store,
            &sealing,
            &self.inner.pages,
            &top,
            name.as_bytes(),
        )
        .await;
        let mut tree = self.tree();
        if paged_lookup_top(&tree, parent).is_none_or(|(t, _)| t != top) {
            return Ok(None); // loaded, unloaded or changed meanwhile: look again
        }
        let stored = match looked {
            // A chunked file's table is read with its directory (`pages::read_dir`).
            Ok(crate::fs::data::pages::Looked::Found(e))
                if crate::fs::data::pages::chunked_content(&e.kind).is_some() =>
            {
                return Ok(None);
            }
            Ok(crate::fs::data::pages::Looked::Found(format::Entry {
                kind: format::EntryKind::Inode(i),
                ..
            })) => i,
            Ok(crate::fs::data::pages::Looked::Absent) => return Err(FsError::NotFound),
            Ok(_) => return Ok(None),
            Err(e @ FsError::Store(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(dir = parent, error = %e, "a name not found through the pages on its path; reading the directory whole");
                return Ok(None);
            }
        };
        let ino = tree.add_found(parent, &name, stored)?;
        let attr = tree.get(ino)?.attr(ino);
        tree.remember(ino);
        tracing::trace!(dir = parent, ino, "looked up alone");
        drop(tree);
        // Names looked up alone count toward `max_loaded_inodes` too.
        self.trim_tree();
        Ok(Some(attr))
    }

    /// [`Fs::lookup`] when all it needs is in memory (the directory is loaded, or the name
    /// was looked up alone before); `None` otherwise. FUSE answers most lookups this way,
    /// on its own thread.
    fn lookup_in_memory(&self, parent: Ino, name: &[u8]) -> Option<FsResult<Attr>> {
        if name.len() > crate::fs::NAME_MAX {
            return Some(Err(FsError::NameTooLong));
        }
        let mut tree = self.tree();
        if let Some(ino) = tree.found_child(parent, name) {
            let attr = tree.get(ino).map(|i| i.attr(ino));
            if attr.is_ok() {
                tree.remember(ino);
            }
            return Some(attr);
        }
        if !loaded_dir(&tree, parent) {
            return None;
        }
        tree.residency.touch(parent);
        let ino = match child_or_dot(&tree, parent, name) {
            Ok(ino) => ino,
            Err(e) => return Some(Err(e)),
        };
        if unloaded_root(&tree, ino) {
            return None;
        }
        let attr = tree.get(ino).map(|i| i.attr(ino));
        if attr.is_ok() {
            tree.remember(ino);
        }
        Some(attr)
    }

    /// [`Fs::getattr`] from memory; `None` for an sNFT root not loaded yet.
    fn getattr_in_memory(&self, ino: Ino) -> Option<FsResult<Attr>> {
        let tree = self.tree();
        if unloaded_root(&tree, ino) {
            return None;
        }
        Some(tree.get(ino).map(|i| i.attr(ino)))
    }

    /// The kernel dropped `n` references to `ino` (FUSE `forget`); every call that
    /// returns an entry (lookup, create, mkdir, symlink, link, readdirplus) took one.
    pub fn forget(&self, ino: Ino, n: u64) {
        self.tree().forget(ino, n);
    }

    pub fn getattr(&self, ino: Ino) -> Step<FsResult<Attr>> {
        if let Some(attr) = self.getattr_in_memory(ino) {
            return Step::Ready(attr);
        }
        let fs = self.clone();
        Step::wait(async move {
            fs.load_root_attrs(ino).await;
            Ok(fs.tree().get(ino)?.attr(ino))
        })
    }

    /// An sNFT root's own attributes are in its root manifest: load it before reporting
    /// them. If the node cannot be reached the defaults are shown (a stat of the mount
    /// point must not fail); changes load it with [`Fs::ensure_root_loaded`] instead.
    async fn load_root_attrs(&self, ino: Ino) {
        if let Err(e) = self.ensure_root_loaded(ino).await {
            tracing::warn!(ino, error = %e, "sNFT root manifest not loaded; showing default attributes");
        }
    }

    /// Load `ino`'s manifest if it is an sNFT root not loaded yet, so a change to its own
    /// attributes is made on top of the stored ones (and not overwritten by a later load).
    pub(crate) async fn ensure_root_loaded(&self, ino: Ino) -> FsResult<()> {
        let unloaded = unloaded_root(&self.tree(), ino);
        if unloaded {
            self.ensure_loaded(ino).await?;
        }
        Ok(())
    }

    /// Before `ino` itself changes (attributes, xattrs, content, names): load what stores
    /// it, i.e. its directories when it was looked up alone in them (`DirBody::found`;
    /// the load keeps its number), or its own root node for an sNFT root. A change is then
    /// written into its directory's pages and up to the root like any other.
    pub(crate) async fn ensure_holders_loaded(&self, ino: Ino) -> FsResult<()> {
        self.ensure_root_loaded(ino).await?;
        for _ in 0..RELOAD_ATTEMPTS {
            let holders: Vec<Ino> = {
                let tree = self.tree();
                let Ok(inode) = tree.get(ino) else {
                    return Ok(());
                };
                inode
                    .links
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|p| !loaded_dir(&tree, *p))
                    .collect()
            };
            if holders.is_empty() {
                return Ok(());
            }
            for dir in holders {
                self.ensure_loaded(dir).await?;
            }
        }
        Err(FsError::Thrashing)
    }

    /// Changes of mode, owner or times are answered from memory (`chmod`, `chown`,
    /// `utimensat`: memory and one journal line); a size change, or an sNFT root not loaded
    /// yet, waits.
    pub fn setattr(&self, ino: Ino, set: SetAttr) -> Step<FsResult<Attr>> {
        if let Some(done) = self.setattr_in_memory(ino, set) {
            return Step::Ready(done);
        }
        let fs = self.clone();
        Step::wait(async move { fs.setattr_loading(ino, set).await })
    }

    async fn setattr_loading(&self, ino: Ino, set: SetAttr) -> FsResult<Attr> {
        self.ensure_holders_loaded(ino).await?;
        if let Some(size) = set.size {
            self.truncate(ino, size, set.fh).await?;
        }
        let mut tree = self.tree();
        let attr = self.set_meta(&mut tree, ino, set);
        tree.unlock().and(attr)
    }

    fn setattr_in_memory(&self, ino: Ino, set: SetAttr) -> Option<FsResult<Attr>> {
        let mut tree = self.tree();
        if set.size.is_some() || unloaded_holder(&tree, ino) {
            return None;
        }
        let attr = self.set_meta(&mut tree, ino, set);
        Some(tree.unlock().and(attr))
    }

    fn set_meta(&self, tree: &mut Tree, ino: Ino, set: SetAttr) -> FsResult<Attr> {
        let token = tree.token_of(ino)?;
        let changes_meta = set.mode.is_some()
            || set.uid.is_some()
            || set.gid.is_some()
            || set.atime.is_some()
            || set.mtime.is_some();
        if !changes_meta {
            return Ok(tree.get(ino)?.attr(ino));
        }
        self.allow(tree, token, Change::Shrinks)?;
        let inode = tree.get_mut(ino)?;
        if let Some(mode) = set.mode {
            inode.meta.mode = mode & 0o7777;
        }
        if let Some(uid) = set.uid {
            inode.meta.uid = uid;
        }
        if let Some(gid) = set.gid {
            inode.meta.gid = gid;
        }
        if let Some(t) = set.atime {
            inode.meta.atime_ns = t.ns();
        }
        if let Some(t) = set.mtime {
            inode.meta.mtime_ns = t.ns();
        }
        inode.meta.ctime_ns = now_ns();
        let attr = inode.attr(ino);
        let parents: Vec<Ino> = inode.links.iter().map(|(p, _)| *p).collect();
        // atime alone is not stored in manifests: nothing to commit or journal.
        let persistent = set.mode.is_some() || set.uid.is_some() || set.gid.is_some();
        // An sNFT root's attributes are in its own manifest, any other inode's in its
        // parents'; an unlinked inode's are in none.
        let holders = if tree.is_token_root(ino) {
            vec![ino]
        } else {
            parents
        };
        if (persistent || set.mtime.is_some()) && !holders.is_empty() {
            tree.stored_inode_changed(ino);
            let path = tree.path_of(ino);
            self.journal(
                tree,
                token,
                Op::Setattr {
                    path,
                    mode: set.mode.map(|m| m & 0o7777),
                    uid: set.uid,
                    gid: set.gid,
                    mtime_ns: set.mtime.map(|_| attr.meta.mtime_ns),
                },
            )?;
        }
        Ok(attr)
    }

    /// The symlink's target, byte for byte as it was created.
    pub async fn readlink(&self, ino: Ino) -> FsResult<Vec<u8>> {
        match &self.tree().get(ino)?.body {
            Body::Symlink(t) => Ok(t.as_bytes().to_vec()),
            _ => Err(FsError::Invalid("not a symlink")),
        }
    }

    pub async fn mkdir(
        &self,
        parent: Ino,
        name: impl AsRef<[u8]>,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attr> {
        let name = check_name(name.as_ref())?;
        let mut guard = self.lock_loaded(&[parent]).await?;
        let tree = &mut *guard;
        tree.check_new_name(parent, &name)?;
        let token = tree.token_of(parent)?;
        self.allow(tree, token, Change::AddsEntry)?;
        let meta = Meta::new(mode, uid, gid);
        let body = Body::Dir(DirBody {
            entries: Some(Entries::default()),
            ..Default::default()
        });
        let ino = tree.create(parent, &name, meta, body, Default::default())?;
        tree.mark_dirty(ino); // a new directory needs its own (empty) manifest
        let path = tree.path_of(ino);
        self.journal(
            tree,
            token,
            Op::Mkdir {
                path,
                mode: meta.mode,
                uid,
                gid,
                mtime_ns: meta.mtime_ns,
            },
        )?;
        tree.remember(ino);
        let attr = tree.get(ino)?.attr(ino);
        guard.unlock()?;
        Ok(attr)
    }

    pub async fn symlink(
        &self,
        parent: Ino,
        name: impl AsRef<[u8]>,
        target: impl AsRef<[u8]>,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attr> {
        let name = check_name(name.as_ref())?;
        let target = check_target(target.as_ref())?;
        let mut guard = self.lock_loaded(&[parent]).await?;
        let tree = &mut *guard;
        tree.check_new_name(parent, &name)?;
        let token = tree.token_of(parent)?;
        self.allow(tree, token, Change::AddsEntry)?;
        let meta = Meta::new(0o777, uid, gid);
        let target_bytes = target.as_bytes().to_vec();
        let body = Body::Symlink(target);
        let ino = tree.create(parent, &name, meta, body, Default::default())?;
        let path = tree.path_of(ino);
        self.journal(
            tree,
            token,
            Op::Symlink {
                path,
                target: target_bytes,
                uid,
                gid,
                mtime_ns: meta.mtime_ns,
            },
        )?;
        tree.remember(ino);
        let attr = tree.get(ino)?.attr(ino);
        guard.unlock()?;
        Ok(attr)
    }

    /// mknod(2): a FIFO, socket or device node (`rdev`), or an empty regular file.
    /// Special files are stored as manifest entries with no content: they add a name,
    /// like `create`, and no bytes.
    #[allow(clippy::too_many_arguments)]
    pub async fn mknod(
        &self,
        parent: Ino,
        name: impl AsRef<[u8]>,
        kind: Kind,
        mode: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> FsResult<Attr> {
        let name = name.as_ref();
        if kind == Kind::File {
            let (attr, fh) = self
                .create(parent, name, mode, libc::O_EXCL, uid, gid)
                .await?;
            self.release(fh).await?;
            return Ok(attr);
        }
        if !kind.is_special() {
            return Err(FsError::Invalid("mknod of a directory or symlink"));
        }
        let name = check_name(name)?;
        let mut guard = self.lock_loaded(&[parent]).await?;
        let tree = &mut *guard;
        tree.check_new_name(parent, &name)?;
        let token = tree.token_of(parent)?;
        self.allow(tree, token, Change::AddsEntry)?;
        let meta = Meta::new(mode, uid, gid);
        let rdev = if matches!(kind, Kind::CharDev | Kind::BlockDev) {
            rdev
        } else {
            0
        };
        let body = Body::Special(Special { kind, rdev });
        let ino = tree.create(parent, &name, meta, body, Default::default())?;
        let path = tree.path_of(ino);
        self.journal(
            tree,
            token,
            Op::Mknod {
                path,
                kind: kind.into(),
                mode: meta.mode,
                rdev,
                uid,
                gid,
                mtime_ns: meta.mtime_ns,
            },
        )?;
        let attr = tree.get(ino)?.attr(ino);
        guard.unlock()?;
        Ok(attr)
    }

    pub async fn unlink(&self, parent: Ino, name: impl AsRef<[u8]>) -> FsResult<()> {
        let name = name.as_ref();
        let mut guard = self.lock_loaded(&[parent]).await?;
        let tree = &mut *guard;
        tree.check_not_view(parent, name)?;
        let token = tree.token_of(parent)?;
        let ino = tree.child(parent, name)?.ok_or(FsError::NotFound)?;
        if tree.get(ino)?.kind() == Kind::Dir {
            return Err(FsError::IsDir);
        }
        self.allow(tree, token, Change::Shrinks)?;
        // The name removed, which for a file with hard links need not be its first.
        let path = join(&tree.path_of(parent), name);
        tree.unlink_child(parent, name)?;
        self.journal(tree, token, Op::Unlink { path })?;
        guard.unlock()
    }

    pub async fn rmdir(&self, parent: Ino, name: impl AsRef<[u8]>) -> FsResult<()> {
        let name = name.as_ref();
        match name {
            b"." => return Err(FsError::Invalid("rmdir .")),
            b".." => return Err(FsError::NotEmpty),
            _ => {}
        }
        let ino = {
            let tree = self.lock_loaded(&[parent]).await?;
            tree.check_not_view(parent, name)?;
            let ino = tree.child(parent, name)?.ok_or(FsError::NotFound)?;
            tree.check_in_tree(ino)?;
            if tree.get(ino)?.kind() != Kind::Dir {
                return Err(FsError::NotDir);
            }
            ino
        };
        let mut guard = self.lock_loaded(&[parent, ino]).await?;
        let tree = &mut *guard;
        let token = tree.token_of(parent)?;
        if tree.child(parent, name)? != Some(ino) {
            return Err(FsError::NotFound); // replaced while we loaded it
        }
        if !tree.entries(ino)?.is_empty() {
            return Err(FsError::NotEmpty);
        }
        self.allow(tree, token, Change::Shrinks)?;
        let path = tree.path_of(ino);
        tree.unlink_child(parent, name)?;
        self.journal(tree, token, Op::Rmdir { path })?;
        guard.unlock()
    }

    /// A hard link: both names share one inode (content, attributes) while mounted.
    pub async fn link(
        &self,
        ino: Ino,
        new_parent: Ino,
        new_name: impl AsRef<[u8]>,
    ) -> FsResult<Attr> {
        let new_name = check_name(new_name.as_ref())?;
        self.ensure_holders_loaded(ino).await?;
        let mut guard = self.lock_loaded(&[new_parent]).await?;
        let tree = &mut *guard;
        tree.check_new_name(new_parent, &new_name)?;
        let token = tree.token_of(new_parent)?;
        // An existing name first, as link(2) checks it before looking at the source.
        if tree.child(new_parent, new_name.as_bytes())?.is_some() {
            return Err(FsError::Exists);
        }
        let inode = tree.get(ino)?;
        if inode.kind() == Kind::Dir {
            return Err(FsError::NotPermitted("hard links to directories"));
        }
        if inode.token != Some(token) {
            return Err(FsError::CrossDevice);
        }
        if inode.links.is_empty() {
            return Err(FsError::NotFound);
        }
        self.allow(tree, token, Change::AddsEntry)?;
        let from = tree.path_of(ino);
        tree.link_child(new_parent, &new_name, ino)?;
        tree.get_mut(ino)?.meta.ctime_ns = now_ns();
        let to = join(&tree.path_of(new_parent), new_name.as_bytes());
        self.journal(tree, token, Op::Link { from, to })?;
        tree.remember(ino);
        let attr = tree.get(ino)?.attr(ino);
        guard.unlock()?;
        Ok(attr)
    }

    /// rename(2)/renameat2(2): `no_replace` is `RENAME_NOREPLACE`, `exchange` is
    /// `RENAME_EXCHANGE`.
    pub async fn rename(
        &self,
        parent: Ino,
        name: impl AsRef<[u8]>,
        new_parent: Ino,
        new_name: impl AsRef<[u8]>,
        no_replace: bool,
        exchange: bool,
    ) -> FsResult<()> {
        let name = name.as_ref();
        let new_name = check_name(new_name.as_ref())?;
        // A directory about to be replaced must be loaded to know it is empty.
        let target = {
            let tree = self.lock_loaded(&[parent, new_parent]).await?;
            match tree.child(new_parent, new_name.as_bytes())? {
                Some(t) if tree.get(t)?.kind() == Kind::Dir => Some(t),
                _ => None,
            }
        };
        let dirs: Vec<Ino> = [parent, new_parent].into_iter().chain(target).collect();
        let mut guard = self.lock_loaded(&dirs).await?;
        let tree = &mut *guard;
        tree.check_not_view(parent, name)?;
        tree.check_new_name(new_parent, &new_name)?;
        let token = tree.token_of(parent)?;
        if tree.token_of(new_parent)? != token {
            return Err(FsError::CrossDevice);
        }
        self.allow(tree, token, Change::AddsEntry)?;
        let src = tree.child(parent, name)?.ok_or(FsError::NotFound)?;
        if !no_replace && tree.child(new_parent, new_name.as_bytes())? == Some(src) {
            // Two names of one file: rename(2) does nothing, so nothing is journaled (a
            // replay over a tree where they are two files would lose one).
            return Ok(());
        }
        // The name moved, which for a file with hard links need not be its first.
        let from = join(&tree.path_of(parent), name);
        let to = join(&tree.path_of(new_parent), new_name.as_bytes());
        tree.rename(parent, name, new_parent, &new_name, no_replace, exchange)?;
        self.journal(tree, token, Op::Rename { from, to, exchange })?;
        guard.unlock()
    }

    /// Entries after `offset` (0 = from the start), `.` and `..` included.
    pub async fn readdir(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        self.list_dir(ino, offset, false).await
    }

    /// [`Fs::readdir`] where every entry but `.` and `..` counts as a lookup (FUSE
    /// readdirplus); the caller forgets those it could not pass on.
    pub async fn readdirplus(&self, ino: Ino, offset: u64) -> FsResult<Vec<DirEntry>> {
        self.list_dir(ino, offset, true).await
    }

    async fn list_dir(&self, ino: Ino, offset: u64, plus: bool) -> FsResult<Vec<DirEntry>> {
        let (out, done) = self.fill_dir(ino, offset, plus, Listing(Vec::new())).await;
        done.map(|()| out.0)
    }

    /// Hands `ino`'s entries after `offset` (a readdir cookie) to `add`, in order, until
    /// it answers "full" (that entry is not taken). With `plus`, each entry taken gets a
    /// lookup reference, as the kernel keeps one per readdirplus entry. Only what fits in
    /// the kernel's buffer is built.
    pub fn fill_dir<S: DirSink>(
        &self,
        ino: Ino,
        offset: u64,
        plus: bool,
        mut sink: S,
    ) -> Step<(S, FsResult<()>)> {
        if let Some(done) = self.fill_dir_in_memory(ino, offset, plus, &mut |e| sink.offer(e)) {
            return Step::Ready((sink, done));
        }
        let fs = self.clone();
        Step::wait(async move {
            let done = fs
                .fill_dir_loading(ino, offset, plus, &mut |e| sink.offer(e))
                .await;
            (sink, done)
        })
    }

    async fn fill_dir_loading(
        &self,
        ino: Ino,
        offset: u64,
        plus: bool,
        add: &mut (dyn FnMut(&DirEntry) -> bool + Send),
    ) -> FsResult<()> {
        for _ in 0..RELOAD_ATTEMPTS {
            self.ensure_loaded(ino).await?;
            if ino == ROOT_INO && !self.config().single_token {
                // The sNFT directories listed carry their attributes (readdirplus).
                let roots: Vec<Ino> = self.tree().tokens.values().map(|t| t.root).collect();
                for root in roots {
                    self.load_root_attrs(root).await;
                }
            }
            let mut tree = self.tree();
            // Unloaded again meanwhile (`unload`): load it again.
            if loaded_dir(&tree, ino) {
                return fill(&mut tree, ino, offset, plus, add);
            }
        }
        Err(FsError::Thrashing)
    }

    /// [`Fs::fill_dir`] from memory; `None` when the directory (or, for the multi-token
    /// root, an sNFT directory's own attributes) is not loaded yet.
    fn fill_dir_in_memory(
        &self,
        ino: Ino,
        offset: u64,
        plus: bool,
        add: &mut (dyn FnMut(&DirEntry) -> bool + Send),
    ) -> Option<FsResult<()>> {
        let mut tree = self.tree();
        let roots_unloaded = ino == ROOT_INO
            && !self.config().single_token
            && tree.tokens.values().any(|t| unloaded_root(&tree, t.root));
        if !loaded_dir(&tree, ino) || roots_unloaded {
            return None;
        }
        Some(fill(&mut tree, ino, offset, plus, add))
    }

    /// An sNFT directory reports its token; the multi-token root the sum over tokens.
    pub async fn statfs(&self, ino: Ino) -> FsResult<StatFs> {
        const BSIZE: u64 = 4096;
        let tree = self.tree();
        let tokens: Vec<_> = match tree.get(ino)?.reads_as() {
            Some(t) => vec![tree.token(t)?],
            None => tree.tokens.values().collect(),
        };
        let (mut blocks, mut bfree, mut bavail, mut files) = (0, 0, 0, 0);
        for t in tokens {
            let b = t.info.quota / BSIZE;
            // PX.sol counts on-chain usage that deletes do not lower.
            let used = t.usage.max(t.chain_gate.floor);
            let free = t.info.quota.saturating_sub(used) / BSIZE;
            blocks += b;
            bfree += free;
            if !t.info.overdue
                && !t.chain_gate.no_bandwidth
                && !t.read_only
                && !self.config().read_only
            {
                bavail += free;
            }
            files += t.files;
        }
        Ok(StatFs {
            blocks,
            bfree,
            bavail,
            files,
            ffree: u32::MAX as u64,
            bsize: BSIZE as u32,
            namelen: crate::fs::NAME_MAX as u32,
        })
    }
}

/// See [`Fs::fill_dir`]; the directory is loaded.
fn fill(
    tree: &mut Tree,
    ino: Ino,
    offset: u64,
    plus: bool,
    add: &mut (dyn FnMut(&DirEntry) -> bool + Send),
) -> FsResult<()> {
    let parent = tree.get(ino)?.links.first().map(|(p, _)| *p).unwrap_or(ino);
    tree.residency.touch(ino);
    if offset < 1 && add(&dot(tree, ino, 1, b".")?) {
        return Ok(());
    }
    if offset < 2 && add(&dot(tree, parent, 2, b"..")?) {
        return Ok(());
    }
    let mut taken = Vec::new();
    for (cookie, name, child) in tree.entries(ino)?.after(offset.max(2)) {
        let inode = tree.get(child)?;
        let entry = DirEntry {
            ino: child,
            offset: cookie,
            kind: inode.kind(),
            name: name.as_bytes().to_vec(),
            attr: inode.attr(child),
        };
        if add(&entry) {
            break;
        }
        taken.push(child);
    }
    if plus {
        for child in taken {
            tree.remember(child);
        }
    }
    Ok(())
}

fn dot(tree: &Tree, ino: Ino, offset: u64, name: &[u8]) -> FsResult<DirEntry> {
    Ok(DirEntry {
        ino,
        offset,
        kind: Kind::Dir,
        name: name.to_vec(),
        attr: tree.get(ino)?.attr(ino),
    })
}

/// `parent`'s entry `name`, `.` and `..` included (the directory must be loaded).
fn child_or_dot(tree: &Tree, parent: Ino, name: &[u8]) -> FsResult<Ino> {
    match name {
        b"." => Ok(parent),
        b".." => Ok(tree
            .get(parent)?
            .links
            .first()
            .map(|(p, _)| *p)
            .unwrap_or(ROOT_INO)),
        _ => tree.child(parent, name)?.ok_or(FsError::NotFound),
    }
}

/// Whether what stores `ino` is not loaded: it is an sNFT root not loaded yet, or was
/// looked up alone in a directory not loaded (see [`Fs::ensure_holders_loaded`]).
pub(crate) fn unloaded_holder(tree: &Tree, ino: Ino) -> bool {
    unloaded_root(tree, ino) || tree.named_in_unloaded_dir(ino)
}

/// The top page's CID of `dir`'s table and its token, when a name of `dir` can be looked
/// up through the pages on its path alone: a committed directory, not loaded, not an sNFT
/// root (whose root node holds its attributes and the link groups: it is read whole), of a
/// token not replaying its journal (replay resolves paths by loading) nor stored in v1.
fn paged_lookup_top(tree: &Tree, dir: Ino) -> Option<(String, TokenId)> {
    let inode = tree.get(dir).ok()?;
    let d = inode.dir()?;
    if d.entries.is_some() || tree.is_token_root(dir) {
        return None;
    }
    let token = inode.reads_as()?; // a kept version's directory is read as its token's
    let t = tree.tokens.get(&token)?;
    if t.replaying || t.v1_tree {
        return None;
    }
    Some((d.top.clone()?, token))
}

/// An sNFT root whose manifest (and so its own attributes) is not loaded yet.
pub(crate) fn unloaded_root(tree: &Tree, ino: Ino) -> bool {
    tree.is_token_root(ino)
        && tree
            .get(ino)
            .ok()
            .and_then(|i| i.dir())
            .is_some_and(|d| d.entries.is_none())
}
