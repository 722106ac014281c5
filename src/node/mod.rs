//! `pxfs node`: a local BTFS/Kubo-compatible HTTP RPC node built on rust-ipfs.
