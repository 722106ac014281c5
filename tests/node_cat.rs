//! `cat` returns what was added, honours ranges across chunk boundaries, and fails fast and
//! Kubo-style when it cannot.

mod node_support;

use std::time::{Duration, Instant};

use node_support::*;

const CHUNK: usize = 262_144;

#[tokio::test(flavor = "multi_thread")]
async fn cat_returns_what_add_stored() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(3 * CHUNK + 12_345, 1);
    let cid = add_v1(&node, "f", content.clone()).await;

    for arg in [cid.clone(), format!("/ipfs/{cid}"), format!("/btfs/{cid}")] {
        let (status, body) = cat(&node, &arg, &[]).await;
        assert_eq!(status, 200, "{arg}");
        assert!(body == content, "{arg}: content differs");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn ranged_cat_reads_across_chunk_boundaries() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(3 * CHUNK + 100, 2);
    let cid = add_v1(&node, "f", content.clone()).await;

    let cases: &[(usize, Option<usize>)] = &[
        (CHUNK - 1, Some(2)),
        (CHUNK, Some(1)),
        (CHUNK - 10, Some(CHUNK + 20)),
        (0, Some(CHUNK)),
        (2 * CHUNK + 5, None),
        (3 * CHUNK + 90, Some(1000)),
        (0, Some(0)),
        (content.len(), Some(10)),
        (content.len() + 5, None),
    ];
    for &(offset, length) in cases {
        let offset_text = offset.to_string();
        let length_text = length.map(|l| l.to_string());
        let mut query = vec![("offset", offset_text.as_str())];
        if let Some(length) = &length_text {
            query.push(("length", length.as_str()));
        }
        let (status, body) = cat(&node, &cid, &query).await;

        let start = offset.min(content.len());
        let end = length.map_or(content.len(), |l| (offset + l).min(content.len()));
        assert_eq!(status, 200);
        assert!(
            body == content[start..end],
            "offset {offset} length {length:?}: got {} bytes, want {}",
            body.len(),
            end - start
        );
    }
    node.stop().await;
}

/// Several `arg`s, as Kubo takes them: the files one after another, `offset` and `length`
/// over that whole; a path that does not resolve fails the call before any byte is sent.
#[tokio::test(flavor = "multi_thread")]
async fn cat_of_several_paths_gives_them_in_order() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let files = [
        pseudo_random(CHUNK + 7, 3),
        b"small".to_vec(),
        pseudo_random(2 * CHUNK, 4),
    ];
    let mut cids = Vec::new();
    for (i, f) in files.iter().enumerate() {
        cids.push(add_v1(&node, &format!("f{i}"), f.clone()).await);
    }
    let all: Vec<u8> = [&files[2][..], &files[0], &files[1], &files[2]].concat();
    let order = [&cids[2], &cids[0], &cids[1], &cids[2]];
    for (offset, length) in [
        (0, None),
        (CHUNK + 100, Some(3 * CHUNK)),
        (3 * CHUNK + 3, Some(4)),
    ] {
        let (offset_text, length_text) = (offset.to_string(), length.map(|l: usize| l.to_string()));
        let mut query: Vec<(&str, &str)> = order.iter().map(|c| ("arg", c.as_str())).collect();
        query.push(("offset", &offset_text));
        if let Some(l) = &length_text {
            query.push(("length", l));
        }
        let response = client()
            .post(with_query(&node.rpc("cat"), &query))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body = response.bytes().await.unwrap();
        let end = length.map_or(all.len(), |l| (offset + l).min(all.len()));
        assert!(
            body[..] == all[offset..end],
            "offset {offset} length {length:?}: {} bytes, want {}",
            body.len(),
            end - offset
        );
    }
    let unknown = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
    let (status, body) = call(
        &node.rpc("cat"),
        &[("arg", cids[0].as_str()), ("arg", unknown)],
    )
    .await;
    assert_kubo_error(status, &body, 500, 0);
    node.stop().await;
}

/// A run of many paths (a mount reads a file's chunks as one `cat` of up to 32 of them): the
/// node opens several at once, and still gives them in the order asked, repeats included,
/// whatever order their loads end in; a missing one far down the list fails the call before
/// any byte is sent.
#[tokio::test(flavor = "multi_thread")]
async fn cat_of_many_paths_gives_them_in_order_however_their_loads_end() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    // Sizes far apart, so loads that run at once end in another order than they began.
    let files: Vec<Vec<u8>> = (0..24u64)
        .map(|i| {
            pseudo_random(
                if i % 3 == 0 {
                    CHUNK - 1
                } else {
                    1 + i as usize * 97
                },
                i + 10,
            )
        })
        .collect();
    let mut cids = Vec::new();
    for (i, f) in files.iter().enumerate() {
        cids.push(add_v1(&node, &format!("m{i}"), f.clone()).await);
    }
    for seed in 1..=5u64 {
        // 40 picks (some twice), in an order of the seed's.
        let mut state = seed * 0x9e37_79b9_7f4a_7c15;
        let order: Vec<usize> = (0..40)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % files.len() as u64) as usize
            })
            .collect();
        let query: Vec<(&str, &str)> = order.iter().map(|&i| ("arg", cids[i].as_str())).collect();
        let response = client()
            .post(with_query(&node.rpc("cat"), &query))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "seed {seed}");
        let body = response.bytes().await.unwrap();
        let want: Vec<u8> = order
            .iter()
            .flat_map(|&i| files[i].iter().copied())
            .collect();
        assert!(
            body == want,
            "seed {seed}: {} bytes, want {}",
            body.len(),
            want.len()
        );
        let unknown = "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";
        let mut query = query.clone();
        query.insert(30 + seed as usize, ("arg", unknown));
        let (status, body) = call(&node.rpc("cat"), &query).await;
        assert_kubo_error(status, &body, 500, 0);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cat_of_a_single_raw_block_honours_the_range() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let cid = add_v1(&node, "hello", b"hello\n".to_vec()).await;

    let (_, body) = cat(&node, &cid, &[("offset", "1"), ("length", "3")]).await;

    assert_eq!(body, b"ell");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_cid_fails_fast_with_a_kubo_error() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    // sha256("hello\n") as dag-pb: a valid CID this node never stored.
    let unknown = "bafybeicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am";

    let started = Instant::now();
    let (status, body) = call(&node.rpc("cat"), &[("arg", unknown)]).await;

    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    assert_kubo_error(status, &body, 500, 0);
    assert!(
        body["Message"].as_str().unwrap().contains("not found"),
        "{body}"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_malformed_arguments_are_bad_requests() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    for query in [
        vec![],
        vec![("arg", "not-a-cid")],
        vec![("arg", "/nope/x")],
        vec![
            (
                "arg",
                "bafkreicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am",
            ),
            ("offset", "-1"),
        ],
    ] {
        let (status, body) = call(&node.rpc("cat"), &query).await;
        assert_kubo_error(status, &body, 400, 1);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn get_on_an_rpc_path_is_method_not_allowed() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    for path in ["/api/v0/cat", "/api/v1/version", "/api/v0/add"] {
        let response = client()
            .get(format!("{}{path}", node.url))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        assert_kubo_error(status, &body, 405, 0);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn btfs_prefix_serves_the_same_api() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let cid = add_v1(&node, "hello", b"hello\n".to_vec()).await;

    let response = client()
        .post(with_query(
            &format!("{}/api/v1/cat", node.url),
            &[("arg", &cid)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"hello\n");

    let (status, version) = call(&format!("{}/api/v1/version", node.url), &[]).await;
    assert_eq!(status, 200);
    assert!(
        version["Version"]
            .as_str()
            .unwrap()
            .starts_with("pxfs-node/")
    );
    for field in ["Commit", "Repo", "System", "Golang"] {
        assert!(version[field].is_string(), "{field} in {version}");
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repo_stat_counts_stored_blocks() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    add_v1(&node, "f", pseudo_random(2 * CHUNK, 9)).await;

    let (status, stat) = call(&node.rpc("repo/stat"), &[]).await;

    assert_eq!(status, 200);
    // Two leaves and a root.
    assert_eq!(stat["NumObjects"], 3, "{stat}");
    assert!(
        stat["RepoSize"].as_u64().unwrap() >= 2 * CHUNK as u64,
        "{stat}"
    );
    assert!(stat["StorageMax"].as_u64().unwrap() > 0);
    assert_eq!(stat["RepoPath"], repo.path().display().to_string());
    assert!(stat["Version"].is_string());
    node.stop().await;
}
