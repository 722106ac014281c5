//! An sNFT's BTNS name: the usage document published under it (either version, read from
//! `crate::format`), resolving it, and the node keys that publish it. The only module that
//! moves usage documents between pxfs and a node.

use bytes::Bytes;
use rand::RngCore;

pub use crate::format::v1::usage::{
    AnyUsageDoc, DocError, LastUpload, SCHEMA, UsageDoc, parse_any,
};
use crate::storage::{NodeClient, Publication, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Document(#[from] DocError),
    #[error("storage node: {0}")]
    Storage(#[from] StorageError),
    /// A checked publication found another record than the one it replaces (another
    /// writer published since it was resolved): nothing was published.
    #[error(
        "another writer published under this name meanwhile (it now names {}); nothing was published",
        current.as_deref().unwrap_or("nothing")
    )]
    Moved { current: Option<String> },
    /// The document's bytes do not match its CID, or it is over [`MAX_DOC_BYTES`].
    #[error("usage document: {0}")]
    Integrity(crate::integrity::IntegrityError),
}

/// Adds the document (pinned) and publishes it under the node's key `key_name` in place of
/// `replaces`, the document the name was resolved to (`None`: none), checked where the node
/// can (docs/FORMAT.md §9.3).
pub async fn publish(
    client: &NodeClient,
    key_name: &str,
    doc: &UsageDoc,
    replaces: Option<&str>,
) -> Result<PublishedDoc, UsageError> {
    publish_json(
        client,
        key_name,
        doc.token_id,
        doc.seq,
        doc.to_json()?,
        replaces,
    )
    .await
}

/// [`publish`] for a `pxfs/usage/2` document (what pxfs writes now, docs/FORMAT.md §8).
pub async fn publish_v2(
    client: &NodeClient,
    key_name: &str,
    doc: &crate::format::usage::UsageDoc,
    replaces: Option<&str>,
) -> Result<PublishedDoc, UsageError> {
    let json = doc.to_json().map_err(|e| DocError::Encode(e.to_string()))?;
    publish_json(client, key_name, doc.token_id, doc.seq, json, replaces).await
}

/// A usage document published under a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedDoc {
    pub cid: String,
    /// The node replaced exactly the record named: the publication holds at once (docs/
    /// FORMAT.md §9.3). Otherwise it holds once a settle window shows it still there.
    pub checked: bool,
}

async fn publish_json(
    client: &NodeClient,
    key_name: &str,
    token_id: u64,
    seq: u64,
    json: Vec<u8>,
    replaces: Option<&str>,
) -> Result<PublishedDoc, UsageError> {
    let name = format!("usage-{token_id}-{seq}.json");
    let added = client.add_bytes(&name, Bytes::from(json)).await?;
    publish_added(client, key_name, (token_id, seq), &added.hash, replaces).await
}

/// Publishes the usage document of `(token_id, seq)`, added already as `cid`, under
/// `key_name` in place of `replaces`.
pub async fn publish_added(
    client: &NodeClient,
    key_name: &str,
    (token_id, seq): (u64, u64),
    cid: &str,
    replaces: Option<&str>,
) -> Result<PublishedDoc, UsageError> {
    match client
        .name_publish_replacing(key_name, cid, replaces)
        .await?
    {
        Publication::Published { checked } => {
            tracing::info!(
                token = token_id,
                seq,
                cid,
                key = key_name,
                checked,
                "usage document published"
            );
            Ok(PublishedDoc {
                cid: cid.to_owned(),
                checked,
            })
        }
        Publication::Moved { current } => Err(UsageError::Moved { current }),
    }
}

/// Largest usage document read: a document is a few hundred bytes plus its wraps, and a
/// forged one must not exhaust a reader's memory.
pub const MAX_DOC_BYTES: u64 = 1 << 20;

/// Resolves `btns_name`, fetches the document it points at and parses it (either version).
/// Returns the document's CID and the document.
pub async fn resolve(
    client: &NodeClient,
    btns_name: &str,
) -> Result<(String, AnyUsageDoc), UsageError> {
    let cid = client.name_resolve(btns_name).await?;
    Ok((cid.clone(), fetch(client, &cid).await?))
}

/// The usage document `cid` (checked against its CID, size-capped).
pub async fn fetch(client: &NodeClient, cid: &str) -> Result<AnyUsageDoc, UsageError> {
    let bytes = crate::integrity::object(client, cid, MAX_DOC_BYTES)
        .await
        .map_err(|e| match e {
            crate::integrity::IntegrityError::Storage(e) => UsageError::Storage(e),
            other => UsageError::Integrity(other),
        })?;
    Ok(parse_any(&bytes)?)
}

/// The name of the node's key whose id is `btns_name` (the contract stores the id, publishing
/// needs the name). `None` when this node does not hold that key.
pub async fn key_name_for(
    client: &NodeClient,
    btns_name: &str,
) -> Result<Option<String>, UsageError> {
    let keys = client.key_list().await?;
    Ok(keys
        .into_iter()
        .find(|k| crate::storage::cid::same_name(&k.id, btns_name))
        .map(|k| k.name))
}

/// A fresh key name for `key/gen` at mint or register time.
pub fn new_key_name() -> String {
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("pxfs-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_fresh_and_prefixed() {
        let (a, b) = (new_key_name(), new_key_name());
        assert!(a.starts_with("pxfs-") && a.len() == 5 + 16, "{a}");
        assert_ne!(a, b);
    }
}
