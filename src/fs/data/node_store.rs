//! [`ContentStore`] on a real node: the storage client for adds, pins and names, the chunk
//! cache for reads, the usage document for publishing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::btns::{self, UsageError};
use crate::cache::{CacheError, ChunkCache};
use crate::format::usage::{LastUpload as FormatLastUpload, UsageDoc};
use crate::fs::store::{
    Blob, ContentStore, ContentStream, Publish, Published, StoreError, Stored, UsageRecord,
};
use crate::integrity::IntegrityError;
use crate::storage::{NodeClient, StorageError};

/// Smallest upload copied into the read cache (see [`NodeStore::seed_cache`]).
const SEED_MIN_BYTES: u64 = 256 * 1024;
/// Largest tree node or v1 manifest fetched whole (a v1 manifest of 100,000 entries is about
/// 20 MiB); a node that serves more is refused rather than exhausting memory.
const MAX_NODE_OBJECT: u64 = 256 << 20;

pub struct NodeStore {
    client: NodeClient,
    cache: ChunkCache,
    chain_id: u64,
    contract: String,
    /// BTNS name → the node's key name for it (`None`: this node does not hold the key).
    key_names: Mutex<HashMap<String, Option<String>>>,
    /// The node answered that it does not offer `pin/rm` (a hosted gateway).
    no_unpin: AtomicBool,
}

impl NodeStore {
    pub fn new(client: NodeClient, cache: ChunkCache, chain_id: u64, contract: String) -> Self {
        NodeStore {
            client,
            cache,
            chain_id,
            contract,
            key_names: Mutex::new(HashMap::new()),
            no_unpin: AtomicBool::new(false),
        }
    }

    async fn key_name(&self, btns: &str) -> Result<Option<String>, StoreError> {
        if let Some(k) = self.lock_keys().get(btns) {
            return Ok(k.clone());
        }
        let key = btns::key_name_for(&self.client, btns)
            .await
            .map_err(usage_error)?;
        if key.is_none() {
            tracing::warn!(
                btns,
                "the node holds no key for this BTNS name: usage documents are added but not published"
            );
        }
        self.lock_keys().insert(btns.to_string(), key.clone());
        Ok(key)
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.key_names.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The first read after an upload should not go back to the node for what is on disk.
    /// Not for small files (below [`SEED_MIN_BYTES`]): one more file created per small file
    /// halved the rate of a small-file copy (ext4 inode allocation), while reading one back
    /// later costs a single request, and the kernel keeps what was just written anyway.
    fn seed_cache(&self, cid: &str, path: &Path, size: u64) {
        if size < SEED_MIN_BYTES {
            return;
        }
        let cache = self.cache.clone();
        let (cid, path) = (cid.to_string(), path.to_path_buf());
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cache.insert_local(&cid, &path) {
                tracing::debug!(cid, error = %e, "cache not seeded");
            }
        });
    }

    /// The usage document `record` is published as.
    fn usage_doc(&self, record: &UsageRecord) -> UsageDoc {
        let plain = record.encryption.is_none();
        UsageDoc {
            schema: crate::format::SCHEMA_USAGE.to_string(),
            chain_id: self.chain_id,
            contract: self.contract.clone(),
            token_id: record.token_id,
            quota: record.quota,
            usage: record.usage,
            root: record.root.clone(),
            seq: record.seq,
            updated_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            prev: record.prev.clone(),
            encryption: record.encryption.clone(),
            merged: record.merged.clone(),
            // What an encrypted tree holds is nobody else's business (FORMAT §8).
            files: plain.then_some(record.files),
            last_upload: record
                .last_upload
                .as_ref()
                .filter(|_| plain)
                .map(|l| FormatLastUpload {
                    path: l.path.clone().into_bytes(),
                    cid: l.cid.clone(),
                    size: l.size,
                }),
            px: None,
        }
    }

    /// One `add` of `objects` (parts named `NAME-i`); their CIDs, in order.
    async fn add_batch(&self, name: &str, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        let objects = objects
            .into_iter()
            .enumerate()
            .map(|(i, o)| (format!("{name}-{i}"), o))
            .collect();
        let added = self
            .client
            .add_batch_bytes(objects)
            .await
            .map_err(storage_error)?;
        Ok(added.into_iter().map(|a| a.hash).collect())
    }
}

fn storage_error(e: StorageError) -> StoreError {
    StoreError {
        transient: e.is_transient(),
        message: e.to_string(),
    }
}

fn integrity_error(e: IntegrityError) -> StoreError {
    match e {
        IntegrityError::Storage(s) => storage_error(s),
        other => StoreError::permanent(other.to_string()),
    }
}

fn usage_error(e: UsageError) -> StoreError {
    match e {
        UsageError::Storage(s) => storage_error(s),
        other => StoreError::permanent(other.to_string()),
    }
}

fn cache_error(e: CacheError) -> StoreError {
    let transient = matches!(&e, CacheError::Fetch { source, .. } if source.is_transient());
    StoreError {
        transient,
        message: e.to_string(),
    }
}

fn file_size(path: &Path) -> Result<u64, StoreError> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| StoreError::permanent(format!("{}: {e}", path.display())))
}

#[async_trait]
impl ContentStore for NodeStore {
    async fn add_file(&self, path: &Path) -> Result<Blob, StoreError> {
        let size = file_size(path)?;
        let added = self.client.add_path(path).await.map_err(storage_error)?;
        self.seed_cache(&added.hash, path, size);
        // `Size` in the answer is the DAG's size; the content size is the file's.
        Ok(Blob::plain(added.hash, size))
    }

    async fn add_files(&self, paths: &[PathBuf]) -> Result<Vec<Blob>, StoreError> {
        let mut sizes = Vec::with_capacity(paths.len());
        let mut files = Vec::with_capacity(paths.len());
        for p in paths {
            sizes.push(file_size(p)?);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, p.clone()));
        }
        let added = self.client.add_batch(files).await.map_err(storage_error)?;
        Ok(added
            .into_iter()
            .zip(sizes)
            // Batches are small files: not seeded (see `seed_cache`).
            .map(|(a, size)| Blob::plain(a.hash, size))
            .collect())
    }

    async fn add_stream(
        &self,
        path: &Path,
        open: Arc<ContentStream>,
        seed: bool,
    ) -> Result<String, StoreError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let added = self
            .client
            .add_stream(&name, &*open)
            .await
            .map_err(storage_error)?;
        if seed {
            self.seed_cache(&added.hash, path, file_size(path).unwrap_or(0));
        }
        Ok(added.hash)
    }

    async fn add_objects(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        self.add_batch("object", objects).await
    }

    async fn add_manifests(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        self.add_batch("page", objects).await
    }

    async fn add_manifest(&self, json: Bytes) -> Result<String, StoreError> {
        let added = self
            .client
            .add_bytes("dir.json", json)
            .await
            .map_err(storage_error)?;
        Ok(added.hash)
    }

    fn object_cid(&self, bytes: &[u8]) -> Option<String> {
        // One raw block (docs/FORMAT.md §1.1); larger objects are DAGs.
        (bytes.len() <= 262_144).then(|| crate::format::store::raw_cid(bytes))
    }

    async fn fetch(&self, cid: &str) -> Result<Bytes, StoreError> {
        crate::integrity::object(&self.client, cid, MAX_NODE_OBJECT)
            .await
            .map_err(integrity_error)
    }

    async fn read(&self, cid: &str, size: u64, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        self.cache
            .read(cid, size, offset, len)
            .await
            .map_err(cache_error)
    }

    async fn read_sealed(&self, cid: &str, len: u64) -> Result<Bytes, StoreError> {
        self.cache.read_sealed(cid, len).await.map_err(cache_error)
    }

    fn read_sealed_run(
        &self,
        objects: Vec<(String, u64)>,
    ) -> Option<futures::stream::BoxStream<'static, Result<Bytes, StoreError>>> {
        use futures::StreamExt;
        let run = self.cache.read_sealed_run(objects);
        Some(run.map(|r| r.map_err(cache_error)).boxed())
    }

    fn keep_opened(&self, cid: &str, sealed: Bytes) {
        self.cache.keep(cid, sealed);
    }

    async fn unpin(&self, cid: &str) -> Result<(), StoreError> {
        if self.no_unpin.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.client.pin_rm(cid).await {
            // A hosted gateway without `pin/*`: asked once, not once per old version.
            Err(StorageError::Unsupported { path, .. }) => {
                if !self.no_unpin.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        path,
                        "the node does not offer unpinning: old versions stay pinned there"
                    );
                }
                Ok(())
            }
            r => r.map_err(storage_error),
        }
    }

    async fn pin(&self, cid: &str) -> Result<(), StoreError> {
        match self.client.pin_add(cid).await {
            // No `pin/*` (a hosted gateway): nothing there is ever unpinned either.
            Err(StorageError::Unsupported { .. }) => Ok(()),
            r => r.map_err(storage_error),
        }
    }

    async fn publish_usage(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        replaces: Option<&str>,
    ) -> Result<Publish, StoreError> {
        self.publish_usage_with(btns, record, replaces, Vec::new(), &[])
            .await
    }

    async fn publish_usage_with(
        &self,
        btns: Option<&str>,
        record: &UsageRecord,
        replaces: Option<&str>,
        pages: Vec<(String, Bytes)>,
        stored: &[Stored],
    ) -> Result<Publish, StoreError> {
        let doc = self.usage_doc(record);
        let key = match btns {
            Some(b) => self.key_name(b).await?,
            None => None,
        };
        let json = doc
            .to_json()
            .map_err(|e| StoreError::permanent(e.to_string()))?;
        // The pages and the document in one add: nothing names either until the publish.
        let mut objects: Vec<Bytes> = pages.iter().map(|(_, b)| b.clone()).collect();
        objects.push(Bytes::from(json));
        let mut cids = self.add_batch("commit", objects).await?;
        let doc_cid = cids
            .pop()
            .ok_or_else(|| StoreError::permanent("the node answered an add with nothing"))?;
        crate::fs::store::check_added(&pages, &cids).map_err(StoreError::permanent)?;
        // The versions whose last adds went out before this one's: all answered, all stored.
        Stored::all(stored).await?;
        match key {
            Some(key) => {
                let published = btns::publish_added(
                    &self.client,
                    &key,
                    (doc.token_id, doc.seq),
                    &doc_cid,
                    replaces,
                );
                match published.await {
                    Ok(p) => Ok(Publish::Published {
                        doc: p.cid,
                        checked: p.checked,
                    }),
                    Err(UsageError::Moved { .. }) => Ok(Publish::Moved),
                    Err(e) => Err(usage_error(e)),
                }
            }
            // No name: nothing else can replace it.
            None => Ok(Publish::Published {
                doc: doc_cid,
                checked: true,
            }),
        }
    }

    async fn resolve(&self, btns: &str) -> Result<Option<Published>, StoreError> {
        match btns::resolve(&self.client, btns).await {
            Ok((doc_cid, doc)) => Ok(Some(Published::of(&doc_cid, &doc))),
            // Nothing was ever published under a freshly minted token's name.
            Err(UsageError::Storage(e))
                if e.node_message().is_some_and(|m| m.contains("not found")) =>
            {
                Ok(None)
            }
            Err(e) => Err(usage_error(e)),
        }
    }

    async fn checks_publications(&self) -> bool {
        self.client.checks_publications().await
    }

    async fn prepare_publishing(&self, btns: &str) {
        if self.client.checks_publications().await {
            tracing::debug!("the node checks publications");
        }
        if let Err(e) = self.key_name(btns).await {
            tracing::debug!(btns, error = %e, "the key's name is asked again at the first commit");
        }
    }

    fn give_back_cache(&self, bytes: u64) -> u64 {
        self.cache.give_back(bytes)
    }

    fn for_token(&self, token: u64) -> Option<Arc<dyn ContentStore>> {
        if !self.client.is_hosted() || self.client.hosted_token().is_some() {
            return None;
        }
        let client = self.client.for_token(token);
        Some(Arc::new(NodeStore::new(
            client.clone(),
            self.cache.with_client(client),
            self.chain_id,
            self.contract.clone(),
        )))
    }
}
