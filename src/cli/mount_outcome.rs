//! How a mount daemon ended, as it records it in its status file before it exits
//! (`MountStatus::outcome`): everything committed, or what stays in the journal (files and
//! bytes not uploaded, tokens with changes not committed), where, and the last error.
//! `pxfs unmount` and `pxfs devnet up` read it instead of assuming success, and the
//! daemon's exit status follows it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Outcome {
    /// Everything closed was uploaded and every token's changes committed.
    pub committed: bool,
    /// Closed files not uploaded, and their bytes.
    pub files_left: u64,
    pub bytes_left: u64,
    /// Tokens whose changes were not committed (uploaded or not).
    pub tokens_uncommitted: Vec<u64>,
    /// The journal that keeps what stays, for the next mount with this cache.
    #[serde(with = "os_path")]
    pub journal: PathBuf,
    /// Why not everything was committed.
    pub error: Option<String>,
    pub finished_at: u64,
}

impl Outcome {
    /// One line for a user: what happened, and if anything stays, what, where and why.
    pub fn describe(&self) -> String {
        if self.committed {
            return "uploaded and committed".into();
        }
        let mut what = Vec::new();
        if self.files_left > 0 {
            what.push(format!(
                "{} file(s), {} byte(s) not uploaded",
                self.files_left, self.bytes_left
            ));
        }
        if !self.tokens_uncommitted.is_empty() {
            let ids: Vec<String> = self
                .tokens_uncommitted
                .iter()
                .map(|t| format!("#{t}"))
                .collect();
            what.push(format!("changes of sNFT {} not committed", ids.join(", ")));
        }
        if what.is_empty() {
            what.push("the final commit did not complete".into());
        }
        format!(
            "NOT committed: {}; they stay in the journal in {} and the next mount with this \
             cache directory uploads and commits them. Last error: {}",
            what.join("; "),
            self.journal.display(),
            self.error.as_deref().unwrap_or("none recorded")
        )
    }
}

/// A path in JSON: a string when it is UTF-8, else the array of its bytes (serde's own
/// form for paths refuses those, and a mount point may be any bytes).
pub mod os_path {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    use std::path::{Path, PathBuf};

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        match path.to_str() {
            Some(text) => s.serialize_str(text),
            None => s.collect_seq(path.as_os_str().as_bytes()),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Text(text) => PathBuf::from(text),
            Form::Bytes(bytes) => PathBuf::from(std::ffi::OsString::from_vec(bytes)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed() -> Outcome {
        Outcome {
            committed: false,
            files_left: 2,
            bytes_left: 3_000_000,
            tokens_uncommitted: vec![1],
            journal: "/var/cache/pxfs/journal".into(),
            error: Some("the node did not answer within 2 s".into()),
            finished_at: 1,
        }
    }

    #[test]
    fn a_failed_outcome_says_what_stays_where_and_why_and_never_committed() {
        let line = failed().describe();
        assert!(
            line.contains("2 file(s), 3000000 byte(s) not uploaded"),
            "{line}"
        );
        assert!(line.contains("sNFT #1 not committed"), "{line}");
        assert!(line.contains("/var/cache/pxfs/journal"), "{line}");
        assert!(line.contains("did not answer within 2 s"), "{line}");
        assert!(!line.to_lowercase().contains(" committed;") || line.starts_with("NOT"));
        assert!(!line.contains("uploaded and committed"), "{line}");
    }

    #[test]
    fn uploaded_but_not_committed_still_says_not_committed() {
        let o = Outcome {
            files_left: 0,
            bytes_left: 0,
            ..failed()
        };
        let line = o.describe();
        assert!(
            line.starts_with("NOT committed: changes of sNFT #1"),
            "{line}"
        );
    }
}
