//! A stand-in for PollinationX's hosted nodes in front of a real `pxfs node`: the login
//! service (`POST /auth/v2/login` with a JSON body, the fields ../shared/POLLINATIONX.md
//! describes for PollinationX's GET (pxfs's default login; a request with a query or
//! without a JSON body is refused): the wallet's EIP-191 signature of a fixed message, checked by recovering the address, answered with
//! one JWT `{address, tokenId, tokenSmartContract, exp}` and one endpoint per sNFT) and the
//! gateway behind those endpoints (`/t<id>/api/v1/<call>`), which passes only `add`, `cat`
//! and `get` to the node, and only with an unexpired JWT it issued for that sNFT (401
//! otherwise; 404 for any other call, as a gateway that does not pass it).
//!
//! The gateway's clock runs `early` ahead of the JWT's `exp`: it refuses a JWT that long
//! before the client thinks it expires, so a client that renews only by `exp` meets 401s
//! too (a skewed clock, a revoked JWT), not only its own timely renewals.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use alloy::primitives::{Address, Signature};
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures::TryStreamExt;

/// The message the stand-in expects signed (the real one is PollinationX's dApp's).
pub const MESSAGE: &str = "Sign in to PollinationX (pxfs test stand-in)";
/// The calls the gateway passes to the node.
const PASSED: [&str; 3] = ["add", "cat", "get"];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// What the login service and the gateway share.
pub struct Issuer {
    chain_id: u64,
    contract: String,
    lifetime: Duration,
    early: Duration,
    /// The wallet's sNFTs, as PollinationX's indexer would list them.
    tokens: Mutex<Vec<u64>>,
    /// JWT → (sNFT, refused from this instant on, in ms).
    issued: Mutex<HashMap<String, (u64, u64)>>,
    gateway_url: OnceLock<String>,
    node_url: String,
    pub logins: AtomicUsize,
    pub refused_logins: AtomicUsize,
    /// Requests refused for a JWT that was valid once (expired).
    pub expired: AtomicUsize,
    /// Requests refused for no JWT, an unknown one, or one of another sNFT.
    pub refused: AtomicUsize,
    /// Calls the gateway does not pass (`key/*`, `name/*`, `pin/*`, `version`, ...).
    pub not_passed: Mutex<Vec<String>>,
    /// Every passed request: (sNFT of the path, sNFT claimed by its JWT, call).
    pub passed: Mutex<Vec<(u64, u64, String)>>,
    /// Uploads to one sNFT's endpoint carrying content marked as another's
    /// (`owner:<id>;`, see [`owner_marked`]).
    pub misrouted: AtomicUsize,
}

/// File content that says which sNFT it was written to: the gateway counts uploads of it
/// through another sNFT's endpoint.
pub fn owner_marked(token: u64, len: usize) -> Vec<u8> {
    let mut data = format!("owner:{token};").into_bytes();
    data.extend((data.len()..len.max(data.len())).map(|_| rand::random::<u8>() | 0x80));
    data
}

/// The sNFTs named by `owner:<id>;` marks in `body`.
fn owners(body: &[u8]) -> Vec<u64> {
    let mut found = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.windows(6).position(|w| w == b"owner:") {
        rest = &rest[at + 6..];
        let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if rest.get(digits) == Some(&b';')
            && let Ok(id) = std::str::from_utf8(&rest[..digits]).unwrap().parse()
        {
            found.push(id);
        }
    }
    found
}

impl Issuer {
    /// Every JWT issued so far.
    pub fn issued_jwts(&self) -> Vec<String> {
        self.issued.lock().unwrap().keys().cloned().collect()
    }

    pub fn logins(&self) -> usize {
        self.logins.load(Ordering::SeqCst)
    }

    pub fn expired(&self) -> usize {
        self.expired.load(Ordering::SeqCst)
    }

    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    pub fn passed(&self) -> Vec<(u64, u64, String)> {
        self.passed.lock().unwrap().clone()
    }

    pub fn not_passed(&self) -> Vec<String> {
        self.not_passed.lock().unwrap().clone()
    }

    pub fn set_tokens(&self, tokens: Vec<u64>) {
        *self.tokens.lock().unwrap() = tokens;
    }
}

/// The login service and gateway, served on loopback by a runtime of their own.
pub struct HostedGateway {
    pub issuer: Arc<Issuer>,
    pub auth_url: String,
    rt: tokio::runtime::Runtime,
}

impl HostedGateway {
    /// In front of the node at `node_url` (`http://IP:PORT`), for the wallet's `tokens` of
    /// `contract` on `chain_id`; each JWT lives `lifetime` by its `exp` and is refused by
    /// the gateway `early` before that.
    pub fn start(
        node_url: &str,
        chain_id: u64,
        contract: &str,
        tokens: Vec<u64>,
        lifetime: Duration,
        early: Duration,
    ) -> HostedGateway {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let issuer = Arc::new(Issuer {
            chain_id,
            contract: contract.to_lowercase(),
            lifetime,
            early,
            tokens: Mutex::new(tokens),
            issued: Mutex::new(HashMap::new()),
            gateway_url: OnceLock::new(),
            node_url: node_url.trim_end_matches('/').to_string(),
            logins: AtomicUsize::new(0),
            refused_logins: AtomicUsize::new(0),
            expired: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            not_passed: Mutex::new(Vec::new()),
            passed: Mutex::new(Vec::new()),
            misrouted: AtomicUsize::new(0),
        });
        let http = reqwest::Client::new();
        let (auth_url, gateway_url) = rt.block_on(async {
            let login = Router::new()
                .route("/auth/v2/login", axum::routing::post(login))
                .with_state(issuer.clone());
            let gateway = Router::new()
                .fallback(gateway)
                .with_state((issuer.clone(), http));
            let l1 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let l2 = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let urls = (
                format!("http://{}", l1.local_addr().unwrap()),
                format!("http://{}", l2.local_addr().unwrap()),
            );
            tokio::spawn(async move { axum::serve(l1, login).await.unwrap() });
            tokio::spawn(async move { axum::serve(l2, gateway).await.unwrap() });
            urls
        });
        issuer.gateway_url.set(gateway_url).unwrap();
        HostedGateway {
            issuer,
            auth_url,
            rt,
        }
    }

    /// `cfg` (a pxfs config) switched to this stand-in: `[node] auth = "pollinationx"`.
    pub fn configure(&self, cfg: &mut toml::Value) {
        let node = cfg["node"].as_table_mut().unwrap();
        node.insert("auth".into(), "pollinationx".into());
        node.insert("auth_url".into(), self.auth_url.clone().into());
        node.insert("login_message".into(), MESSAGE.into());
        // The login gives the endpoints; nothing may go to the node directly.
        node.insert("api_url".into(), "http://127.0.0.1:9".into());
        node.remove("bearer_token_file");
    }
}

fn claims(jwt: &str) -> serde_json::Value {
    let payload = jwt.split('.').nth(1).unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

async fn login(
    State(issuer): State<Arc<Issuer>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    let refuse = |why: &str| {
        issuer.refused_logins.fetch_add(1, Ordering::SeqCst);
        (StatusCode::UNAUTHORIZED, format!(r#"{{"error":"{why}"}}"#))
    };
    let Some(q) = serde_json::from_slice::<HashMap<String, String>>(&body)
        .ok()
        .filter(|_| query.is_none())
    else {
        return refuse("the login is a JSON body, nothing in the query");
    };
    let (Some(wallet), Some(chain), Some(nonce), Some(sig)) = (
        q.get("wallet"),
        q.get("chain"),
        q.get("nonce"),
        q.get("signature"),
    ) else {
        return refuse("missing parameter");
    };
    if chain != &format!("0x{:x}", issuer.chain_id) || nonce != MESSAGE {
        return refuse("wrong chain or message");
    }
    let Ok(wallet) = wallet.parse::<Address>() else {
        return refuse("bad wallet");
    };
    let Ok(sig) = sig.parse::<Signature>() else {
        return refuse("bad signature");
    };
    match sig.recover_address_from_msg(nonce.as_bytes()) {
        Ok(signer) if signer == wallet => {}
        _ => return refuse("signature is not the wallet's"),
    }
    let n = issuer.logins.fetch_add(1, Ordering::SeqCst) + 1;
    let issued_ms = now_ms();
    let exp = (issued_ms + issuer.lifetime.as_millis() as u64) / 1000;
    let refused_from = exp * 1000 - issuer.early.as_millis() as u64;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let gateway = issuer.gateway_url.get().unwrap();
    let tokens = issuer.tokens.lock().unwrap().clone();
    let mut nfts = Vec::new();
    for t in tokens {
        let payload = serde_json::json!({
            "address": wallet.to_string(), "tokenId": t.to_string(),
            "tokenSmartContract": issuer.contract, "exp": exp, "login": n,
            "nonce": rand::random::<u64>(),
        });
        let jwt = format!(
            "{}.{}.{}",
            b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            b64.encode(payload.to_string()),
            b64.encode(rand::random::<[u8; 16]>())
        );
        issuer
            .issued
            .lock()
            .unwrap()
            .insert(jwt.clone(), (t, refused_from));
        nfts.push(serde_json::json!({
            "tokenId": t, "jwt": jwt, "endpoint": format!("{gateway}/t{t}/api/v1/"),
        }));
    }
    (
        StatusCode::OK,
        serde_json::json!({ "wallet": wallet.to_string(), "nfts": nfts }).to_string(),
    )
}

async fn gateway(
    State((issuer, http)): State<(Arc<Issuer>, reqwest::Client)>,
    request: Request,
) -> Response {
    let unauthorized = || {
        (
            StatusCode::UNAUTHORIZED,
            r#"{"error":"invalid or expired token"}"#,
        )
            .into_response()
    };
    let path = request.uri().path().to_string();
    let Some((token, call)) = path
        .strip_prefix("/t")
        .and_then(|p| p.split_once("/api/v1/"))
        .and_then(|(t, call)| Some((t.parse::<u64>().ok()?, call.to_string())))
    else {
        return (StatusCode::NOT_FOUND, "404 page not found").into_response();
    };
    let jwt = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let grant = jwt
        .as_ref()
        .and_then(|j| issuer.issued.lock().unwrap().get(j).copied());
    let Some((for_token, refused_from)) = grant else {
        issuer.refused.fetch_add(1, Ordering::SeqCst);
        return unauthorized();
    };
    if for_token != token {
        issuer.refused.fetch_add(1, Ordering::SeqCst);
        return unauthorized();
    }
    if now_ms() >= refused_from {
        issuer.expired.fetch_add(1, Ordering::SeqCst);
        return unauthorized();
    }
    if !PASSED.contains(&call.as_str()) {
        issuer.not_passed.lock().unwrap().push(call);
        return (StatusCode::NOT_FOUND, "404 page not found").into_response();
    }
    let claimed = claims(jwt.as_deref().unwrap_or_default())["tokenId"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(u64::MAX);
    issuer
        .passed
        .lock()
        .unwrap()
        .push((token, claimed, call.clone()));
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let url = format!("{}/api/v1/{call}{query}", issuer.node_url);
    let mut headers = HeaderMap::new();
    if let Some(ct) = request.headers().get("content-type") {
        headers.insert("content-type", ct.clone());
    }
    let body = if call == "add" {
        // Read whole, to check whose content it carries.
        let Ok(bytes) = axum::body::to_bytes(request.into_body(), 256 << 20).await else {
            return (StatusCode::BAD_REQUEST, "body too large").into_response();
        };
        if owners(&bytes).iter().any(|o| *o != token) {
            issuer.misrouted.fetch_add(1, Ordering::SeqCst);
        }
        reqwest::Body::from(bytes)
    } else {
        reqwest::Body::wrap_stream(request.into_body().into_data_stream())
    };
    let forwarded = http.post(url).headers(headers).body(body).send().await;
    match forwarded {
        Ok(resp) => {
            let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
            let mut out = Response::builder().status(status);
            if let Some(ct) = resp.headers().get("content-type") {
                out = out.header("content-type", ct.as_bytes());
            }
            let stream = resp.bytes_stream().map_err(std::io::Error::other);
            out.body(Body::from_stream(stream)).unwrap()
        }
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
