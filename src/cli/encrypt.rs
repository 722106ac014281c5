//! `pxfs encrypt TOKEN` and `pxfs decrypt TOKEN`: an existing tree converted to encrypted
//! (or, with `--new-key`, re-encrypted under a fresh data key) or to plaintext. The whole
//! published tree is copied under the target keys and published once, on top of the
//! current document; then the old objects are unpinned (fs::reseal, docs/FORMAT.md §10).
//! Run with the sNFT unmounted everywhere: this machine's mounts are refused, and this
//! cache's record of the old tree is dropped afterwards.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::key::context::{KeyContext, TokenArgs};
use super::progress::Progress;
use super::status::human_bytes;
use crate::cache::ChunkCache;
use crate::format::usage::Encryption;
use crate::fs::ContentStore;
use crate::fs::data::journal::Journal;
use crate::fs::data::node_store::NodeStore;
use crate::fs::ops::reseal::{Conversion, Copied, convert};
use crate::keys::keyring::{KeyRing, PlainOnly};
use crate::keys::ring::{GivenKey, MountKeys};
use crate::keys::{PassphraseSource, passphrase};

#[derive(Debug, Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Re-encrypt an encrypted tree under a new data key (after a passphrase or a paper
    /// backup leaked): only the wraps made now open it
    #[arg(long)]
    pub new_key: bool,
    /// Also wrap the new data key for a passphrase, typed (or one line of stdin)
    #[arg(long)]
    pub passphrase: bool,
}

#[derive(Debug, Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Confirm that the tree is to be published in clear, readable by anyone who reads
    /// the chain and the node
    #[arg(long)]
    pub yes: bool,
}

pub async fn encrypt(args: EncryptArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args.token).await?;
    let id = ctx.token.token_id;
    let current = current_encryption(&ctx)?;
    match (&current, args.new_key) {
        (Encryption::Sealed(info), false) => bail!(
            "token {id} is already encrypted (key id {}); `pxfs encrypt --new-key {id}` re-encrypts it under a new data key",
            info.key_id
        ),
        (Encryption::None, true) => {
            bail!(
                "token {id} is not encrypted; `pxfs encrypt {id}` (without --new-key) encrypts it"
            )
        }
        _ => {}
    }
    let typed = match args.passphrase {
        true => Some(passphrase::ask_new()?),
        // A configured passphrase file keeps opening the sNFT, as it did for new trees.
        false => PassphraseSource::configured(&ctx.cfg.keys, false).get("")?,
    };
    let (key, info) = crate::keys::new_encryption(
        &ctx.token,
        ctx.wallet.as_ref(),
        typed.as_ref().map(|p| p.as_bytes()),
    )?;
    let key_id = info.key_id.clone();
    let target = Arc::new(GivenKey {
        encryption: Encryption::Sealed(info),
        key,
    });
    let done = run(&ctx, target, "encrypt").await?;
    crate::say!(
        "token {id} is now encrypted (key id {key_id}): {}",
        summary(&done)
    );
    crate::say!("make a paper backup of its new data key: pxfs key export {id}");
    if matches!(current, Encryption::Sealed(_)) {
        crate::say!(
            "the old data key, its passphrases and paper backups no longer open the published tree"
        );
    }
    Ok(())
}

pub async fn decrypt(args: DecryptArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args.token).await?;
    let id = ctx.token.token_id;
    let cache = &ctx.cfg.cache.dir;
    if current_encryption(&ctx)?.is_none() {
        // Published in clear elsewhere (or by whoever holds the BTNS key) where this
        // machine saw it encrypted: the owner's confirmation (src/fs/strongest.rs).
        if !crate::fs::persist::strongest::seen_sealed(cache, id) {
            bail!("token {id} is not encrypted: nothing to decrypt");
        }
        if !args.yes {
            bail!(
                "token {id} is published in clear, though this machine saw it encrypted, so it is read-only here; if you (the owner) decrypted it, run `pxfs decrypt --yes {id}` to accept it on this machine"
            );
        }
        ctx.refuse_if_mounted()?;
        crate::fs::persist::strongest::accept_plaintext(cache, id)?;
        crate::say!(
            "token {id}: this machine accepts its plaintext tree; mount it again to write to it"
        );
        return Ok(());
    }
    if !args.yes {
        bail!(
            "pxfs decrypt publishes token {id}'s tree in clear: anyone who reads the chain and the node can then read every name and byte of it; run `pxfs decrypt --yes {id}` to do it"
        );
    }
    let done = run(&ctx, Arc::new(PlainOnly), "decrypt").await?;
    // The owner chose plaintext on this machine: its mounts follow it.
    crate::fs::persist::strongest::accept_plaintext(cache, id)?;
    crate::say!("token {id} is now plaintext: {}", summary(&done));
    Ok(())
}

fn current_encryption(ctx: &KeyContext) -> anyhow::Result<Encryption> {
    match &ctx.current {
        Some(c) => Ok(c.encryption()),
        None => bail!(
            "token {} has no tree yet under {}: nothing to convert (a new tree follows [keys] encryption)",
            ctx.token.token_id,
            ctx.btns
        ),
    }
}

struct Done {
    copied: Copied,
    doc: String,
    seq: u64,
    unpinned: u64,
    unpin_failed: u64,
}

fn summary(d: &Done) -> String {
    let mut s = format!(
        "{} files, {} directories, {} other entries, {} hard links, {} copied; usage document {} (seq {}) published; {} old objects unpinned",
        d.copied.files,
        d.copied.dirs,
        d.copied.others,
        d.copied.links,
        human_bytes(d.copied.bytes),
        d.doc,
        d.seq,
        d.unpinned
    );
    if d.unpin_failed > 0 {
        s.push_str(&format!(
            " ({} could not be unpinned; see the log)",
            d.unpin_failed
        ));
    }
    s
}

/// Conversions tried, at most, when another machine's commit beats each one.
const ATTEMPTS: u32 = 3;

/// [`convert_once`], again while another machine's commit beats it (FsError::Raced: nothing
/// was published, nothing lost), at most [`ATTEMPTS`] times, saying so each time.
async fn run(
    ctx: &KeyContext,
    target: Arc<dyn KeyRing>,
    verb: &'static str,
) -> anyhow::Result<Done> {
    let mut attempt = 1;
    loop {
        match convert_once(ctx, target.clone(), verb).await {
            Err(e) if attempt < ATTEMPTS && raced(&e) => {
                crate::say!(
                    "another machine committed to token {} during the conversion (nothing was published, nothing lost); trying again ({} of {ATTEMPTS})",
                    ctx.token.token_id,
                    attempt + 1
                );
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn raced(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<crate::fs::error::FsError>(),
            Some(crate::fs::error::FsError::Raced(_))
        )
    })
}

/// The conversion proper, towards the tree `target.new_tree` makes.
async fn convert_once(
    ctx: &KeyContext,
    target: Arc<dyn KeyRing>,
    verb: &'static str,
) -> anyhow::Result<Done> {
    let id = ctx.token.token_id;
    let cfg = &ctx.cfg;
    ctx.refuse_if_mounted()?;
    // This cache's journal of the sNFT: locked for the whole conversion (no mount from it
    // starts meanwhile), refused if it holds changes not yet published.
    let journal_dir = cfg.cache.dir.join("journal").join(id.to_string());
    let local = match journal_dir.exists() {
        true => {
            let r = Journal::open(&journal_dir).map_err(|e| {
                anyhow::anyhow!(
                    "token {id}'s journal in {} cannot be opened: {e}",
                    journal_dir.display()
                )
            })?;
            let carried = r.state.as_ref().is_some_and(|s| !s.carried.is_empty());
            if !r.ops.is_empty() || carried {
                bail!(
                    "this cache holds changes to token {id} that are not published yet; mount it and unmount it (which commits them) before `pxfs {verb}`"
                );
            }
            Some(r.journal)
        }
        false => None,
    };
    let state = ctx.chain.token(id).await?;
    if state.overdue {
        bail!(
            "token {id}'s sync is overdue: the converted tree cannot be written until `pxfs sync {id}`"
        );
    }
    let client = super::node_client::node_client(cfg, &[id])?;
    let scratch = cfg.cache.dir.join("convert").join(id.to_string());
    let chunks = ChunkCache::open(
        &scratch.join("chunks"),
        cfg.cache.size_bytes,
        client.clone(),
    )
    .context("chunk cache")?;
    let store: Arc<dyn ContentStore> = Arc::new(NodeStore::new(
        client,
        chunks,
        cfg.chain.chain_id,
        cfg.chain.contract.clone(),
    ));
    let published = store
        .resolve(&ctx.btns)
        .await
        .with_context(|| format!("resolving token {id}'s BTNS name {}", ctx.btns))?
        .with_context(|| format!("token {id} has nothing published under {}", ctx.btns))?;
    let from_keys = Arc::new(MountKeys {
        chain_id: ctx.token.chain_id,
        contract: ctx.token.contract,
        wallet: ctx.wallet.clone(),
        passphrase: PassphraseSource::configured(&cfg.keys, true),
        encrypt_new: false,
    });
    let conversion = Conversion {
        store,
        work_dir: scratch.join("cores"),
        template: super::mount::core_config(cfg),
        info: super::mount::token_info(&state, ctx.chain.flavour()),
        published,
        from_keys,
        to_keys: target,
    };
    let started = Instant::now();
    let mut progress = Progress::spinner(verb);
    let converted = convert(conversion, &mut |c: &Copied| {
        progress.waiting(
            &format!(
                "{} files, {} directories, {} copied",
                c.files,
                c.dirs,
                human_bytes(c.bytes)
            ),
            started.elapsed(),
        )
    })
    .await;
    progress.finish(None);
    let _ = std::fs::remove_dir_all(&scratch);
    let converted = converted.with_context(|| {
        format!("converting token {id}: nothing was published; the tree is as it was")
    })?;
    // The next mount from this cache resolves the converted tree instead of starting from
    // the old one it remembers.
    if local.is_some() {
        std::fs::remove_dir_all(&journal_dir).with_context(|| {
            format!(
                "the tree was converted, but this cache's record of the old one ({}) cannot be removed: remove it before mounting",
                journal_dir.display()
            )
        })?;
    }
    drop(local);
    Ok(Done {
        copied: converted.copied,
        doc: converted.doc,
        seq: converted.seq,
        unpinned: converted.unpinned,
        unpin_failed: converted.unpin_failed,
    })
}
