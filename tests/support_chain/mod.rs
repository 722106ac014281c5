//! Shared set-up for the chain tests: a fresh anvil with the contracts deployed, configs
//! for the dev wallets, the built `pxfs` binary, and an oracle stand-in that answers
//! requests through the Operator the way `pxfs oracle` will.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Output;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolValue;
use pxfs::chain::anvil::{Anvil, DEV_ADDRESSES, DEV_KEYS};
use pxfs::chain::contracts::{Operator, PxSolV1Double, PxSolV2Double, PxStorageNFT};
use pxfs::chain::deploy::{DeployParams, Deployment, deploy_devnet};
use pxfs::chain::{Chain, TokenId};
use pxfs::config::ChainConfig;

/// Dev account 0 deploys; 1 answers oracle requests; 2 and 3 are users.
pub const DEPLOYER: usize = 0;
pub const ORACLE: usize = 1;
pub const ALICE: usize = 2;
pub const BOB: usize = 3;

pub const SYNC_INTERVAL: u64 = 3_600;
pub const FREE_QUOTA: u64 = 10 << 20;
pub const ONE_LINK: u128 = 1_000_000_000_000_000_000;
/// The discard port: nothing listens there on a test machine.
pub const UNREACHABLE_NODE: &str = "http://127.0.0.1:9";

pub struct Devnet {
    pub anvil: Anvil,
    pub deployment: Deployment,
    pub dir: tempfile::TempDir,
}

pub fn addr(i: usize) -> Address {
    DEV_ADDRESSES[i].parse().unwrap()
}

pub fn key(i: usize) -> PrivateKeySigner {
    DEV_KEYS[i].parse().unwrap()
}

impl Devnet {
    pub async fn start() -> Devnet {
        Self::start_with_link(U256::from(10 * ONE_LINK)).await
    }

    pub async fn start_with_link(link_funding: U256) -> Devnet {
        let anvil = Anvil::spawn().expect("anvil starts (run scripts/setup.sh)");
        let deployment = deploy_devnet(
            &anvil.url(),
            DEV_KEYS[DEPLOYER],
            DeployParams {
                sync_interval: SYNC_INTERVAL,
                free_quota_bytes: FREE_QUOTA,
                oracle_node: addr(ORACLE),
                link_funding,
            },
        )
        .await
        .expect("deploy");
        Devnet {
            anvil,
            deployment,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn chain_config(&self, wallet: usize) -> ChainConfig {
        ChainConfig {
            rpc_url: self.anvil.url(),
            chain_id: self.deployment.chain_id,
            contract: self.deployment.contract.to_string(),
            operator: Some(self.deployment.operator.to_string()),
            wallet: addr(wallet).to_string(),
            keystore: None,
            poll_interval_secs: 1,
            start_block: 0,
            log_range_blocks: 5_000,
        }
    }

    /// The chain layer signing as dev account `i`.
    pub async fn chain(&self, i: usize) -> Chain {
        Chain::connect_with_signer(&self.chain_config(i), key(i))
            .await
            .expect("connect")
    }

    /// A raw provider signing as dev account `i`, for what the chain layer does not do
    /// (owner calls, transfers, wrong payments).
    pub fn provider(&self, i: usize) -> DynProvider {
        ProviderBuilder::new()
            .wallet(EthereumWallet::from(key(i)))
            .connect_http(self.anvil.url().parse().unwrap())
            .erased()
    }

    /// Deploys a PX.sol v2 double (owned by the deployer) next to the devnet's contracts.
    pub async fn deploy_px_sol_v2(&self) -> Address {
        *PxSolV2Double::deploy(self.provider(DEPLOYER))
            .await
            .expect("deploy PX.sol v2 double")
            .address()
    }

    /// Deploys a PX.sol v1 double (owned by the deployer).
    pub async fn deploy_px_sol_v1(&self) -> Address {
        *PxSolV1Double::deploy(self.provider(DEPLOYER))
            .await
            .expect("deploy PX.sol v1 double")
            .address()
    }

    /// The PX.sol v2 double at `at`, called as dev account `i`.
    pub fn px(&self, at: Address, i: usize) -> PxSolV2Double::PxSolV2DoubleInstance<DynProvider> {
        PxSolV2Double::new(at, self.provider(i))
    }

    /// The chain layer on the contract at `at`, signing as dev account `i`.
    pub async fn chain_on(&self, at: Address, i: usize) -> Chain {
        let mut cfg = self.chain_config(i);
        cfg.contract = at.to_string();
        Chain::connect_with_signer(&cfg, key(i))
            .await
            .expect("connect")
    }

    pub fn nft(&self, i: usize) -> PxStorageNFT::PxStorageNFTInstance<DynProvider> {
        PxStorageNFT::new(self.deployment.contract, self.provider(i))
    }

    /// Writes a config file for dev account `wallet`, optionally with changes to `[chain]`.
    /// Its node is a port nothing answers on: commands given a key never need one.
    pub fn write_config(&self, wallet: usize, edit: impl FnOnce(&mut ChainConfig)) -> PathBuf {
        self.write_config_with_node(wallet, UNREACHABLE_NODE, edit)
    }

    pub fn write_config_with_node(
        &self,
        wallet: usize,
        node_url: &str,
        edit: impl FnOnce(&mut ChainConfig),
    ) -> PathBuf {
        let mut chain = self.chain_config(wallet);
        edit(&mut chain);
        let text = format!(
            "[chain]\n{}\n[node]\napi_url = \"{node_url}\"\nretries = 0\ntimeout_secs = 5\n\n[cache]\ndir = \"cache\"\n",
            toml::to_string(&chain).unwrap()
        );
        let path = self
            .dir
            .path()
            .join(format!("config-{wallet}-{}.toml", rand_suffix()));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Advances chain time by `secs` and mines a block.
    pub async fn advance_time(&self, secs: u64) {
        let p = self.provider(DEPLOYER);
        let _: serde_json::Value = p
            .raw_request("evm_increaseTime".into(), (secs,))
            .await
            .unwrap();
        let _: serde_json::Value = p.raw_request("evm_mine".into(), ()).await.unwrap();
    }

    pub async fn nonce(&self, i: usize) -> u64 {
        self.provider(DEPLOYER)
            .get_transaction_count(addr(i))
            .await
            .unwrap()
    }

    pub async fn total_supply(&self) -> U256 {
        self.nft(DEPLOYER).totalSupply().call().await.unwrap()
    }

    /// Plays the oracle: answers the request behind `sync_tx` through the Operator with
    /// `usage` and `root`, as `fulfillOracleRequest2` with `abi.encode(requestId, usage, root)`.
    pub async fn fulfill(&self, sync_tx: B256, usage: u64, root: &str) -> TransactionReceipt {
        let p = self.provider(ORACLE);
        let receipt = p.get_transaction_receipt(sync_tx).await.unwrap().unwrap();
        let req = receipt
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<Operator::OracleRequest>().ok())
            .expect("OracleRequest event")
            .inner
            .data;
        let data = (req.requestId, U256::from(usage), root.to_string()).abi_encode_params();
        Operator::new(self.deployment.operator, p)
            .fulfillOracleRequest2(
                req.requestId,
                req.payment,
                req.callbackAddr,
                req.callbackFunctionId,
                req.cancelExpiration,
                data.into(),
            )
            .gas(1_000_000)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// Runs the built `pxfs` with `args`, signing as dev account `signer` (if any).
pub fn pxfs(args: &[&str], signer: Option<usize>) -> Output {
    match signer {
        Some(i) => pxfs_with_env(args, &[("PXFS_PRIVATE_KEY", DEV_KEYS[i])]),
        None => pxfs_with_env(args, &[]),
    }
}

/// Runs the built `pxfs` with `args` and exactly these pxfs variables in its environment.
pub fn pxfs_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    pxfs_command(args, env).output().expect("run pxfs")
}

/// Like [`pxfs_with_env`], with `input` on its stdin (a pipe, not a terminal).
pub fn pxfs_with_stdin(args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = pxfs_command(args, env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run pxfs");
    // A command that fails before reading closes the pipe: that is its answer, not ours.
    let _ = child.stdin.take().unwrap().write_all(input.as_bytes());
    child.wait_with_output().expect("wait for pxfs")
}

fn pxfs_command(args: &[&str], env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pxfs"));
    cmd.args(args)
        .env_remove("PXFS_CONFIG")
        .env_remove("PXFS_PRIVATE_KEY")
        .env_remove("PXFS_KEYSTORE_PASSWORD")
        .env_remove("PXFS_PASSPHRASE_FILE")
        .envs(env.iter().copied());
    cmd
}

/// An encrypted JSON keystore (V3, scrypt) holding dev account 2's key (ALICE), and its
/// password. The key is anvil's public dev key, so the fixture hides nothing.
pub const ALICE_KEYSTORE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/anvil-dev-2.keystore.json"
);
pub const ALICE_KEYSTORE_PASSWORD: &str = "pxfs-test-password";

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub async fn mint_free(devnet: &Devnet, i: usize, btns_key: &str) -> TokenId {
    devnet
        .chain(i)
        .await
        .mint(0, btns_key)
        .await
        .expect("mint")
        .token_id
}

/// A `pxfs node` child process with its own repo, stopped when dropped.
pub struct StorageNode {
    child: std::process::Child,
    pub url: String,
    _repo: tempfile::TempDir,
}

impl StorageNode {
    pub fn start() -> StorageNode {
        use std::io::{BufRead, BufReader};
        let repo = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pxfs"))
            .args(["node", "--listen", "127.0.0.1:0", "--repo"])
            .arg(repo.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start pxfs node");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("pxfs node exited before listening")
                .unwrap();
            if let Some(url) = line.strip_prefix("pxfs node listening on ") {
                break url.trim().to_string();
            }
        };
        // Keep draining so the node never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        StorageNode {
            child,
            url,
            _repo: repo,
        }
    }

    pub async fn key_ids(&self) -> Vec<String> {
        let cfg = pxfs::config::NodeConfig {
            api_url: self.url.clone(),
            api_prefix: "/api/v0".into(),
            bearer_token_file: None,
            auth: Default::default(),
            auth_url: None,
            login_message: None,
            login_method: Default::default(),
            timeout_secs: 10,
            retries: 0,
            replicas: Vec::new(),
        };
        pxfs::storage::NodeClient::new(&cfg)
            .unwrap()
            .key_list()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect()
    }
}

impl Drop for StorageNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
