//! `add`: multipart file parts streamed into rust-ipfs's UnixFS importer.
//!
//! The importer (rust-unixfs `FileAdder` with its balanced collector) produces Kubo's DAG:
//! 256 KiB chunks, at most 174 links per node, dag-pb UnixFS File nodes, raw leaves by default
//! with CIDv1. It takes a `'static` byte stream while a multipart field borrows the request,
//! so each part is fed to it through a small bounded channel: memory stays at a few chunks
//! whatever the file size.

use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use ipld_core::cid::{Cid, Version};
use rust_ipfs::unixfs::{AddOpt, UnixfsStatus};
use serde::Serialize;

use super::error::ApiError;
use super::http::Args;
use super::{Node, NodeState};

/// Kubo's default and only supported chunker.
const CHUNKER: &str = "size-262144";
/// Chunks of a part in flight between the request body and the importer.
const CHANNEL_CHUNKS: usize = 4;
const RAW_CODEC: u64 = 0x55;

#[derive(Debug, thiserror::Error)]
pub enum AddError {
    #[error("unsupported chunker {0:?}: only {CHUNKER} is supported")]
    Chunker(String),
    #[error("cid-version must be 0 or 1, not {0}")]
    CidVersion(u64),
    #[error("not a multipart/form-data request: {0}")]
    NotMultipart(String),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("file argument 'path' is required")]
    NoFiles,
    #[error("importing {name:?} failed: {reason}")]
    Import { name: String, reason: String },
    #[error("cannot read back the root block {0} of an added file")]
    RootMissing(Cid),
}

impl From<AddError> for ApiError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::Chunker(_)
            | AddError::CidVersion(_)
            | AddError::NotMultipart(_)
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
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let options = ImportOptions::from_args(&args)?;
    let mut multipart = multipart.map_err(|e| AddError::NotMultipart(e.body_text()))?;
    let mut lines = String::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| AddError::Body(e.body_text()))?
    {
        if field.content_type() == Some("application/x-directory") {
            // Kubo clients announce directories as empty parts; pxfs adds files one by one.
            continue;
        }
        let name = field
            .file_name()
            .or(field.name())
            .unwrap_or_default()
            .to_owned();
        let (cid, size) = import(&node, field, &name, &options).await?;
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
    if lines.is_empty() {
        return Err(AddError::NoFiles.into());
    }
    Ok(([(CONTENT_TYPE, "application/json")], lines).into_response())
}

/// Streams one part into the importer; returns the root CID and the cumulative DAG size.
async fn import(
    node: &Node,
    mut field: Field<'_>,
    name: &str,
    options: &ImportOptions,
) -> Result<(Cid, u64), AddError> {
    let import_error = |reason: String| AddError::Import {
        name: name.to_owned(),
        reason,
    };
    let (mut sender, receiver) =
        futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(CHANNEL_CHUNKS);
    let adder = node
        .ipfs
        .add_unixfs(AddOpt::Stream(receiver.boxed()))
        .cid_version(options.cid_version)
        .raw_leaves(options.raw_leaves)
        .pin(options.pin);
    let importer = tokio::spawn(finish_import(adder));

    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if sender.send(Ok(chunk)).await.is_err() {
                    // The importer stopped early; its result says why.
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                // Fail the import so a truncated file is never stored and pinned as complete.
                let message = e.body_text();
                let _ = sender
                    .send(Err(std::io::Error::other(message.clone())))
                    .await;
                drop(sender);
                let _ = importer.await;
                return Err(AddError::Body(message));
            }
        }
    }
    drop(sender);
    let cid = importer
        .await
        .map_err(|e| import_error(e.to_string()))?
        .map_err(import_error)?;
    let size = dag_size(node, &cid).await?;
    Ok((cid, size))
}

async fn finish_import(mut adder: rust_ipfs::unixfs::UnixfsAdd) -> Result<Cid, String> {
    while let Some(status) = adder.next().await {
        match status {
            UnixfsStatus::ProgressStatus { .. } => {}
            UnixfsStatus::CompletedStatus { path, .. } => {
                return path
                    .root()
                    .cid()
                    .copied()
                    .ok_or_else(|| format!("importer returned {path} without a CID"));
            }
            UnixfsStatus::FailedStatus { error, .. } => return Err(format!("{error:#}")),
        }
    }
    Err("importer ended without a result".to_owned())
}

/// Kubo's `Size`: the root block plus the cumulative sizes recorded in its links.
async fn dag_size(node: &Node, cid: &Cid) -> Result<u64, AddError> {
    let block = node
        .ipfs
        .repo()
        .get_block_now(cid)
        .await
        .ok()
        .flatten()
        .ok_or(AddError::RootMissing(*cid))?;
    let own = block.data().len() as u64;
    if cid.codec() == RAW_CODEC {
        return Ok(own);
    }
    let below = rust_ipfs::unixfs::ll::file::adder::parse_file_branch(block.data())
        .map(|branch| branch.links.iter().map(|link| link.tsize).sum::<u64>())
        .unwrap_or(0);
    Ok(own + below)
}
