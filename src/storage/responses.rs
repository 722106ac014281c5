//! Response bodies of the RPC subset, with Kubo's field names. BTFS answers with the same
//! shapes. Numbers that Kubo sends as strings (`Size` of `add`) are accepted either way.

use serde::{Deserialize, Deserializer, Serialize};

/// One added file: `{"Name","Hash","Size"}`. `size` is the size of the DAG (for a raw-leaf
/// single-block file, the content size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    #[serde(rename = "Name", default)]
    pub name: String,
    #[serde(rename = "Hash")]
    pub hash: String,
    #[serde(
        rename = "Size",
        default,
        deserialize_with = "u64_from_string_or_number"
    )]
    pub size: u64,
}

/// A named key on the node: `{"Name","Id"}`. `id` is the IPNS/BTNS name (k51… on Kubo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Id")]
    pub id: String,
}

/// Result of `name/publish`: `{"Name","Value"}`, `value` being the published path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Value")]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "Commit", default)]
    pub commit: String,
    #[serde(rename = "Repo", default)]
    pub repo: String,
    #[serde(rename = "System", default)]
    pub system: String,
    #[serde(rename = "Golang", default)]
    pub golang: String,
}

/// `repo/stat`. Kubo's documentation nests `RepoSize`/`StorageMax` in `SizeStat` while Go
/// flattens the embedded struct on the wire; both are accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RepoStatWire")]
pub struct RepoStat {
    #[serde(rename = "RepoSize")]
    pub repo_size: u64,
    #[serde(rename = "StorageMax")]
    pub storage_max: u64,
    #[serde(rename = "NumObjects")]
    pub num_objects: u64,
    #[serde(rename = "RepoPath")]
    pub repo_path: String,
    #[serde(rename = "Version")]
    pub version: String,
}

#[derive(Deserialize)]
struct RepoStatWire {
    #[serde(rename = "RepoSize")]
    repo_size: Option<Num>,
    #[serde(rename = "StorageMax")]
    storage_max: Option<Num>,
    #[serde(rename = "SizeStat")]
    size_stat: Option<SizeStat>,
    #[serde(rename = "NumObjects")]
    num_objects: Option<Num>,
    #[serde(rename = "RepoPath", default)]
    repo_path: String,
    #[serde(rename = "Version", default)]
    version: String,
}

#[derive(Deserialize)]
struct SizeStat {
    #[serde(rename = "RepoSize")]
    repo_size: Option<Num>,
    #[serde(rename = "StorageMax")]
    storage_max: Option<Num>,
}

impl From<RepoStatWire> for RepoStat {
    fn from(w: RepoStatWire) -> RepoStat {
        let (nested_size, nested_max) = match w.size_stat {
            Some(s) => (s.repo_size, s.storage_max),
            None => (None, None),
        };
        let value = |n: Option<Num>| n.map_or(0, Num::value);
        RepoStat {
            repo_size: value(w.repo_size.or(nested_size)),
            storage_max: value(w.storage_max.or(nested_max)),
            num_objects: value(w.num_objects),
            repo_path: w.repo_path,
            version: w.version,
        }
    }
}

/// A count Kubo may send as a number or as a decimal string.
#[derive(Deserialize)]
#[serde(untagged)]
enum Num {
    N(u64),
    S(String),
}

impl Num {
    /// Unparseable strings count as 0: these are statistics, not data.
    fn value(self) -> u64 {
        match self {
            Num::N(n) => n,
            Num::S(s) => s.trim().parse().unwrap_or(0),
        }
    }
}

/// `key/list`: `{"Keys":[{"Name","Id"}]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct KeyList {
    #[serde(rename = "Keys", default)]
    pub keys: Vec<KeyInfo>,
}

/// `name/resolve`: `{"Path":"/ipfs/bafy…"}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Resolved {
    #[serde(rename = "Path")]
    pub path: String,
}

/// `pin/add` and `pin/rm`: `{"Pins":[…]}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Pins {
    #[serde(rename = "Pins", default)]
    pub pins: Vec<String>,
}

/// A Kubo error body: `{"Message","Code","Type":"error"}`. Only a body of exactly this
/// shape counts as the node's definite answer.
#[derive(Debug, Deserialize)]
pub(crate) struct KuboError {
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "Type")]
    pub kind: String,
}

impl KuboError {
    pub fn parse(body: &[u8]) -> Option<KuboError> {
        serde_json::from_slice::<KuboError>(body)
            .ok()
            .filter(|e| e.kind == "error")
    }
}

/// Why an `add` answer could not be read.
pub(crate) enum AddAnswerError {
    /// The node reported an error in the middle of the stream (after its 200 header).
    Node(String),
    /// Not the expected JSON.
    Malformed(String),
}

/// Parses the newline-delimited JSON objects `add` answers with (one per file, plus
/// directory entries and progress objects when those are asked for). Progress objects
/// (`{"Name","Bytes"}` without a `Hash`) are skipped; an error object ends the parse.
pub(crate) fn parse_added_lines(body: &[u8]) -> Result<Vec<Added>, AddAnswerError> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(rename = "Hash")]
        hash: Option<String>,
    }
    let malformed = |e: serde_json::Error| AddAnswerError::Malformed(e.to_string());
    let mut out = Vec::new();
    for line in body.split(|&b| b == b'\n') {
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if let Some(error) = KuboError::parse(line) {
            return Err(AddAnswerError::Node(error.message));
        }
        let probe: Line = serde_json::from_slice(line).map_err(malformed)?;
        if probe.hash.is_none() {
            continue;
        }
        let mut added = serde_json::from_slice::<Added>(line).map_err(malformed)?;
        added.hash = super::cid::canonical(&added.hash).map_err(AddAnswerError::Malformed)?;
        out.push(added);
    }
    Ok(out)
}

fn u64_from_string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Num {
        N(u64),
        S(String),
    }
    match Num::deserialize(d)? {
        Num::N(n) => Ok(n),
        Num::S(s) if s.is_empty() => Ok(0),
        Num::S(s) => s.trim().parse().map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_lines_skip_progress_objects_and_accept_string_sizes() {
        let body = br#"{"Name":"a","Bytes":262144}
{"Name":"a","Hash":"bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm","Size":"262144"}
{"Name":"b","Hash":"bafkreib6epubmabzlffdhckpmvsodmjuro6xuaei2qwevs3t52xnlhaatu","Size":7}
"#;
        let Ok(added) = parse_added_lines(body) else {
            panic!("parses")
        };
        assert_eq!(added.len(), 2);
        assert_eq!(added[0].size, 262144);
        assert_eq!(added[1].name, "b");
        assert_eq!(added[1].size, 7);
    }

    #[test]
    fn an_error_object_in_the_add_stream_is_the_nodes_error() {
        let body = br#"{"Name":"a","Hash":"bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm","Size":"1"}
{"Message":"disk full","Code":0,"Type":"error"}
"#;
        match parse_added_lines(body) {
            Err(AddAnswerError::Node(message)) => assert_eq!(message, "disk full"),
            _ => panic!("expected the node's error"),
        }
    }

    #[test]
    fn only_a_body_typed_error_is_a_kubo_error() {
        assert!(KuboError::parse(br#"{"Message":"x","Code":0,"Type":"error"}"#).is_some());
        assert!(KuboError::parse(br#"{"Message":"x"}"#).is_none());
        assert!(KuboError::parse(b"<html>Bad Gateway</html>").is_none());
    }
}

/// `block/stat`: the size of one block the node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockStat {
    #[serde(rename = "Key")]
    pub key: String,
    #[serde(rename = "Size")]
    pub size: u64,
}
