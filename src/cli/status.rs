//! `pxfs status`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(_args: StatusArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs status is not implemented yet")
}
