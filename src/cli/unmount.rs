//! `pxfs unmount`: unmount, then wait for the daemon to finish uploading and committing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::ConfigArg;

#[derive(Debug, Args)]
pub struct UnmountArgs {
    /// The mount point
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub config: ConfigArg,
}

pub async fn run(args: UnmountArgs) -> anyhow::Result<()> {
    let mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    let pid_path = super::mount::pid_file(&mountpoint);
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
            bail!(
                "{} is busy: a process has a file or directory open there (see `fuser -vm {}`); nothing was unmounted",
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
    let mut waited = 0u64;
    // SAFETY: kill with signal 0 only checks that the process exists.
    while unsafe { libc::kill(pid, 0) } == 0 {
        if waited > 0 && waited.is_multiple_of(10) {
            eprintln!("pxfs: waiting for the daemon (pid {pid}) to finish uploading");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        waited += 1;
    }
    Ok(())
}
