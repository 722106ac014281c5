//! Paged tables as content-defined B-trees ("prolly trees", FORMAT.md §5): building the
//! pages of a sorted record set, looking one key up, applying inserts and deletes by
//! rewriting only the pages the change reaches, and checking a tree's invariants.
//!
//! The shape is a function of the record set: [`update`] gives exactly the pages
//! [`build`] gives for the resulting set. It re-chunks from the start of the first page an
//! edit touches until the new cuts meet the old ones again (after any cut the chunker's
//! state is empty, so once both sequences cut at the same place past the last edit, the
//! rest of the level is unchanged), then does the same one level up with the replaced
//! children, up to the top.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use super::keys::TreeCrypto;
use super::page::{self, Branch, ChildRef, Page, Record};
use super::store::PageStore;
use super::{FormatError, Result};

/// A directory with at most this many entries (and [`SMALL_BYTES`]) is one leaf.
pub const SMALL_ENTRIES: usize = 256;
/// A directory whose entries' sizes sum to at most this (and [`SMALL_ENTRIES`]) is one leaf.
pub const SMALL_BYTES: usize = 32_768;
/// Rule 2 of §5: a page ends once its items' sizes (CIDs included) sum to at least this.
pub const PAGE_BYTES: usize = 16_384;

/// Builds the pages of `records` (sorted by key, keys unique) and returns the top's CID.
pub fn build<R: Record>(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    records: Vec<R>,
) -> Result<String> {
    Tree::new(store, crypto).build(records)
}

/// The record with `key`, fetching one page per level.
pub fn lookup<R: Record>(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
    key: &[u8],
) -> Result<Option<R>> {
    let mut t: Tree<R, _> = Tree::new(store, crypto);
    let mut page = t.load(top)?;
    loop {
        let next = match &*page {
            Page::Leaf(records) => {
                return Ok(records
                    .binary_search_by(|r| r.key().cmp(key))
                    .ok()
                    .map(|i| records[i].clone()));
            }
            Page::Branch(b) => match b.children.partition_point(|c| c.first.as_slice() <= key) {
                0 => return Ok(None),
                i => (b.level, b.children[i - 1].clone()),
            },
        };
        page = t.load_child(next.0, &next.1)?;
    }
}

/// Every record, in key order (each page fetched once).
pub fn records<R: Record>(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
) -> Result<Vec<R>> {
    Tree::new(store, crypto).records(top)
}

/// Applies `edits` (key → new record, or `None` to delete; deleting an absent key does
/// nothing) and returns the new top's CID. Only the pages on the changed paths are put.
pub fn update<R: Record>(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
    edits: BTreeMap<Vec<u8>, Option<R>>,
) -> Result<String> {
    for (k, v) in &edits {
        if let Some(r) = v
            && r.key() != k.as_slice()
        {
            return Err(FormatError::invalid(
                "an edit's key is not its record's key",
            ));
        }
    }
    Ok(update_tracked(store, crypto, top, edits)?.top)
}

/// What [`update_tracked`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Updated {
    /// The new top's CID.
    pub top: String,
    /// Pages of the old tree the new one no longer refers to, and pages this call put that
    /// the new tree does not refer to (levels above a new top that shrank to one child).
    /// The new tree's pages are the old ones and those put, less these.
    pub removed: Vec<String>,
}

/// [`update`], also telling which pages left the tree: a caller that knows the old tree's
/// pages gets the new tree's without reading it whole.
pub fn update_tracked<R: Record>(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
    edits: BTreeMap<Vec<u8>, Option<R>>,
) -> Result<Updated> {
    for (k, v) in &edits {
        if let Some(r) = v
            && r.key() != k.as_slice()
        {
            return Err(FormatError::invalid(
                "an edit's key is not its record's key",
            ));
        }
    }
    let mut t = Tree::new(store, crypto);
    let new_top = t.update(top, edits)?;
    // A page put again (an unchanged page re-chunked) stays; one passed over above a
    // shrunk top goes even if it was put.
    let mut removed: Vec<String> = t
        .removed
        .into_iter()
        .filter(|c| !t.put.contains(c))
        .collect();
    removed.extend(t.dropped);
    removed.sort();
    removed.dedup();
    Ok(Updated {
        top: new_top,
        removed,
    })
}

type SizedKey = (usize, Vec<u8>);

/// What [`check`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TreeStats {
    pub records: u64,
    pub pages: u64,
    /// Levels (1 for a single leaf).
    pub depth: u32,
    /// Bytes of all pages.
    pub bytes: u64,
}

/// Checks every invariant of §5 over the whole tree: each page valid, keys strictly
/// increasing across pages, counts and first keys right, levels consistent, every page cut
/// where the rules cut and nowhere else, no empty page but an empty directory's leaf, and
/// a small directory as one leaf.
pub fn check<R: Record>(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    top: &str,
) -> Result<TreeStats> {
    let bad = |m: String| Err(FormatError::invalid(format!("page tree: {m}")));
    let mut stats = TreeStats::default();
    let mut level: Vec<(ChildRef, Rc<Page<R>>)> = Vec::new();
    let mut t: Tree<R, _> = Tree::new(store, crypto);
    let top_page = t.load(top)?;
    stats.bytes += t.store.get(top)?.len() as u64;
    let top_ref = ChildRef {
        first: top_page.first_key().unwrap_or_default().to_vec(),
        node: top.into(),
        count: top_page.count(),
    };
    level.push((top_ref, top_page.clone()));
    let mut all: Vec<R> = Vec::new();
    loop {
        stats.pages += level.len() as u64;
        stats.depth += 1;
        let lvl = level[0].1.level();
        // Each page's items as (size, key), for the cut rules.
        let sizes_and_keys: Vec<Vec<SizedKey>> = level
            .iter()
            .map(|(_, p)| match &**p {
                Page::Leaf(v) => v
                    .iter()
                    .map(|r| (page::record_size(r), r.key().to_vec()))
                    .collect(),
                Page::Branch(b) => b
                    .children
                    .iter()
                    .map(|c| (page::child_size::<R>(c), c.first.clone()))
                    .collect(),
            })
            .collect();
        let small_top = level.len() == 1 && lvl == 0 && {
            let items = &sizes_and_keys[0];
            items.len() <= R::SMALL_ENTRIES
                && items.iter().map(|i| i.0).sum::<usize>() <= R::SMALL_BYTES
        };
        if !small_top {
            for (n, items) in sizes_and_keys.iter().enumerate() {
                if items.is_empty() {
                    return bad("an empty page in a paged table".into());
                }
                let mut acc = 0;
                for (i, (size, key)) in items.iter().enumerate() {
                    acc += size;
                    let cut = crypto.boundary(key, lvl) || acc >= PAGE_BYTES;
                    let last_item = i + 1 == items.len();
                    let last_node = n + 1 == level.len();
                    if cut != last_item && !(last_item && last_node) {
                        return bad(format!(
                            "level {lvl} page {n} is cut at the wrong item ({i})"
                        ));
                    }
                }
            }
        }
        if level.len() == 1 && top_page.level() != lvl {
            return bad("a single-page level below the top".into());
        }
        if lvl == 0 {
            for (_, p) in &level {
                if let Page::Leaf(v) = &**p {
                    for r in v {
                        if all.last().is_some_and(|l| l.key() >= r.key()) {
                            return bad("keys are not increasing across leaves".into());
                        }
                        all.push(r.clone());
                    }
                }
            }
            break;
        }
        let mut next = Vec::new();
        for (_, p) in &level {
            if let Page::Branch(b) = &**p {
                for c in &b.children {
                    let child = t.load_child(b.level, c)?;
                    stats.bytes += t.store.get(&c.node)?.len() as u64;
                    next.push((c.clone(), child));
                }
            }
        }
        level = next;
    }
    stats.records = all.len() as u64;
    if top_page.level() > 0 {
        let total: usize = all.iter().map(page::record_size).sum();
        if all.len() <= R::SMALL_ENTRIES && total <= R::SMALL_BYTES {
            return bad("a small table is paged".into());
        }
    }
    Ok(stats)
}

/// The store, the tree's crypto, and the pages loaded or made during one call.
struct Tree<'s, R, S> {
    store: &'s mut S,
    crypto: &'s TreeCrypto,
    cache: HashMap<String, Rc<Page<R>>>,
    /// Old pages an update replaced, pages it put, and pages it put but passed over
    /// (for [`Updated::removed`]).
    removed: Vec<String>,
    put: std::collections::HashSet<String>,
    dropped: Vec<String>,
}

/// The item type of one level: records in leaves, child references in branches.
trait Level<R: Record> {
    type Item: Clone + PartialEq;
    fn key(i: &Self::Item) -> &[u8];
    fn size(i: &Self::Item) -> usize;
    fn items(p: &Page<R>) -> Result<&[Self::Item]>;
    fn page(level: u8, items: Vec<Self::Item>) -> Page<R>;
}

struct Leaves;
struct Branches;

impl<R: Record> Level<R> for Leaves {
    type Item = R;
    fn key(i: &R) -> &[u8] {
        i.key()
    }
    fn size(i: &R) -> usize {
        page::record_size(i)
    }
    fn items(p: &Page<R>) -> Result<&[R]> {
        match p {
            Page::Leaf(v) => Ok(v),
            Page::Branch(_) => Err(FormatError::invalid(
                "page tree: a branch where a leaf belongs",
            )),
        }
    }
    fn page(_: u8, items: Vec<R>) -> Page<R> {
        Page::Leaf(items)
    }
}

impl<R: Record> Level<R> for Branches {
    type Item = ChildRef;
    fn key(i: &ChildRef) -> &[u8] {
        &i.first
    }
    fn size(i: &ChildRef) -> usize {
        page::child_size::<R>(i)
    }
    fn items(p: &Page<R>) -> Result<&[ChildRef]> {
        match p {
            Page::Branch(b) => Ok(&b.children),
            Page::Leaf(_) => Err(FormatError::invalid(
                "page tree: a leaf where a branch belongs",
            )),
        }
    }
    fn page(level: u8, children: Vec<ChildRef>) -> Page<R> {
        Page::Branch(Branch {
            level,
            count: children.iter().map(|c| c.count).sum(),
            children,
        })
    }
}

/// Cuts one level's item stream into pages (rules 1–3 of §5).
struct Chunker<I> {
    level: u8,
    buf: Vec<I>,
    acc: usize,
    out: Vec<ChildRef>,
}

impl<I> Chunker<I> {
    fn new(level: u8) -> Chunker<I> {
        Chunker {
            level,
            buf: Vec::new(),
            acc: 0,
            out: Vec::new(),
        }
    }

    fn push<R: Record, L: Level<R, Item = I>, S: PageStore>(
        &mut self,
        t: &mut Tree<R, S>,
        item: I,
    ) -> Result<()> {
        let cut = t.crypto.boundary(L::key(&item), self.level);
        self.acc += L::size(&item);
        self.buf.push(item);
        if cut || self.acc >= PAGE_BYTES {
            self.flush::<R, L, S>(t)?;
        }
        Ok(())
    }

    fn flush<R: Record, L: Level<R, Item = I>, S: PageStore>(
        &mut self,
        t: &mut Tree<R, S>,
    ) -> Result<()> {
        if !self.buf.is_empty() {
            let page = L::page(self.level, std::mem::take(&mut self.buf));
            self.out.push(t.put(page)?);
            self.acc = 0;
        }
        Ok(())
    }
}

/// A position at one level of the old tree: the branches above (with the child index
/// taken in each) and the current node.
struct Cursor<R> {
    stack: Vec<(Rc<Page<R>>, usize)>,
    node: Rc<Page<R>>,
    node_ref: ChildRef,
    /// Branches between the top and the cursor's level.
    depth: usize,
}

impl<R: Record> Cursor<R> {
    /// The node at `level` whose key range holds `key` (the first node if `key` precedes
    /// every key).
    fn seek<S: PageStore>(
        t: &mut Tree<R, S>,
        top: &str,
        level: u8,
        key: &[u8],
    ) -> Result<Cursor<R>> {
        let page = t.load(top)?;
        let node_ref = ChildRef {
            first: page.first_key().unwrap_or_default().to_vec(),
            node: top.into(),
            count: page.count(),
        };
        let depth = (page.level() - level) as usize;
        let mut cur = Cursor {
            stack: Vec::new(),
            node: page,
            node_ref,
            depth,
        };
        while cur.stack.len() < depth {
            let idx = Branches::items(&cur.node)?
                .partition_point(|c| c.first.as_slice() <= key)
                .saturating_sub(1);
            cur.descend(t, idx)?;
        }
        Ok(cur)
    }

    fn descend<S: PageStore>(&mut self, t: &mut Tree<R, S>, idx: usize) -> Result<()> {
        let parent = self.node.clone();
        let child = Branches::items(&parent)?[idx].clone();
        self.node = t.load_child(parent.level(), &child)?;
        self.node_ref = child;
        self.stack.push((parent, idx));
        Ok(())
    }

    /// Whether a node follows this one on its level.
    fn has_next(&self) -> Result<bool> {
        for (parent, idx) in &self.stack {
            if idx + 1 < Branches::items(parent)?.len() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Moves to the next node of the level; `false` at the end of the level.
    fn advance<S: PageStore>(&mut self, t: &mut Tree<R, S>) -> Result<bool> {
        loop {
            let Some((parent, idx)) = self.stack.pop() else {
                return Ok(false);
            };
            if idx + 1 < Branches::items(&parent)?.len() {
                self.node = parent;
                self.descend(t, idx + 1)?;
                while self.stack.len() < self.depth {
                    self.descend(t, 0)?;
                }
                return Ok(true);
            }
            self.node = parent;
        }
    }
}

impl<'s, R: Record, S: PageStore> Tree<'s, R, S> {
    fn new(store: &'s mut S, crypto: &'s TreeCrypto) -> Self {
        Tree {
            store,
            crypto,
            cache: HashMap::new(),
            removed: Vec::new(),
            put: Default::default(),
            dropped: Vec::new(),
        }
    }

    fn load(&mut self, cid: &str) -> Result<Rc<Page<R>>> {
        if let Some(p) = self.cache.get(cid) {
            return Ok(p.clone());
        }
        let bytes = self.store.get(cid)?;
        let page = Rc::new(page::decode::<R>(&bytes, self.crypto)?);
        self.cache.insert(cid.to_owned(), page.clone());
        Ok(page)
    }

    /// Loads the child `c` of a branch at `level`, checking it is what the item says.
    fn load_child(&mut self, level: u8, c: &ChildRef) -> Result<Rc<Page<R>>> {
        let child = self.load(&c.node)?;
        if child.level() + 1 != level
            || child.count() != c.count
            || child.first_key() != Some(c.first.as_slice())
        {
            return Err(FormatError::invalid(format!(
                "page tree: child {} does not match its item (level, count or first key)",
                c.node
            )));
        }
        Ok(child)
    }

    fn put(&mut self, page: Page<R>) -> Result<ChildRef> {
        let bytes = page::encode(&page, self.crypto)?;
        let node = self.store.put(bytes)?;
        self.put.insert(node.clone());
        let r = ChildRef {
            first: page.first_key().unwrap_or_default().to_vec(),
            node: node.clone(),
            count: page.count(),
        };
        self.cache.insert(node, Rc::new(page));
        Ok(r)
    }

    fn is_small(records: &[R]) -> bool {
        records.len() <= R::SMALL_ENTRIES && {
            let mut sum = 0;
            records.iter().all(|r| {
                sum += page::record_size(r);
                sum <= R::SMALL_BYTES
            })
        }
    }

    fn build(&mut self, records: Vec<R>) -> Result<String> {
        if records.windows(2).any(|p| p[0].key() >= p[1].key()) {
            return Err(FormatError::invalid(
                "records to page are not sorted by key or not unique",
            ));
        }
        if Self::is_small(&records) {
            return Ok(self.put(Page::Leaf(records))?.node);
        }
        let mut ch = Chunker::new(0);
        for r in records {
            ch.push::<R, Leaves, S>(self, r)?;
        }
        ch.flush::<R, Leaves, S>(self)?;
        self.build_up(0, ch.out)
    }

    /// Builds the levels above `level`, whose nodes are `refs` (at least one).
    fn build_up(&mut self, mut level: u8, mut refs: Vec<ChildRef>) -> Result<String> {
        while refs.len() > 1 {
            level = level
                .checked_add(1)
                .ok_or_else(|| FormatError::invalid("page tree deeper than 255 levels"))?;
            let mut ch = Chunker::new(level);
            for r in refs {
                ch.push::<R, Branches, S>(self, r)?;
            }
            ch.flush::<R, Branches, S>(self)?;
            refs = ch.out;
        }
        refs.pop()
            .map(|r| r.node)
            .ok_or_else(|| FormatError::invalid("page tree: a level without nodes"))
    }

    fn records(&mut self, top: &str) -> Result<Vec<R>> {
        let mut out = Vec::new();
        let mut stack = vec![self.load(top)?];
        while let Some(p) = stack.pop() {
            match &*p {
                Page::Leaf(v) => out.extend(v.iter().cloned()),
                Page::Branch(b) => {
                    for c in b.children.iter().rev() {
                        stack.push(self.load_child(b.level, c)?);
                    }
                }
            }
        }
        Ok(out)
    }

    fn update(&mut self, top: &str, edits: BTreeMap<Vec<u8>, Option<R>>) -> Result<String> {
        if edits.is_empty() {
            return Ok(top.to_owned());
        }
        let top_page = self.load(top)?;
        let deletes = edits.values().filter(|v| v.is_none()).count() as u64;
        if top_page.count() <= R::SMALL_ENTRIES as u64 + deletes {
            // The result may be a small directory: rebuild it whole (it is at most the
            // batch's size plus 256 records).
            let old = self.records(top)?;
            self.removed.extend(self.cache.keys().cloned());
            let mut all: BTreeMap<Vec<u8>, R> =
                old.into_iter().map(|r| (r.key().to_vec(), r)).collect();
            for (k, v) in edits {
                match v {
                    Some(r) => all.insert(k, r),
                    None => all.remove(&k),
                };
            }
            return self.build(all.into_values().collect());
        }
        let height = top_page.level();
        let (mut removed, mut added) = self.edit_level::<Leaves>(top, 0, edits)?;
        let mut level = 0;
        loop {
            self.removed.extend(removed.iter().map(|c| c.node.clone()));
            if level == height {
                return self.finish(level, added);
            }
            let old: HashMap<Vec<u8>, ChildRef> =
                removed.into_iter().map(|c| (c.first.clone(), c)).collect();
            let mut edits: BTreeMap<Vec<u8>, Option<ChildRef>> =
                old.keys().map(|k| (k.clone(), None)).collect();
            for c in added {
                if old.get(&c.first) == Some(&c) {
                    edits.remove(&c.first); // the same node again: no change above
                } else {
                    edits.insert(c.first.clone(), Some(c));
                }
            }
            if edits.is_empty() {
                return Ok(top.to_owned());
            }
            level += 1;
            (removed, added) = self.edit_level::<Branches>(top, level, edits)?;
        }
    }

    /// The old top's level was re-chunked into `added`: that is the whole new level.
    fn finish(&mut self, level: u8, added: Vec<ChildRef>) -> Result<String> {
        if added.len() != 1 {
            return self.build_up(level, added);
        }
        // One node: it is the top, unless the levels below shrank to one node too.
        let mut top = added[0].node.clone();
        while let Page::Branch(b) = &*self.load(&top)? {
            if b.children.len() != 1 {
                break;
            }
            self.dropped.push(top);
            top = b.children[0].node.clone();
        }
        Ok(top)
    }

    /// Applies `edits` to the items of one level: re-chunks from the node holding the
    /// first edit until the cuts meet the old ones past the last edit. Returns the old
    /// nodes replaced and the new nodes replacing them.
    fn edit_level<L: Level<R>>(
        &mut self,
        top: &str,
        level: u8,
        edits: BTreeMap<Vec<u8>, Option<L::Item>>,
    ) -> Result<(Vec<ChildRef>, Vec<ChildRef>)> {
        let lo = edits.keys().next().cloned().unwrap_or_default();
        let mut cur = Cursor::seek(self, top, level, &lo)?;
        let mut pending = edits.into_iter().peekable();
        let mut ch: Chunker<L::Item> = Chunker::new(level);
        let mut removed = Vec::new();
        loop {
            if ch.buf.is_empty()
                && let Some((k, _)) = pending.peek()
                && L::items(&cur.node)?
                    .last()
                    .is_some_and(|last| k.as_slice() > L::key(last))
                && cur.has_next()?
            {
                // The new cuts met the old ones before this node and no edit lands in it:
                // it stays. Jump to the node the next edit lands in (edits far apart, e.g.
                // two writes at both ends of a big file's chunk table, then rewrite only
                // the pages around each, not every page between them).
                let k = k.clone();
                let target = Cursor::seek(self, top, level, &k)?;
                if target.node_ref.node != cur.node_ref.node {
                    cur = target;
                } else {
                    // The edit sorts after this node's last item, past its cut: it opens
                    // the next node.
                    cur.advance(self)?;
                }
                continue;
            }
            removed.push(cur.node_ref.clone());
            let node = cur.node.clone();
            for item in L::items(&node)? {
                let key = L::key(item);
                while let Some((k, _)) = pending.peek()
                    && k.as_slice() < key
                {
                    if let Some((_, Some(v))) = pending.next() {
                        ch.push::<R, L, S>(self, v)?;
                    }
                }
                if pending.peek().is_some_and(|(k, _)| k.as_slice() == key) {
                    if let Some((_, Some(v))) = pending.next() {
                        ch.push::<R, L, S>(self, v)?;
                    }
                } else {
                    ch.push::<R, L, S>(self, item.clone())?;
                }
            }
            if !cur.advance(self)? {
                for (_, v) in pending.by_ref() {
                    if let Some(v) = v {
                        ch.push::<R, L, S>(self, v)?;
                    }
                }
                ch.flush::<R, L, S>(self)?;
                break;
            }
            if pending.peek().is_none() && ch.buf.is_empty() {
                break; // cut where the old level cut, nothing left to apply
            }
        }
        Ok((removed, ch.out))
    }
}
