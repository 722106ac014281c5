//! The GET gateway serves file content by CID and by name, with ranges.

mod node_support;

use node_support::*;

#[tokio::test(flavor = "multi_thread")]
async fn gateway_serves_content_by_cid_on_both_prefixes() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(400_000, 11);
    let cid = add_v1(&node, "f", content.clone()).await;

    for prefix in ["ipfs", "btfs"] {
        let response = client()
            .get(format!("{}/{prefix}/{cid}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-length"],
            content.len().to_string().as_str()
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/octet-stream"
        );
        assert!(response.bytes().await.unwrap() == content);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_serves_a_published_json_document_by_name() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let doc = br#"{"schema":"pxfs/usage/1","usage":6}"#.to_vec();
    let cid = add_v1(&node, "usage.json", doc.clone()).await;
    let (_, key) = call(&node.rpc("key/gen"), &[("arg", "token-7")]).await;
    let name = key["Id"].as_str().unwrap();
    call(
        &node.rpc("name/publish"),
        &[("arg", &cid), ("key", "token-7")],
    )
    .await;

    for prefix in ["ipns", "btns"] {
        let response = client()
            .get(format!("{}/{prefix}/{name}", node.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["usage"], 6);
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_answers_range_requests_with_partial_content() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(600_000, 12);
    let cid = add_v1(&node, "f", content.clone()).await;

    let response = client()
        .get(format!("{}/ipfs/{cid}", node.url))
        .header("Range", "bytes=262143-262144")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 206);
    assert_eq!(
        response.headers()["content-range"],
        "bytes 262143-262144/600000"
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        &content[262_143..262_145]
    );

    let response = client()
        .get(format!("{}/ipfs/{cid}", node.url))
        .header("Range", "bytes=700000-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_reports_missing_content_as_not_found() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let response = client()
        .get(format!(
            "{}/ipfs/bafybeicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am",
            node.url
        ))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 404);
    node.stop().await;
}
