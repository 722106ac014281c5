//! Any IPFS node (issue #37): the same tree copied through a kernel mount whose node answers
//! in each of the shapes other implementations use (CIDs in base58btc or base36, numbers as
//! strings, errors as HTTP 500 and as an error line after a 200, names and paths in their
//! other forms: `tests/support/node_double.rs`), unmounted (`pxfs unmount` exits 0 only
//! after a real commit), and read back through a fresh cache on the same kind of node.

#[path = "support/node_double.rs"]
mod node_double;
mod support;

use std::path::Path;
use std::process::Command;

use node_double::{NodeDouble, Variant};
use support::{TestDevnet, TestMount, xattr};

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
