//! Remote pinning services (`[[pinning]]`, issue #30 item 4): a second copy of every committed
//! tree on a service that speaks the IPFS Pinning Service API. Each committed root that holds
//! (src/fs/held.rs) is requested from every service; the request's status is followed until
//! the service has pinned it; then the pins of that sNFT's older roots are removed, so the
//! service keeps the newest tree (and, while a new one is being pinned, the one before).
//!
//! One task per service, fed by a channel: a service that is down, slow or refusing never
//! delays a commit. What each service was asked for is kept in
//! `CACHE/pinning/<name>/<token>.json` (0600), so a restarted mount goes on following its
//! requests and removes what it superseded. The service fetches the blocks itself, from the
//! IPFS/BTFS network (the request names no origins): the node must be reachable from it.

pub mod client;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::PinningConfig;
use crate::fs::held::HeldRoots;
use crate::fs::model::inode::TokenId;
use client::{Pin, PinStatus, PinningClient, PinningError, Status};

/// Roots waiting to be requested per sNFT; past it the oldest waiting one is skipped (a newer
/// root supersedes it anyway).
const MAX_WAITING: usize = 16;
/// Following a request: first poll after this, doubling up to `POLL_MAX`.
const POLL_FIRST: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(30);
/// After a failed request to the service: first retry after this, doubling up to `RETRY_MAX`.
const RETRY_FIRST: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(120);

/// The mount's pinning services: tells each one's task of every root that holds.
#[derive(Debug)]
pub struct PinningServices {
    tasks: Vec<mpsc::UnboundedSender<(TokenId, String, u64)>>,
}

impl HeldRoots for PinningServices {
    fn held(&self, token: TokenId, root: &str, seq: u64) {
        for task in &self.tasks {
            // A task that ended (the mount is stopping) has nothing more to do.
            let _ = task.send((token, root.to_string(), seq));
        }
    }
}

impl PinningServices {
    /// Start a task per configured service on the current runtime; `None` when there is
    /// none. A service whose token file cannot be read is an error (said at mount time).
    pub fn start(
        services: &[PinningConfig],
        cache_dir: &Path,
    ) -> anyhow::Result<Option<Arc<PinningServices>>> {
        if services.is_empty() {
            return Ok(None);
        }
        let mut tasks = Vec::new();
        for s in services {
            let token = zeroize::Zeroizing::new(s.access_token()?);
            if token.is_empty() {
                anyhow::bail!(
                    "[[pinning]] {}: the access token file {} is empty",
                    s.name,
                    s.access_token_file.display()
                );
            }
            let client = PinningClient::new(&s.name, &s.endpoint, token);
            let dir = cache_dir.join("pinning").join(&s.name);
            let (tx, rx) = mpsc::unbounded_channel();
            let service = Service {
                client,
                dir,
                tokens: BTreeMap::new(),
                failing: None,
            };
            tokio::spawn(service.run(rx));
            tasks.push(tx);
        }
        Ok(Some(Arc::new(PinningServices { tasks })))
    }
}

/// What one service is to be asked and was asked for one sNFT, oldest first (kept on disk,
/// so that a root committed just before the mount stopped is still requested after it).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Requests {
    /// Held roots not yet requested, with their `seq`.
    #[serde(default)]
    waiting: VecDeque<(String, u64)>,
    requests: Vec<Requested>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Requested {
    requestid: String,
    cid: String,
    seq: u64,
    status: Status,
}

#[derive(Debug, Default)]
struct TokenPins {
    requests: Requests,
    loaded: bool,
}

struct Service {
    client: PinningClient,
    dir: PathBuf,
    tokens: BTreeMap<TokenId, TokenPins>,
    /// The error of the current episode of failures, logged once when it starts.
    failing: Option<String>,
}

impl Service {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<(TokenId, String, u64)>) {
        self.load_all();
        let mut poll = POLL_FIRST;
        let mut retry = RETRY_FIRST;
        loop {
            while let Ok(event) = rx.try_recv() {
                self.held(event);
            }
            match self.step().await {
                Err(e) => {
                    // Failing: wait out the retry delay (new roots queue meanwhile).
                    self.failed(&e);
                    let delay = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                    tokio::time::sleep(delay).await;
                    continue;
                }
                Ok(unsettled) => {
                    self.recovered();
                    retry = RETRY_FIRST;
                    let delay = unsettled.then_some(poll);
                    poll = match unsettled {
                        true => (poll * 2).min(POLL_MAX),
                        false => POLL_FIRST,
                    };
                    tokio::select! {
                        _ = sleep_or_never(delay) => {}
                        event = rx.recv() => match event {
                            Some(event) => {
                                poll = POLL_FIRST;
                                self.held(event);
                            }
                            None => return,
                        },
                    }
                }
            }
        }
    }

    fn held(&mut self, (token, root, seq): (TokenId, String, u64)) {
        self.load(token);
        let pins = self.tokens.entry(token).or_default();
        let known = pins.requests.waiting.iter().any(|(r, _)| *r == root)
            || pins.requests.requests.iter().any(|r| r.cid == root);
        if known {
            return;
        }
        pins.requests.waiting.push_back((root, seq));
        while pins.requests.waiting.len() > MAX_WAITING {
            if let Some((skipped, seq)) = pins.requests.waiting.pop_front() {
                tracing::debug!(
                    service = self.client.name(),
                    token,
                    seq,
                    root = skipped,
                    "a newer root supersedes this one before it was requested"
                );
            }
        }
        self.save(token);
    }

    /// Everything that can be done now; `Ok(true)` while a request is still being pinned.
    async fn step(&mut self) -> Result<bool, PinningError> {
        let tokens: Vec<TokenId> = self.tokens.keys().copied().collect();
        let mut unsettled = false;
        for token in tokens {
            self.load(token);
            self.request_waiting(token).await?;
            unsettled |= self.follow_newest(token).await?;
            self.remove_older(token).await?;
        }
        Ok(unsettled)
    }

    /// Every sNFT this service was asked about before (a previous mount's requests).
    fn load_all(&mut self) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            let token = name
                .to_str()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|t| t.parse::<TokenId>().ok());
            if let Some(token) = token {
                self.load(token);
            }
        }
    }

    fn load(&mut self, token: TokenId) {
        let path = self.path(token);
        let pins = self.tokens.entry(token).or_default();
        if pins.loaded {
            return;
        }
        pins.loaded = true;
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Requests>(&bytes) {
                Ok(r) => pins.requests = r,
                Err(e) => tracing::warn!(
                    service = self.client.name(),
                    token,
                    error = %e,
                    "cannot read what was asked of the pinning service; starting afresh"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(service = self.client.name(), token, error = %e,
                "cannot read what was asked of the pinning service; starting afresh"),
        }
    }

    async fn request_waiting(&mut self, token: TokenId) -> Result<(), PinningError> {
        loop {
            let Some((root, seq)) = self.tokens[&token].requests.waiting.front().cloned() else {
                return Ok(());
            };
            let pin = Pin {
                cid: root.clone(),
                name: Some(format!("pxfs sNFT {token} seq {seq}")),
                origins: Vec::new(),
                meta: BTreeMap::from([
                    ("pxfs_token".to_string(), token.to_string()),
                    ("pxfs_seq".to_string(), seq.to_string()),
                ]),
            };
            let status = self.client.add(&pin).await?;
            tracing::info!(
                service = self.client.name(),
                token,
                seq,
                root,
                requestid = status.requestid,
                "asked the pinning service to pin the committed tree"
            );
            let pins = self.tokens.get_mut(&token).expect("loaded");
            pins.requests.waiting.pop_front();
            pins.requests.requests.push(Requested {
                requestid: status.requestid,
                cid: root,
                seq,
                status: status.status,
            });
            self.save(token);
        }
    }

    /// Follow the newest request until the service pinned it (or failed it: then it is
    /// asked again). `Ok(true)` while it is queued or pinning.
    async fn follow_newest(&mut self, token: TokenId) -> Result<bool, PinningError> {
        let Some(newest) = self.tokens[&token].requests.requests.last().cloned() else {
            return Ok(false);
        };
        let status: PinStatus = match newest.status {
            Status::Pinned => return Ok(false),
            _ => match self.client.status(&newest.requestid).await {
                Ok(s) => s,
                // The service forgot the request: ask again.
                Err(e) if e.is_not_found() => PinStatus {
                    requestid: newest.requestid.clone(),
                    status: Status::Failed,
                    pin: Pin {
                        cid: newest.cid.clone(),
                        name: None,
                        origins: Vec::new(),
                        meta: BTreeMap::new(),
                    },
                    created: String::new(),
                    delegates: Vec::new(),
                    info: None,
                },
                Err(e) => return Err(e),
            },
        };
        let pins = self.tokens.get_mut(&token).expect("loaded");
        match status.status {
            Status::Pinned => {
                tracing::info!(
                    service = self.client.name(),
                    token,
                    seq = newest.seq,
                    root = newest.cid,
                    "the pinning service holds the committed tree"
                );
                if let Some(last) = pins.requests.requests.last_mut() {
                    last.status = Status::Pinned;
                }
                self.save(token);
                Ok(false)
            }
            Status::Failed => {
                tracing::warn!(
                    service = self.client.name(),
                    token,
                    seq = newest.seq,
                    root = newest.cid,
                    "the pinning service could not pin the committed tree; asking again"
                );
                let failed = pins.requests.requests.pop().expect("the newest");
                if !pins.requests.waiting.iter().any(|(r, _)| *r == failed.cid) {
                    pins.requests
                        .waiting
                        .push_front((failed.cid.clone(), failed.seq));
                }
                self.save(token);
                // Best effort: a failed request holds nothing, but may still be listed.
                let _ = self.client.remove(&failed.requestid).await;
                Ok(true)
            }
            s @ (Status::Queued | Status::Pinning) => {
                if let Some(last) = pins.requests.requests.last_mut() {
                    last.status = s;
                }
                Ok(true)
            }
        }
    }

    /// Once the newest root is pinned, the older ones' pins are removed.
    async fn remove_older(&mut self, token: TokenId) -> Result<(), PinningError> {
        loop {
            let pins = &self.tokens[&token];
            let n = pins.requests.requests.len();
            if n < 2 || pins.requests.requests[n - 1].status != Status::Pinned {
                return Ok(());
            }
            let older = pins.requests.requests[0].clone();
            self.client.remove(&older.requestid).await?;
            tracing::info!(
                service = self.client.name(),
                token,
                seq = older.seq,
                root = older.cid,
                "removed the pin of a superseded tree"
            );
            self.tokens
                .get_mut(&token)
                .expect("loaded")
                .requests
                .requests
                .remove(0);
            self.save(token);
        }
    }

    fn path(&self, token: TokenId) -> PathBuf {
        self.dir.join(format!("{token}.json"))
    }

    fn save(&self, token: TokenId) {
        let Some(pins) = self.tokens.get(&token) else {
            return;
        };
        let bytes = serde_json::to_vec_pretty(&pins.requests).expect("requests serialize");
        if let Err(e) = write_private(&self.path(token), &bytes) {
            tracing::warn!(service = self.client.name(), token, error = %e,
                "cannot record what was asked of the pinning service");
        }
    }

    fn failed(&mut self, e: &PinningError) {
        let text = e.to_string();
        if self.failing.is_none() {
            tracing::warn!(
                service = self.client.name(),
                error = %text,
                "the pinning service does not take requests now; retrying with backoff \
                 (commits go on)"
            );
        }
        self.failing = Some(text);
    }

    fn recovered(&mut self) {
        if self.failing.take().is_some() {
            tracing::info!(
                service = self.client.name(),
                "the pinning service takes requests again"
            );
        }
    }
}

async fn sleep_or_never(delay: Option<Duration>) {
    match delay {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Write `bytes` to `path` atomically, 0600 in a 0700 directory.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path.parent().expect("a file in a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
