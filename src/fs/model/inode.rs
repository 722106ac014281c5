//! Inodes: what the tree knows about each file, directory, symlink and special file
//! (FIFO, socket, device node) while mounted.
//! Inode numbers are stable for the life of the mount; the mount root is 1.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::format::{Name, Target};
use crate::fs::data::staged::StagedFile;
use crate::fs::store::Blob;

pub type Ino = u64;
pub use crate::format::TokenId;

/// The mount root: the list of sNFTs, or the one sNFT's root with `--token ID`.
pub const ROOT_INO: Ino = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

impl Kind {
    /// FIFOs, sockets and device nodes: names with attributes and no content (the kernel
    /// serves opening them; they use no quota).
    pub fn is_special(self) -> bool {
        matches!(
            self,
            Kind::Fifo | Kind::Socket | Kind::CharDev | Kind::BlockDev
        )
    }
}

/// Ownership, permissions and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub atime_ns: i64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl Meta {
    pub fn new(mode: u32, uid: u32, gid: u32) -> Meta {
        let now = now_ns();
        Meta {
            mode: mode & 0o7777,
            uid,
            gid,
            atime_ns: now,
            mtime_ns: now,
            ctime_ns: now,
        }
    }
}

/// Attributes as reported to `stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    pub size: u64,
    pub nlink: u32,
    pub meta: Meta,
    /// Device number of a device node (Linux's 32-bit `dev_t` encoding), else 0.
    pub rdev: u32,
    /// Bytes of data the file holds (`st_blocks` × 512): a chunked version counts its
    /// stored chunks, so a sparse file shows as sparse (`cp --sparse=auto`, `du`); a
    /// version not uploaded yet counts its size.
    pub allocated: u64,
}

#[derive(Debug)]
pub struct Inode {
    /// `None` only for the mount root listing several sNFTs.
    pub token: Option<TokenId>,
    pub meta: Meta,
    /// Extended attributes by name (bytes: names need not be UTF-8).
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// Every (directory, name) this inode is linked under; empty for roots and for
    /// unlinked files still held open.
    pub links: Vec<(Ino, Name)>,
    pub body: Body,
    /// Open file handles; an unlinked inode lives until the last one closes.
    pub open_handles: u32,
    /// The link group (docs/FORMAT.md §4.4) a non-directory with two or more names is
    /// stored as; given at the commit that first stores it with two names.
    pub group: Option<u64>,
    /// Set on the inodes of `.snapshots/` (`fs::model::snapshots`): a kept version of this
    /// token's tree, read with its keys. Such an inode belongs to no token (`token: None`),
    /// so every change is refused and nothing is charged, journaled or committed.
    pub snapshot_of: Option<TokenId>,
}

#[derive(Debug)]
pub enum Body {
    File(FileBody),
    Dir(DirBody),
    Symlink(Target),
    Special(Special),
}

/// A FIFO, socket or device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Special {
    /// One of the kinds for which [`Kind::is_special`] holds.
    pub kind: Kind,
    pub rdev: u32,
}

/// A regular file's content: the versions it may be read from, newest first:
/// the open write session, the last closed version staged locally, the node's copy.
#[derive(Debug, Default)]
pub struct FileBody {
    /// Size as seen by `stat` (of the newest version).
    pub size: u64,
    /// The node's copy of the last closed version (stale while `upload_pending`).
    pub blob: Option<Blob>,
    /// The last closed version, kept on local disk until a commit covers it.
    pub staged: Option<Arc<StagedFile>>,
    /// `staged` is not on the node yet.
    pub upload_pending: bool,
    /// Bumped at each close; an upload result for an older version is discarded.
    pub version: u64,
    /// The current open-for-write session.
    pub session: Option<Arc<StagedFile>>,
    /// The session's upload while it is written (sessions that start empty).
    pub live: Option<Arc<crate::fs::data::live::LiveUpload>>,
    /// Handles open for writing.
    pub writers: u32,
}

impl FileBody {
    /// Set the open session's length (truncate): the live upload, if any, learns of it in
    /// the same place, so no resize can leave it streaming bytes that are gone.
    pub fn resize_session(&self, size: u64) -> std::io::Result<()> {
        if let Some(s) = &self.session {
            let _settled = s.settled();
            s.set_len(size)?;
            if let Some(o) = s.overlay() {
                o.cut(size);
            }
        }
        if let Some(l) = &self.live {
            l.resized(size);
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
pub struct DirBody {
    /// `None` until first lookup/readdir loads the manifest.
    pub entries: Option<Entries>,
    /// While `entries` is `None`: names looked up one at a time, through the pages on the
    /// path to each (O(depth) fetches, not the whole directory), with the inodes made for
    /// them. The kernel holds those numbers, so a later whole load reuses them. Such an
    /// inode is never changed while its directory is not loaded (changes load it first),
    /// and holds no charge: what it stores stays in the committed figure of what is not
    /// loaded until its directory is loaded whole.
    pub found: BTreeMap<Name, Ino>,
    /// The CID the parent's entry (or, for an sNFT root, the usage document) refers to:
    /// the directory's top page (its root node); `None` until first committed.
    pub top: Option<String>,
    /// Every object the committed directory is stored as, with its size (known once the
    /// directory is loaded or committed): what it adds to usage.
    pub objects: Option<Arc<[(String, u64)]>>,
    /// The directory's own page table as last committed (for the sNFT root, the table
    /// below its root node): what the next commit updates in place. `None` until committed
    /// or loaded as format v2.
    pub table: Option<crate::fs::data::pages::Table>,
    /// Changed since the last commit (its manifest must be rewritten).
    pub dirty: bool,
    /// What changed since the last commit, while `dirty`.
    pub changes: DirChanges,
}

/// What changed in a dirty directory since its last commit: the names whose entries may
/// differ, or `all` when that is not known (the commit then builds its pages whole). The
/// sNFT root's own attributes are in its root node, rewritten on every commit of it.
#[derive(Debug, Default, Clone)]
pub struct DirChanges {
    pub all: bool,
    pub names: std::collections::BTreeSet<Name>,
}

/// A directory's entries, by name (sorted bytewise, the order of manifests and v2 pages)
/// and by cookie (for readdir offsets that stay valid while entries come and go).
#[derive(Debug)]
pub struct Entries {
    by_name: BTreeMap<Name, (Ino, u64)>,
    by_cookie: BTreeMap<u64, Name>,
    next_cookie: u64,
    /// Subdirectories, for the directory's link count.
    pub subdirs: u32,
}

/// Readdir offsets 1 and 2 are `.` and `..`; entries get cookies from 3.
pub const FIRST_COOKIE: u64 = 3;

impl Default for Entries {
    fn default() -> Self {
        Entries {
            by_name: BTreeMap::new(),
            by_cookie: BTreeMap::new(),
            next_cookie: FIRST_COOKIE,
            subdirs: 0,
        }
    }
}

impl Entries {
    pub fn get(&self, name: &[u8]) -> Option<Ino> {
        self.by_name.get(name).map(|(ino, _)| *ino)
    }
    pub fn insert(&mut self, name: &Name, ino: Ino) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        if let Some((_, old)) = self.by_name.insert(name.clone(), (ino, cookie)) {
            self.by_cookie.remove(&old);
        }
        self.by_cookie.insert(cookie, name.clone());
    }
    pub fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (ino, cookie) = self.by_name.remove(name)?;
        self.by_cookie.remove(&cookie);
        Some(ino)
    }
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
    /// Entries sorted by name (bytewise).
    pub fn iter(&self) -> impl Iterator<Item = (&Name, Ino)> {
        self.by_name.iter().map(|(n, (ino, _))| (n, *ino))
    }
    /// Entries whose cookie is after `offset`, in cookie order, with their cookie.
    pub fn after(&self, offset: u64) -> impl Iterator<Item = (u64, &Name, Ino)> {
        self.by_cookie
            .range(offset.saturating_add(1)..)
            .filter_map(|(c, n)| self.by_name.get(n).map(|(ino, _)| (*c, n, *ino)))
    }
}

impl Inode {
    /// The token whose keys and node its stored objects are read with.
    pub fn reads_as(&self) -> Option<TokenId> {
        self.token.or(self.snapshot_of)
    }

    pub fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::File,
            Body::Dir(_) => Kind::Dir,
            Body::Symlink(_) => Kind::Symlink,
            Body::Special(s) => s.kind,
        }
    }

    pub fn size(&self) -> u64 {
        match &self.body {
            Body::File(f) => f.size,
            // Not the manifest's size: that changes with every commit, and tools such as
            // tar treat a directory whose size changes while they read it as an error.
            Body::Dir(_) => 4096,
            Body::Symlink(t) => t.as_bytes().len() as u64,
            Body::Special(_) => 0,
        }
    }

    pub fn attr(&self, ino: Ino) -> Attr {
        let nlink = match &self.body {
            // Not loaded yet: its subdirectories are not known, and 1 says so (as on
            // filesystems that do not count them; `find` then does not assume a leaf).
            Body::Dir(d) => d.entries.as_ref().map(|e| 2 + e.subdirs).unwrap_or(1),
            _ => self.links.len() as u32,
        };
        Attr {
            ino,
            kind: self.kind(),
            size: self.size(),
            nlink,
            meta: self.meta,
            rdev: match &self.body {
                Body::Special(s) => s.rdev,
                _ => 0,
            },
            allocated: self.allocated(),
        }
    }

    fn allocated(&self) -> u64 {
        let Body::File(f) = &self.body else {
            return self.size();
        };
        if f.session.is_some() || f.staged.is_some() {
            return f.size;
        }
        match f.blob.as_ref().and_then(|b| b.chunks.as_ref()) {
            Some(t) => (t.chunks.len() as u64 * crate::format::chunks::CHUNK).min(f.size),
            None => f.size,
        }
    }

    pub fn file(&self) -> Option<&FileBody> {
        match &self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }
    pub fn file_mut(&mut self) -> Option<&mut FileBody> {
        match &mut self.body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }
    pub fn dir(&self) -> Option<&DirBody> {
        match &self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }
    pub fn dir_mut(&mut self) -> Option<&mut DirBody> {
        match &mut self.body {
            Body::Dir(d) => Some(d),
            _ => None,
        }
    }
}

pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl From<Kind> for crate::format::v1::manifest::EntryKind {
    fn from(k: Kind) -> Self {
        use crate::format::v1::manifest::EntryKind as E;
        match k {
            Kind::File => E::File,
            Kind::Dir => E::Dir,
            Kind::Symlink => E::Symlink,
            Kind::Fifo => E::Fifo,
            Kind::Socket => E::Socket,
            Kind::CharDev => E::Chardev,
            Kind::BlockDev => E::Blockdev,
        }
    }
}

impl Kind {
    /// The tree's kind for a v1 entry kind (also the journal's); `None` for `Unknown`.
    pub fn from_entry_kind(k: crate::format::v1::manifest::EntryKind) -> Option<Kind> {
        use crate::format::v1::manifest::EntryKind as E;
        Some(match k {
            E::File => Kind::File,
            E::Dir => Kind::Dir,
            E::Symlink => Kind::Symlink,
            E::Fifo => Kind::Fifo,
            E::Socket => Kind::Socket,
            E::Chardev => Kind::CharDev,
            E::Blockdev => Kind::BlockDev,
            E::Unknown => return None,
        })
    }
}
