//! The Chainlink Operator as the oracle sees it: `OracleRequest` events for a job, and
//! `fulfillOracleRequest2` with the sync answer.

use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256};
use alloy::providers::Provider;
use alloy::rpc::types::Filter;
use alloy::sol_types::{SolEvent, SolValue};

use super::contracts::Operator;
use super::{Chain, ChainError, TxReceiptInfo, revert};

/// One `OracleRequest` the Operator emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleRequest {
    pub block: u64,
    pub job_id: B256,
    pub requester: Address,
    pub request_id: B256,
    pub payment: U256,
    pub callback: Address,
    pub callback_function: FixedBytes<4>,
    pub expiration: U256,
    /// The request parameters, CBOR as ChainlinkClient encodes them (a map body without
    /// its header).
    pub data: Bytes,
}

impl Chain {
    /// The latest block number.
    pub async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider()
            .get_block_number()
            .await
            .map_err(|e| super::unreachable(self.rpc_url(), e))
    }

    /// `OracleRequest` events of `operator` for `job_id` in blocks `from..=to`.
    pub async fn oracle_requests(
        &self,
        operator: Address,
        job_id: B256,
        from: u64,
        to: u64,
    ) -> Result<Vec<OracleRequest>, ChainError> {
        let filter = Filter::new()
            .address(operator)
            .event_signature(Operator::OracleRequest::SIGNATURE_HASH)
            .topic1(job_id)
            .from_block(from)
            .to_block(to);
        let logs = self
            .provider()
            .get_logs(&filter)
            .await
            .map_err(|e| super::unreachable(self.rpc_url(), e))?;
        let mut out = Vec::with_capacity(logs.len());
        for log in logs {
            let block = log.block_number.unwrap_or(from);
            let Ok(ev) = log.log_decode::<Operator::OracleRequest>() else {
                tracing::warn!(block, "undecodable OracleRequest log; skipped");
                continue;
            };
            let e = ev.inner.data;
            out.push(OracleRequest {
                block,
                job_id: e.specId,
                requester: e.requester,
                request_id: e.requestId,
                payment: e.payment,
                callback: e.callbackAddr,
                callback_function: e.callbackFunctionId,
                expiration: e.cancelExpiration,
                data: e.data,
            });
        }
        Ok(out)
    }

    /// Answers a sync request through the Operator: the contract's `fulfillSync` receives
    /// `(requestId, usage, root)`. Simulated first: an already answered or expired request
    /// is refused without sending anything.
    pub async fn fulfill_sync(
        &self,
        operator: Address,
        req: &OracleRequest,
        usage: u64,
        root: &str,
    ) -> Result<TxReceiptInfo, ChainError> {
        let op = Operator::new(operator, self.provider());
        let data = (req.request_id, U256::from(usage), root.to_string()).abi_encode_params();
        let call = op
            .fulfillOracleRequest2(
                req.request_id,
                req.payment,
                req.callback,
                req.callback_function,
                req.expiration,
                data.into(),
            )
            .from(self.wallet());
        let ok = call.call().await.map_err(revert::to_chain_error)?;
        if !ok {
            return Err(ChainError::Reverted(
                "the contract rejected the sync answer".into(),
            ));
        }
        let receipt = self.mined(call.send().await).await?;
        Ok(TxReceiptInfo {
            tx_hash: receipt.transaction_hash,
            gas_used: receipt.gas_used,
        })
    }
}
