//! Keys, IPNS/BTNS publish and resolve, and pins, including across a restart.

mod node_support;

use node_support::*;

#[tokio::test(flavor = "multi_thread")]
async fn key_gen_returns_a_base36_ipns_name_listed_with_self() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let (status, key) = call(
        &node.rpc("key/gen"),
        &[("arg", "token-1"), ("type", "ed25519")],
    )
    .await;
    assert_eq!(status, 200, "{key}");
    assert_eq!(key["Name"], "token-1");
    let id = key["Id"].as_str().unwrap();
    assert!(id.starts_with("k51"), "{id}");

    let (_, list) = call(&node.rpc("key/list"), &[]).await;
    let keys = list["Keys"].as_array().unwrap();
    assert_eq!(keys[0]["Name"], "self");
    assert!(
        keys.iter().any(|k| k["Name"] == "token-1" && k["Id"] == id),
        "{list}"
    );

    let (status, body) = call(&node.rpc("key/gen"), &[("arg", "token-1")]).await;
    assert_kubo_error(status, &body, 500, 0);
    let (status, body) = call(&node.rpc("key/gen"), &[]).await;
    assert_kubo_error(status, &body, 400, 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_twice_resolves_to_the_newer_value() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let first = add_v1(&node, "v1.json", br#"{"seq":1}"#.to_vec()).await;
    let second = add_v1(&node, "v2.json", br#"{"seq":2}"#.to_vec()).await;
    let (_, key) = call(&node.rpc("key/gen"), &[("arg", "doc")]).await;
    let name = key["Id"].as_str().unwrap().to_owned();

    let (status, published) = call(
        &node.rpc("name/publish"),
        &[
            ("arg", &format!("/ipfs/{first}")),
            ("key", "doc"),
            ("lifetime", "24h"),
            ("allow-offline", "true"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{published}");
    assert_eq!(published["Name"], name);
    assert_eq!(published["Value"], format!("/ipfs/{first}"));
    call(
        &node.rpc("name/publish"),
        &[("arg", &second), ("key", "doc")],
    )
    .await;

    for arg in [
        format!("/ipns/{name}"),
        format!("/btns/{name}"),
        name.clone(),
    ] {
        let (status, resolved) = call(&node.rpc("name/resolve"), &[("arg", &arg)]).await;
        assert_eq!(status, 200, "{arg}: {resolved}");
        assert_eq!(resolved["Path"], format!("/ipfs/{second}"), "{arg}");
    }
    let (_, doc) = cat(&node, &format!("/ipns/{name}"), &[]).await;
    assert_eq!(doc, br#"{"seq":2}"#);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn publishing_defaults_to_the_self_key() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let cid = add_v1(&node, "hello", b"hello\n".to_vec()).await;
    let (_, list) = call(&node.rpc("key/list"), &[]).await;

    let (_, published) = call(&node.rpc("name/publish"), &[("arg", &cid)]).await;

    assert_eq!(published["Name"], list["Keys"][0]["Id"]);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resolving_an_unknown_name_is_a_kubo_error() {
    let repo = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    // A key of another node: a valid name with no record here.
    let stranger = TestNode::start(other.path()).await;
    let (_, key) = call(&stranger.rpc("key/gen"), &[("arg", "elsewhere")]).await;
    stranger.stop().await;

    let (status, body) = call(
        &node.rpc("name/resolve"),
        &[("arg", &format!("/ipns/{}", key["Id"].as_str().unwrap()))],
    )
    .await;
    assert_kubo_error(status, &body, 500, 0);

    let (status, body) = call(&node.rpc("name/resolve"), &[("arg", "/ipns/not-a-name")]).await;
    assert_kubo_error(status, &body, 400, 1);

    let (status, body) = call(
        &node.rpc("name/publish"),
        &[
            (
                "arg",
                "/ipfs/QmZULkCELmmk5XNfCgTnCyFgAVxBRBXyDHGGMVoLFLiXEN",
            ),
            ("key", "nobody"),
        ],
    )
    .await;
    assert_kubo_error(status, &body, 500, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pin_rm_then_add_round_trips_and_unpinned_rm_fails() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let cid = add_v1(&node, "f", pseudo_random(600_000, 4)).await;

    let (status, removed) = call(&node.rpc("pin/rm"), &[("arg", &cid)]).await;
    assert_eq!(status, 200, "{removed}");
    assert_eq!(removed["Pins"][0], cid);

    let (status, body) = call(&node.rpc("pin/rm"), &[("arg", &cid)]).await;
    assert_kubo_error(status, &body, 500, 0);
    assert_eq!(body["Message"], "not pinned or pinned indirectly");

    let (status, added) = call(&node.rpc("pin/add"), &[("arg", &format!("/ipfs/{cid}"))]).await;
    assert_eq!(status, 200, "{added}");
    assert_eq!(added["Pins"][0], cid);
    let (_, listed) = call(&node.rpc("pin/ls"), &[("type", "recursive")]).await;
    assert_eq!(listed["Keys"][&cid]["Type"], "recursive", "{listed}");
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pinning_an_unknown_cid_fails_fast() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;

    let started = std::time::Instant::now();
    let (status, body) = call(
        &node.rpc("pin/add"),
        &[(
            "arg",
            "bafybeicysg23kiwv34eg2d7qweipxwosdo2py4ldv42nbauguluen5v6am",
        )],
    )
    .await;

    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert_kubo_error(status, &body, 500, 0);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn pins_keys_and_names_survive_a_restart() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let content = pseudo_random(700_000, 5);
    let cid = add_v1(&node, "f", content.clone()).await;
    let (_, key) = call(&node.rpc("key/gen"), &[("arg", "kept")]).await;
    let (_, before) = call(&node.rpc("key/list"), &[]).await;
    call(&node.rpc("name/publish"), &[("arg", &cid), ("key", "kept")]).await;
    node.stop().await;
    assert!(
        !repo.path().join("api").exists(),
        "api file removed on shutdown"
    );

    let node = TestNode::start(repo.path()).await;
    let (_, after) = call(&node.rpc("key/list"), &[]).await;
    assert_eq!(before, after, "same keys, self included");
    let (_, resolved) = call(
        &node.rpc("name/resolve"),
        &[("arg", key["Id"].as_str().unwrap())],
    )
    .await;
    assert_eq!(resolved["Path"], format!("/ipfs/{cid}"));
    let (_, listed) = call(&node.rpc("pin/ls"), &[("arg", &cid)]).await;
    assert_eq!(listed["Keys"][&cid]["Type"], "recursive", "{listed}");
    let (_, body) = cat(&node, &cid, &[]).await;
    assert!(body == content);

    // Publishing again after the restart replaces the stored record.
    let other = add_v1(&node, "g", b"newer".to_vec()).await;
    call(
        &node.rpc("name/publish"),
        &[("arg", &other), ("key", "kept")],
    )
    .await;
    let (_, resolved) = call(
        &node.rpc("name/resolve"),
        &[("arg", key["Id"].as_str().unwrap())],
    )
    .await;
    assert_eq!(resolved["Path"], format!("/ipfs/{other}"));
    node.stop().await;
}
