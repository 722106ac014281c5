//! Devnet deployment: LinkToken, Operator (with the oracle node as authorized sender) and
//! PxStorageNFT, then LINK for the contract to pay syncs with.

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde::Serialize;

use super::ChainError;
use super::contracts::{LinkToken, Operator, PxStorageNFT};

/// The Chainlink job the oracle answers: a job's external id (a UUID without dashes) as
/// ASCII bytes, the way Chainlink nodes name direct-request jobs.
pub const DEVNET_JOB_ID: [u8; 32] = *b"5f1c0a9e7d3b4e2a8c6f1b0d9e8a7c6b";

/// LINK (in juels, 18 decimals) the contract pays per sync on the devnet: 0.1 LINK.
pub const DEVNET_SYNC_FEE: u128 = 100_000_000_000_000_000;

/// `whole` LINK in juels (18 decimals).
pub fn link_juels(whole: u64) -> U256 {
    U256::from(whole) * U256::from(10u64).pow(U256::from(18u64))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployParams {
    /// Seconds after the last sync before uploads lock.
    pub sync_interval: u64,
    /// Quota of the free package 0, in bytes.
    pub free_quota_bytes: u64,
    /// The account that may answer requests on the Operator (the `pxfs oracle` key).
    pub oracle_node: Address,
    /// LINK (juels) minted to the PxStorageNFT contract for sync fees.
    pub link_funding: U256,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deployment {
    pub link: Address,
    pub operator: Address,
    pub contract: Address,
    pub job_id: B256,
    pub chain_id: u64,
}

pub async fn deploy_devnet(
    rpc_url: &str,
    deployer_key: &str,
    params: DeployParams,
) -> Result<Deployment, ChainError> {
    let signer: PrivateKeySigner = deployer_key
        .trim()
        .parse()
        .map_err(|_| ChainError::BadPrivateKey)?;
    let deployer = signer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect(rpc_url)
        .await
        .map_err(|e| ChainError::Unreachable {
            url: rpc_url.to_string(),
            reason: e.to_string(),
        })?;
    let chain_id = provider
        .get_chain_id()
        .await
        .map_err(|e| ChainError::Unreachable {
            url: rpc_url.to_string(),
            reason: e.to_string(),
        })?;

    let fail = |contract: &'static str| {
        move |e: alloy::contract::Error| ChainError::Deploy {
            contract,
            reason: e.to_string(),
        }
    };
    let link = LinkToken::deploy(&provider)
        .await
        .map_err(fail("LinkToken"))?;
    let operator = Operator::deploy(&provider, *link.address(), deployer)
        .await
        .map_err(fail("Operator"))?;
    confirm(
        operator
            .setAuthorizedSenders(vec![params.oracle_node])
            .send()
            .await,
        "Operator",
    )
    .await?;

    let job_id = B256::from(DEVNET_JOB_ID);
    let nft = PxStorageNFT::deploy(
        &provider,
        *link.address(),
        *operator.address(),
        job_id,
        U256::from(DEVNET_SYNC_FEE),
        U256::from(params.sync_interval),
        U256::from(params.free_quota_bytes),
    )
    .await
    .map_err(fail("PxStorageNFT"))?;

    if params.link_funding > U256::ZERO {
        confirm(link.grantMintRole(deployer).send().await, "LinkToken").await?;
        confirm(
            link.mint(*nft.address(), params.link_funding).send().await,
            "LinkToken",
        )
        .await?;
    }
    tracing::info!(contract = %nft.address(), operator = %operator.address(), link = %link.address(), "devnet contracts deployed");
    Ok(Deployment {
        link: *link.address(),
        operator: *operator.address(),
        contract: *nft.address(),
        job_id,
        chain_id,
    })
}

async fn confirm(
    sent: Result<
        alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
        alloy::contract::Error,
    >,
    contract: &'static str,
) -> Result<(), ChainError> {
    let fail = |reason: String| ChainError::Deploy { contract, reason };
    let receipt = sent
        .map_err(|e| fail(e.to_string()))?
        .get_receipt()
        .await
        .map_err(|e| fail(e.to_string()))?;
    if !receipt.status() {
        return Err(fail(format!(
            "transaction {} failed",
            receipt.transaction_hash
        )));
    }
    Ok(())
}
