//! Storage client behaviour a mock node shows honestly: which failures are retried, what
//! errors say, headers and parameters sent, multi-object `add` answers, idle timeouts.

#[allow(dead_code)]
mod storage_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use pxfs::storage::{NodeClient, StorageError};
use storage_support::{Mock, Reply, client_for, dead_url, node_config};

const ADDED: &str = r#"{"Name":"doc","Hash":"bafkreidoc","Size":"5"}"#;

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
    assert_eq!(added.hash, "bafkreidoc");
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
}

#[tokio::test]
async fn a_batch_add_sends_every_file_in_one_request_and_parses_every_answer_in_order() {
    let mock = Mock::start(|_, _| {
        // Kubo answers one JSON object per line; a progress object carries no Hash.
        Reply::ok(concat!(
            r#"{"Name":"a.txt","Bytes":1}"#,
            "\n",
            r#"{"Name":"a.txt","Hash":"bafkreia","Size":"1"}"#,
            "\n",
            r#"{"Name":"b.txt","Hash":"bafkreib","Size":"2"}"#,
            "\n",
            r#"{"Name":"c d.txt","Hash":"bafkreic","Size":"0"}"#,
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
            ("a.txt", "bafkreia", 1),
            ("b.txt", "bafkreib", 2),
            ("c d.txt", "bafkreic", 0)
        ]
    );
    let body = String::from_utf8_lossy(&mock.seen()[0].body).into_owned();
    assert_eq!(body.matches(r#"name="file""#).count(), 3, "{body}");
    assert!(body.contains("\r\n\r\nBB\r\n"), "{body}");
}

#[tokio::test]
async fn an_add_answer_missing_objects_is_an_error_not_a_partial_success() {
    let mock = Mock::start(|_, _| Reply::ok(r#"{"Name":"a","Hash":"bafkreia","Size":"1"}"#)).await;
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
        Reply::ok(r#"{"Name":"k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8","Value":"/ipfs/bafkreidoc"}"#)
    })
    .await;
    let published = mock
        .client(5, 0)
        .name_publish("pxfs-0011", "bafkreidoc", Some("48h"))
        .await
        .unwrap();
    assert_eq!(published.value, "/ipfs/bafkreidoc");
    let seen = &mock.seen()[0];
    assert_eq!(seen.path, "/api/v0/name/publish");
    assert_eq!(seen.param("arg"), Some("/ipfs/bafkreidoc"));
    assert_eq!(seen.param("key"), Some("pxfs-0011"));
    assert_eq!(seen.param("allow-offline"), Some("true"));
    assert_eq!(seen.param("lifetime"), Some("48h"));
}

#[tokio::test]
async fn a_btfs_node_is_addressed_under_its_own_prefix() {
    let mock = Mock::start(|_, _| Reply::ok(r#"{"Path":"/btfs/QmDoc"}"#)).await;
    let mut cfg = node_config(&mock.url, 5, 0);
    cfg.api_prefix = "/api/v1".into();
    let cid = NodeClient::new(&cfg)
        .unwrap()
        .name_resolve("k51name")
        .await
        .unwrap();
    assert_eq!(cid, "QmDoc");
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
