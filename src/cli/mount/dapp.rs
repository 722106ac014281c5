//! The mount follows each sNFT's dApp index (`crate::dapp`): read at mount and at every
//! chain poll, for the sNFTs whose dApp secret `pxfs key import-dapp` stored. A poll costs
//! one `getExtraContent` call per such sNFT; the index is fetched and decrypted again only
//! when its CID changes. Failures are logged once per distinct error; the mount serves the
//! sNFT either way.

use std::collections::HashMap;
use std::time::Duration;

use crate::chain::{Chain, TokenId};
use crate::dapp::secret::SecretStore;
use crate::dapp::{DappError, find_index, load_index};
use crate::fs::{DAPP_DIR, Fs, Ino};
use crate::storage::NodeClient;

/// One refresh of every sNFT gives up after this long (the next poll tries again).
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct DappFollower {
    store: SecretStore,
    client: NodeClient,
    /// The index CID shown per sNFT.
    shown: HashMap<TokenId, String>,
    /// The last failure logged per sNFT.
    failed: HashMap<TokenId, String>,
    /// Tells the kernel that a directory's entry changed (its cache would show the old
    /// `px-dapp` for up to the entry TTL); none before the FUSE session exists.
    invalidate: Option<Invalidate>,
}

/// Drops the kernel's cached entry `name` in directory `parent`.
pub type Invalidate = Box<dyn Fn(Ino, &str) + Send + Sync>;

impl DappFollower {
    pub fn new(store: SecretStore, client: NodeClient) -> DappFollower {
        DappFollower {
            store,
            client,
            shown: HashMap::new(),
            failed: HashMap::new(),
            invalidate: None,
        }
    }

    pub fn set_invalidate(&mut self, invalidate: Invalidate) {
        self.invalidate = Some(invalidate);
    }

    /// `px-dapp` of `token` was replaced or removed: the kernel looks it up again.
    fn changed(&self, root: Ino) {
        if let Some(f) = &self.invalidate {
            f(root, DAPP_DIR);
        }
    }

    /// Bring every mounted sNFT's `px-dapp/` up to date with its index.
    pub async fn refresh(&mut self, fs: &Fs, chain: &Chain) {
        let tokens = fs.tokens();
        self.shown.retain(|t, _| tokens.contains(t));
        let all = async {
            for token in tokens {
                let result = self.refresh_token(fs, chain, token).await;
                self.report(token, result);
            }
        };
        if tokio::time::timeout(REFRESH_TIMEOUT, all).await.is_err() {
            tracing::warn!(
                "reading the dApp's index took more than {} s; trying again at the next poll",
                REFRESH_TIMEOUT.as_secs()
            );
        }
    }

    fn report(&mut self, token: TokenId, result: anyhow::Result<()>) {
        match result {
            Ok(()) => {
                self.failed.remove(&token);
            }
            Err(e) => {
                let message = format!("{e:#}");
                if self.failed.get(&token) != Some(&message) {
                    tracing::warn!(token, error = %message, "the dApp's files are not shown (px-dapp)");
                    self.failed.insert(token, message);
                }
            }
        }
    }

    async fn hide(&mut self, fs: &Fs, token: TokenId) -> anyhow::Result<()> {
        if self.shown.remove(&token).is_some() {
            let root = fs.set_dapp_index(token, None).await?;
            self.changed(root);
            tracing::info!(token, "px-dapp hidden");
        }
        Ok(())
    }

    async fn refresh_token(
        &mut self,
        fs: &Fs,
        chain: &Chain,
        token: TokenId,
    ) -> anyhow::Result<()> {
        let Some(secret) = self.store.load(token)? else {
            return self.hide(fs, token).await; // forgotten (`pxfs key forget-dapp`)
        };
        let cid = match find_index(chain, token, &secret).await {
            Ok(cid) => cid,
            // The chain did not answer: keep what is shown.
            Err(e @ DappError::Chain { .. }) => return Err(e.into()),
            Err(e) => {
                self.hide(fs, token).await?;
                return Err(e.into());
            }
        };
        if self.shown.get(&token) == Some(&cid) {
            return Ok(());
        }
        // On hosted nodes, through this sNFT's own endpoint and login.
        match load_index(&self.client.for_token(token), token, &cid, &secret).await {
            Ok(index) => {
                let root = fs.set_dapp_index(token, Some(&index)).await?;
                self.changed(root);
                tracing::info!(
                    token,
                    cid,
                    items = index.count(),
                    "showing the dApp's files under px-dapp/ (read-only)"
                );
                self.shown.insert(token, cid);
                Ok(())
            }
            // The node did not answer: keep what is shown.
            Err(e @ DappError::Node { .. }) => Err(e.into()),
            Err(e) => {
                self.hide(fs, token).await?;
                Err(e.into())
            }
        }
    }
}
