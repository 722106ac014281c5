//! `pxfs mount`: the mount daemon. Loads the config, checks the chain and the node,
//! mounts the wallet's sNFTs with FUSE, follows the chain (new tokens, transfers, quota,
//! sync state) and, on SIGTERM/SIGINT or an external unmount, drains the upload queue and
//! commits before it exits.
//!
//! In the background (the default) it forks before any runtime or thread exists; the
//! parent returns only once the mount is usable, or fails with the child's reason.

mod dapp;
mod metrics;
mod private;
mod publish;
mod readahead;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;

use super::ConfigArg;
use super::mount_status::pid_file;
use super::node_client::{node_client, with_replicas};
use crate::cache::ChunkCache;
use crate::chain::{Chain, Flavour, TokenState};
use crate::config::Config;
use crate::fs::data::node_store::NodeStore;
use crate::fs::{ChainGate, Fs, FsConfig, TokenInfo};
use crate::fuse::FuseFs;
use crate::keys::PassphraseSource;
use crate::keys::ring::MountKeys;
use crate::storage::{NodeClient, StorageError};
use publish::{ChainHealth, Publisher};
use std::io::IsTerminal;

/// One chain poll (or the chain check at mount) gives up after this long.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Args)]
pub struct MountArgs {
    /// Directory to mount on
    pub mountpoint: PathBuf,
    #[command(flatten)]
    pub config: ConfigArg,
    /// Mount only this sNFT (repeatable); with exactly one, it is the mount root
    #[arg(long = "token", value_name = "ID", help_heading = "What to mount")]
    pub tokens: Vec<u64>,
    /// Stay in the foreground (logs go to stderr)
    #[arg(short, long, help_heading = "Mount options")]
    pub foreground: bool,
    /// Mount read-only
    #[arg(long, help_heading = "Mount options")]
    pub read_only: bool,
    /// Let other local users use the mount (FUSE's default is the mounting user only:
    /// others get EACCES on everything); non-root needs user_allow_other in /etc/fuse.conf
    #[arg(long, help_heading = "Mount options")]
    pub allow_other: bool,
    /// Comma-separated mount options: token=ID, ro, rw, allow_other (share the drive with
    /// other local users), foreground, and the ones mount(8) adds
    #[arg(short = 'o', value_name = "OPTS", help_heading = "Mount options")]
    pub options: Vec<String>,
}

pub fn run(mut args: MountArgs) -> anyhow::Result<()> {
    let cfg = Config::load(args.config.config.as_deref())?;
    let unoptimized = crate::build_info::unoptimized_warning();
    if let Some(warning) = &unoptimized
        && !args.foreground
    {
        // The terminal's copy; the daemon's log gets its own below.
        crate::say_err!("pxfs: warning: {warning}");
    }
    // A daemon killed earlier leaves a dead mount that cannot even be canonicalized.
    let stale = super::stale::absolute(&args.mountpoint)?;
    let cleaned = super::stale::clean_up(&stale)?;
    let cleaned_note = format!(
        "pxfs: {} was a stale mount (its pxfs daemon was killed or crashed: \"Transport \
         endpoint is not connected\"); unmounted it (lazy unmount). What that daemon had \
         staged is resumed from the journal of its cache directory",
        stale.display()
    );
    if cleaned {
        crate::say_err!("{cleaned_note}");
    }
    args.mountpoint = std::fs::canonicalize(&args.mountpoint)
        .with_context(|| format!("mount point {}", args.mountpoint.display()))?;
    if let Some(mount) = super::stale::mounted_fuse_type(&args.mountpoint)
        && (mount.starts_with("fuse.pxfs ") || mount.ends_with(" pxfs"))
    {
        bail!(
            "{} is already a pxfs mount; unmount it first (`pxfs unmount {}`)",
            args.mountpoint.display(),
            args.mountpoint.display()
        );
    }
    if !args.mountpoint.is_dir() {
        bail!(
            "mount point {} is not a directory",
            args.mountpoint.display()
        );
    }
    apply_options(&mut args)?;
    private::make_private(&cfg.cache.dir)
        .with_context(|| format!("cache directory {}", cfg.cache.dir.display()))?;
    let passphrase = mount_passphrase(&cfg, args.foreground)?;
    if args.foreground {
        if let Some(warning) = &unoptimized {
            tracing::warn!("{warning}");
        }
        return serve(&args, &cfg, passphrase, None);
    }
    let log = cfg.cache.dir.join("mount.log");
    let ready = daemonize(&log)?;
    if let Some(warning) = &unoptimized {
        tracing::warn!("{warning}");
    }
    if cleaned {
        crate::say_err!("{cleaned_note}"); // into the daemon's log too
    }
    let result = serve(&args, &cfg, passphrase, Some(ready));
    if let Err(e) = &result {
        tracing::error!("{e:#}");
    }
    result
}

/// `-o OPTS`: the same options, checked the same way, as `mount.pxfs` and `fuse.pxfs`
/// (an unknown option is an error naming it).
fn apply_options(args: &mut MountArgs) -> anyhow::Result<()> {
    let mut flags = super::fstab::MountFlags::default();
    for o in &args.options {
        super::fstab::parse_options(o, false, &mut flags)?;
    }
    args.tokens.extend(flags.tokens);
    args.read_only |= flags.read_only;
    args.allow_other |= flags.allow_other;
    args.foreground |= flags.foreground;
    Ok(())
}

/// Fork; the parent waits for the child's word and exits with it. Returns (in the child)
/// the pipe end on which to report readiness.
fn daemonize(log: &Path) -> anyhow::Result<std::fs::File> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe(2) to fill.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("pipe");
    }
    // SAFETY: both fds were just returned by pipe(2) and are owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: single-threaded at this point (no runtime started yet), so fork is sound.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()).context("fork"),
        0 => {
            drop(read_end);
            // SAFETY: setsid has no memory-safety preconditions.
            unsafe { libc::setsid() };
            redirect_output(log)?;
            Ok(std::fs::File::from(write_end))
        }
        _child => {
            drop(write_end);
            let mut answer = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut answer);
            match answer.strip_prefix("ok") {
                Some(_) => std::process::exit(0),
                None if answer.is_empty() => {
                    bail!(
                        "the mount daemon exited before mounting; see {}",
                        log.display()
                    )
                }
                None => bail!("{}", answer.trim_start_matches("error: ").trim()),
            }
        }
    }
}

/// The daemon's stdin is /dev/null and its stdout/stderr (the logs) go to `log`.
fn redirect_output(log: &Path) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::File::open("/dev/null")?;
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("log file {}", log.display()))?;
    // SAFETY: dup2 onto the standard descriptors with fds we own and keep open.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(out.as_raw_fd(), 1);
        libc::dup2(out.as_raw_fd(), 2);
    }
    Ok(())
}

fn report(ready: &mut Option<std::fs::File>, message: &str) {
    if let Some(mut pipe) = ready.take() {
        let _ = pipe.write_all(message.as_bytes());
    }
}

/// Tells systemd (a `Type=notify` unit) about the daemon's state: one datagram to
/// `$NOTIFY_SOCKET`, a path or (leading `@`) an abstract socket name. Not under systemd,
/// nothing to do; a failure only costs the unit its readiness, so it is logged.
pub fn notify_systemd(state: &str) {
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = (|| -> std::io::Result<()> {
        let addr = match path.as_encoded_bytes().strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => SocketAddr::from_pathname(&path)?,
        };
        let sock = UnixDatagram::unbound()?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
        Ok(())
    })();
    if let Err(e) = sent {
        tracing::warn!(socket = ?path, error = %e, "cannot notify systemd");
    }
}

/// Where an encrypted sNFT's passphrase comes from. A daemon cannot ask (its stdin is
/// /dev/null), so on a machine without a wallet key, where only a passphrase can open or
/// make a tree's key, it is asked for now, before the fork; with a wallet key it is asked
/// only in the foreground.
fn mount_passphrase(cfg: &Config, foreground: bool) -> anyhow::Result<PassphraseSource> {
    let source = PassphraseSource::configured(&cfg.keys, true);
    if source.is_unattended() || foreground {
        return Ok(source);
    }
    let has_wallet = crate::chain::signer::load(&cfg.chain).is_ok();
    if has_wallet || !std::io::stdin().is_terminal() {
        return Ok(PassphraseSource::configured(&cfg.keys, false));
    }
    let p = crate::keys::passphrase::ask("Passphrase of the encrypted sNFTs (empty: none): ")
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(match p.is_empty() {
        true => PassphraseSource::None,
        false => PassphraseSource::Given(p),
    })
}

fn serve(
    args: &MountArgs,
    cfg: &Config,
    passphrase: PassphraseSource,
    mut ready: Option<std::fs::File>,
) -> anyhow::Result<()> {
    // Before the runtime's threads exist: each would otherwise get a heap of its own.
    share_heap_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let prepared = rt.block_on(async {
        let metrics = metrics::bind(cfg).await?;
        Ok((prepare(args, cfg, passphrase).await?, metrics))
    });
    let ((fs, chain, node, mounted), metrics) = match prepared {
        Ok(p) => p,
        Err(e) => {
            report(&mut ready, &format!("error: {e:#}\n"));
            return Err(e);
        }
    };
    // The dApp's files (px-dapp/) are there from the start, where a secret is stored.
    let mut dapp = dapp::DappFollower::new(super::dapp::secret_store(cfg), node.clone());
    rt.block_on(dapp.refresh(&fs, &chain));
    let fuse = FuseFs::new(fs.clone(), rt.handle().clone());
    let mut options = vec![
        fuser::MountOption::FSName("pxfs".into()),
        fuser::MountOption::Subtype("pxfs".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::NoDev,
        fuser::MountOption::NoSuid,
    ];
    if args.read_only {
        options.push(fuser::MountOption::RO);
    }
    let mut fuse_cfg = fuser::Config::default();
    fuse_cfg.mount_options = options;
    if args.allow_other {
        fuse_cfg.acl = fuser::SessionACL::All;
    }
    fuse_cfg.n_threads = Some(4);
    fuse_cfg.clone_fd = true;
    // The watchers are registered before the mount appears: a SIGTERM sent the moment
    // the mount (or READY=1) is seen must drain and commit, not kill with the default action.
    let stop_signals = {
        let _rt = rt.enter();
        StopSignals::register()
    };
    let session = match fuser::Session::new(fuse, &args.mountpoint, &fuse_cfg) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("cannot mount on {}: {e}", args.mountpoint.display());
            report(&mut ready, &format!("error: {msg}\n"));
            bail!(msg);
        }
    };
    let mut session = session;
    let notifier = session.notifier();
    dapp.set_invalidate(Box::new(move |parent, name| {
        let _ = notifier.inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::new(name));
    }));
    // A token transferred away: the kernel forgets its entry in the root at once (else
    // `stat` of it would succeed for up to the entry TTL after `ls` stopped showing it).
    let token_gone: dapp::Invalidate = {
        let notifier = session.notifier();
        Box::new(move |parent, name| {
            let _ = notifier.inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::new(name));
        })
    };
    // Another machine's commit merged in: the kernel looks the changed names up again.
    {
        let notifier = session.notifier();
        fs.set_invalidate(Arc::new(move |parent, name| {
            use std::os::unix::ffi::OsStrExt;
            let _ = notifier.inval_entry(fuser::INodeNo(parent), std::ffi::OsStr::from_bytes(name));
        }));
    }
    let mut unmounter = session.unmount_callable();
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let loop_thread = std::thread::Builder::new()
        .name("fuse-session".into())
        .spawn(move || {
            let r = session.run();
            let _ = ended_tx.send(());
            r
        })
        .context("FUSE session thread")?;
    readahead::raise(&args.mountpoint);
    let pid_path = pid_file(&args.mountpoint);
    if let Some(dir) = pid_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&pid_path, std::process::id().to_string());
    crate::say_err!(
        "pxfs: mounted {} sNFT(s) {:?} on {}",
        mounted.len(),
        mounted,
        args.mountpoint.display()
    );
    let poll_every = Duration::from_secs(cfg.chain.poll_interval_secs.max(1));
    let chain_health = Arc::new(ChainHealth::new(poll_every));
    let publisher = {
        let _rt = rt.enter();
        Arc::new(Publisher::new(
            fs.clone(),
            chain_health.clone(),
            cfg,
            &args.mountpoint,
        ))
    };
    // `pxfs status` right after an `fsync` shows what that commit wrote.
    let weak = Arc::downgrade(&publisher);
    fs.set_on_commit(Arc::new(move || {
        if let Some(p) = weak.upgrade() {
            p.publish();
        }
    }));
    let _metrics = {
        let _rt = rt.enter();
        metrics.and_then(|m| metrics::serve(m, publisher.clone()))
    };
    report(&mut ready, "ok\n");
    notify_systemd("READY=1");

    let drained = rt.block_on(async {
        let poller = tokio::spawn(poll_chain(
            fs.clone(),
            chain,
            args.tokens.clone(),
            poll_every,
            chain_health.clone(),
            dapp,
            token_gone,
        ));
        let publishing = tokio::spawn(publisher.clone().run(node));
        let reason = wait_for_end(stop_signals, ended_rx).await;
        crate::say_err!("pxfs: {reason}: draining uploads and committing");
        notify_systemd("STOPPING=1");
        publisher.set_state("draining");
        poller.abort();
        let drained = drain(&fs).await;
        publishing.abort();
        drained
    });
    // Unmount if we are the ones ending it (a signal); a no-op after an external unmount.
    if let Err(e) = unmounter.unmount() {
        crate::say_err!("pxfs: unmount: {e}; trying a lazy unmount");
        let _ = std::process::Command::new("fusermount3")
            .args(["-u", "-z"])
            .arg(&args.mountpoint)
            .status();
    }
    let _ = loop_thread.join();
    // Anything written between the drain and the unmount.
    let drained = match drained {
        Ok(()) => rt.block_on(drain(&fs)),
        Err(e) => Err(e),
    };
    let outcome = outcome_of(&fs, &cfg.cache.dir, drained);
    publisher.finish(outcome.clone());
    fs.abort();
    publisher.remove();
    let _ = std::fs::remove_file(&pid_path);
    if !outcome.committed {
        // A non-zero exit: whoever stopped the daemon (systemd, `pxfs devnet up`, `pxfs
        // unmount`) learns that not everything closed reached the node.
        crate::say_err!("pxfs: unmounted {}", args.mountpoint.display());
        bail!("{}", outcome.describe());
    }
    crate::say_err!(
        "pxfs: uploaded and committed; unmounted {}",
        args.mountpoint.display()
    );
    Ok(())
}

/// What the drain left: everything committed only when the drain succeeded, nothing is
/// left to upload and no token has changes the last commit did not write.
fn outcome_of(
    fs: &Fs,
    cache_dir: &Path,
    drained: Result<(), String>,
) -> crate::cli::mount_outcome::Outcome {
    let (files_left, bytes_left) = fs.pending();
    let tokens_uncommitted: Vec<u64> = fs
        .tokens()
        .into_iter()
        .filter(|t| fs.usage_parts(*t).map(|(_, dirty)| dirty).unwrap_or(true))
        .collect();
    let mut error = drained.err();
    if error.is_none() && (files_left > 0 || !tokens_uncommitted.is_empty()) {
        error = Some("changes were made after the final commit".into());
    }
    crate::cli::mount_outcome::Outcome {
        committed: error.is_none(),
        files_left,
        bytes_left,
        tokens_uncommitted,
        journal: cache_dir.join("journal"),
        error,
        finished_at: crate::cli::mount_status::now(),
    }
}

/// SIGTERM and SIGINT watchers, registered once; `None` where registering failed.
struct StopSignals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn register() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        Self {
            term: signal(SignalKind::terminate()).ok(),
            int: signal(SignalKind::interrupt()).ok(),
        }
    }
}

async fn wait_for_end(
    signals: StopSignals,
    ended: tokio::sync::oneshot::Receiver<()>,
) -> &'static str {
    let (Some(mut term), Some(mut int)) = (signals.term, signals.int) else {
        let _ = ended.await;
        return "unmounted";
    };
    tokio::select! {
        _ = ended => "unmounted",
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Upload everything staged and commit every token, reporting what is left. A second
/// SIGTERM/SIGINT stops waiting: what is staged stays in the journal for the next mount.
/// Returns why not everything was committed, if it was not.
async fn drain(fs: &Fs) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let flush = fs.flush_all();
    tokio::pin!(flush);
    loop {
        let interrupted = async {
            match (&mut term, &mut int) {
                (Some(t), Some(i)) => tokio::select! { _ = t.recv() => {}, _ = i.recv() => {} },
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = &mut flush => {
                return r.map_err(|e| {
                    crate::say_err!("pxfs: final commit failed: {e}; the journal keeps it for the next mount");
                    format!("final commit failed: {e}")
                });
            }
            _ = interrupted => {
                let (files, bytes) = fs.pending();
                crate::say_err!("pxfs: interrupted again: leaving {files} file(s), {bytes} byte(s) staged; the next mount uploads them");
                return Err("interrupted by a second signal before the uploads finished".into());
            }
            _ = tokio::time::sleep(Duration::from_secs(2)) => {
                let (files, bytes) = fs.pending();
                crate::say_err!("pxfs: {files} file(s), {bytes} byte(s) left to upload");
            }
        }
    }
}

/// Connect to the chain and the node, build the core and load the sNFTs to mount.
async fn prepare(
    args: &MountArgs,
    cfg: &Config,
    passphrase: PassphraseSource,
) -> anyhow::Result<(Fs, Chain, NodeClient, Vec<u64>)> {
    let chain = match tokio::time::timeout(POLL_TIMEOUT * 3, Chain::connect(&cfg.chain)).await {
        Ok(c) => c?.with_cache_dir(&cfg.cache.dir),
        Err(_) => bail!(
            "cannot reach the chain RPC: no answer within {} s",
            (POLL_TIMEOUT * 3).as_secs()
        ),
    };
    let client = node_client(cfg, &args.tokens)?;
    tracing::info!(flavour = chain.flavour().name(), "contract");
    // `--token` asks `ownerOf` only: a contract that cannot enumerate (PX.sol) needs no
    // log scan for it.
    let wanted: Vec<u64> = if args.tokens.is_empty() {
        let owned: BTreeSet<u64> = chain.owned_tokens().await?.into_iter().collect();
        owned.iter().copied().collect()
    } else {
        for t in &args.tokens {
            if !chain.owns(*t).await? {
                bail!("the wallet {} does not own sNFT {t}", cfg.chain.wallet);
            }
        }
        args.tokens.clone()
    };
    // A hosted node is reached through an sNFT's login: the first one's (a wallet with
    // none has nothing to mount from it yet; each sNFT that arrives logs in on first use).
    let probe = match client.hosted_token() {
        None if client.is_hosted() => wanted.first().map(|t| client.for_token(*t)),
        _ => Some(client.clone()),
    };
    match probe.as_ref().map(|p| (p.is_hosted(), p)) {
        None => {}
        Some((hosted, p)) => match p.version().await {
            Ok(_) => {}
            // A hosted gateway need not pass `version`: reaching it (after the login) is enough.
            Err(StorageError::Unsupported { .. }) if hosted => {}
            Err(e) if hosted => {
                return Err(e).context("cannot reach the hosted storage node");
            }
            // Reads fall back to the replicas: a primary that is gone leaves them.
            Err(e) if !cfg.node.replicas.is_empty() => {
                tracing::warn!(error = %e, "the storage node is unreachable; reading from its replicas");
            }
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot reach the storage node at {}", cfg.node.api_url)
                });
            }
        },
    }
    let (client, replicas) = with_replicas(cfg, client)?;
    let cache = ChunkCache::open_with(
        &cfg.cache.dir.join("chunks"),
        cfg.cache.size_bytes,
        client.clone(),
        crate::cache::CacheOptions {
            keep_free: cfg.cache.reserve_bytes,
            ..Default::default()
        },
    )
    .context("chunk cache")?;
    let store = NodeStore::new(
        client.clone(),
        cache,
        cfg.chain.chain_id,
        cfg.chain.contract.clone(),
    );
    let mut fs_cfg = core_config(cfg);
    // Live follow: only mounts (a conversion's cores do not follow).
    fs_cfg.follow_interval = Duration::from_secs(cfg.upload.follow_every_secs);
    fs_cfg.single_token = args.tokens.len() == 1;
    // Only mounts keep history: a conversion (`pxfs encrypt`) drops its tree's versions,
    // which hold the content as it was before (in the clear).
    fs_cfg.history = policy_of(&cfg.history);
    fs_cfg.read_only = args.read_only;
    fs_cfg.replicas = replicas;
    fs_cfg.keys = Arc::new(MountKeys {
        chain_id: cfg.chain.chain_id,
        contract: cfg
            .chain
            .contract
            .parse()
            .with_context(|| format!("contract address {:?}", cfg.chain.contract))?,
        wallet: crate::chain::signer::load(&cfg.chain).ok(),
        passphrase,
        encrypt_new: cfg.keys.encryption == crate::config::NewTrees::Encrypted,
    });
    // Pinning services keep a second copy of each committed tree (src/pinning/).
    if let Some(services) = crate::pinning::PinningServices::start(&cfg.pinning, &cfg.cache.dir)? {
        fs_cfg.held_roots.push(services);
    }
    let fs = Fs::new(fs_cfg, Arc::new(store))?;
    for id in &wanted {
        let state = chain.token(*id).await?;
        fs.add_token(token_info(&state, chain.flavour()))
            .await
            .with_context(|| format!("sNFT {id}"))?;
        fs.set_chain_gate(*id, chain_gate(chain.flavour(), &state));
    }
    Ok((fs, chain, client, wanted))
}

/// The core's settings from the config: upload parallelism, staging limits, the unloading
/// bound, the commit cadence and the outage grace.
/// `[history]` as the retention policy (docs/FORMAT.md §14.2).
fn policy_of(h: &crate::config::HistoryConfig) -> crate::format::history::Policy {
    crate::format::history::Policy {
        keep_all_secs: h.keep_all_secs,
        hourly: h.hourly,
        daily: h.daily,
        monthly: h.monthly,
    }
}

pub(crate) fn core_config(cfg: &Config) -> FsConfig {
    let mut fs_cfg = FsConfig::new(cfg.cache.dir.clone());
    fs_cfg.upload_parallelism = cfg.upload.parallelism.max(1);
    fs_cfg.staging_limit = cfg.cache.staging_limit_bytes;
    fs_cfg.disk_reserve = cfg.cache.reserve_bytes;
    fs_cfg.staging_limit_files = cfg.cache.staging_limit_files.max(1);
    fs_cfg.writeback_delay = Duration::from_millis(cfg.upload.writeback_delay_ms);
    fs_cfg.max_loaded_inodes =
        usize::try_from(cfg.cache.max_loaded_inodes.max(1000)).unwrap_or(usize::MAX);
    fs_cfg.commit_max_delay = Duration::from_secs(cfg.upload.commit_every_secs.max(1));
    // The node's timeout once per configured try: an outage shorter than that never fails
    // an fsync, an unmount's drain or a writer held back by the staging limit.
    fs_cfg.outage_grace =
        Duration::from_secs(cfg.node.timeout_secs.max(1)) * (cfg.node.retries.saturating_add(1));
    fs_cfg.merge_pause = merge_pause_for_tests();
    fs_cfg.settle_window = Duration::from_millis(cfg.upload.settle_ms);
    fs_cfg
}

/// Tests only (`tests/mount_two_machines.rs`): `PXFS_TEST_MERGE_PAUSE_MS` makes each commit
/// that merged another writer's changes wait that long before publishing
/// ([`FsConfig::merge_pause`]), so a `kill -9` lands in the middle of a merge.
fn merge_pause_for_tests() -> Duration {
    std::env::var("PXFS_TEST_MERGE_PAUSE_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::ZERO, Duration::from_millis)
}

/// PX.sol counts usage itself (owner-reported, never lowered) and uploads: the mount
/// judges growth from that count. pxfs's contract measures the tree: no gate.
fn chain_gate(flavour: Flavour, s: &TokenState) -> ChainGate {
    match flavour {
        Flavour::PxStorageNft => ChainGate::default(),
        Flavour::PxSolV2 | Flavour::PxSolV1 => ChainGate {
            floor: s.usage,
            no_bandwidth: s.bandwidth == Some(0),
        },
    }
}

/// What the core needs of a token's chain state. `synced_usage` only where the chain's usage
/// is the tree's (pxfs's contract, oracle-measured): PX.sol's owner-reported usage also
/// counts what the PollinationX dApp uploaded, with no pxfs tree behind it.
pub(crate) fn token_info(s: &TokenState, flavour: Flavour) -> TokenInfo {
    TokenInfo {
        token_id: s.token_id,
        quota: s.quota,
        overdue: s.overdue,
        last_sync: s.last_sync,
        sync_deadline: s.sync_deadline,
        btns: s.btns_key.clone(),
        synced_usage: match flavour {
            Flavour::PxStorageNft => s.usage,
            Flavour::PxSolV2 | Flavour::PxSolV1 => 0,
        },
    }
}

/// Follow the chain: tokens minted to or transferred away from the wallet appear and
/// disappear; quota and sync state stay current (by chain time). While the chain does not
/// answer, the mount keeps the last known state and `health` marks it stale.
async fn poll_chain(
    fs: Fs,
    chain: Chain,
    only: Vec<u64>,
    every: Duration,
    health: Arc<ChainHealth>,
    mut dapp: dapp::DappFollower,
    token_gone: dapp::Invalidate,
) {
    loop {
        tokio::time::sleep(every).await;
        let poll = poll_once(&fs, &chain, &only, &token_gone);
        match tokio::time::timeout(POLL_TIMEOUT, poll).await {
            Ok(Ok(())) => health.polled(),
            Ok(Err(e)) => health.poll_failed(&format!("{e:#}")),
            Err(_) => health.poll_failed(&format!("no answer within {} s", POLL_TIMEOUT.as_secs())),
        }
        dapp.refresh(&fs, &chain).await;
    }
}

/// One poll: read what the wallet owns and each wanted token's state, then apply it.
/// Nothing is applied unless every read succeeded.
/// `token_gone` drops the kernel's entry of a token that is no longer owned.
async fn poll_once(
    fs: &Fs,
    chain: &Chain,
    only: &[u64],
    token_gone: &dapp::Invalidate,
) -> anyhow::Result<()> {
    let wanted: Vec<u64> = if only.is_empty() {
        chain.owned_tokens().await?
    } else {
        let mut still = Vec::with_capacity(only.len());
        for t in only {
            if chain.owns(*t).await? {
                still.push(*t);
            }
        }
        still
    };
    let mut states = Vec::with_capacity(wanted.len());
    for id in &wanted {
        states.push(
            chain
                .token(*id)
                .await
                .with_context(|| format!("sNFT {id}"))?,
        );
    }
    for t in fs.tokens() {
        if !wanted.contains(&t) {
            // What was closed before it left is committed first: small files may still be
            // waiting out the write-back delay (a bounded wait: the journal keeps the rest).
            tracing::info!(
                token = t,
                "sNFT no longer owned; committing what it holds, then hiding it"
            );
            match tokio::time::timeout(Duration::from_secs(30), fs.flush_token(t)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(token = t, error = %e,
                    "could not commit the sNFT before hiding it; its journal keeps what it held"),
                Err(_) => tracing::warn!(
                    token = t,
                    "committing the sNFT took over 30 s; hiding it, its journal keeps the rest"
                ),
            }
            fs.remove_token(t);
            token_gone(crate::fs::ROOT_INO, &t.to_string());
        }
    }
    let mounted = fs.tokens();
    for state in states {
        let id = state.token_id;
        if mounted.contains(&id) {
            fs.update_token(token_info(&state, chain.flavour()));
        } else if let Err(e) = fs.add_token(token_info(&state, chain.flavour())).await {
            tracing::warn!(token = id, error = %e, "cannot mount new sNFT");
            continue;
        }
        fs.set_chain_gate(id, chain_gate(chain.flavour(), &state));
    }
    Ok(())
}

/// The daemon's threads share two malloc arenas instead of up to eight per core: with one
/// each, memory freed by one thread (a directory unloaded, an upload done) stays mapped in
/// its arena while others grow theirs, and the daemon's RSS follows the sum of their peaks
/// rather than what it holds (`fs::model::unload` also hands freed pages back after unloading).
fn share_heap_arenas() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets a tunable of glibc's allocator; called before other threads.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(test)]
mod history_tests {
    /// A config without `[history]` keeps what the format's default policy keeps.
    #[test]
    fn the_configs_default_history_is_the_formats_default_policy() {
        let default = super::policy_of(&crate::config::HistoryConfig::default());
        assert_eq!(default, crate::format::history::Policy::default());
    }
}
