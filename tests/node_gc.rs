//! Garbage collection on `pxfs node`: `repo/gc` deletes exactly the blocks no pin keeps and
//! answers as Kubo does, never races a running add, and `--enable-gc` collects by itself
//! past `Datastore.StorageGCWatermark` of `Datastore.StorageMax` (`REPO/config`).

mod node_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use node_support::*;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const CHUNK: usize = 262_144;

/// The node's block files as (name, size): what is on its disk.
fn block_files(repo: &Path) -> BTreeMap<String, u64> {
    let mut files = BTreeMap::new();
    for shard in std::fs::read_dir(repo.join("blockstore")).unwrap() {
        let shard = shard.unwrap().path();
        if !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "data") {
                let name = path.file_stem().unwrap().to_str().unwrap().to_owned();
                files.insert(name, std::fs::metadata(&path).unwrap().len());
            }
        }
    }
    files
}

/// The blocks an action added to the node's disk.
fn new_blocks(before: &BTreeMap<String, u64>, repo: &Path) -> BTreeMap<String, u64> {
    block_files(repo)
        .into_iter()
        .filter(|(name, _)| !before.contains_key(name))
        .collect()
}

/// `repo/stat` as (RepoSize, NumObjects, StorageMax).
async fn repo_stat(node: &TestNode) -> (u64, u64, u64) {
    let (status, body) = call(&node.rpc("repo/stat"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let field = |name: &str| {
        body[name]
            .as_u64()
            .unwrap_or_else(|| panic!("{name} in {body}"))
    };
    (field("RepoSize"), field("NumObjects"), field("StorageMax"))
}

/// Calls `repo/gc` and returns its answer's lines.
async fn repo_gc(node: &TestNode, query: &[(&str, &str)]) -> Vec<Value> {
    let response = client()
        .post(with_query(&node.rpc("repo/gc"), query))
        .send()
        .await
        .expect("repo/gc request");
    assert_eq!(response.status(), 200, "repo/gc succeeds");
    let text = response.text().await.expect("repo/gc body");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

/// The CIDs a `repo/gc` answer says it removed.
fn removed(lines: &[Value]) -> BTreeSet<String> {
    lines
        .iter()
        .map(|line| {
            assert!(line.get("Error").is_none(), "gc failure: {line}");
            line["Key"]["/"].as_str().expect("Key./").to_owned()
        })
        .collect()
}

async fn block_exists(node: &TestNode, cid: &str) -> bool {
    let (status, _) = call(&node.rpc("block/stat"), &[("arg", cid)]).await;
    status == 200
}

async fn add_one(node: &TestNode, bytes: Vec<u8>, query: &[(&str, &str)]) -> String {
    let added = add_files(node, &[("f", bytes)], query).await;
    added[0]["Hash"].as_str().expect("Hash").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn gc_deletes_every_block_no_pin_keeps_and_keeps_every_pinned_one() {
    let repo = tempfile::tempdir().unwrap();
    let node = TestNode::start(repo.path()).await;
    let v1 = [("cid-version", "1")];
    let unpinned = [("cid-version", "1"), ("pin", "false")];

    // Pinned by add: a 5-block CIDv1 DAG and a 4-block CIDv0 DAG (whose blocks are stored
    // under their CIDv1 names).
    let mut kept = block_files(repo.path());
    let a = pseudo_random(4 * CHUNK + 100, 1);
    let a_cid = add_one(&node, a.clone(), &v1).await;
    let a0 = pseudo_random(3 * CHUNK + 7, 3);
    let a0_cid = add_one(&node, a0.clone(), &[]).await;
    // Pinned recursively by pin/add after an unpinned add (the DAG walk's pin).
    let c = pseudo_random(2 * CHUNK + 1, 5);
    let c_cid = add_one(&node, c.clone(), &unpinned).await;
    let (status, body) = call(&node.rpc("pin/add"), &[("arg", &c_cid)]).await;
    assert_eq!(status, 200, "{body}");
    kept.extend(new_blocks(&kept, repo.path()));
    assert!(kept.len() >= 5 + 4 + 3, "three DAGs on disk: {kept:?}");

    // Unpinned: B; and E, whose root alone is pinned directly (its leaves are not kept).
    let b = pseudo_random(3 * CHUNK, 7);
    let b_cid = add_one(&node, b, &unpinned).await;
    let e = pseudo_random(2 * CHUNK + 5, 9);
    let e_cid = add_one(&node, e, &unpinned).await;
    let (status, body) = call(
        &node.rpc("pin/add"),
        &[("arg", &e_cid), ("recursive", "false")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut garbage = new_blocks(&kept, repo.path());
    assert!(garbage.remove(&e_cid).is_some(), "E's root is on disk");
    kept.insert(e_cid.clone(), 0);
    assert!(garbage.contains_key(&b_cid));
    assert_eq!(garbage.len(), 4 + 3, "B: 3 leaves and a root; E: 3 leaves");

    let (size_before, objects_before, _) = repo_stat(&node).await;
    let answer = repo_gc(&node, &[]).await;

    assert_eq!(
        removed(&answer),
        garbage.keys().cloned().collect::<BTreeSet<_>>(),
        "repo/gc removes exactly the unpinned blocks and names each"
    );
    for cid in garbage.keys() {
        assert!(!block_exists(&node, cid).await, "{cid} was collected");
    }
    for cid in kept.keys() {
        assert!(block_exists(&node, cid).await, "pinned block {cid} is kept");
    }
    for (cid, bytes) in [(&a_cid, &a), (&a0_cid, &a0), (&c_cid, &c)] {
        let (status, body) = cat(&node, cid, &[]).await;
        assert_eq!(status, 200);
        assert!(body == *bytes, "{cid} reads back whole after gc");
    }
    let (size_after, objects_after, _) = repo_stat(&node).await;
    assert_eq!(size_after, size_before - garbage.values().sum::<u64>());
    assert_eq!(objects_after, objects_before - garbage.len() as u64);

    // Nothing left to collect: a second pass removes nothing.
    assert!(
        repo_gc(&node, &[("stream-errors", "true")])
            .await
            .is_empty()
    );
    node.stop().await;
}

/// Adds (pinned and not) run while `repo/gc` is called over and over: every pinned file an
/// add answered for reads back whole, and the unpinned ones are collected.
#[tokio::test(flavor = "multi_thread")]
async fn gc_running_alongside_adds_never_takes_what_an_add_returned() {
    let repo = tempfile::tempdir().unwrap();
    let node = std::sync::Arc::new(TestNode::start(repo.path()).await);
    let seed = 0x06c0_ffee;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let adder = {
        let (node, done) = (node.clone(), done.clone());
        tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut pinned = Vec::new();
            let mut unpinned = 0;
            for i in 0..40u64 {
                let len = rng.random_range(1..4 * CHUNK);
                let bytes = pseudo_random(len, seed + 2 * i);
                let version = if rng.random_bool(0.5) { "1" } else { "0" };
                let pin = rng.random_bool(0.7);
                let query = [
                    ("cid-version", version),
                    ("pin", if pin { "true" } else { "false" }),
                ];
                let cid = add_one(&node, bytes.clone(), &query).await;
                if pin {
                    pinned.push((cid, bytes));
                } else {
                    unpinned += 1;
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            (pinned, unpinned)
        })
    };
    let collector = {
        let (node, done) = (node.clone(), done.clone());
        tokio::spawn(async move {
            let (mut rounds, mut removed_blocks) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                removed_blocks += removed(&repo_gc(&node, &[]).await).len();
                rounds += 1;
            }
            (rounds, removed_blocks)
        })
    };
    let (pinned, unpinned) = adder.await.unwrap();
    let (rounds, _) = collector.await.unwrap();
    assert!(rounds >= 5, "gc ran {rounds} times while the adds ran");
    assert!(unpinned > 0 && !pinned.is_empty());

    for (cid, bytes) in &pinned {
        let (status, body) = cat(&node, cid, &[]).await;
        assert_eq!(status, 200, "{cid} is readable after the gc rounds");
        assert!(body == *bytes, "{cid} reads back whole");
    }
    // The unpinned adds leave nothing once the adds are over.
    repo_gc(&node, &[]).await;
    let (_, objects, _) = repo_stat(&node).await;
    let (status, body) = call(&node.rpc("pin/ls"), &[]).await;
    assert_eq!(status, 200);
    let pins = body["Keys"].as_object().unwrap().len() as u64;
    assert_eq!(objects, pins, "only pinned blocks remain");
    std::sync::Arc::into_inner(node).unwrap().stop().await;
}

fn write_config(repo: &Path, datastore: &str) {
    std::fs::create_dir_all(repo).unwrap();
    std::fs::write(
        repo.join("config"),
        format!(r#"{{"Identity":{{}},"Datastore":{datastore}}}"#),
    )
    .unwrap();
}

/// Polls `repo/stat` until RepoSize is at most `limit`; returns it, or panics after 20 s.
async fn wait_for_size_at_most(node: &TestNode, limit: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (size, _, _) = repo_stat(node).await;
        if size <= limit {
            return size;
        }
        assert!(
            Instant::now() < deadline,
            "repo still holds {size} bytes (limit {limit}) without a collection"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Blocks unpinned by `pin/rm` (no add follows) are collected by the periodic check alone.
#[tokio::test(flavor = "multi_thread")]
async fn enable_gc_collects_on_its_period_past_the_watermark() {
    let repo = tempfile::tempdir().unwrap();
    write_config(
        repo.path(),
        r#"{"StorageMax":"1MB","StorageGCWatermark":50,"GCPeriod":"1s"}"#,
    );
    let node = TestNode::start_with(repo.path(), true).await;
    let (_, _, storage_max) = repo_stat(&node).await;
    assert_eq!(storage_max, 1_000_000, "StorageMax comes from REPO/config");

    let small = add_one(&node, b"kept".to_vec(), &[("cid-version", "1")]).await;
    let big = add_one(&node, pseudo_random(2 << 20, 9), &[("cid-version", "1")]).await;
    // Pinned, so a collection frees nothing yet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (size, _, _) = repo_stat(&node).await;
    assert!(size > 2 << 20, "pinned blocks stay: {size}");

    let (status, body) = call(&node.rpc("pin/rm"), &[("arg", &big)]).await;
    assert_eq!(status, 200, "{body}");
    let size = wait_for_size_at_most(&node, 500_000).await;
    assert_eq!(size, 4, "only the pinned 4-byte block is left");
    assert!(block_exists(&node, &small).await);
    assert!(!block_exists(&node, &big).await);
    node.stop().await;
}

/// With the periodic check off (`GCPeriod` 0), an add that passes the watermark wakes the
/// collector, which deletes what that add left unpinned.
#[tokio::test(flavor = "multi_thread")]
async fn enable_gc_collects_after_an_add_passes_the_watermark() {
    let repo = tempfile::tempdir().unwrap();
    write_config(
        repo.path(),
        r#"{"StorageMax":"1MB","StorageGCWatermark":90,"GCPeriod":"0"}"#,
    );
    let node = TestNode::start_with(repo.path(), true).await;
    let kept = add_one(&node, pseudo_random(300_000, 1), &[("cid-version", "1")]).await;
    let (size, _, _) = repo_stat(&node).await;
    assert!(size < 900_000);

    add_one(
        &node,
        pseudo_random(2 << 20, 2),
        &[("cid-version", "1"), ("pin", "false")],
    )
    .await;
    wait_for_size_at_most(&node, size).await;
    let (status, body) = cat(&node, &kept, &[]).await;
    assert_eq!(status, 200);
    assert!(body == pseudo_random(300_000, 1));
    node.stop().await;
}

/// When pinned blocks alone pass the watermark, the adds after that collection do not each
/// walk the store again: the collector waits until they have written a tenth of
/// `StorageMax` more (what is unpinned meanwhile stays that long), or until a pin is
/// removed.
#[tokio::test(flavor = "multi_thread")]
async fn pinned_blocks_past_the_watermark_do_not_make_every_add_collect() {
    let repo = tempfile::tempdir().unwrap();
    write_config(
        repo.path(),
        r#"{"StorageMax":"1MB","StorageGCWatermark":50,"GCPeriod":"0"}"#,
    );
    let node = TestNode::start_with(repo.path(), true).await;
    // Pinned, past the watermark: a collection runs and cannot get under it.
    let pinned = add_one(&node, pseudo_random(600_000, 4), &[("cid-version", "1")]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (after_pinned, _, _) = repo_stat(&node).await;

    // 30 KB unpinned, well within a tenth of StorageMax: no collection for it.
    let small = add_one(
        &node,
        pseudo_random(30_000, 5),
        &[("cid-version", "1"), ("pin", "false")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        block_exists(&node, &small).await,
        "an add just past a collection that could not help walks the store again"
    );

    // 200 KB more: past the margin, a collection takes both.
    let big = add_one(
        &node,
        pseudo_random(200_000, 6),
        &[("cid-version", "1"), ("pin", "false")],
    )
    .await;
    wait_for_size_at_most(&node, after_pinned).await;
    assert!(!block_exists(&node, &small).await);
    assert!(!block_exists(&node, &big).await);

    // A pin removed: the next add past the watermark collects at once.
    let (status, body) = call(&node.rpc("pin/rm"), &[("arg", &pinned)]).await;
    assert_eq!(status, 200, "{body}");
    let kept = add_one(&node, pseudo_random(20_000, 7), &[("cid-version", "1")]).await;
    wait_for_size_at_most(&node, 100_000).await;
    assert!(block_exists(&node, &kept).await);
    assert!(!block_exists(&node, &pinned).await);
    node.stop().await;
}

/// Without `--enable-gc` nothing is collected however full the repo is.
#[tokio::test(flavor = "multi_thread")]
async fn without_enable_gc_unpinned_blocks_stay_until_repo_gc() {
    let repo = tempfile::tempdir().unwrap();
    write_config(repo.path(), r#"{"StorageMax":"1MB","GCPeriod":"100ms"}"#);
    let node = TestNode::start(repo.path()).await;
    add_one(
        &node,
        pseudo_random(2 << 20, 3),
        &[("cid-version", "1"), ("pin", "false")],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (size, _, _) = repo_stat(&node).await;
    assert!(size >= 2 << 20, "{size}");
    assert_eq!(removed(&repo_gc(&node, &[]).await).len(), 9);
    node.stop().await;
}
