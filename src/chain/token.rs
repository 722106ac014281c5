//! `TokenState`: what pxfs needs to know about one sNFT — quota, usage, sync state, BTNS
//! key — read from either PxStorageNFT or PollinationX's PX.sol.

use serde::Serialize;

use super::TokenId;

/// PX.sol locks uploads 30 days after the last update and does not expose the interval;
/// pxfs assumes that figure when it reads such a contract.
pub const LEGACY_SYNC_INTERVAL_SECS: u64 = 30 * 24 * 60 * 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenState {
    pub token_id: TokenId,
    /// Quota in bytes (`sizeInBytes`).
    pub quota: u64,
    /// Usage in bytes as last synced on-chain.
    pub usage: u64,
    /// Unix time of the last sync (or of the mint).
    pub last_sync: u64,
    pub sync_interval: u64,
    /// `last_sync + sync_interval`: after this chain time uploads are locked.
    pub sync_deadline: u64,
    /// Whether the contract locks uploads now (its `canUpload(..).timestampLock`).
    pub overdue: bool,
    pub btns_key: Option<String>,
    /// The latest block's timestamp when this was read.
    pub chain_time: u64,
    /// PX.sol v2: uploads left on the bandwidth counter; `None` where there is none.
    pub bandwidth: Option<u64>,
}

impl TokenState {
    /// Seconds until the sync deadline by chain time; 0 once it has passed.
    pub fn seconds_left(&self) -> u64 {
        self.sync_deadline.saturating_sub(self.chain_time)
    }

    /// Bytes that can still be added before the quota is reached.
    pub fn free_bytes(&self) -> u64 {
        self.quota.saturating_sub(self.usage)
    }
}
