//! The shape of `src/`, as docs/ARCHITECTURE.md draws it: modules form layers, a module
//! imports only from its own layer or lower ones, no import circle spans two top-level
//! modules (nor two sub-modules of `fs/`), and no source file is over 900 lines.
//!
//! "Imports" are every `crate::…` path in code (not comments, not `#[cfg(test)]` modules):
//! `use` lines and paths written inline alike.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Low to high. A module may use modules of its own layer and of lower layers.
const LAYERS: &[&[&str]] = &[
    &[
        "output",
        "build_info",
        "mountinfo",
        "local_disk",
        "config",
        "backoff",
        "metrics",
    ],
    &["format"],
    &["storage", "integrity"],
    &["btns", "keys", "chain", "cache", "dapp", "replica"],
    &["fs"],
    &[
        "fuse", "oracle", "check", "pinning", "node", "devnet", "web",
    ],
    &["cli"],
];

/// `fs/`'s sub-modules, low to high (files directly in `fs/` are its shared base).
const FS_LAYERS: &[&[&str]] = &[
    &["base"],
    &["data"],
    &["model"],
    &["upload", "persist"],
    &["ops"],
];

const MAX_LINES: usize = 900;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments, string literals' contents and `#[cfg(test)]` items
/// (tests may reach anywhere).
fn code_of(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut skip_depth: Option<usize> = None;
    let mut depth = 0usize;
    let mut pending_cfg_test = false;
    for line in src.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("//") {
            continue;
        }
        let code = match trimmed.find("//") {
            Some(i) if !trimmed[..i].contains('"') => &trimmed[..i],
            _ => trimmed,
        };
        if skip_depth.is_none() && code.starts_with("#[cfg(test)]") {
            pending_cfg_test = true;
            continue;
        }
        let opens = code.matches('{').count();
        let closes = code.matches('}').count();
        let outer = depth;
        depth = (depth + opens).saturating_sub(closes);
        if pending_cfg_test && skip_depth.is_none() {
            // The item the attribute applies to: skipped whole (to its closing brace).
            pending_cfg_test = false;
            if depth > outer {
                skip_depth = Some(outer);
            }
            continue;
        }
        if let Some(d) = skip_depth {
            if depth <= d {
                skip_depth = None;
            }
            continue;
        }
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// Every module path `code` names through `crate::` (groups `crate::{a, b::c}` expanded
/// one level), as path segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // e.g. `pxfs_crate::`
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let segs = segments(part.trim());
                if !segs.is_empty() {
                    paths.push(segs);
                }
            }
        } else {
            let segs = segments(rest);
            if !segs.is_empty() {
                paths.push(segs);
            }
        }
    }
    paths
}

fn segments(s: &str) -> Vec<String> {
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if end == 0 {
            break;
        }
        segs.push(rest[..end].to_owned());
        match rest[end..].strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    segs
}

struct Graph {
    /// (from, to) → one file that makes the edge, for the message.
    edges: BTreeMap<(String, String), String>,
}

impl Graph {
    fn cycles(&self) -> Vec<Vec<String>> {
        let nodes: BTreeSet<&String> = self.edges.keys().flat_map(|(a, b)| [a, b]).collect();
        let reach = |from: &String| {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.clone()];
            while let Some(n) = stack.pop() {
                for ((a, b), _) in self.edges.range((n.clone(), String::new())..) {
                    if a != &n {
                        break;
                    }
                    if seen.insert(b.clone()) {
                        stack.push(b.clone());
                    }
                }
            }
            seen
        };
        let reach: BTreeMap<&String, BTreeSet<String>> =
            nodes.iter().map(|n| (*n, reach(n))).collect();
        let mut cycles: Vec<Vec<String>> = Vec::new();
        let mut placed = BTreeSet::new();
        for n in &nodes {
            if placed.contains(*n) || !reach[n].contains(*n) {
                continue;
            }
            let comp: Vec<String> = nodes
                .iter()
                .filter(|m| reach[n].contains(**m) && reach[*m].contains(*n))
                .map(|m| (*m).clone())
                .collect();
            placed.extend(comp.iter().cloned());
            cycles.push(comp);
        }
        cycles
    }

    fn describe(&self, members: &[String]) -> String {
        self.edges
            .iter()
            .filter(|((a, b), _)| members.contains(a) && members.contains(b))
            .map(|((a, b), file)| format!("  {a} -> {b} (e.g. {file})\n"))
            .collect()
    }
}

fn layer_of(layers: &[&[&str]], module: &str) -> Option<usize> {
    layers.iter().position(|l| l.contains(&module))
}

struct Source {
    rel: String,
    /// Module path under `src/` (`fs/model/tree.rs` → ["fs", "model", "tree"]).
    module: Vec<String>,
    text: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_owned)
                .collect();
            if module.last().is_some_and(|m| m == "mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            Source { rel, module, text }
        })
        .collect()
}

#[test]
fn no_module_imports_from_a_higher_layer_and_no_circle_spans_two_modules() {
    let mut graph = Graph {
        edges: BTreeMap::new(),
    };
    let mut unplaced = BTreeSet::new();
    let mut upward = Vec::new();
    for s in sources() {
        let Some(from) = s.module.first() else {
            continue;
        };
        if from == "main" || from == "lib" {
            continue;
        }
        let Some(from_layer) = layer_of(LAYERS, from) else {
            unplaced.insert(from.clone());
            continue;
        };
        for path in crate_paths(&code_of(&s.text)) {
            let to = &path[0];
            if to == from || to == "say" || to == "say_err" {
                continue; // the output macros, exported at the crate root
            }
            let Some(to_layer) = layer_of(LAYERS, to) else {
                unplaced.insert(to.clone());
                continue;
            };
            if to_layer > from_layer {
                upward.push(format!("{} imports crate::{}", s.rel, path.join("::")));
            }
            graph
                .edges
                .entry((from.clone(), to.clone()))
                .or_insert_with(|| s.rel.clone());
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules not placed in a layer (add them to LAYERS and docs/ARCHITECTURE.md): {unplaced:?}"
    );
    assert!(
        upward.is_empty(),
        "imports from a lower layer to a higher one:\n{}",
        upward.join("\n")
    );
    let cycles = graph.cycles();
    assert!(
        cycles.is_empty(),
        "import circles across top-level modules:\n{}",
        cycles
            .iter()
            .map(|c| format!("{c:?}\n{}", graph.describe(c)))
            .collect::<String>()
    );
}

#[test]
fn the_fs_core_sub_modules_import_one_way() {
    // fs/mod.rs (the `Fs` type that ties the parts together) is none of them.
    let sub_of = |module: &[String]| -> Option<String> {
        match module {
            [fs, sub, ..] if fs == "fs" && layer_of(FS_LAYERS, sub).is_some() => Some(sub.clone()),
            [fs, _] if fs == "fs" => Some("base".into()),
            _ => None,
        }
    };
    let mut graph = Graph {
        edges: BTreeMap::new(),
    };
    let mut upward = Vec::new();
    let mut seen = 0;
    for s in sources() {
        let Some(from) = sub_of(&s.module) else {
            continue;
        };
        seen += 1;
        let from_layer = layer_of(FS_LAYERS, &from)
            .unwrap_or_else(|| panic!("fs/{from} is not placed in FS_LAYERS"));
        for path in crate_paths(&code_of(&s.text)) {
            if path.first().map(String::as_str) != Some("fs") || path.len() < 2 {
                continue;
            }
            let target = if layer_of(FS_LAYERS, &path[1]).is_some() {
                path[1].clone()
            } else {
                "base".into()
            };
            if target == from {
                continue;
            }
            let to_layer = layer_of(FS_LAYERS, &target).unwrap();
            if to_layer > from_layer {
                upward.push(format!("{} imports crate::{}", s.rel, path.join("::")));
            }
            graph
                .edges
                .entry((from.clone(), target))
                .or_insert_with(|| s.rel.clone());
        }
    }
    assert!(seen > 10, "found only {seen} files under src/fs/");
    assert!(
        upward.is_empty(),
        "fs/ sub-modules importing from a higher one:\n{}",
        upward.join("\n")
    );
    assert!(graph.cycles().is_empty(), "import circles inside fs/");
}

#[test]
fn no_source_file_is_over_900_lines() {
    let long: Vec<String> = sources()
        .iter()
        .map(|s| (s.rel.clone(), s.text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(f, n)| format!("{f}: {n} lines"))
        .collect();
    assert!(long.is_empty(), "split these by concept: {long:?}");
}

#[test]
fn the_on_node_format_has_one_home() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    assert!(
        !src.join("usage.rs").exists(),
        "src/usage.rs beside src/format/"
    );
    assert!(src.join("format/v1/manifest.rs").exists());
    // Nothing outside format/ names the v1 schemas' strings: it asks format/ for them.
    let strays: Vec<String> = sources()
        .iter()
        .filter(|s| s.module.first().is_some_and(|m| m != "format"))
        .filter(|s| {
            let code = code_of(&s.text);
            [
                "\"pxfs/dir/",
                "\"pxfs/usage/",
                "\"pxfs/root/",
                "\"pxfs/inodes/",
            ]
            .iter()
            .any(|schema| code.contains(schema))
        })
        .map(|s| s.rel.clone())
        .collect();
    assert!(
        strays.is_empty(),
        "on-node schema strings outside src/format/: {strays:?}"
    );
}
