//! Any IPFS node (issue #37): the same tree copied through a kernel mount whose node answers
//! in each of the shapes other implementations use (CIDs in base58btc or base36, numbers as
//! strings, errors as HTTP 500 and as an error line after a 200, names and paths in their
//! other forms: `tests/support/node_double.rs`), unmounted (`pxfs unmount` exits 0 only
//! after a real commit), and read back through a fresh cache on the same kind of node.
//! And remote pinning services (issue #30 item 4) speaking the IPFS Pinning Service API
//! (`tests/support/pinning_service.rs`).

#[path = "support/node_double.rs"]
mod node_double;
#[path = "support/pinning_service.rs"]
mod pinning_service;
mod support;

use std::path::Path;
use std::process::Command;

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
