//! Tokens come and go while mounted: a newly minted sNFT appears as a directory, one
//! transferred away disappears, with no remount.

mod support;

use std::time::Duration;

use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use support::{TestDevnet, TestMount, advance_chain_time, rpc, wait_until};

alloy::sol! {
    function addNewPackage(uint256 price, uint256 sizeInBytes, string name, uint256 bandwidthLimit);
    function transferFrom(address from, address to, uint256 tokenId);
    function mint(uint256 packageId);
    function updateStorageUsage(uint256 tokenId, uint256 usageInBytes, uint256 bandwidth);
    function pxStorage(uint256 tokenId) returns (string name, uint256 usage, uint256 usagePercentage, uint256 size, uint256 sizeInBytes, string storageUnit, uint256 buyTimestamp, uint256 lastUpdateTimestamp, uint256 bandwidth);
}

/// Sends a transaction from one of anvil's unlocked dev accounts and waits for its receipt.
fn send(devnet: &TestDevnet, from: &str, data: Vec<u8>) {
    let to = devnet.info["contract"].as_str().unwrap().to_string();
    send_to(devnet, from, &to, data);
}

/// Sends a transaction to `to` (or deploys when `to` is empty); returns the receipt.
fn send_to(devnet: &TestDevnet, from: &str, to: &str, data: Vec<u8>) -> serde_json::Value {
    // A fixed gas limit: on the devnet's one-block-a-second chain an estimate can fall
    // short (see `with_gas_margin` in the chain layer).
    let mut tx = serde_json::json!({
        "from": from,
        "data": format!("0x{}", hex::encode(data)),
        "gas": "0x7a1200",
    });
    if !to.is_empty() {
        tx["to"] = serde_json::json!(to);
    }
    let hash = rpc(
        &devnet.rpc_url(),
        "eth_sendTransaction",
        serde_json::json!([tx]),
    );
    let mut receipt = serde_json::Value::Null;
    wait_until(
        "the transaction to be mined",
        Duration::from_secs(30),
        || {
            let r = rpc(
                &devnet.rpc_url(),
                "eth_getTransactionReceipt",
                serde_json::json!([hash]),
            );
            if r.is_null() {
                return false;
            }
            assert_eq!(r["status"], "0x1", "transaction failed: {r}");
            receipt = r;
            true
        },
    );
    receipt
}

#[test]
fn a_token_minted_while_mounted_appears_and_one_transferred_away_disappears() {
    let devnet = TestDevnet::start(&[]);
    let wallet = devnet.info["wallet"].as_str().unwrap().to_string();
    let mount = TestMount::mount(&devnet.config(), &[]);
    let first = mount.token(devnet.token());
    assert!(first.is_dir());
    std::fs::write(first.join("kept"), b"in the first token").unwrap();

    // A priced package (the free one is once per address), then a real `pxfs mint`.
    let price = 1_000_000_000_000_000u64; // 0.001 ETH
    send(
        &devnet,
        &wallet,
        addNewPackageCall {
            price: alloy::primitives::U256::from(price),
            sizeInBytes: alloy::primitives::U256::from(10u64 << 20),
            name: "10 MiB".into(),
            bandwidthLimit: alloy::primitives::U256::ZERO,
        }
        .abi_encode(),
    );
    let out = devnet.pxfs(&["mint", "--package", "1"]);
    assert!(
        out.status.success(),
        "pxfs mint: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(mount.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    let second_id = devnet.token() + 1;
    wait_until("the new sNFT to appear", Duration::from_secs(20), || {
        listed().contains(&second_id.to_string())
    });
    let second = mount.token(second_id);
    std::fs::write(second.join("new"), b"in the second token").unwrap();
    assert_eq!(
        std::fs::read(second.join("new")).unwrap(),
        b"in the second token"
    );
    let st = nix_statvfs(&second);
    assert_eq!(st, 10 << 20, "the new token's quota is its package's");

    // Transfer the first token away: its directory goes, the other stays.
    let other = pxfs::chain::anvil::DEV_ADDRESSES[2];
    send(
        &devnet,
        &wallet,
        transferFromCall {
            from: wallet.parse().unwrap(),
            to: other.parse().unwrap(),
            tokenId: alloy::primitives::U256::from(devnet.token()),
        }
        .abi_encode(),
    );
    wait_until(
        "the transferred sNFT to disappear",
        Duration::from_secs(20),
        || !listed().contains(&devnet.token().to_string()),
    );
    assert_eq!(listed(), vec![second_id.to_string()]);
    assert_eq!(
        std::fs::read(second.join("new")).unwrap(),
        b"in the second token"
    );
}

/// The quota `df` shows for `path`, in bytes.
fn nix_statvfs(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_blocks * st.f_frsize
}

/// Deploys the PX.sol v2 double from the devnet's wallet and writes a config (the devnet's,
/// with this contract) into the devnet's directory. Returns (contract, config).
fn px_sol_devnet(devnet: &TestDevnet) -> (String, std::path::PathBuf) {
    let wallet = devnet.info["wallet"].as_str().unwrap().to_string();
    let artifact: serde_json::Value = serde_json::from_slice(
        &std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/contracts/artifacts/PxSolV2Double.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let code = hex::decode(
        artifact["bytecode"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
    )
    .unwrap();
    let receipt = send_to(devnet, &wallet, "", code);
    let contract = receipt["contractAddress"].as_str().unwrap().to_string();
    let text = std::fs::read_to_string(devnet.config()).unwrap();
    let mut cfg: toml::Value = toml::from_str(&text).unwrap();
    cfg["chain"]["contract"] = toml::Value::String(contract.clone());
    let path = devnet.dir.path().join("px-sol.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    (contract, path)
}

fn px_storage(devnet: &TestDevnet, contract: &str, token: u64) -> pxStorageReturn {
    let call = serde_json::json!([{
        "to": contract,
        "data": format!("0x{}", hex::encode(pxStorageCall { tokenId: U256::from(token) }.abi_encode())),
    }, "latest"]);
    let out = rpc(&devnet.rpc_url(), "eth_call", call);
    let bytes = hex::decode(out.as_str().unwrap().trim_start_matches("0x")).unwrap();
    pxStorageCall::abi_decode_returns(&bytes).unwrap()
}

fn pxfs_with(devnet: &TestDevnet, config: &std::path::Path, args: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PXFS_PRIVATE_KEY", pxfs::chain::anvil::DEV_KEYS[0])
        .output()
        .unwrap();
    let _ = devnet;
    out
}

fn listed(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn px_sol_tokens_transferred_in_and_out_appear_and_disappear_while_mounted() {
    let devnet = TestDevnet::start(&[]);
    let wallet = devnet.info["wallet"].as_str().unwrap().to_string();
    let (contract, config) = px_sol_devnet(&devnet);
    send_to(
        &devnet,
        &wallet,
        &contract,
        mintCall {
            packageId: U256::ZERO,
        }
        .abi_encode(),
    );
    let other = pxfs::chain::anvil::DEV_ADDRESSES[2];
    send_to(
        &devnet,
        other,
        &contract,
        mintCall {
            packageId: U256::ZERO,
        }
        .abi_encode(),
    );

    let status = pxfs_with(&devnet, &config, &["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        text.contains("PX.sol v2"),
        "status names the flavour: {text}"
    );
    assert!(
        text.contains("updateStorageUsage"),
        "status names what sync does: {text}"
    );

    // PX.sol cannot enumerate: the mount lists the wallet's tokens from Transfer logs.
    let mount = TestMount::mount(&config, &[]);
    assert_eq!(listed(mount.path()), vec!["1"]);
    std::fs::write(mount.token(1).join("a"), b"in token 1").unwrap();

    let transfer = |from: &str, to: &str, id: u64| {
        send_to(
            &devnet,
            from,
            &contract,
            transferFromCall {
                from: from.parse().unwrap(),
                to: to.parse().unwrap(),
                tokenId: U256::from(id),
            }
            .abi_encode(),
        );
    };
    transfer(other, &wallet, 2);
    wait_until("token 2 to arrive", Duration::from_secs(20), || {
        listed(mount.path()) == vec!["1", "2"]
    });
    std::fs::write(mount.token(2).join("b"), b"in token 2").unwrap();
    transfer(&wallet, other, 1);
    wait_until("token 1 to leave", Duration::from_secs(20), || {
        listed(mount.path()) == vec!["2"]
    });
    assert_eq!(
        std::fs::read(mount.token(2).join("b")).unwrap(),
        b"in token 2"
    );

    // `--token` asks ownerOf only; a token the wallet gave away is refused by name.
    // PX.sol has no BTNS key: `pxfs register` records one in the token's extra content,
    // the mount picks it up and publishes there, and another machine finds the tree.
    let out = pxfs_with(&devnet, &config, &["register", "2"]);
    assert!(
        out.status.success(),
        "pxfs register: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until(
        "the mount to learn the BTNS name",
        Duration::from_secs(20),
        || {
            let c = std::ffi::CString::new(mount.token(2).as_os_str().as_encoded_bytes()).unwrap();
            let n = std::ffi::CString::new("user.pxfs.btns").unwrap();
            unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) > 0 }
        },
    );
    std::fs::write(mount.token(2).join("c"), b"after register").unwrap();
    std::fs::File::open(mount.token(2))
        .unwrap()
        .sync_all()
        .unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let mut second: toml::Value = toml::from_str(&text).unwrap();
    second["cache"]["dir"] =
        toml::Value::String(devnet.dir.path().join("cache-2").display().to_string());
    let config2 = devnet.dir.path().join("px-sol-2.toml");
    std::fs::write(&config2, toml::to_string(&second).unwrap()).unwrap();
    let single = TestMount::mount(&config2, &["--token", "2"]);
    assert_eq!(
        std::fs::read(single.path().join("b")).unwrap(),
        b"in token 2"
    );
    assert_eq!(
        std::fs::read(single.path().join("c")).unwrap(),
        b"after register"
    );
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .arg("mount")
        .arg(tempfile::tempdir().unwrap().path())
        .arg("--config")
        .arg(&config2)
        .args(["--token", "1"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("does not own sNFT 1"));
}

#[test]
fn px_sol_quota_counts_on_chain_usage_and_sync_reports_growth_once_and_lifts_the_lock() {
    let devnet = TestDevnet::start(&[]);
    let wallet = devnet.info["wallet"].as_str().unwrap().to_string();
    let (contract, config) = px_sol_devnet(&devnet);
    send_to(
        &devnet,
        &wallet,
        &contract,
        mintCall {
            packageId: U256::ZERO,
        }
        .abi_encode(),
    );
    let quota = px_storage(&devnet, &contract, 1).sizeInBytes.to::<u64>();
    let mount = TestMount::mount(&config, &["--token", "1"]);
    let dir = mount.path().to_path_buf();
    std::fs::write(dir.join("a"), vec![7u8; 50_000]).unwrap();

    // Sync reports the committed tree's growth, spending one upload of bandwidth...
    let out = pxfs_with(&devnet, &config, &["sync", "1"]);
    assert!(
        out.status.success(),
        "pxfs sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = px_storage(&devnet, &contract, 1);
    let committed: u64 = getxattr(&dir, "user.pxfs.committed_usage").parse().unwrap();
    assert!(committed >= 50_000);
    assert_eq!(s.usage.to::<u64>(), committed);
    assert_eq!(s.bandwidth.to::<u64>(), 24);
    // ...and a second sync with nothing new reports nothing and spends nothing.
    let out = pxfs_with(&devnet, &config, &["sync", "1"]);
    assert!(
        out.status.success(),
        "pxfs sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = px_storage(&devnet, &contract, 1);
    assert_eq!(
        (s.usage.to::<u64>(), s.bandwidth.to::<u64>()),
        (committed, 24)
    );

    // Deleting gives no space back: the contract still counts what was reported.
    std::fs::remove_file(dir.join("a")).unwrap();
    assert!(free_bytes(&dir) <= quota - committed);

    // Usage reported elsewhere (the dApp) counts too: nearly full now.
    send_to(
        &devnet,
        &wallet,
        &contract,
        updateStorageUsageCall {
            tokenId: U256::from(1),
            usageInBytes: U256::from(quota - committed - 8192),
            bandwidth: U256::ZERO,
        }
        .abi_encode(),
    );
    wait_until(
        "the mount to see the on-chain usage",
        Duration::from_secs(20),
        || free_bytes(&dir) <= 8192,
    );
    let err = std::fs::write(dir.join("big"), vec![1u8; 20_000]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
    let _ = std::fs::remove_file(dir.join("big"));

    // 30 days without an update: PX.sol locks uploads (EACCES); a sync lifts the lock.
    advance_chain_time(&devnet.rpc_url(), 30 * 24 * 3600 + 60);
    wait_until("the lock to show", Duration::from_secs(20), || {
        std::fs::write(dir.join("small"), b"x")
            .err()
            .and_then(|e| e.raw_os_error())
            == Some(libc::EACCES)
    });
    let out = pxfs_with(&devnet, &config, &["sync", "1"]);
    assert!(
        out.status.success(),
        "pxfs sync: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("the lock to lift", Duration::from_secs(20), || {
        std::fs::write(dir.join("small"), b"x").is_ok()
    });
}

/// Bytes `df` shows as free for `path`.
fn free_bytes(path: &std::path::Path) -> u64 {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
    st.f_bfree * st.f_frsize
}

fn getxattr(path: &std::path::Path, name: &str) -> String {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name}: {}",
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    String::from_utf8(buf).unwrap()
}
