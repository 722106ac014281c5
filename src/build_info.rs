//! How this binary was built (recorded by `build.rs`): what `pxfs --version` says, and the
//! warning a daemon gives when it runs an unoptimized build.

/// The optimization level the pxfs crate was compiled with (`0`–`3`, `s`, `z`).
pub const OPT_LEVEL: &str = env!("PXFS_BUILD_OPT_LEVEL");
/// Cargo's profile directory: `release` or `debug` (custom profiles built on either).
pub const PROFILE: &str = env!("PXFS_BUILD_PROFILE");

/// True when the compiler optimized pxfs (any opt-level but 0).
pub fn optimized() -> bool {
    is_optimized(OPT_LEVEL)
}

fn is_optimized(opt_level: &str) -> bool {
    opt_level != "0"
}

/// The text after the program name in `pxfs --version`, e.g.
/// `0.1.0 (optimized build: opt-level 3, profile release)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PXFS_BUILD_KIND"),
    " build: opt-level ",
    env!("PXFS_BUILD_OPT_LEVEL"),
    ", profile ",
    env!("PXFS_BUILD_PROFILE"),
    ")"
);

/// The daemon's start-up warning for an unoptimized binary, or None for an optimized one.
pub fn unoptimized_warning() -> Option<String> {
    warning_for(OPT_LEVEL)
}

fn warning_for(opt_level: &str) -> Option<String> {
    (!is_optimized(opt_level)).then(|| {
        format!(
            "this pxfs is an unoptimized build (opt-level {opt_level}): reads and writes of big \
             files run 10-20x slower than an optimized one; build with `cargo build --release` \
             (scripts/setup.sh does) or install with scripts/install.sh"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unoptimized_build_is_warned_about_and_an_optimized_one_is_not() {
        let warning = warning_for("0").expect("opt-level 0 warns");
        assert!(warning.contains("unoptimized build"), "{warning}");
        assert!(warning.contains("cargo build --release"), "{warning}");
        for level in ["1", "2", "3", "s", "z"] {
            assert_eq!(warning_for(level), None, "opt-level {level}");
        }
    }

    #[test]
    fn the_version_names_the_kind_of_build_it_is() {
        let kind = if optimized() {
            "(optimized build"
        } else {
            "(unoptimized build"
        };
        assert!(VERSION.contains(kind), "{VERSION}");
        assert!(VERSION.starts_with(env!("CARGO_PKG_VERSION")), "{VERSION}");
    }
}
