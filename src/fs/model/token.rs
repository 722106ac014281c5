//! One mounted sNFT: what the chain says about it, its live usage, its journal and what
//! the next commit has to write.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use crate::fs::data::journal::{CommittedState, Journal};
use crate::fs::model::inode::{Ino, TokenId};
use crate::fs::model::quota::Allowance;
use crate::fs::store::{Blob, LastUpload, Stored};

/// A version its live upload handed over before the node answered its last adds
/// ([`Stored`]).
#[derive(Debug, Clone)]
pub struct Unstored {
    pub stored: Stored,
    /// The version's blob (its top CID).
    pub cid: String,
    /// The file's blob it replaced: put back if the version turns out not stored.
    pub replaced: Option<Blob>,
    /// What the replaced blob stored and this one does not: superseded once it is stored.
    pub superseded: Vec<String>,
}

/// What the mount knows about a token from the chain (fed in at mount and by the poller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_id: TokenId,
    /// `sizeInBytes` from the chain.
    pub quota: u64,
    /// Sync overdue by chain time: adding data is refused.
    pub overdue: bool,
    /// Unix seconds of the last on-chain sync.
    pub last_sync: u64,
    /// Unix seconds after which the token is overdue.
    pub sync_deadline: u64,
    /// The token's BTNS (IPNS) name; `None` when none is registered.
    pub btns: Option<String>,
    /// The usage the chain recorded at the last sync: above 0, a tree was published and
    /// synced, so a node that finds nothing under the name has lost it (or hides it).
    pub synced_usage: u64,
}

#[derive(Debug)]
pub struct TokenFs {
    pub info: TokenInfo,
    pub root: Ino,
    /// Usage as docs/FORMAT.md §7 defines it (`ledger.usage()`, kept here for readers):
    /// distinct stored objects (contents, manifests) plus versions not uploaded yet.
    pub usage: u64,
    /// What each loaded inode adds to `usage`.
    pub ledger: crate::fs::model::ledger::Ledger,
    pub files: u64,
    /// Set when a manifest could not be read: the token is served read-only.
    pub read_only: bool,
    /// Directories whose manifests the next commit rewrites.
    pub dirty_dirs: HashSet<Ino>,
    /// Closed versions not yet on the node.
    pub pending_uploads: u64,
    pub committed: CommittedState,
    /// Shared with writers that write its queued ops after the tree lock is dropped.
    pub journal: std::sync::Arc<Journal>,
    /// CIDs no longer referenced by the tree, to unpin after the next commit.
    pub superseded: Vec<String>,
    /// Versions in the tree whose last adds the node has not answered yet, by file (one
    /// at most each): a commit holding them publishes once they are stored.
    pub unstored: HashMap<Ino, Unstored>,
    pub staging_dir: PathBuf,
    pub last_upload: Option<LastUpload>,
    /// Directories whose manifests have not been loaded yet.
    pub unloaded_dirs: u64,
    /// Journal replay at mount: ops are already journaled and were allowed when made.
    pub replaying: bool,
    /// When this mount last committed a root (for `pxfs status`).
    pub last_commit: Option<std::time::SystemTime>,
    /// PX.sol: the contract's own count of the token's usage and bandwidth
    /// ([`Allowance::floor`], [`Allowance::no_bandwidth`]); default for pxfs's contract.
    pub chain_gate: ChainGate,
    /// The last commit is published but `state.json` could not be written (local fault):
    /// retried by the committer, and the journal is trimmed once it is.
    pub state_unsaved: bool,
    /// Some directory was read from a format v1 manifest: the next commit rewrites the
    /// whole tree as v2 (docs/FORMAT.md §10).
    pub v1_tree: bool,
    /// The committed link groups (docs/FORMAT.md §4.4) by id, and the inode each became
    /// once one of its names was loaded.
    pub groups: HashMap<u64, GroupSlot>,
    /// Loading every directory (a v1 upgrade, or a link group met): no second full load.
    pub loading_all: bool,
    /// What this mount's last commit added to the node (`user.pxfs.last_commit`).
    pub last_commit_added: crate::fs::data::pages::Added,
    /// The committed tree's usage without history (what the last commit's tree counted;
    /// at mount the published figure): a replaced version's size in the history table.
    pub tree_usage: u64,
    /// Plaintext, or the keys that seal this tree (its `encryption` is in `committed`).
    pub sealing: crate::fs::data::content::Sealing,
    /// Another writer's document merged into the tree, until the merge commit is published
    /// (`fs::persist::merge`).
    pub merged_onto: Option<Onto>,
    /// Conflict copies the merges of this mount made (`pxfs status`).
    pub conflicts: u64,
    /// The document the BTNS name showed when last resolved before a commit (`None`:
    /// none): what the commit's publication replaces (docs/FORMAT.md §9.3).
    pub record_seen: Option<String>,
    /// The last document this mount published that the node checked (it replaced exactly
    /// the record resolved): it holds at once, without the settle window.
    pub checked_doc: Option<String>,
    /// The journal ops covered by a document of this mount that held (docs/FORMAT.md
    /// §9.3): an fsync of a later op waits until the commit covering it holds too.
    pub held_seq: u64,
    /// Objects the commits since the last held one superseded: unpinned once the
    /// document holds, kept pinned if another machine's publication replaced it (that one
    /// may use them).
    pub unpin_when_held: Vec<String>,
    /// The published graph's reference counts, which decide a commit's unpins in a tree
    /// not fully loaded (docs/FORMAT.md §15).
    pub graph: GraphCounts,
}

/// A token's published-graph counts (`fs::data::graph`) and what waits for them.
#[derive(Debug, Default)]
pub struct GraphCounts {
    /// The counts of the last published root they were moved to; `None` until a count
    /// finished (or after one failed to move).
    pub index: Option<Box<crate::fs::data::graph::GraphIndex>>,
    /// A count runs in the background.
    pub counting: bool,
    /// When a count or a move last failed (the next waits a while).
    pub failed_at: Option<std::time::Instant>,
    /// Objects commits superseded while no counts could say whether a directory not
    /// loaded still lists them: decided by the first commit that has counts. At most
    /// [`GraphCounts::MAX_UNDECIDED`] (beyond, kept pinned: safe, not economical).
    pub undecided: Vec<String>,
}

impl GraphCounts {
    pub const MAX_UNDECIDED: usize = 1 << 17;

    /// Whether the counted published root still lists `cid` (without counts: no).
    pub fn lists(&self, cid: &str) -> bool {
        self.index.as_ref().is_some_and(|ix| ix.holds(cid))
    }
}

/// A committed link group: its record, and its inode once a name of it is loaded.
#[derive(Debug, Clone)]
pub struct GroupSlot {
    pub nlink: u64,
    pub inode: crate::format::Inode,
    pub ino: Option<Ino>,
    /// The chunk table of a chunked file (docs/FORMAT.md §13), read with the root.
    pub table: Option<std::sync::Arc<crate::fs::store::ChunkTable>>,
}

impl GroupSlot {
    /// A committed link-group record as a slot (its inode made at its first loaded name),
    /// with its file's chunk table from `tables`; `None` for a kind this pxfs does not know.
    pub fn of_record(
        r: crate::format::InodeRecord,
        tables: &crate::fs::data::pages::ChunkTables,
    ) -> Option<(u64, GroupSlot)> {
        let crate::format::EntryKind::Inode(inode) = r.kind else {
            return None;
        };
        let table = match &inode.kind {
            crate::format::InodeKind::File {
                size,
                content: Some(crate::format::FileContent::Chunks(top)),
            } => tables.get(&(top.clone(), *size)).cloned(),
            _ => None,
        };
        let slot = GroupSlot {
            nlink: r.nlink,
            inode,
            ino: None,
            table,
        };
        Some((u64::from_be_bytes(r.id.0), slot))
    }
}

/// What a contract that counts usage itself (PX.sol) adds to the quota decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChainGate {
    /// On-chain usage: it only grows, so deleting gives no space back.
    pub floor: u64,
    /// The upload counter is at 0.
    pub no_bandwidth: bool,
}

impl TokenFs {
    /// Whether every commit of this mount is in a document that held (docs/FORMAT.md
    /// §9.3): nothing published waits to be checked.
    /// Whether the tree still uses `cid`: a loaded inode's charge holds it, or the
    /// published root the graph's counts are of lists it (docs/FORMAT.md §15).
    pub fn uses(&self, cid: &str) -> bool {
        self.ledger.holds(cid) || self.graph.lists(cid)
    }

    pub fn held(&self) -> bool {
        self.held_seq >= self.committed.journal_seq || self.committed.usage_doc.is_none()
    }

    pub fn allowance(&self) -> Allowance {
        Allowance {
            quota: self.info.quota,
            overdue: self.info.overdue,
            read_only: self.read_only,
            floor: self.chain_gate.floor,
            no_bandwidth: self.chain_gate.no_bandwidth,
        }
    }

    /// Something changed since the last commit.
    pub fn is_dirty(&self) -> bool {
        !self.dirty_dirs.is_empty()
    }
}

/// The published document a merge folded into the tree, until the merge commit is
/// published (then it is the commit's `prev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Onto {
    /// `None`: nothing was published before (a lost race over the first commit).
    pub doc: Option<String>,
    pub seq: u64,
    pub root: Option<String>,
    pub encryption: crate::format::usage::Encryption,
    /// This mount's previous document, whose changes are merged (the commit's `merged`).
    pub ours: Option<String>,
    /// At least the `seq` of `ours` (the merge commit's `seq` is above both parents').
    pub ours_seq: u64,
}
