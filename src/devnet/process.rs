//! Child processes of the devnet: each in a process group of its own, so a terminal's
//! Ctrl-C (SIGINT to the foreground process group) reaches only the devnet, which then
//! stops them in order; started so that they die with the devnet (parent-death signal);
//! stopped with SIGTERM first so they can shut down cleanly.

use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::DevnetError;

/// Asks the kernel to SIGTERM the child when the devnet dies, so no process outlives it,
/// even after a SIGKILL of the devnet; and puts the child in a process group of its own,
/// out of reach of the terminal's signals.
fn detach_and_tie_to_parent(cmd: &mut std::process::Command) {
    cmd.process_group(0);
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// A running child that is terminated (SIGTERM, then SIGKILL) when stopped or dropped.
pub struct ChildProcess {
    name: &'static str,
    child: Option<Child>,
}

impl ChildProcess {
    /// Spawns `cmd`; it inherits our stdout and stderr.
    pub fn spawn(
        name: &'static str,
        mut cmd: std::process::Command,
    ) -> Result<ChildProcess, DevnetError> {
        cmd.stdin(Stdio::null());
        detach_and_tie_to_parent(&mut cmd);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = Command::from(cmd)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| DevnetError::Spawn {
                name,
                program,
                source,
            })?;
        Ok(ChildProcess {
            name,
            child: Some(child),
        })
    }

    /// Spawns `cmd` and waits until a line on its stdout starts with `ready_prefix`;
    /// returns the rest of that line. Further stdout goes to the debug log.
    pub async fn spawn_until(
        name: &'static str,
        mut cmd: std::process::Command,
        ready_prefix: &str,
        timeout: Duration,
    ) -> Result<(ChildProcess, String), DevnetError> {
        cmd.stdout(Stdio::piped());
        let mut proc = Self::spawn(name, cmd)?;
        let stdout = proc
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await.ok().flatten() {
                if let Some(rest) = line.strip_prefix(ready_prefix) {
                    return Some(rest.trim().to_string());
                }
                tracing::debug!(target: "pxfs::devnet", "{name}: {line}");
            }
            None
        };
        let found = tokio::time::timeout(timeout, wait).await;
        match found {
            Ok(Some(rest)) => {
                // Keep draining stdout so the child never blocks on a full pipe.
                tokio::spawn(async move {
                    while let Ok(Some(line)) = lines.next_line().await {
                        tracing::debug!(target: "pxfs::devnet", "{name}: {line}");
                    }
                });
                Ok((proc, rest))
            }
            Ok(None) => {
                let status = proc.stop().await;
                Err(DevnetError::ChildExited { name, status })
            }
            Err(_) => {
                proc.stop().await;
                Err(DevnetError::ChildTimeout { name, timeout })
            }
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Sends SIGTERM, and SIGCONT so that a stopped (frozen) child acts on it.
    pub fn terminate(&self) {
        if let Some(pid) = self.id() {
            // SAFETY: plain kill(2) on our own child's pid (not yet reaped: `id` is Some).
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
                libc::kill(pid as i32, libc::SIGCONT);
            }
        }
    }

    /// Waits for the child to exit; `None` if it did not within `timeout`.
    pub async fn wait_within(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        match tokio::time::timeout(timeout, child.wait()).await {
            Ok(Ok(status)) => {
                self.child = None;
                Some(status)
            }
            Ok(Err(_)) | Err(_) => None,
        }
    }

    /// SIGKILL, and wait for it.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            tracing::warn!("{} did not stop in time; killing it", self.name);
            let _ = child.kill().await;
        }
    }

    /// SIGTERM, wait up to `grace`, then SIGKILL. Returns how it ended.
    pub async fn stop_within(&mut self, grace: Duration) -> String {
        if self.child.is_none() {
            return "already stopped".into();
        }
        if let Some(status) = self.exited() {
            self.child = None;
            return status;
        }
        self.terminate();
        match self.wait_within(grace).await {
            Some(status) => status.to_string(),
            None => {
                self.kill().await;
                "killed".into()
            }
        }
    }

    pub async fn stop(&mut self) -> String {
        self.stop_within(Duration::from_secs(10)).await
    }

    /// Whether the child has exited on its own.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.as_mut().map(|c| c.try_wait()) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    }
}
