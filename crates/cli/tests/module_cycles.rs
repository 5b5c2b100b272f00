//! No import cycles between the modules of any crate of the workspace.
//!
//! Every crate's module tree is read from its sources (`lib.rs`, `main.rs`, and the `mod`
//! declarations from there). A module depends on the modules its `use` items and its paths
//! name: `crate::…`, `super::…`, `self::…` and paths through its own children, each landing in
//! the deepest module the path walks through, and through re-exports to where the item lives
//! (`crate::Api` is `api::Api` when the root says `pub use api::Api`). Declaring a child
//! (`mod child;`) is no dependency; using it is. Test modules (`#[cfg(test)] mod …`, whatever
//! attributes and visibility come with them) are left out: they use their parent by nature.
//!
//! So a parent that re-exports or calls into a child and a child that names the parent's own
//! items make a cycle, as do two siblings that name each other. The layering each crate's root
//! writes down is what this test holds.
//!
//! It needs nothing but the standard library, so it also runs on its own (from `crates/cli`):
//! `CARGO_MANIFEST_DIR=$PWD rustc --edition 2024 --test tests/module_cycles.rs -o /tmp/mc && /tmp/mc`

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module: its path from the crate root (empty for the root).
type ModPath = Vec<String>;

/// One reason for an edge: where the dependency is written.
#[derive(Debug, Clone)]
struct Site {
    file: PathBuf,
    line: usize,
    text: String,
}

#[derive(Default)]
struct Graph {
    /// module → the modules it depends on, with the first place each dependency is written.
    edges: BTreeMap<ModPath, BTreeMap<ModPath, Site>>,
    /// module → its child modules.
    children: BTreeMap<ModPath, BTreeSet<String>>,
    /// module → the names its `use` items bring into scope, and the paths they stand for.
    uses: BTreeMap<ModPath, BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Path,  // ::
    Open,  // {
    Close, // }
    Semi,  // ;
    Comma, // ,
    Hash,  // #
    Other(char),
}

/// Tokens with their line numbers; comments, strings and character literals are dropped.
fn tokenize(src: &str) -> Vec<(Tok, usize)> {
    let b: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let (mut i, mut line) = (0, 1);
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if b[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || (next == Some('#') && raw_string_at(&b, i))) {
            // Raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            loop {
                match b.get(j) {
                    None => break,
                    Some('"') if (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some('\n') => {
                        line += 1;
                        j += 1;
                    }
                    Some(_) => j += 1,
                }
            }
            i = j;
        } else if c == '"' || (c == 'b' && next == Some('"')) {
            let mut j = if c == 'b' { i + 2 } else { i + 1 };
            while j < b.len() && b[j] != '"' {
                if b[j] == '\\' {
                    j += 1;
                }
                if b.get(j) == Some(&'\n') {
                    line += 1;
                }
                j += 1;
            }
            i = j + 1;
        } else if c == '\'' {
            // A character literal ('a', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                i += 1;
                while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                    i += 1;
                }
            }
        } else if c.is_alphabetic() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push((Tok::Ident(b[s..i].iter().collect()), line));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_' || b[i] == '.') {
                // Stop before a range (`0..n`) or a method call on a literal.
                if b[i] == '.' && !b.get(i + 1).is_some_and(|d| d.is_ascii_digit()) {
                    break;
                }
                i += 1;
            }
        } else if c == ':' && next == Some(':') {
            out.push((Tok::Path, line));
            i += 2;
        } else {
            out.push((
                match c {
                    '{' => Tok::Open,
                    '}' => Tok::Close,
                    ';' => Tok::Semi,
                    ',' => Tok::Comma,
                    '#' => Tok::Hash,
                    c => Tok::Other(c),
                },
                line,
            ));
            i += 1;
        }
    }
    out
}

/// Whether `r#` at `i` opens a raw string (`r#"`) rather than a raw identifier (`r#type`).
fn raw_string_at(b: &[char], i: usize) -> bool {
    let mut j = i + 1;
    while b.get(j) == Some(&'#') {
        j += 1;
    }
    b.get(j) == Some(&'"')
}

fn ident(t: Option<&(Tok, usize)>) -> Option<&str> {
    match t {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

/// Where the matching `}` of the `{` at `open` is (or the end).
fn matching_close(toks: &[(Tok, usize)], open: usize) -> usize {
    let mut depth = 0;
    for (j, (t, _)) in toks.iter().enumerate().skip(open) {
        match t {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return j;
                }
            }
            _ => {}
        }
    }
    toks.len()
}

/// The attribute starting at `i` (`#[…]` or `#![…]`): its text and the index after it.
fn attribute(toks: &[(Tok, usize)], i: usize) -> Option<(String, usize)> {
    if toks.get(i).map(|t| &t.0) != Some(&Tok::Hash) {
        return None;
    }
    let mut j = i + 1;
    if toks.get(j).map(|t| &t.0) == Some(&Tok::Other('!')) {
        j += 1;
    }
    if toks.get(j).map(|t| &t.0) != Some(&Tok::Other('[')) {
        return None;
    }
    let mut depth = 0;
    let mut text = String::new();
    while j < toks.len() {
        match &toks[j].0 {
            Tok::Other('[') => depth += 1,
            Tok::Other(']') => {
                depth -= 1;
                if depth == 0 {
                    return Some((text, j + 1));
                }
            }
            Tok::Ident(s) => text.push_str(s),
            Tok::Other(c) => text.push(*c),
            _ => {}
        }
        j += 1;
    }
    None
}

/// Whether an attribute's text (identifiers and punctuation, no spaces) is `cfg(test)`.
fn is_cfg_test(text: &str) -> bool {
    text == "cfg(test)"
}

/// A `mod` item at `i` after its attributes and visibility: `(name, inline)` and the index of
/// its `;` or `{`.
fn mod_item(toks: &[(Tok, usize)], mut i: usize) -> Option<(String, bool, usize)> {
    if ident(toks.get(i)) == Some("pub") {
        i += 1;
        if toks.get(i).map(|t| &t.0) == Some(&Tok::Other('(')) {
            while i < toks.len() && toks[i].0 != Tok::Other(')') {
                i += 1;
            }
            i += 1;
        }
    }
    if ident(toks.get(i)) != Some("mod") {
        return None;
    }
    let name = ident(toks.get(i + 1))?.to_string();
    match toks.get(i + 2).map(|t| &t.0) {
        Some(Tok::Semi) => Some((name, false, i + 2)),
        Some(Tok::Open) => Some((name, true, i + 2)),
        _ => None,
    }
}

/// A path a use-tree or an expression names: its segments and, in a `use`, the name it
/// brings into scope (`None` for a glob).
struct Named {
    segs: Vec<String>,
    alias: Option<String>,
}

/// The paths of the use-tree or expression path at `i`, under `prefix`.
fn paths_from(toks: &[(Tok, usize)], mut i: usize, prefix: Vec<String>, out: &mut Vec<Named>) {
    let mut cur = prefix;
    loop {
        match toks.get(i).map(|t| &t.0) {
            Some(Tok::Ident(s)) => {
                cur.push(s.clone());
                if toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path) {
                    i += 2;
                    continue;
                }
                let alias = if ident(toks.get(i + 1)) == Some("as") {
                    ident(toks.get(i + 2)).map(str::to_string)
                } else if s == "self" {
                    cur.pop();
                    cur.last().cloned()
                } else {
                    Some(s.clone())
                };
                out.push(Named { segs: cur, alias });
                return;
            }
            Some(Tok::Open) => {
                // A group: each comma-separated tree inside.
                let close = matching_close(toks, i);
                let mut j = i + 1;
                while j < close {
                    paths_from(toks, j, cur.clone(), out);
                    let mut depth = 0;
                    while j < close {
                        match toks[j].0 {
                            Tok::Open => depth += 1,
                            Tok::Close => depth -= 1,
                            Tok::Comma if depth == 0 => break,
                            _ => {}
                        }
                        j += 1;
                    }
                    j += 1;
                }
                return;
            }
            _ => {
                // `*`, a turbofish or the end of the path: the module named so far.
                out.push(Named {
                    segs: cur,
                    alias: None,
                });
                return;
            }
        }
    }
}

/// The module a path written in `from` lands in: the deepest module it walks through,
/// following re-exports (`pub use inner::Thing` makes `Thing` a name of `inner`'s item).
/// `None` for a path outside the crate.
fn resolve(g: &Graph, from: &ModPath, path: &[String], depth: usize) -> Option<ModPath> {
    let mut segs = path.iter().peekable();
    let mut base: ModPath = match segs.peek().map(|s| s.as_str()) {
        Some("crate") => {
            segs.next();
            Vec::new()
        }
        Some("self") => {
            segs.next();
            from.clone()
        }
        Some("super") => {
            let mut b = from.clone();
            while segs.peek().map(|s| s.as_str()) == Some("super") {
                segs.next();
                b.pop()?;
            }
            b
        }
        Some(first) if g.children.get(from).is_some_and(|c| c.contains(first)) => from.clone(),
        _ => return None,
    };
    while let Some(s) = segs.next() {
        if s == "self" {
            continue;
        }
        if g.children.get(&base).is_some_and(|c| c.contains(s)) {
            base.push(s.clone());
            continue;
        }
        if depth < 16
            && let Some(target) = g.uses.get(&base).and_then(|u| u.get(s))
        {
            let mut p = target.clone();
            p.extend(segs.cloned());
            return resolve(g, &base, &p, depth + 1).or(Some(base));
        }
        break;
    }
    Some(base)
}

/// Whether the token before `i` makes the path at `i` a continuation (`a::b`, `x.b`, `$crate`).
fn continues(toks: &[(Tok, usize)], i: usize) -> bool {
    i > 0 && matches!(toks[i - 1].0, Tok::Path | Tok::Other('.') | Tok::Other('$'))
}

/// Reads the module in `file` (its items in `range`; the whole file unless inline) as `path`.
fn read_module(
    g: &mut Graph,
    refs: &mut Vec<(ModPath, Vec<String>, Site)>,
    file: &Path,
    dir: &Path,
    toks: &[(Tok, usize)],
    range: (usize, usize),
    path: &ModPath,
) {
    g.children.entry(path.clone()).or_default();
    g.edges.entry(path.clone()).or_default();
    g.uses.entry(path.clone()).or_default();
    // First the child modules, so that paths through them are recognised below.
    let mut i = range.0;
    let mut skip = Vec::new();
    while i < range.1 {
        let mut j = i;
        let mut test_only = false;
        while let Some((text, next)) = attribute(toks, j) {
            test_only |= is_cfg_test(&text);
            j = next;
        }
        if let Some((name, inline, at)) = mod_item(toks, j) {
            let close = if inline { matching_close(toks, at) } else { at };
            skip.push((i, close + 1));
            if !test_only {
                let mut child = path.clone();
                child.push(name.clone());
                g.children.get_mut(path).unwrap().insert(name.clone());
                if inline {
                    read_module(
                        g,
                        refs,
                        file,
                        &dir.join(&name),
                        toks,
                        (at + 1, close),
                        &child,
                    );
                } else {
                    read_file_module(g, refs, dir, &name, &child);
                }
            }
            i = close + 1;
        } else {
            i = j.max(i + 1);
        }
    }
    // Then the uses and paths of this module's own items.
    let mut i = range.0;
    let mut skipped = skip.into_iter().peekable();
    while i < range.1 {
        if let Some(&(from, to)) = skipped.peek()
            && i >= from
        {
            skipped.next();
            i = to;
            continue;
        }
        let site = |text: String| Site {
            file: file.to_path_buf(),
            line: toks[i].1,
            text,
        };
        if ident(toks.get(i)) == Some("use") && !continues(toks, i) {
            let mut found = Vec::new();
            if toks.get(i + 1).map(|t| &t.0) != Some(&Tok::Path) {
                paths_from(toks, i + 1, Vec::new(), &mut found);
            }
            for n in found {
                if let Some(alias) = &n.alias {
                    g.uses
                        .get_mut(path)
                        .unwrap()
                        .insert(alias.clone(), n.segs.clone());
                }
                refs.push((
                    path.clone(),
                    n.segs.clone(),
                    site(format!("use {}", n.segs.join("::"))),
                ));
            }
            while i < range.1 && toks[i].0 != Tok::Semi {
                i += 1;
            }
            continue;
        }
        if let Some(first) = ident(toks.get(i))
            && toks.get(i + 1).map(|t| &t.0) == Some(&Tok::Path)
            && !continues(toks, i)
            && (matches!(first, "crate" | "self" | "super") || g.children[path].contains(first))
        {
            let mut found = Vec::new();
            paths_from(toks, i, Vec::new(), &mut found);
            for n in found {
                let text = n.segs.join("::");
                refs.push((path.clone(), n.segs, site(text)));
            }
        }
        i += 1;
    }
}

/// Reads the module `name` declared in the directory `dir` (`name.rs` or `name/mod.rs`).
fn read_file_module(
    g: &mut Graph,
    refs: &mut Vec<(ModPath, Vec<String>, Site)>,
    dir: &Path,
    name: &str,
    path: &ModPath,
) {
    let flat = dir.join(format!("{name}.rs"));
    let file = if flat.exists() {
        flat
    } else {
        dir.join(name).join("mod.rs")
    };
    let src = fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "module {} has no file {}: {e}",
            path.join("::"),
            file.display()
        )
    });
    let toks = tokenize(&src);
    read_module(
        g,
        refs,
        &file,
        &dir.join(name),
        &toks,
        (0, toks.len()),
        path,
    );
}

/// The dependency graph of the crate whose root file is `root`.
fn crate_graph(root: &Path) -> Graph {
    let mut g = Graph::default();
    let mut refs = Vec::new();
    let src = fs::read_to_string(root).unwrap();
    let toks = tokenize(&src);
    let dir = root.parent().unwrap();
    read_module(
        &mut g,
        &mut refs,
        root,
        dir,
        &toks,
        (0, toks.len()),
        &Vec::new(),
    );
    for (from, p, site) in refs {
        if let Some(to) = resolve(&g, &from, &p, 0)
            && to != from
        {
            g.edges.get_mut(&from).unwrap().entry(to).or_insert(site);
        }
    }
    g
}

/// The strongly connected components with more than one module (Tarjan's algorithm).
fn cycles(g: &Graph) -> Vec<Vec<ModPath>> {
    struct State<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a ModPath, usize>,
        low: BTreeMap<&'a ModPath, usize>,
        stack: Vec<&'a ModPath>,
        on: BTreeSet<&'a ModPath>,
        next: usize,
        out: Vec<Vec<ModPath>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a ModPath) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        for w in s.g.edges[v].keys() {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on.remove(w);
                comp.push(w.clone());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in g.edges.keys() {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn name(p: &ModPath) -> String {
    if p.is_empty() {
        "crate".into()
    } else {
        p.join("::")
    }
}

/// A readable account of the cycles: each component and the edges inside it, with where each
/// is written.
fn report(g: &Graph, comps: &[Vec<ModPath>]) -> String {
    let mut out = String::new();
    for c in comps {
        let members: BTreeSet<&ModPath> = c.iter().collect();
        out.push_str(&format!(
            "cycle among {}:\n",
            c.iter().map(name).collect::<Vec<_>>().join(", ")
        ));
        for from in c {
            for (to, site) in &g.edges[from] {
                if members.contains(to) {
                    out.push_str(&format!(
                        "  {} -> {}  ({}:{}: {})\n",
                        name(from),
                        name(to),
                        site.file.display(),
                        site.line,
                        site.text
                    ));
                }
            }
        }
    }
    out
}

/// The root files of the workspace's crates.
fn crate_roots() -> Vec<PathBuf> {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut roots = Vec::new();
    for entry in fs::read_dir(&crates).unwrap() {
        let src = entry.unwrap().path().join("src");
        for f in ["lib.rs", "main.rs"] {
            if src.join(f).exists() {
                roots.push(src.join(f));
            }
        }
    }
    roots.sort();
    roots
}

#[test]
fn no_crate_of_the_workspace_has_an_import_cycle() {
    let roots = crate_roots();
    assert!(roots.len() >= 8, "found only {roots:?}");
    let mut failures = String::new();
    let mut modules = 0;
    for root in &roots {
        let g = crate_graph(root);
        modules += g.edges.len();
        let comps = cycles(&g);
        if !comps.is_empty() {
            failures.push_str(&format!("{}:\n{}", root.display(), report(&g, &comps)));
        }
    }
    // The controller alone has dozens of modules: a reader that found almost none is broken.
    assert!(modules > 200, "only {modules} modules read");
    assert!(failures.is_empty(), "import cycles:\n{failures}");
}

/// Writes a crate of `files` (path → source) to a fresh directory and returns its root.
fn scratch_crate(tag: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("module-cycles-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    for (p, src) in files {
        let f = dir.join(p);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, src).unwrap();
    }
    dir.join("lib.rs")
}

#[test]
fn the_reader_finds_a_cycle_between_siblings_and_through_a_parent() {
    let root = scratch_crate(
        "cyclic",
        &[
            (
                "lib.rs",
                "pub mod a;\npub mod b;\nmod up;\npub struct Root;\npub fn r() { up::f(); }\n",
            ),
            ("a.rs", "use crate::b::{self, Thing};\npub struct A;\n"),
            (
                "b.rs",
                "// crate::a in a comment is no edge\npub struct Thing(super::a::A);\n",
            ),
            ("up.rs", "pub fn f() -> crate::Root { crate::Root }\n"),
        ],
    );
    let g = crate_graph(&root);
    let comps = cycles(&g);
    let mut names: Vec<Vec<String>> = comps.iter().map(|c| c.iter().map(name).collect()).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            vec!["a".to_string(), "b".into()],
            vec!["crate".to_string(), "up".into()]
        ],
        "{}",
        report(&g, &comps)
    );
    let text = report(&g, &comps);
    assert!(text.contains("a -> b"), "{text}");
    assert!(text.contains("b -> a"), "{text}");
    assert!(text.contains("up -> crate"), "{text}");
    assert!(text.contains("crate -> up"), "{text}");
    let _ = fs::remove_dir_all(root.parent().unwrap());
}

#[test]
fn re_exports_test_modules_strings_and_layered_trees_close_no_cycle() {
    let root = scratch_crate(
        "layered",
        &[
            (
                "lib.rs",
                "mod low;\npub mod high;\npub use high::Api;\npub use low::f as low_f;\n\
                 #[cfg(test)]\n#[allow(dead_code)]\npub(crate) mod tests;\n",
            ),
            (
                "low.rs",
                "pub fn f() -> &'static str { \"crate::high\" }\n\
                 #[cfg(test)]\nmod tests { use super::*; use crate::high::Api; }\n",
            ),
            (
                "high/mod.rs",
                "mod inner;\npub use inner::Api;\n\
                 pub fn g() { let _ = crate::low_f(); let _ = r#\"super::x\"#; }\n",
            ),
            (
                "high/inner.rs",
                "use super::super::low;\npub struct Api;\nfn h() -> crate::Api { low::f(); crate::Api }\n",
            ),
        ],
    );
    let g = crate_graph(&root);
    let comps = cycles(&g);
    assert!(comps.is_empty(), "{}", report(&g, &comps));
    let m = |p: &str| -> ModPath {
        p.split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    };
    // `crate::low_f` is low's `f`; `crate::Api` is inner's own `Api`, through two re-exports.
    assert!(g.edges[&m("high")].contains_key(&m("low")));
    assert!(g.edges[&m("high")].contains_key(&m("high::inner")));
    assert!(g.edges[&m("high::inner")].contains_key(&m("low")));
    assert!(!g.edges[&m("high::inner")].contains_key(&m("")));
    assert!(!g.children[&m("")].contains("tests"));
    assert!(!g.edges[&m("low")].contains_key(&m("high")));
    let _ = fs::remove_dir_all(root.parent().unwrap());
}
