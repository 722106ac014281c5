//! `pxfs register`: store a BTNS key for an sNFT minted without one. Without `--btns-key`
//! the key is generated on the storage node, after the chain has confirmed the
//! registration would go through.

use clap::Args;

use super::ConfigArg;
use super::mint::btns_key_on_node;
use crate::chain::{Chain, TokenId};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sNFT to register
    #[arg(value_name = "TOKEN")]
    pub token: TokenId,
    /// BTNS/IPNS name (a key's `Id`) to store; default: generate a key on the node
    #[arg(long, value_name = "KEY")]
    pub btns_key: Option<String>,
}

pub async fn run(args: RegisterArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect_signing(&cfg.chain).await?;
    let key = match args.btns_key {
        Some(k) => k.trim().to_string(),
        None => {
            chain.check_register(args.token).await?;
            // One name per token and contract: a retry after a failed transaction reuses it.
            let name = format!(
                "pxfs-{}-{}-{}",
                chain.chain_id(),
                chain.contract(),
                args.token
            );
            btns_key_on_node(&cfg.node, &name).await?
        }
    };
    let tx = chain.register_btns_key(args.token, &key).await?;
    crate::say!(
        "registered BTNS key {key} for token {} in {} ({} gas)",
        args.token,
        tx.tx_hash,
        tx.gas_used
    );
    Ok(())
}
