//! `pxfs node`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(_args: NodeArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs node is not implemented yet")
}
