//! Walking one tree of a check — the current tree, or a kept version under
//! `/.snapshots/<name>` — page by page, checking each file's blocks ([`super::blocks`]).
//! What earlier trees of the same check walked is shared: a directory page walked in an
//! earlier tree is not walked again (its files were checked there), and a content object
//! or chunk table checked before is not asked for again, its damage reported for each path.
//!
//! Streaming: directories are walked depth first from a stack of pending pages, and the
//! files of a page are checked before more pages are opened, so memory holds the pages on
//! the way down and the requests in flight, never a list of the tree's files.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use ipld_core::cid::Cid;

use super::blocks::{Asker, Found, Got, REMEMBERED, Sealed};
use super::{CheckError, Damage, DamagedBlock, Event, Part, Problem, Summary};
use crate::format::TreeCrypto;
use crate::format::entry::{Entry, EntryKind, FileContent, GroupId, InodeKind, InodeRecord};
use crate::format::page::{self, Page};
use crate::format::seal::{VersionKey, sealed_len};

/// A file's size and stored form — one v2 content object (§6.2) or a chunk table (§13) —
/// from its entry or link-group record (`None` content: empty).
fn file_of(kind: &InodeKind) -> Option<(u64, Option<FileContent>)> {
    match kind {
        InodeKind::File { size, content } => Some((*size, content.clone())),
        _ => None,
    }
}

/// A pending page: the directory's path, and whether it is the link-group table.
struct PendingPage {
    path: Arc<str>,
    cid: String,
    table: bool,
}

enum Done {
    Page(PendingPage, Got<bytes::Bytes>),
    File(Arc<str>, (Cid, u64), Result<Found, CheckError>),
}

/// `dir/name` (`/name` under the root), lossy UTF-8 for display.
pub(super) fn join(dir: &str, name: &[u8]) -> Arc<str> {
    let name = String::from_utf8_lossy(name);
    match dir {
        "/" => format!("/{name}").into(),
        d => format!("{d}/{name}").into(),
    }
}

/// A file whose blocks are to be checked.
struct PendingFile {
    path: Arc<str>,
    size: u64,
    stored: Option<FileContent>,
}

/// The state of one check, across the trees it walks.
pub(super) struct Walker<'a, 'o> {
    pub asker: &'a Asker<'a>,
    pub crypto: &'a TreeCrypto,
    pub sum: Summary,
    on: &'o mut (dyn for<'e> FnMut(Event<'e>) + Send),
    started: Instant,
    last_progress: Instant,
    /// Directory pages walked by earlier trees (bounded).
    walked: HashSet<String>,
    /// Content objects and chunk tables (with the file size) found intact or damaged.
    intact: HashSet<(Cid, u64)>,
    damaged: HashMap<(Cid, u64), (String, Problem, Vec<DamagedBlock>)>,
    /// The last link-group table read, by its top: consecutive versions share it.
    groups: Option<(String, Arc<Groups>)>,
}

type Groups = HashMap<GroupId, (u64, Option<FileContent>)>;

impl<'a, 'o> Walker<'a, 'o> {
    pub fn new(
        asker: &'a Asker<'a>,
        crypto: &'a TreeCrypto,
        on: &'o mut (dyn for<'e> FnMut(Event<'e>) + Send),
    ) -> Walker<'a, 'o> {
        Walker {
            asker,
            crypto,
            sum: Summary::default(),
            on,
            started: Instant::now(),
            last_progress: Instant::now(),
            walked: HashSet::new(),
            intact: HashSet::new(),
            damaged: HashMap::new(),
            groups: None,
        }
    }

    pub fn report(&mut self, d: Damage) {
        self.sum.damaged += 1;
        (self.on)(Event::Damaged(&d));
    }

    pub fn count(&mut self, p: &Problem) {
        match p {
            Problem::Missing(_) => self.sum.missing += 1,
            Problem::Corrupt => self.sum.corrupt += 1,
            Problem::Invalid(_) => self.sum.invalid += 1,
        }
    }

    /// A damaged page or node: counted and reported.
    pub fn damaged_node(&mut self, path: &str, part: Part, cid: &str, problem: Problem) {
        self.count(&problem);
        self.report(Damage {
            path: path.to_string(),
            part,
            blocks: DamagedBlock::node(cid),
            cid: cid.to_string(),
            problem,
        });
    }

    fn progress(&mut self) {
        if self.last_progress.elapsed() >= Duration::from_millis(200) {
            self.last_progress = Instant::now();
            self.sum.elapsed = self.started.elapsed();
            (self.on)(Event::Progress(&self.sum));
        }
    }

    pub fn finish(mut self) -> Summary {
        self.sum.elapsed = self.started.elapsed();
        self.sum
    }

    /// The link-group table under `top`: its records, by id (bounded by the number of
    /// hard-linked files). Damaged pages are reported.
    async fn link_groups(&mut self, top: &str) -> Result<Arc<Groups>, CheckError> {
        if let Some((t, g)) = &self.groups
            && t == top
        {
            return Ok(g.clone());
        }
        let mut groups = Groups::new();
        let mut pages = vec![top.to_string()];
        while let Some(cid) = pages.pop() {
            self.sum.blocks += 1;
            let got = self.asker.node(&cid).await?;
            let decoded = got.and_then(|b| {
                self.sum.bytes += b.len() as u64;
                page::decode::<InodeRecord>(&b, self.crypto)
                    .map_err(|e| Problem::Invalid(e.to_string()))
            });
            match decoded {
                Ok(Page::Leaf(records)) => {
                    for r in records {
                        let file = match &r.kind {
                            EntryKind::Inode(i) => file_of(&i.kind).unwrap_or((0, None)),
                            _ => (0, None),
                        };
                        groups.insert(r.id, file);
                    }
                }
                Ok(Page::Branch(b)) => pages.extend(b.children.into_iter().map(|c| c.node)),
                Err(problem) => self.damaged_node("/", Part::LinkTable, &cid, problem),
            }
        }
        let groups = Arc::new(groups);
        self.groups = Some((top.to_string(), groups.clone()));
        Ok(groups)
    }

    /// Checks the tree whose root directory's top page is `dir` (and link-group table
    /// `inodes`), naming its files under `prefix` (`/` for the current tree).
    pub async fn tree(
        &mut self,
        prefix: &str,
        dir: &str,
        inodes: Option<&str>,
    ) -> Result<(), CheckError> {
        let groups = match inodes {
            Some(t) => self.link_groups(t).await?,
            None => Arc::new(Groups::new()),
        };
        let asker = self.asker;
        let crypto = self.crypto;
        let read_data = asker.opts.read_data;
        let mut pages: Vec<PendingPage> = Vec::new();
        let mut this_tree: Vec<String> = Vec::new();
        if !self.walked.contains(dir) {
            self.sum.directories += 1;
            pages.push(PendingPage {
                path: prefix.into(),
                cid: dir.to_string(),
                table: false,
            });
        }
        let mut files: VecDeque<PendingFile> = VecDeque::new();
        let mut running: FuturesUnordered<BoxFuture<'a, Done>> = FuturesUnordered::new();
        let width = asker.opts.concurrency.max(1) * 2;
        loop {
            while running.len() < width {
                // The files of the pages already read go first: the walk stays narrow.
                if let Some(f) = files.pop_front() {
                    self.sum.files += 1;
                    if let Some(job) = self.file_job(f, read_data) {
                        running.push(job);
                    }
                } else if let Some(p) = pages.pop() {
                    this_tree.push(p.cid.clone());
                    running.push(Box::pin(async move {
                        let got = asker.node(&p.cid).await;
                        Done::Page(p, got)
                    }));
                } else {
                    break;
                }
            }
            let Some(done) = running.next().await else {
                break;
            };
            match done {
                Done::Page(p, got) => {
                    self.sum.blocks += 1;
                    let decoded = got?.and_then(|b| {
                        self.sum.bytes += b.len() as u64;
                        page::decode::<Entry>(&b, crypto)
                            .map_err(|e| Problem::Invalid(e.to_string()))
                    });
                    let page = match decoded {
                        Ok(page) => page,
                        Err(problem) => {
                            let part = if p.table {
                                Part::LinkTable
                            } else {
                                Part::Directory
                            };
                            self.damaged_node(&p.path, part, &p.cid, problem);
                            continue;
                        }
                    };
                    match page {
                        Page::Branch(b) => {
                            for c in b.children {
                                if !self.walked.contains(&c.node) {
                                    pages.push(PendingPage {
                                        path: p.path.clone(),
                                        cid: c.node,
                                        table: false,
                                    });
                                }
                            }
                        }
                        Page::Leaf(entries) => {
                            for e in entries {
                                let path = join(&p.path, e.name.as_bytes());
                                match e.kind {
                                    EntryKind::Inode(i) => match i.kind {
                                        InodeKind::Dir { top } => {
                                            if !self.walked.contains(&top) {
                                                self.sum.directories += 1;
                                                pages.push(PendingPage {
                                                    path,
                                                    cid: top,
                                                    table: false,
                                                });
                                            }
                                        }
                                        kind => {
                                            if let Some((size, stored)) = file_of(&kind) {
                                                files.push_back(PendingFile { path, size, stored });
                                            }
                                        }
                                    },
                                    EntryKind::Link(g) => {
                                        let (size, stored) =
                                            groups.get(&g).cloned().unwrap_or((0, None));
                                        files.push_back(PendingFile { path, size, stored });
                                    }
                                    EntryKind::Unknown(_) => {}
                                }
                            }
                        }
                    }
                }
                Done::File(path, key, found) => self.file_done(path, key, found?),
            }
            self.progress();
        }
        for p in this_tree {
            if self.walked.len() >= REMEMBERED {
                break;
            }
            self.walked.insert(p);
        }
        Ok(())
    }

    /// The check of one file's blocks, or `None` when there is nothing to ask (empty, or
    /// checked before: its damage, if any, reported again for this path).
    fn file_job(&mut self, f: PendingFile, read_data: bool) -> Option<BoxFuture<'a, Done>> {
        let stored = f.stored?;
        let text = match &stored {
            FileContent::Whole(c) => c.cid.clone(),
            FileContent::Chunks(top) => top.clone(),
        };
        let cid = match crate::integrity::parse(&text) {
            Ok(cid) => cid,
            Err(e) => {
                self.sum.invalid += 1;
                self.report(Damage {
                    path: f.path.to_string(),
                    part: Part::File,
                    cid: text,
                    problem: Problem::Invalid(e.to_string()),
                    blocks: Vec::new(),
                });
                return None;
            }
        };
        let key = (cid, f.size);
        if self.intact.contains(&key) {
            return None;
        }
        if let Some((block, problem, blocks)) = self.damaged.get(&key) {
            let d = Damage {
                path: f.path.to_string(),
                part: Part::File,
                cid: block.clone(),
                problem: problem.clone(),
                blocks: blocks.clone(),
            };
            self.report(d);
            return None;
        }
        let asker = self.asker;
        let crypto = self.crypto;
        let path = f.path;
        let size = f.size;
        Some(match stored {
            FileContent::Whole(c) => {
                let sealed = match (crypto, &c.salt) {
                    (TreeCrypto::Sealed(keys), Some(salt)) if read_data => Some(Sealed {
                        key: VersionKey::new(keys, salt),
                        total: sealed_len(size),
                    }),
                    _ => None,
                };
                // The stored object's length: what a single-block file's block holds.
                let stored_len = if c.salt.is_some() {
                    sealed_len(size)
                } else {
                    size
                };
                Box::pin(async move {
                    let found = asker
                        .content(&c.cid, cid, 0, sealed.as_ref(), 0, Some(stored_len))
                        .await;
                    Done::File(path, key, found)
                })
            }
            FileContent::Chunks(_) => Box::pin(async move {
                let found = asker.chunked(&cid, size, crypto).await;
                Done::File(path, key, found)
            }),
        })
    }

    fn file_done(&mut self, path: Arc<str>, key: (Cid, u64), found: Found) {
        self.sum.blocks += found.blocks;
        self.sum.bytes += found.bytes;
        self.sum.missing += found.missing;
        self.sum.corrupt += found.corrupt;
        self.sum.invalid += found.invalid;
        match found.damage {
            Some((block, problem)) => {
                if self.damaged.len() < REMEMBERED {
                    let blocks = found.damaged.clone();
                    self.damaged
                        .insert(key, (block.clone(), problem.clone(), blocks));
                }
                self.report(Damage {
                    path: path.to_string(),
                    part: Part::File,
                    cid: block,
                    problem,
                    blocks: found.damaged,
                });
            }
            None if self.intact.len() < REMEMBERED => {
                self.intact.insert(key);
            }
            None => {}
        }
    }
}
