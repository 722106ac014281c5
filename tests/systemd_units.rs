//! The unit files in `systemd/` pass `systemd-analyze verify`.

use std::path::Path;
use std::process::Command;

/// Verifies `unit` (a file in `dir`) and returns what systemd-analyze reported.
fn verify(dir: &Path, unit: &str) -> String {
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join(unit))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run systemd-analyze ({e}): run `bash scripts/setup.sh` (package systemd)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{unit}: {text}");
    text
}

/// The units, with the template also as an instance (verify needs a concrete name).
fn units() -> tempfile::TempDir {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let dir = tempfile::tempdir().unwrap();
    for name in ["pxfs-node.service", "pxfs-oracle.service", "pxfs@.service"] {
        std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    }
    std::fs::copy(
        src.join("pxfs@.service"),
        dir.path().join("pxfs@mnt-px.service"),
    )
    .unwrap();
    for check in ["pxfs-check", "pxfs-check-data"] {
        for kind in ["service", "timer"] {
            std::fs::copy(
                src.join(format!("{check}@.{kind}")),
                dir.path().join(format!("{check}@7.{kind}")),
            )
            .unwrap();
        }
    }
    dir
}

/// The scheduled checks (issue #30 item 5): each timer and the check it starts verify, the
/// weekly one runs `pxfs check`, the monthly one `--read-data`, both on the instance's token.
#[test]
fn check_timers_and_their_services_verify_for_an_instance() {
    let dir = units();
    for unit in [
        "pxfs-check@7.service",
        "pxfs-check@7.timer",
        "pxfs-check-data@7.service",
        "pxfs-check-data@7.timer",
    ] {
        let text = verify(dir.path(), unit);
        assert!(text.trim().is_empty(), "{unit}: warnings: {text}");
    }
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    assert!(read("pxfs-check@7.timer").contains("OnCalendar=weekly"));
    assert!(read("pxfs-check-data@7.timer").contains("OnCalendar=monthly"));
    assert!(read("pxfs-check@7.service").contains("pxfs check %i --config"));
    assert!(read("pxfs-check-data@7.service").contains("pxfs check %i --read-data"));
}

#[test]
fn node_unit_verifies() {
    let dir = units();
    let text = verify(dir.path(), "pxfs-node.service");
    assert!(text.trim().is_empty(), "warnings: {text}");
}

#[test]
fn oracle_unit_verifies() {
    let dir = units();
    let text = verify(dir.path(), "pxfs-oracle.service");
    assert!(text.trim().is_empty(), "warnings: {text}");
}

#[test]
fn mount_unit_verifies_for_an_instance() {
    let dir = units();
    let text = verify(dir.path(), "pxfs@mnt-px.service");
    assert!(text.trim().is_empty(), "warnings: {text}");
}

#[test]
fn mount_unit_waits_for_readiness_and_keeps_fuse_working() {
    let unit = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/pxfs@.service"),
    )
    .unwrap();
    let set: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/pxfs mount %f --foreground --config /etc/pxfs/config.toml",
        "After=network-online.target pxfs-node.service",
        "Restart=on-failure",
        "DeviceAllow=/dev/fuse rw",
    ] {
        assert!(set.contains(&line), "pxfs@.service lacks `{line}`");
    }
    // A private mount namespace would hide the FUSE mount from the rest of the system.
    for key in [
        "PrivateDevices=",
        "PrivateTmp=",
        "ProtectSystem=",
        "ProtectHome=",
        "PrivateMounts=",
    ] {
        assert!(
            !set.iter().any(|l| l.starts_with(key)),
            "pxfs@.service sets {key}"
        );
    }
    assert!(
        set.iter()
            .any(|l| l.starts_with("CapabilityBoundingSet=") && l.contains("CAP_SYS_ADMIN"))
    );
}

/// Runs scripts/install.sh into a staging root (DESTDIR) with the binary under test.
fn install_into(root: &Path, prefix: &str) -> std::process::Output {
    Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh"))
        .arg("--no-build")
        .env("DESTDIR", root)
        .env("PREFIX", prefix)
        .env("PXFS_BINARY", env!("CARGO_BIN_EXE_pxfs"))
        .output()
        .unwrap()
}

#[test]
fn install_puts_the_optimized_binary_and_units_in_place_and_an_upgrade_keeps_config_and_cache() {
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    let version = Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout).into_owned();
    let out = install_into(root, "/usr/local");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if !version.contains("(optimized build") {
        // The dev profile's binary (the quick inner loop): refused, nothing installed.
        assert!(
            !out.status.success(),
            "an unoptimized build was installed: {said}"
        );
        assert!(said.contains("not an optimized build"), "{said}");
        assert!(!root.join("usr/local/bin/pxfs").exists());
        return;
    }
    assert!(out.status.success(), "install.sh: {said}");
    let installed = root.join("usr/local/bin/pxfs");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(env!("CARGO_BIN_EXE_pxfs")).unwrap(),
        "the installed binary is a copy of the one built"
    );
    assert_eq!(
        std::fs::read_link(root.join("sbin/mount.pxfs")).unwrap(),
        Path::new("/usr/local/bin/pxfs")
    );
    for timer in ["pxfs-check@.timer", "pxfs-check-data@.timer"] {
        assert!(
            root.join("etc/systemd/system").join(timer).is_file(),
            "{timer} installed"
        );
    }
    for unit in [
        "pxfs-node.service",
        "pxfs-oracle.service",
        "pxfs@.service",
        "pxfs-check@.service",
        "pxfs-check-data@.service",
    ] {
        let text = std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/pxfs "),
            "{unit} runs the installed binary: {text}"
        );
    }

    // An upgrade: the config and the cache are kept as they are.
    std::fs::write(root.join("etc/pxfs/config.toml"), "# mine\n").unwrap();
    std::fs::create_dir_all(root.join("var/cache/pxfs")).unwrap();
    std::fs::write(root.join("var/cache/pxfs/journal"), "kept").unwrap();
    let again = install_into(root, "/usr/local");
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/pxfs/config.toml")).unwrap(),
        "# mine\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("var/cache/pxfs/journal")).unwrap(),
        "kept"
    );

    // Another prefix: the units and mount.pxfs follow it.
    let other = tempfile::tempdir().unwrap();
    let out = install_into(other.path(), "/opt/pxfs");
    assert!(out.status.success(), "{out:?}");
    let unit =
        std::fs::read_to_string(other.path().join("etc/systemd/system/pxfs@.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/opt/pxfs/bin/pxfs mount "),
        "{unit}"
    );
    assert_eq!(
        std::fs::read_link(other.path().join("sbin/mount.pxfs")).unwrap(),
        Path::new("/opt/pxfs/bin/pxfs")
    );
}
