//! Format-3 trees (docs/FORMAT.md §12–§14) built with pxfs's own codecs, for tests that
//! need one on a node before the mount writes them: v2 content files, chunked files with
//! holes, directories, a `pxfs/root/3` with a history table; every object kept by CID so a
//! test can put them on a node (or leave some out).
#![allow(dead_code)]

use std::collections::BTreeMap;

use pxfs::format::chunks::{self, ChunkRef};
use pxfs::format::entry::{Attrs, Content, Entry, EntryKind, FileContent, Inode, InodeKind};
use pxfs::format::history::Version;
use pxfs::format::root::{Root, RootV3};
use pxfs::format::seal::{ContentSalt, VersionKey, seal_content};
use pxfs::format::store::raw_cid;
use pxfs::format::{DataKey, FormatError, Name, PageStore, TreeCrypto, prolly};
use pxfs::storage::NodeClient;

pub const NS: i64 = 1_000_000_000;
/// Bytes of a chunk in clear (§13.1).
pub const CHUNK_SIZE: u64 = chunks::CHUNK;
/// 2026-11-25T00:00:00Z.
pub const T0: i64 = 1_795_564_800 * NS;

pub fn attrs() -> Attrs {
    Attrs {
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime_ns: T0,
        ctime_ns: T0,
    }
}

/// `len` bytes made from `seed` (equal seeds, equal bytes).
pub fn pattern(seed: u64, len: u64) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7919) >> 3) as u8)
        .collect()
}

/// Objects by CID.
#[derive(Default)]
pub struct Objects(pub BTreeMap<String, Vec<u8>>);

/// The objects of one sNFT's trees.
pub struct Tree3 {
    pub objects: Objects,
    pub crypto: TreeCrypto,
}

impl PageStore for Objects {
    fn get(&self, cid: &str) -> pxfs::format::Result<Vec<u8>> {
        self.0
            .get(cid)
            .cloned()
            .ok_or_else(|| FormatError::Store(format!("{cid} not written")))
    }
    fn put(&mut self, bytes: Vec<u8>) -> pxfs::format::Result<String> {
        let cid = raw_cid(&bytes);
        self.0.insert(cid.clone(), bytes);
        Ok(cid)
    }
}

pub fn entry(name: &str, kind: InodeKind) -> Entry {
    Entry {
        name: Name::new(name.as_bytes().to_vec()).unwrap(),
        kind: EntryKind::Inode(Inode {
            kind,
            attrs: attrs(),
            xattrs: vec![],
        }),
    }
}

pub fn subdir(name: &str, top: &str) -> Entry {
    entry(
        name,
        InodeKind::Dir {
            top: top.to_string(),
        },
    )
}

impl Tree3 {
    /// Plaintext, or sealed with a fixed data key (what a test opens it with).
    pub fn new(sealed: bool) -> Tree3 {
        Tree3 {
            objects: Objects::default(),
            crypto: Self::crypto(sealed),
        }
    }

    pub fn crypto(sealed: bool) -> TreeCrypto {
        if sealed {
            TreeCrypto::sealed(&DataKey::from_bytes([42; 32]))
        } else {
            TreeCrypto::Plain
        }
    }

    /// A file whose content is one v2 object (§6.2) of at most one sealed chunk.
    pub fn file(&mut self, name: &str, seed: u64, len: u64) -> (Entry, String) {
        let plain = pattern(seed, len);
        let (stored, salt) = match &self.crypto {
            TreeCrypto::Plain => (plain, None),
            TreeCrypto::Sealed(keys) => {
                let salt = ContentSalt::random();
                let sealed = seal_content(&VersionKey::new(keys, &salt), &plain).unwrap();
                (sealed, Some(salt))
            }
        };
        let cid = self.objects.put(stored).unwrap();
        let e = entry(
            name,
            InodeKind::File {
                size: len,
                content: Some(FileContent::Whole(Content {
                    cid: cid.clone(),
                    salt,
                })),
            },
        );
        (e, cid)
    }

    /// Chunk `index` of a `size`-byte chunked file, stored as `place` says it is (sealed
    /// for its own index in an encrypted tree, §13.3), with bytes made from `seed`.
    pub fn chunk(&mut self, index: u64, size: u64, seed: u64) -> ChunkRef {
        self.chunk_at(index, index, size, seed)
    }

    /// A chunk sealed as chunk `sealed_as` but listed at `index` (a moved chunk, when they
    /// differ).
    pub fn chunk_at(&mut self, index: u64, sealed_as: u64, size: u64, seed: u64) -> ChunkRef {
        let plain = pattern(seed, chunks::chunk_len(size, sealed_as).unwrap());
        match &self.crypto {
            TreeCrypto::Plain => ChunkRef::new(index, self.objects.put(plain).unwrap(), None),
            TreeCrypto::Sealed(keys) => {
                let (salt, sealed) = chunks::seal_chunk(keys, sealed_as, &plain).unwrap();
                ChunkRef::new(index, self.objects.put(sealed).unwrap(), Some(salt))
            }
        }
    }

    /// A chunked file of `size` bytes whose stored chunks are `stored` (the other indices
    /// are holes), and its table's top.
    pub fn chunked(&mut self, name: &str, size: u64, stored: Vec<ChunkRef>) -> (Entry, String) {
        let top = chunks::build(&mut self.objects, &self.crypto, stored).unwrap();
        let e = entry(
            name,
            InodeKind::File {
                size,
                content: Some(FileContent::Chunks(top.clone())),
            },
        );
        (e, top)
    }

    /// A directory of `entries` (any order): its top page.
    pub fn dir(&mut self, mut entries: Vec<Entry>) -> String {
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        prolly::build(&mut self.objects, &self.crypto, entries).unwrap()
    }

    /// A kept version: the tree whose root directory is `dir`, committed at `t`.
    pub fn version(&self, t: i64, dir: &str) -> Version {
        Version::new(t, attrs(), vec![], dir.to_string(), None, 0).unwrap()
    }

    /// The `pxfs/root/3` of the tree `dir` committed at `t`, keeping `history`.
    pub fn root(&mut self, t: i64, dir: &str, history: Vec<Version>) -> String {
        let history = (!history.is_empty())
            .then(|| prolly::build(&mut self.objects, &self.crypto, history).unwrap());
        let root = RootV3 {
            root: Root {
                attrs: attrs(),
                xattrs: vec![],
                dir: dir.to_string(),
                inodes: None,
            },
            t,
            history,
        };
        let bytes = root.encode(&self.crypto).unwrap();
        self.objects.put(bytes).unwrap()
    }

    /// The `pxfs/root/2` of the tree `dir` (format v2: no commit time, no history).
    pub fn root_v2(&mut self, dir: &str) -> String {
        let root = Root {
            attrs: attrs(),
            xattrs: vec![],
            dir: dir.to_string(),
            inodes: None,
        };
        let bytes = root.encode(&self.crypto);
        self.objects.put(bytes).unwrap()
    }

    /// Puts every object on `node` (`block/put`, each under its CID).
    pub fn store_on(&self, rt: &tokio::runtime::Runtime, node: &NodeClient) {
        for (cid, bytes) in &self.objects.0 {
            let parsed = cid.parse().unwrap();
            rt.block_on(node.block_put(&parsed, bytes.clone().into()))
                .unwrap();
        }
    }
}
