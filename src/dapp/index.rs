//! The dApp's file index, decrypted: a JSON array of items (`{id, name, type, status,
//! hash, size, createdAt, uploaded, children, …}`; ../shared/POLLINATIONX.md, "The dApp's
//! drive"), turned into what the mount shows. The index is not pxfs's and may be hostile:
//! unknown members are ignored, missing optional ones tolerated, and size, depth and item
//! count are bounded.

use std::collections::HashSet;

use serde_json::Value;

/// Largest index (decrypted JSON) read.
pub const MAX_INDEX_BYTES: usize = 16 << 20;
/// Deepest folder nesting shown (folders below are left out).
pub const MAX_DEPTH: usize = 32;
/// Most items (files and folders) shown; the rest are left out.
pub const MAX_ITEMS: usize = 100_000;
/// Longest file name, as in the tree.
const NAME_MAX: usize = crate::format::name::NAME_MAX;

/// What the mount shows: files and folders, names unique per folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DappIndex {
    pub entries: Vec<DappEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DappEntry {
    pub name: String,
    /// Nanoseconds since the epoch (`uploaded`, else `createdAt`), if the index has it.
    pub mtime_ns: Option<i64>,
    pub kind: DappKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DappKind {
    File { cid: String, size: u64 },
    Folder(Vec<DappEntry>),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IndexError {
    #[error("the index is {0} bytes, more than the {MAX_INDEX_BYTES} read")]
    TooLarge(usize),
    #[error("the index is not JSON: {0}")]
    NotJson(String),
    #[error("the index is not a JSON array of items")]
    NotAnArray,
}

impl DappIndex {
    /// Files and folders in the whole index.
    pub fn count(&self) -> usize {
        fn walk(v: &[DappEntry]) -> usize {
            v.iter()
                .map(|e| match &e.kind {
                    DappKind::File { .. } => 1,
                    DappKind::Folder(c) => 1 + walk(c),
                })
                .sum()
        }
        walk(&self.entries)
    }

    /// Parse a decrypted index. Items that cannot be shown are skipped with a log line.
    pub fn parse(json: &[u8]) -> Result<DappIndex, IndexError> {
        if json.len() > MAX_INDEX_BYTES {
            return Err(IndexError::TooLarge(json.len()));
        }
        // serde_json refuses nesting deeper than 128 levels itself.
        let value: Value =
            serde_json::from_slice(json).map_err(|e| IndexError::NotJson(e.to_string()))?;
        let Value::Array(items) = value else {
            return Err(IndexError::NotAnArray);
        };
        let mut budget = Budget::default();
        let entries = folder(&items, 1, "", &mut budget);
        if budget.items_cut {
            tracing::warn!(
                limit = MAX_ITEMS,
                "dApp index: more items than shown; the rest are left out"
            );
        }
        if budget.depth_cut {
            tracing::warn!(
                limit = MAX_DEPTH,
                "dApp index: folders nested deeper than shown are left out"
            );
        }
        Ok(DappIndex { entries })
    }
}

#[derive(Default)]
struct Budget {
    items: usize,
    items_cut: bool,
    depth_cut: bool,
}

/// The items of one folder (`path` for log lines), names made unique.
fn folder(items: &[Value], depth: usize, path: &str, budget: &mut Budget) -> Vec<DappEntry> {
    let mut out = Vec::new();
    let mut taken = Taken::default();
    for item in items {
        if budget.items >= MAX_ITEMS {
            budget.items_cut = true;
            break;
        }
        let Some(obj) = item.as_object() else {
            tracing::info!(
                folder = path,
                "dApp index: an item that is not an object; skipped"
            );
            continue;
        };
        let raw_name = obj.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_name(raw_name) {
            tracing::info!(
                folder = path,
                name = raw_name,
                "dApp index: not a valid file name (empty, \".\", \"..\", or with \"/\" or NUL); skipped"
            );
            continue;
        }
        let mtime_ns = time_ns(obj.get("uploaded")).or_else(|| time_ns(obj.get("createdAt")));
        let kind = match obj.get("type").and_then(Value::as_str) {
            Some("folder") => {
                if depth > MAX_DEPTH {
                    budget.depth_cut = true;
                    continue;
                }
                budget.items += 1;
                let children = match obj.get("children") {
                    Some(Value::Array(c)) => c.as_slice(),
                    _ => &[],
                };
                let sub = format!("{path}/{raw_name}");
                DappKind::Folder(folder(children, depth + 1, &sub, budget))
            }
            Some("file") => {
                if obj.get("status").and_then(Value::as_str) != Some("uploaded") {
                    continue; // still pending or uploading in the dApp
                }
                let Some(cid) = obj
                    .get("hash")
                    .and_then(Value::as_str)
                    .filter(|h| valid_cid(h))
                else {
                    tracing::info!(
                        folder = path,
                        name = raw_name,
                        "dApp index: an uploaded file without a valid hash (CID); skipped"
                    );
                    continue;
                };
                let Some(size) = obj.get("size").and_then(size_of) else {
                    tracing::info!(
                        folder = path,
                        name = raw_name,
                        "dApp index: a file without a size; skipped"
                    );
                    continue;
                };
                budget.items += 1;
                DappKind::File {
                    cid: cid.to_string(),
                    size,
                }
            }
            other => {
                tracing::info!(folder = path, name = raw_name, kind = ?other,
                    "dApp index: an item of unknown type; skipped");
                continue;
            }
        };
        let name = unique(raw_name, &mut taken);
        if name != raw_name {
            tracing::info!(folder = path, name = raw_name, shown_as = %name,
                "dApp index: duplicate name in one folder");
        }
        out.push(DappEntry {
            name,
            mtime_ns,
            kind,
        });
    }
    out
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= NAME_MAX
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0')
}

/// A CID as the node takes it in a query: letters and digits only.
fn valid_cid(h: &str) -> bool {
    !h.is_empty() && h.len() <= 128 && h.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// `size` as a number, or a string of digits.
fn size_of(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A time as milliseconds since the epoch or an RFC 3339 text.
fn time_ns(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64()?.checked_mul(1_000_000),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()?
            .timestamp_nanos_opt(),
        _ => None,
    }
}

/// The names used in one folder, and per name the next suffix to try.
#[derive(Default)]
struct Taken {
    names: HashSet<String>,
    next: std::collections::HashMap<String, u64>,
}

/// `name`, or `stem (2).ext`, `stem (3).ext`, … if taken: the first in index order keeps
/// its name, so the choice is the same at every read of the same index.
fn unique(name: &str, taken: &mut Taken) -> String {
    if taken.names.insert(name.to_string()) {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    // Where the search for this name's suffix resumes: many equal names stay linear.
    let start = taken.next.get(name).copied().unwrap_or(2);
    for n in start.. {
        let suffix = format!(" ({n}){ext}");
        let mut cut = NAME_MAX.saturating_sub(suffix.len()).min(stem.len());
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        let candidate = format!("{}{suffix}", &stem[..cut]);
        if taken.names.insert(candidate.clone()) {
            taken.next.insert(name.to_string(), n + 1);
            return candidate;
        }
    }
    unreachable!("some suffix is free")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, cid: &str, size: u64) -> DappEntry {
        DappEntry {
            name: name.into(),
            mtime_ns: None,
            kind: DappKind::File {
                cid: cid.into(),
                size,
            },
        }
    }

    #[test]
    fn uploaded_files_and_nested_folders_are_shown_and_the_rest_skipped() {
        let json = br#"[
          {"id":"1","name":"a.txt","type":"file","status":"uploaded","hash":"QmA","size":5,"extra":{"x":1}},
          {"id":"2","name":"p","type":"file","status":"pending","hash":"QmP","size":1},
          {"id":"3","name":"nohash","type":"file","status":"uploaded","size":1},
          {"id":"4","name":"docs","type":"folder","children":[
             {"id":"5","name":"b","type":"file","status":"uploaded","hash":"QmB","size":"7"},
             {"id":"6","name":"empty","type":"folder"}
          ]},
          {"id":"7","name":"../x","type":"file","status":"uploaded","hash":"QmX","size":1},
          {"id":"8","name":"..","type":"folder","children":[]},
          {"id":"9","name":"","type":"file","status":"uploaded","hash":"QmY","size":1},
          {"id":"10","name":"odd","type":"link"},
          7
        ]"#;
        let index = DappIndex::parse(json).unwrap();
        assert_eq!(
            index.entries,
            vec![
                file("a.txt", "QmA", 5),
                DappEntry {
                    name: "docs".into(),
                    mtime_ns: None,
                    kind: DappKind::Folder(vec![
                        file("b", "QmB", 7),
                        DappEntry {
                            name: "empty".into(),
                            mtime_ns: None,
                            kind: DappKind::Folder(vec![]),
                        },
                    ]),
                },
            ]
        );
        assert_eq!(index.count(), 4);
    }

    #[test]
    fn duplicate_names_get_the_same_suffix_at_every_read() {
        let json = br#"[
          {"name":"r.txt","type":"file","status":"uploaded","hash":"Qm1","size":1},
          {"name":"r.txt","type":"file","status":"uploaded","hash":"Qm2","size":2},
          {"name":"r.txt","type":"folder"},
          {"name":"r (2).txt","type":"file","status":"uploaded","hash":"Qm4","size":4}
        ]"#;
        let names = |i: DappIndex| i.entries.into_iter().map(|e| e.name).collect::<Vec<_>>();
        let first = names(DappIndex::parse(json).unwrap());
        assert_eq!(first, ["r.txt", "r (2).txt", "r (3).txt", "r (2) (2).txt"]);
        assert_eq!(first, names(DappIndex::parse(json).unwrap()));
    }

    #[test]
    fn times_are_read_as_milliseconds_or_rfc3339() {
        let json = br#"[
          {"name":"a","type":"file","status":"uploaded","hash":"Qm1","size":1,"createdAt":1700000000000},
          {"name":"b","type":"file","status":"uploaded","hash":"Qm1","size":1,"uploaded":"2024-01-02T03:04:05Z","createdAt":5}
        ]"#;
        let i = DappIndex::parse(json).unwrap();
        assert_eq!(i.entries[0].mtime_ns, Some(1_700_000_000_000_000_000));
        assert_eq!(i.entries[1].mtime_ns, Some(1_704_164_645_000_000_000));
    }

    #[test]
    fn a_hostile_index_is_bounded() {
        assert_eq!(DappIndex::parse(br#"{"a":1}"#), Err(IndexError::NotAnArray));
        assert!(matches!(
            DappIndex::parse(b"[{"),
            Err(IndexError::NotJson(_))
        ));
        assert!(matches!(
            DappIndex::parse(&vec![b' '; MAX_INDEX_BYTES + 1]),
            Err(IndexError::TooLarge(_))
        ));
        // Folders nested 40 deep: shown down to the limit.
        let mut json =
            String::from(r#"{"name":"f","type":"file","status":"uploaded","hash":"Qm","size":1}"#);
        for _ in 0..40 {
            json = format!(r#"{{"name":"d","type":"folder","children":[{json}]}}"#);
        }
        let i = DappIndex::parse(format!("[{json}]").as_bytes()).unwrap();
        assert_eq!(i.count(), MAX_DEPTH);
        // More items than the limit: the first ones are shown.
        let item = r#"{"name":"x","type":"file","status":"uploaded","hash":"Qm","size":1}"#;
        let many = format!("[{}]", vec![item; MAX_ITEMS + 10].join(","));
        assert_eq!(
            DappIndex::parse(many.as_bytes()).unwrap().count(),
            MAX_ITEMS
        );
        // A name longer than a file name can be.
        let long = format!(
            r#"[{{"name":"{}","type":"file","status":"uploaded","hash":"Qm","size":1}}]"#,
            "n".repeat(300)
        );
        assert_eq!(DappIndex::parse(long.as_bytes()).unwrap().count(), 0);
    }
}
