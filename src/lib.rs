//! pxfs: PollinationX PX Storage NFTs mounted as a filesystem.
//!
//! Dependencies point one way: `cli` → {`fuse`, `oracle`, `devnet`} → `fs` →
//! {`storage`, `chain`}. Only `storage` speaks HTTP to the node, only `chain` uses alloy,
//! and `fs` never imports `fuser`.

pub mod build_info;
pub mod cache;
pub mod chain;
pub mod check;
pub mod cli;
pub mod config;
pub mod dapp;
pub mod devnet;
pub mod format;
pub mod fs;
pub mod fuse;
pub mod integrity;
pub mod keys;
pub mod mountinfo;
pub mod node;
pub mod oracle;
pub mod output;
pub mod pinning;
pub mod replica;
pub mod storage;
pub mod usage;
