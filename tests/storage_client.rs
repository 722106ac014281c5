//! Storage client behaviour a mock node shows honestly: which failures are retried, what
//! errors say, headers and parameters sent, multi-object `add` answers, idle timeouts.

#[allow(dead_code)]
mod storage_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use pxfs::storage::{NodeClient, StorageError};
use storage_support::{Mock, Reply, client_for, dead_url, node_config};

const ADDED: &str = r#"{"Name":"doc","Hash":"bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai","Size":"5"}"#;

#[tokio::test]
async fn add_is_retried_after_connection_refused_until_the_node_comes_up() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener); // refused from now on
    let client = client_for(&format!("http://{addr}"), 5, 5);

    let node = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Mock::start_on(listener, |_, _| Reply::ok(ADDED)).await
    });
    let added = client
        .add_bytes("doc", Bytes::from_static(b"hello"))
        .await
        .expect("add succeeds once the node is up");
    assert_eq!(
        added.hash,
        "bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai"
    );
    assert_eq!(added.size, 5);
    assert_eq!(node.await.unwrap().hits(), 1);
}

#[tokio::test]
async fn node_down_is_a_clear_transient_error_after_the_retries() {
    let url = dead_url();
    let client = client_for(&url, 2, 2);
    let started = Instant::now();
    let err = client.version().await.unwrap_err();
    let took = started.elapsed();

    assert!(matches!(err, StorageError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    let text = err.to_string();
    assert!(
        text.contains("unreachable") && text.contains(&url),
        "{text}"
    );
    // Two retries back off about 100 ms + 200 ms (±25 %), and no more than that.
    assert!(
        took >= Duration::from_millis(200),
        "gave up too early: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_503_from_a_proxy_is_retried_and_then_succeeds() {
    let mock = Mock::start(|_, n| {
        if n < 2 {
            Reply::status(503, "<html>Service Unavailable</html>")
        } else {
            Reply::ok(r#"{"Version":"0.39.0","Commit":"","Repo":"16","System":"amd64/linux","Golang":"go1.25"}"#)
        }
    })
    .await;
    let version = mock.client(5, 3).version().await.unwrap();
    assert_eq!(version.version, "0.39.0");
    assert_eq!(mock.hits(), 3);
}

#[tokio::test]
async fn a_500_without_a_kubo_body_is_retried_then_reported_as_transient() {
    let mock = Mock::start(|_, _| Reply::status(500, "")).await;
    let err = mock.client(5, 2).repo_stat().await.unwrap_err();
    assert!(
        matches!(err, StorageError::Unavailable { status: 500, .. }),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert_eq!(mock.hits(), 3, "one try and two retries");
}

#[tokio::test]
async fn add_is_not_retried_after_a_400() {
    let mock = Mock::start(|_, _| Reply::status(400, "unknown option \"raw-leaves\"")).await;
    let err = mock
        .client(5, 4)
        .add_bytes("doc", Bytes::from_static(b"hello"))
        .await
        .unwrap_err();
    match &err {
        StorageError::Node {
            path,
            status,
            message,
        } => {
            assert_eq!(path, "/api/v0/add");
            assert_eq!(*status, 400);
            assert!(message.contains("raw-leaves"), "{message}");
        }
        other => panic!("expected a node error, got {other:?}"),
    }
    assert!(!err.is_transient());
    assert_eq!(mock.hits(), 1);
}

#[tokio::test]
async fn a_500_with_a_kubo_error_body_is_the_nodes_answer_and_not_retried() {
    let mock = Mock::start(|_, _| {
        Reply::kubo_error(500, "failed to resolve /ipfs/bafkunknown: not found")
    })
    .await;
    let err = mock
        .client(5, 4)
        .cat("bafkunknown", 0, None)
        .await
        .unwrap_err();
    assert_eq!(mock.hits(), 1);
    assert!(!err.is_transient());
    assert_eq!(
        err.node_message(),
        Some("failed to resolve /ipfs/bafkunknown: not found")
    );
    let text = err.to_string();
    assert!(
        text.contains("/api/v0/cat") && text.contains("not found"),
        "{text}"
    );
}

#[tokio::test]
async fn the_bearer_token_is_sent_on_every_request() {
    let mock = Mock::start(|seen, _| match seen.path.as_str() {
        "/api/v0/key/list" => Reply::ok(r#"{"Keys":[]}"#),
        _ => Reply::ok(ADDED),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").unwrap();
    let mut cfg = node_config(&mock.url, 5, 0);
    cfg.bearer_token_file = Some(token_file);
    let client = NodeClient::new(&cfg).unwrap();

    client.key_list().await.unwrap();
    client
        .add_bytes("d", Bytes::from_static(b"x"))
        .await
        .unwrap();

    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    for s in seen {
        assert_eq!(
            s.authorization.as_deref(),
            Some("Bearer s3cret-token"),
            "{}",
            s.path
        );
    }
}

#[tokio::test]
async fn no_authorization_header_without_a_token() {
    let mock = Mock::start(|_, _| Reply::ok(r#"{"Keys":[]}"#)).await;
    mock.client(5, 0).key_list().await.unwrap();
    assert_eq!(mock.seen()[0].authorization, None);
}

#[tokio::test]
async fn add_is_a_pinned_cidv1_raw_leaves_multipart_post() {
    let mock = Mock::start(|_, _| Reply::ok(ADDED)).await;
    mock.client(5, 0)
        .add_bytes("notes.txt", Bytes::from_static(b"hello"))
        .await
        .unwrap();
    let seen = &mock.seen()[0];
    assert_eq!(seen.path, "/api/v0/add");
    assert_eq!(seen.param("pin"), Some("true"));
    assert_eq!(seen.param("cid-version"), Some("1"));
    assert_eq!(seen.param("raw-leaves"), Some("true"));
    assert!(
        seen.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("multipart/form-data; boundary=")),
        "{:?}",
        seen.content_type
    );
    let body = String::from_utf8_lossy(&seen.body);
    assert!(
        body.contains(r#"name="file"; filename="notes.txt""#),
        "{body}"
    );
    assert!(body.contains("\r\n\r\nhello\r\n"), "{body}");
    assert!(
        body.contains("\r\ncontent-type: application/octet-stream\r\n"),
        "{body}"
    );
}

#[tokio::test]
async fn a_batch_add_sends_every_file_in_one_request_and_parses_every_answer_in_order() {
    let mock = Mock::start(|_, _| {
        // Kubo answers one JSON object per line; a progress object carries no Hash.
        Reply::ok(concat!(
            r#"{"Name":"a.txt","Bytes":1}"#,
            "\n",
            r#"{"Name":"a.txt","Hash":"bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm","Size":"1"}"#,
            "\n",
            r#"{"Name":"b.txt","Hash":"bafkreib6epubmabzlffdhckpmvsodmjuro6xuaei2qwevs3t52xnlhaatu","Size":"2"}"#,
            "\n",
            r#"{"Name":"c d.txt","Hash":"bafkreibopuwahkkqplrgl3hvwu2wrbnfgoj2eau5eqjzjglsmwq2ewxpyy","Size":"0"}"#,
            "\n"
        ))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, std::path::PathBuf)> =
        [("a.txt", "A"), ("b.txt", "BB"), ("c d.txt", "")]
            .iter()
            .map(|(name, content)| {
                let p = dir.path().join(name);
                std::fs::write(&p, content).unwrap();
                (name.to_string(), p)
            })
            .collect();

    let added = mock.client(5, 0).add_batch(files).await.unwrap();

    assert_eq!(mock.hits(), 1, "one request for the whole batch");
    let got: Vec<(&str, &str, u64)> = added
        .iter()
        .map(|a| (a.name.as_str(), a.hash.as_str(), a.size))
        .collect();
    assert_eq!(
        got,
        [
            (
                "a.txt",
                "bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm",
                1
            ),
            (
                "b.txt",
                "bafkreib6epubmabzlffdhckpmvsodmjuro6xuaei2qwevs3t52xnlhaatu",
                2
            ),
            (
                "c d.txt",
                "bafkreibopuwahkkqplrgl3hvwu2wrbnfgoj2eau5eqjzjglsmwq2ewxpyy",
                0
            )
        ]
    );
    let body = String::from_utf8_lossy(&mock.seen()[0].body).into_owned();
    assert_eq!(body.matches(r#"name="file""#).count(), 3, "{body}");
    assert!(body.contains("\r\n\r\nBB\r\n"), "{body}");
}

#[tokio::test]
async fn an_add_answer_missing_objects_is_an_error_not_a_partial_success() {
    let mock = Mock::start(|_, _| Reply::ok(r#"{"Name":"a","Hash":"bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm","Size":"1"}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, "1").unwrap();
    std::fs::write(&b, "2").unwrap();
    let err = mock
        .client(5, 0)
        .add_batch(vec![("a".into(), a), ("b".into(), b)])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Decode { .. }), "{err:?}");
}

#[tokio::test]
async fn adding_a_missing_file_is_a_local_error_and_sends_nothing() {
    let mock = Mock::start(|_, _| Reply::ok(ADDED)).await;
    let err = mock
        .client(5, 3)
        .add_path(std::path::Path::new("/nonexistent/pxfs-test"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Io { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert_eq!(mock.hits(), 0);
}

#[tokio::test]
async fn a_node_that_never_answers_times_out() {
    let mock = Mock::start(|_, _| Reply::ok("{}").after(Duration::from_secs(30))).await;
    let started = Instant::now();
    let err = mock.client(1, 0).key_list().await.unwrap_err();
    assert!(matches!(err, StorageError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_download_that_goes_silent_times_out_instead_of_hanging() {
    let mock = Mock::start(|_, _| {
        let stream =
            futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"first")) })
                .chain(futures::stream::pending());
        Reply {
            status: 200,
            body: axum::body::Body::from_stream(stream),
            delay: Duration::ZERO,
        }
    })
    .await;
    let client = mock.client(1, 0);
    let started = Instant::now();
    let mut stream = Box::pin(client.cat_stream("bafkreix", 0, None).await.unwrap());
    assert_eq!(
        stream.next().await.unwrap().unwrap(),
        Bytes::from_static(b"first")
    );
    let err = stream.next().await.unwrap().unwrap_err();
    assert!(matches!(err, StorageError::Timeout { .. }), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_slow_download_that_keeps_moving_is_not_cut_off() {
    // Ten pieces 300 ms apart: three seconds in all, never silent for the 1 s timeout.
    let mock = Mock::start(|_, _| {
        let stream = futures::stream::iter(0..10u8).then(|i| async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![i; 1000]))
        });
        Reply {
            status: 200,
            body: axum::body::Body::from_stream(stream),
            delay: Duration::ZERO,
        }
    })
    .await;
    let stream = mock
        .client(1, 0)
        .cat_stream("bafkreix", 0, None)
        .await
        .unwrap();
    let pieces: Vec<Bytes> = stream.map(|r| r.unwrap()).collect().await;
    let all: Vec<u8> = pieces.concat();
    assert_eq!(all.len(), 10_000);
    assert_eq!(all[9_999], 9);
}

#[tokio::test]
async fn cat_sends_offset_and_length() {
    let mock = Mock::start(|_, _| Reply::bytes(Bytes::from_static(b"abc"))).await;
    let data = mock
        .client(5, 0)
        .cat("bafkreix", 4096, Some(3))
        .await
        .unwrap();
    assert_eq!(&data[..], b"abc");
    let seen = &mock.seen()[0];
    assert_eq!(seen.path, "/api/v0/cat");
    assert_eq!(seen.param("arg"), Some("bafkreix"));
    assert_eq!(seen.param("offset"), Some("4096"));
    assert_eq!(seen.param("length"), Some("3"));
}

#[tokio::test]
async fn unpinning_something_not_pinned_is_fine() {
    let mock = Mock::start(|_, _| Reply::kubo_error(500, "not pinned or pinned indirectly")).await;
    mock.client(5, 0).pin_rm("bafkreix").await.unwrap();
}

#[tokio::test]
async fn other_unpin_failures_are_reported() {
    let mock = Mock::start(|_, _| Reply::kubo_error(500, "invalid path \"x\"")).await;
    let err = mock.client(5, 0).pin_rm("x").await.unwrap_err();
    assert_eq!(err.node_message(), Some("invalid path \"x\""));
}

#[tokio::test]
async fn publish_sends_the_key_the_path_and_allow_offline() {
    let mock = Mock::start(|_, _| {
        Reply::ok(r#"{"Name":"k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8","Value":"/ipfs/bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai"}"#)
    })
    .await;
    let published = mock
        .client(5, 0)
        .name_publish(
            "pxfs-0011",
            "bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai",
            Some("48h"),
        )
        .await
        .unwrap();
    assert_eq!(
        published.value,
        "/ipfs/bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai"
    );
    let seen = &mock.seen()[0];
    assert_eq!(seen.path, "/api/v0/name/publish");
    assert_eq!(
        seen.param("arg"),
        Some("/ipfs/bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai")
    );
    assert_eq!(seen.param("key"), Some("pxfs-0011"));
    assert_eq!(seen.param("allow-offline"), Some("true"));
    assert_eq!(seen.param("lifetime"), Some("48h"));
}

#[tokio::test]
async fn a_btfs_node_is_addressed_under_its_own_prefix() {
    const V0: &str = "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG";
    let mock = Mock::start(|_, _| Reply::ok(format!(r#"{{"Path":"/btfs/{V0}"}}"#))).await;
    let mut cfg = node_config(&mock.url, 5, 0);
    cfg.api_prefix = "/api/v1".into();
    let cid = NodeClient::new(&cfg)
        .unwrap()
        .name_resolve("k51name")
        .await
        .unwrap();
    assert_eq!(cid, V0);
    assert_eq!(mock.seen()[0].path, "/api/v1/name/resolve");
}

#[tokio::test]
async fn a_config_with_an_unusable_url_is_refused_up_front() {
    let err = NodeClient::new(&node_config("not a url", 5, 0)).unwrap_err();
    assert!(matches!(err, StorageError::Config(_)), "{err:?}");
}

#[tokio::test]
async fn a_download_that_breaks_off_resumes_where_it_stopped() {
    let data = storage_support::pattern(300_000, 5);
    let served = data.clone();
    let mock = Mock::start(move |seen, n| {
        let offset: usize = seen.param("offset").map_or(0, |o| o.parse().unwrap());
        if n == 0 {
            // Half the file, then the connection breaks.
            let half = served.slice(..150_000);
            let stream = breaking_after(half);
            Reply {
                status: 200,
                body: axum::body::Body::from_stream(stream),
                delay: Duration::ZERO,
            }
        } else {
            Reply::bytes(served.slice(offset..))
        }
    })
    .await;
    let stream = mock
        .client(5, 2)
        .cat_stream("bafkreix", 0, None)
        .await
        .unwrap();
    let pieces: Vec<Bytes> = stream.map(|r| r.unwrap()).collect().await;
    assert!(pieces.concat()[..] == data[..]);
    let seen = mock.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].param("offset"), Some("150000"));
}

#[tokio::test]
async fn a_download_that_keeps_breaking_off_fails_after_the_retries() {
    let mock = Mock::start(|_, _| {
        let stream = breaking_after(Bytes::from_static(b"some"));
        Reply {
            status: 200,
            body: axum::body::Body::from_stream(stream),
            delay: Duration::ZERO,
        }
    })
    .await;
    let mut stream = Box::pin(
        mock.client(5, 2)
            .cat_stream("bafkreix", 0, Some(100))
            .await
            .unwrap(),
    );
    let mut got = Vec::new();
    let err = loop {
        match stream.next().await {
            Some(Ok(piece)) => got.extend_from_slice(&piece),
            Some(Err(e)) => break e,
            None => panic!("the stream ended as if complete"),
        }
    };
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(mock.hits(), 3, "one request and two resumptions");
    assert_eq!(mock.seen()[2].param("length"), Some("92"));
    assert_eq!(got, b"somesomesome");
}

/// A response body that delivers `first` and then breaks the connection (after a pause, so
/// that the headers and `first` are on the wire before it breaks).
fn breaking_after(
    first: Bytes,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    futures::stream::once(async move { Ok(first) }).chain(futures::stream::once(async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Err(std::io::Error::other("connection lost"))
    }))
}

// ---- PollinationX hosted nodes: a stand-in login server and node ----

mod hosted {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::{SystemTime, UNIX_EPOCH};

    use alloy::primitives::{Address, Signature};
    use alloy::signers::local::PrivateKeySigner;
    use axum::Router;
    use axum::extract::{RawQuery, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use base64::Engine;
    use pxfs::config::NodeAuth;
    use pxfs::storage::{HostedLogin, NodeClient};

    use super::storage_support::{Mock, Reply, node_config};

    /// Anvil's first dev key (devnet only).
    pub const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    pub const MESSAGE: &str = "Sign in to PollinationX (stand-in)";
    pub const CONTRACT: &str = "0x5fbdb2315678afecb367f032d93f642f64180aa3";
    pub const CHAIN_ID: u64 = 31337;
    pub const ADDED: &str = r#"{"Name":"doc","Hash":"bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai","Size":"5"}"#;

    pub fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    /// What the stand-in login service and its node share: the JWTs issued and when they
    /// expire, and which tokens the wallet holds.
    pub struct Issuer {
        pub tokens: Vec<u64>,
        pub lifetime_secs: u64,
        pub logins: AtomicUsize,
        pub refused_logins: AtomicUsize,
        /// Login requests that were not a POST of a JSON body without a query (any GET).
        pub not_posted: AtomicUsize,
        issued: Mutex<HashMap<String, (u64, u64)>>,
        node_url: OnceLock<String>,
        /// The node refuses every JWT issued by logins before this number (a revocation).
        pub revoke_before: AtomicUsize,
    }

    impl Issuer {
        /// Whether `authorization` carries a JWT for `token` that is valid now.
        pub fn accepts(&self, authorization: Option<&str>, token: u64) -> bool {
            let Some(jwt) = authorization.and_then(|a| a.strip_prefix("Bearer ")) else {
                return false;
            };
            let issued = self.issued.lock().unwrap();
            let login_no = jwt_login_no(jwt);
            matches!(issued.get(jwt), Some(&(t, exp)) if t == token && now() < exp)
                && login_no >= self.revoke_before.load(Ordering::SeqCst)
        }

        pub fn issued_jwts(&self) -> Vec<String> {
            self.issued.lock().unwrap().keys().cloned().collect()
        }
    }

    fn jwt_login_no(jwt: &str) -> usize {
        let payload = jwt.split('.').nth(1).unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        v["login"].as_u64().unwrap_or(0) as usize
    }

    /// The stand-in: `POST /auth/v2/login` (a JSON body `{wallet, chain, nonce, signature}`,
    /// nothing in the URL's query; anything else is counted in `not_posted` and refused)
    /// checks the chain, the message and the signature
    /// (the address recovered from it must be the wallet), then issues per token a JWT
    /// `{address, tokenId, tokenSmartContract, exp}` and the endpoint `NODE/t<id>/api/v1/`.
    /// The node behind those endpoints answers `add` only with a valid JWT for the token
    /// in its path, 401 otherwise.
    pub struct Hosted {
        pub issuer: Arc<Issuer>,
        pub node: Mock,
        pub auth_url: String,
        _login: tokio::task::JoinHandle<()>,
    }

    impl Hosted {
        pub async fn start(tokens: Vec<u64>, lifetime_secs: u64) -> Hosted {
            let issuer = Arc::new(Issuer {
                tokens,
                lifetime_secs,
                logins: AtomicUsize::new(0),
                refused_logins: AtomicUsize::new(0),
                not_posted: AtomicUsize::new(0),
                issued: Mutex::new(HashMap::new()),
                node_url: OnceLock::new(),
                revoke_before: AtomicUsize::new(0),
            });
            let for_node = issuer.clone();
            let node = Mock::start(move |seen, _| {
                let token = seen
                    .path
                    .strip_prefix("/t")
                    .and_then(|p| p.split('/').next())
                    .and_then(|t| t.parse().ok());
                match token {
                    Some(t) if for_node.accepts(seen.authorization.as_deref(), t) => {
                        if seen.path.ends_with("/add") {
                            Reply::ok(ADDED)
                        } else {
                            // A gateway that passes only `add`, `cat` and `get`.
                            Reply::status(404, "404 page not found")
                        }
                    }
                    _ => Reply::status(401, r#"{"error":"invalid or expired token"}"#),
                }
            })
            .await;
            issuer.node_url.set(node.url.clone()).unwrap();
            let app = Router::new()
                .route("/auth/v2/login", post(login).get(not_posted))
                .with_state(issuer.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let auth_url = format!("http://{}", listener.local_addr().unwrap());
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Hosted {
                issuer,
                node,
                auth_url,
                _login: task,
            }
        }

        pub fn login(&self, message: &str) -> Arc<HostedLogin> {
            let mut cfg = node_config("http://unused.invalid", 5, 1);
            cfg.auth = NodeAuth::PollinationX;
            cfg.auth_url = Some(self.auth_url.clone());
            cfg.login_message = Some(message.to_string());
            let signer: PrivateKeySigner = DEV_KEY.parse().unwrap();
            Arc::new(HostedLogin::new(&cfg, CHAIN_ID, CONTRACT, signer).unwrap())
        }

        pub fn client(&self, login: Arc<HostedLogin>) -> NodeClient {
            let mut cfg = node_config("http://unused.invalid", 5, 1);
            cfg.api_prefix = "/api/v1".into();
            cfg.auth = NodeAuth::PollinationX;
            NodeClient::hosted(&cfg, login).unwrap()
        }

        pub fn logins(&self) -> usize {
            self.issuer.logins.load(Ordering::SeqCst)
        }

        pub fn not_posted(&self) -> usize {
            self.issuer.not_posted.load(Ordering::SeqCst)
        }
    }

    async fn not_posted(State(issuer): State<Arc<Issuer>>) -> (StatusCode, String) {
        issuer.not_posted.fetch_add(1, Ordering::SeqCst);
        (StatusCode::METHOD_NOT_ALLOWED, "POST only".into())
    }

    async fn login(
        State(issuer): State<Arc<Issuer>>,
        RawQuery(query): RawQuery,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> (StatusCode, String) {
        let json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let q: Option<HashMap<String, String>> = serde_json::from_slice(&body).ok();
        let (true, None, Some(q)) = (json, query, q) else {
            issuer.not_posted.fetch_add(1, Ordering::SeqCst);
            return (StatusCode::BAD_REQUEST, "a JSON body, no query".into());
        };
        let refuse = |why: &str| {
            issuer.refused_logins.fetch_add(1, Ordering::SeqCst);
            (StatusCode::UNAUTHORIZED, format!(r#"{{"error":"{why}"}}"#))
        };
        let (Some(wallet), Some(chain), Some(nonce), Some(sig)) = (
            q.get("wallet"),
            q.get("chain"),
            q.get("nonce"),
            q.get("signature"),
        ) else {
            return refuse("missing parameter");
        };
        if chain != &format!("0x{CHAIN_ID:x}") || nonce != MESSAGE {
            return refuse("wrong chain or message");
        }
        let Ok(wallet) = wallet.parse::<Address>() else {
            return refuse("bad wallet");
        };
        let Ok(sig) = sig.parse::<Signature>() else {
            return refuse("bad signature");
        };
        match sig.recover_address_from_msg(nonce.as_bytes()) {
            Ok(signer) if signer == wallet => {}
            _ => return refuse("signature is not the wallet's"),
        }
        let n = issuer.logins.fetch_add(1, Ordering::SeqCst) + 1;
        let exp = now() + issuer.lifetime_secs;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let node_url = issuer.node_url.get().unwrap();
        let mut nfts = Vec::new();
        for &t in &issuer.tokens {
            let payload = serde_json::json!({
                "address": wallet.to_string(), "tokenId": t.to_string(),
                "tokenSmartContract": CONTRACT, "exp": exp, "login": n,
                "nonce": rand::random::<u64>(),
            });
            let jwt = format!(
                "{}.{}.{}",
                b64.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
                b64.encode(payload.to_string()),
                b64.encode(rand::random::<[u8; 16]>())
            );
            issuer.issued.lock().unwrap().insert(jwt.clone(), (t, exp));
            nfts.push(serde_json::json!({
                "tokenId": t, "jwt": jwt, "endpoint": format!("{node_url}/t{t}/api/v1/"),
            }));
        }
        (
            StatusCode::OK,
            serde_json::json!({ "wallet": wallet.to_string(), "nfts": nfts }).to_string(),
        )
    }
}

#[tokio::test]
async fn hosted_login_gives_each_token_its_own_endpoint_and_jwt() {
    let hosted = hosted::Hosted::start(vec![3, 8], 3600).await;
    let client = hosted.client(hosted.login(hosted::MESSAGE));
    for token in [3u64, 8, 3] {
        let added = client
            .for_token(token)
            .add_bytes("doc", Bytes::from_static(b"hello"))
            .await
            .unwrap_or_else(|e| panic!("add for token {token}: {e}"));
        assert_eq!(
            added.hash,
            "bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai"
        );
    }
    // One login serves every token; each request went to its token's endpoint with its JWT.
    // It was a POST with the signature in its JSON body (the stand-in refuses and counts
    // anything else, such as the signature in a URL).
    assert_eq!(hosted.logins(), 1);
    assert_eq!(hosted.not_posted(), 0);
    let seen = hosted.node.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(
        paths,
        ["/t3/api/v1/add", "/t8/api/v1/add", "/t3/api/v1/add"]
    );
    assert_ne!(seen[0].authorization, seen[1].authorization);
    assert_eq!(seen[0].authorization, seen[2].authorization);
}

/// The hosted login's config, as `[node]` would give it.
fn hosted_config(auth_url: &str, message: &str) -> pxfs::config::NodeConfig {
    let mut cfg = storage_support::node_config("http://unused.invalid", 5, 1);
    cfg.auth = pxfs::config::NodeAuth::PollinationX;
    cfg.auth_url = Some(auth_url.into());
    cfg.login_message = Some(message.into());
    cfg
}

fn hosted_login(
    cfg: &pxfs::config::NodeConfig,
) -> Result<pxfs::storage::HostedLogin, StorageError> {
    let signer: alloy::signers::local::PrivateKeySigner = hosted::DEV_KEY.parse().unwrap();
    pxfs::storage::HostedLogin::new(cfg, hosted::CHAIN_ID, hosted::CONTRACT, signer)
}

#[tokio::test]
async fn a_login_over_plain_http_to_another_host_is_refused_before_anything_is_signed() {
    for url in ["http://auth.example", "http://192.0.2.7:8080"] {
        let err = hosted_login(&hosted_config(url, hosted::MESSAGE)).unwrap_err();
        assert!(matches!(err, StorageError::Config(_)), "{err:?}");
        assert!(err.to_string().contains("only over https"), "{err}");
    }
    // Over https it is accepted (nothing is sent until a token is used).
    assert!(hosted_login(&hosted_config("https://auth.example", hosted::MESSAGE)).is_ok());

    // PollinationX's GET login (the signature in the URL) only over https: not even to the
    // stand-in on loopback, which therefore sees no request at all.
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let mut cfg = hosted_config(&hosted.auth_url, hosted::MESSAGE);
    cfg.login_method = pxfs::config::LoginMethod::Get;
    let err = hosted_login(&cfg).unwrap_err();
    assert!(err.to_string().contains("only over https"), "{err}");
    assert_eq!((hosted.logins(), hosted.not_posted()), (0, 0));
}

#[tokio::test]
async fn a_login_redirect_is_not_followed() {
    // The real login service behind a redirect to a plain-http host: the signature would
    // travel in clear. The redirect target (a stand-in that logs in anyone) sees nothing.
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let target = format!("{}/auth/v2/login", hosted.auth_url);
    let app = axum::Router::new().fallback(move || {
        let target = target.clone();
        async move {
            (
                axum::http::StatusCode::PERMANENT_REDIRECT,
                [(axum::http::header::LOCATION, target)],
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client = hosted.client(std::sync::Arc::new(
        hosted_login(&hosted_config(&redirector, hosted::MESSAGE)).unwrap(),
    ));
    let err = client
        .for_token(3)
        .add_bytes("doc", Bytes::from_static(b"hello"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Login { .. }), "{err:?}");
    assert!(err.to_string().contains("follows no redirect"), "{err}");
    assert_eq!((hosted.logins(), hosted.not_posted()), (0, 0));
    assert_eq!(hosted.node.hits(), 0);
}

#[tokio::test]
async fn a_login_message_holding_the_key_statement_is_refused() {
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let statement = pxfs::format::wrap::WALLET_STATEMENT;
    let err = hosted_login(&hosted_config(
        &hosted.auth_url,
        &format!("Sign in\n{statement}"),
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("never unlock private files"),
        "{err}"
    );
    assert_eq!(
        hosted.logins()
            + hosted
                .issuer
                .refused_logins
                .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn hosted_login_is_refused_for_a_message_the_service_does_not_expect() {
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let client = hosted.client(hosted.login("some other message"));
    let err = client
        .for_token(3)
        .add_bytes("doc", Bytes::from_static(b"hello"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Login { .. }), "{err:?}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert_eq!(hosted.node.hits(), 0);
}

#[tokio::test]
async fn a_token_the_login_does_not_cover_is_a_clear_error() {
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let client = hosted.client(hosted.login(hosted::MESSAGE));
    let err = client.for_token(4).version().await.unwrap_err();
    assert!(err.to_string().contains("no access to sNFT 4"), "{err}");
}

#[tokio::test]
async fn a_request_after_the_jwt_expired_logs_in_again_first() {
    let hosted = hosted::Hosted::start(vec![3], 2).await;
    let client = hosted.client(hosted.login(hosted::MESSAGE)).for_token(3);
    client
        .add_bytes("a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    client
        .add_bytes("b", Bytes::from_static(b"b"))
        .await
        .unwrap();
    assert_eq!(hosted.logins(), 2);
    // Renewed before sending: the node never saw the expired JWT.
    assert_eq!(hosted.node.hits(), 2);
}

#[tokio::test]
async fn a_401_logs_in_again_once_and_retries_the_request() {
    use std::sync::atomic::Ordering;
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let client = hosted.client(hosted.login(hosted::MESSAGE)).for_token(3);
    client
        .add_bytes("a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    // The service revokes the JWTs of login 1 before they expire.
    hosted.issuer.revoke_before.store(2, Ordering::SeqCst);
    client
        .add_bytes("b", Bytes::from_static(b"b"))
        .await
        .expect("a fresh login gets through");
    assert_eq!(hosted.logins(), 2);
    assert_eq!(hosted.node.hits(), 3, "one refused request, one retry");

    // A node that refuses every JWT: one more login and one retry, then the 401 is the answer.
    hosted
        .issuer
        .revoke_before
        .store(usize::MAX, Ordering::SeqCst);
    let err = client
        .add_bytes("c", Bytes::from_static(b"c"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::Node { status: 401, .. }),
        "{err:?}"
    );
    assert_eq!(hosted.logins(), 3);
    assert_eq!(hosted.node.hits(), 5);
}

#[tokio::test]
async fn a_call_the_hosted_node_lacks_is_a_clear_error_and_key_list_is_empty() {
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let client = hosted.client(hosted.login(hosted::MESSAGE)).for_token(3);
    let err = client.name_resolve("k51x").await.unwrap_err();
    assert!(
        matches!(err, StorageError::Unsupported { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "the hosted node does not offer /api/v1/name/resolve (HTTP 404)"
    );
    let err = client
        .pin_rm("bafkreiattvkexaq3cpv6ufhrwd7bqv3selsblquwny5dkeoedfqfkizcai")
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unsupported { .. }), "{err:?}");
    // No key on the gateway: usage documents are added, not published.
    assert!(client.key_list().await.unwrap().is_empty());
}

#[tokio::test(flavor = "current_thread")]
async fn the_jwt_and_the_signature_never_appear_in_logs_errors_or_debug() {
    use std::sync::atomic::Ordering;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Buf::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let login = hosted.login(hosted::MESSAGE);
    let client = hosted.client(login.clone()).for_token(3);
    client
        .add_bytes("a", Bytes::from_static(b"a"))
        .await
        .unwrap();
    let grant = login.grant(3).await.unwrap();
    hosted
        .issuer
        .revoke_before
        .store(usize::MAX, Ordering::SeqCst);
    let refused = client
        .add_bytes("b", Bytes::from_static(b"b"))
        .await
        .unwrap_err();
    let bad_login = hosted
        .client(hosted.login("another message"))
        .for_token(3)
        .version()
        .await
        .unwrap_err();

    let signature = {
        use alloy::signers::SignerSync;
        let signer: alloy::signers::local::PrivateKeySigner = hosted::DEV_KEY.parse().unwrap();
        let sig = signer
            .sign_message_sync(hosted::MESSAGE.as_bytes())
            .unwrap();
        hex::encode(sig.as_bytes())
    };
    let jwts = hosted.issuer.issued_jwts();
    assert_eq!(jwts.len(), 2);
    let texts = [
        String::from_utf8(logs.0.lock().unwrap().clone()).unwrap(),
        format!("{client:?}"),
        format!("{login:?}"),
        format!("{grant:?}"),
        format!("{refused} {refused:?}"),
        format!("{bad_login} {bad_login:?}"),
    ];
    assert!(
        texts[0].contains("hosted node login"),
        "logs captured: {}",
        texts[0]
    );
    for text in &texts {
        for jwt in &jwts {
            // The payload part alone would already give the token away.
            let payload = jwt.split('.').nth(1).unwrap();
            assert!(!text.contains(payload), "a JWT leaked: {text}");
        }
        assert!(
            !text.contains(&signature),
            "the login signature leaked: {text}"
        );
    }
}

#[tokio::test]
async fn the_stand_in_login_refuses_a_signature_by_another_key() {
    use alloy::signers::SignerSync;
    let hosted = hosted::Hosted::start(vec![3], 3600).await;
    let wallet: alloy::signers::local::PrivateKeySigner = hosted::DEV_KEY.parse().unwrap();
    // Anvil's second dev key signs for the first's wallet.
    let other: alloy::signers::local::PrivateKeySigner =
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
            .parse()
            .unwrap();
    let sig = other.sign_message_sync(hosted::MESSAGE.as_bytes()).unwrap();
    let body = serde_json::json!({
        "wallet": wallet.address().to_string(),
        "chain": format!("0x{:x}", hosted::CHAIN_ID),
        "nonce": hosted::MESSAGE,
        "signature": format!("0x{}", hex::encode(sig.as_bytes())),
    });
    let resp = reqwest::Client::new()
        .post(format!("{}/auth/v2/login", hosted.auth_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(hosted.logins(), 0);
}
