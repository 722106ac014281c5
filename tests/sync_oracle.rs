//! The PX sync process end to end: `pxfs sync` sends the Chainlink request, `pxfs oracle`
//! (a child of the devnet, like a Chainlink node's job) measures the tree under the token's
//! BTNS name and fulfills through the Operator.

mod support;

use std::process::Command;
use std::time::Duration;

use support::{PXFS, TestDevnet, TestMount, synced_events, wait_until};

fn status_usage(devnet: &TestDevnet) -> (u64, bool) {
    let out = devnet.pxfs(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &v["tokens"][0];
    (
        t["usage"].as_u64().unwrap(),
        t["overdue"].as_bool().unwrap(),
    )
}

fn sync_wait(devnet: &TestDevnet) -> String {
    let token = devnet.token().to_string();
    let out = devnet.pxfs(&["sync", &token, "--wait"]);
    assert!(
        out.status.success(),
        "pxfs sync --wait failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn resolve_doc(devnet: &TestDevnet) -> pxfs::usage::UsageDoc {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    rt.block_on(pxfs::usage::resolve(&client, &btns)).unwrap().1
}

#[test]
fn sync_after_a_copy_puts_the_trees_bytes_on_chain_and_synced_carries_the_published_root() {
    let devnet = TestDevnet::start(&[]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let token = mount.token(devnet.token());
    std::fs::write(token.join("a"), vec![1u8; 123_456]).unwrap();
    std::fs::create_dir(token.join("d")).unwrap();
    std::fs::write(token.join("d/b"), vec![2u8; 1000]).unwrap();
    // Special files are in the manifests too, and hold no bytes.
    support::sh(&format!(
        "mkfifo {d}/pipe && mknod {d}/d/null c 1 3",
        d = token.display()
    ));

    let printed = sync_wait(&devnet);
    let (usage, overdue) = status_usage(&devnet);
    assert_eq!(
        usage, 124_456,
        "on-chain usage is the bytes in the tree ({printed})"
    );
    assert!(!overdue);
    let doc = resolve_doc(&devnet);
    let events = synced_events(&devnet);
    let last = events.last().expect("a Synced event");
    assert_eq!(last, &(devnet.token(), 124_456, doc.root.clone()));
    drop(mount);
}

#[test]
fn a_forged_usage_document_claiming_less_is_corrected_by_the_oracle() {
    let devnet = TestDevnet::start(&[]);
    let mut mount = TestMount::mount(&devnet.config(), &[]);
    std::fs::write(mount.token(devnet.token()).join("real"), vec![3u8; 50_000]).unwrap();
    mount.unmount();

    // Publish a document that points at the real tree but claims 1 byte.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    let mut doc = resolve_doc(&devnet);
    assert_eq!(doc.usage, 50_000);
    doc.usage = 1;
    doc.seq += 1;
    let key = rt
        .block_on(pxfs::usage::key_name_for(&client, &btns))
        .unwrap()
        .expect("the devnet node holds the token's key");
    rt.block_on(pxfs::usage::publish(&client, &key, &doc))
        .unwrap();
    assert_eq!(resolve_doc(&devnet).usage, 1);

    sync_wait(&devnet);
    assert_eq!(
        status_usage(&devnet).0,
        50_000,
        "the oracle measured the tree, not the claim"
    );
}

#[test]
fn overdue_blocks_writes_until_pxfs_sync_lands_and_reads_and_deletes_work_throughout() {
    let devnet = TestDevnet::start(&["--sync-interval", "3600"]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let token = mount.token(devnet.token());
    std::fs::write(token.join("before"), b"before the deadline").unwrap();
    std::fs::write(token.join("gone"), b"x").unwrap();

    support::advance_chain_time(&devnet.rpc_url(), 3700);
    wait_until(
        "EACCES on create while overdue",
        Duration::from_secs(20),
        || {
            std::fs::write(token.join("w"), b"x")
                .err()
                .and_then(|e| e.raw_os_error())
                == Some(libc::EACCES)
        },
    );
    assert!(status_usage(&devnet).1, "status says overdue");
    assert_eq!(
        std::fs::read(token.join("before")).unwrap(),
        b"before the deadline"
    );
    std::fs::remove_file(token.join("gone")).unwrap();

    sync_wait(&devnet);
    assert!(!status_usage(&devnet).1, "no longer overdue after the sync");
    wait_until(
        "writes to work again after the sync",
        Duration::from_secs(20),
        || std::fs::write(token.join("after"), b"after the sync").is_ok(),
    );
    assert_eq!(
        std::fs::read(token.join("after")).unwrap(),
        b"after the sync"
    );
}

fn spawn_oracle(devnet: &TestDevnet, name: &str) -> std::process::Child {
    Command::new(PXFS)
        .args(["oracle", "--config"])
        .arg(devnet.config())
        .env("PXFS_ORACLE_KEY", pxfs::devnet::DEV_ORACLE_KEY)
        .env("PXFS_LOG", "info")
        .stdout(std::fs::File::create(devnet.dir.path().join(format!("{name}.out"))).unwrap())
        .stderr(std::fs::File::create(devnet.dir.path().join(format!("{name}.err"))).unwrap())
        .spawn()
        .unwrap()
}

#[test]
fn an_oracle_restarted_after_answering_does_not_answer_the_same_request_twice() {
    let devnet = TestDevnet::start(&["--no-oracle"]);
    let state = devnet.dir.path().join("oracle-state.json");
    let mut first = spawn_oracle(&devnet, "oracle1");
    sync_wait(&devnet);
    assert_eq!(synced_events(&devnet).len(), 1);

    // The oracle crashes after answering but before recording that it did.
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_file(&state).unwrap();

    let mut second = spawn_oracle(&devnet, "oracle2");
    wait_until(
        "the restarted oracle to catch up",
        Duration::from_secs(30),
        || state.exists(),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        synced_events(&devnet).len(),
        1,
        "the request was answered exactly once"
    );

    // A request sent while no oracle runs is answered once the oracle is back.
    second.kill().unwrap();
    second.wait().unwrap();
    let token = devnet.token().to_string();
    let out = devnet.pxfs(&["sync", &token]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut third = spawn_oracle(&devnet, "oracle3");
    wait_until(
        "the pending request to be answered",
        Duration::from_secs(30),
        || synced_events(&devnet).len() == 2,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(synced_events(&devnet).len(), 2);
    third.kill().unwrap();
    third.wait().unwrap();
}
