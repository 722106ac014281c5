//! Shared by the `node_*` tests: a real `pxfs node` serving HTTP on a free port, and plain
//! reqwest calls shaped like Kubo's clients.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use pxfs::node::{BoundNode, NodeError, NodeOptions};
use reqwest::multipart::{Form, Part};
use serde_json::Value;
use tokio::sync::oneshot;

/// A node running in this process on a free loopback port.
pub struct TestNode {
    pub url: String,
    pub repo: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), NodeError>>,
}

impl TestNode {
    pub async fn start(repo: &Path) -> TestNode {
        Self::start_with(repo, false).await
    }

    /// [`TestNode::start`], collecting garbage by itself when `enable_gc`.
    pub async fn start_with(repo: &Path, enable_gc: bool) -> TestNode {
        let options = NodeOptions {
            repo: repo.to_owned(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            online: false,
            enable_gc,
        };
        let bound = BoundNode::bind(options).await.expect("node starts");
        let url = format!("http://{}", bound.addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(bound.serve(async move {
            let _ = stopped.await;
        }));
        TestNode {
            url,
            repo: repo.to_owned(),
            stop: Some(stop),
            task,
        }
    }

    /// Stops the node and waits until its repo is released.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .expect("node task")
            .expect("node stops cleanly");
    }

    pub fn rpc(&self, command: &str) -> String {
        format!("{}/api/v0/{command}", self.url)
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// `base?query` with the query percent-encoded (reqwest's `query` needs a feature we lack).
pub fn with_query(base: &str, query: &[(&str, &str)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(base, query).expect("valid URL")
}

/// POSTs an RPC call and returns the status and the JSON body.
pub async fn call(url: &str, query: &[(&str, &str)]) -> (u16, Value) {
    let response = client()
        .post(with_query(url, query))
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.expect("JSON body");
    (status, body)
}

/// Adds files as Kubo clients do (parts named `file`); returns one JSON object per file.
pub async fn add_files(
    node: &TestNode,
    files: &[(&str, Vec<u8>)],
    query: &[(&str, &str)],
) -> Vec<Value> {
    let mut form = Form::new();
    for (name, bytes) in files {
        form = form.part(
            "file",
            Part::bytes(bytes.clone()).file_name(name.to_string()),
        );
    }
    let response = client()
        .post(with_query(&node.rpc("add"), query))
        .multipart(form)
        .send()
        .await
        .expect("add request");
    assert_eq!(response.status(), 200, "add succeeds");
    let text = response.text().await.expect("add body");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

/// Adds one file with CIDv1 (raw leaves) and returns its CID.
pub async fn add_v1(node: &TestNode, name: &str, bytes: Vec<u8>) -> String {
    let added = add_files(node, &[(name, bytes)], &[("cid-version", "1")]).await;
    added[0]["Hash"].as_str().expect("Hash").to_owned()
}

/// `cat` with an optional range; returns status and body bytes.
pub async fn cat(node: &TestNode, arg: &str, range: &[(&str, &str)]) -> (u16, Vec<u8>) {
    let mut query = vec![("arg", arg)];
    query.extend_from_slice(range);
    let response = client()
        .post(with_query(&node.rpc("cat"), &query))
        .send()
        .await
        .expect("cat request");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("cat body").to_vec())
}

/// Deterministic pseudo-random bytes (xorshift), so chunks never repeat.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Asserts a Kubo-shaped error answer.
pub fn assert_kubo_error(status: u16, body: &Value, expected_status: u16, expected_code: u64) {
    assert_eq!(status, expected_status, "status of {body}");
    assert_eq!(body["Type"], "error", "{body}");
    assert_eq!(body["Code"], expected_code, "{body}");
    assert!(
        body["Message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}
