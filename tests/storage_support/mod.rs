//! Test support for the storage tests: a scriptable mock node (axum) for behaviour a mock
//! can show honestly (retries, status handling, headers, timeouts), an in-memory content
//! node answering `cat` ranges, and a real `pxfs node` child process.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use pxfs::config::NodeConfig;
use pxfs::storage::NodeClient;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request as the mock saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub query: Vec<(String, String)>,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Bytes,
}

impl Seen {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the mock answers.
pub struct Reply {
    pub status: u16,
    pub body: Body,
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<String>) -> Reply {
        Reply::status(200, body)
    }
    pub fn status(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            body: Body::from(body.into()),
            delay: Duration::ZERO,
        }
    }
    pub fn bytes(data: Bytes) -> Reply {
        Reply {
            status: 200,
            body: Body::from(data),
            delay: Duration::ZERO,
        }
    }
    pub fn kubo_error(status: u16, message: &str) -> Reply {
        let body = serde_json::json!({"Message": message, "Code": 0, "Type": "error"});
        Reply::status(status, body.to_string())
    }
    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Respond = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

/// A mock node on 127.0.0.1. `respond` gets each request and its 0-based number.
pub struct Mock {
    pub addr: SocketAddr,
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Mock {
    pub async fn start(respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Mock::start_on(listener, respond).await
    }

    pub async fn start_on(
        listener: TcpListener,
        respond: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> Mock {
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond: Arc<Respond> = Arc::new(respond);
        let counter = Arc::new(AtomicUsize::new(0));
        let (seen2, respond2) = (seen.clone(), respond.clone());
        let app = Router::new().fallback(move |req: Request| {
            let (seen, respond, counter) = (seen2.clone(), respond2.clone(), counter.clone());
            async move { handle(req, &seen, &*respond, &counter).await }
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Mock {
            addr,
            url: format!("http://{addr}"),
            seen,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn hits(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn hits_on(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path == path)
            .count()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// A client with a short timeout and the given retries, as configured from a file.
    pub fn client(&self, timeout_secs: u64, retries: u32) -> NodeClient {
        client_for(&self.url, timeout_secs, retries)
    }

    /// Stops accepting and closes idle connections: afterwards the address refuses.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn handle(
    req: Request,
    seen: &Mutex<Vec<Seen>>,
    respond: &Respond,
    counter: &AtomicUsize,
) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let query = parts
        .uri
        .query()
        .map(|q| {
            reqwest::Url::parse(&format!("http://x/?{q}"))
                .unwrap()
                .query_pairs()
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (authorization, content_type) = (header("authorization"), header("content-type"));
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let one = Seen {
        path,
        query,
        authorization,
        content_type,
        body,
    };
    let n = counter.fetch_add(1, Ordering::SeqCst);
    let reply = respond(&one, n);
    seen.lock().unwrap().push(one);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap())
        .header("content-type", "application/json")
        .body(reply.body)
        .unwrap()
}

pub fn client_for(url: &str, timeout_secs: u64, retries: u32) -> NodeClient {
    NodeClient::new(&node_config(url, timeout_secs, retries)).unwrap()
}

pub fn node_config(url: &str, timeout_secs: u64, retries: u32) -> NodeConfig {
    NodeConfig {
        api_url: url.to_string(),
        api_prefix: "/api/v0".into(),
        bearer_token_file: None,
        auth: Default::default(),
        auth_url: None,
        login_message: None,
        login_method: Default::default(),
        timeout_secs,
        retries,
        replicas: Vec::new(),
    }
}

/// A node that serves `block/get` (whole raw blocks, see [`raw_cid`]) and `cat` (with
/// `offset`/`length`) from an in-memory map of CID → content, counting the requests, each
/// answered after `delay`.
pub async fn content_node(files: HashMap<String, Bytes>, delay: Duration) -> Mock {
    Mock::start(move |seen, _| {
        let cid = seen.param("arg").unwrap_or_default();
        let Some(data) = files.get(cid) else {
            return Reply::kubo_error(500, "block was not found locally (offline)");
        };
        if seen.path == "/api/v0/block/get" {
            return Reply::bytes(data.clone()).after(delay);
        }
        if seen.path != "/api/v0/cat" {
            return Reply::kubo_error(404, "unknown command");
        }
        let offset: usize = seen.param("offset").map_or(0, |o| o.parse().unwrap());
        let offset = offset.min(data.len());
        let end = match seen.param("length") {
            Some(l) => (offset + l.parse::<usize>().unwrap()).min(data.len()),
            None => data.len(),
        };
        Reply::bytes(data.slice(offset..end)).after(delay)
    })
    .await
}

/// The CID of `data` stored as one raw block (CIDv1, raw codec, SHA2-256), as a node
/// names a file that fits in one block.
pub fn raw_cid(data: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(data);
    let hash = cid::multihash::Multihash::<64>::wrap(0x12, &digest).unwrap();
    cid::Cid::new_v1(0x55, hash).to_string()
}

/// Deterministic, position-dependent content: every offset has a recognisable byte.
pub fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// An address where nothing listens.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A real `pxfs node` child process, killed on drop.
pub struct NodeProcess {
    pub url: String,
    child: Child,
    _repo: tempfile::TempDir,
}

impl NodeProcess {
    pub fn start() -> NodeProcess {
        let repo = tempfile::tempdir().unwrap();
        NodeProcess::start_in(repo)
    }

    pub fn start_in(repo: tempfile::TempDir) -> NodeProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pxfs"))
            .args(["node", "--repo"])
            .arg(repo.path())
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cannot run the pxfs binary");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("pxfs node listening on ") {
                    let _ = tx.send(url.trim().to_string());
                    break;
                }
            }
            // Keep draining so the node never blocks on a full pipe.
            for _ in lines {}
        });
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                panic!(
                    "`pxfs node --repo DIR --listen 127.0.0.1:0` did not print \
                     `pxfs node listening on http://ADDR` (exit: {status:?})"
                );
            }
        };
        NodeProcess {
            url,
            child,
            _repo: repo,
        }
    }

    pub fn client(&self) -> NodeClient {
        client_for(&self.url, 30, 2)
    }

    /// Stops the node (SIGKILL), keeping the repository.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Writes `len` bytes of [`pattern`] to `path` without holding them all in memory.
pub fn write_pattern_file(path: &Path, len: usize, seed: u8) {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let block = 1 << 20;
    let mut written = 0;
    while written < len {
        let n = block.min(len - written);
        let data = pattern_at(written, n, seed);
        f.write_all(&data).unwrap();
        written += n;
    }
    f.flush().unwrap();
}

/// Bytes `offset..offset+len` of the pattern, without building the prefix.
pub fn pattern_at(offset: usize, len: usize, seed: u8) -> Vec<u8> {
    (offset..offset + len)
        .map(|i| ((i as u64).wrapping_mul(2654435761) >> 13) as u8 ^ seed)
        .collect()
}
