//! `pxfs key add-passphrase|remove-passphrase TOKEN`: a new usage document with a
//! passphrase wrap added or removed, published on top of the current one.

use clap::Args;

use super::context::{KeyContext, TokenArgs};
use crate::keys::edit::{self, Remove};
use crate::keys::{document, passphrase, unlock};

#[derive(Debug, Args)]
pub struct RemoveArgs {
    #[command(flatten)]
    pub token: TokenArgs,
    /// Remove every passphrase instead of asking which one
    #[arg(long)]
    pub all: bool,
}

pub async fn add(args: TokenArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args).await?;
    ctx.refuse_if_mounted()?;
    let (cur, doc, info) = ctx.sealed()?;
    // The data key first: the wallet, else the current passphrase (asked before the new one).
    let unlocked = unlock(&ctx.token, info, &ctx.means(true))?;
    let new = passphrase::ask_new()?;
    if info.unlock_with_passphrase(new.as_bytes()).is_ok() {
        anyhow::bail!(
            "this passphrase already unlocks token {}; nothing was changed",
            ctx.token.token_id
        );
    }
    // Unlocked through a legacy wallet wrap: it is replaced by an EIP-712 one in the same
    // document (FORMAT §6.4.1).
    let base = unlocked.migrated.as_ref().unwrap_or(info);
    let next = edit::add_passphrase(base, &unlocked.data_key, new.as_bytes())?;
    let (cid, published) =
        document::publish_next(&ctx.client, &ctx.btns, &cur.cid, doc, next, ctx.settle()).await?;
    crate::say!(
        "added a passphrase to token {}: usage document {cid} (seq {}) published",
        ctx.token.token_id,
        published.seq
    );
    Ok(())
}

pub async fn remove(args: RemoveArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args.token).await?;
    ctx.refuse_if_mounted()?;
    let (cur, doc, info) = ctx.sealed()?;
    let typed;
    let which = if args.all {
        Remove::All
    } else {
        typed = passphrase::ask("Passphrase to remove: ")?;
        Remove::Opened(typed.as_bytes())
    };
    let (next, removed) = edit::remove_passphrase(&ctx.token, info, which, ctx.wallet.as_ref())?;
    let (cid, published) =
        document::publish_next(&ctx.client, &ctx.btns, &cur.cid, doc, next, ctx.settle()).await?;
    crate::say!(
        "removed {removed} passphrase{} from token {}: usage document {cid} (seq {}) published",
        if removed == 1 { "" } else { "s" },
        ctx.token.token_id,
        published.seq
    );
    crate::say!(
        "note: a removed passphrase still opens copies of earlier usage documents, which anyone may have kept; if it leaked, only a new data key helps: pxfs encrypt --new-key {}",
        ctx.token.token_id
    );
    Ok(())
}
