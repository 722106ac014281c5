//! `pxfs devnet up`: a local chain, node and contracts for demos and tests.
//!
//! Stopping (SIGINT, as a terminal's Ctrl-C sends it to the whole foreground process group,
//! or SIGTERM): the children run in process groups of their own, so only the devnet gets
//! the signal. It stops the mount first — the daemon uploads what is staged and commits,
//! with progress shown here — then the oracle, the node and anvil (which saves the chain).
//! The exit status is 0 only if everything closed on the mount was committed; otherwise
//! the devnet says what is left, that the journal keeps it and that the next start resumes
//! it. A second signal stops the wait for the drain at once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand};
use tokio::signal::unix::Signal;

use crate::devnet::{Devnet, DevnetOptions, Layout};

#[derive(Debug, Args)]
pub struct DevnetArgs {
    #[command(subcommand)]
    pub command: DevnetCommand,
}

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// Start anvil and a node, deploy the contracts, mint an sNFT (or resume the devnet
    /// found in DIR); stay in the foreground
    Up(UpArgs),
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the devnet's state, config and logs; a devnet found there is resumed
    #[arg(long, default_value = "./pxfs-devnet")]
    pub dir: PathBuf,
    /// Delete the devnet found in DIR (its chain, node repository, cache and journal) and
    /// start a new one
    #[arg(long)]
    pub fresh: bool,
    /// Also mount the wallet's sNFTs here
    #[arg(long, value_name = "MOUNTPOINT")]
    pub mount: Option<PathBuf>,
    /// Let other local users use the mount (without it they get EACCES: FUSE's default)
    #[arg(long, requires = "mount")]
    pub allow_other: bool,
    /// Seconds after a sync before an sNFT is overdue (a new devnet; default 30 days)
    #[arg(long, value_name = "SECS")]
    pub sync_interval: Option<u64>,
    /// Quota of the free package (and so of the minted sNFT), in bytes (a new devnet;
    /// default 1 GiB)
    #[arg(long, value_name = "BYTES")]
    pub quota: Option<u64>,
    /// Do not run `pxfs oracle` (sync requests then wait for another oracle)
    #[arg(long)]
    pub no_oracle: bool,
    /// Keep the storage node's repository here instead of DIR/node, e.g. on another
    /// filesystem, as a node on another machine would be. Must be empty (a filesystem's
    /// lost+found aside) for a new devnet
    #[arg(long, value_name = "DIR")]
    pub node_repo: Option<PathBuf>,
    /// The config's `[node] timeout_secs`: the mount waits for an unreachable node
    /// SECS × (RETRIES + 1) before an fsync or the final drain gives up
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub node_timeout: u64,
    /// The config's `[node] retries`
    #[arg(long, value_name = "RETRIES", default_value_t = 4)]
    pub node_retries: u32,
    /// The minted sNFT's tree and the config's new trees are plaintext
    /// (`[keys] encryption = "none"`): anyone who reads the chain reads the drive
    #[arg(long)]
    pub plaintext: bool,
}

const DEFAULT_SYNC_INTERVAL: u64 = 30 * 24 * 3600;
const DEFAULT_QUOTA: u64 = 1 << 30;

pub fn run(args: DevnetArgs) -> anyhow::Result<()> {
    match args.command {
        DevnetCommand::Up(up) => super::runtime()?.block_on(run_up(up)),
    }
}

/// SIGINT and SIGTERM, taken as one "stop".
struct StopSignals {
    int: Signal,
    term: Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

async fn run_up(args: UpArgs) -> anyhow::Result<()> {
    let mut signals = StopSignals::new()?;
    let opts = DevnetOptions {
        dir: args.dir.clone(),
        fresh: args.fresh,
        sync_interval: args.sync_interval.unwrap_or(DEFAULT_SYNC_INTERVAL),
        quota: args.quota.unwrap_or(DEFAULT_QUOTA),
        mount: args.mount.clone(),
        allow_other: args.allow_other,
        oracle: !args.no_oracle,
        node_repo: args.node_repo.clone(),
        node_timeout_secs: args.node_timeout,
        node_retries: args.node_retries,
        plaintext: args.plaintext,
        steps: None,
    };
    let layout = Layout::new(&args.dir);
    if opts.resumes() {
        crate::say_err!(
            "resuming the devnet in {} (`--fresh` starts a new one)",
            args.dir.display()
        );
        if args.sync_interval.is_some() || args.quota.is_some() {
            crate::say_err!(
                "note: --sync-interval and --quota are the contract's, set when a devnet is \
                 deployed: ignored on resume"
            );
        }
    } else {
        let doomed = layout.existing();
        if args.fresh && !doomed.is_empty() {
            crate::say_err!(
                "--fresh: deleting the devnet in {}: {}",
                args.dir.display(),
                describe(&doomed)
            );
        }
        crate::say_err!("starting a new devnet in {}", args.dir.display());
    }

    let (steps_tx, mut steps) = tokio::sync::mpsc::unbounded_channel();
    let total = opts.step_count();
    let opts = DevnetOptions {
        steps: Some(steps_tx),
        ..opts
    };
    let grace = opts.outage_grace();
    let shown = tokio::spawn(async move {
        let mut progress = super::progress::Progress::steps("devnet", total);
        let mut n = 0;
        while let Some(step) = steps.recv().await {
            n += 1;
            progress.step(n, total, step);
        }
        progress.finish(None);
    });
    let start = async move {
        let d = Devnet::up(opts).await;
        // The sender is dropped with the options: the display finishes.
        let _ = shown.await;
        d
    };
    // An interrupt during start-up must stop what already started: dropping the future
    // drops the children, which are killed on drop (a mount is detached).
    let mut devnet = tokio::select! {
        d = start => d?,
        _ = signals.recv() => anyhow::bail!("interrupted during start-up"),
    };
    print_ready(&devnet, args.allow_other);

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let failed = loop {
        tokio::select! {
            _ = signals.recv() => break None,
            _ = tick.tick() => {
                if let Some(failed) = devnet.failed_child() {
                    break Some(failed);
                }
            }
        }
    };
    let drained = stop_mount(&mut devnet, &mut signals, grace).await;
    devnet
        .stop_services(|step| crate::say_err!("devnet: {step}"))
        .await;
    let left = match drained {
        Drained::Nothing | Drained::Committed => None,
        Drained::NotCommitted { why, left } => {
            Some(journal_message(&devnet_dir(&args.dir), &why, left))
        }
    };
    match (failed, left) {
        (None, None) => {
            crate::say_err!(
                "devnet: stopped; `pxfs devnet up --dir {}` resumes it",
                args.dir.display()
            );
            Ok(())
        }
        (Some(f), None) => anyhow::bail!("devnet stopped: {f}"),
        (None, Some(left)) => anyhow::bail!("devnet stopped, but {left}"),
        (Some(f), Some(left)) => anyhow::bail!("devnet stopped: {f}; {left}"),
    }
}

fn devnet_dir(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn describe(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_ready(devnet: &Devnet, allow_other: bool) {
    let info = &devnet.info;
    crate::say!("devnet ready");
    if devnet.resumed {
        crate::say!("  resumed:  the chain, the node and the drive as they were when it stopped");
    }
    crate::say!("  config:   {}", info.config.display());
    crate::say!(
        "  env:      {} (source it to sign with the dev wallet)",
        info.env_file.display()
    );
    crate::say!("  chain:    {} (chain id {})", info.rpc_url, info.chain_id);
    crate::say!("  node:     {}", info.node_url);
    crate::say!("  contract: {}", info.contract);
    crate::say!("  wallet:   {} owns sNFT {:?}", info.wallet, info.token_ids);
    if let Some(mp) = &info.mountpoint {
        crate::say!(
            "  mounted:  {} (daemon log: {})",
            mp.display(),
            devnet.layout.mount_log().display()
        );
        if let Some(t) = info.token_ids.first() {
            crate::say!(
                "try: cp -a /etc {mp}/{t}/ && df -h {mp}/{t} && getfattr -d {mp}/{t}",
                mp = mp.display()
            );
        }
        if allow_other {
            crate::say!("  shared:   other local users can use the drive (allow_other)");
        } else {
            crate::say!(
                "  only the user who started the devnet can use the drive: other local users \
                 get EACCES (FUSE's default); `--allow-other` (`pxfs mount -o allow_other`) \
                 shares it"
            );
        }
    }
    crate::say!("  status:   pxfs status --config {}", info.config.display());
    crate::say!(
        "Ctrl-C stops the devnet (the mount drains and commits first); `pxfs devnet up --dir {}` \
         resumes it.",
        devnet.layout.dir().display()
    );
}

/// How the mount's final drain ended.
enum Drained {
    /// No mount.
    Nothing,
    /// Everything closed was uploaded and committed.
    Committed,
    /// Not everything: why, and the files and bytes last reported not uploaded.
    NotCommitted {
        why: String,
        left: Option<(u64, u64)>,
    },
}

/// Stops the mount daemon (SIGTERM: it drains its uploads and commits), showing its
/// progress, and waits for it as long as it works: its own grace for an unreachable node,
/// plus a margin. A second signal asks it to stop waiting (it then leaves what is staged
/// in the journal). A mount left behind is detached either way.
async fn stop_mount(devnet: &mut Devnet, signals: &mut StopSignals, grace: Duration) -> Drained {
    let Some(mp) = devnet.info.mountpoint.clone() else {
        return Drained::Nothing;
    };
    let Some(child) = devnet.mount_process() else {
        return Drained::Nothing;
    };
    if let Some(status) = child.exited() {
        devnet.mount_stopped();
        return Drained::NotCommitted {
            why: format!("the mount daemon exited ({status})"),
            left: None,
        };
    }
    let pid = child.id().map(|p| p as i32).unwrap_or(0);
    crate::say_err!(
        "devnet: stopping: unmounting {} after uploading and committing what is staged \
         (Ctrl-C again to stop waiting)",
        mp.display()
    );
    child.terminate();
    let mut view = super::unmount::DrainView::new(&mp);
    let mut deadline = tokio::time::Instant::now() + grace + Duration::from_secs(60);
    let mut interrupted = false;
    let status = loop {
        let mut again = false;
        let exited = tokio::select! {
            s = child.wait_within(Duration::from_millis(250)) => s,
            _ = signals.recv() => { again = true; None }
        };
        if let Some(status) = exited {
            break Some(status);
        }
        if again && !interrupted {
            interrupted = true;
            crate::say_err!("devnet: interrupted again: not waiting for the uploads");
            // The daemon's second signal: it stops draining, unmounts and exits.
            child.terminate();
            deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        }
        view.update(pid);
        if tokio::time::Instant::now() > deadline {
            child.kill().await;
            break None;
        }
    };
    let left = view.left;
    let recorded = view.outcome(pid);
    devnet.mount_stopped();
    let outcome = match (status, &recorded) {
        (Some(s), Some(o)) if s.success() && o.committed => {
            view.finish(Some(&format!(
                "uploaded and committed; {} unmounted",
                mp.display()
            )));
            return Drained::Committed;
        }
        (Some(_), Some(o)) if !o.committed => o.describe(),
        (Some(s), None) if s.success() => {
            "the mount daemon exited without recording whether everything was committed".to_string()
        }
        (Some(_), _) if interrupted => "interrupted".to_string(),
        (Some(s), _) => format!(
            "the mount daemon gave up: {s}, after {} s of the storage node not answering or \
             another error (see {})",
            grace.as_secs(),
            devnet.layout.mount_log().display()
        ),
        (None, _) => "the mount daemon did not stop in time and was killed".to_string(),
    };
    view.finish(Some(&format!("{} unmounted", mp.display())));
    Drained::NotCommitted { why: outcome, left }
}

/// What is left and where: the journal, which the next start replays.
fn journal_message(dir: &Path, why: &str, left: Option<(u64, u64)>) -> String {
    let journal = Layout::new(dir).journal();
    let what = match left {
        Some((files, bytes)) if files > 0 => format!(
            "{files} file(s) ({}) not uploaded and the changes not committed",
            super::status::human_bytes(bytes)
        ),
        _ => "the changes not committed".to_string(),
    };
    format!(
        "not everything written to the drive was committed ({why}): {what} are kept in the \
         journal in {}; the next `pxfs devnet up --dir {}` uploads and commits them",
        journal.display(),
        dir.display()
    )
}
