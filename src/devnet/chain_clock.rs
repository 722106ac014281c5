//! The devnet chain's clock. Anvil starts without mining; once its saved state is loaded,
//! the clock is checked against the last block and interval mining (a block every second,
//! stamped with the wall-clock time) begins.
//!
//! Chain time is wall-clock time, so the time a devnet was stopped counts towards an sNFT's
//! sync deadline, as it would on a real chain. What must not happen is a block older than
//! the last one (after `evm_increaseTime` in a test, or a system clock set back): the
//! contract's `block.timestamp - lastUpdateTimestamp` would underflow and revert. Then the
//! clock continues from the last block instead.

use std::time::{SystemTime, UNIX_EPOCH};

use alloy::eips::BlockNumberOrTag;
use alloy::providers::{Provider, ProviderBuilder};

use super::DevnetError;

/// Seconds between blocks.
pub const BLOCK_TIME: u64 = 1;

fn clock_err(e: impl std::fmt::Display) -> DevnetError {
    DevnetError::ChainClock(e.to_string())
}

/// Sets anvil's clock to no earlier than its last block and starts interval mining.
/// Returns the timestamp the next block gets at least.
pub async fn start_mining(rpc_url: &str) -> Result<u64, DevnetError> {
    let provider = ProviderBuilder::new()
        .connect(rpc_url)
        .await
        .map_err(clock_err)?;
    let last = provider
        .get_block_by_number(BlockNumberOrTag::Latest)
        .await
        .map_err(clock_err)?
        .map(|b| b.header.timestamp)
        .unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let next = if last >= now {
        let next = last + 1;
        let _: serde_json::Value = provider
            .raw_request("evm_setTime".into(), (next,))
            .await
            .map_err(clock_err)?;
        tracing::info!(
            last_block = last,
            "the saved chain is ahead of the wall clock; its clock continues from its last block"
        );
        next
    } else {
        now
    };
    let _: serde_json::Value = provider
        .raw_request("evm_setIntervalMining".into(), (BLOCK_TIME,))
        .await
        .map_err(clock_err)?;
    Ok(next)
}
