//! `add` produces Kubo's CIDs and sizes, and its options and errors follow Kubo.

#[path = "support/block_store.rs"]
mod block_store;
mod node_support;

use node_support::*;

const HELLO_V1: &str = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
const EMPTY_V1: &str = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku";
const HELLO_V0: &str = "QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN";
const CHUNK: usize = 262_144;

#[tokio::test(flavor = "multi_thread")]
async fn add_of_hello_gives_kubos_cid() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let added = add_files(
        &node,
        &[("hello.txt", b"hello\n".to_vec())],
        &[("cid-version", "1")],
    )
    .await;

    assert_eq!(added.len(), 1);
    assert_eq!(added[0]["Name"], "hello.txt");
    assert_eq!(added[0]["Hash"], HELLO_V1);
    assert_eq!(added[0]["Size"], "6");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_defaults_to_cid_v0_with_a_dag_pb_leaf_like_kubo() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let added = add_files(&node, &[("hello.txt", b"hello\n".to_vec())], &[]).await;

    assert_eq!(added[0]["Hash"], HELLO_V0);
    // 12-byte UnixFS message wrapped in a 14-byte dag-pb node.
    assert_eq!(added[0]["Size"], "14");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_of_empty_file_gives_kubos_cid() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let added = add_files(&node, &[("empty", Vec::new())], &[("cid-version", "1")]).await;

    assert_eq!(added[0]["Hash"], EMPTY_V1);
    assert_eq!(added[0]["Size"], "0");
    let (status, body) = cat(&node, EMPTY_V1, &[]).await;
    assert_eq!(status, 200);
    assert!(body.is_empty());
    node.stop().await;
}

/// A 1 MiB file is four 256 KiB raw leaves under one dag-pb root. The root's size follows
/// from the spec: 4 links of 46 bytes (36-byte CIDv1 + empty name + Tsize 262144) and a
/// 24-byte UnixFS message (File, filesize 1048576, four blocksizes).
#[tokio::test(flavor = "multi_thread")]
async fn one_mebibyte_of_zeros_is_four_raw_leaves_under_one_root() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let first = add_files(
        &node,
        &[("zeros", vec![0; 4 * CHUNK])],
        &[("cid-version", "1")],
    )
    .await;
    let second = add_files(
        &node,
        &[("zeros", vec![0; 4 * CHUNK])],
        &[("cid-version", "1")],
    )
    .await;

    let hash = first[0]["Hash"].as_str().unwrap();
    assert!(hash.starts_with("bafybei"), "dag-pb CIDv1 root: {hash}");
    assert_eq!(first[0]["Size"], (4 * CHUNK + 4 * 46 + 24).to_string());
    assert_eq!(first[0]["Hash"], second[0]["Hash"], "CIDs are stable");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn exactly_one_chunk_is_a_single_raw_leaf() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(CHUNK, 8);

    let added = add_files(&node, &[("f", content.clone())], &[("cid-version", "1")]).await;

    let hash = added[0]["Hash"].as_str().unwrap();
    assert!(hash.starts_with("bafkrei"), "raw leaf root: {hash}");
    assert_eq!(added[0]["Size"], CHUNK.to_string());
    let (_, body) = cat(&node, hash, &[]).await;
    assert!(body == content);
    node.stop().await;
}

/// 256 KiB + 1 byte: two raw leaves (262144 and 1 bytes). Root: links of 46 and 44 bytes and
/// a 14-byte UnixFS message.
#[tokio::test(flavor = "multi_thread")]
async fn one_byte_past_a_chunk_makes_a_second_leaf() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(CHUNK + 1, 7);

    let added = add_files(&node, &[("f", content.clone())], &[("cid-version", "1")]).await;

    let hash = added[0]["Hash"].as_str().unwrap();
    assert!(hash.starts_with("bafybei"), "{hash}");
    assert_eq!(added[0]["Size"], (CHUNK + 1 + 46 + 44 + 14).to_string());
    let (_, last) = cat(&node, hash, &[("offset", &CHUNK.to_string())]).await;
    assert_eq!(last, content[CHUNK..]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_of_several_files_answers_one_line_per_file() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let added = add_files(
        &node,
        &[
            ("a.txt", b"hello\n".to_vec()),
            ("b.bin", pseudo_random(300_000, 3)),
            ("c", Vec::new()),
        ],
        &[("cid-version", "1")],
    )
    .await;

    let names: Vec<_> = added.iter().map(|a| a["Name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a.txt", "b.bin", "c"]);
    assert_eq!(added[0]["Hash"], HELLO_V1);
    assert_eq!(added[2]["Hash"], EMPTY_V1);
    let (_, b) = cat(&node, added[1]["Hash"].as_str().unwrap(), &[]).await;
    assert_eq!(b, pseudo_random(300_000, 3));
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_without_pin_leaves_the_file_unpinned() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    add_files(
        &node,
        &[("h", b"hello\n".to_vec())],
        &[("cid-version", "1"), ("pin", "false")],
    )
    .await;

    let (status, body) = call(&node.rpc("pin/rm"), &[("arg", HELLO_V1)]).await;
    assert_kubo_error(status, &body, 500, 0);
    assert_eq!(body["Message"], "not pinned or pinned indirectly");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unsupported_chunker_is_a_bad_argument() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("x"),
    );

    let response = client()
        .post(with_query(&node.rpc("add"), &[("chunker", "rabin")]))
        .multipart(form)
        .send()
        .await
        .unwrap();

    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.unwrap();
    assert_kubo_error(status, &body, 400, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn add_without_a_multipart_body_is_a_bad_argument() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let (status, body) = call(&node.rpc("add"), &[]).await;

    assert_kubo_error(status, &body, 400, 1);
    node.stop().await;
}

/// A file of several blocks is pinned recursively, and through it every block below its
/// root; unpinning the root releases them again.
#[tokio::test(flavor = "multi_thread")]
async fn a_multi_block_file_pins_every_block_below_its_root() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(3 * CHUNK + 1, 11);
    // The same chunks added on their own (unpinned) give the leaves' CIDs.
    let chunks: Vec<(&str, Vec<u8>)> = content
        .chunks(CHUNK)
        .map(|c| ("leaf", c.to_vec()))
        .collect();
    let leaves = add_files(&node, &chunks, &[("cid-version", "1"), ("pin", "false")]).await;
    assert_eq!(leaves.len(), 4);

    let added = add_files(&node, &[("f", content)], &[("cid-version", "1")]).await;
    let root = added[0]["Hash"].as_str().unwrap();

    let (status, body) = call(&node.rpc("pin/ls"), &[("type", "recursive")]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Keys"][root]["Type"], "recursive", "{body}");
    for leaf in &leaves {
        let leaf = leaf["Hash"].as_str().unwrap();
        let (status, body) = call(&node.rpc("pin/ls"), &[("arg", leaf)]).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["Keys"][leaf]["Type"], "indirect", "{body}");
    }

    let (status, body) = call(&node.rpc("pin/rm"), &[("arg", root)]).await;
    assert_eq!(status, 200, "{body}");
    for leaf in &leaves {
        let leaf = leaf["Hash"].as_str().unwrap();
        let (status, _) = call(&node.rpc("pin/ls"), &[("arg", leaf)]).await;
        assert_ne!(
            status, 200,
            "{leaf} is still pinned after its root was unpinned"
        );
    }
    node.stop().await;
}

/// A crash of the node's machine between an add's writes and its flush can leave a block's
/// name on disk without its bytes (an empty file). Adding the same content again writes the
/// block again, so what is read back is the content, not the empty file a name check kept.
#[tokio::test(flavor = "multi_thread")]
async fn adding_again_repairs_a_block_a_crash_left_empty() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let added = add_files(
        &node,
        &[("hello.txt", b"hello\n".to_vec())],
        &[("cid-version", "1")],
    )
    .await;
    assert_eq!(added[0]["Hash"], HELLO_V1);
    let path = block_store::block_file(repo.path(), HELLO_V1);
    assert!(path.exists(), "{} holds the block", path.display());
    std::fs::File::create(&path).unwrap(); // emptied, as after the crash
    let (_, body) = cat(&node, HELLO_V1, &[]).await;
    assert!(body.is_empty(), "the damage is what it models");

    let again = add_files(
        &node,
        &[("hello.txt", b"hello\n".to_vec())],
        &[("cid-version", "1")],
    )
    .await;

    assert_eq!(again[0]["Hash"], HELLO_V1);
    let (status, body) = cat(&node, HELLO_V1, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"hello\n");
    node.stop().await;
}
