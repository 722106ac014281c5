//! Storage client: the BTFS (`/api/v1`) / Kubo (`/api/v0`) HTTP RPC subset pxfs uses. The
//! only code in pxfs that speaks to the node.
//!
//! Every call is a POST with the same parameter names on both nodes. Uploads are streamed
//! from disk (never a whole file in memory), downloads can be streamed, and one pooled
//! HTTP client is shared by all clones of a [`NodeClient`]. Failures that may pass
//! (connection refused, timeouts, a proxy's 5xx) are retried with exponential backoff;
//! the node's own error answers are not.

mod auth;
mod cat;
pub mod cid;
mod error;
mod responses;
mod transport;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::multipart::{Form, Part};
use tracing::debug;

use crate::config::NodeConfig;

mod fallback;
mod publish;

/// What builds a request body again for each attempt.
type UploadMaker = dyn Fn() -> Result<Upload, StorageError> + Send + Sync;

pub use auth::{Grant, HostedLogin};
pub use error::StorageError;
pub use publish::{CHECKING_NODE, Publication, REPLACES_ARG, moved_message};
use responses::{AddAnswerError, KeyList, Pins, Resolved};
pub use responses::{Added, BlockStat, KeyInfo, Published, RepoStat, VersionInfo};
use transport::{Access, Deadline, Progress, Transport, Upload};

/// Connecting may take at most this long, even when the request timeout is longer:
/// a node that does not accept a connection within it is not there.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Read size when streaming a file into a request body: large enough that a 1 GiB upload
/// is a few thousand chunks, small enough to stay cheap per request.
const UPLOAD_READ_CHUNK: usize = 256 * 1024;
/// Files up to this size are read whole when their part is sent (one read, no descriptor
/// kept open).
const SMALL_FILE: u64 = 64 * 1024;
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
const DEFAULT_RETRIES: u32 = 4;

/// Client for one node. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct NodeClient {
    inner: Arc<Transport>,
    /// Replicas that reads fall back to (empty: none).
    fallbacks: Arc<fallback::Fallbacks>,
}

impl std::fmt::Debug for NodeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hosted = match &self.inner.access {
            Access::Fixed => None,
            Access::Hosted { token, .. } => Some(*token),
        };
        // Never the token or JWT: the client does not keep them where Debug could see.
        f.debug_struct("NodeClient")
            .field("base", &self.inner.base)
            .field("hosted_token", &hosted)
            .field("timeout", &self.inner.timeout)
            .field("retries", &self.inner.retries)
            .finish()
    }
}

impl NodeClient {
    /// A client for the node in `cfg`, with its bearer token, timeout and retries.
    pub fn new(cfg: &NodeConfig) -> Result<NodeClient, StorageError> {
        if cfg.auth == crate::config::NodeAuth::PollinationX {
            return Err(StorageError::Config(
                "[node] auth = \"pollinationx\" (hosted nodes) works for `pxfs mount` only; \
                 this command needs a node of your own (auth = \"bearer\")"
                    .into(),
            ));
        }
        let token = cfg
            .bearer_token()
            .map_err(|e| StorageError::Config(e.to_string()))?;
        let url = reqwest::Url::parse(&cfg.api_url)
            .map_err(|e| StorageError::Config(format!("api_url {:?}: {e}", cfg.api_url)))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(StorageError::Config(format!(
                "api_url {:?}: only http and https are supported",
                cfg.api_url
            )));
        }
        Self::build(
            &cfg.api_url,
            &cfg.api_prefix,
            token.as_deref(),
            Duration::from_secs(cfg.timeout_secs.max(1)),
            cfg.retries,
        )
    }

    /// A client with default timeout and retries and no token (tests, devnet).
    pub fn from_url(api_url: &str, api_prefix: &str) -> NodeClient {
        match Self::build(api_url, api_prefix, None, DEFAULT_TIMEOUT, DEFAULT_RETRIES) {
            Ok(c) => c,
            // Building only fails when the TLS backend cannot initialise; a plain client
            // is the best that can be had then.
            Err(_) => NodeClient {
                inner: Arc::new(Transport {
                    http: reqwest::Client::new(),
                    base: join_base(api_url, api_prefix),
                    prefix: normalize_prefix(api_prefix),
                    timeout: DEFAULT_TIMEOUT,
                    retries: DEFAULT_RETRIES,
                    access: Access::Fixed,
                    checks_publish: Default::default(),
                }),
                fallbacks: Default::default(),
            },
        }
    }

    fn build(
        api_url: &str,
        api_prefix: &str,
        token: Option<&str>,
        timeout: Duration,
        retries: u32,
    ) -> Result<NodeClient, StorageError> {
        let mut headers = HeaderMap::new();
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| StorageError::Config("bearer token has invalid characters".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(64)
            .build()
            .map_err(|e| StorageError::Config(transport::error_chain(&e)))?;
        Ok(NodeClient {
            inner: Arc::new(Transport {
                http,
                base: join_base(api_url, api_prefix),
                prefix: normalize_prefix(api_prefix),
                timeout,
                retries,
                access: Access::Fixed,
                checks_publish: Default::default(),
            }),
            fallbacks: Default::default(),
        })
    }

    /// A client for PollinationX's hosted nodes (`[node] auth = "pollinationx"`): each
    /// request goes to the sNFT's endpoint with its JWT, both from `login`. Bind it to an
    /// sNFT with [`NodeClient::for_token`] before use.
    pub fn hosted(cfg: &NodeConfig, login: Arc<HostedLogin>) -> Result<NodeClient, StorageError> {
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        // Hosted nodes are BTFS: `/api/v1` (error messages and `/btfs/` paths); the
        // endpoint itself comes from the login.
        let plain = Self::build(
            "http://hosted.invalid",
            "/api/v1",
            None,
            timeout,
            cfg.retries,
        )?;
        Ok(NodeClient {
            inner: Arc::new(Transport {
                http: plain.inner.http.clone(),
                base: String::new(),
                prefix: plain.inner.prefix.clone(),
                timeout,
                retries: cfg.retries,
                access: Access::Hosted { login, token: None },
                checks_publish: Default::default(),
            }),
            fallbacks: Default::default(),
        })
    }

    /// This client for sNFT `token`: on a hosted node, with that sNFT's endpoint and JWT
    /// (sharing the connection pool and the login); otherwise the same client.
    pub fn for_token(&self, token: u64) -> NodeClient {
        match &self.inner.access {
            Access::Fixed => self.clone(),
            Access::Hosted { login, .. } => NodeClient {
                inner: Arc::new(Transport {
                    http: self.inner.http.clone(),
                    base: String::new(),
                    prefix: self.inner.prefix.clone(),
                    timeout: self.inner.timeout,
                    retries: self.inner.retries,
                    access: Access::Hosted {
                        login: login.clone(),
                        token: Some(token),
                    },
                    checks_publish: Default::default(),
                }),
                fallbacks: self.fallbacks.clone(),
            },
        }
    }

    /// Whether this client talks to a PollinationX hosted node.
    pub fn is_hosted(&self) -> bool {
        matches!(self.inner.access, Access::Hosted { .. })
    }

    /// The sNFT a hosted client is bound to ([`NodeClient::for_token`]); `None` for an
    /// unbound one and for a node of one's own.
    pub fn hosted_token(&self) -> Option<u64> {
        match &self.inner.access {
            Access::Hosted { token, .. } => *token,
            Access::Fixed => None,
        }
    }

    /// Adds one file, streamed from disk, pinned, as CIDv1 with raw leaves.
    pub async fn add_path(&self, path: &Path) -> Result<Added, StorageError> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".to_string());
        let mut added = self.add_batch(vec![(name, path.to_path_buf())]).await?;
        added.pop().ok_or_else(|| StorageError::Decode {
            path: self.inner.path("add"),
            detail: "no object in the answer".into(),
        })
    }

    /// Adds one in-memory document (manifests, usage documents), pinned, CIDv1, raw leaves.
    pub async fn add_bytes(&self, name: &str, data: Bytes) -> Result<Added, StorageError> {
        let part_name = part_file_name(name);
        let make = move || {
            let part = Part::stream_with_length(data.clone(), data.len() as u64)
                .file_name(part_name.clone());
            Ok(Upload {
                form: Form::new().part("file", octet_stream(part)),
                progress: Progress::new(),
            })
        };
        let mut added = self.add_form(&make, 1).await?;
        let mut one = added.pop().ok_or_else(|| StorageError::Decode {
            path: self.inner.path("add"),
            detail: "no object in the answer".into(),
        })?;
        one.name = name.to_string();
        Ok(one)
    }

    /// Adds many files in one multipart request (small-file batching). Results come back
    /// in input order, each named as given.
    pub async fn add_batch(
        &self,
        files: Vec<(String, PathBuf)>,
    ) -> Result<Vec<Added>, StorageError> {
        if files.is_empty() {
            return Ok(Vec::new());
        }
        let count = files.len();
        let parts: Vec<(String, PathBuf)> = files
            .iter()
            .map(|(name, path)| (part_file_name(name), path.clone()))
            .collect();
        let make = move || {
            let progress = Progress::new();
            let mut form = Form::new();
            for (name, path) in &parts {
                form = form.part("file", file_part(name, path, &progress)?);
            }
            Ok(Upload { form, progress })
        };
        let added = self.add_form(&make, count).await?;
        let names: Vec<String> = files.into_iter().map(|(n, _)| n).collect();
        match_in_order(&self.inner.path("add"), &names, added)
    }

    /// Adds many in-memory objects in one multipart request (sealed small files). Results
    /// come back in input order, each named as given.
    pub async fn add_batch_bytes(
        &self,
        objects: Vec<(String, Bytes)>,
    ) -> Result<Vec<Added>, StorageError> {
        if objects.is_empty() {
            return Ok(Vec::new());
        }
        let count = objects.len();
        let parts: Vec<(String, Bytes)> = objects
            .iter()
            .map(|(name, data)| (part_file_name(name), data.clone()))
            .collect();
        let make = move || {
            let mut form = Form::new();
            for (name, data) in &parts {
                let part = Part::stream_with_length(data.clone(), data.len() as u64)
                    .file_name(name.clone());
                form = form.part("file", octet_stream(part));
            }
            Ok(Upload {
                form,
                progress: Progress::new(),
            })
        };
        let added = self.add_form(&make, count).await?;
        let names: Vec<String> = objects.into_iter().map(|(n, _)| n).collect();
        match_in_order(&self.inner.path("add"), &names, added)
    }

    /// Adds one file whose content is still being written: `open` gives its bytes from the
    /// start (again for each attempt) and ends when the writer is done, so the upload runs
    /// alongside the writes. The length is unknown up front (chunked request body). Waiting
    /// for the writer is not silence: only a node that stops taking the body times out.
    pub async fn add_stream(
        &self,
        name: &str,
        open: &ContentStream,
    ) -> Result<Added, StorageError> {
        let part_name = part_file_name(name);
        let make = move || {
            let progress = Progress::new();
            let body = KeepAlive::new(open(), progress.clone(), self.inner.timeout / 4);
            let part = Part::stream(reqwest::Body::wrap_stream(body)).file_name(part_name.clone());
            Ok(Upload {
                form: Form::new().part("file", octet_stream(part)),
                progress,
            })
        };
        let mut added = self.add_form(&make, 1).await?;
        added.pop().ok_or_else(|| StorageError::Decode {
            path: self.inner.path("add"),
            detail: "no object in the answer".into(),
        })
    }

    async fn add_form(
        &self,
        make: &(dyn Fn() -> Result<Upload, StorageError> + Send + Sync),
        expected: usize,
    ) -> Result<Vec<Added>, StorageError> {
        let query = [
            ("pin", "true"),
            ("cid-version", "1"),
            ("raw-leaves", "true"),
            // Asked for, never relied on: answers are parsed as CIDs in any base.
            ("cid-base", "base32"),
            ("progress", "false"),
        ];
        let body = self
            .inner
            .call("add", &query, Deadline::Idle, Some(make))
            .await?;
        let added = responses::parse_added_lines(&body).map_err(|e| match e {
            AddAnswerError::Node(message) => StorageError::Node {
                path: self.inner.path("add"),
                status: 200,
                message,
            },
            AddAnswerError::Malformed(detail) => StorageError::Decode {
                path: self.inner.path("add"),
                detail,
            },
        })?;
        // A stream that broke off mid-way (Kubo reports that as an error line, handled by
        // the parser, or by cutting the answer short) must not look like success.
        if added.len() < expected {
            return Err(StorageError::Decode {
                path: self.inner.path("add"),
                detail: format!("{} objects in the answer for {expected} files", added.len()),
            });
        }
        debug!(files = expected, "added");
        Ok(added)
    }

    /// `length` bytes of `cid` from `offset` (to the end when `None`), buffered in memory.
    /// For documents and cache chunks; use [`NodeClient::cat_stream`] for whole files.
    pub async fn cat(
        &self,
        cid: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<Bytes, StorageError> {
        if length == Some(0) {
            return Ok(Bytes::new());
        }
        let (offset, length) = (offset.to_string(), length.map(|l| l.to_string()));
        let query = cat::query(cid, &offset, length.as_deref());
        let read = self.inner.call("cat", &query, Deadline::Total, None).await;
        read.inspect(|b| crate::metrics::downloaded(b.len() as u64, 0))
    }

    /// This client, with reads (`block/get`, `name/resolve`) falling back to `replicas`
    /// when this node lacks what is asked or is down (src/storage/fallback.rs).
    pub fn with_fallbacks(&self, replicas: Vec<NodeClient>) -> NodeClient {
        NodeClient {
            inner: self.inner.clone(),
            fallbacks: Arc::new(fallback::Fallbacks::new(replicas)),
        }
    }

    /// The raw bytes of one block (`block/get`), unverified: the caller checks them against
    /// the CID's hash. Kubo, BTFS and `pxfs node` serve it. With replicas, a block this node
    /// lacks or cannot give is asked of them, and put back here.
    pub async fn block_get(&self, cid: &str) -> Result<Bytes, StorageError> {
        let primary = if self.fallbacks.skip_primary() {
            Err(StorageError::Unreachable {
                url: self.inner.base.clone(),
                detail: "unreachable a moment ago; asking the replicas".into(),
            })
        } else {
            self.block_get_here(cid).await
        };
        let e = match primary {
            Ok(b) => return Ok(b),
            Err(e) if !self.fallbacks.worth_falling_back(&e) => return Err(e),
            Err(e) => e,
        };
        for replica in &self.fallbacks.replicas {
            if let Ok(bytes) = replica.block_get_here(cid).await {
                if fallback::lacks(&e) {
                    fallback::put_back(self.primary_only(), cid, bytes.clone());
                }
                return Ok(bytes);
            }
        }
        Err(e)
    }

    async fn block_get_here(&self, cid: &str) -> Result<Bytes, StorageError> {
        let query = [("arg", cid)];
        let read = self.inner.call("block/get", &query, Deadline::Total, None);
        read.await
            .inspect(|b| crate::metrics::downloaded(b.len() as u64, 1))
    }

    fn primary_only(&self) -> NodeClient {
        NodeClient {
            inner: self.inner.clone(),
            fallbacks: Default::default(),
        }
    }

    /// The size of one block (`block/stat`), as the node holds it under that CID.
    pub async fn block_stat(&self, cid: &str) -> Result<BlockStat, StorageError> {
        self.json("block/stat", &[("arg", cid)]).await
    }

    /// Stores one block under its CID (`block/put`, Kubo and `pxfs node`): what repair and
    /// replication put back. The caller has checked `data` against `cid`; the node's answer
    /// must name the same multihash, or the node stored something else.
    pub async fn block_put(
        &self,
        cid: &ipld_core::cid::Cid,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let codec = self::cid::codec_name(cid);
        let make = move || {
            let part = Part::stream_with_length(data.clone(), data.len() as u64)
                .file_name("block".to_string());
            Ok(Upload {
                form: Form::new().part("data", octet_stream(part)),
                progress: Progress::new(),
            })
        };
        let query = [
            ("cid-codec", codec),
            ("mhtype", "sha2-256"),
            ("pin", "false"),
        ];
        let body = self
            .inner
            .call(
                "block/put",
                &query,
                Deadline::Idle,
                Some(&make as &UploadMaker),
            )
            .await?;
        let path = self.inner.path("block/put");
        let stat: BlockStat = serde_json::from_slice(&body).map_err(|e| StorageError::Decode {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let stored: ipld_core::cid::Cid = stat.key.parse().map_err(|e| StorageError::Decode {
            path: path.clone(),
            detail: format!("not a CID: {e}"),
        })?;
        if stored.hash() != cid.hash() {
            return Err(StorageError::Decode {
                path,
                detail: format!("the node stored {stored}, not {cid}"),
            });
        }
        Ok(())
    }

    /// The signed IPNS record of `name` (`routing/get`), as the node holds it.
    pub async fn name_record(&self, name: &str) -> Result<Bytes, StorageError> {
        let key = format!("/ipns/{name}");
        self.inner
            .call("routing/get", &[("arg", &key)], Deadline::Total, None)
            .await
    }

    /// Gives the node a record signed elsewhere (`routing/put`): a replica then resolves
    /// `name` by itself. The node checks the signature.
    pub async fn put_name_record(&self, name: &str, record: Bytes) -> Result<(), StorageError> {
        let key = format!("/ipns/{name}");
        let make = move || {
            let part = Part::stream_with_length(record.clone(), record.len() as u64)
                .file_name("record".to_string());
            Ok(Upload {
                form: Form::new().part("data", octet_stream(part)),
                progress: Progress::new(),
            })
        };
        let query = [("arg", key.as_str()), ("allow-offline", "true")];
        self.inner
            .call(
                "routing/put",
                &query,
                Deadline::Total,
                Some(&make as &UploadMaker),
            )
            .await?;
        Ok(())
    }

    /// Like [`NodeClient::cat`] but streamed: only silence longer than the timeout fails
    /// it, and a transfer that breaks off is resumed from where it stopped (up to the
    /// configured retries).
    pub async fn cat_stream(
        &self,
        cid: &str,
        offset: u64,
        length: Option<u64>,
    ) -> Result<impl Stream<Item = Result<Bytes, StorageError>> + Send + 'static, StorageError>
    {
        cat::stream(self.inner.clone(), cid, offset, length).await
    }

    /// The objects `cids` one after another in one streamed `cat` (several paths, as Kubo
    /// takes them), unverified and not resumed: for a reader that splits the answer by
    /// lengths it knows and authenticates each object (sealed chunks), and asks again one
    /// by one for what this does not give it.
    pub async fn cat_many(
        &self,
        cids: &[&str],
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, StorageError>>, StorageError>
    {
        // A primary that was unreachable a moment ago is not waited for: the reader's
        // chunks alone go to the replicas (`block_get`).
        if self.fallbacks.skip_primary() {
            return Err(StorageError::Unreachable {
                url: self.inner.base.clone(),
                detail: "unreachable a moment ago".into(),
            });
        }
        cat::many(self.inner.clone(), cids).await
    }

    pub async fn pin_add(&self, cid: &str) -> Result<(), StorageError> {
        let pinned: Pins = self.json("pin/add", &[("arg", cid)]).await?;
        debug!(pins = ?pinned.pins, "pinned");
        Ok(())
    }

    /// Unpins `cid`; a CID that is not pinned (any more) is fine: the goal is reached.
    pub async fn pin_rm(&self, cid: &str) -> Result<(), StorageError> {
        match self.json::<Pins>("pin/rm", &[("arg", cid)]).await {
            Ok(_) => Ok(()),
            Err(StorageError::Node { message, .. }) if message.contains("not pinned") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates an ed25519 key named `name`; its `id` is the BTNS/IPNS name.
    pub async fn key_gen(&self, name: &str) -> Result<KeyInfo, StorageError> {
        self.json("key/gen", &[("arg", name), ("type", "ed25519")])
            .await
    }

    /// The node's keys. A hosted node that does not offer `key/list` holds no key of
    /// this wallet: the answer is empty (usage documents are then added, not published).
    pub async fn key_list(&self) -> Result<Vec<KeyInfo>, StorageError> {
        match self.json::<KeyList>("key/list", &[]).await {
            Ok(list) => Ok(list.keys),
            Err(StorageError::Unsupported { path, .. }) => {
                debug!(path, "the hosted node lists no keys");
                Ok(Vec::new())
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes `cid` under the key named `key`. `allow-offline` because a lone node
    /// (or one without peers yet) must still be able to publish.
    pub async fn name_publish(
        &self,
        key: &str,
        cid: &str,
        lifetime: Option<&str>,
    ) -> Result<Published, StorageError> {
        // BTFS names content `/btfs/CID`, Kubo `/ipfs/CID`.
        let namespace = if self.inner.prefix.ends_with("/v1") {
            "/btfs/"
        } else {
            "/ipfs/"
        };
        let target = format!("{namespace}{}", strip_content_prefix(cid));
        let mut query = vec![
            ("arg", target.as_str()),
            ("key", key),
            ("allow-offline", "true"),
        ];
        if let Some(lifetime) = lifetime {
            query.push(("lifetime", lifetime));
        }
        self.json("name/publish", &query).await
    }

    /// Resolves a BTNS/IPNS name to the CID it points at (without `/ipfs/` or `/btfs/`).
    /// The CID `name` points at. With replicas, asked of them when this node cannot answer
    /// (a replica keeps the record of each tree it holds).
    pub async fn name_resolve(&self, name: &str) -> Result<String, StorageError> {
        let e = match self.name_resolve_here(name).await {
            Ok(cid) => return Ok(cid),
            Err(e) if !self.fallbacks.worth_falling_back(&e) => return Err(e),
            Err(e) => e,
        };
        for replica in &self.fallbacks.replicas {
            if let Ok(cid) = replica.name_resolve_here(name).await {
                return Ok(cid);
            }
        }
        Err(e)
    }

    async fn name_resolve_here(&self, name: &str) -> Result<String, StorageError> {
        let resolved: Resolved = self.json("name/resolve", &[("arg", name)]).await?;
        let cid = strip_content_prefix(&resolved.path);
        // A path into a directory (`/ipfs/CID/sub`) is not what pxfs publishes.
        if cid.is_empty() || cid.contains('/') {
            return Err(StorageError::Decode {
                path: self.inner.path("name/resolve"),
                detail: format!("{name} resolved to {:?}, not a CID", resolved.path),
            });
        }
        cid::canonical(cid).map_err(|detail| StorageError::Decode {
            path: self.inner.path("name/resolve"),
            detail,
        })
    }

    pub async fn version(&self) -> Result<VersionInfo, StorageError> {
        self.json("version", &[]).await
    }

    pub async fn repo_stat(&self) -> Result<RepoStat, StorageError> {
        self.json("repo/stat", &[]).await
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        cmd: &str,
        query: &[(&str, &str)],
    ) -> Result<T, StorageError> {
        let body = self.inner.call(cmd, query, Deadline::Total, None).await?;
        serde_json::from_slice(&body).map_err(|e| StorageError::Decode {
            path: self.inner.path(cmd),
            detail: format!(
                "{e}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        })
    }
}

/// A file part whose body is read from disk as the request goes out. Only the size is
/// taken now (a missing file is an immediate local error); the file is opened when its
/// turn in the body comes, so a batch of thousands of files never holds thousands of
/// descriptors. Small files are read in one go, large ones streamed in chunks.
fn file_part(name: &str, path: &Path, progress: &Progress) -> Result<Part, StorageError> {
    let len = std::fs::metadata(path)
        .map_err(|source| StorageError::Io {
            file: path.to_path_buf(),
            source: Arc::new(source),
        })?
        .len();
    let file_path = path.to_path_buf();
    let chunks = if len <= SMALL_FILE {
        futures::stream::once(tokio::fs::read(file_path.clone()))
            .map_ok(Bytes::from)
            .boxed()
    } else {
        futures::stream::once(tokio::fs::File::open(file_path.clone()))
            .map_ok(|file| tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_READ_CHUNK))
            .try_flatten()
            .boxed()
    };
    let progress = progress.clone();
    let stream = chunks.map(move |chunk| {
        match &chunk {
            Ok(_) => progress.touch(),
            Err(e) => progress.fail(StorageError::Io {
                file: file_path.clone(),
                source: Arc::new(std::io::Error::new(e.kind(), e.to_string())),
            }),
        }
        chunk
    });
    let part = Part::stream_with_length(reqwest::Body::wrap_stream(stream), len)
        .file_name(name.to_string());
    Ok(octet_stream(part))
}

/// Opens a file's content as a stream of chunks, from the start; see [`NodeClient::add_stream`].
pub type ContentStream =
    dyn Fn() -> futures::stream::BoxStream<'static, std::io::Result<Bytes>> + Send + Sync;

/// A body stream that keeps the upload watchdog quiet while it waits for its source (a
/// writer that has not written more yet), but not while the node is not reading it: then
/// hyper does not poll the body at all, and the watchdog fires as for any stalled upload.
/// A source error is recorded as a local error, so it is not retried as a node failure.
struct KeepAlive {
    inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
    progress: Progress,
    tick: tokio::time::Interval,
}

impl KeepAlive {
    fn new(
        inner: futures::stream::BoxStream<'static, std::io::Result<Bytes>>,
        progress: Progress,
        every: Duration,
    ) -> KeepAlive {
        let mut tick = tokio::time::interval(every.max(Duration::from_millis(10)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        KeepAlive {
            inner,
            progress,
            tick,
        }
    }
}

impl Stream for KeepAlive {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let this = &mut *self;
        while this.tick.poll_tick(cx).is_ready() {
            this.progress.touch();
        }
        let item = std::task::ready!(this.inner.poll_next_unpin(cx));
        match &item {
            Some(Ok(_)) => this.progress.touch(),
            Some(Err(e)) => this.progress.fail(StorageError::Io {
                file: PathBuf::from("(content being written)"),
                source: Arc::new(std::io::Error::new(e.kind(), e.to_string())),
            }),
            None => {}
        }
        std::task::Poll::Ready(item)
    }
}

/// Marks a part as file content (Kubo's parser wants a media type on every part).
fn octet_stream(part: Part) -> Part {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    part.headers(headers)
}

/// The name sent in the multipart header. A `/` would make Kubo create directories (and
/// answer with extra objects), so it is replaced; the caller's name is kept in the result.
fn part_file_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    if clean.is_empty() {
        "file".into()
    } else {
        clean
    }
}

/// Pairs the node's answers with the files sent. Kubo answers in request order, one object
/// per file; should it add more (directory objects), files are matched by name instead.
fn match_in_order(
    path: &str,
    files: &[String],
    added: Vec<Added>,
) -> Result<Vec<Added>, StorageError> {
    if added.len() == files.len() {
        return Ok(files
            .iter()
            .zip(added)
            .map(|(name, a)| Added {
                name: name.clone(),
                ..a
            })
            .collect());
    }
    let mut pool: Vec<Option<Added>> = added.into_iter().map(Some).collect();
    files
        .iter()
        .map(|name| {
            let wanted = part_file_name(name);
            let slot = pool
                .iter_mut()
                .find(|a| a.as_ref().is_some_and(|a| a.name == wanted))
                .and_then(Option::take);
            slot.map(|a| Added {
                name: name.clone(),
                ..a
            })
            .ok_or_else(|| StorageError::Decode {
                path: path.to_string(),
                detail: format!("no object for {name:?} in the answer"),
            })
        })
        .collect()
}

/// `/ipfs/CID`, `/btfs/CID` or `CID` → `CID`.
fn strip_content_prefix(path: &str) -> &str {
    ["/ipfs/", "/btfs/"]
        .iter()
        .find_map(|p| path.strip_prefix(p))
        .unwrap_or(path)
}

fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim().trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("/{trimmed}")
    }
}

fn join_base(api_url: &str, api_prefix: &str) -> String {
    format!(
        "{}{}",
        api_url.trim().trim_end_matches('/'),
        normalize_prefix(api_prefix)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_joins_url_and_prefix_whatever_the_slashes() {
        assert_eq!(
            join_base("http://127.0.0.1:5001/", "api/v1/"),
            "http://127.0.0.1:5001/api/v1"
        );
        assert_eq!(
            join_base("http://h:5001", "/api/v0"),
            "http://h:5001/api/v0"
        );
    }

    #[test]
    fn resolved_paths_lose_their_namespace() {
        assert_eq!(strip_content_prefix("/ipfs/bafyx"), "bafyx");
        assert_eq!(strip_content_prefix("/btfs/Qmx"), "Qmx");
        assert_eq!(strip_content_prefix("bafyx"), "bafyx");
    }

    #[test]
    fn part_names_never_contain_a_slash() {
        assert_eq!(part_file_name("a/b"), "a_b");
        assert_eq!(part_file_name(""), "file");
    }
}
