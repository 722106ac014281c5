//! Directory entries, link-group records and their attributes (FORMAT.md §4). An entry
//! refers to its subdirectory or content by CID here; the page codec turns CIDs into the
//! indices the envelope's lists give them (§3.1).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::canonical::{b64_array, b64_decode, b64_encode};
use super::envelope::{Indexer, Resolver};
use super::keys::parse_hex16;
use super::name::{Name, Target, XattrName, from_members, to_members};
use super::seal::ContentSalt;
use super::{FormatError, Result};

/// The largest xattr value stored (§4.3).
pub const XATTR_VALUE_MAX: usize = 65_536;

/// Attributes every inode has (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    /// Permission bits (`0o7777`); the type is the kind.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xattr {
    pub name: XattrName,
    pub value: Vec<u8>,
}

/// A file version's content object, and its content salt in an encrypted tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    pub cid: String,
    pub salt: Option<ContentSalt>,
}

/// Where a non-empty file version's bytes are: one object (§6.2, the v2 form) or a chunk
/// table (§13, format 3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContent {
    Whole(Content),
    /// The CID of the top page of the version's chunk table (`pxfs/chunks/3`).
    Chunks(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InodeKind {
    /// `content` is `None` exactly when `size` is 0.
    File {
        size: u64,
        content: Option<FileContent>,
    },
    /// The CID of the subdirectory's top node.
    Dir {
        top: String,
    },
    Symlink(Target),
    Fifo,
    Socket,
    CharDev(u32),
    BlockDev(u32),
}

impl InodeKind {
    fn tag(&self) -> &'static str {
        match self {
            InodeKind::File { .. } => "file",
            InodeKind::Dir { .. } => "dir",
            InodeKind::Symlink(_) => "symlink",
            InodeKind::Fifo => "fifo",
            InodeKind::Socket => "socket",
            InodeKind::CharDev(_) => "chardev",
            InodeKind::BlockDev(_) => "blockdev",
        }
    }
}

/// An inode as an entry or a link-group record holds it: kind, attributes, xattrs (sorted
/// by name, names unique).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub kind: InodeKind,
    pub attrs: Attrs,
    pub xattrs: Vec<Xattr>,
}

/// A link group's id: 8 bytes, the table's key, written as 16 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(pub [u8; 8]);

impl GroupId {
    pub fn from_u64(id: u64) -> GroupId {
        GroupId(id.to_be_bytes())
    }

    pub fn parse(text: &str) -> Result<GroupId> {
        parse_hex16(text).map(GroupId).ok_or_else(|| {
            FormatError::invalid(format!(
                "link group id {text:?} is not 16 lowercase hex digits"
            ))
        })
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({self})")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Inode(Inode),
    /// One name of a link group (§4.4).
    Link(GroupId),
    /// A kind this version does not know: hidden, and the sNFT is served read-only.
    Unknown(String),
}

/// A directory entry (§4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: Name,
    pub kind: EntryKind,
}

/// A link-group record (§4.4): `kind` is an [`EntryKind::Inode`] that is not a directory,
/// or [`EntryKind::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InodeRecord {
    pub id: GroupId,
    pub nlink: u64,
    pub kind: EntryKind,
}

/// An entry or record as written: every member §4.1/§4.4 knows, in the spec's order
/// (`n`/`nb` or `id`, `kind`, `nlink` or `group`, …), absent ones skipped.
#[doc(hidden)]
#[derive(Serialize, Deserialize, Default)]
pub struct WireEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nlink: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gid: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mtime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ctime_ns: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    chunks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    content: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dir: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tb: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xattrs: Option<Vec<WireXattr>>,
}

#[doc(hidden)]
#[derive(Serialize, Deserialize)]
pub struct WireXattr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nb: Option<String>,
    v: String,
}

/// Directory attributes as the root body's `self` (§3.2) writes them.
#[derive(Serialize, Deserialize)]
pub(crate) struct WireAttrs {
    mode: u64,
    uid: u64,
    gid: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    xattrs: Option<Vec<WireXattr>>,
}

pub(crate) fn attrs_to_wire(attrs: &Attrs, xattrs: &[Xattr]) -> WireAttrs {
    WireAttrs {
        mode: attrs.mode.into(),
        uid: attrs.uid.into(),
        gid: attrs.gid.into(),
        mtime_ns: attrs.mtime_ns,
        ctime_ns: attrs.ctime_ns,
        xattrs: xattrs_to_wire(xattrs),
    }
}

pub(crate) fn attrs_from_wire(w: WireAttrs) -> Result<(Attrs, Vec<Xattr>)> {
    let attrs = check_attrs(w.mode, w.uid, w.gid, w.mtime_ns, w.ctime_ns)?;
    Ok((attrs, xattrs_from_wire(w.xattrs)?))
}

fn check_attrs(mode: u64, uid: u64, gid: u64, mtime_ns: i64, ctime_ns: i64) -> Result<Attrs> {
    if mode > 0o7777 {
        return Err(FormatError::invalid(format!(
            "mode {mode:#o} has bits beyond 0o7777"
        )));
    }
    let id32 = |v: u64, m: &str| {
        u32::try_from(v).map_err(|_| FormatError::invalid(format!("{m} {v} exceeds 32 bits")))
    };
    Ok(Attrs {
        mode: mode as u32,
        uid: id32(uid, "uid")?,
        gid: id32(gid, "gid")?,
        mtime_ns,
        ctime_ns,
    })
}

fn xattrs_to_wire(xattrs: &[Xattr]) -> Option<Vec<WireXattr>> {
    if xattrs.is_empty() {
        return None;
    }
    Some(
        xattrs
            .iter()
            .map(|x| {
                let (n, nb) = to_members(x.name.as_bytes());
                WireXattr {
                    n,
                    nb,
                    v: b64_encode(&x.value),
                }
            })
            .collect(),
    )
}

fn xattrs_from_wire(w: Option<Vec<WireXattr>>) -> Result<Vec<Xattr>> {
    let mut out: Vec<Xattr> = Vec::new();
    for x in w.unwrap_or_default() {
        let name = XattrName::new(from_members(x.n, x.nb, "n")?)?;
        let value = b64_decode(&x.v, "v")?;
        if value.len() > XATTR_VALUE_MAX {
            return Err(FormatError::invalid(format!(
                "xattr {name} has a value of {} bytes (limit 65536)",
                value.len()
            )));
        }
        if let Some(prev) = out.last()
            && prev.name >= name
        {
            return Err(FormatError::invalid(format!(
                "xattrs are not sorted by name or not unique at {name}"
            )));
        }
        out.push(Xattr { name, value });
    }
    Ok(out)
}

impl Inode {
    /// Checks what a writer must guarantee: xattrs sorted and unique, values bounded, a
    /// file has content exactly when it is not empty.
    pub fn validate(&self) -> Result<()> {
        for pair in self.xattrs.windows(2) {
            if pair[0].name >= pair[1].name {
                return Err(FormatError::invalid(
                    "xattrs are not sorted by name or not unique",
                ));
            }
        }
        if self.xattrs.iter().any(|x| x.value.len() > XATTR_VALUE_MAX) {
            return Err(FormatError::invalid("an xattr value exceeds 65536 bytes"));
        }
        if self.attrs.mode > 0o7777 {
            return Err(FormatError::invalid("mode has bits beyond 0o7777"));
        }
        if let InodeKind::File { size, content } = &self.kind
            && (*size == 0) != content.is_none()
        {
            return Err(FormatError::invalid(
                "a file has content exactly when its size is > 0",
            ));
        }
        Ok(())
    }

    pub(crate) fn refs<'a>(&'a self, nodes: &mut Vec<&'a str>, data: &mut Vec<&'a str>) {
        match &self.kind {
            InodeKind::File {
                content: Some(FileContent::Whole(c)),
                ..
            } => data.push(&c.cid),
            InodeKind::File {
                content: Some(FileContent::Chunks(top)),
                ..
            } => nodes.push(top),
            InodeKind::Dir { top } => nodes.push(top),
            _ => {}
        }
    }

    fn fill_wire(&self, w: &mut WireEntry, ix: &Indexer) {
        w.kind = self.kind.tag().into();
        w.mode = Some(self.attrs.mode.into());
        w.uid = Some(self.attrs.uid.into());
        w.gid = Some(self.attrs.gid.into());
        w.mtime_ns = Some(self.attrs.mtime_ns);
        w.ctime_ns = Some(self.attrs.ctime_ns);
        match &self.kind {
            InodeKind::File { size, content } => {
                w.size = Some(*size);
                match content {
                    Some(FileContent::Whole(c)) => {
                        w.content = Some(ix.data(&c.cid));
                        w.key = c.salt.map(|s| b64_encode(&s.0));
                    }
                    Some(FileContent::Chunks(top)) => w.chunks = Some(ix.node(top)),
                    None => {}
                }
            }
            InodeKind::Dir { top } => w.dir = Some(ix.node(top)),
            InodeKind::Symlink(t) => (w.t, w.tb) = to_members(t.as_bytes()),
            InodeKind::CharDev(r) | InodeKind::BlockDev(r) => w.rdev = Some((*r).into()),
            InodeKind::Fifo | InodeKind::Socket => {}
        }
        w.xattrs = xattrs_to_wire(&self.xattrs);
    }

    /// Reads the inode members of a known `kind`; `None` for a kind this version does not
    /// know. Members that do not fit the kind are refused (§4.1).
    fn from_wire(w: &mut WireEntry, res: &mut Resolver) -> Result<Option<Inode>> {
        let k = w.kind.as_str();
        if !matches!(
            k,
            "file" | "dir" | "symlink" | "fifo" | "socket" | "chardev" | "blockdev"
        ) {
            return Ok(None);
        }
        let misfit = |m: &str| FormatError::invalid(format!("a {k} entry has no \"{m}\" member"));
        let stray = |m: &str, present: bool| {
            if present {
                Err(FormatError::invalid(format!(
                    "a {k} entry must not have \"{m}\""
                )))
            } else {
                Ok(())
            }
        };
        stray("group", w.group.is_some())?;
        stray("size", k != "file" && w.size.is_some())?;
        stray("content", k != "file" && w.content.is_some())?;
        stray("chunks", k != "file" && w.chunks.is_some())?;
        // §12.1: a file has one form of content; a chunk table carries its salts itself.
        stray("chunks", w.content.is_some() && w.chunks.is_some())?;
        stray("key", w.content.is_none() && w.key.is_some())?;
        stray("dir", k != "dir" && w.dir.is_some())?;
        stray("t", k != "symlink" && (w.t.is_some() || w.tb.is_some()))?;
        stray(
            "rdev",
            !matches!(k, "chardev" | "blockdev") && w.rdev.is_some(),
        )?;
        let attrs = check_attrs(
            w.mode.ok_or_else(|| misfit("mode"))?,
            w.uid.ok_or_else(|| misfit("uid"))?,
            w.gid.ok_or_else(|| misfit("gid"))?,
            w.mtime_ns.ok_or_else(|| misfit("mtime_ns"))?,
            w.ctime_ns.ok_or_else(|| misfit("ctime_ns"))?,
        )?;
        let rdev = || -> Result<u32> {
            let r = w.rdev.ok_or_else(|| misfit("rdev"))?;
            u32::try_from(r).map_err(|_| FormatError::invalid(format!("rdev {r} exceeds 32 bits")))
        };
        let kind = match k {
            "file" => {
                let size = w.size.ok_or_else(|| misfit("size"))?;
                let content = match (size, w.content, w.chunks) {
                    (0, None, None) => None,
                    (0, Some(_), _) => return Err(stray("content", true).unwrap_err()),
                    (0, _, Some(_)) => return Err(stray("chunks", true).unwrap_err()),
                    (_, None, None) => return Err(misfit("content")),
                    (_, None, Some(i)) => Some(FileContent::Chunks(res.node(i)?)),
                    (_, Some(i), _) => {
                        let salt = match (&w.key, res.sealed()) {
                            (Some(key), true) => Some(ContentSalt(b64_array::<32>(key, "key")?)),
                            (None, false) => None,
                            (None, true) => return Err(misfit("key")),
                            (Some(_), false) => {
                                return Err(FormatError::invalid(
                                    "an entry of a plaintext tree has a content \"key\"",
                                ));
                            }
                        };
                        Some(FileContent::Whole(Content {
                            cid: res.data(i)?,
                            salt,
                        }))
                    }
                };
                InodeKind::File { size, content }
            }
            "dir" => InodeKind::Dir {
                top: res.node(w.dir.ok_or_else(|| misfit("dir"))?)?,
            },
            "symlink" => {
                InodeKind::Symlink(Target::new(from_members(w.t.take(), w.tb.take(), "t")?)?)
            }
            "fifo" => InodeKind::Fifo,
            "socket" => InodeKind::Socket,
            "chardev" => InodeKind::CharDev(rdev()?),
            _ => InodeKind::BlockDev(rdev()?),
        };
        Ok(Some(Inode {
            kind,
            attrs,
            xattrs: xattrs_from_wire(w.xattrs.take())?,
        }))
    }
}

/// A `link` entry or record may carry nothing of an inode.
fn has_inode_members(w: &WireEntry) -> bool {
    w.size.is_some()
        || w.mode.is_some()
        || w.uid.is_some()
        || w.gid.is_some()
        || w.mtime_ns.is_some()
        || w.ctime_ns.is_some()
        || w.content.is_some()
        || w.chunks.is_some()
        || w.key.is_some()
        || w.dir.is_some()
        || w.t.is_some()
        || w.tb.is_some()
        || w.rdev.is_some()
        || w.xattrs.is_some()
}

impl Entry {
    pub(crate) fn to_wire(&self, ix: &Indexer) -> WireEntry {
        let mut w = WireEntry::default();
        (w.n, w.nb) = to_members(self.name.as_bytes());
        match &self.kind {
            EntryKind::Inode(inode) => inode.fill_wire(&mut w, ix),
            EntryKind::Link(g) => {
                w.kind = "link".into();
                w.group = Some(g.to_string());
            }
            // A commit drops entries it cannot understand; writing one is a caller bug
            // the page writer refuses before it gets here.
            EntryKind::Unknown(k) => w.kind = k.clone(),
        }
        w
    }

    pub(crate) fn from_wire(mut w: WireEntry, res: &mut Resolver) -> Result<Entry> {
        let name = Name::new(from_members(w.n.take(), w.nb.take(), "n")?)?;
        let at = |e: FormatError| FormatError::invalid(format!("entry \"{name}\": {e}"));
        if w.id.is_some() || w.nlink.is_some() {
            return Err(at(FormatError::invalid(
                "\"id\"/\"nlink\" belong to link-group records",
            )));
        }
        let kind = if w.kind == "link" {
            if has_inode_members(&w) {
                return Err(at(FormatError::invalid(
                    "a link entry has members besides its name and group",
                )));
            }
            let g = w
                .group
                .as_deref()
                .ok_or_else(|| at(FormatError::invalid("a link entry has no \"group\"")))?;
            EntryKind::Link(GroupId::parse(g).map_err(at)?)
        } else {
            match Inode::from_wire(&mut w, res).map_err(at)? {
                Some(inode) => EntryKind::Inode(inode),
                None => {
                    res.saw_unknown();
                    EntryKind::Unknown(w.kind)
                }
            }
        };
        Ok(Entry { name, kind })
    }
}

impl InodeRecord {
    pub(crate) fn to_wire(&self, ix: &Indexer) -> WireEntry {
        let mut w = WireEntry {
            id: Some(self.id.to_string()),
            ..WireEntry::default()
        };
        match &self.kind {
            EntryKind::Inode(inode) => inode.fill_wire(&mut w, ix),
            EntryKind::Link(_) => w.kind = "link".into(),
            EntryKind::Unknown(k) => w.kind = k.clone(),
        }
        w.nlink = Some(self.nlink);
        w
    }

    pub(crate) fn from_wire(mut w: WireEntry, res: &mut Resolver) -> Result<InodeRecord> {
        if w.n.is_some() || w.nb.is_some() || w.group.is_some() {
            return Err(FormatError::invalid(
                "a link-group record has a name or a group",
            ));
        }
        let id = GroupId::parse(
            w.id.as_deref()
                .ok_or_else(|| FormatError::invalid("a link-group record has no \"id\""))?,
        )?;
        let at = |e: FormatError| FormatError::invalid(format!("link group {id}: {e}"));
        let nlink = w
            .nlink
            .ok_or_else(|| at(FormatError::invalid("no \"nlink\"")))?;
        if nlink < 2 {
            return Err(at(FormatError::invalid(format!("nlink {nlink} < 2"))));
        }
        if w.kind == "dir" || w.kind == "link" {
            return Err(at(FormatError::invalid(format!(
                "a record cannot be a {}",
                w.kind
            ))));
        }
        let kind = match Inode::from_wire(&mut w, res).map_err(at)? {
            Some(inode) => EntryKind::Inode(inode),
            None => {
                res.saw_unknown();
                EntryKind::Unknown(w.kind)
            }
        };
        Ok(InodeRecord { id, nlink, kind })
    }
}
