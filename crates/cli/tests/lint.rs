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
        "kustomize.toolkit.fluxcd.io/ssa: IfNotPresent",
        "kustomize.toolkit.fluxcd.io/prune: Disabled",
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

fn write(dir: &std::path::Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// An overlay rendered by `kubectl kustomize`: the objects carry the overlay's namespace and
/// patches, and are reported in the base files they come from.
#[test]
fn overlay_objects_are_reported_in_their_base_files() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    write(
        root,
        "base/kustomization.yaml",
        "resources: [app.yaml, canary.yaml]\n",
    );
    write(
        root,
        "base/app.yaml",
        "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: web:1}]}
---
# the Service Flagger generates as web-primary
apiVersion: v1
kind: Service
metadata: {name: web-primary}
spec: {selector: {app: web}, ports: [{port: 80}]}
",
    );
    write(
        root,
        "base/canary.yaml",
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: web}
spec:
  provider: kubernetes
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {port: 80}
  analysis: {interval: 1m, threshold: 2, iterations: 3}
",
    );
    write(
        root,
        "overlays/prod/kustomization.yaml",
        "namespace: prod
resources: [../../base]
patches:
  - target: {kind: Deployment, name: web}
    patch: |-
      - op: add
        path: /spec/replicas
        value: 5
",
    );
    let overlay = root.join("overlays/prod");
    let out = lint(&["--format", "json", &overlay.display().to_string()], &[]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["notes"], serde_json::json!([]), "rendered by kubectl");
    let base = root.join("base").display().to_string();
    let got: Vec<(String, u64, String, String, String)> = doc["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").replace(&base, "base"),
                f["line"].as_u64().unwrap_or(0),
                f["rule"].as_str().unwrap_or("").to_string(),
                f["object"].as_str().unwrap_or("").to_string(),
                f["namespace"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let row = |p: &str, l, r: &str, o: &str| (p.into(), l, r.into(), o.into(), "prod".into());
    assert_eq!(
        got,
        vec![
            row("base/app.yaml", 2, "target-replicas", "Deployment/web"),
            row(
                "base/app.yaml",
                12,
                "generated-service",
                "Service/web-primary"
            ),
        ]
    );
    let replicas = &doc["findings"][0]["message"];
    assert!(
        replicas.as_str().is_some_and(|m| m.contains("replicas: 5")),
        "the overlay's patch is applied: {replicas}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn standard_input_is_read_with_dash() {
    use std::io::Write;
    use std::process::Stdio;
    let dir = fixture("seed-000");
    let files: Vec<String> = ["canary.yaml", "deployment.yaml", "service.yaml"]
        .iter()
        .map(|f| std::fs::read_to_string(format!("{dir}/apps/app/{f}")).expect("fixture"))
        .collect();
    let input = files.join("---\n");
    let mut child = Command::new(BIN)
        .args(["lint", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let stdout = text(&out.stdout);
    // The Service's `kind:` is line 3 of service.yaml, after the two other files and their
    // separators.
    let line = files[0].lines().count() + 1 + files[1].lines().count() + 1 + 3;
    let expected = format!("-:{line}: error: Service/app: ");
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with(&expected) && l.ends_with("[generated-service]")),
        "{expected} in {stdout}"
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn paths_without_a_canary_pass_with_a_note() {
    let out = lint(&[&format!("{}/clusters", fixture("seed-000"))], &[]);
    assert_eq!(text(&out.stdout), "");
    assert!(
        text(&out.stderr).contains("note: no Canary"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0));
}

/// The provider of a Canary without spec.provider comes from `--mesh-provider`, else from the
/// flagger HelmRelease's `meshProvider`, as the controller's would.
#[test]
fn the_flagger_helm_release_sets_the_default_provider() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(
        tmp.path(),
        "repo.yaml",
        "apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata: {name: flagger, namespace: flagger-system}
spec:
  chart: {spec: {chart: flagger, sourceRef: {kind: HelmRepository, name: flagger}}}
  values: {meshProvider: linkerd}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: web, namespace: shop}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  service: {port: 80}
  analysis: {interval: 1m, threshold: 2, stepWeight: 10, maxWeight: 50}
---
apiVersion: split.smi-spec.io/v1alpha1
kind: TrafficSplit
metadata: {name: web, namespace: shop}
spec: {service: web, backends: []}
",
    );
    let path = tmp.path().display().to_string();
    let out = lint(&[&path], &[]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("repo.yaml:17: error: TrafficSplit/web: ")
            && stdout.contains("the linkerd provider generates"),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1));
    let out = lint(&["--mesh-provider", "kubernetes", &path], &[]);
    assert_eq!(text(&out.stdout), "", "{}", text(&out.stderr));
    assert_eq!(out.status.code(), Some(0));
}
