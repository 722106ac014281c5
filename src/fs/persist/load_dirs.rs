//! Loading directories on demand: a directory's entries are read from its pages at its
//! first use (a lookup may read only the pages on the path to one name, `namespace`), the
//! directories above it first; a link group met in a directory loads the whole tree (its
//! names must all be known). Loaded directories may be unloaded again
//! (`fs::model::unload`): an operation that needs several takes the tree's lock with all
//! of them loaded ([`Fs::lock_loaded`]).

use crate::fs::Fs;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Entries, Ino, TokenId};

/// How often an operation loads its directories again when they were unloaded meanwhile.
pub(in crate::fs) const RELOAD_ATTEMPTS: usize = 4;

impl Fs {
    /// Make sure directory `dir`'s entries are in memory (fetching its pages).
    pub(crate) async fn ensure_loaded(&self, dir: Ino) -> FsResult<()> {
        let loaded = self.load_one(dir).await?;
        self.trim_tree();
        if let Some(token) = loaded {
            // A link group has names elsewhere: load them all, so its inode has every name
            // (its link count, and an unlink, are then right).
            tracing::info!(
                token,
                "a link group's names are spread over the tree; loading it whole"
            );
            self.load_all(token).await?;
        }
        let incomplete = self.tree().version_incomplete(dir);
        if let Some(version) = incomplete {
            tracing::debug!(
                dir,
                "a kept version's link group has names elsewhere; loading it whole"
            );
            self.load_version(version).await?;
        }
        Ok(())
    }

    /// Load every directory of the kept version whose directory in `.snapshots/` is
    /// `version`.
    async fn load_version(&self, version: Ino) -> FsResult<()> {
        let mut dirs = vec![version];
        while let Some(dir) = dirs.pop() {
            self.load_one(dir).await?;
            let tree = self.tree();
            for (_, child) in tree.entries(dir)?.iter() {
                if tree.get(child).is_ok_and(|i| i.dir().is_some()) {
                    dirs.push(child);
                }
            }
        }
        Ok(())
    }

    /// The tree's lock with every directory of `dirs` loaded. A directory may be unloaded
    /// again between its load and the lock (`fs::model::unload`, while another is loaded):
    /// then they are loaded again.
    pub(crate) async fn lock_loaded(&self, dirs: &[Ino]) -> FsResult<crate::fs::TreeGuard<'_>> {
        for _ in 0..RELOAD_ATTEMPTS {
            for dir in dirs {
                self.ensure_loaded(*dir).await?;
            }
            let guard = self.tree();
            if dirs
                .iter()
                .all(|d| crate::fs::model::tree::loaded_dir(&guard, *d))
            {
                return Ok(guard);
            }
        }
        Err(FsError::Thrashing)
    }

    /// The directories above `dir` that are not loaded (it was looked up alone in them,
    /// `DirBody::found`), the nearest first.
    fn unloaded_ancestors(&self, dir: Ino) -> Vec<Ino> {
        let tree = self.tree();
        let mut chain = Vec::new();
        let mut cur = dir;
        while !tree.is_token_root(cur) {
            let Some((parent, _)) = tree.get(cur).ok().and_then(|i| i.links.first()) else {
                break;
            };
            let parent = *parent;
            if crate::fs::model::tree::loaded_dir(&tree, parent) || chain.contains(&parent) {
                break;
            }
            chain.push(parent);
            cur = parent;
        }
        chain
    }

    /// Load `dir` if it is not loaded; `Some(token)` when its token must be loaded whole.
    /// The directories above it are loaded first: a loaded directory's parent is always
    /// loaded, so whatever changes in it can be written up to the root.
    async fn load_one(&self, dir: Ino) -> FsResult<Option<TokenId>> {
        let mut whole = None;
        for ancestor in self.unloaded_ancestors(dir).into_iter().rev() {
            whole = whole.or(Box::pin(self.load_one(ancestor)).await?);
        }
        let (cid, (token, reader)) = {
            let mut tree = self.tree();
            let inode = tree.get_mut(dir)?;
            let (token, reader) = (inode.token, inode.reads_as());
            let d = inode.dir_mut().ok_or(FsError::NotDir)?;
            if d.entries.is_some() {
                // In use: the last to be unloaded again.
                tree.residency.touch(dir);
                return Ok(whole);
            }
            match &d.top {
                Some(cid) => (cid.clone(), (token, reader)),
                None => {
                    d.entries = Some(Entries::default());
                    return Ok(whole);
                }
            }
        };
        let is_root = self.tree().is_token_root(dir);
        // A kept version's directory (`.snapshots/`) is read with its token's keys.
        let sealing = self.sealing(reader);
        let store = self.store_of(reader);
        let read =
            crate::fs::data::pages::read_dir(&*store, &sealing, &self.inner.pages, &cid, is_root)
                .await;
        // A kept version's link groups (`.snapshots/`), read with its root directory.
        let wanted = self.tree().version_groups_wanted(dir);
        if let Some(top) = &wanted {
            let pages = &self.inner.pages;
            let groups = crate::fs::data::pages::read_groups(&*store, &sealing, pages, top).await?;
            self.tree().set_version_groups(dir, top, groups);
        }
        let mut tree = self.tree();
        let read = match read {
            Ok(r) => r,
            // The node did not answer: try again at the next access.
            Err(FsError::Store(e)) => return Err(FsError::Store(e)),
            Err(e) => {
                tracing::error!(cid, error = %e, "unreadable directory; serving this sNFT read-only");
                if let Some(t) = token.and_then(|t| tree.tokens.get_mut(&t)) {
                    t.read_only = true;
                }
                crate::fs::data::pages::ReadDir {
                    root: None,
                    entries: Vec::new(),
                    objects: crate::fs::data::pages::DirObjects {
                        top: cid.clone(),
                        objects: Vec::new().into(),
                        table: None,
                    },
                    read_only: None,
                    v1: false,
                    empty_dir: None,
                    tables: Default::default(),
                    v3_history: None,
                }
            }
        };
        if let Some(why) = &read.read_only {
            // A commit would drop what this pxfs cannot see: change nothing.
            tracing::error!(cid, reason = %why, "serving this sNFT read-only");
            if let Some(t) = token.and_then(|t| tree.tokens.get_mut(&t)) {
                t.read_only = true;
            }
        }
        let incomplete = tree.load_dir(dir, read)?;
        Ok(whole
            .or(token.filter(|t| incomplete && tree.tokens.get(t).is_some_and(|t| !t.loading_all))))
    }

    /// Load every directory of `token`; returns them (the sNFT root first).
    pub(crate) async fn load_all(&self, token: TokenId) -> FsResult<Vec<Ino>> {
        let root = {
            let mut tree = self.tree();
            let t = tree.token_mut(token)?;
            t.loading_all = true;
            t.root
        };
        let result = async {
            let mut dirs = vec![root];
            let mut all = Vec::new();
            while let Some(dir) = dirs.pop() {
                self.load_one(dir).await?;
                let tree = self.tree();
                for (_, child) in tree.entries(dir)?.iter() {
                    if tree.get(child).is_ok_and(|i| i.dir().is_some()) {
                        dirs.push(child);
                    }
                }
                all.push(dir);
            }
            Ok(all)
        }
        .await;
        if let Ok(t) = self.tree().token_mut(token) {
            t.loading_all = false;
        }
        result
    }
}
