//! Persistence of the tree on the node: commits (pages bottom-up, the usage document under
//! BTNS), merging another writer's commits, loading an sNFT (journal replay over its last
//! root), ancestry of documents, the strongest encryption seen, another machine's re-key,
//! and handing each committed tree to the replicas.
//! May use `fs::model`, `fs::data` and the base; never `fs::upload` or `fs::ops::namespace`.

pub(in crate::fs) mod ancestry;
pub mod commit;
pub(in crate::fs) mod commit_tree;
pub(in crate::fs) mod history;
pub(in crate::fs) mod load;
pub(in crate::fs) mod load_dirs;
pub(in crate::fs) mod merge;
mod merge_gone;
pub(in crate::fs) mod rekey;
pub(in crate::fs) mod replicate;
pub mod strongest;
pub(in crate::fs) mod unpins;
