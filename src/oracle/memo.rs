//! What the oracle remembers between requests: per CID, the measured size of a content
//! object, or a tree node's size and the CIDs it refers to. CIDs name immutable bytes, so
//! an entry never goes stale: a CID measured once is not fetched again, and a subtree whose
//! CID did not change is not walked on the node again.
//!
//! Bounded: at most `capacity` entries (when a request's objects would not fit, the memo
//! starts over with them). Kept on disk (the oracle's state directory, mode 0600) in a
//! compact binary file rewritten after each request that added to it; a file that cannot be
//! read is logged and ignored (it is only a cache: without it objects are fetched again).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ipld_core::cid::Cid;

const MAGIC: &[u8] = b"pxfs-oracle-memo/1\n";

/// A measured object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Known {
    /// A file's content: its stored size.
    Content(u64),
    /// A manifest or tree node: its own bytes, the nodes and the contents it refers to.
    Node {
        size: u64,
        nodes: Arc<[Cid]>,
        data: Arc<[Cid]>,
    },
}

impl Known {
    pub fn node(size: u64, nodes: Vec<Cid>, data: Vec<Cid>) -> Known {
        Known::Node {
            size,
            nodes: nodes.into(),
            data: data.into(),
        }
    }

    /// CIDs held, for the bound.
    fn weight(&self) -> usize {
        match self {
            Known::Content(_) => 1,
            Known::Node { nodes, data, .. } => 1 + nodes.len() + data.len(),
        }
    }
}

pub struct Memo {
    inner: Mutex<Inner>,
    capacity: usize,
    path: Option<PathBuf>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Cid, Known>,
    /// CIDs held by `map` (entries and their lists).
    weight: usize,
    dirty: bool,
}

impl Memo {
    /// A memo kept in memory only.
    pub fn in_memory(capacity: usize) -> Memo {
        Memo {
            inner: Mutex::new(Inner::default()),
            capacity,
            path: None,
        }
    }

    /// A memo kept in `path`, loaded from it if it exists.
    pub fn open(path: &Path, capacity: usize) -> Memo {
        let mut inner = Inner::default();
        match std::fs::File::open(path) {
            Ok(f) => match read(std::io::BufReader::new(f)) {
                Ok(map) => {
                    inner.weight = map.values().map(Known::weight).sum();
                    inner.map = map;
                    if inner.weight > capacity {
                        inner = Inner::default();
                    }
                }
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "oracle memo unreadable ({e}); starting without it"
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path.display(), "oracle memo: {e}"),
        }
        Memo {
            inner: Mutex::new(inner),
            capacity,
            path: Some(path.to_path_buf()),
        }
    }

    pub fn get(&self, cid: &Cid) -> Option<Known> {
        self.lock().map.get(cid).cloned()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds what a measurement found, within the bound.
    pub fn remember(&self, found: &HashMap<Cid, Known>) {
        let mut inner = self.lock();
        let new: Vec<(&Cid, &Known)> = found
            .iter()
            .filter(|(c, _)| !inner.map.contains_key(*c))
            .collect();
        if new.is_empty() {
            return;
        }
        let extra: usize = new.iter().map(|(_, k)| k.weight()).sum();
        if inner.weight + extra > self.capacity {
            *inner = Inner::default();
        }
        for (cid, known) in new {
            let w = known.weight();
            if inner.weight + w > self.capacity {
                break;
            }
            inner.weight += w;
            inner.map.insert(*cid, known.clone());
        }
        inner.dirty = true;
    }

    /// Writes the memo to its file if it changed (atomically, mode 0600).
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(());
            }
            inner.dirty = false;
            write(&inner.map)
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    }
}

fn put_cid(out: &mut Vec<u8>, cid: &Cid) {
    let b = cid.to_bytes();
    out.extend_from_slice(&(b.len() as u16).to_le_bytes());
    out.extend_from_slice(&b);
}

fn write(map: &HashMap<Cid, Known>) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (cid, known) in map {
        match known {
            Known::Content(size) => {
                out.push(0);
                put_cid(&mut out, cid);
                out.extend_from_slice(&size.to_le_bytes());
            }
            Known::Node { size, nodes, data } => {
                out.push(1);
                put_cid(&mut out, cid);
                out.extend_from_slice(&size.to_le_bytes());
                for list in [nodes, data] {
                    out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                    for c in list.iter() {
                        put_cid(&mut out, c);
                    }
                }
            }
        }
    }
    out
}

fn read(mut r: impl Read) -> std::io::Result<HashMap<Cid, Known>> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut magic = vec![0u8; MAGIC.len()];
    r.read_exact(&mut magic)?;
    if magic != MAGIC {
        return Err(bad("not an oracle memo"));
    }
    let mut map = HashMap::new();
    let mut tag = [0u8; 1];
    loop {
        if r.read(&mut tag)? == 0 {
            return Ok(map);
        }
        let cid = get_cid(&mut r)?;
        let size = get_u64(&mut r)?;
        let known = match tag[0] {
            0 => Known::Content(size),
            1 => {
                let mut lists = [Vec::new(), Vec::new()];
                for list in &mut lists {
                    let n = get_u32(&mut r)?;
                    for _ in 0..n {
                        list.push(get_cid(&mut r)?);
                    }
                }
                let [nodes, data] = lists;
                Known::node(size, nodes, data)
            }
            _ => return Err(bad("unknown record")),
        };
        map.insert(cid, known);
    }
}

fn get_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn get_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn get_cid(r: &mut impl Read) -> std::io::Result<Cid> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let len = u16::from_le_bytes(len) as usize;
    if len > 128 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "CID too long",
        ));
    }
    let mut b = vec![0u8; len];
    r.read_exact(&mut b)?;
    Cid::try_from(b.as_slice())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u8) -> Cid {
        crate::format::store::raw_cid(&[n]).parse().unwrap()
    }

    #[test]
    fn the_memo_survives_a_restart_and_stays_within_its_bound() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("memo.bin");
        let memo = Memo::open(&path, 10);
        let mut found = HashMap::new();
        found.insert(cid(1), Known::Content(5));
        found.insert(cid(2), Known::node(9, vec![cid(3)], vec![cid(1)]));
        memo.remember(&found);
        memo.save().unwrap();
        let again = Memo::open(&path, 10);
        assert_eq!(again.get(&cid(1)), Some(Known::Content(5)));
        assert_eq!(again.get(&cid(2)), found.get(&cid(2)).cloned());
        // Four CIDs held; eight more do not fit: it starts over, never above 10.
        let more: HashMap<Cid, Known> = (10..18).map(|n| (cid(n), Known::Content(1))).collect();
        again.remember(&more);
        assert!(again.len() <= 10 && again.get(&cid(10)).is_some());
        // A damaged file is ignored, not trusted.
        std::fs::write(&path, b"garbage").unwrap();
        assert!(Memo::open(&path, 10).is_empty());
    }
}
