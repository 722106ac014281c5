//! The usage document a key command reads and the one it publishes in its place: the next
//! in the chain (`seq` + 1, `prev` = the current document's CID, the same tree), with only
//! `encryption` changed. Published only on top of the document that was read: the name is
//! resolved again just before publishing, and a document that changed meanwhile (another
//! writer) is not overwritten. After publishing, the record is watched for a settle window
//! (docs/FORMAT.md §9.3): if another machine's publication replaced the edit without
//! building on it, the command says the edit did not take (nothing else changed).

use std::time::{Duration, Instant};

use super::KeyError;
use crate::btns::{self, UsageError};
use crate::format::usage::{AnyUsageDoc, Encryption, UsageDoc};
use crate::format::wrap::EncryptionInfo;
use crate::storage::{NodeClient, StorageError};

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
    match btns::resolve(client, btns).await {
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
/// `btns` (whose key the node must hold), and waits until it holds for `settle`. Returns
/// the new document's CID.
pub async fn publish_next(
    client: &NodeClient,
    btns: &str,
    base_cid: &str,
    base: &UsageDoc,
    encryption: EncryptionInfo,
    settle: Duration,
) -> Result<(String, UsageDoc), KeyError> {
    let key = btns::key_name_for(client, btns)
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
    let published = match btns::publish_v2(client, &key, &next, Some(base_cid)).await {
        Ok(p) => p,
        Err(UsageError::Moved { current }) => {
            return Err(KeyError::Refused(format!(
                "token {}'s usage document changed while this command ran (another writer published {}); nothing was changed, run it again",
                base.token_id,
                current.as_deref().unwrap_or("nothing")
            )));
        }
        Err(e) => return Err(usage_error(e)),
    };
    let cid = published.cid;
    tracing::info!(token = next.token_id, seq = next.seq, %cid, checked = published.checked, "usage document published with new key wraps");
    // A publication the node checked holds at once (FORMAT §9.3).
    if !published.checked {
        holds(client, btns, base_cid, &cid, &next, settle).await?;
    }
    Ok((cid, next))
}

/// Resolves `btns` until the edit `cid` has shown for `settle` (FORMAT §9.3). A failed
/// resolve proves nothing. Another document in its place is fine when it names `cid` as a
/// parent (a mount merged the edit: its commits carry the new wraps); otherwise the edit
/// was overwritten and did not take.
async fn holds(
    client: &NodeClient,
    btns: &str,
    base_cid: &str,
    cid: &str,
    edit: &UsageDoc,
    settle: Duration,
) -> Result<(), KeyError> {
    let token = edit.token_id;
    let pause = (settle / 4).max(Duration::from_millis(10));
    let mut seen: Option<Instant> = None;
    for _ in 0..CHECKS {
        let asked = Instant::now();
        match btns::resolve(client, btns).await {
            Ok((now, _)) if now == cid => {
                let since = *seen.get_or_insert(asked);
                if since.elapsed() >= settle {
                    return Ok(());
                }
            }
            // A node that has not shown the edit yet.
            Ok((now, _)) if now == base_cid => {}
            Ok((now, doc)) if descends(client, &doc, cid, edit.seq).await => {
                tracing::info!(token, doc = %now, "a mount built on the key edit");
                return Ok(());
            }
            Ok((now, _)) if seen.is_some() => {
                return Err(KeyError::Refused(format!(
                    "another machine published token {token}'s usage document ({now}) right after this edit and without it: the edit did not take and nothing else changed; run the command again (unmount the sNFT on the other machines first to avoid this)"
                )));
            }
            // An older record (the node has not shown ours yet), or a failed resolve.
            _ => {}
        }
        tokio::time::sleep(pause).await;
    }
    Err(KeyError::Refused(format!(
        "token {token}'s usage document {cid} was published but the node never showed it under {btns}: run `pxfs key status {token}` to see whether the edit took"
    )))
}

/// `doc` names `cid` among its ancestors (parents `prev` and `merged`, walked down to `seq`,
/// at most [`WALK`] documents); a document that cannot be read counts as not.
async fn descends(client: &NodeClient, doc: &AnyUsageDoc, cid: &str, seq: u64) -> bool {
    let parents = |d: &AnyUsageDoc| -> Vec<String> {
        match d {
            AnyUsageDoc::V2(d) if d.seq > seq => d.prev.iter().chain(&d.merged).cloned().collect(),
            _ => Vec::new(),
        }
    };
    let mut pending = parents(doc);
    let mut read = 0;
    while let Some(next) = pending.pop() {
        if next == cid {
            return true;
        }
        read += 1;
        if read > WALK {
            return false;
        }
        match btns::fetch(client, &next).await {
            Ok(d) => pending.extend(parents(&d)),
            Err(_) => return false,
        }
    }
    false
}

/// Documents read, at most, to find whether a later one builds on an edit.
const WALK: usize = 64;

/// Resolves while waiting for an edit to hold, at most (then the command says it cannot
/// tell).
const CHECKS: usize = 400;
