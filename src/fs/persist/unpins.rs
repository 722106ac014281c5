//! Which objects a commit may unpin (docs/FORMAT.md §15). A commit's candidates are what it
//! superseded; one may be unpinned only if nothing the new published root reaches lists
//! it. A fully loaded tree proves that from its inodes; a partly loaded one needs the
//! published graph's counts (`fs::data::graph`), counted once in the background from the
//! first commit that needs them and then moved from root to root by each commit. Until
//! they exist, the candidates wait (kept pinned), and the first commit with counts
//! decides them.

use std::collections::HashSet;
use std::time::Duration;

use crate::fs::Fs;
use crate::fs::data::graph::{GraphIndex, PageSource};
use crate::fs::model::inode::TokenId;
use crate::fs::model::token::GraphCounts;
use crate::fs::model::tree::Tree;

/// What loaded inodes still use besides the objects their charges hold (which the ledger
/// answers): the uploaded versions of files whose charge does not hold them yet.
fn live_versions(tree: &Tree, token: TokenId) -> HashSet<String> {
    tree.tracked
        .unsettled
        .iter()
        .filter_map(|i| tree.inodes.get(i))
        .filter(|i| i.token == Some(token))
        .filter_map(|i| {
            i.file()
                .and_then(|f| f.blob.as_ref())
                .map(|b| b.cid.clone())
        })
        .collect()
}

/// Of `candidates`, what nothing uses (each once): not listed by the published root the
/// counts are of, not held by a loaded inode, not a live version.
pub(super) fn unused(tree: &Tree, token: TokenId, candidates: Vec<String>) -> Vec<String> {
    let live = live_versions(tree, token);
    let Ok(t) = tree.token(token) else {
        return Vec::new();
    };
    candidates
        .into_iter()
        .filter(|c| !live.contains(c) && !t.uses(c))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect()
}

/// Unpins sent at once.
const UNPINS_AT_ONCE: usize = 16;

/// Unpins `cids`, [`UNPINS_AT_ONCE`] at a time, not a round trip each (a rewrite
/// supersedes many); a failure leaves that one pinned.
async fn unpin_all(store: &dyn crate::fs::store::ContentStore, cids: Vec<String>) {
    use futures::StreamExt;
    futures::stream::iter(cids)
        .for_each_concurrent(UNPINS_AT_ONCE, |cid| async move {
            if let Err(e) = store.unpin(&cid).await {
                tracing::debug!(cid, error = %e, "unpin failed");
            }
        })
        .await;
}

/// After a failed count, the next waits this long.
const RETRY_COUNT_AFTER: Duration = Duration::from_secs(60);

impl Fs {
    /// Moves the token's counts to its newly published `root`, adding what the move
    /// dropped (and what waited for counts) to `unpin`. Without counts, a fully loaded
    /// tree decides `unpin` from its inodes; otherwise the candidates wait for a count,
    /// which starts here, and `unpin` is emptied.
    pub(in crate::fs) async fn move_counts(
        &self,
        token: TokenId,
        root: Option<&str>,
        unpin: &mut Vec<String>,
        fully_loaded: bool,
    ) {
        let (index, undecided) = {
            let mut tree = self.tree();
            let Ok(t) = tree.token_mut(token) else {
                return;
            };
            match t.graph.index.take() {
                Some(ix) => (Some(ix), std::mem::take(&mut t.graph.undecided)),
                None => (None, Vec::new()),
            }
        };
        if let (Some(mut index), Some(root)) = (index, root) {
            let store = self.store_of(Some(token));
            let crypto = self.sealing(Some(token));
            let pages = PageSource {
                store: &*store,
                cache: &self.inner.pages,
                crypto: &crypto,
                unsent: None,
            };
            match index.advance(root, pages).await {
                Ok(dropped) => {
                    unpin.extend(dropped);
                    unpin.extend(undecided);
                    if let Ok(t) = self.tree().token_mut(token) {
                        t.graph.index = Some(index);
                    }
                    return;
                }
                Err(e) => {
                    tracing::warn!(token, error = %e,
                        "cannot move the published graph's counts; counting it again later");
                    if let Ok(t) = self.tree().token_mut(token) {
                        t.graph.failed_at = Some(std::time::Instant::now());
                        t.graph.undecided = undecided;
                    }
                }
            }
        }
        if fully_loaded {
            return;
        }
        let start = {
            let mut tree = self.tree();
            let Ok(t) = tree.token_mut(token) else {
                return;
            };
            let g = &mut t.graph;
            let room = GraphCounts::MAX_UNDECIDED.saturating_sub(g.undecided.len());
            // (What does not fit stays pinned: dropping the drain empties `unpin`.)
            g.undecided.extend(unpin.drain(..).take(room));
            let due = g
                .failed_at
                .is_none_or(|at| at.elapsed() >= RETRY_COUNT_AFTER);
            let start = !g.counting && !g.undecided.is_empty() && due && root.is_some();
            g.counting |= start;
            start
        };
        if let (true, Some(root)) = (start, root) {
            self.count_graph(token, root.to_owned());
        }
    }

    /// The published root the graph's counts are of and its usage by them (docs/FORMAT.md
    /// §7, each distinct object once, kept versions included); `None` until counted.
    pub fn counted_usage(&self, token: TokenId) -> Option<(String, u64)> {
        let tree = self.tree();
        let index = tree.token(token).ok()?.graph.index.as_ref()?;
        Some((index.root().to_owned(), index.total()))
    }

    /// Unpins what a held commit superseded, off the path of the `fsync` that waited for
    /// the commit: once the commit lock is free (no commit decides meanwhile), each checked
    /// again against what the tree uses then. [`Fs::unpins_done`] waits for it (a flush).
    pub(in crate::fs) fn unpin_later(&self, token: TokenId, candidates: Vec<String>) {
        let fs = self.clone();
        let task = self.inner.rt.spawn(async move {
            let _one_at_a_time = fs.inner.commit_lock.lock().await;
            let unpin = unused(&fs.tree(), token, candidates);
            unpin_all(&*fs.store_of(Some(token)), unpin).await;
        });
        let mut tasks = self
            .inner
            .unpinning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// Until the unpins [`Fs::unpin_later`] started are done.
    pub(in crate::fs) async fn unpins_done(&self) {
        let tasks = std::mem::take(
            &mut *self
                .inner
                .unpinning
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Counts the published graph of `root` in the background (`fs::data::graph`).
    fn count_graph(&self, token: TokenId, root: String) {
        let fs = self.clone();
        let cancel = self.inner.cancel.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let store = fs.store_of(Some(token));
            let crypto = fs.sealing(Some(token));
            let pages = PageSource {
                store: &*store,
                cache: &fs.inner.pages,
                crypto: &crypto,
                unsent: None,
            };
            let counted = tokio::select! {
                _ = cancel.cancelled() => return,
                r = GraphIndex::count(&root, pages) => r,
            };
            // No commit moves the published root while the waiting candidates are decided.
            let _one_at_a_time = fs.inner.commit_lock.lock().await;
            let unpin_now = {
                let mut tree = fs.tree();
                let Ok(t) = tree.token_mut(token) else {
                    return;
                };
                t.graph.counting = false;
                let index = match counted {
                    Ok(index) => index,
                    Err(e) => {
                        tracing::warn!(token, error = %e,
                            "cannot count the published graph; superseded versions stay pinned for now");
                        t.graph.failed_at = Some(std::time::Instant::now());
                        return;
                    }
                };
                tracing::info!(
                    token,
                    objects = index.len(),
                    secs = started.elapsed().as_secs_f64(),
                    "counted the published graph: superseded versions are unpinned again"
                );
                // Counts of an older root than the published one: the next commit moves
                // them and decides what waits.
                let current = t.committed.root.as_deref() == Some(index.root());
                t.graph.index = Some(Box::new(index));
                if !current {
                    return;
                }
                let candidates = std::mem::take(&mut t.graph.undecided);
                let unused = unused(&tree, token, candidates);
                let Ok(t) = tree.token_mut(token) else {
                    return;
                };
                // Unpinned once the root's document holds (now, or when `hold` sees it).
                if t.held() {
                    unused
                } else {
                    t.unpin_when_held.extend(unused);
                    Vec::new()
                }
            };
            unpin_all(&*store, unpin_now).await;
        });
    }
}
