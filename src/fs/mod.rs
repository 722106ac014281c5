//! Filesystem core: the in-memory tree per sNFT, manifests, staging, quota, uploads,
//! commits and the journal. Never imports `fuser`: tests drive [`Fs`] directly.
//!
//! Concurrency: one lock guards the tree (namespace, inodes, tokens, handles); nothing
//! holds it across a network call. Reads of node content, manifest loads, uploads and
//! commits run outside it and re-check the tree when they come back.
//!
//! Layout, low to high (each part's `mod.rs` says what it owns; `tests/layering.rs` keeps
//! imports one-way): the base here (`error`, `store`, `backoff`, `step`, `invariants`,
//! `held`), then `data`, `model`, `upload` and `persist`, and `ops` on top.

pub mod error;
pub mod held;
pub mod invariants;
mod step;
pub mod store;

pub mod data;
pub mod model;
pub mod ops;
pub mod persist;
pub mod upload;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::{FsError, FsResult};
pub use model::dapp::DAPP_DIR;
pub use model::inode::{Attr, Ino, Kind, Meta, ROOT_INO, TokenId};
pub use model::token::{ChainGate, TokenInfo};
pub use model::tree::NAME_MAX;
pub use ops::io::MAX_FILE_SIZE;
pub use step::{DirSink, Step};
pub use store::ContentStore;

use model::inode::{Body, DirBody, Entries, Inode};
use model::tree::Tree;

#[derive(Debug, Clone)]
pub struct FsConfig {
    /// `CACHE`: holds `staging/` and `journal/`.
    pub cache_dir: PathBuf,
    /// Uploads running at once.
    pub upload_parallelism: usize,
    /// Files up to this size are uploaded in batches (one request for many).
    pub small_file_limit: u64,
    /// Closed-but-not-uploaded bytes above which writers wait for uploads to catch up.
    pub staging_limit: u64,
    /// Closed-but-not-uploaded files above which writers wait, likewise.
    pub staging_limit_files: u64,
    /// A closed file up to `small_file_limit` waits this long before its upload starts, so
    /// that one deleted or rewritten meanwhile is never uploaded (`fs::upload::writeback`); zero:
    /// uploads start at once.
    pub writeback_delay: Duration,
    /// How long the node may be down before `fsync`, the unmount drain and writers held
    /// back by the staging limit stop waiting for it (their data stays staged).
    pub outage_grace: Duration,
    /// Free space kept on the cache disk (`[cache] reserve_bytes`): below it, new data gets
    /// `ENOSPC` while the journal and directory changes still fit (`disk_space`).
    pub disk_reserve: u64,
    /// Commits happen at most this often under load.
    pub commit_interval: Duration,
    /// While uploads are in flight, what is uploaded is committed at least this often
    /// (a long copy publishes as it goes rather than at its end).
    pub commit_max_delay: Duration,
    /// Tests: every journal write and sync and every staged-file write first sleeps this
    /// long, as a slow cache disk would (zero: no delay).
    #[doc(hidden)]
    pub disk_delay: Duration,
    /// Tests: a commit that merged another writer's changes waits this long before it
    /// writes and publishes the merged tree (zero: no wait). The mount daemon takes it
    /// from `PXFS_TEST_MERGE_PAUSE_MS`, so a test can `kill -9` it in the middle of a merge.
    #[doc(hidden)]
    pub merge_pause: Duration,
    /// The BTNS record's settle window (docs/FORMAT.md §9.3): a published document holds
    /// once a resolve this long after its publication still shows it (or a descendant).
    /// Zero: one resolve right after publishing (a name system that is consistent at once).
    pub settle_window: Duration,
    /// How often the published documents are checked for other writers' commits, which
    /// are then taken in (`Fs::follow_all`); zero: never.
    pub follow_interval: Duration,
    /// Serve exactly one sNFT as the mount root.
    pub single_token: bool,
    /// Refuse every change (`--read-only`).
    pub read_only: bool,
    /// Inodes kept in memory before directories least recently used are unloaded
    /// (`fs::model::unload`); `usize::MAX`: never.
    pub max_loaded_inodes: usize,
    /// Owner of the mount root and of sNFT roots.
    pub uid: u32,
    pub gid: u32,
    /// Opens encrypted trees and decides what a new tree gets.
    pub keys: std::sync::Arc<dyn crate::keys::keyring::KeyRing>,
    /// Told of each committed root once it holds (src/fs/held.rs).
    pub held_roots: Vec<std::sync::Arc<dyn held::HeldRoots>>,
    /// Where every committed tree is copied once it holds (`[node] replicas`).
    pub replicas: Option<std::sync::Arc<crate::replica::Replicas>>,
    /// Which committed versions each sNFT keeps (`[history]`, docs/FORMAT.md §14.2); off
    /// by default here (the daemon's default keeps them).
    pub history: crate::format::history::Policy,
    /// Tests: the commit time (Unix nanoseconds) in place of the system clock, so a
    /// retention policy can be run over simulated time.
    pub clock: Option<Clock>,
}

/// A clock for tests (`FsConfig::clock`): Unix nanoseconds.
#[derive(Clone)]
pub struct Clock(pub std::sync::Arc<dyn Fn() -> i64 + Send + Sync>);

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl FsConfig {
    pub fn new(cache_dir: PathBuf) -> FsConfig {
        FsConfig {
            cache_dir,
            upload_parallelism: 8,
            small_file_limit: 256 * 1024,
            staging_limit: u64::MAX,
            staging_limit_files: u64::MAX,
            writeback_delay: Duration::ZERO,
            outage_grace: Duration::from_secs(300),
            disk_reserve: 0,
            commit_interval: Duration::from_secs(1),
            commit_max_delay: Duration::from_secs(5),
            disk_delay: Duration::ZERO,
            merge_pause: Duration::ZERO,
            settle_window: Duration::ZERO,
            follow_interval: Duration::ZERO,
            single_token: false,
            read_only: false,
            max_loaded_inodes: usize::MAX,
            uid: unsafe_getuid(),
            gid: unsafe_getgid(),
            keys: std::sync::Arc::new(crate::keys::keyring::PlainOnly),
            held_roots: Vec::new(),
            replicas: None,
            history: crate::format::history::Policy::OFF,
            clock: None,
        }
    }

    /// The time a commit is made at (Unix nanoseconds): its root's `t`.
    pub fn commit_time(&self) -> i64 {
        match &self.clock {
            Some(clock) => (clock.0)(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0),
        }
    }
}

fn unsafe_getuid() -> u32 {
    // SAFETY: getuid cannot fail and has no preconditions.
    unsafe { libc::getuid() }
}
fn unsafe_getgid() -> u32 {
    // SAFETY: getgid cannot fail and has no preconditions.
    unsafe { libc::getgid() }
}

/// An open file or directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handle {
    pub ino: Ino,
    pub write: bool,
    pub append: bool,
    /// Counts as a writer of the inode's session (opened for writing, or created).
    pub session: bool,
}

/// Filesystem statistics for `statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFs {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

/// One directory entry as `readdir` returns it; `offset` resumes after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub offset: u64,
    pub kind: Kind,
    /// The name's bytes (`.` and `..` included).
    pub name: Vec<u8>,
    pub attr: Attr,
}

/// Attribute changes requested by `setattr`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<TimeSet>,
    pub mtime: Option<TimeSet>,
    pub fh: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
pub enum TimeSet {
    Now,
    At(i64),
}

impl TimeSet {
    fn ns(self) -> i64 {
        match self {
            TimeSet::Now => model::inode::now_ns(),
            TimeSet::At(ns) => ns,
        }
    }
}

/// The tree lock. Journal ops appended while it is held are written to the log after it
/// is released: [`TreeGuard::unlock`] returns the write's error to the caller; dropping
/// the guard writes them too, and logs a failure (for holds that journal nothing).
pub(crate) struct TreeGuard<'a>(
    Option<MutexGuard<'a, Tree>>,
    &'a data::disk_space::CacheDisk,
);

impl TreeGuard<'_> {
    /// Release the lock, then write the journal ops appended under it.
    pub fn unlock(mut self) -> FsResult<()> {
        self.write_journaled()
    }

    fn write_journaled(&mut self) -> FsResult<()> {
        let Some(mut guard) = self.0.take() else {
            return Ok(());
        };
        let journaled = std::mem::take(&mut guard.journaled);
        drop(guard);
        // Each journal's last op: writing it writes the ones before.
        let mut last: Vec<(Arc<data::journal::Journal>, u64)> = Vec::new();
        let mut result = Ok(());
        for (j, seq) in journaled {
            match last.iter_mut().find(|(k, _)| Arc::ptr_eq(k, &j)) {
                Some(l) => l.1 = l.1.max(seq),
                None => last.push((j, seq)),
            }
        }
        for (j, seq) in last {
            match j.write_through(seq) {
                Ok(()) => {}
                // A full disk is an episode (`disk_space`), logged once, not per request.
                Err(e) if data::disk_space::is_disk_full(&e) => result = Err(self.1.failed(e)),
                Err(e) => {
                    tracing::error!(error = %e, "cannot append to the journal");
                    result = Err(FsError::Journal(e.to_string()));
                }
            }
        }
        result
    }
}

impl std::ops::Deref for TreeGuard<'_> {
    type Target = Tree;
    fn deref(&self) -> &Tree {
        self.0.as_ref().expect("guard held until dropped")
    }
}

impl std::ops::DerefMut for TreeGuard<'_> {
    fn deref_mut(&mut self) -> &mut Tree {
        self.0.as_mut().expect("guard held until dropped")
    }
}

impl Drop for TreeGuard<'_> {
    fn drop(&mut self) {
        let _ = self.write_journaled();
    }
}

/// The filesystem core. Cheap to clone; all clones share one tree.
#[derive(Clone)]
pub struct Fs {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub cfg: FsConfig,
    /// The store of each sNFT (see [`Fs::store_of`]), shared with the uploader.
    pub stores: Arc<data::stores::Stores>,
    pub tree: Mutex<Tree>,
    pub handles: Mutex<std::collections::HashMap<u64, Handle>>,
    pub next_fh: AtomicU64,
    /// Closed versions on their way to the node (its workers report back through
    /// [`upload::UploadResults`]).
    pub uploads: Arc<upload::Uploader>,
    /// Whether the node is down, as uploads and commits see it.
    pub outage: Arc<data::outage::Outage>,
    /// Writers waiting for the staging limit.
    pub staging: ops::io::StagingGate,
    /// Free space on the cache disk and its reserve.
    pub disk: data::disk_space::CacheDisk,
    /// Signalled after every upload completion and every commit.
    pub progress: Notify,
    /// Pages recently written or read (`pages`), for commits that update a large
    /// directory in place.
    pub pages: Arc<data::pages::PageCache>,
    /// One commit at a time (and the graph count's decisions and unpins between them).
    pub commit_lock: tokio::sync::Mutex<()>,
    /// Unpins of held commits' superseded objects under way (`persist::unpins`).
    pub unpinning: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// A commit holds `commit_lock` and reads the tree between its holds of the tree's
    /// lock: no directory may be unloaded meanwhile. Set and read under the tree's lock.
    pub committing: std::sync::atomic::AtomicBool,
    /// Usage documents seen lately, for merge bases (docs/FORMAT.md §9.1).
    pub ancestry: persist::ancestry::Memory,
    pub cancel: CancellationToken,
    /// The storage node's health as the core's requests saw it.
    pub node_health: Arc<ops::status::HealthTracker>,
    /// Live uploads running at once (see `live`): at most `upload_parallelism`.
    pub live_permits: Arc<tokio::sync::Semaphore>,
    /// The runtime, for work started from FUSE threads.
    pub rt: tokio::runtime::Handle,
    /// Content chunks opened lately (sealed trees).
    pub opened: data::content::OpenChunks,
    /// Tells the kernel to forget a cached entry (directory, name) that changed under it:
    /// another writer's commit merged in (`merge`).
    pub invalidate: Mutex<Option<Invalidate>>,
    /// Told after each commit, before the `fsync` it completes returns (see
    /// [`Fs::set_on_commit`]).
    pub on_commit: Mutex<Option<OnCommit>>,
}

/// See [`Fs::set_invalidate`].
pub type Invalidate = Arc<dyn Fn(Ino, &[u8]) + Send + Sync>;

/// See [`Fs::set_on_commit`].
pub type OnCommit = Arc<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for Fs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fs").field("cfg", &self.inner.cfg).finish()
    }
}

impl Fs {
    /// A core with no sNFTs yet (add them with [`Fs::add_token`]). Starts the upload
    /// workers and the committer on the current tokio runtime.
    pub fn new(cfg: FsConfig, store: Arc<dyn ContentStore>) -> FsResult<Fs> {
        std::fs::create_dir_all(cfg.cache_dir.join("staging"))?;
        std::fs::create_dir_all(cfg.cache_dir.join("journal"))?;
        let mut tree = Tree::new();
        if !cfg.single_token {
            tree.inodes.insert(
                ROOT_INO,
                Box::new(Inode {
                    token: None,
                    meta: Meta::new(0o555, cfg.uid, cfg.gid),
                    xattrs: Default::default(),
                    links: Vec::new(),
                    body: Body::Dir(DirBody {
                        entries: Some(Entries::default()),
                        ..Default::default()
                    }),
                    open_handles: 0,
                    group: None,
                    snapshot_of: None,
                }),
            );
        }
        let cfg_parallelism = cfg.upload_parallelism;
        let outage = Arc::new(data::outage::Outage::new(cfg.outage_grace));
        let node_health = Arc::new(ops::status::HealthTracker::default());
        let store: Arc<dyn ContentStore> = Arc::new(ops::status::ObservedStore {
            inner: store,
            health: node_health.clone(),
        });
        let stores = Arc::new(data::stores::Stores::new(store));
        let cancel = CancellationToken::new();
        let (uploads, jobs) = upload::Uploader::new(
            stores.clone(),
            outage.clone(),
            cancel.clone(),
            cfg.upload_parallelism,
            cfg.small_file_limit,
            cfg.writeback_delay,
        );
        let disk = data::disk_space::CacheDisk::new(
            cfg.cache_dir.clone(),
            cfg.disk_reserve,
            outage.clone(),
        );
        let fs = Fs {
            inner: Arc::new(Inner {
                disk,
                cfg,
                stores,
                tree: Mutex::new(tree),
                handles: Mutex::new(Default::default()),
                next_fh: AtomicU64::new(1),
                uploads,
                outage,
                staging: Default::default(),
                progress: Notify::new(),
                pages: Default::default(),
                invalidate: Mutex::new(None),
                on_commit: Mutex::new(None),
                commit_lock: tokio::sync::Mutex::new(()),
                unpinning: Mutex::new(Vec::new()),
                committing: Default::default(),
                ancestry: Default::default(),
                cancel,
                node_health,
                live_permits: Arc::new(tokio::sync::Semaphore::new(cfg_parallelism.max(1))),
                rt: tokio::runtime::Handle::current(),
                opened: Default::default(),
            }),
        };
        fs.inner.uploads.start(jobs, Arc::new(fs.clone()));
        persist::commit::spawn_committer(fs.clone());
        persist::commit::spawn_follower(fs.clone());
        Ok(fs)
    }

    /// How to make the kernel forget a cached entry (the FUSE session's notifier): called
    /// for each name another writer's merged commit changed, after the merge.
    pub fn set_invalidate(&self, invalidate: Invalidate) {
        *self
            .inner
            .invalidate
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(invalidate);
    }

    /// What to do after each commit (the daemon writes its status file, so `pxfs status`
    /// right after an `fsync` shows what it committed). Called from the commit, outside
    /// the tree's lock, before the `fsync` or flush waiting for it returns: must be quick.
    pub fn set_on_commit(&self, on_commit: OnCommit) {
        *self
            .inner
            .on_commit
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(on_commit);
    }

    /// Run the hook set by [`Fs::set_on_commit`], if any.
    pub(crate) fn tell_committed(&self) {
        let hook = self
            .inner
            .on_commit
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(hook) = hook {
            hook();
        }
    }

    /// The kernel notifier set by [`Fs::set_invalidate`], if any (none in-process).
    pub(crate) fn invalidator(&self) -> Option<Invalidate> {
        self.inner
            .invalidate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn tree(&self) -> TreeGuard<'_> {
        // A panic while holding the lock must not take the whole mount down with it.
        TreeGuard(
            Some(self.inner.tree.lock().unwrap_or_else(|e| e.into_inner())),
            &self.inner.disk,
        )
    }

    pub(crate) fn handles(&self) -> MutexGuard<'_, std::collections::HashMap<u64, Handle>> {
        self.inner.handles.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store for what belongs to sNFT `token` (`None`: to no sNFT in particular). On
    /// PollinationX's hosted nodes each sNFT has its own endpoint and login, so its uploads
    /// and reads go through its own store; elsewhere every sNFT shares one.
    pub(crate) fn store_of(&self, token: Option<TokenId>) -> Arc<dyn ContentStore> {
        self.inner.stores.of(token)
    }

    /// How token `token` stores its tree (plaintext for a token no longer mounted, and
    /// for what belongs to no token: the dApp's files).
    pub(crate) fn sealing(&self, token: Option<model::inode::TokenId>) -> data::content::Sealing {
        let tree = self.tree();
        match token.and_then(|t| tree.tokens.get(&t)) {
            Some(t) => t.sealing.clone(),
            None => Arc::new(crate::format::TreeCrypto::Plain),
        }
    }

    pub fn config(&self) -> &FsConfig {
        &self.inner.cfg
    }

    /// Stop background work without draining or committing (what a crash leaves), and
    /// close the journals so the cache can be mounted again.
    pub fn abort(&self) {
        self.inner.cancel.cancel();
        self.tree().tokens.clear();
    }

    /// Tests: the directory pages read or written so far are let go, as the bounded page
    /// cache of a long-running mount lets them go in time.
    #[doc(hidden)]
    pub fn forget_cached_pages(&self) {
        self.inner.pages.clear();
    }

    /// Files and bytes not yet uploaded, for progress reports.
    pub fn pending(&self) -> (u64, u64) {
        self.inner.uploads.pending()
    }

    /// Whether the version of file `ino` on the node is stored as chunks (docs/FORMAT.md
    /// §13): the model test (`tests/fs_model`) computes its expected usage from it.
    pub fn is_stored_chunked(&self, ino: model::inode::Ino) -> bool {
        let tree = self.tree();
        tree.get(ino)
            .ok()
            .and_then(|i| i.file())
            .and_then(|f| f.blob.as_ref())
            .is_some_and(|b| b.chunks.is_some())
    }

    /// `token`'s usage split by what it is made of, and whether it has changes the next
    /// commit writes (docs/FORMAT.md §7).
    pub fn usage_parts(&self, token: TokenId) -> FsResult<(model::ledger::UsageParts, bool)> {
        let tree = self.tree();
        let t = tree.token(token)?;
        Ok((t.ledger.parts(), t.is_dirty()))
    }

    /// Tokens currently mounted.
    pub fn tokens(&self) -> Vec<TokenId> {
        self.tree().tokens.keys().copied().collect()
    }
}
