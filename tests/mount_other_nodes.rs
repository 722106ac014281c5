//! Any IPFS node (issue #37): the same tree copied through a kernel mount whose node answers
//! in each of the shapes other implementations use (CIDs in base58btc or base36, numbers as
//! strings, errors as HTTP 500 and as an error line after a 200, names and paths in their
//! other forms: `tests/support/node_double.rs`), unmounted (`pxfs unmount` exits 0 only
//! after a real commit), and read back through a fresh cache on the same kind of node.
//! And remote pinning services (issue #30 item 4) speaking the IPFS Pinning Service API
//! (`tests/support/pinning_service.rs`).

#[path = "support/block_store.rs"]
mod block_store;
#[path = "support/node_double.rs"]
mod node_double;
#[path = "support/node_mount.rs"]
mod node_mount;
#[path = "support/pinning_service.rs"]
mod pinning_service;
mod support;
#[path = "support/unmount.rs"]
mod unmount;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use block_store::block_file;
use node_double::{NodeDouble, Variant};
use pinning_service::{Asked, PinningService};
use support::{TestDevnet, TestMount, wait_until, xattr};

/// Small, empty and multi-MiB files in two directories.
fn generate(src: &Path, seed: u8) {
    let sub = src.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    for i in 0..20u32 {
        let len = (i as usize * 977) % 5000;
        let data: Vec<u8> = (0..len).map(|j| (j as u8) ^ seed ^ (i as u8)).collect();
        std::fs::write(src.join(format!("small-{i}")), data).unwrap();
    }
    std::fs::write(src.join("empty"), b"").unwrap();
    let big: Vec<u8> = (0..(3 << 20) + 12345u32)
        .map(|j| ((j.wrapping_mul(2654435761)) >> 11) as u8 ^ seed)
        .collect();
    std::fs::write(sub.join("big.bin"), big).unwrap();
    std::fs::write(sub.join("note"), format!("variant seed {seed}\n")).unwrap();
}

fn config_through(devnet: &TestDevnet, double: &NodeDouble, dir: &Path) -> std::path::PathBuf {
    let mut config = pxfs::config::Config::load(Some(&devnet.config())).unwrap();
    config.node.api_url = double.url.clone();
    config.cache.dir = dir.join("cache");
    let cfg = dir.join("pxfs.toml");
    config.write(&cfg).unwrap();
    cfg
}

#[test]
fn a_tree_round_trips_through_a_node_of_every_answer_shape() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    for (i, variant) in node_double::ALL.into_iter().enumerate() {
        let double = NodeDouble::start(&devnet.node_url(), variant);
        let work = tempfile::tempdir().unwrap();
        let work_keep = work.path().to_path_buf();
        std::mem::forget(work);
        let work = KeepDir(work_keep);
        let src = work.path().join("src");
        generate(&src, i as u8 + 1);
        let target = format!("{variant:?}");

        let cfg = config_through(&devnet, &double, work.path());
        let mut mount = TestMount::mount(&cfg, &[]);
        let dest = mount.token(token).join(&target);
        let cp = Command::new("cp")
            .arg("-a")
            .arg(&src)
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            cp.status.success(),
            "{variant:?}: cp -a: {}",
            String::from_utf8_lossy(&cp.stderr)
        );
        let out = mount.unmount_outcome();
        let said = String::from_utf8_lossy(&out.stderr).into_owned()
            + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{variant:?}: pxfs unmount: {said}");
        assert!(said.contains("committed"), "{variant:?}: {said}");
        assert!(
            double.rewritten() > 0,
            "{variant:?}: the double changed no answer, so this variant tested nothing"
        );
        if variant == Variant::ErrorShapes {
            assert!(double.injected() > 0, "no add failed on purpose");
        }

        // A fresh cache (another machine) on the same kind of node sees the whole tree.
        let fresh = tempfile::tempdir().unwrap();
        let cfg = config_through(&devnet, &double, fresh.path());
        let mut again = TestMount::mount(&cfg, &[]);
        let dest = again.token(token).join(&target);
        let diff = Command::new("diff")
            .arg("-r")
            .arg(&src)
            .arg(&dest)
            .output()
            .unwrap();
        assert!(
            diff.status.success(),
            "{variant:?}: after a fresh-cache remount: {}{}",
            String::from_utf8_lossy(&diff.stdout),
            String::from_utf8_lossy(&diff.stderr)
        );
        assert!(
            xattr(&again.token(token), "user.pxfs.root").starts_with("baf"),
            "{variant:?}: roots are kept in the canonical form (CIDv1, base32)"
        );
        again.unmount();
    }
}
struct KeepDir(std::path::PathBuf);
impl KeepDir {
    fn path(&self) -> &Path {
        &self.0
    }
}

/// The root of the tree the sNFT's BTNS name points to now.
fn published_root(devnet: &TestDevnet) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let btns = devnet.info["btns_names"][0].as_str().unwrap();
    let (_, doc) = rt.block_on(pxfs::btns::resolve(&client, btns)).unwrap();
    match doc {
        pxfs::format::usage::AnyUsageDoc::V2(d) => d.root,
        _ => panic!("pxfs publishes pxfs/usage/2"),
    }
}

/// A mount with three `[[pinning]]` services: one that takes its token, one that refuses
/// it (HTTP 401) and one that is not there at all. Each commit's root is asked of the first
/// and, once it holds it, the pins of older roots are removed, so it ends holding exactly
/// the newest tree; the other two never make an fsync wait; after the service was down for
/// a while it catches up with the newest root; a remount goes on from what it recorded.
#[test]
fn a_pinning_service_gets_each_committed_root_and_drops_the_older_ones() {
    const TOKEN: &str = "stand-in-access-token-4711";
    let devnet = TestDevnet::start(&[]);
    let good = PinningService::start(TOKEN, &devnet.node_url());
    let refusing = PinningService::start("another-token", &devnet.node_url());
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("pinning-token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let service = |name: &str, endpoint: &str| {
        let mut t = toml::map::Map::new();
        t.insert("name".into(), name.into());
        t.insert("endpoint".into(), endpoint.into());
        t.insert(
            "access_token_file".into(),
            token_file.display().to_string().into(),
        );
        toml::Value::Table(t)
    };
    let services = toml::Value::Array(vec![
        service("standin", &good.url),
        service("refusing", &refusing.url),
        service("nowhere", "http://127.0.0.1:9"),
    ]);
    let config = devnet.config_with(&dir.path().join("cache"), |cfg| {
        cfg.as_table_mut()
            .unwrap()
            .insert("pinning".into(), services);
    });
    let mut mount = TestMount::mount(&config, &[]);
    let root = mount.token(devnet.token());

    let holds_exactly = |service: &PinningService, cid: &str| {
        service.pins() == vec![(cid.to_string(), "pinned".to_string())]
    };
    let mut committed = Vec::new();
    for i in 0..3 {
        if i == 2 {
            good.set_down(true);
        }
        let started = std::time::Instant::now();
        let mut f = std::fs::File::create(root.join(format!("file-{i}"))).unwrap();
        std::io::Write::write_all(&mut f, format!("pinned copy {i}\n").as_bytes()).unwrap();
        f.sync_all().unwrap();
        drop(f);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "an fsync waited {:?}: the pinning services held it up",
            started.elapsed()
        );
        let cid = published_root(&devnet);
        committed.push(cid.clone());
        if i == 2 {
            std::thread::sleep(std::time::Duration::from_secs(3));
            assert!(
                !good.pins().iter().any(|(c, _)| *c == cid),
                "asked while down"
            );
            good.set_down(false);
        }
        wait_until(
            "the service to hold exactly the newest tree",
            std::time::Duration::from_secs(90),
            || holds_exactly(&good, &cid),
        );
    }
    let added: Vec<String> = good
        .asked()
        .into_iter()
        .filter_map(|a| match a {
            Asked::Add { cid, .. } => Some(cid),
            _ => None,
        })
        .collect();
    for cid in &committed {
        assert!(added.contains(cid), "{cid} was never asked for: {added:?}");
    }
    let removed = good
        .asked()
        .iter()
        .filter(|a| matches!(a, Asked::Remove { .. }))
        .count();
    assert!(
        removed >= 2,
        "older roots' pins removed: {:?}",
        good.asked()
    );
    let refused = refusing.asked();
    assert!(
        !refused.is_empty() && refused.iter().all(|a| *a == Asked::Unauthorized),
        "the refusing service got only unauthorized requests: {refused:?}"
    );

    // A remount goes on from what it recorded: the next commit supersedes the last root.
    mount.unmount();
    let mount = TestMount::mount(&config, &[]);
    let root = mount.token(devnet.token());
    let mut f = std::fs::File::create(root.join("after-remount")).unwrap();
    std::io::Write::write_all(&mut f, b"after a remount").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let cid = published_root(&devnet);
    assert_ne!(Some(&cid), committed.last());
    wait_until(
        "the service to hold exactly the newest tree after a remount",
        std::time::Duration::from_secs(90),
        || holds_exactly(&good, &cid),
    );
}

/// `pxfs ARGS --config CONFIG` with the dev wallet's key: (exit code, stdout, stderr).
fn pxfs_with(config: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(support::PXFS)
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PXFS_PRIVATE_KEY", support::DEV_WALLET_KEY)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A config of the devnet with cache `cache`, whose `[node]` is edited by `node`.
fn config_node(
    devnet: &TestDevnet,
    cache: &Path,
    node: impl FnOnce(&mut toml::Value),
) -> std::path::PathBuf {
    devnet.config_with(cache, |cfg| node(&mut cfg["node"]))
}

fn set(table: &mut toml::Value, key: &str, value: toml::Value) {
    table.as_table_mut().unwrap().insert(key.into(), value);
}

fn replicas(urls: &[&str]) -> toml::Value {
    toml::Value::Array(
        urls.iter()
            .map(|u| toml::Value::String(u.to_string()))
            .collect(),
    )
}

/// The first replica of the one mount, as `pxfs status --json` shows it.
fn replica_status(config: &Path) -> serde_json::Value {
    support::status_json(config)["mounts"][0]["replicas"][0].clone()
}

/// Whether the replica holds `root` for `token` and is behind on nothing.
fn replica_holds(config: &Path, token: u64, root: &str) -> bool {
    let r = replica_status(config);
    let held = r["held"].as_array().cloned().unwrap_or_default();
    r["behind"].as_array().is_some_and(|b| b.is_empty())
        && held
            .iter()
            .any(|h| h["token_id"] == token && h["root"].as_str() == Some(root))
}

/// Issue #30: a replica keeps a copy of every committed tree; `pxfs check` finds a block
/// the primary lost and `--repair` puts it back from the cache, then from the replica; a
/// replica that is down meanwhile catches up; and with the primary gone for good a new
/// machine mounts the tree from the replica alone.
#[test]
fn a_replica_keeps_every_tree_repairs_the_primary_and_restores_it_alone() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let t = token.to_string();
    let work = tempfile::tempdir().unwrap();
    let replica_repo = work.path().join("replica");
    let replica = node_mount::start_node(&replica_repo);
    let replica_url = replica.url.clone();
    let with_replica = config_node(&devnet, &work.path().join("cache-a"), |n| {
        set(n, "replicas", replicas(&[&replica_url]));
    });

    // Written through a mount with one replica: the tree is copied there and pinned.
    let src = work.path().join("src");
    generate(&src, 7);
    let mut mount = TestMount::mount(&with_replica, &[]);
    let dest = mount.token(token).join("tree");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dest)
        .status()
        .unwrap();
    assert!(cp.success());
    // The unmount drains: every file uploaded and the tree committed.
    mount.unmount();
    let root = || support::status_json(&with_replica)["mounts"][0].clone();
    let committed = || {
        support::status_json(&with_replica)["tokens"][0]["mount"]["last_root"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    // Remounted: the loaded tree is handed to the replica, and a read of a small file
    // puts it in the chunk cache (small files are not cached on upload).
    let mut mount = TestMount::mount(&with_replica, &[]);
    let dest = mount.token(token).join("tree");
    let small_cid = xattr(&dest.join("small-3"), "user.pxfs.cid");
    let small_bytes = std::fs::read(dest.join("small-3")).unwrap();
    assert_eq!(small_bytes, std::fs::read(src.join("small-3")).unwrap());
    let chunks = work.path().join("cache-a/chunks");
    support::wait_until("the chunk cached", Duration::from_secs(30), || {
        pxfs::cache::CachedChunks::open(&chunks)
            .and_then(|c| c.read(&small_cid, 0, small_bytes.len() as u64))
            .is_some()
    });
    let tree_root = xattr(&mount.token(token), "user.pxfs.root");
    support::wait_until(
        "the replica holds the tree",
        Duration::from_secs(120),
        || replica_holds(&with_replica, token, &tree_root),
    );
    let (_, status, _) = pxfs_with(&with_replica, &["status"]);
    assert!(status.contains("replica 1 (127.0.0.1:"), "{status}");
    assert!(status.contains("up to date"), "{status}");
    mount.unmount();

    // The replica checks clean; so does the primary.
    let (code, out, err) = pxfs_with(
        &with_replica,
        &["check", &t, "--node", &replica_url, "--read-data"],
    );
    assert_eq!(code, 0, "check of the replica: {out}{err}");
    let (code, out, err) = pxfs_with(&with_replica, &["check", &t]);
    assert_eq!(code, 0, "check of the primary: {out}{err}");

    // A block file removed from the primary: named; repaired from the cache (a mount
    // read it).
    let primary_repo = devnet.dir.path().join("node");
    let lost = block_file(&primary_repo, &small_cid);
    std::fs::remove_file(&lost).unwrap();
    let (code, out, _) = pxfs_with(&with_replica, &["check", &t]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("damaged: /tree/small-3: block"), "{out}");
    let (code, out, err) = pxfs_with(&with_replica, &["check", &t, "--repair"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("repaired: /tree/small-3 (from the cache)"),
        "{out}"
    );
    assert!(lost.exists(), "the block file is back");
    assert_eq!(pxfs_with(&with_replica, &["check", &t, "--read-data"]).0, 0);

    // Again with an empty cache: repaired from the replica.
    std::fs::remove_file(&lost).unwrap();
    let fresh = config_node(&devnet, &work.path().join("cache-b"), |n| {
        set(n, "replicas", replicas(&[&replica_url]));
    });
    let (code, out, err) = pxfs_with(&fresh, &["check", &t, "--repair"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("repaired: /tree/small-3 (from replica 1)"),
        "{out}"
    );
    // Without a replica and with an empty cache, nothing can put it back: named.
    std::fs::remove_file(&lost).unwrap();
    let alone = config_node(&devnet, &work.path().join("cache-c"), |_| {});
    let (code, out, _) = pxfs_with(&alone, &["check", &t, "--repair"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("not repaired: /tree/small-3: no good copy"),
        "{out}"
    );
    assert_eq!(pxfs_with(&fresh, &["check", &t, "--repair"]).0, 0);

    // The replica down while a tree is committed: writes and the commit go on; the
    // replica is shown behind and catches up when it returns.
    let listen = replica_url.trim_start_matches("http://").to_string();
    drop(replica);
    let mut mount = TestMount::mount(&with_replica, &[]);
    let later = mount.token(token).join("tree/later");
    let before = committed();
    let started = std::time::Instant::now();
    std::fs::write(&later, b"written while the replica was down\n").unwrap();
    let f = std::fs::File::open(&later).unwrap();
    f.sync_all().unwrap();
    drop(f);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a write and its fsync waited for the replica"
    );
    support::wait_until("the commit of `later`", Duration::from_secs(120), || {
        root()["pending_files"] == 0 && committed() != before
    });
    let new_root = committed();
    let later_mtime = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(&later).unwrap().mtime()
    };
    support::wait_until("the replica shown failing", Duration::from_secs(60), || {
        let r = replica_status(&with_replica);
        r["healthy"] == false
            && r["last_error"].is_string()
            && !replica_holds(&with_replica, token, &new_root)
    });
    let (_, status, _) = pxfs_with(&with_replica, &["status"]);
    assert!(status.contains("BEHIND on sNFT"), "{status}");
    let replica = node_mount::start_node_at(&replica_repo, &listen);
    support::wait_until("the replica catches up", Duration::from_secs(120), || {
        replica_holds(&with_replica, token, &new_root)
    });
    mount.unmount();
    let (code, out, err) = pxfs_with(&with_replica, &["check", &t, "--node", &replica_url]);
    assert_eq!(
        code, 0,
        "the replica holds the tree written while it was down: {out}{err}"
    );
    let expected = work.path().join("expected");
    std::fs::create_dir_all(&expected).unwrap();
    Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(expected.join("tree"))
        .status()
        .unwrap();
    std::fs::write(
        expected.join("tree/later"),
        b"written while the replica was down\n",
    )
    .unwrap();
    support::set_mtime(&expected.join("tree/later"), later_mtime);

    // The primary gone for good: a new machine (empty cache) whose config still names the
    // old primary, where nothing answers any more, and the replica reads every file
    // through it. (The devnet's own node stays up: the devnet stops with it.)
    let gone = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let restore = config_node(&devnet, &work.path().join("cache-new"), |n| {
        set(n, "api_url", toml::Value::String(gone.clone()));
        set(n, "replicas", replicas(&[&replica_url]));
    });
    let mut mount = TestMount::mount(&restore, &[]);
    support::assert_same_tree(&expected.join("tree"), &mount.token(token).join("tree"));
    mount.unmount();
    // And one whose config points at the replica as its node.
    let at_replica = config_node(&devnet, &work.path().join("cache-new2"), |n| {
        set(n, "api_url", toml::Value::String(replica_url.clone()));
    });
    let mut mount = TestMount::mount(&at_replica, &["--read-only"]);
    support::assert_same_tree(&expected.join("tree"), &mount.token(token).join("tree"));
    mount.unmount();
    drop(replica);
}
