//! Chain layer (alloy): the PxStorageNFT contract, LinkToken and Operator; reads of owned
//! tokens and their quota/sync state; `mint`, `registerBtnsKey`, `sync`; devnet deploy.
//!
//! Every transaction is simulated with `eth_call` first and checked with plain reads, so a
//! request that would fail is refused with a sentence before anything is sent.

pub mod anvil;
pub mod contracts;
pub mod deploy;
mod error;
mod events;
mod flavour;
mod operator;
pub mod pxsol;
mod revert;
pub mod signer;
mod token;
mod transfers;

use alloy::eips::BlockNumberOrTag;
use alloy::network::EthereumWallet;
use alloy::primitives::{Address, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::rpc::types::TransactionReceipt;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::SolEvent;
use serde::Serialize;
use std::path::PathBuf;
use std::sync::Arc;

use crate::config::ChainConfig;
use contracts::{LinkToken, PxStorageNFT};
use pxsol::{IPxSolV1, IPxSolV2};

pub use error::ChainError;
pub use events::ChainEvent;
pub use flavour::Flavour;
pub use operator::OracleRequest;
pub use revert::is_revert;
pub use token::{LEGACY_SYNC_INTERVAL_SECS, TokenState};
pub use transfers::TransferScan;

pub type TokenId = u64;

/// A provider (with the wallet's signer when sending) bound to the configured contract.
#[derive(Clone)]
pub struct Chain {
    provider: DynProvider,
    rpc_url: String,
    chain_id: u64,
    contract: Address,
    wallet: Address,
    flavour: Flavour,
    start_block: u64,
    log_range: u64,
    /// The wallet's tokens from `Transfer` logs (non-enumerable contracts), shared by the
    /// clones of this `Chain` so each poll scans only new blocks.
    transfers: Arc<tokio::sync::Mutex<TransferScan>>,
    /// Where the transfer scan is cached between runs; `None` keeps it in memory.
    cache_dir: Option<PathBuf>,
}

/// The extra-content key under which pxfs records a PX.sol token's BTNS name, as
/// `{"btns":"<name>"}`.
pub const EXTRA_CONTENT_KEY: &str = "pxfs";

/// A mined transaction, for the user and for gas accounting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TxReceiptInfo {
    pub tx_hash: B256,
    pub gas_used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Minted {
    pub token_id: TokenId,
    pub tx_hash: B256,
    pub gas_used: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncRequest {
    pub token_id: TokenId,
    pub request_id: B256,
    pub tx_hash: B256,
    pub gas_used: u64,
}

/// A storage package as the contract lists it (`getAllPackages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub id: u64,
    pub name: String,
    pub price_wei: U256,
    pub size_in_bytes: u64,
    pub active: bool,
}

pub fn parse_address(field: &'static str, value: &str) -> Result<Address, ChainError> {
    value.trim().parse().map_err(|_| ChainError::BadAddress {
        field,
        value: value.to_string(),
    })
}

impl Chain {
    /// Read-only: checks the chain id and that code exists at the contract address.
    pub async fn connect(cfg: &ChainConfig) -> Result<Chain, ChainError> {
        let wallet = parse_address("wallet", &cfg.wallet)?;
        let provider = ProviderBuilder::new()
            .connect(&cfg.rpc_url)
            .await
            .map_err(|e| unreachable(&cfg.rpc_url, e))?
            .erased();
        Self::bind(provider, cfg, wallet).await
    }

    /// With the signer (`PXFS_PRIVATE_KEY` or the keystore), which must be the config's wallet.
    pub async fn connect_signing(cfg: &ChainConfig) -> Result<Chain, ChainError> {
        Self::connect_with_signer(cfg, signer::load(cfg)?).await
    }

    /// With an explicit signer (the devnet, the oracle, tests); it must be the config's wallet.
    pub async fn connect_with_signer(
        cfg: &ChainConfig,
        signer: PrivateKeySigner,
    ) -> Result<Chain, ChainError> {
        let wallet = parse_address("wallet", &cfg.wallet)?;
        if signer.address() != wallet {
            return Err(ChainError::WalletMismatch {
                signer: signer.address(),
                wallet,
            });
        }
        Self::connect_as(cfg, signer).await
    }

    /// Signing with an explicit key (the devnet's own accounts), as the config's wallet.
    pub async fn connect_with_key(cfg: &ChainConfig, key: &str) -> Result<Chain, ChainError> {
        let signer = signer::parse(key)?;
        Self::connect_as(cfg, signer).await
    }

    /// Signing as the oracle node (`PXFS_ORACLE_KEY`): an authorized sender on the
    /// Operator, not the wallet that owns the tokens.
    pub async fn connect_oracle(cfg: &ChainConfig) -> Result<Chain, ChainError> {
        let signer = signer::load_oracle()?;
        let mut chain = Self::connect_as(cfg, signer.clone()).await?;
        chain.wallet = signer.address();
        Ok(chain)
    }

    async fn connect_as(cfg: &ChainConfig, signer: PrivateKeySigner) -> Result<Chain, ChainError> {
        let wallet = parse_address("wallet", &cfg.wallet)?;
        let provider = ProviderBuilder::new()
            .wallet(EthereumWallet::from(signer))
            .connect(&cfg.rpc_url)
            .await
            .map_err(|e| unreachable(&cfg.rpc_url, e))?
            .erased();
        Self::bind(provider, cfg, wallet).await
    }

    async fn bind(
        provider: DynProvider,
        cfg: &ChainConfig,
        wallet: Address,
    ) -> Result<Chain, ChainError> {
        let contract = parse_address("contract", &cfg.contract)?;
        let actual = provider
            .get_chain_id()
            .await
            .map_err(|e| unreachable(&cfg.rpc_url, e))?;
        if actual != cfg.chain_id {
            return Err(ChainError::WrongChain {
                url: cfg.rpc_url.clone(),
                actual,
                expected: cfg.chain_id,
            });
        }
        let code = provider.get_code_at(contract).await.map_err(rpc)?;
        if code.is_empty() {
            return Err(ChainError::NoContract {
                address: contract,
                chain_id: actual,
            });
        }
        let flavour = Flavour::detect(&provider, contract).await?;
        tracing::debug!(flavour = flavour.name(), %contract, "contract flavour");
        let scan = TransferScan::new(actual, contract, wallet, cfg.start_block);
        Ok(Chain {
            provider,
            rpc_url: cfg.rpc_url.clone(),
            chain_id: actual,
            contract,
            wallet,
            flavour,
            start_block: cfg.start_block,
            log_range: cfg.log_range_blocks.max(1),
            transfers: Arc::new(tokio::sync::Mutex::new(scan)),
            cache_dir: None,
        })
    }

    /// Caches the `Transfer` scan of a non-enumerable contract in `dir` (the cache
    /// directory), starting from what an earlier run left there.
    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Chain {
        let dir = dir.into();
        let fresh = TransferScan::new(self.chain_id, self.contract, self.wallet, self.start_block);
        self.transfers = Arc::new(tokio::sync::Mutex::new(fresh.load_or_new(&dir)));
        self.cache_dir = Some(dir);
        self
    }

    /// Which contract this is: pxfs's, PX.sol v2 or v1.
    pub fn flavour(&self) -> Flavour {
        self.flavour
    }

    fn px2(&self) -> IPxSolV2::IPxSolV2Instance<&DynProvider> {
        IPxSolV2::new(self.contract, &self.provider)
    }

    fn px1(&self) -> IPxSolV1::IPxSolV1Instance<&DynProvider> {
        IPxSolV1::new(self.contract, &self.provider)
    }

    /// Whether the wallet owns `id` now (`ownerOf`; no enumeration).
    pub async fn owns(&self, id: TokenId) -> Result<bool, ChainError> {
        let owns = match self.require_exists(id).await {
            Ok(owner) => Ok(owner == self.wallet),
            Err(ChainError::NoSuchToken(_)) => Ok(false),
            Err(e) => Err(e),
        };
        crate::metrics::chain_call("owns", owns)
    }

    pub fn wallet(&self) -> Address {
        self.wallet
    }

    pub fn contract(&self) -> Address {
        self.contract
    }

    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    pub fn rpc_url(&self) -> &str {
        &self.rpc_url
    }

    /// The underlying provider, for callers that follow events or need raw reads.
    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    fn nft(&self) -> PxStorageNFT::PxStorageNFTInstance<&DynProvider> {
        PxStorageNFT::new(self.contract, &self.provider)
    }

    /// Tokens the wallet owns: in the contract's enumeration order, or (PX.sol) in
    /// ascending order from the `Transfer` logs up to the latest block.
    pub async fn owned_tokens(&self) -> Result<Vec<TokenId>, ChainError> {
        crate::metrics::chain_call("owned_tokens", self.owned_tokens_uncounted().await)
    }

    async fn owned_tokens_uncounted(&self) -> Result<Vec<TokenId>, ChainError> {
        if !self.flavour.enumerable() {
            return self.owned_tokens_from_logs().await;
        }
        let nft = self.nft();
        let count = nft
            .balanceOf(self.wallet)
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        let mut ids = Vec::new();
        for i in 0..count.saturating_to::<u64>() {
            let id = nft
                .tokenOfOwnerByIndex(self.wallet, U256::from(i))
                .call()
                .await
                .map_err(|e| match is_revert(&e) {
                    true => ChainError::NotEnumerable(self.contract),
                    false => revert::to_chain_error(e),
                })?;
            ids.push(id.saturating_to());
        }
        Ok(ids)
    }

    async fn owned_tokens_from_logs(&self) -> Result<Vec<TokenId>, ChainError> {
        let head = self.provider.get_block_number().await.map_err(rpc)?;
        let mut scan = self.transfers.lock().await;
        let before = scan.next_block;
        scan.follow(&self.provider, head, self.log_range).await?;
        if let Some(dir) = &self.cache_dir
            && scan.next_block != before
            && let Err(e) = scan.save(dir)
        {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot cache the transfer scan");
        }
        Ok(scan.tokens.iter().copied().collect())
    }

    /// The latest block's timestamp: the clock the contract judges "overdue" by.
    pub async fn chain_time(&self) -> Result<u64, ChainError> {
        let block = self
            .provider
            .get_block_by_number(BlockNumberOrTag::Latest)
            .await
            .map_err(rpc)?
            .ok_or_else(|| ChainError::Rpc("the RPC returned no latest block".into()))?;
        Ok(block.header.timestamp)
    }

    /// Quota, usage and sync state of one token. Works on PX.sol too: a contract without
    /// `btnsKey`/`syncInterval` gives no key and PX.sol's 30-day interval.
    pub async fn token(&self, id: TokenId) -> Result<TokenState, ChainError> {
        let state = match self.flavour {
            Flavour::PxStorageNft => self.token_pxfs(id).await,
            Flavour::PxSolV2 | Flavour::PxSolV1 => self.token_px_sol(id).await,
        };
        crate::metrics::chain_call("token", state)
    }

    async fn token_px_sol(&self, id: TokenId) -> Result<TokenState, ChainError> {
        self.require_exists(id).await?;
        let tid = U256::from(id);
        let err = revert::to_chain_error;
        let (quota, usage, last_sync, bandwidth, lock) = match self.flavour {
            Flavour::PxSolV2 => {
                let s = self.px2().pxStorage(tid).call().await.map_err(err)?;
                let gate = self
                    .px2()
                    .canUpload(tid, U256::ZERO)
                    .call()
                    .await
                    .map_err(err)?;
                (
                    s.sizeInBytes,
                    s.usage,
                    s.lastUpdateTimestamp,
                    Some(s.bandwidth.saturating_to()),
                    Some(gate.timestampLock),
                )
            }
            _ => {
                let s = self.px1().pxStorage(tid).call().await.map_err(err)?;
                (s.sizeInBytes, s.usage, s.lastUpdateTimestamp, None, None)
            }
        };
        let chain_time = self.chain_time().await?;
        let last_sync: u64 = last_sync.saturating_to();
        let sync_interval = LEGACY_SYNC_INTERVAL_SECS;
        // v1 answers one flag for size and lock together: the lock is PX.sol's rule.
        let overdue = lock.unwrap_or(chain_time.saturating_sub(last_sync) > sync_interval);
        Ok(TokenState {
            token_id: id,
            quota: quota.saturating_to(),
            usage: usage.saturating_to(),
            last_sync,
            sync_interval,
            sync_deadline: last_sync.saturating_add(sync_interval),
            overdue,
            btns_key: self.extra_content_btns(id).await?,
            chain_time,
            bandwidth,
        })
    }

    /// PX.sol: the token's extra content under `key` (`getExtraContent`); `None` when
    /// nothing is recorded there (or the contract has no extra content).
    pub async fn extra_content(
        &self,
        id: TokenId,
        key: &str,
    ) -> Result<Option<String>, ChainError> {
        match self
            .px2()
            .getExtraContent(U256::from(id), key.into())
            .call()
            .await
        {
            Ok(t) if t.is_empty() => Ok(None),
            Ok(t) => Ok(Some(t)),
            Err(e) if is_revert(&e) => Ok(None),
            Err(e) => Err(revert::to_chain_error(e)),
        }
    }

    /// The BTNS name `pxfs register` recorded in the token's extra content, if any.
    pub async fn extra_content_btns(&self, id: TokenId) -> Result<Option<String>, ChainError> {
        let text = match self
            .px2()
            .getExtraContent(U256::from(id), EXTRA_CONTENT_KEY.into())
            .call()
            .await
        {
            Ok(t) => t,
            Err(e) if is_revert(&e) => return Ok(None),
            Err(e) => return Err(revert::to_chain_error(e)),
        };
        Ok(parse_btns_record(&text))
    }

    async fn token_pxfs(&self, id: TokenId) -> Result<TokenState, ChainError> {
        let nft = self.nft();
        let tid = U256::from(id);
        self.require_exists(id).await?;
        let storage = nft
            .pxStorage(tid)
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        let gate = nft
            .canUpload(tid, U256::ZERO)
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        let btns_key = match nft.btnsKey(tid).call().await {
            Ok(k) if k.is_empty() => None,
            Ok(k) => Some(k),
            Err(e) if is_revert(&e) => None,
            Err(e) => return Err(revert::to_chain_error(e)),
        };
        let sync_interval = match nft.syncInterval().call().await {
            Ok(v) => v.saturating_to(),
            Err(e) if is_revert(&e) => LEGACY_SYNC_INTERVAL_SECS,
            Err(e) => return Err(revert::to_chain_error(e)),
        };
        let last_sync: u64 = storage.lastUpdateTimestamp.saturating_to();
        Ok(TokenState {
            token_id: id,
            quota: storage.sizeInBytes.saturating_to(),
            usage: storage.usage.saturating_to(),
            last_sync,
            sync_interval,
            sync_deadline: last_sync.saturating_add(sync_interval),
            overdue: gate.timestampLock,
            btns_key,
            chain_time: self.chain_time().await?,
            bandwidth: None,
        })
    }

    /// The storage packages on offer.
    pub async fn packages(&self) -> Result<Vec<Package>, ChainError> {
        if self.flavour != Flavour::PxStorageNft {
            let all = self
                .px2()
                .getAllPackages()
                .call()
                .await
                .map_err(revert::to_chain_error)?;
            return Ok(all
                .into_iter()
                .map(|p| Package {
                    id: p.id.saturating_to(),
                    name: p.name,
                    price_wei: p.price,
                    size_in_bytes: p.sizeInBytes.saturating_to(),
                    active: p.active == U256::from(1),
                })
                .collect());
        }
        let all = self
            .nft()
            .getAllPackages()
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        Ok(all
            .into_iter()
            .map(|p| Package {
                id: p.id.saturating_to(),
                name: p.name,
                price_wei: p.price,
                size_in_bytes: p.sizeInBytes.saturating_to(),
                active: p.active == U256::from(1),
            })
            .collect())
    }

    /// LINK (in juels) the contract holds to pay for syncs.
    pub async fn link_balance_of_contract(&self) -> Result<U256, ChainError> {
        let link = self
            .nft()
            .linkToken()
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        LinkToken::new(link, &self.provider)
            .balanceOf(self.contract)
            .call()
            .await
            .map_err(revert::to_chain_error)
    }

    /// LINK (in juels) one sync costs.
    pub async fn sync_fee(&self) -> Result<U256, ChainError> {
        self.nft()
            .syncFee()
            .call()
            .await
            .map_err(revert::to_chain_error)
    }

    /// Everything `mint` checks before sending, so a caller can stop before doing other
    /// work (such as generating a BTNS key) for a mint that would be refused.
    pub async fn check_mint(&self, package_id: u64) -> Result<Package, ChainError> {
        let package = self
            .packages()
            .await?
            .into_iter()
            .find(|p| p.id == package_id)
            .ok_or(ChainError::UnknownPackage(package_id))?;
        if !package.active {
            return Err(ChainError::PackageInactive(package_id));
        }
        // pxfs's free package is package 0; PX.sol's is the one without a price.
        let free = match self.flavour {
            Flavour::PxStorageNft => package_id == 0,
            _ => package.price_wei.is_zero(),
        };
        if free {
            let used = match self.flavour {
                Flavour::PxStorageNft => self.nft().freePackageMinted(self.wallet).call().await,
                _ => self.px2().pxFreePackage(self.wallet).call().await,
            }
            .map_err(revert::to_chain_error)?;
            if used != U256::ZERO {
                return Err(ChainError::FreePackageUsed(self.wallet));
            }
        }
        let balance = self.provider.get_balance(self.wallet).await.map_err(rpc)?;
        if balance < package.price_wei {
            return Err(ChainError::InsufficientFunds {
                wallet: self.wallet,
                balance,
                needed: package.price_wei,
            });
        }
        Ok(package)
    }

    /// Mints a token of `package_id` paying exactly its price; `btns_key` may be empty.
    pub async fn mint(&self, package_id: u64, btns_key: &str) -> Result<Minted, ChainError> {
        let package = self.check_mint(package_id).await?;
        if self.flavour != Flavour::PxStorageNft {
            let px = self.px2();
            let call = px
                .mint(U256::from(package_id))
                .value(package.price_wei)
                .from(self.wallet);
            call.call().await.map_err(revert::to_chain_error)?;
            let call = with_gas_margin(call).await?;
            let receipt = self.mined(call.send().await).await?;
            let token_id = receipt
                .logs()
                .iter()
                .find_map(|l| l.log_decode::<IPxSolV2::Transfer>().ok())
                .map(|l| l.inner.data.tokenId.saturating_to())
                .ok_or(ChainError::MissingEvent {
                    tx_hash: receipt.transaction_hash,
                    event: "Transfer",
                })?;
            if !btns_key.is_empty() {
                self.record_btns(token_id, btns_key).await?;
            }
            return Ok(Minted {
                token_id,
                tx_hash: receipt.transaction_hash,
                gas_used: receipt.gas_used,
            });
        }
        let nft = self.nft();
        let call = nft
            .mint(U256::from(package_id), btns_key.to_string())
            .value(package.price_wei)
            .from(self.wallet);
        call.call().await.map_err(revert::to_chain_error)?;
        let receipt = self.mined(call.send().await).await?;
        let token_id = receipt
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<PxStorageNFT::Transfer>().ok())
            .map(|l| l.inner.data.tokenId.saturating_to())
            .ok_or(ChainError::MissingEvent {
                tx_hash: receipt.transaction_hash,
                event: "Transfer",
            })?;
        tracing::info!(token_id, gas_used = receipt.gas_used, "minted");
        Ok(Minted {
            token_id,
            tx_hash: receipt.transaction_hash,
            gas_used: receipt.gas_used,
        })
    }

    /// Everything `register_btns_key` checks before sending, except the key itself.
    pub async fn check_register(&self, id: TokenId) -> Result<(), ChainError> {
        self.require_owner_or_approved(id).await?;
        if self.flavour != Flavour::PxStorageNft {
            if self.extra_content_btns(id).await?.is_some() {
                return Err(ChainError::BtnsKeyAlreadyRegistered(id));
            }
            return Ok(());
        }
        let current = self
            .nft()
            .btnsKey(U256::from(id))
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        if !current.is_empty() {
            return Err(ChainError::BtnsKeyAlreadyRegistered(id));
        }
        Ok(())
    }

    /// Stores the BTNS key of a token that has none yet.
    pub async fn register_btns_key(
        &self,
        id: TokenId,
        key: &str,
    ) -> Result<TxReceiptInfo, ChainError> {
        if key.trim().is_empty() {
            return Err(ChainError::EmptyBtnsKey);
        }
        self.check_register(id).await?;
        if self.flavour != Flavour::PxStorageNft {
            return self.record_btns(id, key).await;
        }
        let nft = self.nft();
        let call = nft
            .registerBtnsKey(U256::from(id), key.to_string())
            .from(self.wallet);
        call.call().await.map_err(revert::to_chain_error)?;
        let receipt = self.mined(call.send().await).await?;
        Ok(TxReceiptInfo {
            tx_hash: receipt.transaction_hash,
            gas_used: receipt.gas_used,
        })
    }

    /// PX.sol: records the BTNS name with `addExtraContent(id, "pxfs", {"btns": key})`.
    async fn record_btns(&self, id: TokenId, key: &str) -> Result<TxReceiptInfo, ChainError> {
        let value = serde_json::json!({ "btns": key }).to_string();
        let px = self.px2();
        let call = px
            .addExtraContent(U256::from(id), EXTRA_CONTENT_KEY.into(), value)
            .from(self.wallet);
        call.call().await.map_err(revert::to_chain_error)?;
        let call = with_gas_margin(call).await?;
        let receipt = self.mined(call.send().await).await?;
        Ok(TxReceiptInfo {
            tx_hash: receipt.transaction_hash,
            gas_used: receipt.gas_used,
        })
    }

    /// PX.sol v2: `updateStorageUsage(id, bytes, uploads)`, signed by the token's owner or
    /// an approved address. It adds `bytes` to the on-chain usage, spends `uploads` of the
    /// bandwidth counter and resets the upload lock.
    pub async fn report_usage(
        &self,
        id: TokenId,
        bytes: u64,
        uploads: u64,
    ) -> Result<TxReceiptInfo, ChainError> {
        if !self.flavour.owner_reports_usage() {
            return Err(ChainError::Unsupported {
                flavour: self.flavour.name(),
                what: "owner-reported usage (updateStorageUsage)",
            });
        }
        self.require_owner_or_approved(id).await?;
        let left: u64 = self
            .px2()
            .pxStorage(U256::from(id))
            .call()
            .await
            .map_err(revert::to_chain_error)?
            .bandwidth
            .saturating_to();
        if left < uploads {
            return Err(ChainError::NoBandwidth {
                token_id: id,
                left,
                needed: uploads,
            });
        }
        let px = self.px2();
        let call = px
            .updateStorageUsage(U256::from(id), U256::from(bytes), U256::from(uploads))
            .from(self.wallet);
        call.call().await.map_err(revert::to_chain_error)?;
        let call = with_gas_margin(call).await?;
        let receipt = self.mined(call.send().await).await?;
        tracing::info!(token_id = id, bytes, uploads, "usage reported");
        Ok(TxReceiptInfo {
            tx_hash: receipt.transaction_hash,
            gas_used: receipt.gas_used,
        })
    }

    /// Everything the contract checks on `sync(tokenId)`, without sending it: the caller is
    /// the owner or approved, the token has a BTNS key, the contract holds the sync fee in
    /// LINK, and a simulated call (`eth_call`) does not revert. A caller can stop here before
    /// doing other work (committing a mount, measuring the tree) for a sync that would be
    /// refused.
    pub async fn check_sync(&self, id: TokenId) -> Result<(), ChainError> {
        self.require_owner_or_approved(id).await?;
        let nft = self.nft();
        let key = nft
            .btnsKey(U256::from(id))
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        if key.is_empty() {
            return Err(ChainError::NoBtnsKey(id));
        }
        let (balance, fee) = (
            self.link_balance_of_contract().await?,
            self.sync_fee().await?,
        );
        if balance < fee {
            return Err(ChainError::InsufficientLink { balance, fee });
        }
        let call = nft.sync(U256::from(id)).from(self.wallet);
        call.call().await.map_err(revert::to_chain_error)?;
        Ok(())
    }

    /// Sends `sync(tokenId)`: a Chainlink request the oracle answers with the measured usage.
    pub async fn request_sync(&self, id: TokenId) -> Result<SyncRequest, ChainError> {
        crate::metrics::chain_call("request_sync", self.send_sync(id).await)
    }

    async fn send_sync(&self, id: TokenId) -> Result<SyncRequest, ChainError> {
        self.check_sync(id).await?;
        let nft = self.nft();
        let call = nft.sync(U256::from(id)).from(self.wallet);
        let receipt = self.mined(call.send().await).await?;
        let request_id = receipt
            .logs()
            .iter()
            .find_map(|l| l.log_decode::<PxStorageNFT::SyncRequested>().ok())
            .map(|l| l.inner.data.requestId)
            .ok_or(ChainError::MissingEvent {
                tx_hash: receipt.transaction_hash,
                event: PxStorageNFT::SyncRequested::SIGNATURE,
            })?;
        Ok(SyncRequest {
            token_id: id,
            request_id,
            tx_hash: receipt.transaction_hash,
            gas_used: receipt.gas_used,
        })
    }

    async fn require_exists(&self, id: TokenId) -> Result<Address, ChainError> {
        self.nft()
            .ownerOf(U256::from(id))
            .call()
            .await
            .map_err(|e| match revert::to_chain_error(e) {
                // PX.sol (OpenZeppelin 4) reverts with a string, not ERC721NonexistentToken.
                ChainError::Reverted(_) => ChainError::NoSuchToken(id),
                other => other,
            })
    }

    async fn require_owner_or_approved(&self, id: TokenId) -> Result<(), ChainError> {
        let owner = self.require_exists(id).await?;
        if owner == self.wallet {
            return Ok(());
        }
        let nft = self.nft();
        let tid = U256::from(id);
        let approved = nft
            .getApproved(tid)
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        let operator = nft
            .isApprovedForAll(owner, self.wallet)
            .call()
            .await
            .map_err(revert::to_chain_error)?;
        if approved == self.wallet || operator {
            return Ok(());
        }
        Err(ChainError::NotOwner {
            token_id: id,
            caller: self.wallet,
        })
    }

    /// Waits for a sent transaction and insists it succeeded.
    async fn mined(
        &self,
        sent: Result<
            alloy::providers::PendingTransactionBuilder<alloy::network::Ethereum>,
            alloy::contract::Error,
        >,
    ) -> Result<TransactionReceipt, ChainError> {
        let pending = sent.map_err(revert::to_chain_error)?;
        let receipt = pending.get_receipt().await.map_err(rpc)?;
        if !receipt.status() {
            return Err(ChainError::TxFailed(receipt.transaction_hash));
        }
        Ok(receipt)
    }
}

/// Sets the gas limit a fifth above the estimate. On a chain mining a block a second, the
/// estimate can be made in the block whose timestamp the call stores again (a cheap
/// unchanged write) and run in the next (a full write): PX.sol's `updateStorageUsage`
/// would run out of gas at the bare estimate.
async fn with_gas_margin<P, D>(
    call: alloy::contract::CallBuilder<P, D>,
) -> Result<alloy::contract::CallBuilder<P, D>, ChainError>
where
    P: Provider,
    D: alloy::contract::CallDecoder,
{
    let gas = call.estimate_gas().await.map_err(revert::to_chain_error)?;
    Ok(call.gas(gas.saturating_add(gas / 5)))
}

/// The BTNS name in a `{"btns":"…"}` extra-content record; `None` for anything else.
pub fn parse_btns_record(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let name = v.get("btns")?.as_str()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// The root cause ("Connection refused (os error 111)") says more than the wrappers
/// around it ("error sending request for url …").
fn unreachable(url: &str, e: impl std::error::Error) -> ChainError {
    let mut cause: &dyn std::error::Error = &e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    ChainError::Unreachable {
        url: url.to_string(),
        reason: cause.to_string(),
    }
}

fn rpc(e: impl std::fmt::Display) -> ChainError {
    ChainError::Rpc(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::parse_btns_record;

    #[test]
    fn btns_record_is_read_only_from_its_json_member() {
        assert_eq!(
            parse_btns_record(r#"{"btns":"k51abc"}"#).as_deref(),
            Some("k51abc")
        );
        assert_eq!(
            parse_btns_record(r#"{"btns":"k51abc","x":1}"#).as_deref(),
            Some("k51abc")
        );
        for none in [
            "",
            "k51abc",
            r#"{"btns":""}"#,
            r#"{"btns":5}"#,
            r#"{"cid":"bafy"}"#,
        ] {
            assert_eq!(parse_btns_record(none), None, "{none:?}");
        }
    }
}
