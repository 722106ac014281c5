//! `routing/get` and `routing/put` of IPNS records (`arg=/ipns/NAME`), as Kubo offers them:
//! a replica keeps the signed record of a tree's name next to the tree's blocks, so that a
//! mount pointed at the replica resolves the name when the node that signed it is gone
//! (issue #30's restore drill). The record is verified against the name before it is kept.

use axum::body::Body;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::NodeState;
use super::error::ApiError;
use super::http::Args;

/// Largest record taken (Kubo's limit is 10 KiB).
const MAX_RECORD: usize = 10 << 10;

fn ipns_arg(args: &Args) -> Result<&str, ApiError> {
    let arg = args.required("arg")?;
    arg.strip_prefix("/ipns/")
        .ok_or_else(|| ApiError::bad_argument(format!("{arg:?} is not an /ipns/ key")))
}

/// `routing/get?arg=/ipns/NAME`: the signed record's bytes.
pub async fn get(State(node): State<NodeState>, args: Args) -> Result<Response, ApiError> {
    let record = node.names.record(ipns_arg(&args)?).await?;
    Ok((
        [(CONTENT_TYPE, "application/octet-stream")],
        Body::from(record),
    )
        .into_response())
}

/// `routing/put?arg=/ipns/NAME` with the record as one multipart part.
pub async fn put(
    State(node): State<NodeState>,
    args: Args,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    let name = ipns_arg(&args)?.to_string();
    let bytes = super::http::single_part(multipart, "record").await?;
    if bytes.len() > MAX_RECORD {
        return Err(ApiError::bad_argument("the record is too large"));
    }
    node.names.put_record(&name, &bytes).await?;
    Ok(axum::Json(
        serde_json::json!({ "ID": "", "Type": 5, "Extra": "" }),
    ))
}
