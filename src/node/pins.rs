//! `pin/add`, `pin/rm`, `pin/ls` over rust-ipfs's pin store (persistent in `REPO/datastore`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use futures::TryStreamExt;
use ipld_core::cid::Cid;
use rust_ipfs::PinMode;
use serde::Serialize;

use super::cat::{CatError, ContentPath};
use super::error::ApiError;
use super::http::Args;
use super::{Node, NodeState};

#[derive(Debug, thiserror::Error)]
pub enum PinError {
    #[error("{0}")]
    Path(#[from] CatError),
    #[error("not pinned or pinned indirectly")]
    NotPinned,
    #[error("pinning {cid} failed: {reason}")]
    Store { cid: Cid, reason: String },
    #[error("invalid pin type {0:?}: use all, direct, indirect or recursive")]
    Type(String),
}

impl From<PinError> for ApiError {
    fn from(e: PinError) -> Self {
        match e {
            PinError::Path(e) => e.into(),
            PinError::Type(_) => ApiError::bad_argument(e.to_string()),
            _ => ApiError::failed(e),
        }
    }
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
    let mut pins = Vec::new();
    for arg in args.all("arg") {
        let cid = target(&node, arg).await?;
        // Fails fast on an offline node when the root is missing, instead of waiting for it.
        node.block(&cid).await.map_err(PinError::Path)?;
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
