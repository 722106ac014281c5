//! The measurement as a Chainlink external adapter: what the bridge `pxfs-measure` of
//! `contracts/chainlink/pxfs-sync-job.toml` calls, so a Chainlink node's job answers with the
//! same figure as `pxfs oracle` (docs/sync-and-oracle.md, "Running the job on a real
//! Chainlink node").
//!
//! `POST /` with `{"id": JOB_RUN_ID, "data": {"btnsKey": "k51…", "tokenId": 1,
//! "syncedRoot": "<root of the token's last Synced event>"?}}` (without `syncedRoot`, every
//! document back to the first counts) answers
//! `{"jobRunID", "data": {"usage", "root", "claimed", "manifest_bytes", "files",
//! "size_mismatches"}, "result": usage, "statusCode": 200}`, or, when the tree cannot be
//! measured, `{"jobRunID", "status": "errored", "error", "statusCode": 500}` with HTTP 500:
//! the job run fails and the request stays unanswered, as with `pxfs oracle`. Requests are
//! measured at most `[oracle] max_requests` at a time, the others wait in order; `GET
//! /status` shows the gauges (`in_flight`, `waiting`, `peak_in_flight`, `finished`).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Limits, Measurer};
use crate::storage::NodeClient;

struct Adapter {
    measurer: Measurer,
}

#[derive(Debug, Deserialize)]
struct AdapterRequest {
    #[serde(default)]
    id: Value,
    data: RequestData,
}

#[derive(Debug, Deserialize)]
struct RequestData {
    #[serde(rename = "btnsKey")]
    btns_key: String,
    #[serde(rename = "tokenId")]
    token_id: Option<Value>,
    /// The root the chain last recorded as synced for the token (the `Synced` event's);
    /// absent: every document back to the first counts.
    #[serde(rename = "syncedRoot", default)]
    synced_root: Option<String>,
}

/// The adapter's routes: `POST /` measures; `GET /status` shows the request gauges.
/// `memo_file`: where measured objects are remembered between runs.
pub fn router(node: NodeClient, limits: Limits, memo_file: Option<&std::path::Path>) -> Router {
    Router::new()
        .route("/", post(measure))
        .route("/status", get(status))
        .with_state(Arc::new(Adapter {
            measurer: Measurer::new(node, limits, memo_file),
        }))
}

async fn status(State(adapter): State<Arc<Adapter>>) -> Json<super::Gauge> {
    Json(adapter.measurer.gauge())
}

fn token_id(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn measure(
    State(adapter): State<Arc<Adapter>>,
    Json(req): Json<AdapterRequest>,
) -> (StatusCode, Json<Value>) {
    let errored = |error: String| {
        tracing::warn!(
            btns = req.data.btns_key,
            "adapter: usage not measured: {error}"
        );
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({
                "jobRunID": req.id,
                "status": "errored",
                "error": error,
                "statusCode": 500,
            })),
        )
    };
    let m = match adapter
        .measurer
        .measure(&req.data.btns_key, req.data.synced_root.as_deref())
        .await
    {
        Ok(m) => m,
        Err(e) => return errored(e.to_string()),
    };
    if let Some(asked) = req.data.token_id.as_ref() {
        match token_id(asked) {
            Some(id) if id == m.token_id => {}
            _ => {
                return errored(format!(
                    "the usage document under {} is for token {}, not {asked}",
                    req.data.btns_key, m.token_id
                ));
            }
        }
    }
    tracing::info!(
        token_id = m.token_id,
        usage = m.usage,
        claimed = m.claimed_usage,
        "adapter: tree measured"
    );
    (
        StatusCode::OK,
        Json(json!({
            "jobRunID": req.id,
            "data": {
                "usage": m.usage,
                "root": m.root,
                "claimed": m.claimed_usage,
                "manifest_bytes": m.manifest_bytes,
                "files": m.files,
                "size_mismatches": m.size_mismatches,
            },
            "result": m.usage,
            "statusCode": 200,
        })),
    )
}
