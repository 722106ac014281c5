//! Following the contract: the events that change what the mount shows — tokens arriving
//! or leaving (Transfer), a BTNS key set, a sync landing (Synced, ERC-4906 MetadataUpdate).

use alloy::primitives::{Address, U256};
use alloy::providers::Provider;
use alloy::rpc::types::{Filter, Log};
use alloy::sol_types::SolEvent;
use serde::Serialize;

use super::contracts::PxStorageNFT;
use super::{Chain, ChainError, TokenId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ChainEvent {
    Transfer {
        token_id: TokenId,
        from: Address,
        to: Address,
    },
    BtnsKeyRegistered {
        token_id: TokenId,
        btns_key: String,
    },
    SyncRequested {
        token_id: TokenId,
    },
    Synced {
        token_id: TokenId,
        usage: u64,
        root: String,
    },
    MetadataUpdate {
        token_id: TokenId,
    },
}

impl ChainEvent {
    pub fn token_id(&self) -> TokenId {
        match self {
            ChainEvent::Transfer { token_id, .. }
            | ChainEvent::BtnsKeyRegistered { token_id, .. }
            | ChainEvent::SyncRequested { token_id }
            | ChainEvent::Synced { token_id, .. }
            | ChainEvent::MetadataUpdate { token_id } => *token_id,
        }
    }

    fn decode(log: &Log) -> Option<ChainEvent> {
        let id = |v: U256| v.saturating_to::<TokenId>();
        match log.topic0()? {
            t if *t == PxStorageNFT::Transfer::SIGNATURE_HASH => {
                let e = log.log_decode::<PxStorageNFT::Transfer>().ok()?.inner.data;
                Some(ChainEvent::Transfer {
                    token_id: id(e.tokenId),
                    from: e.from,
                    to: e.to,
                })
            }
            t if *t == PxStorageNFT::BtnsKeyRegistered::SIGNATURE_HASH => {
                let e = log
                    .log_decode::<PxStorageNFT::BtnsKeyRegistered>()
                    .ok()?
                    .inner
                    .data;
                Some(ChainEvent::BtnsKeyRegistered {
                    token_id: id(e.tokenId),
                    btns_key: e.btnsKey,
                })
            }
            t if *t == PxStorageNFT::SyncRequested::SIGNATURE_HASH => {
                let e = log
                    .log_decode::<PxStorageNFT::SyncRequested>()
                    .ok()?
                    .inner
                    .data;
                Some(ChainEvent::SyncRequested {
                    token_id: id(e.tokenId),
                })
            }
            t if *t == PxStorageNFT::Synced::SIGNATURE_HASH => {
                let e = log.log_decode::<PxStorageNFT::Synced>().ok()?.inner.data;
                Some(ChainEvent::Synced {
                    token_id: id(e.tokenId),
                    usage: e.usage.saturating_to(),
                    root: e.root,
                })
            }
            t if *t == PxStorageNFT::MetadataUpdate::SIGNATURE_HASH => {
                let e = log
                    .log_decode::<PxStorageNFT::MetadataUpdate>()
                    .ok()?
                    .inner
                    .data;
                Some(ChainEvent::MetadataUpdate {
                    token_id: id(e._tokenId),
                })
            }
            _ => None,
        }
    }
}

impl Chain {
    /// The contract's events in blocks `from_block..=to_block`, in chain order. A follower
    /// starts at `block_number() + 1` and polls with `from_block` = the previous `to_block + 1`.
    pub async fn events(
        &self,
        from_block: u64,
        to_block: u64,
    ) -> Result<Vec<ChainEvent>, ChainError> {
        if from_block > to_block {
            return Ok(Vec::new());
        }
        let filter = Filter::new()
            .address(self.contract)
            .from_block(from_block)
            .to_block(to_block);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| ChainError::Rpc(e.to_string()))?;
        Ok(logs.iter().filter_map(ChainEvent::decode).collect())
    }
}

impl Chain {
    /// The root of the token's last `Synced` event (what the chain last recorded as
    /// synced), searched from the head back to the configured start block in windows of
    /// `log_range_blocks`; `None` if it was never synced.
    pub async fn last_synced_root(&self, token: TokenId) -> Result<Option<String>, ChainError> {
        let head = self.block_number().await?;
        let topic = alloy::primitives::B256::from(U256::from(token));
        let mut to = head;
        loop {
            let from = to.saturating_sub(self.log_range - 1).max(self.start_block);
            let filter = Filter::new()
                .address(self.contract)
                .event_signature(PxStorageNFT::Synced::SIGNATURE_HASH)
                .topic1(topic)
                .from_block(from)
                .to_block(to);
            let logs = self
                .provider
                .get_logs(&filter)
                .await
                .map_err(|e| super::unreachable(&self.rpc_url, e))?;
            if let Some(ChainEvent::Synced { root, .. }) =
                logs.iter().rev().find_map(ChainEvent::decode)
            {
                return Ok(Some(root));
            }
            if from <= self.start_block || from == 0 {
                return Ok(None);
            }
            to = from - 1;
        }
    }
}
