//! Checked publications (docs/FORMAT.md §9.3): a `name/publish` that names the record it
//! replaces, which the node applies only if the name still holds that record. IPNS has no
//! such thing; pxfs's own node offers it (`pxfs-replaces`), and a writer whose publication
//! the node checked needs no settle window to know it holds. Other nodes (Kubo, BTFS) are
//! never sent the argument: they get the unchecked `name/publish` and the writer waits out
//! the window as before.
//!
//! Both sides of the protocol live here, so the node and the client cannot drift apart.

use serde::Deserialize;

use super::{NodeClient, StorageError, strip_content_prefix};

/// The `name/publish` argument naming the record a publication replaces: `/ipfs/CID`, or
/// empty when the name must have no record yet.
pub const REPLACES_ARG: &str = "pxfs-replaces";

/// The prefix of the node's answer when the name holds another record than the one named.
const MOVED: &str = "pxfs-replaces: the record moved; it names ";

/// The `version` prefix of a node that checks publications.
pub const CHECKING_NODE: &str = "pxfs-node/";

/// What a `name/publish` with [`REPLACES_ARG`] answers: Kubo's `{"Name","Value"}` and
/// `PxfsChecked`, true when the node compared the record before replacing it.
#[derive(Debug, Deserialize)]
struct CheckedAnswer {
    #[serde(rename = "PxfsChecked", default)]
    checked: bool,
}

/// How a publication went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Publication {
    /// The record now names the new value. `checked`: the node replaced exactly the record
    /// named (nobody else's publication was overwritten, and none can overwrite this one
    /// without naming it); otherwise an unchecked publish (a node without the check).
    Published { checked: bool },
    /// The name held another record (`None`: none at all); nothing was published.
    Moved { current: Option<String> },
}

/// The node's error message when `name` holds `current` (`None`: nothing) instead of the
/// record a publication said it replaces.
pub fn moved_message(current: Option<&str>) -> String {
    format!("{MOVED}{}", current.unwrap_or(""))
}

/// The record a [`moved_message`] says the name holds: `Some(None)` for none, `None` when
/// `message` is another error.
fn parse_moved(message: &str) -> Option<Option<String>> {
    let current = message.strip_prefix(MOVED)?.trim();
    Some((!current.is_empty()).then(|| strip_content_prefix(current).to_owned()))
}

impl NodeClient {
    /// Whether this node checks publications (asked once per client: its `version`).
    pub async fn checks_publications(&self) -> bool {
        if self.is_hosted() {
            return false;
        }
        *self
            .inner
            .checks_publish
            .get_or_init(|| async {
                match self.version().await {
                    Ok(v) => v.version.starts_with(CHECKING_NODE),
                    Err(e) => {
                        tracing::debug!(error = %e, "version unknown; publications unchecked");
                        false
                    }
                }
            })
            .await
    }

    /// Publishes `cid` under the key named `key`, replacing the record `replaces` (the CID
    /// the name was resolved to; `None`: it had none). A node that checks publications
    /// applies it only if the name still holds exactly that; other nodes publish it
    /// unchecked (the caller then waits for it to hold, docs/FORMAT.md §9.3).
    pub async fn name_publish_replacing(
        &self,
        key: &str,
        cid: &str,
        replaces: Option<&str>,
    ) -> Result<Publication, StorageError> {
        if !self.checks_publications().await {
            self.name_publish(key, cid, None).await?;
            return Ok(Publication::Published { checked: false });
        }
        let target = format!("/ipfs/{}", strip_content_prefix(cid));
        let replaced = replaces
            .map(|r| format!("/ipfs/{}", strip_content_prefix(r)))
            .unwrap_or_default();
        let query = [
            ("arg", target.as_str()),
            ("key", key),
            ("allow-offline", "true"),
            (REPLACES_ARG, replaced.as_str()),
        ];
        match self.json::<CheckedAnswer>("name/publish", &query).await {
            Ok(a) => Ok(Publication::Published { checked: a.checked }),
            Err(e) => match e.node_message().and_then(parse_moved) {
                // An answer lost after the node took it: the retry finds its own record.
                Some(Some(current)) if current == strip_content_prefix(cid) => {
                    Ok(Publication::Published { checked: true })
                }
                Some(current) => Ok(Publication::Moved { current }),
                None => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moved_message_gives_back_the_record() {
        let cid = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
        assert_eq!(
            parse_moved(&moved_message(Some(&format!("/ipfs/{cid}")))),
            Some(Some(cid.to_owned()))
        );
        assert_eq!(parse_moved(&moved_message(None)), Some(None));
        assert_eq!(parse_moved("could not resolve name"), None);
    }
}
