//! What the core knows, read-only: [`Fs::status`] returns a snapshot per token (chain
//! state as last fed in, live usage, pending uploads, last commit) and the storage node's
//! health as the core's own requests saw it. The mount daemon publishes it for
//! `pxfs status` and `pxfs unmount`; nothing here changes the tree.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;

use crate::fs::Fs;
use crate::fs::model::inode::TokenId;
use crate::fs::store::{
    Blob, ContentStore, ContentStream, Publish, Published, StoreError, Stored, UsageRecord,
};

/// The whole core at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsStatus {
    /// Closed files not yet on the node, over all tokens.
    pub pending_files: u64,
    pub pending_bytes: u64,
    pub node: NodeHealth,
    pub tokens: Vec<TokenStatus>,
    /// Work stopped for a local reason (see `outage`), one line each.
    pub local_faults: Vec<String>,
    /// Files and directories in memory (bounded by `FsConfig::max_loaded_inodes`).
    pub loaded_inodes: u64,
    /// What each replica holds and how it answers (`[node] replicas`).
    pub replicas: Vec<crate::replica::ReplicaStatus>,
}

/// One mounted sNFT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStatus {
    pub token_id: TokenId,
    /// Quota and sync state as the chain last told the mount.
    pub quota: u64,
    pub overdue: bool,
    pub last_sync: u64,
    pub sync_deadline: u64,
    pub btns: Option<String>,
    /// Live file bytes and files, including what is staged.
    pub usage: u64,
    pub files: u64,
    /// Served read-only (a manifest could not be read, or `--read-only`).
    pub read_only: bool,
    /// Closed files of this token waiting for (or in) upload, and their bytes.
    pub pending_uploads: u64,
    pub pending_bytes: u64,
    /// When the last root was committed (this mount, else when `state.json` was written).
    pub last_commit: Option<SystemTime>,
    /// The last committed root manifest and usage document.
    pub root: Option<String>,
    pub usage_doc: Option<String>,
    pub seq: u64,
    /// `user.pxfs.encryption`: "none", or the scheme and key id.
    pub encryption: String,
    /// Conflict copies made by merges with other writers' commits since the mount.
    pub conflicts: u64,
}

/// How the storage node answered lately.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeHealth {
    /// The last request reached the node (an answer, even a refusal, counts).
    pub reachable: bool,
    pub last_ok: Option<SystemTime>,
    /// The last failure and when it happened (kept after recovery, for the record).
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    /// Blocks refused because their bytes did not match their CID (this process).
    pub corrupt_blocks: u64,
}

impl Fs {
    /// A snapshot of every mounted token and of the node's health.
    pub fn status(&self) -> FsStatus {
        let (pending_files, pending_bytes) = self.pending();
        let tree = self.tree();
        let loaded_inodes = tree.inodes.len() as u64;
        let journal_dir = self.config().cache_dir.join("journal");
        let tokens = tree
            .tokens
            .iter()
            .map(|(id, t)| {
                let (_, bytes) = self.inner.uploads.pending_of(*id);
                let last_commit = t.last_commit.or_else(|| {
                    t.committed
                        .root
                        .as_ref()
                        .and_then(|_| state_written(&journal_dir, *id))
                });
                TokenStatus {
                    token_id: *id,
                    quota: t.info.quota,
                    overdue: t.info.overdue,
                    last_sync: t.info.last_sync,
                    sync_deadline: t.info.sync_deadline,
                    btns: t.info.btns.clone(),
                    usage: t.usage,
                    files: t.files,
                    read_only: t.read_only || self.config().read_only,
                    pending_uploads: t.pending_uploads,
                    pending_bytes: bytes,
                    last_commit,
                    root: t.committed.root.clone(),
                    usage_doc: t.committed.usage_doc.clone(),
                    seq: t.committed.seq,
                    encryption: crate::fs::ops::xattr::encryption_of(&t.committed.encryption),
                    conflicts: t.conflicts,
                }
            })
            .collect();
        FsStatus {
            pending_files,
            pending_bytes,
            node: self.inner.node_health.get(),
            tokens,
            local_faults: self
                .inner
                .outage
                .local_faults()
                .into_iter()
                .map(|(what, d, e)| format!("{what} stopped for {}s: {e}", d.as_secs()))
                .collect(),
            loaded_inodes,
            replicas: self.replica_status(),
        }
    }

    /// Record the outcome of a request to the node made outside the core (the daemon's
    /// idle health probe), so an idle mount still knows whether its node answers.
    pub fn record_node_probe(&self, result: Result<(), String>) {
        match result {
            Ok(()) => self.inner.node_health.ok(),
            Err(e) => self.inner.node_health.failed(e),
        }
    }
}

/// A committed root from an earlier mount: `state.json` was written when it was committed.
fn state_written(journal_dir: &Path, token: TokenId) -> Option<SystemTime> {
    std::fs::metadata(journal_dir.join(token.to_string()).join("state.json"))
        .and_then(|m| m.modified())
        .ok()
}

/// The node's health as seen by every request the core makes.
#[derive(Debug, Default)]
pub(crate) struct HealthTracker(Mutex<NodeHealth>);

impl HealthTracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, NodeHealth> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self) -> NodeHealth {
        NodeHealth {
            corrupt_blocks: crate::integrity::corrupt_blocks(),
            ..self.lock().clone()
        }
    }

    fn ok(&self) {
        let mut h = self.lock();
        h.reachable = true;
        h.last_ok = Some(SystemTime::now());
    }

    fn failed(&self, error: String) {
        let mut h = self.lock();
        h.reachable = false;
        h.last_error = Some(error);
        h.last_error_at = Some(SystemTime::now());
    }

    fn observe<T>(&self, result: &Result<T, StoreError>) {
        match result {
            Ok(_) => self.ok(),
            // The node answered, but refused: it is there.
            Err(e) if !e.transient => self.ok(),
            Err(e) => self.failed(e.message.clone()),
        }
    }

    fn observe_failure<T>(&self, result: &Result<T, StoreError>) {
        if let Err(e) = result
            && e.transient
        {
            self.failed(e.message.clone());
        }
    }
}

/// The core's store, with every outcome recorded in the node's health.
pub(crate) struct ObservedStore {
    pub inner: Arc<dyn ContentStore>,
    pub health: Arc<HealthTracker>,
}

#[async_trait]
impl ContentStore for ObservedStore {
    async fn add_file(&self, path: &Path) -> Result<Blob, StoreError> {
        let r = self.inner.add_file(path).await;
        self.health.observe(&r);
        r
    }

    async fn add_files(&self, paths: &[PathBuf]) -> Result<Vec<Blob>, StoreError> {
        let r = self.inner.add_files(paths).await;
        self.health.observe(&r);
        r
    }

    async fn add_stream(
        &self,
        path: &Path,
        open: Arc<ContentStream>,
        seed: bool,
    ) -> Result<String, StoreError> {
        let r = self.inner.add_stream(path, open, seed).await;
        self.health.observe(&r);
        r
    }

    async fn add_objects(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        let r = self.inner.add_objects(objects).await;
        self.health.observe(&r);
        r
    }

    async fn add_manifest(&self, json: Bytes) -> Result<String, StoreError> {
        let r = self.inner.add_manifest(json).await;
        self.health.observe(&r);
        r
    }

    async fn add_manifests(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        let r = self.inner.add_manifests(objects).await;
        self.health.observe(&r);
        r
    }

    fn object_cid(&self, bytes: &[u8]) -> Option<String> {
        self.inner.object_cid(bytes)
    }

    // Reads may be answered from the chunk cache without asking the node: only their
    // failures say something about it.
    async fn fetch(&self, cid: &str) -> Result<Bytes, StoreError> {
        let r = self.inner.fetch(cid).await;
        self.health.observe_failure(&r);
        r
    }

    async fn read(&self, cid: &str, size: u64, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let r = self.inner.read(cid, size, offset, len).await;
        self.health.observe_failure(&r);
        r
    }

    async fn read_sealed(&self, cid: &str, len: u64) -> Result<Bytes, StoreError> {
        let r = self.inner.read_sealed(cid, len).await;
        self.health.observe_failure(&r);
        r
    }

    fn read_sealed_run(
        &self,
        objects: Vec<(String, u64)>,
    ) -> Option<futures::stream::BoxStream<'static, Result<Bytes, StoreError>>> {
        self.inner.read_sealed_run(objects)
    }

    fn keep_opened(&self, cid: &str, sealed: Bytes) {
        self.inner.keep_opened(cid, sealed)
    }

    async fn unpin(&self, cid: &str) -> Result<(), StoreError> {
        let r = self.inner.unpin(cid).await;
        self.health.observe(&r);
        r
    }

    async fn pin(&self, cid: &str) -> Result<(), StoreError> {
        let r = self.inner.pin(cid).await;
        self.health.observe(&r);
        r
    }

    async fn publish_usage(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        replaces: Option<&str>,
    ) -> Result<Publish, StoreError> {
        let r = self.inner.publish_usage(btns, record, replaces).await;
        self.health.observe(&r);
        r
    }

    async fn publish_usage_with(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        replaces: Option<&str>,
        pages: Vec<(String, Bytes)>,
        stored: &[Stored],
    ) -> Result<Publish, StoreError> {
        let r = self
            .inner
            .publish_usage_with(btns, record, replaces, pages, stored)
            .await;
        self.health.observe(&r);
        r
    }

    async fn resolve(&self, btns: &str) -> Result<Option<Published>, StoreError> {
        let r = self.inner.resolve(btns).await;
        self.health.observe(&r);
        r
    }

    async fn usage_doc(&self, cid: &str) -> Result<Published, StoreError> {
        let r = self.inner.usage_doc(cid).await;
        self.health.observe_failure(&r);
        r
    }

    fn give_back_cache(&self, bytes: u64) -> u64 {
        self.inner.give_back_cache(bytes)
    }

    async fn checks_publications(&self) -> bool {
        self.inner.checks_publications().await
    }

    async fn prepare_publishing(&self, btns: &str) {
        self.inner.prepare_publishing(btns).await
    }

    fn for_token(&self, token: u64) -> Option<Arc<dyn ContentStore>> {
        let inner = self.inner.for_token(token)?;
        Some(Arc::new(ObservedStore {
            inner,
            health: self.health.clone(),
        }))
    }
}
