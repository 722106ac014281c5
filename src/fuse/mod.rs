//! FUSE adapter (fuser): a thin translation of kernel requests to [`crate::fs::Fs`]
//! calls. A request the core can answer from memory (most lookups, getattrs and
//! getxattrs, writes to an open session) is answered on the FUSE thread; any other becomes
//! one core call on the tokio runtime, replied to from the task, so no FUSE worker ever
//! waits on the network; errors go through
//! [`FsError::errno`](crate::fs::FsError::errno). Every request runs in a debug `tracing`
//! span carrying the op, inode and pid, and is counted in the metrics by op and errno with
//! its latency (`call.rs`).

mod attr;
mod call;

use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::format::name::escape;
use crate::fs::{DirEntry, DirSink, Fs, FsError, SetAttr, Step};
use call::Call;
use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    IoctlFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

/// pxfs owns the tree (nobody else writes an sNFT while it is mounted), so the kernel may
/// cache attributes and names for long.
const TTL: Duration = Duration::from_secs(60);
const MAX_WRITE: u32 = 1 << 20;
const MAX_READAHEAD: u32 = 1 << 20;

pub struct FuseFs {
    fs: Fs,
    rt: tokio::runtime::Handle,
    /// The kernel takes `FUSE_DIRECT_IO_ALLOW_MMAP` (Linux 6.6+): a write around the page
    /// cache also drops the pages other handles cached over its range, so write-only
    /// handles may write around it ([`open_flags`]).
    write_around: bool,
}

impl FuseFs {
    pub fn new(fs: Fs, rt: tokio::runtime::Handle) -> FuseFs {
        FuseFs {
            fs,
            rt,
            write_around: false,
        }
    }

    /// How the kernel caches a handle opened with `flags` ([`open_flags`]).
    fn open_flags(&self, flags: i32) -> FopenFlags {
        open_flags(flags, self.write_around)
    }

    /// Answer `call` from a task on the runtime: `f` replies.
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, call: Call, f: F) {
        self.rt.spawn(call.answer_later(f));
    }

    /// Reply with what `step` gives: right here if it is ready (no task for what memory
    /// answers), else from a task once it is.
    fn answer<T: Send + 'static>(
        &self,
        call: Call,
        step: Step<T>,
        reply: impl FnOnce(T) + Send + 'static,
    ) {
        match step {
            Step::Ready(t) => call.answer_now(|| reply(t)),
            Step::Wait(f) => self.spawn(call, async move { reply(f.await) }),
        }
    }
}

fn reply_entry(reply: ReplyEntry, found: Result<crate::fs::Attr, FsError>) {
    match found {
        Ok(a) => reply.entry(&TTL, &attr::file_attr(&a), Generation(0)),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_attr(reply: ReplyAttr, found: Result<crate::fs::Attr, FsError>) {
    match found {
        Ok(a) => reply.attr(&TTL, &attr::file_attr(&a)),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_empty(reply: ReplyEmpty, done: Result<(), FsError>) {
    match done {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

impl DirSink for ReplyDirectory {
    fn offer(&mut self, e: &DirEntry) -> bool {
        self.add(
            INodeNo(e.ino),
            e.offset,
            attr::file_type(e.kind),
            OsStr::from_bytes(&e.name),
        )
    }
}

impl DirSink for ReplyDirectoryPlus {
    fn offer(&mut self, e: &DirEntry) -> bool {
        let a = attr::file_attr(&e.attr);
        self.add(
            INodeNo(e.ino),
            e.offset,
            OsStr::from_bytes(&e.name),
            &TTL,
            &a,
            Generation(0),
        )
    }
}

/// A request: its span, and its count and latency in the metrics.
fn span(op: &'static str, ino: u64, req: &Request) -> Call {
    Call::new(op, tracing::debug_span!("fuse", op, ino, pid = req.pid()))
}

/// The reply for a failed request. Answers that are part of normal use (no such name,
/// not empty, no such attribute…) and a full disk are logged at debug; the rest (I/O errors, quota,
/// overdue, read-only) at warn with the errno and the cause, inside the request's span.
fn errno(e: &FsError) -> Errno {
    let code = e.errno();
    call::note_errno(code);
    let routine = [
        libc::ENOENT,
        libc::EEXIST,
        libc::ENOTEMPTY,
        libc::ENODATA,
        libc::ENOTDIR,
        libc::EISDIR,
        libc::ERANGE,
        libc::ENAMETOOLONG,
        libc::EINVAL,
        libc::ENOTSUP,
        libc::ENOSYS,
        // A full cache disk (or staging area) is an episode the core logs when it starts
        // and ends; a line per refused write would fill the log (on that same disk).
        libc::ENOSPC,
    ];
    if routine.contains(&code) {
        tracing::debug!(errno = code, error = %e, "request failed");
    } else {
        tracing::warn!(errno = code, error = %e, "request failed");
    }
    Errno::from_i32(code)
}

/// A request's span naming the entry it is about, escaped (names are bytes: never raw
/// in a log line).
fn named_span(op: &'static str, ino: u64, req: &Request, name: &[u8]) -> Call {
    let span = tracing::debug_span!("fuse", op, ino, name = %escape(name), pid = req.pid());
    Call::new(op, span)
}

/// A name as the kernel passed it: any bytes (the core checks what Linux allows).
fn name(n: &OsStr) -> Vec<u8> {
    n.as_bytes().to_vec()
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        if let Err(nearest) = config.set_max_write(MAX_WRITE) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_READAHEAD) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        self.write_around = config
            .add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP)
            .is_ok();
        // Each capability is optional: take what this kernel offers.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_AUTO_INVAL_DATA,
        ] {
            let _ = config.add_capabilities(cap);
        }
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEntry) {
        let span = named_span("lookup", parent.0, req, n.as_bytes());
        let found = self.fs.lookup(parent.0, n.as_bytes());
        self.answer(span, found, |found| reply_entry(reply, found));
    }

    /// fuser's default `batch_forget` calls this for each inode.
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.fs.forget(ino.0, nlookup);
    }

    fn getattr(&self, req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        let found = self.fs.getattr(ino.0);
        self.answer(span("getattr", ino.0, req), found, |found| {
            reply_attr(reply, found)
        });
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: atime.map(attr::time_set),
            mtime: mtime.map(attr::time_set),
            fh: fh.map(|f| f.0),
        };
        let done = self.fs.setattr(ino.0, set);
        self.answer(span("setattr", ino.0, req), done, |done| {
            reply_attr(reply, done)
        });
    }

    fn readlink(&self, req: &Request, ino: INodeNo, reply: ReplyData) {
        let fs = self.fs.clone();
        self.spawn(span("readlink", ino.0, req), async move {
            match fs.readlink(ino.0).await {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        let n = name(n);
        let Some(kind) = attr::kind_of_mode(mode) else {
            return reply.error(errno(&FsError::Invalid("mknod of a directory or symlink")));
        };
        let (uid, gid) = (req.uid(), req.gid());
        let fs = self.fs.clone();
        self.spawn(named_span("mknod", parent.0, req, &n), async move {
            match fs
                .mknod(parent.0, &n, kind, mode & !umask, rdev, uid, gid)
                .await
            {
                Ok(a) => reply.entry(&TTL, &attr::file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let n = name(n);
        let (uid, gid) = (req.uid(), req.gid());
        let fs = self.fs.clone();
        self.spawn(named_span("mkdir", parent.0, req, &n), async move {
            match fs.mkdir(parent.0, &n, mode & !umask, uid, gid).await {
                Ok(a) => reply.entry(&TTL, &attr::file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let n = name(n);
        let fs = self.fs.clone();
        self.spawn(named_span("unlink", parent.0, req, &n), async move {
            match fs.unlink(parent.0, &n).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let n = name(n);
        let fs = self.fs.clone();
        self.spawn(named_span("rmdir", parent.0, req, &n), async move {
            match fs.rmdir(parent.0, &n).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let n = name(link_name);
        let target = target.as_os_str().as_bytes().to_vec();
        let (uid, gid) = (req.uid(), req.gid());
        let fs = self.fs.clone();
        self.spawn(named_span("symlink", parent.0, req, &n), async move {
            match fs.symlink(parent.0, &n, &target, uid, gid).await {
                Ok(a) => reply.entry(&TTL, &attr::file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let n = name(n);
        let newname = name(newname);
        if flags.contains(RenameFlags::RENAME_WHITEOUT) {
            return reply.error(Errno::EINVAL);
        }
        let no_replace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        let exchange = flags.contains(RenameFlags::RENAME_EXCHANGE);
        if no_replace && exchange {
            return reply.error(Errno::EINVAL);
        }
        let fs = self.fs.clone();
        self.spawn(named_span("rename", parent.0, req, &n), async move {
            match fs
                .rename(parent.0, &n, newparent.0, &newname, no_replace, exchange)
                .await
            {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn link(
        &self,
        req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        let newname = name(newname);
        let fs = self.fs.clone();
        self.spawn(named_span("link", ino.0, req, &newname), async move {
            match fs.link(ino.0, newparent.0, &newname).await {
                Ok(a) => reply.entry(&TTL, &attr::file_attr(&a), Generation(0)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        let open_flags = self.open_flags(flags.0);
        self.spawn(span("open", ino.0, req), async move {
            match fs.open(ino.0, flags.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), open_flags),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let fs = self.fs.clone();
        self.spawn(span("read", ino.0, req), async move {
            match fs.read(fh.0, offset, size).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let call = span("write", ino.0, req);
        // Writes go to local disk: answer right here unless a session must start first
        // (which may fetch from the node).
        if let Some(done) = call.within(|| self.fs.try_write(fh.0, offset, data)) {
            return call.answer_now(|| match done {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            });
        }
        let data = data.to_vec();
        let fs = self.fs.clone();
        self.spawn(call, async move {
            match fs.write(fh.0, offset, &data).await {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn flush(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Journaling the close is one write to local disk: answered right here.
        let done = self.fs.flush(fh.0);
        self.answer(span("flush", ino.0, req), done, |done| {
            reply_empty(reply, done)
        });
    }

    fn release(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let done = self.fs.release(fh.0);
        self.answer(span("release", ino.0, req), done, |done| {
            reply_empty(reply, done)
        });
    }

    fn fsync(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(span("fsync", ino.0, req), async move {
            match fs.fsync(fh.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    /// Only `SEEK_DATA` and `SEEK_HOLE` reach the daemon (the kernel answers the others).
    fn lseek(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let data = match whence {
            libc::SEEK_DATA => true,
            libc::SEEK_HOLE => false,
            _ => return reply.error(Errno::from_i32(libc::EINVAL)),
        };
        let Ok(offset) = u64::try_from(offset) else {
            return reply.error(Errno::from_i32(libc::ENXIO));
        };
        let fs = self.fs.clone();
        self.spawn(span("lseek", ino.0, req), async move {
            match fs.seek_data_or_hole(fh.0, offset, data).await {
                Ok(at) => reply.offset(at as i64),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn opendir(&self, req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let fs = self.fs.clone();
        self.spawn(span("opendir", ino.0, req), async move {
            match fs.opendir(ino.0).await {
                Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(ino.0);
        reply.ok();
    }

    fn readdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectory,
    ) {
        // The buffer is full when the reply says so: the kernel asks again from there.
        let done = self.fs.fill_dir(ino.0, offset, false, reply);
        self.answer(span("readdir", ino.0, req), done, |(reply, done)| {
            reply_empty_dir(reply, done)
        });
    }

    fn readdirplus(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let done = self.fs.fill_dir(ino.0, offset, true, reply);
        self.answer(
            span("readdirplus", ino.0, req),
            done,
            |(reply, done)| match done {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let fs = self.fs.clone();
        self.spawn(span("fsyncdir", ino.0, req), async move {
            match fs.fsyncdir(ino.0).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn statfs(&self, req: &Request, ino: INodeNo, reply: ReplyStatfs) {
        let fs = self.fs.clone();
        self.spawn(span("statfs", ino.0, req), async move {
            match fs.statfs(ino.0).await {
                Ok(s) => reply.statfs(
                    s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize,
                ),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        ino: INodeNo,
        n: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        let n = name(n);
        let value = value.to_vec();
        let fs = self.fs.clone();
        self.spawn(span("setxattr", ino.0, req), async move {
            match fs.setxattr(ino.0, &n, &value, flags).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn getxattr(&self, req: &Request, ino: INodeNo, n: &OsStr, size: u32, reply: ReplyXattr) {
        let found = self.fs.getxattr(ino.0, n.as_bytes());
        self.answer(
            span("getxattr", ino.0, req),
            found,
            move |found| match found {
                Ok(v) => sized_reply(reply, size, &v),
                Err(e) => reply.error(errno(&e)),
            },
        );
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let fs = self.fs.clone();
        self.spawn(span("listxattr", ino.0, req), async move {
            match fs.listxattr(ino.0).await {
                Ok(names) => {
                    let mut buf = Vec::new();
                    for n in names {
                        buf.extend_from_slice(&n);
                        buf.push(0);
                    }
                    sized_reply(reply, size, &buf)
                }
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn removexattr(&self, req: &Request, ino: INodeNo, n: &OsStr, reply: ReplyEmpty) {
        let n = name(n);
        let fs = self.fs.clone();
        self.spawn(span("removexattr", ino.0, req), async move {
            match fs.removexattr(ino.0, &n).await {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    /// No ioctl applies to pxfs's files: `ENOTTY`, as a local filesystem answers. (Python
    /// asks `TCGETS` of every file it opens; fuser's default logs a warning each time.)
    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        reply.error(Errno::ENOTTY);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions: the kernel checks modes itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        n: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let n = name(n);
        let (uid, gid) = (req.uid(), req.gid());
        let mode = mode & !umask;
        let open_flags = self.open_flags(flags);
        let done = self.fs.create(parent.0, &n, mode, flags, uid, gid);
        self.answer(named_span("create", parent.0, req, &n), done, move |done| {
            reply_created(reply, done, open_flags)
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(Errno::from_i32(libc::EOPNOTSUPP));
        }
        let fs = self.fs.clone();
        self.spawn(span("fallocate", ino.0, req), async move {
            // Plain fallocate only extends the size; the quota decides like for a write.
            let result = async {
                let size = fs.getattr(ino.0).await?.size;
                let end = offset.saturating_add(length);
                if end > size {
                    let set = SetAttr {
                        size: Some(end),
                        fh: Some(fh.0),
                        ..Default::default()
                    };
                    fs.setattr(ino.0, set).await?;
                }
                Ok::<(), FsError>(())
            }
            .await;
            match result {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }
}

/// How the kernel caches a handle opened with `flags`. Content changes only through this
/// mount, so cached pages stay valid across opens (a re-read never comes back to the
/// daemon); FUSE_AUTO_INVAL_DATA drops them if an attribute refresh shows a change.
///
/// A write-only handle writes around the page cache (`FOPEN_DIRECT_IO`) where the kernel
/// drops what other handles cached over a range written around it (`write_around`,
/// Linux 6.6+); elsewhere, and for every handle that reads, writes go through the page
/// cache (write-through), which keeps its pages current. Through the page cache, every
/// byte written is copied into a page of the kernel's that nothing reads (the writer does
/// not, and the daemon keeps its own staged copy): on a VM whose host takes back freed
/// memory, a fresh page per 4 KiB written, and the costliest step of a large copy
/// (BENCHMARKS.md). A write-only handle cannot be mapped, so nothing relies on its pages.
fn open_flags(flags: i32, write_around: bool) -> FopenFlags {
    let write_only = flags & libc::O_ACCMODE == libc::O_WRONLY;
    match write_around && write_only {
        true => FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_DIRECT_IO,
        false => FopenFlags::FOPEN_KEEP_CACHE,
    }
}

fn reply_created(
    reply: ReplyCreate,
    created: Result<(crate::fs::Attr, u64), FsError>,
    open_flags: FopenFlags,
) {
    match created {
        Ok((a, fh)) => reply.created(
            &TTL,
            &attr::file_attr(&a),
            Generation(0),
            FileHandle(fh),
            open_flags,
        ),
        Err(e) => reply.error(errno(&e)),
    }
}

fn reply_empty_dir(reply: ReplyDirectory, done: Result<(), FsError>) {
    match done {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(&e)),
    }
}

fn sized_reply(reply: ReplyXattr, size: u32, value: &[u8]) {
    if size == 0 {
        reply.size(value.len() as u32);
    } else if value.len() > size as usize {
        reply.error(Errno::from_i32(libc::ERANGE));
    } else {
        reply.data(value);
    }
}
