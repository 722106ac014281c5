use clap::{CommandFactory, Parser};
use pxfs::cli::fstab::{self, Invocation};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // mount(8) runs us as `mount.pxfs`, mount.fuse3 as `pxfs CONFIG MOUNTPOINT -o OPTS`.
    let is_subcommand = |a: &std::ffi::OsStr| {
        let cmd = pxfs::cli::Cli::command();
        a == "help" || cmd.get_subcommands().any(|s| a == s.get_name())
    };
    let cli = match fstab::rewrite(&argv, is_subcommand) {
        None => pxfs::cli::Cli::parse_from(argv),
        Some(Ok(Invocation::Mount(args))) => pxfs::cli::Cli::parse_from(args),
        Some(Ok(Invocation::Fake(args))) => {
            pxfs::say_err!("pxfs: -f given, not mounting: {args:?}");
            return std::process::ExitCode::SUCCESS;
        }
        Some(Err(e)) => {
            pxfs::say_err!("pxfs: {e}");
            // mount(8)'s exit status for a usage error.
            return std::process::ExitCode::from(1);
        }
    };
    init_logging(&cli);
    match pxfs::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One sentence for the user; the chain of causes only where it adds something.
            pxfs::say_err!("pxfs: {e:#}");
            match e.downcast_ref::<pxfs::cli::check::Exit>() {
                Some(x) => std::process::ExitCode::from(x.code),
                None => std::process::ExitCode::FAILURE,
            }
        }
    }
}

/// Logs to stderr, filtered by `PXFS_LOG` (else `RUST_LOG`) in `RUST_LOG` syntax
/// (`pxfs=debug`, `pxfs::fuse=debug,warn`). Plain text: no colours unless stderr is a
/// terminal that stays attached (a background mount writes to its log file), and no
/// timestamps under systemd, where journald adds its own (`JOURNAL_STREAM` is set).
fn init_logging(cli: &pxfs::cli::Cli) {
    use std::io::IsTerminal;
    let daemon = matches!(&cli.command, pxfs::cli::Command::Mount(_));
    let background = matches!(&cli.command, pxfs::cli::Command::Mount(m) if !m.foreground);
    // The daemon's own life (mounted, outages and recoveries) is worth the log by default.
    // fuser's session warns on every external unmount (`fusermount3 -u`, `umount`): it
    // unmounts again when it ends, and the kernel answers EINVAL; the daemon reports a
    // failed unmount of its own itself.
    let default = if daemon {
        "warn,pxfs=info,fuser::session=error"
    } else {
        "warn"
    };
    let filter = EnvFilter::try_from_env("PXFS_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    // A log line that cannot be written (a full disk, a closed pipe) is dropped and counted,
    // never a panic: tracing's own report of it would be an `eprintln!` (src/output.rs).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(pxfs::output::LogWriter)
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal() && !background);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
