//! Reading a whole v2 tree from its root node (FORMAT.md §3–§5): every entry with its path.
//! For tools, tests and auditors; the mount reads one directory at a time.

use super::root::Root;
use super::{Entry, EntryKind, InodeKind, PageStore, Result, TreeCrypto};

/// An entry and its path (names joined by `/`, bytes).
pub type PathEntry = (Vec<u8>, Entry);

/// Every entry under the root node `root`, with its path.
pub fn entries(
    store: &mut impl PageStore,
    crypto: &TreeCrypto,
    root: &str,
) -> Result<(Root, Vec<PathEntry>)> {
    let r = Root::decode_any(&store.get(root)?, crypto)?.root;
    let mut out = Vec::new();
    let mut dirs = vec![(Vec::new(), r.dir.clone())];
    while let Some((prefix, top)) = dirs.pop() {
        for e in super::prolly::records::<Entry>(store, crypto, &top)? {
            let mut path = prefix.clone();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(e.name.as_bytes());
            if let EntryKind::Inode(i) = &e.kind
                && let InodeKind::Dir { top } = &i.kind
            {
                dirs.push((path.clone(), top.clone()));
            }
            out.push((path, e));
        }
    }
    Ok((r, out))
}
