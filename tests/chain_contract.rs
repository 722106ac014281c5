//! PxStorageNFT on a real anvil, driven through the chain layer (and raw bindings where a
//! user could call the contract directly).

mod support_chain;

use alloy::primitives::{B256, U256};
use alloy::providers::Provider;
use pxfs::chain::contracts::{Operator, PxLegacyMock, PxStorageNFT};
use pxfs::chain::{Chain, ChainError, ChainEvent, LEGACY_SYNC_INTERVAL_SECS};
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

#[tokio::test]
async fn a_px_sol_shaped_contract_gives_quota_and_the_lock() {
    let net = Devnet::start().await;
    let mock = PxLegacyMock::deploy(net.provider(ALICE)).await.unwrap();
    mock.mint(U256::ZERO)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let mut cfg = net.chain_config(ALICE);
    cfg.contract = mock.address().to_string();
    let chain = Chain::connect(&cfg).await.unwrap();
    let token = chain.token(1).await.unwrap();
    assert_eq!(token.quota, 104_857_600);
    assert_eq!(token.btns_key, None);
    assert_eq!(token.sync_interval, LEGACY_SYNC_INTERVAL_SECS);
    assert!(!token.overdue);

    net.advance_time(LEGACY_SYNC_INTERVAL_SECS + 1).await;
    let late = chain.token(1).await.unwrap();
    assert!(late.overdue);
    assert!(matches!(
        chain.owned_tokens().await.unwrap_err(),
        ChainError::NotEnumerable(_)
    ));
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
