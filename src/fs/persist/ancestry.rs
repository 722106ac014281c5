//! Ancestry of usage documents (docs/FORMAT.md §9.1): a document's parents are its `prev`
//! and its `merged`; the merge base of this mount's own document and the published one is
//! their nearest common ancestor, found by walking both ancestries together, highest `seq`
//! first. The documents walked lately are remembered ([`Memory`]), so the walk after each
//! commit fetches only what is new.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Mutex;

use crate::fs::store::{ContentStore, Published};

/// The walk reads at most this many documents (FORMAT §9.1).
pub const MAX_WALK: usize = 1_024;

/// Documents remembered, at most (then forgotten all at once: they are fetched again).
const REMEMBERED: usize = 4_096;

/// What the walk needs of a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocNode {
    pub seq: u64,
    pub root: String,
    pub parents: Vec<String>,
}

impl DocNode {
    pub fn of(p: &Published) -> DocNode {
        DocNode {
            seq: p.seq,
            root: p.root.clone(),
            parents: p.prev.iter().chain(p.merged.iter()).cloned().collect(),
        }
    }
}

/// Recently seen documents, by CID.
#[derive(Debug, Default)]
pub struct Memory {
    docs: Mutex<HashMap<String, DocNode>>,
}

impl Memory {
    pub fn remember(&self, cid: &str, node: DocNode) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        if docs.len() >= REMEMBERED {
            docs.clear();
        }
        docs.insert(cid.to_owned(), node);
    }

    fn get(&self, cid: &str) -> Option<DocNode> {
        self.docs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(cid)
            .cloned()
    }

    async fn node(
        &self,
        store: &dyn ContentStore,
        cid: &str,
    ) -> Result<DocNode, crate::fs::FsError> {
        if let Some(n) = self.get(cid) {
            return Ok(n);
        }
        let p = store.usage_doc(cid).await?;
        let n = DocNode::of(&p);
        self.remember(cid, n.clone());
        Ok(n)
    }
}

/// How the published document stands to this mount's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relation {
    /// It is own, or an ancestor of own (an older record): nothing to take in.
    Behind,
    /// It descends from own (own is the merge base): a fast-forward.
    Ahead { base_root: String },
    /// Both moved since their nearest common ancestor, whose root this is; `None`: no common
    /// ancestor within the walk (the empty tree is the base).
    Diverged { base_root: Option<String> },
}

const OWN: u8 = 1;
const THEIRS: u8 = 2;

/// How `theirs` stands to the document(s) `own` (this mount's own document; two heads
/// while a merge is folded in and not yet published: the merged document and its own
/// previous one). FORMAT §9.1.
pub async fn relate(
    memory: &Memory,
    store: &dyn ContentStore,
    own: &[String],
    theirs: &Published,
) -> Result<Relation, crate::fs::FsError> {
    memory.remember(&theirs.doc_cid, DocNode::of(theirs));
    if own.is_empty() {
        return Ok(Relation::Diverged { base_root: None });
    }
    if own.contains(&theirs.doc_cid) {
        return Ok(Relation::Behind);
    }
    let mut marks: HashMap<String, u8> = HashMap::new();
    let mut nodes: HashMap<String, DocNode> = HashMap::new();
    let mut queue: BinaryHeap<(u64, Reverse<String>)> = BinaryHeap::new();
    let mut queued: HashSet<String> = HashSet::new();
    let mut read = 0usize;
    let starts = own
        .iter()
        .map(|c| (c.clone(), OWN))
        .chain(std::iter::once((theirs.doc_cid.clone(), THEIRS)));
    for (cid, mark) in starts {
        *marks.entry(cid.clone()).or_default() |= mark;
        if queued.insert(cid.clone()) {
            let n = memory.node(store, &cid).await?;
            read += 1;
            queue.push((n.seq, Reverse(cid.clone())));
            nodes.insert(cid, n);
        }
    }
    while let Some((_, Reverse(cid))) = queue.pop() {
        let mark = marks.get(&cid).copied().unwrap_or(0);
        let node = nodes.get(&cid).cloned().unwrap_or_else(|| DocNode {
            seq: 0,
            root: String::new(),
            parents: Vec::new(),
        });
        if mark == OWN | THEIRS {
            return Ok(if cid == theirs.doc_cid {
                Relation::Behind
            } else if own.contains(&cid) {
                Relation::Ahead {
                    base_root: node.root,
                }
            } else {
                Relation::Diverged {
                    base_root: Some(node.root),
                }
            });
        }
        for parent in &node.parents {
            *marks.entry(parent.clone()).or_default() |= mark;
            if queued.contains(parent) {
                continue;
            }
            if read >= MAX_WALK {
                tracing::warn!(
                    read,
                    "no common ancestor of this mount's document and the published one \
                     within the walk: merging from the empty tree (conflict copies, nothing \
                     deleted)"
                );
                return Ok(Relation::Diverged { base_root: None });
            }
            let n = memory.node(store, parent).await?;
            read += 1;
            queued.insert(parent.clone());
            queue.push((n.seq, Reverse(parent.clone())));
            nodes.insert(parent.clone(), n);
        }
    }
    Ok(Relation::Diverged { base_root: None })
}
