//! A stand-in for a remote pinning service, following the IPFS Pinning Service API
//! (`POST /pins`, `GET /pins`, `GET|POST|DELETE /pins/{requestid}`, bearer tokens, errors as
//! `{"error":{"reason","details"}}`). A new request is `queued`; the next look at it finds it
//! `pinning`; the one after, `pinned` when the origin node it was given holds the root
//! (`block/stat`), else `failed`. It records every request it took, so a test can check
//! what pxfs asked for and removed.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

/// What the service was asked, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asked {
    Add { requestid: String, cid: String },
    Remove { requestid: String, cid: String },
    Unauthorized,
}

#[derive(Clone, Debug)]
struct PinRecord {
    requestid: String,
    status: &'static str,
    created: String,
    pin: Value,
}

struct Service {
    token: String,
    /// The node whose blocks count as fetchable (`http://host:port`).
    origin: String,
    http: reqwest::Client,
    pins: Mutex<BTreeMap<String, PinRecord>>,
    asked: Mutex<Vec<Asked>>,
    next: AtomicU64,
    down: AtomicBool,
}

/// A running stand-in; stops with its runtime when dropped.
pub struct PinningService {
    service: Arc<Service>,
    pub url: String,
    _rt: tokio::runtime::Runtime,
}

impl PinningService {
    /// A service that takes `token` and counts blocks of the node at `origin` as fetchable.
    pub fn start(token: &str, origin: &str) -> PinningService {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let service = Arc::new(Service {
            token: token.to_string(),
            origin: origin.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            pins: Mutex::new(BTreeMap::new()),
            asked: Mutex::new(Vec::new()),
            next: AtomicU64::new(1),
            down: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/pins", get(list).post(add))
            .route("/pins/{requestid}", get(one).post(replace).delete(remove))
            .with_state(service.clone());
        let url = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            url
        });
        PinningService {
            service,
            url,
            _rt: rt,
        }
    }

    /// Everything asked so far.
    pub fn asked(&self) -> Vec<Asked> {
        self.service.asked.lock().unwrap().clone()
    }

    /// The CIDs of the requests the service holds now, with their status.
    pub fn pins(&self) -> Vec<(String, String)> {
        self.service
            .pins
            .lock()
            .unwrap()
            .values()
            .map(|p| {
                (
                    p.pin["cid"].as_str().unwrap_or_default().to_string(),
                    p.status.to_string(),
                )
            })
            .collect()
    }

    /// While down, every request gets HTTP 503.
    pub fn set_down(&self, down: bool) {
        self.service.down.store(down, Ordering::SeqCst);
    }
}

fn error(status: StatusCode, reason: &str, details: &str) -> Response {
    (
        status,
        Json(json!({"error": {"reason": reason, "details": details}})),
    )
        .into_response()
}

/// The answer when the request may not go on.
fn refusal(s: &Service, headers: &HeaderMap) -> Option<Response> {
    if s.down.load(Ordering::SeqCst) {
        return Some(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "down for a test",
        ));
    }
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", s.token) {
        s.asked.lock().unwrap().push(Asked::Unauthorized);
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "access token is missing or wrong",
        ));
    }
    None
}

fn status_json(p: &PinRecord) -> Value {
    json!({
        "requestid": p.requestid,
        "status": p.status,
        "created": p.created,
        "pin": p.pin,
        "delegates": ["/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWStandInPinningService"],
        "info": {},
    })
}

async fn add(State(s): State<Arc<Service>>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let Ok(pin) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the body is not JSON",
        );
    };
    let Some(cid) = pin["cid"].as_str().map(str::to_string) else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "pin.cid is required",
        );
    };
    if cid.parse::<cid::Cid>().is_err() {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "pin.cid is not a CID",
        );
    }
    if pin.get("meta").is_some_and(|m| {
        !m.as_object()
            .is_some_and(|o| o.values().all(Value::is_string))
    }) {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "meta must map strings to strings",
        );
    }
    let requestid = format!("req-{}", s.next.fetch_add(1, Ordering::SeqCst));
    let record = PinRecord {
        requestid: requestid.clone(),
        status: "queued",
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        pin,
    };
    let answer = status_json(&record);
    s.pins.lock().unwrap().insert(requestid.clone(), record);
    s.asked.lock().unwrap().push(Asked::Add { requestid, cid });
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

/// One look at a request moves it on: queued → pinning → pinned (or failed when the origin
/// does not hold the root).
async fn advance(s: &Service, requestid: &str) -> Option<PinRecord> {
    let record = s.pins.lock().unwrap().get(requestid).cloned()?;
    let next = match record.status {
        "queued" => "pinning",
        "pinning" => {
            let cid = record.pin["cid"].as_str().unwrap_or_default();
            let held = s
                .http
                .post(format!("{}/api/v0/block/stat?arg={cid}", s.origin))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if held { "pinned" } else { "failed" }
        }
        done => done,
    };
    let mut pins = s.pins.lock().unwrap();
    let p = pins.get_mut(requestid)?;
    p.status = next;
    Some(p.clone())
}

async fn one(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    Path(requestid): Path<String>,
) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    match advance(&s, &requestid).await {
        Some(p) => Json(status_json(&p)).into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such pin request"),
    }
}

async fn list(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let cids: Option<Vec<&str>> = q.get("cid").map(|c| c.split(',').collect());
    let statuses: Vec<&str> = q
        .get("status")
        .map(|c| c.split(',').collect())
        .unwrap_or_else(|| vec!["pinned"]);
    let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    let pins = s.pins.lock().unwrap();
    let matching: Vec<Value> = pins
        .values()
        .filter(|p| statuses.contains(&p.status))
        .filter(|p| {
            cids.as_ref()
                .is_none_or(|c| c.contains(&p.pin["cid"].as_str().unwrap_or_default()))
        })
        .filter(|p| {
            q.get("name")
                .is_none_or(|n| p.pin["name"].as_str() == Some(n))
        })
        .map(status_json)
        .collect();
    let count = matching.len();
    let results: Vec<Value> = matching.into_iter().take(limit).collect();
    Json(json!({"count": count, "results": results})).into_response()
}

async fn replace(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    Path(requestid): Path<String>,
    body: String,
) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let old = s.pins.lock().unwrap().remove(&requestid);
    match old {
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such pin request"),
        Some(old) => {
            s.asked.lock().unwrap().push(Asked::Remove {
                requestid,
                cid: old.pin["cid"].as_str().unwrap_or_default().to_string(),
            });
            add(State(s), headers, body).await
        }
    }
}

async fn remove(
    State(s): State<Arc<Service>>,
    headers: HeaderMap,
    Path(requestid): Path<String>,
) -> Response {
    if let Some(r) = refusal(&s, &headers) {
        return r;
    }
    let old = s.pins.lock().unwrap().remove(&requestid);
    match old {
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such pin request"),
        Some(old) => {
            s.asked.lock().unwrap().push(Asked::Remove {
                requestid,
                cid: old.pin["cid"].as_str().unwrap_or_default().to_string(),
            });
            StatusCode::ACCEPTED.into_response()
        }
    }
}
