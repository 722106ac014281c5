//! Tokens come and go while mounted: a newly minted sNFT appears as a directory, one
//! transferred away disappears, with no remount.

#[path = "support/hosted.rs"]
mod hosted;
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
    function addExtraContent(uint256 tokenId, string key, string value);
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
    assert!(first.is_dir(), "the kernel has its entry now");
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
    // The kernel's cached entry goes with it (not after its 60 s TTL): `stat` fails too.
    wait_until(
        "stat of the transferred sNFT to fail",
        Duration::from_secs(2),
        || {
            std::fs::metadata(&first)
                .err()
                .and_then(|e| e.raw_os_error())
                == Some(libc::ENOENT)
        },
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

/// The dApp's drive as ../shared/POLLINATIONX.md describes it: files uploaded unencrypted,
/// an index sealed with AES-256-GCM (12-byte IV first, tag at the end) under a random
/// 32-byte secret, its CID recorded with `addExtraContent(token, base64(SHA-512(hex
/// secret)), {"cid": CID})`.
struct DappDrive {
    node: pxfs::storage::NodeClient,
    rt: tokio::runtime::Runtime,
    secret: String,
}

impl DappDrive {
    fn new(devnet: &TestDevnet) -> DappDrive {
        DappDrive {
            node: pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0"),
            rt: tokio::runtime::Runtime::new().unwrap(),
            secret: hex::encode(rand::random::<[u8; 32]>()),
        }
    }

    /// Upload `data` as the dApp does (plain `add`); its CID.
    fn add(&self, name: &str, data: Vec<u8>) -> String {
        self.rt
            .block_on(self.node.add_bytes(name, data.into()))
            .unwrap()
            .hash
    }

    /// `index` sealed with the secret; with `tamper`, one byte of the ciphertext flipped.
    fn seal(&self, index: &serde_json::Value, tamper: bool) -> Vec<u8> {
        use aes_gcm::aead::{Aead, KeyInit};
        let key = hex::decode(&self.secret).unwrap();
        let cipher = aes_gcm::Aes256Gcm::new_from_slice(&key).unwrap();
        let iv: [u8; 12] = rand::random();
        let mut sealed = iv.to_vec();
        sealed.extend(
            cipher
                .encrypt((&iv).into(), index.to_string().as_bytes())
                .unwrap(),
        );
        if tamper {
            sealed[20] ^= 0x01;
        }
        sealed
    }

    /// Upload the sealed index and record its CID for `token` on chain.
    fn record(&self, devnet: &TestDevnet, contract: &str, token: u64, sealed: Vec<u8>) {
        use base64::Engine;
        use sha2::Digest;
        let cid = self.add(&format!("extraContentNFT{token}.json"), sealed);
        let key = base64::engine::general_purpose::STANDARD
            .encode(sha2::Sha512::digest(self.secret.as_bytes()));
        let wallet = devnet.info["wallet"].as_str().unwrap().to_string();
        send_to(
            devnet,
            &wallet,
            contract,
            addExtraContentCall {
                tokenId: U256::from(token),
                key,
                value: serde_json::json!({ "cid": cid }).to_string(),
            }
            .abi_encode(),
        );
    }
}

/// `pxfs key import-dapp TOKEN` with `secret` on stdin.
fn import_dapp(config: &std::path::Path, token: u64, secret: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .args(["key", "import-dapp", &token.to_string(), "--config"])
        .arg(config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
    child.wait_with_output().unwrap()
}

/// A PX.sol double with sNFT 1 minted to the wallet; (contract, config, mount log).
fn px_sol_with_token(devnet: &TestDevnet) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let wallet = devnet.info["wallet"].as_str().unwrap().to_string();
    let (contract, config) = px_sol_devnet(devnet);
    send_to(
        devnet,
        &wallet,
        &contract,
        mintCall {
            packageId: U256::ZERO,
        }
        .abi_encode(),
    );
    let cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let log = std::path::Path::new(cfg["cache"]["dir"].as_str().unwrap()).join("mount.log");
    (contract, config, log)
}

fn dapp_file(name: &str, cid: &str, size: usize) -> serde_json::Value {
    serde_json::json!({
        "id": format!("id-{name}"), "name": name, "type": "file", "status": "uploaded",
        "uploaded": true, "hash": cid, "size": size, "createdAt": 1_700_000_000_000u64,
        "url": format!("https://example.invalid/{cid}"), "image": null,
    })
}

fn errno_of<T: std::fmt::Debug>(r: std::io::Result<T>) -> Option<i32> {
    r.expect_err("a change under px-dapp succeeded")
        .raw_os_error()
}

#[test]
fn px_dapp_shows_the_dapps_files_read_only_and_outside_the_committed_tree() {
    let devnet = TestDevnet::start(&[]);
    let (contract, config, log) = px_sol_with_token(&devnet);
    let drive = DappDrive::new(&devnet);
    let report: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let photo = b"a photo's bytes".to_vec();
    let report_cid = drive.add("report.pdf", report.clone());
    let photo_cid = drive.add("beach.jpg", photo.clone());
    let index = serde_json::json!([
        dapp_file("report.pdf", &report_cid, report.len()),
        {"id": "f1", "name": "Photos", "type": "folder", "status": "uploaded", "children": [
            {"id": "f2", "name": "2024", "type": "folder", "children": [
                dapp_file("beach.jpg", &photo_cid, photo.len()),
            ]},
            {"id": "p", "name": "half.mov", "type": "file", "status": "uploading"},
        ]},
        {"id": "bad", "name": "../escape", "type": "file", "status": "uploaded", "hash": photo_cid, "size": 1},
    ]);
    drive.record(&devnet, &contract, 1, drive.seal(&index, false));

    // A wrong secret is refused, by a sentence, and nothing is stored.
    let wrong = hex::encode(rand::random::<[u8; 32]>());
    let out = import_dapp(&config, 1, &wrong);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no dApp index is recorded for sNFT 1 under this secret"),
        "{err}"
    );
    assert!(!err.contains(&wrong), "the secret is echoed: {err}");
    let out = import_dapp(&config, 1, "not hex");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("64 hexadecimal characters"));

    let out = import_dapp(&config, 1, &drive.secret);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "import-dapp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("lists 4 file(s) and folder(s)"), "{said}");
    assert!(!said.contains(&drive.secret));

    let mount = TestMount::mount(&config, &["--token", "1"]);
    let root = mount.path().to_path_buf();
    std::fs::write(root.join("own.txt"), b"pxfs's own file").unwrap();
    std::fs::File::open(&root).unwrap().sync_all().unwrap();
    let usage = getxattr(&root, "user.pxfs.usage");
    let committed = getxattr(&root, "user.pxfs.committed_usage");

    let dapp = root.join("px-dapp");
    let listing = support::sh(&format!("cd {} && ls -R", dapp.display()));
    assert_eq!(
        listing, ".:\nPhotos\nreport.pdf\n\n./Photos:\n2024\n\n./Photos/2024:\nbeach.jpg\n",
        "ls -R px-dapp"
    );
    let local = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("report.pdf"), &report).unwrap();
    std::fs::write(local.path().join("beach.jpg"), &photo).unwrap();
    support::sh(&format!(
        "cmp {}/report.pdf {}/report.pdf && cmp {}/beach.jpg {}/Photos/2024/beach.jpg",
        local.path().display(),
        dapp.display(),
        local.path().display(),
        dapp.display()
    ));
    let meta = std::fs::metadata(dapp.join("report.pdf")).unwrap();
    assert_eq!(meta.len(), report.len() as u64);

    // Every change under px-dapp is refused: EROFS.
    use std::os::unix::fs::PermissionsExt;
    let erofs = Some(libc::EROFS);
    assert_eq!(errno_of(std::fs::write(dapp.join("new"), b"x")), erofs);
    assert_eq!(
        errno_of(
            std::fs::OpenOptions::new()
                .write(true)
                .open(dapp.join("report.pdf"))
        ),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::remove_file(dapp.join("report.pdf"))),
        erofs
    );
    assert_eq!(errno_of(std::fs::create_dir(dapp.join("d"))), erofs);
    assert_eq!(
        errno_of(std::fs::remove_dir_all(dapp.join("Photos"))),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::rename(dapp.join("report.pdf"), root.join("moved"))),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::rename(root.join("own.txt"), dapp.join("own.txt"))),
        erofs
    );
    assert_eq!(
        errno_of(std::fs::rename(&dapp, root.join("elsewhere"))),
        erofs
    );
    assert_eq!(errno_of(std::fs::remove_dir(&dapp)), erofs);
    assert_eq!(
        errno_of(std::fs::set_permissions(
            dapp.join("report.pdf"),
            std::fs::Permissions::from_mode(0o666)
        )),
        erofs
    );
    let c = std::ffi::CString::new(dapp.join("report.pdf").as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new("user.note").unwrap();
    let rc = unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"x".as_ptr().cast(), 1, 0) };
    assert_eq!(rc, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), erofs);

    // What px-dapp shows is not pxfs's: it adds nothing to usage, nothing is committed.
    std::fs::File::open(&root).unwrap().sync_all().unwrap();
    assert_eq!(getxattr(&root, "user.pxfs.usage"), usage);
    assert_eq!(getxattr(&root, "user.pxfs.committed_usage"), committed);
    assert!(
        usage.parse::<u64>().unwrap() < report.len() as u64,
        "usage {usage} counts px-dapp"
    );
    // Copying out works, and the copy is an ordinary file of the tree.
    std::fs::copy(
        dapp.join("Photos/2024/beach.jpg"),
        root.join("beach-copy.jpg"),
    )
    .unwrap();
    assert_eq!(std::fs::read(root.join("beach-copy.jpg")).unwrap(), photo);
    std::fs::remove_file(root.join("beach-copy.jpg")).unwrap();

    // The secret is in no process's argv and not in the mount's log.
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            assert!(
                !String::from_utf8_lossy(&cmdline).contains(&drive.secret),
                "the secret is in the argv of {:?}",
                entry.path()
            );
        }
    }
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("px-dapp"), "{logged}");
    assert!(
        !logged.contains(&drive.secret),
        "the secret is in the mount log"
    );
    drop(mount);

    // Another machine (a fresh cache, no secret) finds the committed tree without px-dapp.
    let text = std::fs::read_to_string(&config).unwrap();
    let mut other: toml::Value = toml::from_str(&text).unwrap();
    other["cache"]["dir"] =
        toml::Value::String(devnet.dir.path().join("cache-2").display().to_string());
    let config2 = devnet.dir.path().join("px-sol-2.toml");
    std::fs::write(&config2, toml::to_string(&other).unwrap()).unwrap();
    let out = pxfs_with(&devnet, &config, &["register", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mount = TestMount::mount(&config, &["--token", "1"]);
    std::fs::write(mount.path().join("after-register"), b"x").unwrap();
    drop(mount);
    let elsewhere = TestMount::mount(&config2, &["--token", "1"]);
    assert_eq!(listed(elsewhere.path()), vec!["after-register", "own.txt"]);
}

#[test]
fn a_tampered_dapp_index_is_refused_and_the_snft_still_mounts() {
    let devnet = TestDevnet::start(&[]);
    let (contract, config, log) = px_sol_with_token(&devnet);
    let drive = DappDrive::new(&devnet);
    let cid = drive.add("a.txt", b"first".to_vec());
    let index = serde_json::json!([dapp_file("a.txt", &cid, 5)]);
    drive.record(&devnet, &contract, 1, drive.seal(&index, false));
    let out = import_dapp(&config, 1, &drive.secret);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The index now recorded does not decrypt (one byte flipped): refused by import...
    drive.record(&devnet, &contract, 1, drive.seal(&index, true));
    let out = import_dapp(&config, 1, &drive.secret);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("does not decrypt with this secret"), "{err}");

    // ...and the mount serves the sNFT without px-dapp, saying why in its log.
    let mount = TestMount::mount(&config, &[]);
    let dir = mount.token(1);
    std::fs::write(dir.join("mine"), b"still writable").unwrap();
    assert_eq!(listed(&dir), vec!["mine"]);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("does not decrypt with this secret"),
        "{logged}"
    );

    // A good index recorded while mounted appears at a chain poll; a damaged one hides it.
    let second = drive.add("b.txt", b"second".to_vec());
    let index = serde_json::json!([dapp_file("a.txt", &cid, 5), dapp_file("b.txt", &second, 6)]);
    drive.record(&devnet, &contract, 1, drive.seal(&index, false));
    wait_until("px-dapp to appear", Duration::from_secs(30), || {
        dir.join("px-dapp").is_dir()
    });
    assert_eq!(listed(&dir.join("px-dapp")), vec!["a.txt", "b.txt"]);
    assert_eq!(std::fs::read(dir.join("px-dapp/b.txt")).unwrap(), b"second");
    drive.record(&devnet, &contract, 1, drive.seal(&index, true));
    wait_until("px-dapp to go", Duration::from_secs(30), || {
        !dir.join("px-dapp").exists()
    });
    assert_eq!(listed(&dir), vec!["mine"]);

    // A secret forgotten: px-dapp stays away even with a good index.
    drive.record(&devnet, &contract, 1, drive.seal(&index, false));
    wait_until("px-dapp to come back", Duration::from_secs(30), || {
        dir.join("px-dapp").is_dir()
    });
    let out = pxfs_with(&devnet, &config, &["key", "forget-dapp", "1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("px-dapp to go", Duration::from_secs(30), || {
        !dir.join("px-dapp").exists()
    });
}

/// Writes `data` to `path` in pieces, pausing between them, so one file's writing (and its
/// upload, which runs alongside) spans some time.
fn write_slowly(path: &std::path::Path, data: &[u8], pieces: usize, pause: Duration) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    for chunk in data.chunks(data.len().div_ceil(pieces)) {
        f.write_all(chunk).unwrap();
        std::thread::sleep(pause);
    }
    f.sync_all().unwrap();
}

/// A PX.sol sNFT on PollinationX's hosted nodes (the stand-in login and gateway in front of
/// the devnet's node, JWTs living 6 s and refused by the gateway 2 s early): a copy that
/// spans several expiries succeeds, renewing before expiry and after 401s, every file reads
/// back from the gateway with an empty read cache, and no JWT is in the log or the status.
#[test]
fn a_copy_to_a_hosted_node_survives_jwt_expiries_and_reads_back_identical() {
    let devnet = TestDevnet::start(&[]);
    let (contract, config, log) = px_sol_with_token(&devnet);
    let mut cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let gateway = hosted::HostedGateway::start(
        &devnet.node_url(),
        cfg["chain"]["chain_id"].as_integer().unwrap() as u64,
        &contract,
        vec![1],
        Duration::from_secs(6),
        Duration::from_secs(2),
    );
    gateway.configure(&mut cfg);
    let hosted_config = devnet.dir.path().join("hosted.toml");
    std::fs::write(&hosted_config, toml::to_string(&cfg).unwrap()).unwrap();
    let cache = std::path::PathBuf::from(cfg["cache"]["dir"].as_str().unwrap());

    let key = [
        ("PXFS_PRIVATE_KEY", support::DEV_WALLET_KEY),
        ("PXFS_LOG", "debug"),
    ];
    let mut mount = TestMount::mount_with_env(&hosted_config, &["--token", "1"], &key);
    let src = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    let started = std::time::Instant::now();
    // Small files at a steady pace for ~15 s, with one 12 MiB file written over ~4 s in
    // the middle: uploads run through several JWT lifetimes.
    for i in 0..150usize {
        let rel = format!("d{}/f{i:03}", i % 6);
        let data: Vec<u8> = (0..(i * 97) % 20_000).map(|_| rand::random()).collect();
        std::fs::create_dir_all(src.path().join(format!("d{}", i % 6))).unwrap();
        std::fs::create_dir_all(mount.path().join(format!("d{}", i % 6))).unwrap();
        std::fs::write(src.path().join(&rel), &data).unwrap();
        std::fs::write(mount.path().join(&rel), &data).unwrap();
        files.push(rel);
        if i == 75 {
            let big: Vec<u8> = (0..12 << 20).map(|_| rand::random()).collect();
            std::fs::write(src.path().join("big.bin"), &big).unwrap();
            write_slowly(
                &mount.path().join("big.bin"),
                &big,
                16,
                Duration::from_millis(250),
            );
            files.push("big.bin".into());
        }
        std::thread::sleep(Duration::from_millis(70));
    }
    std::fs::File::open(mount.path())
        .unwrap()
        .sync_all()
        .unwrap();
    let copy_took = started.elapsed();

    // The JWTs are not in `pxfs status` (nor its JSON).
    let status = pxfs_with(&devnet, &hosted_config, &["status", "--json"]);
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    let status_plain = pxfs_with(&devnet, &hosted_config, &["status"]);
    let shown = format!("{shown}{}", String::from_utf8_lossy(&status_plain.stdout));
    assert!(
        status.status.success() && status_plain.status.success(),
        "pxfs status: {shown}"
    );
    assert!(
        shown.contains("mount "),
        "the status shows the mount: {shown}"
    );

    // A fresh read cache: every byte comes back through the gateway (with fresh JWTs).
    mount.unmount();
    std::fs::remove_dir_all(cache.join("chunks")).unwrap();
    let mount = mount.remount(&["--token", "1"]);
    for rel in &files {
        assert!(
            support::files_equal(&src.path().join(rel), &mount.path().join(rel)),
            "{rel} reads back different"
        );
    }

    let issuer = &gateway.issuer;
    eprintln!(
        "copy took {copy_took:?}; logins {}, expired-JWT refusals {}, other refusals {}, \
         passed {}, not passed {:?}",
        issuer.logins(),
        issuer.expired(),
        issuer.refused(),
        issuer.passed().len(),
        issuer.not_passed()
    );
    assert!(copy_took > Duration::from_secs(12), "{copy_took:?}");
    assert!(
        issuer.logins() >= 3,
        "renewed before expiry: {}",
        issuer.logins()
    );
    assert!(issuer.expired() >= 1, "renewed after a 401");
    assert_eq!(issuer.refused(), 0, "never a JWT of another sNFT or none");
    assert!(
        issuer
            .passed()
            .iter()
            .all(|(path, jwt, _)| *path == 1 && *jwt == 1)
    );
    assert!(issuer.passed().iter().any(|(_, _, call)| call == "cat"));
    // No `pin/*` on the gateway: asked once per mount, not once per old version.
    let unpins = issuer
        .not_passed()
        .iter()
        .filter(|c| c.starts_with("pin/"))
        .count();
    assert!(unpins <= 2, "{unpins} unpin requests");

    drop(mount);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("hosted node login"), "debug log captured");
    for jwt in issuer.issued_jwts() {
        let payload = jwt.split('.').nth(1).unwrap();
        assert!(!logged.contains(payload), "a JWT is in the mount log");
        assert!(!shown.contains(payload), "a JWT is in pxfs status: {shown}");
    }
}

/// One hosted mount of two sNFTs (no `--token`): each sNFT's uploads, reads and usage
/// documents go to its own endpoint with its own JWT.
#[test]
fn a_hosted_mount_of_two_snfts_uses_each_ones_endpoint_and_jwt() {
    let devnet = TestDevnet::start(&[]);
    let wallet = devnet.info["wallet"].as_str().unwrap().to_string();
    let (contract, config, _log) = px_sol_with_token(&devnet);
    // A second sNFT: another account's free package, transferred to the wallet.
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
    send_to(
        &devnet,
        other,
        &contract,
        transferFromCall {
            from: other.parse().unwrap(),
            to: wallet.parse().unwrap(),
            tokenId: U256::from(2),
        }
        .abi_encode(),
    );
    let mut cfg: toml::Value = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let gateway = hosted::HostedGateway::start(
        &devnet.node_url(),
        cfg["chain"]["chain_id"].as_integer().unwrap() as u64,
        &contract,
        vec![1, 2],
        Duration::from_secs(3600),
        Duration::ZERO,
    );
    gateway.configure(&mut cfg);
    let hosted_config = devnet.dir.path().join("hosted.toml");
    std::fs::write(&hosted_config, toml::to_string(&cfg).unwrap()).unwrap();
    let cache = std::path::PathBuf::from(cfg["cache"]["dir"].as_str().unwrap());

    let key = [("PXFS_PRIVATE_KEY", support::DEV_WALLET_KEY)];
    let mut mount = TestMount::mount_with_env(&hosted_config, &[], &key);
    assert_eq!(listed(mount.path()), vec!["1", "2"]);
    // Small files of both sNFTs at once (the uploader batches small files), then a large
    // one each (uploaded while written); the gateway checks whose content each upload has.
    let mut written = Vec::new();
    for i in 0..20u64 {
        let t = 1 + i % 2;
        let name = format!("small-{i}");
        let data = hosted::owner_marked(t, 3_000);
        std::fs::write(mount.token(t).join(&name), &data).unwrap();
        written.push((t, name, data));
    }
    for t in [1u64, 2] {
        let data = hosted::owner_marked(t, 2 << 20);
        std::fs::write(mount.token(t).join("large"), &data).unwrap();
        written.push((t, "large".to_string(), data));
    }
    for t in [1u64, 2] {
        std::fs::File::open(mount.token(t))
            .unwrap()
            .sync_all()
            .unwrap();
    }
    mount.unmount();
    std::fs::remove_dir_all(cache.join("chunks")).unwrap();
    let mount = mount.remount(&[]);
    for (t, name, data) in &written {
        assert_eq!(
            &std::fs::read(mount.token(*t).join(name)).unwrap(),
            data,
            "{t}/{name}"
        );
    }
    let issuer = &gateway.issuer;
    let passed = issuer.passed();
    assert_eq!(
        issuer.refused(),
        0,
        "a JWT was sent to another sNFT's endpoint"
    );
    assert_eq!(
        issuer.misrouted.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "an sNFT's content was uploaded through another sNFT's endpoint"
    );
    assert!(
        passed.iter().all(|(path, jwt, _)| path == jwt),
        "each request carries its own sNFT's JWT: {passed:?}"
    );
    for t in [1u64, 2] {
        for call in ["add", "cat"] {
            assert!(
                passed.iter().any(|(p, _, c)| *p == t && c == call),
                "no {call} for sNFT {t}: {passed:?}"
            );
        }
    }
}
