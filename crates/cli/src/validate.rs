//! `flagger validate FILE...`: offline validation of Canary manifests.
//!
//! For every `flagger.app/v1beta1` document (Canary, MetricTemplate, AlertProvider) in the
//! given multi-document YAML files:
//!
//! 1. the raw document is checked against the generated CRD schema ([`crate::schema_check`]):
//!    fields the API server would prune, and values it would reject;
//! 2. the pruned document is read into the typed resource and, for Canaries, run through
//!    `flagger_core::validate` for the semantic rules of Flagger's controller.
//!
//! Output is one line per finding, `TAG: FILE:DOC (line N) Kind/name: path: message`, where the
//! tag says where the finding comes from, so that what Flagger's API server would do is told
//! apart from what only flagger-rs checks:
//!
//! * `pruned`: a field the API server would silently drop (not in Flagger's schema);
//! * `rejected`: a value the API server would refuse (type, enum, pattern, required, oneOf,
//!   limits), or a document it would not accept at all;
//! * `error`: accepted by Flagger's CRD, but flagger-rs's semantic checks find that Flagger's
//!   controller would fail, hang or do something else than the spec says;
//! * `warning`: accepted, but worth a look.
//!
//! The exit code is 1 when any `pruned`, `rejected` or `error` finding was reported, 0
//! otherwise.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::Value;

use flagger_core::validate::{ValidationContext, diagnose};

use crate::schema_check::{self, Kind, Level};

/// Arguments of `flagger validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// YAML files (multi-document); `-` reads standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Provider used when `spec.provider` is empty (Flagger's `-mesh-provider`).
    #[arg(long, default_value = "istio")]
    pub mesh_provider: String,
    /// Treat cross-namespace references as errors (Flagger's `-no-cross-namespace-refs`).
    #[arg(long)]
    pub no_cross_namespace_refs: bool,
}

pub fn run(args: Args) -> ExitCode {
    let Some(default_provider) = flagger_core::model::Provider::parse_flag(&args.mesh_provider)
    else {
        eprintln!(
            "flagger validate: unknown --mesh-provider {:?}",
            args.mesh_provider
        );
        return ExitCode::from(2);
    };
    let ctx = ValidationContext {
        default_provider,
        no_cross_namespace_refs: args.no_cross_namespace_refs,
        ..ValidationContext::default()
    };
    let mut totals = Totals::default();
    let mut out = String::new();
    for file in &args.files {
        let name = file.display().to_string();
        let text = if name == "-" {
            input_guard::files::read_stdin()
        } else {
            input_guard::files::read_file(file)
        };
        match text {
            Ok(text) => {
                let report = check_text(&name, &text, &ctx);
                totals.add(&report);
                out.push_str(&report.render());
            }
            Err(e) => {
                let _ = writeln!(out, "{name}: cannot read: {e}");
                totals.errors += 1;
            }
        }
    }
    print!("{out}");
    eprintln!(
        "{} Flagger document(s) checked: {} error(s), {} warning(s); of the errors, {} pruned \
         and {} rejected by Flagger's CRD, {} from flagger-rs's checks",
        totals.documents,
        totals.errors,
        totals.warnings,
        totals.pruned,
        totals.rejected,
        totals.errors - totals.pruned - totals.rejected
    );
    if totals.errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[derive(Default)]
struct Totals {
    documents: usize,
    errors: usize,
    warnings: usize,
    pruned: usize,
    rejected: usize,
}

impl Totals {
    fn add(&mut self, r: &FileReport) {
        self.documents += r.documents;
        for l in &r.lines {
            match l.level {
                Level::Error => self.errors += 1,
                Level::Warning => self.warnings += 1,
            }
            match l.tag() {
                Tag::Pruned => self.pruned += 1,
                Tag::Rejected => self.rejected += 1,
                Tag::Error | Tag::Warning => {}
            }
        }
    }
}

/// Where a finding comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The API server would drop the field (Flagger's schema does not have it).
    Pruned,
    /// The API server would refuse the value or the document.
    Rejected,
    /// flagger-rs's own checks (`flagger_core::validate` and the template/provider checks).
    Check,
}

impl Origin {
    fn of(kind: Kind) -> Self {
        match kind {
            Kind::Pruned | Kind::Null => Origin::Pruned,
            Kind::Invalid => Origin::Rejected,
        }
    }
}

/// The tag an output line starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tag {
    Pruned,
    Rejected,
    Error,
    Warning,
}

impl Tag {
    /// The spelling in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            Tag::Pruned => "pruned",
            Tag::Rejected => "rejected",
            Tag::Error => "error",
            Tag::Warning => "warning",
        }
    }
}

/// One output line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub level: Level,
    pub origin: Origin,
    /// `Kind/name`, or empty for problems of the file itself.
    pub object: String,
    /// 1-based document index within the file.
    pub doc: usize,
    /// 1-based line where the document starts.
    pub line: usize,
    pub path: String,
    pub message: String,
}

/// Everything found in one file.
#[derive(Clone, Debug, Default)]
pub struct FileReport {
    pub file: String,
    /// Flagger documents checked.
    pub documents: usize,
    pub lines: Vec<Line>,
}

impl Line {
    /// The output tag: warnings are warnings whatever their origin.
    pub fn tag(&self) -> Tag {
        match (self.level, self.origin) {
            (Level::Warning, _) => Tag::Warning,
            (Level::Error, Origin::Pruned) => Tag::Pruned,
            (Level::Error, Origin::Rejected) => Tag::Rejected,
            (Level::Error, Origin::Check) => Tag::Error,
        }
    }
}

impl FileReport {
    pub fn render(&self) -> String {
        let mut s = String::new();
        for l in &self.lines {
            let _ = writeln!(
                s,
                "{}: {}:{} (line {}) {}: {}: {}",
                l.tag().as_str(),
                self.file,
                l.doc,
                l.line,
                l.object,
                l.path,
                l.message
            );
        }
        s
    }
}

/// The CRD schemas (`openAPIV3Schema`) by kind.
pub fn schemas() -> BTreeMap<String, Value> {
    flagger_api::crd::crds()
        .into_iter()
        .filter_map(|crd| {
            let kind = crd.spec.names.kind.clone();
            let schema = crd
                .spec
                .versions
                .first()?
                .schema
                .as_ref()?
                .open_api_v3_schema
                .as_ref()?;
            Some((kind, serde_json::to_value(schema).ok()?))
        })
        .collect()
}

/// Splits a YAML stream into documents: (1-based first content line, text).
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut docs = Vec::new();
    let mut current = String::new();
    let mut start: Option<usize> = None;
    let mut flush = |current: &mut String, start: &mut Option<usize>| {
        if let Some(line) = start.take() {
            docs.push((line, std::mem::take(current)));
        }
        current.clear();
    };
    for (i, line) in text.lines().enumerate() {
        let is_separator =
            line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "...";
        if is_separator {
            flush(&mut current, &mut start);
            // Content after `--- ` on the same line belongs to the new document.
            let rest = line.strip_prefix("---").unwrap_or("").trim();
            if !rest.is_empty() && !rest.starts_with('#') && line != "..." {
                start = Some(i + 1);
                current.push_str(rest);
                current.push('\n');
            }
            continue;
        }
        let trimmed = line.trim();
        if start.is_none() && !trimmed.is_empty() && !trimmed.starts_with('#') {
            start = Some(i + 1);
        }
        current.push_str(line);
        current.push('\n');
    }
    flush(&mut current, &mut start);
    docs
}

/// Checks every document of one YAML text. No I/O: `file` only names it in the output.
pub fn check_text(file: &str, text: &str, ctx: &ValidationContext) -> FileReport {
    let schemas = schemas();
    let mut report = FileReport {
        file: file.to_string(),
        ..FileReport::default()
    };
    for (index, (line, doc_text)) in split_documents(text).into_iter().enumerate() {
        let doc = index + 1;
        let mut push = |level, origin, object: &str, path: &str, message: String| {
            report.lines.push(Line {
                level,
                origin,
                object: object.to_string(),
                doc,
                line,
                path: path.to_string(),
                message,
            });
        };
        let value: Value = match input_guard::files::yaml_document(&doc_text) {
            Ok(v) => v,
            Err(e) => {
                push(
                    Level::Error,
                    Origin::Rejected,
                    "(yaml)",
                    "(document)",
                    format!("not valid YAML: {e}"),
                );
                continue;
            }
        };
        let Value::Object(map) = &value else {
            continue;
        };
        let api_version = map.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if !api_version.starts_with("flagger.app/") {
            continue;
        }
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("<unnamed>")
            .to_string();
        let object = format!("{kind}/{name}");
        if api_version != flagger_api::API_VERSION {
            push(
                Level::Error,
                Origin::Rejected,
                &object,
                "apiVersion",
                format!(
                    "{api_version} is not served by Flagger's CRDs; use {}",
                    flagger_api::API_VERSION
                ),
            );
            continue;
        }
        let Some(schema) = schemas.get(&kind) else {
            let kinds: Vec<&str> = schemas.keys().map(String::as_str).collect();
            push(
                Level::Error,
                Origin::Rejected,
                &object,
                "kind",
                format!(
                    "`{kind}` is not a Flagger kind ({}).{}",
                    kinds.join(", "),
                    flagger_core::validate::suggest::did_you_mean(&kind, &kinds)
                ),
            );
            continue;
        };
        report.documents += 1;
        let mut pruned = value.clone();
        let findings = schema_check::check(&mut pruned, schema, &kind);
        let mut flagged: Vec<String> = Vec::new();
        let mut lines = Vec::new();
        for f in findings {
            if f.level == Level::Error {
                flagged.push(f.path.clone());
            }
            lines.push((f.level, Origin::of(f.kind), f.path, f.message));
        }
        if pruned.pointer("/metadata/name").is_none() {
            lines.push((
                Level::Error,
                Origin::Rejected,
                "metadata.name".to_string(),
                "missing: every object needs a name".to_string(),
            ));
            flagged.push("metadata.name".to_string());
        }
        match kind.as_str() {
            "Canary" => match serde_json::from_value::<flagger_api::Canary>(pruned) {
                Ok(canary) => {
                    let d = diagnose(&canary, ctx);
                    for p in d.errors {
                        if !flagged.contains(&p.path) {
                            lines.push((Level::Error, Origin::Check, p.path, p.message));
                        }
                    }
                    for p in d.warnings {
                        lines.push((Level::Warning, Origin::Check, p.path, p.message));
                    }
                }
                Err(e) => {
                    if flagged.is_empty() {
                        lines.push((
                            Level::Error,
                            Origin::Check,
                            "(document)".to_string(),
                            format!("cannot be read as a Canary: {e}"),
                        ));
                    }
                }
            },
            "MetricTemplate" => {
                if let Ok(t) = serde_json::from_value::<flagger_api::MetricTemplate>(pruned) {
                    lines.extend(metric_template_warnings(&t));
                }
            }
            "AlertProvider" => {
                if let Ok(a) = serde_json::from_value::<flagger_api::AlertProvider>(pruned) {
                    lines.extend(alert_provider_warnings(&a));
                }
            }
            _ => {}
        }
        for (level, origin, path, message) in lines {
            push(level, origin, &object, &path, message);
        }
    }
    report
}

fn metric_template_warnings(
    t: &flagger_api::MetricTemplate,
) -> Vec<(Level, Origin, String, String)> {
    let mut out = Vec::new();
    let p = &t.spec.provider;
    let needs_address = matches!(
        p.r#type.as_str(),
        "prometheus" | "graphite" | "influxdb" | "dynatrace" | "splunk"
    );
    if needs_address && p.address.as_deref().is_none_or(str::is_empty) {
        out.push((
            Level::Error,
            Origin::Check,
            "spec.provider.address".to_string(),
            format!(
                "the {} provider needs the address of its API, e.g. http://prometheus.monitoring:9090",
                p.r#type
            ),
        ));
    }
    if p.r#type == "cloudwatch" && p.region.as_deref().is_none_or(str::is_empty) {
        out.push((
            Level::Error,
            Origin::Check,
            "spec.provider.region".to_string(),
            "region not specified: the cloudwatch provider needs the AWS region".to_string(),
        ));
    }
    if p.headers.is_some() && p.r#type != "prometheus" {
        out.push((
            Level::Warning,
            Origin::Check,
            "spec.provider.headers".to_string(),
            "only the prometheus provider sends these headers".to_string(),
        ));
    }
    if t.spec.query.trim().is_empty() {
        out.push((
            Level::Error,
            Origin::Check,
            "spec.query".to_string(),
            "empty: write the query to run".to_string(),
        ));
    }
    out
}

fn alert_provider_warnings(a: &flagger_api::AlertProvider) -> Vec<(Level, Origin, String, String)> {
    let mut out = Vec::new();
    if a.spec.address.is_some() && a.spec.secret_ref.is_some() {
        out.push((
            Level::Warning,
            Origin::Check,
            "spec.address".to_string(),
            "ignored: Flagger reads the address from secretRef when both are set".to_string(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_remembers_where_they_start() {
        let text =
            "# header\napiVersion: v1\nkind: A\n---\n\n---\n# c\nkind: B\n--- \nkind: C\n...\n";
        let docs = split_documents(text);
        let starts: Vec<usize> = docs.iter().map(|(l, _)| *l).collect();
        assert_eq!(starts, vec![2, 8, 10]);
    }

    #[test]
    fn reports_schema_and_semantic_problems_once() {
        let text = "apiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: a\nspec:\n  \
                    provider: linkerd\n  targetRef: {apiVersion: apps/v1, kind: Deployment, name: a}\n  \
                    service: {port: 80}\n  analysis: {interval: 1m, threshold: 1, iterations: 5, \
                    stepWeight: 5, mirror: true, delay: 5s}\n";
        let r = check_text("x.yaml", text, &ValidationContext::default());
        let paths: Vec<(&str, Tag)> = r.lines.iter().map(|l| (l.path.as_str(), l.tag())).collect();
        assert_eq!(
            paths,
            vec![
                ("spec.analysis.delay", Tag::Pruned),
                ("spec.analysis", Tag::Rejected),
                ("spec.analysis.mirror", Tag::Error),
            ]
        );
        let rendered = r.render();
        let lines: Vec<&str> = rendered.lines().collect();
        assert!(
            lines[0].starts_with("pruned: x.yaml:1 (line 1) Canary/a: spec.analysis.delay: "),
            "{rendered}"
        );
        assert!(
            lines[1].starts_with("rejected: x.yaml:1 (line 1) Canary/a: spec.analysis: "),
            "{rendered}"
        );
        assert!(
            lines[2].starts_with("error: x.yaml:1 (line 1) Canary/a: spec.analysis.mirror: "),
            "{rendered}"
        );
    }

    #[test]
    fn skips_other_kinds_and_flags_unknown_flagger_kinds() {
        let text = "apiVersion: v1\nkind: Service\n---\napiVersion: flagger.app/v1beta1\nkind: Canaries\nmetadata: {name: x}\n";
        let r = check_text("x.yaml", text, &ValidationContext::default());
        assert_eq!(r.lines.len(), 1);
        assert_eq!(r.lines[0].path, "kind");
        assert_eq!(r.lines[0].doc, 2);
        assert!(r.lines[0].message.contains("Did you mean `Canary`?"));
    }
}
