//! History (FORMAT.md §14): the versions of a tree kept besides the current one, as a table
//! linked from the format-3 root, so "everything reachable from the root" (what usage
//! counts, what the oracle measures, what stays pinned) includes them. The table is paged
//! exactly like a directory (§5, `pxfs/history/3`), keyed by the version's commit time
//! (8 bytes big-endian); a record holds what a root holds of its tree — the sNFT
//! directory's attributes, the tops of its root directory and link-group table — never a
//! history of its own, so a pruned version is not kept alive through an older one.
//!
//! Which versions are kept is a pure function of commit times, a policy and the time now
//! ([`retention`]); a merge takes the union of both sides' versions, then the policy.

pub mod retention;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::canonical::to_json;
use super::chunks::{SMALL_TABLE_BYTES, SMALL_TABLE_ENTRIES};
use super::entry::{Attrs, WireAttrs, Xattr, attrs_from_wire, attrs_to_wire};
use super::envelope::{Indexer, Resolver};
use super::page::{Record, WireItem};
use super::root::RootV3;
use super::{FormatError, Result, SCHEMA_HISTORY};

pub use retention::{Policy, retain};

const NS: i64 = 1_000_000_000;

/// A retained version of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    at: [u8; 8],
    /// The sNFT directory's attributes then (`self`).
    pub attrs: Attrs,
    pub xattrs: Vec<Xattr>,
    /// The top of its root directory.
    pub dir: String,
    /// The top of its link-group table, if it had hard links.
    pub inodes: Option<String>,
    /// Its usage alone (§7 over this version's tree, history left out), as its writer
    /// computed it: what `pxfs history` shows as its size. Not trusted for accounting.
    pub usage: u64,
}

impl Version {
    /// A version committed at `t` (Unix nanoseconds, ≥ 0).
    pub fn new(
        t: i64,
        attrs: Attrs,
        xattrs: Vec<Xattr>,
        dir: String,
        inodes: Option<String>,
        usage: u64,
    ) -> Result<Version> {
        let t = u64::try_from(t)
            .map_err(|_| FormatError::invalid("a version's commit time is before 1970"))?;
        Ok(Version {
            at: t.to_be_bytes(),
            attrs,
            xattrs,
            dir,
            inodes,
            usage,
        })
    }

    /// The version a format-3 root is, once a later commit replaces it.
    pub fn of_root(root: &RootV3, usage: u64) -> Result<Version> {
        let r = &root.root;
        Version::new(
            root.t,
            r.attrs,
            r.xattrs.clone(),
            r.dir.clone(),
            r.inodes.clone(),
            usage,
        )
    }

    /// Commit time, Unix nanoseconds.
    pub fn t(&self) -> i64 {
        u64::from_be_bytes(self.at) as i64
    }

    /// Its name under `.snapshots/`.
    pub fn name(&self) -> String {
        snapshot_name(self.t())
    }

    /// Orders two records of the same time, so a merge picks one whichever side it is.
    fn tiebreak(&self) -> (String, Option<String>, Vec<u8>) {
        let wire = to_json(&self.to_wire(&Indexer::Zero));
        (self.dir.clone(), self.inodes.clone(), wire)
    }
}

/// A history record as written: `{"t":NS,"self":ATTRS,"dir":I,"inodes":J?,"usage":N}`.
#[doc(hidden)]
#[derive(Serialize, Deserialize)]
pub struct WireVersion {
    t: u64,
    #[serde(rename = "self")]
    attrs: WireAttrs,
    dir: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    inodes: Option<u64>,
    usage: u64,
}

impl Record for Version {
    const SCHEMA: &'static str = SCHEMA_HISTORY;
    type Wire = WireVersion;
    const SMALL_ENTRIES: usize = SMALL_TABLE_ENTRIES;
    const SMALL_BYTES: usize = SMALL_TABLE_BYTES;
    fn key(&self) -> &[u8] {
        &self.at
    }
    fn is_unknown(&self) -> bool {
        false
    }
    fn refs<'a>(&'a self, nodes: &mut Vec<&'a str>, _data: &mut Vec<&'a str>) {
        nodes.push(&self.dir);
        nodes.extend(self.inodes.as_deref());
    }
    fn to_wire(&self, ix: &Indexer) -> WireVersion {
        WireVersion {
            t: u64::from_be_bytes(self.at),
            attrs: attrs_to_wire(&self.attrs, &self.xattrs),
            dir: ix.node(&self.dir),
            inodes: self.inodes.as_deref().map(|c| ix.node(c)),
            usage: self.usage,
        }
    }
    fn from_wire(w: WireVersion, res: &mut Resolver) -> Result<Version> {
        let t = i64::try_from(w.t)
            .map_err(|_| FormatError::invalid(format!("version time {} is out of range", w.t)))?;
        let (attrs, xattrs) = attrs_from_wire(w.attrs)?;
        let dir = res.node(w.dir)?;
        let inodes = w.inodes.map(|i| res.node(i)).transpose()?;
        if inodes.as_ref() == Some(&dir) {
            return Err(FormatError::invalid(
                "a version's \"dir\" and \"inodes\" are the same node",
            ));
        }
        Version::new(t, attrs, xattrs, dir, inodes, w.usage)
    }
    fn key_to_item(key: &[u8], item: &mut WireItem) {
        item.set_first(hex::encode(key));
    }
    fn key_from_item(item: &mut WireItem) -> Result<Vec<u8>> {
        let first = item.take_first()?;
        super::keys::parse_hex16(&first)
            .filter(|k| k[0] < 0x80)
            .map(|k| k.to_vec())
            .ok_or_else(|| {
                FormatError::invalid(format!("history key {first:?} is not a commit time"))
            })
    }
}

/// The union of two histories (a merge, §14.4): every version of either side once; of two
/// different records with the same time (two machines committing in the same nanosecond),
/// the same one whichever side is `ours`.
pub fn union(ours: Vec<Version>, theirs: Vec<Version>) -> Vec<Version> {
    let mut by_t: BTreeMap<i64, Version> = BTreeMap::new();
    for v in ours.into_iter().chain(theirs) {
        match by_t.get(&v.t()) {
            Some(have) if have.tiebreak() >= v.tiebreak() => {}
            _ => {
                by_t.insert(v.t(), v);
            }
        }
    }
    by_t.into_values().collect()
}

/// The history a commit at `now` publishes (§14.3): the versions it had, plus the versions
/// the commit replaces (the previous root's; on a merge both sides' roots, with `history`
/// already the [`union`] of both sides'), kept as `policy` says with the new current
/// version, committed at `current`, taking part in "the latest of its hour/day/month".
/// Sorted by time.
pub fn next(
    history: Vec<Version>,
    replaced: Vec<Version>,
    current: i64,
    policy: &Policy,
    now: i64,
) -> Vec<Version> {
    let all = union(history, replaced);
    let times: Vec<i64> = all.iter().map(Version::t).collect();
    let kept: std::collections::HashSet<i64> =
        retain(&times, current, policy, now).into_iter().collect();
    all.into_iter().filter(|v| kept.contains(&v.t())).collect()
}

/// `.snapshots/<name>`: the commit time's UTC second in ISO 8601 basic form,
/// `yyyymmddThhmmssZ` (the form of conflict copies, §9.2; no `:` for tools that refuse it).
pub fn snapshot_name(t: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(t)
        .format(SNAPSHOT_NAME)
        .to_string()
}

const SNAPSHOT_NAME: &str = "%Y%m%dT%H%M%SZ";

/// The UTC second a snapshot name stands for (Unix seconds); `None` for any other name.
pub fn parse_snapshot_name(name: &str) -> Option<i64> {
    let secs = chrono::NaiveDateTime::parse_from_str(name, SNAPSHOT_NAME)
        .ok()?
        .and_utc()
        .timestamp();
    // Only the name a commit time gives: its exact form (no sign, other widths or leap
    // second), and a second that Unix nanoseconds in an i64 can hold.
    (snapshot_name(secs.checked_mul(NS)?) == name).then_some(secs)
}

#[cfg(test)]
mod tests;
