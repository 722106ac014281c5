//! What one tree node refers to (§3.1), read from its body: the nodes below it, each with
//! what a reader of it must know (a chunk table's file size: its last chunk's length), and
//! its content objects with their stored sizes (§7). The public lists say *which* objects a
//! node refers to; only the body says how large a content object is stored (a sealed whole
//! file: its size plus tags; a chunk: its place in its file), so reading sizes needs the
//! tree's key, as loading does.

use super::chunks::{ChunkRef, chunk_len};
use super::history::Version;
use super::page::{Page, decode};
use super::root::Root;
use super::seal::{TAG, sealed_len};
use super::{
    Entry, EntryKind, FileContent, FormatError, InodeKind, InodeRecord, Result, SCHEMA_CHUNKS,
    SCHEMA_DIR, SCHEMA_HISTORY, SCHEMA_INODES, SCHEMA_ROOT, SCHEMA_ROOT3, TreeCrypto,
};

/// What a reader knows on its way into a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// A root node, a directory or link-group page, a history page.
    Tree,
    /// A page of the chunk table of a file of `size` bytes.
    Chunks { size: u64 },
}

/// A node's references.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Children {
    pub nodes: Vec<(String, Reach)>,
    /// Content objects and their stored sizes.
    pub data: Vec<(String, u64)>,
}

/// The references of the node `bytes`, reached as `reach`.
pub fn children(bytes: &[u8], reach: Reach, crypto: &TreeCrypto) -> Result<Children> {
    let schema = super::envelope::public(bytes)?.0;
    let mut out = Children::default();
    match (schema.as_str(), reach) {
        (SCHEMA_ROOT | SCHEMA_ROOT3, Reach::Tree) => {
            let r = Root::decode_any(bytes, crypto)?;
            let history = r.v3.and_then(|(_, h)| h);
            for node in [Some(r.root.dir), r.root.inodes, history]
                .into_iter()
                .flatten()
            {
                out.nodes.push((node, Reach::Tree));
            }
        }
        (SCHEMA_DIR, Reach::Tree) => match decode::<Entry>(bytes, crypto)? {
            Page::Branch(b) => out.branch(b.children, reach),
            Page::Leaf(entries) => {
                for e in entries {
                    out.entry(e.kind)?;
                }
            }
        },
        (SCHEMA_INODES, Reach::Tree) => match decode::<InodeRecord>(bytes, crypto)? {
            Page::Branch(b) => out.branch(b.children, reach),
            Page::Leaf(records) => {
                for r in records {
                    out.entry(r.kind)?;
                }
            }
        },
        (SCHEMA_HISTORY, Reach::Tree) => match decode::<Version>(bytes, crypto)? {
            Page::Branch(b) => out.branch(b.children, reach),
            Page::Leaf(versions) => {
                for v in versions {
                    out.nodes.push((v.dir, Reach::Tree));
                    if let Some(inodes) = v.inodes {
                        out.nodes.push((inodes, Reach::Tree));
                    }
                }
            }
        },
        (SCHEMA_CHUNKS, Reach::Chunks { size }) => match decode::<ChunkRef>(bytes, crypto)? {
            Page::Branch(b) => out.branch(b.children, reach),
            Page::Leaf(chunks) => {
                for c in chunks {
                    let plain = chunk_len(size, c.index()).ok_or_else(|| {
                        FormatError::invalid("a chunk table names a chunk past its file's end")
                    })?;
                    let tag = if c.salt.is_some() { TAG as u64 } else { 0 };
                    out.data.push((c.cid, plain + tag));
                }
            }
        },
        (schema, reach) => {
            return Err(FormatError::invalid(format!(
                "a {schema:?} node where the tree has a {reach:?} node"
            )));
        }
    }
    Ok(out)
}

impl Children {
    fn branch(&mut self, children: Vec<super::page::ChildRef>, reach: Reach) {
        self.nodes
            .extend(children.into_iter().map(|c| (c.node, reach)));
    }

    fn entry(&mut self, kind: EntryKind) -> Result<()> {
        let inode = match kind {
            EntryKind::Inode(i) => i,
            EntryKind::Link(_) => return Ok(()),
            EntryKind::Unknown(k) => {
                return Err(FormatError::invalid(format!(
                    "an entry of kind {k:?}, whose references this pxfs cannot size"
                )));
            }
        };
        match inode.kind {
            InodeKind::Dir { top } => self.nodes.push((top, Reach::Tree)),
            InodeKind::File {
                size,
                content: Some(FileContent::Whole(c)),
            } => {
                let stored = match c.salt {
                    Some(_) => sealed_len(size),
                    None => size,
                };
                self.data.push((c.cid, stored));
            }
            InodeKind::File {
                size,
                content: Some(FileContent::Chunks(top)),
            } => self.nodes.push((top, Reach::Chunks { size })),
            _ => {}
        }
        Ok(())
    }
}
