//! `pxfs key export|import TOKEN`: the paper backup of the data key (FORMAT §6.4). Export
//! prints the one line on stdout (a warning on stderr); import reads it back from the
//! terminal or stdin, checks it against the document's key id, and wraps the key for this
//! wallet, the owner's (the case after a transfer of the sNFT).

use anyhow::bail;

use super::context::{KeyContext, TokenArgs};
use crate::format::paper;
use crate::keys::{document, edit, passphrase, unlock};

pub async fn export(args: TokenArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args).await?;
    let (_, _, info) = ctx.sealed()?;
    let unlocked = unlock(&ctx.token, info, &ctx.means(true))?;
    let line = paper::export(
        ctx.token.chain_id,
        &ctx.token.contract.to_checksum(None),
        ctx.token.token_id,
        &unlocked.data_key,
    );
    crate::say_err!(
        "pxfs: the line below is token {}'s data key: whoever has it can read all its data, now and later, whoever owns the sNFT; write it on paper and keep it offline",
        ctx.token.token_id
    );
    crate::say!("{}", line.as_str());
    Ok(())
}

pub async fn import(args: TokenArgs) -> anyhow::Result<()> {
    let ctx = KeyContext::load(&args).await?;
    ctx.refuse_if_mounted()?;
    let (cur, doc, info) = ctx.sealed()?;
    let signer = ctx.owner_signer().await?;
    let id = ctx.token.token_id;
    let line = passphrase::ask_secret("Paper backup line: ", "paper backup line")?;
    let backup = paper::parse(&line)?;
    let contract = ctx.token.contract.to_checksum(None);
    if !backup.is_for(ctx.token.chain_id, &contract, id) {
        bail!(
            "this backup is for token {} of contract {} on chain {}, not token {id} of {contract} on chain {}",
            backup.token_id,
            backup.contract,
            backup.chain_id,
            ctx.token.chain_id
        );
    }
    let want = info.key_id()?;
    if backup.data_key.key_id() != want {
        bail!(
            "key id mismatch: the backup's key has id {}, token {id}'s usage document says {want}; it is not this token's current key",
            backup.data_key.key_id()
        );
    }
    let Some(next) = edit::add_wallet(&ctx.token, info, &backup.data_key, signer)? else {
        crate::say!(
            "the wallet {} already unlocks token {id}; nothing was changed",
            signer.address()
        );
        return Ok(());
    };
    let (cid, published) =
        document::publish_next(&ctx.client, &ctx.btns, &cur.cid, doc, next, ctx.settle()).await?;
    crate::say!(
        "imported token {id}'s key (id {want}) for the wallet {}: usage document {cid} (seq {}) published",
        signer.address(),
        published.seq
    );
    Ok(())
}
