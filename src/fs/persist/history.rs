//! History on the commit's path (docs/FORMAT.md §14.3, §14.4): the versions a commit's
//! root keeps — those the replaced roots kept, plus the replaced roots themselves (ours,
//! and on a merge theirs), as the retention policy says at the commit's time — and the
//! published graph's counts, which a commit that keeps or drops history needs before it
//! publishes: its usage is the whole graph's (each distinct object of the tree and of every
//! kept version once, §14.5), which only the counts know.

use crate::format::history::{self, Version};
use crate::format::root::Root;
use crate::fs::Fs;
use crate::fs::data::graph::{GraphIndex, PageSource};
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::TokenId;

use super::commit_tree::Snapshot;
use super::merge_gone::is_gone;

/// What a commit writes of history.
#[derive(Debug, Default)]
pub(in crate::fs) struct HistoryPlan {
    /// The commit time: the new root's `t`.
    pub(in crate::fs) t: i64,
    /// The versions the new root keeps, sorted by time.
    pub(in crate::fs) versions: Vec<Version>,
    /// The pages of the replaced roots' history tables (on the node already).
    pub(in crate::fs) old_pages: Vec<String>,
    /// The commit keeps history or drops some: its usage is counted from the graph.
    pub(in crate::fs) counted: bool,
}

/// A replaced root, read: the version it becomes and the versions it kept.
struct Replaced {
    version: Version,
    history: Vec<Version>,
    pages: Vec<String>,
}

impl Fs {
    /// The history `snap`'s commit writes.
    pub(in crate::fs) async fn plan_history(&self, snap: &Snapshot) -> FsResult<HistoryPlan> {
        let token = snap.record.token_id;
        let policy = self.config().history;
        let t = self.config().commit_time();
        let (ours, ours_doc, tree_usage) = {
            let tree = self.tree();
            let tk = tree.token(token)?;
            (
                tk.committed.root.clone(),
                tk.committed.usage_doc.clone(),
                tk.tree_usage,
            )
        };
        let mut roots = Vec::new();
        if let Some(root) = ours {
            roots.push((root, ours_doc, tree_usage));
        }
        if let Some(o) = &snap.onto
            && let Some(root) = &o.root
            && roots.iter().all(|(r, _, _)| r != root)
        {
            roots.push((root.clone(), o.doc.clone(), 0));
        }
        let mut kept = Vec::new();
        let mut replaced = Vec::new();
        let mut old_pages = Vec::new();
        let mut had_history = false;
        let merging = snap.onto.is_some();
        for (root, doc, usage) in roots {
            let read = match self.read_replaced(snap, &root, doc.as_deref(), usage).await {
                // This mount's last root, collected since: another writer's commits
                // superseded it, so the tree merged here (theirs) descends from it and
                // holds its history (docs/FORMAT.md §9.3).
                Err(e) if merging && is_gone(&e) => {
                    tracing::warn!(
                        token,
                        error = %e,
                        "the root this mount last committed is gone from the node; its \
                         history is the other writer's"
                    );
                    continue;
                }
                r => r?,
            };
            let Some(r) = read else {
                // A format-v1 tree, rewritten whole by this commit (§10): no version of it
                // is kept, and its graph is not counted (its manifests are not pages).
                return Ok(HistoryPlan {
                    t,
                    ..HistoryPlan::default()
                });
            };
            had_history |= !r.history.is_empty();
            kept = history::union(kept, r.history);
            replaced.push(r.version);
            old_pages.extend(r.pages);
        }
        if policy.is_off() && !had_history {
            return Ok(HistoryPlan {
                t: replaced
                    .iter()
                    .map(|v| v.t().saturating_add(1))
                    .fold(t, i64::max),
                ..HistoryPlan::default()
            });
        }
        let replaced = history::union(Vec::new(), replaced);
        // After every version it replaces (two commits in one clock tick, or another
        // machine's clock ahead of this one's): the versions stay ordered as committed.
        let t = replaced
            .iter()
            .map(|v| v.t().saturating_add(1))
            .fold(t, i64::max);
        let versions = history::next(kept, replaced, t, &policy, t);
        Ok(HistoryPlan {
            t,
            versions,
            old_pages,
            counted: true,
        })
    }

    /// Root `cid` as the version it becomes when replaced, with the versions it kept. A
    /// format-2 root is the version of its document's time (§12.2); a format-v1 manifest
    /// is none (`None`).
    async fn read_replaced(
        &self,
        snap: &Snapshot,
        cid: &str,
        doc: Option<&str>,
        usage: u64,
    ) -> FsResult<Option<Replaced>> {
        let store = self.store_of(Some(snap.record.token_id));
        let bytes = match self.inner.pages.get(cid) {
            Some(b) => b,
            None => store.fetch(cid).await?,
        };
        if crate::format::schema_of(&bytes).as_deref() == Some(crate::format::v1::manifest::SCHEMA)
        {
            return Ok(None);
        }
        let r = Root::decode_any(&bytes, &snap.sealing)
            .map_err(|e| FsError::Journal(format!("root node {cid}: {e}")))?;
        let (t, top) = match r.v3 {
            Some((t, top)) => (t, top),
            None => {
                let secs = match doc {
                    Some(doc) => {
                        let bytes = store.fetch(doc).await?;
                        crate::format::usage::parse_any(&bytes)
                            .map(|d| match d {
                                crate::format::usage::AnyUsageDoc::V1(d) => d.updated_at,
                                crate::format::usage::AnyUsageDoc::V2(d) => d.updated_at,
                            })
                            .unwrap_or(0)
                    }
                    None => 0,
                };
                (
                    i64::try_from(secs)
                        .unwrap_or(0)
                        .saturating_mul(1_000_000_000),
                    None,
                )
            }
        };
        let version = Version::new(
            t,
            r.root.attrs,
            r.root.xattrs,
            r.root.dir,
            r.root.inodes,
            usage,
        )
        .map_err(|e| FsError::Journal(format!("root node {cid}: {e}")))?;
        let (history, pages) = match top {
            Some(top) => {
                crate::fs::data::pages::read_history(
                    &*store,
                    &snap.sealing,
                    &self.inner.pages,
                    &top,
                )
                .await?
            }
            None => (Vec::new(), Vec::new()),
        };
        Ok(Some(Replaced {
            version,
            history,
            pages: pages.into_iter().map(|(c, _)| c).collect(),
        }))
    }

    /// The published graph's counts exist (counted now from the published root if they do
    /// not): a commit whose usage is the graph's moves them before it publishes.
    pub(in crate::fs) async fn ensure_counts(&self, token: TokenId) -> FsResult<()> {
        let root = {
            let tree = self.tree();
            let t = tree.token(token)?;
            if t.graph.index.is_some() {
                return Ok(());
            }
            // After a merge, from the other writer's root the commit builds on: the root
            // this mount last committed may be collected (docs/FORMAT.md §9.3).
            match &t.merged_onto {
                Some(onto) => onto.root.clone(),
                None => t.committed.root.clone(),
            }
        };
        let index = match &root {
            None => GraphIndex::empty(),
            Some(root) => {
                let store = self.store_of(Some(token));
                let crypto = self.sealing(Some(token));
                let pages = PageSource {
                    store: &*store,
                    cache: &self.inner.pages,
                    crypto: &crypto,
                    unsent: None,
                };
                GraphIndex::count(root, pages).await?
            }
        };
        let mut tree = self.tree();
        let t = tree.token_mut(token)?;
        if t.graph.index.is_none() {
            t.graph.index = Some(Box::new(index));
        }
        Ok(())
    }

    /// Moves the counts to `root` (written, not yet published): the whole graph's usage
    /// and what the move dropped (the commit's pages not on the node yet are read from
    /// `unsent`). `uncount_commit` moves them back to `from` when the commit is not
    /// published after all.
    pub(in crate::fs) async fn count_commit(
        &self,
        token: TokenId,
        root: &str,
        unsent: Option<&crate::fs::data::outbox::Outbox>,
    ) -> FsResult<(u64, Vec<String>, String)> {
        let mut index = {
            let mut tree = self.tree();
            tree.token_mut(token)?
                .graph
                .index
                .take()
                .ok_or_else(|| FsError::Journal("the published graph is not counted".into()))?
        };
        let from = index.root().to_owned();
        let store = self.store_of(Some(token));
        let crypto = self.sealing(Some(token));
        let pages = PageSource {
            store: &*store,
            cache: &self.inner.pages,
            crypto: &crypto,
            unsent,
        };
        let moved = index.advance(root, pages).await;
        let total = index.total();
        if let Ok(t) = self.tree().token_mut(token)
            && moved.is_ok()
        {
            t.graph.index = Some(index);
        }
        // (A failed move leaves the counts half-moved: dropped, counted again next time.)
        moved.map(|dropped| (total, dropped, from))
    }

    /// The commit counted by [`Fs::count_commit`] was not published: the counts go back to
    /// `from`, or are dropped (counted again) if that fails.
    pub(in crate::fs) async fn uncount_commit(&self, token: TokenId, from: &str) {
        let index = self
            .tree()
            .token_mut(token)
            .ok()
            .and_then(|t| t.graph.index.take());
        let Some(mut index) = index else { return };
        if from.is_empty() {
            if let Ok(t) = self.tree().token_mut(token) {
                t.graph.index = Some(Box::new(GraphIndex::empty()));
            }
            return;
        }
        let store = self.store_of(Some(token));
        let crypto = self.sealing(Some(token));
        let pages = PageSource {
            store: &*store,
            cache: &self.inner.pages,
            crypto: &crypto,
            unsent: None,
        };
        match index.advance(from, pages).await {
            Ok(_) => {
                if let Ok(t) = self.tree().token_mut(token) {
                    t.graph.index = Some(index);
                }
            }
            Err(e) => {
                tracing::debug!(token, error = %e, "cannot move the counts back; counting again")
            }
        }
    }

    /// This mount published root `root`, which keeps `versions`: `.snapshots/` shows them.
    pub(in crate::fs) fn history_committed(
        &self,
        token: TokenId,
        root: &str,
        versions: Vec<Version>,
    ) {
        let crypto = self.sealing(Some(token));
        let top = self
            .inner
            .pages
            .get(root)
            .and_then(|b| Root::decode_any(&b, &crypto).ok())
            .and_then(|r| r.v3)
            .map(|(_, top)| top);
        if let Some(top) = top {
            self.tree().refresh_snapshots(token, top, versions);
        }
    }
}
