//! Which contract the config points at, found at start-up by probing its views:
//! pxfs's own `PxStorageNFT`, PollinationX's `PX.sol` v2 (current) or its older v1.

use alloy::primitives::{Address, Bytes, U256};
use alloy::providers::{DynProvider, Provider};
use alloy::rpc::types::TransactionRequest;
use alloy::sol_types::SolCall;
use serde::Serialize;

use super::ChainError;
use super::contracts::PxStorageNFT;
use super::pxsol::IPxSolV2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flavour {
    /// pxfs's contract: enumerable, BTNS key on chain, usage measured by the oracle.
    PxStorageNft,
    /// PollinationX's PX.sol as deployed today: three-flag `canUpload`, a bandwidth
    /// counter, owner-reported usage through `updateStorageUsage(id, bytes, uploads)`.
    PxSolV2,
    /// PollinationX's older PX.sol: one-flag `canUpload`, no bandwidth, usage updated by
    /// the contract owner only.
    PxSolV1,
}

impl Flavour {
    pub fn name(self) -> &'static str {
        match self {
            Flavour::PxStorageNft => "PxStorageNFT (pxfs)",
            Flavour::PxSolV2 => "PX.sol v2 (PollinationX)",
            Flavour::PxSolV1 => "PX.sol v1 (PollinationX, older)",
        }
    }

    /// Whether the wallet's tokens can be listed with `tokenOfOwnerByIndex`; otherwise
    /// they come from `Transfer` logs.
    pub fn enumerable(self) -> bool {
        self == Flavour::PxStorageNft
    }

    /// Whether a token's owner reports its usage (and so lifts the upload lock) with
    /// `updateStorageUsage`: PX.sol v2 only (pxfs's contract has the oracle measure it).
    pub fn owner_reports_usage(self) -> bool {
        self == Flavour::PxSolV2
    }

    /// What pxfs can do with a token of this contract, one short phrase each.
    pub fn operations(self) -> &'static [&'static str] {
        match self {
            Flavour::PxStorageNft => &[
                "mount (read/write)",
                "mint (mint(package, btnsKey))",
                "register (BTNS key on chain)",
                "sync (Chainlink oracle measures usage)",
            ],
            Flavour::PxSolV2 => &[
                "mount (read/write; tokens from Transfer logs)",
                "mint (mint(package))",
                "register (BTNS name in addExtraContent)",
                "sync (updateStorageUsage by the owner: reports growth, lifts the lock)",
            ],
            Flavour::PxSolV1 => &[
                "mount (read/write until the lock; tokens from Transfer logs)",
                "mint (mint(package))",
                "register (BTNS name in addExtraContent)",
                "no sync: only the contract owner can update usage and lift the lock",
            ],
        }
    }

    /// Probes the views: `syncInterval()` answers only on PxStorageNFT; PX.sol's
    /// `canUpload(0, 0)` returns three words on v2 and one on v1.
    pub async fn detect(provider: &DynProvider, contract: Address) -> Result<Flavour, ChainError> {
        let call = |data: Vec<u8>| {
            let tx = TransactionRequest::default()
                .to(contract)
                .input(Bytes::from(data).into());
            async move { provider.call(tx).await }
        };
        if let Ok(out) = call(PxStorageNFT::syncIntervalCall {}.abi_encode()).await
            && out.len() == 32
        {
            return Ok(Flavour::PxStorageNft);
        }
        let probe = IPxSolV2::canUploadCall {
            tokenId: U256::ZERO,
            size: U256::ZERO,
        }
        .abi_encode();
        match call(probe).await {
            Ok(out) if out.len() == 96 => Ok(Flavour::PxSolV2),
            Ok(out) if out.len() == 32 => Ok(Flavour::PxSolV1),
            Ok(_) | Err(alloy::transports::RpcError::ErrorResp(_)) => {
                Err(ChainError::UnknownContract(contract))
            }
            Err(e) => Err(ChainError::Rpc(e.to_string())),
        }
    }
}
