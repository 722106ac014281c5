//! `GET /metrics` over HTTP on the address `[metrics] listen` names, and nothing else.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Called before each scrape to bring the status gauges up to date
/// ([`super::observe_mount`]).
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// The running endpoint; dropping it stops serving.
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Where it answers (the port the system chose when the config said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The endpoint's address, bound and not yet served: a daemon binds before it mounts, so
/// an address it cannot have fails the mount instead of going unnoticed.
pub struct Bound(tokio::net::TcpListener);

impl Bound {
    /// Bind `listen`. Anyone who can reach the address reads the metrics (no secrets, but
    /// sNFT ids, quotas and activity): an address other than loopback is bound as
    /// configured, with a warning.
    pub async fn bind(listen: SocketAddr) -> std::io::Result<Bound> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "metrics served beyond this machine: anyone who reaches the address reads them");
        }
        Ok(Bound(listener))
    }

    /// Serve the registry from the current runtime; `refresh` runs before each scrape.
    pub fn serve(self, refresh: Refresh) -> std::io::Result<MetricsServer> {
        let addr = self.0.local_addr()?;
        let app = axum::Router::new().route(
            "/metrics",
            get(move || {
                let refresh = refresh.clone();
                async move {
                    refresh();
                    (
                        StatusCode::OK,
                        [(header::CONTENT_TYPE, OPENMETRICS)],
                        super::encode(),
                    )
                        .into_response()
                }
            }),
        );
        let listener = self.0;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "metrics endpoint stopped");
            }
        });
        tracing::info!(%addr, "serving metrics on /metrics");
        Ok(MetricsServer { addr, task })
    }
}

/// [`Bound::bind`] and [`Bound::serve`] at once.
pub async fn serve(listen: SocketAddr, refresh: Refresh) -> std::io::Result<MetricsServer> {
    Bound::bind(listen).await?.serve(refresh)
}
