//! `pxfs devnet up`: a complete local PX network in one foreground process — anvil, a
//! `pxfs node`, the deployed contracts (LinkToken, Operator, PxStorageNFT funded with LINK),
//! one sNFT minted to the dev wallet with a BTNS key and an initial usage document, a config
//! file every other command accepts, and optionally a mount.
//!
//! A devnet keeps everything in its directory (see [`layout`]): started again on the same
//! directory it resumes — the chain from anvil's saved state, the node's repository, keys
//! and BTNS records, the oracle's state, the mount's cache and journal — without deploying
//! or minting again.

mod chain_clock;
pub mod layout;
mod process;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use layout::Layout;
pub use process::ChildProcess;

use crate::config::{CacheConfig, ChainConfig, Config, NodeConfig, OracleConfig, UploadConfig};

use crate::chain::anvil::{Anvil, DEV_ADDRESSES, DEV_CHAIN_ID, DEV_KEYS};

/// The dev wallet (anvil account 0) owns the minted sNFT and deploys the contracts.
pub const DEV_WALLET: &str = DEV_ADDRESSES[0];
pub const DEV_WALLET_KEY: &str = DEV_KEYS[0];
/// The oracle signs fulfillments with anvil account 1 (authorized on the Operator).
pub const DEV_ORACLE: &str = DEV_ADDRESSES[1];
pub const DEV_ORACLE_KEY: &str = DEV_KEYS[1];

/// Anvil also saves its state this often, besides when it stops.
const CHAIN_SAVE_INTERVAL_SECS: u64 = 60;

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
    #[error(
        "cannot resume the devnet in {dir}: {why}; `pxfs devnet up --fresh --dir {dir}` starts \
         over (it deletes the devnet's chain, node repository, cache and journal)"
    )]
    CannotResume { dir: PathBuf, why: String },
    #[error(
        "{dir} is not a devnet directory but holds {entries}, which a devnet would use; choose \
         another --dir, or add --fresh to delete them"
    )]
    NotADevnet { dir: PathBuf, entries: String },
    #[error("another `pxfs devnet up` is running on {0}")]
    Busy(PathBuf),
    #[error("the devnet chain's clock: {0}")]
    ChainClock(String),
    #[error("the minted sNFT's data key: {0}")]
    Keys(String),
    #[error(transparent)]
    Chain(#[from] crate::chain::ChainError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Usage(#[from] crate::btns::UsageError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
}

/// What `DIR/devnet.json` records; tests and scripts read it, and a resumed devnet starts
/// from it.
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
    /// The node's repository (absent in files of older versions: `DIR/node`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_repo: Option<PathBuf>,
    /// The contract's sync interval and free quota, as deployed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync_interval: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// Anvil's saved state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_state: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct DevnetOptions {
    pub dir: PathBuf,
    /// Delete what an earlier devnet left in `dir` and start a new one (otherwise a devnet
    /// found there is resumed).
    pub fresh: bool,
    pub sync_interval: u64,
    pub quota: u64,
    pub mount: Option<PathBuf>,
    /// Mount with `--allow-other` (other local users may use the drive).
    pub allow_other: bool,
    /// Run `pxfs oracle` as a child (off when a real Chainlink node answers instead).
    pub oracle: bool,
    /// The node's repository, when not `dir/node`; must be empty (see [`check_empty`]).
    pub node_repo: Option<PathBuf>,
    /// `[node] timeout_secs` and `retries` of the config: the mount waits for an unreachable
    /// node `timeout × (retries + 1)` before an fsync or the final drain gives up.
    pub node_timeout_secs: u64,
    pub node_retries: u32,
    /// Plaintext trees (`[keys] encryption = "none"`) instead of encrypted ones.
    pub plaintext: bool,
    /// Told the name of each start-up step as it begins (for a progress display).
    pub steps: Option<tokio::sync::mpsc::UnboundedSender<&'static str>>,
}

impl DevnetOptions {
    /// Whether [`Devnet::up`] resumes the devnet recorded in `dir` (else it starts one).
    pub fn resumes(&self) -> bool {
        !self.fresh && Layout::new(&self.dir).info().is_file()
    }

    /// How many steps [`Devnet::up`] reports with these options.
    pub fn step_count(&self) -> u64 {
        let chain = if self.resumes() { 3 } else { 5 };
        chain + u64::from(self.oracle) + u64::from(self.mount.is_some())
    }

    fn step(&self, name: &'static str) {
        if let Some(tx) = &self.steps {
            let _ = tx.send(name);
        }
    }

    /// How long the mount keeps trying to reach an unreachable node before it gives up.
    pub fn outage_grace(&self) -> Duration {
        Duration::from_secs(self.node_timeout_secs.max(1)) * (self.node_retries.saturating_add(1))
    }
}

/// The running devnet; its children stop when it is stopped or dropped.
pub struct Devnet {
    pub info: DevnetInfo,
    /// Started from what an earlier run left in its directory.
    pub resumed: bool,
    pub layout: Layout,
    anvil: Anvil,
    node: ChildProcess,
    oracle: Option<ChildProcess>,
    mount: Option<ChildProcess>,
    /// `DIR/.lock`, held while the devnet runs.
    _lock: std::fs::File,
}

/// Adds an empty v2 tree sealed with `crypto` (owned by the caller, mode 0755, times
/// `now_s`) and returns its root node's CID and its usage.
pub async fn add_empty_tree(
    client: &crate::storage::NodeClient,
    crypto: &crate::format::TreeCrypto,
    now_s: u64,
) -> Result<(String, u64), DevnetError> {
    use crate::format::{self, PageStore};
    let mut mem = format::MemStore::new();
    let encode = |e: format::FormatError| {
        crate::btns::UsageError::Document(crate::btns::DocError::Encode(e.to_string()))
    };
    let top =
        format::prolly::build::<format::Entry>(&mut mem, crypto, Vec::new()).map_err(encode)?;
    let now_ns = i64::try_from(now_s)
        .unwrap_or(0)
        .saturating_mul(1_000_000_000);
    // SAFETY: getuid/getgid cannot fail and touch no memory.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let root = format::root::Root {
        attrs: format::Attrs {
            mode: 0o755,
            uid,
            gid,
            mtime_ns: now_ns,
            ctime_ns: now_ns,
        },
        xattrs: Vec::new(),
        dir: top.clone(),
        inodes: None,
    }
    .encode(crypto);
    let leaf = mem.get(&top).map_err(encode)?;
    let usage = (leaf.len() + root.len()) as u64;
    client.add_bytes("dir.json", leaf.into()).await?;
    let root_cid = client.add_bytes("root.json", root.into()).await?.hash;
    Ok((root_cid, usage))
}

fn dir_err(path: &Path) -> impl FnOnce(std::io::Error) -> DevnetError + '_ {
    move |source| DevnetError::Dir {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether `mp` is a mount point now (per /proc/self/mountinfo). A dead FUSE mount (its
/// daemon gone) counts: it cannot be canonicalized, so `mp` is also compared as given.
pub fn is_mounted(mp: &Path) -> bool {
    crate::mountinfo::on(mp).is_some()
}

/// Detaches `mp` if it is still a mount (a daemon that was killed leaves a dead one);
/// returns whether it had to.
pub fn ensure_unmounted(mp: &Path) -> bool {
    if !is_mounted(mp) {
        return false;
    }
    let ok = std::process::Command::new("fusermount3")
        .args(["-u", "-z"])
        .arg(mp)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(mp)
            .stderr(std::process::Stdio::null())
            .status();
    }
    true
}

async fn wait_for_mount(
    mp: &Path,
    timeout: Duration,
    mut child: Option<&mut ChildProcess>,
    log: &Path,
) -> Result<(), DevnetError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if is_mounted(mp) {
            return Ok(());
        }
        if let Some(status) = child.as_mut().and_then(|c| c.exited()) {
            return Err(DevnetError::ChildExited {
                name: "pxfs mount",
                status: format!("{status}; see {}", log.display()),
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

/// Where a devnet starts from.
enum Start {
    New,
    Resume(Box<DevnetInfo>),
}

/// What `dir` holds: a devnet to resume, or room for a new one (leftovers of a start that
/// was interrupted before it recorded `devnet.json` are deleted).
fn decide_start(layout: &Layout, fresh: bool) -> Result<Start, DevnetError> {
    if fresh {
        layout.delete(&layout.existing())?;
        return Ok(Start::New);
    }
    let dir = layout.dir().to_path_buf();
    match layout.read_info() {
        Some(Ok(info)) => {
            let state = layout.chain_state();
            if !state.is_file() {
                return Err(DevnetError::CannotResume {
                    dir,
                    why: format!(
                        "its chain state ({}) is missing: the devnet was made by an older pxfs, \
                         or killed before anvil saved it",
                        state.display()
                    ),
                });
            }
            Ok(Start::Resume(Box::new(info)))
        }
        Some(Err(why)) => Err(DevnetError::CannotResume { dir, why }),
        None => {
            let leftovers = layout.existing();
            if !leftovers.is_empty() && !layout.marker().exists() {
                let entries = leftovers
                    .iter()
                    .filter_map(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join(", ");
                return Err(DevnetError::NotADevnet { dir, entries });
            }
            layout.delete(&leftovers)?;
            Ok(Start::New)
        }
    }
}

impl Devnet {
    pub async fn up(opts: DevnetOptions) -> Result<Devnet, DevnetError> {
        let dir = &opts.dir;
        std::fs::create_dir_all(dir).map_err(dir_err(dir))?;
        let dir = dir.canonicalize().map_err(dir_err(dir))?;
        let layout = Layout::new(&dir);
        let lock = layout.lock()?;
        let exe = std::env::current_exe().map_err(dir_err(Path::new("pxfs")))?;
        let start = decide_start(&layout, opts.fresh)?;
        let resumed = matches!(start, Start::Resume(_));

        let node_repo = match (&start, &opts.node_repo) {
            (Start::Resume(info), given) => {
                let recorded = info.node_repo.clone().unwrap_or_else(|| layout.node());
                if let Some(given) = given
                    && given.canonicalize().ok() != recorded.canonicalize().ok()
                {
                    return Err(DevnetError::CannotResume {
                        dir: dir.clone(),
                        why: format!(
                            "its node repository is {}, not {}",
                            recorded.display(),
                            given.display()
                        ),
                    });
                }
                recorded
            }
            (Start::New, Some(repo)) => {
                check_empty(repo)?;
                repo.clone()
            }
            (Start::New, None) => layout.node(),
        };
        if !resumed {
            let marker = layout.marker();
            std::fs::write(
                &marker,
                "a pxfs devnet; `pxfs devnet up --dir` resumes it\n",
            )
            .map_err(dir_err(&marker))?;
        }

        // Chain: anvil with its saved state (loaded if it exists, saved when anvil stops
        // and every minute), mining a block every second once its clock is checked, so
        // chain time moves like a real chain's. Spawned from this runtime thread, not a
        // blocking-pool thread: the parent-death signal fires when the spawning *thread*
        // exits, and pool threads come and go.
        opts.step(if resumed {
            "starting anvil with the saved chain"
        } else {
            "starting anvil"
        });
        let chain_dir = layout.chain();
        std::fs::create_dir_all(&chain_dir).map_err(dir_err(&chain_dir))?;
        let chain_state = layout.chain_state();
        let state_arg = chain_state.to_string_lossy().into_owned();
        let interval = CHAIN_SAVE_INTERVAL_SECS.to_string();
        let mut anvil = Anvil::spawn_with(&[
            "--no-mining",
            "--state",
            state_arg.as_str(),
            "--state-interval",
            interval.as_str(),
        ])?;
        let rpc_url = anvil.url();
        if let Err(e) = chain_clock::start_mining(&rpc_url).await {
            anvil.stop_within(Duration::from_secs(5));
            return Err(e);
        }

        // Storage node.
        opts.step("starting pxfs node");
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("node")
            .arg("--repo")
            .arg(&node_repo)
            .args(["--listen", "127.0.0.1:0"])
            // Superseded versions are unpinned on every commit; collection gives their
            // space back instead of letting the repo grow until the disk is full.
            .arg("--enable-gc");
        let (node, node_url) = ChildProcess::spawn_until(
            "pxfs node",
            cmd,
            "pxfs node listening on",
            Duration::from_secs(60),
        )
        .await?;

        let config_path = layout.config();
        let env_file = layout.env_file();
        let node_config = NodeConfig {
            api_url: node_url,
            api_prefix: "/api/v0".into(),
            bearer_token_file: None,
            auth: Default::default(),
            auth_url: None,
            login_message: None,
            login_method: Default::default(),
            timeout_secs: opts.node_timeout_secs.max(1),
            retries: opts.node_retries,
            replicas: Vec::new(),
        };
        let mut info = match start {
            Start::New => new_network(&opts, &layout, &rpc_url, node_config, &node_repo).await?,
            Start::Resume(info) => {
                opts.step("checking the saved chain");
                resume_network(*info, &layout, &rpc_url, node_config, &node_repo).await?
            }
        };
        info.config = config_path.clone();
        info.env_file = env_file;
        info.chain_state = Some(chain_state);
        info.mountpoint = None;
        layout.write_info(&info)?;

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
            resumed,
            layout,
            anvil,
            node,
            oracle,
            mount: None,
            _lock: lock,
        };
        if let Some(mp) = &opts.mount {
            opts.step("mounting");
            std::fs::create_dir_all(mp).map_err(dir_err(mp))?;
            // The daemon's lines go to its log: the devnet's terminal shows the devnet's
            // own progress.
            let log_path = devnet.layout.mount_log();
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(dir_err(&log_path))?;
            let log2 = log.try_clone().map_err(dir_err(&log_path))?;
            let mut cmd = std::process::Command::new(&exe);
            // The devnet's wallet owns its sNFTs and opens their data keys.
            cmd.arg("mount")
                .arg(mp)
                .arg("--config")
                .arg(&config_path)
                .arg("--foreground")
                .env(crate::chain::signer::PRIVATE_KEY_ENV, DEV_WALLET_KEY)
                .stdout(log)
                .stderr(log2);
            if opts.allow_other {
                cmd.arg("--allow-other");
            }
            let mount = ChildProcess::spawn("pxfs mount", cmd)?;
            devnet.mount = Some(mount);
            devnet.info.mountpoint = Some(mp.canonicalize().unwrap_or_else(|_| mp.clone()));
            wait_for_mount(
                mp,
                Duration::from_secs(60),
                devnet.mount.as_mut(),
                &log_path,
            )
            .await?;
            devnet.layout.write_info(&devnet.info)?;
        }
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

    /// The mount daemon, while it runs.
    pub fn mount_process(&mut self) -> Option<&mut ChildProcess> {
        self.mount.as_mut()
    }

    /// After the mount daemon has exited (or was killed): forget it, and detach a mount it
    /// left behind. Returns whether there was a dead mount to detach.
    pub fn mount_stopped(&mut self) -> bool {
        self.mount = None;
        self.info
            .mountpoint
            .as_deref()
            .is_some_and(ensure_unmounted)
    }

    /// Stops the services in order once the mount is gone: the oracle, the node, then
    /// anvil (which saves the chain's state). `step` is told each as it begins.
    pub async fn stop_services(mut self, step: impl Fn(&str)) {
        if let Some(mut m) = self.mount.take() {
            m.stop_within(Duration::from_secs(10)).await;
            self.mount_stopped();
        }
        if let Some(mut o) = self.oracle.take() {
            step("stopping pxfs oracle");
            o.stop().await;
        }
        step("stopping pxfs node");
        self.node.stop().await;
        step("stopping anvil (saving the chain state)");
        self.anvil.stop_within(Duration::from_secs(30));
    }
}

impl Drop for Devnet {
    /// Dropped without [`Devnet::stop_services`] (start-up interrupted or failed): the
    /// children are killed; a mount they leave is detached rather than left dead.
    fn drop(&mut self) {
        if let Some(m) = self.mount.take() {
            drop(m);
            if let Some(mp) = &self.info.mountpoint {
                // The kill is asynchronous: give the daemon a moment to go first.
                std::thread::sleep(Duration::from_millis(200));
                ensure_unmounted(mp);
            }
        }
    }
}

/// Deploys the contracts and mints one sNFT with a BTNS key and an initial usage document.
async fn new_network(
    opts: &DevnetOptions,
    layout: &Layout,
    rpc_url: &str,
    node_config: NodeConfig,
    node_repo: &Path,
) -> Result<DevnetInfo, DevnetError> {
    let client = crate::storage::NodeClient::from_url(&node_config.api_url, "/api/v0");
    opts.step("deploying LinkToken, Operator and PxStorageNFT");
    let deployment = crate::chain::deploy::deploy_devnet(
        rpc_url,
        DEV_WALLET_KEY,
        crate::chain::deploy::DeployParams {
            sync_interval: opts.sync_interval,
            free_quota_bytes: opts.quota,
            oracle_node: crate::chain::parse_address("oracle", DEV_ORACLE)?,
            link_funding: crate::chain::deploy::link_juels(100),
        },
    )
    .await?;
    let node_url = node_config.api_url.clone();
    let config = write_config(
        layout,
        rpc_url,
        &deployment.contract.to_string(),
        &deployment.operator.to_string(),
        &deployment.job_id.to_string(),
        node_config,
        opts.plaintext,
    )?;

    opts.step("minting an sNFT with a BTNS key");
    let chain = crate::chain::Chain::connect_with_key(&config.chain, DEV_WALLET_KEY).await?;
    let key_name = crate::btns::new_key_name();
    let key = client.key_gen(&key_name).await?;
    let minted = chain.mint(0, &key.id).await?;
    let state = chain.token(minted.token_id).await?;
    // An empty tree in format v2 (docs/FORMAT.md §3): the root node over an empty leaf.
    // Usage counts both (§7). Encrypted unless asked otherwise, its data key wrapped for
    // the devnet's wallet (§6.4), as a mount does for a new sNFT.
    let (encryption, crypto) = match opts.plaintext {
        true => (
            crate::format::usage::Encryption::None,
            crate::format::TreeCrypto::Plain,
        ),
        false => {
            let signer: alloy::signers::local::PrivateKeySigner = DEV_WALLET_KEY
                .parse()
                .map_err(|e| DevnetError::Keys(format!("devnet wallet key: {e}")))?;
            let token = crate::keys::TokenRef {
                chain_id: DEV_CHAIN_ID,
                contract: deployment.contract,
                token_id: minted.token_id,
            };
            let passphrase = std::fs::read_to_string(layout.passphrase())
                .map_err(dir_err(&layout.passphrase()))?;
            let (dk, info) =
                crate::keys::new_encryption(&token, Some(&signer), Some(passphrase.as_bytes()))
                    .map_err(|e| DevnetError::Keys(e.to_string()))?;
            (
                crate::format::usage::Encryption::Sealed(info),
                crate::format::TreeCrypto::sealed(&dk),
            )
        }
    };
    let files = encryption.is_none().then_some(0);
    // The tree's and the document's times are commit times (docs/FORMAT.md §12.2, §14.1):
    // this machine's clock, not the chain's, which runs ahead (a block a second at least,
    // and warped in tests); a version timed ahead would push every commit's time after it.
    let wall = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (empty_root, empty_usage) = add_empty_tree(&client, &crypto, wall).await?;
    let doc = crate::format::usage::UsageDoc {
        schema: crate::format::SCHEMA_USAGE.into(),
        chain_id: DEV_CHAIN_ID,
        contract: config.chain.contract.clone(),
        token_id: minted.token_id,
        quota: state.quota,
        usage: empty_usage,
        root: empty_root,
        seq: 0,
        updated_at: wall,
        prev: None,
        encryption,
        merged: None,
        files,
        last_upload: None,
        px: None,
    };
    opts.step("publishing its first usage document");
    // Never over another document (docs/FORMAT.md §9): a name that already names one (a
    // reused node key) keeps it.
    match crate::keys::document::current(&client, &key.id)
        .await
        .map_err(|e| DevnetError::Keys(e.to_string()))?
    {
        None => {
            crate::btns::publish_v2(&client, &key_name, &doc, None).await?;
        }
        Some(c) => tracing::warn!(
            token = minted.token_id,
            doc = %c.cid,
            "the sNFT's BTNS name already names a usage document; it is kept"
        ),
    }

    Ok(DevnetInfo {
        chain_id: DEV_CHAIN_ID,
        rpc_url: rpc_url.to_string(),
        node_url,
        contract: deployment.contract.to_string(),
        operator: deployment.operator.to_string(),
        link: deployment.link.to_string(),
        job_id: deployment.job_id.to_string(),
        wallet: DEV_WALLET.into(),
        oracle: DEV_ORACLE.into(),
        token_ids: vec![minted.token_id],
        btns_names: vec![key.id],
        config: layout.config(),
        env_file: layout.env_file(),
        mountpoint: None,
        node_repo: Some(node_repo.to_path_buf()),
        sync_interval: Some(opts.sync_interval),
        quota: Some(opts.quota),
        chain_state: Some(layout.chain_state()),
    })
}

/// The devnet recorded in `info`, on a chain loaded from its saved state: the contracts
/// and tokens must be there (nothing is deployed or minted again); the URLs are new.
async fn resume_network(
    mut info: DevnetInfo,
    layout: &Layout,
    rpc_url: &str,
    node_config: NodeConfig,
    node_repo: &Path,
) -> Result<DevnetInfo, DevnetError> {
    info.rpc_url = rpc_url.to_string();
    info.node_url = node_config.api_url.clone();
    info.node_repo = Some(node_repo.to_path_buf());
    // New trees stay as the devnet was started (encrypted unless `--plaintext`).
    let plaintext = Config::load(Some(&layout.config()))
        .is_ok_and(|c| c.keys.encryption == crate::config::NewTrees::Plaintext);
    let config = write_config(
        layout,
        rpc_url,
        &info.contract,
        &info.operator,
        &info.job_id,
        node_config,
        plaintext,
    )?;
    let lost = |why: String| DevnetError::CannotResume {
        dir: layout.dir().to_path_buf(),
        why,
    };
    let chain = crate::chain::Chain::connect(&config.chain)
        .await
        .map_err(|e| lost(format!("the saved chain does not hold its contracts ({e})")))?;
    for id in &info.token_ids {
        chain
            .token(*id)
            .await
            .map_err(|e| lost(format!("the saved chain does not hold sNFT {id} ({e})")))?;
    }
    Ok(info)
}

/// `DIR/pxfs.toml` (every command's `--config`) and `DIR/devnet.env`.
fn write_config(
    layout: &Layout,
    rpc_url: &str,
    contract: &str,
    operator: &str,
    job_id: &str,
    node: NodeConfig,
    plaintext: bool,
) -> Result<Config, DevnetError> {
    let config = Config {
        chain: ChainConfig {
            rpc_url: rpc_url.to_string(),
            chain_id: DEV_CHAIN_ID,
            contract: contract.to_string(),
            operator: Some(operator.to_string()),
            wallet: DEV_WALLET.into(),
            keystore: None,
            poll_interval_secs: 1,
            start_block: 0,
            log_range_blocks: 5_000,
        },
        node,
        cache: CacheConfig {
            dir: layout.cache(),
            ..CacheConfig::default()
        },
        upload: UploadConfig::default(),
        oracle: OracleConfig {
            job_id: Some(job_id.to_string()),
            state_file: Some(layout.oracle_state()),
            ..OracleConfig::default()
        },
        keys: crate::config::KeysConfig {
            encryption: match plaintext {
                true => crate::config::NewTrees::Plaintext,
                false => crate::config::NewTrees::Encrypted,
            },
            passphrase_file: (!plaintext).then(|| layout.passphrase()),
        },
        pinning: Vec::new(),
        metrics: Default::default(),
        history: crate::config::HistoryConfig::default(),
    };
    if !plaintext && !layout.passphrase().exists() {
        write_passphrase(&layout.passphrase())?;
    }
    let config_path = layout.config();
    config.write(&config_path)?;
    let env_file = layout.env_file();
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
    Ok(config)
}

/// A random passphrase for the devnet's sNFTs, readable by its owner only.
fn write_passphrase(path: &Path) -> Result<(), DevnetError> {
    use rand::RngCore;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    let text: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(dir_err(path))?;
    f.write_all(text.as_bytes()).map_err(dir_err(path))
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
