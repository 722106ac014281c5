//! `pxfs mint`: mint an sNFT of a package, storing its BTNS key at mint.

use clap::Args;

use super::ConfigArg;
use crate::chain::Chain;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct MintArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Package to mint (0 is the free package, once per wallet)
    #[arg(long, value_name = "ID")]
    pub package: u64,
    /// BTNS/IPNS key name (the `Id` from `key/gen`) under which the node publishes this
    /// sNFT's usage document. Required until the storage client can generate one.
    #[arg(long, value_name = "KEY")]
    pub btns_key: String,
}

pub async fn run(args: MintArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect_signing(&cfg.chain).await?;
    let minted = chain.mint(args.package, args.btns_key.trim()).await?;
    println!(
        "minted token {} (package {}, BTNS key {}) in {} ({} gas)",
        minted.token_id, args.package, args.btns_key, minted.tx_hash, minted.gas_used
    );
    Ok(())
}
