//! MetricTemplate checks against an in-process API server (localkube) holding the templates and
//! Secrets, and a fake Prometheus (axum) that records what it is asked: the credentials from
//! `secretRef`, the headers, the rendered query, and Flagger's message for each failure; plus a
//! self-signed HTTPS Prometheus for `insecureSkipVerify`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use flagger_api::MetricTemplate;
use flagger_controller::templates::{self, Lookups};
use flagger_controller::webhook::Clients;
use flagger_core::effects::MetricOutcome;
use flagger_core::gotemplate::Model;
use flagger_core::metric::MetricCheck;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::{Api, Client};

const NS: &str = "test";

/// One request the fake Prometheus received.
#[derive(Clone, Debug)]
struct Seen {
    query: String,
    authorization: Option<String>,
    tenant: Option<String>,
}

#[derive(Clone, Default)]
struct FakeProm {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeProm {
    async fn start(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/api/v1/query", get(answer))
            .route("/api/v1/query_range", get(answer_range))
            .with_state(self.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// `vector(1)` answers 1, a query that starts with `bad(` Prometheus' error for a query that
/// does not parse (status 400), every other query 4.5.
async fn answer(
    State(prom): State<FakeProm>,
    Query(params): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let query = params.get("query").cloned().unwrap_or_default();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    prom.seen.lock().unwrap().push(Seen {
        query: query.clone(),
        authorization: header("authorization"),
        tenant: header("x-scope-orgid"),
    });
    if query.starts_with("bad(") {
        return (
            StatusCode::BAD_REQUEST,
            r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected \")\""}"#.into(),
        );
    }
    let value = if query == "vector(1)" { "1" } else { "4.5" };
    (
        StatusCode::OK,
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{}},"value":[1700000000,"{value}"]}}]}}}}"#
        ),
    )
}

/// A range query: 30 points around 0.1 for a query naming the primary, around 0.13 for any
/// other; the time range is recorded with the query.
async fn answer_range(
    State(prom): State<FakeProm>,
    Query(params): Query<BTreeMap<String, String>>,
) -> (StatusCode, String) {
    let query = params.get("query").cloned().unwrap_or_default();
    let number = |k: &str| params.get(k).and_then(|v| v.parse::<f64>().ok());
    let (start, end, step) = (number("start"), number("end"), number("step"));
    prom.seen.lock().unwrap().push(Seen {
        query: format!(
            "range {:?} {:?} {query}",
            end.zip(start).map(|(e, s)| e - s),
            step
        ),
        authorization: None,
        tenant: None,
    });
    let centre = if query.contains("podinfo-primary") {
        0.1
    } else {
        0.13
    };
    let values: Vec<String> = (0..30)
        .map(|i| {
            let v = centre * (1.0 + 0.05 * (((i * 7) % 11) as f64 / 10.0 - 0.5));
            format!("[{},\"{v}\"]", 1_700_000_000 + i)
        })
        .collect();
    (
        StatusCode::OK,
        format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{{"metric":{{}},"values":[{}]}}]}}}}"#,
            values.join(",")
        ),
    )
}

struct World {
    _kube: localkube::Handle,
    client: Client,
    prom: FakeProm,
    prom_url: String,
    clients: Clients,
}

impl World {
    async fn start() -> World {
        let kube = localkube::Server::start(localkube::Config::default())
            .await
            .unwrap();
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
        let prom = FakeProm::default();
        let addr = prom.start().await;
        World {
            _kube: kube,
            client,
            prom,
            prom_url: format!("http://{addr}"),
            clients: Clients::new().unwrap(),
        }
    }

    async fn create<K>(&self, value: serde_json::Value)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + std::fmt::Debug
            + serde::Serialize
            + serde::de::DeserializeOwned,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), NS);
        let obj: K = serde_json::from_value(value).unwrap();
        // A CRD is served once it is established: retry briefly.
        let mut last = None;
        for _ in 0..50 {
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => return,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("create failed: {last:?}");
    }

    async fn template(&self, name: &str, provider: serde_json::Value, query: &str) {
        self.create::<MetricTemplate>(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"provider": provider, "query": query},
        }))
        .await;
    }

    async fn secret(&self, name: &str, string_data: serde_json::Value) {
        let data: BTreeMap<String, String> =
            serde_json::from_value::<BTreeMap<String, String>>(string_data)
                .unwrap()
                .into_iter()
                .map(|(k, v)| {
                    use base64::Engine as _;
                    (k, base64::engine::general_purpose::STANDARD.encode(v))
                })
                .collect();
        self.create::<Secret>(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
            "data": data,
        }))
        .await;
    }

    async fn run(&self, template: &str) -> MetricOutcome {
        self.check(template).await.outcome
    }

    async fn check(&self, template: &str) -> MetricCheck {
        let canary = validated_canary();
        let metric = &canary.analysis.metrics[0];
        let comparing = templates::Comparing {
            metric,
            canary: &canary,
            now: 1_700_000_100.0,
        };
        templates::run(
            &Lookups::new(
                self.client.clone(),
                flagger_controller::cache::build(&self.client, None).0,
            ),
            &self.clients,
            NS,
            template,
            &model(),
            &comparing,
        )
        .await
    }

    async fn marked_template(&self, name: &str, annotations: serde_json::Value, query: &str) {
        self.create::<MetricTemplate>(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": name, "namespace": NS, "annotations": annotations},
            "spec": {"provider": {"type": "prometheus", "address": self.prom_url}, "query": query},
        }))
        .await;
    }
}

/// The canary whose checks run: podinfo with one template metric of 30s, at least 95.
fn validated_canary() -> flagger_core::model::ValidatedCanary {
    let canary: flagger_api::Canary = serde_json::from_value(serde_json::json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": NS},
        "spec": {
            "provider": "kubernetes",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {
                "interval": "10s", "threshold": 2, "iterations": 2,
                "metrics": [{"name": "latency", "interval": "30s",
                             "templateRef": {"name": "latency"},
                             "thresholdRange": {"min": 95}}]
            }
        }
    }))
    .unwrap();
    flagger_core::validate::validate(&canary, &Default::default())
        .unwrap()
        .canary
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
        variables: BTreeMap::from([("status".into(), "5.*".into())]),
    }
}

const QUERY: &str = r#"sum(rate(http_requests_total{namespace="{{ namespace }}", pod=~"{{ target }}-.*", status=~"{{ variables.status }}"}[{{ interval }}]))
  /
  sum(rate(http_requests_total{namespace="{{ namespace }}"}[{{ interval }}])) * 100"#;

const RENDERED: &str = r#"sum(rate(http_requests_total{namespace="test", pod=~"podinfo-.*", status=~"5.*"}[30s])) / sum(rate(http_requests_total{namespace="test"}[30s])) * 100"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_secret_sends_the_username_and_password() {
    let w = World::start().await;
    w.secret(
        "prom-basic",
        serde_json::json!({"username": "flagger", "password": "s3cret"}),
    )
    .await;
    w.template(
        "error-rate",
        serde_json::json!({"type": "prometheus", "address": w.prom_url, "secretRef": {"name": "prom-basic"}}),
        QUERY,
    )
    .await;

    let check = w.check("error-rate").await;
    assert_eq!(check.outcome, MetricOutcome::Value(4.5));
    // The check says which provider answered which query, and never the credentials.
    assert_eq!(check.provider, "prometheus");
    let query = check.query.unwrap_or_default();
    assert_eq!(
        query.split_whitespace().collect::<Vec<_>>().join(" "),
        RENDERED
    );
    let seen = w.prom.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].query, RENDERED);
    // base64("flagger:s3cret")
    assert_eq!(
        seen[0].authorization.as_deref(),
        Some("Basic ZmxhZ2dlcjpzM2NyZXQ=")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_secret_sends_a_bearer_token_and_the_template_headers() {
    let w = World::start().await;
    w.secret(
        "prom-token",
        serde_json::json!({"token": "t0ken", "username": "ignored", "password": "ignored"}),
    )
    .await;
    w.template(
        "error-rate",
        serde_json::json!({
            "type": "prometheus",
            "address": format!("{}/", w.prom_url),
            "secretRef": {"name": "prom-token"},
            "headers": {"X-Scope-OrgID": ["tenant-a"]},
        }),
        QUERY,
    )
    .await;

    assert_eq!(w.run("error-rate").await, MetricOutcome::Value(4.5));
    let seen = w.prom.seen();
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer t0ken"));
    assert_eq!(seen[0].tenant.as_deref(), Some("tenant-a"));

    // The availability check at initialization uses the same client.
    templates::is_online(
        &Lookups::new(
            w.client.clone(),
            flagger_controller::cache::build(&w.client, None).0,
        ),
        &w.clients,
        NS,
        "error-rate",
        "30s",
    )
    .await
    .unwrap();
    let seen = w.prom.seen();
    assert_eq!(seen.last().unwrap().query, "vector(1)");
    assert_eq!(
        seen.last().unwrap().authorization.as_deref(),
        Some("Bearer t0ken")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_no_authorization_is_sent() {
    let w = World::start().await;
    w.template(
        "plain",
        serde_json::json!({"type": "prometheus", "address": w.prom_url}),
        "vector(2)",
    )
    .await;
    assert_eq!(w.run("plain").await, MetricOutcome::Value(4.5));
    assert_eq!(w.prom.seen()[0].authorization, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_is_an_unusable_check_with_flaggers_message() {
    let w = World::start().await;
    // Missing template.
    match w.run("missing").await {
        MetricOutcome::Unusable(m) => assert!(
            m.starts_with("Metric template missing.test error: ") && m.contains("not found"),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // Missing secret.
    w.template(
        "no-secret",
        serde_json::json!({"type": "prometheus", "address": w.prom_url, "secretRef": {"name": "gone"}}),
        "vector(1)",
    )
    .await;
    match w.run("no-secret").await {
        MetricOutcome::Unusable(m) => assert!(
            m.starts_with("Metric template no-secret.test secret gone error: "),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // Incomplete credentials.
    w.secret("user-only", serde_json::json!({"username": "flagger"}))
        .await;
    w.template(
        "user-only",
        serde_json::json!({"type": "prometheus", "address": w.prom_url, "secretRef": {"name": "user-only"}}),
        "vector(1)",
    )
    .await;
    assert_eq!(
        w.run("user-only").await,
        MetricOutcome::Unusable(
            "Metric template user-only.test provider prometheus error: prometheus credentials does not contain a password".into()
        )
    );
    // A provider without the Secret keys it needs.
    w.template(
        "dd",
        serde_json::json!({"type": "datadog", "address": "https://api.datadoghq.com"}),
        "avg:requests{*}",
    )
    .await;
    assert_eq!(
        w.run("dd").await,
        MetricOutcome::Unusable(
            "Metric template dd.test provider datadog error: datadog credentials does not contain datadog_api_key".into()
        )
    );
    // A query that does not render.
    w.template(
        "bad-query",
        serde_json::json!({"type": "prometheus", "address": w.prom_url}),
        "sum({{ variables.nope }})",
    )
    .await;
    match w.run("bad-query").await {
        MetricOutcome::Unusable(m) => assert!(
            m.starts_with("Metric template bad-query.test query render error: ")
                && m.contains(r#"map has no entry for key "nope""#),
            "{m}"
        ),
        other => panic!("{other:?}"),
    }
    // None of these reached Prometheus.
    assert!(w.prom.seen().is_empty(), "{:?}", w.prom.seen());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_error_reads_as_its_status_and_error_text() {
    let w = World::start().await;
    w.secret("prom-token", serde_json::json!({"token": "t0ken"}))
        .await;
    w.template(
        "broken",
        serde_json::json!({"type": "prometheus", "address": w.prom_url, "secretRef": {"name": "prom-token"}}),
        r#"bad(sum(rate(http_requests_total{namespace="{{ namespace }}"}[1m])))"#,
    )
    .await;
    let check = w.check("broken").await;
    assert_eq!(
        check.outcome,
        MetricOutcome::Error(
            r#"error response: Status 400 Bad Request: bad_data: invalid parameter "query": 1:5: parse error: unexpected ")""#
                .into()
        )
    );
    assert_eq!(check.provider, "prometheus");
    assert_eq!(
        check.query.as_deref(),
        Some(r#"bad(sum(rate(http_requests_total{namespace="test"}[1m])))"#)
    );
    // Nothing of the request (address, encoded query, token) is in the reason.
    let reason = check.failure().unwrap();
    for leak in [w.prom_url.as_str(), "t0ken", "query=", "%7B"] {
        assert!(!reason.contains(leak), "{leak} in {reason}");
    }
}

/// A Prometheus behind TLS with a self-signed certificate: answers every query with 4.5.
async fn tls_prometheus() -> SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.der().clone()], key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake here.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000,"4.5"]}]}}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_skip_verify_accepts_a_self_signed_prometheus() {
    let w = World::start().await;
    let addr = tls_prometheus().await;
    let address = format!("https://127.0.0.1:{}", addr.port());
    w.template(
        "verified",
        serde_json::json!({"type": "prometheus", "address": address}),
        "vector(1)",
    )
    .await;
    w.template(
        "unverified",
        serde_json::json!({"type": "prometheus", "address": address, "insecureSkipVerify": true}),
        "vector(1)",
    )
    .await;

    match w.run("verified").await {
        MetricOutcome::Error(e) => assert!(
            e.starts_with("request failed: cannot connect to 127.0.0.1:")
                && e.ends_with(": invalid peer certificate: UnknownIssuer"),
            "{e}"
        ),
        other => panic!("a self-signed certificate was accepted: {other:?}"),
    }
    assert_eq!(w.run("unverified").await, MetricOutcome::Value(4.5));
}

const VARIANT_QUERY: &str =
    r#"avg(latency{app="{{ target }}", service="{{ service }}", side="{{ variables.variant }}"})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_marked_template_runs_two_range_queries_and_the_core_judges_them() {
    let w = World::start().await;
    w.marked_template(
        "latency",
        serde_json::json!({"flagger.app/compare": "judge",
                           "flagger.app/compare-options": "{direction: increase}"}),
        VARIANT_QUERY,
    )
    .await;
    let check = w.check("latency").await;
    let seen: Vec<String> = w.prom.seen().into_iter().map(|s| s.query).collect();
    let mut seen_sorted = seen.clone();
    seen_sorted.sort();
    assert_eq!(
        seen_sorted,
        [
            r#"range Some(30.0) Some(1.0) avg(latency{app="podinfo", service="podinfo-canary", side="canary"})"#,
            r#"range Some(30.0) Some(1.0) avg(latency{app="podinfo-primary", service="podinfo-primary", side="primary"})"#,
        ]
    );
    let compared = check.compared().expect("a comparison");
    assert_eq!(
        compared.primary.query,
        r#"avg(latency{app="podinfo-primary", service="podinfo-primary", side="primary"})"#
    );
    let judgement = compared.judgement().expect("judged");
    assert_eq!(judgement.score, 0.0);
    assert_eq!(
        judgement.metrics[0].classification,
        flagger_core::judge::Classification::High
    );
    assert_eq!(check.value(), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ratio_marked_template_runs_two_instant_queries() {
    let w = World::start().await;
    w.marked_template(
        "latency",
        serde_json::json!({"flagger.app/compare": "ratio"}),
        VARIANT_QUERY,
    )
    .await;
    let check = w.check("latency").await;
    assert_eq!(w.prom.seen().len(), 2);
    // Both answer 4.5: a ratio of 1.
    assert_eq!(check.value(), Some(1.0));
    assert!(w.prom.seen().iter().all(|s| !s.query.starts_with("range")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_marking_is_an_unusable_check_naming_the_annotation() {
    let w = World::start().await;
    w.marked_template(
        "latency",
        serde_json::json!({"flagger.app/compare": "judge",
                           "flagger.app/compare-options": "{direktion: increase}"}),
        VARIANT_QUERY,
    )
    .await;
    let MetricOutcome::Unusable(why) = w.run("latency").await else {
        panic!("a misspelt option ran");
    };
    assert!(
        why.starts_with("Metric template latency.test error: annotation flagger.app/compare-options: unknown field `direktion`"),
        "{why}"
    );
    assert!(w.prom.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_marking_makes_the_canary_invalid_naming_the_template() {
    let w = World::start().await;
    w.marked_template(
        "latency",
        serde_json::json!({"flagger.app/compare": "judge", "flagger.app/compare-stepp": "2s"}),
        VARIANT_QUERY,
    )
    .await;
    let lookups = Lookups::new(
        w.client.clone(),
        flagger_controller::cache::build(&w.client, None).0,
    );
    let problems = flagger_controller::canary::dereference::template_providers(
        &lookups,
        &w.clients,
        &validated_canary(),
    )
    .await
    .expect_err("refused");
    assert_eq!(
        problems,
        [
            "spec.analysis.metrics[0].templateRef: MetricTemplate latency.test: annotation flagger.app/compare-stepp is not known; the comparison annotations are flagger.app/compare, flagger.app/compare-options and flagger.app/compare-step"
        ]
    );
}
