//! `pxfs node`: a local BTFS/Kubo-compatible HTTP RPC node built on rust-ipfs.
//!
//! It owns the repo directory (`repo`), starts and stops the rust-ipfs instance (here), and
//! serves the RPC subset pxfs uses (`http`) plus a read-only gateway (`gateway`). Content goes
//! in through `add` (streamed into the UnixFS importer) and out through `cat`; pins, keys and
//! IPNS names are in `pins` and `names`. `gc` deletes what no pin keeps, on `repo/gc` and,
//! with `enable_gc`, by itself past the limits of `REPO/config` (`datastore_config`).
//!
//! Offline by default: no listeners, no bootstrap, no mDNS, and a block that is not in the
//! local store is an immediate error. `online` turns on TCP, Kademlia and bitswap.

mod add;
mod blocks;
mod cat;
mod datastore_config;
mod error;
mod gateway;
mod gc;
mod http;
mod names;
mod parts;
mod pins;
mod put;
mod repo;
mod routing;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rust_ipfs::Ipfs;
use rust_ipfs::builder::DefaultIpfsBuilder;

pub use names::ipns_name;

/// How long a stopping node waits for rust-ipfs to release the repo.
const LOCK_RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How to run a node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// Repo directory; created if missing.
    pub repo: PathBuf,
    /// HTTP address; port 0 picks a free port (read it from [`BoundNode::addr`] or `REPO/api`).
    pub listen: SocketAddr,
    /// Join the IPFS network (TCP listener, bootstrap, DHT, bitswap).
    pub online: bool,
    /// Collect unpinned blocks by itself past `Datastore.StorageGCWatermark`% of
    /// `Datastore.StorageMax` (`REPO/config`), checked every `Datastore.GCPeriod`.
    pub enable_gc: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot prepare repo {path}: {source}")]
    Repo {
        path: PathBuf,
        source: repo::RepoError,
    },
    #[error("invalid node config: {0}")]
    Config(#[from] datastore_config::ConfigError),
    #[error("cannot load keys: {0}")]
    Keys(#[from] names::NameError),
    // rust-ipfs reports with anyhow, which is not a std error; keep its chain in the message.
    #[error("cannot start the IPFS node (is another node using this repo?): {0:#}")]
    Start(anyhow::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(std::io::Error),
}

/// What every request handler shares.
pub(crate) struct Node {
    ipfs: Ipfs,
    keys: names::Keys,
    names: names::Names,
    repo: PathBuf,
    online: bool,
    gc: gc::Collector,
    enable_gc: bool,
    /// The block store's flushes, shared by the adds and puts waiting at once.
    flushes: Arc<blocks::Flushes>,
}

pub(crate) type NodeState = Arc<Node>;

/// A started node whose HTTP listener is bound but not yet serving.
pub struct BoundNode {
    node: NodeState,
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
}

impl BoundNode {
    /// Opens the repo, starts rust-ipfs, binds the HTTP listener and writes `REPO/api`.
    pub async fn bind(opts: NodeOptions) -> Result<Self, NodeError> {
        let repo_error = |source| NodeError::Repo {
            path: opts.repo.clone(),
            source,
        };
        repo::create_private_dir(&opts.repo).map_err(repo_error)?;
        // Before anything starts: a malformed limit is an error now, not a surprise later.
        let limits = datastore_config::StorageLimits::load(&opts.repo)?;
        let keys = names::Keys::load(&repo::keys_dir(&opts.repo))?;
        let names = names::Names::open(&repo::names_dir(&opts.repo))?;
        let identity = keys
            .get(names::SELF_KEY)
            .ok_or_else(|| names::NameError::NoSuchKey(names::SELF_KEY.to_owned()))?;
        let ipfs = start_ipfs(&opts, &identity).await?;

        let listener = match tokio::net::TcpListener::bind(opts.listen).await {
            Ok(listener) => listener,
            Err(source) => {
                ipfs.exit_daemon().await;
                return Err(NodeError::Bind {
                    addr: opts.listen,
                    source,
                });
            }
        };
        let addr = listener.local_addr().map_err(|source| NodeError::Bind {
            addr: opts.listen,
            source,
        })?;
        // Written once the listener is bound: connections queue from here on, so whoever reads
        // the file can call the node right away.
        let url = format!("http://{addr}");
        if let Err(source) = repo::write_api_file(&opts.repo, &url) {
            ipfs.exit_daemon().await;
            return Err(NodeError::Repo {
                path: opts.repo,
                source,
            });
        }
        let node = Arc::new(Node {
            ipfs,
            keys,
            names,
            repo: opts.repo,
            online: opts.online,
            gc: gc::Collector::new(limits),
            enable_gc: opts.enable_gc,
            flushes: Arc::default(),
        });
        Ok(BoundNode {
            node,
            listener,
            addr,
        })
    }

    /// The address the HTTP API listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops rust-ipfs and removes `REPO/api`.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), NodeError> {
        let BoundNode {
            node,
            listener,
            addr,
        } = self;
        let url = format!("http://{addr}");
        tracing::info!(%url, repo = %node.repo.display(), online = node.online, "node serving");

        let ipfs = node.ipfs.clone();
        let repo = node.repo.clone();
        // No Nagle: an answer's headers and the last piece of its body go out separately,
        // and waiting for the ACK of the first (which the client delays) stalled ranged
        // `cat`s by 40 ms each.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let collector = node
            .enable_gc
            .then(|| tokio::spawn(gc::run_automatic(node.clone())));
        let served = axum::serve(listener, http::router(node.clone()))
            .with_graceful_shutdown(shutdown)
            .await;
        repo::remove_api_file(&repo);
        // No sweep may still delete once the repo is released to the next node.
        node.gc.stop();
        if let Some(collector) = collector
            && let Err(e) = collector.await
        {
            tracing::warn!(error = %e, "automatic garbage collection task failed");
        }
        node.gc.quiesce().await;
        drop(node);
        // Blocks and pins are fsynced as they are written; stopping the daemon releases the
        // repo lock so the next node can open the repo.
        ipfs.exit_daemon().await;
        repo::wait_for_release(&repo, LOCK_RELEASE_TIMEOUT).await;
        tracing::info!("node stopped");
        served.map_err(NodeError::Serve)
    }
}

/// Runs a node until `shutdown` completes. Once serving it prints
/// `pxfs node listening on http://ADDR` on stdout and writes `http://ADDR` to `REPO/api`.
pub async fn serve(
    opts: NodeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let bound = BoundNode::bind(opts).await?;
    let addr = bound.addr();
    crate::say!("pxfs node listening on http://{addr}");
    bound.serve(shutdown).await
}

async fn start_ipfs(opts: &NodeOptions, identity: &rust_ipfs::Keypair) -> Result<Ipfs, NodeError> {
    let mut builder = DefaultIpfsBuilder::with_keypair(identity)
        .map_err(|e| NodeError::Start(e.into()))?
        .set_path(&opts.repo);
    if opts.online {
        builder = builder
            .with_default()
            .enable_tcp()
            .enable_dns()
            .add_listening_addr(
                "/ip4/0.0.0.0/tcp/0"
                    .parse::<rust_ipfs::Multiaddr>()
                    .map_err(|e| NodeError::Start(anyhow::anyhow!("{e}")))?,
            );
    }
    let ipfs = builder.start().await.map_err(NodeError::Start)?;
    if opts.online {
        // In the background and best effort: bootstrapping waits on the network, and a node
        // without internet still serves its own content.
        let ipfs = ipfs.clone();
        tokio::spawn(async move {
            if let Err(e) = ipfs.default_bootstrap().await {
                tracing::warn!(error = %e, "cannot add bootstrap peers");
            }
            if let Err(e) = ipfs.bootstrap().await {
                tracing::warn!(error = %e, "bootstrap failed");
            }
        });
    }
    Ok(ipfs)
}
