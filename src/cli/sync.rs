//! `pxfs sync`: ask the contract to sync a token's usage through Chainlink, after making
//! sure a running mount of that token has committed what it holds. On PollinationX's
//! PX.sol, report the growth of the committed tree with `updateStorageUsage` instead.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use super::ConfigArg;
use crate::chain::{Chain, ChainEvent, Flavour, TokenId, TokenState};
use crate::config::Config;

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// The sNFT to sync
    #[arg(value_name = "TOKEN")]
    pub token: TokenId,
    /// Wait until the oracle's answer (`Synced`) is on chain
    #[arg(long)]
    pub wait: bool,
    /// With --wait: give up after this many seconds
    #[arg(long, default_value_t = 180, value_name = "SECS")]
    pub timeout: u64,
    /// Send the request without first measuring the tree as the oracle will
    #[arg(long)]
    pub no_check: bool,
}

/// Measures the published tree the way the oracle does (same code, same limits) and refuses
/// to send a request the oracle could not answer, saying why. A node without `block/get`
/// (a hosted gateway) cannot be checked from here: the request is sent with a note.
async fn precheck(
    cfg: &Config,
    chain: &Chain,
    token: TokenId,
    btns: Option<&str>,
) -> anyhow::Result<()> {
    let Some(btns) = btns else {
        return Ok(());
    };
    let synced_root = chain.last_synced_root(token).await?;
    let node = crate::storage::NodeClient::new(&cfg.node)?;
    let started = Instant::now();
    match crate::oracle::measure_tree(&node, btns, synced_root.as_deref(), &cfg.oracle.limits())
        .await
    {
        Ok(m) => {
            crate::say!(
                "measured token {}'s published tree: {} bytes ({} in manifests, {} files; {:.1} s)",
                token,
                m.usage,
                m.manifest_bytes,
                m.files,
                started.elapsed().as_secs_f64()
            );
            if m.size_mismatches > 0 {
                crate::say!(
                    "note: {} file entries declare a size their content does not have; the measured size counts",
                    m.size_mismatches
                );
            }
            Ok(())
        }
        Err(crate::oracle::WalkError::Unsupported { reason, .. }) => {
            crate::say!("note: the node cannot measure the tree ({reason}); the oracle will");
            Ok(())
        }
        Err(e) => anyhow::bail!(
            "the oracle cannot measure token {token}'s published tree, so it would not answer: {e}; nothing was sent (--no-check sends anyway)"
        ),
    }
}

pub async fn run(args: SyncArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let chain = Chain::connect_signing(&cfg.chain).await?;
    // Refuse what the contract would refuse before touching the mount or measuring.
    let state = chain.token(args.token).await?;
    if chain.flavour() != Flavour::PxStorageNft {
        return sync_px_sol(&cfg, &chain, &state).await;
    }
    chain.check_sync(args.token).await?;

    // The oracle measures what is published under the BTNS name: a local mount of this
    // token must commit first (fsync of its directory forces the commit).
    match mounted_token_dir(args.token, state.btns_key.as_deref()) {
        Some(dir) => {
            let started = Instant::now();
            let committed = tokio::task::spawn_blocking(move || {
                std::fs::File::open(&dir).and_then(|d| d.sync_all())
            })
            .await?;
            match committed {
                Ok(()) => crate::say!(
                    "committed pending writes of token {} ({:.1} s)",
                    args.token,
                    started.elapsed().as_secs_f64()
                ),
                Err(e) => anyhow::bail!(
                    "cannot commit the mounted token {}: {e}; nothing was sent",
                    args.token
                ),
            }
        }
        None => crate::say!(
            "note: token {} is not mounted on this machine; the oracle will see what was last published",
            args.token
        ),
    }

    if !args.no_check {
        precheck(&cfg, &chain, args.token, state.btns_key.as_deref()).await?;
    }

    // The answer lands after the request's block: an earlier `Synced` in the current head
    // block (the previous sync's) is not this request's answer.
    let from_block = chain.block_number().await? + 1;
    let req = chain.request_sync(args.token).await?;
    crate::say!(
        "sync of token {} requested: request id {} in {} ({} gas)",
        req.token_id,
        req.request_id,
        req.tx_hash,
        req.gas_used
    );
    if !args.wait {
        return Ok(());
    }

    let started = Instant::now();
    let timeout = Duration::from_secs(args.timeout);
    let mut progress = super::progress::Progress::spinner("sync");
    loop {
        let head = chain.block_number().await?;
        let events = chain.events(from_block, head).await?;
        let synced = events.into_iter().find_map(|e| match e {
            ChainEvent::Synced {
                token_id,
                usage,
                root,
            } if token_id == args.token => Some((usage, root)),
            _ => None,
        });
        if let Some((usage, root)) = synced {
            progress.finish(None);
            let state = chain.token(args.token).await?;
            crate::say!(
                "synced token {}: usage {} bytes, root {}, next deadline {} (in {})",
                args.token,
                usage,
                root,
                state.sync_deadline,
                human_duration(state.seconds_left())
            );
            return Ok(());
        }
        let waited = started.elapsed();
        if waited > timeout {
            progress.finish(None);
            anyhow::bail!(
                "no answer from the oracle within {} s; is `pxfs oracle` (or the Chainlink job) running? An oracle that cannot measure the tree (content missing on its node, or beyond its limits) leaves the request unanswered and logs why. The request stays open: check `pxfs status` later",
                args.timeout
            );
        }
        progress.waiting("waiting for the oracle's answer on chain", waited);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// PX.sol: `updateStorageUsage(id, bytes, uploads)` signed by the owner. `bytes` is how
/// far the mount's committed tree has grown beyond the on-chain usage (which is the sum of
/// everything reported before), so a retry after a crash reports nothing twice and loses
/// nothing. One sync that reports growth spends one upload of bandwidth; a sync with
/// nothing new spends none and still lifts the 30-day lock.
async fn sync_px_sol(cfg: &Config, chain: &Chain, state: &TokenState) -> anyhow::Result<()> {
    let id = state.token_id;
    if !chain.flavour().owner_reports_usage() {
        anyhow::bail!(
            "{} lets only the contract owner update usage (and lift the lock); ask the contract's owner to call unlockUploading({id})",
            chain.flavour().name()
        );
    }
    let Some(dir) = px_mounted_token_dir(cfg, id) else {
        anyhow::bail!(
            "token {id} is not mounted on this machine: the usage to report comes from a mount's committed tree; mount it (`pxfs mount --token {id}`) and sync again"
        );
    };
    let commit_dir = dir.clone();
    tokio::task::spawn_blocking(move || {
        std::fs::File::open(&commit_dir).and_then(|d| d.sync_all())
    })
    .await?
    .map_err(|e| anyhow::anyhow!("cannot commit the mounted token {id}: {e}; nothing was sent"))?;
    let committed: u64 = xattr(&dir, "user.pxfs.committed_usage")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("cannot read the committed usage of {}", dir.display()))?;
    let bytes = committed.saturating_sub(state.usage);
    let uploads = u64::from(bytes > 0);
    let tx = chain.report_usage(id, bytes, uploads).await?;
    let after = chain.token(id).await?;
    crate::say!(
        "reported {bytes} new byte(s) of token {id} (on-chain usage {} of {} bytes, {} upload(s) of bandwidth left) in {} ({} gas); uploads are open until {}",
        after.usage,
        after.quota,
        after.bandwidth.unwrap_or(0),
        tx.tx_hash,
        tx.gas_used,
        after.sync_deadline
    );
    Ok(())
}

/// The directory of `token` in a running mount of this config (from the mounts' status
/// files), whose `user.pxfs.committed_usage` can be read.
pub(crate) fn px_mounted_token_dir(cfg: &Config, token: TokenId) -> Option<PathBuf> {
    super::mount_status::running(&cfg.cache.dir)
        .into_iter()
        .filter(|m| {
            m.chain_id == cfg.chain.chain_id
                && m.contract == cfg.chain.contract.trim().to_lowercase()
                && m.wallet == cfg.chain.wallet.trim().to_lowercase()
                && m.tokens.iter().any(|t| t.token_id == token)
        })
        .flat_map(|m| [m.mountpoint.join(token.to_string()), m.mountpoint.clone()])
        .find(|dir| xattr(dir, "user.pxfs.committed_usage").is_some())
}

fn human_duration(secs: u64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {}s", secs % 60)
    }
}

/// The directory of `token` in a pxfs mount on this machine: `MP/TOKEN` of a full mount, or
/// `MP` itself when the mount serves that token alone. Token ids repeat across contracts
/// (every devnet has a token 1), so a directory counts only if its BTNS attribute is this
/// token's BTNS name.
pub(crate) fn mounted_token_dir(token: TokenId, btns: Option<&str>) -> Option<PathBuf> {
    let btns = btns?;
    crate::mountinfo::mounts()
        .into_iter()
        .filter(crate::mountinfo::Mount::is_pxfs)
        .map(|m| m.mount_point)
        .flat_map(|mp| [mp.join(token.to_string()), mp])
        .find(|dir| xattr(dir, "user.pxfs.btns").as_deref() == Some(btns))
}

pub(crate) fn xattr(path: &Path, name: &str) -> Option<String> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let n = std::ffi::CString::new(name).ok()?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is valid for its length.
    let len = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return None;
    }
    buf.truncate(len as usize);
    String::from_utf8(buf).ok()
}
