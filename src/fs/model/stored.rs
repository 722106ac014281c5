//! How an inode of the tree is stored as a format v2 directory entry (docs/FORMAT.md §4),
//! and how an entry read back becomes an inode's attributes and body.

use std::collections::BTreeMap;

use crate::format::{self, Content, Entry, EntryKind, FileContent, InodeKind, Name};
use crate::fs::model::inode::{Body, DirBody, FileBody, Ino, Inode, Kind, Meta, Special, TokenId};
use std::sync::Arc;

use crate::fs::data::pages::ChunkTables;
use crate::fs::store::{Blob, ChunkTable};

/// A file version of no bytes: v2 stores no content object for it (§4.1).
pub const EMPTY_CONTENT: &str = "";

pub fn attrs_of(m: &Meta) -> format::Attrs {
    format::Attrs {
        mode: m.mode & 0o7777,
        uid: m.uid,
        gid: m.gid,
        mtime_ns: m.mtime_ns,
        ctime_ns: m.ctime_ns,
    }
}

pub fn meta_of(a: &format::Attrs) -> Meta {
    Meta {
        mode: a.mode & 0o7777,
        uid: a.uid,
        gid: a.gid,
        atime_ns: a.mtime_ns,
        mtime_ns: a.mtime_ns,
        ctime_ns: a.ctime_ns,
    }
}

/// The tree's xattrs as stored (sorted by name bytes, as the `BTreeMap` keeps them).
pub fn xattrs_of(x: &BTreeMap<Vec<u8>, Vec<u8>>) -> Vec<format::Xattr> {
    x.iter()
        .filter_map(|(k, v)| {
            Some(format::Xattr {
                name: format::XattrName::new(k.clone()).ok()?,
                value: v.clone(),
            })
        })
        .collect()
}

/// Stored xattrs as the tree keeps them (names as bytes).
pub fn tree_xattrs(x: Vec<format::Xattr>) -> BTreeMap<Vec<u8>, Vec<u8>> {
    x.into_iter()
        .map(|x| (x.name.as_bytes().to_vec(), x.value))
        .collect()
}

/// The entry that stores `inode` under `name`; `dir_top`: a subdirectory's top CID.
/// `None` for what a commit leaves out: a file never closed, a directory never committed.
/// An inode of a link group is stored as a `link` entry naming its group (§4.4).
pub fn entry_of(name: &format::Name, inode: &Inode, dir_top: Option<&str>) -> Option<Entry> {
    let stored = inode_of(inode, dir_top)?;
    let kind = match inode.group {
        Some(id) if inode.links.len() >= 2 => EntryKind::Link(format::GroupId::from_u64(id)),
        _ => EntryKind::Inode(stored),
    };
    Some(Entry {
        name: name.clone(),
        kind,
    })
}

/// What `inode` is stored as (kind, attributes, xattrs); see [`entry_of`].
pub fn inode_of(inode: &Inode, dir_top: Option<&str>) -> Option<format::Inode> {
    let kind = match &inode.body {
        Body::File(f) => {
            let b = f.blob.as_ref()?;
            InodeKind::File {
                size: b.size,
                content: (b.size > 0).then(|| match b.chunks {
                    Some(_) => FileContent::Chunks(b.cid.clone()),
                    None => FileContent::Whole(Content {
                        cid: b.cid.clone(),
                        salt: b.salt,
                    }),
                }),
            }
        }
        Body::Dir(_) => InodeKind::Dir {
            top: dir_top?.to_owned(),
        },
        Body::Symlink(t) => InodeKind::Symlink(t.clone()),
        Body::Special(s) => match s.kind {
            Kind::Fifo => InodeKind::Fifo,
            Kind::Socket => InodeKind::Socket,
            Kind::CharDev => InodeKind::CharDev(s.rdev),
            Kind::BlockDev => InodeKind::BlockDev(s.rdev),
            Kind::File | Kind::Dir | Kind::Symlink => return None,
        },
    };
    Some(format::Inode {
        kind,
        attrs: attrs_of(&inode.meta),
        xattrs: xattrs_of(&inode.xattrs),
    })
}

/// The inode a stored entry `stored` becomes when read as `dir/name` (of link group
/// `group`, if any), with its kind.
pub fn inode_read(
    token: Option<TokenId>,
    stored: format::Inode,
    (dir, name): (Ino, Name),
    group: Option<u64>,
    tables: &ChunkTables,
) -> (Kind, Inode) {
    let (kind, body) = body_of(stored.kind, tables);
    let inode = Inode {
        token,
        meta: meta_of(&stored.attrs),
        xattrs: tree_xattrs(stored.xattrs),
        links: vec![(dir, name)],
        body,
        open_handles: 0,
        group,
    };
    (kind, inode)
}

/// The kind and body of an inode loaded from a stored entry (a directory not loaded yet);
/// a chunked file's table comes from `tables`, read with its directory.
pub fn body_of(kind: InodeKind, tables: &ChunkTables) -> (Kind, Body) {
    match kind {
        InodeKind::File { size, content } => (
            Kind::File,
            Body::File(FileBody {
                size,
                blob: Some(match content {
                    Some(FileContent::Whole(c)) => Blob::whole(c.cid, size, c.salt),
                    Some(FileContent::Chunks(top)) => {
                        let table = tables.get(&(top.clone(), size)).cloned();
                        Blob {
                            cid: top,
                            size,
                            salt: None,
                            // A table not read with the directory is never guessed at:
                            // the file's reads fail.
                            chunks: Some(table.unwrap_or_else(|| {
                                Arc::new(ChunkTable {
                                    invalid: Some("its chunk table was not read".into()),
                                    ..ChunkTable::default()
                                })
                            })),
                        }
                    }
                    None => Blob::plain(EMPTY_CONTENT.to_owned(), size),
                }),
                ..Default::default()
            }),
        ),
        InodeKind::Dir { top } => (
            Kind::Dir,
            Body::Dir(DirBody {
                entries: None,
                top: Some(top),
                ..Default::default()
            }),
        ),
        InodeKind::Symlink(t) => (Kind::Symlink, Body::Symlink(t)),
        InodeKind::Fifo => special(Kind::Fifo, 0),
        InodeKind::Socket => special(Kind::Socket, 0),
        InodeKind::CharDev(rdev) => special(Kind::CharDev, rdev),
        InodeKind::BlockDev(rdev) => special(Kind::BlockDev, rdev),
    }
}

fn special(kind: Kind, rdev: u32) -> (Kind, Body) {
    (kind, Body::Special(Special { kind, rdev }))
}
