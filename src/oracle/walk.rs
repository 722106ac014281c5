//! Measuring a token's tree (docs/FORMAT.md §7): resolve its BTNS name to the usage
//! document, then walk every object reachable from the document's root and add up the
//! stored size of each distinct CID once: every directory manifest or v2 node (its bytes, so
//! names and xattr values count) and every file's content. A v2 tree is walked through its
//! nodes' public `nodes` and `data` lists, so an encrypted tree is measured without its key. Sizes are measured from the objects, never
//! taken from what a manifest declares; the claimed usage in the document is reported, never
//! trusted.
//!
//! What is verified: every block that is read (manifests, and the dag-pb nodes of content
//! DAGs) is fetched with `block/get` and its SHA2-256 checked against its CID, so neither a
//! forged manifest nor a lying node can change what a DAG links to. A content DAG's size is
//! the sum of its nodes' inline data and of its raw leaves' sizes, read with `block/stat`
//! (the block the node holds under that content address; the node checked its hash when it
//! stored it), and each leaf must have the size its parent's `blocksizes` declares. A CID the
//! node cannot provide fails the measurement: missing content is never counted as zero.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use ipld_core::cid::Cid;

use crate::fs::manifest::EntryKind;
use crate::integrity::dagpb::FileNode;
use crate::storage::NodeClient;

use crate::integrity::{DAG_PB_CODEC, MAX_DAG_DEPTH, RAW_CODEC};

/// Bounds on the work one measurement may do; beyond them it fails, never guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Node requests (`block/get` and `block/stat`).
    pub max_objects: u64,
    /// Bytes fetched with `block/get` (manifests and dag-pb nodes).
    pub max_bytes: u64,
    /// Wall time for the whole measurement.
    pub max_time: Duration,
    /// Wall time for one node request: a CID the node cannot provide in this time fails it.
    pub object_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_objects: 1_000_000,
            max_bytes: 1 << 30,
            max_time: Duration::from_secs(600),
            object_timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeUsage {
    pub token_id: u64,
    /// Stored bytes of every distinct object reachable from the root (manifests + content).
    pub usage: u64,
    /// Of `usage`, the bytes of the manifests.
    pub manifest_bytes: u64,
    /// What the usage document claimed.
    pub claimed_usage: u64,
    /// Distinct file content objects.
    pub files: u64,
    /// Node requests made and bytes fetched.
    pub objects_fetched: u64,
    pub bytes_fetched: u64,
    /// File entries whose declared size differs from their measured content.
    pub size_mismatches: u64,
    pub root: String,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("cannot load the usage document under {btns}: {source}")]
    Usage {
        btns: String,
        source: crate::usage::UsageError,
    },
    #[error("cannot load manifest {cid}: {reason}")]
    Manifest { cid: String, reason: String },
    #[error("cannot measure object {cid}: {reason}")]
    Object { cid: String, reason: String },
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
}

/// Resolves `btns` and measures the tree its usage document points at, within `limits`.
pub async fn measure_tree(
    node: &NodeClient,
    btns: &str,
    limits: &Limits,
) -> Result<TreeUsage, WalkError> {
    let work = async {
        let (_doc_cid, doc) =
            crate::usage::resolve(node, btns)
                .await
                .map_err(|source| WalkError::Usage {
                    btns: btns.to_string(),
                    source,
                })?;
        let mut usage = measure_root(node, doc.root(), limits).await?;
        usage.token_id = doc.token_id();
        usage.claimed_usage = doc.usage();
        Ok(usage)
    };
    tokio::time::timeout(limits.max_time, work)
        .await
        .unwrap_or_else(|_| {
            Err(WalkError::Limit {
                limit: format!("{} s of wall time", limits.max_time.as_secs()),
            })
        })
}

/// Measures the tree under the root manifest `root` (token id and claim left at 0).
pub async fn measure_root(
    node: &NodeClient,
    root: &str,
    limits: &Limits,
) -> Result<TreeUsage, WalkError> {
    let mut walk = Walk {
        node,
        limits,
        objects: 0,
        bytes: 0,
        sizes: HashMap::new(),
    };
    let mut counted: HashSet<Cid> = HashSet::new();
    let mut usage = 0u64;
    let mut manifest_bytes = 0u64;
    let mut files = 0u64;
    let mut mismatches = 0u64;
    let mut walked: HashSet<Cid> = HashSet::new();
    let mut pending = vec![parse_cid(root)?];
    while let Some(cid) = pending.pop() {
        if !walked.insert(cid) {
            continue;
        }
        let bytes = walk.read_object(&cid, 0).await?;
        if counted.insert(cid) {
            manifest_bytes += bytes.len() as u64;
            usage += bytes.len() as u64;
        }
        if crate::format::schema_of(&bytes).as_deref() != Some(crate::fs::manifest::SCHEMA) {
            // Format v2: follow the node's public lists; sealed bodies are never needed.
            let (nodes, data) = v2_lists(&cid, &bytes)?;
            pending.extend(nodes);
            for content in data {
                if counted.contains(&content) {
                    continue;
                }
                let measured = walk.content_size(&content, 0).await?;
                counted.insert(content);
                usage += measured;
                files += 1;
            }
            continue;
        }
        let manifest =
            crate::fs::manifest::Manifest::parse(&bytes).map_err(|e| WalkError::Manifest {
                cid: cid.to_string(),
                reason: e.to_string(),
            })?;
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
                    let measured = walk.content_size(&content, 0).await?;
                    if measured != entry.size {
                        mismatches += 1;
                        tracing::warn!(
                            manifest = %cid,
                            name = entry.name,
                            content = %content,
                            declared = entry.size,
                            measured,
                            "a file's declared size disagrees with its content; the measured size counts"
                        );
                    }
                    if counted.insert(content) {
                        usage += measured;
                        files += 1;
                    }
                }
                EntryKind::Dir => {
                    let Some(child) = entry.cid.as_deref() else {
                        return Err(WalkError::Manifest {
                            cid: cid.to_string(),
                            reason: format!("directory entry {:?} has no cid", entry.name),
                        });
                    };
                    pending.push(parse_cid(child)?);
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
    }
    Ok(TreeUsage {
        token_id: 0,
        usage,
        manifest_bytes,
        claimed_usage: 0,
        files,
        objects_fetched: walk.objects,
        bytes_fetched: walk.bytes,
        size_mismatches: mismatches,
        root: root.to_string(),
    })
}

/// The CIDs a v2 node refers to (docs/FORMAT.md §3.1): its `nodes` and its `data`.
fn v2_lists(cid: &Cid, bytes: &[u8]) -> Result<(Vec<Cid>, Vec<Cid>), WalkError> {
    let bad = |reason: String| WalkError::Manifest {
        cid: cid.to_string(),
        reason,
    };
    let (schema, lists) = crate::format::envelope::public(bytes).map_err(|e| bad(e.to_string()))?;
    let known = [
        crate::format::SCHEMA_ROOT,
        crate::format::SCHEMA_DIR,
        crate::format::SCHEMA_INODES,
    ];
    if !known.contains(&schema.as_str()) {
        return Err(bad(format!("schema {schema:?} is not a pxfs tree node")));
    }
    let parse = |list: Vec<String>| {
        list.iter()
            .map(|c| parse_cid(c))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((parse(lists.nodes)?, parse(lists.data)?))
}

fn parse_cid(s: &str) -> Result<Cid, WalkError> {
    s.parse().map_err(|e| WalkError::Object {
        cid: s.to_string(),
        reason: format!("not a CID: {e}"),
    })
}

struct Walk<'a> {
    node: &'a NodeClient,
    limits: &'a Limits,
    objects: u64,
    bytes: u64,
    /// Measured content sizes by CID: a DAG node referenced many times is measured once.
    sizes: HashMap<Cid, u64>,
}

impl Walk<'_> {
    fn count_object(&mut self) -> Result<(), WalkError> {
        self.objects += 1;
        if self.objects > self.limits.max_objects {
            return Err(WalkError::Limit {
                limit: format!("{} node requests", self.limits.max_objects),
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

    /// One block, fetched and checked against its CID.
    async fn block(&mut self, cid: &Cid) -> Result<Bytes, WalkError> {
        self.count_object()?;
        let text = cid.to_string();
        let data = tokio::time::timeout(self.limits.object_timeout, self.node.block_get(&text))
            .await
            .map_err(|_| self.missing(cid, "timed out".into()))?
            .map_err(|e| self.failed(cid, e))?;
        self.bytes += data.len() as u64;
        if self.bytes > self.limits.max_bytes {
            return Err(WalkError::Limit {
                limit: format!("{} bytes fetched", self.limits.max_bytes),
            });
        }
        crate::integrity::check(cid, &data).map_err(|e| WalkError::Object {
            cid: text,
            reason: e.to_string(),
        })?;
        Ok(data)
    }

    /// The size of a raw block as the node holds it under its content address.
    async fn raw_size(&mut self, cid: &Cid) -> Result<u64, WalkError> {
        if let Some(size) = self.sizes.get(cid) {
            return Ok(*size);
        }
        self.count_object()?;
        let text = cid.to_string();
        let stat = tokio::time::timeout(self.limits.object_timeout, self.node.block_stat(&text))
            .await
            .map_err(|_| self.missing(cid, "timed out".into()))?
            .map_err(|e| self.failed(cid, e))?;
        self.sizes.insert(*cid, stat.size);
        Ok(stat.size)
    }

    /// The stored size of a content object (what `cat` returns), measured from its DAG.
    fn content_size<'s>(
        &'s mut self,
        cid: &'s Cid,
        depth: u32,
    ) -> futures::future::BoxFuture<'s, Result<u64, WalkError>> {
        Box::pin(async move {
            if let Some(size) = self.sizes.get(cid) {
                return Ok(*size);
            }
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
                    let mut size = node.data_len;
                    for (i, link) in node.links.iter().enumerate() {
                        let child = self.content_size(link, depth + 1).await?;
                        if let Some(declared) = node.blocksizes.get(i)
                            && *declared != child
                        {
                            tracing::warn!(
                                parent = %cid,
                                child = %link,
                                declared,
                                measured = child,
                                "a DAG node's blocksize disagrees with its child; the measured size counts"
                            );
                        }
                        size = size.saturating_add(child);
                    }
                    if let Some(declared) = node.filesize
                        && declared != size
                    {
                        tracing::warn!(
                            cid = %cid,
                            declared,
                            measured = size,
                            "a DAG's filesize disagrees with its content; the measured size counts"
                        );
                    }
                    self.sizes.insert(*cid, size);
                    Ok(size)
                }
                other => Err(self.bad(
                    cid,
                    &format!("codec 0x{other:x} is not a pxfs object (raw or dag-pb)"),
                )),
            }
        })
    }

    fn bad(&self, cid: &Cid, reason: &str) -> WalkError {
        WalkError::Object {
            cid: cid.to_string(),
            reason: reason.to_string(),
        }
    }

    /// The whole bytes of an object (a manifest), every block checked against its CID.
    fn read_object<'s>(
        &'s mut self,
        cid: &'s Cid,
        depth: u32,
    ) -> futures::future::BoxFuture<'s, Result<Vec<u8>, WalkError>> {
        Box::pin(async move {
            match cid.codec() {
                RAW_CODEC => Ok(self.block(cid).await?.to_vec()),
                DAG_PB_CODEC => {
                    if depth > MAX_DAG_DEPTH {
                        return Err(self.bad(cid, "the DAG is deeper than pxfs allows"));
                    }
                    let block = self.block(cid).await?;
                    let node = FileNode::decode(&block).map_err(|r| self.bad(cid, r))?;
                    let mut out = node.data.to_vec();
                    for link in &node.links {
                        out.extend(self.read_object(link, depth + 1).await?);
                    }
                    Ok(out)
                }
                other => Err(self.bad(
                    cid,
                    &format!("codec 0x{other:x} is not a pxfs object (raw or dag-pb)"),
                )),
            }
        })
    }
}
