//! A local anvil chain for the devnet and the tests: spawned on a free loopback port,
//! answered before it is handed out, killed when dropped.
//!
//! The binary is `$PXFS_ANVIL`, else `anvil` on `PATH`, else the one the npm package
//! `@foundry-rs/anvil-linux-amd64` installs under `contracts/node_modules`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Anvil's well-known development accounts (mnemonic "test test … junk"). Public keys with
/// no value anywhere but a local devnet; never use them elsewhere.
pub const DEV_KEYS: [&str; 4] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];
pub const DEV_ADDRESSES: [&str; 4] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
];
pub const DEV_CHAIN_ID: u64 = 31337;

const START_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum AnvilError {
    #[error(
        "anvil not found: set PXFS_ANVIL, put anvil on PATH, or run scripts/setup.sh (npm ci in contracts/)"
    )]
    NotFound,
    #[error("cannot start anvil ({binary}): {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("anvil exited before it listened")]
    ExitedEarly,
    #[error("anvil did not listen within {0:?}")]
    Timeout(Duration),
}

/// A running anvil; the process is killed when this is dropped.
pub struct Anvil {
    child: Child,
    port: u16,
}

impl Anvil {
    /// Starts anvil on a free loopback port with the default chain id and dev accounts.
    pub fn spawn() -> Result<Anvil, AnvilError> {
        Self::spawn_with(&[])
    }

    /// As `spawn`, with extra anvil arguments (e.g. `--block-time 1`).
    pub fn spawn_with(extra_args: &[&str]) -> Result<Anvil, AnvilError> {
        let binary = locate()?;
        // Port 0: anvil picks a free port and prints it, so there is no bind race.
        let mut cmd = Command::new(&binary);
        // Anvil dies with whoever started it (even after a SIGKILL of the devnet), with
        // SIGTERM, on which it still writes its `--state` file; in a process group of its
        // own, so a terminal's Ctrl-C reaches only its parent, which stops it in order.
        // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0).pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| AnvilError::Spawn {
                binary: binary.clone(),
                source,
            })?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return Err(AnvilError::ExitedEarly);
        };
        let (tx, rx) = std::sync::mpsc::channel();
        // Anvil logs every request to stdout; keep draining it so it never blocks on a
        // full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(port) = listening_port(&line)
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(port);
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(port) => return Ok(Anvil { child, port }),
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(AnvilError::ExitedEarly);
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(AnvilError::Timeout(START_TIMEOUT));
                    }
                }
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn chain_id(&self) -> u64 {
        DEV_CHAIN_ID
    }

    /// How anvil ended, if it has exited on its own.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM (anvil writes its `--state` file then), wait up to `grace`, then SIGKILL.
    pub fn stop_within(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return;
        }
        // SAFETY: plain kill(2) on our own child, not reaped yet (it has not exited).
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
            libc::kill(self.child.id() as i32, libc::SIGCONT);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// "Listening on 127.0.0.1:34567" → 34567.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.trim().strip_prefix("Listening on ")?;
    rest.rsplit(':').next()?.trim().parse().ok()
}

fn locate() -> Result<PathBuf, AnvilError> {
    if let Some(p) = std::env::var_os("PXFS_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("anvil");
            if p.is_file() {
                return Ok(p);
            }
        }
    }
    let npm = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contracts/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if npm.is_file() {
        return Ok(npm);
    }
    Err(AnvilError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listening_line_gives_the_port() {
        assert_eq!(listening_port("Listening on 127.0.0.1:40123"), Some(40123));
        assert_eq!(listening_port("eth_chainId"), None);
    }

    #[test]
    fn dev_addresses_belong_to_dev_keys() {
        for (key, address) in DEV_KEYS.iter().zip(DEV_ADDRESSES) {
            let signer: alloy::signers::local::PrivateKeySigner = key.parse().unwrap();
            assert_eq!(
                signer.address(),
                address.parse::<alloy::primitives::Address>().unwrap()
            );
        }
    }
}
