//! The committed contract artifacts are exactly what the pinned compilers produce from the
//! sources (`node contracts/compile.js --check`).

use std::path::Path;
use std::process::Command;

#[test]
fn committed_artifacts_match_a_fresh_compile() {
    let contracts = Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
    assert!(
        contracts.join("node_modules/solc").is_dir()
            && contracts.join("node_modules/solc-0.8.19").is_dir(),
        "contracts/node_modules is missing: run scripts/setup.sh"
    );
    let out = Command::new("node")
        .arg("compile.js")
        .arg("--check")
        .current_dir(&contracts)
        .output()
        .expect("node runs (run scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
