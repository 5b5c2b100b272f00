//! Every metric provider against its server: the API-faithful fakes of the hosted services
//! (`support/fakes`), and localkube for the providers that read the cluster. For each: the
//! request made (path, method, parameters, auth headers), the answer read (value, empty, null,
//! the vendor's error, rate limiting, rejected credentials), the availability check, and that
//! no credential reaches a check's outcome.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use flagger_api::MetricTemplate;
use flagger_controller::providers::{Category, ProviderError};
use flagger_controller::templates::{self, Lookups};
use flagger_controller::webhook::Clients;
use flagger_core::effects::MetricOutcome;
use flagger_core::gotemplate::Model;
use flagger_core::metric::MetricCheck;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};
use support::fakes::{self, Answer, State};

const NS: &str = "test";

struct World {
    kube: localkube::Handle,
    client: Client,
    clients: Clients,
}

impl World {
    async fn start() -> World {
        World::start_with(localkube::Config::default()).await
    }

    /// A cluster that authenticates and authorizes every request (RBAC), as kube-apiserver;
    /// `client` is its administrator.
    async fn start_rbac() -> World {
        let mut config = localkube::Config::default();
        config.auth.rbac = true;
        World::start_with(config).await
    }

    async fn start_with(config: localkube::Config) -> World {
        let kube = localkube::Server::start(config).await.unwrap();
        let kc = kube::config::Kubeconfig::from_yaml(&kube.kubeconfig()).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(cfg).unwrap();
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in flagger_api::crd::crds() {
            crds.create(&PostParams::default(), &crd).await.unwrap();
        }
        let ns: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();
        World {
            kube,
            client,
            clients: Clients::new().unwrap(),
        }
    }

    async fn apply(&self, value: serde_json::Value) {
        let kind = value["kind"].as_str().unwrap().to_string();
        let mut last = None;
        for _ in 0..50 {
            let created = match kind.as_str() {
                "Secret" => Api::<Secret>::namespaced(self.client.clone(), NS)
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(value.clone()).unwrap(),
                    )
                    .await
                    .map(|_| ()),
                _ => Api::<MetricTemplate>::namespaced(self.client.clone(), NS)
                    .create(
                        &PostParams::default(),
                        &serde_json::from_value(value.clone()).unwrap(),
                    )
                    .await
                    .map(|_| ()),
            };
            match created {
                Ok(()) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("create failed: {last:?}");
    }

    /// A Secret and a template of `provider` named after the provider's type.
    async fn template(&self, provider: serde_json::Value, secret: &[(&str, &str)], query: &str) {
        let name = provider["type"].as_str().unwrap().to_string();
        let mut provider = provider;
        if !secret.is_empty() {
            use base64::Engine as _;
            let data: BTreeMap<&str, String> = secret
                .iter()
                .map(|(k, v)| (*k, base64::engine::general_purpose::STANDARD.encode(v)))
                .collect();
            self.apply(serde_json::json!({
                "apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": format!("{name}-creds"), "namespace": NS},
                "data": data,
            }))
            .await;
            provider["secretRef"] = serde_json::json!({"name": format!("{name}-creds")});
        }
        self.apply(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"provider": provider, "query": query},
        }))
        .await;
    }

    fn lookups(&self) -> Lookups {
        Lookups::new(
            self.client.clone(),
            flagger_controller::cache::build(&self.client, None).0,
        )
    }

    async fn check(&self, template: &str) -> MetricCheck {
        run_template(&self.lookups(), &self.clients, template, &model()).await
    }

    /// The answers every HTTP vendor has, in turn: nothing and a null point (both "no
    /// values"), the vendor's error for a query it cannot run and its rate limit (failures
    /// quoting the vendor's words `bad_query` and `rate_limited`). The outcomes, in order.
    async fn answers(
        &self,
        template: &str,
        state: &State,
        bad_query: &str,
        rate_limited: &str,
    ) -> Vec<MetricOutcome> {
        let answers = [
            Answer::Empty,
            Answer::Null,
            Answer::BadQuery,
            Answer::RateLimited,
        ];
        let outcomes = self.outcomes(template, state, &answers).await;
        assert!(
            no_values(&outcomes[0]) && no_values(&outcomes[1]),
            "{outcomes:?}"
        );
        assert!(error_with(&outcomes[2], bad_query), "{outcomes:?}");
        assert!(error_with(&outcomes[3], rate_limited), "{outcomes:?}");
        outcomes
    }

    /// [`World::check`] of a template named after its provider type: the outcome, after
    /// checking that the check names that provider and the query rendered (no action left).
    async fn checked(&self, template: &str) -> (MetricOutcome, String) {
        let check = self.check(template).await;
        assert_eq!(check.provider, template);
        let query = check.query.unwrap_or_default();
        assert!(!query.is_empty() && !query.contains("{{"), "{query:?}");
        (check.outcome, query)
    }

    async fn online(&self, template: &str) -> Result<(), ProviderError> {
        templates::is_online(&self.lookups(), &self.clients, NS, template, "30s").await
    }

    /// The availability check's failure: its text, after checking its category.
    async fn offline(&self, template: &str, category: Category) -> String {
        let e = self.online(template).await.unwrap_err();
        assert_eq!(e.category, category, "{e}");
        e.message
    }

    /// Runs the template with each scripted answer; the outcomes, in order.
    async fn outcomes(
        &self,
        template: &str,
        state: &State,
        answers: &[Answer],
    ) -> Vec<MetricOutcome> {
        let mut out = Vec::new();
        for a in answers {
            state.set(a.clone());
            out.push(self.check(template).await.outcome);
        }
        out
    }
}

/// Runs a template check as the analysis does, for a canary whose one metric names it.
async fn run_template(
    lookups: &Lookups,
    clients: &Clients,
    name: &str,
    model: &Model,
) -> MetricCheck {
    let canary: flagger_api::Canary = serde_json::from_value(serde_json::json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "1m", "threshold": 2, "iterations": 2,
                "metrics": [{"name": name, "templateRef": {"name": name}, "thresholdRange": {"min": 0}}]
            }
        }
    }))
    .expect("a valid Canary");
    let canary = flagger_core::validate::validate(&canary, &Default::default())
        .expect("the Canary validates")
        .canary;
    let comparing = templates::Comparing {
        metric: &canary.analysis.metrics[0],
        canary: &canary,
        now: 1_700_000_100.0,
    };
    templates::run(lookups, clients, NS, name, model, &comparing).await
}

fn model() -> Model {
    Model {
        name: "podinfo".into(),
        namespace: NS.into(),
        target: "podinfo".into(),
        service: "podinfo".into(),
        ingress: "podinfo".into(),
        route: "podinfo".into(),
        interval: "30s".into(),
        variables: BTreeMap::new(),
    }
}

fn no_values(o: &MetricOutcome) -> bool {
    matches!(o, MetricOutcome::NoValues(_))
}

fn error_with(o: &MetricOutcome, text: &str) -> bool {
    matches!(o, MetricOutcome::Error(e) if e.contains(text))
}

/// No credential in any text a check or an availability check gives.
fn assert_no_secret(texts: &[String], secrets: &[&str]) {
    for t in texts {
        for s in secrets {
            assert!(!t.contains(s), "{s} in {t}");
        }
    }
}

fn describe(outcomes: &[MetricOutcome]) -> Vec<String> {
    outcomes.iter().map(|o| format!("{o:?}")).collect()
}

fn seconds(s: &fakes::Seen, key: &str) -> i64 {
    s.query[key].parse().unwrap()
}

/// Seed 001's Datadog template: the APM error percentage of the target.
pub const SEED_001_QUERY: &str = "avg:trace.http.request.errors{service:{{ target }}} / avg:trace.http.request.hits{service:{{ target }}} * 100";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_requests_and_answers() {
    let w = World::start().await;
    let (dd, url) = fakes::datadog::Datadog::start().await;
    w.template(
        serde_json::json!({"type": "datadog", "address": url}),
        &[
            ("datadog_api_key", fakes::datadog::API_KEY),
            ("datadog_application_key", fakes::datadog::APPLICATION_KEY),
        ],
        SEED_001_QUERY,
    )
    .await;
    dd.state.set(Answer::Value(0.4));
    let check = w.check("datadog").await;
    assert_eq!(check.outcome, MetricOutcome::Value(0.4), "the oldest point");
    assert_eq!(check.provider, "datadog");
    let rendered = "avg:trace.http.request.errors{service:podinfo} / avg:trace.http.request.hits{service:podinfo} * 100";
    assert_eq!(check.query.as_deref(), Some(rendered));
    let seen = dd.state.seen_at("/api/v1/query");
    let s = seen.last().unwrap();
    assert_eq!(s.method, "GET");
    assert_eq!(s.query["query"], rendered);
    assert_eq!(
        seconds(s, "to") - seconds(s, "from"),
        300,
        "ten 30s intervals"
    );
    assert_eq!(s.headers["dd-api-key"], fakes::datadog::API_KEY);
    assert_eq!(
        s.headers["dd-application-key"],
        fakes::datadog::APPLICATION_KEY
    );

    let outcomes = w
        .answers(
            "datadog",
            &dd.state,
            "Status 400 Bad Request: Error parsing query",
            "Status 429 Too Many Requests: Rate limit exceeded",
        )
        .await;

    w.online("datadog").await.unwrap();
    assert_eq!(dd.state.seen_at("/api/v1/validate").len(), 1);

    // Rejected keys: the query and the availability check say so, without the keys.
    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "datadog", "address": url}),
        &[
            ("datadog_api_key", "wrong-key-1"),
            ("datadog_application_key", "wrong-key-2"),
        ],
        SEED_001_QUERY,
    )
    .await;
    let denied = w2.check("datadog").await.outcome;
    assert!(
        error_with(&denied, "Status 403 Forbidden: Forbidden"),
        "{denied:?}"
    );
    let offline = w2.offline("datadog", Category::Auth).await;
    assert_eq!(
        offline,
        "datadog in metric template datadog.test not available: error response: Status 403 Forbidden: Forbidden"
    );
    let mut texts = describe(&outcomes);
    texts.extend([format!("{denied:?}"), offline]);
    assert_no_secret(
        &texts,
        &[
            fakes::datadog::API_KEY,
            fakes::datadog::APPLICATION_KEY,
            "wrong-key",
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datadog_needs_both_keys_and_an_interval() {
    let w = World::start().await;
    w.template(
        serde_json::json!({"type": "datadog"}),
        &[("datadog_api_key", "k")],
        SEED_001_QUERY,
    )
    .await;
    let check = w.check("datadog").await;
    assert_eq!(
        check.outcome,
        MetricOutcome::Unusable(
            "Metric template datadog.test provider datadog error: datadog credentials does not contain datadog_application_key".into()
        )
    );
    assert_eq!(check.provider, "datadog");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newrelic_requests_and_answers() {
    let w = World::start().await;
    let (nr, url) = fakes::newrelic::NewRelic::start().await;
    w.template(
        serde_json::json!({"type": "newrelic", "address": url}),
        &[
            ("newrelic_account_id", fakes::newrelic::ACCOUNT),
            ("newrelic_query_key", fakes::newrelic::QUERY_KEY),
        ],
        "SELECT filter(count(*), WHERE `error` IS true) / count(*) * 100 FROM Transaction WHERE appName = '{{ target }}'",
    )
    .await;
    nr.state.set(Answer::Value(1.5));
    let (value, query) = w.checked("newrelic").await;
    assert_eq!(value, MetricOutcome::Value(1.5));
    let path = format!("/v1/accounts/{}/query", fakes::newrelic::ACCOUNT);
    let s = nr.state.seen_at(&path).pop().unwrap();
    assert_eq!(s.query["nrql"], format!("{query} SINCE 30 seconds ago"));
    assert_eq!(
        s.query["nrql"],
        "SELECT filter(count(*), WHERE `error` IS true) / count(*) * 100 FROM Transaction WHERE appName = 'podinfo' SINCE 30 seconds ago"
    );
    assert_eq!(s.headers["x-query-key"], fakes::newrelic::QUERY_KEY);
    let outcomes = w
        .answers("newrelic", &nr.state, "NRQL Syntax Error", "Status 429")
        .await;
    w.online("newrelic").await.unwrap();
    assert!(
        nr.state
            .seen_at(&path)
            .iter()
            .any(|s| s.query["nrql"] == "SELECT * FROM Metric SINCE 30 seconds ago")
    );

    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "newrelic", "address": url}),
        &[
            ("newrelic_account_id", fakes::newrelic::ACCOUNT),
            ("newrelic_query_key", "NRIQ-wrong"),
        ],
        "SELECT count(*) FROM Transaction",
    )
    .await;
    let denied = w2.check("newrelic").await.outcome;
    assert!(
        error_with(&denied, "Status 401 Unauthorized: Invalid query key"),
        "{denied:?}"
    );
    w2.offline("newrelic", Category::Auth).await;
    assert_no_secret(
        &[describe(&outcomes), vec![format!("{denied:?}")]].concat(),
        &["NRIQ-wrong", fakes::newrelic::QUERY_KEY],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynatrace_requests_and_answers() {
    let w = World::start().await;
    let (dt, url) = fakes::dynatrace::Dynatrace::start().await;
    w.template(
        serde_json::json!({"type": "dynatrace", "address": url}),
        &[("dynatrace_token", fakes::dynatrace::TOKEN)],
        "builtin:service.errors.total.rate:filter(eq(\"dt.entity.service\",\"{{ target }}\")):avg",
    )
    .await;
    dt.state.set(Answer::Value(0.75));
    let (value, query) = w.checked("dynatrace").await;
    assert_eq!(value, MetricOutcome::Value(0.75));
    let s = dt.state.seen_at("/api/v2/metrics/query").pop().unwrap();
    assert_eq!(s.query["metricSelector"], query);
    assert_eq!(
        s.query["metricSelector"],
        "builtin:service.errors.total.rate:filter(eq(\"dt.entity.service\",\"podinfo\")):avg"
    );
    assert_eq!(s.query["resolution"], "Inf");
    assert_eq!(
        seconds(&s, "to") - seconds(&s, "from"),
        300_000,
        "ten 30s intervals in ms"
    );
    assert_eq!(
        s.headers["authorization"],
        format!("Api-Token {}", fakes::dynatrace::TOKEN)
    );
    let outcomes = w
        .answers(
            "dynatrace",
            &dt.state,
            "Metric selector parse error",
            "Status 429",
        )
        .await;
    w.online("dynatrace").await.unwrap();
    assert_eq!(
        dt.state.seen_at("/api/v2/metrics").pop().unwrap().query["pageSize"],
        "1"
    );

    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "dynatrace", "address": url}),
        &[("dynatrace_token", "dt0c01.WRONG")],
        "builtin:service.errors.total.rate",
    )
    .await;
    let denied = w2.check("dynatrace").await.outcome;
    assert!(
        error_with(
            &denied,
            "Status 401 Unauthorized: Missing authorization parameter."
        ),
        "{denied:?}"
    );
    w2.offline("dynatrace", Category::Auth).await;
    assert_no_secret(
        &[describe(&outcomes), vec![format!("{denied:?}")]].concat(),
        &["dt0c01.WRONG"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn influxdb_requests_and_answers() {
    let w = World::start().await;
    let (db, url) = fakes::influxdb::InfluxDb::start().await;
    let flux = "from(bucket: \"apps\") |> range(start: -{{ interval }}) |> filter(fn: (r) => r.app == \"{{ target }}\") |> mean()";
    w.template(
        serde_json::json!({"type": "influxdb", "address": url}),
        &[
            ("token", fakes::influxdb::TOKEN),
            ("org", fakes::influxdb::ORG),
        ],
        flux,
    )
    .await;
    db.state.set(Answer::Value(2.5));
    let (value, query) = w.checked("influxdb").await;
    assert_eq!(value, MetricOutcome::Value(2.5));
    let s = db.state.seen_at("/api/v2/query").pop().unwrap();
    assert_eq!(s.method, "POST");
    assert_eq!(s.query["org"], fakes::influxdb::ORG);
    assert_eq!(
        s.headers["authorization"],
        format!("Token {}", fakes::influxdb::TOKEN)
    );
    let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    assert_eq!(
        body["query"],
        "from(bucket: \"apps\") |> range(start: -30s) |> filter(fn: (r) => r.app == \"podinfo\") |> mean()"
    );
    assert_eq!(body["type"], "flux");
    assert_eq!(body["query"], query);
    let outcomes = w
        .answers("influxdb", &db.state, "compilation failed", "Status 429")
        .await;
    w.online("influxdb").await.unwrap();

    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "influxdb", "address": url}),
        &[("token", "influx-wrong"), ("org", fakes::influxdb::ORG)],
        "from(bucket: \"apps\")",
    )
    .await;
    let denied = w2.check("influxdb").await.outcome;
    assert!(
        error_with(&denied, "Status 401 Unauthorized: unauthorized access"),
        "{denied:?}"
    );
    w2.offline("influxdb", Category::Auth).await;
    assert_no_secret(
        &[describe(&outcomes), vec![format!("{denied:?}")]].concat(),
        &["influx-wrong"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn splunk_requests_and_answers() {
    let w = World::start().await;
    let (sp, url) = fakes::splunk::Splunk::start().await;
    w.template(
        serde_json::json!({"type": "splunk", "address": url}),
        &[("sf_token_key", fakes::splunk::TOKEN)],
        "data('errors', filter=filter('service', '{{ target }}')).sum().publish()",
    )
    .await;
    sp.state.set(Answer::Value(0.5));
    let (value, query) = w.checked("splunk").await;
    assert_eq!(value, MetricOutcome::Value(0.5), "the last point");
    assert_eq!(sp.state.seen_at("/v2/signalflow/connect").len(), 1);
    let auth: serde_json::Value = serde_json::from_str(
        &sp.state
            .seen_at("/v2/signalflow/authenticate")
            .pop()
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(auth["token"], fakes::splunk::TOKEN);
    let exec: serde_json::Value = serde_json::from_str(
        &sp.state
            .seen_at("/v2/signalflow/execute")
            .pop()
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        exec["program"],
        "data('errors', filter=filter('service', 'podinfo')).sum().publish()"
    );
    assert_eq!(exec["program"], query);
    assert_eq!(exec["immediate"], true);
    assert_eq!(
        exec["stop"].as_u64().unwrap() - exec["start"].as_u64().unwrap(),
        300_000
    );
    let outcomes = w
        .outcomes(
            "splunk",
            &sp.state,
            &[Answer::Empty, Answer::BadQuery, Answer::RateLimited],
        )
        .await;
    assert!(no_values(&outcomes[0]), "{outcomes:?}");
    assert!(
        error_with(&outcomes[1], "Unable to compile the program"),
        "{outcomes:?}"
    );
    assert!(
        error_with(&outcomes[2], "aborted: Too many concurrent jobs"),
        "{outcomes:?}"
    );
    w.online("splunk").await.unwrap();
    let v = sp.state.seen_at("/v2/metric").pop().unwrap();
    assert_eq!(v.query["limit"], "1");
    assert_eq!(v.headers["x-sf-token"], fakes::splunk::TOKEN);

    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "splunk", "address": url}),
        &[("sf_token_key", "sf-wrong")],
        "data('errors').publish()",
    )
    .await;
    let denied = w2.check("splunk").await.outcome;
    assert!(error_with(&denied, "4401 Unauthorized"), "{denied:?}");
    w2.offline("splunk", Category::Auth).await;
    assert_no_secret(&[format!("{denied:?}")], &["sf-wrong"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stackdriver_requests_and_answers_with_a_service_account_key() {
    let w = World::start().await;
    let (gcp, url, key) = fakes::gcp::Gcp::start().await;
    w.template(
        serde_json::json!({"type": "stackdriver", "address": url}),
        &[("project", fakes::gcp::PROJECT), ("serviceAccountKey", &key)],
        "fetch k8s_container | metric 'istio.io/service/server/request_count' | filter resource.namespace_name == '{{ namespace }}' | every 1m",
    )
    .await;
    gcp.state.set(Answer::Value(99.5));
    let (value, query) = w.checked("stackdriver").await;
    assert_eq!(value, MetricOutcome::Value(99.5));
    let path = format!("/v3/projects/{}/timeSeries:query", fakes::gcp::PROJECT);
    let s = gcp.state.seen_at(&path).pop().unwrap();
    assert_eq!(s.method, "POST");
    assert_eq!(s.headers["authorization"], "Bearer ya29.fake-access-token");
    let body: serde_json::Value = serde_json::from_str(&s.body).unwrap();
    assert_eq!(body["query"], query);
    assert_eq!(
        body["query"],
        "fetch k8s_container | metric 'istio.io/service/server/request_count' | filter resource.namespace_name == 'test' | every 1m"
    );
    assert!(
        !gcp.state.seen_at("/token").is_empty(),
        "a token from the key's token_uri"
    );
    let outcomes = w
        .answers(
            "stackdriver",
            &gcp.state,
            "INVALID_ARGUMENT: Line 1",
            "RESOURCE_EXHAUSTED",
        )
        .await;
    // The empty query answers INVALID_ARGUMENT: reachable and authorized.
    w.online("stackdriver").await.unwrap();

    // A project the account may not read.
    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "stackdriver", "address": url}),
        &[("project", "someone-elses"), ("serviceAccountKey", &key)],
        "fetch k8s_container",
    )
    .await;
    let denied = w2.check("stackdriver").await.outcome;
    assert!(error_with(&denied, "PERMISSION_DENIED"), "{denied:?}");
    let offline = w2.offline("stackdriver", Category::Auth).await;
    assert!(
        offline.contains("unexpected status code: PERMISSION_DENIED"),
        "{offline}"
    );
    assert_no_secret(
        &[describe(&outcomes), vec![format!("{denied:?}"), offline]].concat(),
        &["PRIVATE KEY", "ya29."],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_signs_requests_with_web_identity_credentials() {
    use flagger_controller::providers::{Setup, aws::Env, cloudwatch::CloudWatch};
    let (aws, url) = fakes::aws::Aws::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, fakes::aws::WEB_IDENTITY_TOKEN).unwrap();
    // IRSA as EKS's pod identity webhook sets it up, with the SDKs' endpoint variable.
    let env = Env::from_vars([
        ("AWS_ROLE_ARN", fakes::aws::ROLE_ARN.to_string()),
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            token_file.display().to_string(),
        ),
        ("AWS_ENDPOINT_URL", url.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
    ]);
    let clients = Clients::new().unwrap();
    let kube = Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap();
    let spec = flagger_api::metric::MetricProvider {
        r#type: "cloudwatch".into(),
        region: Some(fakes::aws::REGION.into()),
        ..Default::default()
    };
    let setup = Setup {
        spec: &spec,
        secret: None,
        interval: "1m",
        http: &clients,
        kube: &kube,
    };
    let cw = CloudWatch::with_env(&setup, env.clone()).unwrap();
    let query = r#"[{"Id":"e1","Expression":"m1 / m2 * 100","Label":"error rate"},
        {"id":"m1","metricStat":{"metric":{"namespace":"AWS/ApplicationELB","metricName":"HTTPCode_Target_5XX_Count","dimensions":[{"name":"TargetGroup","value":"targetgroup/podinfo/1"}]},"period":60,"stat":"Sum"},"returnData":false},
        {"Id":"m2","MetricStat":{"Metric":{"Namespace":"AWS/ApplicationELB","MetricName":"RequestCount","Dimensions":[{"Name":"TargetGroup","Value":"targetgroup/podinfo/1"}]},"Period":60,"Stat":"Sum"},"ReturnData":false}]"#;
    aws.state.set(Answer::Value(0.25));
    assert_eq!(
        cw.run_query(query).await,
        Ok(0.25),
        "the newest value, first"
    );
    let calls = aws.state.seen();
    let sts = calls
        .iter()
        .find(|s| s.body.contains("AssumeRoleWithWebIdentity"))
        .unwrap();
    assert!(
        sts.body
            .contains("RoleArn=arn%3Aaws%3Aiam%3A%3A111122223333%3Arole%2Fflagger"),
        "{}",
        sts.body
    );
    let get = calls
        .iter()
        .rev()
        .find(|s| s.headers.contains_key("x-amz-target"))
        .unwrap();
    assert_eq!(get.headers["content-type"], "application/x-amz-json-1.0");
    assert!(get.headers["authorization"].starts_with(&format!(
        "AWS4-HMAC-SHA256 Credential={}/",
        fakes::aws::ACCESS_KEY_ID
    )));
    assert_eq!(
        get.headers["x-amz-security-token"],
        fakes::aws::SESSION_TOKEN
    );
    let input: serde_json::Value = serde_json::from_str(&get.body).unwrap();
    assert_eq!(input["MaxDatapoints"], 20);
    assert_eq!(
        input["EndTime"].as_u64().unwrap() - input["StartTime"].as_u64().unwrap(),
        600
    );
    assert_eq!(
        input["MetricDataQueries"][1]["MetricStat"]["Metric"]["MetricName"],
        "HTTPCode_Target_5XX_Count"
    );

    for (answer, expect) in [
        (Answer::Empty, "no values found"),
        (
            Answer::BadQuery,
            "InvalidParameterValue: Error in expression",
        ),
        (Answer::RateLimited, "Throttling: Rate exceeded"),
    ] {
        aws.state.set(answer.clone());
        let got = cw.run_query(query).await;
        let text = match &got {
            Ok(v) => v.to_string(),
            Err(e) => e.to_string(),
        };
        assert!(text.contains(expect), "{answer:?}: {text}");
    }
    // Throttling is retried as the SDK does (3 retries).
    let throttled = aws
        .state
        .seen()
        .iter()
        .rev()
        .take_while(|s| s.headers.contains_key("x-amz-target"))
        .count();
    assert!(throttled >= 4, "{throttled}");
    cw.is_online().await.unwrap();

    // A token the identity provider does not know.
    std::fs::write(&token_file, "forged-token").unwrap();
    let denied = CloudWatch::with_env(&setup, env)
        .unwrap()
        .run_query(query)
        .await
        .unwrap_err();
    assert!(
        denied.to_string().contains("InvalidIdentityToken"),
        "{denied}"
    );
    assert_no_secret(
        &[denied.to_string()],
        &[fakes::aws::SECRET_ACCESS_KEY, "forged-token"],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphite_requests_and_answers_against_a_real_graphite() {
    use tokio::io::AsyncWriteExt;
    let w = World::start().await;
    let g = support::graphite::Graphite::start().await;
    let now = support::now_secs();
    let mut carbon = tokio::net::TcpStream::connect(g.carbon_addr).await.unwrap();
    carbon
        .write_all(
            format!(
                "flagger.it.errors 2.5 {}\nflagger.it.errors 3.5 {}\n",
                now - 3,
                now - 2
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    carbon.shutdown().await.unwrap();
    w.template(
        serde_json::json!({"type": "graphite", "address": g.url}),
        &[],
        "target=flagger.it.{{ variables.series }}&from=-1min",
    )
    .await;
    let model_with = |series: &str| Model {
        variables: BTreeMap::from([("series".to_string(), series.to_string())]),
        ..model()
    };
    let run = |series: &'static str| {
        let lookups = w.lookups();
        let clients = w.clients.clone();
        let m = model_with(series);
        async move { run_template(&lookups, &clients, "graphite", &m).await }
    };
    // The newest non-null point, once carbon has it.
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("graphite serving the points", &last, || async {
        let c = run("errors").await;
        *last.lock().unwrap() = format!("{:?}", c.outcome);
        (c.outcome == MetricOutcome::Value(3.5)).then_some(c)
    })
    .await;
    let check = run("errors").await;
    assert_eq!(
        check.query.as_deref(),
        Some("target=flagger.it.errors&from=-1min")
    );
    assert!(no_values(&run("nothing").await.outcome));
    w.online("graphite").await.unwrap();

    // A query graphite-web cannot run: an error with its status, not "no values".
    w.apply(serde_json::json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "graphite-bad", "namespace": NS},
        "spec": {"provider": {"type": "graphite", "address": g.url}, "query": "target=noSuchFunction(flagger.it.errors)"},
    }))
    .await;
    let bad = run_template(&w.lookups(), &w.clients, "graphite-bad", &model()).await;
    assert!(
        error_with(&bad.outcome, "error response: Status"),
        "{:?}",
        bad.outcome
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_reads_metrics_and_runs_analyses_in_the_cluster() {
    let w = World::start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(w.client.clone());
    for doc in support::keptn::CRDS.split("\n---\n") {
        let crd: CustomResourceDefinition = serde_yaml::from_str(doc).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let op = support::keptn::Operator::start(&w.client, NS);
    // KeptnMetric: its status.value.
    w.template(
        serde_json::json!({"type": "keptn"}),
        &[],
        "KeptnMetric/{{ namespace }}/{{ target }}-{{ variables.metric }}",
    )
    .await;
    let run = |metric: &'static str| {
        let lookups = w.lookups();
        let clients = w.clients.clone();
        let m = Model {
            variables: BTreeMap::from([("metric".to_string(), metric.to_string())]),
            ..model()
        };
        async move { run_template(&lookups, &clients, "keptn", &m).await }
    };
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("the KeptnMetric resource served", &last, || async {
        tokio::time::timeout(
            Duration::from_secs(5),
            support::keptn::set_metric(&w.client, NS, "podinfo-errors", "0.42"),
        )
        .await
        .ok()
    })
    .await;
    let check = run("errors").await;
    assert_eq!(check.outcome, MetricOutcome::Value(0.42));
    assert_eq!(
        check.query.as_deref(),
        Some("KeptnMetric/test/podinfo-errors")
    );
    support::keptn::set_metric(&w.client, NS, "podinfo-latency", "").await;
    assert!(no_values(&run("latency").await.outcome));
    // A value Keptn's operator could not compute reads as NaN: no values, not a number.
    support::keptn::set_metric(&w.client, NS, "podinfo-saturation", "NaN").await;
    let nan = run("saturation").await.outcome;
    assert!(no_values(&nan), "{nan:?}");
    support::keptn::set_metric(&w.client, NS, "podinfo-garbage", "n/a").await;
    let garbage = run("garbage").await.outcome;
    assert!(
        matches!(garbage, MetricOutcome::Error(_)) && !no_values(&garbage),
        "{garbage:?}"
    );
    let missing = run("missing").await.outcome;
    assert!(
        error_with(
            &missing,
            "could not retrieve KeptnMetric test/podinfo-missing: keptnmetrics.metrics.keptn.sh \"podinfo-missing\" not found"
        ),
        "{missing:?}"
    );
    w.online("keptn").await.unwrap();

    // Analysis: created with the definition, timeframe and arguments, judged, then deleted.
    w.apply(serde_json::json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "keptn-slo", "namespace": NS},
        "spec": {"provider": {"type": "keptn"}, "query": "analysis/{{ namespace }}/podinfo-slo/5m/service={{ target }};env=prod"},
    }))
    .await;
    op.set_pass(true);
    let passed = run_template(&w.lookups(), &w.clients, "keptn-slo", &model()).await;
    assert_eq!(passed.outcome, MetricOutcome::Value(1.0));
    op.set_pass(false);
    let failed = run_template(&w.lookups(), &w.clients, "keptn-slo", &model()).await;
    assert_eq!(failed.outcome, MetricOutcome::Value(0.0));
    let spec = op.specs.lock().unwrap()[0].clone();
    assert_eq!(
        spec,
        serde_json::json!({"analysisDefinition": {"name": "podinfo-slo"}, "timeframe": {"recent": "5m"}, "args": {"service": "podinfo", "env": "prod"}})
    );
    let analyses = Api::<kube::api::DynamicObject>::namespaced_with(
        w.client.clone(),
        NS,
        &kube::core::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", "Analysis"),
            "analyses",
        ),
    );
    let left = analyses.list(&Default::default()).await.unwrap().items;
    assert!(
        left.is_empty(),
        "each Analysis is deleted after it is read: {left:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn externalmetrics_reads_the_clusters_external_metrics_api() {
    let w = World::start().await;
    w.template(
        serde_json::json!({"type": "externalmetrics"}),
        &[],
        "{{ namespace }}/http_errors_ratio?labelSelector=app%3D{{ target }}",
    )
    .await;
    // Without an adapter the API server does not serve the group.
    let offline = w.offline("externalmetrics", Category::Provider).await;
    assert!(
        offline.starts_with("externalmetrics in metric template externalmetrics.test not available: external metrics service unavailable: the server answered 404"),
        "{offline}"
    );
    let adapter = w.kube.external_metrics();
    adapter.install();
    w.online("externalmetrics").await.unwrap();
    assert!(no_values(&w.check("externalmetrics").await.outcome));
    adapter.set(
        NS,
        "http_errors_ratio",
        serde_json::json!({"app": "podinfo"}),
        "250m",
    );
    adapter.set(
        NS,
        "http_errors_ratio",
        serde_json::json!({"app": "other"}),
        "9",
    );
    let check = w.check("externalmetrics").await;
    assert_eq!(
        check.outcome,
        MetricOutcome::Value(0.25),
        "the selected series, as a quantity"
    );
    assert_eq!(
        check.query.as_deref(),
        Some("test/http_errors_ratio?labelSelector=app%3Dpodinfo")
    );
    // A query that is not `<namespace>/<metric>?labelSelector=`.
    w.apply(serde_json::json!({
        "apiVersion": "flagger.app/v1beta1", "kind": "MetricTemplate",
        "metadata": {"name": "em-bad", "namespace": NS},
        "spec": {"provider": {"type": "externalmetrics"}, "query": "a/b/c"},
    }))
    .await;
    let bad = run_template(&w.lookups(), &w.clients, "em-bad", &model()).await;
    assert!(
        error_with(
            &bad.outcome,
            "error parsing metric query: malformed query string, too many slashes"
        ),
        "{:?}",
        bad.outcome
    );
}

/// An authenticating front, as nginx's `auth_basic` before graphite-web or the API server's
/// authentication before an aggregated API: a request whose `Authorization` is `expected` is
/// passed to `upstream` as it came; any other gets `refusal` (status, content type, body).
/// Its address, and the `Authorization` values it received.
async fn auth_front(
    upstream: String,
    expected: String,
    refusal: (u16, &'static str, &'static str),
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode, Uri};
    use axum::response::IntoResponse;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let client = reqwest::Client::new();
    let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
        let (client, upstream, expected, record) = (
            client.clone(),
            upstream.clone(),
            expected.clone(),
            record.clone(),
        );
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            record.lock().unwrap().push(auth.clone());
            if auth != expected {
                let (status, content_type, body) = refusal;
                let status = StatusCode::from_u16(status).unwrap();
                return (status, [("content-type", content_type)], body).into_response();
            }
            let path = uri.path_and_query().map_or("/", |p| p.as_str());
            let answer = client
                .get(format!("{upstream}{path}"))
                .send()
                .await
                .unwrap();
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            let content_type = answer
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("text/plain")
                .to_string();
            let body = answer.text().await.unwrap();
            (status, [("content-type", content_type)], body).into_response()
        }
    });
    (format!("http://{}", fakes::serve(app).await), seen)
}

/// nginx's answer to a request without the right credentials (`auth_basic`).
const NGINX_401: &str = "<html>\r\n<head><title>401 Authorization Required</title></head>\r\n<body>\r\n<center><h1>401 Authorization Required</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

/// kube-apiserver's answer to a token it does not accept.
const KUBE_401: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphite_behind_basic_auth_gets_the_secrets_credentials() {
    use base64::Engine as _;
    use tokio::io::AsyncWriteExt;
    let g = support::graphite::Graphite::start().await;
    let mut carbon = tokio::net::TcpStream::connect(g.carbon_addr).await.unwrap();
    let now = support::now_secs();
    carbon
        .write_all(format!("flagger.auth.errors 4.5 {}\n", now - 2).as_bytes())
        .await
        .unwrap();
    carbon.shutdown().await.unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("flagger:graphite-pass")
    );
    let (front, seen) =
        auth_front(g.url.clone(), basic.clone(), (401, "text/html", NGINX_401)).await;
    let w = World::start().await;
    w.template(
        serde_json::json!({"type": "graphite", "address": front}),
        &[("username", "flagger"), ("password", "graphite-pass")],
        "target=flagger.auth.errors&from=-1min",
    )
    .await;
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("graphite serving the point", &last, || async {
        let (value, _) = w.checked("graphite").await;
        *last.lock().unwrap() = format!("{value:?}");
        (value == MetricOutcome::Value(4.5)).then_some(())
    })
    .await;
    w.online("graphite").await.unwrap();
    assert!(seen.lock().unwrap().iter().all(|a| *a == basic));

    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "graphite", "address": front}),
        &[("username", "flagger"), ("password", "wrong-pass")],
        "target=flagger.auth.errors&from=-1min",
    )
    .await;
    let denied = w2.check("graphite").await.outcome;
    assert!(error_with(&denied, "Status 401 Unauthorized"), "{denied:?}");
    let offline = w2.offline("graphite", Category::Auth).await;
    assert!(offline.contains("401"), "{offline}");
    assert_no_secret(
        &[format!("{denied:?}"), offline],
        &[
            "graphite-pass",
            "wrong-pass",
            basic.trim_start_matches("Basic "),
        ],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn externalmetrics_at_an_address_sends_the_secrets_token() {
    let w = World::start().await;
    let adapter = w.kube.external_metrics();
    adapter.install();
    adapter.set(
        NS,
        "queue_depth",
        serde_json::json!({"queue": "orders"}),
        "7",
    );
    let bearer = "Bearer sa-token-123".to_string();
    let (front, seen) = auth_front(
        w.kube.url().trim_end_matches('/').to_string(),
        bearer.clone(),
        (401, "application/json", KUBE_401),
    )
    .await;
    let query = "{{ namespace }}/queue_depth?labelSelector=queue%3Dorders";
    w.template(
        serde_json::json!({"type": "externalmetrics", "address": front}),
        &[("token", "sa-token-123")],
        query,
    )
    .await;
    let (value, _) = w.checked("externalmetrics").await;
    assert_eq!(value, MetricOutcome::Value(7.0));
    w.online("externalmetrics").await.unwrap();
    assert!(seen.lock().unwrap().iter().all(|a| *a == bearer));

    let w2 = World::start().await;
    w2.template(
        serde_json::json!({"type": "externalmetrics", "address": front}),
        &[("token", "stale-token")],
        query,
    )
    .await;
    let denied = w2.check("externalmetrics").await.outcome;
    assert!(error_with(&denied, "Status 401 Unauthorized"), "{denied:?}");
    let offline = w2.offline("externalmetrics", Category::Auth).await;
    assert!(offline.contains("401"), "{offline}");
    assert_no_secret(
        &[format!("{denied:?}"), offline],
        &["sa-token-123", "stale-token"],
    );
}

/// A client of `w`'s cluster authenticating with `token`.
async fn client_with_token(w: &World, token: &str) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&w.kube.kubeconfig_with_token(token)).unwrap();
    let cfg = kube::config::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    Client::try_from(cfg).unwrap()
}

/// Keptn is read with the controller's own identity: a ServiceAccount the cluster's RBAC does
/// not allow to read KeptnMetrics gets the API server's refusal as the check's failure, a
/// granted one reads the value, and a token the API server
/// does not know is refused as unauthorized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keptn_with_the_controllers_identity_refused_then_granted() {
    let w = World::start_rbac().await;
    let crds: Api<CustomResourceDefinition> = Api::all(w.client.clone());
    for doc in support::keptn::CRDS.split("\n---\n") {
        let crd: CustomResourceDefinition = serde_yaml::from_str(doc).unwrap();
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(w.client.clone(), NS);
    sa.create(
        &PostParams::default(),
        &serde_json::from_value(serde_json::json!({"metadata": {"name": "flagger"}})).unwrap(),
    )
    .await
    .unwrap();
    w.template(
        serde_json::json!({"type": "keptn"}),
        &[],
        "KeptnMetric/{{ namespace }}/{{ target }}-errors",
    )
    .await;
    let last = std::sync::Mutex::new(String::new());
    support::wait_for("the KeptnMetric resource served", &last, || async {
        tokio::time::timeout(
            Duration::from_secs(5),
            support::keptn::set_metric(&w.client, NS, "podinfo-errors", "0.5"),
        )
        .await
        .ok()
    })
    .await;

    let token = w.kube.service_account_token(NS, "flagger", 3600).unwrap();
    let controller = client_with_token(&w, &token).await;
    let lookups = || {
        Lookups::new(
            controller.clone(),
            flagger_controller::cache::build(&controller, None).0,
        )
    };
    // The controller may read MetricTemplates, not KeptnMetrics.
    let rbac = |rules: serde_json::Value| {
        let client = w.client.clone();
        async move {
            let roles: Api<k8s_openapi::api::rbac::v1::Role> = Api::namespaced(client.clone(), NS);
            let role = serde_json::json!({"metadata": {"name": "flagger"}, "rules": rules});
            match roles.get_opt("flagger").await.unwrap() {
                Some(_) => {
                    roles
                        .replace(
                            "flagger",
                            &PostParams::default(),
                            &serde_json::from_value(role).unwrap(),
                        )
                        .await
                        .unwrap();
                }
                None => {
                    roles
                        .create(
                            &PostParams::default(),
                            &serde_json::from_value(role).unwrap(),
                        )
                        .await
                        .unwrap();
                    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
                        Api::namespaced(client, NS);
                    bindings
                        .create(
                            &PostParams::default(),
                            &serde_json::from_value(serde_json::json!({
                                "metadata": {"name": "flagger"},
                                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "flagger"},
                                "subjects": [{"kind": "ServiceAccount", "name": "flagger", "namespace": NS}],
                            }))
                            .unwrap(),
                        )
                        .await
                        .unwrap();
                }
            }
        }
    };
    rbac(serde_json::json!([
        {"apiGroups": ["flagger.app"], "resources": ["metrictemplates"], "verbs": ["get"]},
    ]))
    .await;
    let refused = run_template(&lookups(), &w.clients, "keptn", &model()).await;
    assert!(
        error_with(
            &refused.outcome,
            "could not retrieve KeptnMetric test/podinfo-errors: keptnmetrics.metrics.keptn.sh \"podinfo-errors\" is forbidden: User \"system:serviceaccount:test:flagger\" cannot get resource \"keptnmetrics\" in API group \"metrics.keptn.sh\" in the namespace \"test\""
        ),
        "{:?}",
        refused.outcome
    );
    // Granted as the chart grants it.
    rbac(serde_json::json!([
        {"apiGroups": ["flagger.app"], "resources": ["metrictemplates"], "verbs": ["get"]},
        {"apiGroups": ["metrics.keptn.sh"], "resources": ["keptnmetrics"], "verbs": ["get"]},
    ]))
    .await;
    let granted = run_template(&lookups(), &w.clients, "keptn", &model()).await;
    assert_eq!(granted.outcome, MetricOutcome::Value(0.5));

    // A token the API server never issued: nothing is read, the template included.
    let stranger = client_with_token(&w, "not-a-token").await;
    let lookups = Lookups::new(
        stranger.clone(),
        flagger_controller::cache::build(&stranger, None).0,
    );
    let unknown = run_template(&lookups, &w.clients, "keptn", &model()).await;
    assert!(
        matches!(&unknown.outcome, MetricOutcome::Unusable(e) if e == "Metric template keptn.test error: Unauthorized"),
        "{:?}",
        unknown.outcome
    );
    assert_no_secret(
        &[format!("{:?}", unknown.outcome)],
        &[&token, "not-a-token"],
    );
}
