//! `pxfs oracle`: answer Chainlink sync requests for the configured contract.

use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::ConfigArg;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct OracleArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Seconds between polls of the chain
    #[arg(long, default_value_t = 1)]
    pub interval: u64,
    /// Serve the measurement as a Chainlink external adapter (the bridge `pxfs-measure`) on
    /// this address instead of answering requests on chain
    #[arg(long, value_name = "ADDR")]
    pub adapter: Option<std::net::SocketAddr>,
}

pub async fn run(args: OracleArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    if let Some(addr) = args.adapter {
        let node = crate::storage::NodeClient::new(&cfg.node)?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        crate::say!(
            "pxfs oracle serving the pxfs-measure adapter on http://{}",
            listener.local_addr()?
        );
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        axum::serve(
            listener,
            crate::oracle::adapter::router(
                node,
                cfg.oracle.limits(),
                Some(&cfg.cache.dir.join("oracle-adapter.memo")),
            ),
        )
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
        .await?;
        return Ok(());
    }
    let operator = cfg
        .chain
        .operator
        .clone()
        .ok_or(crate::oracle::OracleError::NoOperator)?;
    let job_id = cfg
        .oracle
        .job_id
        .clone()
        .ok_or(crate::oracle::OracleError::NoJobId)?;
    let state_path = cfg
        .oracle
        .state_file
        .clone()
        .unwrap_or_else(|| cfg.cache.dir.join("oracle-state.json"));
    // The oracle signs with its own key (an authorized sender on the Operator).
    let chain = crate::chain::Chain::connect_oracle(&cfg.chain)
        .await
        .context("oracle signer")?;
    let node = crate::storage::NodeClient::new(&cfg.node)?;
    let oracle = crate::oracle::Oracle::new(
        chain,
        node,
        &operator,
        &job_id,
        &state_path,
        cfg.oracle.limits(),
    )?;

    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    crate::say!("pxfs oracle answering job {job_id} on operator {operator}");
    oracle
        .run(Duration::from_secs(args.interval.max(1)), async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        })
        .await;
    Ok(())
}
