//! History under the model (docs/FORMAT.md §14): a mount that keeps versions, a simulated
//! clock the scripts move on, and what the harness checks of `.snapshots/` after each step:
//! it lists exactly what the retention policy promises for the commits made; a version
//! holds what its commit published (the model's committed tree, when the commit waited for
//! every upload) and never changes after; every change under it is refused with `EROFS`;
//! the harness's usage check splits the root's measure into the tree's objects and what
//! the versions add.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use pxfs::format::history::{Policy, retain, snapshot_name};
use pxfs::format::root::Root;
use pxfs::format::{DataKey, TreeCrypto};
use pxfs::fs::store::MemoryStore;
use pxfs::fs::{Attr, Clock, Fs, Ino, Kind, ROOT_INO, SetAttr, TimeSet};

use super::model::{Body, Errno, Id, Model, Out, ROOT};

/// Small, so that a script's waits (seconds to days) drop versions by every rule.
pub const POLICY: Policy = Policy {
    keep_all_secs: 300,
    hourly: 4,
    daily: 3,
    monthly: 2,
};
const NS: i64 = 1_000_000_000;
/// 2026-11-30T12:00:00Z: the simulated clock's start.
const T0: i64 = 1_796_040_000 * NS;
const SNAPSHOTS: &str = ".snapshots";
/// The name the refused changes try to make (not one of the scripts' names).
const NEW: &str = "new";

/// The simulated clock commits take their time from (`FsConfig::clock`), shared by every
/// mount of one script.
#[derive(Clone)]
pub struct SimClock(Arc<AtomicI64>);

impl SimClock {
    fn new() -> SimClock {
        SimClock(Arc::new(AtomicI64::new(T0)))
    }

    /// Time passes (a `Wait` step).
    pub fn advance(&self, secs: u64) {
        self.0.fetch_add(secs as i64 * NS, Ordering::SeqCst);
    }

    /// The clock a mount's commits read.
    pub fn clock(&self) -> Clock {
        let c = self.0.clone();
        Clock(Arc::new(move || c.load(Ordering::SeqCst)))
    }
}

/// One node of a version's tree as `.snapshots/<name>/…` shows it (or as the model says
/// its commit published it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapNode {
    kind: Kind,
    size: u64,
    mode: u32,
    owner: (u32, u32),
    /// `None` from the model: not known (only an explicit `utimes` is).
    mtime: Option<i64>,
    /// Files and symlinks: their names in the version.
    nlink: Option<u32>,
    xattrs: Vec<(String, Vec<u8>)>,
    /// A file's content, a symlink's target.
    data: Option<Vec<u8>>,
    /// One file under several names (hard links): the first of them.
    same_as: Option<String>,
}

/// A version's whole tree by path (`/`, `/a`, `/a/b`, …).
pub type SnapTree = BTreeMap<String, SnapNode>;

fn child_path(dir: &str, name: &str) -> String {
    match dir {
        "/" => format!("/{name}"),
        _ => format!("{dir}/{name}"),
    }
}

/// Marks the paths that name one file (same model id, same inode) with the first of them.
fn mark_links<K: std::hash::Hash + Eq>(tree: &mut SnapTree, identity: &HashMap<String, K>) {
    let mut first: HashMap<&K, &String> = HashMap::new();
    let mut count: HashMap<&K, usize> = HashMap::new();
    for path in tree.keys() {
        let id = &identity[path];
        first.entry(id).or_insert(path);
        *count.entry(id).or_default() += 1;
    }
    let links: Vec<(String, String)> = tree
        .keys()
        .filter(|p| count[&identity[*p]] > 1)
        .map(|p| (p.clone(), first[&identity[p]].clone()))
        .collect();
    for (path, first) in links {
        tree.get_mut(&path).expect("walked").same_as = Some(first);
    }
}

/// What a commit publishes of the model's tree (docs/durability.md): every file as of its
/// last close, and no file never closed; attributes and names as they are now. Exact for a
/// commit that waited for every upload (`flush_all`), as `Commit` and `Remount` do.
pub fn committed_tree(m: &Model) -> SnapTree {
    let mut tree = SnapTree::new();
    let mut identity: HashMap<String, Id> = HashMap::new();
    let mut stack = vec![(ROOT, String::from("/"))];
    while let Some((id, path)) = stack.pop() {
        let n = m.node(id);
        let (kind, size, nlink, data) = match &n.body {
            Body::Dir(entries) => {
                for (name, child) in entries {
                    stack.push((*child, child_path(&path, name)));
                }
                (Kind::Dir, 4096, None, None)
            }
            Body::File(f) => match &f.closed {
                Some(c) => (Kind::File, c.len() as u64, Some(n.nlink()), Some(c.clone())),
                None => continue,
            },
            Body::Symlink(t) => (
                Kind::Symlink,
                t.len() as u64,
                Some(n.nlink()),
                Some(t.as_bytes().to_vec()),
            ),
        };
        let node = SnapNode {
            kind,
            size,
            mode: n.mode,
            owner: (n.uid, n.gid),
            mtime: n.mtime,
            nlink,
            xattrs: n
                .xattrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            data,
            same_as: None,
        };
        identity.insert(path.clone(), id);
        tree.insert(path, node);
    }
    mark_links(&mut tree, &identity);
    tree
}

/// The first difference between a version as expected and as read (`None`: equal). An
/// unknown mtime in `want` matches any.
pub fn difference(want: &SnapTree, got: &SnapTree) -> Option<String> {
    let (w, g): (Vec<&String>, Vec<&String>) = (want.keys().collect(), got.keys().collect());
    if w != g {
        return Some(format!("holds {g:?}, expected {w:?}"));
    }
    for (path, a) in want {
        let b = &got[path];
        let mut b_cmp = b.clone();
        if a.mtime.is_none() {
            b_cmp.mtime = None;
        }
        if *a != b_cmp {
            return Some(format!("{path} is {b:?}, expected {a:?}"));
        }
    }
    None
}

fn errno(e: pxfs::fs::FsError) -> Errno {
    e.errno()
}

/// The names `dir` lists, sorted, without `.` and `..`.
async fn listing(fs: &Fs, dir: Ino) -> Result<Vec<String>, Errno> {
    let mut names: Vec<String> = fs
        .readdir(dir, 0)
        .await
        .map_err(errno)?
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .filter(|n| n != "." && n != "..")
        .collect();
    names.sort();
    Ok(names)
}

async fn content(fs: &Fs, ino: Ino, size: u64) -> Result<Vec<u8>, Errno> {
    let fh = fs.open(ino, libc::O_RDONLY).await.map_err(errno)?;
    let data = fs.read(fh, 0, size as u32 + 64).await.map_err(errno);
    fs.release(fh).await.map_err(errno)?;
    Ok(data?.to_vec())
}

async fn xattrs(fs: &Fs, ino: Ino) -> Result<Vec<(String, Vec<u8>)>, Errno> {
    let mut names = fs.listxattr(ino).await.map_err(errno)?;
    names.retain(|n| !n.starts_with(b"user.pxfs."));
    names.sort();
    let mut out = Vec::new();
    for n in names {
        let v = fs.getxattr(ino, &n).await.map_err(errno)?;
        out.push((String::from_utf8_lossy(&n).into_owned(), v));
    }
    Ok(out)
}

/// One node of a version as pxfs shows it.
async fn read_node(fs: &Fs, attr: &Attr) -> Result<SnapNode, Errno> {
    let data = match attr.kind {
        Kind::File => Some(content(fs, attr.ino, attr.size).await?),
        Kind::Symlink => Some(fs.readlink(attr.ino).await.map_err(errno)?),
        _ => None,
    };
    Ok(SnapNode {
        kind: attr.kind,
        size: attr.size,
        mode: attr.meta.mode,
        owner: (attr.meta.uid, attr.meta.gid),
        mtime: Some(attr.meta.mtime_ns),
        nlink: (attr.kind != Kind::Dir).then_some(attr.nlink),
        xattrs: xattrs(fs, attr.ino).await?,
        data,
        same_as: None,
    })
}

/// `.snapshots/` of the sNFT root.
async fn snapshots_dir(fs: &Fs) -> Result<Ino, Errno> {
    Ok(fs.lookup(ROOT_INO, SNAPSHOTS).await.map_err(errno)?.ino)
}

/// The versions `.snapshots/` lists.
async fn listed(fs: &Fs) -> Result<Vec<String>, String> {
    let dir = snapshots_dir(fs)
        .await
        .map_err(|e| format!("lookup of {SNAPSHOTS}: errno {e}"))?;
    listing(fs, dir)
        .await
        .map_err(|e| format!("{SNAPSHOTS}: readdir: errno {e}"))
}

/// The whole tree of `.snapshots/<name>/`, read through lookups and listings;
/// `strict_nlink`: a link count must be right at the first lookup of a name (see
/// [`History::strict_nlink`]).
async fn read_version(fs: &Fs, name: &str, strict_nlink: bool) -> Result<SnapTree, String> {
    let at =
        |path: &str, what: &str, e: Errno| format!("{SNAPSHOTS}/{name}{path}: {what}: errno {e}");
    let dir = snapshots_dir(fs).await.map_err(|e| at("", "lookup", e))?;
    let top = fs
        .lookup(dir, name)
        .await
        .map_err(|e| at("", "lookup", errno(e)))?;
    let mut tree = SnapTree::new();
    let mut identity: HashMap<String, Ino> = HashMap::new();
    let mut stack = vec![(String::from("/"), top)];
    while let Some((path, attr)) = stack.pop() {
        let node = read_node(fs, &attr)
            .await
            .map_err(|e| at(&path, "read", e))?;
        if attr.kind == Kind::Dir {
            let names = listing(fs, attr.ino)
                .await
                .map_err(|e| at(&path, "readdir", e))?;
            for n in names {
                let child = child_path(&path, &n);
                let a = fs
                    .lookup(attr.ino, &n)
                    .await
                    .map_err(|e| at(&child, "lookup", errno(e)))?;
                stack.push((child, a));
            }
        }
        identity.insert(path.clone(), attr.ino);
        tree.insert(path, node);
    }
    // Link counts once every name was read: they must not have changed since each first
    // lookup (a version never changes), and count the names the version holds.
    for (path, ino) in &identity {
        let node = tree.get_mut(path).expect("walked");
        let Some(first) = node.nlink else { continue };
        let now = fs
            .getattr(*ino)
            .await
            .map_err(|e| at(path, "getattr", errno(e)))?
            .nlink;
        if now != first && strict_nlink {
            return Err(format!(
                "{SNAPSHOTS}/{name}{path}: nlink {first} at its first lookup, {now} once \
                 every name of the version was read"
            ));
        }
        node.nlink = Some(now);
    }
    mark_links(&mut tree, &identity);
    Ok(tree)
}

/// The commit time of root `root` (a `pxfs/root/3` node, sealed with `key` if any) and its
/// history table's top (`None`: it keeps no version).
fn root_of(
    store: &MemoryStore,
    root: &str,
    key: Option<[u8; 32]>,
) -> Result<(i64, Option<String>), String> {
    let bytes = store
        .get(root)
        .ok_or(format!("the published root {root} is not on the node"))?;
    let crypto = match key {
        Some(k) => TreeCrypto::sealed(&DataKey::from_bytes(k)),
        None => TreeCrypto::Plain,
    };
    let r = Root::decode_any(&bytes, &crypto).map_err(|e| format!("root {root}: {e}"))?;
    r.v3.ok_or(format!("the published root {root} is not a pxfs/root/3"))
}

/// What the node measures of what root `root` reaches: (its tree alone, the pages of its
/// history table, everything), each distinct object once as `MemoryStore::measure` counts.
pub fn measure_root(
    store: &MemoryStore,
    root: &str,
    key: Option<[u8; 32]>,
) -> Result<(u64, u64, u64), String> {
    let (_, history) = root_of(store, root, key)?;
    let all = store
        .measure(root)
        .map(|(c, m)| c + m)
        .ok_or(format!("root {root}: the node cannot measure it"))?;
    let mut seen: HashSet<String> = history.iter().cloned().collect();
    let tree = measure_from(store, root, &mut seen, |_| true)?;
    let mut seen = HashSet::new();
    let table = match &history {
        Some(top) => measure_from(store, top, &mut seen, |schema| {
            schema == pxfs::format::SCHEMA_HISTORY
        })?,
        None => 0,
    };
    Ok((tree, table, all))
}

/// The bytes of the objects reachable from `top` through nodes whose schema `follow`
/// accepts (only those counted), less those in `seen`.
fn measure_from(
    store: &MemoryStore,
    top: &str,
    seen: &mut HashSet<String>,
    follow: impl Fn(&str) -> bool,
) -> Result<u64, String> {
    let mut pending = vec![top.to_string()];
    let mut bytes = 0u64;
    let get = |cid: &str| store.get(cid).ok_or(format!("{cid}: not on the node"));
    while let Some(cid) = pending.pop() {
        if seen.contains(&cid) {
            continue;
        }
        let node = get(&cid)?;
        let (schema, lists) =
            pxfs::format::envelope::public(&node).map_err(|e| format!("{cid}: {e}"))?;
        if !follow(&schema) {
            continue;
        }
        seen.insert(cid);
        bytes += node.len() as u64;
        pending.extend(lists.nodes);
        for c in lists.data {
            if seen.insert(c.clone()) {
                bytes += get(&c)?.len() as u64;
            }
        }
    }
    Ok(bytes)
}

/// A version a commit made: what the model says it holds, and what pxfs showed the
/// first time it listed it (every later read must show the same).
struct Version {
    model: Option<SnapTree>,
    seen: Option<SnapTree>,
}

/// History as the harness follows it across the mounts of one script.
pub struct History {
    pub clock: SimClock,
    /// A file's link count in a version must be right at the first lookup of any of its
    /// names, not only once every name was read. Off: the known failure pinned by
    /// `a_link_group_in_a_version_counts_all_its_names_at_the_first_lookup` (ignored) is
    /// not reported, so that the property test looks for others.
    pub strict_nlink: bool,
    sealed: bool,
    /// The commit times seen, in order.
    times: Vec<i64>,
    /// The root last published.
    root: Option<String>,
    /// Each version by its snapshot name (a later commit in the same second replaces it).
    versions: BTreeMap<String, Version>,
}

/// A step's pseudo-random choice among `n` (from the step's index: a script replays alike).
fn choose(step: usize, n: usize) -> usize {
    let mut x = (step as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((x ^ (x >> 31)) % n as u64) as usize
}

impl History {
    /// Nothing committed yet; `sealed`: the roots are sealed with the harness's key.
    pub fn new(sealed: bool) -> History {
        History {
            clock: SimClock::new(),
            strict_nlink: true,
            sealed,
            times: Vec::new(),
            root: None,
            versions: BTreeMap::new(),
        }
    }

    /// After each step: a new publication (if any) is a version, named by its commit time;
    /// `exact`: the step's commit waited for every upload, so the model says what it holds.
    pub fn note_publication(
        &mut self,
        store: &MemoryStore,
        btns: &str,
        key: [u8; 32],
        model: &Model,
        exact: bool,
    ) -> Result<(), String> {
        let Some(record) = store.published(btns) else {
            return Ok(());
        };
        if self.root.as_deref() == Some(record.root.as_str()) {
            return Ok(());
        }
        let key = self.sealed.then_some(key);
        let (t, _) = root_of(store, &record.root, key)?;
        if let Some(last) = self.times.last()
            && t <= *last
        {
            return Err(format!("commit time {t} not after the last one, {last}"));
        }
        self.times.push(t);
        self.root = Some(record.root);
        let name = snapshot_name(t);
        let replaced = self.versions.insert(
            name.clone(),
            Version {
                model: exact.then(|| committed_tree(model)),
                seen: None,
            },
        );
        if replaced.is_some_and(|v| v.seen.is_some()) {
            return Err(format!("{name}: a version listed before was made again"));
        }
        Ok(())
    }

    /// The versions the policy keeps after the last commit, as `.snapshots/` must list them.
    fn promised(&self) -> Vec<String> {
        let Some((now, earlier)) = self.times.split_last() else {
            return Vec::new();
        };
        retain(earlier, *now, &POLICY, *now)
            .into_iter()
            .map(snapshot_name)
            .collect()
    }

    /// After each step with the node up: `.snapshots/` lists what the policy promises; a
    /// version listed for the first time holds what the model says its commit published;
    /// one listed version (every one when `all`) still reads as it first did.
    pub async fn check(&mut self, fs: &Fs, step: usize, all: bool) -> Result<(), String> {
        let listed = match listed(fs).await {
            Ok(l) => l,
            Err(_) if self.times.is_empty() => Vec::new(),
            Err(e) => return Err(e),
        };
        let promised = self.promised();
        if listed != promised {
            return Err(format!(
                "{SNAPSHOTS} lists {listed:?}, the policy keeps {promised:?} of the commits \
                 at {:?}",
                self.times
                    .iter()
                    .map(|t| snapshot_name(*t))
                    .collect::<Vec<_>>()
            ));
        }
        for name in &listed {
            let v = self
                .versions
                .get_mut(name)
                .expect("promised: a commit made it");
            if v.seen.is_some() {
                continue;
            }
            let got = read_version(fs, name, self.strict_nlink).await?;
            if let Some(want) = &v.model
                && let Some(d) = difference(want, &got)
            {
                return Err(format!(
                    "{SNAPSHOTS}/{name} is not what its commit published: {d}"
                ));
            }
            v.seen = Some(got);
        }
        let again: Vec<&String> = match (all, listed.len()) {
            (_, 0) => Vec::new(),
            (true, _) => listed.iter().collect(),
            (false, n) => vec![&listed[choose(step, n)]],
        };
        for name in again {
            let got = read_version(fs, name, self.strict_nlink).await?;
            let first = self.versions[name].seen.as_ref().expect("seen above");
            if let Some(d) = difference(first, &got) {
                return Err(format!(
                    "{SNAPSHOTS}/{name} changed since it was taken: {d}"
                ));
            }
        }
        Ok(())
    }

    /// `ChangeSnapshot`: one change under `.snapshots/`, which must be refused (`EROFS`).
    /// `snap` picks a listed version, `what` the change and the path of that version it is
    /// made to (none listed, or now and then: a change to `.snapshots/` itself).
    pub async fn change(&self, fs: &Fs, snap: usize, what: usize) -> Result<Out, Errno> {
        let dir = snapshots_dir(fs).await?;
        let names = listing(fs, dir).await?;
        if names.is_empty() || what % KINDS >= 12 {
            return change_view(fs, dir, what).await.map(|_| Out::Unit);
        }
        let name = &names[snap % names.len()];
        let paths: Vec<&str> = match self.versions.get(name).and_then(|v| v.seen.as_ref()) {
            Some(tree) => tree.keys().map(|p| p.as_str()).collect(),
            None => vec!["/"],
        };
        let path = paths[(what / KINDS) % paths.len()];
        // The path's parent directory and name (a version's root: `.snapshots/` and its
        // name) and the inode itself.
        let mut parent = dir;
        let mut last = name.as_str();
        let mut target = fs.lookup(dir, name).await.map_err(errno)?;
        let version = target.ino;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            parent = target.ino;
            target = fs.lookup(parent, part).await.map_err(errno)?;
            last = part;
        }
        change_in_version(fs, what % KINDS, version, (parent, last), &target)
            .await
            .map(|_| Out::Unit)
    }
}

/// The kinds of change [`History::change`] makes: 12 to a version, 2 to the view.
const KINDS: usize = 14;

/// Change `kind` (below 12) made to `target`, named `name` in `parent`, of the version
/// whose root is `version`.
async fn change_in_version(
    fs: &Fs,
    kind: usize,
    version: Ino,
    (parent, name): (Ino, &str),
    target: &Attr,
) -> Result<(), Errno> {
    let into = match target.kind {
        Kind::Dir => target.ino,
        _ => version,
    };
    let file = target.kind == Kind::File;
    let set = |s: SetAttr| async move { fs.setattr(target.ino, s).await.map(|_| ()) };
    let r = match kind {
        0 => fs
            .create(into, NEW, 0o644, libc::O_RDWR | libc::O_CREAT, 0, 0)
            .await
            .map(|_| ()),
        1 => fs.mkdir(into, NEW, 0o755, 0, 0).await.map(|_| ()),
        2 => fs.symlink(into, NEW, "a", 0, 0).await.map(|_| ()),
        3 if target.kind == Kind::Dir => fs.rmdir(parent, name).await,
        3 => fs.unlink(parent, name).await,
        4 => fs.rename(parent, name, parent, NEW, false, false).await,
        5 => {
            set(SetAttr {
                mode: Some(0o700),
                ..Default::default()
            })
            .await
        }
        6 => fs.setxattr(target.ino, "user.x", b"new", 0).await,
        7 if file => {
            set(SetAttr {
                size: Some(0),
                ..Default::default()
            })
            .await
        }
        7 => {
            set(SetAttr {
                uid: Some(1),
                gid: Some(1),
                ..Default::default()
            })
            .await
        }
        8 if file => return open_for_writing(fs, target.ino).await,
        8 | 9 => {
            set(SetAttr {
                mtime: Some(TimeSet::At(5_000_000_000)),
                ..Default::default()
            })
            .await
        }
        10 if target.kind != Kind::Dir => fs.link(target.ino, version, NEW).await.map(|_| ()),
        10 => fs.mkdir(into, NEW, 0o700, 0, 0).await.map(|_| ()),
        _ => match xattrs(fs, target.ino).await?.first() {
            Some((x, _)) => fs.removexattr(target.ino, x).await,
            None => fs.setxattr(target.ino, "user.y", b"new", 1).await,
        },
    };
    r.map_err(errno)
}

/// A change to `.snapshots/` itself (`dir`): a new entry in it, or its name in the root
/// removed or renamed.
async fn change_view(fs: &Fs, dir: Ino, what: usize) -> Result<(), Errno> {
    let r = match (what / KINDS) % 4 {
        0 => fs.mkdir(dir, NEW, 0o755, 0, 0).await.map(|_| ()),
        1 => fs
            .create(dir, NEW, 0o644, libc::O_RDWR | libc::O_CREAT, 0, 0)
            .await
            .map(|_| ()),
        2 => fs.rmdir(ROOT_INO, SNAPSHOTS).await,
        _ => {
            fs.rename(ROOT_INO, SNAPSHOTS, ROOT_INO, NEW, false, false)
                .await
        }
    };
    r.map_err(errno)
}

/// `open(O_RDWR)` of a version's file: refused (a descriptor it gave is closed again).
async fn open_for_writing(fs: &Fs, ino: Ino) -> Result<(), Errno> {
    let fh = fs.open(ino, libc::O_RDWR).await.map_err(errno)?;
    let _ = fs.release(fh).await;
    Ok(())
}
