//! Canaries analysed with each hosted provider's MetricTemplate, end to end: localkube, the
//! real kubectl, `flagger controller` in-process, and the provider's API-faithful fake
//! (`support/fakes`) answering scripted values per phase: a healthy value while the first
//! revision is analysed (promoted), a failing one for the next (rolled back).

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use flagger_api::CanaryPhase;
use futures::future::BoxFuture;
use support::fakes::{self, Answer, State};
use support::{Env, NS, Options};

const PODINFO: &str = "ghcr.io/stefanprodan/podinfo";

fn workload(tag: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: podinfo, namespace: {NS}, labels: {{app: podinfo}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: podinfo}}}}
  template:
    metadata: {{labels: {{app: podinfo}}}}
    spec:
      containers:
      - name: podinfod
        image: {PODINFO}:{tag}
        ports: [{{name: http, containerPort: 9898}}]
"#
    )
}

/// A Canary analysed by one template metric (`error-rate`, at most 1) every second.
fn canary(template: &str) -> String {
    format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: {NS}}}
spec:
  provider: kubernetes
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  progressDeadlineSeconds: 60
  service: {{port: 80, targetPort: http}}
  analysis:
    interval: 1s
    threshold: 2
    iterations: 3
    metrics:
    - name: error-rate
      templateRef: {{name: {template}}}
      thresholdRange: {{max: 1}}
      interval: 1m
"#
    )
}

fn secret(name: &str, data: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NS}}}\nstringData:\n"
    );
    for (k, v) in data {
        yaml.push_str(&format!("  {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    yaml
}

fn template(name: &str, provider: &str, query: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1\nkind: MetricTemplate\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  provider: {provider}\n  query: {}\n",
        serde_json::to_string(query).unwrap()
    )
}

async fn set_image(env: &Env, tag: &str) {
    env.kubectl(&[
        "-n",
        NS,
        "set",
        "image",
        "deployment/podinfo",
        &format!("podinfod={PODINFO}:{tag}"),
    ])
    .await;
}

/// Promotes 6.0.1 while the provider answers `good`, then rolls 6.0.2 back while it answers
/// `bad`; returns the canary's events.
async fn promote_then_roll_back(
    env: &Env,
    template: &str,
    state: &State,
    good: f64,
    bad: f64,
) -> Vec<String> {
    let set = |v: f64| -> BoxFuture<'static, ()> {
        state.set(Answer::Value(v));
        Box::pin(async {})
    };
    promote_then_roll_back_with(env, template, &set, good, bad).await
}

/// [`promote_then_roll_back`] with the values set by `set`.
async fn promote_then_roll_back_with(
    env: &Env,
    template: &str,
    set: &dyn Fn(f64) -> BoxFuture<'static, ()>,
    good: f64,
    bad: f64,
) -> Vec<String> {
    set(good).await;
    env.apply(&workload("6.0.0")).await;
    env.apply(&canary(template)).await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    set_image(env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    let primary = env
        .jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image",
        )
        .await;
    assert_eq!(primary, format!("{PODINFO}:6.0.1"));

    set(bad).await;
    set_image(env, "6.0.2").await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    let primary = env
        .jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image",
        )
        .await;
    assert_eq!(
        primary,
        format!("{PODINFO}:6.0.1"),
        "the primary keeps the promoted revision"
    );
    let events = env.events("podinfo").await;
    for text in [
        "all the metrics providers are available!",
        "Promotion completed! Scaling down podinfo.test",
        &format!("Halt podinfo.test advancement error-rate {bad:.2} > 1"),
        "Rolling back podinfo.test failed checks threshold reached 2",
    ] {
        assert!(
            events.iter().any(|e| e == text),
            "{text:?} not in {events:#?}"
        );
    }
    events
}

/// A canary analysed by a hosted provider's template (`{type: <provider>, address: <the
/// fake>, secretRef: {name: <provider>}}` and its Secret), promoted while the fake answers
/// `good`, rolled back while it answers `bad`.
async fn hosted(
    provider: &str,
    (url, state): (&str, &State),
    secret_data: &[(&str, &str)],
    query: &str,
    (good, bad): (f64, f64),
) {
    let env = Env::start(Options::default()).await;
    env.apply(&secret(provider, secret_data)).await;
    env.apply(&template(
        "error-rate",
        &format!("{{type: {provider}, address: \"{url}\", secretRef: {{name: {provider}}}}}"),
        query,
    ))
    .await;
    promote_then_roll_back(&env, "error-rate", state, good, bad).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_001_datadog_template_promotes_and_rolls_back() {
    let (dd, url) = fakes::datadog::Datadog::start().await;
    // Seed 001's template, as its user wrote it.
    hosted(
        "datadog",
        (&url, &dd.state),
        &[
            ("datadog_api_key", fakes::datadog::API_KEY),
            ("datadog_application_key", fakes::datadog::APPLICATION_KEY),
        ],
        "avg:trace.http.request.errors{service:{{ target }}} / avg:trace.http.request.hits{service:{{ target }}} * 100",
        (0.35, 4.0),
    )
    .await;
    let queries = dd.state.seen_at("/api/v1/query");
    assert!(queries.iter().all(|s| s.query["query"]
        == "avg:trace.http.request.errors{service:podinfo} / avg:trace.http.request.hits{service:podinfo} * 100"));
    assert!(
        queries
            .iter()
            .all(|s| s.headers["dd-api-key"] == fakes::datadog::API_KEY)
    );
    assert_eq!(
        dd.state.seen_at("/api/v1/validate").len(),
        2,
        "one availability check per revision"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newrelic_template_promotes_and_rolls_back() {
    let (nr, url) = fakes::newrelic::NewRelic::start().await;
    hosted(
        "newrelic",
        (&url, &nr.state),
        &[
            ("newrelic_account_id", fakes::newrelic::ACCOUNT),
            ("newrelic_query_key", fakes::newrelic::QUERY_KEY),
        ],
        "SELECT filter(count(*), WHERE `error` IS true) / count(*) * 100 FROM Transaction WHERE appName = '{{ target }}'",
        (0.5, 3.0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynatrace_template_promotes_and_rolls_back() {
    let (dt, url) = fakes::dynatrace::Dynatrace::start().await;
    hosted(
        "dynatrace",
        (&url, &dt.state),
        &[("dynatrace_token", fakes::dynatrace::TOKEN)],
        "builtin:service.errors.total.rate:filter(eq(\"dt.entity.service\",\"{{ target }}\")):avg",
        (0.1, 2.5),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_template_promotes_and_rolls_back() {
    let (db, url) = fakes::influxdb::InfluxDb::start().await;
    hosted(
        "influxdb",
        (&url, &db.state),
        &[
            ("token", fakes::influxdb::TOKEN),
            ("org", fakes::influxdb::ORG),
        ],
        "from(bucket: \"apps\") |> range(start: -{{ interval }}) |> filter(fn: (r) => r.app == \"{{ target }}\") |> mean()",
        (0.2, 7.0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_template_promotes_and_rolls_back() {
    let (sp, url) = fakes::splunk::Splunk::start().await;
    hosted(
        "splunk",
        (&url, &sp.state),
        &[("sf_token_key", fakes::splunk::TOKEN)],
        "data('errors', filter=filter('service', '{{ target }}')).sum().publish()",
        (0.3, 9.0),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stackdriver_template_promotes_and_rolls_back() {
    let (gcp, url, key) = fakes::gcp::Gcp::start().await;
    hosted(
        "stackdriver",
        (&url, &gcp.state),
        &[
            ("project", fakes::gcp::PROJECT),
            ("serviceAccountKey", &key),
        ],
        "fetch k8s_container | metric 'istio.io/service/server/request_count' | filter resource.namespace_name == '{{ namespace }}' | every 1m",
        (0.25, 6.0),
    )
    .await;
}

/// [`workload`] as Flagger's tutorials run podinfo, its metrics on their own port
/// (`--port-metrics`, where its scrapes are not counted among the requests it answers), and
/// this share of its requests answered with 500 by localkube's data plane.
fn workload_on_the_dataplane(tag: &str, error_ratio: &str) -> String {
    workload(tag)
        .replace(
            "    metadata: {labels: {app: podinfo}}\n",
            &format!(
                "    metadata: {{labels: {{app: podinfo}}, annotations: {{{}: \"{error_ratio}\"}}}}\n",
                localkube::dataplane::ERROR_RATIO
            ),
        )
        .replace(
            "        ports: [{name: http, containerPort: 9898}]\n",
            "        command: [./podinfo, --port=9898, --port-metrics=9797]\n        ports: [{name: http, containerPort: 9898}, {name: http-metrics, containerPort: 9797}]\n",
        )
}

/// Graphite for real, fed by the data plane's requests: Debian's carbon-cache and graphite-web,
/// and a relay writing every second what each pod answered (`support::graphite`); load goes to
/// the canary's Service through localkube's data plane, whose pods answer it. The template is
/// an error percentage as a Flagger user writes it over such counters: the canary's 5xx
/// answers per second as a percentage of all its answers, over the metric's interval (3s: a
/// check reads the pods answering now, never more than a check or two of the previous
/// revision's last seconds). 6.0.1 answers every request and is promoted on the zeros read;
/// 6.0.2 answers half of them with 500 (the data plane's error-ratio annotation) and is rolled
/// back on that value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphite_template_promotes_and_rolls_back_on_the_pods_requests() {
    let env = Env::start(Options {
        dataplane: true,
        no_exporter: true,
        ..Default::default()
    })
    .await;
    let graphite = support::graphite::Graphite::start().await;
    graphite.relay(env.kube.dataplane.as_ref().expect("data plane"), NS);
    let _load = support::load::Load::start(&env, "http://podinfo-canary.test/", 20);
    env.apply(&template(
        "error-rate",
        &format!("{{type: graphite, address: \"{}\"}}", graphite.url),
        "target=asPercent(
            sumSeries(perSecond(flagger.{{ namespace }}.{{ target }}.*.5xx)),
            sumSeries(perSecond(flagger.{{ namespace }}.{{ target }}.*.*)))
         &from=-{{ interval }}",
    ))
    .await;
    env.apply(&workload_on_the_dataplane("6.0.0", "0")).await;
    // Points reach Graphite a second or two after a new canary pod serves its first requests:
    // a few checks without values are tolerated (a check without values does not advance).
    env.apply(
        &canary("error-rate")
            .replace("threshold: 2", "threshold: 8")
            .replace("interval: 1m", "interval: 3s"),
    )
    .await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;

    env.apply(&workload_on_the_dataplane("6.0.2", "0.5")).await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    let primary = env
        .jsonpath(
            "deployment/podinfo-primary",
            ".spec.template.spec.containers[0].image",
        )
        .await;
    assert_eq!(primary, format!("{PODINFO}:6.0.1"));
    let events = env.events("podinfo").await;
    assert!(
        events.iter().any(|e| e
            .strip_prefix("Halt podinfo.test advancement error-rate ")
            .and_then(|r| r.strip_suffix(" > 1"))
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| (20.0..=80.0).contains(&v))),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e == "all the metrics providers are available!"),
        "{events:#?}"
    );
}

/// Keptn: the KeptnMetric Keptn's operator keeps up to date (set by the test per phase).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_template_promotes_and_rolls_back() {
    let env = Env::start(Options::default()).await;
    env.apply(support::keptn::CRDS).await;
    env.apply(&template(
        "error-rate",
        "{type: keptn}",
        "keptnmetric/{{ namespace }}/{{ target }}-error-rate",
    ))
    .await;
    let client = env.client.clone();
    let set = move |v: f64| -> BoxFuture<'static, ()> {
        let client = client.clone();
        Box::pin(async move {
            support::keptn::set_metric(&client, NS, "podinfo-error-rate", &v.to_string()).await
        })
    };
    promote_then_roll_back_with(&env, "error-rate", &set, 0.15, 2.0).await;
}

/// Keptn's Analysis: each check creates an Analysis (definition, timeframe, arguments) that
/// Keptn's operator, played by the test, completes; a pass reads 1, a failure 0, so the metric
/// asks for at least 1. The controller deletes each Analysis once read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_analysis_template_promotes_and_rolls_back() {
    let env = Env::start(Options::default()).await;
    env.apply(support::keptn::CRDS).await;
    let operator = support::keptn::Operator::start(&env.client, NS);
    env.apply(&template(
        "error-rate",
        "{type: keptn}",
        "analysis/{{ namespace }}/podinfo-slo/1m/service={{ target }}",
    ))
    .await;
    operator.set_pass(true);
    env.apply(&workload("6.0.0")).await;
    env.apply(
        &canary("error-rate").replace("thresholdRange: {max: 1}", "thresholdRange: {min: 1}"),
    )
    .await;
    env.wait_phase("podinfo", CanaryPhase::Initialized).await;
    set_image(&env, "6.0.1").await;
    env.wait_phase("podinfo", CanaryPhase::Succeeded).await;
    operator.set_pass(false);
    set_image(&env, "6.0.2").await;
    env.wait_phase("podinfo", CanaryPhase::Failed).await;
    let events = env.events("podinfo").await;
    for text in [
        "Promotion completed! Scaling down podinfo.test",
        "Halt podinfo.test advancement error-rate 0.00 < 1",
        "Rolling back podinfo.test failed checks threshold reached 2",
    ] {
        assert!(
            events.iter().any(|e| e == text),
            "{text:?} not in {events:#?}"
        );
    }
    let specs = operator.specs.lock().unwrap().clone();
    assert!(!specs.is_empty(), "no Analysis was created");
    assert_eq!(
        specs[0],
        serde_json::json!({"analysisDefinition": {"name": "podinfo-slo"}, "timeframe": {"recent": "1m"}, "args": {"service": "podinfo"}})
    );
}

/// The Kubernetes External Metrics API, served by localkube's aggregation of an adapter whose
/// published value the test sets per phase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn externalmetrics_template_promotes_and_rolls_back() {
    let env = Env::start(Options::default()).await;
    env.kube.external_metrics().install();
    env.apply(&template(
        "error-rate",
        "{type: externalmetrics}",
        "{{ namespace }}/http_errors_percent?labelSelector=deployment%3D{{ target }}",
    ))
    .await;
    let adapter = env.kube.external_metrics();
    let set = move |v: f64| -> BoxFuture<'static, ()> {
        adapter.set(
            NS,
            "http_errors_percent",
            serde_json::json!({"deployment": "podinfo"}),
            &v.to_string(),
        );
        Box::pin(async {})
    };
    promote_then_roll_back_with(&env, "error-rate", &set, 0.5, 3.0).await;
}
