//! `pxfs devnet`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct DevnetArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(_args: DevnetArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs devnet is not implemented yet")
}
