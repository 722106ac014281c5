//! `add`: multipart file parts (read by `parts` over the body's own frames) streamed through
//! rust-ipfs's UnixFS importer.
//!
//! The importer (rust-unixfs `FileAdder`, re-exported by rust-ipfs, with its balanced
//! collector) produces Kubo's DAG: 256 KiB chunks, at most 174 links per node, dag-pb UnixFS
//! File nodes, raw leaves by default with CIDv1. Each part is fed to it one chunk at a time
//! and its blocks go straight to disk (`blocks`), so memory stays at a chunk or two whatever
//! the file size. Raw-leaf files are pinned with their blocks; the whole request is
//! flushed once; larger files are then pinned in rust-ipfs's pin store with the blocks the
//! importer produced as their references (rust-ipfs's own recursive pin would read every
//! block of the file back from disk to find them).
//!
//! The whole request holds the collector's guard (`gc`): its blocks are on disk before they
//! are pinned, and a collection in between would delete them.

use std::path::Path;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use ipld_core::cid::{Cid, Version};
use rust_ipfs::refs::IpldRefsError;
use rust_ipfs::repo::PinStore;
use rust_ipfs::unixfs::ll::file::adder::{Chunker, FileAdder, parse_file_branch};
use serde::Serialize;

use super::error::ApiError;
use super::http::Args;
use super::parts::{self, Parts};
use super::{Node, NodeState, blocks, pins};

/// Kubo's default and only supported chunker.
const CHUNKER: &str = "size-262144";
/// Kubo's chunk size, matching [`CHUNKER`].
const CHUNK_SIZE: usize = 256 * 1024;
const RAW_CODEC: u64 = 0x55;

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("unsupported chunker {0:?}: only {CHUNKER} is supported")]
    Chunker(String),
    #[error("cid-version must be 0 or 1, not {0}")]
    CidVersion(u64),
    #[error("{0}")]
    Parts(#[from] parts::PartsError),
    #[error("file argument 'path' is required")]
    NoFiles,
    #[error("importing {name:?} failed: {reason}")]
    Import { name: String, reason: String },
    #[error("{0}")]
    Store(#[from] blocks::BlockWriteError),
    #[error("pinning {cid} failed: {reason}")]
    Pin { cid: Cid, reason: String },
    #[error("{0}")]
    LeafPin(#[from] pins::PinError),
}

impl From<AddError> for ApiError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::Chunker(_)
            | AddError::CidVersion(_)
            | AddError::Parts(parts::PartsError::NotMultipart(_))
            | AddError::NoFiles => ApiError::bad_argument(e.to_string()),
            _ => ApiError::failed(e),
        }
    }
}

/// The import options of one `add` call.
struct ImportOptions {
    pin: bool,
    cid_version: Version,
    raw_leaves: bool,
}

impl ImportOptions {
    /// Whether a file of `len` bytes is imported as one raw block named by CIDv1.
    fn single_raw_leaf(&self, len: usize) -> bool {
        self.raw_leaves && self.cid_version == Version::V1 && (1..=CHUNK_SIZE).contains(&len)
    }

    fn from_args(args: &Args) -> Result<Self, ApiError> {
        let cid_version = match args.u64("cid-version")?.unwrap_or(0) {
            0 => Version::V0,
            1 => Version::V1,
            other => return Err(AddError::CidVersion(other).into()),
        };
        if let Some(chunker) = args.get("chunker")
            && !chunker.is_empty()
            && chunker != CHUNKER
        {
            return Err(AddError::Chunker(chunker.to_owned()).into());
        }
        Ok(ImportOptions {
            pin: args.bool("pin", true)?,
            cid_version,
            // As Kubo: CIDv1 implies raw leaves unless told otherwise.
            raw_leaves: args.bool("raw-leaves", cid_version == Version::V1)?,
        })
    }
}

/// One line of Kubo's add output.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Added {
    name: String,
    hash: String,
    /// Cumulative DAG size, as a decimal string like Kubo's.
    size: String,
}

/// `add?pin=true&cid-version=1&raw-leaves=true` with one multipart part per file.
pub async fn add(
    State(node): State<NodeState>,
    args: Args,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let options = ImportOptions::from_args(&args)?;
    let mut parts = parts::parts(&headers, body).map_err(AddError::from)?;
    let gc_guard = node.gc.guard().await;
    let store = blocks::store_dir(&node.repo);
    let mut imported = Vec::new();
    let mut added_bytes = 0u64;
    while let Some(head) = parts.next_part().await.map_err(AddError::from)? {
        if head.content_type.as_deref() == Some("application/x-directory") {
            // Kubo clients announce directories as empty parts; pxfs adds files one by one.
            continue;
        }
        let name = head.file_name.or(head.name).unwrap_or_default();
        let file = import(&store, &mut parts, &name, &options).await?;
        added_bytes += file.bytes;
        imported.push((name, file));
    }
    if imported.is_empty() {
        return Err(AddError::NoFiles.into());
    }
    // Raw blocks (every file up to one chunk) are pinned by writing their pin files; one
    // flush then makes the blocks and those pins durable before anything refers to them.
    let leaves: Vec<Cid> = if options.pin {
        imported
            .iter()
            .map(|(_, file)| file.root)
            .filter(pins::is_leaf)
            .collect()
    } else {
        Vec::new()
    };
    let pin_store = pins::pin_store_dir(&node.repo);
    let flushes = node.flushes.clone();
    tokio::task::spawn_blocking(move || {
        pins::write_leaf_pins(&pin_store, &leaves)?;
        flushes.sync(&store).map_err(AddError::from)
    })
    .await
    .map_err(|e| AddError::Import {
        name: String::new(),
        reason: e.to_string(),
    })??;

    let mut lines = String::new();
    for (
        name,
        Imported {
            root: cid,
            below,
            size,
            ..
        },
    ) in imported
    {
        if options.pin && !pins::is_leaf(&cid) {
            pin(&node, &cid, below).await?;
        }
        let hash = cid.to_string();
        let added = Added {
            name: if name.is_empty() { hash.clone() } else { name },
            hash,
            size: size.to_string(),
        };
        // Serializing a struct of strings cannot fail.
        lines.push_str(&serde_json::to_string(&added).unwrap_or_default());
        lines.push('\n');
    }
    drop(gc_guard);
    node.gc.note_added(added_bytes);
    Ok(([(CONTENT_TYPE, "application/json")], lines).into_response())
}

/// One imported file: its root and every block below it.
struct Imported {
    root: Cid,
    /// The CIDs of all the other blocks of the file's DAG (repeats possible).
    below: Vec<Cid>,
    /// The bytes of the blocks it wrote that the store did not hold yet.
    bytes: u64,
    /// Kubo's `Size` of the root, from the root block as written.
    size: u64,
}

/// Streams the current part through the importer into the block store. Hashing and writing run
/// off the async runtime, one chunk at a time.
async fn import(
    store: &Path,
    part: &mut Parts,
    name: &str,
    options: &ImportOptions,
) -> Result<Imported, AddError> {
    let import_error = |reason: String| AddError::Import {
        name: name.to_owned(),
        reason,
    };
    let mut adder = FileAdder::builder()
        .with_chunker(Chunker::Size(CHUNK_SIZE))
        .with_cid_version(options.cid_version)
        .with_raw_leaves(options.raw_leaves)
        .build();
    // Reserved when bytes arrive: a file's last (or only) chunk leaves no empty buffer of a
    // chunk's size behind, a fresh mapping to fault in for every small file.
    let mut buffer = Vec::new();
    // Every block produced, in order: the root is the last one (from `finish`, or the only
    // leaf of a file that fills exactly one chunk).
    let mut produced_cids = Vec::new();
    let mut bytes = 0u64;
    // The size of the last block produced: the root's, once the file is done.
    let mut last_size = None;
    loop {
        let chunk = part.chunk().await?;
        let done = chunk.is_none();
        if let Some(chunk) = chunk {
            if buffer.is_empty() {
                buffer.reserve(CHUNK_SIZE.max(chunk.len()));
            }
            buffer.extend_from_slice(&chunk);
        }
        if buffer.len() < CHUNK_SIZE && !done {
            continue;
        }
        if done && produced_cids.is_empty() && options.single_raw_leaf(buffer.len()) {
            return import_leaf(store, buffer).await.map_err(import_error);
        }
        let input = std::mem::take(&mut buffer);
        let store = store.to_owned();
        let (returned, cids, written, last) = tokio::task::spawn_blocking(move || {
            let produced = push_all(&mut adder, &input);
            let grew = blocks::write_blocks(&store, &produced)?;
            let cids: Vec<Cid> = produced.iter().map(|(cid, _)| *cid).collect();
            let last = produced.last().map(|(cid, data)| dag_size(cid, data));
            Ok::<_, blocks::BlockWriteError>((adder, cids, grew, last))
        })
        .await
        .map_err(|e| import_error(e.to_string()))??;
        adder = returned;
        produced_cids.extend(cids);
        bytes += written;
        last_size = last.or(last_size);
        if done {
            break;
        }
    }
    let store = store.to_owned();
    let cids = tokio::task::spawn_blocking(move || {
        let produced: Vec<_> = adder.finish().collect();
        let grew = blocks::write_blocks(&store, &produced)?;
        let last = produced.last().map(|(cid, data)| dag_size(cid, data));
        Ok((
            produced.iter().map(|(cid, _)| *cid).collect::<Vec<Cid>>(),
            grew,
            last,
        ))
    })
    .await
    .map_err(|e| import_error(e.to_string()))?
    .map_err(|e: blocks::BlockWriteError| AddError::from(e))?;
    let (cids, written, last) = cids;
    produced_cids.extend(cids);
    bytes += written;
    let root = produced_cids
        .pop()
        .ok_or_else(|| import_error("the importer produced no blocks".to_owned()))?;
    let size = last
        .or(last_size)
        .ok_or_else(|| import_error("the importer produced no blocks".to_owned()))?;
    Ok(Imported {
        root,
        below: produced_cids,
        bytes,
        size,
    })
}

/// Feeds all of `input` to the importer: the blocks it completed on the way.
fn push_all(adder: &mut FileAdder, input: &[u8]) -> Vec<(Cid, Vec<u8>)> {
    let mut produced = Vec::new();
    let mut consumed = 0;
    while consumed < input.len() {
        let (ready, used) = adder.push(&input[consumed..]);
        produced.extend(ready);
        consumed += used;
    }
    produced
}

/// A whole part of one chunk or less, with raw leaves and CIDv1: the importer would make
/// it one raw block, named by its hash. Written as that block in one step (hashing and
/// writing off the runtime), without the importer's copy of the bytes and its second trip
/// to a blocking thread: every chunk a mount adds is such a part.
async fn import_leaf(store: &Path, data: Vec<u8>) -> Result<Imported, String> {
    let store = store.to_owned();
    tokio::task::spawn_blocking(move || {
        let cid = blocks::cid_v1(RAW_CODEC, &data);
        let size = data.len() as u64;
        let bytes = blocks::write_blocks(&store, &[(cid, data)]).map_err(|e| e.to_string())?;
        Ok(Imported {
            root: cid,
            below: Vec::new(),
            bytes,
            size,
        })
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Pins `root` recursively. Its references are the blocks the importer produced, all on
/// disk and flushed by now, so they are handed to the pin store as they are instead of
/// being found again by loading every block.
async fn pin(node: &Node, root: &Cid, below: Vec<Cid>) -> Result<(), AddError> {
    let repo = node.ipfs.repo();
    let _gc = repo.gc_guard().await;
    let refs = futures::stream::iter(below.into_iter().map(Ok::<Cid, IpldRefsError>)).boxed();
    repo.data_store()
        .insert_recursive_pin(root, refs)
        .await
        .map_err(|e| AddError::Pin {
            cid: *root,
            reason: format!("{e:#}"),
        })
}

/// Kubo's `Size` of a block: its own bytes plus the cumulative sizes recorded in its links
/// (taken from the block as the importer wrote it, not read back from the store).
fn dag_size(cid: &Cid, data: &[u8]) -> u64 {
    let own = data.len() as u64;
    if cid.codec() == RAW_CODEC {
        return own;
    }
    let below = parse_file_branch(data)
        .map(|branch| branch.links.iter().map(|link| link.tsize).sum::<u64>())
        .unwrap_or(0);
    own + below
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The importer's root and `Size` for `data` as one file (raw leaves, CIDv1).
    fn imported_by_the_importer(data: &[u8]) -> (Cid, u64) {
        let mut adder = FileAdder::builder()
            .with_chunker(Chunker::Size(CHUNK_SIZE))
            .with_cid_version(Version::V1)
            .with_raw_leaves(true)
            .build();
        let mut blocks = push_all(&mut adder, data);
        blocks.extend(adder.finish());
        let (cid, block) = blocks.last().expect("a root");
        (*cid, dag_size(cid, block))
    }

    #[test]
    fn a_single_raw_leaf_is_named_and_sized_as_the_importer_names_it() {
        let options = ImportOptions {
            pin: true,
            cid_version: Version::V1,
            raw_leaves: true,
        };
        for len in [1, 4_096, 131_088, CHUNK_SIZE - 1, CHUNK_SIZE] {
            assert!(options.single_raw_leaf(len), "{len} bytes");
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let (cid, size) = imported_by_the_importer(&data);
            assert_eq!(blocks::cid_v1(RAW_CODEC, &data), cid, "{len} bytes");
            assert_eq!(size, len as u64, "{len} bytes");
        }
        // Past one chunk, empty, dag-pb leaves or CIDv0: the importer's.
        assert!(!options.single_raw_leaf(CHUNK_SIZE + 1));
        assert!(!options.single_raw_leaf(0));
        let v0 = ImportOptions {
            cid_version: Version::V0,
            ..options
        };
        assert!(!v0.single_raw_leaf(10));
        let wrapped = ImportOptions {
            raw_leaves: false,
            cid_version: Version::V1,
            pin: true,
        };
        assert!(!wrapped.single_raw_leaf(10));
    }
}
