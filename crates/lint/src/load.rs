//! Reading a repository for `flagger lint`: files and folders of multi-document YAML, folders
//! recursively, and kustomizations rendered with `kubectl kustomize` (objects mapped back to
//! the file and line they come from). All the I/O of the command is here.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

use crate::object::{Object, Source};

/// File names that make a folder a kustomization.
const KUSTOMIZATION_FILES: &[&str] = &["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// How to read the paths.
#[derive(Clone, Debug)]
pub struct Options {
    /// Render kustomizations (`false`: read their resources file by file).
    pub kustomize: bool,
    /// The kubectl to run `kubectl kustomize` with.
    pub kubectl: String,
    /// How long one `kubectl kustomize` may take (remote bases are fetched over the network).
    pub timeout: Duration,
}

/// Everything read.
#[derive(Debug, Default)]
pub struct Loaded {
    pub objects: Vec<Object>,
    /// Things the user should know about how the repository was read (stderr).
    pub notes: Vec<String>,
    /// Files that could not be read or parsed: the command exits 2.
    pub failures: Vec<String>,
    pub files: usize,
}

/// One YAML document of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Doc {
    /// 1-based line of the first content line.
    pub start: usize,
    /// 1-based line of the top-level `kind:` key, when there is one.
    pub kind_line: Option<usize>,
    pub text: String,
}

impl Doc {
    /// The line findings about this document point at.
    pub fn line(&self) -> usize {
        self.kind_line.unwrap_or(self.start)
    }
}

/// Splits a YAML stream into documents, remembering where each starts and where its `kind:` is.
pub fn split_documents(text: &str) -> Vec<Doc> {
    let mut docs = Vec::new();
    let mut current = Doc {
        start: 0,
        kind_line: None,
        text: String::new(),
    };
    let flush = |current: &mut Doc, docs: &mut Vec<Doc>| {
        let doc = std::mem::replace(
            current,
            Doc {
                start: 0,
                kind_line: None,
                text: String::new(),
            },
        );
        if doc.start > 0 {
            docs.push(doc);
        }
    };
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line == "..." || line == "---" || line.starts_with("--- ") || line.starts_with("---\t") {
            flush(&mut current, &mut docs);
            let rest = line.strip_prefix("---").unwrap_or("").trim();
            if !rest.is_empty() && !rest.starts_with('#') && line != "..." {
                current.start = number;
                current.text.push_str(rest);
                current.text.push('\n');
            }
            continue;
        }
        let trimmed = line.trim();
        if current.start == 0 && !trimmed.is_empty() && !trimmed.starts_with('#') {
            current.start = number;
        }
        if current.kind_line.is_none()
            && (line.starts_with("kind:") || line.starts_with("\"kind\":"))
        {
            current.kind_line = Some(number);
        }
        current.text.push_str(line);
        current.text.push('\n');
    }
    flush(&mut current, &mut docs);
    docs
}

/// Parses a YAML text into objects (documents that are mappings with a `kind`). Errors name the
/// file and the line of the document.
pub fn parse_objects(path: &str, text: &str) -> Result<Vec<Object>, String> {
    let mut out = Vec::new();
    for doc in split_documents(text) {
        let value: Value = input_guard::files::yaml_document(&doc.text)
            .map_err(|e| format!("{path}:{}: not valid YAML: {e}", doc.start))?;
        if value.get("kind").and_then(Value::as_str).is_some() {
            out.push(Object::new(path, doc.line(), value));
        }
    }
    Ok(out)
}

/// Reads every path: files as they are, folders recursively.
pub fn load(paths: &[PathBuf], opts: &Options) -> Loaded {
    let mut loaded = Loaded::default();
    for path in paths {
        if path.as_os_str() == "-" {
            match input_guard::files::read_stdin() {
                Ok(text) => read_text(&mut loaded, "-", &text),
                Err(e) => loaded.failures.push(format!("-: cannot read: {e}")),
            }
        } else if path.is_dir() {
            walk(&mut loaded, path, opts, &mut BTreeSet::new());
        } else {
            read_file(&mut loaded, path);
        }
    }
    loaded
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

fn read_text(loaded: &mut Loaded, name: &str, text: &str) {
    loaded.files += 1;
    match parse_objects(name, text) {
        Ok(objects) => loaded.objects.extend(objects),
        Err(e) => loaded.failures.push(e),
    }
}

fn read_file(loaded: &mut Loaded, path: &Path) {
    match input_guard::files::read_file(path) {
        Ok(text) => read_text(loaded, &display(path), &text),
        Err(e) => loaded
            .failures
            .push(format!("{}: cannot read: {e}", display(path))),
    }
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

fn kustomization_file(dir: &Path) -> Option<PathBuf> {
    KUSTOMIZATION_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
}

/// Sorted entries of a folder, hidden ones (`.git`, `.github`) left out.
fn entries(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    out.sort();
    Ok(out)
}

fn walk(loaded: &mut Loaded, dir: &Path, opts: &Options, seen: &mut BTreeSet<PathBuf>) {
    // A symlink back up the tree would otherwise recurse forever.
    if !seen.insert(dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())) {
        return;
    }
    if let Some(k) = kustomization_file(dir) {
        kustomization(loaded, dir, &k, opts);
        return;
    }
    if dir.join("Chart.yaml").is_file() {
        loaded.notes.push(format!(
            "{}: a Helm chart; its templates are not rendered (lint `helm template` output \
             instead)",
            display(dir)
        ));
        return;
    }
    let entries = match entries(dir) {
        Ok(e) => e,
        Err(e) => {
            loaded
                .failures
                .push(format!("{}: cannot read: {e}", display(dir)));
            return;
        }
    };
    for p in entries {
        if p.is_dir() {
            walk(loaded, &p, opts, seen);
        } else if is_yaml(&p) {
            read_file(loaded, &p);
        }
    }
}

/// Objects of a kustomization read file by file: the files its `resources` (and `bases`,
/// `components`) list, following local folders, with its `namespace` applied. Remote entries
/// are skipped. When the kustomization cannot be read, every YAML file of the folder.
fn kustomization_sources(
    dir: &Path,
    visited: &mut BTreeSet<PathBuf>,
    loaded: &mut Loaded,
) -> Vec<Object> {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    if !visited.insert(canonical) {
        return Vec::new();
    }
    let Some(kfile) = kustomization_file(dir) else {
        return Vec::new();
    };
    let config: Option<Value> = input_guard::files::read_file(&kfile)
        .ok()
        .and_then(|t| input_guard::files::yaml_document(&t).ok());
    let mut objects = Vec::new();
    let listed: Vec<String> = config
        .iter()
        .flat_map(|c| {
            ["resources", "bases", "components"]
                .into_iter()
                .filter_map(|k| c.get(k).and_then(Value::as_array))
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
        })
        .collect();
    if config.is_none() {
        for p in entries(dir).unwrap_or_default() {
            if p.is_file() && is_yaml(&p) && p != kfile {
                objects.extend(file_objects(&p, loaded));
            }
        }
    }
    for entry in listed {
        if entry.contains("://") || entry.starts_with("github.com/") || entry.starts_with("git@") {
            continue;
        }
        let p = normalize(&dir.join(&entry));
        if p.is_dir() {
            objects.extend(kustomization_sources(&p, visited, loaded));
        } else if p.is_file() {
            objects.extend(file_objects(&p, loaded));
        }
    }
    if let Some(ns) = config
        .as_ref()
        .and_then(|c| c.get("namespace"))
        .and_then(Value::as_str)
    {
        for o in &mut objects {
            if let Some(meta) = o.value.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("namespace".to_string(), Value::String(ns.to_string()));
            }
        }
    }
    objects
}

/// `a/b/../c` → `a/c`, without touching the file system, so that findings name files the way
/// the user would (`base/app.yaml`, not `overlays/prod/../../base/app.yaml`).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let last = out.components().next_back();
                if matches!(last, Some(Component::Normal(_))) {
                    out.pop();
                } else if !matches!(last, Some(Component::RootDir | Component::Prefix(_))) {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

fn file_objects(path: &Path, loaded: &mut Loaded) -> Vec<Object> {
    loaded.files += 1;
    match input_guard::files::read_file(path) {
        Ok(text) => match parse_objects(&display(path), &text) {
            Ok(o) => o,
            Err(e) => {
                loaded.failures.push(e);
                Vec::new()
            }
        },
        Err(e) => {
            loaded
                .failures
                .push(format!("{}: cannot read: {e}", display(path)));
            Vec::new()
        }
    }
}

fn kustomization(loaded: &mut Loaded, dir: &Path, kfile: &Path, opts: &Options) {
    let failures_before = loaded.failures.len();
    let sources = kustomization_sources(dir, &mut BTreeSet::new(), loaded);
    if !opts.kustomize {
        loaded.objects.extend(sources);
        return;
    }
    let mut command = Command::new(&opts.kubectl);
    command.arg("kustomize").arg(dir);
    let why = match output_within(command, opts.timeout) {
        Ok(None) => format!(
            "`{} kustomize` did not finish within {}s (remote bases?)",
            opts.kubectl,
            opts.timeout.as_secs()
        ),
        Ok(Some(out)) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let name = format!("{} (kubectl kustomize)", display(dir));
            match parse_objects(&name, &text) {
                Ok(objects) => {
                    // Parse failures of source files only matter for the line mapping.
                    loaded.failures.truncate(failures_before);
                    let kfile = display(kfile);
                    for mut o in objects {
                        o.source = map_back(&o, &sources).unwrap_or_else(|| Source {
                            path: kfile.clone(),
                            line: 1,
                        });
                        loaded.objects.push(o);
                    }
                    return;
                }
                Err(e) => format!("its output does not parse: {e}"),
            }
        }
        Ok(Some(out)) => {
            let err = String::from_utf8_lossy(&out.stderr);
            format!(
                "`{} kustomize` failed: {}",
                opts.kubectl,
                err.lines().next().unwrap_or("").trim()
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            format!("{} not found (not on PATH)", opts.kubectl)
        }
        Err(e) => format!("cannot run {}: {e}", opts.kubectl),
    };
    loaded.notes.push(format!(
        "{}: {why}; read its resources file by file (patches, generators and name \
         transformers not applied)",
        display(dir)
    ));
    loaded.objects.extend(sources);
}

/// Runs a command and collects its output, or kills it after `timeout` (`Ok(None)`). The pipes
/// are drained by threads, so the wait is a channel receive with a deadline, not a poll.
fn output_within(mut command: Command, timeout: Duration) -> std::io::Result<Option<Output>> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    // Both pipes close when the process exits.
    let Ok(out) = stdout.recv_timeout(timeout) else {
        let _ = child.kill();
        let _ = child.wait();
        return Ok(None);
    };
    let err = stderr.recv_timeout(timeout).unwrap_or_default();
    let status = child.wait()?;
    Ok(Some(Output {
        status,
        stdout: out,
        stderr: err,
    }))
}

/// The source of a rendered object: the same kind and name (and a namespace that agrees) in
/// the kustomization's files; else the one object of that kind whose name the rendered name
/// contains (a `namePrefix`/`nameSuffix`).
fn map_back(rendered: &Object, sources: &[Object]) -> Option<Source> {
    let agrees = |s: &&Object| {
        s.kind() == rendered.kind()
            && match (s.namespace(), rendered.namespace()) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    };
    if let Some(s) = sources
        .iter()
        .filter(agrees)
        .find(|s| s.name() == rendered.name())
    {
        return Some(s.source.clone());
    }
    let mut near = sources
        .iter()
        .filter(agrees)
        .filter(|s| !s.name().is_empty() && rendered.name().contains(s.name()));
    match (near.next(), near.next()) {
        (Some(s), None) => Some(s.source.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_point_at_their_kind_line() {
        let text = "# header\napiVersion: v1\nkind: Service\nmetadata: {name: a}\n---\n\n# c\n\
                    metadata: {name: b}\nkind: ConfigMap\n--- {kind: X}\n...\n";
        let docs = split_documents(text);
        let lines: Vec<(usize, Option<usize>)> =
            docs.iter().map(|d| (d.start, d.kind_line)).collect();
        assert_eq!(lines, vec![(2, Some(3)), (8, Some(9)), (10, None)]);
        assert_eq!(docs[2].line(), 10);
    }

    #[test]
    fn objects_without_kind_are_skipped_and_bad_yaml_names_its_line() {
        let o = parse_objects("f.yaml", "a: 1\n---\nkind: Service\nmetadata: {name: x}\n")
            .expect("parses");
        assert_eq!(o.len(), 1);
        assert_eq!(o[0].source.line, 3);
        let e = parse_objects("f.yaml", "kind: A\n---\nkind: [\n").expect_err("bad YAML");
        assert!(e.starts_with("f.yaml:3: not valid YAML"), "{e}");
    }

    fn write(dir: &Path, name: &str, text: &str) {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    #[test]
    fn kustomizations_without_kubectl_are_read_file_by_file_with_their_namespace() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        write(root, "base/kustomization.yaml", "resources: [svc.yaml]\n");
        write(
            root,
            "base/svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: app}\n",
        );
        write(
            root,
            "base/patch.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: app}\n",
        );
        write(
            root,
            "overlay/kustomization.yaml",
            "namespace: prod\nresources: [../base, https://example.invalid/x.yaml]\n",
        );
        write(root, "plain/README.yaml", "title: not an object\n");
        let opts = Options {
            kustomize: true,
            kubectl: "kubectl-that-does-not-exist".to_string(),
            timeout: Duration::from_secs(60),
        };
        let loaded = load(&[root.join("overlay"), root.join("plain")], &opts);
        assert_eq!(loaded.failures, Vec::<String>::new());
        assert_eq!(loaded.objects.len(), 1, "{:?}", loaded.objects);
        let o = &loaded.objects[0];
        assert_eq!(o.namespace(), Some("prod"));
        assert!(o.source.path.ends_with("base/svc.yaml"), "{:?}", o.source);
        assert_eq!(o.source.line, 2);
        assert_eq!(loaded.notes.len(), 1);
        assert!(loaded.notes[0].contains("not found"), "{:?}", loaded.notes);
    }

    #[cfg(unix)]
    #[test]
    fn commands_that_outlive_the_timeout_are_killed() {
        let mut slow = Command::new("sh");
        slow.args(["-c", "sleep 30"]);
        let started = std::time::SystemTime::now();
        assert!(
            output_within(slow, Duration::from_millis(200))
                .expect("sh runs")
                .is_none()
        );
        assert!(started.elapsed().unwrap_or_default() < Duration::from_secs(10));
        let mut quick = Command::new("sh");
        quick.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = output_within(quick, Duration::from_secs(10))
            .expect("sh runs")
            .expect("finishes in time");
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[cfg(unix)]
    #[test]
    fn symlink_loops_are_walked_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        write(
            tmp.path(),
            "a/svc.yaml",
            "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n",
        );
        std::os::unix::fs::symlink(tmp.path(), tmp.path().join("a/loop")).expect("symlink");
        let opts = Options {
            kustomize: false,
            kubectl: "kubectl".to_string(),
            timeout: Duration::from_secs(1),
        };
        let loaded = load(&[tmp.path().to_path_buf()], &opts);
        assert_eq!(loaded.objects.len(), 1);
    }

    #[test]
    fn paths_are_normalized_lexically() {
        assert_eq!(
            normalize(Path::new("repo/overlays/prod/../../base/./app.yaml")),
            PathBuf::from("repo/base/app.yaml")
        );
        assert_eq!(normalize(Path::new("../x/../y")), PathBuf::from("../y"));
        assert_eq!(normalize(Path::new("/a/../../b")), PathBuf::from("/b"));
    }

    #[test]
    fn rendered_objects_map_back_to_their_source() {
        let src = |name: &str, line| {
            Object::new(
                "svc.yaml",
                line,
                serde_json::json!({"kind": "Service", "metadata": {"name": name}}),
            )
        };
        let sources = vec![src("app", 2), src("other", 9)];
        let rendered = |name: &str| {
            Object::new(
                "out",
                1,
                serde_json::json!({"kind": "Service", "metadata": {"name": name, "namespace": "x"}}),
            )
        };
        assert_eq!(
            map_back(&rendered("app"), &sources).map(|s| s.line),
            Some(2)
        );
        assert_eq!(
            map_back(&rendered("prod-other"), &sources).map(|s| s.line),
            Some(9)
        );
        assert_eq!(map_back(&rendered("nothing"), &sources), None);
    }
}
