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
            eprintln!("pxfs: -f given, not mounting: {args:?}");
            return std::process::ExitCode::SUCCESS;
        }
        Some(Err(e)) => {
            eprintln!("pxfs: {e}");
            // mount(8)'s exit status for a usage error.
            return std::process::ExitCode::from(1);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("PXFS_LOG")
                .or_else(|_| EnvFilter::try_from_default_env())
                .unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match pxfs::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One sentence for the user; the chain of causes only where it adds something.
            eprintln!("pxfs: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
