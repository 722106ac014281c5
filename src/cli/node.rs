//! `pxfs node`: run the local BTFS/Kubo-compatible storage node until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::ConfigArg;
use crate::node::{NodeOptions, serve};

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub config: ConfigArg,

    /// Repo directory (blocks, pins, keys, names) [default: $PXFS_NODE_REPO, then
    /// ~/.local/share/pxfs/node]
    #[arg(long, value_name = "DIR", env = "PXFS_NODE_REPO")]
    pub repo: Option<PathBuf>,

    /// HTTP API and gateway address; port 0 picks a free port
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5001")]
    pub listen: SocketAddr,

    /// Join the IPFS network (TCP listener, bootstrap, DHT, bitswap); offline by default
    #[arg(long)]
    pub online: bool,

    /// Delete unpinned blocks by itself once the repo passes Datastore.StorageGCWatermark
    /// percent of Datastore.StorageMax in REPO/config (Kubo's defaults: 90% of 10GB), checked
    /// every Datastore.GCPeriod (1h) and after adds
    #[arg(long)]
    pub enable_gc: bool,
}

fn default_repo() -> anyhow::Result<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set; pass --repo")?)
            .join(".local/share"),
    };
    Ok(data.join("pxfs/node"))
}

pub async fn run(args: NodeArgs) -> anyhow::Result<()> {
    let repo = match args.repo {
        Some(repo) => repo,
        None => default_repo()?,
    };
    let options = NodeOptions {
        repo,
        listen: args.listen,
        online: args.online,
        enable_gc: args.enable_gc,
    };
    // The watchers are registered before the node announces itself: a SIGTERM sent right
    // after "listening" must stop it cleanly, not kill it with the default action.
    let shutdown = shutdown_signal()?;
    serve(options, shutdown).await?;
    Ok(())
}

/// Registers SIGINT and SIGTERM watchers now; the future completes on the first of them.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("watching SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("watching SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    })
}
