//! A kernel mount of the core on a real `pxfs node` child process (no chain), for tests that
//! need the node's repository at hand: `start_node`, `mount`, `require_mount`, `dir`,
//! `publish_root`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use pxfs::cache::ChunkCache;
use pxfs::fs::data::node_store::NodeStore;
use pxfs::fs::{Fs, FsConfig, TokenInfo};
use pxfs::fuse::FuseFs;
use pxfs::keys::keyring::FixedKey;
use pxfs::storage::NodeClient;

pub struct Node {
    child: Child,
    pub client: NodeClient,
    /// `http://host:port` it listens on.
    pub url: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn start_node(repo: &Path) -> Node {
    start_node_at(repo, "127.0.0.1:0")
}

/// A node listening on `listen` (the address of one stopped before, to start it again).
pub fn start_node_at(repo: &Path, listen: &str) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .args(["node", "--listen", listen, "--repo"])
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
        url,
    }
}

pub struct Mounted {
    pub fs: Fs,
    session: Option<fuser::BackgroundSession>,
    pub rt: tokio::runtime::Runtime,
    dir: PathBuf,
}

/// The token-1 sNFT named `btns` mounted on `dir` with cache `cache`; `sealed` seals with a
/// fixed data key.
pub fn mount(client: &NodeClient, btns: &str, cache: &Path, dir: &Path, sealed: bool) -> Mounted {
    mount_with(client, btns, cache, dir, sealed, |_| {})
}

/// [`mount`] with `tweak` applied to the core's configuration.
pub fn mount_with(
    client: &NodeClient,
    btns: &str,
    cache: &Path,
    dir: &Path,
    sealed: bool,
    tweak: impl FnOnce(&mut FsConfig),
) -> Mounted {
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
        if sealed {
            cfg.keys = Arc::new(FixedKey(pxfs::format::DataKey::from_bytes([42; 32])));
        }
        tweak(&mut cfg);
        let fs = Fs::new(cfg, Arc::new(store)).unwrap();
        let info = TokenInfo {
            token_id: 1,
            quota: u64::MAX,
            overdue: false,
            last_sync: 0,
            sync_deadline: 0,
            btns: Some(btns.to_string()),
            synced_usage: 0,
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
        dir: dir.to_path_buf(),
    }
}

/// Publishes `root` (a tree put on the node with its objects) as the token-1 sNFT's tree
/// under `btns`, plaintext, as another writer would; `cache` holds the publisher's chunk
/// cache.
pub fn publish_root(client: &NodeClient, btns: &str, cache: &Path, root: &str, usage: u64) {
    use pxfs::fs::ContentStore;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let chunks = ChunkCache::open(&cache.join("chunks"), 1 << 20, client.clone()).unwrap();
        let store = NodeStore::new(client.clone(), chunks, 31337, "0x00".into());
        let record = pxfs::fs::store::UsageRecord {
            token_id: 1,
            quota: u64::MAX,
            usage,
            files: 0,
            root: root.to_string(),
            last_upload: None,
            seq: 1,
            prev: None,
            merged: None,
            encryption: Default::default(),
        };
        // In place of what the name holds (a node that checks publications wants it).
        let replaces = store.resolve(btns).await.unwrap().map(|p| p.doc_cid);
        let published = store
            .publish_usage(Some(btns), &record, replaces.as_deref())
            .await
            .unwrap();
        assert!(published.doc().is_some(), "{published:?}");
    });
}

impl Mounted {
    pub fn unmount(mut self) {
        if let Some(s) = self.session.take() {
            crate::unmount::umount_when_free(&self.dir);
            s.join().unwrap();
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

/// These tests mount for real; without root and /dev/fuse they fail rather than skip.
pub fn require_mount() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        Path::new("/dev/fuse").exists() && root,
        "the kernel mount tests need root and /dev/fuse"
    );
}

pub fn dir(root: &Path, name: &str) -> PathBuf {
    let p = root.join(name);
    std::fs::create_dir_all(&p).unwrap();
    p
}
