//! `pxfs mint`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct MintArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(_args: MintArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs mint is not implemented yet")
}
