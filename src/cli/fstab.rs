//! The fstab conventions: how mount(8) and fuse3's `mount.fuse3` run pxfs, turned into a
//! `pxfs mount` command line.
//!
//! - Type `pxfs`: mount(8) runs `/sbin/mount.pxfs SOURCE MOUNTPOINT [-sfnv] [-o OPTS]`
//!   (this binary under that name).
//! - Type `fuse.pxfs`: `mount.fuse3` runs `pxfs SOURCE MOUNTPOINT -o OPTS`.
//!
//! SOURCE is the config file. Every `-o` option maps to a `pxfs mount` flag or is one that
//! mount(8)/systemd add with no meaning for pxfs; anything else is an error naming it.

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The name mount(8) runs for fstab type `pxfs`.
pub const HELPER_NAME: &str = "mount.pxfs";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FstabError {
    #[error(
        "unknown mount option `{0}` (pxfs takes token=ID, ro, rw, allow_other — to share the \
         drive with other local users — and foreground)"
    )]
    UnknownOption(String),
    #[error("mount option `{option}`: `{value}` is not an sNFT id")]
    BadToken { option: String, value: String },
    #[error("mount option -{0} is not supported")]
    UnsupportedFlag(char),
    #[error("-o needs a value")]
    MissingOptions,
    #[error("usage: mount.pxfs CONFIG MOUNTPOINT [-sfnv] [-o OPTIONS]")]
    Usage,
}

/// What an fstab-style invocation asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation {
    /// Run `pxfs` with these arguments (argv[0] first).
    Mount(Vec<OsString>),
    /// `-f` (mount(8)'s "fake"): do everything but the mount; these are the arguments.
    Fake(Vec<OsString>),
}

/// The flags of `pxfs mount` that `-o` options set.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MountFlags {
    pub tokens: Vec<u64>,
    pub allow_other: bool,
    pub read_only: bool,
    pub foreground: bool,
}

impl MountFlags {
    fn to_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = Vec::new();
        for t in &self.tokens {
            out.push("--token".into());
            out.push(t.to_string().into());
        }
        if self.allow_other {
            out.push("--allow-other".into());
        }
        if self.read_only {
            out.push("--read-only".into());
        }
        if self.foreground {
            out.push("--foreground".into());
        }
        out
    }
}

/// Options mount(8), mount.fuse3 or systemd add that mean nothing to pxfs.
fn ignored(option: &str) -> bool {
    const PLAIN: &[&str] = &[
        "_netdev", "nofail", "noauto", "auto", "user", "nouser", "users", "defaults", "dev",
        "nodev", "suid", "nosuid", "exec", "noexec", "atime", "noatime", "relatime",
    ];
    PLAIN.contains(&option) || option.starts_with("x-systemd.") || option.starts_with("comment=")
}

/// Parses comma-separated `-o` options into `flags`. With `sloppy` (mount's `-s`), unknown
/// options are skipped instead of refused.
pub fn parse_options(opts: &str, sloppy: bool, flags: &mut MountFlags) -> Result<(), FstabError> {
    for option in opts.split(',').filter(|o| !o.is_empty()) {
        match option.split_once('=') {
            Some(("token", value)) => {
                let id = value.parse().map_err(|_| FstabError::BadToken {
                    option: option.to_string(),
                    value: value.to_string(),
                })?;
                flags.tokens.push(id);
            }
            _ => match option {
                "allow_other" => flags.allow_other = true,
                "ro" => flags.read_only = true,
                "rw" => flags.read_only = false,
                "foreground" => flags.foreground = true,
                o if ignored(o) => {}
                o if sloppy => tracing::warn!(option = o, "ignoring unknown mount option"),
                o => return Err(FstabError::UnknownOption(o.to_string())),
            },
        }
    }
    Ok(())
}

/// Recognises the fstab shapes in `argv` and rewrites them to `pxfs mount`; `None` when
/// `argv` is an ordinary pxfs command line. `is_subcommand` tells pxfs's own commands
/// apart from a config file that happens to have the same name.
pub fn rewrite(
    argv: &[OsString],
    is_subcommand: impl Fn(&OsStr) -> bool,
) -> Option<Result<Invocation, FstabError>> {
    let argv0 = argv.first()?;
    let as_helper = Path::new(argv0).file_name() == Some(OsStr::new(HELPER_NAME));
    let fuse_shape = argv.len() >= 3
        && !argv[1].as_encoded_bytes().starts_with(b"-")
        && !is_subcommand(&argv[1])
        && Path::new(&argv[1]).is_file();
    if !as_helper && !fuse_shape {
        return None;
    }
    Some(helper_args(argv0, &argv[1..]))
}

fn helper_args(argv0: &OsStr, args: &[OsString]) -> Result<Invocation, FstabError> {
    let mut positional: Vec<&OsString> = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let (mut sloppy, mut fake) = (false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let bytes = arg.as_encoded_bytes();
        if bytes.len() < 2 || bytes[0] != b'-' {
            positional.push(arg);
            continue;
        }
        // Short flags, possibly bundled (`-sv`), `-o` with its value attached or next.
        let s = arg.to_string_lossy();
        let mut chars = s[1..].chars();
        while let Some(c) = chars.next() {
            match c {
                's' => sloppy = true,
                'f' => fake = true,
                'n' | 'v' => {}
                'o' | 't' => {
                    let rest: String = chars.by_ref().collect();
                    let value = if rest.is_empty() {
                        it.next()
                            .map(|v| v.to_string_lossy().into_owned())
                            .ok_or(FstabError::MissingOptions)?
                    } else {
                        rest
                    };
                    // `-t pxfs` / `-t fuse.pxfs` names the type we already are.
                    if c == 'o' {
                        opts.push(value);
                    }
                }
                other => return Err(FstabError::UnsupportedFlag(other)),
            }
        }
    }
    let [source, mountpoint] = positional[..] else {
        return Err(FstabError::Usage);
    };
    let mut flags = MountFlags::default();
    for o in &opts {
        parse_options(o, sloppy, &mut flags)?;
    }
    let mut out: Vec<OsString> = vec![argv0.to_owned(), "mount".into(), mountpoint.clone()];
    out.push("--config".into());
    out.push(source.clone());
    out.extend(flags.to_args());
    Ok(if fake {
        Invocation::Fake(out)
    } else {
        Invocation::Mount(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn no_subcommand(_: &OsStr) -> bool {
        false
    }

    #[test]
    fn fstab_options_map_to_mount_flags() {
        let mut flags = MountFlags::default();
        parse_options(
            "_netdev,nofail,allow_other,token=17,token=3,ro,foreground",
            false,
            &mut flags,
        )
        .unwrap();
        assert_eq!(
            flags,
            MountFlags {
                tokens: vec![17, 3],
                allow_other: true,
                read_only: true,
                foreground: true
            }
        );
    }

    #[test]
    fn options_mount_and_systemd_add_are_ignored() {
        let mut flags = MountFlags::default();
        parse_options(
            "defaults,auto,noauto,user,users,x-systemd.automount,x-systemd.mount-timeout=30,\
             comment=x,dev,nodev,suid,nosuid,exec,noexec,atime,noatime,relatime,rw",
            false,
            &mut flags,
        )
        .unwrap();
        assert_eq!(flags, MountFlags::default());
    }

    #[test]
    fn last_of_ro_and_rw_wins() {
        let mut flags = MountFlags::default();
        parse_options("ro,rw", false, &mut flags).unwrap();
        assert!(!flags.read_only);
        parse_options("rw,ro", false, &mut flags).unwrap();
        assert!(flags.read_only);
    }

    #[test]
    fn unknown_option_is_an_error_naming_it() {
        let err =
            parse_options("allow_other,cache=yes", false, &mut MountFlags::default()).unwrap_err();
        assert_eq!(err, FstabError::UnknownOption("cache=yes".into()));
        assert!(err.to_string().contains("`cache=yes`"), "{err}");
    }

    #[test]
    fn sloppy_skips_unknown_options() {
        let mut flags = MountFlags::default();
        parse_options("cache=yes,token=5", true, &mut flags).unwrap();
        assert_eq!(flags.tokens, vec![5]);
    }

    #[test]
    fn token_that_is_not_a_number_is_an_error() {
        let err = parse_options("token=abc", false, &mut MountFlags::default()).unwrap_err();
        assert!(err.to_string().contains("token=abc"), "{err}");
    }

    #[test]
    fn mount_helper_name_becomes_pxfs_mount() {
        let argv = os(&[
            "/sbin/mount.pxfs",
            "/etc/pxfs/config.toml",
            "/mnt/px",
            "-n",
            "-o",
            "rw,_netdev,allow_other,token=17",
        ]);
        let got = rewrite(&argv, no_subcommand).unwrap().unwrap();
        assert_eq!(
            got,
            Invocation::Mount(os(&[
                "/sbin/mount.pxfs",
                "mount",
                "/mnt/px",
                "--config",
                "/etc/pxfs/config.toml",
                "--token",
                "17",
                "--allow-other",
            ]))
        );
    }

    #[test]
    fn fake_flag_does_not_mount() {
        let argv = os(&["mount.pxfs", "c.toml", "/mnt/px", "-fv", "-otoken=2"]);
        assert!(matches!(
            rewrite(&argv, no_subcommand),
            Some(Ok(Invocation::Fake(_)))
        ));
    }

    #[test]
    fn helper_without_mountpoint_is_a_usage_error() {
        let argv = os(&["mount.pxfs", "c.toml"]);
        assert_eq!(rewrite(&argv, no_subcommand), Some(Err(FstabError::Usage)));
    }

    #[test]
    fn fuse3_shape_needs_an_existing_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, "").unwrap();
        let cfg = cfg.to_str().unwrap();
        let argv = os(&["pxfs", cfg, "/mnt/px", "-o", "rw,nosuid,nodev,token=4"]);
        assert_eq!(
            rewrite(&argv, no_subcommand).unwrap().unwrap(),
            Invocation::Mount(os(&[
                "pxfs", "mount", "/mnt/px", "--config", cfg, "--token", "4"
            ]))
        );
        // A missing file or one of pxfs's own commands is an ordinary command line.
        let missing = dir.path().join("nope.toml");
        let argv = os(&["pxfs", missing.to_str().unwrap(), "/mnt/px"]);
        assert_eq!(rewrite(&argv, no_subcommand), None);
        let argv = os(&["pxfs", cfg, "/mnt/px"]);
        assert_eq!(rewrite(&argv, |_| true), None);
        assert_eq!(
            rewrite(&os(&["pxfs", "status", "--json"]), no_subcommand),
            None
        );
    }
}
