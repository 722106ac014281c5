//! `pin/add`, `pin/rm`, `pin/ls` over rust-ipfs's pin store (persistent in `REPO/datastore`),
//! and the pins of link-less blocks that `add` writes into that store itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use futures::TryStreamExt;
use ipld_core::cid::Cid;
use ipld_core::cid::multibase::Base;
use rust_ipfs::PinMode;
use serde::Serialize;

use super::cat::{CatError, ContentPath};
use super::error::ApiError;
use super::http::Args;
use super::{Node, NodeState};

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{0}")]
    Path(Box<CatError>),
    #[error("not pinned or pinned indirectly")]
    NotPinned,
    #[error("pinning {cid} failed: {reason}")]
    Store { cid: Cid, reason: String },
    #[error("invalid pin type {0:?}: use all, direct, indirect or recursive")]
    Type(String),
}

impl From<CatError> for PinError {
    fn from(e: CatError) -> Self {
        PinError::Path(Box::new(e))
    }
}

impl From<PinError> for ApiError {
    fn from(e: PinError) -> Self {
        match e {
            PinError::Path(e) => (*e).into(),
            PinError::Type(_) => ApiError::bad_argument(e.to_string()),
            _ => ApiError::failed(e),
        }
    }
}

/// The multicodec of raw blocks: leaves without links.
const RAW_CODEC: u64 = 0x55;

/// rust-ipfs's pin store directory in a repo.
pub fn pin_store_dir(repo: &Path) -> PathBuf {
    repo.join("datastore").join("pins")
}

/// Whether `cid` names a block without links, whose pin [`write_leaf_pins`] can write.
pub fn is_leaf(cid: &Cid) -> bool {
    cid.codec() == RAW_CODEC
}

/// Where rust-ipfs keeps the pin of `cid`, without the `.recursive`/`.direct` extension.
/// Mirrors rust-ipfs 0.16 `repo/paths.rs` (`pin_path`, `shard`): the unprefixed base32 of
/// the CID's bytes, sharded by the two characters before its last.
fn pin_path(pins: &Path, cid: &Cid) -> PathBuf {
    let key = Base::Base32Lower.encode(cid.to_bytes());
    let shard = match key.len().checked_sub(3) {
        Some(start) => &key[start..start + 2],
        None => "_",
    };
    pins.join(shard).join(key)
}

/// Pins raw blocks recursively by writing rust-ipfs's pin files directly (blocking); not
/// durable until the caller's `syncfs` (the pin store shares the repo's filesystem).
///
/// rust-ipfs's `insert_pin` holds one store-wide lock and fsyncs a file per pin (about
/// 8 ms here), which bounded adds of small files to about 100 files/s. A raw block has no
/// links, so its recursive pin is a `.recursive` file listing no references and leaves
/// rust-ipfs's in-memory index of indirect pins unchanged: writing that file (complete
/// before it has its name, [`super::blocks::publish_new`], and dropping a `.direct` pin it
/// supersedes, as rust-ipfs 0.16 `datastore/flatfs.rs` does) is the same pin without the
/// per-pin fsync.
pub fn write_leaf_pins(pins: &Path, cids: &[Cid]) -> Result<(), PinError> {
    for cid in cids {
        debug_assert!(is_leaf(cid));
        let path = pin_path(pins, cid);
        let write = || -> std::io::Result<()> {
            // Already pinned recursively: nothing to do.
            if super::blocks::publish_new(
                &path.with_extension("recursive"),
                "recursive_temp",
                b"[]",
            )? {
                match std::fs::remove_file(path.with_extension("direct")) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        };
        write().map_err(|e| PinError::Store {
            cid: *cid,
            reason: e.to_string(),
        })?;
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Pins {
    pins: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PinList {
    keys: BTreeMap<String, PinInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PinInfo {
    #[serde(rename = "Type")]
    kind: &'static str,
}

fn mode_name(mode: PinMode) -> &'static str {
    match mode {
        PinMode::Direct => "direct",
        PinMode::Indirect => "indirect",
        PinMode::Recursive => "recursive",
    }
}

async fn target(node: &Node, arg: &str) -> Result<Cid, PinError> {
    let path = ContentPath::resolve(node, arg).await?;
    if path.rest.is_empty() {
        return Ok(path.root);
    }
    let file = super::cat::resolve_below(node, &path).await?;
    Ok(*file.cid())
}

/// `pin/add?arg=CID[&arg=CID…]&recursive=true`
pub async fn pin_add(State(node): State<NodeState>, args: Args) -> Result<Json<Pins>, ApiError> {
    args.required("arg")?;
    let recursive = args.bool("recursive", true)?;
    // Blocks fetched (online) or found unpinned must not be collected before the pin holds.
    let _gc = node.gc.guard().await;
    let mut pins = Vec::new();
    for arg in args.all("arg") {
        let cid = target(&node, arg).await?;
        // Fails fast on an offline node when the root is missing, instead of waiting for it.
        node.block(&cid).await.map_err(PinError::from)?;
        let mut pin = node.ipfs.insert_pin(cid).set_local(!node.online);
        if recursive {
            pin = pin.recursive();
        }
        if let Err(e) = pin.await {
            // Pinning what is already pinned the same way is not an error in Kubo.
            let already = node.ipfs.is_pinned(&cid).await.unwrap_or(false);
            if !already {
                return Err(PinError::Store {
                    cid,
                    reason: format!("{e:#}"),
                }
                .into());
            }
        }
        node.gc.note_unpinned();
        pins.push(cid.to_string());
    }
    Ok(Json(Pins { pins }))
}

/// `pin/rm?arg=CID[&arg=CID…]&recursive=true`
pub async fn pin_rm(State(node): State<NodeState>, args: Args) -> Result<Json<Pins>, ApiError> {
    args.required("arg")?;
    let recursive = args.bool("recursive", true)?;
    let wanted = if recursive {
        PinMode::Recursive
    } else {
        PinMode::Direct
    };
    let mut pins = Vec::new();
    for arg in args.all("arg") {
        let cid = target(&node, arg).await?;
        let mode = pin_mode(&node, cid).await?;
        if mode != Some(wanted) {
            return Err(PinError::NotPinned.into());
        }
        let mut removal = node.ipfs.remove_pin(cid);
        if recursive {
            removal = removal.recursive();
        }
        removal.await.map_err(|e| PinError::Store {
            cid,
            reason: format!("{e:#}"),
        })?;
        node.gc.note_unpinned();
        pins.push(cid.to_string());
    }
    Ok(Json(Pins { pins }))
}

async fn pin_mode(node: &Node, cid: Cid) -> Result<Option<PinMode>, PinError> {
    let pinned = node
        .ipfs
        .is_pinned(&cid)
        .await
        .map_err(|e| PinError::Store {
            cid,
            reason: format!("{e:#}"),
        })?;
    if !pinned {
        return Ok(None);
    }
    // The store answers a query for a mode the CID is not pinned in with an error.
    for mode in [PinMode::Recursive, PinMode::Direct] {
        if let Ok(found) = node.ipfs.repo().query_pins(vec![cid], mode).await
            && !found.is_empty()
        {
            return Ok(Some(mode));
        }
    }
    Ok(Some(PinMode::Indirect))
}

/// `pin/ls[?arg=CID…][&type=all|direct|indirect|recursive]`
pub async fn pin_ls(State(node): State<NodeState>, args: Args) -> Result<Json<PinList>, ApiError> {
    let mode = match args.get("type").unwrap_or("all") {
        "all" => None,
        "direct" => Some(PinMode::Direct),
        "indirect" => Some(PinMode::Indirect),
        "recursive" => Some(PinMode::Recursive),
        other => return Err(PinError::Type(other.to_owned()).into()),
    };
    let mut keys = BTreeMap::new();
    let wanted: Vec<&str> = args.all("arg").collect();
    if wanted.is_empty() {
        let pins: Vec<(Cid, PinMode)> = node
            .ipfs
            .repo()
            .list_pins(mode)
            .await
            .try_collect()
            .await
            .map_err(ApiError::failed)?;
        for (cid, mode) in pins {
            keys.insert(
                cid.to_string(),
                PinInfo {
                    kind: mode_name(mode),
                },
            );
        }
    } else {
        for arg in wanted {
            let cid = target(&node, arg).await?;
            match pin_mode(&node, cid).await? {
                Some(found) if mode.is_none_or(|m| m == found) => {
                    keys.insert(
                        cid.to_string(),
                        PinInfo {
                            kind: mode_name(found),
                        },
                    );
                }
                _ => return Err(ApiError::failed(format!("path '{arg}' is not pinned"))),
            }
        }
    }
    Ok(Json(PinList { keys }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_paths_match_rust_ipfs_sharding() {
        let cid =
            Cid::try_from("bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am").unwrap();
        // rust-ipfs: the base32 of the CID bytes without the multibase prefix `b`.
        assert_eq!(
            pin_path(Path::new("/p"), &cid),
            Path::new("/p/6a/afkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am")
        );
        assert!(is_leaf(&cid));
    }
}
