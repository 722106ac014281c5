//! `pxfs mount`.

use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct MountArgs {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(_args: MountArgs) -> anyhow::Result<()> {
    anyhow::bail!("pxfs mount is not implemented yet")
}
