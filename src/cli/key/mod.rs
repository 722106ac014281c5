//! `pxfs key`: an encrypted sNFT's data key — what its usage document offers and whether
//! this machine can unlock it (`status`), passphrases (`add-passphrase`,
//! `remove-passphrase`), the paper backup (`export`, `import`), and the wallet's wrap
//! (`rotate-wallet`). Secrets are read from
//! the terminal without echo, from stdin, or from a file; never from argv.

use clap::Subcommand;

mod backup;
pub mod context;
mod passphrase;
mod status;
mod wallet;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Encryption, key id, ways to unlock, and whether this machine can unlock it now
    Status(status::StatusArgs),
    /// Add a passphrase that unlocks the sNFT (typed, or one line of stdin)
    AddPassphrase(context::TokenArgs),
    /// Remove the passphrase typed (or all with --all); never the last way to unlock
    RemovePassphrase(passphrase::RemoveArgs),
    /// Print the paper backup of the sNFT's data key
    Export(context::TokenArgs),
    /// Type a paper backup back in and wrap the key for this wallet (after a transfer)
    Import(context::TokenArgs),
    /// Re-wrap the key for this wallet under a fresh salt (a new signature); legacy wraps become EIP-712
    RotateWallet(context::TokenArgs),
}

pub async fn run(cmd: KeyCommand) -> anyhow::Result<()> {
    match cmd {
        KeyCommand::Status(a) => status::run(a).await,
        KeyCommand::AddPassphrase(a) => passphrase::add(a).await,
        KeyCommand::RemovePassphrase(a) => passphrase::remove(a).await,
        KeyCommand::Export(a) => backup::export(a).await,
        KeyCommand::Import(a) => backup::import(a).await,
        KeyCommand::RotateWallet(a) => wallet::rotate(a).await,
    }
}
