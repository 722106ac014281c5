//! The mount on a real `pxfs node` (no chain): content, manifests and the usage document
//! go through the storage client, reads through the chunk cache. A fresh cache finds the
//! tree again by the token's BTNS name. Needs root and /dev/fuse.

#[path = "support/node_mount.rs"]
mod node_mount;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use node_mount::{dir, mount, require_mount, start_node};

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_tree_copied_in_comes_back_from_the_node_with_a_fresh_cache() {
    require_mount();
    let tmp = tempfile::tempdir().unwrap();
    let node = start_node(&dir(tmp.path(), "repo"));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let key = rt.block_on(node.client.key_gen("token-1")).unwrap();
    let (src, mnt) = (dir(tmp.path(), "src"), dir(tmp.path(), "mnt"));
    let files = 2000;
    for i in 0..files {
        let d = dir(&src, &format!("d{}", i % 10));
        std::fs::write(d.join(format!("f{i}")), format!("small file {i}\n")).unwrap();
    }
    let big: Vec<u8> = (0..(8u32 << 20))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(src.join("big"), &big).unwrap();
    std::os::unix::fs::symlink("big", src.join("link")).unwrap();

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache1"),
        &mnt,
        false,
    );
    let started = Instant::now();
    sh(Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(&mnt));
    let copied = started.elapsed();
    m.unmount();
    eprintln!(
        "{files} small files + 8 MiB copied in {copied:?}; uploaded and committed after {:?}",
        started.elapsed()
    );

    let m = mount(
        &node.client,
        &key.id,
        &dir(tmp.path(), "cache2"),
        &mnt,
        false,
    );
    sh(Command::new("diff").arg("-r").arg(&src).arg(&mnt));
    let expected: usize = (0..files)
        .map(|i| format!("small file {i}\n").len())
        .sum::<usize>()
        + big.len();
    // The mount's figure is the oracle's to the byte (docs/FORMAT.md §7): the contents
    // (the small files are all different) plus the manifests, measured on the node.
    let root = xattr(&mnt, "user.pxfs.root");
    let measured = rt
        .block_on(pxfs::oracle::measure_root(
            &node.client,
            &root,
            &pxfs::oracle::Limits::default(),
        ))
        .unwrap();
    assert_eq!(measured.usage - measured.manifest_bytes, expected as u64);
    assert_eq!(xattr(&mnt, "user.pxfs.usage"), measured.usage.to_string());
    m.unmount();
}

fn xattr(p: &Path, name: &str) -> String {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings and a buffer of the given length.
    let len = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(len >= 0, "getxattr {name}");
    String::from_utf8(buf[..len as usize].to_vec()).unwrap()
}
