//! The daemon's `/metrics` endpoint (`[metrics] listen`): the counters every layer keeps
//! (src/metrics/), and gauges read from the same status the daemon publishes for `pxfs
//! status`, taken fresh at each scrape.

use std::sync::Arc;

use anyhow::Context;

use super::publish::Publisher;
use crate::cli::mount_status::MountStatus;
use crate::metrics::{Bound, MetricsServer, MountSample, TokenSample};

/// Bind the address the config names (before the mount: one it cannot have fails the
/// mount); `None` when it names none.
pub async fn bind(cfg: &crate::config::Config) -> anyhow::Result<Option<Bound>> {
    let Some(listen) = cfg.metrics.listen else {
        return Ok(None);
    };
    let bound = Bound::bind(listen)
        .await
        .with_context(|| format!("cannot serve metrics on {listen} ([metrics] listen)"))?;
    Ok(Some(bound))
}

/// Serve `/metrics`, its gauges from what `publisher` publishes.
pub fn serve(bound: Bound, publisher: Arc<Publisher>) -> Option<MetricsServer> {
    let refresh = Arc::new(move || crate::metrics::observe_mount(&sample(&publisher.current())));
    match bound.serve(refresh) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot serve metrics");
            None
        }
    }
}

/// The gauges' values in a status document.
pub fn sample(s: &MountStatus) -> MountSample {
    MountSample {
        pending_files: s.pending_files,
        pending_bytes: s.pending_bytes,
        loaded_inodes: s.loaded_inodes,
        node_reachable: s.node.reachable,
        chain_reachable: s.chain.reachable,
        chain_stale: s.chain.stale,
        tokens: s
            .tokens
            .iter()
            .map(|t| TokenSample {
                token_id: t.token_id,
                quota: t.quota,
                usage: t.usage,
                sync_deadline: t.sync_deadline,
                overdue: t.overdue,
                pending_files: t.pending_uploads,
                pending_bytes: t.pending_bytes,
                conflicts: t.conflicts,
            })
            .collect(),
    }
}
