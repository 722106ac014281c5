//! The mount on a real `pxfs node` (no chain): content, manifests and the usage document
//! go through the storage client, reads through the chunk cache. A fresh cache finds the
//! tree again by the token's BTNS name. Needs root and /dev/fuse.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use pxfs::cache::ChunkCache;
use pxfs::fs::node_store::NodeStore;
use pxfs::fs::{Fs, FsConfig, TokenInfo};
use pxfs::fuse::FuseFs;
use pxfs::storage::NodeClient;

struct Node {
    child: Child,
    client: NodeClient,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_node(repo: &Path) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .args(["node", "--listen", "127.0.0.1:0", "--repo"])
        .arg(repo)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    while !line.contains("listening on") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "node exited");
    }
    let url = line.trim().rsplit(' ').next().unwrap().to_string();
    std::thread::spawn(move || std::io::copy(&mut out, &mut std::io::sink()));
    Node {
        child,
        client: NodeClient::from_url(&url, "/api/v0"),
    }
}

struct Mounted {
    fs: Fs,
    session: Option<fuser::BackgroundSession>,
    rt: tokio::runtime::Runtime,
}

fn mount(client: &NodeClient, btns: &str, cache: &Path, dir: &Path) -> Mounted {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let fs = rt.block_on(async {
        let chunks = ChunkCache::open(&cache.join("chunks"), 1 << 30, client.clone()).unwrap();
        let store = NodeStore::new(client.clone(), chunks, 31337, "0x00".into());
        let mut cfg = FsConfig::new(cache.to_path_buf());
        cfg.single_token = true;
        let fs = Fs::new(cfg, Arc::new(store)).unwrap();
        let info = TokenInfo {
            token_id: 1,
            quota: u64::MAX,
            overdue: false,
            last_sync: 0,
            sync_deadline: 0,
            btns: Some(btns.to_string()),
        };
        fs.add_token(info).await.unwrap();
        fs
    });
    let mut fcfg = fuser::Config::default();
    fcfg.mount_options = vec![fuser::MountOption::DefaultPermissions];
    fcfg.n_threads = Some(2);
    let session = fuser::Session::new(FuseFs::new(fs.clone(), rt.handle().clone()), dir, &fcfg)
        .unwrap()
        .spawn()
        .unwrap();
    Mounted {
        fs,
        session: Some(session),
        rt,
    }
}

impl Mounted {
    fn unmount(mut self) {
        if let Some(s) = self.session.take() {
            s.umount_and_join().unwrap();
        }
        self.rt.block_on(self.fs.flush_all()).unwrap();
        self.fs.abort();
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let _ = s.umount_and_join();
        }
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn dir(root: &Path, name: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn a_tree_copied_in_comes_back_from_the_node_with_a_fresh_cache() {
    // SAFETY: geteuid has no preconditions.
    if !Path::new("/dev/fuse").exists() || unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root and /dev/fuse");
        return;
    }
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

    let m = mount(&node.client, &key.id, &dir(tmp.path(), "cache1"), &mnt);
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

    let m = mount(&node.client, &key.id, &dir(tmp.path(), "cache2"), &mnt);
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
