//! The in-memory [`ContentStore`] the core's tests run against, with switches that make it
//! behave as a node that is down, slow, refusing, lying or failing.

use super::*;

/// Content-addressed in-memory store for tests. CIDs are a hash of the bytes, so equal
/// content gets equal CIDs as on a real node.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blobs: Mutex<HashMap<String, Bytes>>,
    pinned: Mutex<HashMap<String, u32>>,
    names: Mutex<HashMap<String, (String, UsageRecord)>>,
    offline: AtomicBool,
    refuse_content: AtomicBool,
    publish_fails: AtomicBool,
    race: Mutex<Option<(String, UsageRecord)>>,
    manifest_adds: AtomicUsize,
    manifest_bytes: AtomicU64,
    file_adds: AtomicUsize,
    streamed: AtomicU64,
    served: AtomicU64,
    fetches: AtomicU64,
    answer_delay_ms: AtomicU64,
    runs: Mutex<RunAnswer>,
    run_reads: AtomicU64,
    /// Objects whose `add_objects` calls are held until released.
    held: Mutex<Vec<Bytes>>,
    released: tokio::sync::Notify,
    /// `add_objects` calls that began before this epoch fail when they answer
    /// ([`MemoryStore::fail_adds_out`]); `adds_epoch` is the current one.
    adds_epoch: AtomicU64,
    fail_before: AtomicU64,
    /// What `add_objects` stores is there only once the call answers, as on a node.
    stored_at_answer: AtomicBool,
    /// `fetch`es of an object not here.
    misses: AtomicU64,
    /// The roots published, kept to check that every object of each is here.
    check_complete: AtomicBool,
    published_roots: Mutex<Vec<String>>,
}

/// How a [`MemoryStore`] answers [`ContentStore::read_sealed_run`]: a node's `cat` of
/// several paths, as an honest node gives it or as one that does not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunAnswer {
    /// No run reads: every chunk is read alone.
    #[default]
    Unsupported,
    /// The objects one after another.
    Honest,
    /// Only the first object (a node whose `cat` takes one path).
    FirstOnly,
    /// The objects in another order (each where another should be).
    Shuffled,
    /// Every object with a byte changed.
    Altered,
    /// A few objects, then a failure.
    BreaksOff,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// Simulate the node being down: every call fails with a transient error.
    pub fn set_offline(&self, offline: bool) {
        self.offline.store(offline, Ordering::SeqCst);
    }
    /// Simulate a node that refuses content for good: every content add fails with a
    /// permanent error (manifests and names still work).
    pub fn set_refusing_content(&self, refuse: bool) {
        self.refuse_content.store(refuse, Ordering::SeqCst);
    }
    /// Answer `add_objects` this much after storing what it added: a node whose answers
    /// take a while over a link (a caller that gives up meanwhile has still added them).
    pub fn set_answer_delay(&self, delay: std::time::Duration) {
        self.answer_delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }
    /// Hold every `add_objects` call carrying one of `objects` until
    /// [`MemoryStore::release_held`]: a node that sits on some requests and answers others.
    pub fn hold_adds_of(&self, objects: Vec<Bytes>) {
        *lock(&self.held) = objects;
    }
    /// The `add_objects` calls out now (stored, answers not sent: see
    /// [`MemoryStore::set_answer_delay`]) fail instead, and what they stored is gone: a
    /// node whose adds fail at the end (its disk filled while they were written). Later
    /// calls are not affected.
    pub fn fail_adds_out(&self) {
        let now = self.adds_epoch.fetch_add(1, Ordering::SeqCst) + 1;
        self.fail_before.store(now, Ordering::SeqCst);
    }
    /// What an `add_objects` call stores is there only once it answers (after
    /// [`MemoryStore::set_answer_delay`]), as on a node: until then a `fetch` fails.
    pub fn set_stored_at_answer(&self, at_answer: bool) {
        self.stored_at_answer.store(at_answer, Ordering::SeqCst);
    }
    /// How many `fetch`es asked for an object this node does not have.
    pub fn missed_fetches(&self) -> u64 {
        self.misses.load(Ordering::SeqCst)
    }
    /// Keep every root published from now on, for
    /// [`MemoryStore::incomplete_publications`].
    pub fn check_publications_complete(&self) {
        self.check_complete.store(true, Ordering::SeqCst);
    }
    /// The roots published since [`MemoryStore::check_publications_complete`] that name an
    /// object this node does not have (now: an add that failed after the publication).
    pub fn incomplete_publications(&self) -> Vec<String> {
        let roots = lock(&self.published_roots).clone();
        roots
            .into_iter()
            .filter(|r| self.measure(r).is_none())
            .collect()
    }
    /// Answer the held adds (and hold no more).
    pub fn release_held(&self) {
        lock(&self.held).clear();
        self.released.notify_waiters();
    }
    /// Make every `publish_usage` fail (transiently) while everything else works: a
    /// daemon that dies between writing a commit and publishing it.
    pub fn set_publish_fails(&self, fails: bool) {
        self.publish_fails.store(fails, Ordering::SeqCst);
    }
    /// Right after the next publication, publish `record` under `btns`: another writer's
    /// publication that won the race.
    pub fn lose_next_publish_to(&self, btns: &str, record: UsageRecord) {
        *lock(&self.race) = Some((btns.to_owned(), record));
    }
    pub fn is_offline(&self) -> bool {
        self.offline.load(Ordering::SeqCst)
    }
    /// How `read_sealed_run` answers from now on.
    pub fn set_run_answer(&self, answer: RunAnswer) {
        *lock(&self.runs) = answer;
    }
    /// How many `read_sealed_run` calls were answered (not [`RunAnswer::Unsupported`]).
    pub fn run_reads(&self) -> u64 {
        self.run_reads.load(Ordering::SeqCst)
    }
    /// How many manifests were added so far.
    pub fn manifest_adds(&self) -> usize {
        self.manifest_adds.load(Ordering::SeqCst)
    }
    /// Bytes of the manifests (tree nodes) added so far.
    pub fn manifest_bytes(&self) -> u64 {
        self.manifest_bytes.load(Ordering::SeqCst)
    }
    /// Content bytes received so far by `add_stream` and `add_objects` calls, finished or
    /// not.
    pub fn streamed_bytes(&self) -> u64 {
        self.streamed.load(Ordering::SeqCst)
    }
    /// Content bytes `read` returned so far (what a node's `cat` would have sent).
    pub fn served_bytes(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }
    /// How many objects `fetch` returned so far (directory pages, root nodes, manifests):
    /// what reading the tree cost.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::SeqCst)
    }
    /// How many file contents were added so far.
    pub fn file_adds(&self) -> usize {
        self.file_adds.load(Ordering::SeqCst)
    }
    /// `repo/gc`: every object not pinned is deleted, as a node's collection does; the
    /// bytes freed.
    pub fn collect_garbage(&self) -> u64 {
        let mut blobs = lock(&self.blobs);
        let pinned = lock(&self.pinned);
        let mut freed = 0;
        blobs.retain(|cid, b| {
            let keep = pinned.contains_key(cid);
            if !keep {
                freed += b.len() as u64;
            }
            keep
        });
        freed
    }
    /// Bytes of the pinned objects: what a collection keeps.
    pub fn pinned_bytes(&self) -> u64 {
        let blobs = lock(&self.blobs);
        let pinned = lock(&self.pinned);
        blobs
            .iter()
            .filter(|(cid, _)| pinned.contains_key(*cid))
            .map(|(_, b)| b.len() as u64)
            .sum()
    }
    pub fn is_pinned(&self, cid: &str) -> bool {
        lock(&self.pinned).contains_key(cid)
    }
    pub fn get(&self, cid: &str) -> Option<Bytes> {
        lock(&self.blobs).get(cid).cloned()
    }
    /// Every object stored, as a node operator sees them.
    pub fn objects(&self) -> Vec<Bytes> {
        lock(&self.blobs).values().cloned().collect()
    }
    /// Serves `bytes` under `cid`, as a node that substitutes one object for another would.
    pub fn replace(&self, cid: &str, bytes: Bytes) {
        lock(&self.blobs).insert(cid.to_owned(), bytes);
    }
    /// Changes one stored byte, as a dishonest or failing node would.
    pub fn flip_byte(&self, cid: &str, at: usize) {
        if let Some(b) = lock(&self.blobs).get_mut(cid) {
            let mut v = b.to_vec();
            if let Some(x) = v.get_mut(at) {
                *x ^= 0x01;
            }
            *b = Bytes::from(v);
        }
    }
    /// What the oracle measures for the tree under the root `root` (docs/FORMAT.md §7),
    /// from the bytes this store holds: (content bytes, manifest bytes), each distinct CID
    /// once. `None` if an object is missing or a manifest does not parse.
    pub fn measure(&self, root: &str) -> Option<(u64, u64)> {
        let mut seen = std::collections::HashSet::new();
        let (mut content, mut manifests) = (0u64, 0u64);
        let mut pending = vec![root.to_string()];
        while let Some(cid) = pending.pop() {
            if !seen.insert(cid.clone()) {
                continue;
            }
            let bytes = self.get(&cid)?;
            manifests += bytes.len() as u64;
            if crate::format::schema_of(&bytes).as_deref()
                != Some(crate::format::v1::manifest::SCHEMA)
            {
                let (_, lists) = crate::format::envelope::public(&bytes).ok()?;
                pending.extend(lists.nodes);
                for c in lists.data {
                    if seen.insert(c.clone()) {
                        content += self.get(&c)?.len() as u64;
                    }
                }
                continue;
            }
            let m = crate::format::v1::manifest::Manifest::parse(&bytes).ok()?;
            for e in m.entries {
                match (e.kind, e.cid) {
                    (crate::format::v1::manifest::EntryKind::Dir, Some(c)) => pending.push(c),
                    (crate::format::v1::manifest::EntryKind::File, Some(c))
                        if seen.insert(c.clone()) =>
                    {
                        content += self.get(&c)?.len() as u64;
                    }
                    _ => {}
                }
            }
        }
        Some((content, manifests))
    }
    /// The record last published under `btns`.
    pub fn published(&self, btns: &str) -> Option<UsageRecord> {
        lock(&self.names).get(btns).map(|(_, r)| r.clone())
    }
    /// The CID of the document last published under `btns`.
    pub fn published_cid(&self, btns: &str) -> Option<String> {
        lock(&self.names).get(btns).map(|(c, _)| c.clone())
    }
    /// Point `btns` at the document `cid` (added before), as a publication landing late
    /// would (a fake name system over this store: `tests/fs_two_machines_model.rs`).
    pub fn set_name(&self, btns: &str, cid: &str, record: UsageRecord) {
        lock(&self.names).insert(btns.to_owned(), (cid.to_owned(), record));
    }

    fn check_online(&self) -> Result<(), StoreError> {
        if self.offline.load(Ordering::SeqCst) {
            Err(StoreError::transient("node unreachable (simulated)"))
        } else {
            Ok(())
        }
    }

    fn check_accepts_content(&self) -> Result<(), StoreError> {
        self.check_online()?;
        if self.refuse_content.load(Ordering::SeqCst) {
            Err(StoreError::permanent("content refused (simulated)"))
        } else {
            Ok(())
        }
    }

    fn cid_of(data: &[u8]) -> String {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        data.hash(&mut h);
        format!("mem{:016x}{:08x}", h.finish(), data.len())
    }

    fn put(&self, data: Bytes) -> String {
        let cid = Self::cid_of(&data);
        // Added and pinned at once: a collection never sees it unpinned.
        let mut blobs = lock(&self.blobs);
        blobs.insert(cid.clone(), data);
        *lock(&self.pinned).entry(cid.clone()).or_default() += 1;
        cid
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl ContentStore for MemoryStore {
    async fn add_file(&self, path: &Path) -> Result<Blob, StoreError> {
        self.check_accepts_content()?;
        let data = std::fs::read(path).map_err(|e| StoreError::permanent(e.to_string()))?;
        let size = data.len() as u64;
        self.file_adds.fetch_add(1, Ordering::SeqCst);
        Ok(Blob::plain(self.put(Bytes::from(data)), size))
    }

    async fn add_files(&self, paths: &[PathBuf]) -> Result<Vec<Blob>, StoreError> {
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            out.push(self.add_file(p).await?);
        }
        Ok(out)
    }

    async fn add_stream(
        &self,
        _path: &Path,
        open: Arc<ContentStream>,
        _seed: bool,
    ) -> Result<String, StoreError> {
        self.check_accepts_content()?;
        let mut data = Vec::new();
        let mut chunks = open();
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|e| StoreError::permanent(e.to_string()))?;
            self.streamed
                .fetch_add(chunk.len() as u64, Ordering::SeqCst);
            data.extend_from_slice(&chunk);
        }
        self.file_adds.fetch_add(1, Ordering::SeqCst);
        Ok(self.put(Bytes::from(data)))
    }

    async fn add_objects(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        self.check_accepts_content()?;
        let epoch = self.adds_epoch.load(Ordering::SeqCst);
        loop {
            let released = self.released.notified();
            if !lock(&self.held).iter().any(|h| objects.contains(h)) {
                break;
            }
            released.await;
        }
        self.file_adds.fetch_add(objects.len(), Ordering::SeqCst);
        let bytes: usize = objects.iter().map(|o| o.len()).sum();
        self.streamed.fetch_add(bytes as u64, Ordering::SeqCst);
        let new: Vec<String> = objects
            .iter()
            .map(|o| Self::cid_of(o))
            .filter(|c| self.get(c).is_none())
            .collect();
        let at_answer = self.stored_at_answer.load(Ordering::SeqCst);
        let cids: Vec<String> = match at_answer {
            true => objects.iter().map(|o| Self::cid_of(o)).collect(),
            false => objects.iter().map(|o| self.put(o.clone())).collect(),
        };
        let delay = self.answer_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
        }
        if at_answer && epoch >= self.fail_before.load(Ordering::SeqCst) {
            for o in objects {
                self.put(o);
            }
        }
        if epoch < self.fail_before.load(Ordering::SeqCst) {
            let mut blobs = lock(&self.blobs);
            for c in &new {
                blobs.remove(c);
            }
            return Err(StoreError::transient("add failed at the end (simulated)"));
        }
        Ok(cids)
    }

    async fn add_manifest(&self, json: Bytes) -> Result<String, StoreError> {
        self.check_online()?;
        self.manifest_adds.fetch_add(1, Ordering::SeqCst);
        self.manifest_bytes
            .fetch_add(json.len() as u64, Ordering::SeqCst);
        Ok(self.put(json))
    }

    fn object_cid(&self, bytes: &[u8]) -> Option<String> {
        Some(Self::cid_of(bytes))
    }

    async fn fetch(&self, cid: &str) -> Result<Bytes, StoreError> {
        self.check_online()?;
        let bytes = self.get(cid).ok_or_else(|| {
            self.misses.fetch_add(1, Ordering::SeqCst);
            StoreError::permanent(format!("no such content {cid}"))
        })?;
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(bytes)
    }

    fn read_sealed_run(
        &self,
        objects: Vec<(String, u64)>,
    ) -> Option<futures::stream::BoxStream<'static, Result<Bytes, StoreError>>> {
        let answer = *lock(&self.runs);
        if answer == RunAnswer::Unsupported {
            return None;
        }
        self.run_reads.fetch_add(1, Ordering::SeqCst);
        let mut out: Vec<Result<Bytes, StoreError>> = Vec::new();
        for (cid, _) in &objects {
            let got = match self.check_online() {
                Ok(()) => self
                    .get(cid)
                    .ok_or_else(|| StoreError::permanent(format!("no such content {cid}"))),
                Err(e) => Err(e),
            };
            out.push(got);
        }
        match answer {
            RunAnswer::FirstOnly => out.truncate(1),
            RunAnswer::Shuffled => out.rotate_left(1),
            RunAnswer::Altered => {
                for object in out.iter_mut().flatten() {
                    let mut bytes = object.to_vec();
                    if let Some(b) = bytes.first_mut() {
                        *b ^= 1;
                    }
                    *object = Bytes::from(bytes);
                }
            }
            RunAnswer::BreaksOff => {
                out.truncate(2);
                out.push(Err(StoreError::transient("the answer broke off")));
            }
            RunAnswer::Unsupported | RunAnswer::Honest => {}
        }
        let sent: usize = out.iter().flatten().map(Bytes::len).sum();
        self.served.fetch_add(sent as u64, Ordering::SeqCst);
        Some(futures::stream::iter(out).boxed())
    }

    async fn read(
        &self,
        cid: &str,
        _size: u64,
        offset: u64,
        len: u64,
    ) -> Result<Bytes, StoreError> {
        self.check_online()?;
        let data = self
            .get(cid)
            .ok_or_else(|| StoreError::permanent(format!("no such content {cid}")))?;
        let start = (offset as usize).min(data.len());
        let end = (offset.saturating_add(len) as usize).min(data.len());
        self.served
            .fetch_add((end - start) as u64, Ordering::SeqCst);
        Ok(data.slice(start..end))
    }

    async fn unpin(&self, cid: &str) -> Result<(), StoreError> {
        self.check_online()?;
        lock(&self.pinned).remove(cid);
        Ok(())
    }

    async fn pin(&self, cid: &str) -> Result<(), StoreError> {
        self.check_online()?;
        let blobs = lock(&self.blobs);
        if !blobs.contains_key(cid) {
            return Err(StoreError::permanent(format!("{cid} is not on the node")));
        }
        *lock(&self.pinned).entry(cid.to_owned()).or_default() += 1;
        Ok(())
    }

    async fn publish_usage(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        _replaces: Option<&str>,
    ) -> Result<Publish, StoreError> {
        self.check_online()?;
        if self.publish_fails.load(Ordering::SeqCst) {
            return Err(StoreError::transient("publish failed (simulated)"));
        }
        let json = serde_json::to_vec(record).map_err(|e| StoreError::permanent(e.to_string()))?;
        if self.check_complete.load(Ordering::SeqCst) {
            lock(&self.published_roots).push(record.root.clone());
        }
        let cid = self.put(Bytes::from(json));
        if let Some(name) = btns {
            lock(&self.names).insert(name.to_string(), (cid.clone(), record.clone()));
        }
        let race = lock(&self.race).take();
        if let Some((name, winner)) = race {
            let json =
                serde_json::to_vec(&winner).map_err(|e| StoreError::permanent(e.to_string()))?;
            let won = self.put(Bytes::from(json));
            lock(&self.names).insert(name, (won, winner));
        }
        // Like IPNS: unchecked (what the settle window is for).
        Ok(Publish::Published {
            doc: cid,
            checked: false,
        })
    }

    async fn resolve(&self, btns: &str) -> Result<Option<Published>, StoreError> {
        self.check_online()?;
        Ok(lock(&self.names)
            .get(btns)
            .map(|(cid, r)| Published::of_record(cid, r)))
    }

    async fn usage_doc(&self, cid: &str) -> Result<Published, StoreError> {
        let bytes = self.fetch(cid).await?;
        let r: UsageRecord = serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::permanent(format!("usage document {cid}: {e}")))?;
        Ok(Published::of_record(cid, &r))
    }
}
