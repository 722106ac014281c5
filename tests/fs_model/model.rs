//! The reference model: a plain in-memory tree with POSIX semantics (as Linux's rename,
//! link and unlink order their errors) and the crash guarantees of docs/durability.md,
//! "Guarantees" table. Knows nothing of staging, manifests or the journal.

use std::collections::BTreeMap;

use super::ops::{Op, P, RenameFlag, XATTRS};

pub type Id = u64;
pub const ROOT: Id = 0;
pub type Errno = i32;

#[derive(Clone, Debug, Default)]
pub struct FileState {
    /// What readers see now.
    pub data: Vec<u8>,
    /// The content as of the last close (`None`: never closed).
    pub closed: Option<Vec<u8>>,
    /// Written (or opened for writing) since the last close.
    pub session: bool,
    /// Descriptors open for writing (or created).
    pub writers: u32,
}

#[derive(Clone, Debug)]
pub enum Body {
    File(FileState),
    Dir(BTreeMap<String, Id>),
    Symlink(String),
}

#[derive(Clone, Debug)]
pub struct Node {
    pub body: Body,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Known only when last set explicitly (`utimes`) and nothing changed it since.
    pub mtime: Option<i64>,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Names of this node, oldest first.
    pub links: Vec<(Id, String)>,
    /// Open descriptors.
    pub open: u32,
}

impl Node {
    fn new(body: Body, mode: u32) -> Node {
        Node {
            body,
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            mtime: None,
            xattrs: BTreeMap::new(),
            links: Vec::new(),
            open: 0,
        }
    }

    pub fn is_dir(&self) -> bool {
        matches!(self.body, Body::Dir(_))
    }

    pub fn size(&self) -> u64 {
        match &self.body {
            Body::File(f) => f.data.len() as u64,
            Body::Dir(_) => 4096,
            Body::Symlink(t) => t.len() as u64,
        }
    }

    pub fn nlink(&self) -> u32 {
        match &self.body {
            Body::Dir(_) => unreachable!("directory link counts need the tree"),
            _ => self.links.len() as u32,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Handle {
    pub node: Id,
    pub write: bool,
    /// Counts as a writer (opened for writing, or created).
    pub session: bool,
    pub append: bool,
}

/// What a successful operation returns that the harness compares.
#[derive(Debug, PartialEq, Eq)]
pub enum Out {
    Unit,
    Data(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct Model {
    pub nodes: BTreeMap<Id, Node>,
    next: Id,
    pub handles: Vec<Handle>,
    pub offline: bool,
    /// The node was down since the last commit that went through: a commit may still
    /// fail with EIO for a moment after it is back (until an upload retry finds it).
    pub recent_outage: bool,
}

impl Model {
    pub fn new(uid: u32, gid: u32) -> Model {
        let mut root = Node::new(Body::Dir(BTreeMap::new()), 0o755);
        root.uid = uid;
        root.gid = gid;
        Model {
            nodes: BTreeMap::from([(ROOT, root)]),
            next: ROOT + 1,
            handles: Vec::new(),
            offline: false,
            recent_outage: false,
        }
    }

    pub fn node(&self, id: Id) -> &Node {
        &self.nodes[&id]
    }

    fn node_mut(&mut self, id: Id) -> &mut Node {
        self.nodes.get_mut(&id).expect("model node")
    }

    pub fn entries(&self, dir: Id) -> &BTreeMap<String, Id> {
        match &self.node(dir).body {
            Body::Dir(e) => e,
            _ => unreachable!("not a directory"),
        }
    }

    fn entries_mut(&mut self, dir: Id) -> &mut BTreeMap<String, Id> {
        match &mut self.node_mut(dir).body {
            Body::Dir(e) => e,
            _ => unreachable!("not a directory"),
        }
    }

    pub fn dir_nlink(&self, dir: Id) -> u32 {
        2 + self
            .entries(dir)
            .values()
            .filter(|c| self.node(**c).is_dir())
            .count() as u32
    }

    /// The handle an op's `h` picks, if any is open.
    pub fn pick(&self, h: usize) -> Option<usize> {
        (!self.handles.is_empty()).then(|| h % self.handles.len())
    }

    // ---- paths ----

    fn resolve(&self, path: &P) -> Result<Id, Errno> {
        let mut cur = ROOT;
        for part in path.parts() {
            cur = match &self.node(cur).body {
                Body::Dir(e) => *e.get(part).ok_or(libc::ENOENT)?,
                _ => return Err(libc::ENOTDIR),
            };
        }
        Ok(cur)
    }

    /// The directory holding `path`'s last component, and that name.
    fn resolve_parent(&self, path: &P) -> Result<(Id, &'static str), Errno> {
        let parts: Vec<&'static str> = path.parts().collect();
        let (name, dir) = parts.split_last().expect("a path with a name");
        let dir = self.resolve(&P(path.0[..dir.len()].to_vec()))?;
        if !self.node(dir).is_dir() {
            return Err(libc::ENOTDIR);
        }
        Ok((dir, name))
    }

    fn lookup(&self, dir: Id, name: &str) -> Option<Id> {
        self.entries(dir).get(name).copied()
    }

    /// `ino` is `ancestor` or lies below it.
    fn is_within(&self, ino: Id, ancestor: Id) -> bool {
        let mut cur = ino;
        loop {
            if cur == ancestor {
                return true;
            }
            match self.node(cur).links.first() {
                Some((p, _)) if self.node(cur).is_dir() => cur = *p,
                _ => return false,
            }
        }
    }

    // ---- namespace primitives ----

    fn add(&mut self, node: Node) -> Id {
        let id = self.next;
        self.next += 1;
        self.nodes.insert(id, node);
        id
    }

    fn link_entry(&mut self, dir: Id, name: &str, id: Id) {
        self.entries_mut(dir).insert(name.to_string(), id);
        self.node_mut(id).links.push((dir, name.to_string()));
        self.node_mut(dir).mtime = None;
    }

    fn unlink_entry(&mut self, dir: Id, name: &str) {
        let id = self.entries_mut(dir).remove(name).expect("entry");
        let n = self.node_mut(id);
        if let Some(pos) = n.links.iter().position(|(p, m)| *p == dir && m == name) {
            n.links.remove(pos);
        }
        self.node_mut(dir).mtime = None;
        self.drop_if_unused(id);
    }

    fn drop_if_unused(&mut self, id: Id) {
        let n = self.node(id);
        if id != ROOT && n.links.is_empty() && n.open == 0 {
            self.nodes.remove(&id);
        }
    }

    fn file_mut(&mut self, id: Id) -> Option<&mut FileState> {
        match &mut self.node_mut(id).body {
            Body::File(f) => Some(f),
            _ => None,
        }
    }

    /// A close of the file's session: its content is a version that survives a crash
    /// (only while it has a name: an unlinked file's content ends with it).
    fn close_session(&mut self, id: Id) {
        let linked = !self.node(id).links.is_empty();
        let f = self.file_mut(id).expect("file");
        if f.session && linked {
            f.closed = Some(f.data.clone());
            f.session = false;
        } else if f.session {
            f.session = false;
        }
    }

    /// Start writing: the content is that of the last close (or what it is now).
    fn start_session(&mut self, id: Id) {
        self.file_mut(id).expect("file").session = true;
    }

    fn set_len(&mut self, id: Id, size: u64) {
        let n = self.node_mut(id);
        n.mtime = None;
        if let Body::File(f) = &mut n.body {
            f.data.resize(size as usize, 0);
        }
    }

    /// The file's content may be fetched from the node for this (the node being down
    /// then fails it with EIO): it has no session whose content is local.
    pub fn may_need_node(&self, id: Id) -> bool {
        matches!(&self.node(id).body, Body::File(f) if !f.session)
    }

    // ---- operations ----

    /// Apply `op`; the result the filesystem must give.
    pub fn apply(&mut self, op: &Op) -> Result<Out, Errno> {
        match op {
            Op::Create { path, excl, mode } => {
                let (dir, name) = self.resolve_parent(path)?;
                match self.lookup(dir, name) {
                    Some(_) if *excl => Err(libc::EEXIST),
                    Some(id) => self.open(id, true, false, false),
                    None => {
                        let body = Body::File(FileState {
                            session: true,
                            writers: 1,
                            ..Default::default()
                        });
                        let id = self.add(Node::new(body, *mode));
                        self.link_entry(dir, name, id);
                        self.node_mut(id).open += 1;
                        self.handles.push(Handle {
                            node: id,
                            write: true,
                            session: true,
                            append: false,
                        });
                        Ok(Out::Unit)
                    }
                }
            }
            Op::Open {
                path,
                write,
                trunc,
                append,
            } => {
                let id = self.resolve(path)?;
                self.open(id, *write, *trunc, *append)
            }
            Op::Write {
                h,
                offset,
                len,
                byte,
            } => {
                let Some(i) = self.pick(*h) else {
                    return Ok(Out::Unit);
                };
                let h = self.handles[i];
                if !h.write {
                    return Err(libc::EBADF);
                }
                self.start_session(h.node);
                let data = Op::data(*len, *byte);
                let n = self.node_mut(h.node);
                n.mtime = None;
                let Body::File(f) = &mut n.body else {
                    unreachable!("handles open for writing are files")
                };
                let at = if h.append {
                    f.data.len()
                } else {
                    *offset as usize
                };
                if !data.is_empty() {
                    if f.data.len() < at + data.len() {
                        f.data.resize(at + data.len(), 0);
                    }
                    f.data[at..at + data.len()].copy_from_slice(&data);
                }
                Ok(Out::Unit)
            }
            Op::Read { h, offset, len } => {
                let Some(i) = self.pick(*h) else {
                    return Ok(Out::Unit);
                };
                match &self.node(self.handles[i].node).body {
                    Body::File(f) => {
                        let start = (*offset as usize).min(f.data.len());
                        let end = (start + *len as usize).min(f.data.len());
                        Ok(Out::Data(f.data[start..end].to_vec()))
                    }
                    _ => Err(libc::EISDIR),
                }
            }
            Op::Truncate { path, size } => {
                let id = self.resolve(path)?;
                self.truncate(id, *size)
            }
            Op::Ftruncate { h, size } => {
                let Some(i) = self.pick(*h) else {
                    return Ok(Out::Unit);
                };
                self.truncate(self.handles[i].node, *size)
            }
            Op::Flush { h } => {
                let Some(i) = self.pick(*h) else {
                    return Ok(Out::Unit);
                };
                self.flush(i);
                Ok(Out::Unit)
            }
            Op::Release { h } => {
                let Some(i) = self.pick(*h) else {
                    return Ok(Out::Unit);
                };
                self.release(i);
                Ok(Out::Unit)
            }
            Op::Close { h } => {
                let Some(i) = self.pick(*h) else {
                    return Ok(Out::Unit);
                };
                self.flush(i);
                self.release(i);
                Ok(Out::Unit)
            }
            Op::Fsync { h } => {
                let Some(i) = self.pick(*h) else {
                    return Ok(Out::Unit);
                };
                let id = self.handles[i].node;
                if !matches!(self.node(id).body, Body::File(_)) {
                    return Err(libc::EISDIR);
                }
                // fsync makes the file's content so far a version, whichever descriptor.
                self.close_session_if_linked(id);
                Ok(Out::Unit)
            }
            Op::Mkdir { path, mode } => {
                let (dir, name) = self.resolve_parent(path)?;
                if self.lookup(dir, name).is_some() {
                    return Err(libc::EEXIST);
                }
                let id = self.add(Node::new(Body::Dir(BTreeMap::new()), *mode));
                self.link_entry(dir, name, id);
                Ok(Out::Unit)
            }
            Op::Rmdir { path } => {
                let (dir, name) = self.resolve_parent(path)?;
                let id = self.lookup(dir, name).ok_or(libc::ENOENT)?;
                match &self.node(id).body {
                    Body::Dir(e) if e.is_empty() => {}
                    Body::Dir(_) => return Err(libc::ENOTEMPTY),
                    _ => return Err(libc::ENOTDIR),
                }
                self.unlink_entry(dir, name);
                Ok(Out::Unit)
            }
            Op::Unlink { path } => {
                let (dir, name) = self.resolve_parent(path)?;
                let id = self.lookup(dir, name).ok_or(libc::ENOENT)?;
                if self.node(id).is_dir() {
                    return Err(libc::EISDIR);
                }
                self.unlink_entry(dir, name);
                Ok(Out::Unit)
            }
            Op::Rename { from, to, flag } => self.rename(from, to, *flag),
            Op::Link { from, to } => {
                let id = self.resolve(from)?;
                let (dir, name) = self.resolve_parent(to)?;
                if self.lookup(dir, name).is_some() {
                    return Err(libc::EEXIST);
                }
                if self.node(id).is_dir() {
                    return Err(libc::EPERM);
                }
                self.link_entry(dir, name, id);
                Ok(Out::Unit)
            }
            Op::Symlink { path, target } => {
                let (dir, name) = self.resolve_parent(path)?;
                if self.lookup(dir, name).is_some() {
                    return Err(libc::EEXIST);
                }
                let id = self.add(Node::new(Body::Symlink(Op::target(*target)), 0o777));
                self.link_entry(dir, name, id);
                Ok(Out::Unit)
            }
            Op::Chmod { path, mode } => {
                let id = self.resolve(path)?;
                self.node_mut(id).mode = mode & 0o7777;
                Ok(Out::Unit)
            }
            Op::Chown { path, uid, gid } => {
                let id = self.resolve(path)?;
                let n = self.node_mut(id);
                n.uid = *uid;
                n.gid = *gid;
                Ok(Out::Unit)
            }
            Op::Utimes { path, mtime } => {
                let id = self.resolve(path)?;
                self.node_mut(id).mtime = Some(*mtime);
                Ok(Out::Unit)
            }
            Op::SetXattr {
                path,
                name,
                value,
                flags,
            } => {
                let id = self.resolve(path)?;
                let name = XATTRS[name % XATTRS.len()];
                let n = self.node_mut(id);
                let exists = n.xattrs.contains_key(name);
                if *flags == 1 && exists {
                    return Err(libc::EEXIST);
                }
                if *flags == 2 && !exists {
                    return Err(libc::ENODATA);
                }
                n.xattrs.insert(name.to_string(), vec![*value; 3]);
                Ok(Out::Unit)
            }
            Op::RemoveXattr { path, name } => {
                let id = self.resolve(path)?;
                let name = XATTRS[name % XATTRS.len()];
                match self.node_mut(id).xattrs.remove(name) {
                    Some(_) => Ok(Out::Unit),
                    None => Err(libc::ENODATA),
                }
            }
            Op::Commit | Op::Unload | Op::Wait { .. } => Ok(Out::Unit),
            // Every change under `.snapshots/` is refused (docs/FORMAT.md §14.1).
            Op::ChangeSnapshot { .. } => Err(libc::EROFS),
            Op::Crash => {
                self.crash();
                Ok(Out::Unit)
            }
            Op::Remount => {
                self.offline = false;
                self.recent_outage = false;
                while !self.handles.is_empty() {
                    self.flush(0);
                    self.release(0);
                }
                // Hard links are link groups on the node (docs/FORMAT.md §4.4): they stay.
                Ok(Out::Unit)
            }
            Op::Offline => {
                self.offline = true;
                self.recent_outage = true;
                Ok(Out::Unit)
            }
            Op::Online => {
                self.offline = false;
                Ok(Out::Unit)
            }
        }
    }

    fn open(&mut self, id: Id, write: bool, trunc: bool, append: bool) -> Result<Out, Errno> {
        match &self.node(id).body {
            Body::Dir(_) if write => return Err(libc::EISDIR),
            Body::Dir(_) => {}
            // The kernel follows symlinks; the core refuses to open one.
            Body::Symlink(_) => return Err(libc::EINVAL),
            Body::File(_) => {}
        }
        self.node_mut(id).open += 1;
        if write {
            self.start_session(id);
            let f = self.file_mut(id).expect("file");
            f.writers += 1;
            if trunc {
                self.set_len(id, 0);
            }
        }
        self.handles.push(Handle {
            node: id,
            write,
            session: write,
            append,
        });
        Ok(Out::Unit)
    }

    fn truncate(&mut self, id: Id, size: u64) -> Result<Out, Errno> {
        let f = match &mut self.node_mut(id).body {
            Body::File(f) => f,
            Body::Dir(_) => return Err(libc::EISDIR),
            Body::Symlink(_) => return Err(libc::EINVAL),
        };
        if f.session {
            self.set_len(id, size);
            return Ok(Out::Unit);
        }
        // A truncate with no writer open is a close of its own.
        f.session = true;
        let alone = f.writers == 0;
        self.set_len(id, size);
        if alone {
            self.close_session(id);
        }
        Ok(Out::Unit)
    }

    fn close_session_if_linked(&mut self, id: Id) {
        if !self.node(id).links.is_empty() {
            self.close_session(id);
        }
    }

    fn flush(&mut self, i: usize) {
        let h = self.handles[i];
        if h.session {
            self.close_session_if_linked(h.node);
        }
    }

    fn release(&mut self, i: usize) {
        let h = self.handles.remove(i);
        self.node_mut(h.node).open -= 1;
        if h.session {
            let f = self.file_mut(h.node).expect("file");
            f.writers -= 1;
            if f.writers == 0 {
                self.close_session(h.node);
            }
        }
        self.drop_if_unused(h.node);
    }

    fn rename(&mut self, from: &P, to: &P, flag: RenameFlag) -> Result<Out, Errno> {
        let (sdir, sname) = self.resolve_parent(from)?;
        let (ddir, dname) = self.resolve_parent(to)?;
        let src = self.lookup(sdir, sname).ok_or(libc::ENOENT)?;
        let dst = self.lookup(ddir, dname);
        match flag {
            RenameFlag::Exchange if dst.is_none() => return Err(libc::ENOENT),
            RenameFlag::NoReplace if dst.is_some() => return Err(libc::EEXIST),
            _ => {}
        }
        // Linux's order: source an ancestor of the target: EINVAL; target an ancestor
        // of the source: ENOTEMPTY (EINVAL for an exchange).
        if sdir != ddir {
            if self.node(src).is_dir() && self.is_within(ddir, src) {
                return Err(libc::EINVAL);
            }
            if let Some(d) = dst
                && self.node(d).is_dir()
                && self.is_within(sdir, d)
            {
                return Err(if flag == RenameFlag::Exchange {
                    libc::EINVAL
                } else {
                    libc::ENOTEMPTY
                });
            }
        }
        if dst == Some(src) {
            return Ok(Out::Unit);
        }
        if flag == RenameFlag::Exchange {
            let dst = dst.expect("checked");
            self.entries_mut(sdir).insert(sname.to_string(), dst);
            self.entries_mut(ddir).insert(dname.to_string(), src);
            relink(self.node_mut(src), (sdir, sname), (ddir, dname));
            relink(self.node_mut(dst), (ddir, dname), (sdir, sname));
            self.node_mut(sdir).mtime = None;
            self.node_mut(ddir).mtime = None;
            return Ok(Out::Unit);
        }
        if let Some(d) = dst {
            match (self.node(src).is_dir(), &self.node(d).body) {
                (true, Body::Dir(e)) if !e.is_empty() => return Err(libc::ENOTEMPTY),
                (true, Body::Dir(_)) => {}
                (true, _) => return Err(libc::ENOTDIR),
                (false, Body::Dir(_)) => return Err(libc::EISDIR),
                (false, _) => {}
            }
            self.unlink_entry(ddir, dname);
        }
        self.entries_mut(sdir).remove(sname);
        self.entries_mut(ddir).insert(dname.to_string(), src);
        relink(self.node_mut(src), (sdir, sname), (ddir, dname));
        self.node_mut(sdir).mtime = None;
        self.node_mut(ddir).mtime = None;
        Ok(Out::Unit)
    }

    /// The daemon died: descriptors are gone; every file is as of its last close, and a
    /// file never closed is gone (each journaled metadata change survives).
    fn crash(&mut self) {
        self.offline = false;
        self.recent_outage = false;
        self.handles.clear();
        let ids: Vec<Id> = self.nodes.keys().copied().collect();
        for id in ids {
            let n = self.node_mut(id);
            n.open = 0;
            let Body::File(f) = &mut n.body else {
                continue;
            };
            match f.closed.clone() {
                Some(closed) => {
                    *f = FileState {
                        data: closed.clone(),
                        closed: Some(closed),
                        session: false,
                        writers: 0,
                    };
                }
                None => {
                    for (dir, name) in n.links.clone() {
                        self.entries_mut(dir).remove(&name);
                    }
                    self.nodes.remove(&id);
                }
            }
        }
        self.nodes
            .retain(|id, n| *id == ROOT || !n.links.is_empty());
    }
}

fn relink(n: &mut Node, from: (Id, &str), to: (Id, &str)) {
    if let Some(l) = n
        .links
        .iter_mut()
        .find(|(p, m)| *p == from.0 && m == from.1)
    {
        *l = (to.0, to.1.to_string());
    }
}
