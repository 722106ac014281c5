//! `pxfs node` as the devnet runs it: a child process that announces its address, streams
//! large adds in bounded memory and stops cleanly on SIGTERM.

mod node_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use futures::StreamExt;
use node_support::{pseudo_random, with_query};
use reqwest::multipart::{Form, Part};

const MIB: usize = 1024 * 1024;

struct ChildNode {
    child: Child,
    url: String,
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        // A failed assertion must not leave a node running.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl ChildNode {
    fn start(repo: &std::path::Path) -> ChildNode {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pxfs"))
            .args(["node", "--listen", "127.0.0.1:0", "--repo"])
            .arg(repo)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn pxfs node");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let url = line
            .trim()
            .strip_prefix("pxfs node listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        ChildNode { child, url }
    }

    /// Peak resident set size in bytes (VmHWM).
    fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: signalling our own child process by its pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        self.child.wait().expect("wait for node")
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn child_node_announces_its_address_and_writes_the_api_file() {
    let repo = tempfile::tempdir().unwrap();
    let node = ChildNode::start(repo.path());

    let api = std::fs::read_to_string(repo.path().join("api")).unwrap();
    assert_eq!(api.trim(), node.url);
    let response = reqwest::Client::new()
        .post(format!("{}/api/v0/version", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let status = node.terminate();
    assert!(status.success(), "{status}");
    assert!(!repo.path().join("api").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_200_mib_streamed_add_keeps_the_node_below_100_mib() {
    let repo = tempfile::tempdir().unwrap();
    let node = ChildNode::start(repo.path());
    let total = 200 * MIB;
    // Generated on the fly so the test itself does not hold the file either.
    let chunks = futures::stream::iter(0..total / MIB)
        .map(|i| Ok::<_, std::io::Error>(Bytes::from(pseudo_random(MIB, i as u64 + 1))));
    let form = Form::new().part(
        "file",
        Part::stream_with_length(reqwest::Body::wrap_stream(chunks), total as u64).file_name("big"),
    );

    let response = reqwest::Client::new()
        .post(with_query(
            &format!("{}/api/v0/add", node.url),
            &[("cid-version", "1")],
        ))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let added: serde_json::Value = response.json().await.unwrap();
    let peak = node.peak_rss();

    assert!(
        peak < 100 * MIB as u64,
        "peak RSS {} MiB",
        peak / MIB as u64
    );
    // The last bytes read back as sent: the 200th MiB is chunk 199's data.
    let tail = reqwest::Client::new()
        .post(with_query(
            &format!("{}/api/v0/cat", node.url),
            &[
                ("arg", added["Hash"].as_str().unwrap()),
                ("offset", &(total - MIB).to_string()),
            ],
        ))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(tail.as_ref() == pseudo_random(MIB, 200).as_slice());
    assert!(node.terminate().success());
}

/// A tmpfs of `bytes` for the node's repository (needs root); unmounted on drop.
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(bytes: usize) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mount -t tmpfs (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_its_disk_full_answers_as_kubo_does_and_keeps_running() {
    let disk = SmallDisk::mount(4 * MIB);
    let node = ChildNode::start(disk.0.path());
    let add = |data: Vec<u8>| {
        let form = Form::new().part("file", Part::bytes(data).file_name("f"));
        reqwest::Client::new()
            .post(with_query(
                &format!("{}/api/v0/add", node.url),
                &[("cid-version", "1")],
            ))
            .multipart(form)
            .send()
    };

    let response = add(pseudo_random(8 * MIB, 7)).await.unwrap();
    assert_eq!(response.status(), 500);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["Message"].as_str().unwrap_or_default().to_lowercase();
    assert!(message.contains("no space left on device"), "{body}");
    assert_eq!(body["Code"], 0, "{body}");
    assert_eq!(body["Type"], "error", "{body}");

    // Still up: it answers, and stops cleanly when asked.
    let version = reqwest::Client::new()
        .post(format!("{}/api/v0/version", node.url))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 200);
    assert!(node.terminate().success());
}

/// A malformed `Datastore` value in `REPO/config` stops `pxfs node` at start with a message
/// that names the file and the key, before it announces anything.
#[test]
fn a_malformed_storage_limit_is_a_clear_start_error() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("config"),
        r#"{"Datastore":{"StorageMax":"10GB","StorageGCWatermark":"ninety"}}"#,
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_pxfs"))
        .args(["node", "--enable-gc", "--listen", "127.0.0.1:0", "--repo"])
        .arg(repo.path())
        .output()
        .expect("run pxfs node");

    assert!(!output.status.success(), "the node refuses to start");
    assert!(output.stdout.is_empty(), "nothing announced");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Datastore.StorageGCWatermark")
            && stderr.contains("\"ninety\"")
            && stderr.contains(&repo.path().join("config").display().to_string()),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
