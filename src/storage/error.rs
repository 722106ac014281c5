//! What can go wrong talking to the node, and which of it is worth trying again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// An error from the storage client. `path` is the RPC path that failed
/// (e.g. `/api/v0/cat`), so a log line says which call it was.
///
/// Cloneable so one failed fetch can be handed to every reader waiting on it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// No connection could be made (refused, reset, DNS) even after the retries.
    #[error("node unreachable at {url}: {detail}")]
    Unreachable { url: String, detail: String },

    /// The node did not answer (or went silent mid-stream) within the timeout.
    #[error("node timed out after {after:?} on {path}")]
    Timeout { path: String, after: Duration },

    /// The node answered with a definite error: a 4xx, or a Kubo error body
    /// (`{"Message","Code","Type":"error"}`).
    #[error("node error on {path} (HTTP {status}): {message}")]
    Node {
        path: String,
        status: u16,
        message: String,
    },

    /// A 5xx without a Kubo error body (a proxy's 502/503/504, a crashed handler):
    /// the node may be fine a moment later.
    #[error("node unavailable on {path} (HTTP {status}): {message}")]
    Unavailable {
        path: String,
        status: u16,
        message: String,
    },

    /// The node answered 200 with something that is not the expected shape.
    #[error("unexpected answer from node on {path}: {detail}")]
    Decode { path: String, detail: String },

    /// A local file that was to be uploaded could not be read.
    #[error("cannot read {}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },

    /// The hosted-node login (`[node] auth = "pollinationx"`) failed. `url` is the login
    /// endpoint without its query (which carries the wallet's signature).
    #[error("hosted node login at {url} failed: {detail}")]
    Login {
        url: String,
        detail: String,
        transient: bool,
    },

    /// A hosted node does not offer this call (PollinationX's gateway passes `add`, `cat`,
    /// `get`; `key/*`, `name/*`, `pin/*` may be refused).
    #[error("the hosted node does not offer {path} (HTTP {status})")]
    Unsupported { path: String, status: u16 },

    /// The client configuration is unusable (bad URL, unreadable token file).
    #[error("node client configuration: {0}")]
    Config(String),
}

impl StorageError {
    /// Unreachable, timed out, a 5xx that is not the node's definite answer, or the node
    /// out of disk space: the same request may well succeed later (the uploader keeps data
    /// staged).
    pub fn is_transient(&self) -> bool {
        match self {
            StorageError::Unreachable { .. }
            | StorageError::Timeout { .. }
            | StorageError::Unavailable { .. }
            | StorageError::Login {
                transient: true, ..
            } => true,
            // Kubo (and the bundled node) answer a full repository with HTTP 500 and the
            // OS's message: space can come back, so it is an outage, not a refusal.
            StorageError::Node {
                status, message, ..
            } => *status >= 500 && node_disk_full(message),
            _ => false,
        }
    }

    /// The node's own error message, when it gave one.
    pub fn node_message(&self) -> Option<&str> {
        match self {
            StorageError::Node { message, .. } => Some(message),
            _ => None,
        }
    }
}

/// A node's error message saying its disk is full: Go's `syscall.ENOSPC` text (Kubo) or
/// Rust's (the bundled node), whatever the capitals.
fn node_disk_full(message: &str) -> bool {
    message
        .to_ascii_lowercase()
        .contains("no space left on device")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_error(status: u16, message: &str) -> StorageError {
        StorageError::Node {
            path: "/api/v0/add".into(),
            status,
            message: message.into(),
        }
    }

    #[test]
    fn a_node_with_its_disk_full_is_an_outage_and_other_node_errors_are_refusals() {
        let kubo = "put /data/blocks/CIQ.data: write: no space left on device";
        let bundled = "writing block: No space left on device (os error 28)";
        assert!(node_error(500, kubo).is_transient());
        assert!(node_error(500, bundled).is_transient());
        assert!(!node_error(500, "merkledag: not found").is_transient());
        assert!(!node_error(400, "no space left on device").is_transient());
    }
}
