//! Command-line interface: argument definitions (clap derive) and one module per command.
//! Each command module owns the user-facing wording of its errors.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub mod check;
pub mod dapp;
pub mod devnet;
pub mod encrypt;
pub mod fstab;
pub mod history;
pub mod key;
pub mod mint;
pub mod mount;
pub mod mount_outcome;
pub mod mount_status;
pub mod node;
pub mod node_client;
pub mod oracle;
pub mod progress;
pub mod register;
pub mod stale;
pub mod status;
pub mod sync;
pub mod unmount;
pub mod web;

#[derive(Debug, Parser)]
#[command(
    name = "pxfs",
    version = crate::build_info::VERSION,
    about = "Mount PollinationX PX Storage NFTs as a filesystem"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command that reads the config file.
#[derive(Debug, Args, Clone, Default)]
pub struct ConfigArg {
    /// Config file (default: $PXFS_CONFIG, then ~/.config/pxfs/config.toml)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the sNFTs the wallet owns: quota, usage, sync state
    Status(status::StatusArgs),
    /// Mint a new sNFT (generates a BTNS key on the node unless one is given)
    Mint(mint::MintArgs),
    /// Register a BTNS key for an sNFT minted without one
    Register(register::RegisterArgs),
    /// Check that the node still holds every block of an sNFT's tree (exit 1: damage)
    Check(check::CheckArgs),
    /// Request an on-chain sync of an sNFT's usage (Chainlink)
    Sync(sync::SyncArgs),
    /// Mount the wallet's sNFTs
    Mount(mount::MountArgs),
    /// Unmount, draining pending uploads first
    Unmount(unmount::UnmountArgs),
    /// Run a local BTFS/IPFS-compatible storage node
    Node(node::NodeArgs),
    /// Answer Chainlink sync requests (the Chainlink node's job)
    Oracle(oracle::OracleArgs),
    /// Local development network: anvil + node + contracts
    Devnet(devnet::DevnetArgs),
    /// An sNFT's keys: its data key (status, passphrases, paper backup) and the PX dApp's secret
    Key(KeyArgs),
    /// Encrypt an sNFT's plaintext tree, or re-encrypt it under a new data key (--new-key)
    Encrypt(encrypt::EncryptArgs),
    /// Make an sNFT's encrypted tree plaintext (public)
    Decrypt(encrypt::DecryptArgs),
    /// List an sNFT's kept versions (.snapshots): time, size, files changed
    History(history::HistoryArgs),
    /// Bring a file or directory back from a kept version (into the live tree, or --to DEST)
    Restore(history::RestoreArgs),
    /// Serve a local dashboard: quota, usage over time, sync deadline, health; sync, unmount
    Web(web::WebArgs),
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    #[command(flatten)]
    Data(key::KeyCommand),
    #[command(flatten)]
    Dapp(dapp::DappCommand),
}

/// A tokio runtime for commands that are plain async programs.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        // The mount forks into the background before it starts any runtime.
        Command::Mount(a) => mount::run(a),
        Command::Status(a) => runtime()?.block_on(status::run(a)),
        Command::Mint(a) => runtime()?.block_on(mint::run(a)),
        Command::Register(a) => runtime()?.block_on(register::run(a)),
        Command::Sync(a) => runtime()?.block_on(sync::run(a)),
        Command::Check(a) => runtime()?.block_on(check::run(a)),
        Command::Unmount(a) => runtime()?.block_on(unmount::run(a)),
        Command::Node(a) => runtime()?.block_on(node::run(a)),
        Command::Oracle(a) => runtime()?.block_on(oracle::run(a)),
        Command::Devnet(a) => devnet::run(a),
        Command::Key(a) => match a.command {
            KeyCommand::Data(c) => runtime()?.block_on(key::run(c)),
            KeyCommand::Dapp(c) => runtime()?.block_on(dapp::run(c)),
        },
        Command::Encrypt(a) => runtime()?.block_on(encrypt::encrypt(a)),
        Command::Decrypt(a) => runtime()?.block_on(encrypt::decrypt(a)),
        Command::Web(a) => runtime()?.block_on(web::run(a)),
        Command::History(a) => history::history(a),
        Command::Restore(a) => history::restore(a),
    }
}
