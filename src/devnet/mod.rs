//! `pxfs devnet up`: a complete local PX network in one foreground process — anvil, a
//! `pxfs node`, the deployed contracts (LinkToken, Operator, PxStorageNFT funded with LINK),
//! one sNFT minted to the dev wallet with a BTNS key and an initial usage document, a config
//! file every other command accepts, and optionally a mount.

mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use process::ChildProcess;

use crate::config::{CacheConfig, ChainConfig, Config, NodeConfig, OracleConfig, UploadConfig};

use crate::chain::anvil::{Anvil, DEV_ADDRESSES, DEV_CHAIN_ID, DEV_KEYS};

/// The dev wallet (anvil account 0) owns the minted sNFT and deploys the contracts.
pub const DEV_WALLET: &str = DEV_ADDRESSES[0];
pub const DEV_WALLET_KEY: &str = DEV_KEYS[0];
/// The oracle signs fulfillments with anvil account 1 (authorized on the Operator).
pub const DEV_ORACLE: &str = DEV_ADDRESSES[1];
pub const DEV_ORACLE_KEY: &str = DEV_KEYS[1];

#[derive(Debug, thiserror::Error)]
pub enum DevnetError {
    #[error("cannot start {name} ({program}): {source}")]
    Spawn {
        name: &'static str,
        program: String,
        source: std::io::Error,
    },
    #[error("{name} exited during start-up ({status})")]
    ChildExited { name: &'static str, status: String },
    #[error("{name} did not become ready within {timeout:?}")]
    ChildTimeout {
        name: &'static str,
        timeout: Duration,
    },
    #[error(transparent)]
    Anvil(#[from] crate::chain::anvil::AnvilError),
    #[error("devnet directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Usage(#[from] crate::usage::UsageError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What `DIR/devnet.json` records; tests and scripts read it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevnetInfo {
    pub chain_id: u64,
    pub rpc_url: String,
    pub node_url: String,
    pub contract: String,
    pub operator: String,
    pub link: String,
    pub job_id: String,
    pub wallet: String,
    pub oracle: String,
    pub token_ids: Vec<u64>,
    pub btns_names: Vec<String>,
    pub config: PathBuf,
    pub env_file: PathBuf,
    pub mountpoint: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub dir: PathBuf,
    pub sync_interval: u64,
    pub quota: u64,
    pub mount: Option<PathBuf>,
    /// Run `pxfs oracle` as a child (off when a real Chainlink node answers instead).
    pub oracle: bool,
    /// The node's repository, when not `dir/node`; must be empty (see [`check_empty`]).
    pub node_repo: Option<PathBuf>,
    /// Told the name of each start-up step as it begins (for a progress display).
    pub steps: Option<tokio::sync::mpsc::UnboundedSender<&'static str>>,
}

impl DevnetOptions {
    /// How many steps [`Devnet::up`] reports with these options.
    pub fn step_count(&self) -> u64 {
        5 + u64::from(self.oracle) + u64::from(self.mount.is_some())
    }

    fn step(&self, name: &'static str) {
        if let Some(tx) = &self.steps {
            let _ = tx.send(name);
        }
    }
}

/// The running devnet; its children stop when it is stopped or dropped.
pub struct Devnet {
    pub info: DevnetInfo,
    anvil: Anvil,
    node: ChildProcess,
    oracle: Option<ChildProcess>,
    mount: Option<ChildProcess>,
}

fn dir_err(path: &Path) -> impl FnOnce(std::io::Error) -> DevnetError + '_ {
    move |source| DevnetError::Dir {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `mp` is a mount point now (per /proc/self/mountinfo).
pub fn is_mounted(mp: &Path) -> bool {
    let Ok(mp) = mp.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|m| Path::new(&m.replace("\\040", " ")) == mp)
}

async fn wait_for_mount(
    mp: &Path,
    timeout: Duration,
    mut child: Option<&mut ChildProcess>,
) -> Result<(), DevnetError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if is_mounted(mp) {
            return Ok(());
        }
        if let Some(status) = child.as_mut().and_then(|c| c.exited()) {
            return Err(DevnetError::ChildExited {
                name: "pxfs mount",
                status,
            });
        }
        if tokio::time::Instant::now() > deadline {
            return Err(DevnetError::ChildTimeout {
                name: "pxfs mount",
                timeout,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Devnet {
    pub async fn up(opts: DevnetOptions) -> Result<Devnet, DevnetError> {
        let dir = &opts.dir;
        std::fs::create_dir_all(dir).map_err(dir_err(dir))?;
        let dir = dir.canonicalize().map_err(dir_err(dir))?;
        let exe = std::env::current_exe().map_err(dir_err(Path::new("pxfs")))?;
        // Every devnet is a fresh chain: state of an earlier one (node repo, staged files,
        // journals of tokens that no longer exist) must not leak into it.
        for stale in [
            "node",
            "cache",
            "devnet.json",
            "pxfs.toml",
            "oracle-state.json",
        ] {
            let p = dir.join(stale);
            if p.is_dir() {
                std::fs::remove_dir_all(&p).map_err(dir_err(&p))?;
            } else if p.exists() {
                std::fs::remove_file(&p).map_err(dir_err(&p))?;
            }
        }

        let node_repo = match &opts.node_repo {
            Some(repo) => {
                check_empty(repo)?;
                repo.clone()
            }
            None => dir.join("node"),
        };

        // Chain: anvil mining a block every second, so chain time moves like a real chain.
        // Spawned from this runtime thread, not a blocking-pool thread: the parent-death
        // signal fires when the spawning *thread* exits, and pool threads come and go.
        opts.step("starting anvil");
        let anvil = Anvil::spawn_with(&["--block-time", "1"])?;
        let rpc_url = anvil.url();

        // Storage node.
        opts.step("starting pxfs node");
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("node")
            .arg("--repo")
            .arg(&node_repo)
            .args(["--listen", "127.0.0.1:0"]);
        let (node, node_url) = ChildProcess::spawn_until(
            "pxfs node",
            cmd,
            "pxfs node listening on",
            Duration::from_secs(60),
        )
        .await?;
        let client = crate::storage::NodeClient::from_url(&node_url, "/api/v0");

        opts.step("deploying LinkToken, Operator and PxStorageNFT");
        let deployment = crate::chain::deploy::deploy_devnet(
            &rpc_url,
            DEV_WALLET_KEY,
            crate::chain::deploy::DeployParams {
                sync_interval: opts.sync_interval,
                free_quota_bytes: opts.quota,
                oracle_node: crate::chain::parse_address("oracle", DEV_ORACLE)?,
                link_funding: crate::chain::deploy::link_juels(100),
            },
        )
        .await?;

        let config = Config {
            chain: ChainConfig {
                rpc_url: rpc_url.clone(),
                chain_id: DEV_CHAIN_ID,
                contract: deployment.contract.to_string(),
                operator: Some(deployment.operator.to_string()),
                wallet: DEV_WALLET.into(),
                keystore: None,
                poll_interval_secs: 1,
            },
            node: NodeConfig {
                api_url: node_url.clone(),
                api_prefix: "/api/v0".into(),
                bearer_token_file: None,
                timeout_secs: 60,
                retries: 4,
            },
            cache: CacheConfig {
                dir: dir.join("cache"),
                ..CacheConfig::default()
            },
            upload: UploadConfig::default(),
            oracle: OracleConfig {
                job_id: Some(deployment.job_id.to_string()),
                state_file: Some(dir.join("oracle-state.json")),
                ..OracleConfig::default()
            },
        };
        let config_path = dir.join("pxfs.toml");
        config.write(&config_path)?;
        let env_file = dir.join("devnet.env");
        std::fs::write(
            &env_file,
            format!(
                "# anvil's well-known development keys: for this devnet only.\n\
                 export PXFS_CONFIG={}\nexport PXFS_PRIVATE_KEY={DEV_WALLET_KEY}\n\
                 export PXFS_ORACLE_KEY={DEV_ORACLE_KEY}\n",
                config_path.display()
            ),
        )
        .map_err(dir_err(&env_file))?;

        // One sNFT with a BTNS key and an initial (empty) usage document.
        opts.step("minting an sNFT with a BTNS key");
        let chain = crate::chain::Chain::connect_with_key(&config.chain, DEV_WALLET_KEY).await?;
        let key_name = crate::usage::new_key_name();
        let key = client.key_gen(&key_name).await?;
        let minted = chain.mint(0, &key.id).await?;
        let state = chain.token(minted.token_id).await?;
        let empty_manifest = crate::fs::manifest::Manifest::new(Vec::new()).to_json();
        // Usage counts the manifests (docs/FORMAT.md §7): the empty root's bytes.
        let empty_usage = empty_manifest.len() as u64;
        let empty_root = client
            .add_bytes("manifest.json", empty_manifest.into())
            .await?
            .hash;
        let doc = crate::usage::UsageDoc {
            schema: crate::usage::SCHEMA.into(),
            chain_id: DEV_CHAIN_ID,
            contract: config.chain.contract.clone(),
            token_id: minted.token_id,
            quota: state.quota,
            usage: empty_usage,
            files: 0,
            root: empty_root,
            last_upload: None,
            seq: 0,
            updated_at: state.chain_time,
            prev: None,
        };
        opts.step("publishing its first usage document");
        crate::usage::publish(&client, &key_name, &doc).await?;

        let mut info = DevnetInfo {
            chain_id: DEV_CHAIN_ID,
            rpc_url,
            node_url,
            contract: deployment.contract.to_string(),
            operator: deployment.operator.to_string(),
            link: deployment.link.to_string(),
            job_id: deployment.job_id.to_string(),
            wallet: DEV_WALLET.into(),
            oracle: DEV_ORACLE.into(),
            token_ids: vec![minted.token_id],
            btns_names: vec![key.id],
            config: config_path.clone(),
            env_file,
            mountpoint: None,
        };

        // The Chainlink node's job, answering sync requests with the oracle account.
        let oracle = if opts.oracle {
            opts.step("starting pxfs oracle");
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("oracle")
                .arg("--config")
                .arg(&config_path)
                .env("PXFS_ORACLE_KEY", DEV_ORACLE_KEY);
            let (oracle, _) = ChildProcess::spawn_until(
                "pxfs oracle",
                cmd,
                "pxfs oracle answering",
                Duration::from_secs(60),
            )
            .await?;
            Some(oracle)
        } else {
            None
        };

        let mut devnet = Devnet {
            info: info.clone(),
            anvil,
            node,
            oracle,
            mount: None,
        };
        if let Some(mp) = &opts.mount {
            opts.step("mounting");
            std::fs::create_dir_all(mp).map_err(dir_err(mp))?;
            let mut cmd = std::process::Command::new(&exe);
            cmd.arg("mount")
                .arg(mp)
                .arg("--config")
                .arg(&config_path)
                .arg("--foreground");
            let mount = ChildProcess::spawn("pxfs mount", cmd)?;
            devnet.mount = Some(mount);
            wait_for_mount(mp, Duration::from_secs(60), devnet.mount.as_mut()).await?;
            info.mountpoint = Some(mp.clone());
            devnet.info = info;
        }
        let json = serde_json::to_string_pretty(&devnet.info).expect("devnet info serializes");
        let info_path = dir.join("devnet.json");
        std::fs::write(&info_path, json).map_err(dir_err(&info_path))?;
        Ok(devnet)
    }

    /// Which child, if any, has died on its own.
    pub fn failed_child(&mut self) -> Option<String> {
        if let Some(s) = self.anvil.exited() {
            return Some(format!("anvil exited ({s})"));
        }
        if let Some(s) = self.node.exited() {
            return Some(format!("pxfs node exited ({s})"));
        }
        if let Some(s) = self.oracle.as_mut().and_then(|o| o.exited()) {
            return Some(format!("pxfs oracle exited ({s})"));
        }
        if let Some(s) = self.mount.as_mut().and_then(|m| m.exited()) {
            return Some(format!("pxfs mount exited ({s})"));
        }
        None
    }

    /// Stops the mount first (it drains its uploads to the node), then the node, then anvil.
    pub async fn down(mut self) {
        if let Some(mut m) = self.mount.take() {
            m.stop_within(Duration::from_secs(120)).await;
        }
        if let Some(mut o) = self.oracle.take() {
            o.stop().await;
        }
        self.node.stop().await;
        drop(self.anvil);
    }
}

/// A node repository given by the user is never emptied by the devnet: it must be empty
/// already (or not exist). A filesystem's `lost+found` is allowed.
fn check_empty(repo: &Path) -> Result<(), DevnetError> {
    let entries = match std::fs::read_dir(repo) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(dir_err(repo)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(dir_err(repo))?;
        if entry.file_name() != "lost+found" {
            return Err(dir_err(repo)(std::io::Error::other(
                "--node-repo must be an empty directory",
            )));
        }
    }
    Ok(())
}
