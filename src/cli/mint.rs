//! `pxfs mint`: mint an sNFT of a package, storing its BTNS key at mint. Without
//! `--btns-key` the key is generated on the storage node first (as PX's mint does), but
//! only after the chain has confirmed the mint would go through.

use anyhow::Context;
use clap::Args;

use super::ConfigArg;
use crate::chain::Chain;
use crate::config::{Config, NodeConfig};
use crate::storage::NodeClient;

#[derive(Debug, Args)]
pub struct MintArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Package to mint (0 is the free package, once per wallet)
    #[arg(long, value_name = "ID")]
    pub package: u64,
    /// BTNS/IPNS name (a key's `Id`) to store; default: generate a new key on the node
    #[arg(long, value_name = "KEY")]
    pub btns_key: Option<String>,
}

pub async fn run(args: MintArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect_signing(&cfg.chain).await?;
    let key = match args.btns_key {
        Some(k) => k.trim().to_string(),
        None => {
            chain.check_mint(args.package).await?;
            let name = format!("pxfs-{}-{:016x}", chain.chain_id(), rand::random::<u64>());
            btns_key_on_node(&cfg.node, &name).await?
        }
    };
    let minted = chain.mint(args.package, &key).await?;
    crate::say!(
        "minted token {} (package {}, BTNS key {key}) in {} ({} gas)",
        minted.token_id,
        args.package,
        minted.tx_hash,
        minted.gas_used
    );
    Ok(())
}

/// The BTNS name of the node's key called `name`, generating the key if there is none,
/// so a retried command reuses what an interrupted one created.
pub(super) async fn btns_key_on_node(node: &NodeConfig, name: &str) -> anyhow::Result<String> {
    let client = NodeClient::new(node)?;
    let existing = client
        .key_list()
        .await
        .with_context(|| format!("cannot list keys on the node at {}", node.api_url))?;
    if let Some(k) = existing.into_iter().find(|k| k.name == name) {
        return Ok(k.id);
    }
    let key = client
        .key_gen(name)
        .await
        .with_context(|| format!("cannot generate a BTNS key on the node at {}", node.api_url))?;
    tracing::info!(name, id = %key.id, "generated BTNS key");
    Ok(key.id)
}
