//! The blocks of one file version, asked of the node: a v2 content DAG (§6.2), or a
//! format-3 chunk table and its chunks (§13). Presence (`block/stat`), or with `read_data`
//! the bytes checked against the CID, and in an encrypted tree each chunk opened with the
//! key, index and length its place gives, so a chunk that hashes right but was moved, cut
//! or sealed for another file is reported as unreadable.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use futures::future::BoxFuture;
use ipld_core::cid::Cid;

use super::{DamagedBlock, Leaf, Options, Problem};
use crate::format::TreeCrypto;
use crate::format::chunks::{self, ChunkRef};
use crate::format::page::{self, Page};
use crate::format::seal::{SEALED_CHUNK, VersionKey};
use crate::integrity::dagpb::FileNode;
use crate::integrity::{DAG_PB_CODEC, IntegrityError, MAX_DAG_DEPTH, RAW_CODEC};
use crate::storage::{NodeClient, StorageError};

use super::CheckError;

/// Largest page or root node read.
pub(super) const MAX_NODE_BYTES: u64 = 64 << 20;
/// Blocks remembered as checked (intact or damaged), so that what versions share is asked
/// for once (bounded: past it, blocks are asked for again).
pub(super) const REMEMBERED: usize = 100_000;

/// One block's outcome.
pub(super) type Got<T> = Result<Result<T, Problem>, CheckError>;

pub(super) fn classify<T>(r: Result<T, IntegrityError>) -> Got<T> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(IntegrityError::Corrupt { .. }) => Ok(Err(Problem::Corrupt)),
        Err(IntegrityError::Invalid { reason, .. }) => Ok(Err(Problem::Invalid(reason))),
        Err(IntegrityError::TooLarge { limit, .. }) => {
            Ok(Err(Problem::Invalid(format!("larger than {limit} bytes"))))
        }
        Err(IntegrityError::Storage(e)) => storage(e),
    }
}

fn storage<T>(e: StorageError) -> Got<T> {
    match e {
        StorageError::Node {
            path,
            status: 404 | 405 | 501,
            ..
        }
        | StorageError::Unsupported { path, .. } => Err(CheckError::Unsupported(path)),
        // The node's definite answer about this block: it does not have it.
        StorageError::Node { message, .. } => Ok(Err(Problem::Missing(message))),
        StorageError::Timeout { after, .. } => Ok(Err(Problem::Missing(format!(
            "not given within {} s",
            after.as_secs()
        )))),
        other => Err(CheckError::Node(other)),
    }
}

/// What one file's content check found.
#[derive(Default)]
pub(super) struct Found {
    pub blocks: u64,
    pub bytes: u64,
    /// The first damaged block and its problem.
    pub damage: Option<(String, Problem)>,
    /// Every damaged block.
    pub damaged: Vec<DamagedBlock>,
    pub missing: u64,
    pub corrupt: u64,
    pub invalid: u64,
}

impl Found {
    fn add(&mut self, cid: &Cid, problem: Problem, leaf: Option<Leaf>) {
        self.damaged.push(DamagedBlock {
            cid: cid.to_string(),
            leaf,
        });
        match problem {
            Problem::Missing(_) => self.missing += 1,
            Problem::Corrupt => self.corrupt += 1,
            Problem::Invalid(_) => self.invalid += 1,
        }
        if self.damage.is_none() {
            self.damage = Some((cid.to_string(), problem));
        }
    }

    /// A damage found (and counted) by an earlier file: reported for this one too.
    fn again(&mut self, cid: &Cid, problem: Problem, leaf: Option<Leaf>) {
        self.damaged.push(DamagedBlock {
            cid: cid.to_string(),
            leaf,
        });
        if self.damage.is_none() {
            self.damage = Some((cid.to_string(), problem));
        }
    }

    fn merge(&mut self, c: Found) {
        self.blocks += c.blocks;
        self.bytes += c.bytes;
        self.missing += c.missing;
        self.corrupt += c.corrupt;
        self.invalid += c.invalid;
        self.damaged.extend(c.damaged);
        if self.damage.is_none() {
            self.damage = c.damage;
        }
    }
}

/// A chunk as its place in a file makes it (the same block at another index or length is
/// another check).
type ChunkPlace = (Cid, u64, u64);

/// Table pages and chunks already checked, shared by the files of every version: a block
/// two versions share is asked for once, and its damage is reported for each.
#[derive(Default)]
struct Checked {
    intact: HashSet<ChunkPlace>,
    damaged: HashMap<ChunkPlace, Problem>,
    /// Table pages (with the file size they were checked for) and what their subtree had
    /// damaged.
    pages: HashMap<(Cid, u64), PageOutcome>,
}

type PageOutcome = (Vec<DamagedBlock>, Option<(String, Problem)>);

/// Node requests, bounded.
pub(super) struct Asker<'a> {
    pub node: &'a NodeClient,
    pub opts: &'a Options,
    pub permits: tokio::sync::Semaphore,
    checked: Mutex<Checked>,
}

impl<'a> Asker<'a> {
    pub fn new(node: &'a NodeClient, opts: &'a Options) -> Asker<'a> {
        Asker {
            node,
            opts,
            permits: tokio::sync::Semaphore::new(opts.concurrency.max(1)),
            checked: Mutex::new(Checked::default()),
        }
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, IntegrityError>>,
    ) -> Result<T, IntegrityError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        match tokio::time::timeout(self.opts.block_timeout, f).await {
            Ok(r) => r,
            Err(_) => Err(IntegrityError::Storage(StorageError::Timeout {
                path: "block".into(),
                after: self.opts.block_timeout,
            })),
        }
    }

    /// A page or root node, checked against its CID.
    pub async fn node(&self, cid: &str) -> Got<bytes::Bytes> {
        classify(
            self.timed(crate::integrity::object(self.node, cid, MAX_NODE_BYTES))
                .await,
        )
    }

    /// A raw block: its presence and size (`block/stat`), or with `read_data` its bytes
    /// checked against the CID (`None` when only asked).
    async fn raw(&self, cid: &Cid) -> Got<(u64, Option<bytes::Bytes>)> {
        if self.opts.read_data {
            let got = classify(self.timed(crate::integrity::block(self.node, cid)).await)?;
            return Ok(got.map(|b| (b.len() as u64, Some(b))));
        }
        let stat = self
            .timed(async { Ok(self.node.block_stat(&cid.to_string()).await?) })
            .await;
        Ok(classify(stat)?.map(|s| (s.size, None)))
    }

    /// Every block of a content DAG: presence, or bytes checked against the CID. Dag-pb
    /// nodes are always fetched (their links are needed). `object` is the content's CID,
    /// `start` and `len`: where the block's bytes lie in it (`len` as its parent declares).
    pub fn content<'s>(
        &'s self,
        object: &'s str,
        cid: Cid,
        depth: u32,
        sealed: Option<&'s Sealed>,
        start: u64,
        len: Option<u64>,
    ) -> BoxFuture<'s, Result<Found, CheckError>> {
        Box::pin(async move {
            let mut found = Found::default();
            let leaf = len.map(|len| Leaf {
                object: object.to_string(),
                start,
                len,
            });
            match cid.codec() {
                RAW_CODEC => match self.raw(&cid).await? {
                    Ok((size, bytes)) => {
                        found.blocks += 1;
                        found.bytes += size;
                        if let (Some(s), Some(b)) = (sealed, bytes)
                            && let Err(p) = s.open(start, &b)
                        {
                            found.add(&cid, p, leaf);
                        }
                    }
                    Err(p) => found.add(&cid, p, leaf),
                },
                DAG_PB_CODEC if depth <= MAX_DAG_DEPTH => {
                    let got = classify(self.timed(crate::integrity::block(self.node, &cid)).await)?;
                    let block = match got {
                        Ok(b) => b,
                        Err(p) => {
                            found.add(&cid, p, None);
                            return Ok(found);
                        }
                    };
                    found.blocks += 1;
                    found.bytes += block.len() as u64;
                    let node = match FileNode::decode(&block) {
                        Ok(n) => n,
                        Err(r) => {
                            found.add(&cid, Problem::Invalid(r.to_string()), None);
                            return Ok(found);
                        }
                    };
                    if sealed.is_some() && node.blocksizes.len() != node.links.len() {
                        found.add(
                            &cid,
                            Problem::Invalid("blocksizes and links differ in number".into()),
                            None,
                        );
                        return Ok(found);
                    }
                    // Where each child's bytes start in the object (for the chunk index).
                    let mut at = start.saturating_add(node.data_len);
                    let mut starts = Vec::with_capacity(node.links.len());
                    for i in 0..node.links.len() {
                        let size = node.blocksizes.get(i).copied();
                        starts.push((at, size));
                        at = at.saturating_add(size.unwrap_or(0));
                    }
                    let children = futures::future::try_join_all(
                        node.links.iter().zip(starts).map(|(l, (from, size))| {
                            self.content(object, *l, depth + 1, sealed, from, size)
                        }),
                    )
                    .await?;
                    for c in children {
                        found.merge(c);
                    }
                }
                DAG_PB_CODEC => found.add(
                    &cid,
                    Problem::Invalid("the DAG is deeper than pxfs allows".into()),
                    None,
                ),
                other => found.add(
                    &cid,
                    Problem::Invalid(format!("codec 0x{other:x} is not file content")),
                    None,
                ),
            }
            Ok(found)
        })
    }

    /// A chunked file version (§13): every page of its chunk table and every chunk it
    /// names (holes have none and are fine). A table that names a chunk past the end of a
    /// `size`-byte file is unreadable.
    pub async fn chunked(
        &self,
        top: &Cid,
        size: u64,
        crypto: &TreeCrypto,
    ) -> Result<Found, CheckError> {
        self.table(*top, size, crypto).await
    }

    /// The table page `cid` and everything below it. A page checked before (another
    /// version of the file shares it) is not asked for again: its damage, if any, is
    /// reported for this file too.
    fn table<'s>(
        &'s self,
        cid: Cid,
        size: u64,
        crypto: &'s TreeCrypto,
    ) -> BoxFuture<'s, Result<Found, CheckError>> {
        Box::pin(async move {
            let mut found = Found::default();
            if let Some((damaged, first)) = self.known_page(&(cid, size)) {
                found.damaged = damaged;
                found.damage = first;
                return Ok(found);
            }
            match self.node(&cid.to_string()).await? {
                Err(p) => found.add(&cid, p, None),
                Ok(bytes) => {
                    found.blocks += 1;
                    found.bytes += bytes.len() as u64;
                    match decode_table(&bytes, size, crypto) {
                        Err(p) => found.add(&cid, p, None),
                        Ok(Page::Branch(b)) => {
                            let mut children = Vec::new();
                            for c in b.children {
                                match crate::integrity::parse(&c.node) {
                                    Ok(child) => children.push(child),
                                    Err(e) => {
                                        found.add(&cid, Problem::Invalid(e.to_string()), None)
                                    }
                                }
                            }
                            let below = children.into_iter().map(|c| self.table(c, size, crypto));
                            for c in futures::future::try_join_all(below).await? {
                                found.merge(c);
                            }
                        }
                        Ok(Page::Leaf(items)) => {
                            let checks = items.iter().map(|c| self.chunk(c, size, crypto));
                            for c in futures::future::try_join_all(checks).await? {
                                found.merge(c);
                            }
                        }
                    }
                }
            }
            self.remember_page((cid, size), &found);
            Ok(found)
        })
    }

    /// One chunk at its place: present, or read, checked against its CID and opened as
    /// chunk `i` of `min(131,072, size − i × 131,072)` bytes (§13.3).
    async fn chunk(
        &self,
        c: &ChunkRef,
        size: u64,
        crypto: &TreeCrypto,
    ) -> Result<Found, CheckError> {
        let mut found = Found::default();
        let cid = match crate::integrity::parse(&c.cid) {
            Ok(cid) => cid,
            Err(e) => {
                found.invalid += 1;
                found.damage = Some((c.cid.clone(), Problem::Invalid(e.to_string())));
                return Ok(found);
            }
        };
        let index = c.index();
        let len = chunks::chunk_len(size, index).unwrap_or(0);
        let place = (cid, index, len);
        let stored = match crypto {
            TreeCrypto::Sealed(_) => len + crate::format::seal::TAG as u64,
            TreeCrypto::Plain => len,
        };
        let leaf = Some(Leaf {
            object: c.cid.clone(),
            start: 0,
            len: stored,
        });
        if let Some(known) = self.known(&place) {
            if let Some(p) = known {
                found.again(&cid, p, leaf);
            }
            return Ok(found);
        }
        let problem = match self.raw(&cid).await? {
            Err(p) => Some(p),
            Ok((got, bytes)) => {
                found.blocks += 1;
                found.bytes += got;
                let opened = match (bytes, crypto, &c.salt) {
                    (None, _, _) => Ok(()),
                    (Some(b), TreeCrypto::Sealed(keys), Some(salt)) => {
                        chunks::open_chunk(keys, salt, index, size, &b).map(|_| ())
                    }
                    (Some(b), _, _) => {
                        chunks::open_plain_chunk(index, size, b.to_vec()).map(|_| ())
                    }
                };
                opened.err().map(|_| {
                    Problem::Invalid(format!(
                        "chunk {index} does not open at its place (changed, moved or cut)"
                    ))
                })
            }
        };
        self.remember(place, problem.clone());
        if let Some(p) = problem {
            found.add(&cid, p, leaf);
        }
        Ok(found)
    }

    /// A table page's subtree checked before: its damaged blocks and the first damage.
    fn known_page(&self, page: &(Cid, u64)) -> Option<PageOutcome> {
        let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked.pages.get(page).cloned()
    }

    fn remember_page(&self, page: (Cid, u64), found: &Found) {
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.pages.len() < REMEMBERED {
            checked
                .pages
                .insert(page, (found.damaged.clone(), found.damage.clone()));
        }
    }

    /// `Some(None)`: checked and intact; `Some(Some(p))`: checked and damaged.
    fn known(&self, place: &ChunkPlace) -> Option<Option<Problem>> {
        let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.intact.contains(place) {
            return Some(None);
        }
        checked.damaged.get(place).map(|p| Some(p.clone()))
    }

    fn remember(&self, place: ChunkPlace, problem: Option<Problem>) {
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        match problem {
            None if checked.intact.len() < REMEMBERED => {
                checked.intact.insert(place);
            }
            Some(p) if checked.damaged.len() < REMEMBERED => {
                checked.damaged.insert(place, p);
            }
            _ => {}
        }
    }
}

/// A chunk table page, refused when it names a chunk past the end of a `size`-byte file
/// (a table cannot lengthen a file, §13.2).
fn decode_table(bytes: &[u8], size: u64, crypto: &TreeCrypto) -> Result<Page<ChunkRef>, Problem> {
    let page =
        page::decode::<ChunkRef>(bytes, crypto).map_err(|e| Problem::Invalid(e.to_string()))?;
    if let Page::Leaf(items) = &page
        && let Some(c) = items.last()
        && c.index() >= chunks::chunk_count(size)
    {
        return Err(Problem::Invalid(format!(
            "the chunk table names chunk {} of a {size}-byte file",
            c.index()
        )));
    }
    Ok(page)
}

/// What opening a sealed v2 file's chunks needs: its version key and the stored length.
pub(super) struct Sealed {
    pub key: VersionKey,
    pub total: u64,
}

impl Sealed {
    /// Opens the leaf at `start` (bytes of the stored object) as its chunk.
    pub fn open(&self, start: u64, leaf: &[u8]) -> Result<(), Problem> {
        let end = start + leaf.len() as u64;
        let last = end == self.total;
        if !start.is_multiple_of(SEALED_CHUNK as u64) || end > self.total {
            return Err(Problem::Invalid(format!(
                "a leaf at byte {start} is not one sealed chunk of a {}-byte object",
                self.total
            )));
        }
        self.key
            .open_chunk(start / SEALED_CHUNK as u64, leaf, last)
            .map(|_| ())
            .map_err(|_| {
                Problem::Invalid(
                    "a sealed chunk does not open with the file's key (changed, moved or cut)"
                        .into(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::seal::{ContentSalt, PLAIN_CHUNK};
    use crate::format::{DataKey, TreeKeys};

    fn sealed(total: u64) -> Sealed {
        let keys = TreeKeys::derive(&DataKey::from_bytes([9; 32]));
        Sealed {
            key: VersionKey::new(&keys, &ContentSalt([3; 32])),
            total,
        }
    }

    #[test]
    fn a_chunk_opens_only_at_its_own_position_with_its_end_flag() {
        let s = sealed(0);
        let first = s.key.seal_chunk(0, &[1; PLAIN_CHUNK], false).unwrap();
        let last = s.key.seal_chunk(1, b"tail", true).unwrap();
        let total = (first.len() + last.len()) as u64;
        let s = Sealed { total, ..s };
        let at = SEALED_CHUNK as u64;
        assert_eq!(s.open(0, &first), Ok(()));
        assert_eq!(s.open(at, &last), Ok(()));
        // Swapped, or the object cut after the first chunk (its end flag is then wrong).
        assert!(matches!(s.open(0, &last), Err(Problem::Invalid(_))));
        assert!(matches!(s.open(at, &first), Err(Problem::Invalid(_))));
        let cut = Sealed {
            total: first.len() as u64,
            ..sealed(0)
        };
        assert!(matches!(cut.open(0, &first), Err(Problem::Invalid(_))));
        // Not on a chunk boundary.
        assert!(matches!(s.open(7, &last), Err(Problem::Invalid(_))));
    }
}
