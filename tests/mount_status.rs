//! `pxfs status` with a running mount, `pxfs unmount`'s drain progress and `pxfs mount -o`:
//! a real devnet, a kernel mount whose node connection goes through a proxy the test cuts
//! (so uploads stay pending for as long as the test needs, no timing involved).

#[path = "support/proxy.rs"]
mod proxy;
mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use proxy::Proxy;
use support::{PXFS, TestDevnet, is_mounted, status_json, wait_until, xattr};

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

/// Lazily unmounts if the test failed half-way.
struct Guard(PathBuf);
impl Drop for Guard {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
        }
    }
}

#[test]
fn status_json_shows_pending_uploads_commits_and_health_and_unmount_shows_the_drain() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let node = Proxy::start(&devnet.node_url());
    let work = tempfile::tempdir().unwrap();
    let mut config = pxfs::config::Config::load(Some(&devnet.config())).unwrap();
    config.node.api_url = node.url();
    let cfg = work.path().join("pxfs.toml");
    config.write(&cfg).unwrap();
    // A mount point whose path is not UTF-8 (issue #33): status and unmount still find it.
    let mp = work
        .path()
        .join(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"mnt-caf\xe9"));
    std::fs::create_dir(&mp).unwrap();
    let out = Command::new(PXFS)
        .arg("mount")
        .arg(&mp)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _guard = Guard(mp.clone());
    let dir = mp.join(token.to_string());

    // The documented fields, at every level.
    let s = status_json(&cfg);
    assert_eq!(
        keys(&s),
        [
            "chain",
            "chain_id",
            "contract",
            "flavour",
            "mounts",
            "operations",
            "tokens",
            "wallet"
        ]
    );
    assert_eq!(keys(&s["chain"]), ["error", "reachable"]);
    let m = &s["mounts"][0];
    assert_eq!(
        keys(m),
        [
            "chain",
            "dropped_log_lines",
            "loaded_inodes",
            "local_faults",
            "mountpoint",
            "node",
            "pending_bytes",
            "pending_files",
            "pid",
            "replicas",
            "started_at",
            "state",
            "tokens",
            "updated_at"
        ]
    );
    assert_eq!(
        keys(&m["chain"]),
        [
            "failed_polls",
            "last_error",
            "last_error_at",
            "last_poll",
            "reachable",
            "stale"
        ]
    );
    assert_eq!(
        keys(&m["node"]),
        [
            "corrupt_blocks",
            "last_error",
            "last_error_at",
            "last_ok",
            "reachable"
        ]
    );
    assert_eq!(
        m["mountpoint"],
        mp.canonicalize().unwrap().display().to_string().as_str(),
        "the mount on a path that is not UTF-8, shown escaped"
    );
    assert_eq!(m["state"], "mounted");
    assert_eq!(m["tokens"], serde_json::json!([token]));
    let t = &s["tokens"][0];
    assert_eq!(
        keys(t),
        [
            "bandwidth",
            "btns_key",
            "last_sync",
            "mount",
            "overdue",
            "quota",
            "stale",
            "sync_deadline",
            "time_left",
            "token_id",
            "usage",
            "used_percent"
        ]
    );
    assert_eq!(
        keys(&t["mount"]),
        [
            "chain_last_poll",
            "chain_stale",
            "conflicts",
            "encryption",
            "files",
            "last_commit",
            "last_root",
            "live_usage",
            "mountpoint",
            "node_reachable",
            "pending_bytes",
            "pending_uploads",
            "read_only",
            "usage_doc"
        ]
    );
    assert_eq!(t["token_id"], token);
    assert_eq!(t["stale"], false);
    assert_eq!(t["mount"]["pending_uploads"], 0);
    assert_eq!(
        t["mount"]["conflicts"], 0,
        "one writer makes no conflict copies"
    );

    // A file written and fsynced: committed; status shows that root and its time.
    let before_commit = now();
    std::fs::write(dir.join("a.txt"), vec![b'a'; 100_000]).unwrap();
    std::fs::File::open(dir.join("a.txt"))
        .unwrap()
        .sync_all()
        .unwrap();
    let root = xattr(&dir, "user.pxfs.root");
    wait_until(
        "status to show the committed root",
        Duration::from_secs(30),
        || status_json(&cfg)["tokens"][0]["mount"]["last_root"] == root.as_str(),
    );
    let s = status_json(&cfg);
    let t = &s["tokens"][0]["mount"];
    assert!(t["last_commit"].as_u64().unwrap() >= before_commit, "{s:#}");
    assert_eq!(t["pending_uploads"], 0, "{s:#}");
    // The content and the committed manifests (docs/FORMAT.md §7).
    let usage = t["live_usage"].as_u64().unwrap();
    assert!((100_000..100_000 + 4096).contains(&usage), "{s:#}");
    assert_eq!(
        usage.to_string(),
        xattr(&dir, "user.pxfs.usage"),
        "status and the usage attribute agree"
    );
    assert_eq!(t["files"], 1, "{s:#}");
    assert_eq!(t["node_reachable"], true, "{s:#}");
    assert!(
        s["mounts"][0]["node"]["last_ok"].as_u64().is_some(),
        "{s:#}"
    );

    // The node unreachable: a closed file stays pending, and status says so.
    node.cut();
    std::fs::write(dir.join("b.bin"), vec![b'b'; 300_000]).unwrap();
    wait_until(
        "status to show the pending upload",
        Duration::from_secs(60),
        || {
            let s = status_json(&cfg);
            let t = &s["tokens"][0]["mount"];
            t["pending_uploads"] == 1
                && t["pending_bytes"] == 300_000
                && t["node_reachable"] == false
                && s["mounts"][0]["pending_files"] == 1
        },
    );
    let s = status_json(&cfg);
    assert!(s["mounts"][0]["node"]["last_error"].is_string(), "{s:#}");
    assert_eq!(s["tokens"][0]["mount"]["last_root"], root.as_str(), "{s:#}");
    let table = Command::new(PXFS)
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("1 (293.0 KiB)"), "{table}");
    assert!(table.contains("DOWN"), "{table}");

    // `pxfs status --watch` repeats the report (plain output: not a terminal).
    let mut watch = Command::new(PXFS)
        .args(["status", "--watch", "1", "--config"])
        .arg(&cfg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut reports = 0;
    while reports < 2 {
        let line = lines.next().expect("watch output").unwrap();
        if line.starts_with("wallet ") {
            reports += 1;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();

    // Unmount while the upload cannot finish: it reports what is left, then finishes
    // once the node is back.
    let mut unmount = Command::new(PXFS)
        .arg("unmount")
        .arg(&mp)
        .arg("--config")
        .arg(&cfg)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stderr = unmount.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut said = Vec::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("pxfs unmount reports the drain");
        said.push(line.clone());
        if line.contains("1 file(s), 293.0 KiB left") {
            break;
        }
    }
    node.restore();
    let done = unmount.wait().unwrap();
    said.extend(rx.iter());
    assert!(done.success(), "{said:#?}");
    assert!(
        said.iter().any(|l| l.contains("uploaded and committed")),
        "{said:#?}"
    );
    assert!(!is_mounted(&mp));

    // No mount: status is the chain's alone.
    let s = status_json(&cfg);
    assert_eq!(s["mounts"], serde_json::json!([]), "{s:#}");
    assert!(s["tokens"][0]["mount"].is_null(), "{s:#}");
}

#[test]
fn mount_with_an_unknown_option_fails_naming_it() {
    let work = tempfile::tempdir().unwrap();
    let cfg = work.path().join("pxfs.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[chain]
rpc_url = "http://127.0.0.1:1"
chain_id = 31337
contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
wallet = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"

[node]
api_url = "http://127.0.0.1:1"

[cache]
dir = "{}"
"#,
            work.path().join("cache").display()
        ),
    )
    .unwrap();
    let mp = work.path().join("mnt");
    std::fs::create_dir(&mp).unwrap();
    for (opts, named) in [("allow_other,bogus", "`bogus`"), ("token=abc", "token=abc")] {
        let out = Command::new(PXFS)
            .arg("mount")
            .arg(&mp)
            .arg("--config")
            .arg(&cfg)
            .args(["-o", opts])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "-o {opts} was accepted");
        assert!(stderr.contains(named), "-o {opts}: {stderr}");
        assert!(!is_mounted(&mp));
    }
}

/// `GET path` on `addr` over plain HTTP/1.0: the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap();
    (code, body.to_string())
}

/// The value of the sample named exactly `series` (name and labels).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

#[test]
fn metrics_endpoint_shows_every_family_and_counts_a_copy_as_it_is_uploaded() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let work = tempfile::tempdir().unwrap();
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().to_string()
    };
    let listen = addr.clone();
    let cfg = devnet.config_with(&work.path().join("cache"), move |c| {
        let mut metrics = toml::Table::new();
        metrics.insert("listen".into(), toml::Value::String(listen));
        c.as_table_mut()
            .unwrap()
            .insert("metrics".into(), toml::Value::Table(metrics));
    });
    let mount = support::TestMount::mount(&cfg, &[]);
    let dir = mount.token(token);

    let (code, before) = http_get(&addr, "/metrics");
    assert_eq!(code, 200, "{before}");
    for family in [
        "pxfs_fuse_requests",
        "pxfs_fuse_request_duration_seconds",
        "pxfs_uploaded_bytes",
        "pxfs_uploaded_files",
        "pxfs_downloaded_bytes",
        "pxfs_commits",
        "pxfs_commit_duration_seconds",
        "pxfs_node_requests",
        "pxfs_node_errors",
        "pxfs_node_retries",
        "pxfs_chain_requests",
        "pxfs_chunk_cache_hits",
        "pxfs_upload_queue_files",
        "pxfs_upload_queue_bytes",
        "pxfs_node_up",
        "pxfs_chain_up",
        "pxfs_token_quota_bytes",
        "pxfs_token_usage_bytes",
        "pxfs_token_sync_deadline_seconds",
    ] {
        assert!(
            before.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{before}"
        );
    }
    let uploaded_before = metric(&before, "pxfs_uploaded_bytes_total").unwrap();
    // The gauges are the status's: quota and deadline as `pxfs status` shows them.
    let s = status_json(&cfg);
    let quota = s["tokens"][0]["quota"].as_f64().unwrap();
    let series = |name: &str| format!("{name}{{token=\"{token}\"}}");
    assert_eq!(
        metric(&before, &series("pxfs_token_quota_bytes")),
        Some(quota),
        "{before}"
    );
    assert_eq!(
        metric(&before, &series("pxfs_token_sync_deadline_seconds")),
        s["tokens"][0]["sync_deadline"].as_f64(),
    );
    // The mount read the chain and asked the node for what it holds.
    assert!(metric(&before, r#"pxfs_chain_requests_total{call="token"}"#).unwrap() >= 1.0);
    assert_eq!(metric(&before, "pxfs_node_up"), Some(1.0), "{before}");

    // A copy: uploaded and committed once fsync returns.
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file = dir.join("copied.bin");
    std::fs::write(&file, &content).unwrap();
    std::fs::File::open(&file).unwrap().sync_all().unwrap();

    let (_, after) = http_get(&addr, "/metrics");
    let uploaded_after = metric(&after, "pxfs_uploaded_bytes_total").unwrap();
    assert!(
        uploaded_after >= uploaded_before + content.len() as f64,
        "uploaded {uploaded_before} -> {uploaded_after}"
    );
    assert!(metric(&after, r#"pxfs_commits_total{result="ok"}"#).unwrap() >= 1.0);
    // A request is counted just after its answer: the count may trail the syscall.
    wait_until("write and fsync counted", Duration::from_secs(10), || {
        let (_, now) = http_get(&addr, "/metrics");
        let fsyncs = r#"pxfs_fuse_request_duration_seconds_count{op="fsync"}"#;
        let writes = r#"pxfs_fuse_requests_total{op="write",errno="OK"}"#;
        metric(&now, fsyncs) >= Some(1.0) && metric(&now, writes) >= Some(1.0)
    });
    assert!(metric(&after, r#"pxfs_node_requests_total{cmd="add"}"#).unwrap() >= 1.0);
    assert!(
        metric(&after, &series("pxfs_token_usage_bytes")).unwrap() >= content.len() as f64,
        "{after}"
    );
    // A name that is not there: an errno of its own.
    assert!(!dir.join("absent").exists());
    wait_until("ENOENT counted", Duration::from_secs(10), || {
        let (_, now) = http_get(&addr, "/metrics");
        metric(
            &now,
            r#"pxfs_fuse_requests_total{op="lookup",errno="ENOENT"}"#,
        ) >= Some(1.0)
    });
    // Only /metrics is served.
    assert_eq!(http_get(&addr, "/").0, 404);

    // A second mount configured for the same address fails, naming it.
    let other = tempfile::tempdir().unwrap();
    let out = Command::new(PXFS)
        .arg("mount")
        .arg(other.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains(&addr), "{err}");
    assert!(!is_mounted(other.path()));
    drop(mount);
}

/// A `pxfs web` process, stopped when dropped (a failed test leaves none behind).
struct Web(std::process::Child);
impl Drop for Web {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pxfs web --listen 127.0.0.1:0` for `cfg`; the URL it printed (with its token).
fn start_web(cfg: &std::path::Path) -> (Web, String) {
    let mut web = Command::new(PXFS)
        .args(["web", "--listen", "127.0.0.1:0", "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(web.stdout.take().unwrap()).lines();
    let first = lines.next().expect("pxfs web prints its URL").unwrap();
    let url = first
        .strip_prefix("pxfs web: open ")
        .unwrap_or_else(|| panic!("{first}"))
        .to_string();
    // Keep reading its output so it never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (Web(web), url)
}

#[test]
fn pxfs_web_shows_the_mounted_snft_and_its_usage_history_only_to_the_token() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let work = tempfile::tempdir().unwrap();
    let cfg = devnet.config_with_cache(&work.path().join("cache"));
    let mount = support::TestMount::mount(&cfg, &[]);
    let file = mount.token(token).join("hello.txt");
    std::fs::write(&file, b"hello, dashboard").unwrap();
    std::fs::File::open(&file).unwrap().sync_all().unwrap();

    let (web, url) = start_web(&cfg);
    let (addr, secret) = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once("/?token="))
        .unwrap_or_else(|| panic!("{url}"));
    assert_eq!(secret.len(), 32, "128 bits in hex: {url}");
    assert!(addr.starts_with("127.0.0.1:"), "{url}");

    // Without the token: nothing.
    assert_eq!(http_get(addr, "/api/status").0, 401);
    assert_eq!(http_get(addr, "/").0, 401);
    // With it: the status `pxfs status --json` shows, the mount's part included.
    let (code, body) = http_get(addr, &format!("/api/status?token={secret}"));
    assert_eq!(code, 200, "{body}");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    let t = &s["tokens"][0];
    assert_eq!(t["token_id"], token);
    assert_eq!(t["quota"], status_json(&cfg)["tokens"][0]["quota"]);
    assert_eq!(t["mount"]["mountpoint"], mount.path().display().to_string());
    // Usage over time: the commit fsync made is the newest point.
    let (code, body) = http_get(addr, &format!("/api/history/{token}?token={secret}"));
    assert_eq!(code, 200, "{body}");
    let points: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let newest = points
        .last()
        .unwrap_or_else(|| panic!("no history: {body}"));
    assert!(newest["usage"].as_u64().unwrap() >= 16, "{body}");
    assert!(newest["at"].as_u64().unwrap() >= now() - 600, "{body}");
    let seqs: Vec<u64> = points.iter().map(|p| p["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    // The page is built in.
    let (code, page) = http_get(addr, &format!("/?token={secret}"));
    assert_eq!(code, 200);
    assert!(page.contains("usage over time"), "{page}");

    drop(web);
    drop(mount);
}

/// Runs Debian's `chromium` headless on `url`: the DOM after the page's scripts ran, and
/// its stderr (console messages). Missing chromium fails the test (scripts/setup.sh
/// installs it).
fn chromium(args: &[&str], url: &str) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,800",
            "--virtual-time-budget=8000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium (Debian's `chromium`, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_dashboard_renders_in_headless_chromium_with_the_snft_quota_and_usage() {
    let devnet = TestDevnet::start(&[]);
    let token = devnet.token();
    let work = tempfile::tempdir().unwrap();
    let cfg = devnet.config_with_cache(&work.path().join("cache"));
    let mount = support::TestMount::mount(&cfg, &[]);
    let file = mount.token(token).join("photo.jpg");
    std::fs::write(&file, vec![7u8; 1_500_000]).unwrap();
    std::fs::File::open(&file).unwrap().sync_all().unwrap();
    let (web, url) = start_web(&cfg);

    let (dom, console) = chromium(&["--dump-dom"], &url);
    let s = status_json(&cfg);
    let quota = s["tokens"][0]["quota"].as_u64().unwrap();
    // What the scripts rendered (the page's source names none of it).
    assert!(dom.contains(&format!("<span>sNFT {token}</span>")), "{dom}");
    // "used 1.4 MiB of 1.0 GiB (0%)": the quota and the live usage, as the page words them.
    let gib = format!("of {:.1} GiB", quota as f64 / (1u64 << 30) as f64);
    assert!(dom.contains(&gib), "{gib} not in {dom}");
    assert!(dom.contains("<dt>used</dt><dd>1.4 MiB of"), "{dom}");
    assert!(
        dom.contains("<dt>uploads in flight</dt><dd>0 files, 0 B</dd>"),
        "{dom}"
    );
    assert!(
        dom.contains("<path d=\"M"),
        "the usage chart is drawn: {dom}"
    );
    assert!(!dom.contains("data-errors"), "the page met errors: {dom}");
    assert!(
        dom.contains(r#"<div id="message" role="status"></div>"#),
        "the page reported a failure: {dom}"
    );
    let console_errors: Vec<&str> = console
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Uncaught"))
        .collect();
    assert!(console_errors.is_empty(), "{console_errors:#?}");

    // The screenshot, kept for whoever looks at the run (and for docs/web-dashboard.png).
    let dir = std::env::var_os("PXFS_TEST_ARTIFACTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&dir).unwrap();
    let shot = dir.join("web-dashboard.png");
    let _ = std::fs::remove_file(&shot);
    chromium(&[&format!("--screenshot={}", shot.display())], &url);
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{}",
        shot.display()
    );
    eprintln!("screenshot: {}", shot.display());

    drop(web);
    drop(mount);
}
