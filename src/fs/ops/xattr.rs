//! Extended attributes: `user.*` attributes stored in manifests (an sNFT root's in its own
//! root manifest), and the read-only
//! `user.pxfs.*` attributes that show what pxfs knows (CIDs, quota, sync state).

use crate::fs::data::journal::Op;
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Body, Ino};
use crate::fs::model::quota::Change;
use crate::fs::model::tree::Tree;
use crate::fs::{Fs, Step};

/// Linux's limit for one attribute value.
const VALUE_MAX: usize = 64 * 1024;
const NAME_MAX: usize = 255;
pub(crate) const PXFS_PREFIX: &[u8] = b"user.pxfs.";
const TOKEN_ATTRS: [&str; 9] = [
    "quota",
    "usage",
    "committed_usage",
    "last_sync",
    "sync_deadline",
    "btns",
    "root",
    "last_commit",
    "encryption",
];

/// `setxattr` flags.
pub const XATTR_CREATE: i32 = 1;
pub const XATTR_REPLACE: i32 = 2;

impl Fs {
    /// Names are bytes (need not be UTF-8); only `user.*` is stored.
    pub async fn setxattr(
        &self,
        ino: Ino,
        name: impl AsRef<[u8]>,
        value: &[u8],
        flags: i32,
    ) -> FsResult<()> {
        let name = name.as_ref();
        check_name(name)?;
        if name.starts_with(PXFS_PREFIX) {
            return Err(FsError::NotPermitted(
                "user.pxfs.* attributes are read-only",
            ));
        }
        if value.len() > VALUE_MAX {
            return Err(FsError::TooBig);
        }
        self.ensure_holders_loaded(ino).await?;
        let mut guard = self.tree();
        let tree = &mut *guard;
        let token = tree.token_of(ino)?;
        self.allow(tree, token, Change::AddsEntry)?;
        let inode = tree.get_mut(ino)?;
        let exists = inode.xattrs.contains_key(name);
        if flags & XATTR_CREATE != 0 && exists {
            return Err(FsError::Exists);
        }
        if flags & XATTR_REPLACE != 0 && !exists {
            return Err(FsError::NoXattr);
        }
        inode.xattrs.insert(name.to_vec(), value.to_vec());
        inode.meta.ctime_ns = crate::fs::model::inode::now_ns();
        self.xattr_changed(tree, ino, token, || Op::SetXattr {
            path: Vec::new(),
            name: name.to_vec(),
            value: hex::encode(value),
        })?;
        guard.unlock()
    }

    pub async fn removexattr(&self, ino: Ino, name: impl AsRef<[u8]>) -> FsResult<()> {
        let name = name.as_ref();
        check_name(name)?;
        if name.starts_with(PXFS_PREFIX) {
            return Err(FsError::NotPermitted(
                "user.pxfs.* attributes are read-only",
            ));
        }
        self.ensure_holders_loaded(ino).await?;
        let mut guard = self.tree();
        let tree = &mut *guard;
        let token = tree.token_of(ino)?;
        self.allow(tree, token, Change::Shrinks)?;
        let inode = tree.get_mut(ino)?;
        if inode.xattrs.remove(name).is_none() {
            return Err(FsError::NoXattr);
        }
        inode.meta.ctime_ns = crate::fs::model::inode::now_ns();
        self.xattr_changed(tree, ino, token, || Op::RemoveXattr {
            path: Vec::new(),
            name: name.to_vec(),
        })?;
        guard.unlock()
    }

    fn xattr_changed(
        &self,
        tree: &mut Tree,
        ino: Ino,
        token: u64,
        op: impl FnOnce() -> Op,
    ) -> FsResult<()> {
        // An sNFT root's attributes are in its own manifest, any other inode's in its
        // parents'; an unlinked inode's are in none.
        let holders: Vec<Ino> = if tree.is_token_root(ino) {
            vec![ino]
        } else {
            tree.get(ino)?.links.iter().map(|(p, _)| *p).collect()
        };
        if holders.is_empty() {
            return Ok(());
        }
        tree.stored_inode_changed(ino);
        let path = tree.path_of(ino);
        let op = match op() {
            Op::SetXattr { name, value, .. } => Op::SetXattr { path, name, value },
            Op::RemoveXattr { name, .. } => Op::RemoveXattr { path, name },
            other => other,
        };
        self.journal(tree, token, op)
    }

    /// Answered from memory but for an sNFT root not loaded yet. `ls -l` asks for two
    /// attributes of every entry (an SELinux label and an ACL), so these answers, mostly
    /// "none", must be cheap.
    pub fn getxattr(&self, ino: Ino, name: impl AsRef<[u8]>) -> Step<FsResult<Vec<u8>>> {
        let name = name.as_ref();
        {
            let tree = self.tree();
            if !crate::fs::ops::namespace::unloaded_root(&tree, ino) {
                return Step::Ready(get(&tree, ino, name));
            }
        }
        let (fs, name) = (self.clone(), name.to_vec());
        Step::wait(async move {
            fs.ensure_root_loaded(ino).await?;
            let tree = fs.tree();
            get(&tree, ino, &name)
        })
    }

    /// Attribute names, as bytes.
    pub async fn listxattr(&self, ino: Ino) -> FsResult<Vec<Vec<u8>>> {
        self.ensure_root_loaded(ino).await?;
        let tree = self.tree();
        let inode = tree.get(ino)?;
        let mut names: Vec<Vec<u8>> = inode.xattrs.keys().cloned().collect();
        let pxfs = ["cid"].iter().chain(TOKEN_ATTRS.iter());
        for attr in pxfs {
            if pxfs_attr(&tree, ino, attr).is_some() {
                names.push([PXFS_PREFIX, attr.as_bytes()].concat());
            }
        }
        Ok(names)
    }
}

fn get(tree: &Tree, ino: Ino, name: &[u8]) -> FsResult<Vec<u8>> {
    let inode = tree.get(ino)?;
    // Only `user.*` is stored: other namespaces (SELinux labels, POSIX ACLs, trusted.*) are
    // not supported, as on a filesystem mounted without them. `EOPNOTSUPP` (not "no such
    // attribute") lets tools stop asking: `ls -l` then checks one file per filesystem for
    // a label and an ACL, not every one.
    if !name.starts_with(b"user.") {
        return Err(FsError::Unsupported);
    }
    if let Some(attr) = name.strip_prefix(PXFS_PREFIX) {
        let attr = std::str::from_utf8(attr).map_err(|_| FsError::NoXattr)?;
        return pxfs_attr(tree, ino, attr).ok_or(FsError::NoXattr);
    }
    inode.xattrs.get(name).cloned().ok_or(FsError::NoXattr)
}

fn check_name(name: &[u8]) -> FsResult<()> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(FsError::Range);
    }
    if !name.starts_with(b"user.") {
        return Err(FsError::Unsupported);
    }
    Ok(())
}

/// The value of `user.pxfs.<attr>` on `ino`, if it has one.
fn pxfs_attr(tree: &Tree, ino: Ino, attr: &str) -> Option<Vec<u8>> {
    let inode = tree.get(ino).ok()?;
    if attr == "cid" {
        return match &inode.body {
            Body::File(f) if !f.upload_pending && f.session.is_none() => {
                f.blob.as_ref().map(|b| b.cid.clone().into_bytes())
            }
            // A directory as committed (its top object): two equal CIDs, equal trees
            // (`pxfs history` skips what did not change).
            Body::Dir(d) if !d.dirty && !tree.is_token_root(ino) => {
                d.top.clone().map(String::into_bytes)
            }
            _ => None,
        };
    }
    if attr == "usage"
        && let Some(usage) = tree.version_usage(ino)
    {
        // A kept version's own usage, as its writer recorded it (docs/FORMAT.md §14.1).
        return Some(usage.to_string().into_bytes());
    }
    if !tree.is_token_root(ino) {
        return None;
    }
    let t = tree.token(inode.token?).ok()?;
    let value = match attr {
        "quota" => t.info.quota.to_string(),
        "usage" => t.usage.to_string(),
        "committed_usage" => t.committed.usage.to_string(),
        "last_sync" => t.info.last_sync.to_string(),
        "sync_deadline" => t.info.sync_deadline.to_string(),
        "btns" => t.info.btns.clone()?,
        "root" => t.committed.root.clone()?,
        // What this mount's last commit added to the node: seq, objects, bytes.
        "last_commit" => format!(
            "{} {} {}",
            t.committed.seq, t.last_commit_added.objects, t.last_commit_added.bytes
        ),
        // "none", or the scheme and the key id (docs/FORMAT.md §6.4).
        "encryption" => encryption_of(&t.committed.encryption),
        _ => return None,
    };
    Some(value.into_bytes())
}

/// How a tree is stored, as `user.pxfs.encryption` and `pxfs status` show it: "none", or the
/// scheme and the key id (docs/FORMAT.md §6.4).
pub fn encryption_of(e: &crate::format::usage::Encryption) -> String {
    match e {
        crate::format::usage::Encryption::None => "none".to_owned(),
        crate::format::usage::Encryption::Sealed(info) => {
            format!("{} key {}", info.scheme, info.key_id)
        }
    }
}
