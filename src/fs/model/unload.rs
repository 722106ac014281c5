//! Bounded memory for the tree: once more inodes are loaded than `[cache] max_loaded_inodes`
//! allows, the entries of directories least recently used are dropped, leaving each such
//! directory "not loaded" (as at mount), so the next lookup or readdir reads it again from
//! its pages. Only what the committed tree holds exactly as it is in memory is dropped:
//! a directory is unloaded only when it is committed and clean, has no open handle, and
//! none of its entries is known to the kernel (FUSE lookup count), open, changed since the
//! last commit, waiting for upload, a member of a link group, or a loaded non-empty
//! directory (so directories unload from the leaves up). The directory itself may still be
//! known to the kernel: it stays in memory, without its entries.
//!
//! The kernel keeps what it looked up until its memory gets short. So a directory that
//! only the kernel's references keep loaded has those entries named to the kernel
//! ([`Trimmed::forget`], sent through the FUSE notifier by [`Fs::trim_tree`]); once the
//! kernel has let go (FUSE `forget`), a later pass unloads it.
//!
//! An entry read again gets a new inode number: numbers are never reused in a mount, so
//! the kernel never sees one number for two files (it holds no number that is dropped).
//! What the dropped entries stored moves back into the token's "not loaded" committed
//! usage figure (see `ledger`), so usage does not change.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use crate::fs::Fs;
use crate::fs::model::inode::{Body, Ino, ROOT_INO};
use crate::fs::model::tree::Tree;

/// A pass examines at most this many directories (it runs under the tree lock).
const SCAN_PER_PASS: usize = 256;

/// A directory touched by one of the last this-many loads, lookups and listings is not
/// unloaded: a request that has just loaded a directory finds it still loaded when it takes
/// the lock again (and one that does not, because others touched as many meanwhile, loads
/// it again: `RELOAD_ATTEMPTS`). A count, not a time: a time window would let a fast walk
/// keep as many directories as it can load in that window.
const RECENT_TOUCHES: u64 = 8;

/// How long a directory whose entries the kernel was asked to forget waits for the kernel
/// before a pass asks again or moves on to others (the kernel keeps what is in use: a
/// working directory, an open file).
const FORGET_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The kernel is asked to forget the entries of directories of at most 1/this of the limit:
/// a directory near the limit's size would be read again whole at its next use, and again
/// (the kernel keeps such a directory's entries until its own memory gets short).
const ASK_KERNEL_FRACTION: usize = 2;

/// Loaded directories in order of last use (load, lookup in it, listing).
#[derive(Debug, Default)]
pub struct Residency {
    clock: u64,
    tick: HashMap<Ino, u64>,
    order: BTreeMap<u64, Ino>,
    /// Directories whose entries the kernel was asked to forget, and when.
    asked: HashMap<Ino, Instant>,
    /// Directories not loaded holding names looked up alone (`DirBody::found`): those
    /// inodes leave memory only when the kernel forgets them.
    found_in: HashSet<Ino>,
}

impl Residency {
    pub fn touch(&mut self, dir: Ino) {
        self.clock += 1;
        if let Some(old) = self.tick.insert(dir, self.clock) {
            self.order.remove(&old);
        }
        self.order.insert(self.clock, dir);
    }

    pub fn remove(&mut self, dir: Ino) {
        if let Some(t) = self.tick.remove(&dir) {
            self.order.remove(&t);
        }
        self.asked.remove(&dir);
        self.found_in.remove(&dir);
    }

    /// `dir`, not loaded, holds names looked up alone (`held`) or no longer does.
    pub fn holds_found(&mut self, dir: Ino, held: bool) {
        if held {
            self.found_in.insert(dir);
        } else {
            self.found_in.remove(&dir);
        }
    }

    /// Up to `n` directories, least recently used first, not among the most recent (all of
    /// them with `n` = `usize::MAX`).
    fn oldest(&self, n: usize) -> Vec<Ino> {
        if n == usize::MAX {
            return self.order.values().copied().collect();
        }
        let recent = self.clock.saturating_sub(RECENT_TOUCHES);
        self.order
            .range(..=recent)
            .take(n)
            .map(|(_, d)| *d)
            .collect()
    }
}

/// What one pass dropped, and what it asks the kernel to forget.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Trimmed {
    pub dirs: usize,
    pub inodes: usize,
    /// Entries (directory, name) the kernel still holds in directories that could be
    /// unloaded otherwise: once the kernel forgets them, a later pass unloads those.
    pub forget: Vec<(Ino, Vec<u8>)>,
}

impl Fs {
    /// Unload directories if more inodes are loaded than the configuration allows. Skipped
    /// while a commit runs (it reads the tree between its lock holds), not while the graph
    /// count holds the commit lock to decide and unpin (it reads the tree in one hold): a
    /// walk of the tree meanwhile would load past the limit.
    pub(crate) fn trim_tree(&self) {
        let limit = self.config().max_loaded_inodes;
        if self.tree().inodes.len() <= limit {
            return;
        }
        let invalidate = self.invalidator();
        let (mut done, left) = {
            let mut tree = self.tree();
            if self
                .inner
                .committing
                .load(std::sync::atomic::Ordering::SeqCst)
            {
                return;
            }
            let done = tree.trim(limit, invalidate.is_some());
            (done, tree.inodes.len())
        };
        if done.inodes > 0 {
            return_freed_memory();
        }
        if done.dirs > 0 || !done.forget.is_empty() {
            tracing::debug!(
                dirs = done.dirs,
                inodes = done.inodes,
                loaded = left,
                limit,
                asked_to_forget = done.forget.len(),
                "unloaded directories least recently used"
            );
        }
        // The kernel keeps what it looked up until memory gets short; without asking it, a
        // long copy on a machine with memory to spare would keep every file it wrote loaded.
        // Off this task and the lock: a notification waits for the directory's lock in the
        // kernel, which a request waiting on this daemon may hold.
        if let Some(f) = invalidate
            && !done.forget.is_empty()
        {
            let forget = std::mem::take(&mut done.forget);
            self.inner.rt.spawn_blocking(move || {
                for (dir, name) in &forget {
                    f(*dir, name);
                }
            });
        }
    }

    /// Inodes in memory now (for `pxfs status` and tests).
    pub fn loaded_inodes(&self) -> usize {
        self.tree().inodes.len()
    }

    /// What the kernel does under memory pressure, then a pass with no limit: every
    /// reference the kernel holds is dropped (open handles stay), and every directory that
    /// can be is unloaded, leaves first. Returns how many inodes went. For tests.
    pub fn forget_all_and_unload(&self) -> usize {
        let Ok(_no_commit) = self.inner.commit_lock.try_lock() else {
            return 0;
        };
        let mut tree = self.tree();
        for ino in tree.remembered() {
            tree.forget(ino, u64::MAX);
        }
        let mut gone = 0;
        loop {
            let dirs: Vec<Ino> = tree.residency.oldest(usize::MAX);
            let before = gone;
            for dir in dirs {
                gone += tree.unload_dir(dir).unwrap_or(0);
            }
            if gone == before {
                return gone;
            }
        }
    }

    /// Unload `dir` now if nothing holds its entries (what a pass does to the directories
    /// least recently used); true if it did. Not while a commit runs.
    pub fn unload_dir(&self, dir: Ino) -> bool {
        let Ok(_no_commit) = self.inner.commit_lock.try_lock() else {
            return false;
        };
        self.tree().unload_dir(dir).is_some()
    }
}

/// Hands the pages that unloading freed back to the system (glibc keeps freed memory in its
/// heaps otherwise, so the daemon's RSS would stay at its peak): at most every few seconds,
/// since it walks the heaps.
fn return_freed_memory() {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST.load(Ordering::Relaxed);
    if now < last + 5
        || LAST
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of glibc's heaps to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

impl Tree {
    /// If more than `limit` inodes are loaded, unload least recently used directories
    /// until at most 7/8 of `limit` are (or a pass has examined [`SCAN_PER_PASS`]).
    /// With `ask_kernel`, directories held only by the kernel's references to their
    /// entries have those entries listed in [`Trimmed::forget`] (as many as the excess),
    /// so that a later pass can unload them. Pure memory work: the caller holds the lock
    /// for it, never across I/O.
    pub fn trim(&mut self, limit: usize, ask_kernel: bool) -> Trimmed {
        let mut done = Trimmed::default();
        if self.inodes.len() <= limit {
            return done;
        }
        let target = limit - limit / 8;
        let mut to_ask = self.inodes.len() - target;
        for dir in self.residency.oldest(SCAN_PER_PASS) {
            if self.inodes.len() <= target {
                break;
            }
            if let Some(n) = self.unload_dir(dir) {
                done.dirs += 1;
                done.inodes += n;
                continue;
            }
            if !self.inodes.contains_key(&dir) {
                self.residency.remove(dir);
                continue;
            }
            let asked = self.residency.asked.get(&dir).copied();
            if asked.is_some_and(|at| at.elapsed() < FORGET_WAIT) {
                // Asked lately: the kernel's forgets are on their way.
                continue;
            }
            self.residency.asked.remove(&dir);
            if ask_kernel
                && to_ask > 0
                && asked.is_none()
                && self.entry_count(dir) <= limit / ASK_KERNEL_FRACTION
                && self.unloadable(dir, true)
            {
                let names = self.kernel_held(dir);
                to_ask = to_ask.saturating_sub(names.len());
                done.forget
                    .extend(names.into_iter().map(|name| (dir, name)));
                self.residency.asked.insert(dir, Instant::now());
                continue;
            }
            // In use: looked at again after the others.
            self.residency.touch(dir);
        }
        if ask_kernel && to_ask > 0 && self.inodes.len() > target {
            self.ask_to_forget_found(to_ask, &mut done);
        }
        done
    }

    /// Lists in [`Trimmed::forget`] up to `to_ask` names looked up alone that the kernel
    /// holds (each directory at most every [`FORGET_WAIT`]): nothing else holds them, so
    /// once the kernel forgets them they leave memory (`Tree::forget`).
    fn ask_to_forget_found(&mut self, mut to_ask: usize, done: &mut Trimmed) {
        let dirs: Vec<Ino> = self.residency.found_in.iter().copied().collect();
        for dir in dirs {
            if to_ask == 0 {
                break;
            }
            let asked = self.residency.asked.get(&dir);
            if asked.is_some_and(|at| at.elapsed() < FORGET_WAIT) {
                continue;
            }
            let Some(Body::Dir(d)) = self.inodes.get(&dir).map(|i| &i.body) else {
                self.residency.found_in.remove(&dir);
                continue;
            };
            let names: Vec<Vec<u8>> = d
                .found
                .iter()
                .filter(|(_, ino)| self.is_remembered(**ino))
                .map(|(name, _)| name.as_bytes().to_vec())
                .take(to_ask)
                .collect();
            to_ask -= names.len();
            done.forget
                .extend(names.into_iter().map(|name| (dir, name)));
            self.residency.asked.insert(dir, Instant::now());
        }
    }

    /// How many entries `dir` has loaded.
    fn entry_count(&self, dir: Ino) -> usize {
        match self.inodes.get(&dir).map(|i| &i.body) {
            Some(Body::Dir(d)) => d.entries.as_ref().map_or(0, |e| e.len()),
            _ => 0,
        }
    }

    /// The names in `dir` whose inodes the kernel holds.
    fn kernel_held(&self, dir: Ino) -> Vec<Vec<u8>> {
        let Some(Body::Dir(d)) = self.inodes.get(&dir).map(|i| &i.body) else {
            return Vec::new();
        };
        let Some(entries) = &d.entries else {
            return Vec::new();
        };
        entries
            .iter()
            .filter(|(_, child)| self.is_remembered(*child))
            .map(|(name, _)| name.as_bytes().to_vec())
            .collect()
    }

    /// Drop `dir`'s entries if nothing holds them (see the module docs); returns how many
    /// inodes went.
    pub fn unload_dir(&mut self, dir: Ino) -> Option<usize> {
        if !self.unloadable(dir, false) {
            return None;
        }
        // A kept version's directory (`.snapshots/`) holds no charge of any token.
        let token = self.inodes.get(&dir)?.token;
        let d = self.inodes.get_mut(&dir)?.dir_mut()?;
        let top = d.top.clone();
        let entries = d.entries.take()?;
        // Read again with its entries, it is charged again (as at its first load).
        d.objects = None;
        let mut unloaded_children = 0;
        let mut gone = Vec::with_capacity(entries.len() + 1);
        gone.push(dir);
        for (_, child) in entries.iter() {
            if let Some(inode) = self.inodes.remove(&child)
                && let Body::Dir(c) = &inode.body
            {
                self.residency.remove(child);
                if c.entries.is_none() {
                    unloaded_children += 1;
                }
            }
            gone.push(child);
        }
        self.residency.remove(dir);
        let Some(t) = token.and_then(|t| self.tokens.get_mut(&t)) else {
            return Some(gone.len() - 1);
        };
        match &top {
            // Read again from that top, the directory gets these references back.
            Some(top) => t.ledger.unload_dir(top, &gone),
            None => gone.iter().for_each(|ino| t.ledger.unload(*ino)),
        }
        t.usage = t.ledger.usage();
        t.unloaded_dirs = (t.unloaded_dirs + 1).saturating_sub(unloaded_children);
        Some(gone.len() - 1)
    }

    /// Whether nothing holds `dir`'s entries (see the module docs), the kernel's references
    /// not counted with `but_kernel` (then: whether it could be unloaded once the kernel
    /// forgot them).
    fn unloadable(&self, dir: Ino, but_kernel: bool) -> bool {
        if dir == ROOT_INO || self.is_token_root(dir) {
            return false;
        }
        let Some(inode) = self.inodes.get(&dir) else {
            return false;
        };
        match inode.token.and_then(|t| self.tokens.get(&t)) {
            Some(t) => {
                if t.replaying
                    || t.loading_all
                    || t.v1_tree
                    || t.read_only
                    || t.dirty_dirs.contains(&dir)
                {
                    return false;
                }
            }
            // A kept version's directory (`.snapshots/`): never changed.
            None if inode.snapshot_of.is_some() => {}
            None => return false,
        }
        let Some(d) = inode.dir() else { return false };
        if inode.open_handles > 0 || d.dirty || d.top.is_none() || d.objects.is_none() {
            return false;
        }
        let Some(entries) = &d.entries else {
            return false;
        };
        entries
            .iter()
            .all(|(_, child)| self.droppable(child, but_kernel))
    }

    /// Whether `ino` is as the committed tree stores it and nothing refers to it but its
    /// directory's entry (and the kernel, with `but_kernel`).
    fn droppable(&self, ino: Ino, but_kernel: bool) -> bool {
        let Some(i) = self.inodes.get(&ino) else {
            return false;
        };
        if (!but_kernel && self.is_remembered(ino))
            || i.open_handles > 0
            || i.group.is_some()
            || i.links.len() != 1
        {
            return false;
        }
        match &i.body {
            Body::File(f) => {
                f.session.is_none()
                    && f.staged.is_none()
                    && f.live.is_none()
                    && !f.upload_pending
                    && f.writers == 0
                    && f.blob.as_ref().is_some_and(|b| b.size == f.size)
            }
            Body::Dir(d) => {
                let clean = !d.dirty
                    && d.top.is_some()
                    && !i
                        .token
                        .and_then(|t| self.tokens.get(&t))
                        .is_some_and(|t| t.dirty_dirs.contains(&ino));
                // Not loaded (nor anything looked up alone in it: those inodes would be
                // left without their directory), or loaded and empty (known whole at its
                // parent's load).
                clean
                    && match &d.entries {
                        None => d.found.is_empty(),
                        Some(e) => e.is_empty() && d.objects.is_some(),
                    }
            }
            Body::Symlink(_) | Body::Special(_) => true,
        }
    }
}
