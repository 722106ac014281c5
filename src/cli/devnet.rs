//! `pxfs devnet up`: a local chain, node and contracts for demos and tests.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::devnet::{Devnet, DevnetOptions};

#[derive(Debug, Args)]
pub struct DevnetArgs {
    #[command(subcommand)]
    pub command: DevnetCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Start anvil and a node, deploy the contracts, mint an sNFT; stay in the foreground
    Up(UpArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the devnet's state, config and logs
    #[arg(long, default_value = "./pxfs-devnet")]
    pub dir: PathBuf,
    /// Also mount the wallet's sNFTs here
    #[arg(long, value_name = "MOUNTPOINT")]
    pub mount: Option<PathBuf>,
    /// Seconds after a sync before an sNFT is overdue
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    pub sync_interval: u64,
    /// Quota of the free package (and so of the minted sNFT), in bytes
    #[arg(long, default_value_t = 1 << 30)]
    pub quota: u64,
    /// Do not run `pxfs oracle` (sync requests then wait for another oracle)
    #[arg(long)]
    pub no_oracle: bool,
    /// Keep the storage node's repository here instead of DIR/node, e.g. on another
    /// filesystem, as a node on another machine would be. Must be empty (a filesystem's
    /// lost+found aside).
    #[arg(long, value_name = "DIR")]
    pub node_repo: Option<PathBuf>,
}

pub fn run(args: DevnetArgs) -> anyhow::Result<()> {
    match args.command {
        DevnetCommand::Up(up) => super::runtime()?.block_on(run_up(up)),
    }
}

async fn run_up(args: UpArgs) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    eprintln!("starting devnet in {}", args.dir.display());
    let (steps_tx, mut steps) = tokio::sync::mpsc::unbounded_channel();
    let opts = DevnetOptions {
        dir: args.dir.clone(),
        sync_interval: args.sync_interval,
        quota: args.quota,
        mount: args.mount.clone(),
        oracle: !args.no_oracle,
        node_repo: args.node_repo.clone(),
        steps: Some(steps_tx),
    };
    let total = opts.step_count();
    let shown = tokio::spawn(async move {
        let mut progress = super::progress::Progress::steps("devnet", total);
        let mut n = 0;
        while let Some(step) = steps.recv().await {
            n += 1;
            progress.step(n, total, step);
        }
        progress.finish(None);
    });
    let start = async move {
        let d = Devnet::up(opts).await;
        // The sender is dropped with the options: the display finishes.
        let _ = shown.await;
        d
    };
    // An interrupt during start-up must stop what already started: dropping the future
    // drops the children, which are killed on drop.
    let mut devnet = tokio::select! {
        d = start => d?,
        _ = sigterm.recv() => anyhow::bail!("interrupted during start-up"),
        _ = sigint.recv() => anyhow::bail!("interrupted during start-up"),
    };
    let info = &devnet.info;
    println!("devnet ready");
    println!("  config:   {}", info.config.display());
    println!(
        "  env:      {} (source it to sign with the dev wallet)",
        info.env_file.display()
    );
    println!("  chain:    {} (chain id {})", info.rpc_url, info.chain_id);
    println!("  node:     {}", info.node_url);
    println!("  contract: {}", info.contract);
    println!("  wallet:   {} owns sNFT {:?}", info.wallet, info.token_ids);
    if let Some(mp) = &info.mountpoint {
        println!("  mounted:  {}", mp.display());
        if let Some(t) = info.token_ids.first() {
            println!(
                "try: cp -a /etc {mp}/{t}/ && df -h {mp}/{t} && getfattr -d {mp}/{t}",
                mp = mp.display()
            );
        }
    }
    println!("  status:   pxfs status --config {}", info.config.display());
    println!("Ctrl-C stops the devnet.");

    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    let reason = loop {
        tokio::select! {
            _ = sigterm.recv() => break None,
            _ = sigint.recv() => break None,
            _ = tick.tick() => {
                if let Some(failed) = devnet.failed_child() {
                    break Some(failed);
                }
            }
        }
    };
    eprintln!("stopping devnet");
    devnet.down().await;
    match reason {
        None => Ok(()),
        Some(r) => anyhow::bail!("devnet stopped: {r}"),
    }
}
