//! A model of the multi-writer protocol (docs/FORMAT.md §9): two or three machines (filesystem
//! cores, each with its own cache) write and fsync files at the same time against one sNFT
//! whose name system is a fake with random delays: a publication lands after a random
//! delay below a quarter of the settle window (so publications land out of order), and
//! resolves are dropped at random (they fail). After every acknowledged fsync, the
//! latest landed document must hold every file whose fsync returned before, under its name
//! (no file is written twice, so no conflict copy is expected). A fixed budget of seeds
//! runs (`PXFS_MODEL_SEEDS`, 12 by default; `PXFS_MODEL_SEED` runs one); a failure prints
//! the seed and the schedule: every publication, landing and resolve, in order.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use pxfs::format::history::Policy;
use pxfs::fs::store::{
    Blob, ContentStore, ContentStream, MemoryStore, Publish, Published, StoreError, UsageRecord,
};
use pxfs::fs::{Clock, Fs, FsConfig, ROOT_INO, TokenInfo};
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicI64, Ordering};

const TOKEN: u64 = 7;
const BTNS: &str = "k51-token-7";
/// The settle window the machines use; landings take at most a quarter of it.
const WINDOW: Duration = Duration::from_millis(120);

/// The name system every machine sees: the documents added, the publications on their
/// way, and what landed last (kept in `store`'s own name table, which the checker reads).
struct Names {
    store: Arc<MemoryStore>,
    rng: rand::rngs::StdRng,
    /// (lands at, CID, record, publisher), not landed yet.
    flying: Vec<(Instant, String, UsageRecord, usize)>,
    log: Vec<String>,
    started: Instant,
    /// Publications a checking node refused (the record had moved).
    refused: usize,
    /// Resolves are dropped only once every machine is mounted (a mount that cannot read
    /// the record at start serves the sNFT read-only, another test's subject).
    dropping: bool,
}

impl Names {
    fn note(&mut self, line: String) {
        let ms = self.started.elapsed().as_millis();
        self.log.push(format!("{ms:>6} ms  {line}"));
    }

    /// Land every publication whose time has come, in the order of their landing times.
    fn land(&mut self) {
        let now = Instant::now();
        self.flying.sort_by_key(|f| f.0);
        while self.flying.first().is_some_and(|f| f.0 <= now) {
            let (_, cid, record, who) = self.flying.remove(0);
            self.store.set_name(BTNS, &cid, record.clone());
            self.note(format!("lands   {cid} (seq {}, from m{who})", record.seq));
        }
    }
}

/// One machine's view of the node: the content is `store`'s, the name is [`Names`].
struct FakeNode {
    machine: usize,
    store: Arc<MemoryStore>,
    names: Arc<Mutex<Names>>,
    /// Like pxfs's node (docs/FORMAT.md §9.3): a publication applies at once, and only if
    /// the record is the one it names; otherwise it is refused.
    checking: bool,
}

impl FakeNode {
    fn names(&self) -> std::sync::MutexGuard<'_, Names> {
        self.names.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl ContentStore for FakeNode {
    async fn add_file(&self, path: &Path) -> Result<Blob, StoreError> {
        self.store.add_file(path).await
    }
    async fn add_files(&self, paths: &[PathBuf]) -> Result<Vec<Blob>, StoreError> {
        self.store.add_files(paths).await
    }
    async fn add_stream(
        &self,
        path: &Path,
        open: Arc<ContentStream>,
        seed: bool,
    ) -> Result<String, StoreError> {
        self.store.add_stream(path, open, seed).await
    }
    async fn add_objects(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        self.store.add_objects(objects).await
    }
    async fn add_manifest(&self, json: Bytes) -> Result<String, StoreError> {
        self.store.add_manifest(json).await
    }
    async fn add_manifests(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        self.store.add_manifests(objects).await
    }
    fn object_cid(&self, bytes: &[u8]) -> Option<String> {
        self.store.object_cid(bytes)
    }
    async fn fetch(&self, cid: &str) -> Result<Bytes, StoreError> {
        self.store.fetch(cid).await
    }
    async fn read(&self, cid: &str, size: u64, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        self.store.read(cid, size, offset, len).await
    }
    async fn unpin(&self, cid: &str) -> Result<(), StoreError> {
        self.store.unpin(cid).await
    }
    async fn pin(&self, cid: &str) -> Result<(), StoreError> {
        self.store.pin(cid).await
    }
    async fn usage_doc(&self, cid: &str) -> Result<Published, StoreError> {
        self.store.usage_doc(cid).await
    }

    async fn checks_publications(&self) -> bool {
        self.checking
    }

    async fn publish_usage(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        replaces: Option<&str>,
    ) -> Result<Publish, StoreError> {
        if self.checking && btns.is_some() {
            let Publish::Published { doc: cid, .. } =
                self.store.publish_usage(None, record, None).await?
            else {
                unreachable!("a document without a name is always added");
            };
            let mut names = self.names();
            let now = self.store.published_cid(BTNS);
            if now.as_deref() != replaces {
                names.refused += 1;
                names.note(format!(
                    "m{} publication of {cid} refused: it replaces {replaces:?}, the record is {now:?}",
                    self.machine
                ));
                return Ok(Publish::Moved);
            }
            self.store.set_name(BTNS, &cid, record.clone());
            names.note(format!(
                "m{} publishes {cid} checked (seq {}, prev {:?}, merged {:?})",
                self.machine, record.seq, record.prev, record.merged
            ));
            return Ok(Publish::Published {
                doc: cid,
                checked: true,
            });
        }
        // The document is added now; the name points at it after a delay (unchecked,
        // like IPNS: what the settle window is for).
        let Publish::Published { doc: cid, .. } =
            self.store.publish_usage(None, record, None).await?
        else {
            unreachable!("a document without a name is always added");
        };
        if btns.is_some() {
            let mut names = self.names();
            names.land();
            let delay = names.rng.random_range(0..=WINDOW.as_millis() as u64 / 4);
            let at = Instant::now() + Duration::from_millis(delay);
            names
                .flying
                .push((at, cid.clone(), record.clone(), self.machine));
            names.note(format!(
                "m{} publishes {cid} (seq {}, prev {:?}, merged {:?}), lands in {delay} ms",
                self.machine, record.seq, record.prev, record.merged
            ));
        }
        Ok(Publish::Published {
            doc: cid,
            checked: false,
        })
    }

    async fn resolve(&self, btns: &str) -> Result<Option<Published>, StoreError> {
        let mut names = self.names();
        names.land();
        if names.dropping && names.rng.random_bool(0.2) {
            names.note(format!("m{} resolve dropped", self.machine));
            return Err(StoreError::transient("resolve dropped (model)"));
        }
        let p = self.store.published(btns).map(|r| {
            let cid = self.store.published_cid(btns).unwrap_or_default();
            Published::of_record(&cid, &r)
        });
        let shown = p.as_ref().map(|p| p.doc_cid.clone());
        names.note(format!("m{} resolves {shown:?}", self.machine));
        Ok(p)
    }
}

fn info() -> TokenInfo {
    TokenInfo {
        token_id: TOKEN,
        quota: u64::MAX,
        overdue: false,
        last_sync: 1,
        sync_deadline: 2,
        btns: Some(BTNS.into()),
        synced_usage: 0,
    }
}

/// History on (a clock shared by the machines that ticks a second per commit, so every
/// commit is a version of its own and all are kept), or off.
fn history_of(on: bool) -> (Policy, Option<Clock>) {
    if !on {
        return (Policy::OFF, None);
    }
    let policy = Policy {
        keep_all_secs: 1 << 30,
        ..Policy::default()
    };
    let now = Arc::new(AtomicI64::new(1_796_040_000 * NS));
    let clock = Clock(Arc::new(move || now.fetch_add(NS, Ordering::SeqCst) + NS));
    (policy, Some(clock))
}

const NS: i64 = 1_000_000_000;

async fn machine(node: FakeNode, cache: &Path, history: &(Policy, Option<Clock>)) -> Fs {
    let mut cfg = FsConfig::new(cache.to_path_buf());
    cfg.history = history.0;
    cfg.clock = history.1.clone();
    cfg.single_token = true;
    cfg.commit_interval = Duration::from_secs(3600); // commits only for fsync
    cfg.settle_window = WINDOW;
    cfg.outage_grace = Duration::from_secs(30);
    let fs = Fs::new(cfg, Arc::new(node)).unwrap();
    fs.add_token(info()).await.unwrap();
    fs
}

/// The names in the root of the tree the name points at now (a machine with an empty
/// cache reading the latest landed document).
async fn latest_names(store: &Arc<MemoryStore>) -> BTreeSet<String> {
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = FsConfig::new(cache.path().to_path_buf());
    cfg.single_token = true;
    cfg.commit_interval = Duration::from_secs(3600);
    let fs = Fs::new(cfg, store.clone()).unwrap();
    fs.add_token(info()).await.unwrap();
    let names = fs
        .readdir(ROOT_INO, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8(e.name).unwrap())
        .filter(|n| n != "." && n != "..")
        .collect();
    fs.abort();
    names
}

/// After the run, with history on: the latest document's usage is the graph's (each
/// distinct object of the tree and of every kept version once), and every kept version
/// reads back from a fresh cache, holding only fsynced files, each with its own bytes.
async fn check_history(store: &Arc<MemoryStore>, acked: &BTreeSet<String>) -> Result<(), String> {
    let published = store.published(BTNS).ok_or("nothing published")?;
    let (c, m) = store
        .measure(&published.root)
        .ok_or("the graph is not whole")?;
    if published.usage != c + m {
        return Err(format!(
            "published usage {} is not the graph's {}",
            published.usage,
            c + m
        ));
    }
    let cache = tempfile::tempdir().unwrap();
    let mut cfg = FsConfig::new(cache.path().to_path_buf());
    cfg.single_token = true;
    cfg.commit_interval = Duration::from_secs(3600);
    let fs = Fs::new(cfg, store.clone()).unwrap();
    fs.add_token(info()).await.unwrap();
    let snaps = fs
        .lookup(ROOT_INO, ".snapshots")
        .await
        .map_err(|e| e.to_string())?;
    let versions = fs.readdir(snaps.ino, 0).await.map_err(|e| e.to_string())?;
    let mut kept = 0;
    for v in versions
        .iter()
        .filter(|e| e.name != b"." && e.name != b"..")
    {
        kept += 1;
        let dir = fs
            .lookup(snaps.ino, &v.name)
            .await
            .map_err(|e| e.to_string())?;
        for e in fs.readdir(dir.ino, 0).await.map_err(|e| e.to_string())? {
            let name = String::from_utf8(e.name).unwrap();
            if name == "." || name == ".." {
                continue;
            }
            if !acked.contains(&name) {
                return Err(format!("a kept version holds {name}, never fsynced"));
            }
            let f = fs.lookup(dir.ino, &name).await.map_err(|e| e.to_string())?;
            let fh = fs
                .open(f.ino, libc::O_RDONLY)
                .await
                .map_err(|e| e.to_string())?;
            let bytes = fs.read(fh, 0, 4096).await.map_err(|e| e.to_string())?;
            fs.release(fh).await.unwrap();
            if bytes[..] != *name.as_bytes() {
                return Err(format!("{name} in a kept version reads {bytes:?}"));
            }
        }
    }
    fs.abort();
    if kept == 0 {
        return Err("no version kept".into());
    }
    Ok(())
}

/// One seeded run: `machines` machines, `files` fsynced files each.
/// `Ok`: the publications refused.
async fn run(seed: u64, machines: usize, files: usize, checking: bool) -> Result<usize, String> {
    let history = history_of(!seed.is_multiple_of(3));
    let store = Arc::new(MemoryStore::new());
    let names = Arc::new(Mutex::new(Names {
        store: store.clone(),
        rng: rand::rngs::StdRng::seed_from_u64(seed),
        flying: Vec::new(),
        log: Vec::new(),
        started: Instant::now(),
        refused: 0,
        dropping: false,
    }));
    let caches: Vec<tempfile::TempDir> = (0..machines)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut fss = Vec::new();
    for (m, cache) in caches.iter().enumerate() {
        let node = FakeNode {
            machine: m,
            store: store.clone(),
            names: names.clone(),
            checking,
        };
        fss.push(machine(node, cache.path(), &history).await);
    }
    names.lock().unwrap().dropping = true;
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let failure: Arc<Mutex<Option<String>>> = Arc::default();
    // Checks run one at a time, each after an fsync returned.
    let checking = Arc::new(tokio::sync::Mutex::new(()));
    let mut tasks = Vec::new();
    for (m, fs) in fss.iter().enumerate() {
        let fs = fs.clone();
        let (acked, failure, checking, store, names) = (
            acked.clone(),
            failure.clone(),
            checking.clone(),
            store.clone(),
            names.clone(),
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 31 + m as u64);
        tasks.push(tokio::spawn(async move {
            for i in 0..files {
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
                let name = format!("m{m}-{i:03}");
                let (_, fh) = fs
                    .create(ROOT_INO, &name, 0o644, libc::O_RDWR, 0, 0)
                    .await
                    .unwrap();
                fs.write(fh, 0, name.as_bytes()).await.unwrap();
                fs.fsync(fh).await.unwrap();
                fs.release(fh).await.unwrap();
                let _one = checking.lock().await;
                acked.lock().unwrap().insert(name.clone());
                names.lock().unwrap().land();
                names
                    .lock()
                    .unwrap()
                    .note(format!("m{m} fsync of {name} returned"));
                let want = acked.lock().unwrap().clone();
                let shown = latest_names(&store).await;
                let missing: Vec<&String> = want.difference(&shown).collect();
                if !missing.is_empty() {
                    let mut f = failure.lock().unwrap();
                    if f.is_none() {
                        *f = Some(format!(
                            "after m{m}'s fsync of {name}, the latest document lacks \
                             {missing:?}"
                        ));
                    }
                    return;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for fs in &fss {
        fs.abort();
    }
    if history.1.is_some() && failure.lock().unwrap().is_none() {
        // What is still on its way lands.
        tokio::time::sleep(WINDOW).await;
        names.lock().unwrap().land();
        let acked = acked.lock().unwrap().clone();
        if let Err(e) = check_history(&store, &acked).await {
            *failure.lock().unwrap() = Some(e);
        }
    }
    match failure.lock().unwrap().take() {
        None => Ok(names.lock().unwrap().refused),
        Some(f) => {
            let log = names.lock().unwrap().log.join("\n");
            Err(format!(
                "seed {seed} ({machines} machines): {f}\nschedule:\n{log}"
            ))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_writing_at_once_keep_every_fsynced_file_in_the_latest_document() {
    run_seeds(false).await;
}

/// The same on a node that checks publications: the machines skip the resolve before a
/// commit while the record is their own and are refused when another got in first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn machines_writing_at_once_on_a_node_that_checks_publications_keep_every_fsynced_file() {
    run_seeds(true).await;
}

async fn run_seeds(checking: bool) {
    let seeds: Vec<u64> = match std::env::var("PXFS_MODEL_SEED") {
        Ok(s) => vec![s.parse().expect("PXFS_MODEL_SEED is a number")],
        Err(_) => {
            let n = std::env::var("PXFS_MODEL_SEEDS")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(12u64);
            (1..=n).collect()
        }
    };
    let mut refused = 0;
    for &seed in &seeds {
        let machines = 2 + (seed % 2) as usize;
        match run(seed, machines, 15, checking).await {
            Ok(n) => refused += n,
            Err(schedule) => panic!("{schedule}"),
        }
    }
    if checking && seeds.len() > 2 {
        assert!(
            refused > 0,
            "no publication was refused: the race was not run"
        );
    }
    eprintln!("publications refused: {refused}");
}
