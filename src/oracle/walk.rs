//! Measuring trees (docs/FORMAT.md §7): walk every object reachable from a set of roots
//! and add up the stored size of each distinct CID once: every directory manifest or v2
//! node (its bytes, so names and xattr values count) and every file's content. A v2 tree is
//! walked through its nodes' public `nodes` and `data` lists, so an encrypted tree is
//! measured without its key. Sizes are measured from the objects, never taken from what a
//! manifest declares; the claimed usage in the document is reported, never trusted.
//! Format 3 (§12–§14) adds chunk tables and a history table to the nodes followed: a
//! chunk is content (a raw block), a hole has no object and costs nothing, and the kept
//! versions hang off the root, so they are measured with the current tree, each distinct
//! object once.
//!
//! The walk is parallel: up to [`Limits::walk_concurrency`] objects are fetched at a time,
//! and an object already known (measured earlier in this request, or by an earlier request:
//! the [`Memo`]) is not fetched again, so a subtree whose CID did not change costs no node
//! request. Several roots (the documents published since the last sync, see `history`) are
//! loaded together, then measured one after the other by difference: the second root's
//! figure is the first's plus what the second added and minus what it dropped (a reference
//! count per CID), so measuring many similar roots costs what they differ by.
//!
//! What is verified: every block that is read (manifests, and the dag-pb nodes of content
//! DAGs) is checked against its CID, so neither a forged manifest nor a lying node can
//! change what a DAG links to. A content DAG's size is the sum of its nodes' inline data and
//! of its raw leaves' sizes, read with `block/stat` (the block the node holds under that
//! content address; the node checked its hash when it stored it). A CID the node cannot
//! provide fails the measurement: missing content is never counted as zero.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use ipld_core::cid::Cid;

use super::memo::{Known, Memo};
use crate::format::v1::manifest::EntryKind;
use crate::integrity::dagpb::FileNode;
use crate::integrity::{DAG_PB_CODEC, MAX_DAG_DEPTH, RAW_CODEC};
use crate::storage::NodeClient;

/// The limits live with the configuration that sets them (`[oracle]`).
pub use crate::config::OracleLimits as Limits;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUsage {
    pub token_id: u64,
    /// Stored bytes of every distinct object reachable from the root (manifests + content);
    /// over a history, the largest such figure among the measured roots.
    pub usage: u64,
    /// Of the current root's figure, the bytes of the manifests / tree nodes.
    pub manifest_bytes: u64,
    /// What the usage document claimed.
    pub claimed_usage: u64,
    /// Distinct file content objects of the current root.
    pub files: u64,
    /// Node requests made and bytes fetched.
    pub objects_fetched: u64,
    pub bytes_fetched: u64,
    /// File entries whose declared size differs from their measured content (in the
    /// manifests fetched by this measurement).
    pub size_mismatches: u64,
    /// The current root (what the answer records as synced).
    pub root: String,
    /// Usage documents read and distinct roots measured.
    pub documents: u64,
    pub roots: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot load the usage document under {btns}: {source}")]
    Usage {
        btns: String,
        source: crate::btns::UsageError,
    },
    #[error("cannot load manifest {cid}: {reason}")]
    Manifest { cid: String, reason: String },
    #[error("cannot measure object {cid}: {reason}")]
    Object { cid: String, reason: String },
    #[error("object {cid} is larger than {limit} bytes, the oracle's cap on one document")]
    TooLarge { cid: String, limit: u64 },
    #[error("the node cannot provide {cid} (within {secs} s): {reason}")]
    Missing {
        cid: String,
        secs: u64,
        reason: String,
    },
    #[error("the node does not offer {command}, which measuring needs: {reason}")]
    Unsupported { command: String, reason: String },
    #[error("unverifiable: measuring the tree needs more than {limit} (see the oracle limits)")]
    Limit { limit: String },
    #[error("refused: {reason}")]
    History { reason: String },
}

/// Measures the tree under the root `root` alone (token id and claim left at 0), without
/// a memo.
pub async fn measure_root(
    node: &NodeClient,
    root: &str,
    limits: &Limits,
) -> Result<TreeUsage, WalkError> {
    let memo = Memo::in_memory(limits.memo_entries);
    measure_roots(node, &[root.to_string()], limits, &memo).await
}

/// Measures each of `roots` (oldest first; the last is the current one) and reports the
/// largest figure. Objects known to `memo` are not fetched; what is fetched is added to it.
pub async fn measure_roots(
    node: &NodeClient,
    roots: &[String],
    limits: &Limits,
    memo: &Memo,
) -> Result<TreeUsage, WalkError> {
    let parsed = roots
        .iter()
        .map(|r| parse_cid(r))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(current) = parsed.last().copied() else {
        return Err(WalkError::History {
            reason: "no root to measure".into(),
        });
    };
    let fetcher = Fetcher {
        node,
        limits,
        objects: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        permits: tokio::sync::Semaphore::new(limits.walk_concurrency.max(1)),
    };
    // The current root must be measured whole. A past root whose objects the node no
    // longer holds (a commit unpins what it superseded) is not counted: the node no
    // longer stores it.
    let mut loaded = Loaded {
        known: HashMap::new(),
        declared: Vec::new(),
    };
    load(&fetcher, current, memo, &mut loaded).await?;
    let mut measured = vec![current];
    for root in parsed.iter().rev().skip(1) {
        match load(&fetcher, *root, memo, &mut loaded).await {
            Ok(()) => measured.push(*root),
            Err(WalkError::Missing { cid, reason, .. }) => {
                tracing::info!(root = %root, missing = cid, reason, "a past root is no longer on the node; not counted");
            }
            Err(e) => return Err(e),
        }
    }
    measured.reverse();
    memo.remember(&loaded.known);

    let mut tally = Tally::new(&loaded.known);
    let mut best = 0u64;
    let mut previous: Option<Cid> = None;
    for root in &measured {
        match previous {
            None => tally.tree(*root, 1)?,
            Some(p) => tally.diff(p, *root)?,
        }
        best = best.max(tally.total);
        previous = Some(*root);
    }
    // The current root's own parts, for the log and the adapter's answer.
    let mut own = Tally::new(&loaded.known);
    own.tree(current, 1)?;
    let mismatches = loaded
        .declared
        .iter()
        .filter(|(content, declared)| {
            matches!(loaded.known.get(content), Some(Known::Content(size)) if size != declared)
        })
        .count() as u64;
    Ok(TreeUsage {
        token_id: 0,
        usage: best,
        manifest_bytes: own.node_bytes,
        claimed_usage: 0,
        files: own.contents,
        objects_fetched: fetcher.objects.load(Ordering::Relaxed),
        bytes_fetched: fetcher.bytes.load(Ordering::Relaxed),
        size_mismatches: mismatches,
        root: current.to_string(),
        documents: 0,
        roots: measured.len() as u64,
    })
}

/// What loading found: every object reachable from the roots, and the sizes v1 manifests
/// declared for their files (content CID, declared size).
struct Loaded {
    known: HashMap<Cid, Known>,
    declared: Vec<(Cid, u64)>,
}

enum Job {
    Node(Cid),
    Content(Cid),
}

/// Fetches every object reachable from `root` that is neither in `loaded` (whose entries'
/// subtrees are always whole there) nor in `memo`, up to `walk_concurrency` at a time. On
/// failure, what this call added to `loaded` is taken out again.
async fn load(
    fetcher: &Fetcher<'_>,
    root: Cid,
    memo: &Memo,
    loaded: &mut Loaded,
) -> Result<(), WalkError> {
    let mut added: Vec<Cid> = Vec::new();
    let result = load_into(fetcher, root, memo, loaded, &mut added).await;
    if result.is_err() {
        for cid in added {
            loaded.known.remove(&cid);
        }
    }
    result
}

async fn load_into(
    fetcher: &Fetcher<'_>,
    root: Cid,
    memo: &Memo,
    loaded: &mut Loaded,
    added: &mut Vec<Cid>,
) -> Result<(), WalkError> {
    let mut seen: HashSet<Cid> = HashSet::new();
    let mut queue: Vec<Job> = vec![Job::Node(root)];
    seen.insert(root);
    let mut running = FuturesUnordered::new();
    // Wider than the node requests in flight (bounded by the fetcher's permits) so that
    // memo hits and DAG fan-out keep them busy.
    let width = fetcher.limits.walk_concurrency.max(1) * 2;
    loop {
        while running.len() < width {
            let Some(job) = queue.pop() else { break };
            let cid = match &job {
                Job::Node(c) | Job::Content(c) => *c,
            };
            if loaded.known.contains_key(&cid) {
                continue;
            }
            if let Some(k) = memo.get(&cid) {
                enqueue_children(&k, &mut seen, &mut queue);
                loaded.known.insert(cid, k);
                added.push(cid);
                continue;
            }
            running.push(async move {
                let found = match job {
                    Job::Node(cid) => fetcher.tree_node(&cid).await,
                    Job::Content(cid) => fetcher
                        .content_size(&cid, 0)
                        .await
                        .map(|size| (Known::Content(size), Vec::new())),
                };
                found.map(|(k, d)| (cid, k, d))
            });
        }
        let Some(done) = running.next().await else {
            break;
        };
        let (cid, k, decl) = done?;
        enqueue_children(&k, &mut seen, &mut queue);
        loaded.declared.extend(decl);
        loaded.known.insert(cid, k);
        added.push(cid);
    }
    Ok(())
}

fn enqueue_children(k: &Known, seen: &mut HashSet<Cid>, queue: &mut Vec<Job>) {
    if let Known::Node { nodes, data, .. } = k {
        for n in nodes.iter() {
            if seen.insert(*n) {
                queue.push(Job::Node(*n));
            }
        }
        for d in data.iter() {
            if seen.insert(*d) {
                queue.push(Job::Content(*d));
            }
        }
    }
}

/// A reference count per object of the tree being measured and the total size of the
/// objects counted at least once.
struct Tally<'k> {
    known: &'k HashMap<Cid, Known>,
    counts: HashMap<Cid, i64>,
    total: u64,
    node_bytes: u64,
    contents: u64,
}

impl<'k> Tally<'k> {
    fn new(known: &'k HashMap<Cid, Known>) -> Tally<'k> {
        Tally {
            known,
            counts: HashMap::new(),
            total: 0,
            node_bytes: 0,
            contents: 0,
        }
    }

    fn get(&self, cid: &Cid) -> Result<&'k Known, WalkError> {
        self.known.get(cid).ok_or_else(|| WalkError::Object {
            cid: cid.to_string(),
            reason: "not loaded (a bug in the walk)".into(),
        })
    }

    /// Counts (`sign` 1) or uncounts (-1) one reference to one object.
    fn object(&mut self, cid: Cid, sign: i64) -> Result<(), WalkError> {
        let known = self.get(&cid)?;
        let (size, is_node) = match known {
            Known::Node { size, .. } => (*size, true),
            Known::Content(size) => (*size, false),
        };
        let count = self.counts.entry(cid).or_default();
        let before = *count;
        *count += sign;
        let after = *count;
        if after == 0 {
            self.counts.remove(&cid);
        }
        let delta = |t: &mut u64, by: u64| {
            if before == 0 && after > 0 {
                *t = t.saturating_add(by);
            } else if before > 0 && after == 0 {
                *t = t.saturating_sub(by);
            }
        };
        delta(&mut self.total, size);
        if is_node {
            delta(&mut self.node_bytes, size);
        } else {
            delta(&mut self.contents, 1);
        }
        Ok(())
    }

    /// Counts or uncounts every reference in the tree under `root`.
    fn tree(&mut self, root: Cid, sign: i64) -> Result<(), WalkError> {
        let mut stack = vec![root];
        while let Some(cid) = stack.pop() {
            self.object(cid, sign)?;
            if let Known::Node { nodes, data, .. } = self.get(&cid)? {
                for d in data.iter() {
                    self.object(*d, sign)?;
                }
                stack.extend(nodes.iter().copied());
            }
        }
        Ok(())
    }

    /// Turns the count of the tree `old` into the count of the tree `new`, going down only
    /// where they differ: children both have are left as they are, the others are paired up
    /// in order and compared the same way.
    fn diff(&mut self, old: Cid, new: Cid) -> Result<(), WalkError> {
        let mut stack = vec![(old, new)];
        while let Some((o, n)) = stack.pop() {
            if o == n {
                continue;
            }
            let (ok, nk) = (self.get(&o)?, self.get(&n)?);
            let (
                Known::Node {
                    nodes: on,
                    data: od,
                    ..
                },
                Known::Node {
                    nodes: nn,
                    data: nd,
                    ..
                },
            ) = (ok, nk)
            else {
                self.tree(o, -1)?;
                self.tree(n, 1)?;
                continue;
            };
            self.object(n, 1)?;
            self.object(o, -1)?;
            for d in nd.iter() {
                self.object(*d, 1)?;
            }
            for d in od.iter() {
                self.object(*d, -1)?;
            }
            let mut left: HashMap<Cid, usize> = HashMap::new();
            for c in on.iter() {
                *left.entry(*c).or_default() += 1;
            }
            let mut added = Vec::new();
            for c in nn.iter() {
                match left.get_mut(c) {
                    Some(k) if *k > 0 => *k -= 1,
                    _ => added.push(*c),
                }
            }
            let mut removed = Vec::new();
            for c in on.iter() {
                if let Some(k) = left.get_mut(c)
                    && *k > 0
                {
                    *k -= 1;
                    removed.push(*c);
                }
            }
            let pairs = removed.len().min(added.len());
            for i in 0..pairs {
                stack.push((removed[i], added[i]));
            }
            for c in &added[pairs..] {
                self.tree(*c, 1)?;
            }
            for c in &removed[pairs..] {
                self.tree(*c, -1)?;
            }
        }
        Ok(())
    }
}

/// The tree nodes the walk follows: format 2's (§3) and format 3's (§12.1: the root that
/// may carry history, chunk tables, history tables). All share the envelope, so a format-3
/// tree is measured as a format-2 one is: each distinct CID its lists reach, once (§14.5).
const TREE_NODES: [&str; 6] = [
    crate::format::SCHEMA_ROOT,
    crate::format::SCHEMA_DIR,
    crate::format::SCHEMA_INODES,
    crate::format::SCHEMA_ROOT3,
    crate::format::SCHEMA_CHUNKS,
    crate::format::SCHEMA_HISTORY,
];

/// The CIDs a v2 or v3 node refers to (docs/FORMAT.md §3.1): its `nodes` and its `data`.
fn v2_lists(cid: &Cid, bytes: &[u8]) -> Result<(Vec<Cid>, Vec<Cid>), WalkError> {
    let bad = |reason: String| WalkError::Manifest {
        cid: cid.to_string(),
        reason,
    };
    let (schema, lists) = crate::format::envelope::public(bytes).map_err(|e| bad(e.to_string()))?;
    if !TREE_NODES.contains(&schema.as_str()) {
        return Err(bad(format!("schema {schema:?} is not a pxfs tree node")));
    }
    let parse = |list: Vec<String>| {
        list.iter()
            .map(|c| parse_cid(c))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((parse(lists.nodes)?, parse(lists.data)?))
}

/// The CIDs a v1 manifest refers to: (directories, file contents, declared file sizes).
type V1Lists = (Vec<Cid>, Vec<Cid>, Vec<(Cid, u64)>);

fn v1_lists(cid: &Cid, bytes: &[u8]) -> Result<V1Lists, WalkError> {
    let manifest =
        crate::format::v1::manifest::Manifest::parse(bytes).map_err(|e| WalkError::Manifest {
            cid: cid.to_string(),
            reason: e.to_string(),
        })?;
    let (mut dirs, mut files, mut declared) = (Vec::new(), Vec::new(), Vec::new());
    for entry in manifest.entries {
        match entry.kind {
            EntryKind::File => {
                let Some(content) = entry.cid.as_deref() else {
                    if entry.size != 0 {
                        return Err(WalkError::Manifest {
                            cid: cid.to_string(),
                            reason: format!(
                                "file {:?} declares {} bytes but has no cid",
                                entry.name, entry.size
                            ),
                        });
                    }
                    continue;
                };
                let content = parse_cid(content)?;
                files.push(content);
                declared.push((content, entry.size));
            }
            EntryKind::Dir => {
                let Some(child) = entry.cid.as_deref() else {
                    return Err(WalkError::Manifest {
                        cid: cid.to_string(),
                        reason: format!("directory entry {:?} has no cid", entry.name),
                    });
                };
                dirs.push(parse_cid(child)?);
            }
            // Names without content: their bytes are in the manifest.
            EntryKind::Symlink
            | EntryKind::Fifo
            | EntryKind::Socket
            | EntryKind::Chardev
            | EntryKind::Blockdev => {}
            // It may or may not reference content: refuse rather than guess.
            EntryKind::Unknown => {
                return Err(WalkError::Manifest {
                    cid: cid.to_string(),
                    reason: format!("entry {:?} is of an unknown kind", entry.name),
                });
            }
        }
    }
    Ok((dirs, files, declared))
}

pub(super) fn parse_cid(s: &str) -> Result<Cid, WalkError> {
    s.parse().map_err(|e| WalkError::Object {
        cid: s.chars().take(128).collect(),
        reason: format!("not a CID: {e}"),
    })
}

/// Node requests of one measurement, counted against its limits. Shared by the fetches in
/// flight.
struct Fetcher<'a> {
    node: &'a NodeClient,
    limits: &'a Limits,
    objects: AtomicU64,
    bytes: AtomicU64,
    /// One per node request in flight, whatever asks: tree nodes, content sizes, DAG nodes.
    permits: tokio::sync::Semaphore,
}

impl Fetcher<'_> {
    fn count_object(&self) -> Result<(), WalkError> {
        if self.objects.fetch_add(1, Ordering::Relaxed) + 1 > self.limits.max_objects {
            return Err(WalkError::Limit {
                limit: format!("{} node requests", self.limits.max_objects),
            });
        }
        Ok(())
    }

    fn count_bytes(&self, n: usize) -> Result<(), WalkError> {
        if self.bytes.fetch_add(n as u64, Ordering::Relaxed) + n as u64 > self.limits.max_bytes {
            return Err(WalkError::Limit {
                limit: format!("{} bytes fetched", self.limits.max_bytes),
            });
        }
        Ok(())
    }

    fn failed(&self, cid: &Cid, e: crate::storage::StorageError) -> WalkError {
        match &e {
            crate::storage::StorageError::Node {
                path,
                status: 404 | 405 | 501,
                ..
            } => WalkError::Unsupported {
                command: path.clone(),
                reason: e.to_string(),
            },
            _ => self.missing(cid, e.to_string()),
        }
    }

    fn missing(&self, cid: &Cid, reason: String) -> WalkError {
        WalkError::Missing {
            cid: cid.to_string(),
            secs: self.limits.object_timeout.as_secs(),
            reason,
        }
    }

    fn bad(&self, cid: &Cid, reason: &str) -> WalkError {
        WalkError::Object {
            cid: cid.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A tree node or v1 manifest: its size and what it refers to.
    async fn tree_node(&self, cid: &Cid) -> Result<(Known, Vec<(Cid, u64)>), WalkError> {
        let bytes = self.read_object(cid).await?;
        let size = bytes.len() as u64;
        if crate::format::schema_of(&bytes).as_deref() == Some(crate::format::v1::manifest::SCHEMA)
        {
            let (nodes, data, declared) = v1_lists(cid, &bytes)?;
            return Ok((Known::node(size, nodes, data), declared));
        }
        // Format v2: the node's public lists; sealed bodies are never needed.
        let (nodes, data) = v2_lists(cid, &bytes)?;
        Ok((Known::node(size, nodes, data), Vec::new()))
    }

    /// The whole bytes of a manifest or tree node, every block checked against its CID,
    /// at most `max_object_bytes`.
    async fn read_object(&self, cid: &Cid) -> Result<Bytes, WalkError> {
        self.count_object()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.bad(cid, "closed"))?;
        let text = cid.to_string();
        let cap = self.limits.max_object_bytes;
        let got = tokio::time::timeout(
            self.limits.object_timeout,
            crate::integrity::object(self.node, &text, cap),
        )
        .await
        .map_err(|_| self.missing(cid, "timed out".into()))?;
        let data = got.map_err(|e| match e {
            crate::integrity::IntegrityError::Storage(s) => self.failed(cid, s),
            crate::integrity::IntegrityError::TooLarge { cid, limit } => {
                WalkError::TooLarge { cid, limit }
            }
            other => WalkError::Object {
                cid: text.clone(),
                reason: other.to_string(),
            },
        })?;
        self.count_bytes(data.len())?;
        Ok(data)
    }

    /// One block, fetched and checked against its CID.
    async fn block(&self, cid: &Cid) -> Result<Bytes, WalkError> {
        self.count_object()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.bad(cid, "closed"))?;
        let text = cid.to_string();
        let data = tokio::time::timeout(self.limits.object_timeout, self.node.block_get(&text))
            .await
            .map_err(|_| self.missing(cid, "timed out".into()))?
            .map_err(|e| self.failed(cid, e))?;
        self.count_bytes(data.len())?;
        crate::integrity::check(cid, &data).map_err(|e| WalkError::Object {
            cid: text,
            reason: e.to_string(),
        })?;
        Ok(data)
    }

    /// The size of a raw block as the node holds it under its content address.
    async fn raw_size(&self, cid: &Cid) -> Result<u64, WalkError> {
        self.count_object()?;
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.bad(cid, "closed"))?;
        let text = cid.to_string();
        let stat = tokio::time::timeout(self.limits.object_timeout, self.node.block_stat(&text))
            .await
            .map_err(|_| self.missing(cid, "timed out".into()))?
            .map_err(|e| self.failed(cid, e))?;
        Ok(stat.size)
    }

    /// The stored size of a content object (what `cat` returns), measured from its DAG.
    fn content_size<'s>(
        &'s self,
        cid: &'s Cid,
        depth: u32,
    ) -> futures::future::BoxFuture<'s, Result<u64, WalkError>> {
        Box::pin(async move {
            match cid.codec() {
                RAW_CODEC => self.raw_size(cid).await,
                DAG_PB_CODEC => {
                    if depth > MAX_DAG_DEPTH {
                        return Err(self.bad(cid, "the DAG is deeper than pxfs allows"));
                    }
                    let block = self.block(cid).await?;
                    let node = FileNode::decode(&block).map_err(|r| self.bad(cid, r))?;
                    if !node.blocksizes.is_empty() && node.blocksizes.len() != node.links.len() {
                        return Err(self.bad(cid, "blocksizes and links differ in number"));
                    }
                    // The children of one node are measured together.
                    let children = futures::future::try_join_all(
                        node.links
                            .iter()
                            .map(|link| self.content_size(link, depth + 1)),
                    )
                    .await?;
                    // Bytes outside the structure and the data (link names, unknown
                    // fields) are stored too: they count.
                    let mut size = node.data_len.saturating_add(node.extra);
                    for (i, (link, child)) in node.links.iter().zip(&children).enumerate() {
                        if let Some(declared) = node.blocksizes.get(i)
                            && declared != child
                        {
                            tracing::warn!(
                                parent = %cid,
                                child = %link,
                                declared,
                                measured = child,
                                "a DAG node's blocksize disagrees with its child; the measured size counts"
                            );
                        }
                        size = size.saturating_add(*child);
                    }
                    if let Some(declared) = node.filesize
                        && node.extra == 0
                        && declared != size
                    {
                        tracing::warn!(
                            cid = %cid,
                            declared,
                            measured = size,
                            "a DAG's filesize disagrees with its content; the measured size counts"
                        );
                    }
                    Ok(size)
                }
                other => Err(self.bad(
                    cid,
                    &format!("codec 0x{other:x} is not a pxfs object (raw or dag-pb)"),
                )),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        parse_cid(&crate::format::store::raw_cid(&[n])).unwrap()
    }

    fn tree() -> HashMap<Cid, Known> {
        // root1 -> {a -> {f1, f2}, b -> {f2}}; root2 -> {a, b' -> {f3}}
        let mut k = HashMap::new();
        k.insert(cid(10), Known::Content(100));
        k.insert(cid(11), Known::Content(1000));
        k.insert(cid(12), Known::Content(7));
        k.insert(cid(1), Known::node(10, vec![], vec![cid(10), cid(11)]));
        k.insert(cid(2), Known::node(20, vec![], vec![cid(11)]));
        k.insert(cid(3), Known::node(30, vec![], vec![cid(12)]));
        k.insert(cid(100), Known::node(1, vec![cid(1), cid(2)], vec![]));
        k.insert(cid(101), Known::node(2, vec![cid(1), cid(3)], vec![]));
        k
    }

    #[test]
    fn a_diff_gives_the_same_figure_as_counting_the_new_tree_from_scratch() {
        let known = tree();
        let mut fresh = Tally::new(&known);
        fresh.tree(cid(101), 1).unwrap();
        assert_eq!(fresh.total, 2 + 10 + 100 + 1000 + 30 + 7);
        let mut diffed = Tally::new(&known);
        diffed.tree(cid(100), 1).unwrap();
        assert_eq!(
            diffed.total,
            1 + 10 + 100 + 1000 + 20,
            "shared content once"
        );
        diffed.diff(cid(100), cid(101)).unwrap();
        assert_eq!(diffed.total, fresh.total);
        assert_eq!(diffed.node_bytes, fresh.node_bytes);
        assert_eq!(diffed.contents, fresh.contents);
        // And back.
        diffed.diff(cid(101), cid(100)).unwrap();
        assert_eq!(diffed.total, 1 + 10 + 100 + 1000 + 20);
    }
}
