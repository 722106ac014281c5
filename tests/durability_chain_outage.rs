//! Chain outage: a real devnet and a kernel mount whose chain RPC goes through a proxy the
//! test cuts and restores. While cut, the mount keeps serving with the last known quota
//! and sync state, `pxfs status` says that state is stale, the daemon warns once; restored,
//! status is current again. A mount started without a reachable chain fails in one line.

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use proxy::Proxy;
use support::{PXFS, TestDevnet, TestMount, is_mounted, status_json, wait_until};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The devnet's config with `edit` applied, written to `dir/pxfs.toml`.
fn config_with(
    devnet: &TestDevnet,
    dir: &Path,
    edit: impl FnOnce(&mut pxfs::config::Config),
) -> PathBuf {
    let mut cfg = pxfs::config::Config::load(Some(&devnet.config())).unwrap();
    edit(&mut cfg);
    let path = dir.join("pxfs.toml");
    cfg.write(&path).unwrap();
    path
}

fn log_lines(cfg: &Path, needle: &str) -> usize {
    let cfg = pxfs::config::Config::load(Some(cfg)).unwrap();
    std::fs::read_to_string(cfg.cache.dir.join("mount.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn chain_outage_keeps_the_mount_serving_and_status_marks_it_stale() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let chain = Proxy::start(&devnet.rpc_url());
    let work = tempfile::tempdir().unwrap();
    let cfg = config_with(&devnet, work.path(), |c| c.chain.rpc_url = chain.url());
    let mut mount = TestMount::mount(&cfg, &[]);
    let dir = mount.token(token);
    std::fs::write(dir.join("before.txt"), b"written while the chain answers").unwrap();

    let s = status_json(&cfg);
    assert_eq!(s["chain"]["reachable"], true, "{s:#}");
    assert_eq!(s["mounts"].as_array().unwrap().len(), 1, "{s:#}");
    assert_eq!(s["mounts"][0]["chain"]["stale"], false, "{s:#}");
    assert_eq!(s["tokens"][0]["stale"], false, "{s:#}");
    let quota = s["tokens"][0]["quota"].as_u64().unwrap();
    let df = |dir: &Path| support::sh(&format!("df -B1 --output=size {}", dir.display()));
    let df_before = df(&dir);
    let deadline = s["tokens"][0]["sync_deadline"].as_u64().unwrap();
    assert!(quota > 0);

    chain.cut();
    // Stale, after several failed polls (so "once per outage" below means something).
    wait_until(
        "status to say the chain state is stale",
        Duration::from_secs(90),
        || {
            let s = status_json(&cfg);
            s["mounts"][0]["chain"]["stale"] == true
                && s["mounts"][0]["chain"]["failed_polls"]
                    .as_u64()
                    .unwrap_or(0)
                    >= 3
        },
    );
    let s = status_json(&cfg);
    assert_eq!(s["chain"]["reachable"], false, "{s:#}");
    assert_eq!(s["mounts"][0]["chain"]["reachable"], false, "{s:#}");
    let t = &s["tokens"][0];
    assert_eq!(t["token_id"], token, "{s:#}");
    assert_eq!(t["stale"], true, "{s:#}");
    assert_eq!(t["quota"], quota, "last known quota: {s:#}");
    assert_eq!(t["sync_deadline"], deadline, "last known deadline: {s:#}");
    assert_eq!(t["mount"]["chain_stale"], true, "{s:#}");
    let polled_before_cut = t["mount"]["chain_last_poll"].as_u64().unwrap();
    let table = Command::new(PXFS)
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("STALE"), "{table}");

    // Reads and writes within quota go on.
    assert_eq!(
        std::fs::read(dir.join("before.txt")).unwrap(),
        b"written while the chain answers"
    );
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir(dir.join("during")).unwrap();
    std::fs::write(dir.join("during/outage.bin"), &data).unwrap();
    std::fs::File::open(dir.join("during/outage.bin"))
        .unwrap()
        .sync_all()
        .unwrap();
    assert_eq!(std::fs::read(dir.join("during/outage.bin")).unwrap(), data);
    assert_eq!(df(&dir), df_before, "df shows the last known quota");
    assert_eq!(
        log_lines(&cfg, "chain RPC unreachable"),
        1,
        "one warning per outage"
    );

    let restored_at = now();
    chain.restore();
    wait_until(
        "status to be current again",
        Duration::from_secs(60),
        || {
            let s = status_json(&cfg);
            s["chain"]["reachable"] == true
                && s["tokens"][0]["stale"] == false
                && s["mounts"][0]["chain"]["stale"] == false
        },
    );
    let s = status_json(&cfg);
    let polled = s["mounts"][0]["chain"]["last_poll"].as_u64().unwrap();
    assert!(
        polled >= restored_at && polled > polled_before_cut,
        "fresh poll time {polled} (restored at {restored_at}): {s:#}"
    );
    assert_eq!(s["mounts"][0]["chain"]["failed_polls"], 0, "{s:#}");
    assert_eq!(s["tokens"][0]["mount"]["chain_stale"], false, "{s:#}");
    assert_eq!(log_lines(&cfg, "chain RPC reachable again"), 1);

    mount.unmount();
    let mount = TestMount::mount(&cfg, &[]);
    assert_eq!(
        std::fs::read(mount.token(token).join("during/outage.bin")).unwrap(),
        data
    );
}

#[test]
fn mount_with_an_unreachable_chain_fails_with_one_line() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("pxfs.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[chain]
rpc_url = "http://127.0.0.1:{port}"
chain_id = 31337
contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
wallet = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

[node]
api_url = "http://127.0.0.1:{port}"

[cache]
dir = "{}"
"#,
            work.path().join("cache").display()
        ),
    )
    .unwrap();
    let mp = work.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    for extra in [&[][..], &["--foreground"][..]] {
        let out = Command::new(PXFS)
            .arg("mount")
            .arg(&mp)
            .arg("--config")
            .arg(&cfg)
            .args(extra)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{extra:?}: mount succeeded: {stderr}"
        );
        // (A dev-profile binary adds its unoptimized-build warning first.)
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("an unoptimized build"))
            .collect();
        assert_eq!(lines.len(), 1, "{extra:?}: one line: {stderr}");
        assert!(
            lines[0].contains("cannot reach the chain RPC"),
            "{extra:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked") && !stderr.contains("backtrace"));
        assert!(!is_mounted(&mp), "{extra:?}: a mount was left behind");
    }
}
