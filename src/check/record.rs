//! The outcome of the last `pxfs check` of each sNFT, kept in `CACHE/checks/<token>.json`
//! (0600) so that `pxfs status` shows it: scheduled checks (systemd/pxfs-check@.timer) run
//! unattended, and a damage they find must stay visible until a check finds the tree intact
//! again. A check that could not run does not hide damage found before.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Intact,
    Damaged,
    /// The check could not be done (node or chain unreachable, no key).
    NotChecked,
}

/// One check's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRecord {
    /// When it ended (Unix seconds).
    pub finished_at: u64,
    /// Every block was read and checked (`--read-data`), not only asked for.
    pub read_data: bool,
    pub outcome: Outcome,
    pub files: u64,
    pub damaged: u64,
    pub missing: u64,
    pub corrupt: u64,
    /// Why it could not check, or what it found, in one line.
    pub message: String,
}

/// What `pxfs status` shows: the last check, and the last damage found since the last
/// intact check (kept through checks that could not run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckHistory {
    pub last: Option<CheckRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<CheckRecord>,
}

fn path(cache_dir: &Path, token: u64) -> PathBuf {
    cache_dir.join("checks").join(format!("{token}.json"))
}

/// The record of `token`'s checks (empty when it was never checked here).
pub fn load(cache_dir: &Path, token: u64) -> CheckHistory {
    std::fs::read(path(cache_dir, token))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Add `record` to `token`'s history: an intact check clears the damage, a damaged one
/// replaces it, one that could not check keeps it.
pub fn save(cache_dir: &Path, token: u64, record: CheckRecord) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let mut history = load(cache_dir, token);
    match record.outcome {
        Outcome::Intact => history.damage = None,
        Outcome::Damaged => history.damage = Some(record.clone()),
        Outcome::NotChecked => {}
    }
    history.last = Some(record);
    let file = path(cache_dir, token);
    let dir = file.parent().expect("a file in a directory");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".{token}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec_pretty(&history).expect("a history serializes"))?;
    f.sync_all()?;
    std::fs::rename(&tmp, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: Outcome, at: u64) -> CheckRecord {
        CheckRecord {
            finished_at: at,
            read_data: false,
            outcome,
            files: 3,
            damaged: u64::from(outcome == Outcome::Damaged),
            missing: 0,
            corrupt: 0,
            message: String::new(),
        }
    }

    #[test]
    fn damage_stays_visible_until_a_check_finds_the_tree_intact() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path(), 7), CheckHistory::default());
        save(dir.path(), 7, record(Outcome::Damaged, 1)).unwrap();
        save(dir.path(), 7, record(Outcome::NotChecked, 2)).unwrap();
        let h = load(dir.path(), 7);
        assert_eq!(h.last.unwrap().finished_at, 2);
        assert_eq!(
            h.damage.unwrap().finished_at,
            1,
            "a failed check hides nothing"
        );
        save(dir.path(), 7, record(Outcome::Intact, 3)).unwrap();
        let h = load(dir.path(), 7);
        assert_eq!(h.damage, None);
        assert_eq!(h.last.unwrap().outcome, Outcome::Intact);
        assert_eq!(load(dir.path(), 8), CheckHistory::default(), "per sNFT");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path(dir.path(), 7))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
