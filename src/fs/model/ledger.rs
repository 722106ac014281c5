//! A token's usage as docs/FORMAT.md §7 defines it, kept up to date under the core's lock:
//! every distinct object the tree stores (file contents and directory manifests, each CID
//! once however many names or inodes refer to it) plus the bytes of file versions not on the
//! node yet (open sessions, pending uploads), which count from the moment they are written.
//!
//! Each loaded inode holds one [`Charge`]: a reference to an object, or bytes of its own.
//! What the inodes of directories not loaded yet refer to is known only as a sum, the
//! committed figure the mount started from (`base`); loading a directory moves its objects
//! out of that sum into the ledger, so the figure does not move and a CID shared between a
//! loaded and a newly written file ends up counted once.

use std::collections::{HashMap, HashSet};

use crate::fs::model::inode::Ino;

/// What one inode adds to its token's usage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charge {
    /// Bytes of a version not on the node as a committed object (written, not uploaded).
    Own(u64),
    /// A stored object: a file's uploaded content or a directory's committed manifest.
    Object {
        cid: String,
        size: u64,
        manifest: bool,
    },
    /// A committed directory's objects (its pages; the sNFT root's root node too), each
    /// counted as a manifest object.
    Pages(std::sync::Arc<[(String, u64)]>),
    /// A chunked file version's objects (docs/FORMAT.md §13): its chunks (content) and
    /// its table's pages (`true`: counted as manifests), each once.
    Objects(std::sync::Arc<[(String, u64, bool)]>),
}

impl Charge {
    /// What a file's uploaded version `b` stores: one object, or a chunked version's
    /// chunks and table pages.
    pub fn of_blob(b: &crate::fs::store::Blob) -> Charge {
        match b.chunks {
            Some(_) => Charge::Objects(b.objects().into()),
            None => Charge::Object {
                cid: b.cid.clone(),
                size: crate::fs::data::content::stored_size(b),
                manifest: false,
            },
        }
    }

    /// The objects it refers to.
    fn cids(&self) -> Vec<&str> {
        match self {
            Charge::Own(_) => Vec::new(),
            Charge::Object { cid, .. } => vec![cid],
            Charge::Pages(pages) => pages.iter().map(|(c, _)| c.as_str()).collect(),
            Charge::Objects(objects) => objects.iter().map(|(c, _, _)| c.as_str()).collect(),
        }
    }
}

/// Usage split by what it is made of (for `pxfs status` and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UsageParts {
    /// Distinct file content objects, and versions not uploaded yet.
    pub content: u64,
    /// Distinct directory manifests.
    pub manifests: u64,
    /// Committed usage of directories not loaded yet (not yet attributed to objects).
    pub unloaded: u64,
    /// What history keeps besides the tree (docs/FORMAT.md §14.5): the kept versions' own
    /// objects as the last commit counted them, and what the tree released since. Negative
    /// while `unloaded` still holds some of it (the committed figure a mount starts from
    /// counts history too).
    pub history: i64,
}

impl UsageParts {
    pub fn total(&self) -> u64 {
        let tree = self
            .content
            .saturating_add(self.manifests)
            .saturating_add(self.unloaded);
        u64::try_from((tree as i128 + self.history as i128).max(0)).unwrap_or(u64::MAX)
    }
}

#[derive(Debug, Clone)]
struct Object {
    refs: u64,
    size: u64,
    manifest: bool,
    /// Its bytes were taken out of `base` when a directory holding it was loaded: it is
    /// part of the committed tree. Kept (with `refs` 0) after the last loaded reference
    /// goes, so loading another directory that refers to it counts it again, not twice.
    from_base: bool,
    /// References of unloaded inodes (`fs::model::unload`): while there are any, the last
    /// loaded reference going returns it to `base` rather than taking it out of usage.
    /// Given back when the directory that dropped them is read again.
    parked: u32,
    /// A directory page only unloaded inodes refer to, counted in `base` again (kept so a
    /// new directory stored as the same page, e.g. an empty one, is not counted twice).
    in_base: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Ledger {
    base: u64,
    own: u64,
    content: u64,
    manifests: u64,
    objects: HashMap<String, Object>,
    charges: HashMap<Ino, Charge>,
    /// What unloading a directory dropped (its pages and its entries' objects, with
    /// repeats), by the directory's top CID: a directory read again from that top gets
    /// exactly these references back. A function of the top (a clean directory is unloaded
    /// as committed), so two directories stored alike share a key and either list serves.
    unloaded: HashMap<String, Vec<Vec<String>>>,
    /// Keep counting what the tree releases (history is on): the committed versions of
    /// what is deleted or rewritten stay on the node while history keeps them.
    keeps_released: bool,
    /// Objects no loaded inode refers to any more since the last commit's snapshot, with
    /// their sizes (`keeps_released`): counted until the next commit counts the graph.
    released: HashMap<String, u64>,
    released_bytes: u64,
    /// History's share beyond the tree, as the last commit counted it (see
    /// `UsageParts::history`).
    history: i64,
}

/// What the tree released between two commits, taken by a commit's snapshot (and given
/// back if the commit fails).
#[derive(Debug, Default)]
pub struct Released(HashMap<String, u64>);

/// The usage a commit publishes: what is counted without the manifests it rewrites, and
/// which objects are already counted (a new manifest equal to one of them is not counted
/// again).
#[derive(Debug, Clone, Default)]
pub struct CommittedUsage {
    without_rewritten: u64,
    counted: HashSet<String>,
}

impl CommittedUsage {
    /// The figure once the rewritten directories have the manifests `written` (CID, bytes).
    pub fn with_manifests<'a>(&self, written: impl IntoIterator<Item = &'a (String, u64)>) -> u64 {
        let mut seen = HashSet::new();
        let mut usage = self.without_rewritten;
        for (cid, size) in written {
            if !self.counted.contains(cid) && seen.insert(cid) {
                usage = usage.saturating_add(*size);
            }
        }
        usage
    }
}

impl Ledger {
    /// A token whose committed tree stores `committed` bytes, nothing of it loaded yet.
    pub fn new(committed: u64) -> Ledger {
        Ledger {
            base: committed,
            ..Ledger::default()
        }
    }

    /// Whether a loaded inode's charge holds the object `cid`.
    pub fn holds(&self, cid: &str) -> bool {
        self.objects.get(cid).is_some_and(|o| o.refs > 0)
    }

    pub fn usage(&self) -> u64 {
        self.parts().total()
    }

    pub fn parts(&self) -> UsageParts {
        UsageParts {
            content: self.content.saturating_add(self.own),
            manifests: self.manifests,
            unloaded: self.base,
            history: self
                .history
                .saturating_add(i64::try_from(self.released_bytes).unwrap_or(i64::MAX)),
        }
    }

    /// History is on (or off): objects the tree releases keep counting until a commit
    /// counts the graph they are in.
    pub fn keep_released(&mut self, on: bool) {
        self.keeps_released = on;
        if !on {
            self.released.clear();
            self.released_bytes = 0;
        }
    }

    /// What was released since the last snapshot: from now on the commit's count covers it.
    pub fn take_released(&mut self) -> Released {
        self.released_bytes = 0;
        Released(std::mem::take(&mut self.released))
    }

    /// A commit that took `r` failed: they count again (unless held again meanwhile).
    pub fn give_back_released(&mut self, r: Released) {
        if !self.keeps_released {
            return;
        }
        for (cid, size) in r.0 {
            if self.objects.get(&cid).is_some_and(|o| o.refs > 0) {
                continue;
            }
            if self.released.insert(cid, size).is_none() {
                self.released_bytes = self.released_bytes.saturating_add(size);
            }
        }
    }

    /// What the last counted commit found beyond the tree (see `UsageParts::history`).
    pub fn history_share(&self) -> i64 {
        self.history
    }

    /// A commit counted the whole published graph (`published`, docs/FORMAT.md §14.5)
    /// while the tree it wrote counted `tree`: history's share is the difference.
    pub fn counted(&mut self, published: u64, tree: u64) {
        self.history =
            (published as i128 - tree as i128).clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    }

    /// Give `ino` the charge `charge` (`None`: it counts for nothing). `loaded`: the inode
    /// comes from a committed manifest just loaded, so its object is already in `base`.
    pub fn set(&mut self, ino: Ino, charge: Option<Charge>, loaded: bool) {
        let current = self.charges.get(&ino);
        if current == charge.as_ref() && !loaded {
            return;
        }
        if let (
            Some(Charge::Object { cid: a, size, .. }),
            Some(Charge::Object {
                cid: b, size: new, ..
            }),
        ) = (current, &charge)
            && a == b
        {
            // The same object with its size now known (a manifest read at load).
            let (old, new, cid) = (*size, *new, a.clone());
            if old != new {
                self.resize(&cid, old, new);
                self.charges.insert(ino, charge.unwrap_or(Charge::Own(0)));
            }
            return;
        }
        if let Some(old) = self.charges.remove(&ino) {
            self.release(old);
        }
        if let Some(new) = charge {
            self.hold(&new, loaded);
            self.charges.insert(ino, new);
        }
    }

    fn sum_mut(&mut self, manifest: bool) -> &mut u64 {
        if manifest {
            &mut self.manifests
        } else {
            &mut self.content
        }
    }

    fn resize(&mut self, cid: &str, old: u64, new: u64) {
        let Some(o) = self.objects.get_mut(cid) else {
            return;
        };
        if o.size != old {
            return;
        }
        o.size = new;
        let (refs, manifest) = (o.refs, o.manifest);
        if refs > 0 {
            let sum = self.sum_mut(manifest);
            *sum = sum.saturating_sub(old).saturating_add(new);
        }
    }

    fn hold(&mut self, charge: &Charge, loaded: bool) {
        let (cid, size, manifest) = match charge {
            Charge::Own(n) => {
                self.own = self.own.saturating_add(*n);
                return;
            }
            Charge::Object {
                cid,
                size,
                manifest,
            } => (cid, *size, *manifest),
            Charge::Pages(pages) => {
                for (cid, size) in pages.iter() {
                    self.hold_object(cid, *size, true, loaded);
                }
                return;
            }
            Charge::Objects(objects) => {
                for (cid, size, manifest) in objects.iter() {
                    self.hold_object(cid, *size, *manifest, loaded);
                }
                return;
            }
        };
        self.hold_object(cid, size, manifest, loaded);
    }

    fn hold_object(&mut self, cid: &str, size: u64, manifest: bool, loaded: bool) {
        let o = self.objects.entry(cid.to_owned()).or_insert(Object {
            refs: 0,
            size,
            manifest,
            from_base: false,
            parked: 0,
            in_base: false,
        });
        let mut take_from_base = false;
        if o.in_base {
            // Counted in `base` for the unloaded inodes referring to it (`parked` of them,
            // those read back given back already): it moves into the ledger.
            o.in_base = false;
            o.from_base = true;
            take_from_base = true;
        } else if loaded && !o.from_base {
            // The committed figure counts it once: that share moves into the ledger.
            o.from_base = true;
            take_from_base = true;
        }
        o.refs += 1;
        let first = o.refs == 1;
        let (size, manifest) = (o.size, o.manifest);
        if take_from_base {
            self.base = self.base.saturating_sub(size);
        }
        if first {
            let sum = self.sum_mut(manifest);
            *sum = sum.saturating_add(size);
            if let Some(n) = self.released.remove(cid) {
                self.released_bytes = self.released_bytes.saturating_sub(n);
            }
        }
    }

    fn release(&mut self, charge: Charge) {
        if let Charge::Own(n) = charge {
            self.own = self.own.saturating_sub(n);
            return;
        }
        for cid in charge.cids() {
            self.release_object(cid);
        }
    }

    fn release_object(&mut self, cid: &str) {
        let Some(o) = self.objects.get_mut(cid) else {
            return;
        };
        o.refs = o.refs.saturating_sub(1);
        if o.refs > 0 {
            return;
        }
        if o.parked > 0 {
            self.return_to_base(cid);
            return;
        }
        let (size, manifest, keep) = (o.size, o.manifest, o.from_base);
        if !keep {
            self.objects.remove(cid);
        }
        let sum = self.sum_mut(manifest);
        *sum = sum.saturating_sub(size);
        if self.keeps_released && self.released.insert(cid.to_owned(), size).is_none() {
            self.released_bytes = self.released_bytes.saturating_add(size);
        }
    }

    /// An object no loaded inode refers to any more, but unloaded ones do: counted in
    /// `base` again. A page stays known (see `Object::in_base`); file contents are
    /// forgotten (memory stays bounded by what is loaded).
    fn return_to_base(&mut self, cid: &str) {
        let Some(o) = self.objects.get_mut(cid) else {
            return;
        };
        let (size, manifest) = (o.size, o.manifest);
        if manifest {
            *o = Object {
                refs: 0,
                size,
                manifest,
                from_base: false,
                parked: o.parked,
                in_base: true,
            };
        } else {
            self.objects.remove(cid);
        }
        self.base = self.base.saturating_add(size);
        let sum = self.sum_mut(manifest);
        *sum = sum.saturating_sub(size);
    }

    /// `ino` is dropped from memory with its directory's entries (`fs::model::unload`): it is
    /// part of the committed tree as it was, so what it refers to returns to the committed
    /// figure of what is not loaded (`base`), or stays counted while loaded inodes share
    /// it. Usage does not change.
    pub fn unload(&mut self, ino: Ino) {
        self.unload_all(None, &[ino]);
    }

    /// The directory whose top is `top` drops its entries `inos` (and its own charge, `inos`
    /// holding it too): each as [`Ledger::unload`], and the references dropped are kept for
    /// the directory's next read ([`Ledger::reading`]).
    pub fn unload_dir(&mut self, top: &str, inos: &[Ino]) {
        self.unload_all(Some(top), inos);
    }

    fn unload_all(&mut self, top: Option<&str>, inos: &[Ino]) {
        let mut dropped = Vec::new();
        for ino in inos {
            let cids: Vec<String> = match self.charges.remove(ino) {
                None => continue,
                Some(Charge::Own(n)) => {
                    self.own = self.own.saturating_sub(n);
                    continue;
                }
                Some(charge) => charge.cids().into_iter().map(str::to_owned).collect(),
            };
            for cid in cids {
                let Some(o) = self.objects.get_mut(&cid) else {
                    continue;
                };
                o.refs = o.refs.saturating_sub(1);
                o.parked = o.parked.saturating_add(1);
                o.from_base = true;
                let last = o.refs == 0;
                // Kept for the next read only while the ledger still knows the object: a
                // file's content the last reference left is forgotten here, and giving
                // back its parked reference would find nothing. Keeping every entry's CID
                // held memory in proportion to every file ever unloaded (about 150 MB more
                // by the 500,000th file of a 1,000,000-file copy).
                let known = !last || o.manifest;
                if last {
                    self.return_to_base(&cid);
                }
                if known {
                    dropped.push(cid);
                }
            }
        }
        if let Some(top) = top
            && !dropped.is_empty()
        {
            self.unloaded
                .entry(top.to_owned())
                .or_default()
                .push(dropped);
        }
    }

    /// A directory stored as `top` is read: the references an unload of such a directory
    /// dropped come back as loaded ones (set right after), so they are no longer parked.
    pub fn reading(&mut self, top: &str) {
        let Some(lists) = self.unloaded.get_mut(top) else {
            return;
        };
        let dropped = lists.pop().unwrap_or_default();
        if lists.is_empty() {
            self.unloaded.remove(top);
        }
        for cid in dropped {
            if let Some(o) = self.objects.get_mut(&cid) {
                o.parked = o.parked.saturating_sub(1);
            }
        }
    }

    /// What a commit that rewrites the manifests of `rewritten` publishes, given the
    /// committed version (`blobs`: CID and size) of each file holding bytes of its own.
    /// Versions not uploaded do not count: the manifests do not refer to them.
    pub fn committed(
        &self,
        rewritten: &[Ino],
        blobs: impl Fn(Ino) -> Vec<(String, u64)>,
    ) -> CommittedUsage {
        let mut drop: HashMap<&str, u64> = HashMap::new();
        for ino in rewritten {
            for cid in self.charges.get(ino).map(Charge::cids).unwrap_or_default() {
                *drop.entry(cid).or_default() += 1;
            }
        }
        let mut usage = self
            .base
            .saturating_add(self.content)
            .saturating_add(self.manifests);
        let mut counted = HashSet::new();
        for (cid, o) in &self.objects {
            let left = o
                .refs
                .saturating_sub(drop.get(cid.as_str()).copied().unwrap_or(0));
            // Still used: by loaded inodes the commit does not rewrite, or by unloaded ones
            // (counted in `base` already, or about to be: `parked` references return it
            // there when the last loaded one goes).
            if left > 0 || o.in_base || o.parked > 0 {
                counted.insert(cid.clone());
            } else if o.refs > 0 {
                usage = usage.saturating_sub(o.size);
            }
        }
        for (ino, charge) in &self.charges {
            if let Charge::Own(_) = charge {
                for (cid, size) in blobs(*ino) {
                    if counted.insert(cid) {
                        usage = usage.saturating_add(size);
                    }
                }
            }
        }
        CommittedUsage {
            without_rewritten: usage,
            counted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(cid: &str, size: u64) -> Option<Charge> {
        Some(Charge::Object {
            cid: cid.into(),
            size,
            manifest: false,
        })
    }

    #[test]
    fn an_object_referred_to_by_two_inodes_counts_once() {
        let mut l = Ledger::new(0);
        l.set(1, obj("a", 10), false);
        l.set(2, obj("a", 10), false);
        assert_eq!(l.usage(), 10);
        l.set(1, None, false);
        assert_eq!(l.usage(), 10);
        l.set(2, Some(Charge::Own(4)), false);
        assert_eq!(l.usage(), 4);
    }

    #[test]
    fn loading_moves_committed_bytes_into_the_ledger_without_counting_twice() {
        // Committed: objects a (10) and b (5). A new file has content a too.
        let mut l = Ledger::new(15);
        l.set(1, obj("a", 10), false);
        assert_eq!(l.usage(), 25, "not known to be shared until loaded");
        l.set(2, obj("a", 10), true);
        l.set(3, obj("b", 5), true);
        assert_eq!(l.usage(), 15);
        assert_eq!(l.parts().unloaded, 0);
        // A directory loaded later refers to a again: still once.
        l.set(4, obj("a", 10), true);
        assert_eq!(l.usage(), 15);
        // All of a's loaded references go, then another loaded directory refers to it.
        for ino in [1, 2, 4] {
            l.set(ino, None, false);
        }
        assert_eq!(l.usage(), 5);
        l.set(5, obj("a", 10), true);
        assert_eq!(l.usage(), 15);
    }

    #[test]
    fn a_commit_counts_committed_versions_and_new_manifests_once() {
        let mut l = Ledger::new(0);
        l.set(1, obj("a", 10), false);
        l.set(2, Some(Charge::Own(7)), false); // open session over committed b (3)
        l.set(
            10,
            Some(Charge::Object {
                cid: "m".into(),
                size: 30,
                manifest: true,
            }),
            false,
        );
        assert_eq!(l.usage(), 47);
        let c = l.committed(&[10], |ino| {
            (ino == 2)
                .then(|| ("b".to_string(), 3))
                .into_iter()
                .collect()
        });
        let m1 = ("m1".to_string(), 40);
        let m2 = ("m1".to_string(), 40);
        assert_eq!(c.with_manifests([&m1, &m2]), 10 + 3 + 40);
        assert_eq!(c.with_manifests([&("a".to_string(), 10)]), 13);
    }

    #[test]
    fn an_unloaded_directory_keeps_only_what_the_ledger_still_knows() {
        // A directory page (manifest), two files of their own and one file sharing its
        // content with a loaded file elsewhere.
        let page = Some(Charge::Object {
            cid: "page".into(),
            size: 80,
            manifest: true,
        });
        let mut l = Ledger::new(0);
        l.set(1, page.clone(), true);
        l.set(2, obj("a", 10), true);
        l.set(3, obj("b", 20), true);
        l.set(4, obj("shared", 5), true);
        l.set(9, obj("shared", 5), true);
        assert_eq!(l.usage(), 115);
        l.unload_dir("top", &[1, 2, 3, 4]);
        assert_eq!(l.usage(), 115, "unloading changes no usage");
        // The files' own contents are forgotten, so nothing of theirs is kept for the
        // directory's next read: memory stays bounded by what is loaded.
        let kept: Vec<&str> = l.unloaded["top"]
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(kept, ["page", "shared"]);
        // Read back: the references come back as loaded ones, counted once.
        l.reading("top");
        assert!(l.unloaded.is_empty());
        l.set(1, page, true);
        l.set(2, obj("a", 10), true);
        l.set(3, obj("b", 20), true);
        l.set(4, obj("shared", 5), true);
        assert_eq!(l.usage(), 115);
        l.set(9, None, false);
        assert_eq!(
            l.usage(),
            115,
            "still referred to by the directory read back"
        );
    }
}
