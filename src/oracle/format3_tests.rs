//! The oracle over format 3 (docs/FORMAT.md §7, §12–§14): trees built with the format's
//! own codecs — a `pxfs/root/3` whose history table keeps versions that share pages and
//! contents with the current tree — are stored on a `pxfs node` running in this process and
//! measured. Usage is the stored size of each distinct object reachable from the root once,
//! whatever shares it, and the memo keeps the work bounded by distinct objects, not by
//! versions × tree size (§14.5).

use std::collections::{BTreeSet, HashMap};

use crate::format::chunks::{self, CHUNK, ChunkRef};
use crate::format::entry::{Attrs, Content, Entry, EntryKind, FileContent, Inode, InodeKind};
use crate::format::history::Version;
use crate::format::page::{self, Page, Record};
use crate::format::root::{Root, RootV3};
use crate::format::seal::{ContentSalt, VersionKey, seal_content};
use crate::format::store::raw_cid;
use crate::format::{DataKey, FormatError, Name, PageStore, TreeCrypto, prolly};
use crate::node::{BoundNode, NodeOptions};
use crate::storage::NodeClient;

use super::memo::Memo;
use super::walk::{Limits, TreeUsage, measure_roots};

const NS: i64 = 1_000_000_000;
/// 2026-11-25T00:00:00Z.
const T0: i64 = 1_795_564_800 * NS;

/// Every object written, by CID, as the node will hold it.
#[derive(Default)]
struct Objects(HashMap<String, Vec<u8>>);

impl PageStore for Objects {
    fn get(&self, cid: &str) -> crate::format::Result<Vec<u8>> {
        self.0
            .get(cid)
            .cloned()
            .ok_or_else(|| FormatError::Store(format!("{cid} not written")))
    }
    fn put(&mut self, bytes: Vec<u8>) -> crate::format::Result<String> {
        let cid = raw_cid(&bytes);
        self.0.insert(cid.clone(), bytes);
        Ok(cid)
    }
}

/// Format-3 trees of one sNFT, built with the codecs.
struct Trees {
    objects: Objects,
    crypto: TreeCrypto,
}

fn attrs() -> Attrs {
    Attrs {
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime_ns: T0,
        ctime_ns: T0,
    }
}

impl Trees {
    fn new(sealed: bool) -> Trees {
        Trees {
            objects: Objects::default(),
            crypto: if sealed {
                TreeCrypto::sealed(&DataKey::from_bytes([7; 32]))
            } else {
                TreeCrypto::Plain
            },
        }
    }

    /// A file whose content is one v2 object (§6.2): `len` bytes made from `seed`.
    fn file(&mut self, name: &str, seed: u64, len: usize) -> Entry {
        let plain: Vec<u8> = (0..len as u64)
            .map(|i| (i.wrapping_mul(31).wrapping_add(seed * 7919) >> 3) as u8)
            .collect();
        let (stored, salt) = match &self.crypto {
            TreeCrypto::Plain => (plain, None),
            TreeCrypto::Sealed(keys) => {
                let salt = ContentSalt::random();
                let sealed = seal_content(&VersionKey::new(keys, &salt), &plain).unwrap();
                (sealed, Some(salt))
            }
        };
        let cid = self.objects.put(stored).unwrap();
        entry(
            name,
            InodeKind::File {
                size: len as u64,
                content: Some(FileContent::Whole(Content { cid, salt })),
            },
        )
    }

    /// Chunk `index` of a `size`-byte chunked file, stored (sealed in an encrypted tree,
    /// §13.3): its bytes made from `seed`, so equal seeds give equal plaintext.
    fn chunk(&mut self, index: u64, size: u64, seed: u64) -> ChunkRef {
        let len = chunks::chunk_len(size, index).unwrap();
        let plain: Vec<u8> = (0..len)
            .map(|i| (i.wrapping_mul(7).wrapping_add(seed) >> 2) as u8)
            .collect();
        match &self.crypto {
            TreeCrypto::Plain => ChunkRef::new(index, self.objects.put(plain).unwrap(), None),
            TreeCrypto::Sealed(keys) => {
                let (salt, sealed) = chunks::seal_chunk(keys, index, &plain).unwrap();
                ChunkRef::new(index, self.objects.put(sealed).unwrap(), Some(salt))
            }
        }
    }

    /// A chunked file of `size` bytes whose stored chunks are `stored` (the other indices
    /// are holes), and its table's top.
    fn chunked(&mut self, name: &str, size: u64, stored: Vec<ChunkRef>) -> (Entry, String) {
        let top = chunks::build(&mut self.objects, &self.crypto, stored).unwrap();
        let file = entry(
            name,
            InodeKind::File {
                size,
                content: Some(FileContent::Chunks(top.clone())),
            },
        );
        (file, top)
    }

    /// A directory of `entries` (any order): its top page.
    fn dir(&mut self, mut entries: Vec<Entry>) -> String {
        entries.sort_by(|a, b| a.name.as_bytes().cmp(b.name.as_bytes()));
        prolly::build(&mut self.objects, &self.crypto, entries).unwrap()
    }

    /// A kept version: the tree whose root directory is `dir`, committed at `t`.
    fn version(&self, t: i64, dir: &str) -> Version {
        Version::new(t, attrs(), vec![], dir.to_string(), None, 0).unwrap()
    }

    /// The `pxfs/root/3` of the tree `dir` committed at `t`, keeping `history`.
    fn root(&mut self, t: i64, dir: &str, history: Vec<Version>) -> String {
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

    /// The pages of the table (directory, history) under `top`, read through the decoded
    /// bodies (not the public lists the oracle follows).
    fn pages<R: Record>(&self, top: &str) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut stack = vec![top.to_string()];
        while let Some(cid) = stack.pop() {
            let bytes = self.objects.get(&cid).unwrap();
            if let Page::Branch(b) = page::decode::<R>(&bytes, &self.crypto).unwrap() {
                stack.extend(b.children.into_iter().map(|c| c.node));
            }
            found.insert(cid);
        }
        found
    }

    /// What the format-3 root `root` reaches, read through the decoded bodies (not the
    /// public lists the oracle follows): (nodes, contents) — the root, its history table,
    /// each version's and the current root directory (one page each, no subdirectories),
    /// their files' contents, and chunked files' table pages and chunks.
    fn reached(&mut self, root: &str) -> (BTreeSet<String>, BTreeSet<String>) {
        let read = RootV3::decode(&self.objects.get(root).unwrap(), &self.crypto).unwrap();
        let mut nodes = BTreeSet::from([root.to_string()]);
        let mut dirs = vec![read.root.root.dir.clone()];
        if let Some(top) = &read.root.history {
            nodes.extend(self.pages::<Version>(top));
            let kept: Vec<Version> = prolly::records(&mut self.objects, &self.crypto, top).unwrap();
            dirs.extend(kept.into_iter().map(|v| v.dir));
        }
        let mut contents = BTreeSet::new();
        for dir in dirs {
            for e in prolly::records::<Entry>(&mut self.objects, &self.crypto, &dir).unwrap() {
                match file_content(&e) {
                    FileContent::Whole(c) => {
                        contents.insert(c.cid);
                    }
                    FileContent::Chunks(top) => {
                        nodes.extend(self.pages::<ChunkRef>(&top));
                        let stored: Vec<ChunkRef> =
                            prolly::records(&mut self.objects, &self.crypto, &top).unwrap();
                        contents.extend(stored.into_iter().map(|c| c.cid));
                    }
                }
            }
            nodes.insert(dir);
        }
        (nodes, contents)
    }

    /// The stored size of each of `cids` once.
    fn size(&self, cids: &BTreeSet<String>) -> u64 {
        cids.iter().map(|c| self.objects.0[c].len() as u64).sum()
    }
}

fn entry(name: &str, kind: InodeKind) -> Entry {
    Entry {
        name: Name::new(name.as_bytes().to_vec()).unwrap(),
        kind: EntryKind::Inode(Inode {
            kind,
            attrs: attrs(),
            xattrs: vec![],
        }),
    }
}

fn file_content(e: &Entry) -> FileContent {
    match &e.kind {
        EntryKind::Inode(Inode {
            kind: InodeKind::File {
                content: Some(c), ..
            },
            ..
        }) => c.clone(),
        other => panic!("not a file with content: {other:?}"),
    }
}

fn content_of(e: &Entry) -> String {
    match file_content(e) {
        FileContent::Whole(c) => c.cid,
        FileContent::Chunks(top) => panic!("a chunked file ({top})"),
    }
}

fn subdir(name: &str, top: &str) -> Entry {
    entry(
        name,
        InodeKind::Dir {
            top: top.to_string(),
        },
    )
}

/// A `pxfs node` in this process on a fresh repository.
struct LocalNode {
    client: NodeClient,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), crate::node::NodeError>>,
    _repo: tempfile::TempDir,
}

impl LocalNode {
    async fn start() -> LocalNode {
        let repo = tempfile::tempdir().unwrap();
        let bound = BoundNode::bind(NodeOptions {
            repo: repo.path().join("repo"),
            listen: ([127, 0, 0, 1], 0).into(),
            online: false,
            enable_gc: false,
        })
        .await
        .expect("the node starts");
        let url = format!("http://{}", bound.addr());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = stopped.await;
        }));
        LocalNode {
            client: NodeClient::from_url(&url, "/api/v0"),
            stop: Some(stop),
            task,
            _repo: repo,
        }
    }

    /// Puts every object written so far that the node does not hold yet.
    async fn store(&self, objects: &Objects, already: &mut BTreeSet<String>) {
        for (cid, bytes) in &objects.0 {
            if already.insert(cid.clone()) {
                let parsed = cid.parse().unwrap();
                self.client
                    .block_put(&parsed, bytes.clone().into())
                    .await
                    .unwrap();
            }
        }
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap().unwrap();
    }
}

async fn measure(node: &LocalNode, roots: &[&str], memo: &Memo) -> TreeUsage {
    let roots: Vec<String> = roots.iter().map(|r| r.to_string()).collect();
    measure_roots(&node.client, &roots, &Limits::default(), memo)
        .await
        .unwrap()
}

/// Two kept versions and the current tree, sharing pages, contents and chunks:
/// - v1 (00:10): `/a`, `/b`;
/// - v2 (00:20): `/a`, `/b` rewritten, `/sub/d`, and `/big`, chunked: 5 chunks of which
///   1 and 3 are holes;
/// - current (00:30): `/a`, `/b` and `/sub` as in v2, `/e`; `/b-too`, which holds the same
///   content object as `/b` (a hard link's or a restored file's); `/big` with chunk 2
///   rewritten (chunks 0 and 4 shared with v2's table); `/sparse` and `/sparse-too`, 1 GiB
///   and 2 GiB of holes only (one empty table leaf between them); and `/many`, 70 chunks
///   (a table of several pages; in a plaintext tree its identical chunks are one object).
///
/// Every distinct object counts once: `/a`'s content is reachable from three directory
/// pages, `/b`'s second version from two versions and two names, `/sub`'s page from two
/// versions, `/big`'s unchanged chunks from two tables; holes cost nothing; objects on
/// the node that the root does not reach count nothing.
async fn kept_versions_count_each_distinct_object_once(sealed: bool) {
    let mut t = Trees::new(sealed);
    let a = t.file("a", 1, 5_000);
    let b1 = t.file("b", 2, 70_000);
    let b2 = t.file("b", 3, 300_000);
    let d = t.file("d", 4, 1_000);
    let e = t.file("e", 5, 12);
    let mut b_too = b2.clone();
    b_too.name = Name::new(b"b-too".to_vec()).unwrap();
    let big_size = 4 * CHUNK + 1_000;
    let k0 = t.chunk(0, big_size, 10);
    let k2 = t.chunk(2, big_size, 11);
    let k2_new = t.chunk(2, big_size, 12);
    let k4 = t.chunk(4, big_size, 13);
    let (big1, table1) = t.chunked("big", big_size, vec![k0.clone(), k2.clone(), k4.clone()]);
    let (big2, table2) = t.chunked(
        "big",
        big_size,
        vec![k0.clone(), k2_new.clone(), k4.clone()],
    );
    let (sparse, empty) = t.chunked("sparse", 1 << 30, vec![]);
    let (sparse_too, empty_too) = t.chunked("sparse-too", 2 << 30, vec![]);
    assert_eq!(empty, empty_too, "one empty leaf");
    let empty_leaf = t.objects.0[&empty].len();
    let many_size = 70 * CHUNK;
    let many_chunks: Vec<ChunkRef> = (0..70).map(|i| t.chunk(i, many_size, 20)).collect();
    let (many, many_table) = t.chunked("many", many_size, many_chunks.clone());
    let sub = t.dir(vec![d.clone()]);
    let dir1 = t.dir(vec![a.clone(), b1.clone()]);
    let dir2 = t.dir(vec![a.clone(), b2.clone(), subdir("sub", &sub), big1]);
    let dir3 = t.dir(vec![
        a.clone(),
        b2.clone(),
        subdir("sub", &sub),
        e.clone(),
        b_too,
        big2,
        sparse,
        sparse_too,
        many,
    ]);
    let history = vec![
        t.version(T0 + 600 * NS, &dir1),
        t.version(T0 + 1200 * NS, &dir2),
    ];
    let root = t.root(T0 + 1800 * NS, &dir3, history);
    // Written but reachable from no root: a file the current tree dropped before commit.
    t.file("stray", 6, 9_999);

    let read = RootV3::decode(&t.objects.get(&root).unwrap(), &t.crypto).unwrap();
    let history_top = read.root.history.expect("the root keeps history");
    let history_pages = t.pages::<Version>(&history_top);
    assert_eq!(history_pages.len(), 1, "two versions: one leaf");
    let many_pages = t.pages::<ChunkRef>(&many_table);
    assert!(many_pages.len() > 1, "70 chunks: a paged table");
    let nodes: BTreeSet<String> = [root.clone(), dir1, dir2, dir3, sub, table1, table2, empty]
        .into_iter()
        .chain(history_pages)
        .chain(many_pages)
        .collect();
    let mut contents: BTreeSet<String> =
        [&a, &b1, &b2, &d, &e].into_iter().map(content_of).collect();
    contents.extend([k0, k2, k2_new, k4].into_iter().map(|k| k.cid));
    contents.extend(many_chunks.into_iter().map(|k| k.cid));
    let distinct_many = if sealed { 70 } else { 1 };
    assert_eq!(contents.len(), 5 + 4 + distinct_many);

    let node = LocalNode::start().await;
    node.store(&t.objects, &mut BTreeSet::new()).await;
    let memo = Memo::in_memory(100_000);
    let got = measure(&node, &[&root], &memo).await;
    assert_eq!(
        got.usage,
        t.size(&nodes) + t.size(&contents),
        "each distinct object of the current tree and its kept versions once"
    );
    assert_eq!(got.manifest_bytes, t.size(&nodes));
    assert_eq!(
        got.files,
        contents.len() as u64,
        "distinct contents and chunks"
    );
    assert_eq!(
        got.objects_fetched,
        (nodes.len() + contents.len()) as u64,
        "each distinct object asked for once"
    );
    // 3 GiB of holes cost one empty table leaf.
    assert!(empty_leaf < 400, "{empty_leaf} bytes");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_root3_counts_its_kept_versions_each_distinct_object_once() {
    kept_versions_count_each_distinct_object_once(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_root3_counts_its_kept_versions_each_distinct_object_once() {
    kept_versions_count_each_distinct_object_once(true).await;
}

/// The tree the history test commits to: 40 small files and a 10-chunk file.
struct Live {
    files: Vec<Entry>,
    big: Vec<ChunkRef>,
    history: Vec<Version>,
}

const BIG: u64 = 10 * CHUNK;

/// Commit `n` (at minute `n`): file `n % 40` and chunk `n % 10` of `/big` rewritten, every
/// earlier version kept. Its root.
fn commit(t: &mut Trees, n: usize, live: &mut Live) -> String {
    let i = n % live.files.len();
    live.files[i] = t.file(&format!("f{i:02}"), 1000 + n as u64, 2_000);
    let k = (n % 10) as u64;
    live.big[k as usize] = t.chunk(k, BIG, 1000 + n as u64);
    let (big, _) = t.chunked("big", BIG, live.big.clone());
    let mut entries = live.files.clone();
    entries.push(big);
    let dir = t.dir(entries);
    let at = T0 + (n as i64) * 60 * NS;
    let root = t.root(at, &dir, live.history.clone());
    live.history.push(t.version(at, &dir));
    root
}

/// A commit every minute for 100 minutes, each changing one file of a 40-file directory
/// and one chunk of a 10-chunk file, every version kept: measuring costs one request per
/// distinct object (never per version × tree), the memo holds the distinct objects, and
/// measuring the next commit with the memo asks only for what that commit added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_versions_sharing_a_tree_cost_the_oracle_their_distinct_objects_only() {
    let mut t = Trees::new(true);
    let mut live = Live {
        files: (0..40)
            .map(|i| t.file(&format!("f{i:02}"), i, 2_000))
            .collect(),
        big: (0..10).map(|k| t.chunk(k, BIG, k)).collect(),
        history: Vec::new(),
    };
    let mut root = String::new();
    for n in 0..100 {
        root = commit(&mut t, n, &mut live);
    }
    let (nodes, contents) = t.reached(&root);
    // The root, 100 directory pages, 100 one-leaf chunk tables, the history table's pages.
    assert!(
        nodes.len() > 1 + 100 + 100 + 1,
        "99 versions: a paged history table"
    );
    assert_eq!(
        contents.len(),
        39 + 100 + 9 + 100,
        "f01…f39 and chunks 1…9 as first written, and one file and one chunk per commit"
    );
    let distinct = nodes.len() + contents.len();

    let node = LocalNode::start().await;
    let mut stored = BTreeSet::new();
    node.store(&t.objects, &mut stored).await;
    let memo = Memo::in_memory(1_000_000);
    let got = measure(&node, &[&root], &memo).await;
    assert_eq!(got.usage, t.size(&nodes) + t.size(&contents));
    assert_eq!(
        got.objects_fetched, distinct as u64,
        "one request per distinct object, though 100 versions name most of them"
    );
    assert_eq!(
        memo.len(),
        distinct,
        "the memo holds each distinct object once"
    );

    // The next commit: one file, one chunk, one directory page, one chunk table, the
    // root and the history table's changed pages are new; nothing else is asked for again.
    let before = t.objects.0.len();
    let next = commit(&mut t, 100, &mut live);
    let written = t.objects.0.len() - before;
    node.store(&t.objects, &mut stored).await;
    let again = measure(&node, &[&root, &next], &memo).await;
    assert!(
        again.objects_fetched as usize <= written && again.objects_fetched <= 10,
        "{} requests for a commit that wrote {written} objects",
        again.objects_fetched
    );
    assert_eq!(again.roots, 2);
    let (next_nodes, next_contents) = t.reached(&next);
    let next_usage = t.size(&next_nodes) + t.size(&next_contents);
    assert!(
        next_usage > got.usage,
        "a commit that keeps every version grows"
    );
    assert_eq!(again.usage, next_usage, "the larger of the two roots");
    assert!(memo.len() <= distinct + written);
    node.stop().await;
}
