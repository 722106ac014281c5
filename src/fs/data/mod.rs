//! The bytes the core keeps and where they go: staged file versions and their live
//! uploads, content as stored (sealed or plain), directory pages (format v2), the journal
//! on the cache disk, the node adapter and the health of the node and of the cache disk.
//! Knows nothing of the tree: it may use the core's base (`fs::{error, store, backoff}`).

pub mod chunked;
mod chunked_read;
pub mod content;
pub(in crate::fs) mod disk_space;
pub mod graph;
pub mod journal;
pub(in crate::fs) mod live;
pub mod node_store;
pub(in crate::fs) mod outage;
pub mod outbox;
pub mod overlay;
pub mod pages;
mod read_runs;
pub mod staged;
pub(in crate::fs) mod stores;
