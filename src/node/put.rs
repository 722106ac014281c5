//! `block/put?cid-codec=raw|dag-pb&mhtype=sha2-256` with one multipart part: stores one
//! block under the CIDv1 of its SHA2-256 hash, as Kubo does. What `pxfs check --repair`
//! and replication put back (src/check/repair.rs, src/replica/). A block file already there
//! with other bytes (damaged on disk) is replaced: the new bytes are the ones that hash to
//! the name.

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};

use super::NodeState;
use super::error::ApiError;
use super::http::Args;
use crate::integrity::{DAG_PB_CODEC, RAW_CODEC};
use crate::storage::BlockStat;

/// Largest block taken (Kubo refuses blocks over 1 MiB to the network; 2 MiB here).
const MAX_BLOCK: usize = 2 << 20;

pub async fn block_put(
    State(node): State<NodeState>,
    args: Args,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<BlockStat>, ApiError> {
    let codec = match args
        .get("cid-codec")
        .or(args.get("format"))
        .unwrap_or("raw")
    {
        "raw" => RAW_CODEC,
        "dag-pb" | "protobuf" | "v0" => DAG_PB_CODEC,
        other => {
            return Err(ApiError::bad_argument(format!(
                "unsupported cid-codec {other:?}"
            )));
        }
    };
    if let Some(mh) = args.get("mhtype").filter(|m| *m != "sha2-256") {
        return Err(ApiError::bad_argument(format!("unsupported mhtype {mh:?}")));
    }
    let data = super::http::single_part(multipart, "block").await?;
    if data.len() > MAX_BLOCK {
        return Err(ApiError::bad_argument(format!(
            "a block of {} bytes is larger than {MAX_BLOCK}",
            data.len()
        )));
    }
    let cid = super::blocks::cid_v1(codec, &data);
    let store = super::blocks::store_dir(&node.repo);
    let size = data.len() as u64;
    // Not while a collection sweeps (src/node/gc.rs): the sweep's view of the blockstore
    // would miss the file. An unpinned block put here is the caller's to pin before the
    // next collection, as with Kubo.
    let _gc = node.gc.guard().await;
    let flushes = node.flushes.clone();
    tokio::task::spawn_blocking(move || {
        super::blocks::replace_block(&store, &cid, &data)?;
        flushes.sync(&store)
    })
    .await
    .map_err(ApiError::failed)?
    .map_err(ApiError::failed)?;
    Ok(Json(BlockStat {
        key: cid.to_string(),
        size,
    }))
}
