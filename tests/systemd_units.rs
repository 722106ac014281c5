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
    dir
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
