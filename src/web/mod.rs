//! `pxfs web`: a dashboard on loopback for the person at the machine. Per sNFT: the quota
//! bar, usage over time (the chain of usage documents), the sync deadline, uploads in
//! flight, node and chain health, conflict copies and the last `pxfs check`; actions sync
//! now and unmount.
//!
//! What it shows and does comes from a [`Backend`] (the CLI's own `pxfs status`, `pxfs
//! sync` and `pxfs unmount` code): this module owns the HTTP side, the access rules
//! ([`auth`]) and the page, built into the binary (no CDN, no JS library).

pub mod auth;
pub mod history;

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

pub use history::UsagePoint;

const PAGE: &str = include_str!("page.html");

/// Where the dashboard's data and actions come from.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// The document `pxfs status --json` prints.
    async fn status(&self) -> Result<serde_json::Value, String>;
    /// Usage over time of `token`, oldest first.
    async fn history(&self, token: u64) -> Result<Vec<UsagePoint>, String>;
    /// Sync `token` now, as `pxfs sync` does; what happened, in a sentence.
    async fn sync(&self, token: u64) -> Result<String, String>;
    /// Unmount a running mount, as `pxfs unmount` does.
    async fn unmount(&self, mountpoint: &str) -> Result<String, String>;
}

/// Refuse any address but loopback: the dashboard can sync and unmount, and its only lock
/// is a token in a URL.
pub fn check_listen(listen: SocketAddr) -> Result<(), String> {
    match listen.ip().is_loopback() {
        true => Ok(()),
        false => Err(format!(
            "pxfs web serves on loopback only (127.0.0.1 or [::1]), not {listen}: from another \
             machine, use an SSH tunnel (ssh -L PORT:127.0.0.1:PORT host)"
        )),
    }
}

#[derive(Clone)]
struct Served {
    token: Arc<str>,
    on: SocketAddr,
    backend: Arc<dyn Backend>,
}

/// The running dashboard; dropping it stops serving.
pub struct Dashboard {
    addr: SocketAddr,
    token: String,
    task: tokio::task::JoinHandle<()>,
}

impl Dashboard {
    /// Bind `listen` (loopback only) and serve from the current runtime with a new token.
    pub async fn start(listen: SocketAddr, backend: Arc<dyn Backend>) -> anyhow::Result<Dashboard> {
        check_listen(listen).map_err(anyhow::Error::msg)?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let token = auth::new_token();
        let served = Served {
            token: Arc::from(token.as_str()),
            on: addr,
            backend,
        };
        let app = router(served);
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "pxfs web stopped serving");
            }
        });
        Ok(Dashboard { addr, token, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The page's address with the access token: what the user opens.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.addr, self.token)
    }

    /// Serve until the task ends (it does not on its own).
    pub async fn wait(self) {
        let task = &mut { self }.task;
        let _ = task.await;
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn router(served: Served) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/status", get(status))
        .route("/api/history/{token}", get(history))
        .route("/api/sync/{token}", post(sync))
        .route("/api/unmount", post(unmount))
        .layer(axum::middleware::from_fn_with_state(served.clone(), guard))
        .with_state(served)
}

/// Every request: the access rules, then headers that keep the page to itself.
async fn guard(State(s): State<Served>, req: Request, next: Next) -> Response {
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD);
    let refused = auth::refusal(
        &s.token,
        s.on,
        req.headers(),
        req.uri().query(),
        changes_state,
    );
    let mut resp = match refused {
        Some((code, why)) => (code, Json(serde_json::json!({ "error": why }))).into_response(),
        None => next.run(req).await,
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    resp
}

async fn page() -> Response {
    const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                       connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                       frame-ancestors 'none'";
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, CSP),
        ],
        PAGE,
    )
        .into_response()
}

fn answer<T: serde::Serialize>(r: Result<T, String>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(serde_json::json!({ "error": e })),
        )
            .into_response(),
    }
}

async fn status(State(s): State<Served>) -> Response {
    answer(s.backend.status().await)
}

async fn history(State(s): State<Served>, Path(token): Path<u64>) -> Response {
    answer(s.backend.history(token).await)
}

async fn sync(State(s): State<Served>, Path(token): Path<u64>) -> Response {
    answer(
        s.backend
            .sync(token)
            .await
            .map(|m| serde_json::json!({ "message": m })),
    )
}

#[derive(serde::Deserialize)]
struct UnmountRequest {
    mountpoint: String,
}

async fn unmount(State(s): State<Served>, Json(r): Json<UnmountRequest>) -> Response {
    answer(
        s.backend
            .unmount(&r.mountpoint)
            .await
            .map(|m| serde_json::json!({ "message": m })),
    )
}

#[cfg(test)]
mod tests;
