//! `ChainError`: every way a chain operation fails, each worded as one sentence a user can
//! act on. Contract reverts are decoded into these variants, never shown as raw hex.

use alloy::primitives::{Address, B256, U256};

use super::TokenId;

#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    #[error("cannot reach the chain RPC at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the RPC at {url} is chain {actual}, but the config says {expected}")]
    WrongChain {
        url: String,
        actual: u64,
        expected: u64,
    },
    #[error(
        "there is no contract at {address} on chain {chain_id}; check `contract` in the config"
    )]
    NoContract { address: Address, chain_id: u64 },
    #[error("the config's {field} address {value:?} is not a valid address")]
    BadAddress { field: &'static str, value: String },
    #[error("no signer: set PXFS_PRIVATE_KEY or `keystore` in the config's [chain] section")]
    NoSigner,
    #[error(
        "no oracle signer: set PXFS_ORACLE_KEY to the key of an authorized sender on the Operator"
    )]
    NoOracleSigner,
    #[error("PXFS_PRIVATE_KEY is not a valid private key")]
    BadPrivateKey,
    #[error("cannot unlock the keystore {path}: {reason}")]
    Keystore { path: String, reason: String },
    #[error("the signing key is for {signer}, but the config's wallet is {wallet}")]
    WalletMismatch { signer: Address, wallet: Address },
    #[error("token {0} does not exist")]
    NoSuchToken(TokenId),
    #[error("{caller} is neither the owner of token {token_id} nor approved for it")]
    NotOwner { token_id: TokenId, caller: Address },
    #[error("package {0} does not exist")]
    UnknownPackage(u64),
    #[error("package {0} is not active")]
    PackageInactive(u64),
    #[error("the package costs {expected} wei, not {sent} wei")]
    WrongPayment { expected: U256, sent: U256 },
    #[error("only the contract owner may do this, not {0}")]
    NotContractOwner(Address),
    #[error("{0} has already minted the free package (package 0)")]
    FreePackageUsed(Address),
    #[error("the wallet {wallet} holds {balance} wei, less than the {needed} wei this needs")]
    InsufficientFunds {
        wallet: Address,
        balance: U256,
        needed: U256,
    },
    #[error("token {0} already has a BTNS key")]
    BtnsKeyAlreadyRegistered(TokenId),
    #[error("the BTNS key must not be empty")]
    EmptyBtnsKey,
    #[error("token {0} has no BTNS key; register one with `pxfs register {0}`")]
    NoBtnsKey(TokenId),
    #[error(
        "the contract holds {} LINK, less than the sync fee of {} LINK",
        link(balance),
        link(fee)
    )]
    InsufficientLink { balance: U256, fee: U256 },
    #[error("the contract at {0} cannot list tokens by owner (it is not ERC721Enumerable)")]
    NotEnumerable(Address),
    #[error(
        "the contract at {0} is neither pxfs's PxStorageNFT nor PollinationX's PX.sol (v1 or v2); check `contract` in the config"
    )]
    UnknownContract(Address),
    #[error("{flavour} does not support this: {what}")]
    Unsupported {
        flavour: &'static str,
        what: &'static str,
    },
    #[error(
        "token {token_id} has {left} uploads of bandwidth left, fewer than the {needed} this needs; buy more bandwidth for it"
    )]
    NoBandwidth {
        token_id: TokenId,
        left: u64,
        needed: u64,
    },
    #[error("the contract reverted: {0}")]
    Reverted(String),
    #[error("transaction {0} was mined but failed")]
    TxFailed(B256),
    #[error("the transaction {tx_hash} emitted no {event} event")]
    MissingEvent { tx_hash: B256, event: &'static str },
    #[error("chain RPC error: {0}")]
    Rpc(String),
    #[error("cannot deploy {contract}: {reason}")]
    Deploy {
        contract: &'static str,
        reason: String,
    },
}

/// Juels (10^-18 LINK) as a decimal LINK amount without trailing zeros: 0.1, 10, 0.
fn link(juels: &U256) -> String {
    let one = U256::from(10u64).pow(U256::from(18));
    let (whole, frac) = (juels / one, juels % one);
    if frac.is_zero() {
        return whole.to_string();
    }
    let frac = format!("{frac:0>18}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_amounts_read_as_link() {
        assert_eq!(link(&U256::ZERO), "0");
        assert_eq!(link(&U256::from(100_000_000_000_000_000u128)), "0.1");
        assert_eq!(link(&U256::from(12_500_000_000_000_000_000u128)), "12.5");
    }
}
