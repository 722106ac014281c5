//! pxfs: PollinationX PX Storage NFTs mounted as a filesystem.
//!
//! Layers, low to high (docs/ARCHITECTURE.md; `tests/layering.rs` keeps them so): plain
//! data (`config`, `output`, `build_info`, `mountinfo`, `local_disk`, `metrics`); the on-node format
//! (`format`, a pure codec); the node client (`storage`, `integrity`); `btns`, `keys`,
//! `chain`, `cache`, `dapp`; the filesystem core (`fs`); its users (`fuse`, `oracle`,
//! `check`, `pinning`, `node`, `devnet`, `web`); and `cli`. A module imports only from its own
//! layer or lower ones. Only `storage` speaks HTTP to the node, only `chain` uses alloy,
//! and `fs` never imports `fuser`.

pub mod backoff;
pub mod btns;
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
pub mod local_disk;
pub mod metrics;
pub mod mountinfo;
pub mod node;
pub mod oracle;
pub mod output;
pub mod pinning;
pub mod replica;
pub mod storage;
pub mod web;
