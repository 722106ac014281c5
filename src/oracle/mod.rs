//! `pxfs oracle`: the Chainlink node's direct-request job for pxfs, run locally. It follows
//! the Operator's `OracleRequest` events for its job, resolves the token's BTNS name,
//! measures the trees of every usage document published since the token's last `Synced`
//! root (`history`; docs/FORMAT.md §7: every distinct object's stored size, checked by
//! content address; the claimed number is not trusted; the largest tree counts), and answers
//! through `fulfillOracleRequest2`. Each request has its own task; at most
//! [`Limits::max_requests`] are measured at a time (the [`Gate`]), each within [`Limits`],
//! with what earlier requests measured remembered (the [`Memo`]); a tree that cannot be
//! measured, or a document that does not chain back to the synced root, is left
//! unanswered, never guessed.
//!
//! Exactly once: the block below every request still in flight is persisted, and every
//! answer is simulated first, so a request answered before a crash is recognised and skipped.

pub mod adapter;
mod gate;
mod history;
mod memo;
mod request;
mod walk;

#[cfg(test)]
mod format3_tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::chain::{Chain, ChainError, OracleRequest};
use crate::storage::NodeClient;

pub use gate::{Gate, Gauge};
pub use memo::{Known, Memo};
pub use request::{RequestParams, RequestParamsError};
pub use walk::{Limits, TreeUsage, WalkError, measure_root, measure_roots};

/// Measures token trees within [`Limits`]: at most `max_requests` at a time (the others
/// wait their turn), remembering what it measured (the [`Memo`]).
pub struct Measurer {
    node: NodeClient,
    limits: Limits,
    memo: Memo,
    gate: Gate,
}

impl Measurer {
    /// `memo_file`: where the memo is kept between runs (`None`: in memory only).
    pub fn new(node: NodeClient, limits: Limits, memo_file: Option<&Path>) -> Measurer {
        let memo = match memo_file {
            Some(p) => Memo::open(p, limits.memo_entries),
            None => Memo::in_memory(limits.memo_entries),
        };
        Measurer {
            node,
            gate: Gate::new(limits.max_requests),
            limits,
            memo,
        }
    }

    pub fn gauge(&self) -> Gauge {
        self.gate.gauge()
    }

    /// Waits for a turn, then measures the documents under `btns` since the one whose
    /// root is `synced_root` (module `history`): the largest of their trees' figures.
    pub async fn measure(
        &self,
        btns: &str,
        synced_root: Option<&str>,
    ) -> Result<TreeUsage, WalkError> {
        let _pass = self.gate.enter().await;
        self.measure_admitted(btns, synced_root).await
    }

    /// The gate of [`Measurer::measure`]: a caller that has more to do within the bound
    /// (looking up the synced root) enters it first and then calls
    /// [`Measurer::measure_admitted`].
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// [`Measurer::measure`] for a caller holding a pass of [`Measurer::gate`].
    pub async fn measure_admitted(
        &self,
        btns: &str,
        synced_root: Option<&str>,
    ) -> Result<TreeUsage, WalkError> {
        let measured =
            measure_tree_with(&self.node, btns, synced_root, &self.limits, &self.memo).await;
        if let Err(e) = self.memo.save() {
            tracing::warn!("oracle memo not saved (objects will be fetched again): {e}");
        }
        measured
    }
}

/// Resolves `btns` and measures what was published since `synced_root`, within `limits`
/// (no memo kept): what `pxfs sync` checks before sending a request.
pub async fn measure_tree(
    node: &NodeClient,
    btns: &str,
    synced_root: Option<&str>,
    limits: &Limits,
) -> Result<TreeUsage, WalkError> {
    let memo = Memo::in_memory(limits.memo_entries);
    measure_tree_with(node, btns, synced_root, limits, &memo).await
}

async fn measure_tree_with(
    node: &NodeClient,
    btns: &str,
    synced_root: Option<&str>,
    limits: &Limits,
    memo: &Memo,
) -> Result<TreeUsage, WalkError> {
    let work = async {
        let h = history::since(node, btns, synced_root, limits).await?;
        let mut usage = measure_roots(node, &h.roots, limits, memo).await?;
        usage.token_id = h.doc.token_id();
        usage.claimed_usage = h.doc.usage();
        usage.documents = h.documents;
        Ok(usage)
    };
    tokio::time::timeout(limits.max_time, work)
        .await
        .unwrap_or_else(|_| {
            Err(WalkError::Limit {
                limit: format!("{} s of wall time", limits.max_time.as_secs()),
            })
        })
}

#[derive(Debug, thiserror::Error)]
pub enum OracleError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("the config has no [chain] operator address, which the oracle needs")]
    NoOperator,
    #[error("the config has no [oracle] job_id")]
    NoJobId,
    #[error("oracle state file {path}: {reason}")]
    State { path: PathBuf, reason: String },
}

/// What a handled request came to, for the log and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Fulfilled {
        token_id: u64,
        usage: u64,
        claimed: u64,
        root: String,
        tx_hash: String,
    },
    /// Answered already (before a restart) or expired: the Operator refuses it.
    AlreadyAnswered,
    /// Not ours (another requester) or unusable: left to expire, never guessed.
    Skipped(String),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OracleState {
    /// Every request in blocks up to and including this one has been handled.
    last_block: u64,
}

/// What the request tasks share.
struct Shared {
    chain: Chain,
    measurer: Measurer,
    operator: alloy::primitives::Address,
    /// Measurements run concurrently; answers are sent one at a time (one signer, one nonce
    /// sequence).
    send: tokio::sync::Mutex<()>,
}

type Finished = (u64, alloy::primitives::B256, Outcome);

pub struct Oracle {
    shared: Arc<Shared>,
    job_id: alloy::primitives::B256,
    state_path: PathBuf,
    state: OracleState,
    /// Requests in blocks up to this one have been picked up (answered or in flight).
    seen_to: u64,
    /// Requests being measured, each a task: (block, request id, outcome).
    in_flight: JoinSet<Finished>,
    /// How many requests of each block are in flight: the persisted block stays below them.
    in_flight_blocks: BTreeMap<u64, usize>,
}

impl Oracle {
    pub fn new(
        chain: Chain,
        node: NodeClient,
        operator: &str,
        job_id: &str,
        state_path: &Path,
        limits: Limits,
    ) -> Result<Oracle, OracleError> {
        let memo_file = state_path.with_extension("memo");
        let operator = crate::chain::parse_address("operator", operator)?;
        let job_id = job_id.trim().parse().map_err(|_| OracleError::NoJobId)?;
        let state: OracleState = match std::fs::read(state_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OracleError::State {
                path: state_path.to_path_buf(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OracleState::default(),
            Err(e) => {
                return Err(OracleError::State {
                    path: state_path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
        };
        Ok(Oracle {
            shared: Arc::new(Shared {
                chain,
                measurer: Measurer::new(node, limits, Some(&memo_file)),
                operator,
                send: tokio::sync::Mutex::new(()),
            }),
            job_id,
            state_path: state_path.to_path_buf(),
            seen_to: state.last_block,
            state,
            in_flight: JoinSet::new(),
            in_flight_blocks: BTreeMap::new(),
        })
    }

    fn save_state(&self) -> Result<(), OracleError> {
        let err = |e: std::io::Error| OracleError::State {
            path: self.state_path.clone(),
            reason: e.to_string(),
        };
        let tmp = self.state_path.with_extension("tmp");
        let json = serde_json::to_vec(&self.state).expect("state serializes");
        if let Some(dir) = self.state_path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        std::fs::write(&tmp, json).map_err(err)?;
        std::fs::rename(&tmp, &self.state_path).map_err(err)
    }

    /// Picks up the requests in blocks after the last picked-up one, up to the chain head,
    /// each measured in its own task (so a large tree does not hold up other tokens), and
    /// returns the requests finished since the last call. The persisted block stays below
    /// every request still in flight: after a crash those are handled again, and an answer
    /// that did land is recognised by its simulation (exactly once).
    pub async fn poll_once(&mut self) -> Result<Vec<Outcome>, OracleError> {
        let mut outcomes = Vec::new();
        while let Some(done) = self.in_flight.try_join_next() {
            match done {
                Ok((block, request, outcome)) => {
                    log_outcome(&request, &outcome);
                    self.finished(block);
                    outcomes.push(outcome);
                }
                // A panicking task would be a bug; its block stays pinned until a restart.
                Err(e) => tracing::error!("oracle request task failed: {e}"),
            }
        }
        let head = self.shared.chain.block_number().await?;
        let from = self.seen_to + 1;
        if from <= head {
            let requests = self
                .shared
                .chain
                .oracle_requests(self.shared.operator, self.job_id, from, head)
                .await?;
            for req in requests {
                *self.in_flight_blocks.entry(req.block).or_default() += 1;
                let shared = self.shared.clone();
                self.in_flight.spawn(async move {
                    let outcome = handle(&shared, &req).await;
                    (req.block, req.request_id, outcome)
                });
            }
            self.seen_to = head;
        }
        let last = match self.in_flight_blocks.keys().next() {
            Some(lowest) => lowest.saturating_sub(1),
            None => self.seen_to,
        };
        if last != self.state.last_block || !self.state_path.exists() {
            self.state.last_block = last;
            self.save_state()?;
        }
        Ok(outcomes)
    }

    fn finished(&mut self, block: u64) {
        if let Some(n) = self.in_flight_blocks.get_mut(&block) {
            *n -= 1;
            if *n == 0 {
                self.in_flight_blocks.remove(&block);
            }
        }
    }

    /// Polls until `shutdown` resolves.
    pub async fn run(
        mut self,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.poll_once().await {
                tracing::warn!("oracle poll failed (will retry): {e}");
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}

fn log_outcome(request: &alloy::primitives::B256, outcome: &Outcome) {
    match outcome {
        Outcome::Fulfilled {
            token_id,
            usage,
            claimed,
            root,
            tx_hash,
        } => {
            if usage != claimed {
                tracing::warn!(
                    token_id,
                    usage,
                    claimed,
                    "usage document claimed a different usage; corrected"
                );
            }
            tracing::info!(token_id, usage, root, tx_hash, request = %request, "sync fulfilled");
        }
        Outcome::AlreadyAnswered => {
            tracing::info!(request = %request, "request already answered or expired; skipped")
        }
        Outcome::Skipped(why) => {
            tracing::warn!(request = %request, "request not answered: {why}")
        }
    }
}

async fn handle(shared: &Shared, req: &OracleRequest) -> Outcome {
    if req.requester != shared.chain.contract() {
        return Outcome::Skipped(format!("requester {} is not our contract", req.requester));
    }
    let params = match RequestParams::decode(&req.data) {
        Ok(p) => p,
        Err(e) => return Outcome::Skipped(e.to_string()),
    };
    // Within the bound on requests at a time: a waiting request holds only its parameters.
    let pass = shared.measurer.gate().enter().await;
    // The root the chain last recorded for this token: what was published since counts.
    let synced_root = match shared.chain.last_synced_root(params.token_id).await {
        Ok(r) => r,
        Err(e) => return Outcome::Skipped(format!("token {}: {e}", params.token_id)),
    };
    let measured = match shared
        .measurer
        .measure_admitted(&params.btns_key, synced_root.as_deref())
        .await
    {
        Ok(m) => m,
        // Unverifiable or missing content: not answered, so the token stays as it was.
        Err(e) => {
            return Outcome::Skipped(format!(
                "token {}: usage not measured, request left unanswered: {e}",
                params.token_id
            ));
        }
    };
    if measured.token_id != params.token_id {
        return Outcome::Skipped(format!(
            "the usage document under {} is for token {}, not {}",
            params.btns_key, measured.token_id, params.token_id
        ));
    }
    tracing::info!(
        token_id = params.token_id,
        usage = measured.usage,
        manifest_bytes = measured.manifest_bytes,
        files = measured.files,
        objects_fetched = measured.objects_fetched,
        bytes_fetched = measured.bytes_fetched,
        size_mismatches = measured.size_mismatches,
        documents = measured.documents,
        roots = measured.roots,
        requests_in_flight = shared.measurer.gauge().in_flight,
        requests_waiting = shared.measurer.gauge().waiting,
        "tree measured"
    );
    drop(pass);
    let _sending = shared.send.lock().await;
    match shared
        .chain
        .fulfill_sync(shared.operator, req, measured.usage, &measured.root)
        .await
    {
        Ok(tx) => Outcome::Fulfilled {
            token_id: params.token_id,
            usage: measured.usage,
            claimed: measured.claimed_usage,
            root: measured.root,
            tx_hash: tx.tx_hash.to_string(),
        },
        Err(ChainError::Reverted(_)) => Outcome::AlreadyAnswered,
        Err(e) => Outcome::Skipped(e.to_string()),
    }
}
