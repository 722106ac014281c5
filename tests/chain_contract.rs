//! PxStorageNFT on a real anvil, driven through the chain layer (and raw bindings where a
//! user could call the contract directly).

mod support_chain;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use pxfs::chain::contracts::{Operator, PxStorageNFT};
use pxfs::chain::{Chain, ChainError, ChainEvent, Flavour, LEGACY_SYNC_INTERVAL_SECS};
use support_chain::*;

#[tokio::test]
async fn free_package_mints_once_per_address() {
    let net = Devnet::start().await;
    let alice = net.chain(ALICE).await;
    let minted = alice.mint(0, "k51-alice").await.unwrap();
    let token = alice.token(minted.token_id).await.unwrap();
    assert_eq!(token.quota, FREE_QUOTA);
    assert_eq!(token.usage, 0);
    assert_eq!(token.btns_key.as_deref(), Some("k51-alice"));
    assert_eq!(token.sync_interval, SYNC_INTERVAL);
    assert_eq!(token.sync_deadline, token.last_sync + SYNC_INTERVAL);
    assert!(!token.overdue);

    let again = alice.mint(0, "k51-again").await.unwrap_err();
    assert!(
        matches!(again, ChainError::FreePackageUsed(a) if a == addr(ALICE)),
        "{again}"
    );
    // The contract itself refuses too, not only the chain layer's pre-check.
    let raw = net
        .nft(ALICE)
        .mint(U256::ZERO, "x".into())
        .call()
        .await
        .unwrap_err();
    assert!(raw.to_string().contains("revert"), "{raw}");

    let bob = net.chain(BOB).await;
    bob.mint(0, "").await.unwrap();
    assert_eq!(net.total_supply().await, U256::from(2));
}

#[tokio::test]
async fn priced_package_takes_exactly_its_price() {
    let net = Devnet::start().await;
    let price = U256::from(10u64.pow(16));
    let owner = net.nft(DEPLOYER);
    owner
        .addNewPackage(price, U256::from(1u64 << 30), "1GB".into(), U256::from(100))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    for wrong in [U256::ZERO, price - U256::from(1), price + U256::from(1)] {
        let err = net
            .nft(ALICE)
            .mint(U256::from(1), "k".into())
            .value(wrong)
            .call()
            .await
            .unwrap_err();
        let decoded = err
            .as_decoded_interface_error::<PxStorageNFT::PxStorageNFTErrors>()
            .expect("a PxStorageNFT error");
        assert!(
            matches!(decoded, PxStorageNFT::PxStorageNFTErrors::WrongPayment(ref w) if w.expected == price && w.sent == wrong),
            "{decoded:?}"
        );
    }

    let alice = net.chain(ALICE).await;
    let before = net
        .provider(DEPLOYER)
        .get_balance(net.deployment.contract)
        .await
        .unwrap();
    let minted = alice.mint(1, "k51-big").await.unwrap();
    let after = net
        .provider(DEPLOYER)
        .get_balance(net.deployment.contract)
        .await
        .unwrap();
    assert_eq!(after - before, price);
    assert_eq!(alice.token(minted.token_id).await.unwrap().quota, 1 << 30);
    // Priced packages are not limited to one per address.
    alice.mint(1, "k51-big-2").await.unwrap();
}

#[tokio::test]
async fn inactive_and_unknown_packages_are_refused() {
    let net = Devnet::start().await;
    net.nft(DEPLOYER)
        .setPackageActive(U256::ZERO, false)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let alice = net.chain(ALICE).await;
    assert!(matches!(
        alice.mint(0, "k").await.unwrap_err(),
        ChainError::PackageInactive(0)
    ));
    assert!(matches!(
        alice.mint(9, "k").await.unwrap_err(),
        ChainError::UnknownPackage(9)
    ));
    // Only the contract owner manages packages.
    let err = net
        .nft(ALICE)
        .setPackageActive(U256::ZERO, true)
        .call()
        .await
        .unwrap_err();
    assert!(
        err.as_decoded_interface_error::<PxStorageNFT::PxStorageNFTErrors>()
            .is_some()
    );
}

#[tokio::test]
async fn btns_key_is_registered_by_owner_or_approved_and_only_once() {
    let net = Devnet::start().await;
    let token = mint_free(&net, ALICE, "").await;
    let bob = net.chain(BOB).await;
    let alice = net.chain(ALICE).await;
    assert_eq!(alice.token(token).await.unwrap().btns_key, None);

    let err = bob.register_btns_key(token, "k51-bob").await.unwrap_err();
    assert!(
        matches!(err, ChainError::NotOwner { token_id, caller } if token_id == token && caller == addr(BOB)),
        "{err}"
    );
    // The contract enforces it as well.
    let raw = net
        .nft(BOB)
        .registerBtnsKey(U256::from(token), "k".into())
        .call()
        .await
        .unwrap_err();
    assert!(matches!(
        raw.as_decoded_interface_error::<PxStorageNFT::PxStorageNFTErrors>(),
        Some(PxStorageNFT::PxStorageNFTErrors::NotOwnerOrApproved(_))
    ));

    // Once approved, Bob may register it.
    net.nft(ALICE)
        .approve(addr(BOB), U256::from(token))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let tx = bob.register_btns_key(token, "k51-by-bob").await.unwrap();
    assert!(tx.gas_used > 0);
    assert_eq!(
        alice.token(token).await.unwrap().btns_key.as_deref(),
        Some("k51-by-bob")
    );

    let err = alice
        .register_btns_key(token, "k51-other")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChainError::BtnsKeyAlreadyRegistered(t) if t == token),
        "{err}"
    );
    let raw = net
        .nft(ALICE)
        .registerBtnsKey(U256::from(token), "k".into())
        .call()
        .await
        .unwrap_err();
    assert!(matches!(
        raw.as_decoded_interface_error::<PxStorageNFT::PxStorageNFTErrors>(),
        Some(PxStorageNFT::PxStorageNFTErrors::BtnsKeyAlreadyRegistered(
            _
        ))
    ));
}

#[tokio::test]
async fn owned_tokens_follow_a_transfer() {
    let net = Devnet::start().await;
    let first = mint_free(&net, ALICE, "k1").await;
    net.nft(DEPLOYER)
        .addNewPackage(U256::ZERO, U256::from(1u64 << 20), "1MB".into(), U256::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let alice = net.chain(ALICE).await;
    let second = alice.mint(1, "k2").await.unwrap().token_id;
    let bob = net.chain(BOB).await;
    assert_eq!(alice.owned_tokens().await.unwrap(), vec![first, second]);
    assert_eq!(bob.owned_tokens().await.unwrap(), Vec::<u64>::new());

    net.nft(ALICE)
        .transferFrom(addr(ALICE), addr(BOB), U256::from(first))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(alice.owned_tokens().await.unwrap(), vec![second]);
    assert_eq!(bob.owned_tokens().await.unwrap(), vec![first]);
}

#[tokio::test]
async fn can_upload_reports_the_quota_flag() {
    let net = Devnet::start().await;
    let token = U256::from(mint_free(&net, ALICE, "k").await);
    let nft = net.nft(ALICE);
    let fits = nft
        .canUpload(token, U256::from(FREE_QUOTA))
        .call()
        .await
        .unwrap();
    assert!(fits.canUploadStatus && !fits.sizeOrBandwidthExceeded && !fits.timestampLock);
    let too_much = nft
        .canUpload(token, U256::from(FREE_QUOTA + 1))
        .call()
        .await
        .unwrap();
    assert!(
        !too_much.canUploadStatus && too_much.sizeOrBandwidthExceeded && !too_much.timestampLock
    );
}

#[tokio::test]
async fn token_is_overdue_once_the_sync_interval_has_passed() {
    let net = Devnet::start().await;
    let alice = net.chain(ALICE).await;
    let id = mint_free(&net, ALICE, "k").await;
    let fresh = alice.token(id).await.unwrap();
    assert!(!fresh.overdue);
    assert!(fresh.seconds_left() > 0);

    // Exactly at the deadline is still in time; one second later is overdue.
    net.advance_time(fresh.sync_deadline - fresh.chain_time)
        .await;
    let at_deadline = alice.token(id).await.unwrap();
    assert!(at_deadline.chain_time >= fresh.sync_deadline);
    if at_deadline.chain_time == fresh.sync_deadline {
        assert!(!at_deadline.overdue);
    }
    net.advance_time(1).await;
    let late = alice.token(id).await.unwrap();
    assert!(late.overdue);
    assert_eq!(late.seconds_left(), 0);
    let gate = net
        .nft(ALICE)
        .canUpload(U256::from(id), U256::from(1))
        .call()
        .await
        .unwrap();
    assert!(gate.timestampLock && !gate.canUploadStatus);
}

#[tokio::test]
async fn sync_requests_go_to_the_operator_and_its_answer_updates_the_token() {
    let net = Devnet::start().await;
    let alice = net.chain(ALICE).await;
    let id = mint_free(&net, ALICE, "k51-sync").await;
    net.advance_time(SYNC_INTERVAL + 10).await;
    assert!(alice.token(id).await.unwrap().overdue);

    let link_before = alice.link_balance_of_contract().await.unwrap();
    let req = alice.request_sync(id).await.unwrap();
    assert_ne!(req.request_id, B256::ZERO);
    assert_eq!(
        alice.link_balance_of_contract().await.unwrap(),
        link_before - alice.sync_fee().await.unwrap()
    );

    // The Operator announced the request with the token's BTNS key for the oracle.
    let receipt = net
        .provider(ALICE)
        .get_transaction_receipt(req.tx_hash)
        .await
        .unwrap()
        .unwrap();
    let announced = receipt
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<Operator::OracleRequest>().ok())
        .expect("OracleRequest")
        .inner
        .data;
    assert_eq!(announced.requestId, req.request_id);
    assert_eq!(announced.specId, net.deployment.job_id);
    assert_eq!(announced.callbackAddr, net.deployment.contract);
    assert_eq!(announced.dataVersion, U256::from(2));
    let cbor = String::from_utf8_lossy(&announced.data);
    assert!(
        cbor.contains("btnsKey") && cbor.contains("k51-sync"),
        "{cbor}"
    );

    let answer = net.fulfill(req.tx_hash, 4242, "bafyroot").await;
    assert!(answer.status());
    let synced = answer
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<PxStorageNFT::Synced>().ok())
        .expect("Synced event")
        .inner
        .data;
    assert_eq!(
        (synced.tokenId, synced.usage, synced.root.as_str()),
        (U256::from(id), U256::from(4242), "bafyroot")
    );
    assert!(
        answer
            .logs()
            .iter()
            .any(|l| l.log_decode::<PxStorageNFT::MetadataUpdate>().is_ok())
    );

    let after = alice.token(id).await.unwrap();
    assert_eq!(after.usage, 4242);
    assert!(!after.overdue);
    assert_eq!(after.last_sync, after.chain_time);
}

#[tokio::test]
async fn fulfill_sync_is_accepted_only_from_the_operator() {
    let net = Devnet::start().await;
    let alice = net.chain(ALICE).await;
    let id = mint_free(&net, ALICE, "k").await;
    let req = alice.request_sync(id).await.unwrap();
    for caller in [ALICE, ORACLE] {
        let err = net
            .nft(caller)
            .fulfillSync(req.request_id, U256::from(1), "root".into())
            .call()
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("Source must be the oracle of the request"),
            "{err}"
        );
    }
    assert_eq!(alice.token(id).await.unwrap().usage, 0);
}

/// The selectors of PX.sol as deployed (PollinationX's published ABI): pxfs's interface
/// and the test double must both match them.
#[test]
fn px_sol_selectors_match_the_deployed_contract() {
    use alloy::sol_types::{SolCall, SolEvent};
    use pxfs::chain::contracts::{PxSolV1Double as D1, PxSolV2Double as D2};
    use pxfs::chain::pxsol::{IPxSolV1, IPxSolV2};
    let hex = |s: [u8; 4]| alloy::hex::encode(s);
    let expected = [
        (
            "pxStorage",
            "3f38acda",
            hex(IPxSolV2::pxStorageCall::SELECTOR),
            hex(D2::pxStorageCall::SELECTOR),
        ),
        (
            "canUpload",
            "8f344838",
            hex(IPxSolV2::canUploadCall::SELECTOR),
            hex(D2::canUploadCall::SELECTOR),
        ),
        (
            "getStorageUsageInBytes",
            "d399eaf9",
            hex(IPxSolV2::getStorageUsageInBytesCall::SELECTOR),
            hex(D2::getStorageUsageInBytesCall::SELECTOR),
        ),
        (
            "getAllPackages",
            "0a421f0f",
            hex(IPxSolV2::getAllPackagesCall::SELECTOR),
            hex(D2::getAllPackagesCall::SELECTOR),
        ),
        (
            "mint",
            "a0712d68",
            hex(IPxSolV2::mintCall::SELECTOR),
            hex(D2::mintCall::SELECTOR),
        ),
        (
            "pxFreePackage",
            "fbef6a64",
            hex(IPxSolV2::pxFreePackageCall::SELECTOR),
            hex(D2::pxFreePackageCall::SELECTOR),
        ),
        (
            "updateStorageUsage",
            "4425bf49",
            hex(IPxSolV2::updateStorageUsageCall::SELECTOR),
            hex(D2::updateStorageUsageCall::SELECTOR),
        ),
        (
            "unlockUploading",
            "bca653ea",
            hex(IPxSolV2::unlockUploadingCall::SELECTOR),
            hex(D2::unlockUploadingCall::SELECTOR),
        ),
    ];
    for (name, want, ours, double) in expected {
        assert_eq!(ours, want, "pxfs's {name}");
        assert_eq!(double, want, "the v2 double's {name}");
    }
    // v1 shares the selectors of the views; only the answers differ.
    assert_eq!(hex(IPxSolV1::canUploadCall::SELECTOR), "8f344838");
    assert_eq!(hex(D1::canUploadCall::SELECTOR), "8f344838");
    assert_eq!(hex(IPxSolV1::pxStorageCall::SELECTOR), "3f38acda");
    assert_eq!(hex(D1::mintCall::SELECTOR), "a0712d68");
    assert_eq!(hex(D1::pxFreePackageCall::SELECTOR), "fbef6a64");
    assert_eq!(D2::MetadataUpdate::SIGNATURE, "MetadataUpdate(uint256)");
    assert_eq!(
        D2::Transfer::SIGNATURE_HASH,
        IPxSolV2::Transfer::SIGNATURE_HASH
    );
}

fn revert_text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

#[tokio::test]
async fn px_sol_v2_double_keeps_px_sol_arithmetic_and_oz4_reverts() {
    use pxfs::chain::contracts::PxSolV2Double;
    let net = Devnet::start().await;
    let at = net.deploy_px_sol_v2().await;
    let alice = net.px(at, ALICE);
    let receipt = alice
        .mint(U256::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        receipt
            .logs()
            .iter()
            .any(|l| l.log_decode::<PxSolV2Double::MetadataUpdate>().is_ok()),
        "mint emits MetadataUpdate"
    );
    let again = alice.mint(U256::ZERO).call().await.unwrap_err();
    assert!(
        revert_text(&again).contains("PX: free package already minted"),
        "{again}"
    );
    assert_eq!(
        alice.pxFreePackage(addr(ALICE)).call().await.unwrap(),
        U256::from(1)
    );

    let one = U256::from(1);
    let s = alice.pxStorage(one).call().await.unwrap();
    assert_eq!(s.sizeInBytes, U256::from(104_857_600u64));
    assert_eq!(s.bandwidth, U256::from(25));
    let fits = alice.canUpload(one, s.sizeInBytes).call().await.unwrap();
    assert!(fits.canUploadStatus && !fits.sizeOrBandwidthExceeded && !fits.timestampLock);
    let over = alice
        .canUpload(one, s.sizeInBytes + one)
        .call()
        .await
        .unwrap();
    assert!(!over.canUploadStatus && over.sizeOrBandwidthExceeded);

    let missing = alice.ownerOf(U256::from(99)).call().await.unwrap_err();
    assert!(
        revert_text(&missing).contains("ERC721: invalid token ID"),
        "{missing}"
    );

    // Usage is added, never set; each update spends bandwidth and emits MetadataUpdate.
    for _ in 0..2 {
        let r = alice
            .updateStorageUsage(one, U256::from(1000), one)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(
            r.logs()
                .iter()
                .any(|l| l.log_decode::<PxSolV2Double::MetadataUpdate>().is_ok())
        );
    }
    let s = alice.pxStorage(one).call().await.unwrap();
    assert_eq!(s.usage, U256::from(2000));
    assert_eq!(s.bandwidth, U256::from(23));
    assert_eq!(
        alice.getStorageUsageInBytes(one).call().await.unwrap(),
        U256::from(2000)
    );

    let bob = net.px(at, BOB);
    let e = bob
        .updateStorageUsage(one, one, one)
        .call()
        .await
        .unwrap_err();
    assert!(
        revert_text(&e).contains("PX: caller is not token owner or approved"),
        "{e}"
    );
    let e = alice.unlockUploading(one).call().await.unwrap_err();
    assert!(
        revert_text(&e).contains("Ownable: caller is not the owner"),
        "{e}"
    );

    // The lock: 30 days without an update; an update (or the owner's unlock) lifts it.
    net.advance_time(LEGACY_SYNC_INTERVAL_SECS + 1).await;
    let locked = alice.canUpload(one, one).call().await.unwrap();
    assert!(locked.timestampLock && !locked.canUploadStatus);
    net.px(at, DEPLOYER)
        .unlockUploading(one)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(
        !alice
            .canUpload(one, one)
            .call()
            .await
            .unwrap()
            .timestampLock
    );

    // Bandwidth 0 refuses even an upload of nothing more.
    alice
        .updateStorageUsage(one, U256::ZERO, U256::from(23))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let spent = alice.canUpload(one, U256::ZERO).call().await.unwrap();
    assert!(spent.sizeOrBandwidthExceeded && !spent.canUploadStatus);
}

#[tokio::test]
async fn contract_flavour_is_detected_from_its_views() {
    let net = Devnet::start().await;
    let v2 = net.deploy_px_sol_v2().await;
    let v1 = net.deploy_px_sol_v1().await;
    assert_eq!(net.chain(ALICE).await.flavour(), Flavour::PxStorageNft);
    assert_eq!(net.chain_on(v2, ALICE).await.flavour(), Flavour::PxSolV2);
    assert_eq!(net.chain_on(v1, ALICE).await.flavour(), Flavour::PxSolV1);
    let mut cfg = net.chain_config(ALICE);
    cfg.contract = net.deployment.link.to_string();
    let err = Chain::connect(&cfg)
        .await
        .err()
        .expect("a LinkToken is no sNFT contract");
    assert!(matches!(err, ChainError::UnknownContract(_)), "{err}");
}

#[tokio::test]
async fn px_sol_tokens_come_from_transfer_logs_followed_incrementally() {
    let net = Devnet::start().await;
    let at = net.deploy_px_sol_v2().await;
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = net.chain_config(ALICE);
    cfg.contract = at.to_string();
    cfg.log_range_blocks = 2;
    let alice = Chain::connect(&cfg)
        .await
        .unwrap()
        .with_cache_dir(cache.path());
    assert!(alice.owned_tokens().await.unwrap().is_empty());

    let px = net.px(at, ALICE);
    let price = U256::from(10u64.pow(16));
    for (package, value) in [(0u64, U256::ZERO), (1, price), (1, price)] {
        px.mint(U256::from(package))
            .value(value)
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
    }
    // Other blocks between them, so the scan crosses several bounded ranges.
    for _ in 0..5 {
        net.advance_time(1).await;
    }
    assert_eq!(alice.owned_tokens().await.unwrap(), vec![1, 2, 3]);

    px.transferFrom(addr(ALICE), addr(BOB), U256::from(2))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert_eq!(alice.owned_tokens().await.unwrap(), vec![1, 3]);
    let bob = net.chain_on(at, BOB).await;
    assert_eq!(bob.owned_tokens().await.unwrap(), vec![2]);
    assert!(alice.owns(1).await.unwrap() && !alice.owns(2).await.unwrap());
    assert!(!alice.owns(99).await.unwrap());

    // The scan is cached: a new start reads it and scans only the blocks after it.
    let file = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().contains("transfers-"))
        .expect("the transfer scan is cached");
    let cached: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let head = net.provider(ALICE).get_block_number().await.unwrap();
    assert_eq!(cached["next_block"], serde_json::json!(head + 1));
    assert_eq!(cached["tokens"], serde_json::json!([1, 3]));
    // A forged cache proves the restart trusts it instead of rescanning from block 0.
    let mut forged = cached.clone();
    forged["tokens"] = serde_json::json!([1, 3, 77]);
    std::fs::write(&file, serde_json::to_vec(&forged).unwrap()).unwrap();
    let again = Chain::connect(&cfg)
        .await
        .unwrap()
        .with_cache_dir(cache.path());
    assert_eq!(again.owned_tokens().await.unwrap(), vec![1, 3, 77]);
}

#[tokio::test]
async fn px_sol_mint_register_and_usage_report_through_the_chain_layer() {
    let net = Devnet::start().await;
    let at = net.deploy_px_sol_v2().await;
    let mut cfg = net.chain_config(ALICE);
    cfg.contract = at.to_string();
    let alice = Chain::connect_with_signer(&cfg, key(ALICE)).await.unwrap();
    let minted = alice.mint(0, "").await.unwrap();
    let again = alice.mint(0, "").await.unwrap_err();
    assert!(
        matches!(again, ChainError::FreePackageUsed(a) if a == addr(ALICE)),
        "{again}"
    );
    let id = minted.token_id;
    let t = alice.token(id).await.unwrap();
    assert_eq!((t.quota, t.usage, t.bandwidth), (104_857_600, 0, Some(25)));
    assert_eq!(t.btns_key, None);
    assert_eq!(t.sync_interval, LEGACY_SYNC_INTERVAL_SECS);

    let name = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8";
    let registered = alice.register_btns_key(id, name).await.unwrap();
    assert_eq!(
        alice.token(id).await.unwrap().btns_key.as_deref(),
        Some(name)
    );
    let raw = net
        .px(at, ALICE)
        .getExtraContent(U256::from(id), "pxfs".into())
        .call()
        .await
        .unwrap();
    assert_eq!(raw, format!("{{\"btns\":\"{name}\"}}"));
    assert!(matches!(
        alice.register_btns_key(id, name).await.unwrap_err(),
        ChainError::BtnsKeyAlreadyRegistered(_)
    ));

    net.advance_time(LEGACY_SYNC_INTERVAL_SECS + 1).await;
    assert!(alice.token(id).await.unwrap().overdue);
    let reported = alice.report_usage(id, 5000, 1).await.unwrap();
    println!("gas: PX.sol mint (free)          {}", minted.gas_used);
    println!("gas: PX.sol addExtraContent      {}", registered.gas_used);
    println!("gas: PX.sol updateStorageUsage   {}", reported.gas_used);
    let t = alice.token(id).await.unwrap();
    assert_eq!((t.usage, t.bandwidth, t.overdue), (5000, Some(24), false));
    assert!(matches!(
        alice.report_usage(id, 0, 25).await.unwrap_err(),
        ChainError::NoBandwidth {
            left: 24,
            needed: 25,
            ..
        }
    ));
    let bob = net.chain_on(at, BOB).await;
    assert!(matches!(
        bob.report_usage(id, 1, 1).await.unwrap_err(),
        ChainError::NotOwner { .. }
    ));
}

#[tokio::test]
async fn px_sol_v1_reads_quota_and_lock_but_refuses_owner_sync() {
    let net = Devnet::start().await;
    let at = net.deploy_px_sol_v1().await;
    let alice = net.chain_on(at, ALICE).await;
    let id = alice.mint(0, "").await.unwrap().token_id;
    let t = alice.token(id).await.unwrap();
    assert_eq!(
        (t.quota, t.bandwidth, t.overdue),
        (104_857_600, None, false)
    );
    net.advance_time(LEGACY_SYNC_INTERVAL_SECS + 1).await;
    assert!(alice.token(id).await.unwrap().overdue);
    assert!(matches!(
        alice.report_usage(id, 1, 1).await.unwrap_err(),
        ChainError::Unsupported { .. }
    ));
    assert_eq!(alice.owned_tokens().await.unwrap(), vec![id]);
}

/// Gas of the user-facing transactions; run with `--nocapture` to see the numbers.
#[tokio::test]
async fn gas_used_by_mint_register_sync_and_fulfill_stays_small() {
    let net = Devnet::start().await;
    let alice = net.chain(ALICE).await;
    let mint_with_key = alice
        .mint(
            0,
            "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8",
        )
        .await
        .unwrap();
    let bob = net.chain(BOB).await;
    let mint_without_key = bob.mint(0, "").await.unwrap();
    let register = bob
        .register_btns_key(
            mint_without_key.token_id,
            "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v9",
        )
        .await
        .unwrap();
    let sync = alice.request_sync(mint_with_key.token_id).await.unwrap();
    let fulfill = net
        .fulfill(
            sync.tx_hash,
            123_456,
            "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi",
        )
        .await;
    println!("gas: mint (with BTNS key) {}", mint_with_key.gas_used);
    println!("gas: mint (no key)        {}", mint_without_key.gas_used);
    println!("gas: registerBtnsKey      {}", register.gas_used);
    println!("gas: sync                 {}", sync.gas_used);
    println!(
        "gas: fulfillOracleRequest2 → fulfillSync {}",
        fulfill.gas_used
    );
    // PollinationX documents a 3,800,000 gas limit for its mint; stay an order of
    // magnitude below it.
    assert!(
        mint_with_key.gas_used < 450_000,
        "{}",
        mint_with_key.gas_used
    );
    for used in [register.gas_used, sync.gas_used, fulfill.gas_used] {
        assert!(used < 250_000, "{used}");
    }
}

#[tokio::test]
async fn events_tell_a_follower_about_mints_keys_transfers_and_syncs() {
    let net = Devnet::start().await;
    let alice = net.chain(ALICE).await;
    let start = alice.block_number().await.unwrap() + 1;
    let id = mint_free(&net, ALICE, "").await;
    alice.register_btns_key(id, "k51-ev").await.unwrap();
    let req = alice.request_sync(id).await.unwrap();
    net.fulfill(req.tx_hash, 77, "bafyev").await;
    net.nft(ALICE)
        .transferFrom(addr(ALICE), addr(BOB), U256::from(id))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let end = alice.block_number().await.unwrap();

    let events = alice.events(start, end).await.unwrap();
    let zero = alloy::primitives::Address::ZERO;
    assert_eq!(
        events,
        vec![
            ChainEvent::Transfer {
                token_id: id,
                from: zero,
                to: addr(ALICE)
            },
            ChainEvent::BtnsKeyRegistered {
                token_id: id,
                btns_key: "k51-ev".into()
            },
            ChainEvent::MetadataUpdate { token_id: id },
            ChainEvent::SyncRequested { token_id: id },
            ChainEvent::Synced {
                token_id: id,
                usage: 77,
                root: "bafyev".into()
            },
            ChainEvent::MetadataUpdate { token_id: id },
            // OpenZeppelin 5 clears the approval without an Approval event on transfer.
            ChainEvent::Transfer {
                token_id: id,
                from: addr(ALICE),
                to: addr(BOB)
            },
        ]
    );
    assert_eq!(alice.events(end + 1, end).await.unwrap(), vec![]);
}
