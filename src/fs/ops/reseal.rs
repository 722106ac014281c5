//! Re-sealing an sNFT's tree under other keys: `pxfs encrypt` (a plaintext tree becomes
//! encrypted, or an encrypted one gets a new data key) and `pxfs decrypt` (the reverse);
//! docs/FORMAT.md §10.
//!
//! The published tree is read through one core (`from`: read-only, opened with the current
//! keys) and written through another (`to`: a fresh tree under the target keys) with the
//! same operations the kernel uses, so names, modes, owners, times, extended attributes,
//! symlinks, device nodes and hard links carry over, and memory stays bounded the way a
//! mount's does (every inode is forgotten once copied). Nothing is published until the copy
//! is whole: `to`'s commits go to a [`Withheld`] store, and only the last one is published,
//! once, on top of the document the copy started from (so the documents still form one
//! chain). Then every object of the old tree that the new one does not use is unpinned.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::format::usage::Encryption;
use crate::fs::data::journal::{CommittedState, Journal};
use crate::fs::error::{FsError, FsResult};
use crate::fs::model::inode::{Attr, Ino, Kind, ROOT_INO};
use crate::fs::store::{Blob, ContentStore, Publish, Published, StoreError, UsageRecord};
use crate::fs::{Fs, FsConfig, SetAttr, TimeSet, TokenInfo};
use crate::keys::keyring::KeyRing;

/// Bytes moved per read/write while copying a file's content.
const PIECE: u32 = 1 << 20;

/// How far a copy has come.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub dirs: u64,
    /// Symlinks, FIFOs, sockets and device nodes.
    pub others: u64,
    /// Names made as further hard links of an inode already copied.
    pub links: u64,
    /// File content bytes (plaintext).
    pub bytes: u64,
}

/// What a conversion needs.
pub struct Conversion {
    /// The sNFT's store (bound to the sNFT where stores are per sNFT).
    pub store: Arc<dyn ContentStore>,
    /// Where the two scratch caches go; emptied first, removed afterwards.
    pub work_dir: PathBuf,
    /// Upload parallelism, staging limits and grace, as the mount would use.
    pub template: FsConfig,
    pub info: TokenInfo,
    /// What the sNFT's BTNS name resolves to now: the tree to convert.
    pub published: Published,
    /// Opens the current tree.
    pub from_keys: Arc<dyn KeyRing>,
    /// Its `new_tree` gives the target: plaintext, or a data key and its wraps.
    pub to_keys: Arc<dyn KeyRing>,
}

/// The outcome of a conversion.
#[derive(Debug, Clone)]
pub struct Converted {
    pub copied: Copied,
    /// The published usage document of the converted tree.
    pub doc: String,
    pub root: String,
    pub seq: u64,
    pub usage: u64,
    pub encryption: Encryption,
    /// Objects of the old tree unpinned, and those whose unpin failed.
    pub unpinned: u64,
    pub unpin_failed: u64,
}

/// Copy the published tree under the target keys, publish it, unpin the old objects.
/// `progress` is called after each file and directory. On any error nothing is published
/// and the old tree stays as it was.
pub async fn convert(
    c: Conversion,
    progress: &mut (dyn FnMut(&Copied) + Send),
) -> FsResult<Converted> {
    let Some(btns) = c.info.btns.clone() else {
        return Err(FsError::Invalid("an sNFT without a BTNS name has no tree"));
    };
    let id = c.info.token_id;
    let p = &c.published;
    match std::fs::remove_dir_all(&c.work_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let from_dir = c.work_dir.join("from");
    let to_dir = c.work_dir.join("to");
    seed(
        &from_dir,
        id,
        CommittedState {
            root: Some(p.root.clone()),
            usage_doc: Some(p.doc_cid.clone()),
            seq: p.seq,
            usage: p.usage,
            files: p.files,
            encryption: p.encryption.clone(),
            ..CommittedState::default()
        },
    )?;
    // A fresh tree (no root, no keys yet) whose commits follow the published document.
    seed(
        &to_dir,
        id,
        CommittedState {
            usage_doc: Some(p.doc_cid.clone()),
            seq: p.seq,
            ..CommittedState::default()
        },
    )?;
    let from = core(&c.template, from_dir, c.store.clone(), c.from_keys, true)?;
    let withheld = Arc::new(Withheld::new(c.store.clone(), p.clone()));
    let to = core(&c.template, to_dir, withheld.clone(), c.to_keys, false)?;
    let copied = async {
        from.add_token(c.info.clone()).await?;
        to.add_token(c.info.clone()).await?;
        let copied = copy_tree(&from, &to, progress).await?;
        to.flush_all().await?;
        Ok::<_, FsError>(copied)
    }
    .await;
    from.abort();
    to.abort();
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            discard(&*c.store, withheld.last(), p).await;
            return Err(e);
        }
    };
    let Some(mut record) = withheld.last() else {
        return Err(FsError::Journal(
            "the converted tree was never committed".into(),
        ));
    };
    record.seq = p.seq + 1;
    record.prev = Some(p.doc_cid.clone());
    // Never published blindly (docs/FORMAT.md §9): if another machine committed while the
    // copy ran, its changes are not in the copy: nothing is published, nothing lost.
    if let Err(e) = still_published(&*c.store, &btns, p).await {
        discard(&*c.store, Some(record), p).await;
        return Err(e);
    }
    let (doc, checked) = match c
        .store
        .publish_usage(Some(&btns), &record, Some(&p.doc_cid))
        .await
    {
        Ok(Publish::Published { doc, checked }) => (doc, checked),
        Ok(Publish::Moved) => {
            discard(&*c.store, Some(record), p).await;
            return Err(raced(p.seq));
        }
        Err(e) => {
            discard(&*c.store, Some(record), p).await;
            return Err(e.into());
        }
    };
    tracing::info!(
        token = id,
        seq = record.seq,
        doc,
        "converted tree published"
    );
    // The old tree is unpinned only once the new document holds: another machine that
    // published on top of the old one meanwhile still uses its objects (FORMAT §9.3). A
    // publication the node checked holds at once.
    if !checked && let Err(e) = holds(&*c.store, &btns, &doc, c.template.settle_window).await {
        let _ = std::fs::remove_dir_all(&c.work_dir);
        return Err(e);
    }
    let (unpinned, unpin_failed) = unpin_old(&*c.store, &p.root, &record.root).await;
    let _ = std::fs::remove_dir_all(&c.work_dir);
    Ok(Converted {
        copied,
        doc,
        root: record.root,
        seq: record.seq,
        usage: record.usage,
        encryption: record.encryption,
        unpinned,
        unpin_failed,
    })
}

/// A journal directory for token `id` under `cache` that starts from `state`.
fn seed(cache: &Path, id: u64, state: CommittedState) -> FsResult<()> {
    let dir = cache.join("journal").join(id.to_string());
    let recovered = Journal::open(&dir).map_err(|e| FsError::Journal(e.to_string()))?;
    recovered
        .journal
        .committed(&state)
        .map_err(|e| FsError::Journal(e.to_string()))?;
    Ok(())
}

fn core(
    template: &FsConfig,
    cache: PathBuf,
    store: Arc<dyn ContentStore>,
    keys: Arc<dyn KeyRing>,
    read_only: bool,
) -> FsResult<Fs> {
    let mut cfg = template.clone();
    cfg.cache_dir = cache;
    cfg.single_token = true;
    cfg.read_only = read_only;
    cfg.keys = keys;
    Fs::new(cfg, store)
}

/// The record still names `p`, the document the copy started from.
async fn still_published(store: &dyn ContentStore, btns: &str, p: &Published) -> FsResult<()> {
    match store.resolve(btns).await? {
        Some(now) if now.doc_cid != p.doc_cid => Err(raced(p.seq)),
        _ => Ok(()),
    }
}

/// Another machine committed on top of document `seq` while the copy ran.
fn raced(seq: u64) -> FsError {
    FsError::Raced(format!(
        "another machine committed to this sNFT while it was being converted (after \
         document seq {seq}): nothing was published and nothing is lost; run the command \
         again (unmount the sNFT on the other machines first to avoid this)"
    ))
}

/// Wait until the converted document `doc` holds (a resolve a settle window after the first
/// that showed it still shows it); fails if another machine's publication replaced it (that
/// machine's tree is the old one with its changes: nothing lost, the conversion did not
/// take, the old tree stays pinned).
async fn holds(
    store: &dyn ContentStore,
    btns: &str,
    doc: &str,
    window: std::time::Duration,
) -> FsResult<()> {
    let mut seen: Option<std::time::Instant> = None;
    for _ in 0..1_000 {
        let asked = std::time::Instant::now();
        let shown = store.resolve(btns).await.ok().flatten();
        if let Some(now) = shown {
            if now.doc_cid == doc {
                if seen.get_or_insert(asked).elapsed() >= window {
                    return Ok(());
                }
            } else if seen.is_some() {
                return Err(FsError::Raced(format!(
                    "another machine published to this sNFT (seq {}) right after the \
                     converted tree: its tree is the old one with its changes, so nothing is \
                     lost, but the conversion did not take; run the command again with the \
                     sNFT unmounted elsewhere",
                    now.seq
                )));
            }
        }
        tokio::time::sleep((window / 4).max(std::time::Duration::from_millis(10))).await;
    }
    Err(FsError::Journal(
        "the converted document never showed under the sNFT's name".into(),
    ))
}

/// A failed conversion leaves the new tree's objects behind: unpin what its last withheld
/// commit reached (best effort; objects of superseded withheld commits were unpinned by
/// those commits).
async fn discard(store: &dyn ContentStore, last: Option<UsageRecord>, p: &Published) {
    if let Some(r) = last {
        let (n, failed) = unpin_old(store, &r.root, &p.root).await;
        tracing::info!(
            unpinned = n,
            failed,
            "conversion abandoned; its objects unpinned"
        );
    }
}

/// Unpin every object reachable from `old` and not from `new`: (unpinned, failed).
async fn unpin_old(store: &dyn ContentStore, old: &str, new: &str) -> (u64, u64) {
    let keep = match tree_objects(store, new).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the new tree's objects; nothing unpinned");
            return (0, 0);
        }
    };
    let gone = match tree_objects(store, old).await {
        Ok(g) => g,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the old tree's objects; nothing unpinned");
            return (0, 0);
        }
    };
    let (mut done, mut failed) = (0, 0);
    for cid in gone.difference(&keep) {
        match store.unpin(cid).await {
            Ok(()) => done += 1,
            Err(e) => {
                failed += 1;
                tracing::debug!(cid, error = %e, "unpin failed");
            }
        }
    }
    (done, failed)
}

/// The objects a tree pins: its nodes (or v1 manifests) and its content roots, found
/// through the public lists without any key (docs/FORMAT.md §3.1).
pub async fn tree_objects(store: &dyn ContentStore, root: &str) -> FsResult<HashSet<String>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut pending = vec![root.to_string()];
    while let Some(cid) = pending.pop() {
        if seen.contains(&cid) {
            continue;
        }
        let bytes = store.fetch(&cid).await?;
        seen.insert(cid.clone());
        if crate::format::schema_of(&bytes).as_deref() == Some(crate::format::v1::manifest::SCHEMA)
        {
            let m = crate::format::v1::manifest::Manifest::parse(&bytes)
                .map_err(|_| FsError::Invalid("a v1 manifest of the tree does not parse"))?;
            for e in m.entries {
                match (e.kind, e.cid) {
                    (crate::format::v1::manifest::EntryKind::Dir, Some(c)) => pending.push(c),
                    (_, Some(c)) => {
                        seen.insert(c);
                    }
                    (_, None) => {}
                }
            }
            continue;
        }
        let (_, lists) = crate::format::envelope::public(&bytes)
            .map_err(|_| FsError::Invalid("a node of the tree has no public lists"))?;
        pending.extend(lists.nodes);
        seen.extend(lists.data);
    }
    Ok(seen)
}

/// Copy everything under `from`'s root into `to`'s root (both single-sNFT cores). The PX
/// dApp's directory is not part of the tree and is skipped.
pub async fn copy_tree(
    from: &Fs,
    to: &Fs,
    progress: &mut (dyn FnMut(&Copied) + Send),
) -> FsResult<Copied> {
    let mut copy = Copy {
        from,
        to,
        copied: Copied::default(),
        links: HashMap::new(),
    };
    // Depth first; a directory's times are set once everything in it is made.
    struct Frame {
        from: Ino,
        to: Ino,
        attr: Attr,
        names: std::vec::IntoIter<Vec<u8>>,
    }
    let root = from.getattr(ROOT_INO).await?;
    let mut stack = vec![Frame {
        from: ROOT_INO,
        to: ROOT_INO,
        names: copy.names(ROOT_INO, true).await?.into_iter(),
        attr: root,
    }];
    while let Some(top) = stack.last_mut() {
        let Some(name) = top.names.next() else {
            let done = stack.pop().expect("the stack has a top");
            copy.finish(done.from, done.to, &done.attr).await?;
            if done.from != ROOT_INO {
                from.forget(done.from, 1);
                to.forget(done.to, 1);
            }
            progress(&copy.copied);
            continue;
        };
        let (dir_from, dir_to) = (top.from, top.to);
        let attr = from.lookup(dir_from, &name).await?;
        if attr.kind == Kind::Dir {
            let made = to
                .mkdir(dir_to, &name, attr.meta.mode, attr.meta.uid, attr.meta.gid)
                .await?;
            copy.copied.dirs += 1;
            stack.push(Frame {
                from: attr.ino,
                to: made.ino,
                names: copy.names(attr.ino, false).await?.into_iter(),
                attr,
            });
            continue;
        }
        copy.entry(dir_to, &name, &attr).await?;
        progress(&copy.copied);
    }
    Ok(copy.copied)
}

struct Copy<'a> {
    from: &'a Fs,
    to: &'a Fs,
    copied: Copied,
    /// Inodes with more than one name: `from`'s number → (`to`'s number, names not yet
    /// made). Both sides keep one reference until the last name is made.
    links: HashMap<Ino, (Ino, u32)>,
}

impl Copy<'_> {
    /// Every name in directory `ino` (without `.` and `..`, nor the dApp's directory at
    /// the root).
    async fn names(&self, ino: Ino, root: bool) -> FsResult<Vec<Vec<u8>>> {
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let batch = self.from.readdir(ino, offset).await?;
            let Some(last) = batch.last() else {
                break;
            };
            offset = last.offset;
            names.extend(
                batch
                    .into_iter()
                    .map(|e| e.name)
                    .filter(|n| n != b"." && n != b"..")
                    .filter(|n| !(root && n.as_slice() == crate::fs::DAPP_DIR.as_bytes())),
            );
        }
        Ok(names)
    }

    /// Make the non-directory `attr` (looked up in `from`) as `name` in `to`'s `dir`.
    async fn entry(&mut self, dir: Ino, name: &[u8], attr: &Attr) -> FsResult<()> {
        let (from, to) = (self.from, self.to);
        if attr.nlink > 1
            && let Some((ino, left)) = self.links.get_mut(&attr.ino)
        {
            let made = to.link(*ino, dir, name).await?;
            to.forget(made.ino, 1);
            from.forget(attr.ino, 1);
            self.copied.links += 1;
            *left -= 1;
            if *left == 0 {
                let (ino, _) = self.links.remove(&attr.ino).expect("present");
                to.forget(ino, 1);
                from.forget(attr.ino, 1);
            }
            return Ok(());
        }
        let m = &attr.meta;
        let made = match attr.kind {
            Kind::File => {
                let made = self.content(dir, name, attr).await?;
                self.copied.files += 1;
                made
            }
            Kind::Symlink => {
                let target = from.readlink(attr.ino).await?;
                self.copied.others += 1;
                to.symlink(dir, name, &target, m.uid, m.gid).await?
            }
            kind => {
                self.copied.others += 1;
                to.mknod(dir, name, kind, m.mode, attr.rdev, m.uid, m.gid)
                    .await?
            }
        };
        self.finish(attr.ino, made.ino, attr).await?;
        if attr.nlink > 1 {
            // Keep both references until the other names are made.
            self.links.insert(attr.ino, (made.ino, attr.nlink - 1));
        } else {
            to.forget(made.ino, 1);
            from.forget(attr.ino, 1);
        }
        Ok(())
    }

    /// A regular file: its content, piece by piece.
    async fn content(&mut self, dir: Ino, name: &[u8], attr: &Attr) -> FsResult<Attr> {
        let (from, to) = (self.from, self.to);
        let m = &attr.meta;
        let src = from.open(attr.ino, libc::O_RDONLY).await?;
        let made = to
            .create(
                dir,
                name,
                m.mode,
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
                m.uid,
                m.gid,
            )
            .await;
        let (made, dst) = match made {
            Ok(m) => m,
            Err(e) => {
                let _ = from.release(src).await;
                return Err(e);
            }
        };
        let copied = async {
            let mut at = 0u64;
            while at < attr.size {
                let piece = from.read(src, at, PIECE).await?;
                if piece.is_empty() {
                    break;
                }
                let mut done = 0;
                while done < piece.len() {
                    let n = to.write(dst, at + done as u64, &piece[done..]).await?;
                    done += n as usize;
                }
                at += piece.len() as u64;
                self.copied.bytes += piece.len() as u64;
            }
            Ok::<_, FsError>(())
        }
        .await;
        let closed = to.release(dst).await;
        let _ = from.release(src).await;
        copied?;
        closed?;
        Ok(made)
    }

    /// Mode, owner, times and extended attributes of `from`'s `src` onto `to`'s `dst`.
    async fn finish(&self, src: Ino, dst: Ino, attr: &Attr) -> FsResult<()> {
        let (from, to) = (self.from, self.to);
        for name in from.listxattr(src).await? {
            if name.starts_with(crate::fs::ops::xattr::PXFS_PREFIX) {
                continue;
            }
            let value = from.getxattr(src, &name).await?;
            to.setxattr(dst, &name, &value, 0).await?;
        }
        let m = &attr.meta;
        let set = SetAttr {
            mode: (attr.kind != Kind::Symlink).then_some(m.mode),
            uid: Some(m.uid),
            gid: Some(m.gid),
            size: None,
            atime: Some(TimeSet::At(m.atime_ns)),
            mtime: Some(TimeSet::At(m.mtime_ns)),
            fh: None,
        };
        to.setattr(dst, set).await?;
        Ok(())
    }
}

/// A store whose usage documents are kept back: the converted tree's commits are written
/// but not published; [`Withheld::last`] gives the last one. `resolve` answers with it (and
/// before the first, with the document the copy started from), so a core that checks what
/// is published before publishing sees its own commits, never another machine's: those
/// are checked for once, before the converted tree is published.
pub struct Withheld {
    inner: Arc<dyn ContentStore>,
    start: Published,
    last: Mutex<Option<UsageRecord>>,
}

impl Withheld {
    pub fn new(inner: Arc<dyn ContentStore>, start: Published) -> Withheld {
        Withheld {
            inner,
            start,
            last: Mutex::new(None),
        }
    }

    pub fn last(&self) -> Option<UsageRecord> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn doc_id(seq: u64) -> String {
        format!("withheld-{seq}")
    }
}

#[async_trait]
impl ContentStore for Withheld {
    async fn add_file(&self, path: &Path) -> Result<Blob, StoreError> {
        self.inner.add_file(path).await
    }
    async fn add_files(&self, paths: &[PathBuf]) -> Result<Vec<Blob>, StoreError> {
        self.inner.add_files(paths).await
    }
    async fn add_stream(
        &self,
        path: &Path,
        open: Arc<crate::fs::store::ContentStream>,
        seed: bool,
    ) -> Result<String, StoreError> {
        self.inner.add_stream(path, open, seed).await
    }
    async fn add_objects(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        self.inner.add_objects(objects).await
    }
    async fn add_manifest(&self, json: Bytes) -> Result<String, StoreError> {
        self.inner.add_manifest(json).await
    }
    async fn add_manifests(&self, objects: Vec<Bytes>) -> Result<Vec<String>, StoreError> {
        self.inner.add_manifests(objects).await
    }
    fn object_cid(&self, bytes: &[u8]) -> Option<String> {
        self.inner.object_cid(bytes)
    }
    async fn fetch(&self, cid: &str) -> Result<Bytes, StoreError> {
        self.inner.fetch(cid).await
    }
    async fn read(&self, cid: &str, size: u64, offset: u64, len: u64) -> Result<Bytes, StoreError> {
        self.inner.read(cid, size, offset, len).await
    }
    async fn unpin(&self, cid: &str) -> Result<(), StoreError> {
        self.inner.unpin(cid).await
    }
    async fn pin(&self, cid: &str) -> Result<(), StoreError> {
        self.inner.pin(cid).await
    }
    async fn publish_usage(
        &self,
        _btns: Option<&str>,
        record: &UsageRecord,
        _replaces: Option<&str>,
    ) -> Result<Publish, StoreError> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(record.clone());
        // Nothing else writes here: it holds at once.
        Ok(Publish::Published {
            doc: Withheld::doc_id(record.seq),
            checked: true,
        })
    }
    async fn resolve(&self, _btns: &str) -> Result<Option<Published>, StoreError> {
        match self.last() {
            Some(r) => Ok(Some(Published::of_record(&Withheld::doc_id(r.seq), &r))),
            None => Ok(Some(self.start.clone())),
        }
    }
    async fn usage_doc(&self, cid: &str) -> Result<Published, StoreError> {
        match self.last() {
            Some(r) if Withheld::doc_id(r.seq) == cid => Ok(Published::of_record(cid, &r)),
            _ => self.inner.usage_doc(cid).await,
        }
    }
}
