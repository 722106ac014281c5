//! `pxfs sync`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(_args: SyncArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs sync is not implemented yet")
}
