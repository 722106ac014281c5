//! A node that answers the way other IPFS implementations do (issue #37): an HTTP proxy in
//! front of a real `pxfs node` that passes every call through and rewrites the answer into
//! one of the shapes real implementations use, so pxfs is tested against each.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cid::Cid;
use cid::multibase::Base;
use serde_json::Value;

/// How the double answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Every CID in an answer in base58btc (`zb2rh…`, `zdj7…`), as some implementations
    /// write CIDv1.
    Base58,
    /// Every CID in base36 (`k…`).
    Base36,
    /// Every number in an answer (`Size`, `Bytes`, `RepoSize`, …) as a string.
    StringSizes,
    /// Errors in both shapes: every node error as HTTP 500 with exactly
    /// `{"Message","Code","Type":"error"}`, and every third `add` failing after its 200
    /// header with an error line at the end of the stream (not stored: a retry must follow),
    /// up to [`MAX_INJECTED`] times.
    ErrorShapes,
    /// Names and paths in the other forms: `name/resolve` answers a bare CID (no `/ipfs/`),
    /// `name/publish` names the key `/ipns/…`, and key ids are base58btc peer ids (`12D3…`)
    /// instead of base36 CIDs.
    NameForms,
}

/// Failures `ErrorShapes` makes up in all: enough to hit uploads and commits, few enough
/// that a client retrying each a few times gets through.
pub const MAX_INJECTED: usize = 4;

pub const ALL: [Variant; 5] = [
    Variant::Base58,
    Variant::Base36,
    Variant::StringSizes,
    Variant::ErrorShapes,
    Variant::NameForms,
];

struct Double {
    variant: Variant,
    node: String,
    http: reqwest::Client,
    adds: AtomicUsize,
    /// Answers the double rewrote (so a test can tell the variant was exercised).
    rewritten: AtomicUsize,
    injected: AtomicUsize,
}

/// A running double; stops with its runtime when dropped.
pub struct NodeDouble {
    double: Arc<Double>,
    pub url: String,
    _rt: tokio::runtime::Runtime,
}

impl NodeDouble {
    /// A double of `variant` in front of the node at `node_url` (`http://host:port`).
    pub fn start(node_url: &str, variant: Variant) -> NodeDouble {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let double = Arc::new(Double {
            variant,
            node: node_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            adds: AtomicUsize::new(0),
            rewritten: AtomicUsize::new(0),
            injected: AtomicUsize::new(0),
        });
        let app = Router::new().fallback(answer).with_state(double.clone());
        let url = rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
            url
        });
        NodeDouble {
            double,
            url,
            _rt: rt,
        }
    }

    /// Answers whose text the double changed.
    pub fn rewritten(&self) -> usize {
        self.double.rewritten.load(Ordering::SeqCst)
    }

    /// Failures the double made up (`ErrorShapes`).
    pub fn injected(&self) -> usize {
        self.double.injected.load(Ordering::SeqCst)
    }
}

fn kubo_error(message: &str) -> Response {
    let body = serde_json::json!({"Message": message, "Code": 0, "Type": "error"});
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn answer(State(d): State<Arc<Double>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().map(str::to_string);
    let call = path.trim_start_matches("/api/v0/").to_string();
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in request.headers() {
        if k == "content-type" {
            headers.insert(
                reqwest::header::CONTENT_TYPE,
                v.as_bytes().try_into().unwrap(),
            );
        }
    }
    let body = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap_or_default();
    let url = match &query {
        Some(q) => format!("{}{path}?{q}", d.node),
        None => format!("{}{path}", d.node),
    };
    if d.variant == Variant::ErrorShapes
        && call == "add"
        && d.adds.fetch_add(1, Ordering::SeqCst) % 3 == 2
        && d.injected.load(Ordering::SeqCst) < MAX_INJECTED
    {
        // The node broke off after its header: 200, then an error object.
        d.injected.fetch_add(1, Ordering::SeqCst);
        let line = serde_json::json!({
            "Message": "injected by the test double: stream reset while adding",
            "Code": 0,
            "Type": "error"
        });
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            format!("{line}\n"),
        )
            .into_response();
    }
    let resp = match d.http.post(&url).headers(headers).body(body).send().await {
        Ok(r) => r,
        Err(e) => return kubo_error(&format!("double: the node did not answer: {e}")),
    };
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = resp.bytes().await.unwrap_or_default();
    if status >= 400 {
        if d.variant == Variant::ErrorShapes {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["Message"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
            d.rewritten.fetch_add(1, Ordering::SeqCst);
            return kubo_error(&message);
        }
        return (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", content_type)],
            bytes,
        )
            .into_response();
    }
    // Content (`cat`, `block/get`) passes untouched; JSON answers are rewritten.
    let json_call = !matches!(call.as_str(), "cat" | "block/get" | "get");
    let out = if json_call {
        rewrite_lines(&d, &call, &bytes)
    } else {
        bytes.to_vec()
    };
    if out[..] != bytes[..] {
        d.rewritten.fetch_add(1, Ordering::SeqCst);
    }
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Body::from(out))
        .unwrap()
}

/// Each newline-delimited JSON value of `body`, rewritten; anything else unchanged.
fn rewrite_lines(d: &Double, call: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    for line in body.split_inclusive(|&b| b == b'\n') {
        let text = line.trim_ascii();
        match serde_json::from_slice::<Value>(text) {
            Ok(mut v) if !text.is_empty() => {
                rewrite(d.variant, call, None, &mut v);
                out.extend_from_slice(v.to_string().as_bytes());
                if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

fn rewrite(variant: Variant, call: &str, key: Option<&str>, v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                rewrite(variant, call, Some(k), item);
            }
        }
        Value::Array(items) => {
            for item in items {
                rewrite(variant, call, key, item);
            }
        }
        Value::Number(n) if variant == Variant::StringSizes => {
            *v = Value::String(n.to_string());
        }
        Value::String(s) => {
            if let Some(new) = rewrite_text(variant, call, key, s) {
                *s = new;
            }
        }
        _ => {}
    }
}

/// `text` in the variant's form, if it is a CID, a path to one, or a key id.
fn rewrite_text(variant: Variant, call: &str, key: Option<&str>, text: &str) -> Option<String> {
    let (prefix, rest) = ["/ipfs/", "/btfs/", "/ipns/"]
        .iter()
        .find_map(|p| text.strip_prefix(p).map(|r| (*p, r)))
        .unwrap_or(("", text));
    let cid = Cid::try_from(rest).ok()?;
    if cid.version() != cid::Version::V1 {
        return None;
    }
    let is_key = cid.codec() == 0x72; // libp2p-key: a BTNS/IPNS name
    match variant {
        Variant::Base58 if !is_key => Some(format!(
            "{prefix}{}",
            cid.to_string_of_base(Base::Base58Btc).ok()?
        )),
        Variant::Base36 if !is_key => Some(format!(
            "{prefix}{}",
            cid.to_string_of_base(Base::Base36Lower).ok()?
        )),
        Variant::NameForms if is_key => {
            // A peer id: the multihash in plain base58btc (no multibase prefix).
            let id = cid::multibase::encode(Base::Base58Btc, cid.hash().to_bytes());
            let id = id.trim_start_matches('z').to_string();
            if call == "name/publish" && key == Some("Name") {
                Some(format!("/ipns/{id}"))
            } else {
                Some(format!("{prefix}{id}"))
            }
        }
        Variant::NameForms if call == "name/resolve" && prefix == "/ipfs/" => {
            Some(rest.to_string())
        }
        _ => None,
    }
}
