//! `px-dapp/`: the files PollinationX's dApp lists for an sNFT (`crate::dapp`), shown
//! read-only in the sNFT's directory.
//!
//! Its inodes belong to no token (`token: None`), which keeps them out of everything a
//! token owns: every change is refused (`Tree::token_of` answers EROFS), nothing is
//! journaled, charged to usage (`Tree::recharge`) or written into a manifest (commit skips
//! them). Files read their content from the node by CID like any committed file. A real
//! entry named `px-dapp` in the tree wins.

use crate::dapp::{DappEntry, DappIndex, DappKind};
use crate::format::Name;
use crate::format::name::escape;
use crate::fs::Fs;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{
    Body, DirBody, Entries, FileBody, Ino, Inode, Meta, TokenId, now_ns,
};
use crate::fs::model::tree::Tree;
use crate::fs::store::Blob;

/// The directory's name in an sNFT's root.
pub const DAPP_DIR: &str = "px-dapp";
/// Why a change under it is refused.
pub const READ_ONLY: &str = "px-dapp shows the dApp's files and is read-only";

impl Tree {
    /// Refuse a change to `ino` when it is one of `px-dapp/`'s (EROFS).
    pub fn check_in_tree(&self, ino: Ino) -> FsResult<()> {
        match self.get(ino)?.token {
            Some(_) => Ok(()),
            None => Err(FsError::ReadOnly(READ_ONLY)),
        }
    }

    /// Take `token`'s `px-dapp/` out of its root; inodes the kernel or an open file still
    /// refers to live on, nameless, until it lets go.
    fn detach_dapp(&mut self, token: TokenId) {
        let Some(dir) = self.dapp_dirs.remove(&token) else {
            return;
        };
        if let Some(root) = self.tokens.get(&token).map(|t| t.root)
            && let Ok(Some(e)) = self
                .get_mut(root)
                .map(|r| r.dir_mut().and_then(|d| d.entries.as_mut()))
            && e.get(DAPP_DIR.as_bytes()) == Some(dir)
        {
            e.remove(DAPP_DIR.as_bytes());
            e.subdirs = e.subdirs.saturating_sub(1);
        }
        let mut stack = vec![dir];
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
            self.forget_if_unused(ino);
        }
    }

    /// A directory of `entries` linked as `parent/name` (not yet in `parent`'s entries).
    fn build_dapp_dir(
        &mut self,
        parent: Ino,
        name: &Name,
        entries: &[DappEntry],
        owner: (u32, u32),
        mtime_ns: i64,
    ) -> Ino {
        let meta = |mode, mtime_ns| Meta {
            mode,
            uid: owner.0,
            gid: owner.1,
            atime_ns: mtime_ns,
            mtime_ns,
            ctime_ns: mtime_ns,
        };
        let dir = self.alloc(Inode {
            token: None,
            meta: meta(0o555, mtime_ns),
            xattrs: Default::default(),
            links: vec![(parent, name.clone())],
            body: Body::Dir(DirBody::default()),
            open_handles: 0,
            group: None,
            snapshot_of: None,
        });
        let mut listed = Entries::default();
        for e in entries {
            let Ok(name) = Name::new(e.name.as_bytes()) else {
                tracing::warn!(name = %escape(e.name.as_bytes()), "dApp index entry with a name Linux cannot hold; not shown");
                continue;
            };
            let mtime = e.mtime_ns.unwrap_or(mtime_ns);
            let child = match &e.kind {
                DappKind::File { cid, size } => self.alloc(Inode {
                    token: None,
                    meta: meta(0o444, mtime),
                    xattrs: Default::default(),
                    links: vec![(dir, name.clone())],
                    body: Body::File(FileBody {
                        size: *size,
                        blob: Some(Blob::plain(cid.clone(), *size)),
                        ..Default::default()
                    }),
                    open_handles: 0,
                    group: None,
                    snapshot_of: None,
                }),
                DappKind::Folder(children) => {
                    listed.subdirs += 1;
                    self.build_dapp_dir(dir, &name, children, owner, mtime)
                }
            };
            listed.insert(&name, child);
        }
        if let Some(d) = self.inodes.get_mut(&dir).and_then(|i| i.dir_mut()) {
            d.entries = Some(listed);
        }
        dir
    }
}

impl Fs {
    /// Show `index` as `px-dapp/` in `token`'s directory, replacing what was shown there;
    /// `None` hides it. Loads the sNFT's root first (a real `px-dapp` there wins). Returns
    /// the sNFT's root, where the kernel's cached `px-dapp` entry is now stale.
    pub async fn set_dapp_index(&self, token: TokenId, index: Option<&DappIndex>) -> FsResult<Ino> {
        let root = self.tree().token(token)?.root;
        if index.is_some() {
            self.ensure_loaded(root).await?;
        }
        let mut guard = self.tree();
        let tree = &mut *guard;
        tree.detach_dapp(token);
        let Some(index) = index else {
            return Ok(root);
        };
        if tree.token(token)?.root != root {
            return Err(FsError::NotFound); // the token went away meanwhile
        }
        if tree.child(root, DAPP_DIR.as_bytes())?.is_some() {
            tracing::warn!(
                token,
                "the sNFT has an entry named {DAPP_DIR} of its own: it is shown, the dApp's files are not"
            );
            return Ok(root);
        }
        let owner = tree.get(root).map(|r| (r.meta.uid, r.meta.gid))?;
        let name = Name::new(DAPP_DIR).map_err(|_| FsError::Invalid("px-dapp name"))?;
        let dir = tree.build_dapp_dir(root, &name, &index.entries, owner, now_ns());
        if let Some(e) = tree
            .get_mut(root)?
            .dir_mut()
            .and_then(|d| d.entries.as_mut())
        {
            e.insert(&name, dir);
            e.subdirs += 1;
        }
        tree.dapp_dirs.insert(token, dir);
        Ok(root)
    }

    /// Whether `token`'s `px-dapp/` is shown.
    pub fn dapp_shown(&self, token: TokenId) -> bool {
        self.tree().dapp_dirs.contains_key(&token)
    }
}
