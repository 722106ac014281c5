//! On-BTFS format v2 (docs/FORMAT.md §3–§8) as a pure codec: byte-string names, canonical
//! JSON, the node envelope, directory entries and link-group records, the prolly-tree
//! paging of directories, client-side encryption (content STREAM, sealed nodes, wrapped
//! data keys, paper backup) and the `pxfs/usage/2` document.
//!
//! Nothing here talks to a node: pages are read and written through a [`PageStore`] the
//! caller supplies, so the fs core, the oracle and tests share one implementation.

mod canonical;
pub mod children;
pub mod chunks;
pub mod entry;
pub mod envelope;
pub mod history;
pub mod keys;
pub mod name;
pub mod page;
pub mod paper;
pub mod prolly;
pub mod root;
pub mod seal;
pub mod store;
pub mod usage;
pub mod v1;
pub mod walk;
pub mod wrap;

pub use entry::{
    Attrs, Content, Entry, EntryKind, FileContent, GroupId, Inode, InodeKind, InodeRecord, Xattr,
};
pub use keys::{DataKey, KeyId, TreeCrypto, TreeKeys};
pub use name::{Name, Target, XattrName};
pub use page::{Branch, ChildRef, Page, Record};
pub use store::{MemStore, PageStore};

/// An sNFT's token id (documents and trees are per token).
pub type TokenId = u64;

/// Schemas of the v2 objects.
pub const SCHEMA_ROOT: &str = "pxfs/root/2";
pub const SCHEMA_DIR: &str = "pxfs/dir/2";
pub const SCHEMA_INODES: &str = "pxfs/inodes/2";
pub const SCHEMA_USAGE: &str = "pxfs/usage/2";
/// Format 3 (FORMAT.md §12–§14): the root that may hold chunked files and history, the
/// chunk table, the history table.
pub const SCHEMA_ROOT3: &str = "pxfs/root/3";
pub const SCHEMA_CHUNKS: &str = "pxfs/chunks/3";
pub const SCHEMA_HISTORY: &str = "pxfs/history/3";

/// What can go wrong decoding, encoding, sealing or opening v2 objects. Messages name the
/// object and the rule, and show names escaped (never raw bytes).
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{what} is not valid JSON: {detail}")]
    Json { what: &'static str, detail: String },
    #[error("{what} has schema {found:?}; this pxfs reads {expected}")]
    Schema {
        what: &'static str,
        found: String,
        expected: String,
    },
    /// The object parses but breaks a rule of docs/FORMAT.md.
    #[error("{0}")]
    Invalid(String),
    /// An AEAD tag did not verify: the data was changed, or the key is not this tree's.
    #[error("{0} failed authentication: tampered data or the wrong key")]
    Tampered(String),
    /// A key (data key, passphrase, signature, paper backup) does not fit this sNFT.
    #[error("{0}")]
    WrongKey(String),
    #[error("page store: {0}")]
    Store(String),
}

impl FormatError {
    pub(crate) fn invalid(msg: impl Into<String>) -> FormatError {
        FormatError::Invalid(msg.into())
    }
}

/// The `schema` member of a JSON object, if it has one (what version an object is).
pub fn schema_of(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        schema: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes)
        .ok()
        .and_then(|p| p.schema)
}

pub type Result<T, E = FormatError> = std::result::Result<T, E>;
