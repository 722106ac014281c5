//! Records how this binary was built, so `pxfs --version` can say it and the daemon can warn
//! when it runs an unoptimized build (10–20× slower on big files: see issue #43).

fn main() {
    // Cargo gives build scripts the profile's settings of the package being built.
    let opt_level = std::env::var("OPT_LEVEL").unwrap_or_else(|_| "unknown".into());
    let profile = std::env::var("PROFILE").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=PXFS_BUILD_OPT_LEVEL={opt_level}");
    println!("cargo:rustc-env=PXFS_BUILD_PROFILE={profile}");
    // `pxfs --version` is a const string: the kind is decided here, as `build_info` does.
    let kind = if opt_level == "0" {
        "unoptimized"
    } else {
        "optimized"
    };
    println!("cargo:rustc-env=PXFS_BUILD_KIND={kind}");
    println!("cargo:rerun-if-changed=build.rs");
}
