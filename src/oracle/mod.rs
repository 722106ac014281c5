//! `pxfs oracle`: the Chainlink node's direct-request job for pxfs, run locally. It follows
//! the Operator's `OracleRequest` events for its job, resolves the token's BTNS name,
//! recomputes the usage by walking the directory manifests from the published root (the
//! claimed number is not trusted), and answers through `fulfillOracleRequest2`.
//!
//! Exactly once: the last handled block is persisted after each batch, and every answer is
//! simulated first, so a request answered before a crash is recognised and skipped.

mod request;
mod walk;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::chain::{Chain, ChainError, OracleRequest};
use crate::storage::NodeClient;

pub use request::{RequestParams, RequestParamsError};
pub use walk::{TreeUsage, WalkError, measure_tree};

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

pub struct Oracle {
    chain: Chain,
    node: NodeClient,
    operator: alloy::primitives::Address,
    job_id: alloy::primitives::B256,
    state_path: PathBuf,
    state: OracleState,
}

impl Oracle {
    pub fn new(
        chain: Chain,
        node: NodeClient,
        operator: &str,
        job_id: &str,
        state_path: &Path,
    ) -> Result<Oracle, OracleError> {
        let operator = crate::chain::parse_address("operator", operator)?;
        let job_id = job_id.trim().parse().map_err(|_| OracleError::NoJobId)?;
        let state = match std::fs::read(state_path) {
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
            chain,
            node,
            operator,
            job_id,
            state_path: state_path.to_path_buf(),
            state,
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

    /// Handles every request in blocks after the last handled one, up to the chain head.
    pub async fn poll_once(&mut self) -> Result<Vec<Outcome>, OracleError> {
        let head = self.chain.block_number().await?;
        let from = self.state.last_block + 1;
        if from > head {
            return Ok(Vec::new());
        }
        let requests = self
            .chain
            .oracle_requests(self.operator, self.job_id, from, head)
            .await?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for req in &requests {
            let outcome = self.handle(req).await;
            match &outcome {
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
                    tracing::info!(token_id, usage, root, tx_hash, request = %req.request_id, "sync fulfilled");
                }
                Outcome::AlreadyAnswered => {
                    tracing::info!(request = %req.request_id, "request already answered or expired; skipped")
                }
                Outcome::Skipped(why) => {
                    tracing::warn!(request = %req.request_id, "request not answered: {why}")
                }
            }
            outcomes.push(outcome);
        }
        self.state.last_block = head;
        self.save_state()?;
        Ok(outcomes)
    }

    async fn handle(&self, req: &OracleRequest) -> Outcome {
        if req.requester != self.chain.contract() {
            return Outcome::Skipped(format!("requester {} is not our contract", req.requester));
        }
        let params = match RequestParams::decode(&req.data) {
            Ok(p) => p,
            Err(e) => return Outcome::Skipped(e.to_string()),
        };
        let measured = match measure_tree(&self.node, &params.btns_key).await {
            Ok(m) => m,
            Err(e) => return Outcome::Skipped(e.to_string()),
        };
        if measured.token_id != params.token_id {
            return Outcome::Skipped(format!(
                "the usage document under {} is for token {}, not {}",
                params.btns_key, measured.token_id, params.token_id
            ));
        }
        match self
            .chain
            .fulfill_sync(self.operator, req, measured.usage, &measured.root)
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
