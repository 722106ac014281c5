//! `pxfs key import-dapp TOKEN` / `pxfs key forget-dapp TOKEN`: the PollinationX dApp's
//! per-sNFT secret, with which the mount shows the dApp's files under `px-dapp/`.
//! The secret is read from a prompt without echo (or stdin when it is not a terminal),
//! never from argv, and is never printed or logged.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::ConfigArg;
use crate::chain::{Chain, TokenId};
use crate::config::Config;
use crate::dapp::secret::SecretStore;
use crate::dapp::{DappSecret, read_index};

#[derive(Debug, Subcommand)]
pub enum DappCommand {
    /// Store the PollinationX dApp's secret of an sNFT (typed at a prompt, or on stdin):
    /// mounts then show the dApp's files under TOKEN/px-dapp/, read-only
    ImportDapp(DappArgs),
    /// Remove the stored dApp secret of an sNFT (mounts stop showing px-dapp/)
    ForgetDapp(DappArgs),
}

#[derive(Debug, Args)]
pub struct DappArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sNFT
    #[arg(value_name = "TOKEN")]
    pub token: TokenId,
}

/// The secret store of `cfg`'s chain and contract.
pub fn secret_store(cfg: &Config) -> SecretStore {
    SecretStore::new(&cfg.cache.dir, cfg.chain.chain_id, &cfg.chain.contract)
}

pub async fn run(cmd: DappCommand) -> anyhow::Result<()> {
    match cmd {
        DappCommand::ImportDapp(a) => import(a).await,
        DappCommand::ForgetDapp(a) => {
            let cfg = Config::load(a.config.config.as_deref())?;
            if secret_store(&cfg).forget(a.token)? {
                crate::say!("forgot the dApp secret of sNFT {}", a.token);
            } else {
                crate::say!("no dApp secret was stored for sNFT {}", a.token);
            }
            Ok(())
        }
    }
}

async fn import(a: DappArgs) -> anyhow::Result<()> {
    let cfg = Config::load(a.config.config.as_deref())?;
    let secret = read_secret(a.token)?;
    let chain = Chain::connect(&cfg.chain).await?;
    let client = super::node_client::node_client(&cfg, &[a.token])?;
    let (cid, index) = read_index(&chain, &client, a.token, &secret).await?;
    let path = secret_store(&cfg).store(a.token, &secret)?;
    crate::say!(
        "sNFT {}: the dApp's index ({cid}) lists {} file(s) and folder(s); secret stored in {} \
         (mode 0600). Mounts show them under {}/px-dapp/, read-only.",
        a.token,
        index.count(),
        path.display(),
        a.token
    );
    Ok(())
}

/// The secret from a prompt with no echo, or from stdin's first line when stdin is not a
/// terminal (`pxfs key import-dapp 7 < secret.txt`).
fn read_secret(token: TokenId) -> anyhow::Result<DappSecret> {
    let text = zeroize::Zeroizing::new(if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!(
            "dApp secret of sNFT {token} (64 hex characters, not echoed): "
        ))
        .context("cannot read the secret from the terminal")?
    } else {
        let mut buf = Vec::new();
        std::io::stdin()
            .take(4096)
            .read_to_end(&mut buf)
            .context("cannot read the secret from stdin")?;
        let buf = zeroize::Zeroizing::new(buf);
        String::from_utf8_lossy(&buf)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    });
    Ok(DappSecret::parse(&text)?)
}
