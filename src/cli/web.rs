//! `pxfs web`: the local dashboard (src/web/) over this config's sNFTs. It shows what
//! `pxfs status --json` reports and the usage documents' history, and its actions run the
//! code of `pxfs sync` and `pxfs unmount`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use clap::Args;

use super::ConfigArg;
use crate::config::Config;
use crate::web::history::History;
use crate::web::{Backend, Dashboard, UsagePoint};

/// Usage documents shown per sNFT (the newest ones).
const HISTORY_POINTS: usize = 500;

#[derive(Debug, Args)]
pub struct WebArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where to serve: a loopback address and port (0: any free port)
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9478")]
    pub listen: SocketAddr,
}

pub async fn run(args: WebArgs) -> anyhow::Result<()> {
    crate::web::check_listen(args.listen).map_err(anyhow::Error::msg)?;
    let cfg = Config::load(args.config.config.as_deref())?;
    let backend = Arc::new(CliBackend {
        config: args.config.clone(),
        cfg,
        last: Mutex::new(None),
        history: History::default(),
    });
    let dashboard = Dashboard::start(args.listen, backend).await?;
    // The token is in this line only: never in a log.
    crate::say!("pxfs web: open {}", dashboard.url());
    crate::say!("(serving on {} until Ctrl-C)", dashboard.addr());
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = dashboard.wait() => {}
    }
    Ok(())
}

struct CliBackend {
    config: ConfigArg,
    cfg: Config,
    /// The last status read, for what the history and unmount need to know.
    last: Mutex<Option<serde_json::Value>>,
    history: History,
}

impl CliBackend {
    fn last(&self) -> Option<serde_json::Value> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn fresh_status(&self) -> Result<serde_json::Value, String> {
        let report = super::status::gather(&self.cfg)
            .await
            .map_err(|e| format!("{e:#}"))?;
        let json = serde_json::to_value(&report).map_err(|e| e.to_string())?;
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(json.clone());
        Ok(json)
    }
}

#[async_trait]
impl Backend for CliBackend {
    async fn status(&self) -> Result<serde_json::Value, String> {
        self.fresh_status().await
    }

    async fn history(&self, token: u64) -> Result<Vec<UsagePoint>, String> {
        let status = match self.last() {
            Some(s) => s,
            None => self.fresh_status().await?,
        };
        let Some(t) = status["tokens"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["token_id"] == token))
        else {
            return Err(format!("the wallet does not own sNFT {token}"));
        };
        let client =
            super::node_client::node_client(&self.cfg, &[token]).map_err(|e| format!("{e:#}"))?;
        // A running mount knows its newest document; else the BTNS name points at it.
        let head = match (t["mount"]["usage_doc"].as_str(), t["btns_key"].as_str()) {
            (Some(doc), _) => doc.to_string(),
            (None, Some(btns)) => match client.name_resolve(btns).await {
                Ok(cid) => cid,
                Err(_) => return Ok(Vec::new()), // nothing published yet
            },
            (None, None) => return Ok(Vec::new()),
        };
        Ok(self.history.walk(&client, &head, HISTORY_POINTS).await)
    }

    async fn sync(&self, token: u64) -> Result<String, String> {
        let args = super::sync::SyncArgs {
            config: self.config.clone(),
            token,
            wait: false,
            timeout: 180,
            no_check: false,
        };
        super::sync::run(args)
            .await
            .map(|()| format!("sync of sNFT {token} requested; the oracle answers on chain"))
            .map_err(|e| format!("{e:#}"))
    }

    async fn unmount(&self, mountpoint: &str) -> Result<String, String> {
        // Only a mount this config's status shows: the page is no way to unmount others.
        let known = super::mount_status::running(&self.cfg.cache.dir)
            .iter()
            .any(|m| m.mountpoint.to_str() == Some(mountpoint));
        if !known {
            return Err(format!(
                "{mountpoint} is not a running mount of this config"
            ));
        }
        let args = super::unmount::UnmountArgs {
            mountpoint: mountpoint.into(),
            abort: false,
            config: self.config.clone(),
        };
        super::unmount::run(args)
            .await
            .map(|()| format!("uploaded and committed; {mountpoint} unmounted"))
            .map_err(|e| format!("{e:#}"))
    }
}
