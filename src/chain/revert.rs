//! Turning a failed contract call into a `ChainError` a user understands: the contract's
//! custom errors, OpenZeppelin's, and plain revert strings.

use alloy::contract::Error as ContractError;
use alloy::sol_types::Revert;
use alloy::transports::RpcError;

use super::ChainError;
use super::contracts::PxStorageNFT::PxStorageNFTErrors as E;

/// Whether the call reached the chain and the contract reverted (as opposed to the RPC
/// failing). Readers use it to tell "this contract has no such view" from "no answer".
pub fn is_revert(err: &ContractError) -> bool {
    match err {
        ContractError::TransportError(RpcError::ErrorResp(_)) => true,
        ContractError::ZeroData(..) | ContractError::AbiError(_) => true,
        other => other.as_revert_data().is_some(),
    }
}

pub fn to_chain_error(err: ContractError) -> ChainError {
    if let Some(e) = err.as_decoded_interface_error::<E>() {
        return from_contract_error(e);
    }
    if let Some(Revert { reason }) = err.as_decoded_error::<Revert>() {
        return ChainError::Reverted(reason);
    }
    if let Some(data) = err.as_revert_data() {
        return ChainError::Reverted(if data.is_empty() {
            "no reason given".into()
        } else {
            format!("unknown error data {data}")
        });
    }
    match err {
        ContractError::TransportError(RpcError::ErrorResp(resp)) => {
            ChainError::Reverted(resp.message.to_string())
        }
        other => ChainError::Rpc(other.to_string()),
    }
}

fn from_contract_error(e: E) -> ChainError {
    let u64_of = |v: alloy::primitives::U256| v.saturating_to::<u64>();
    match e {
        E::UnknownPackage(x) => ChainError::UnknownPackage(u64_of(x.packageId)),
        E::PackageInactive(x) => ChainError::PackageInactive(u64_of(x.packageId)),
        E::WrongPayment(x) => ChainError::WrongPayment {
            expected: x.expected,
            sent: x.sent,
        },
        E::FreePackageAlreadyMinted(x) => ChainError::FreePackageUsed(x.minter),
        E::NotOwnerOrApproved(x) => ChainError::NotOwner {
            token_id: u64_of(x.tokenId),
            caller: x.caller,
        },
        E::BtnsKeyAlreadyRegistered(x) => ChainError::BtnsKeyAlreadyRegistered(u64_of(x.tokenId)),
        E::EmptyBtnsKey(_) => ChainError::EmptyBtnsKey,
        E::NoBtnsKey(x) => ChainError::NoBtnsKey(u64_of(x.tokenId)),
        E::InsufficientLink(x) => ChainError::InsufficientLink {
            balance: x.balance,
            fee: x.fee,
        },
        E::ERC721NonexistentToken(x) => ChainError::NoSuchToken(u64_of(x.tokenId)),
        E::OwnableUnauthorizedAccount(x) => ChainError::NotContractOwner(x.account),
        other => ChainError::Reverted(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::U256;

    #[test]
    fn contract_errors_become_user_errors() {
        let e = E::NoBtnsKey(super::super::contracts::PxStorageNFT::NoBtnsKey {
            tokenId: U256::from(7),
        });
        let msg = from_contract_error(e).to_string();
        assert_eq!(
            msg,
            "token 7 has no BTNS key; register one with `pxfs register 7`"
        );
    }
}
