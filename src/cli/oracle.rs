//! `pxfs oracle`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct OracleArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(_args: OracleArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs oracle is not implemented yet")
}
