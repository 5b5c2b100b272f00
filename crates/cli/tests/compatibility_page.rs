//! `docs/compatibility.md` stays true: every test it names exists where it says.
//!
//! The page names proofs as a file (`controller/tests/kubernetes_e2e.rs`, relative to `crates/`
//! or with it) followed by test names in backticks, in a table row or a paragraph. Each file
//! named must exist (a partial path such as `canary/mod.rs` must name exactly one file), and
//! each name of a function written after a file (`snake_case` of three words or more; metric
//! names such as `flagger_canary_total` aside) must be a `fn` of that file; `name` in `file`
//! binds the other way round. A name with no file before it claims nothing.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Prefixes of the metric and series names the page quotes (they look like function names).
const SERIES_PREFIXES: &[&str] = &[
    "flagger_",
    "process_",
    "istio_",
    "envoy_",
    "http_",
    "nginx_",
    "linkerd_",
    "osm_",
    "response_",
    "request_",
    "go_",
    "kube_",
    "keda_",
];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every `.rs` file under `crates/` (paths relative to it), with the functions it defines.
fn functions(crates: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![crates.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    dirs.push(path);
                }
            } else if name.ends_with(".rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let rel = path
                    .strip_prefix(crates)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                out.insert(rel, fn_names(&text));
            }
        }
    }
    out
}

/// The names after `fn ` in a source text.
fn fn_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("fn ") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + 3..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.insert(name);
        }
    }
    names
}

/// The page cut into units: each table row, each paragraph or list item.
fn units(page: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in page.lines().enumerate() {
        let trimmed = line.trim_start();
        let starts_unit = trimmed.is_empty()
            || trimmed.starts_with('|')
            || trimmed.starts_with("* ")
            || trimmed.starts_with("- ")
            || trimmed.starts_with('#');
        if starts_unit {
            out.extend(current.take());
        }
        if trimmed.is_empty() {
            continue;
        }
        if trimmed.starts_with('|') {
            out.push((i + 1, line.to_string()));
            continue;
        }
        match &mut current {
            Some((_, text)) => {
                text.push(' ');
                text.push_str(trimmed);
            }
            None => current = Some((i + 1, trimmed.to_string())),
        }
    }
    out.extend(current);
    out
}

/// A word of a unit: a file path, or a backticked name.
#[derive(Debug)]
enum Token {
    File(String),
    Name(String),
    /// ` in ` right after a name: the file that follows is the name's.
    In,
}

fn tokens(unit: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = unit;
    let is_path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '/' | '.' | '-');
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`') {
            let end = after.find('`').unwrap_or(after.len());
            let span = &after[..end];
            if span.ends_with(".rs") && span.chars().all(is_path_char) {
                out.push(Token::File(span.to_string()));
            } else if is_fn_like(span) {
                out.push(Token::Name(span.to_string()));
            }
            rest = after.get(end + 1..).unwrap_or("");
            if rest.starts_with(" in `") {
                out.push(Token::In);
            }
            continue;
        }
        // A bare path (`controller/tests/kubernetes_e2e.rs` written without backticks).
        let word_len = rest.find(|c: char| !is_path_char(c)).unwrap_or(rest.len());
        if word_len > 0 {
            let word = rest[..word_len].trim_end_matches('.');
            if word.ends_with(".rs") && word.contains('/') {
                out.push(Token::File(word.to_string()));
            }
            rest = &rest[word_len..];
        } else {
            let c = rest.chars().next().unwrap();
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A `snake_case` name of three words or more that is not a series name.
fn is_fn_like(s: &str) -> bool {
    let words: Vec<&str> = s.split('_').collect();
    words.len() >= 3
        && words.iter().all(|w| {
            !w.is_empty()
                && w.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !SERIES_PREFIXES.iter().any(|p| s.starts_with(p))
}

/// The files a path of the page names: the path itself (relative to `crates/`, or with
/// `crates/` in front), else every file it is the tail of.
fn resolve(path: &str, files: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let path = path.trim_start_matches("./");
    let path = path.strip_prefix("crates/").unwrap_or(path);
    if files.contains_key(path) {
        return vec![path.to_string()];
    }
    let tail = format!("/{path}");
    files
        .keys()
        .filter(|f| f.ends_with(&tail))
        .cloned()
        .collect()
}

/// What is wrong with the page: each a line number and why.
fn problems(page: &str, files: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut out = Vec::new();
    for (line, unit) in units(page) {
        let tokens = tokens(&unit);
        let mut current: Vec<String> = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                Token::File(path) => {
                    let found = resolve(path, files);
                    match found.len() {
                        0 => out.push(format!("line {line}: {path} does not exist")),
                        1 => {}
                        _ => {
                            // `kubernetes.rs` after `core/src/routing/`: ambiguous but named
                            // next to its directory; the names after it must be in one of them.
                        }
                    }
                    current = found;
                }
                Token::Name(name) => {
                    // `name` in `file`: the file that follows.
                    let owner = match (tokens.get(i + 1), tokens.get(i + 2)) {
                        (Some(Token::In), Some(Token::File(path))) => {
                            i += 2;
                            resolve(path, files)
                        }
                        _ => current.clone(),
                    };
                    // A name with no file before it is no claim (a Secret key, a setting).
                    let ok = owner.is_empty()
                        || owner
                            .iter()
                            .any(|f| files.get(f).is_some_and(|names| names.contains(name)));
                    if !ok {
                        out.push(format!(
                            "line {line}: no fn {name} in {}",
                            owner.join(" or ")
                        ));
                    }
                }
                Token::In => {}
            }
            i += 1;
        }
    }
    out
}

#[test]
fn every_test_the_compatibility_page_names_exists_where_it_says() {
    let root = workspace();
    let files = functions(&root.join("crates"));
    let page = std::fs::read_to_string(root.join("docs/compatibility.md")).unwrap();
    let found = problems(&page, &files);
    assert!(
        found.is_empty(),
        "docs/compatibility.md names tests that do not exist:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_checker_catches_a_stale_row() {
    let files = BTreeMap::from([
        (
            "controller/tests/kubernetes_e2e.rs".to_string(),
            BTreeSet::from(["promotes_a_new_image".to_string()]),
        ),
        (
            "core/src/routing/kubernetes.rs".to_string(),
            BTreeSet::from(["reads_the_histogram_in_seconds".to_string()]),
        ),
    ]);
    let good = "| x | `controller/tests/kubernetes_e2e.rs` `promotes_a_new_image` |\n\n\
                Tests: `routing/kubernetes.rs` `reads_the_histogram_in_seconds`; the \
                `flagger_canary_status_total` series.\n";
    assert_eq!(problems(good, &files), Vec::<String>::new());
    let stale = "| x | `controller/tests/kubernetes_e2e.rs` `promotes_an_old_image` |\n\n\
                 Tests: controller/tests/gone_e2e.rs.\n\n\
                 See `promotes_a_new_image` in `core/src/routing/kubernetes.rs`.\n";
    assert_eq!(
        problems(stale, &files),
        vec![
            "line 1: no fn promotes_an_old_image in controller/tests/kubernetes_e2e.rs",
            "line 3: controller/tests/gone_e2e.rs does not exist",
            "line 5: no fn promotes_a_new_image in core/src/routing/kubernetes.rs",
        ]
    );
}
