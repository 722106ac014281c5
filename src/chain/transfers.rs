//! The wallet's tokens of a contract that cannot enumerate them (PX.sol): replayed from
//! `Transfer` logs, scanned from a configured start block in bounded block ranges and
//! followed incrementally. The result is cached (`transfers-<chain>-<contract>-<wallet>.json`
//! in the cache directory) so a restart only scans the blocks it has not seen.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use serde::{Deserialize, Serialize};

use super::pxsol::IPxSolV2::Transfer;
use super::{ChainError, TokenId};

/// What has been learnt from the logs so far: blocks `start_block..next_block` are done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferScan {
    pub chain_id: u64,
    pub contract: Address,
    pub wallet: Address,
    pub start_block: u64,
    pub next_block: u64,
    pub tokens: BTreeSet<TokenId>,
}

impl TransferScan {
    pub fn new(chain_id: u64, contract: Address, wallet: Address, start_block: u64) -> Self {
        TransferScan {
            chain_id,
            contract,
            wallet,
            start_block,
            next_block: start_block,
            tokens: BTreeSet::new(),
        }
    }

    /// The cache file of this scan in `dir`.
    pub fn path_in(&self, dir: &Path) -> PathBuf {
        dir.join(format!(
            "transfers-{}-{:#x}-{:#x}.json",
            self.chain_id, self.contract, self.wallet
        ))
    }

    /// The cached scan from `dir`, if there is one for the same chain, contract, wallet
    /// and start block; otherwise a fresh one. A damaged cache is rescanned, not trusted.
    pub fn load_or_new(self, dir: &Path) -> Self {
        let path = self.path_in(dir);
        let cached = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<TransferScan>(&b).ok());
        match cached {
            Some(c)
                if c.chain_id == self.chain_id
                    && c.contract == self.contract
                    && c.wallet == self.wallet
                    && c.start_block == self.start_block
                    && c.next_block >= c.start_block =>
            {
                c
            }
            Some(_) => {
                tracing::warn!(path = %path.display(), "transfer cache is for another scan; rescanning");
                self
            }
            None => self,
        }
    }

    /// Writes the scan to `dir` (write to a temporary file, then rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let path = self.path_in(dir);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, &path)
    }

    /// Applies one transfer (logs must come in chain order).
    fn apply(&mut self, from: Address, to: Address, token: TokenId) {
        if from == self.wallet {
            self.tokens.remove(&token);
        }
        if to == self.wallet {
            self.tokens.insert(token);
        }
    }

    /// Scans the blocks after `next_block - 1` up to `head`, at most `range` blocks per
    /// `eth_getLogs`; a range the RPC refuses is halved down to one block.
    pub async fn follow(
        &mut self,
        provider: &DynProvider,
        head: u64,
        range: u64,
    ) -> Result<(), ChainError> {
        let mut range = range.max(1);
        while self.next_block <= head {
            let to = head.min(self.next_block.saturating_add(range - 1));
            match self.logs(provider, self.next_block, to).await {
                Ok(logs) => {
                    for (from, to, token) in logs {
                        self.apply(from, to, token);
                    }
                    self.next_block = to + 1;
                }
                Err(e) if range > 1 => {
                    tracing::debug!(error = %e, range, "eth_getLogs refused a range; halving it");
                    range /= 2;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Transfers to or from the wallet in `from..=to`, in chain order.
    async fn logs(
        &self,
        provider: &DynProvider,
        from: u64,
        to: u64,
    ) -> Result<Vec<(Address, Address, TokenId)>, ChainError> {
        let wallet = B256::left_padding_from(self.wallet.as_slice());
        let base = Filter::new()
            .address(self.contract)
            .event_signature(Transfer::SIGNATURE_HASH)
            .from_block(from)
            .to_block(to);
        let incoming = provider
            .get_logs(&base.clone().topic2(wallet))
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        let outgoing = provider
            .get_logs(&base.topic1(wallet))
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        let mut all: Vec<&Log> = incoming.iter().chain(outgoing.iter()).collect();
        all.sort_by_key(|l| (l.block_number, l.log_index));
        all.dedup_by_key(|l| (l.block_number, l.log_index));
        Ok(all
            .into_iter()
            .filter_map(|l| l.log_decode::<Transfer>().ok())
            .map(|l| {
                let t = l.inner.data;
                (t.from, t.to, t.tokenId.saturating_to())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(n: u8) -> Address {
        Address::repeat_byte(n)
    }

    #[test]
    fn transfers_in_and_out_replay_to_what_the_wallet_holds() {
        let mut s = TransferScan::new(1, a(1), a(2), 0);
        s.apply(Address::ZERO, a(2), 1);
        s.apply(Address::ZERO, a(2), 2);
        s.apply(a(2), a(3), 1);
        s.apply(a(3), a(2), 7);
        s.apply(a(2), a(2), 2); // to itself: still held
        assert_eq!(s.tokens.into_iter().collect::<Vec<_>>(), vec![2, 7]);
    }

    #[test]
    fn a_cache_of_another_scan_or_a_damaged_one_is_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = TransferScan::new(1, a(1), a(2), 10);
        s.next_block = 50;
        s.tokens.insert(4);
        s.save(dir.path()).unwrap();
        assert_eq!(
            TransferScan::new(1, a(1), a(2), 10).load_or_new(dir.path()),
            s
        );
        // Another start block: rescan.
        let other = TransferScan::new(1, a(1), a(2), 0).load_or_new(dir.path());
        assert_eq!(other.next_block, 0);
        assert!(other.tokens.is_empty());
        std::fs::write(s.path_in(dir.path()), b"{not json").unwrap();
        assert_eq!(
            TransferScan::new(1, a(1), a(2), 10)
                .load_or_new(dir.path())
                .next_block,
            10
        );
    }
}
