//! `flagger lint` run as a binary on the seed-000 repositories (`tests/fixtures/lint/`): the
//! broken one (a Service `app` in Git that Flagger generates, replicas on the target) and the
//! fixed one. Also the exit codes CI relies on: 0 clean, 1 errors, 2 unreadable input.

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_flagger");

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/lint")
        .join(name)
        .display()
        .to_string()
}

fn lint(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("lint").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run flagger lint")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The findings on the broken seed repository, whichever way the kustomization was read.
fn assert_seed_findings(out: &Output) {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let dir = fixture("seed-000");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let deployment = format!("{dir}/apps/app/deployment.yaml:2: warning: Deployment/app: ");
    let service = format!("{dir}/apps/app/service.yaml:3: error: Service/app: ");
    assert!(lines[0].starts_with(&deployment), "{stdout}");
    assert!(lines[0].ends_with("[target-replicas]"), "{stdout}");
    assert!(lines[1].starts_with(&service), "{stdout}");
    assert!(lines[1].ends_with("[generated-service]"), "{stdout}");
    for part in [
        "apex Service",
        "{app: app-primary}",
        "with {app: app}",
        "503",
    ] {
        assert!(lines[1].contains(part), "{part:?} in {stdout}");
    }
    // The remedies, once, on stderr.
    for part in [
        "help[generated-service]:",
        "kustomize.toolkit.fluxcd.io/reconcile: disabled",
        "argocd.argoproj.io/compare-options: IgnoreExtraneous",
        "ignoreDifferences",
        "help[target-replicas]:",
        "1 error(s), 1 warning(s)",
    ] {
        assert!(stderr.contains(part), "{part:?} in {stderr}");
    }
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}

#[test]
fn seed_000_reports_the_app_service_collision_rendered_by_kustomize() {
    let out = lint(&[&fixture("seed-000")], &[]);
    assert_seed_findings(&out);
    // kubectl rendered the kustomization: no note about reading it file by file.
    assert!(
        !text(&out.stderr).contains("note:"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn seed_000_reports_the_same_without_kubectl() {
    let out = lint(
        &[&fixture("seed-000")],
        &[("FLAGGER_LINT_KUBECTL", "/nonexistent/kubectl")],
    );
    assert_seed_findings(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("note: ") && stderr.contains("file by file"),
        "{stderr}"
    );
}

#[test]
fn seed_000_fixed_is_clean() {
    for env in [vec![], vec![("FLAGGER_LINT_NO_KUSTOMIZE", "true")]] {
        let out = lint(&[&fixture("seed-000-fixed")], &env);
        assert_eq!(text(&out.stdout), "", "{}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("1 Canary(ies): 0 error(s), 0 warning(s)"),
            "{}",
            text(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(0));
    }
}

#[test]
fn json_output_lists_the_findings() {
    let out = lint(&["--format", "json", &fixture("seed-000")], &[]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let findings = doc["findings"].as_array().expect("findings");
    let service = findings
        .iter()
        .find(|f| f["rule"] == "generated-service")
        .expect("the Service finding");
    assert_eq!(service["object"], "Service/app");
    assert_eq!(service["namespace"], "app");
    assert_eq!(service["level"], "error");
    assert_eq!(service["line"], 3);
    assert!(
        service["path"]
            .as_str()
            .is_some_and(|p| p.ends_with("seed-000/apps/app/service.yaml"))
    );
    assert_eq!(doc["summary"]["errors"], 1);
    assert_eq!(doc["summary"]["warnings"], 1);
}

#[test]
fn unreadable_or_unparsable_input_exits_2() {
    let out = lint(&["/nonexistent/manifests.yaml"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: Service\n---\nkind: [\n").expect("write");
    let out = lint(&[&bad.display().to_string()], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("bad.yaml:4: not valid YAML"),
        "{}",
        text(&out.stderr)
    );
    let out = lint(
        &["--mesh-provider", "nope", &fixture("seed-000-fixed")],
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn help_documents_the_exit_codes() {
    let out = lint(&["--help"], &[]);
    let stdout = text(&out.stdout);
    for part in ["Exit codes:", "0  no errors", "1  errors found", "2  usage"] {
        assert!(stdout.contains(part), "{part:?} in {stdout}");
    }
}
