//! The PX sync process end to end: `pxfs sync` sends the Chainlink request, `pxfs oracle`
//! (a child of the devnet, like a Chainlink node's job) measures the tree under the token's
//! BTNS name and fulfills through the Operator.

#[path = "support/proxy.rs"]
mod proxy;
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

fn resolve_doc(devnet: &TestDevnet) -> pxfs::format::usage::UsageDoc {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    match rt.block_on(pxfs::btns::resolve(&client, &btns)).unwrap().1 {
        pxfs::btns::AnyUsageDoc::V2(doc) => doc,
        other => panic!("pxfs publishes pxfs/usage/2, found {}", other.schema()),
    }
}

#[test]
fn sync_after_a_copy_puts_the_trees_bytes_on_chain_and_synced_carries_the_published_root() {
    let devnet = TestDevnet::start(&[]);
    let mount = TestMount::mount(&devnet.config(), &[]);
    let token = mount.token(devnet.token());
    std::fs::write(token.join("a"), vec![1u8; 123_456]).unwrap();
    std::fs::create_dir(token.join("d")).unwrap();
    std::fs::write(token.join("d/b"), vec![2u8; 1000]).unwrap();
    // Equal contents and a hard link: stored once, counted once by both.
    std::fs::write(token.join("d/copy_of_b"), vec![2u8; 1000]).unwrap();
    std::fs::hard_link(token.join("a"), token.join("d/link_to_a")).unwrap();
    // Special files are in the manifests too, and hold no bytes.
    support::sh(&format!(
        "mkfifo {d}/pipe && mknod {d}/d/null c 1 3",
        d = token.display()
    ));

    // Long names and xattr values are stored in the manifests: they count too.
    let long = "n".repeat(255);
    std::fs::write(token.join(&long), b"x").unwrap();
    set_xattr(&token.join("a"), "user.big", &vec![b'v'; 16 * 1024]);

    let printed = sync_wait(&devnet);
    let (usage, overdue) = status_usage(&devnet);
    let content = 124_456 + 1;
    // The xattr is stored once, in the link group's record (base64: 4/3 of its bytes).
    assert!(
        usage >= content + 255 + 16 * 1024 * 4 / 3,
        "on-chain usage {usage} counts the content, the long name and the xattr value ({printed})"
    );
    assert_eq!(
        usage,
        xattr_u64(&token, "user.pxfs.usage"),
        "the mount's figure and the oracle's agree to the byte"
    );
    assert!(!overdue);
    let doc = resolve_doc(&devnet);
    assert_eq!(doc.usage, usage, "the published claim is the same figure");
    let events = synced_events(&devnet);
    let last = events.last().expect("a Synced event");
    assert_eq!(last, &(devnet.token(), usage, doc.root.clone()));
    drop(mount);
}

fn set_xattr(path: &std::path::Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: NUL-terminated strings and a valid buffer of value.len() bytes.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
}

fn xattr_u64(path: &std::path::Path, name: &str) -> u64 {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 64];
    // SAFETY: NUL-terminated strings and a valid buffer of buf.len() bytes.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        len >= 0,
        "getxattr {name}: {}",
        std::io::Error::last_os_error()
    );
    buf.truncate(len as usize);
    String::from_utf8(buf).unwrap().parse().unwrap()
}

fn client(devnet: &TestDevnet) -> pxfs::storage::NodeClient {
    pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0")
}

/// Adds `data` to the devnet node; its CID.
fn add(rt: &tokio::runtime::Runtime, devnet: &TestDevnet, data: Vec<u8>) -> String {
    rt.block_on(client(devnet).add_bytes("object", data.into()))
        .unwrap()
        .hash
}

/// A `pxfs/dir/1` manifest written by hand, as a dishonest owner would: entries are
/// (name, kind, cid, declared size), in name order.
fn manifest(entries: &[(&str, &str, &str, u64)]) -> Vec<u8> {
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .map(|(name, kind, cid, size)| {
            serde_json::json!({"name": name, "kind": kind, "cid": cid, "size": size,
                "mode": 0o644, "uid": 0, "gid": 0, "mtime_ns": 0, "ctime_ns": 0})
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({"schema": "pxfs/dir/1", "entries": entries})).unwrap()
}

/// Publishes a usage document for the devnet's token whose root is `root`, claiming 0.
fn publish_root(rt: &tokio::runtime::Runtime, devnet: &TestDevnet, root: &str) {
    let client = client(devnet);
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    let mut doc = resolve_doc(devnet);
    doc.root = root.to_string();
    doc.usage = 0;
    doc.seq += 1;
    publish_as_key_holder(rt, &client, &btns, &doc);
}

#[test]
fn declared_file_sizes_are_not_trusted_the_oracle_records_the_measured_content() {
    let devnet = TestDevnet::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 20 MiB declared as 0 (a dag-pb DAG of raw leaves), 1000 bytes declared as 1 TB.
    let big = add(
        &rt,
        &devnet,
        (0..20u32 << 20).map(|i| (i % 251) as u8).collect(),
    );
    let small = add(&rt, &devnet, vec![9u8; 1000]);
    let root = manifest(&[("big", "file", &big, 0), ("small", "file", &small, 1 << 40)]);
    let root_len = root.len() as u64;
    let root = add(&rt, &devnet, root);
    publish_root(&rt, &devnet, &root);

    let printed = sync_wait(&devnet);
    assert_eq!(
        status_usage(&devnet).0,
        (20 << 20) + 1000 + root_len,
        "on-chain usage is the measured content plus the manifest ({printed})"
    );
}

/// Four levels of ten entries each over one 1 MiB file (10,000 references to it), added to
/// the devnet's node: (root manifest CID, bytes of the four manifests).
fn ten_thousand_references(rt: &tokio::runtime::Runtime, devnet: &TestDevnet) -> (String, u64) {
    let child = add(rt, devnet, vec![5u8; 1 << 20]);
    let names: Vec<String> = (0..10).map(|i| format!("e{i}")).collect();
    // Four levels of ten entries each: 10,000 references to the same 1 MiB file.
    let mut cid = child;
    let mut kind = "file";
    let mut size = 1u64 << 20;
    let mut manifests = 0u64;
    for _ in 0..4 {
        let m = manifest(
            &names
                .iter()
                .map(|n| (n.as_str(), kind, cid.as_str(), size))
                .collect::<Vec<_>>(),
        );
        manifests += m.len() as u64;
        size = m.len() as u64;
        cid = add(rt, devnet, m);
        kind = "dir";
    }
    (cid, manifests)
}

#[test]
fn a_child_referenced_ten_thousand_times_counts_once_and_is_answered_within_the_bound() {
    let devnet = TestDevnet::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (cid, manifests) = ten_thousand_references(&rt, &devnet);
    publish_root(&rt, &devnet, &cid);

    let started = std::time::Instant::now();
    let printed = sync_wait(&devnet);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered in {:?}",
        started.elapsed()
    );
    assert_eq!(
        status_usage(&devnet).0,
        (1 << 20) + manifests,
        "the child and each manifest count once ({printed})"
    );
}

#[test]
fn a_second_tokens_sync_is_answered_while_the_first_tokens_tree_is_still_measured() {
    let devnet = TestDevnet::start(&["--no-oracle"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (root_a, manifests) = ten_thousand_references(&rt, &devnet);
    publish_root(&rt, &devnet, &root_a);

    // Token B: another wallet's free sNFT, its key generated on the node, an empty tree.
    let text = std::fs::read_to_string(devnet.config()).unwrap();
    let mut cfg: toml::Value = toml::from_str(&text).unwrap();
    cfg["chain"]["wallet"] = toml::Value::String(pxfs::chain::anvil::DEV_ADDRESSES[2].into());
    let config_b = devnet.dir.path().join("wallet-b.toml");
    std::fs::write(&config_b, toml::to_string(&cfg).unwrap()).unwrap();
    let pxfs_b = |args: &[&str]| {
        Command::new(PXFS)
            .args(args)
            .arg("--config")
            .arg(&config_b)
            .env("PXFS_PRIVATE_KEY", pxfs::chain::anvil::DEV_KEYS[2])
            .output()
            .unwrap()
    };
    let out = pxfs_b(&["mint", "--package", "0"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token_b = devnet.token() + 1;
    let btns_b = {
        let cfg = pxfs::config::Config::load(Some(&devnet.config())).unwrap();
        let chain = rt
            .block_on(pxfs::chain::Chain::connect(&cfg.chain))
            .unwrap();
        rt.block_on(chain.token(token_b))
            .unwrap()
            .btns_key
            .expect("B has a key")
    };
    let empty = pxfs::format::v1::manifest::Manifest::new(Vec::new()).to_json();
    let empty_len = empty.len() as u64;
    let mut doc = resolve_doc(&devnet);
    doc.token_id = token_b;
    doc.root = add(&rt, &devnet, empty);
    (doc.usage, doc.files, doc.seq, doc.prev) = (empty_len, Some(0), 1, None);
    // B's tree is a plaintext one (A's, like every devnet sNFT's, is encrypted).
    doc.encryption = pxfs::format::usage::Encryption::None;
    let key = rt
        .block_on(pxfs::btns::key_name_for(&client(&devnet), &btns_b))
        .unwrap()
        .expect("the node generated B's key");
    rt.block_on(pxfs::btns::publish_v2(&client(&devnet), &key, &doc, None))
        .unwrap();

    // The oracle's node answers for A's root manifest only after 10 s.
    let slow = Duration::from_secs(10);
    let proxy = proxy::Proxy::start_delaying(
        &devnet.node_url(),
        Some(proxy::Delay {
            needle: root_a.clone().into_bytes(),
            delay: slow,
        }),
    );
    let text = std::fs::read_to_string(devnet.config()).unwrap();
    let mut cfg: toml::Value = toml::from_str(&text).unwrap();
    cfg["node"]["api_url"] = toml::Value::String(proxy.url());
    let oracle_cfg = devnet.dir.path().join("oracle-slow-node.toml");
    std::fs::write(&oracle_cfg, toml::to_string(&cfg).unwrap()).unwrap();
    let _oracle = Killed(
        Command::new(PXFS)
            .args(["oracle", "--config"])
            .arg(&oracle_cfg)
            .env("PXFS_ORACLE_KEY", pxfs::devnet::DEV_ORACLE_KEY)
            .env("PXFS_LOG", "info")
            .stdout(std::fs::File::create(devnet.dir.path().join("oracle.out")).unwrap())
            .stderr(std::fs::File::create(devnet.dir.path().join("oracle.err")).unwrap())
            .spawn()
            .unwrap(),
    );

    let token_a = devnet.token().to_string();
    let out = devnet.pxfs(&["sync", &token_a]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sent_a = std::time::Instant::now();
    let out = pxfs_b(&["sync", &token_b.to_string(), "--wait", "--timeout", "60"]);
    assert!(
        out.status.success(),
        "B's sync: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let b_answered = sent_a.elapsed();
    let events = synced_events(&devnet);
    assert_eq!(
        events,
        vec![(token_b, empty_len, doc.root.clone())],
        "B was answered ({b_answered:?} after A was sent) while A's tree was still measured"
    );
    assert!(b_answered < slow, "B waited {b_answered:?}");

    wait_until("A's answer", Duration::from_secs(60), || {
        synced_events(&devnet).len() == 2
    });
    let events = synced_events(&devnet);
    assert_eq!(events[1], (devnet.token(), (1 << 20) + manifests, root_a));
}

/// `POST`s `body` to the adapter at `url`: (HTTP status, JSON answer).
fn post_json(url: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-H", "content-type: application/json"])
        .args(["-w", "\n%{http_code}", "-d", &body.to_string(), url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, status) = text.rsplit_once('\n').expect("curl printed the status");
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(json).unwrap(),
    )
}

#[test]
fn the_chainlink_adapter_answers_the_measured_usage_or_an_error() {
    let devnet = TestDevnet::start(&["--no-oracle"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let content = add(&rt, &devnet, vec![4u8; 300_000]);
    let root = manifest(&[("f", "file", &content, 0)]);
    let root_len = root.len() as u64;
    let root = add(&rt, &devnet, root);
    publish_root(&rt, &devnet, &root);
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let _adapter = Killed(
        Command::new(PXFS)
            .args(["oracle", "--adapter", &addr, "--config"])
            .arg(devnet.config())
            .stdout(std::fs::File::create(devnet.dir.path().join("adapter.out")).unwrap())
            .stderr(std::fs::File::create(devnet.dir.path().join("adapter.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the adapter to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let url = format!("http://{addr}/");

    let request = |btns: &str, token: u64| serde_json::json!({"id": "run-1", "data": {"btnsKey": btns, "tokenId": token}});
    let (status, answer) = post_json(&url, &request(&btns, devnet.token()));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["jobRunID"], "run-1");
    assert_eq!(answer["data"]["usage"], 300_000 + root_len, "{answer}");
    assert_eq!(answer["result"], answer["data"]["usage"]);
    assert_eq!(answer["data"]["root"], root.as_str());
    assert_eq!(answer["data"]["claimed"], 0);
    assert_eq!(answer["data"]["size_mismatches"], 1);

    // Not this token's document, or nothing published: the job run fails, nothing is guessed.
    let (status, answer) = post_json(&url, &request(&btns, devnet.token() + 1));
    assert_eq!(
        (status, &answer["status"]),
        (500, &"errored".into()),
        "{answer}"
    );
    let (status, answer) = post_json(&url, &request("k51-nothing-published", 1));
    assert_eq!(
        (status, &answer["status"]),
        (500, &"errored".into()),
        "{answer}"
    );
    assert!(
        answer["error"]
            .as_str()
            .unwrap()
            .contains("k51-nothing-published")
    );
}

#[test]
fn content_the_node_does_not_have_is_not_counted_as_zero_and_sync_says_why() {
    let devnet = TestDevnet::start(&["--no-oracle"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // sha2-256 of bytes never added anywhere.
    let missing = "bafkreige7axxmnojvdy2shwz474s3er3l5mi4yvntab7brubn2gtavc3mm";
    let root = add(&rt, &devnet, manifest(&[("gone", "file", missing, 0)]));
    publish_root(&rt, &devnet, &root);
    let _oracle = Killed(spawn_oracle(&devnet, "oracle"));
    let token = devnet.token().to_string();

    // `pxfs sync` measures first and refuses, naming the missing object.
    let out = devnet.pxfs(&["sync", &token, "--wait", "--timeout", "20"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sync refused");
    assert!(
        stderr.contains(missing) && stderr.contains("cannot provide"),
        "sync says why: {stderr}"
    );

    // Sent anyway, the oracle leaves it unanswered and logs why.
    let out = devnet.pxfs(&["sync", &token, "--no-check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = devnet.dir.path().join("oracle.err");
    let out_log = devnet.dir.path().join("oracle.out");
    wait_until("the oracle to log why", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default()
            + &std::fs::read_to_string(&out_log).unwrap_or_default();
        text.contains("usage not measured") && text.contains(missing)
    });
    assert!(
        synced_events(&devnet).is_empty(),
        "no usage was recorded for a tree that could not be measured"
    );
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
    let honest = doc.usage;
    assert!(
        honest > 50_000,
        "the claim counts the file and the manifest"
    );
    doc.usage = 1;
    doc.seq += 1;
    publish_as_key_holder(&rt, &client, &btns, &doc);
    assert_eq!(resolve_doc(&devnet).usage, 1);

    sync_wait(&devnet);
    assert_eq!(
        status_usage(&devnet).0,
        honest,
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

/// A child process killed when the test ends, failed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// Checks that `dir` holds the fixture tree `expect` (tests/fixtures/v1/tree.json).
fn assert_fixture_tree(dir: &std::path::Path, expect: &serde_json::Value) {
    use base64::Engine;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
    let b64 = base64::engine::general_purpose::STANDARD;
    for (path, content) in expect["files"].as_object().unwrap() {
        let want = b64.decode(content.as_str().unwrap()).unwrap();
        assert_eq!(std::fs::read(dir.join(path)).unwrap(), want, "{path}");
        let mtime = std::fs::metadata(dir.join(path)).unwrap().mtime();
        assert_eq!(mtime, expect["mtime_s"].as_i64().unwrap(), "{path}");
    }
    for d in expect["dirs"].as_array().unwrap() {
        assert!(dir.join(d.as_str().unwrap()).is_dir(), "{d}");
    }
    for (link, target) in expect["symlinks"].as_object().unwrap() {
        let got = std::fs::read_link(dir.join(link)).unwrap();
        assert_eq!(got.to_str(), target.as_str(), "{link}");
    }
    for f in expect["fifos"].as_array().unwrap() {
        let meta = std::fs::symlink_metadata(dir.join(f.as_str().unwrap())).unwrap();
        assert!(meta.file_type().is_fifo(), "{f}");
    }
    for (path, mode) in expect["modes"].as_object().unwrap() {
        let meta = std::fs::metadata(dir.join(path)).unwrap();
        assert_eq!(
            u64::from(meta.permissions().mode() & 0o7777),
            mode.as_u64().unwrap(),
            "{path}"
        );
    }
    for (path, xattrs) in expect["xattrs"].as_object().unwrap() {
        for (name, value) in xattrs.as_object().unwrap() {
            assert_eq!(
                support::xattr(&dir.join(path), name),
                value.as_str().unwrap()
            );
        }
    }
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["docs", "empty", "link", "photo.bin", "pipe"]);
}

#[test]
fn a_v1_tree_mounts_reads_identically_and_its_next_commit_rewrites_it_as_v2() {
    use base64::Engine;
    let devnet = TestDevnet::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = client(&devnet);
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("fixtures/v1/tree.json")).unwrap();
    for o in fixture["objects"].as_array().unwrap() {
        let data = base64::engine::general_purpose::STANDARD
            .decode(o["base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(add(&rt, &devnet, data), o["cid"].as_str().unwrap());
    }
    // Publish it as pxfs published v1 trees.
    let root = fixture["root"].as_str().unwrap().to_string();
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    let (current_cid, current) = rt.block_on(pxfs::btns::resolve(&client, &btns)).unwrap();
    let doc = pxfs::btns::UsageDoc {
        schema: pxfs::btns::SCHEMA.into(),
        chain_id: devnet.info["chain_id"].as_u64().unwrap(),
        contract: devnet.info["contract"].as_str().unwrap().into(),
        token_id: devnet.token(),
        quota: current.quota(),
        usage: fixture["claimed_usage"].as_u64().unwrap(),
        files: fixture["files"].as_u64().unwrap(),
        root: root.clone(),
        last_upload: None,
        seq: current.seq() + 1,
        updated_at: 0,
        prev: Some(current_cid),
    };
    let key = rt
        .block_on(pxfs::btns::key_name_for(&client, &btns))
        .unwrap()
        .unwrap();
    let replaces = rt.block_on(client.name_resolve(&btns)).ok();
    rt.block_on(pxfs::btns::publish(
        &client,
        &key,
        &doc,
        replaces.as_deref(),
    ))
    .unwrap();
    let limits = pxfs::oracle::Limits::default();
    let v1 = rt
        .block_on(pxfs::oracle::measure_root(&client, &root, &limits))
        .unwrap();
    assert_eq!(v1.usage - v1.manifest_bytes, 3034, "the v1 tree's contents");

    // Mounted from a fresh cache, it reads as it was written; reading changes nothing.
    let cache = tempfile::tempdir().unwrap();
    let mut mount = TestMount::mount(&devnet.config_with_cache(cache.path()), &[]);
    let dir = mount.token(devnet.token());
    assert_fixture_tree(&dir, &fixture["expect"]);
    mount.unmount();
    let after_read = rt.block_on(pxfs::btns::resolve(&client, &btns)).unwrap().1;
    assert_eq!(
        after_read.schema(),
        pxfs::btns::SCHEMA,
        "reading is no change"
    );

    // One change (made and undone) commits the whole tree as v2.
    let mut mount = TestMount::mount(&devnet.config_with_cache(cache.path()), &[]);
    let dir = mount.token(devnet.token());
    std::fs::write(dir.join("scratch"), b"x").unwrap();
    std::fs::remove_file(dir.join("scratch")).unwrap();
    mount.unmount();
    let v2_doc = resolve_doc(&devnet);
    assert_eq!(v2_doc.seq, doc.seq + 1);
    let mut listed: Vec<String> =
        support::node_tree(&rt, &client, &v2_doc.root, &pxfs::format::TreeCrypto::Plain)
            .into_iter()
            .map(|(path, ..)| path)
            .collect();
    listed.sort();
    assert_eq!(
        listed,
        [
            "/docs",
            "/docs/deep",
            "/docs/deep/deep.txt",
            "/docs/readme.txt",
            "/empty",
            "/link",
            "/photo.bin",
            "/pipe"
        ],
        "every entry is in the v2 tree, subdirectories included"
    );
    // The oracle measures both forms by one rule: the same contents (same CIDs), each
    // form's own metadata objects; the mount's claim is the measured figure.
    let v2 = rt
        .block_on(pxfs::oracle::measure_root(&client, &v2_doc.root, &limits))
        .unwrap();
    assert_eq!(v2.usage - v2.manifest_bytes, v1.usage - v1.manifest_bytes);
    assert_eq!(v2_doc.usage, v2.usage);

    // Another machine reads the v2 form identically.
    let other = tempfile::tempdir().unwrap();
    let mount = TestMount::mount(&devnet.config_with_cache(other.path()), &[]);
    assert_fixture_tree(&mount.token(devnet.token()), &fixture["expect"]);
}

/// Publishes a document for the devnet's token whose root is `root` (claiming 0), on top of
/// `prev` (`None`: a document that names no parent); returns its CID.
fn publish_on(
    rt: &tokio::runtime::Runtime,
    devnet: &TestDevnet,
    root: &str,
    prev: Option<String>,
) -> String {
    let client = client(devnet);
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    let mut doc = resolve_doc(devnet);
    doc.root = root.to_string();
    doc.usage = 0;
    doc.seq += 1;
    doc.prev = prev;
    doc.merged = None;
    publish_as_key_holder(rt, &client, &btns, &doc)
}

/// Publishes `doc` under `btns` as the BTNS key holder does, in place of what the name holds
/// (the devnet's node checks it, docs/FORMAT.md §9.3); returns the document's CID.
fn publish_as_key_holder(
    rt: &tokio::runtime::Runtime,
    client: &pxfs::storage::NodeClient,
    btns: &str,
    doc: &pxfs::format::usage::UsageDoc,
) -> String {
    let key = rt
        .block_on(pxfs::btns::key_name_for(client, btns))
        .unwrap()
        .expect("the devnet node holds the token's key");
    let replaces = rt.block_on(client.name_resolve(btns)).ok();
    rt.block_on(pxfs::btns::publish_v2(
        client,
        &key,
        doc,
        replaces.as_deref(),
    ))
    .unwrap()
    .cid
}

fn current_doc_cid(rt: &tokio::runtime::Runtime, devnet: &TestDevnet) -> String {
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();
    rt.block_on(pxfs::btns::resolve(&client(devnet), &btns))
        .unwrap()
        .0
}

#[test]
fn hiding_the_tree_behind_an_empty_one_at_sync_time_still_records_the_big_trees_usage() {
    let devnet = TestDevnet::start(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The chain records a synced root first.
    sync_wait(&devnet);
    let synced_doc = current_doc_cid(&rt, &devnet);

    let content = add(&rt, &devnet, vec![6u8; 3 << 20]);
    let big = manifest(&[("big", "file", &content, 3 << 20)]);
    let big_usage = (3 << 20) + big.len() as u64;
    let big = add(&rt, &devnet, big);
    let empty = pxfs::format::v1::manifest::Manifest::new(Vec::new()).to_json();
    let empty_usage = empty.len() as u64;
    let empty = add(&rt, &devnet, empty);

    // The trick: the real tree, then an empty one on top of it, then sync.
    let real = publish_on(&rt, &devnet, &big, Some(synced_doc));
    let hiding = publish_on(&rt, &devnet, &empty, Some(real));
    let printed = sync_wait(&devnet);
    let last = synced_events(&devnet).last().cloned().unwrap();
    assert_eq!(
        last,
        (devnet.token(), big_usage, empty.clone()),
        "the big tree published since the last sync counts ({printed})"
    );

    // Republished on top of the synced (empty) one: measured again at the next sync.
    let again = publish_on(&rt, &devnet, &big, Some(hiding));
    sync_wait(&devnet);
    assert_eq!(status_usage(&devnet).0, big_usage);

    // A document that names no parent does not chain back to the synced root: `pxfs sync`
    // says so and sends nothing; sent anyway, the oracle leaves it unanswered.
    publish_on(&rt, &devnet, &empty, None);
    let token = devnet.token().to_string();
    let out = devnet.pxfs(&["sync", &token, "--wait", "--timeout", "20"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "sync refused");
    assert!(stderr.contains("does not chain back"), "{stderr}");
    let synced = synced_events(&devnet).len();
    let out = devnet.pxfs(&["sync", &token, "--no-check"]);
    assert!(out.status.success());
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(synced_events(&devnet).len(), synced, "not answered");
    assert_eq!(
        status_usage(&devnet).0,
        big_usage,
        "the chain keeps its figure"
    );

    // The owner deletes for real, on top of the synced document: usage goes down.
    publish_on(&rt, &devnet, &empty, Some(again));
    sync_wait(&devnet);
    assert_eq!(status_usage(&devnet).0, empty_usage);
}

#[test]
fn a_hundred_concurrent_requests_are_measured_a_few_at_a_time_and_all_answered() {
    let devnet = TestDevnet::start(&["--no-oracle"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let files: Vec<(String, String, u64)> = (0..20u32)
        .map(|i| {
            let data = format!("file {i}").into_bytes();
            let len = data.len() as u64;
            (format!("f{i:02}"), add(&rt, &devnet, data), len)
        })
        .collect();
    let root = manifest(
        &files
            .iter()
            .map(|(n, c, s)| (n.as_str(), "file", c.as_str(), *s))
            .collect::<Vec<_>>(),
    );
    let expected = root.len() as u64 + files.iter().map(|f| f.2).sum::<u64>();
    let root = add(&rt, &devnet, root);
    publish_root(&rt, &devnet, &root);
    let btns = devnet.info["btns_names"][0].as_str().unwrap().to_string();

    // Each request takes a while: the node is 40 ms away.
    let proxy = proxy::Proxy::start_delaying(
        &devnet.node_url(),
        Some(proxy::Delay {
            needle: b"/api/v0/".to_vec(),
            delay: Duration::from_millis(40),
        }),
    );
    let text = std::fs::read_to_string(devnet.config()).unwrap();
    let mut cfg: toml::Value = toml::from_str(&text).unwrap();
    cfg["node"]["api_url"] = toml::Value::String(proxy.url());
    let oracle = cfg
        .as_table_mut()
        .unwrap()
        .entry("oracle")
        .or_insert(toml::Value::Table(Default::default()));
    oracle
        .as_table_mut()
        .unwrap()
        .insert("max_requests".into(), toml::Value::Integer(3));
    let adapter_cfg = devnet.dir.path().join("adapter.toml");
    std::fs::write(&adapter_cfg, toml::to_string(&cfg).unwrap()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let adapter = Killed(
        Command::new(PXFS)
            .args(["oracle", "--adapter", &addr, "--config"])
            .arg(&adapter_cfg)
            .stdout(std::fs::File::create(devnet.dir.path().join("adapter.out")).unwrap())
            .stderr(std::fs::File::create(devnet.dir.path().join("adapter.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    wait_until("the adapter to listen", Duration::from_secs(30), || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    let url = format!("http://{addr}/");
    let status = || {
        let out = Command::new("curl")
            .args(["-s", &format!("{url}status")])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };

    let requests: Vec<_> = (0..100)
        .map(|i| {
            let url = url.clone();
            let body = serde_json::json!({"id": format!("run-{i}"),
                "data": {"btnsKey": btns, "tokenId": devnet.token()}});
            std::thread::spawn(move || post_json(&url, &body))
        })
        .collect();
    let mut most_waiting = 0;
    while requests.iter().any(|r| !r.is_finished()) {
        let s = status();
        assert!(s["in_flight"].as_u64().unwrap() <= 3, "{s}");
        most_waiting = most_waiting.max(s["waiting"].as_u64().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    for r in requests {
        let (code, answer) = r.join().unwrap();
        assert_eq!(code, 200, "{answer}");
        assert_eq!(answer["data"]["usage"], expected, "{answer}");
    }
    let s = status();
    assert_eq!(s["finished"], 100, "{s}");
    assert_eq!(
        s["peak_in_flight"], 3,
        "the bound is used and never exceeded: {s}"
    );
    assert!(most_waiting > 0, "requests waited their turn");
    // Waiting requests cost next to nothing: the process stays small.
    let proc_status = std::fs::read_to_string(format!("/proc/{}/status", adapter.0.id())).unwrap();
    let peak_kb: u64 = proc_status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(peak_kb < 256 * 1024, "peak RSS {peak_kb} kB");
}

#[test]
fn a_two_thousand_file_tree_behind_a_40_ms_link_is_measured_in_parallel_and_then_incrementally() {
    let devnet = TestDevnet::start(&["--no-oracle"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // 20 directories of 100 distinct files.
    let mut dirs = Vec::new();
    let mut expected = 0u64;
    let mut first_dir_files = Vec::new();
    for d in 0..20u32 {
        let mut entries = Vec::new();
        for f in 0..100u32 {
            let data = format!("dir {d} file {f}").into_bytes();
            expected += data.len() as u64;
            let cid = add(&rt, &devnet, data.clone());
            entries.push((format!("f{f:03}"), cid, data.len() as u64));
        }
        if d == 0 {
            first_dir_files = entries.clone();
        }
        let m = manifest(
            &entries
                .iter()
                .map(|(n, c, s)| (n.as_str(), "file", c.as_str(), *s))
                .collect::<Vec<_>>(),
        );
        expected += m.len() as u64;
        dirs.push((format!("d{d:02}"), add(&rt, &devnet, m)));
    }
    let top = |dirs: &[(String, String)]| {
        manifest(
            &dirs
                .iter()
                .map(|(n, c)| (n.as_str(), "dir", c.as_str(), 0))
                .collect::<Vec<_>>(),
        )
    };
    let root_bytes = top(&dirs);
    expected += root_bytes.len() as u64;
    let root = add(&rt, &devnet, root_bytes);

    let delay = Duration::from_millis(40);
    let proxy = proxy::Proxy::start_delaying(
        &devnet.node_url(),
        Some(proxy::Delay {
            needle: b"/api/v0/".to_vec(),
            delay,
        }),
    );
    let slow = pxfs::storage::NodeClient::from_url(&proxy.url(), "/api/v0");
    let limits = pxfs::oracle::Limits::default();
    let memo = pxfs::oracle::Memo::in_memory(limits.memo_entries);
    let started = std::time::Instant::now();
    let m = rt
        .block_on(pxfs::oracle::measure_roots(
            &slow,
            std::slice::from_ref(&root),
            &limits,
            &memo,
        ))
        .unwrap();
    let took = started.elapsed();
    assert_eq!(m.usage, expected);
    assert_eq!(m.files, 2000);
    let sequential = delay * m.objects_fetched as u32;
    assert!(m.objects_fetched >= 2021, "{m:?}");
    assert!(
        took * 8 < sequential,
        "{} node requests 40 ms away took {took:?} (one at a time: {sequential:?})",
        m.objects_fetched
    );

    // One file changed: only the new root, the changed directory and the new file are
    // fetched; the rest is known.
    let mut changed = first_dir_files.clone();
    let data = b"dir 0 file 0, longer now".to_vec();
    changed[0].1 = add(&rt, &devnet, data.clone());
    let m0 = manifest(
        &changed
            .iter()
            .map(|(n, c, _)| (n.as_str(), "file", c.as_str(), data.len() as u64))
            .collect::<Vec<_>>(),
    );
    let mut dirs2 = dirs.clone();
    dirs2[0].1 = add(&rt, &devnet, m0);
    let root2 = add(&rt, &devnet, top(&dirs2));
    let again = rt
        .block_on(pxfs::oracle::measure_roots(
            &slow,
            &[root.clone(), root2.clone()],
            &limits,
            &memo,
        ))
        .unwrap();
    assert_eq!(again.objects_fetched, 3, "{again:?}");
    assert_eq!(again.roots, 2);
    assert!(again.usage >= expected, "the larger of the two trees");

    // A document over the cap is refused by its CID, not read.
    let tight = pxfs::oracle::Limits {
        max_object_bytes: 1000,
        ..limits.clone()
    };
    let err = rt
        .block_on(pxfs::oracle::measure_root(&client(&devnet), &root, &tight))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&dirs[0].1) || err.contains(&root),
        "names the CID: {err}"
    );
    assert!(err.contains("larger than 1000 bytes"), "{err}");
}

/// The `oracle` benchmark (`bash scripts/bench.sh oracle`, not run by the tests): a tree of
/// `PXFS_ORACLE_BENCH_FILES` distinct files (default 1,000,000) in directories of 1,000,
/// measured through a link adding `PXFS_ORACLE_BENCH_DELAY_MS` (default 40) to every node
/// request, with the default limits; then measured again after one file changed. Prints one
/// JSON line starting with `oracle-bench `.
#[test]
#[ignore]
fn oracle_benchmark() {
    use futures::StreamExt;
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let files = env("PXFS_ORACLE_BENCH_FILES", 1_000_000);
    let delay = Duration::from_millis(env("PXFS_ORACLE_BENCH_DELAY_MS", 40));
    let devnet = TestDevnet::start(&["--no-oracle"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let node = client(&devnet);
    let started = std::time::Instant::now();
    let cids: Vec<String> = rt.block_on(
        futures::stream::iter(0..files)
            .map(|i| {
                let node = node.clone();
                async move {
                    node.add_bytes("f", format!("bench file {i}").into_bytes().into())
                        .await
                        .unwrap()
                        .hash
                }
            })
            .buffered(32)
            .collect(),
    );
    let mut dirs = Vec::new();
    for (d, chunk) in cids.chunks(1000).enumerate() {
        let names: Vec<String> = (0..chunk.len()).map(|i| format!("f{i:04}")).collect();
        let m = manifest(
            &names
                .iter()
                .zip(chunk)
                .map(|(n, c)| (n.as_str(), "file", c.as_str(), 0))
                .collect::<Vec<_>>(),
        );
        dirs.push((format!("d{d:05}"), add(&rt, &devnet, m)));
    }
    let top = manifest(
        &dirs
            .iter()
            .map(|(n, c)| (n.as_str(), "dir", c.as_str(), 0))
            .collect::<Vec<_>>(),
    );
    let root = add(&rt, &devnet, top);
    let built = started.elapsed();

    let proxy = proxy::Proxy::start_delaying(
        &devnet.node_url(),
        Some(proxy::Delay {
            needle: b"/api/v0/".to_vec(),
            delay,
        }),
    );
    let slow = pxfs::storage::NodeClient::from_url(&proxy.url(), "/api/v0");
    let limits = pxfs::oracle::Limits::default();
    let memo = pxfs::oracle::Memo::in_memory(limits.memo_entries);
    let t = std::time::Instant::now();
    let first = rt
        .block_on(pxfs::oracle::measure_roots(
            &slow,
            std::slice::from_ref(&root),
            &limits,
            &memo,
        ))
        .unwrap();
    let first_secs = t.elapsed().as_secs_f64();
    // One file changed in the first directory: a new directory manifest and root.
    let changed = add(&rt, &devnet, b"bench file changed".to_vec());
    let names: Vec<String> = (0..1000.min(cids.len()))
        .map(|i| format!("f{i:04}"))
        .collect();
    let mut first_dir: Vec<(&str, &str, &str, u64)> = names
        .iter()
        .zip(&cids)
        .map(|(n, c)| (n.as_str(), "file", c.as_str(), 0))
        .collect();
    first_dir[0].2 = changed.as_str();
    let mut dirs2 = dirs.clone();
    dirs2[0].1 = add(&rt, &devnet, manifest(&first_dir));
    let root2 = add(
        &rt,
        &devnet,
        manifest(
            &dirs2
                .iter()
                .map(|(n, c)| (n.as_str(), "dir", c.as_str(), 0))
                .collect::<Vec<_>>(),
        ),
    );
    let t = std::time::Instant::now();
    let second = rt
        .block_on(pxfs::oracle::measure_roots(
            &slow,
            &[root, root2],
            &limits,
            &memo,
        ))
        .unwrap();
    let second_secs = t.elapsed().as_secs_f64();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "oracle-bench {}",
        serde_json::json!({
            "files": files, "delay_ms": delay.as_millis() as u64,
            "build_secs": built.as_secs_f64(),
            "first_secs": first_secs, "first_requests": first.objects_fetched,
            "usage": first.usage, "limit_secs": limits.max_time.as_secs(),
            "limit_requests": limits.max_objects,
            "walk_concurrency": limits.walk_concurrency,
            "second_secs": second_secs, "second_requests": second.objects_fetched,
            "peak_rss": hwm,
        })
    );
    assert_eq!(first.files, files);
    assert!(first_secs < limits.max_time.as_secs_f64());
}
