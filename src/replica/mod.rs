//! Replicas (issue #30): other Kubo-RPC-compatible nodes (`[node] replicas`) that keep a
//! copy of every committed tree. The commit path hands each tree that holds to
//! [`Replicas::committed`] and goes on: one worker per replica copies it in the background
//! (`copy`: the blocks the replica lacks, then `pin/add` of the root), unpins the root it
//! replaces, and keeps the tree's name record and usage document there too, so that a mount
//! pointed at the replica finds the tree when the primary is gone. A replica that is down
//! or slow only falls behind: its copy is retried with backoff, and `pxfs status` shows the
//! last root it holds and its health. Only the newest tree of each sNFT is queued: a
//! replica that catches up copies what is committed then, not every tree in between.

mod copy;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::storage::NodeClient;
pub use copy::CopyError;

/// First and longest wait between attempts at a replica that failed.
const RETRY_FIRST: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(60);
/// A replica request not answered within this counts as failed (the copy is retried).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One committed tree of an sNFT, as a replica keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The v2 root node.
    pub root: String,
    /// The usage document that names it.
    pub doc: String,
    /// The BTNS name whose record points at `doc`.
    pub btns: String,
}

/// How a replica is doing, as `pxfs status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Nothing asked of it yet.
    Unknown,
    /// Its last copy succeeded.
    Healthy,
    /// Its copies fail since `since`; retried.
    Failing {
        since: SystemTime,
        attempts: u32,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaStatus {
    pub url: String,
    pub health: Health,
    /// sNFT → the root this replica holds (copied and pinned).
    pub held: BTreeMap<u64, String>,
    /// sNFTs whose newest committed tree it does not hold yet.
    pub behind: Vec<u64>,
    /// Blocks and bytes copied to it by this process.
    pub copied_blocks: u64,
    pub copied_bytes: u64,
}

impl ReplicaStatus {
    pub fn caught_up(&self) -> bool {
        self.behind.is_empty()
    }
}

struct Replica {
    url: String,
    client: NodeClient,
    state: Mutex<State>,
    wake: Notify,
}

struct State {
    wanted: BTreeMap<u64, Tree>,
    held: BTreeMap<u64, Tree>,
    health: Health,
    copied_blocks: u64,
    copied_bytes: u64,
}

/// The replicas of a mount. Cheap to share; its workers stop with the cancellation token.
pub struct Replicas {
    replicas: Vec<Arc<Replica>>,
}

impl std::fmt::Debug for Replicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.replicas.iter().map(|r| &r.url))
            .finish()
    }
}

impl Replicas {
    /// Starts one worker per replica (`(url, client)`), copying from `source` (the
    /// primary), on the current tokio runtime.
    pub fn start(
        source: NodeClient,
        replicas: Vec<(String, NodeClient)>,
        cancel: CancellationToken,
    ) -> Arc<Replicas> {
        let replicas: Vec<Arc<Replica>> = replicas
            .into_iter()
            .map(|(url, client)| {
                Arc::new(Replica {
                    url,
                    client,
                    state: Mutex::new(State {
                        wanted: BTreeMap::new(),
                        held: BTreeMap::new(),
                        health: Health::Unknown,
                        copied_blocks: 0,
                        copied_bytes: 0,
                    }),
                    wake: Notify::new(),
                })
            })
            .collect();
        for r in &replicas {
            tokio::spawn(work(r.clone(), source.clone(), cancel.clone()));
        }
        Arc::new(Replicas { replicas })
    }

    /// `tree` is the newest committed tree of sNFT `token`: queued for every replica.
    /// Never waits for a replica.
    pub fn committed(&self, token: u64, tree: Tree) {
        for r in &self.replicas {
            let mut s = lock(&r.state);
            if s.wanted.get(&token) != Some(&tree) {
                s.wanted.insert(token, tree.clone());
                drop(s);
                r.wake.notify_one();
            }
        }
    }

    pub fn status(&self) -> Vec<ReplicaStatus> {
        self.replicas
            .iter()
            .map(|r| {
                let s = lock(&r.state);
                ReplicaStatus {
                    url: r.url.clone(),
                    health: s.health.clone(),
                    held: s.held.iter().map(|(t, h)| (*t, h.root.clone())).collect(),
                    behind: s
                        .wanted
                        .iter()
                        .filter(|(t, w)| s.held.get(t) != Some(w))
                        .map(|(t, _)| *t)
                        .collect(),
                    copied_blocks: s.copied_blocks,
                    copied_bytes: s.copied_bytes,
                }
            })
            .collect()
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // Every step under the lock leaves the state whole: a panic elsewhere does not spoil it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One replica's worker: copies the newest tree of each sNFT it lacks, one at a time.
async fn work(r: Arc<Replica>, source: NodeClient, cancel: CancellationToken) {
    let mut backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
    loop {
        let next = {
            let s = lock(&r.state);
            s.wanted
                .iter()
                .find(|(t, w)| s.held.get(t) != Some(w))
                .map(|(t, w)| (*t, w.clone(), s.held.get(t).cloned()))
        };
        let Some((token, tree, old)) = next else {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = r.wake.notified() => continue,
            }
        };
        let from = source.for_token(token);
        let copier = copy::Copier::new(&from, &r.client, REQUEST_TIMEOUT);
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            o = keep(&copier, &r.client, &from, &tree, old.as_ref()) => o,
        };
        let blocks = copier
            .copied
            .blocks
            .load(std::sync::atomic::Ordering::Relaxed);
        let bytes = copier
            .copied
            .bytes
            .load(std::sync::atomic::Ordering::Relaxed);
        let failed = {
            let mut s = lock(&r.state);
            s.copied_blocks += blocks;
            s.copied_bytes += bytes;
            match outcome {
                Ok(()) => {
                    tracing::info!(token, blocks, bytes, "replica holds the committed tree");
                    s.held.insert(token, tree);
                    s.health = Health::Healthy;
                    false
                }
                Err(e) => {
                    tracing::warn!(token, error = %e, "copying to a replica failed; retried");
                    let (since, attempts) = match &s.health {
                        Health::Failing {
                            since, attempts, ..
                        } => (*since, attempts + 1),
                        _ => (SystemTime::now(), 1),
                    };
                    s.health = Health::Failing {
                        since,
                        attempts,
                        error: e.to_string(),
                    };
                    true
                }
            }
        };
        if !failed {
            backoff = Backoff::new(RETRY_FIRST, RETRY_MAX);
        } else if !backoff.wait_unless(&cancel).await {
            return;
        }
    }
}

/// Makes the replica hold `tree`: its blocks, its pin, its usage document and name record;
/// then drops the pins of the tree it replaces.
async fn keep(
    copier: &copy::Copier<'_>,
    replica: &NodeClient,
    source: &NodeClient,
    tree: &Tree,
    old: Option<&Tree>,
) -> Result<(), CopyError> {
    copier.tree(&tree.root).await?;
    replica.pin_add(&tree.root).await?;
    copier.object(&tree.doc).await?;
    replica.pin_add(&tree.doc).await?;
    // The name's signed record, so that the replica resolves it alone. The primary may
    // have published a newer one meanwhile; the replica takes it (its tree follows).
    match source.name_record(&tree.btns).await {
        Ok(record) => replica.put_name_record(&tree.btns, record).await?,
        Err(e) => tracing::debug!(error = %e, "the primary gives no name record"),
    }
    if let Some(old) = old {
        for cid in [&old.root, &old.doc] {
            if *cid != tree.root && *cid != tree.doc {
                replica.pin_rm(cid).await?;
            }
        }
    }
    Ok(())
}
