//! `pxfs unmount`: unmount, then wait for the daemon to finish uploading and committing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mount point
    pub mountpoint: PathBuf,
    /// End the mount's FUSE connection first: for a daemon that neither answers nor exits
    /// (needs root). What was closed and not yet committed stays in the cache directory's
    /// journal for the next mount, as after `kill -9`.
    #[arg(long)]
    pub abort: bool,
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(args: UnmountArgs) -> anyhow::Result<()> {
    // A killed daemon leaves a dead mount: nothing to drain, just remove it.
    let absolute = super::stale::absolute(&args.mountpoint)?;
    if args.abort {
        super::stale::abort(&absolute)?;
        crate::say_err!(
            "pxfs: aborted the FUSE connection of {} and unmounted it (lazy unmount). Anything \
             its daemon had staged stays in its cache directory's journal: the next \
             `pxfs mount` with that cache uploads and commits it",
            absolute.display()
        );
        return Ok(());
    }
    if super::stale::clean_up(&absolute)? {
        let _ = std::fs::remove_file(super::mount_status::pid_file(&absolute));
        crate::say_err!(
            "pxfs: {} was a stale mount (its pxfs daemon was killed or crashed); unmounted it \
             (lazy unmount). Anything it had staged stays in its cache directory's journal: \
             the next `pxfs mount` with that cache uploads and commits it",
            absolute.display()
        );
        return Ok(());
    }
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    let pid_path = super::mount_status::pid_file(&mountpoint);
    let pid: Option<i32> = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let out = tokio::process::Command::new("fusermount3")
        .arg("-u")
        .arg(&mountpoint)
        .output()
        .await
        .context("running fusermount3")?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        if why.contains("busy") {
            let users = users_of(&mountpoint)
                .iter()
                .map(|(pid, name)| format!("pid {pid} ({name})"))
                .collect::<Vec<_>>()
                .join(", ");
            let who = if users.is_empty() {
                "a process".to_string()
            } else {
                users
            };
            bail!(
                "{} is busy: {who} has a file or directory open there (see `fuser -vm {}`); nothing was unmounted",
                mountpoint.display(),
                mountpoint.display()
            );
        }
        bail!("cannot unmount {}: {}", mountpoint.display(), why.trim());
    }
    // The daemon now drains its upload queue and commits; wait until it is done.
    let Some(pid) = pid else {
        return Ok(());
    };
    let outcome = wait_for_drain(pid, &mountpoint).await;
    match outcome {
        Some(o) if o.committed => Ok(()),
        Some(o) => bail!("{}: {}", mountpoint.display(), o.describe()),
        None => bail!(
            "{} is unmounted, but its daemon (pid {pid}) exited without recording whether              everything was committed (killed?); anything it had staged stays in its cache              directory's journal, and the next `pxfs mount` with that cache uploads and              commits it",
            mountpoint.display()
        ),
    }
}

/// Wait for the daemon to exit, showing its drain progress (files and bytes left) from
/// the status file it publishes; returns the outcome it recorded there, if it did.
async fn wait_for_drain(pid: i32, mountpoint: &Path) -> Option<super::mount_outcome::Outcome> {
    let mut view = DrainView::new(mountpoint);
    while super::mount_status::pid_alive(pid as u32) {
        view.update(pid);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let outcome = view.outcome(pid);
    let line = match &outcome {
        Some(o) if o.committed => {
            format!("uploaded and committed; {} unmounted", mountpoint.display())
        }
        _ => format!("{} unmounted", mountpoint.display()),
    };
    view.finish(Some(&line));
    outcome
}

/// A mount daemon's drain as it reports it in its status file (files and bytes left),
/// shown as progress; `pxfs unmount` and `pxfs devnet up` watch it.
pub struct DrainView {
    link: PathBuf,
    progress: super::progress::Progress,
    total: u64,
    /// The last report: files and bytes not uploaded yet.
    pub left: Option<(u64, u64)>,
}

impl DrainView {
    pub fn new(mountpoint: &Path) -> DrainView {
        DrainView {
            link: super::mount_status::status_link(mountpoint),
            progress: super::progress::Progress::bytes("draining"),
            total: 0,
            left: None,
        }
    }

    /// Reads the daemon's latest report (if it is `pid`'s) and shows it.
    pub fn update(&mut self, pid: i32) {
        if let Some(s) = super::mount_status::read(&self.link).filter(|s| s.pid as i32 == pid) {
            self.total = self.total.max(s.pending_bytes);
            self.left = Some((s.pending_files, s.pending_bytes));
            self.progress
                .bytes_left(self.total, s.pending_bytes, s.pending_files);
        }
    }

    /// The outcome `pid` recorded before it exited, if it did.
    pub fn outcome(&self, pid: i32) -> Option<super::mount_outcome::Outcome> {
        super::mount_status::read(&self.link)
            .filter(|s| s.pid as i32 == pid)
            .and_then(|s| s.outcome)
    }

    pub fn finish(self, msg: Option<&str>) {
        self.progress.finish(msg);
    }
}

/// Processes with a working directory, root or open file under `mountpoint`: (pid, name).
/// Only what /proc lets us read; the links are read without touching the mount itself.
fn users_of(mountpoint: &Path) -> Vec<(u32, String)> {
    let under = |link: PathBuf| std::fs::read_link(link).is_ok_and(|t| t.starts_with(mountpoint));
    let mut users = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return users;
    };
    for entry in procs.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let dir = entry.path();
        let uses = under(dir.join("cwd"))
            || under(dir.join("root"))
            || std::fs::read_dir(dir.join("fd"))
                .map(|fds| fds.flatten().any(|fd| under(fd.path())))
                .unwrap_or(false);
        if uses {
            let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            users.push((pid, name.trim().to_string()));
        }
    }
    users
}
