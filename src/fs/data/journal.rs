//! The per-token journal under `CACHE/journal/<token>/`: `state.json` (the last committed
//! root) and `ops.log` (every namespace change since, one JSON object per line, one
//! `write(2)` each). Replaying `ops.log` over `state.json` rebuilds the tree after a crash;
//! a commit records its new state and drops the ops it included.
//!
//! A commit may land while uploads are still in flight (so that a long copy commits as it
//! goes): the versions it could not include yet are recorded in `state.json` as `carried`
//! closes, at their paths in the committed tree, and replayed before `ops.log`. So the
//! journal only ever holds what no published commit has, and it shrinks with every commit.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::format::usage::Encryption;
use serde::{Deserialize, Serialize};

use crate::format::v1::manifest::EntryKind;

/// A namespace change, with paths relative to the token's root (`a/b/c`). Paths, symlink
/// targets and xattr names are bytes (see [`text_or_b64`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Mkdir {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime_ns: i64,
    },
    /// A file's content as of a close (or a truncate without an open handle): the staged
    /// file holds that version until a commit covers it.
    Close {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
        staged: PathBuf,
        /// The staged file's length at close: a staged file found shorter or longer at
        /// replay did not reach the disk whole (power loss) and is not replayed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// An overlay version (`super::overlay`): the staged file holds only the chunks
        /// written over this base.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        overlay: Option<super::overlay::Record>,
        mode: u32,
        uid: u32,
        gid: u32,
        mtime_ns: i64,
    },
    Setattr {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gid: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mtime_ns: Option<i64>,
    },
    Rename {
        #[serde(with = "text_or_b64")]
        from: Vec<u8>,
        #[serde(with = "text_or_b64")]
        to: Vec<u8>,
        #[serde(default)]
        exchange: bool,
    },
    Unlink {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
    },
    Rmdir {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
    },
    Symlink {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
        #[serde(with = "text_or_b64")]
        target: Vec<u8>,
        uid: u32,
        gid: u32,
        mtime_ns: i64,
    },
    Link {
        #[serde(with = "text_or_b64")]
        from: Vec<u8>,
        #[serde(with = "text_or_b64")]
        to: Vec<u8>,
    },
    /// A FIFO, socket or device node.
    Mknod {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
        kind: EntryKind,
        mode: u32,
        #[serde(default)]
        rdev: u32,
        uid: u32,
        gid: u32,
        mtime_ns: i64,
    },
    SetXattr {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
        #[serde(with = "text_or_b64")]
        name: Vec<u8>,
        value: String,
    },
    RemoveXattr {
        #[serde(with = "text_or_b64")]
        path: Vec<u8>,
        #[serde(with = "text_or_b64")]
        name: Vec<u8>,
    },
}

impl Op {
    /// The op is a close of the version staged at `staged`.
    pub fn stages(&self, staged: &std::path::Path) -> bool {
        matches!(self, Op::Close { staged: s, .. } if s == staged)
    }

    /// The path of what the op makes (a file's version, a directory, a link, a node), if
    /// it makes something.
    pub fn created(&self) -> Option<&[u8]> {
        match self {
            Op::Mkdir { path, .. }
            | Op::Close { path, .. }
            | Op::Symlink { path, .. }
            | Op::Mknod { path, .. } => Some(path),
            Op::Link { to, .. } | Op::Rename { to, .. } => Some(to),
            Op::Setattr { .. }
            | Op::Unlink { .. }
            | Op::Rmdir { .. }
            | Op::SetXattr { .. }
            | Op::RemoveXattr { .. } => None,
        }
    }

    /// The op and the path it changes, escaped: for logs.
    pub fn describe(&self) -> String {
        let (op, path) = match self {
            Op::Mkdir { path, .. } => ("mkdir", path),
            Op::Close { path, .. } => ("close", path),
            Op::Setattr { path, .. } => ("setattr", path),
            Op::Rename { from, .. } => ("rename", from),
            Op::Unlink { path } => ("unlink", path),
            Op::Rmdir { path } => ("rmdir", path),
            Op::Symlink { path, .. } => ("symlink", path),
            Op::Link { to, .. } => ("link", to),
            Op::Mknod { path, .. } => ("mknod", path),
            Op::SetXattr { path, .. } => ("setxattr", path),
            Op::RemoveXattr { path, .. } => ("removexattr", path),
        };
        format!("{op} {}", crate::format::name::escape(path))
    }
}

/// Byte strings in journal lines: valid UTF-8 as a JSON string (every line written before
/// names became bytes reads as before), anything else as `{"b64":"…"}` (standard base64
/// with padding). Lossless, and each byte string has one form.
mod text_or_b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Text(String),
        Bytes { b64: String },
    }

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(bytes) {
            Ok(text) => s.serialize_str(text),
            Err(_) => Wire::Bytes {
                b64: STANDARD.encode(bytes),
            }
            .serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        match Wire::deserialize(d)? {
            Wire::Text(text) => Ok(text.into_bytes()),
            Wire::Bytes { b64 } => STANDARD
                .decode(b64)
                .map_err(|e| D::Error::custom(format!("\"b64\" is not base64: {e}"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    #[serde(flatten)]
    pub op: Op,
}

/// What the last successful commit published.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedState {
    pub root: Option<String>,
    pub usage_doc: Option<String>,
    /// Usage document sequence number.
    pub seq: u64,
    /// The last journal op this commit included.
    pub journal_seq: u64,
    pub usage: u64,
    pub files: u64,
    /// Closed versions this commit does not include (their upload was in flight): replayed
    /// over `root` before the ops after `journal_seq`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<Op>,
    /// The tree's `encryption` (docs/FORMAT.md §6.4), carried into every usage document:
    /// public, kept here so a mount can unlock the tree without the node.
    #[serde(default, skip_serializing_if = "Encryption::is_none")]
    pub encryption: Encryption,
}

/// One token's journal. Appending only queues the op's line and gives it its sequence
/// number (cheap, done under the tree lock, so sequence order is the order the changes
/// were applied in); [`Journal::write_through`] and [`Journal::sync_through`] write and
/// sync queued lines in that order, called after the tree lock is dropped: a slow cache
/// disk never stalls the tree. Several callers' lines go out in one `write(2)`.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// Held (flock) for as long as the journal is open: one mount per token and cache.
    _lock: File,
    /// Sequence numbers and the ops not yet committed: held only for memory edits.
    book: std::sync::Mutex<Book>,
    /// The log file: held while writing, syncing or rewriting it.
    file: std::sync::Mutex<LogFile>,
    /// Tests: every write to the log first sleeps this long, as a slow disk would.
    disk_delay: std::time::Duration,
}

#[derive(Debug)]
struct Book {
    next_seq: u64,
    /// Ops not yet covered by a commit: (seq, line, staged file the op references). Those
    /// after the log file's `written` are queued, not yet in the file.
    pending: Vec<(u64, String, Option<PathBuf>)>,
    /// Staged files of the last state's carried closes.
    carried: Vec<PathBuf>,
}

#[derive(Debug)]
struct LogFile {
    log: File,
    /// Length of `ops.log`: a failed write is cut back to it, so no torn line is left
    /// in the middle of the log for later appends to follow.
    len: u64,
    /// Ops up to this sequence number were written (or failed to be: see `lost`).
    written: u64,
    /// Sequence numbers whose write failed, with the error: their callers get it.
    lost: std::collections::VecDeque<(std::ops::RangeInclusive<u64>, io::ErrorKind, String)>,
}

/// Failed writes remembered for their callers (each caller asks right after its op).
const LOST_KEPT: usize = 16;

/// The journal as found on disk when a token is mounted.
#[derive(Debug)]
pub struct Recovered {
    pub journal: Journal,
    pub state: Option<CommittedState>,
    pub ops: Vec<Record>,
}

impl Journal {
    pub fn open(dir: &Path) -> io::Result<Recovered> {
        std::fs::create_dir_all(dir)?;
        let lock = lock(dir)?;
        let state =
            match std::fs::read(dir.join("state.json")) {
                Ok(bytes) => Some(serde_json::from_slice::<CommittedState>(&bytes).map_err(
                    |e| io::Error::new(io::ErrorKind::InvalidData, format!("state.json: {e}")),
                )?),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
        let after = state.as_ref().map(|s| s.journal_seq).unwrap_or(0);
        let text = match std::fs::read(dir.join("ops.log")) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        };
        let carried = state
            .as_ref()
            .map(|s| s.carried.clone())
            .unwrap_or_default();
        let mut ops = Vec::new();
        let mut max_seq = after;
        let lines: Vec<&str> = text.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Record>(line) {
                Ok(r) => {
                    max_seq = max_seq.max(r.seq);
                    if r.seq > after {
                        ops.push(r);
                    }
                }
                // A torn last line is what kill -9 mid-write leaves: that op never completed.
                Err(_) if i + 1 == lines.len() => {
                    tracing::warn!(dir = %dir.display(), "ignoring torn last journal line");
                }
                Err(e) => tracing::error!(dir = %dir.display(), line = i + 1, error = %e,
                    "skipping unreadable journal line"),
            }
        }
        // Rewrite the log with only the ops still to replay: drops a torn tail, so the
        // next append starts on a fresh line.
        let book = Book {
            next_seq: max_seq + 1,
            pending: ops
                .iter()
                .map(|r| (r.seq, to_line(r), staged_of(&r.op)))
                .collect(),
            carried: carried.iter().filter_map(staged_of).collect(),
        };
        let file = rewrite(dir, &book, max_seq)?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            _lock: lock,
            book: std::sync::Mutex::new(book),
            file: std::sync::Mutex::new(file),
            disk_delay: std::time::Duration::ZERO,
        };
        let ops = carried
            .into_iter()
            .map(|op| Record { seq: after, op })
            .chain(ops)
            .collect();
        Ok(Recovered {
            journal,
            state,
            ops,
        })
    }

    /// Tests: make every write to the log this much slower.
    pub fn set_disk_delay(&mut self, delay: std::time::Duration) {
        self.disk_delay = delay;
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn file(&self) -> std::sync::MutexGuard<'_, LogFile> {
        self.file.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue one op; returns its sequence number. It is in the log once
    /// [`Journal::write_through`] of that number (or a later one) returned `Ok`.
    pub fn append(&self, op: Op) -> u64 {
        let staged = staged_of(&op);
        let mut book = self.book();
        let seq = book.next_seq;
        book.next_seq += 1;
        let line = to_line(&Record { seq, op });
        book.pending.push((seq, line, staged));
        seq
    }

    /// Write every queued op up to `seq` (and those queued after it, in one `write(2)`):
    /// enough to survive kill -9 (the page cache keeps it). Fails if the write of `seq`
    /// failed, whoever wrote it.
    pub fn write_through(&self, seq: u64) -> io::Result<()> {
        let mut file = self.file();
        if file.written < seq {
            let (lines, last) = {
                let book = self.book();
                let queued = book.pending.partition_point(|(s, _, _)| *s <= file.written);
                let lines: String = book.pending[queued..]
                    .iter()
                    .map(|(_, l, _)| l.as_str())
                    .collect();
                (lines, book.next_seq - 1)
            };
            if !self.disk_delay.is_zero() {
                std::thread::sleep(self.disk_delay);
            }
            let first = file.written + 1;
            file.written = last;
            match file.log.write_all(lines.as_bytes()) {
                Ok(()) => file.len += lines.len() as u64,
                Err(e) => {
                    // A short write (disk full) would glue the next op onto half of this one.
                    if let Err(cut) = file.log.set_len(file.len) {
                        tracing::error!(error = %cut, "cannot cut a failed journal append back");
                    }
                    if file.lost.len() == LOST_KEPT {
                        file.lost.pop_front();
                    }
                    file.lost.push_back((first..=last, e.kind(), e.to_string()));
                }
            }
        }
        match file.lost.iter().find(|(r, _, _)| r.contains(&seq)) {
            Some((_, kind, e)) => Err(io::Error::new(*kind, e.clone())),
            None => Ok(()),
        }
    }

    /// The sequence number of the last op appended.
    pub fn last_seq(&self) -> u64 {
        self.book().next_seq - 1
    }

    /// fsync/fsyncdir: write through `seq` and make the log durable against power loss too.
    pub fn sync_through(&self, seq: u64) -> io::Result<()> {
        self.write_through(seq)?;
        let file = self.file();
        if !self.disk_delay.is_zero() {
            std::thread::sleep(self.disk_delay);
        }
        file.log.sync_data()
    }

    /// Staged files referenced by ops not yet committed.
    pub fn referenced_staged(&self) -> Vec<PathBuf> {
        let book = self.book();
        book.pending
            .iter()
            .filter_map(|(_, _, s)| s.clone())
            .chain(book.carried.iter().cloned())
            .collect()
    }

    /// Ops waiting for a commit, for `pxfs status` and the tests of the journal's bound.
    pub fn pending_ops(&self) -> usize {
        let book = self.book();
        book.pending.len() + book.carried.len()
    }

    /// Remember where this token starts (first mount), so later mounts need not ask the
    /// node before replaying.
    pub fn record_state(&self, state: &CommittedState) -> io::Result<()> {
        write_atomically(
            &self.dir.join("state.json"),
            &serde_json::to_vec_pretty(state).unwrap_or_default(),
        )
    }

    /// A commit covering ops up to `state.journal_seq` (but for `state.carried`) was
    /// published: record it, then drop those ops. Returns the staged files only the dropped
    /// ops referenced.
    pub fn committed(&self, state: &CommittedState) -> io::Result<Vec<PathBuf>> {
        let mut file = self.file();
        write_atomically(
            &self.dir.join("state.json"),
            &serde_json::to_vec_pretty(state).unwrap_or_default(),
        )?;
        let mut book = self.book();
        let (done, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut book.pending)
            .into_iter()
            .partition(|(seq, _, _)| *seq <= state.journal_seq);
        book.pending = keep;
        let was_carried = std::mem::replace(
            &mut book.carried,
            state.carried.iter().filter_map(staged_of).collect(),
        );
        // The new log holds every op still pending, queued ones included.
        let lost = std::mem::take(&mut file.lost);
        *file = rewrite(&self.dir, &book, book.next_seq - 1)?;
        file.lost = lost;
        let still: std::collections::HashSet<&Path> = book
            .pending
            .iter()
            .filter_map(|(_, _, s)| s.as_deref())
            .chain(book.carried.iter().map(PathBuf::as_path))
            .collect();
        Ok(done
            .into_iter()
            .filter_map(|(_, _, s)| s)
            .chain(was_carried)
            .filter(|s| !still.contains(s.as_path()))
            .collect())
    }
}

/// The closes among `ops` (by index) whose file a later op in `ops` does away with: it is
/// unlinked or renamed over. The uploader drops such a version's staged copy as soon as it
/// is moot (`fs::upload::writeback`), before a commit trims its close from the journal: a replay
/// after a crash finds it gone, which is expected, not a loss.
pub fn moot_closes(ops: &[Record]) -> std::collections::HashSet<usize> {
    use std::collections::HashMap;
    let mut open: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut moot = std::collections::HashSet::new();
    // Closes at `from` (or under it, a directory) move to `to`.
    fn moved(open: &mut HashMap<Vec<u8>, usize>, from: &[u8], to: &[u8]) -> Vec<(Vec<u8>, usize)> {
        if let Some(i) = open.remove(from) {
            return vec![(to.to_vec(), i)];
        }
        let mut prefix = from.to_vec();
        prefix.push(b'/');
        let under: Vec<Vec<u8>> = open
            .keys()
            .filter(|k| k.starts_with(&prefix))
            .cloned()
            .collect();
        under
            .into_iter()
            .filter_map(|k| {
                let i = open.remove(&k)?;
                Some(([to, &k[from.len()..]].concat(), i))
            })
            .collect()
    }
    for (i, r) in ops.iter().enumerate() {
        match &r.op {
            // A newer version's close: the older staged copy stays until a commit (see
            // `uploaded::drop_moot_copy`), so it is not expected gone.
            Op::Close { path, .. } => {
                open.insert(path.clone(), i);
            }
            Op::Unlink { path } => moot.extend(open.remove(path)),
            Op::Rename { from, to, exchange } => {
                let there = if *exchange {
                    moved(&mut open, to, from)
                } else {
                    moot.extend(open.remove(to));
                    Vec::new()
                };
                let here = moved(&mut open, from, to);
                open.extend(here.into_iter().chain(there));
            }
            // A second name: the version may outlive the first.
            Op::Link { from, .. } => {
                open.remove(from);
            }
            _ => {}
        }
    }
    moot
}

/// Write `ops.log` anew with the ops of `book` (atomically), all of them up to `written`.
fn rewrite(dir: &Path, book: &Book, written: u64) -> io::Result<LogFile> {
    let tmp = dir.join("ops.log.tmp");
    let text: String = book.pending.iter().map(|(_, l, _)| l.as_str()).collect();
    write_atomically_at(&tmp, &dir.join("ops.log"), text.as_bytes())?;
    Ok(LogFile {
        log: open_log(dir)?,
        len: text.len() as u64,
        written,
        lost: Default::default(),
    })
}

fn lock(dir: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!(
                "{} is in use: this sNFT is already mounted from this cache directory",
                dir.display()
            ),
        ));
    }
    Ok(f)
}

fn to_line(r: &Record) -> String {
    let mut s = serde_json::to_string(r).unwrap_or_default();
    s.push('\n');
    s
}

fn staged_of(op: &Op) -> Option<PathBuf> {
    match op {
        Op::Close { staged, .. } => Some(staged.clone()),
        _ => None,
    }
}

fn open_log(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("ops.log"))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    write_atomically_at(&tmp, path, bytes)
}

/// temp + fsync + rename + fsync(dir): the file is either the old or the new content.
fn write_atomically_at(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    {
        let mut f = File::create(tmp)?;
        f.write_all(bytes)?;
        f.sync_data()?;
    }
    std::fs::rename(tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unlink(p: &str) -> Op {
        Op::Unlink { path: p.into() }
    }

    #[test]
    fn names_that_are_not_utf8_survive_reopen_and_old_lines_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let odd = Op::Symlink {
            path: b"d\xff/r\xe9sum\xe9\n".to_vec(),
            target: b"../\xfe\x01".to_vec(),
            uid: 0,
            gid: 0,
            mtime_ns: 1,
        };
        let xattr = Op::SetXattr {
            path: b"plain".to_vec(),
            name: b"user.\xff".to_vec(),
            value: "00".into(),
        };
        {
            let j = Journal::open(dir.path()).unwrap().journal;
            j.append(odd.clone());
            let last = j.append(xattr.clone());
            j.write_through(last).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join("ops.log")).unwrap();
        assert!(
            text.contains(r#""path":{"b64":"ZP8vculzdW3pCg=="}"#),
            "{text}"
        );
        assert!(text.contains(r#""path":"plain""#), "{text}");
        // A line as the journal wrote it before names were bytes.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("ops.log"))
            .unwrap();
        f.write_all(b"{\"seq\":3,\"op\":\"rename\",\"from\":\"a\",\"to\":\"r\xc3\xa9\"}\n")
            .unwrap();
        let ops: Vec<Op> = Journal::open(dir.path())
            .unwrap()
            .ops
            .into_iter()
            .map(|r| r.op)
            .collect();
        let old = Op::Rename {
            from: b"a".to_vec(),
            to: "r\u{e9}".into(),
            exchange: false,
        };
        assert_eq!(ops, vec![odd, xattr, old]);
    }

    #[test]
    fn ops_survive_reopen_and_a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let j = Journal::open(dir.path()).unwrap().journal;
            j.append(unlink("a"));
            let last = j.append(unlink("b"));
            j.write_through(last).unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join("ops.log"))
            .unwrap();
        f.write_all(br#"{"seq":3,"op":"unl"#).unwrap();
        let r = Journal::open(dir.path()).unwrap();
        let ops: Vec<Op> = r.ops.into_iter().map(|r| r.op).collect();
        assert_eq!(ops, vec![unlink("a"), unlink("b")]);
    }

    #[test]
    fn a_journal_can_be_open_only_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = Journal::open(dir.path()).unwrap();
        assert!(Journal::open(dir.path()).is_err());
        drop(first);
        assert!(Journal::open(dir.path()).is_ok());
    }

    #[test]
    fn carried_closes_are_replayed_first_and_keep_their_staged_files() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap().journal;
        let close = |p: &str| Op::Close {
            path: p.into(),
            staged: dir.path().join(p),
            size: None,
            overlay: None,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
        };
        j.append(close("a"));
        j.append(close("b"));
        let cut = j.last_seq();
        j.append(unlink("c"));
        // "b" was still uploading: the commit carries it.
        let state = CommittedState {
            journal_seq: cut,
            carried: vec![close("b")],
            ..Default::default()
        };
        let delete = j.committed(&state).unwrap();
        assert_eq!(delete, vec![dir.path().join("a")]);
        assert_eq!(j.pending_ops(), 2);
        drop(j);
        let r = Journal::open(dir.path()).unwrap();
        let ops: Vec<Op> = r.ops.into_iter().map(|r| r.op).collect();
        assert_eq!(ops, vec![close("b"), unlink("c")]);
        let j = r.journal;
        // The next commit includes "b": its staged file is no longer needed.
        let state = CommittedState {
            journal_seq: j.last_seq(),
            ..Default::default()
        };
        assert_eq!(j.committed(&state).unwrap(), vec![dir.path().join("b")]);
        assert_eq!(j.pending_ops(), 0);
    }

    #[test]
    fn closes_a_later_op_undoes_are_moot_through_renames() {
        let close = |p: &str| Op::Close {
            path: p.into(),
            staged: PathBuf::from(format!("/s/{p}")),
            size: None,
            overlay: None,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime_ns: 0,
        };
        let rename = |f: &str, t: &str| Op::Rename {
            from: f.into(),
            to: t.into(),
            exchange: false,
        };
        let ops: Vec<Record> = [
            close("a"), // 0: renamed to b, then unlinked: moot
            rename("a", "b"),
            unlink("b"),
            close("c"),   // 3: closed again: kept (its copy stays until a commit)
            close("c"),   // 4: kept
            close("d/e"), // 5: its directory renamed, then unlinked: moot
            rename("d", "f"),
            unlink("f/e"),
            close("g"), // 8: renamed over by h: moot
            close("h"), // 9: kept (as g)
            rename("h", "g"),
            close("k"), // 11: hard-linked, then its first name unlinked: kept
            Op::Link {
                from: "k".into(),
                to: "l".into(),
            },
            unlink("k"),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, op)| Record { seq: i as u64, op })
        .collect();
        let mut moot: Vec<usize> = moot_closes(&ops).into_iter().collect();
        moot.sort();
        assert_eq!(moot, vec![0, 5, 8]);
    }

    #[test]
    fn a_commit_drops_the_ops_it_included() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap().journal;
        j.append(unlink("a"));
        let cut = j.last_seq();
        let last = j.append(unlink("b"));
        j.write_through(last).unwrap();
        let state = CommittedState {
            journal_seq: cut,
            ..Default::default()
        };
        j.committed(&state).unwrap();
        drop(j);
        let r = Journal::open(dir.path()).unwrap();
        assert_eq!(r.state, Some(state));
        let ops: Vec<Op> = r.ops.into_iter().map(|r| r.op).collect();
        assert_eq!(ops, vec![unlink("b")]);
    }
}
