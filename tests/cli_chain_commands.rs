//! `pxfs status|mint|register|sync` as a user runs them: the built binary, a config file,
//! `PXFS_PRIVATE_KEY` in the environment, a real anvil. Every refused request says why in
//! one sentence and leaves the chain as it was (token count, the wallet's nonce).

mod support_chain;

use alloy::primitives::U256;
use alloy::providers::Provider;
use support_chain::*;

/// What a refused command must leave untouched.
async fn chain_snapshot(net: &Devnet, wallet: usize) -> (U256, u64) {
    (net.total_supply().await, net.nonce(wallet).await)
}

async fn assert_refused(
    net: &Devnet,
    wallet: usize,
    args: &[&str],
    signer: Option<usize>,
    expected: &str,
) {
    let before = chain_snapshot(net, wallet).await;
    let out = pxfs(args, signer);
    let err = stderr(&out);
    println!("pxfs {} → {}", args[0], err.trim());
    assert!(
        !out.status.success(),
        "{args:?} succeeded: {}",
        stdout(&out)
    );
    assert!(
        err.contains(expected),
        "{args:?}: expected {expected:?} in {err:?}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err:?}");
    assert_eq!(
        chain_snapshot(net, wallet).await,
        before,
        "{args:?} changed the chain"
    );
}

#[tokio::test]
async fn mint_then_status_lists_the_token_as_json() {
    let net = Devnet::start().await;
    let cfg = net.write_config(ALICE, |_| {});
    let cfg = cfg.to_str().unwrap();

    let out = pxfs(
        &[
            "mint",
            "--config",
            cfg,
            "--package",
            "0",
            "--btns-key",
            "k51-cli",
        ],
        Some(ALICE),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("minted token 1"), "{}", stdout(&out));

    // Reading needs no key.
    let out = pxfs(&["status", "--config", cfg, "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["wallet"], addr(ALICE).to_checksum(None));
    assert_eq!(v["chain_id"], 31337);
    assert_eq!(v["contract"], net.deployment.contract.to_checksum(None));
    assert_eq!(v["flavour"], "px-storage-nft");
    let tokens = v["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    let t = tokens[0].as_object().unwrap();
    let mut fields: Vec<&str> = t.keys().map(String::as_str).collect();
    fields.sort();
    assert_eq!(
        fields,
        [
            "bandwidth",
            "btns_key",
            "last_sync",
            "mount",
            "overdue",
            "quota",
            "stale",
            "sync_deadline",
            "time_left",
            "token_id",
            "usage",
            "used_percent"
        ]
    );
    // Not mounted here: the chain's view, current.
    assert!(t["mount"].is_null());
    assert_eq!(t["stale"], false);
    assert_eq!(v["mounts"], serde_json::json!([]));
    assert_eq!(v["chain"]["reachable"], true);
    assert_eq!(t["token_id"], 1);
    assert_eq!(t["quota"], FREE_QUOTA);
    assert_eq!(t["usage"], 0);
    assert_eq!(t["btns_key"], "k51-cli");
    assert_eq!(t["overdue"], false);
    assert_eq!(
        t["sync_deadline"].as_u64().unwrap(),
        t["last_sync"].as_u64().unwrap() + SYNC_INTERVAL
    );

    let table = pxfs(&["status", "--config", cfg], None);
    assert!(table.status.success());
    assert!(stdout(&table).contains("k51-cli"), "{}", stdout(&table));
}

#[tokio::test]
async fn status_shows_an_overdue_token() {
    let net = Devnet::start().await;
    mint_free(&net, ALICE, "k").await;
    net.advance_time(SYNC_INTERVAL + 1).await;
    let cfg = net.write_config(ALICE, |_| {});
    let out = pxfs(
        &["status", "--config", cfg.to_str().unwrap(), "--json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["tokens"][0]["overdue"], true);
    assert_eq!(v["tokens"][0]["time_left"], 0);
    let table = pxfs(&["status", "--config", cfg.to_str().unwrap()], None);
    assert!(stdout(&table).contains("OVERDUE"), "{}", stdout(&table));
}

#[tokio::test]
async fn register_then_sync_prints_the_request_id() {
    let net = Devnet::start().await;
    let token = mint_free(&net, ALICE, "").await.to_string();
    let cfg = net.write_config(ALICE, |_| {});
    let cfg = cfg.to_str().unwrap();

    assert_refused(
        &net,
        ALICE,
        &["sync", "--config", cfg, &token],
        Some(ALICE),
        "token 1 has no BTNS key; register one with `pxfs register 1`",
    )
    .await;

    let out = pxfs(
        &["register", "--config", cfg, &token, "--btns-key", "k51-reg"],
        Some(ALICE),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        net.chain(ALICE)
            .await
            .token(1)
            .await
            .unwrap()
            .btns_key
            .as_deref(),
        Some("k51-reg")
    );

    assert_refused(
        &net,
        ALICE,
        &[
            "register",
            "--config",
            cfg,
            &token,
            "--btns-key",
            "k51-again",
        ],
        Some(ALICE),
        "token 1 already has a BTNS key",
    )
    .await;

    // No node holds a tree for k51-reg here: measuring it first would refuse (tested in
    // sync_oracle), so the request is sent unchecked.
    let out = pxfs(
        &["sync", "--config", cfg, &token, "--no-check"],
        Some(ALICE),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let request_id = text
        .split("request id ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    assert_eq!(request_id.len(), 66, "{text}");

    // No oracle runs here: --wait sends the request, then gives up after its timeout with
    // a sentence that says what to check.
    let out = pxfs(
        &[
            "sync",
            "--config",
            cfg,
            &token,
            "--no-check",
            "--wait",
            "--timeout",
            "2",
        ],
        Some(ALICE),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("no answer from the oracle within 2 s"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).contains("request id "), "{}", stdout(&out));
}

#[tokio::test]
async fn wrong_chain_id_is_refused() {
    let net = Devnet::start().await;
    let cfg = net.write_config(ALICE, |c| c.chain_id = 1);
    assert_refused(
        &net,
        ALICE,
        &[
            "mint",
            "--config",
            cfg.to_str().unwrap(),
            "--package",
            "0",
            "--btns-key",
            "k",
        ],
        Some(ALICE),
        &format!(
            "the RPC at {} is chain 31337, but the config says 1",
            net.anvil.url()
        ),
    )
    .await;
}

#[tokio::test]
async fn a_contract_address_without_code_is_refused() {
    let net = Devnet::start().await;
    let empty = addr(BOB);
    let cfg = net.write_config(ALICE, |c| c.contract = empty.to_string());
    assert_refused(
        &net,
        ALICE,
        &[
            "mint",
            "--config",
            cfg.to_str().unwrap(),
            "--package",
            "0",
            "--btns-key",
            "k",
        ],
        Some(ALICE),
        &format!("there is no contract at {empty} on chain 31337"),
    )
    .await;
}

#[tokio::test]
async fn an_unreachable_rpc_is_reported() {
    let net = Devnet::start().await;
    // A port nothing listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let cfg = net.write_config(ALICE, |c| c.rpc_url = url.clone());
    assert_refused(
        &net,
        ALICE,
        &["status", "--config", cfg.to_str().unwrap()],
        None,
        &format!("cannot reach the chain RPC at {url}"),
    )
    .await;
}

#[tokio::test]
async fn a_signer_that_is_not_the_configured_wallet_is_refused() {
    let net = Devnet::start().await;
    let cfg = net.write_config(ALICE, |_| {});
    assert_refused(
        &net,
        BOB,
        &[
            "mint",
            "--config",
            cfg.to_str().unwrap(),
            "--package",
            "0",
            "--btns-key",
            "k",
        ],
        Some(BOB),
        &format!(
            "the signing key is for {}, but the config's wallet is {}",
            addr(BOB),
            addr(ALICE)
        ),
    )
    .await;
    assert_refused(
        &net,
        ALICE,
        &[
            "mint",
            "--config",
            cfg.to_str().unwrap(),
            "--package",
            "0",
            "--btns-key",
            "k",
        ],
        None,
        "no signer: set PXFS_PRIVATE_KEY",
    )
    .await;
}

#[tokio::test]
async fn registering_or_syncing_someone_elses_token_is_refused() {
    let net = Devnet::start().await;
    let token = mint_free(&net, ALICE, "").await.to_string();
    let cfg = net.write_config(BOB, |_| {});
    let cfg = cfg.to_str().unwrap();
    let expected = format!(
        "{} is neither the owner of token 1 nor approved for it",
        addr(BOB)
    );
    assert_refused(
        &net,
        BOB,
        &["register", "--config", cfg, &token, "--btns-key", "k"],
        Some(BOB),
        &expected,
    )
    .await;
    assert_refused(
        &net,
        BOB,
        &["sync", "--config", cfg, &token],
        Some(BOB),
        &expected,
    )
    .await;
    assert_refused(
        &net,
        BOB,
        &["sync", "--config", cfg, "77"],
        Some(BOB),
        "token 77 does not exist",
    )
    .await;
}

#[tokio::test]
async fn unknown_inactive_and_used_free_packages_are_refused() {
    let net = Devnet::start().await;
    let cfg = net.write_config(ALICE, |_| {});
    let cfg = cfg.to_str().unwrap();
    assert_refused(
        &net,
        ALICE,
        &["mint", "--config", cfg, "--package", "5", "--btns-key", "k"],
        Some(ALICE),
        "package 5 does not exist",
    )
    .await;

    mint_free(&net, ALICE, "k").await;
    assert_refused(
        &net,
        ALICE,
        &["mint", "--config", cfg, "--package", "0", "--btns-key", "k"],
        Some(ALICE),
        &format!(
            "{} has already minted the free package (package 0)",
            addr(ALICE)
        ),
    )
    .await;

    let owner = net.nft(DEPLOYER);
    owner
        .addNewPackage(U256::ZERO, U256::from(1u64 << 20), "1MB".into(), U256::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    owner
        .setPackageActive(U256::from(1), false)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_refused(
        &net,
        ALICE,
        &["mint", "--config", cfg, "--package", "1", "--btns-key", "k"],
        Some(ALICE),
        "package 1 is not active",
    )
    .await;
}

#[tokio::test]
async fn a_package_the_wallet_cannot_pay_for_is_refused() {
    let net = Devnet::start().await;
    let p = net.provider(DEPLOYER);
    let _: serde_json::Value = p
        .raw_request(
            "anvil_setBalance".into(),
            (addr(ALICE), U256::from(10u64.pow(18))),
        )
        .await
        .unwrap();
    let price = U256::from(2 * 10u64.pow(18));
    net.nft(DEPLOYER)
        .addNewPackage(price, U256::from(1u64 << 30), "1GB".into(), U256::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let cfg = net.write_config(ALICE, |_| {});
    assert_refused(&net, ALICE, &["mint", "--config", cfg.to_str().unwrap(), "--package", "1", "--btns-key", "k"], Some(ALICE),
        &format!("the wallet {} holds 1000000000000000000 wei, less than the 2000000000000000000 wei this needs", addr(ALICE))).await;
}

#[tokio::test]
async fn sync_with_an_unmeasurable_tree_is_refused_before_anything_is_sent() {
    let net = Devnet::start().await;
    let token = mint_free(&net, ALICE, "k51-nothing-published")
        .await
        .to_string();
    let cfg = net.write_config(ALICE, |_| {});
    // The contract would accept it; the tree cannot be measured (no node holds it).
    assert_refused(
        &net,
        ALICE,
        &["sync", "--config", cfg.to_str().unwrap(), &token],
        Some(ALICE),
        "the oracle cannot measure token 1's published tree, so it would not answer",
    )
    .await;
}

#[tokio::test]
async fn sync_without_enough_link_in_the_contract_is_refused() {
    let net = Devnet::start_with_link(U256::ZERO).await;
    let token = mint_free(&net, ALICE, "k51").await.to_string();
    let cfg = net.write_config(ALICE, |_| {});
    assert_refused(
        &net,
        ALICE,
        &["sync", "--config", cfg.to_str().unwrap(), &token],
        Some(ALICE),
        "the contract holds 0 LINK, less than the sync fee of 0.1 LINK",
    )
    .await;
}

#[tokio::test]
async fn mint_without_a_key_generates_one_on_the_node() {
    let net = Devnet::start().await;
    let node = StorageNode::start();
    let cfg = net.write_config_with_node(ALICE, &node.url, |_| {});
    let out = pxfs(
        &["mint", "--config", cfg.to_str().unwrap(), "--package", "0"],
        Some(ALICE),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = net
        .chain(ALICE)
        .await
        .token(1)
        .await
        .unwrap()
        .btns_key
        .expect("a key at mint");
    assert_eq!(
        node.key_ids()
            .await
            .iter()
            .filter(|id| **id == stored)
            .count(),
        1,
        "{stored}"
    );
}

#[tokio::test]
async fn register_without_a_key_generates_one_on_the_node() {
    let net = Devnet::start().await;
    let token = mint_free(&net, ALICE, "").await.to_string();
    let node = StorageNode::start();
    let cfg = net.write_config_with_node(ALICE, &node.url, |_| {});
    let out = pxfs(
        &["register", "--config", cfg.to_str().unwrap(), &token],
        Some(ALICE),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let stored = net
        .chain(ALICE)
        .await
        .token(1)
        .await
        .unwrap()
        .btns_key
        .expect("registered");
    assert!(node.key_ids().await.contains(&stored), "{stored}");
}

#[tokio::test]
async fn mint_without_a_key_and_no_node_changes_nothing() {
    let net = Devnet::start().await;
    let cfg = net.write_config(ALICE, |_| {});
    assert_refused(
        &net,
        ALICE,
        &["mint", "--config", cfg.to_str().unwrap(), "--package", "0"],
        Some(ALICE),
        &format!("cannot list keys on the node at {UNREACHABLE_NODE}"),
    )
    .await;
}

#[tokio::test]
async fn a_refused_mint_is_refused_before_the_node_is_asked_for_a_key() {
    let net = Devnet::start().await;
    mint_free(&net, ALICE, "k").await;
    // The node is unreachable, so reaching it would give a different error.
    let cfg = net.write_config(ALICE, |_| {});
    assert_refused(
        &net,
        ALICE,
        &["mint", "--config", cfg.to_str().unwrap(), "--package", "0"],
        Some(ALICE),
        "has already minted the free package",
    )
    .await;
}

#[tokio::test]
async fn a_keystore_in_the_config_signs_with_the_password_from_the_environment() {
    let net = Devnet::start().await;
    let cfg = net.write_config(ALICE, |c| c.keystore = Some(ALICE_KEYSTORE.into()));
    let cfg = cfg.to_str().unwrap();
    let mint = [
        "mint",
        "--config",
        cfg,
        "--package",
        "0",
        "--btns-key",
        "k51-ks",
    ];

    let before = chain_snapshot(&net, ALICE).await;
    let out = pxfs_with_env(&mint, &[]);
    assert!(
        stderr(&out).contains("PXFS_KEYSTORE_PASSWORD is not set"),
        "{}",
        stderr(&out)
    );
    let out = pxfs_with_env(&mint, &[("PXFS_KEYSTORE_PASSWORD", "wrong")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot unlock the keystore")
            && stderr(&out).contains("the password in PXFS_KEYSTORE_PASSWORD is wrong"),
        "{}",
        stderr(&out)
    );
    assert_eq!(chain_snapshot(&net, ALICE).await, before);

    let out = pxfs_with_env(
        &mint,
        &[("PXFS_KEYSTORE_PASSWORD", ALICE_KEYSTORE_PASSWORD)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        net.chain(ALICE).await.owned_tokens().await.unwrap(),
        vec![1]
    );
}

#[tokio::test]
async fn px_sol_mint_status_and_sync_as_a_user_runs_them() {
    let net = Devnet::start().await;
    let at = net.deploy_px_sol_v2().await;
    let cfg = net.write_config(ALICE, |c| c.contract = at.to_string());
    let cfg = cfg.to_str().unwrap();
    let name = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8";

    let out = pxfs(
        &[
            "mint",
            "--config",
            cfg,
            "--package",
            "0",
            "--btns-key",
            name,
        ],
        Some(ALICE),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("minted token 1"), "{}", stdout(&out));
    let px = net.px(at, ALICE);
    assert_eq!(
        px.pxFreePackage(addr(ALICE)).call().await.unwrap(),
        U256::from(1)
    );
    assert_eq!(
        px.getExtraContent(U256::from(1), "pxfs".into())
            .call()
            .await
            .unwrap(),
        format!("{{\"btns\":\"{name}\"}}")
    );

    let out = pxfs(&["status", "--config", cfg, "--json"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["flavour"], "px-sol-v2");
    assert_eq!(report["tokens"][0]["token_id"], 1);
    assert_eq!(report["tokens"][0]["bandwidth"], 25);
    assert_eq!(report["tokens"][0]["btns_key"], name);

    // The free package is PX.sol's once per address; a sync needs a mount's committed tree.
    let (supply_before, nonce_before) = (
        px.pxFreePackage(addr(ALICE)).call().await.unwrap(),
        net.nonce(ALICE).await,
    );
    let out = pxfs(
        &[
            "mint",
            "--config",
            cfg,
            "--package",
            "0",
            "--btns-key",
            name,
        ],
        Some(ALICE),
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("has already minted the free package"),
        "{}",
        stderr(&out)
    );
    let out = pxfs(&["sync", "--config", cfg, "1"], Some(ALICE));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not mounted on this machine"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        (
            px.pxFreePackage(addr(ALICE)).call().await.unwrap(),
            net.nonce(ALICE).await
        ),
        (supply_before, nonce_before)
    );
}

// ---- `pxfs key`: an encrypted sNFT's data key (docs/FORMAT.md §6.4) ----

use alloy::signers::SignerSync;
use pxfs::format::DataKey;
use pxfs::format::paper;
use pxfs::format::usage::{Encryption, UsageDoc};
use pxfs::format::wrap::{EncryptionInfo, Kek, SCHEME, Wrap, wallet_message};
use pxfs::keys::TokenRef;
use pxfs::keys::edit::wallet_opens;
use pxfs::storage::NodeClient;

const PASSPHRASE: &str = "correct horse battery staple";

/// A minted token whose BTNS key the node holds, and the usage documents the test publishes
/// under it.
struct KeyedToken {
    net: Devnet,
    node: StorageNode,
    client: NodeClient,
    key_name: String,
    btns: String,
    /// Config files of ALICE (the minter) and BOB.
    alice: String,
    bob: String,
    /// The secrets no command may print (besides export's line).
    secrets: Vec<String>,
}

impl KeyedToken {
    async fn start() -> KeyedToken {
        let net = Devnet::start().await;
        let node = StorageNode::start();
        let client = NodeClient::from_url(&node.url, "/api/v0");
        let key = client.key_gen("pxfs-key-test").await.unwrap();
        assert_eq!(mint_free(&net, ALICE, &key.id).await, 1);
        let alice = net.write_config_with_node(ALICE, &node.url, |_| {});
        let bob = net.write_config_with_node(BOB, &node.url, |_| {});
        KeyedToken {
            client,
            key_name: key.name,
            btns: key.id,
            alice: alice.to_str().unwrap().into(),
            bob: bob.to_str().unwrap().into(),
            net,
            node,
            secrets: vec![PASSPHRASE.into()],
        }
    }

    fn contract(&self) -> String {
        self.net.deployment.contract.to_checksum(None)
    }

    fn message(&self) -> String {
        wallet_message(31337, &self.contract(), 1).unwrap()
    }

    fn token_ref(&self) -> TokenRef {
        TokenRef {
            chain_id: 31337,
            contract: self.net.deployment.contract,
            token_id: 1,
        }
    }

    /// Dev account `i`'s signature of `message`, as the codec's wallet KEK takes it.
    fn signature(&mut self, i: usize, message: &str) -> [u8; 65] {
        let sig = key(i)
            .sign_message_sync(message.as_bytes())
            .unwrap()
            .as_bytes();
        self.secrets.push(hex::encode(sig));
        sig
    }

    /// A wallet wrap of `dk` for `message` made with dev account `i`'s signature of it.
    fn wallet_wrap(&mut self, i: usize, message: &str, dk: &DataKey) -> Wrap {
        let sig = self.signature(i, message);
        let kek = Kek::from_wallet_signature(&sig).unwrap();
        Wrap::wallet(message.to_string(), &kek, dk)
    }

    fn remember(&mut self, dk: &DataKey) {
        let hex = hex::encode(dk.expose());
        let grouped: Vec<&str> = (0..8).map(|i| &hex[i * 8..i * 8 + 8]).collect();
        self.secrets.push(grouped.join(" "));
        self.secrets.push(hex);
    }

    /// Publishes a first `pxfs/usage/2` document of token 1 with these wraps of `dk`.
    async fn publish(&mut self, dk: &DataKey, wraps: Vec<Wrap>) -> String {
        self.remember(dk);
        let root = self
            .client
            .add_bytes(
                "root",
                bytes::Bytes::from_static(b"{\"schema\":\"pxfs/root/2\"}"),
            )
            .await
            .unwrap()
            .hash;
        let doc = UsageDoc {
            schema: "pxfs/usage/2".into(),
            chain_id: 31337,
            contract: self.contract(),
            token_id: 1,
            quota: FREE_QUOTA,
            usage: 24,
            root,
            seq: 1,
            updated_at: 1_700_000_000,
            prev: None,
            encryption: Encryption::Sealed(EncryptionInfo {
                scheme: SCHEME.into(),
                key_id: dk.key_id().to_string(),
                wraps,
            }),
            merged: None,
            files: None,
            last_upload: None,
            px: None,
        };
        let cid = self
            .client
            .add_bytes("usage.json", doc.to_json().unwrap().into())
            .await
            .unwrap()
            .hash;
        // In place of what the name holds (the node checks it, docs/FORMAT.md §9.3).
        let replaces = self.client.name_resolve(&self.btns).await.ok();
        let published = self
            .client
            .name_publish_replacing(&self.key_name, &cid, replaces.as_deref())
            .await
            .unwrap();
        assert!(
            matches!(published, pxfs::storage::Publication::Published { .. }),
            "{published:?}"
        );
        cid
    }

    /// The published document and its CID.
    async fn current(&self) -> (String, UsageDoc) {
        let cid = self.client.name_resolve(&self.btns).await.unwrap();
        let bytes = self.client.cat(&cid, 0, None).await.unwrap();
        (cid, UsageDoc::parse(&bytes).unwrap())
    }

    /// Runs `pxfs key ARGS… --config CFG 1` with these variables and stdin; checks that no
    /// secret is in its argv or output (export's stdout aside).
    fn key(&self, args: &[&str], cfg: &str, env: &[(&str, &str)], stdin: &str) -> Output {
        let mut argv = vec!["key"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["--config", cfg, "1"]);
        let out = pxfs_with_stdin(&argv, env, stdin);
        println!("pxfs {} → {}{}", argv.join(" "), stdout(&out), stderr(&out));
        for s in &self.secrets {
            assert!(
                !argv.iter().any(|a| a.contains(s.as_str())),
                "secret in argv"
            );
            assert!(
                !stderr(&out).contains(s.as_str()),
                "secret in stderr: {}",
                stderr(&out)
            );
            if args[0] != "export" {
                assert!(
                    !stdout(&out).contains(s.as_str()),
                    "secret in stdout: {}",
                    stdout(&out)
                );
            }
        }
        out
    }
}

use std::process::Output;

fn with_key(i: usize) -> [(&'static str, &'static str); 1] {
    [("PXFS_PRIVATE_KEY", pxfs::chain::anvil::DEV_KEYS[i])]
}

/// A failed command: one sentence on stderr containing `expected`.
fn assert_fails_with(out: &Output, expected: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "succeeded: {}", stdout(out));
    assert!(err.contains(expected), "expected {expected:?} in {err:?}");
    assert_eq!(err.trim().lines().count(), 1, "one sentence: {err:?}");
}

#[tokio::test]
async fn key_status_add_and_remove_passphrase_publish_the_next_document() {
    let mut t = KeyedToken::start().await;
    let dk = DataKey::random();
    let message = t.message();
    let wrap = t.wallet_wrap(ALICE, &message, &dk);
    let first = t.publish(&dk, vec![wrap]).await;
    let cfg = t.alice.clone();

    let out = t.key(&["status"], &cfg, &with_key(ALICE), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "encryption on (pxfs-aes256gcm/2), key id {}",
            dk.key_id()
        )),
        "{text}"
    );
    assert!(text.contains("wraps: 1 wallet, 0 passphrase"), "{text}");
    assert!(
        text.contains("1 of the wallet ones legacy EIP-191 (migrated"),
        "{text}"
    );
    assert!(text.contains("can unlock it with the wallet"), "{text}");

    // Without the wallet key, nothing to unlock with: said, not failed.
    let out = t.key(&["status", "--json"], &cfg, &[], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["encryption"], "on");
    assert_eq!(v["key_id"], dk.key_id().to_string());
    assert_eq!(v["usage_doc"], first);
    assert_eq!(v["wraps"]["wallet"], 1);
    assert_eq!(v["wraps"]["wallet_legacy"], 1);
    assert_eq!(v["unlock"]["ok"], false);
    let why = v["unlock"]["error"].as_str().unwrap();
    assert!(why.starts_with("no way to unlock token 1"), "{why}");

    // The passphrase from stdin; the data key from the wallet.
    let out = t.key(
        &["add-passphrase"],
        &cfg,
        &with_key(ALICE),
        &format!("{PASSPHRASE}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (second, doc) = t.current().await;
    assert_eq!((doc.seq, doc.prev.as_deref()), (2, Some(first.as_str())));
    let Encryption::Sealed(info) = &doc.encryption else {
        panic!("plaintext")
    };
    assert_eq!(info.wraps.len(), 2);
    assert_eq!(
        info.unlock_with_passphrase(PASSPHRASE.as_bytes())
            .unwrap()
            .expose(),
        dk.expose()
    );
    // The wallet unlocked it through the legacy (EIP-191) wrap, so that wrap was migrated
    // in the same document: an EIP-712 wrap the wallet opens, and the old message's
    // signature (phishable: the text is public and fixed) opens nothing any more.
    assert!(
        matches!(
            info.wraps[..],
            [Wrap::WalletTyped { .. }, Wrap::Passphrase { .. }]
        ),
        "{info:?}"
    );
    let legacy_sig = t.signature(ALICE, &message);
    assert!(info.unlock_with_wallet(&message, &legacy_sig).is_err());
    assert!(wallet_opens(&t.token_ref(), info, Some(&key(ALICE))).unwrap());

    // It unlocks: from a file (unattended) and from stdin, without the wallet.
    let file = t.net.dir.path().join("passphrase");
    std::fs::write(&file, format!("{PASSPHRASE}\n")).unwrap();
    let file_env = [("PXFS_PASSPHRASE_FILE", file.to_str().unwrap())];
    let out = t.key(&["status"], &cfg, &file_env, "");
    assert!(
        stdout(&out).contains("can unlock it with the passphrase"),
        "{}",
        stdout(&out)
    );
    let out = t.key(&["export"], &cfg, &[], &format!("{PASSPHRASE}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        paper::export(31337, &t.contract(), 1, &dk).as_str()
    );

    // A wrong one fails with one sentence and changes nothing.
    let out = t.key(&["export"], &cfg, &[], "wrong horse battery staple\n");
    assert_fails_with(&out, "pxfs: wrong passphrase: it does not unlock token 1");
    assert!(stdout(&out).is_empty());
    let out = t.key(
        &["remove-passphrase"],
        &cfg,
        &with_key(ALICE),
        "wrong horse battery staple\n",
    );
    assert_fails_with(&out, "wrong passphrase");
    assert_eq!(t.current().await.0, second);

    // Removed: the wallet wrap stays, the chain of documents goes on.
    let out = t.key(
        &["remove-passphrase"],
        &cfg,
        &with_key(ALICE),
        &format!("{PASSPHRASE}\n"),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, doc) = t.current().await;
    assert_eq!((doc.seq, doc.prev.as_deref()), (3, Some(second.as_str())));
    let Encryption::Sealed(info) = &doc.encryption else {
        panic!("plaintext")
    };
    assert!(
        matches!(info.wraps[..], [Wrap::WalletTyped { .. }]),
        "{info:?}"
    );
    let out = t.key(
        &["remove-passphrase"],
        &cfg,
        &with_key(ALICE),
        &format!("{PASSPHRASE}\n"),
    );
    assert_fails_with(&out, "token 1 has no passphrase to remove");
    drop(t.node);
}

#[tokio::test]
async fn the_last_way_to_unlock_is_not_removed_and_a_running_mount_is_not_raced() {
    let mut t = KeyedToken::start().await;
    let dk = DataKey::random();
    let only = Wrap::passphrase(PASSPHRASE.as_bytes(), &dk).unwrap();
    let first = t.publish(&dk, vec![only]).await;
    let cfg = t.alice.clone();
    for (args, stdin) in [
        (&["remove-passphrase"][..], format!("{PASSPHRASE}\n")),
        (&["remove-passphrase", "--all"][..], String::new()),
    ] {
        let out = t.key(args, &cfg, &with_key(ALICE), &stdin);
        assert_fails_with(&out, "refusing to remove the last way to unlock token 1");
    }
    assert_eq!(t.current().await.0, first);

    // A mount of token 1 running from the same cache directory: no second writer.
    use pxfs::cli::mount_status::*;
    let cache = t.net.dir.path().join("cache");
    let status = MountStatus {
        schema: SCHEMA.into(),
        pid: std::process::id(),
        mountpoint: "/mnt/px-test".into(),
        chain_id: 31337,
        contract: t.contract().to_lowercase(),
        wallet: addr(ALICE).to_string().to_lowercase(),
        state: "mounted".into(),
        started_at: 1,
        updated_at: 1,
        pending_files: 0,
        pending_bytes: 0,
        node: NodeReport::default(),
        chain: ChainReport::default(),
        tokens: vec![MountedToken {
            token_id: 1,
            quota: FREE_QUOTA,
            overdue: false,
            last_sync: 0,
            sync_deadline: 0,
            btns_key: Some(t.btns.clone()),
            usage: 0,
            files: 0,
            read_only: false,
            pending_uploads: 0,
            pending_bytes: 0,
            last_commit: None,
            last_root: None,
            usage_doc: None,
            seq: 1,
            encryption: "none".into(),
            conflicts: 0,
        }],
        local_faults: Vec::new(),
        loaded_inodes: 0,
        dropped_log_lines: 0,
        outcome: None,
        replicas: Vec::new(),
    };
    write(&status_file(&cache, "/mnt/px-test".as_ref()), &status).unwrap();
    let out = t.key(
        &["add-passphrase"],
        &cfg,
        &[],
        &format!("{PASSPHRASE}\nanother passphrase\n"),
    );
    assert_fails_with(
        &out,
        "token 1 is mounted at /mnt/px-test from this cache directory; unmount it first",
    );
    assert_eq!(t.current().await.0, first);
}

#[tokio::test]
async fn export_then_import_after_a_transfer_wraps_the_key_for_the_new_owner() {
    let mut t = KeyedToken::start().await;
    let dk = DataKey::random();
    let message = t.message();
    let wrap = t.wallet_wrap(ALICE, &message, &dk);
    let first = t.publish(&dk, vec![wrap]).await;

    let out = t.key(&["export"], &t.alice.clone(), &with_key(ALICE), "");
    assert!(out.status.success(), "{}", stderr(&out));
    let line = stdout(&out).trim().to_string();
    assert!(line.starts_with("pxfs-key-2 31337:"), "{line}");
    assert!(
        stderr(&out).contains("whoever has it can read all its data"),
        "{}",
        stderr(&out)
    );

    t.net
        .nft(ALICE)
        .transferFrom(addr(ALICE), addr(BOB), U256::from(1))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let bob = t.bob.clone();
    let out = t.key(&["status"], &bob, &with_key(BOB), "");
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "cannot unlock it now: this wallet ({}) cannot unlock token 1",
            addr(BOB)
        )),
        "{text}"
    );

    // A backup of another key, or of another token, is refused and changes nothing.
    let other = DataKey::random();
    t.remember(&other);
    let wrong_key = paper::export(31337, &t.contract(), 1, &other);
    let out = t.key(
        &["import"],
        &bob,
        &with_key(BOB),
        &format!("{}\n", wrong_key.as_str()),
    );
    assert_fails_with(&out, "key id mismatch");
    let wrong_token = paper::export(31337, &t.contract(), 2, &dk);
    let out = t.key(
        &["import"],
        &bob,
        &with_key(BOB),
        &format!("{}\n", wrong_token.as_str()),
    );
    assert_fails_with(&out, "this backup is for token 2");
    assert_eq!(t.current().await.0, first);

    // The right one: BOB's wallet unlocks the old data from now on.
    let out = t.key(&["import"], &bob, &with_key(BOB), &format!("{line}\n"));
    assert!(out.status.success(), "{}", stderr(&out));
    let (_, doc) = t.current().await;
    assert_eq!((doc.seq, doc.prev.as_deref()), (2, Some(first.as_str())));
    let Encryption::Sealed(info) = &doc.encryption else {
        panic!("plaintext")
    };
    // An EIP-712 wrap for BOB; his EIP-191 signature of the old message opens nothing.
    assert!(
        matches!(info.wraps[1], Wrap::WalletTyped { .. }),
        "{info:?}"
    );
    assert!(wallet_opens(&t.token_ref(), info, Some(&key(BOB))).unwrap());
    let sig = t.signature(BOB, &message);
    assert!(info.unlock_with_wallet(&message, &sig).is_err());
    let out = t.key(&["status"], &bob, &with_key(BOB), "");
    assert!(
        stdout(&out).contains("can unlock it with the wallet"),
        "{}",
        stdout(&out)
    );
    let out = t.key(&["import"], &bob, &with_key(BOB), &format!("{line}\n"));
    assert!(
        stdout(&out).contains("already unlocks token 1"),
        "{}",
        stdout(&out)
    );

    // ALICE no longer owns it: she cannot import for herself.
    let out = t.key(
        &["import"],
        &t.alice.clone(),
        &with_key(ALICE),
        &format!("{line}\n"),
    );
    assert_fails_with(&out, "does not own token 1");

    // BOB rotates his wallet wrap: a new salt, so the signature that opened the old wrap
    // opens nothing; ALICE's old wrap is hers and stays.
    let (before_cid, before) = t.current().await;
    let Encryption::Sealed(before) = before.encryption else {
        panic!("plaintext")
    };
    let out = t.key(&["rotate-wallet"], &bob, &with_key(BOB), "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("rotated the wallet wrap of token 1"),
        "{}",
        stdout(&out)
    );
    let (_, after) = t.current().await;
    assert_eq!(after.prev.as_deref(), Some(before_cid.as_str()));
    let Encryption::Sealed(after) = after.encryption else {
        panic!("plaintext")
    };
    assert_eq!(after.key_id, before.key_id);
    assert_eq!(after.wraps.len(), 2);
    assert_eq!(after.wraps[0], before.wraps[0]);
    assert_ne!(after.wraps[1], before.wraps[1]);
    let old_salt = before.wraps[1].typed_salt().unwrap().unwrap();
    let old_kek = pxfs::keys::wallet_kek(&t.token_ref(), &key(BOB), &old_salt).unwrap();
    assert!(
        after
            .wraps
            .iter()
            .all(|w| w.open(&old_kek, &dk.key_id()).is_err())
    );
    assert!(wallet_opens(&t.token_ref(), &after, Some(&key(BOB))).unwrap());
}

#[tokio::test]
async fn a_wallet_wrap_naming_another_message_is_never_signed_or_used() {
    let mut t = KeyedToken::start().await;
    let dk = DataKey::random();
    // A forger's document: the owner's signature of the forger's text opens this wrap, so
    // pxfs would unlock it only by signing the message it finds in the document.
    let forged = format!("{}\nplease sign", t.message());
    let wrap = t.wallet_wrap(ALICE, &forged, &dk);
    t.publish(&dk, vec![wrap]).await;
    let cfg = t.alice.clone();
    let out = t.key(&["status"], &cfg, &with_key(ALICE), "");
    let text = stdout(&out);
    assert!(
        text.contains("1 wallet for another message (never used)"),
        "{text}"
    );
    assert!(
        text.contains("cannot unlock it now: no way to unlock token 1"),
        "{text}"
    );
    let out = t.key(&["export"], &cfg, &with_key(ALICE), "");
    assert_fails_with(&out, "no way to unlock token 1");
    assert!(stdout(&out).is_empty());
}
