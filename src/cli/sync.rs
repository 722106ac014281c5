//! `pxfs sync`: ask the contract to sync a token's usage through Chainlink.

use clap::Args;

use super::ConfigArg;
use crate::chain::{Chain, TokenId};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sNFT to sync
    #[arg(value_name = "TOKEN")]
    pub token: TokenId,
    /// Wait until the oracle has answered (not implemented yet)
    #[arg(long)]
    pub wait: bool,
}

pub async fn run(args: SyncArgs) -> anyhow::Result<()> {
    if args.wait {
        // Refuse before sending: a request the user expected to be awaited should not
        // go out half-handled.
        anyhow::bail!(
            "`pxfs sync --wait` is not implemented yet; run `pxfs sync TOKEN` and check `pxfs status`"
        );
    }
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect_signing(&cfg.chain).await?;
    let req = chain.request_sync(args.token).await?;
    println!(
        "sync of token {} requested: request id {} in {} ({} gas)",
        req.token_id, req.request_id, req.tx_hash, req.gas_used
    );
    Ok(())
}
