//! `pxfs history` and `pxfs restore`: an sNFT's kept versions (docs/FORMAT.md §14), read
//! through its mounted directory's `.snapshots/`, so they work on whatever the mount sees
//! (its keys, its cache) and a restore is an ordinary change of the live tree: committed,
//! merged with other machines and counted like any other. The tree a restore replaces is
//! itself kept as a version by its next commit (as retention says), so a restore loses
//! nothing either.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::ConfigArg;
use crate::config::Config;
use crate::format::history::{parse_snapshot_name, snapshot_name};

const SNAPSHOTS: &str = ".snapshots";

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The sNFT
    pub token: u64,
    /// Only what changed under this path of the sNFT (default: the whole tree)
    pub path: Option<PathBuf>,
    /// The sNFT's directory in a mount (default: found among this config's running mounts)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The sNFT
    pub token: u64,
    /// What to bring back: a file or directory, as a path in the sNFT ("/" for all of it)
    pub path: PathBuf,
    /// The version: the newest kept at or before this time (`20261125T204107Z`,
    /// `2026-11-25T20:41:07Z` or Unix seconds)
    #[arg(long, value_name = "TIME")]
    pub at: String,
    /// Copy it here instead of into the live tree (any path, in the mount or not)
    #[arg(long, value_name = "DEST")]
    pub to: Option<PathBuf>,
    /// The sNFT's directory in a mount (default: found among this config's running mounts)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn history(args: HistoryArgs) -> anyhow::Result<()> {
    let dir = token_dir(
        args.token,
        args.dir.as_deref(),
        args.config.config.as_deref(),
    )?;
    let inner = relative(args.path.as_deref().unwrap_or(Path::new("/")))?;
    let versions = versions(&dir)?;
    if versions.is_empty() {
        crate::say!(
            "token {}: no version kept (history is off, or nothing was replaced yet)",
            args.token
        );
    }
    crate::say!("{:<22} {:>14} {:>8}", "VERSION (UTC)", "SIZE", "CHANGED");
    let mut previous: Option<PathBuf> = None;
    let snapshots = dir.join(SNAPSHOTS);
    for name in &versions {
        let root = snapshots.join(name);
        let size = xattr(&root, "user.pxfs.usage").unwrap_or_else(|| "?".into());
        let changed = changes(
            previous.as_deref().map(|p| p.join(&inner)),
            &root.join(&inner),
        )?;
        let changed = match previous {
            None => "-".to_string(),
            Some(_) => changed.to_string(),
        };
        crate::say!("{name:<22} {size:>14} {changed:>8}");
        previous = Some(root);
    }
    let live = changes(
        previous.as_deref().map(|p| p.join(&inner)),
        &dir.join(&inner),
    )?;
    let usage = xattr(&dir, "user.pxfs.usage").unwrap_or_else(|| "?".into());
    crate::say!("{:<22} {usage:>14} {live:>8}", "now (live tree)");
    crate::say!("(SIZE: each version's own usage; the live line: the sNFT's, history included)");
    Ok(())
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let dir = token_dir(
        args.token,
        args.dir.as_deref(),
        args.config.config.as_deref(),
    )?;
    let at = parse_time(&args.at)?;
    let versions = versions(&dir)?;
    let Some(version) = versions
        .iter()
        .rfind(|n| parse_snapshot_name(n).is_some_and(|t| t <= at))
    else {
        bail!(
            "token {}: no version kept at or before {} (kept: {})",
            args.token,
            snapshot_name(at.saturating_mul(1_000_000_000)),
            if versions.is_empty() {
                "none".to_string()
            } else {
                versions.join(", ")
            }
        );
    };
    let inner = relative(&args.path)?;
    let from = dir.join(SNAPSHOTS).join(version).join(&inner);
    let meta = std::fs::symlink_metadata(&from).with_context(|| {
        format!(
            "{} is not in version {version} of token {}",
            args.path.display(),
            args.token
        )
    })?;
    let to = match &args.to {
        Some(dest) => dest.clone(),
        None => dir.join(&inner),
    };
    let mut copied = Copied::default();
    if meta.is_dir() {
        std::fs::create_dir_all(&to).with_context(|| format!("creating {}", to.display()))?;
        copy_dir(&from, &to, &mut copied)?;
    } else {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        copy_entry(&from, &to, &meta, &mut copied)?;
    }
    if args.to.is_none() {
        // Committed before this returns: the restore is on the node (or the error says not).
        let f = std::fs::File::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
        f.sync_all()
            .with_context(|| format!("committing the restore in {}", dir.display()))?;
    }
    crate::say!(
        "restored {} from version {version} to {}: {} file(s), {} director(ies), {} other(s), {} removed",
        args.path.display(),
        to.display(),
        copied.files,
        copied.dirs,
        copied.others,
        copied.removed
    );
    Ok(())
}

/// `path` as a path inside the sNFT (no `..`; a leading `/` is its root).
fn relative(path: &Path) -> anyhow::Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            _ => bail!("{}: a path in the sNFT cannot go up (..)", path.display()),
        }
    }
    if out.starts_with(SNAPSHOTS) {
        bail!(
            "{}: name a path of the tree, not of {SNAPSHOTS}",
            path.display()
        );
    }
    Ok(out)
}

/// A time as Unix seconds: a snapshot name, RFC 3339, or seconds.
fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Some(t) = parse_snapshot_name(s) {
        return Ok(t);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    if let Ok(t) = s.parse::<i64>() {
        return Ok(t);
    }
    bail!("--at {s:?}: give a version name (20261125T204107Z), an RFC 3339 time or Unix seconds")
}

/// The sNFT's directory: `--dir`, or the one a running mount of this config serves.
fn token_dir(token: u64, dir: Option<&Path>, config: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = dir {
        if xattr(dir, "user.pxfs.btns").is_none() && xattr(dir, "user.pxfs.quota").is_none() {
            bail!(
                "{} is not an sNFT's directory in a pxfs mount",
                dir.display()
            );
        }
        return Ok(dir.to_path_buf());
    }
    let cfg = Config::load(config)?;
    super::sync::px_mounted_token_dir(&cfg, token).ok_or_else(|| {
        anyhow::anyhow!(
            "token {token} is not mounted by this config's pxfs (history is read through the \
             mount: run `pxfs mount`, or pass --dir)"
        )
    })
}

/// The kept versions' names, oldest first.
fn versions(dir: &Path) -> anyhow::Result<Vec<String>> {
    let snapshots = dir.join(SNAPSHOTS);
    let entries = match std::fs::read_dir(&snapshots) {
        Ok(e) => e,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            bail!(
                "{} has no {SNAPSHOTS}: its tree is in an older format (the next commit moves it to format 3)",
                dir.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("listing {}", snapshots.display())),
    };
    let mut names: Vec<String> = entries
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("listing {}", snapshots.display()))?;
    names.retain(|n| parse_snapshot_name(n).is_some());
    names.sort();
    Ok(names)
}

/// Files (and other non-directories) that differ between `old` and `new`: added, removed,
/// or changed (content, size, mode, owner or mtime). Subdirectories whose committed CIDs
/// are equal are equal and skipped.
fn changes(old: Option<PathBuf>, new: &Path) -> anyhow::Result<u64> {
    let Some(old) = old else { return Ok(0) };
    let (a, b) = (
        std::fs::symlink_metadata(&old).ok(),
        std::fs::symlink_metadata(new).ok(),
    );
    match (a, b) {
        (None, None) => Ok(0),
        (Some(a), None) => count(&old, &a),
        (None, Some(b)) => count(new, &b),
        (Some(a), Some(b)) if a.is_dir() && b.is_dir() => {
            let (ca, cb) = (xattr(&old, "user.pxfs.cid"), xattr(new, "user.pxfs.cid"));
            if ca.is_some() && ca == cb {
                return Ok(0);
            }
            let names: BTreeSet<std::ffi::OsString> =
                list(&old)?.into_iter().chain(list(new)?).collect();
            let mut n = 0;
            for name in names {
                n += changes(Some(old.join(&name)), &new.join(&name))?;
            }
            Ok(n)
        }
        (Some(a), Some(b)) if a.is_dir() || b.is_dir() => Ok(count(&old, &a)? + count(new, &b)?),
        (Some(a), Some(b)) => {
            let same_content = match (xattr(&old, "user.pxfs.cid"), xattr(new, "user.pxfs.cid")) {
                (Some(x), Some(y)) => x == y,
                _ => {
                    a.size() == b.size()
                        && a.mtime() == b.mtime()
                        && a.mtime_nsec() == b.mtime_nsec()
                }
            };
            let same = same_content
                && a.size() == b.size()
                && a.mode() == b.mode()
                && a.uid() == b.uid()
                && a.gid() == b.gid()
                && a.mtime() == b.mtime()
                && a.mtime_nsec() == b.mtime_nsec();
            Ok(u64::from(!same))
        }
    }
}

/// Non-directories under `path` (1 for a non-directory).
fn count(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<u64> {
    if !meta.is_dir() {
        return Ok(1);
    }
    let mut n = 0;
    for name in list(path)? {
        let p = path.join(name);
        let m =
            std::fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        n += count(&p, &m)?;
    }
    Ok(n)
}

fn list(dir: &Path) -> anyhow::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        out.push(
            e.with_context(|| format!("listing {}", dir.display()))?
                .file_name(),
        );
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct Copied {
    files: u64,
    dirs: u64,
    others: u64,
    removed: u64,
}

/// Makes directory `to` hold what `from` holds: every entry copied (files rewritten only
/// when they differ), entries `from` does not have removed.
fn copy_dir(from: &Path, to: &Path, copied: &mut Copied) -> anyhow::Result<()> {
    let wanted: BTreeSet<std::ffi::OsString> = list(from)?.into_iter().collect();
    for name in list(to)? {
        if wanted.contains(&name) || (to.join(SNAPSHOTS) == to.join(&name)) {
            continue;
        }
        let p = to.join(&name);
        let m =
            std::fs::symlink_metadata(&p).with_context(|| format!("reading {}", p.display()))?;
        if m.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        }
        .with_context(|| format!("removing {}", p.display()))?;
        copied.removed += 1;
    }
    for name in wanted {
        let (src, dst) = (from.join(&name), to.join(&name));
        let meta = std::fs::symlink_metadata(&src)
            .with_context(|| format!("reading {}", src.display()))?;
        if meta.is_dir() {
            match std::fs::symlink_metadata(&dst) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    std::fs::remove_file(&dst)
                        .with_context(|| format!("removing {}", dst.display()))?;
                    std::fs::create_dir(&dst)
                        .with_context(|| format!("creating {}", dst.display()))?;
                }
                Err(_) => std::fs::create_dir(&dst)
                    .with_context(|| format!("creating {}", dst.display()))?,
            }
            copy_dir(&src, &dst, copied)?;
            set_attrs(&src, &dst, &meta)?;
            copied.dirs += 1;
        } else {
            copy_entry(&src, &dst, &meta, copied)?;
        }
    }
    Ok(())
}

/// Copies the non-directory `from` (`meta`) to `to`, replacing what is there.
fn copy_entry(
    from: &Path,
    to: &Path,
    meta: &std::fs::Metadata,
    copied: &mut Copied,
) -> anyhow::Result<()> {
    if let Ok(m) = std::fs::symlink_metadata(to)
        && m.is_dir()
    {
        std::fs::remove_dir_all(to).with_context(|| format!("removing {}", to.display()))?;
    }
    let ft = meta.file_type();
    if ft.is_symlink() {
        let target =
            std::fs::read_link(from).with_context(|| format!("reading {}", from.display()))?;
        let _ = std::fs::remove_file(to);
        std::os::unix::fs::symlink(&target, to)
            .with_context(|| format!("creating {}", to.display()))?;
        copied.others += 1;
        return Ok(());
    }
    if !ft.is_file() {
        crate::say_err!(
            "pxfs: skipped {} (not a file, directory or symlink)",
            from.display()
        );
        return Ok(());
    }
    let unchanged = std::fs::symlink_metadata(to).is_ok_and(|m| {
        m.is_file() && m.size() == meta.size() && std::fs::read(to).ok() == std::fs::read(from).ok()
    });
    if !unchanged {
        let _ = std::fs::remove_file(to);
        std::fs::copy(from, to)
            .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    }
    set_attrs(from, to, meta)?;
    copied.files += 1;
    Ok(())
}

/// Mode, owner (when allowed), times and user extended attributes as in the version.
fn set_attrs(from: &Path, to: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
        .with_context(|| format!("setting the mode of {}", to.display()))?;
    let _ = std::os::unix::fs::chown(to, Some(meta.uid()), Some(meta.gid()));
    for (name, value) in user_xattrs(from) {
        set_xattr(to, &name, &value);
    }
    let times = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    let p = std::ffi::CString::new(to.as_os_str().as_encoded_bytes())?;
    // SAFETY: `p` is NUL-terminated and `times` holds two timespecs, as utimensat reads.
    let r = unsafe { libc::utimensat(libc::AT_FDCWD, p.as_ptr(), times.as_ptr(), 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting the times of {}", to.display()));
    }
    Ok(())
}

fn xattr(path: &Path, name: &str) -> Option<String> {
    super::sync::xattr(path, name)
}

/// The `user.*` extended attributes of `path` but pxfs's own (`user.pxfs.*`).
fn user_xattrs(path: &Path) -> Vec<(std::ffi::CString, Vec<u8>)> {
    let Ok(p) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return Vec::new();
    };
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: `p` is NUL-terminated, `names` is valid for its length.
    let len = unsafe { libc::llistxattr(p.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if len <= 0 {
        return Vec::new();
    }
    names.truncate(len as usize);
    let mut out = Vec::new();
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if !name.starts_with(b"user.") || name.starts_with(b"user.pxfs.") {
            continue;
        }
        let Ok(n) = std::ffi::CString::new(name) else {
            continue;
        };
        let mut value = vec![0u8; 64 * 1024];
        // SAFETY: as above.
        let vlen = unsafe {
            libc::lgetxattr(
                p.as_ptr(),
                n.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if vlen < 0 {
            continue;
        }
        value.truncate(vlen as usize);
        out.push((n, value));
    }
    out
}

fn set_xattr(path: &Path, name: &std::ffi::CStr, value: &[u8]) {
    let Ok(p) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return;
    };
    // SAFETY: `p` and `name` are NUL-terminated, `value` is valid for its length.
    let r = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if r != 0 {
        crate::say_err!(
            "pxfs: cannot set {} on {}: {}",
            name.to_string_lossy(),
            path.display(),
            std::io::Error::last_os_error()
        );
    }
}
