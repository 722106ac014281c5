//! `pxfs key rotate-wallet TOKEN`: this wallet's wraps of the data key (EIP-712 or legacy
//! EIP-191 ones) replaced by one EIP-712 wrap with a fresh salt, published on top of the
//! current document. A signature obtained for the old wrap (a phished one, or the legacy
//! message's) opens nothing afterwards; the data key itself does not change.

use anyhow::bail;

use super::context::{KeyContext, TokenArgs};
use crate::keys::{document, edit, unlock};

pub async fn rotate(args: TokenArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args).await?;
    ctx.refuse_if_mounted()?;
    let (cur, doc, info) = ctx.sealed()?;
    let id = ctx.token.token_id;
    let Some(signer) = ctx.wallet.as_ref() else {
        bail!(
            "no wallet key is configured (PXFS_PRIVATE_KEY or the config's keystore): rotating token {id}'s wallet wrap needs the wallet it is for"
        );
    };
    let unlocked = unlock(&ctx.token, info, &ctx.means(true))?;
    let next = edit::rotate_wallet(&ctx.token, info, &unlocked.data_key, signer)?;
    let (cid, published) =
        document::publish_next(&ctx.client, &ctx.btns, &cur.cid, doc, next, ctx.settle()).await?;
    crate::say!(
        "rotated the wallet wrap of token {id} for {} (a new salt: only a new signature opens it): usage document {cid} (seq {}) published",
        signer.address(),
        published.seq
    );
    Ok(())
}
