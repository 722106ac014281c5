//! The operations a test script is made of, how proptest generates them, and how a
//! failing script prints (one step per line, paths spelled out).

use std::fmt;

use proptest::prelude::*;

/// Names the paths are built from: few, so that operations collide (EEXIST, ENOTEMPTY,
/// rename over an existing name) often.
pub const NAMES: [&str; 3] = ["a", "b", "c"];
/// Extended attribute names used by the scripts.
pub const XATTRS: [&str; 2] = ["user.x", "user.y"];

/// A path below the sNFT root as indices into [`NAMES`]; empty is the root itself.
#[derive(Clone, PartialEq, Eq)]
pub struct P(pub Vec<u8>);

impl P {
    pub fn parts(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|i| NAMES[*i as usize % NAMES.len()])
    }
}

impl fmt::Debug for P {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "/");
        }
        let parts: Vec<&str> = self.parts().collect();
        write!(f, "{}", parts.join("/"))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameFlag {
    None,
    NoReplace,
    Exchange,
}

/// One step of a script. `h` picks an open handle (`h % open handles`; no-op when none).
#[derive(Clone, PartialEq, Eq)]
pub enum Op {
    /// `open(path, O_RDWR | O_CREAT [| O_EXCL], mode)`, kept open.
    Create {
        path: P,
        excl: bool,
        mode: u32,
    },
    /// `open(path, O_RDONLY | O_RDWR [| O_TRUNC] [| O_APPEND])`, kept open.
    Open {
        path: P,
        write: bool,
        trunc: bool,
        append: bool,
    },
    /// `pwrite(h, offset, len bytes counting up from byte)`.
    Write {
        h: usize,
        offset: u64,
        len: usize,
        byte: u8,
    },
    Read {
        h: usize,
        offset: u64,
        len: u32,
    },
    /// `truncate(path, size)`.
    Truncate {
        path: P,
        size: u64,
    },
    /// `ftruncate(h, size)`.
    Ftruncate {
        h: usize,
        size: u64,
    },
    /// One descriptor of a dup'ed pair closed (FUSE `FLUSH` without `RELEASE`).
    Flush {
        h: usize,
    },
    /// `RELEASE` without a `FLUSH` first.
    Release {
        h: usize,
    },
    /// `close(2)`: `FLUSH` then `RELEASE`.
    Close {
        h: usize,
    },
    Fsync {
        h: usize,
    },
    Mkdir {
        path: P,
        mode: u32,
    },
    Rmdir {
        path: P,
    },
    Unlink {
        path: P,
    },
    Rename {
        from: P,
        to: P,
        flag: RenameFlag,
    },
    Link {
        from: P,
        to: P,
    },
    Symlink {
        path: P,
        target: u8,
    },
    Chmod {
        path: P,
        mode: u32,
    },
    Chown {
        path: P,
        uid: u32,
        gid: u32,
    },
    /// `utimensat(path, {t, t})`.
    Utimes {
        path: P,
        mtime: i64,
    },
    SetXattr {
        path: P,
        name: usize,
        value: u8,
        flags: i32,
    },
    RemoveXattr {
        path: P,
        name: usize,
    },
    /// Wait for every upload, commit (`flush_all`).
    Commit,
    /// The daemon dies (nothing drained or committed) and mounts again with the same
    /// cache: journal replay.
    Crash,
    /// Every descriptor closed, everything committed, mounted again from an empty cache
    /// (another machine).
    Remount,
    /// The storage node stops answering.
    Offline,
    Online,
    /// The kernel forgets every inode (memory pressure) and the core unloads every
    /// directory it can (`[cache] max_loaded_inodes`); the next step reads them again.
    Unload,
    /// Time passes: the simulated clock the commits take their time from moves on (history
    /// scripts; a no-op otherwise).
    Wait {
        secs: u64,
    },
    /// A change under `.snapshots/` (docs/FORMAT.md §14.1): refused with `EROFS`. `snap`
    /// picks a listed version (none listed: `.snapshots/` itself), `what` the change and
    /// the path in that version it is made to.
    ChangeSnapshot {
        snap: usize,
        what: usize,
    },
}

impl Op {
    pub fn data(len: usize, byte: u8) -> Vec<u8> {
        (0..len).map(|i| byte.wrapping_add(i as u8)).collect()
    }

    pub fn target(t: u8) -> String {
        ["a", "../b", "c/d/e", "/abs"][t as usize % 4].to_string()
    }
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Create { path, excl, mode } => {
                let excl = if *excl { "|O_EXCL" } else { "" };
                write!(f, "create {path:?} O_RDWR|O_CREAT{excl} {mode:o}")
            }
            Op::Open {
                path,
                write,
                trunc,
                append,
            } => {
                let mut flags = if *write { "O_RDWR" } else { "O_RDONLY" }.to_string();
                if *trunc {
                    flags.push_str("|O_TRUNC");
                }
                if *append {
                    flags.push_str("|O_APPEND");
                }
                write!(f, "open {path:?} {flags}")
            }
            Op::Write {
                h,
                offset,
                len,
                byte,
            } => write!(f, "write h{h} at {offset} {len} bytes from {byte:#04x}"),
            Op::Read { h, offset, len } => write!(f, "read h{h} at {offset} {len} bytes"),
            Op::Truncate { path, size } => write!(f, "truncate {path:?} {size}"),
            Op::Ftruncate { h, size } => write!(f, "ftruncate h{h} {size}"),
            Op::Flush { h } => write!(f, "flush h{h}"),
            Op::Release { h } => write!(f, "release h{h}"),
            Op::Close { h } => write!(f, "close h{h}"),
            Op::Fsync { h } => write!(f, "fsync h{h}"),
            Op::Mkdir { path, mode } => write!(f, "mkdir {path:?} {mode:o}"),
            Op::Rmdir { path } => write!(f, "rmdir {path:?}"),
            Op::Unlink { path } => write!(f, "unlink {path:?}"),
            Op::Rename { from, to, flag } => match flag {
                RenameFlag::None => write!(f, "rename {from:?} {to:?}"),
                RenameFlag::NoReplace => write!(f, "rename {from:?} {to:?} NOREPLACE"),
                RenameFlag::Exchange => write!(f, "rename {from:?} {to:?} EXCHANGE"),
            },
            Op::Link { from, to } => write!(f, "link {from:?} {to:?}"),
            Op::Symlink { path, target } => {
                write!(f, "symlink {path:?} -> {:?}", Op::target(*target))
            }
            Op::Chmod { path, mode } => write!(f, "chmod {path:?} {mode:o}"),
            Op::Chown { path, uid, gid } => write!(f, "chown {path:?} {uid}:{gid}"),
            Op::Utimes { path, mtime } => write!(f, "utimes {path:?} {mtime}"),
            Op::SetXattr {
                path,
                name,
                value,
                flags,
            } => {
                let flags = match flags {
                    1 => " XATTR_CREATE",
                    2 => " XATTR_REPLACE",
                    _ => "",
                };
                write!(
                    f,
                    "setxattr {path:?} {}={value}{flags}",
                    XATTRS[name % XATTRS.len()]
                )
            }
            Op::RemoveXattr { path, name } => {
                write!(f, "removexattr {path:?} {}", XATTRS[name % XATTRS.len()])
            }
            Op::Commit => write!(f, "commit"),
            Op::Crash => write!(f, "CRASH"),
            Op::Remount => write!(f, "REMOUNT (fresh cache)"),
            Op::Offline => write!(f, "node offline"),
            Op::Online => write!(f, "node online"),
            Op::Unload => write!(f, "kernel forgets all; unload"),
            Op::Wait { secs } => write!(f, "wait {secs} s"),
            Op::ChangeSnapshot { snap, what } => {
                write!(f, "change a snapshot: version {snap} change {what}")
            }
        }
    }
}

/// A script: printed one numbered step per line.
#[derive(Clone)]
pub struct Script(pub Vec<Op>);

impl fmt::Debug for Script {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "[")?;
        for (i, op) in self.0.iter().enumerate() {
            writeln!(f, "  {i:3}: {op:?}")?;
        }
        write!(f, "]")
    }
}

fn path() -> impl Strategy<Value = P> {
    prop_oneof![
        5 => proptest::collection::vec(0u8..3, 1..=1),
        4 => proptest::collection::vec(0u8..3, 2..=2),
        2 => proptest::collection::vec(0u8..3, 3..=3),
    ]
    .prop_map(P)
}

/// A path that may also be the root (for attribute changes).
fn path_or_root() -> impl Strategy<Value = P> {
    prop_oneof![1 => Just(P(Vec::new())), 8 => path()]
}

fn mode() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0o644), Just(0o600), Just(0o755), Just(0o4711)]
}

/// 128 KiB: files past one chunk are stored as chunks (docs/FORMAT.md §13), and changed
/// through overlays over their committed chunks.
const CHUNK: u64 = 131_072;

/// Near a chunk boundary of a file of a few chunks: partial rewrites of chunked files, and
/// holes (the chunks between stay all-zero).
fn chunk_scale() -> impl Strategy<Value = u64> {
    (1u64..6, 0u64..64).prop_map(|(c, d)| c * CHUNK + d - 32)
}

/// Where a write lands: mostly in the first bytes (names collide, files stay small), now
/// and then at the chunk scale.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![5 => 0u64..200, 1 => chunk_scale()]
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![5 => 0u64..256, 1 => chunk_scale()]
}

pub fn op() -> impl Strategy<Value = Op> {
    let h = 0usize..8;
    prop_oneof![
        10 => (path(), any::<bool>(), mode()).prop_map(|(path, excl, mode)| Op::Create { path, excl, mode }),
        6 => (path(), any::<bool>(), any::<bool>(), prop::bool::weighted(0.15)).prop_map(
            |(path, write, trunc, append)| Op::Open { path, write, trunc: write && trunc, append: write && append }
        ),
        16 => (h.clone(), offset(), 0usize..64, any::<u8>()).prop_map(|(h, offset, len, byte)| Op::Write { h, offset, len, byte }),
        4 => (h.clone(), offset(), 1u32..256).prop_map(|(h, offset, len)| Op::Read { h, offset, len }),
        3 => (path_or_root(), size()).prop_map(|(path, size)| Op::Truncate { path, size }),
        3 => (h.clone(), size()).prop_map(|(h, size)| Op::Ftruncate { h, size }),
        4 => h.clone().prop_map(|h| Op::Flush { h }),
        2 => h.clone().prop_map(|h| Op::Release { h }),
        9 => h.clone().prop_map(|h| Op::Close { h }),
        2 => h.clone().prop_map(|h| Op::Fsync { h }),
        8 => (path(), mode()).prop_map(|(path, mode)| Op::Mkdir { path, mode }),
        4 => path().prop_map(|path| Op::Rmdir { path }),
        6 => path().prop_map(|path| Op::Unlink { path }),
        8 => (path(), path(), prop_oneof![6 => Just(RenameFlag::None), 1 => Just(RenameFlag::NoReplace), 1 => Just(RenameFlag::Exchange)])
            .prop_map(|(from, to, flag)| Op::Rename { from, to, flag }),
        4 => (path(), path()).prop_map(|(from, to)| Op::Link { from, to }),
        3 => (path(), any::<u8>()).prop_map(|(path, target)| Op::Symlink { path, target }),
        3 => (path_or_root(), mode()).prop_map(|(path, mode)| Op::Chmod { path, mode }),
        1 => (path_or_root(), 0u32..3, 0u32..3).prop_map(|(path, uid, gid)| Op::Chown { path, uid, gid }),
        3 => (path_or_root(), 1i64..4).prop_map(|(path, t)| Op::Utimes { path, mtime: t * 1_000_000_007 }),
        4 => (path_or_root(), 0usize..2, any::<u8>(), prop_oneof![2 => Just(0), 1 => Just(1), 1 => Just(2)])
            .prop_map(|(path, name, value, flags)| Op::SetXattr { path, name, value, flags }),
        2 => (path_or_root(), 0usize..2).prop_map(|(path, name)| Op::RemoveXattr { path, name }),
        3 => Just(Op::Commit),
        3 => Just(Op::Crash),
        2 => Just(Op::Remount),
        2 => Just(Op::Offline),
        2 => Just(Op::Online),
        3 => Just(Op::Unload),
    ]
}

pub fn script(max_len: usize) -> impl Strategy<Value = Script> {
    proptest::collection::vec(op(), 1..=max_len).prop_map(Script)
}

/// Seconds to days between steps (as `tests/fs_history.rs`; shorter ones more often, so
/// that versions are kept a while): enough for the retention policy to drop versions by
/// every rule.
fn wait() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => 1u64..120,
        3 => 60u64..3_660,
        2 => 3_600u64..23_600,
        1 => 86_400u64..486_400,
    ]
    .prop_map(|secs| Op::Wait { secs })
}

/// A script for a mount that keeps history: the usual steps, with more commits (each makes
/// a version), time passing between them, and now and then a change attempted under
/// `.snapshots/`.
pub fn history_script(max_len: usize) -> impl Strategy<Value = Script> {
    let top = || proptest::collection::vec(0u8..3, 1..=2).prop_map(P);
    let step = prop_oneof![
        12 => op(),
        // Changes that mostly succeed (names near the top, writes to what is open), so
        // that most commits have something to publish.
        2 => (top(), mode()).prop_map(|(path, mode)| Op::Create { path, excl: false, mode }),
        1 => (top(), mode()).prop_map(|(path, mode)| Op::Mkdir { path, mode }),
        3 => (0usize..8, 0u64..200, 1usize..64, any::<u8>())
            .prop_map(|(h, offset, len, byte)| Op::Write { h, offset, len, byte }),
        2 => (0usize..8).prop_map(|h| Op::Close { h }),
        5 => Just(Op::Commit),
        // Outages short: a commit while the node is down makes no version.
        3 => Just(Op::Online),
        4 => wait(),
        2 => (0usize..8, 0usize..64).prop_map(|(snap, what)| Op::ChangeSnapshot { snap, what }),
    ];
    proptest::collection::vec(step, 1..=max_len).prop_map(Script)
}

/// A script as [`Script`]'s `Debug` prints it, read back (one step per line, `N: step`;
/// other lines are skipped): failures found elsewhere replay and shrink by hand through
/// the `replay` test without rebuilding.
pub fn parse_script(text: &str) -> Result<Script, String> {
    let mut ops = Vec::new();
    for line in text.lines() {
        let Some((n, step)) = line.trim().split_once(": ") else {
            continue;
        };
        if n.parse::<usize>().is_err() {
            continue;
        }
        ops.push(parse_op(step.trim().trim_end_matches(',')).map_err(|e| format!("{line}: {e}"))?);
    }
    Ok(Script(ops))
}

fn parse_op(step: &str) -> Result<Op, String> {
    let w: Vec<&str> = step.split_whitespace().collect();
    let path = |s: &str| -> Result<P, String> {
        if s == "/" {
            return Ok(P(Vec::new()));
        }
        s.split('/')
            .map(|n| {
                NAMES
                    .iter()
                    .position(|x| *x == n)
                    .map(|i| i as u8)
                    .ok_or(format!("unknown name {n}"))
            })
            .collect::<Result<_, _>>()
            .map(P)
    };
    let num = |s: &str| s.parse::<u64>().map_err(|e| format!("{s}: {e}"));
    let octal = |s: &str| u32::from_str_radix(s, 8).map_err(|e| format!("{s}: {e}"));
    let h = |s: &str| {
        s.trim_start_matches('h')
            .parse::<usize>()
            .map_err(|e| format!("{s}: {e}"))
    };
    let arg = |i: usize| {
        w.get(i)
            .copied()
            .ok_or(format!("too few words in `{step}`"))
    };
    let xattr = |s: &str| {
        XATTRS
            .iter()
            .position(|x| *x == s)
            .ok_or(format!("unknown xattr {s}"))
    };
    Ok(match arg(0)? {
        "create" => Op::Create {
            path: path(arg(1)?)?,
            excl: arg(2)?.contains("O_EXCL"),
            mode: octal(arg(3)?)?,
        },
        "open" => Op::Open {
            path: path(arg(1)?)?,
            write: arg(2)?.contains("O_RDWR"),
            trunc: arg(2)?.contains("O_TRUNC"),
            append: arg(2)?.contains("O_APPEND"),
        },
        "write" => Op::Write {
            h: h(arg(1)?)?,
            offset: num(arg(3)?)?,
            len: num(arg(4)?)? as usize,
            byte: u8::from_str_radix(arg(7)?.trim_start_matches("0x"), 16)
                .map_err(|e| e.to_string())?,
        },
        "read" => Op::Read {
            h: h(arg(1)?)?,
            offset: num(arg(3)?)?,
            len: num(arg(4)?)? as u32,
        },
        "truncate" => Op::Truncate {
            path: path(arg(1)?)?,
            size: num(arg(2)?)?,
        },
        "ftruncate" => Op::Ftruncate {
            h: h(arg(1)?)?,
            size: num(arg(2)?)?,
        },
        "flush" => Op::Flush { h: h(arg(1)?)? },
        "release" => Op::Release { h: h(arg(1)?)? },
        "close" => Op::Close { h: h(arg(1)?)? },
        "fsync" => Op::Fsync { h: h(arg(1)?)? },
        "mkdir" => Op::Mkdir {
            path: path(arg(1)?)?,
            mode: octal(arg(2)?)?,
        },
        "rmdir" => Op::Rmdir {
            path: path(arg(1)?)?,
        },
        "unlink" => Op::Unlink {
            path: path(arg(1)?)?,
        },
        "rename" => Op::Rename {
            from: path(arg(1)?)?,
            to: path(arg(2)?)?,
            flag: match w.get(3) {
                Some(&"NOREPLACE") => RenameFlag::NoReplace,
                Some(&"EXCHANGE") => RenameFlag::Exchange,
                _ => RenameFlag::None,
            },
        },
        "link" => Op::Link {
            from: path(arg(1)?)?,
            to: path(arg(2)?)?,
        },
        "symlink" => {
            let t = arg(3)?.trim_matches('"');
            Op::Symlink {
                path: path(arg(1)?)?,
                target: (0..4u8)
                    .find(|i| Op::target(*i) == t)
                    .ok_or(format!("unknown target {t}"))?,
            }
        }
        "chmod" => Op::Chmod {
            path: path(arg(1)?)?,
            mode: octal(arg(2)?)?,
        },
        "chown" => {
            let (u, g) = arg(2)?.split_once(':').ok_or("uid:gid")?;
            Op::Chown {
                path: path(arg(1)?)?,
                uid: num(u)? as u32,
                gid: num(g)? as u32,
            }
        }
        "utimes" => Op::Utimes {
            path: path(arg(1)?)?,
            mtime: arg(2)?.parse().map_err(|e| format!("{e}"))?,
        },
        "setxattr" => {
            let (name, value) = arg(2)?.split_once('=').ok_or("name=value")?;
            Op::SetXattr {
                path: path(arg(1)?)?,
                name: xattr(name)?,
                value: num(value)? as u8,
                flags: match w.get(3) {
                    Some(&"XATTR_CREATE") => 1,
                    Some(&"XATTR_REPLACE") => 2,
                    _ => 0,
                },
            }
        }
        "removexattr" => Op::RemoveXattr {
            path: path(arg(1)?)?,
            name: xattr(arg(2)?)?,
        },
        "commit" => Op::Commit,
        "CRASH" => Op::Crash,
        "REMOUNT" => Op::Remount,
        "node" if arg(1)? == "offline" => Op::Offline,
        "node" => Op::Online,
        "kernel" => Op::Unload,
        "wait" => Op::Wait {
            secs: num(arg(1)?)?,
        },
        "change" => Op::ChangeSnapshot {
            snap: num(arg(4)?)? as usize,
            what: num(arg(6)?)? as usize,
        },
        other => return Err(format!("unknown step {other}")),
    })
}
