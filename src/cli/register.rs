//! `pxfs register`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(_args: RegisterArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs register is not implemented yet")
}
