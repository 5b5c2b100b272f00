//! The `flagger lint` command: arguments, reading the paths, running the rules, printing the
//! findings and picking the exit code.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

use crate::finding::{Finding, Level, Rule};
use crate::settings::{Context, helm_settings};
use crate::{load, rules};

/// Output format of `flagger lint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `path:line: error|warning: Kind/name: message [rule]`, a summary and help on stderr.
    Text,
    /// One JSON document on stdout: findings, notes and counts.
    Json,
}

/// Arguments of `flagger lint`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Exit codes:
  0  no errors (warnings allowed)
  1  errors found: objects the GitOps tool and Flagger would both write
  2  usage, read or parse error (nothing reliable was checked)

Folders are read recursively (*.yaml, *.yml; hidden folders skipped). A folder with a
kustomization.yaml, kustomization.yml or Kustomization file is rendered with
`kubectl kustomize` and each object is reported at the file and line it comes from; without
kubectl its resources are read file by file. See docs/gitops.md.")]
pub struct Args {
    /// Files and folders of manifests; `-` reads standard input.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Provider of Canaries without spec.provider (Flagger's -mesh-provider); default: the
    /// meshProvider of a flagger HelmRelease in the paths, else istio.
    #[arg(long, env = "FLAGGER_LINT_MESH_PROVIDER")]
    pub mesh_provider: Option<String>,
    /// Flagger's -selector-labels (comma list); default: a flagger HelmRelease's
    /// selectorLabels, else app,name,app.kubernetes.io/name.
    #[arg(long, env = "FLAGGER_LINT_SELECTOR_LABELS")]
    pub selector_labels: Option<String>,
    /// Read kustomizations file by file instead of rendering them.
    #[arg(long, env = "FLAGGER_LINT_NO_KUSTOMIZE")]
    pub no_kustomize: bool,
    /// kubectl used for `kubectl kustomize`.
    #[arg(long, env = "FLAGGER_LINT_KUBECTL", default_value = "kubectl")]
    pub kubectl: String,
    /// Longest time one `kubectl kustomize` may take (e.g. 30s, 2m); past it the kustomization
    /// is read file by file.
    #[arg(long, env = "FLAGGER_LINT_KUSTOMIZE_TIMEOUT", default_value = "60s")]
    pub kustomize_timeout: String,
    /// Output format.
    #[arg(long, value_enum, env = "FLAGGER_LINT_FORMAT", default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(args: Args) -> ExitCode {
    let Args {
        paths,
        mesh_provider,
        selector_labels,
        no_kustomize,
        kubectl,
        kustomize_timeout,
        format,
    } = args;
    let timeout = match flagger_core::duration::parse_go_duration(&kustomize_timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("flagger lint: invalid --kustomize-timeout \"{kustomize_timeout}\": {e}");
            return ExitCode::from(2);
        }
    };
    let loaded = load::load(
        &paths,
        &load::Options {
            kustomize: !no_kustomize,
            kubectl,
            timeout,
        },
    );
    let (helm_provider, helm_labels) = helm_settings(&loaded.objects);
    let mut ctx = Context::default();
    if let Some(p) = mesh_provider.or(helm_provider) {
        match flagger_core::model::Provider::parse_flag(&p) {
            Some(p) => {
                ctx.default_provider = p;
                ctx.validation.default_provider = p;
            }
            None => {
                eprintln!("flagger lint: unknown mesh provider \"{p}\"");
                return ExitCode::from(2);
            }
        }
    }
    if let Some(l) = selector_labels.or(helm_labels) {
        ctx.selector_labels = l
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    let findings = rules::lint(&loaded.objects, &ctx);
    let canaries = loaded
        .objects
        .iter()
        .filter(|o| o.kind() == "Canary" && o.group() == flagger_api::GROUP)
        .count();
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings.len() - errors;
    match format {
        Format::Text => {
            print!("{}", render_text(&findings));
            let mut err = String::new();
            if canaries == 0 {
                let _ = writeln!(
                    err,
                    "note: no Canary (flagger.app/v1beta1) in the paths: nothing to check the \
                     other objects against; lint the folder that holds the Canaries too"
                );
            }
            for n in &loaded.notes {
                let _ = writeln!(err, "note: {n}");
            }
            for f in &loaded.failures {
                let _ = writeln!(err, "{f}");
            }
            let used: BTreeSet<Rule> = findings.iter().map(|f| f.rule).collect();
            for r in used {
                let _ = writeln!(err, "help[{}]: {}", r.id(), r.help());
            }
            let _ = writeln!(
                err,
                "{} object(s) from {} file(s), {} Canary(ies): {errors} error(s), {warnings} \
                 warning(s){}",
                loaded.objects.len(),
                loaded.files,
                canaries,
                if loaded.failures.is_empty() {
                    String::new()
                } else {
                    format!(", {} file(s) not read", loaded.failures.len())
                }
            );
            eprint!("{err}");
        }
        Format::Json => {
            let doc = json!({
                "findings": findings.iter().map(finding_json).collect::<Vec<_>>(),
                "notes": loaded.notes,
                "failures": loaded.failures,
                "summary": {
                    "objects": loaded.objects.len(),
                    "files": loaded.files,
                    "canaries": canaries,
                    "errors": errors,
                    "warnings": warnings,
                },
            });
            println!(
                "{}",
                serde_json::to_string_pretty(&doc).unwrap_or_else(|_| doc.to_string())
            );
        }
    }
    if !loaded.failures.is_empty() {
        ExitCode::from(2)
    } else if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One line per finding: `path:line: level: Kind/name: message [rule]`.
pub fn render_text(findings: &[Finding]) -> String {
    let mut s = String::new();
    for f in findings {
        let _ = writeln!(
            s,
            "{}:{}: {}: {}: {} [{}]",
            f.source.path,
            f.source.line,
            f.level.as_str(),
            f.object,
            f.message,
            f.rule.id()
        );
    }
    s
}

fn finding_json(f: &Finding) -> serde_json::Value {
    json!({
        "path": f.source.path,
        "line": f.source.line,
        "level": f.level.as_str(),
        "rule": f.rule.id(),
        "object": f.object,
        "namespace": f.namespace,
        "message": f.message,
        "help": f.rule.help(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Source;

    #[test]
    fn text_lines_follow_the_compiler_format() {
        let f = Finding {
            level: Level::Error,
            rule: Rule::GeneratedService,
            source: Source {
                path: "apps/app/service.yaml".into(),
                line: 2,
            },
            object: "Service/app".into(),
            namespace: None,
            message: "collides".into(),
        };
        assert_eq!(
            render_text(&[f]),
            "apps/app/service.yaml:2: error: Service/app: collides [generated-service]\n"
        );
    }

    #[test]
    fn every_rule_has_an_id_and_help() {
        let ids: BTreeSet<&str> = Rule::ALL.iter().map(|r| r.id()).collect();
        assert_eq!(ids.len(), Rule::ALL.len());
        assert!(Rule::ALL.iter().all(|r| !r.help().is_empty()));
    }
}
