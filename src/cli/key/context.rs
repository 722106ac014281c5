//! What every `pxfs key` command starts from: the config, the token on chain (its BTNS
//! name), the wallet signer if one is configured, the node, and the token's published
//! usage document.

use alloy::primitives::Address;
use alloy::signers::local::PrivateKeySigner;
use anyhow::{Context, bail};
use clap::Args;

use crate::chain::{Chain, ChainError, TokenId, signer};
use crate::cli::ConfigArg;
use crate::cli::mount_status;
use crate::config::Config;
use crate::format::usage::{AnyUsageDoc, Encryption, UsageDoc};
use crate::format::wrap::EncryptionInfo;
use crate::keys::document::{self, Current};
use crate::keys::{Means, PassphraseSource, TokenRef};
use crate::storage::NodeClient;

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sNFT
    #[arg(value_name = "TOKEN")]
    pub token: TokenId,
}

pub struct KeyContext {
    pub cfg: Config,
    pub chain: Chain,
    pub token: TokenRef,
    pub btns: String,
    pub client: NodeClient,
    /// `PXFS_PRIVATE_KEY` or the keystore; `None` on a machine without the wallet key.
    pub wallet: Option<PrivateKeySigner>,
    pub current: Option<Current>,
}

impl KeyContext {
    /// The BTNS record's settle window (`[upload] settle_ms`, docs/FORMAT.md §9.3): an edit
    /// holds once the record showed it this long.
    pub fn settle(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.cfg.upload.settle_ms)
    }

    pub async fn load(args: &TokenArgs) -> anyhow::Result<KeyContext> {
        let cfg = Config::load(args.config.config.as_deref())?;
        let chain = Chain::connect(&cfg.chain).await?;
        let state = chain.token(args.token).await?;
        let Some(btns) = state.btns_key.filter(|b| !b.trim().is_empty()) else {
            bail!(
                "token {} has no BTNS name, so it has no usage document and no key yet (pxfs register {})",
                args.token,
                args.token
            );
        };
        let wallet = match signer::load(&cfg.chain) {
            Ok(s) => Some(s),
            Err(ChainError::NoSigner) => None,
            Err(e) => return Err(e.into()),
        };
        let client = NodeClient::new(&cfg.node)?;
        let current = document::current(&client, &btns)
            .await
            .with_context(|| format!("reading token {}'s usage document", args.token))?;
        Ok(KeyContext {
            token: TokenRef {
                chain_id: chain.chain_id(),
                contract: chain.contract(),
                token_id: args.token,
            },
            cfg,
            chain,
            btns,
            client,
            wallet,
            current,
        })
    }

    /// The wallet and the passphrase source of this machine; `ask` allows the terminal or
    /// stdin when no passphrase file is configured.
    pub fn means(&self, ask: bool) -> Means<'_> {
        Means {
            wallet: self.wallet.as_ref(),
            passphrase: PassphraseSource::configured(&self.cfg.keys, ask),
        }
    }

    /// The current `pxfs/usage/2` document of an encrypted token and its wraps; refused
    /// with a sentence for a token without a document or with a plaintext tree.
    pub fn sealed(&self) -> anyhow::Result<(&Current, &UsageDoc, &EncryptionInfo)> {
        let id = self.token.token_id;
        let Some(cur) = &self.current else {
            bail!(
                "token {id} has no usage document under {} yet: its data key is made by the first commit of a mount",
                self.btns
            );
        };
        match &cur.doc {
            AnyUsageDoc::V2(doc) => match &doc.encryption {
                Encryption::Sealed(info) => Ok((cur, doc, info)),
                Encryption::None => {
                    bail!("token {id} is not encrypted (encryption = none): it has no data key")
                }
            },
            AnyUsageDoc::V1(_) => {
                bail!("token {id} is not encrypted (a format v1 tree): it has no data key")
            }
        }
    }

    /// Refuses when a mount of this token runs from the same cache directory (or is seen
    /// mounted on this machine, by its BTNS name): it publishes usage documents too, and
    /// two writers must not race.
    pub fn refuse_if_mounted(&self) -> anyhow::Result<()> {
        let id = self.token.token_id;
        if let Some(mp) = mounted_at(&self.cfg, &self.token) {
            bail!(
                "token {id} is mounted at {mp} from this cache directory; unmount it first (pxfs unmount {mp}) so that two writers never publish over each other"
            );
        }
        if let Some(dir) = crate::cli::sync::mounted_token_dir(id, Some(&self.btns)) {
            bail!(
                "token {id} is mounted on this machine ({}); unmount it first so that two writers never publish over each other",
                dir.display()
            );
        }
        Ok(())
    }

    /// The configured signer, which must be the config's wallet and own the token: a
    /// wallet wrap is for the owner.
    pub async fn owner_signer(&self) -> anyhow::Result<&PrivateKeySigner> {
        let id = self.token.token_id;
        let Some(s) = &self.wallet else {
            bail!(
                "no wallet key is configured (PXFS_PRIVATE_KEY or the config's keystore): importing wraps token {id}'s key for the owner's wallet"
            );
        };
        let wallet = self.chain.wallet();
        if s.address() != wallet {
            return Err(ChainError::WalletMismatch {
                signer: s.address(),
                wallet,
            }
            .into());
        }
        if !self.chain.owns(id).await? {
            bail!("the wallet {wallet} does not own token {id}");
        }
        Ok(s)
    }
}

/// The mount point of a running mount of `token` from `cfg`'s cache directory, as
/// `pxfs status` finds them.
pub fn mounted_at(cfg: &Config, token: &TokenRef) -> Option<String> {
    mount_status::running(&cfg.cache.dir)
        .into_iter()
        .find(|m| {
            m.chain_id == token.chain_id
                && m.contract.parse::<Address>().ok() == Some(token.contract)
                && m.tokens.iter().any(|t| t.token_id == token.token_id)
        })
        .map(|m| m.mountpoint.display().to_string())
}
