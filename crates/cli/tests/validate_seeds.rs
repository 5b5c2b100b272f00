//! `flagger validate` on the Flagger manifests of the five seed stories
//! (`tests/fixtures/seeds/`, written by hand from the seed texts; seed 000 has no manifest).
//!
//! Each fixture either passes, or the binary reports exactly the fields Flagger's CRD would
//! prune (`pruned:`) or reject (`rejected:`), told apart from the semantic problems only
//! flagger-rs reports (`error:`, `warning:`), which Flagger's API server accepts.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_flagger");

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/seeds")
        .join(name)
}

/// The tag an output line starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    /// Flagger's API server would drop the field.
    Pruned,
    /// Flagger's API server would refuse the value.
    Rejected,
    /// Accepted by Flagger's CRD; flagger-rs's semantic checks fail it.
    Error,
    Warning,
}

/// One parsed output line.
#[derive(Debug, PartialEq, Eq)]
struct Reported {
    tag: Tag,
    doc: usize,
    object: String,
    path: String,
    message: String,
}

fn parse(stdout: &str) -> Vec<Reported> {
    stdout
        .lines()
        .map(|l| {
            // TAG: FILE:DOC (line N) Kind/name: path: message
            let (tag, rest) = l.split_once(": ").expect("`TAG: ` in output line");
            let tag = match tag {
                "pruned" => Tag::Pruned,
                "rejected" => Tag::Rejected,
                "error" => Tag::Error,
                "warning" => Tag::Warning,
                other => panic!("unknown tag {other:?} in {l:?}"),
            };
            let (head, tail) = rest.split_once(") ").expect("`(line N) ` in output line");
            let doc = head
                .rsplit_once(" (line ")
                .and_then(|(file_doc, _)| file_doc.rsplit_once(':'))
                .and_then(|(_, d)| d.parse().ok())
                .expect("doc index");
            let (object, tail) = tail.split_once(": ").expect("object");
            let (path, message) = tail.split_once(": ").expect("path");
            Reported {
                tag,
                doc,
                object: object.to_string(),
                path: path.to_string(),
                message: message.to_string(),
            }
        })
        .collect()
}

fn run(files: &[&str]) -> (i32, Vec<Reported>) {
    let out = Command::new(BIN)
        .arg("validate")
        .args(files.iter().map(|f| fixture(f)))
        .output()
        .expect("run flagger validate");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    (out.status.code().unwrap_or(-1), parse(&stdout))
}

/// Asserts the exact (tag, doc, path) triples, in order.
fn assert_reports(file: &str, want_exit: i32, want: &[(Tag, usize, &str)]) -> Vec<Reported> {
    let (code, got) = run(&[file]);
    let triples: Vec<(Tag, usize, &str)> = got
        .iter()
        .map(|r| (r.tag, r.doc, r.path.as_str()))
        .collect();
    assert_eq!(triples, want, "{file}: reported {got:#?}");
    assert_eq!(code, want_exit, "{file}: exit code");
    got
}

use Tag::{Error as E, Pruned as P, Rejected as R, Warning as W};

#[test]
fn seed001_crd_example_passes() {
    assert_reports("seed001-crd-example.yaml", 0, &[]);
}

#[test]
fn seed001_flux_canary_passes() {
    assert_reports("seed001-flux-canary.yaml", 0, &[]);
}

#[test]
fn seed001_metric_template_passes() {
    assert_reports("seed001-metric-template.yaml", 0, &[]);
}

#[test]
fn seed001_strategies_mirror_metric_without_a_source() {
    let got = assert_reports(
        "seed001-strategies.yaml",
        1,
        &[(E, 4, "spec.analysis.metrics[1]")],
    );
    assert_eq!(got[0].object, "Canary/mirror");
    assert!(got[0].message.contains("neither templateRef nor query"));
}

#[test]
fn seed001_alerts_excerpt_lacks_target_and_schedule() {
    assert_reports(
        "seed001-alerts.yaml",
        1,
        &[
            (R, 1, "spec.targetRef"),
            (R, 1, "spec.analysis.interval"),
            (R, 1, "spec.analysis.threshold"),
            (R, 1, "spec.analysis"),
        ],
    );
}

#[test]
fn seed001_best_practices_message_template_is_pruned() {
    let got = assert_reports(
        "seed001-best-practices.yaml",
        1,
        &[
            (P, 1, "spec.messageTemplate"),
            (R, 2, "spec.targetRef"),
            (R, 2, "spec.analysis.interval"),
            (R, 2, "spec.analysis.threshold"),
            (R, 2, "spec.analysis"),
            (R, 3, "spec.targetRef"),
            (R, 3, "spec.analysis"),
        ],
    );
    assert_eq!(got[0].object, "AlertProvider/slack-oncall");
    assert!(
        got[0].message.starts_with(
            "not a field of Flagger's AlertProvider CRD; the API server would drop it"
        )
    );
    assert!(
        got[6]
            .message
            .contains("sets `iterations`, `stepWeight` together"),
        "{}",
        got[6].message
    );
}

#[test]
fn seed001_advanced_can_not_use_canary_analysis() {
    let got = assert_reports(
        "seed001-advanced.yaml",
        1,
        &[
            (R, 1, "spec.targetRef"),
            (R, 1, "spec.analysis.interval"),
            (R, 1, "spec.analysis.threshold"),
            (R, 1, "spec.analysis"),
            (R, 3, "spec.targetRef"),
            (R, 3, "spec.analysis.interval"),
            (R, 3, "spec.analysis.threshold"),
            (R, 3, "spec.analysis"),
            (R, 4, "spec.targetRef"),
            (R, 4, "spec.analysis.interval"),
            (R, 4, "spec.analysis.threshold"),
            (R, 4, "spec.analysis"),
            (P, 5, "spec.analysis.canaryAnalysis"),
            (R, 5, "spec.analysis.interval"),
            (R, 5, "spec.analysis.threshold"),
            (R, 5, "spec.analysis"),
            (E, 5, "spec.service"),
        ],
    );
    let pruned = &got[12];
    assert_eq!(pruned.object, "Canary/myapp");
    assert!(
        pruned
            .message
            .contains("not a field of Flagger's Canary CRD; the API server would drop it")
    );
}

#[test]
fn seed001_multi_region_excerpts_lack_target_and_threshold() {
    assert_reports(
        "seed001-multi-region.yaml",
        1,
        &[
            (R, 1, "spec.targetRef"),
            (R, 1, "spec.analysis.threshold"),
            (R, 2, "spec.targetRef"),
            (R, 2, "spec.analysis.threshold"),
        ],
    );
}

#[test]
fn seed001_real_world_examples() {
    let got = assert_reports(
        "seed001-real-world.yaml",
        1,
        &[
            (W, 1, "spec.analysis.metrics[0].name"),
            (R, 2, "spec.analysis.threshold"),
            (R, 2, "spec.analysis.interval"),
            (R, 2, "spec.analysis.metrics[1].interval"),
            (R, 2, "spec.analysis.metrics[2].interval"),
            (R, 3, "spec.analysis.threshold"),
            (R, 4, "spec.analysis.threshold"),
        ],
    );
    assert!(got[2].message.contains("(1h is 60m)"), "{}", got[2].message);
}

#[test]
fn seed002_nginx_canary_passes() {
    assert_reports("seed002-nginx-podinfo.yaml", 0, &[]);
}

#[test]
fn seed002_linkerd_canary_passes() {
    assert_reports("seed002-linkerd-podinfo.yaml", 0, &[]);
}

#[test]
fn seed003_frontend_ab_test_passes() {
    assert_reports("seed003-frontend-ab.yaml", 0, &[]);
}

#[test]
fn seed004_blue_green_passes_with_an_hpa_version_warning() {
    let got = assert_reports(
        "seed004-podinfo-bluegreen.yaml",
        0,
        &[(W, 1, "spec.autoscalerRef.apiVersion")],
    );
    assert!(got[0].message.contains("autoscaling/v2beta2 was removed"));
}

#[test]
fn several_files_and_stdin() {
    let text = std::fs::read_to_string(fixture("seed001-strategies.yaml")).expect("fixture");
    let mut child = Command::new(BIN)
        .args(["validate", "-"])
        .arg(fixture("seed002-nginx-podinfo.yaml"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("error: -:4 (line 114) Canary/mirror: spec.analysis.metrics[1]: "),
        "{stdout}"
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "5 Flagger document(s) checked: 1 error(s), 0 warning(s); of the errors, 0 pruned \
             and 0 rejected by Flagger's CRD, 1 from flagger-rs's checks"
        ),
        "{stderr}"
    );
}
