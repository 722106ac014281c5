//! Configuration file (TOML) and its lookup: `--config`, then `$PXFS_CONFIG`, then
//! `~/.config/pxfs/config.toml`. Secrets never come from here as plain argv: the signer is a
//! keystore file path (password from `PXFS_KEYSTORE_PASSWORD`) or the `PXFS_PRIVATE_KEY`
//! environment variable; the node bearer token is read from a file or `PXFS_NODE_TOKEN`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no config file: pass --config, set PXFS_CONFIG, or create ~/.config/pxfs/config.toml")]
    NotFound,
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write config file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub chain: ChainConfig,
    pub node: NodeConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub upload: UploadConfig,
    #[serde(default)]
    pub oracle: OracleConfig,
    #[serde(default, skip_serializing_if = "KeysConfig::is_empty")]
    pub keys: KeysConfig,
    /// `[[pinning]]`: remote pinning services (the IPFS Pinning Service API) that keep a
    /// second copy of every committed tree (src/pinning/).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pinning: Vec<PinningConfig>,
    /// `[metrics]`: the mount daemon's Prometheus endpoint (off unless `listen` is set).
    #[serde(default, skip_serializing_if = "MetricsConfig::is_off")]
    pub metrics: MetricsConfig,
    /// `[history]`: which committed versions each sNFT keeps under `.snapshots/`
    /// (docs/FORMAT.md §14.2). Absent: every commit of the last hour, hourly for two days,
    /// daily for 30 days; all zero: no history.
    #[serde(default, skip_serializing_if = "HistoryConfig::is_default")]
    pub history: HistoryConfig,
}

/// `[history]`: the retention policy (docs/FORMAT.md §14.2).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HistoryConfig {
    /// Every version younger than this many seconds.
    #[serde(default = "default_keep_all_secs")]
    pub keep_all_secs: u64,
    /// The latest version of each of the last N UTC hours.
    #[serde(default = "default_hourly")]
    pub hourly: u32,
    /// The latest version of each of the last N UTC days.
    #[serde(default = "default_daily")]
    pub daily: u32,
    /// The latest version of each of the last N UTC months.
    #[serde(default)]
    pub monthly: u32,
}

// The defaults of `format::history::Policy` (a test in `cli::mount` keeps them equal).
fn default_keep_all_secs() -> u64 {
    3600
}
fn default_hourly() -> u32 {
    48
}
fn default_daily() -> u32 {
    30
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            keep_all_secs: default_keep_all_secs(),
            hourly: default_hourly(),
            daily: default_daily(),
            monthly: 0,
        }
    }
}

impl HistoryConfig {
    fn is_default(&self) -> bool {
        *self == HistoryConfig::default()
    }
}

/// `[metrics]`: where the mount daemon serves `/metrics` (docs/monitoring.md).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// An IP address and port, e.g. `127.0.0.1:9477`; unset: no endpoint. Anyone who can
    /// reach it reads the metrics, so loopback is the address to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen: Option<std::net::SocketAddr>,
}

impl MetricsConfig {
    fn is_off(&self) -> bool {
        self.listen.is_none()
    }
}

/// One `[[pinning]]` entry: a service speaking the IPFS Pinning Service API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PinningConfig {
    /// A short label for logs, `pxfs status` and the cache's bookkeeping: letters, digits,
    /// `-` and `_`.
    pub name: String,
    /// The API's base URL: requests go to `<endpoint>/pins`.
    pub endpoint: String,
    /// File holding the service's access token (its first line), sent as a bearer token.
    /// Never the token itself.
    pub access_token_file: PathBuf,
}

impl PinningConfig {
    /// A name that is safe as a file name and reads well in a log line.
    pub fn check(&self) -> Result<(), String> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(format!(
                "[[pinning]] name {:?}: use 1 to 64 letters, digits, '-' or '_'",
                self.name
            ));
        }
        if !(self.endpoint.starts_with("https://") || self.endpoint.starts_with("http://")) {
            return Err(format!(
                "[[pinning]] {}: endpoint {:?} is not an http(s) URL",
                self.name, self.endpoint
            ));
        }
        Ok(())
    }

    /// The access token: the first line of `access_token_file`.
    pub fn access_token(&self) -> Result<String, ConfigError> {
        let text = std::fs::read_to_string(&self.access_token_file).map_err(|source| {
            ConfigError::Read {
                path: self.access_token_file.clone(),
                source,
            }
        })?;
        Ok(text.lines().next().unwrap_or("").trim().to_string())
    }
}

/// `[keys]`: how an encrypted sNFT's data key is unlocked without a person at the terminal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct KeysConfig {
    /// File holding the passphrase (its first line) for unattended mounts;
    /// `PXFS_PASSPHRASE_FILE` overrides it. Never the passphrase itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// What a new sNFT tree gets: `"aes-256-gcm"` (the default) or `"none"` (a public,
    /// plaintext tree). An existing tree keeps what its usage document says.
    #[serde(default, skip_serializing_if = "NewTrees::is_default")]
    pub encryption: NewTrees,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum NewTrees {
    #[default]
    #[serde(rename = "aes-256-gcm")]
    Encrypted,
    #[serde(rename = "none")]
    Plaintext,
}

impl NewTrees {
    fn is_default(&self) -> bool {
        *self == NewTrees::Encrypted
    }
}

impl KeysConfig {
    fn is_empty(&self) -> bool {
        self.passphrase_file.is_none() && self.encryption.is_default()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC URL of the chain (http or ws).
    pub rpc_url: String,
    /// Expected chain id; a different chain behind `rpc_url` is refused.
    pub chain_id: u64,
    /// PxStorageNFT (or PollinationX PX.sol) contract address.
    pub contract: String,
    /// Chainlink Operator address (needed by `pxfs oracle`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<String>,
    /// Wallet whose sNFTs are mounted.
    pub wallet: String,
    /// Encrypted JSON keystore for signing; otherwise `PXFS_PRIVATE_KEY` is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keystore: Option<PathBuf>,
    /// How often the mount polls the chain, in seconds.
    #[serde(default = "default_poll_secs")]
    pub poll_interval_secs: u64,
    /// First block to scan for `Transfer` logs on a contract that cannot list a wallet's
    /// tokens (PX.sol): the contract's deployment block. 0 scans the whole chain.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub start_block: u64,
    /// Blocks per `eth_getLogs` request of that scan (public RPCs cap the range).
    #[serde(
        default = "default_log_range",
        skip_serializing_if = "is_default_log_range"
    )]
    pub log_range_blocks: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Base URL of the BTFS/Kubo HTTP RPC, e.g. `http://127.0.0.1:5001`.
    pub api_url: String,
    /// API prefix: `/api/v1` for BTFS, `/api/v0` for Kubo and `pxfs node`.
    #[serde(default = "default_api_prefix")]
    pub api_prefix: String,
    /// File holding a bearer token for the node (PollinationX nodes use one);
    /// `PXFS_NODE_TOKEN` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<PathBuf>,
    /// How pxfs authenticates to the node: `bearer` (the token file above, or none) or
    /// `pollinationx` (a wallet-signed login at `auth_url`, one JWT and endpoint per sNFT).
    #[serde(default, skip_serializing_if = "NodeAuth::is_bearer")]
    pub auth: NodeAuth,
    /// PollinationX's login service, e.g. `https://auth.example`; pxfs calls
    /// `<auth_url>/auth/v2/login`. Needed with `auth = "pollinationx"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_url: Option<String>,
    /// The fixed message the wallet signs to log in (the one PollinationX's dApp has the
    /// wallet sign). Needed with `auth = "pollinationx"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_message: Option<String>,
    /// How the login signature is sent: `post` (a JSON body, the default) or `get` (the
    /// query of a GET, as PollinationX's dApp login takes it; https only).
    #[serde(default, skip_serializing_if = "LoginMethod::is_auto")]
    pub login_method: LoginMethod,
    /// Per-request timeout in seconds (streams: per idle period).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Retries on connection errors and 5xx answers.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Other Kubo-RPC-compatible nodes that keep a copy of every committed tree (issue #30):
    /// each root is copied there and pinned, reads fall back to them, `pxfs check --repair`
    /// takes good copies from them. Same prefix and auth options as the primary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<String>,
}

/// How the node is authenticated (`[node] auth`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeAuth {
    /// A static bearer token (`bearer_token_file` / `PXFS_NODE_TOKEN`), or none.
    #[default]
    Bearer,
    /// PollinationX's hosted nodes: wallet-signed login, one expiring JWT per sNFT.
    PollinationX,
}

impl NodeAuth {
    fn is_bearer(&self) -> bool {
        *self == NodeAuth::Bearer
    }
}

/// How the hosted login sends its signature (`[node] login_method`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LoginMethod {
    /// A POST; if the service does not take one (HTTP 404 or 405) and the URL is https, a
    /// GET from then on: PollinationX's own login works without configuration, and the
    /// signature never goes into a URL over plain http.
    #[default]
    Auto,
    /// `POST <auth_url>/auth/v2/login` with a JSON body `{wallet, chain, nonce,
    /// signature}`; over https, or http to a loopback host.
    Post,
    /// `GET <auth_url>/auth/v2/login?wallet=…&chain=…&nonce=…&signature=…`, PollinationX's
    /// dApp login (../shared/POLLINATIONX.md): the signature is in the URL, so https only.
    Get,
}

impl LoginMethod {
    fn is_auto(&self) -> bool {
        *self == LoginMethod::Auto
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// Directory for staged files, the journal and the chunk cache.
    #[serde(default = "default_cache_dir")]
    pub dir: PathBuf,
    /// Size limit of the read chunk cache in bytes.
    #[serde(default = "default_cache_size")]
    pub size_bytes: u64,
    /// Free space kept on the cache's filesystem: below it, new data gets `ENOSPC` while
    /// the journal, `state.json`, directory changes and the log still fit.
    #[serde(default = "default_reserve")]
    pub reserve_bytes: u64,
    /// Staged-but-not-uploaded bytes above which writers wait (a `write` or `close` waits,
    /// never fails). `staging_max` is the name the docs use (issue #41); the key it had
    /// before, `staging_limit_bytes`, still reads.
    #[serde(
        rename = "staging_max",
        alias = "staging_limit_bytes",
        default = "default_staging_limit"
    )]
    pub staging_limit_bytes: u64,
    /// Closed-but-not-uploaded files above which writers wait (each is a file on the cache
    /// disk and an entry in the upload queue).
    #[serde(default = "default_staging_limit_files")]
    pub staging_limit_files: u64,
    /// Files and directories kept in memory; beyond it, directories least recently used
    /// (and not in use) are dropped and read again from the node when next needed.
    #[serde(default = "default_max_loaded_inodes")]
    pub max_loaded_inodes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Uploads running at once.
    #[serde(default = "default_parallelism")]
    pub parallelism: usize,
    /// While uploads are in flight, what is uploaded is committed (a new root published)
    /// at least this often, so a long copy publishes as it goes.
    #[serde(default = "default_commit_every_secs")]
    pub commit_every_secs: u64,
    /// How often a mount looks for what other machines published for its sNFTs and takes
    /// it in (live follow); 0: never (their changes are still merged at each commit).
    #[serde(default = "default_follow_every_secs")]
    pub follow_every_secs: u64,
    /// The BTNS record's settle window in milliseconds (docs/FORMAT.md §9.3): a commit
    /// counts as durable (`fsync` returns) once a resolve this long after its publication
    /// still shows it. A name system whose records take longer to reach every node needs
    /// a longer one.
    #[serde(default = "default_settle_ms")]
    pub settle_ms: u64,
    /// A closed small file waits this long before its upload starts, so that one deleted
    /// or rewritten meanwhile is never uploaded; `fsync`, `sync` and unmount do not wait
    /// for it. 0: upload at once.
    #[serde(default = "default_writeback_delay_ms")]
    pub writeback_delay_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct OracleConfig {
    /// Chainlink job id (32 bytes hex) the oracle answers; empty = the contract's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// File where the oracle remembers the last block it handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_file: Option<PathBuf>,
    /// Per request: at most this many node requests (`block/get`, `block/stat`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_objects: Option<u64>,
    /// Per request: at most this many bytes fetched (manifests and DAG nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Per request: at most this many seconds of measuring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_secs: Option<u64>,
    /// An object the node cannot provide within this many seconds fails the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_timeout_secs: Option<u64>,
    /// Largest manifest or tree node read, in bytes (a larger one is refused by CID).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_object_bytes: Option<u64>,
    /// Node requests in flight at a time within one measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walk_concurrency: Option<usize>,
    /// Requests measured at a time; later ones wait their turn, in order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<usize>,
    /// Usage documents followed back to the last synced one; a longer history is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_documents: Option<usize>,
    /// CIDs remembered between requests (the memo beside the state file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo_entries: Option<usize>,
}

/// Bounds on the work one measurement may do; beyond them it fails, never guesses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleLimits {
    /// Node requests (`block/get` and `block/stat`) per request.
    pub max_objects: u64,
    /// Bytes fetched per request (manifests, tree nodes and dag-pb nodes).
    pub max_bytes: u64,
    /// Wall time for the whole measurement of one request.
    pub max_time: std::time::Duration,
    /// Wall time for one node request: a CID the node cannot provide in this time fails it.
    pub object_timeout: std::time::Duration,
    /// Largest manifest or tree node read (a larger one is refused, naming its CID).
    pub max_object_bytes: u64,
    /// Node requests in flight at a time within one measurement.
    pub walk_concurrency: usize,
    /// Requests measured at a time; the others wait their turn, in order.
    pub max_requests: usize,
    /// Usage documents followed back from the current one to the last synced one.
    pub max_documents: usize,
    /// Objects remembered between requests (CID → measured size and links).
    pub memo_entries: usize,
}

impl Default for OracleLimits {
    fn default() -> Self {
        // Sized for a 1,000,000-file tree on a node 40 ms away: about 1.05 M node requests,
        // 32 at a time, take ~1,300 s (BENCHMARKS.md "Oracle").
        OracleLimits {
            max_objects: 4_000_000,
            max_bytes: 4 << 30,
            max_time: std::time::Duration::from_secs(3600),
            object_timeout: std::time::Duration::from_secs(30),
            max_object_bytes: 256 << 20,
            walk_concurrency: 32,
            max_requests: 4,
            max_documents: 10_000,
            memo_entries: 4_000_000,
        }
    }
}

impl OracleConfig {
    /// The measurement limits, defaults filled in.
    pub fn limits(&self) -> OracleLimits {
        let d = OracleLimits::default();
        OracleLimits {
            max_objects: self.max_objects.unwrap_or(d.max_objects),
            max_bytes: self.max_bytes.unwrap_or(d.max_bytes),
            max_time: self
                .max_secs
                .map_or(d.max_time, std::time::Duration::from_secs),
            object_timeout: self
                .object_timeout_secs
                .map_or(d.object_timeout, std::time::Duration::from_secs),
            max_object_bytes: self.max_object_bytes.unwrap_or(d.max_object_bytes),
            walk_concurrency: self.walk_concurrency.unwrap_or(d.walk_concurrency).max(1),
            max_requests: self.max_requests.unwrap_or(d.max_requests).max(1),
            max_documents: self.max_documents.unwrap_or(d.max_documents).max(1),
            memo_entries: self.memo_entries.unwrap_or(d.memo_entries),
        }
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}
fn is_default_log_range(v: &u64) -> bool {
    *v == default_log_range()
}
fn default_log_range() -> u64 {
    5_000
}
fn default_poll_secs() -> u64 {
    2
}
fn default_api_prefix() -> String {
    "/api/v0".into()
}
fn default_timeout_secs() -> u64 {
    60
}
fn default_retries() -> u32 {
    4
}
fn default_cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME") {
        Some(d) => PathBuf::from(d).join("pxfs"),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cache/pxfs"),
            None => PathBuf::from("/var/cache/pxfs"),
        },
    }
}
fn default_cache_size() -> u64 {
    4 << 30
}
fn default_reserve() -> u64 {
    128 << 20
}
fn default_staging_limit() -> u64 {
    8 << 30
}
fn default_parallelism() -> usize {
    8
}
fn default_staging_limit_files() -> u64 {
    100_000
}
fn default_max_loaded_inodes() -> u64 {
    50_000
}
fn default_commit_every_secs() -> u64 {
    5
}
fn default_follow_every_secs() -> u64 {
    3
}
fn default_settle_ms() -> u64 {
    1_000
}
fn default_writeback_delay_ms() -> u64 {
    5_000
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            dir: default_cache_dir(),
            size_bytes: default_cache_size(),
            reserve_bytes: default_reserve(),
            staging_limit_bytes: default_staging_limit(),
            staging_limit_files: default_staging_limit_files(),
            max_loaded_inodes: default_max_loaded_inodes(),
        }
    }
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            parallelism: default_parallelism(),
            commit_every_secs: default_commit_every_secs(),
            follow_every_secs: default_follow_every_secs(),
            settle_ms: default_settle_ms(),
            writeback_delay_ms: default_writeback_delay_ms(),
        }
    }
}

impl Config {
    /// The config path to use: explicit, `$PXFS_CONFIG`, or the per-user default.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, ConfigError> {
        if let Some(p) = explicit {
            return Ok(p.to_path_buf());
        }
        if let Some(p) = std::env::var_os("PXFS_CONFIG") {
            return Ok(PathBuf::from(p));
        }
        if let Some(h) = std::env::var_os("HOME") {
            let p = PathBuf::from(h).join(".config/pxfs/config.toml");
            if p.exists() {
                return Ok(p);
            }
        }
        Err(ConfigError::NotFound)
    }

    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let path = Self::locate(explicit)?;
        Self::from_file(&path)
    }

    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut cfg: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.message().to_string(),
        })?;
        let mut names = std::collections::HashSet::new();
        for p in &cfg.pinning {
            let clash = (!names.insert(p.name.as_str()))
                .then(|| format!("[[pinning]] name {:?} is used twice", p.name));
            if let Some(message) = p.check().err().or(clash) {
                return Err(ConfigError::Parse {
                    path: path.to_path_buf(),
                    message,
                });
            }
        }
        // Relative paths in a config file are relative to the file, not to the cwd.
        let base = path.parent().unwrap_or(Path::new("."));
        if cfg.cache.dir.is_relative() {
            cfg.cache.dir = base.join(&cfg.cache.dir);
        }
        if let Some(k) = cfg.chain.keystore.as_mut().filter(|k| k.is_relative()) {
            *k = base.join(&*k);
        }
        if let Some(t) = cfg
            .node
            .bearer_token_file
            .as_mut()
            .filter(|t| t.is_relative())
        {
            *t = base.join(&*t);
        }
        if let Some(s) = cfg.oracle.state_file.as_mut().filter(|s| s.is_relative()) {
            *s = base.join(&*s);
        }
        for p in &mut cfg.pinning {
            if p.access_token_file.is_relative() {
                p.access_token_file = base.join(&p.access_token_file);
            }
        }
        if let Some(f) = cfg
            .keys
            .passphrase_file
            .as_mut()
            .filter(|f| f.is_relative())
        {
            *f = base.join(&*f);
        }
        Ok(cfg)
    }

    pub fn write(&self, path: &Path) -> Result<(), ConfigError> {
        let text = toml::to_string_pretty(self).expect("config serializes");
        std::fs::write(path, text).map_err(|source| ConfigError::Write {
            path: path.to_path_buf(),
            source,
        })
    }
}

impl NodeConfig {
    /// The configuration of the replica at `url`: this one's options, another address.
    pub fn replica(&self, url: &str) -> NodeConfig {
        NodeConfig {
            api_url: url.to_string(),
            replicas: Vec::new(),
            ..self.clone()
        }
    }

    /// The bearer token, if any: `PXFS_NODE_TOKEN` first, then the token file.
    pub fn bearer_token(&self) -> Result<Option<String>, ConfigError> {
        if let Ok(t) = std::env::var("PXFS_NODE_TOKEN")
            && !t.trim().is_empty()
        {
            return Ok(Some(t.trim().to_string()));
        }
        match &self.bearer_token_file {
            None => Ok(None),
            Some(p) => std::fs::read_to_string(p)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The least a config holds: the chain and the node.
    const MINIMAL: &str = r#"
[chain]
rpc_url = "http://127.0.0.1:8545"
chain_id = 31337
contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
wallet = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
[node]
api_url = "http://127.0.0.1:5001"
"#;

    #[test]
    fn minimal_config_gets_defaults_and_relative_paths_resolve_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pxfs.toml");
        std::fs::write(&path, format!("{MINIMAL}[cache]\ndir = \"cache\"\n")).unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.node.api_prefix, "/api/v0");
        assert_eq!(cfg.cache.dir, dir.path().join("cache"));
        assert_eq!(cfg.upload.parallelism, 8);
    }

    #[test]
    fn node_auth_is_bearer_by_default_and_pollinationx_takes_its_login() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pxfs.toml");
        let base = MINIMAL;
        std::fs::write(&path, base).unwrap();
        assert_eq!(
            Config::from_file(&path).unwrap().node.auth,
            NodeAuth::Bearer
        );
        std::fs::write(
            &path,
            format!(
                "{base}auth = \"pollinationx\"\nauth_url = \"https://auth.example\"\nlogin_message = \"hi\"\n"
            ),
        )
        .unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.node.auth, NodeAuth::PollinationX);
        assert_eq!(cfg.node.auth_url.as_deref(), Some("https://auth.example"));
        // Written back the same way.
        let text = toml::to_string_pretty(&cfg).unwrap();
        assert!(text.contains("auth = \"pollinationx\""), "{text}");
        // By default a POST, and over https a GET when the service takes no POST.
        assert_eq!(cfg.node.login_method, LoginMethod::Auto);
        assert!(!text.contains("login_method"), "{text}");
        std::fs::write(
            &path,
            format!(
                "{base}auth = \"pollinationx\"\nauth_url = \"https://auth.example\"\nlogin_message = \"hi\"\nlogin_method = \"get\"\n"
            ),
        )
        .unwrap();
        assert_eq!(
            Config::from_file(&path).unwrap().node.login_method,
            LoginMethod::Get
        );
        std::fs::write(&path, format!("{base}auth = \"jwt\"\n")).unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("pollinationx"), "{err}");
    }

    #[test]
    fn the_staging_cap_is_staging_max_and_its_old_name_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pxfs.toml");
        let base = &format!("{MINIMAL}[cache]\n");
        std::fs::write(&path, base).unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.cache.staging_limit_bytes, 8 << 30, "the default cap");
        std::fs::write(&path, format!("{base}staging_max = 1048576\n")).unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.cache.staging_limit_bytes, 1 << 20);
        // Written back under the new name, which reads again.
        let text = toml::to_string_pretty(&cfg).unwrap();
        assert!(text.contains("staging_max = 1048576"), "{text}");
        assert!(!text.contains("staging_limit_bytes"), "{text}");
        std::fs::write(&path, format!("{base}staging_limit_bytes = 2097152\n")).unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.cache.staging_limit_bytes, 2 << 20, "the old name");
        // Both names at once: ambiguous, refused.
        std::fs::write(
            &path,
            format!("{base}staging_max = 1048576\nstaging_limit_bytes = 2097152\n"),
        )
        .unwrap();
        assert!(Config::from_file(&path).is_err());
    }

    #[test]
    fn metrics_are_off_unless_listen_names_an_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pxfs.toml");
        std::fs::write(&path, MINIMAL).unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.metrics.listen, None);
        assert!(!toml::to_string_pretty(&cfg).unwrap().contains("[metrics]"));
        std::fs::write(
            &path,
            format!("{MINIMAL}[metrics]\nlisten = \"127.0.0.1:9477\"\n"),
        )
        .unwrap();
        let cfg = Config::from_file(&path).unwrap();
        assert_eq!(cfg.metrics.listen, Some("127.0.0.1:9477".parse().unwrap()));
        // An address, not a host name: nothing is looked up.
        std::fs::write(
            &path,
            format!("{MINIMAL}[metrics]\nlisten = \"localhost:9477\"\n"),
        )
        .unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("pxfs.toml"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected_with_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[chain]\nrpc = 1\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
    }
}
