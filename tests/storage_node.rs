//! The storage client and the usage document against a real `pxfs node` process.

#[allow(dead_code)]
mod storage_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use pxfs::btns::{self, DocError, LastUpload, UsageDoc, UsageError};
use pxfs::storage::StorageError;
use storage_support::{NodeProcess, client_for, pattern, pattern_at, write_pattern_file};

/// The CID from the IPFS documentation's examples: valid, and not in a fresh repo.
const ABSENT_CID: &str = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi";

#[tokio::test]
async fn files_of_edge_sizes_come_back_byte_for_byte() {
    let node = NodeProcess::start();
    let client = node.client();
    let dir = tempfile::tempdir().unwrap();
    for (i, size) in [0, 1, 262_143, 262_145, 10 << 20].into_iter().enumerate() {
        let path = dir.path().join(format!("f{size}"));
        write_pattern_file(&path, size, i as u8);
        let added = client.add_path(&path).await.unwrap();
        assert_eq!(added.name, format!("f{size}"));
        // One block fits 256 KiB; with raw leaves a one-block file is itself a raw block.
        let expect_raw = size <= 262_144;
        assert_eq!(
            added.hash.starts_with("bafkrei"),
            expect_raw,
            "{size}: {}",
            added.hash
        );
        assert_eq!(
            added.hash.starts_with("bafybei"),
            !expect_raw,
            "{size}: {}",
            added.hash
        );

        let back = client.cat(&added.hash, 0, None).await.unwrap();
        assert_eq!(back.len(), size, "size {size}");
        assert!(
            back[..] == pattern_at(0, size, i as u8)[..],
            "content of {size}"
        );
    }
}

/// Exactly one full block (256 KiB): the importer emits the only chunk from `push`, so the
/// root is that chunk (rust-ipfs 0.16's own `add_unixfs` loses it; `pxfs node` does not).
#[tokio::test]
async fn a_file_of_exactly_one_block_comes_back_byte_for_byte() {
    let node = NodeProcess::start();
    let client = node.client();
    let data = pattern(262_144, 1);
    let added = client.add_bytes("block", data.clone()).await.unwrap();
    assert!(added.hash.starts_with("bafkrei"), "{}", added.hash);
    assert_eq!(client.cat(&added.hash, 0, None).await.unwrap(), data);
}

#[tokio::test]
async fn the_same_content_gets_the_same_cid_whichever_way_it_is_added() {
    let node = NodeProcess::start();
    let client = node.client();
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 9);
    let path = dir.path().join("x");
    std::fs::write(&path, &data).unwrap();
    let by_path = client.add_path(&path).await.unwrap();
    let by_bytes = client.add_bytes("x", data.clone()).await.unwrap();
    let in_batch = client
        .add_batch(vec![("x".into(), path.clone())])
        .await
        .unwrap();
    assert_eq!(by_path.hash, by_bytes.hash);
    assert_eq!(by_path.hash, in_batch[0].hash);
}

#[tokio::test]
async fn a_batch_add_gives_each_file_its_own_cid_in_input_order() {
    let node = NodeProcess::start();
    let client = node.client();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..20u8 {
        let path = dir.path().join(format!("small-{i}"));
        std::fs::write(&path, pattern(100 + usize::from(i) * 37, i)).unwrap();
        files.push((format!("small {i}.txt"), path));
    }
    let added = client.add_batch(files.clone()).await.unwrap();
    assert_eq!(added.len(), 20);
    for ((name, path), a) in files.iter().zip(&added) {
        assert_eq!(&a.name, name);
        let back = client.cat(&a.hash, 0, None).await.unwrap();
        assert_eq!(back, std::fs::read(path).unwrap(), "{name}");
    }
}

#[tokio::test]
async fn range_reads_at_block_and_chunk_boundaries_return_exactly_those_bytes() {
    let node = NodeProcess::start();
    let client = node.client();
    let size = 3 * (1 << 20) + 12_345;
    let data = pattern(size, 3);
    let cid = client.add_bytes("r", data.clone()).await.unwrap().hash;
    let block = 262_144;
    let mib = 1 << 20;
    let cases: [(usize, Option<usize>); 9] = [
        (0, Some(1)),
        (block - 1, Some(2)),
        (block, Some(block)),
        (mib - 3, Some(6)),
        (mib, Some(mib)),
        (2 * mib - 1, Some(mib + 2)),
        (size - 1, None),
        (size - 10, Some(100)), // past the end: short
        (5, None),
    ];
    for (offset, length) in cases {
        let got = client
            .cat(&cid, offset as u64, length.map(|l| l as u64))
            .await
            .unwrap();
        let end = length.map_or(size, |l| (offset + l).min(size));
        assert!(
            got[..] == data[offset..end],
            "offset {offset} length {length:?}"
        );
    }
}

#[tokio::test]
async fn a_streamed_cat_delivers_the_whole_file() {
    let node = NodeProcess::start();
    let client = node.client();
    let data = pattern(5 << 20, 4);
    let cid = client.add_bytes("s", data.clone()).await.unwrap().hash;
    let mut stream = Box::pin(client.cat_stream(&cid, 1000, None).await.unwrap());
    let mut got = Vec::new();
    while let Some(piece) = stream.next().await {
        got.extend_from_slice(&piece.unwrap());
    }
    assert!(got[..] == data[1000..]);
}

#[tokio::test]
async fn an_unknown_cid_is_the_nodes_definite_error() {
    let node = NodeProcess::start();
    let client = node.client();
    let started = Instant::now();
    let err = client.cat(ABSENT_CID, 0, None).await.unwrap_err();
    assert!(!err.is_transient(), "{err:?}");
    assert!(matches!(err, StorageError::Node { .. }), "{err:?}");
    assert!(err.to_string().contains("/api/v0/cat"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );

    let err = client.cat("not-a-cid", 0, None).await.unwrap_err();
    assert!(err.node_message().is_some(), "{err:?}");
}

#[tokio::test]
async fn with_the_node_down_calls_fail_clearly_after_the_retries() {
    let mut node = NodeProcess::start();
    let client = client_for(&node.url, 2, 2);
    client.version().await.unwrap();
    node.kill();
    let started = Instant::now();
    let err = client.version().await.unwrap_err();
    assert!(matches!(err, StorageError::Unreachable { .. }), "{err:?}");
    assert!(err.is_transient());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn pins_can_be_added_and_removed_twice() {
    let node = NodeProcess::start();
    let client = node.client();
    let cid = client
        .add_bytes("p", Bytes::from_static(b"pinned"))
        .await
        .unwrap()
        .hash;
    client.pin_add(&cid).await.unwrap();
    client.pin_rm(&cid).await.unwrap();
    client.pin_rm(&cid).await.unwrap();
}

#[tokio::test]
async fn version_and_repo_stat_answer() {
    let node = NodeProcess::start();
    let client = node.client();
    assert!(!client.version().await.unwrap().version.is_empty());
    client
        .add_bytes("r", Bytes::from(vec![1u8; 100_000]))
        .await
        .unwrap();
    assert!(client.repo_stat().await.unwrap().repo_size > 0);
}

#[tokio::test]
async fn a_published_name_resolves_and_the_second_publish_wins() {
    let node = NodeProcess::start();
    let client = node.client();
    let key_name = btns::new_key_name();
    let key = client.key_gen(&key_name).await.unwrap();
    assert_eq!(key.name, key_name);
    let listed = client.key_list().await.unwrap();
    assert!(listed.iter().any(|k| k.name == key_name && k.id == key.id));

    let first = client
        .add_bytes("1", Bytes::from_static(b"first"))
        .await
        .unwrap();
    let second = client
        .add_bytes("2", Bytes::from_static(b"second"))
        .await
        .unwrap();
    let published = client
        .name_publish(&key_name, &first.hash, None)
        .await
        .unwrap();
    assert!(
        published.value.ends_with(&first.hash),
        "{}",
        published.value
    );
    assert_eq!(client.name_resolve(&key.id).await.unwrap(), first.hash);

    client
        .name_publish(&key_name, &second.hash, Some("1h"))
        .await
        .unwrap();
    assert_eq!(client.name_resolve(&key.id).await.unwrap(), second.hash);
}

fn sample_doc(seq: u64, prev: Option<String>) -> UsageDoc {
    UsageDoc {
        schema: btns::SCHEMA.into(),
        chain_id: 31337,
        contract: "0x5FbDB2315678afecb367f032d93F642f64180aa3".into(),
        token_id: 7,
        quota: 1 << 30,
        usage: 4096,
        files: 2,
        root: "bafyreiroot".into(),
        last_upload: Some(LastUpload {
            path: "/docs/a.txt".into(),
            cid: "bafkreifile".into(),
            size: 4000,
        }),
        seq,
        updated_at: 1_763_800_000,
        prev,
    }
}

#[tokio::test]
async fn a_usage_document_published_under_a_key_resolves_to_the_same_document() {
    let node = NodeProcess::start();
    let client = node.client();
    let key_name = btns::new_key_name();
    let btns = client.key_gen(&key_name).await.unwrap().id;
    assert_eq!(
        btns::key_name_for(&client, &btns).await.unwrap().as_deref(),
        Some(key_name.as_str())
    );

    let first = sample_doc(1, None);
    let first = btns::publish(&client, &key_name, &first, None)
        .await
        .unwrap();
    // This node checks publications: the second names the first, and holds at once.
    assert!(first.checked);
    let first_cid = first.cid;
    let second = sample_doc(2, Some(first_cid.clone()));
    let second_cid = btns::publish(&client, &key_name, &second, Some(&first_cid))
        .await
        .unwrap()
        .cid;

    let (cid, doc) = btns::resolve(&client, &btns).await.unwrap();
    assert_eq!(cid, second_cid);
    assert_eq!(doc, pxfs::btns::AnyUsageDoc::V1(second));
    assert_eq!(doc.prev(), Some(first_cid.as_str()));
}

#[tokio::test]
async fn a_btns_name_this_node_has_no_key_for_has_no_key_name() {
    let node = NodeProcess::start();
    let client = node.client();
    let other = NodeProcess::start();
    let foreign = other.client().key_gen("elsewhere").await.unwrap().id;
    assert_eq!(btns::key_name_for(&client, &foreign).await.unwrap(), None);
}

#[tokio::test]
async fn a_name_pointing_at_something_else_is_a_clear_usage_error() {
    let node = NodeProcess::start();
    let client = node.client();
    let key_name = btns::new_key_name();
    let btns = client.key_gen(&key_name).await.unwrap().id;

    let manifest = client
        .add_bytes(
            "m",
            Bytes::from_static(br#"{"schema":"pxfs/dir/1","entries":[]}"#),
        )
        .await
        .unwrap();
    client
        .name_publish(&key_name, &manifest.hash, None)
        .await
        .unwrap();
    let err = btns::resolve(&client, &btns).await.unwrap_err();
    assert!(
        matches!(err, UsageError::Document(DocError::ForeignSchema { .. })),
        "{err:?}"
    );

    let garbage = client
        .add_bytes("g", Bytes::from_static(b"\x00\x01 not json"))
        .await
        .unwrap();
    client
        .name_publish(&key_name, &garbage.hash, None)
        .await
        .unwrap();
    let err = btns::resolve(&client, &btns).await.unwrap_err();
    assert!(
        matches!(err, UsageError::Document(DocError::Malformed(_))),
        "{err:?}"
    );
}

#[tokio::test]
async fn resolving_a_name_never_published_is_the_nodes_error() {
    let node = NodeProcess::start();
    let client = node.client();
    let btns = client.key_gen("unpublished").await.unwrap().id;
    let err = btns::resolve(&client, &btns).await.unwrap_err();
    match err {
        UsageError::Storage(e) => assert!(!e.is_transient(), "{e:?}"),
        other => panic!("expected the node's error, got {other:?}"),
    }
}

#[tokio::test]
async fn content_streamed_as_it_is_written_gets_the_cid_of_the_whole_file() {
    let node = NodeProcess::start();
    let client = node.client();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("whole");
    write_pattern_file(&path, (5 << 20) + 12_345, 9);
    let whole = client.add_path(&path).await.unwrap();
    let data = Bytes::from(std::fs::read(&path).unwrap());
    // Arrives in uneven pieces, with pauses, like a writer's output; no length up front.
    let open = move || {
        let data = data.clone();
        let pieces: Vec<Bytes> = (0..data.len())
            .step_by(777_777)
            .map(|at| data.slice(at..(at + 777_777).min(data.len())))
            .collect();
        futures::stream::iter(pieces)
            .then(|piece| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(piece)
            })
            .boxed()
    };
    let streamed = client.add_stream("streamed", &open).await.unwrap();
    assert_eq!(streamed.hash, whole.hash);

    // A source that fails mid-way fails the add as a local error, not as the node's.
    let failing = || {
        futures::stream::iter([
            Ok(Bytes::from_static(b"some")),
            Err(std::io::Error::other("rewritten")),
        ])
        .boxed()
    };
    let err = client.add_stream("broken", &failing).await.unwrap_err();
    assert!(!err.is_transient(), "{err}");
    assert!(matches!(err, StorageError::Io { .. }), "{err}");
}
