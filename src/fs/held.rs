//! Who is told of each committed tree once it holds (its usage document published and still
//! shown after the settle window, docs/FORMAT.md §9.3): services that keep a second copy of
//! the tree (src/pinning/). The core only tells; a listener queues the work and returns at
//! once, so a slow or unreachable service never delays a commit, an `fsync` or a write.

use std::fmt::Debug;

use crate::format::TokenId;

pub trait HeldRoots: Send + Sync + Debug + 'static {
    /// Token `token`'s tree with root `root` (the usage document's `seq`) is committed and
    /// holds. Must not block.
    fn held(&self, token: TokenId, root: &str, seq: u64);
}
