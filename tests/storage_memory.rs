//! A 200 MiB file goes to a real `pxfs node` and comes back while the client process's peak
//! memory stays far below the file size: uploads are streamed from disk and downloads
//! streamed to the caller. The transfer runs in a child process (this test binary again) so
//! that its `VmHWM` measures the client alone.

#[allow(dead_code)]
mod storage_support;

use std::io::Read;
use std::process::Command;

use futures::StreamExt;
use storage_support::{NodeProcess, client_for, write_pattern_file};

const SIZE: usize = 200 << 20;
const URL_VAR: &str = "PXFS_MEMTEST_URL";
const FILE_VAR: &str = "PXFS_MEMTEST_FILE";

#[test]
fn a_200_mib_file_goes_up_and_comes_back_without_the_client_holding_it_in_memory() {
    let node = NodeProcess::start();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.bin");
    write_pattern_file(&file, SIZE, 42);

    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "transfer_in_child", "--ignored", "--nocapture"])
        .env(URL_VAR, &node.url)
        .env(FILE_VAR, &file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout
        .lines()
        .find_map(|l| l.strip_prefix("MEMTEST "))
        .unwrap_or_else(|| panic!("no report from the child:\n{stdout}"));
    let field = |name: &str| -> u64 {
        report
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .unwrap()
            .parse()
            .unwrap()
    };
    println!("{report}");
    assert_eq!(field("bytes"), SIZE as u64, "{report}");
    let peak_mib = field("vmhwm_kib") / 1024;
    assert!(
        peak_mib < 64,
        "client peaked at {peak_mib} MiB moving a 200 MiB file: {report}"
    );
}

/// The child's half: add the file, stream it back comparing with the file on disk, and
/// report the bytes compared and the peak resident memory.
#[tokio::test]
#[ignore = "run by a_200_mib_file_goes_up_and_comes_back_without_the_client_holding_it_in_memory"]
async fn transfer_in_child() {
    let url = std::env::var(URL_VAR).expect("started by the parent test");
    let path =
        std::path::PathBuf::from(std::env::var(FILE_VAR).expect("started by the parent test"));
    let client = client_for(&url, 60, 0);
    let added = client.add_path(&path).await.unwrap();

    let mut original = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let mut stream = Box::pin(client.cat_stream(&added.hash, 0, None).await.unwrap());
    let mut compared = 0u64;
    let mut expected = Vec::new();
    while let Some(piece) = stream.next().await {
        let piece = piece.unwrap();
        expected.resize(piece.len(), 0);
        original.read_exact(&mut expected).unwrap();
        assert!(
            piece[..] == expected[..],
            "content differs near byte {compared}"
        );
        compared += piece.len() as u64;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let vmhwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap();
    println!(
        "MEMTEST cid={} bytes={compared} vmhwm_kib={vmhwm}",
        added.hash
    );
}
