//! The usage document a key command reads and the one it publishes in its place: the next
//! in the chain (`seq` + 1, `prev` = the current document's CID, the same tree), with only
//! `encryption` changed. Published only on top of the document that was read: the name is
//! resolved again just before publishing, and a document that changed meanwhile (another
//! writer) is not overwritten.

use super::KeyError;
use crate::format::usage::{AnyUsageDoc, Encryption, UsageDoc};
use crate::format::wrap::EncryptionInfo;
use crate::storage::{NodeClient, StorageError};
use crate::usage::{self, UsageError};

/// A token's published usage document and its CID.
#[derive(Debug, Clone)]
pub struct Current {
    pub cid: String,
    pub doc: AnyUsageDoc,
}

impl Current {
    /// The document's `encryption` (a v1 tree is plaintext).
    pub fn encryption(&self) -> Encryption {
        match &self.doc {
            AnyUsageDoc::V1(_) => Encryption::None,
            AnyUsageDoc::V2(d) => d.encryption.clone(),
        }
    }
}

fn node(e: StorageError) -> KeyError {
    KeyError::Node(e.to_string())
}

fn usage_error(e: UsageError) -> KeyError {
    match e {
        UsageError::Storage(e) => node(e),
        other => KeyError::Refused(other.to_string()),
    }
}

/// Resolves `btns` and reads the document it names; `None` when nothing was ever
/// published under it.
pub async fn current(client: &NodeClient, btns: &str) -> Result<Option<Current>, KeyError> {
    match usage::resolve(client, btns).await {
        Ok((cid, doc)) => Ok(Some(Current { cid, doc })),
        Err(UsageError::Storage(e))
            if e.node_message().is_some_and(|m| m.contains("not found")) =>
        {
            Ok(None)
        }
        Err(e) => Err(usage_error(e)),
    }
}

/// Publishes the document after `base` (a `pxfs/usage/2` one) with `encryption`, under
/// `btns` (whose key the node must hold). Returns the new document's CID.
pub async fn publish_next(
    client: &NodeClient,
    btns: &str,
    base_cid: &str,
    base: &UsageDoc,
    encryption: EncryptionInfo,
) -> Result<(String, UsageDoc), KeyError> {
    let key = usage::key_name_for(client, btns)
        .await
        .map_err(usage_error)?
        .ok_or_else(|| {
            KeyError::Refused(format!(
                "the node does not hold the BTNS key {btns} of token {}, so it cannot publish its usage document; run this where that key is",
                base.token_id
            ))
        })?;
    let mut next = base.clone();
    next.seq = base.seq + 1;
    next.prev = Some(base_cid.to_string());
    next.merged = None;
    next.updated_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    next.encryption = Encryption::Sealed(encryption);
    // A document that breaks §8 is refused before anything is sent.
    next.to_json()?;
    // Only on top of what was read: a commit published meanwhile is not overwritten.
    let now = client.name_resolve(btns).await.map_err(node)?;
    if now != base_cid {
        return Err(KeyError::Refused(format!(
            "token {}'s usage document changed while this command ran (another writer published {now}); nothing was changed, run it again",
            base.token_id
        )));
    }
    let cid = usage::publish_v2(client, &key, &next)
        .await
        .map_err(usage_error)?;
    tracing::info!(token = next.token_id, seq = next.seq, %cid, "usage document published with new key wraps");
    Ok((cid, next))
}
