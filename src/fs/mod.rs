//! Filesystem core: the in-memory tree per sNFT, manifests, staging, quota and commits.
//! Never imports `fuser`: tests drive it directly.
