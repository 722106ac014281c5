//! The storage client reads the response shapes Kubo and BTFS document
//! (samples in `tests/fixtures/kubo/`, see its README).

#[allow(dead_code)]
mod storage_support;

use bytes::Bytes;
use pxfs::storage::{NodeClient, StorageError};
use storage_support::{Mock, Reply};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/kubo/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A node that answers every request with one fixture (status 200, or 500 for errors).
async fn answering(name: &'static str) -> (Mock, NodeClient) {
    let body = fixture(name);
    let status = if name.starts_with("error") { 500 } else { 200 };
    let mock = Mock::start(move |_, _| Reply::status(status, body.clone())).await;
    let client = mock.client(5, 0);
    (mock, client)
}

const EMPTY_RAW_CID: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
const KEY_ID: &str = "k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8";

#[tokio::test]
async fn add_of_two_files_yields_both_objects_with_numeric_sizes() {
    let (_mock, client) = answering("add.ndjson").await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.txt"), dir.path().join("b.bin"));
    std::fs::write(&a, "").unwrap();
    std::fs::write(&b, vec![7u8; 262_144]).unwrap();
    let added = client
        .add_batch(vec![("a.txt".into(), a), ("b.bin".into(), b)])
        .await
        .unwrap();
    assert_eq!(added[0].hash, EMPTY_RAW_CID);
    assert_eq!(added[0].size, 0);
    assert_eq!(added[1].name, "b.bin");
    assert_eq!(added[1].size, 262_158);
}

#[tokio::test]
async fn add_with_progress_objects_yields_only_the_file() {
    let (_mock, client) = answering("add-progress.ndjson").await;
    let added = client
        .add_bytes("b.bin", Bytes::from(vec![0u8; 262_145]))
        .await
        .unwrap();
    assert!(added.hash.starts_with("bafybei"), "{}", added.hash);
    assert_eq!(added.size, 262_158);
}

#[tokio::test]
async fn name_publish_answer_is_read() {
    let (_mock, client) = answering("name-publish.json").await;
    let published = client
        .name_publish("pxfs-6f1d2a9c0b7e4d31", EMPTY_RAW_CID, None)
        .await
        .unwrap();
    assert_eq!(published.name, KEY_ID);
    assert_eq!(published.value, format!("/ipfs/{EMPTY_RAW_CID}"));
}

#[tokio::test]
async fn name_resolve_answer_becomes_a_bare_cid() {
    let (_mock, client) = answering("name-resolve.json").await;
    assert_eq!(client.name_resolve(KEY_ID).await.unwrap(), EMPTY_RAW_CID);
}

#[tokio::test]
async fn a_btfs_resolve_answer_becomes_a_bare_cid() {
    let (_mock, client) = answering("btfs-name-resolve.json").await;
    assert_eq!(
        client.name_resolve(KEY_ID).await.unwrap(),
        "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH"
    );
}

#[tokio::test]
async fn key_gen_answer_is_read() {
    let (_mock, client) = answering("key-gen.json").await;
    let key = client.key_gen("pxfs-6f1d2a9c0b7e4d31").await.unwrap();
    assert_eq!(key.name, "pxfs-6f1d2a9c0b7e4d31");
    assert_eq!(key.id, KEY_ID);
}

#[tokio::test]
async fn key_list_answer_is_read() {
    let (_mock, client) = answering("key-list.json").await;
    let keys = client.key_list().await.unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["self", "pxfs-6f1d2a9c0b7e4d31"]);
    assert_eq!(keys[1].id, KEY_ID);
}

#[tokio::test]
async fn version_answer_is_read() {
    let (_mock, client) = answering("version.json").await;
    let v = client.version().await.unwrap();
    assert_eq!(v.version, "0.39.0");
    assert_eq!(v.repo, "18");
    assert_eq!(v.system, "amd64/linux");
}

#[tokio::test]
async fn repo_stat_is_read_nested_as_documented() {
    let (_mock, client) = answering("repo-stat.json").await;
    let s = client.repo_stat().await.unwrap();
    assert_eq!(
        (s.repo_size, s.storage_max, s.num_objects),
        (2048, 10_000_000_000, 12)
    );
    assert_eq!(s.version, "fs-repo@18");
}

#[tokio::test]
async fn repo_stat_is_read_flat_as_go_encodes_it() {
    let (_mock, client) = answering("repo-stat-flat.json").await;
    let s = client.repo_stat().await.unwrap();
    assert_eq!(
        (s.repo_size, s.storage_max, s.num_objects),
        (2048, 10_000_000_000, 12)
    );
    assert_eq!(s.repo_path, "/data/ipfs");
}

#[tokio::test]
async fn pin_add_answer_is_accepted() {
    let (_mock, client) = answering("pin-add.json").await;
    client.pin_add(EMPTY_RAW_CID).await.unwrap();
}

#[tokio::test]
async fn an_error_answer_carries_the_nodes_message_and_path() {
    let (mock, client) = answering("error.json").await;
    let err = client.cat("bafkunknown", 0, None).await.unwrap_err();
    match &err {
        StorageError::Node {
            path,
            status,
            message,
        } => {
            assert_eq!(path, "/api/v0/cat");
            assert_eq!(*status, 500);
            assert!(
                message.starts_with("invalid path \"bafkunknown\""),
                "{message}"
            );
        }
        other => panic!("expected the node's error, got {other:?}"),
    }
    assert_eq!(mock.hits(), 1);
}
