//! Reading files back: path resolution (`/ipfs/`, `/btfs/`, `/ipns/`, `/btns/`, bare CIDs),
//! block loading (local only while offline, so a missing block fails at once) and the
//! streamed, ranged UnixFS walk behind `cat` and the gateway. A range read loads only the
//! blocks that cover the range, a few ahead of the one being sent.

use std::collections::HashMap;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use ipld_core::cid::Cid;
use rust_ipfs::unixfs::ll::file::FileReadFailed;
use rust_ipfs::unixfs::ll::file::visit::{Cache, FileVisit, IdleFileVisit};
use rust_ipfs::{Block, IpfsPath};

use super::error::ApiError;
use super::http::Args;
use super::names::{self, NameError};
use super::{Node, NodeState};

/// The multicodec of raw blocks: a single-leaf file with raw leaves is just its bytes.
const RAW_CODEC: u64 = 0x55;
/// How long an online node waits for a block from the network.
const ONLINE_FETCH_TIMEOUT: Duration = Duration::from_secs(60);
/// Blocks loaded ahead of the one being sent (256 KiB each).
const READ_AHEAD: usize = 8;
/// Paths of one `cat` opened at once (each loads its first block).
const OPENS_AT_ONCE: usize = 16;
/// Of those, paths whose first block one blocking task reads from disk.
const OPENS_PER_TASK: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum CatError {
    #[error("invalid path {0:?}: expected CID, /ipfs/CID[/path] or /ipns/NAME[/path]")]
    InvalidPath(String),
    #[error("block was not found locally (offline): ipld: could not find {0}")]
    NotFound(Cid),
    #[error("cannot load block {cid}: {reason}")]
    Load { cid: Cid, reason: String },
    #[error("cannot resolve {path}: {reason}")]
    Resolve { path: String, reason: String },
    #[error("this dag node is a directory")]
    Directory,
    #[error("{cid} is not a UnixFS file: {reason}")]
    NotAFile { cid: Cid, reason: String },
    #[error(transparent)]
    Name(#[from] NameError),
}

impl From<CatError> for ApiError {
    fn from(e: CatError) -> Self {
        match e {
            CatError::InvalidPath(_) => ApiError::bad_argument(e.to_string()),
            CatError::Name(e) => e.into(),
            _ => ApiError::failed(e),
        }
    }
}

impl Node {
    /// Loads one block: from the local store (read directly, see [`super::blocks::read_block`]);
    /// a missing block is an immediate error while offline, and waited for (bounded) on the
    /// network when online.
    pub(crate) async fn block(&self, cid: &Cid) -> Result<Block, CatError> {
        let load_error = |reason: String| CatError::Load { cid: *cid, reason };
        let store = super::blocks::store_dir(&self.repo);
        let wanted = *cid;
        let local = tokio::task::spawn_blocking(move || super::blocks::read_block(&store, &wanted))
            .await
            .map_err(|e| load_error(e.to_string()))?
            .map_err(|e| load_error(e.to_string()))?;
        if let Some(block) = local {
            return Ok(block);
        }
        if self.online {
            return self
                .ipfs
                .get_block(cid)
                .timeout(ONLINE_FETCH_TIMEOUT)
                .await
                .map_err(|e| load_error(e.to_string()));
        }
        self.ipfs
            .repo()
            .get_block_now(cid)
            .await
            .map_err(|e| load_error(e.to_string()))?
            .ok_or(CatError::NotFound(*cid))
    }

    /// Loads the blocks `cids` that are in the local store, several off one blocking task
    /// ([`super::blocks::read_blocks`]); `None` for one that is not (it is then waited for
    /// on the network or refused, as [`Node::block`] does).
    async fn local_blocks(&self, cids: Vec<Cid>) -> Result<Vec<Option<Block>>, CatError> {
        if cids.is_empty() {
            return Ok(Vec::new());
        }
        let store = super::blocks::store_dir(&self.repo);
        let first = cids[0];
        tokio::task::spawn_blocking(move || super::blocks::read_blocks(&store, &cids))
            .await
            .map_err(|e| CatError::Load {
                cid: first,
                reason: e.to_string(),
            })?
            .map_err(|(cid, e)| CatError::Load {
                cid,
                reason: e.to_string(),
            })
    }
}

/// A content path after name resolution: a root CID and the path below it.
pub struct ContentPath {
    pub root: Cid,
    pub rest: Vec<String>,
}

impl ContentPath {
    /// Parses `CID[/path]`, `/ipfs/CID[/path]` or `/btfs/CID[/path]`, resolving
    /// `/ipns/NAME[/path]` and `/btns/NAME[/path]` through the node's names first.
    pub async fn resolve(node: &Node, arg: &str) -> Result<Self, CatError> {
        let invalid = || CatError::InvalidPath(arg.to_owned());
        let ipfs_path = match arg.strip_prefix('/') {
            None => arg.to_owned(),
            Some(path) => {
                let (namespace, rest) = path.split_once('/').ok_or_else(invalid)?;
                match namespace {
                    "ipfs" | "btfs" => rest.to_owned(),
                    "ipns" | "btns" => {
                        let resolved = names::resolve_path(&node.names, rest).await?;
                        resolved
                            .strip_prefix("/ipfs/")
                            .ok_or_else(invalid)?
                            .to_owned()
                    }
                    _ => return Err(invalid()),
                }
            }
        };
        let mut segments = ipfs_path.split('/').filter(|s| !s.is_empty());
        let root = segments
            .next()
            .and_then(|cid| Cid::try_from(cid).ok())
            .ok_or_else(invalid)?;
        Ok(ContentPath {
            root,
            rest: segments.map(str::to_owned).collect(),
        })
    }
}

/// An opened UnixFS file (or raw block), ready to be read in ranges.
pub struct UnixfsFile {
    root: Block,
    size: u64,
}

impl UnixfsFile {
    pub async fn open(node: &Node, path: &ContentPath) -> Result<Self, CatError> {
        let root = if path.rest.is_empty() {
            node.block(&path.root).await?
        } else {
            resolve_below(node, path).await?
        };
        UnixfsFile::from_root(root)
    }

    /// The file whose root block is `root`.
    fn from_root(root: Block) -> Result<Self, CatError> {
        let size = file_size(&root)?;
        Ok(UnixfsFile { root, size })
    }

    /// The files `args` names, in order: the first blocks of bare CIDs (what a mount's run
    /// of chunks asks for) read from disk together, the other paths opened one by one.
    async fn open_all(node: &Node, args: &[String]) -> Result<Vec<Self>, CatError> {
        let mut paths = Vec::with_capacity(args.len());
        for arg in args {
            paths.push(ContentPath::resolve(node, arg).await?);
        }
        let bare = paths.iter().filter(|p| p.rest.is_empty()).map(|p| p.root);
        let mut loaded = node.local_blocks(bare.collect()).await?.into_iter();
        let mut files = Vec::with_capacity(paths.len());
        for path in &paths {
            let root = if path.rest.is_empty() {
                loaded.next().flatten()
            } else {
                None
            };
            files.push(match root {
                Some(root) => UnixfsFile::from_root(root)?,
                None => UnixfsFile::open(node, path).await?,
            });
        }
        Ok(files)
    }

    /// The file's length in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Streams the bytes of `range` (clamped to the file).
    pub fn read(
        self,
        node: NodeState,
        range: Range<u64>,
    ) -> impl Stream<Item = Result<Bytes, CatError>> + Send + 'static {
        let end = range.end.min(self.size);
        let start = range.start.min(end);
        let reader = RangeReader {
            node,
            state: if start == end {
                Walk::Done
            } else {
                Walk::Root(self.root)
            },
            range: start..end,
            cache: None,
            ahead: HashMap::new(),
        };
        futures::stream::try_unfold(reader, |mut reader| async move {
            Ok(reader.next_chunk().await?.map(|chunk| (chunk, reader)))
        })
    }
}

pub async fn resolve_below(node: &Node, path: &ContentPath) -> Result<Block, CatError> {
    let text = format!("/ipfs/{}/{}", path.root, path.rest.join("/"));
    let resolve_error = |reason: String| CatError::Resolve {
        path: text.clone(),
        reason,
    };
    let ipfs_path = IpfsPath::from_str(&text).map_err(|e| resolve_error(e.to_string()))?;
    let (resolved, _) = node
        .ipfs
        .dag()
        .resolve(ipfs_path, true, &[], !node.online)
        .await
        .map_err(|e| resolve_error(format!("{e:#}")))?;
    resolved
        .into_unixfs_block()
        .map_err(|e| resolve_error(e.to_string()))
}

fn file_size(block: &Block) -> Result<u64, CatError> {
    if block.cid().codec() == RAW_CODEC {
        return Ok(block.data().len() as u64);
    }
    match IdleFileVisit::default().start(block.data()) {
        Ok((_, size, _, _)) => Ok(size),
        Err(FileReadFailed::UnexpectedType(t)) if t.is_directory() => Err(CatError::Directory),
        Err(e) => Err(CatError::NotAFile {
            cid: *block.cid(),
            reason: e.to_string(),
        }),
    }
}

/// `part` of `block`'s bytes as a view of them, without a copy (a copy if it lies
/// elsewhere, as bytes a walk kept from an earlier block would).
fn share(block: &Block, part: &[u8]) -> Bytes {
    let whole = block.inner_data();
    let start = whole.as_ptr() as usize;
    let at = part.as_ptr() as usize;
    if !part.is_empty() && at >= start && at + part.len() <= start + whole.len() {
        whole.slice_ref(part)
    } else {
        Bytes::copy_from_slice(part)
    }
}

enum Walk {
    Root(Block),
    Links(FileVisit),
    Done,
}

struct RangeReader {
    node: NodeState,
    state: Walk,
    range: Range<u64>,
    cache: Option<Cache>,
    /// Blocks being loaded ahead of the walk, by CID.
    ahead: HashMap<Cid, tokio::task::JoinHandle<Result<Block, CatError>>>,
}

impl RangeReader {
    /// The next non-empty piece of the range, or `None` at its end.
    async fn next_chunk(&mut self) -> Result<Option<Bytes>, CatError> {
        loop {
            match std::mem::replace(&mut self.state, Walk::Done) {
                Walk::Done => return Ok(None),
                Walk::Root(block) => {
                    let visit = IdleFileVisit::default().with_target_range(self.range.clone());
                    let walk_error = |e: FileReadFailed| CatError::NotAFile {
                        cid: *block.cid(),
                        reason: e.to_string(),
                    };
                    let bytes = if block.cid().codec() == RAW_CODEC {
                        share(&block, visit.start_from_raw(block.data()).0)
                    } else {
                        let (bytes, _, _, next) = visit.start(block.data()).map_err(walk_error)?;
                        if let Some(next) = next {
                            self.state = Walk::Links(next);
                        }
                        share(&block, bytes)
                    };
                    if !bytes.is_empty() {
                        return Ok(Some(bytes));
                    }
                }
                Walk::Links(visit) => {
                    let next = *visit.pending_links().0;
                    self.load_ahead(&visit);
                    let block = match self.ahead.remove(&next) {
                        Some(task) => task.await.map_err(|e| CatError::Load {
                            cid: next,
                            reason: e.to_string(),
                        })??,
                        None => self.node.block(&next).await?,
                    };
                    let (bytes, next_visit) = visit
                        .continue_walk(block.data(), &mut self.cache)
                        .map_err(|e| CatError::NotAFile {
                            cid: next,
                            reason: e.to_string(),
                        })?;
                    let bytes = share(&block, bytes);
                    if let Some(next_visit) = next_visit {
                        self.state = Walk::Links(next_visit);
                    }
                    if !bytes.is_empty() {
                        return Ok(Some(bytes));
                    }
                }
            }
        }
    }

    /// Starts loading the next few pending blocks so disk reads overlap with sending.
    fn load_ahead(&mut self, visit: &FileVisit) {
        let (next, rest) = visit.pending_links();
        for cid in std::iter::once(next).chain(rest).take(READ_AHEAD) {
            if !self.ahead.contains_key(cid) {
                let node = self.node.clone();
                let cid = *cid;
                let task = tokio::spawn(async move { node.block(&cid).await });
                self.ahead.insert(cid, task);
            }
        }
    }
}

impl Drop for RangeReader {
    fn drop(&mut self) {
        // A client that hangs up should not leave loads running.
        for task in self.ahead.values() {
            task.abort();
        }
    }
}

/// `cat?arg=PATH[&arg=PATH…][&offset=N][&length=N]`: the files one after another, as Kubo
/// gives several paths; `offset` and `length` apply to that concatenation. Every path is
/// resolved before the first byte is sent, so a bad one is an error status, not a short body.
pub async fn cat(State(node): State<NodeState>, args: Args) -> Result<Response, ApiError> {
    args.required("arg")?;
    let offset = args.u64("offset")?.unwrap_or(0);
    let length = args.u64("length")?;
    // Opened several at once, in order: opening a path loads its first block (all of a
    // raw one) from disk, and a run of many chunk paths waited for each read in turn.
    let paths: Vec<String> = args.all("arg").map(str::to_owned).collect();
    let groups: Vec<Vec<String>> = paths.chunks(OPENS_PER_TASK).map(<[_]>::to_vec).collect();
    let files: Vec<UnixfsFile> = futures::stream::iter(groups)
        .map(|group| {
            let node = node.clone();
            async move { UnixfsFile::open_all(&node, &group).await }
        })
        .buffered(OPENS_AT_ONCE / OPENS_PER_TASK)
        .try_concat()
        .await?;
    let end = length.map_or(u64::MAX, |length| offset.saturating_add(length));
    let mut parts = Vec::with_capacity(files.len());
    let mut at = 0u64;
    for file in files {
        let (start, size) = (at, file.size());
        at = at.saturating_add(size);
        if at <= offset || start >= end {
            continue;
        }
        let range = offset.saturating_sub(start)..end.saturating_sub(start).min(size);
        parts.push(file.read(node.clone(), range));
    }
    let body = Body::from_stream(futures::stream::iter(parts).flatten());
    Ok(([(CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// `block/get?arg=CID`: the raw bytes of one block, as Kubo and BTFS serve them. The oracle
/// checks them against the CID itself.
pub async fn block_get(State(node): State<NodeState>, args: Args) -> Result<Response, ApiError> {
    let arg = args.required("arg")?;
    let cid = Cid::from_str(arg.trim_start_matches("/ipfs/"))
        .map_err(|_| ApiError::bad_argument(format!("invalid CID {arg:?}")))?;
    let block = node.block(&cid).await?;
    let body = Body::from(Bytes::copy_from_slice(block.data()));
    Ok(([(CONTENT_TYPE, "application/octet-stream")], body).into_response())
}

/// `block/stat?arg=CID`: `{"Key","Size"}` of one block.
pub async fn block_stat(
    State(node): State<NodeState>,
    args: Args,
) -> Result<axum::Json<crate::storage::BlockStat>, ApiError> {
    let arg = args.required("arg")?;
    let cid = Cid::from_str(arg.trim_start_matches("/ipfs/"))
        .map_err(|_| ApiError::bad_argument(format!("invalid CID {arg:?}")))?;
    let block = node.block(&cid).await?;
    Ok(axum::Json(crate::storage::BlockStat {
        key: cid.to_string(),
        size: block.data().len() as u64,
    }))
}
