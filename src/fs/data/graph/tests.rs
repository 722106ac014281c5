use std::collections::BTreeSet;

use bytes::Bytes;
use rand::{Rng, SeedableRng};

use super::*;
use crate::fs::store::MemoryStore;

/// A directory page whose entries are subdirectories `nodes` and files stored whole as
/// `data` (each of its object's length), added to `store`; its CID.
async fn node(store: &MemoryStore, nodes: &[String], data: &[String]) -> String {
    use crate::format::{Attrs, Content, Entry, EntryKind, FileContent, Inode, InodeKind, Name};
    let attrs = Attrs {
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        ctime_ns: 0,
    };
    let mut entries = Vec::new();
    for (i, top) in nodes
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .enumerate()
    {
        let kind = InodeKind::Dir { top: top.clone() };
        entries.push((format!("d{i:03}"), kind));
    }
    for (i, cid) in data.iter().collect::<BTreeSet<_>>().into_iter().enumerate() {
        let kind = InodeKind::File {
            size: store.get(cid).unwrap().len() as u64,
            content: Some(FileContent::Whole(Content {
                cid: cid.clone(),
                salt: None,
            })),
        };
        entries.push((format!("f{i:03}"), kind));
    }
    let entries = entries
        .into_iter()
        .map(|(name, kind)| Entry {
            name: Name::new(name.into_bytes()).unwrap(),
            kind: EntryKind::Inode(Inode {
                kind,
                attrs,
                xattrs: vec![],
            }),
        })
        .collect();
    let bytes = crate::format::page::encode(
        &crate::format::Page::<Entry>::Leaf(entries),
        &TreeCrypto::Plain,
    )
    .unwrap();
    store.add_manifest(Bytes::from(bytes)).await.unwrap()
}

/// The stored bytes of `objects` (§7).
fn bytes_of(store: &MemoryStore, objects: &BTreeSet<String>) -> u64 {
    objects
        .iter()
        .map(|c| store.get(c).unwrap().len() as u64)
        .sum()
}

async fn content(store: &MemoryStore, n: u32) -> String {
    store
        .add_objects(vec![Bytes::from(format!("content {n}"))])
        .await
        .unwrap()
        .remove(0)
}

/// Every object reachable from `root`, by walking it the plain way.
fn reachable(store: &MemoryStore, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut next = vec![root.to_owned()];
    while let Some(n) = next.pop() {
        if !seen.insert(n.clone()) {
            continue;
        }
        let (_, lists) = crate::format::envelope::public(&store.get(&n).unwrap()).unwrap();
        next.extend(lists.nodes);
        seen.extend(lists.data);
    }
    seen
}

fn source<'a>(store: &'a MemoryStore, cache: &'a PageCache) -> PageSource<'a> {
    PageSource {
        store,
        cache,
        crypto: &TreeCrypto::Plain,
        unsent: None,
    }
}

#[tokio::test]
async fn an_object_dropped_on_one_path_and_listed_on_another_stays_counted() {
    let store = MemoryStore::new();
    let cache = PageCache::default();
    let (x, y) = (content(&store, 1).await, content(&store, 2).await);
    // `b` (a directory the mount may never load) lists `x` too.
    let a = node(&store, &[], &[x.clone(), y.clone()]).await;
    let b = node(&store, &[], std::slice::from_ref(&x)).await;
    let root = node(&store, &[a.clone(), b.clone()], &[]).await;
    let mut index = GraphIndex::count(&root, source(&store, &cache))
        .await
        .unwrap();
    assert_eq!(index.len(), 5);
    assert_eq!(index.total(), bytes_of(&store, &reachable(&store, &root)));
    // `a` rewritten without `x` and `y`.
    let a2 = node(&store, &[], &[]).await;
    let root2 = node(&store, &[a2.clone(), b.clone()], &[]).await;
    let dropped: BTreeSet<String> = index
        .advance(&root2, source(&store, &cache))
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(dropped, BTreeSet::from([root, a, y.clone()]));
    assert!(index.holds(&x), "b still lists x");
    assert!(!index.holds(&y));
    assert_eq!(index.root(), root2);
}

#[tokio::test]
async fn moving_between_random_roots_matches_counting_each_from_scratch() {
    for seed in 0..12u64 {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let store = MemoryStore::new();
        let cache = PageCache::default();
        let mut data = Vec::new();
        for n in 0..24 {
            data.push(content(&store, n).await);
        }
        // Three levels of nodes drawn from pools, so roots share subtrees and objects are
        // listed by several nodes of one root.
        let pick = |rng: &mut rand::rngs::StdRng, pool: &[String], most: usize| {
            let n = rng.random_range(0..=most.min(pool.len()));
            (0..n)
                .map(|_| pool[rng.random_range(0..pool.len())].clone())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
        };
        let mut leaves = Vec::new();
        for _ in 0..16 {
            let d = pick(&mut rng, &data, 5);
            leaves.push(node(&store, &[], &d).await);
        }
        let mut mids = Vec::new();
        for _ in 0..10 {
            let n = pick(&mut rng, &leaves, 4);
            let d = pick(&mut rng, &data, 2);
            mids.push(node(&store, &n, &d).await);
        }
        let mut roots = Vec::new();
        for _ in 0..8 {
            let n = pick(&mut rng, &mids, 4);
            let d = pick(&mut rng, &data, 2);
            roots.push(node(&store, &n, &d).await);
        }
        let mut index = GraphIndex::count(&roots[0], source(&store, &cache))
            .await
            .unwrap();
        for pair in roots.windows(2) {
            let (old, new) = (&pair[0], &pair[1]);
            let dropped: BTreeSet<String> = index
                .advance(new, source(&store, &cache))
                .await
                .unwrap()
                .into_iter()
                .collect();
            let (was, is) = (reachable(&store, old), reachable(&store, new));
            let gone: BTreeSet<String> = was.difference(&is).cloned().collect();
            assert_eq!(dropped, gone, "seed {seed}");
            let fresh = GraphIndex::count(new, source(&store, &cache))
                .await
                .unwrap();
            assert_eq!(index.refs, fresh.refs, "seed {seed}");
            for cid in &is {
                assert!(index.holds(cid), "seed {seed}");
            }
            assert_eq!(index.len(), is.len(), "seed {seed}");
            assert_eq!(index.total(), bytes_of(&store, &is), "seed {seed}");
        }
    }
}

#[tokio::test]
async fn a_page_that_cannot_be_read_fails_the_count_rather_than_counting_less() {
    let store = MemoryStore::new();
    let cache = PageCache::default();
    let x = content(&store, 1).await;
    let a = node(&store, &[], &[x]).await;
    let root = node(&store, std::slice::from_ref(&a), &[]).await;
    store.set_offline(true);
    assert!(
        GraphIndex::count(&root, source(&store, &cache))
            .await
            .is_err()
    );
    store.set_offline(false);
    // A page from the cache needs no node.
    let mut index = GraphIndex::count(&root, source(&store, &cache))
        .await
        .unwrap();
    let root2 = node(&store, &[], &[]).await;
    cache.insert(&root2, &store.get(&root2).unwrap());
    store.set_offline(true);
    // Dropping `a` needs its page: not in the cache, the node is down.
    assert!(index.advance(&root2, source(&store, &cache)).await.is_err());
}

#[test]
fn a_size_of_four_gib_or_more_is_counted_whole_and_given_back_whole() {
    let mut index = GraphIndex::empty();
    let big = (5u64 << 30) + 7;
    let edge = u64::from(u32::MAX);
    assert!(index.add("big", big));
    assert!(index.add("edge", edge));
    assert!(index.add("small", 10));
    assert!(!index.add("big", big));
    assert_eq!(index.total(), big + edge + 10);
    index.sized("small", big);
    index.sized("edge", 3);
    assert_eq!(index.total(), 2 * big + 3);
    assert!(!index.take("big").unwrap());
    assert!(index.take("big").unwrap());
    assert!(index.take("small").unwrap());
    assert_eq!(index.total(), 3);
    assert!(index.refs.large.is_empty());
    assert!(index.take("small").is_err());
    assert_eq!(index.len(), 1);
}
