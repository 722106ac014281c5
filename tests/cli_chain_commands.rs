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
