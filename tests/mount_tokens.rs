//! Tokens come and go while mounted: a newly minted sNFT appears as a directory, one
//! transferred away disappears, with no remount.

mod support;

use std::time::Duration;

use alloy::sol_types::SolCall;
use support::{TestDevnet, TestMount, rpc, wait_until};

alloy::sol! {
    function addNewPackage(uint256 price, uint256 sizeInBytes, string name, uint256 bandwidthLimit);
    function transferFrom(address from, address to, uint256 tokenId);
}

/// Sends a transaction from one of anvil's unlocked dev accounts and waits for its receipt.
fn send(devnet: &TestDevnet, from: &str, data: Vec<u8>) {
    let tx = serde_json::json!([{
        "from": from,
        "to": devnet.info["contract"],
        "data": format!("0x{}", hex::encode(data)),
    }]);
    let hash = rpc(&devnet.rpc_url(), "eth_sendTransaction", tx);
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
            true
        },
    );
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
