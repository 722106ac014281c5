//! `pxfs key status TOKEN`: whether the sNFT is encrypted, its key id, the ways to unlock
//! its usage document offers, and whether this machine can unlock it now. It never asks
//! for a passphrase: one is tried only from `PXFS_PASSPHRASE_FILE` or `[keys]
//! passphrase_file`.

use clap::Args;
use serde::Serialize;

use super::context::{KeyContext, TokenArgs, mounted_at};
use crate::format::usage::Encryption;
use crate::keys::{UnlockedBy, WrapCounts, unlock};

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// The `--json` document (stable field names).
#[derive(Debug, Serialize)]
pub struct KeyStatus {
    pub token_id: u64,
    pub btns_key: String,
    /// CID and `seq` of the current usage document; `null` before the first commit.
    pub usage_doc: Option<String>,
    pub seq: Option<u64>,
    /// `on`, `none`, or `null` when nothing is published yet.
    pub encryption: Option<&'static str>,
    pub scheme: Option<String>,
    pub key_id: Option<String>,
    pub wraps: Option<WrapReport>,
    /// Whether this machine can unlock the data key now (without asking anyone).
    pub unlock: Option<UnlockReport>,
    /// A running mount of the token from this cache directory.
    pub mounted_at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct WrapReport {
    pub wallet: usize,
    /// Of `wallet`, legacy (EIP-191) wraps: replaced by EIP-712 ones at the next publish
    /// after this wallet opens them (docs/FORMAT.md §6.4.1).
    pub wallet_legacy: usize,
    /// Wallet wraps naming another message: never signed, never used.
    pub wallet_foreign: usize,
    pub passphrase: usize,
    pub unknown: usize,
}

#[derive(Debug, Serialize)]
pub struct UnlockReport {
    pub ok: bool,
    /// `wallet` or `passphrase`.
    pub by: Option<&'static str>,
    pub error: Option<String>,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args.token).await?;
    let report = gather(&ctx);
    if args.json {
        crate::say!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_text(&report);
    }
    Ok(())
}

fn gather(ctx: &KeyContext) -> KeyStatus {
    let mut r = KeyStatus {
        token_id: ctx.token.token_id,
        btns_key: ctx.btns.clone(),
        usage_doc: ctx.current.as_ref().map(|c| c.cid.clone()),
        seq: ctx.current.as_ref().map(|c| c.doc.seq()),
        encryption: None,
        scheme: None,
        key_id: None,
        wraps: None,
        unlock: None,
        mounted_at: mounted_at(&ctx.cfg, &ctx.token),
    };
    let Some(cur) = &ctx.current else {
        return r;
    };
    let Encryption::Sealed(info) = cur.encryption() else {
        r.encryption = Some("none");
        return r;
    };
    r.encryption = Some("on");
    r.scheme = Some(info.scheme.clone());
    r.key_id = Some(info.key_id.clone());
    let c = WrapCounts::of(&info, &ctx.token);
    r.wraps = Some(WrapReport {
        wallet: c.wallet,
        wallet_legacy: c.wallet_legacy,
        wallet_foreign: c.wallet_foreign,
        passphrase: c.passphrase,
        unknown: c.unknown,
    });
    r.unlock = Some(match unlock(&ctx.token, &info, &ctx.means(false)) {
        Ok(u) => UnlockReport {
            ok: true,
            by: Some(match u.by {
                UnlockedBy::Wallet(_) => "wallet",
                UnlockedBy::Passphrase => "passphrase",
            }),
            error: None,
        },
        Err(e) => UnlockReport {
            ok: false,
            by: None,
            error: Some(e.to_string()),
        },
    });
    r
}

fn print_text(r: &KeyStatus) {
    let id = r.token_id;
    match (&r.usage_doc, r.encryption) {
        (None, _) => {
            crate::say!(
                "token {id}: nothing published under {} yet; the first commit of a mount makes its data key",
                r.btns_key
            );
            return;
        }
        (Some(_), Some("none")) => {
            crate::say!(
                "token {id}: encryption none: its files are readable by anyone who reads the chain and the node"
            )
        }
        (Some(_), _) => crate::say!(
            "token {id}: encryption on ({}), key id {}",
            r.scheme.as_deref().unwrap_or("?"),
            r.key_id.as_deref().unwrap_or("?")
        ),
    }
    if let (Some(cid), Some(seq)) = (&r.usage_doc, r.seq) {
        crate::say!("usage document: {cid} (seq {seq})");
    }
    if let Some(w) = &r.wraps {
        let mut parts = vec![
            format!("{} wallet", w.wallet),
            format!("{} passphrase", w.passphrase),
        ];
        if w.wallet_legacy > 0 {
            parts.push(format!(
                "{} of the wallet ones legacy EIP-191 (migrated to EIP-712 at the next publish; `pxfs key rotate-wallet` does it now)",
                w.wallet_legacy
            ));
        }
        if w.wallet_foreign > 0 {
            parts.push(format!(
                "{} wallet for another message (never used)",
                w.wallet_foreign
            ));
        }
        if w.unknown > 0 {
            parts.push(format!("{} of unknown kinds (kept)", w.unknown));
        }
        crate::say!("wraps: {}", parts.join(", "));
    }
    if let Some(u) = &r.unlock {
        match (u.ok, u.by, &u.error) {
            (true, Some(by), _) => crate::say!("this machine: can unlock it with the {by}"),
            (_, _, Some(e)) => crate::say!("this machine: cannot unlock it now: {e}"),
            _ => {}
        }
    }
    if let Some(m) = &r.mounted_at {
        crate::say!("mounted at {m}");
    }
}
