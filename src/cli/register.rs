//! `pxfs register`: store a BTNS key for an sNFT minted without one.

use clap::Args;

use super::ConfigArg;
use crate::chain::{Chain, TokenId};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sNFT to register
    #[arg(value_name = "TOKEN")]
    pub token: TokenId,
    /// BTNS/IPNS key (the `Id` from `key/gen`). Required until the storage client can
    /// generate one.
    #[arg(long, value_name = "KEY")]
    pub btns_key: String,
}

pub async fn run(args: RegisterArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect_signing(&cfg.chain).await?;
    let tx = chain
        .register_btns_key(args.token, args.btns_key.trim())
        .await?;
    println!(
        "registered BTNS key {} for token {} in {} ({} gas)",
        args.btns_key, args.token, tx.tx_hash, tx.gas_used
    );
    Ok(())
}
