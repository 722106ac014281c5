//! `pxfs devnet up` end to end: a real anvil, a real `pxfs node`, the deployed contracts.

mod support;

use std::time::{Duration, Instant};

use support::{TestDevnet, children_of, pid_alive};

#[test]
fn devnet_up_mints_a_token_with_a_btns_name_whose_usage_document_is_empty() {
    let quota: u64 = 5 * 1024 * 1024;
    let mut devnet = TestDevnet::start(&["--quota", &quota.to_string()]);

    // The status command sees the minted token with its BTNS name and the chain's quota.
    let out = devnet.pxfs(&["status", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = status["tokens"].as_array().expect("tokens array");
    assert_eq!(tokens.len(), 1, "{status}");
    let token = &tokens[0];
    assert_eq!(token["token_id"].as_u64(), Some(devnet.token()));
    assert_eq!(token["quota"].as_u64(), Some(quota));
    assert_eq!(token["usage"].as_u64(), Some(0));
    assert_eq!(token["overdue"].as_bool(), Some(false));
    let btns = token["btns_key"].as_str().expect("btns key").to_string();
    assert_eq!(btns, devnet.info["btns_names"][0].as_str().unwrap());

    // Resolving the BTNS name on the node gives the initial usage document.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = pxfs::storage::NodeClient::from_url(&devnet.node_url(), "/api/v0");
    let (_cid, doc) = rt.block_on(pxfs::usage::resolve(&client, &btns)).unwrap();
    assert_eq!(doc.usage, 0);
    assert_eq!(doc.quota, quota);
    assert_eq!(doc.token_id, devnet.token());
    assert_eq!(doc.schema, "pxfs/usage/1");

    // SIGTERM stops the devnet and every child it started.
    let children = children_of(devnet.pid());
    assert!(
        children.len() >= 2,
        "anvil and the node run as children: {children:?}"
    );
    let status = devnet.stop();
    assert!(status.success(), "devnet exit status {status}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while children.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<_> = children.into_iter().filter(|&p| pid_alive(p)).collect();
    assert!(left.is_empty(), "children left behind: {left:?}");
}

#[test]
fn devnet_killed_with_sigkill_leaves_no_children_behind() {
    let devnet = TestDevnet::start(&[]);
    let children = children_of(devnet.pid());
    assert!(children.len() >= 2, "{children:?}");
    unsafe { libc::kill(devnet.pid() as i32, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(20);
    while children.iter().any(|&p| pid_alive(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left: Vec<_> = children.into_iter().filter(|&p| pid_alive(p)).collect();
    assert!(left.is_empty(), "children left behind: {left:?}");
    drop(devnet); // reaps the killed process and removes its directory
}
