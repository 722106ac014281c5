//! `pxfs unmount`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct UnmountArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(_args: UnmountArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs unmount is not implemented yet")
}
