use std::sync::Arc;
use std::time::Duration;

use super::*;

/// The value of the sample `line_start` (name and labels, exactly), if exposed.
fn sample(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start)?.strip_prefix(' '))
        .and_then(|v| v.split(' ').next()?.parse().ok())
}

#[test]
fn every_family_is_exposed_with_prometheus_names_and_help() {
    let text = encode();
    for family in [
        "pxfs_fuse_requests",
        "pxfs_fuse_request_duration_seconds",
        "pxfs_uploaded_bytes",
        "pxfs_uploaded_files",
        "pxfs_downloaded_bytes",
        "pxfs_downloaded_blocks",
        "pxfs_commits",
        "pxfs_commit_duration_seconds",
        "pxfs_node_requests",
        "pxfs_node_errors",
        "pxfs_node_retries",
        "pxfs_chain_requests",
        "pxfs_chain_errors",
        "pxfs_chunk_cache_hits",
        "pxfs_chunk_cache_misses",
        "pxfs_chunk_cache_drops",
        "pxfs_upload_queue_files",
        "pxfs_upload_queue_bytes",
        "pxfs_loaded_inodes",
        "pxfs_node_up",
        "pxfs_chain_up",
        "pxfs_chain_stale",
        "pxfs_token_quota_bytes",
        "pxfs_token_usage_bytes",
        "pxfs_token_sync_deadline_seconds",
        "pxfs_token_overdue",
        "pxfs_token_pending_files",
        "pxfs_token_pending_bytes",
        "pxfs_token_conflict_copies",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing:\n{text}"
        );
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family} has no help"
        );
    }
    assert!(text.ends_with("# EOF\n"), "{text}");
}

#[test]
fn counters_end_in_total_and_grow_by_what_was_counted() {
    let before = sample(&encode(), "pxfs_uploaded_bytes_total").unwrap_or(0.0);
    uploaded(4096);
    uploaded(100);
    let after = sample(&encode(), "pxfs_uploaded_bytes_total").unwrap();
    // Other tests of this process may count too: at least ours.
    assert!(after - before >= 4196.0, "{before} -> {after}");
    assert!(sample(&encode(), "pxfs_uploaded_files_total").unwrap() >= 2.0);
}

#[test]
fn a_fuse_request_is_counted_by_op_and_errno_name_with_its_latency() {
    fuse_request("mknod", libc::EDQUOT, Duration::from_millis(3));
    fuse_request("mknod", 0, Duration::from_micros(10));
    let text = encode();
    assert!(
        sample(
            &text,
            r#"pxfs_fuse_requests_total{op="mknod",errno="EDQUOT"}"#
        )
        .unwrap()
            >= 1.0,
        "{text}"
    );
    assert!(sample(&text, r#"pxfs_fuse_requests_total{op="mknod",errno="OK"}"#).unwrap() >= 1.0);
    assert!(
        sample(
            &text,
            r#"pxfs_fuse_request_duration_seconds_count{op="mknod"}"#
        )
        .unwrap()
            >= 2.0
    );
    // The 3 ms answer is above the 1 ms bucket, the 10 µs one in the first.
    let le = |b: &str| {
        let line = format!(r#"pxfs_fuse_request_duration_seconds_bucket{{le="{b}",op="mknod"}}"#);
        sample(&text, &line).unwrap_or_else(|| panic!("no {line} in\n{text}"))
    };
    assert!(le("0.0001") >= 1.0);
    assert!(le("0.005") >= le("0.001") + 1.0);
}

#[test]
fn an_errno_outside_the_known_set_is_labelled_other() {
    assert_eq!(errno::name(libc::EDQUOT), "EDQUOT");
    assert_eq!(errno::name(0), "OK");
    assert_eq!(errno::name(9999), "other");
}

#[test]
fn a_chain_call_passes_its_result_through_and_counts_failures() {
    let ok: Result<u32, String> = chain_call("test_call", Ok(7));
    assert_eq!(ok, Ok(7));
    let failed: Result<u32, String> = chain_call("test_call", Err("down".into()));
    assert_eq!(failed, Err("down".into()));
    let text = encode();
    assert_eq!(
        sample(&text, r#"pxfs_chain_requests_total{call="test_call"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, r#"pxfs_chain_errors_total{call="test_call"}"#),
        Some(1.0)
    );
}

#[test]
fn node_failures_count_as_errors_and_only_retried_ones_as_retries() {
    node_request("test/cmd");
    node_failed("test/cmd", true);
    node_failed("test/cmd", false);
    let text = encode();
    assert_eq!(
        sample(&text, r#"pxfs_node_requests_total{cmd="test/cmd"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"pxfs_node_errors_total{cmd="test/cmd"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, r#"pxfs_node_retries_total{cmd="test/cmd"}"#),
        Some(1.0)
    );
}

#[test]
fn the_status_gauges_show_the_last_sample_and_forget_an_snft_that_left() {
    let token = |id, quota| TokenSample {
        token_id: id,
        quota,
        usage: 1000,
        sync_deadline: 1_800_000_000,
        overdue: id == 8,
        pending_files: 2,
        pending_bytes: 300,
        conflicts: 1,
    };
    observe_mount(&MountSample {
        pending_files: 5,
        pending_bytes: 600,
        loaded_inodes: 42,
        node_reachable: true,
        chain_reachable: false,
        chain_stale: true,
        tokens: vec![token(7, 1 << 30), token(8, 2 << 30)],
    });
    let text = encode();
    assert_eq!(sample(&text, "pxfs_upload_queue_files"), Some(5.0));
    assert_eq!(sample(&text, "pxfs_upload_queue_bytes"), Some(600.0));
    assert_eq!(sample(&text, "pxfs_node_up"), Some(1.0));
    assert_eq!(sample(&text, "pxfs_chain_up"), Some(0.0));
    assert_eq!(sample(&text, "pxfs_chain_stale"), Some(1.0));
    assert_eq!(
        sample(&text, r#"pxfs_token_quota_bytes{token="8"}"#),
        Some(2147483648.0)
    );
    assert_eq!(
        sample(&text, r#"pxfs_token_sync_deadline_seconds{token="7"}"#),
        Some(1.8e9)
    );
    assert_eq!(sample(&text, r#"pxfs_token_overdue{token="8"}"#), Some(1.0));
    assert_eq!(sample(&text, r#"pxfs_token_overdue{token="7"}"#), Some(0.0));
    // sNFT 8 transferred away: its series leave with it.
    observe_mount(&MountSample {
        tokens: vec![token(7, 1 << 30)],
        ..MountSample::default()
    });
    let text = encode();
    assert_eq!(
        sample(&text, r#"pxfs_token_usage_bytes{token="7"}"#),
        Some(1000.0)
    );
    assert!(!text.contains(r#"token="8""#), "{text}");
}

#[tokio::test]
async fn the_endpoint_serves_the_registry_in_openmetrics_text_after_a_refresh() {
    let refreshed = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let seen = refreshed.clone();
    let server = serve(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(move || {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }),
    )
    .await
    .unwrap();
    let url = format!("http://{}/metrics", server.addr());
    let resp = reqwest::get(&url).await.unwrap();
    assert_eq!(resp.status(), 200);
    let kind = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
    let body = resp.text().await.unwrap();
    assert!(body.contains("# TYPE pxfs_fuse_requests counter"), "{body}");
    assert_eq!(refreshed.load(std::sync::atomic::Ordering::SeqCst), 1);
    let other = reqwest::get(format!("http://{}/", server.addr()))
        .await
        .unwrap();
    assert_eq!(other.status(), 404);
    drop(server);
}

#[test]
fn the_grafana_dashboard_asks_only_for_series_the_daemon_exposes() {
    let dashboard = include_str!("../../docs/grafana/pxfs.json");
    let text = encode();
    let mut names: Vec<&str> = dashboard
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("pxfs_"))
        .collect();
    names.sort();
    names.dedup();
    assert!(names.len() >= 20, "{names:?}");
    for name in names {
        let (family, kind) = match name.rsplit_once('_') {
            Some((f, "total")) => (f, Some("counter")),
            Some((f, "bucket" | "count" | "sum")) => (f, Some("histogram")),
            _ => (name, None),
        };
        let declared = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("# TYPE {family} ")));
        assert!(declared.is_some(), "{name}: no family {family}");
        if let Some(kind) = kind {
            assert_eq!(declared, Some(kind), "{name}");
        }
    }
}
