//! Comparison checks end to end (issue 20): MetricTemplates marked `flagger.app/compare` judge
//! the canary against the primary. localkube's data plane serves podinfo pods whose latency and
//! error ratio come from their pod-template annotations; a real Prometheus scrapes them; the
//! real kubectl applies everything; `flagger controller` runs in-process.
//!
//! * a canary 30% slower than its primary is rolled back by the judge, while a fixed latency
//!   threshold in the same analysis passes it at every check;
//! * a canary erring five times as often as its primary is rolled back by a ratio check, while
//!   a fixed error-rate threshold in the same analysis passes it;
//! * a canary as slow and as erring as an already slow, erring primary is promoted by the
//!   judge and the ratio check, where the fixed thresholds would have failed it (its values,
//!   read from Prometheus during the analysis, are over them).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use flagger_api::CanaryPhase;
use support::load::Load;
use support::{Env, NS, Options};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

/// podinfo with its latency and error ratio set by localkube's data-plane annotations.
fn deployment(image: &str, latency: &str, error_ratio: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {NS}, labels: {{app: podinfo}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata:
      labels: {{app: podinfo}}
      annotations:
        prometheus.io/scrape: "true"
        localkube.dev/latency: {latency}
        localkube.dev/error-ratio: "{error_ratio}"
    spec:
      containers:
      - name: podinfod
        image: {image}
        ports: [{{name: http, containerPort: 9898}}]
        readinessProbe: {{httpGet: {{port: 9898, path: /readyz}}, periodSeconds: 2}}
"#
    )
}

/// The mean latency (seconds) of podinfo's `/` over the last 2s, of the pods of the workload
/// `{{ target }}`: the canary's (`podinfo`) or, in a comparison, the primary's too.
const LATENCY_QUERY: &str = r#"sum(rate(http_request_duration_seconds_sum{kubernetes_namespace="{{ namespace }}",app="{{ target }}",path="root"}[2s])) / sum(rate(http_request_duration_seconds_count{kubernetes_namespace="{{ namespace }}",app="{{ target }}",path="root"}[2s]))"#;

/// The percentage of 5xx answers over the metric's interval.
const ERRORS_QUERY: &str = r#"100 * sum(rate(http_requests_total{kubernetes_namespace="{{ namespace }}",app="{{ target }}",status=~"5.."}[{{ interval }}])) / sum(rate(http_requests_total{kubernetes_namespace="{{ namespace }}",app="{{ target }}"}[{{ interval }}]))"#;

/// Four templates: the fixed checks as Flagger runs them, and the same queries marked for
/// comparison (the judge for latency, a ratio for errors). `provider.type` stays `prometheus`.
fn templates(prometheus: &str) -> String {
    let template = |name: &str, annotations: &str, query: &str| {
        format!(
            r#"---
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: {name}
  namespace: {NS}
  annotations: {{{annotations}}}
spec:
  provider: {{type: prometheus, address: "{prometheus}"}}
  query: '{query}'
"#
        )
    };
    [
        template("latency", "", LATENCY_QUERY),
        template(
            "latency-vs-primary",
            r#"flagger.app/compare: judge, flagger.app/compare-step: 1s, flagger.app/compare-options: "{direction: increase, effectSize: {allowedIncrease: 1.1}}""#,
            LATENCY_QUERY,
        ),
        template("errors", "", ERRORS_QUERY),
        template(
            "errors-vs-primary",
            "flagger.app/compare: ratio",
            ERRORS_QUERY,
        ),
    ]
    .concat()
}

/// A blue/green Canary (no mesh: the kubernetes provider) with these metrics.
fn canary(threshold: u32, iterations: u32, metrics: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  service: {{port: 80, targetPort: 9898}}
  analysis:
    interval: 2s
    threshold: {threshold}
    iterations: {iterations}
    metrics:
{metrics}
"#
    )
}

/// The fixed latency check (at most 500ms) then the judge (a score of at least 95 over 10s).
const LATENCY_METRICS: &str = r#"    - name: latency-fixed
      interval: 2s
      templateRef: {name: latency}
      thresholdRange: {max: 0.5}
    - name: latency-judge
      interval: 10s
      templateRef: {name: latency-vs-primary}
      thresholdRange: {min: 95}"#;

/// The fixed error-rate check (at most 15%) then the ratio (at most twice the primary's).
const ERROR_METRICS: &str = r#"    - name: errors-fixed
      interval: 10s
      templateRef: {name: errors}
      thresholdRange: {max: 15}
    - name: errors-ratio
      interval: 10s
      templateRef: {name: errors-vs-primary}
      thresholdRange: {max: 2}"#;

/// Localkube with its data plane, Prometheus scraping the pods, the templates, podinfo as
/// given and its Canary initialized; load on the canary's and the primary's Services.
async fn start(latency: &str, error_ratio: &str, canary_spec: &str) -> (Env, [Load; 2]) {
    let env = Env::start(Options {
        prometheus: true,
        dataplane: true,
        no_exporter: true,
        ..Default::default()
    })
    .await;
    let prometheus = env.prometheus.as_ref().expect("prometheus").url();
    env.apply(&templates(&prometheus)).await;
    env.apply(&deployment(
        &format!("{PODINFO}:6.0.0"),
        latency,
        error_ratio,
    ))
    .await;
    env.apply(canary_spec).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    let loads = [
        Load::start(&env, "http://podinfo-primary.test/", 20),
        Load::start(&env, "http://podinfo-canary.test/", 20),
    ];
    (env, loads)
}

/// Halt events of the check `name`, oldest first.
async fn halts(env: &Env, name: &str) -> Vec<String> {
    env.events("podinfo")
        .await
        .into_iter()
        .filter(|m| m.starts_with(&format!("Halt podinfo.test advancement {name}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_judge_rolls_back_a_canary_30_percent_slower_that_a_fixed_threshold_passes() {
    let (env, _load) = start("100ms-140ms", "0", &canary(5, 20, LATENCY_METRICS)).await;
    // The new revision answers 30% slower.
    env.apply(&deployment(&format!("{PODINFO}:6.0.1"), "130ms-182ms", "0"))
        .await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    let judge = halts(&env, "latency-judge").await;
    let last = judge.last().expect("the judge halted the canary");
    assert!(
        last.contains("the judge fails the canary against the primary: score 0.00 < 95")
            && last.contains("High: canary higher: the 98% interval of the shift")
            && last.contains("meanRatio 1.")
            && last.contains("points, median 0.1"),
        "{judge:#?}"
    );
    // Under 500ms at every check: the fixed threshold passed it.
    assert_eq!(halts(&env, "latency-fixed").await, Vec::<String>::new());
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.0")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_check_rolls_back_a_canary_erring_five_times_as_often_that_a_fixed_threshold_passes()
 {
    let (env, _load) = start("1ms", "0.02", &canary(5, 20, ERROR_METRICS)).await;
    env.apply(&deployment(&format!("{PODINFO}:6.0.1"), "1ms", "0.1"))
        .await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    let ratio = halts(&env, "errors-ratio").await;
    let last = ratio.last().expect("the ratio check halted the canary");
    assert!(
        last.starts_with("Halt podinfo.test advancement errors-ratio: canary ")
            && last.contains("is above the maximum 2"),
        "{ratio:#?}"
    );
    // About 10%, under 15% at every check.
    assert_eq!(halts(&env, "errors-fixed").await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_as_good_as_a_slow_erring_primary_is_promoted_where_fixed_thresholds_fail_it() {
    let metrics = r#"    - name: latency-judge
      interval: 10s
      templateRef: {name: latency-vs-primary}
      thresholdRange: {min: 95}
    - name: errors-ratio
      interval: 10s
      templateRef: {name: errors-vs-primary}
      thresholdRange: {max: 2}"#;
    // A primary already slow (600-700ms, over the fixed 500ms) and erring 30% of the time
    // (over the fixed 15%): the fixed checks of LATENCY_METRICS and ERROR_METRICS would fail a
    // canary exactly as good.
    let (env, _load) = start("600ms-700ms", "0.3", &canary(5, 4, metrics)).await;
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/podinfo",
        &format!("podinfod={PODINFO}:6.0.1"),
    ])
    .await;
    env.wait_event("podinfo", "latency-judge: the judge passes the canary")
        .await;
    env.wait_event("podinfo", "errors-ratio: canary ").await;
    // What the fixed checks would have read for the canary now: over both of their thresholds
    // (latency-fixed: at most 0.5s; errors-fixed: at most 15%).
    let prom = env.prometheus.as_ref().expect("prometheus");
    let fixed = |q: &str, interval: &str| {
        q.replace("{{ namespace }}", NS)
            .replace("{{ target }}", "podinfo")
            .replace("{{ interval }}", interval)
    };
    let latency = prom
        .query(&fixed(LATENCY_QUERY, "2s"))
        .await
        .expect("the canary's latency");
    assert!(latency > 0.5, "the canary's mean latency {latency}s");
    let errors = prom
        .query(&fixed(ERRORS_QUERY, "10s"))
        .await
        .expect("the canary's error rate");
    assert!(errors > 15.0, "the canary's error rate {errors}%");

    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    assert_eq!(
        env.jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image"
        )
        .await,
        format!("{PODINFO}:6.0.1")
    );
    let events = env.events("podinfo").await;
    let passed = events
        .iter()
        .rfind(|m| m.contains("latency-judge: the judge passes"))
        .expect("a pass");
    assert!(
        passed.contains("score 100.00 >= 95, verdict Pass over the last 10s every 1s; Pass: no clear shift: the 98% interval"),
        "{events:#?}"
    );
    let ratio = events
        .iter()
        .rfind(|m| m.starts_with("podinfo.test errors-ratio: canary "))
        .expect("a ratio within bounds");
    assert!(ratio.ends_with("is within bounds"), "{events:#?}");
}
