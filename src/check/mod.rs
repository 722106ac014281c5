//! Checking a published tree (`pxfs check`, issue #30): walk every directory page and every
//! content DAG node reachable from a v2 root (docs/FORMAT.md §3–§5) and ask the node for
//! each block: its presence (`block/stat`), or with `read_data` its bytes, checked against
//! the CID (`crate::integrity`). Damage is reported per file path as it is found (a block
//! shared by several files names each of them), then a summary.
//!
//! Why not `oracle::walk`: the oracle follows only the envelopes' public `nodes`/`data`
//! lists, which carry no names, and stops at the first missing object; a check must name
//! each damaged file and go on past damage, so it decodes the pages (with the key of an
//! encrypted tree) and keeps walking. What it shares: the checked fetches of
//! `crate::integrity` (`object`, `block`), the dag-pb decoder and the page/root codecs.
//!
//! Streaming: directories are walked depth first from a stack of pending pages, and the
//! files of a page are checked before more pages are opened, so memory holds the pages on
//! the way down and the requests in flight, never a list of the tree's files. Content
//! already found intact or damaged is remembered up to [`REMEMBERED`] CIDs each (so a
//! content shared by many files is fetched once, and reported for every file).
//!
//! In an encrypted tree with `read_data`, each content leaf is also opened as the sealed
//! chunk its position makes it (docs/FORMAT.md §6.2: chunk `i` is leaf `i`, the last one
//! flagged), with the file version's key: a chunk that hashes right but does not
//! authenticate (sealed with another key, moved, truncated) is reported as unreadable.

pub mod record;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use ipld_core::cid::Cid;

use crate::format::TreeCrypto;
use crate::format::entry::{Entry, EntryKind, FileContent, GroupId, InodeKind, InodeRecord};
use crate::format::page::{self, Page};
use crate::format::root::Root;
use crate::format::seal::{SEALED_CHUNK, VersionKey, sealed_len};
use crate::integrity::dagpb::FileNode;
use crate::integrity::{DAG_PB_CODEC, IntegrityError, MAX_DAG_DEPTH, RAW_CODEC};
use crate::storage::{NodeClient, StorageError};

mod repair;
pub use repair::{Repair, Sources, repair};

/// Intact content CIDs remembered so that shared content is checked once (bounded).
const REMEMBERED: usize = 100_000;
/// Largest page or root node read.
const MAX_NODE_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone)]
pub struct Options {
    /// Fetch every block and check it against its CID (otherwise `block/stat` only).
    pub read_data: bool,
    /// Node requests in flight at a time.
    pub concurrency: usize,
    /// A block the node does not give within this time counts as missing.
    pub block_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            read_data: false,
            concurrency: 16,
            block_timeout: Duration::from_secs(60),
        }
    }
}

/// What is wrong with a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The node does not have it (or does not give it in time).
    Missing(String),
    /// Its bytes do not hash to its CID.
    Corrupt,
    /// It hashes right but is not what pxfs wrote there (does not decode, wrong key).
    Invalid(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Missing(why) => write!(f, "missing ({why})"),
            Problem::Corrupt => f.write_str("corrupt (its bytes do not match its CID)"),
            Problem::Invalid(why) => write!(f, "unreadable ({why})"),
        }
    }
}

/// What was damaged: a file's content, or a directory page (the entries it holds cannot be
/// named or checked), or the hard-link table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    File,
    Directory,
    LinkTable,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// `/`-joined from the sNFT's root (`/` for the root itself).
    pub path: String,
    pub part: Part,
    /// The damaged block (the first one found, for a file).
    pub cid: String,
    pub problem: Problem,
    /// A file's content object, whose cached chunks can give a lost leaf back.
    pub object: Option<String>,
    /// Every damaged block found (what a repair puts back).
    pub blocks: Vec<DamagedBlock>,
}

/// One damaged block, and for a content leaf where its bytes lie in the stored object
/// (start, length), so that the chunk cache can give them back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedBlock {
    pub cid: String,
    pub leaf: Option<(u64, u64)>,
}

impl DamagedBlock {
    fn node(cid: &str) -> Vec<DamagedBlock> {
        vec![DamagedBlock {
            cid: cid.to_string(),
            leaf: None,
        }]
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.part {
            Part::File => write!(f, "{}: block {} {}", self.path, self.cid, self.problem),
            Part::Directory => write!(
                f,
                "{} (directory): page {} {}; the entries it holds are not checked",
                self.path, self.cid, self.problem
            ),
            Part::LinkTable => write!(
                f,
                "the hard-link table: page {} {}; files with several names are not checked",
                self.cid, self.problem
            ),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: u64,
    pub directories: u64,
    /// Blocks asked for (pages and content), and their bytes.
    pub blocks: u64,
    pub bytes: u64,
    pub missing: u64,
    pub corrupt: u64,
    /// Blocks that hash right but do not decode as what pxfs wrote.
    pub invalid: u64,
    /// Files (and directories) reported damaged.
    pub damaged: u64,
    pub elapsed: Duration,
}

impl Summary {
    pub fn intact(&self) -> bool {
        self.damaged == 0 && self.missing == 0 && self.corrupt == 0 && self.invalid == 0
    }
}

pub enum Event<'a> {
    Damaged(&'a Damage),
    Progress(&'a Summary),
}

/// Why a check could not be done (as opposed to damage found).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("the node cannot be asked: {0}")]
    Node(StorageError),
    #[error("the node does not offer {0}, which checking needs")]
    Unsupported(String),
    #[error("root node {cid} cannot be read: {reason}")]
    Root { cid: String, reason: String },
}

/// One block's outcome.
type Got<T> = Result<Result<T, Problem>, CheckError>;

fn classify<T>(r: Result<T, IntegrityError>) -> Got<T> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(IntegrityError::Corrupt { .. }) => Ok(Err(Problem::Corrupt)),
        Err(IntegrityError::Invalid { reason, .. }) => Ok(Err(Problem::Invalid(reason))),
        Err(IntegrityError::TooLarge { limit, .. }) => {
            Ok(Err(Problem::Invalid(format!("larger than {limit} bytes"))))
        }
        Err(IntegrityError::Storage(e)) => storage(e),
    }
}

fn storage<T>(e: StorageError) -> Got<T> {
    match e {
        StorageError::Node {
            path,
            status: 404 | 405 | 501,
            ..
        }
        | StorageError::Unsupported { path, .. } => Err(CheckError::Unsupported(path)),
        // The node's definite answer about this block: it does not have it.
        StorageError::Node { message, .. } => Ok(Err(Problem::Missing(message))),
        StorageError::Timeout { after, .. } => Ok(Err(Problem::Missing(format!(
            "not given within {} s",
            after.as_secs()
        )))),
        other => Err(CheckError::Node(other)),
    }
}

/// What one file's content check found.
#[derive(Default)]
struct Found {
    blocks: u64,
    bytes: u64,
    /// The first damaged block and its problem.
    damage: Option<(String, Problem)>,
    /// Every damaged block.
    damaged: Vec<DamagedBlock>,
    missing: u64,
    corrupt: u64,
    invalid: u64,
}

impl Found {
    fn add(&mut self, cid: &Cid, problem: Problem, leaf: Option<(u64, u64)>) {
        self.damaged.push(DamagedBlock {
            cid: cid.to_string(),
            leaf,
        });
        match problem {
            Problem::Missing(_) => self.missing += 1,
            Problem::Corrupt => self.corrupt += 1,
            Problem::Invalid(_) => self.invalid += 1,
        }
        if self.damage.is_none() {
            self.damage = Some((cid.to_string(), problem));
        }
    }
}

/// Node requests, bounded.
struct Asker<'a> {
    node: &'a NodeClient,
    opts: &'a Options,
    permits: tokio::sync::Semaphore,
}

impl Asker<'_> {
    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, IntegrityError>>,
    ) -> Result<T, IntegrityError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        match tokio::time::timeout(self.opts.block_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(IntegrityError::Storage(StorageError::Timeout {
                path: "block".into(),
                after: self.opts.block_timeout,
            })),
        }
    }

    /// A page or root node, checked against its CID.
    async fn node(&self, cid: &str) -> Got<bytes::Bytes> {
        classify(
            self.timed(crate::integrity::object(self.node, cid, MAX_NODE_BYTES))
                .await,
        )
    }

    /// Every block of a content DAG: presence, or bytes checked against the CID. Dag-pb
    /// nodes are always fetched (their links are needed). `start` and `len`: where the
    /// block's bytes lie in the stored object (`len` as its parent declares it).
    fn content<'s>(
        &'s self,
        cid: Cid,
        depth: u32,
        sealed: Option<&'s Sealed>,
        start: u64,
        len: Option<u64>,
    ) -> BoxFuture<'s, Result<Found, CheckError>> {
        Box::pin(async move {
            let mut found = Found::default();
            let leaf = len.map(|l| (start, l));
            match cid.codec() {
                RAW_CODEC if !self.opts.read_data => {
                    let stat = self
                        .timed(async { Ok(self.node.block_stat(&cid.to_string()).await?) })
                        .await;
                    match classify(stat)? {
                        Ok(s) => {
                            found.blocks += 1;
                            found.bytes += s.size;
                        }
                        Err(p) => found.add(&cid, p, leaf),
                    }
                }
                RAW_CODEC => {
                    match classify(self.timed(crate::integrity::block(self.node, &cid)).await)? {
                        Ok(b) => {
                            found.blocks += 1;
                            found.bytes += b.len() as u64;
                            if let Some(Err(p)) = sealed.map(|s| s.open(start, &b)) {
                                found.add(&cid, p, leaf);
                            }
                        }
                        Err(p) => found.add(&cid, p, leaf),
                    }
                }
                DAG_PB_CODEC if depth <= MAX_DAG_DEPTH => {
                    let got = classify(self.timed(crate::integrity::block(self.node, &cid)).await)?;
                    let block = match got {
                        Ok(b) => b,
                        Err(p) => {
                            found.add(&cid, p, None);
                            return Ok(found);
                        }
                    };
                    found.blocks += 1;
                    found.bytes += block.len() as u64;
                    let node = match FileNode::decode(&block) {
                        Ok(n) => n,
                        Err(r) => {
                            found.add(&cid, Problem::Invalid(r.to_string()), None);
                            return Ok(found);
                        }
                    };
                    if sealed.is_some() && node.blocksizes.len() != node.links.len() {
                        found.add(
                            &cid,
                            Problem::Invalid("blocksizes and links differ in number".into()),
                            None,
                        );
                        return Ok(found);
                    }
                    // Where each child's bytes start in the object (for the chunk index).
                    let mut at = start.saturating_add(node.data_len);
                    let mut starts = Vec::with_capacity(node.links.len());
                    for i in 0..node.links.len() {
                        let size = node.blocksizes.get(i).copied();
                        starts.push((at, size));
                        at = at.saturating_add(size.unwrap_or(0));
                    }
                    let children =
                        futures::future::try_join_all(node.links.iter().zip(starts).map(
                            |(l, (from, size))| self.content(*l, depth + 1, sealed, from, size),
                        ))
                        .await?;
                    for c in children {
                        found.blocks += c.blocks;
                        found.bytes += c.bytes;
                        found.missing += c.missing;
                        found.corrupt += c.corrupt;
                        found.invalid += c.invalid;
                        found.damaged.extend(c.damaged);
                        if found.damage.is_none() {
                            found.damage = c.damage;
                        }
                    }
                }
                DAG_PB_CODEC => found.add(
                    &cid,
                    Problem::Invalid("the DAG is deeper than pxfs allows".into()),
                    None,
                ),
                other => found.add(
                    &cid,
                    Problem::Invalid(format!("codec 0x{other:x} is not file content")),
                    None,
                ),
            }
            Ok(found)
        })
    }
}

/// What opening a sealed file's chunks needs: its version key and the stored length.
struct Sealed {
    key: VersionKey,
    total: u64,
}

impl Sealed {
    /// Opens the leaf at `start` (bytes of the stored object) as its chunk.
    fn open(&self, start: u64, leaf: &[u8]) -> Result<(), Problem> {
        let end = start + leaf.len() as u64;
        let last = end == self.total;
        if !start.is_multiple_of(SEALED_CHUNK as u64) || end > self.total {
            return Err(Problem::Invalid(format!(
                "a leaf at byte {start} is not one sealed chunk of a {}-byte object",
                self.total
            )));
        }
        self.key
            .open_chunk(start / SEALED_CHUNK as u64, leaf, last)
            .map(|_| ())
            .map_err(|_| {
                Problem::Invalid(
                    "a sealed chunk does not open with the file's key (changed, moved or cut)"
                        .into(),
                )
            })
    }
}

/// A pending page: the directory's path, and whether it is the link-group table.
struct PendingPage {
    path: Arc<str>,
    cid: String,
    table: bool,
}

enum Done {
    Page(PendingPage, Got<bytes::Bytes>),
    File(Arc<str>, Cid, Result<Found, CheckError>),
}

fn join(dir: &str, name: &[u8]) -> Arc<str> {
    let name = String::from_utf8_lossy(name);
    match dir {
        "/" => format!("/{name}").into(),
        d => format!("{d}/{name}").into(),
    }
}

/// Checks the tree under the v2 root node `root` on `node`, calling `on` for each damage
/// found and now and then with the figures so far.
pub async fn check_tree(
    node: &NodeClient,
    root: &str,
    crypto: &TreeCrypto,
    opts: &Options,
    on: &mut (dyn for<'e> FnMut(Event<'e>) + Send),
) -> Result<Summary, CheckError> {
    let started = Instant::now();
    let asker = Asker {
        node,
        opts,
        permits: tokio::sync::Semaphore::new(opts.concurrency.max(1)),
    };
    let mut sum = Summary::default();
    let report = |sum: &mut Summary, on: &mut (dyn for<'e> FnMut(Event<'e>) + Send), d: Damage| {
        sum.damaged += 1;
        on(Event::Damaged(&d));
    };

    // The root node: without it nothing can be named.
    sum.blocks += 1;
    let read = match asker.node(root).await? {
        Ok(bytes) => {
            sum.bytes += bytes.len() as u64;
            Root::decode_any(&bytes, crypto).map_err(|e| CheckError::Root {
                cid: root.to_string(),
                reason: e.to_string(),
            })?
        }
        Err(p) => {
            count(&mut sum, &p);
            report(
                &mut sum,
                on,
                Damage {
                    path: "/".into(),
                    part: Part::Directory,
                    cid: root.to_string(),
                    problem: p,
                    object: None,
                    blocks: DamagedBlock::node(root),
                },
            );
            sum.elapsed = started.elapsed();
            return Ok(sum);
        }
    };
    let root_node = read.root;

    // The link-group table first (files with several names are checked under each name):
    // its records, by id. Bounded by the number of hard-linked files.
    let mut groups: HashMap<GroupId, (u64, Option<FileContent>)> = HashMap::new();
    let mut pages: Vec<PendingPage> = Vec::new();
    if let Some(t) = &root_node.inodes {
        pages.push(PendingPage {
            path: "/".into(),
            cid: t.clone(),
            table: true,
        });
        while let Some(p) = pages.pop() {
            sum.blocks += 1;
            let got = asker.node(&p.cid).await?;
            match got.and_then(|b| {
                sum.bytes += b.len() as u64;
                page::decode::<InodeRecord>(&b, crypto).map_err(|e| Problem::Invalid(e.to_string()))
            }) {
                Ok(Page::Leaf(records)) => {
                    for r in records {
                        let file = match r.kind {
                            EntryKind::Inode(i) => match i.kind {
                                InodeKind::File { size, content } => (size, content),
                                _ => (0, None),
                            },
                            _ => (0, None),
                        };
                        groups.insert(r.id, file);
                    }
                }
                Ok(Page::Branch(b)) => pages.extend(b.children.into_iter().map(|c| PendingPage {
                    path: p.path.clone(),
                    cid: c.node,
                    table: true,
                })),
                Err(problem) => {
                    count(&mut sum, &problem);
                    report(
                        &mut sum,
                        on,
                        Damage {
                            path: "/".into(),
                            part: Part::LinkTable,
                            blocks: DamagedBlock::node(&p.cid),
                            cid: p.cid.clone(),
                            problem,
                            object: None,
                        },
                    );
                }
            }
        }
    }

    pages.push(PendingPage {
        path: "/".into(),
        cid: root_node.dir.clone(),
        table: false,
    });
    sum.directories += 1;
    let mut files: VecDeque<(Arc<str>, u64, Option<FileContent>)> = VecDeque::new();
    let mut intact: HashSet<Cid> = HashSet::new();
    let mut damaged: HashMap<Cid, (String, Problem, Vec<DamagedBlock>)> = HashMap::new();
    let mut running: FuturesUnordered<BoxFuture<'_, Done>> = FuturesUnordered::new();
    let width = opts.concurrency.max(1) * 2;
    let mut last_progress = Instant::now();
    loop {
        while running.len() < width {
            // The files of the pages already read go first: the walk stays narrow.
            if let Some((path, size, content)) = files.pop_front() {
                sum.files += 1;
                let c = match content {
                    None => continue,
                    Some(FileContent::Whole(c)) => c,
                    // Format 3's chunk tables (docs/FORMAT.md §13) are walked by a later
                    // version of check: until then they are reported, never passed unread.
                    Some(FileContent::Chunks(top)) => {
                        sum.invalid += 1;
                        report(
                            &mut sum,
                            on,
                            Damage {
                                path: path.to_string(),
                                part: Part::File,
                                cid: top,
                                problem: Problem::Invalid(
                                    "chunked content (format 3) is not checked by this version"
                                        .into(),
                                ),
                                object: None,
                                blocks: Vec::new(),
                            },
                        );
                        continue;
                    }
                };
                let cid = match crate::integrity::parse(&c.cid) {
                    Ok(cid) => cid,
                    Err(e) => {
                        sum.invalid += 1;
                        report(
                            &mut sum,
                            on,
                            Damage {
                                path: path.to_string(),
                                part: Part::File,
                                cid: c.cid.clone(),
                                problem: Problem::Invalid(e.to_string()),
                                object: None,
                                blocks: Vec::new(),
                            },
                        );
                        continue;
                    }
                };
                if intact.contains(&cid) {
                    continue;
                }
                if let Some((block, problem, blocks)) = damaged.get(&cid) {
                    let d = Damage {
                        path: path.to_string(),
                        part: Part::File,
                        cid: block.clone(),
                        problem: problem.clone(),
                        object: Some(cid.to_string()),
                        blocks: blocks.clone(),
                    };
                    report(&mut sum, on, d);
                    continue;
                }
                let sealed = match (crypto, &c.salt) {
                    (TreeCrypto::Sealed(keys), Some(salt)) if opts.read_data => Some(Sealed {
                        key: VersionKey::new(keys, salt),
                        total: sealed_len(size),
                    }),
                    _ => None,
                };
                // The stored object's length: what a single-block file's block holds.
                let stored = if c.salt.is_some() {
                    sealed_len(size)
                } else {
                    size
                };
                let asker = &asker;
                running.push(Box::pin(async move {
                    let found = asker
                        .content(cid, 0, sealed.as_ref(), 0, Some(stored))
                        .await;
                    Done::File(path, cid, found)
                }));
            } else if let Some(p) = pages.pop() {
                let asker = &asker;
                running.push(Box::pin(async move {
                    let got = asker.node(&p.cid).await;
                    Done::Page(p, got)
                }));
            } else {
                break;
            }
        }
        let Some(done) = running.next().await else {
            break;
        };
        match done {
            Done::Page(p, got) => {
                sum.blocks += 1;
                let decoded = got?.and_then(|b| {
                    sum.bytes += b.len() as u64;
                    page::decode::<Entry>(&b, crypto).map_err(|e| Problem::Invalid(e.to_string()))
                });
                let page = match decoded {
                    Ok(page) => page,
                    Err(problem) => {
                        count(&mut sum, &problem);
                        let d = Damage {
                            path: p.path.to_string(),
                            part: if p.table {
                                Part::LinkTable
                            } else {
                                Part::Directory
                            },
                            blocks: DamagedBlock::node(&p.cid),
                            cid: p.cid.clone(),
                            problem,
                            object: None,
                        };
                        report(&mut sum, on, d);
                        continue;
                    }
                };
                match page {
                    Page::Branch(b) => {
                        pages.extend(b.children.into_iter().map(|c| PendingPage {
                            path: p.path.clone(),
                            cid: c.node,
                            table: false,
                        }));
                    }
                    Page::Leaf(entries) => {
                        for e in entries {
                            let path = join(&p.path, e.name.as_bytes());
                            match e.kind {
                                EntryKind::Inode(i) => match i.kind {
                                    InodeKind::File { size, content } => {
                                        files.push_back((path, size, content))
                                    }
                                    InodeKind::Dir { top } => {
                                        sum.directories += 1;
                                        pages.push(PendingPage {
                                            path,
                                            cid: top,
                                            table: false,
                                        });
                                    }
                                    _ => {}
                                },
                                EntryKind::Link(g) => {
                                    let (size, content) =
                                        groups.get(&g).cloned().unwrap_or_default();
                                    files.push_back((path, size, content));
                                }
                                EntryKind::Unknown(_) => {}
                            }
                        }
                    }
                }
            }
            Done::File(path, cid, found) => {
                let found = found?;
                sum.blocks += found.blocks;
                sum.bytes += found.bytes;
                sum.missing += found.missing;
                sum.corrupt += found.corrupt;
                sum.invalid += found.invalid;
                match found.damage {
                    Some((block, problem)) => {
                        if damaged.len() < REMEMBERED {
                            let blocks = found.damaged.clone();
                            damaged.insert(cid, (block.clone(), problem.clone(), blocks));
                        }
                        let d = Damage {
                            path: path.to_string(),
                            part: Part::File,
                            cid: block,
                            problem,
                            object: Some(cid.to_string()),
                            blocks: found.damaged,
                        };
                        report(&mut sum, on, d);
                    }
                    None if intact.len() < REMEMBERED => {
                        intact.insert(cid);
                    }
                    None => {}
                }
            }
        }
        if last_progress.elapsed() >= Duration::from_millis(200) {
            last_progress = Instant::now();
            sum.elapsed = started.elapsed();
            on(Event::Progress(&sum));
        }
    }
    sum.elapsed = started.elapsed();
    Ok(sum)
}

fn count(sum: &mut Summary, p: &Problem) {
    match p {
        Problem::Missing(_) => sum.missing += 1,
        Problem::Corrupt => sum.corrupt += 1,
        Problem::Invalid(_) => sum.invalid += 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::seal::{ContentSalt, PLAIN_CHUNK};
    use crate::format::{DataKey, TreeKeys};

    fn sealed(total: u64) -> Sealed {
        let keys = TreeKeys::derive(&DataKey::from_bytes([9; 32]));
        Sealed {
            key: VersionKey::new(&keys, &ContentSalt([3; 32])),
            total,
        }
    }

    #[test]
    fn a_chunk_opens_only_at_its_own_position_with_its_end_flag() {
        let s = sealed(0);
        let first = s.key.seal_chunk(0, &[1; PLAIN_CHUNK], false).unwrap();
        let last = s.key.seal_chunk(1, b"tail", true).unwrap();
        let total = (first.len() + last.len()) as u64;
        let s = Sealed { total, ..s };
        let at = SEALED_CHUNK as u64;
        assert_eq!(s.open(0, &first), Ok(()));
        assert_eq!(s.open(at, &last), Ok(()));
        // Swapped, or the object cut after the first chunk (its end flag is then wrong).
        assert!(matches!(s.open(0, &last), Err(Problem::Invalid(_))));
        assert!(matches!(s.open(at, &first), Err(Problem::Invalid(_))));
        let cut = Sealed {
            total: first.len() as u64,
            ..sealed(0)
        };
        assert!(matches!(cut.open(0, &first), Err(Problem::Invalid(_))));
        // Not on a chunk boundary.
        assert!(matches!(s.open(7, &last), Err(Problem::Invalid(_))));
    }
}
