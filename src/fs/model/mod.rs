//! The in-memory model: inodes, the namespace tree, each sNFT's usage ledger and quota
//! decision, the per-token state, bounded memory (unload), the read-only dApp folder and
//! snapshot view, and how an inode is stored as a v2 entry. Runs under the core's lock; never waits on the
//! network. May use `fs::data` and the base.

pub(in crate::fs) mod dapp;
pub mod inode;
pub mod ledger;
pub mod quota;
pub mod snapshots;
pub(in crate::fs) mod stored;
pub mod token;
pub mod tree;
pub(in crate::fs) mod tree_charge;
pub(in crate::fs) mod tree_load;
pub(in crate::fs) mod unload;
