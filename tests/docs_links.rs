//! The documentation holds together: every relative link in README.md and docs/*.md names a
//! file that exists and, with `#anchor`, a heading of that file (GitHub's slugs), and the
//! README stays a short front page (issue #32: README ≤ 300 lines, the manual under docs/).
//! Pure Rust, no network: links to other sites are not followed.

use std::collections::HashSet;
use std::fs;
use std::path::{Component, Path, PathBuf};

/// The README's length limit: quick start, a tour and links; the rest is in docs/.
const README_MAX_LINES: usize = 300;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every docs/*.md, as paths relative to the repository.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![PathBuf::from("README.md")];
    let mut chapters: Vec<PathBuf> = fs::read_dir(repo().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| PathBuf::from("docs").join(p.file_name().expect("a file name")))
        .collect();
    chapters.sort();
    docs.extend(chapters);
    docs
}

/// A link found in a document: its line and its target as written.
#[derive(Debug)]
struct Link {
    line: usize,
    target: String,
}

/// The inline links `[text](target)` and images `![alt](target)` outside code blocks and
/// code spans (a `[x](y)` inside backticks is an example, not a link).
fn links(markdown: &str) -> Vec<Link> {
    let mut found = Vec::new();
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let text = without_code_spans(line);
        let mut rest = text.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            // `](<target> "title")`: the target is the first word.
            let target = after[..end].split_whitespace().next().unwrap_or("");
            found.push(Link {
                line: i + 1,
                target: target.trim_matches(['<', '>']).to_string(),
            });
            rest = &after[end..];
        }
    }
    found
}

fn without_code_spans(line: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for c in line.chars() {
        if c == '`' {
            in_code = !in_code;
        } else if !in_code {
            out.push(c);
        }
    }
    out
}

/// GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `_`,
/// `-` and spaces kept), spaces become `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '_' || *c == '-' || *c == ' ')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a document's headings give, a repeated slug numbered `-1`, `-2`… as GitHub does.
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if fenced || hashes == 0 || hashes > 6 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let base = slug(&line[hashes..]);
        let mut anchor = base.clone();
        let mut n = 0;
        while seen.contains(&anchor) {
            n += 1;
            anchor = format!("{base}-{n}");
        }
        seen.insert(anchor);
    }
    seen
}

/// `a/b/../c` → `a/c`, without touching the disk; `None` when it climbs out of the repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Some(out)
}

/// What is wrong with the relative links of `doc` (a path relative to `root`), one line each.
fn broken_links(root: &Path, doc: &Path) -> Vec<String> {
    let text = fs::read_to_string(root.join(doc)).expect("a readable document");
    let dir = doc.parent().unwrap_or(Path::new(""));
    let mut broken = Vec::new();
    for link in links(&text) {
        let t = &link.target;
        if t.is_empty() || t.contains("://") || t.starts_with("mailto:") {
            continue;
        }
        let (file, anchor) = match t.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (t.as_str(), None),
        };
        let target = if file.is_empty() {
            doc.to_path_buf()
        } else {
            match normalize(&dir.join(file)) {
                Some(p) => p,
                // Outside the repository (the team's ../shared/DESIGN.md): not ours to check.
                None => continue,
            }
        };
        let at = format!("{}:{}: {t}", doc.display(), link.line);
        let path = root.join(&target);
        if !path.exists() {
            broken.push(format!("{at}: no such file {}", target.display()));
            continue;
        }
        if let Some(anchor) = anchor {
            let heads = if path.is_file() {
                anchors(&fs::read_to_string(&path).unwrap_or_default())
            } else {
                HashSet::new()
            };
            if !heads.contains(anchor) {
                broken.push(format!(
                    "{at}: no heading #{anchor} in {}",
                    target.display()
                ));
            }
        }
    }
    broken
}

#[test]
fn every_relative_link_in_the_readme_and_docs_names_an_existing_file_and_heading() {
    let root = repo();
    let docs = documents();
    assert!(
        docs.len() >= 10,
        "the manual is under docs/: found only {docs:?}"
    );
    let mut checked = 0;
    let mut broken = Vec::new();
    for doc in &docs {
        let text = fs::read_to_string(root.join(doc)).expect("a readable document");
        checked += links(&text)
            .iter()
            .filter(|l| !l.target.contains("://"))
            .count();
        broken.extend(broken_links(&root, doc));
    }
    assert!(
        checked >= 50,
        "only {checked} relative links found: is the link reader broken?"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_page_of_at_most_300_lines() {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines (at most {README_MAX_LINES}): move the detail into a docs/ chapter"
    );
    // The quick start's two commands, which CI (`.ci/run`) and users rely on, stay in it.
    assert!(readme.contains("bash scripts/demo.sh "), "the demo command");
    assert!(readme.contains("bash scripts/test.sh "), "the test command");
    assert!(
        readme.contains("docs/README.md"),
        "a link to the manual's index"
    );
}

#[test]
fn the_checker_reports_a_missing_file_and_a_missing_anchor_but_not_code_or_other_sites() {
    let root = std::env::temp_dir().join(format!("pxfs-docs-links-{}", std::process::id()));
    fs::create_dir_all(root.join("docs")).expect("temp dir");
    fs::write(
        root.join("docs/chapter.md"),
        "# A chapter\n\n## `pxfs status` (the table)\n\n## Repeated\n\n## Repeated\n",
    )
    .expect("write chapter");
    fs::write(
        root.join("README.md"),
        "# Front\n\
         [ok](docs/chapter.md#pxfs-status-the-table) [dup](docs/chapter.md#repeated-1)\n\
         [self](#front) [web](https://example.org/x.md) [up](../outside.md)\n\
         `[code](missing.md)`\n\
         ```\n[fenced](missing.md)\n```\n\
         [gone](docs/gone.md) [bad anchor](docs/chapter.md#no-such-heading)\n",
    )
    .expect("write readme");
    let broken = broken_links(&root, Path::new("README.md"));
    fs::remove_dir_all(&root).expect("clean up");
    assert_eq!(broken.len(), 2, "exactly the two bad links: {broken:?}");
    assert!(broken[0].contains("README.md:8: docs/gone.md: no such file"));
    assert!(broken[1].contains("no heading #no-such-heading in docs/chapter.md"));
}
