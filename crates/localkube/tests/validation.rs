//! One row per validation rule localkube claims (docs/localkube.md, "validation of built-in
//! kinds" and "object names and metadata"): each feeds an object breaking the rule to the API
//! over HTTP and checks the whole answer as kube-apiserver gives it: `422 Invalid`, the
//! message kubectl prints, and `details` (kind, group, name, and every cause's `reason`,
//! `field` and `message`). Update rules create the valid object first and then PUT the
//! broken one. The texts come from kube-apiserver 1.32's `pkg/apis/*/validation` and
//! apimachinery's `util/validation`.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use axum::body::Body;
use serde_json::{Value, json};

/// One rule: the object that breaks it (`broken` applied to a valid object), and the causes
/// kube-apiserver answers with (reason, field, message), in its order.
struct Row {
    rule: &'static str,
    plural: &'static str,
    base: Value,
    broken: Box<dyn Fn(&mut Value)>,
    /// The rule is one of updates: create `base`, then PUT the broken object.
    update: bool,
    causes: Vec<(&'static str, &'static str, String)>,
}

fn row(
    rule: &'static str,
    plural: &'static str,
    base: Value,
    broken: impl Fn(&mut Value) + 'static,
    causes: &[(&'static str, &'static str, &str)],
) -> Row {
    Row {
        rule,
        plural,
        base,
        broken: Box::new(broken),
        update: false,
        causes: causes
            .iter()
            .map(|(r, f, m)| (*r, *f, m.to_string()))
            .collect(),
    }
}

fn on_update(mut r: Row) -> Row {
    r.update = true;
    r
}

const REQUIRED: &str = "FieldValueRequired";
const INVALID: &str = "FieldValueInvalid";
const NOT_SUPPORTED: &str = "FieldValueNotSupported";
const FORBIDDEN: &str = "FieldValueForbidden";
const DUPLICATE: &str = "FieldValueDuplicate";
const NOT_FOUND: &str = "FieldValueNotFound";
const TOO_LONG: &str = "FieldValueTooLong";

const DNS_LABEL: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";
const NONNEG: &str = "must be greater than or equal to 0";

/// The API path of a resource's collection in namespace `default`.
fn collection(plural: &str) -> String {
    match plural {
        "namespaces" => "/api/v1/namespaces".into(),
        "deployments" | "replicasets" | "daemonsets" | "statefulsets" => {
            format!("/apis/apps/v1/namespaces/default/{plural}")
        }
        "horizontalpodautoscalers" => {
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers".into()
        }
        "ingresses" => "/apis/networking.k8s.io/v1/namespaces/default/ingresses".into(),
        _ => format!("/api/v1/namespaces/default/{plural}"),
    }
}

fn kind_group(plural: &str) -> (&'static str, &'static str) {
    match plural {
        "services" => ("Service", ""),
        "pods" => ("Pod", ""),
        "configmaps" => ("ConfigMap", ""),
        "secrets" => ("Secret", ""),
        "namespaces" => ("Namespace", ""),
        "deployments" => ("Deployment", "apps"),
        "replicasets" => ("ReplicaSet", "apps"),
        "daemonsets" => ("DaemonSet", "apps"),
        "statefulsets" => ("StatefulSet", "apps"),
        "horizontalpodautoscalers" => ("HorizontalPodAutoscaler", "autoscaling"),
        "ingresses" => ("Ingress", "networking.k8s.io"),
        other => panic!("no kind for {other}"),
    }
}

/// Sends `body` with `method` to `url`; the status and the JSON answer.
async fn send(method: &str, url: &str, body: &Value) -> (u16, Value) {
    let uri: axum::http::Uri = url.parse().expect("a url");
    let addr = format!(
        "{}:{}",
        uri.host().expect("a host"),
        uri.port_u16().expect("a port")
    );
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connects");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = axum::http::Request::builder()
        .method(method)
        .uri(uri.path_and_query().expect("a path").as_str())
        .header("host", uri.authority().expect("an authority").as_str())
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).expect("json")))
        .expect("a request");
    let resp = sender.send_request(req).await.expect("an answer");
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(Body::new(resp.into_body()), usize::MAX)
        .await
        .expect("a body");
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn name_of(obj: &Value) -> String {
    obj["metadata"]["name"].as_str().unwrap_or_default().into()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default"})
}

fn container() -> Value {
    json!({"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.5.0", "ports": [{"name": "http", "containerPort": 9898}]})
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta(name), "spec": {"containers": [container()]}})
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [container()]}})
}

fn deploy(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta(name),
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": template()}})
}

fn workload(kind: &str, name: &str) -> Value {
    let mut d = deploy(name);
    d["kind"] = json!(kind);
    if kind == "StatefulSet" {
        d["spec"]["serviceName"] = json!(name);
    }
    d
}

fn svc(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": meta(name),
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 9898}]}})
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name), "data": {"a": "1"}})
}

fn secret(name: &str, ty: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta(name), "type": ty, "data": data})
}

fn hpa(name: &str) -> Value {
    json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta(name),
        "spec": {"minReplicas": 1, "maxReplicas": 3, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}})
}

fn ingress(name: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta(name),
        "spec": {"rules": [{"host": "app.example.com", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn service_rows() -> Vec<Row> {
    let ports = |o: &mut Value, p: Value| o["spec"]["ports"] = p;
    vec![
        row(
            "Service ports required",
            "services",
            svc("s1"),
            move |o| ports(o, json!([])),
            &[(REQUIRED, "spec.ports", "Required value")],
        ),
        row(
            "Service port names required when several",
            "services",
            svc("s2"),
            move |o| ports(o, json!([{"port": 80}, {"port": 81}])),
            &[
                (REQUIRED, "spec.ports[0].name", "Required value"),
                (REQUIRED, "spec.ports[1].name", "Required value"),
            ],
        ),
        row(
            "Service port names are DNS labels",
            "services",
            svc("s3"),
            move |o| ports(o, json!([{"name": "Web_1", "port": 80}])),
            &[(
                INVALID,
                "spec.ports[0].name",
                &format!("Invalid value: \"Web_1\": {DNS_LABEL}"),
            )],
        ),
        row(
            "Service port names unique",
            "services",
            svc("s4"),
            move |o| {
                ports(
                    o,
                    json!([{"name": "http", "port": 80}, {"name": "http", "port": 9898}]),
                )
            },
            &[(DUPLICATE, "spec.ports[1].name", "Duplicate value: \"http\"")],
        ),
        row(
            "Service port numbers 1-65535 (targetPort defaulted from it)",
            "services",
            svc("s5"),
            move |o| ports(o, json!([{"port": 70000}])),
            &[
                (
                    INVALID,
                    "spec.ports[0].port",
                    &format!("Invalid value: 70000: {PORT_RANGE}"),
                ),
                (
                    INVALID,
                    "spec.ports[0].targetPort",
                    &format!("Invalid value: 70000: {PORT_RANGE}"),
                ),
            ],
        ),
        row(
            "Service port/protocol pairs unique",
            "services",
            svc("s6"),
            move |o| {
                ports(
                    o,
                    json!([{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
                )
            },
            &[(
                DUPLICATE,
                "spec.ports[1]",
                "Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}",
            )],
        ),
        row(
            "Service port protocol",
            "services",
            svc("s7"),
            move |o| ports(o, json!([{"port": 80, "protocol": "HTTP"}])),
            &[(
                NOT_SUPPORTED,
                "spec.ports[0].protocol",
                "Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            )],
        ),
        row(
            "Service targetPort an IANA name",
            "services",
            svc("s8"),
            move |o| ports(o, json!([{"port": 80, "targetPort": "Web_1"}])),
            &[(
                INVALID,
                "spec.ports[0].targetPort",
                "Invalid value: \"Web_1\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
            )],
        ),
        row(
            "Service nodePort forbidden on ClusterIP",
            "services",
            svc("s9"),
            move |o| o["spec"]["ports"][0]["nodePort"] = json!(30080),
            &[(
                FORBIDDEN,
                "spec.ports[0].nodePort",
                "Forbidden: may not be used when `type` is 'ClusterIP'",
            )],
        ),
        row(
            "Service nodePort in the allocator's range",
            "services",
            svc("s10"),
            move |o| {
                o["spec"]["type"] = json!("NodePort");
                o["spec"]["ports"][0]["nodePort"] = json!(8080);
            },
            &[(
                INVALID,
                "spec.ports[0].nodePort",
                "Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767",
            )],
        ),
        row(
            "Service nodePorts unique",
            "services",
            svc("s11"),
            move |o| {
                o["spec"]["type"] = json!("NodePort");
                ports(
                    o,
                    json!([{"name": "a", "port": 80, "nodePort": 30100}, {"name": "b", "port": 81, "nodePort": 30100}]),
                );
            },
            &[(
                DUPLICATE,
                "spec.ports[1].nodePort",
                "Duplicate value: 30100",
            )],
        ),
        row(
            "Service type",
            "services",
            svc("s12"),
            move |o| o["spec"]["type"] = json!("Magic"),
            &[(
                NOT_SUPPORTED,
                "spec.type",
                "Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"",
            )],
        ),
        row(
            "Service session affinity",
            "services",
            svc("s13"),
            move |o| o["spec"]["sessionAffinity"] = json!("Sticky"),
            &[(
                NOT_SUPPORTED,
                "spec.sessionAffinity",
                "Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"",
            )],
        ),
        row(
            "Service externalTrafficPolicy only on externally-accessible Services",
            "services",
            svc("s14"),
            move |o| o["spec"]["externalTrafficPolicy"] = json!("Local"),
            &[(
                INVALID,
                "spec.externalTrafficPolicy",
                "Invalid value: \"Local\": may only be set for externally-accessible services",
            )],
        ),
        row(
            "Service externalTrafficPolicy values",
            "services",
            svc("s15"),
            move |o| {
                o["spec"]["type"] = json!("NodePort");
                o["spec"]["externalTrafficPolicy"] = json!("Everywhere");
            },
            &[(
                NOT_SUPPORTED,
                "spec.externalTrafficPolicy",
                "Unsupported value: \"Everywhere\": supported values: \"Cluster\", \"Local\"",
            )],
        ),
        row(
            "Service internalTrafficPolicy values",
            "services",
            svc("s16"),
            move |o| o["spec"]["internalTrafficPolicy"] = json!("Node"),
            &[(
                NOT_SUPPORTED,
                "spec.internalTrafficPolicy",
                "Unsupported value: \"Node\": supported values: \"Cluster\", \"Local\"",
            )],
        ),
        row(
            "Service selector labels",
            "services",
            svc("s17"),
            move |o| o["spec"]["selector"] = json!({"app": "-web"}),
            &[(
                INVALID,
                "spec.selector",
                "Invalid value: \"-web\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            )],
        ),
        row(
            "Service clusterIP a valid IP (the allocator's check, alone)",
            "services",
            svc("s18"),
            move |o| {
                o["spec"]["clusterIP"] = json!("10.96.0.300");
                o["spec"]["sessionAffinity"] = json!("Sticky");
            },
            &[(
                INVALID,
                "spec.clusterIPs[0]",
                "Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )],
        ),
        on_update(row(
            "Service clusterIP immutable",
            "services",
            svc("s19"),
            move |o| {
                o["spec"]["clusterIP"] = json!("10.96.99.99");
                o["spec"]["clusterIPs"] = json!(["10.96.99.99"]);
            },
            &[(
                INVALID,
                "spec.clusterIPs[0]",
                "Invalid value: []string{\"10.96.99.99\"}: may not change once set",
            )],
        )),
        row(
            "ExternalName Service needs externalName",
            "services",
            svc("s20"),
            move |o| o["spec"] = json!({"type": "ExternalName"}),
            &[(REQUIRED, "spec.externalName", "Required value")],
        ),
    ]
}

/// The first container of a pod.
fn c0(o: &mut Value) -> &mut Value {
    &mut o["spec"]["containers"][0]
}

fn pod_rows() -> Vec<Row> {
    vec![
        row(
            "Pod containers required",
            "pods",
            pod("p1"),
            |o| o["spec"]["containers"] = json!([]),
            &[(REQUIRED, "spec.containers", "Required value")],
        ),
        row(
            "container names are DNS labels",
            "pods",
            pod("p2"),
            move |o| c0(o)["name"] = json!("App_1"),
            &[(
                INVALID,
                "spec.containers[0].name",
                &format!("Invalid value: \"App_1\": {DNS_LABEL}"),
            )],
        ),
        row(
            "container names unique across init and regular containers",
            "pods",
            pod("p3"),
            |o| o["spec"]["initContainers"] = json!([{"name": "app", "image": "busybox:1.36"}]),
            &[(
                DUPLICATE,
                "spec.initContainers[0].name",
                "Duplicate value: \"app\"",
            )],
        ),
        row(
            "container image required",
            "pods",
            pod("p4"),
            move |o| c0(o)["image"] = json!(""),
            &[(REQUIRED, "spec.containers[0].image", "Required value")],
        ),
        row(
            "container imagePullPolicy",
            "pods",
            pod("p5"),
            move |o| c0(o)["imagePullPolicy"] = json!("Sometimes"),
            &[(
                NOT_SUPPORTED,
                "spec.containers[0].imagePullPolicy",
                "Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"",
            )],
        ),
        row(
            "container port names IANA and unique",
            "pods",
            pod("p6"),
            move |o| {
                c0(o)["ports"] = json!([
                    {"name": "http", "containerPort": 80},
                    {"name": "http", "containerPort": 81},
                    {"name": "9898", "containerPort": 82}
                ])
            },
            &[
                (
                    DUPLICATE,
                    "spec.containers[0].ports[1].name",
                    "Duplicate value: \"http\"",
                ),
                (
                    INVALID,
                    "spec.containers[0].ports[2].name",
                    "Invalid value: \"9898\": must contain at least one letter (a-z)",
                ),
            ],
        ),
        row(
            "containerPort 1-65535",
            "pods",
            pod("p7"),
            move |o| c0(o)["ports"] = json!([{"containerPort": 70000}]),
            &[(
                INVALID,
                "spec.containers[0].ports[0].containerPort",
                &format!("Invalid value: 70000: {PORT_RANGE}"),
            )],
        ),
        row(
            "hostPort 1-65535",
            "pods",
            pod("p8"),
            move |o| c0(o)["ports"] = json!([{"containerPort": 80, "hostPort": 70000}]),
            &[(
                INVALID,
                "spec.containers[0].ports[0].hostPort",
                &format!("Invalid value: 70000: {PORT_RANGE}"),
            )],
        ),
        row(
            "container port protocol",
            "pods",
            pod("p9"),
            move |o| c0(o)["ports"] = json!([{"containerPort": 80, "protocol": "QUIC"}]),
            &[(
                NOT_SUPPORTED,
                "spec.containers[0].ports[0].protocol",
                "Unsupported value: \"QUIC\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            )],
        ),
        row(
            "probe with more than one handler",
            "pods",
            pod("p10"),
            move |o| c0(o)["readinessProbe"] = json!({"httpGet": {"port": 9898}, "tcpSocket": {"port": 9898}, "exec": {"command": ["true"]}}),
            &[
                (
                    FORBIDDEN,
                    "spec.containers[0].readinessProbe.httpGet",
                    "Forbidden: may not specify more than 1 handler type",
                ),
                (
                    FORBIDDEN,
                    "spec.containers[0].readinessProbe.tcpSocket",
                    "Forbidden: may not specify more than 1 handler type",
                ),
            ],
        ),
        row(
            "probe without a handler",
            "pods",
            pod("p11"),
            move |o| c0(o)["livenessProbe"] = json!({"periodSeconds": 5}),
            &[(
                REQUIRED,
                "spec.containers[0].livenessProbe",
                "Required value: must specify a handler type",
            )],
        ),
        row(
            "httpGet probe port: unset is 0, a name must be IANA",
            "pods",
            pod("p12"),
            move |o| {
                c0(o)["livenessProbe"] = json!({"httpGet": {"path": "/healthz"}});
                c0(o)["readinessProbe"] =
                    json!({"httpGet": {"path": "/readyz", "port": "Http_Port"}});
            },
            &[
                (
                    INVALID,
                    "spec.containers[0].livenessProbe.httpGet.port",
                    &format!("Invalid value: 0: {PORT_RANGE}"),
                ),
                (
                    INVALID,
                    "spec.containers[0].readinessProbe.httpGet.port",
                    "Invalid value: \"Http_Port\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                ),
            ],
        ),
        row(
            "httpGet probe scheme",
            "pods",
            pod("p13"),
            move |o| {
                c0(o)["readinessProbe"] =
                    json!({"httpGet": {"path": "/", "port": 9898, "scheme": "FTP"}})
            },
            &[(
                NOT_SUPPORTED,
                "spec.containers[0].readinessProbe.httpGet.scheme",
                "Unsupported value: \"FTP\": supported values: \"HTTP\", \"HTTPS\"",
            )],
        ),
        row(
            "probe numbers non-negative",
            "pods",
            pod("p14"),
            move |o| c0(o)["readinessProbe"] = json!({"tcpSocket": {"port": 9898}, "periodSeconds": -1, "initialDelaySeconds": -5}),
            &[
                (
                    INVALID,
                    "spec.containers[0].readinessProbe.initialDelaySeconds",
                    &format!("Invalid value: -5: {NONNEG}"),
                ),
                (
                    INVALID,
                    "spec.containers[0].readinessProbe.periodSeconds",
                    &format!("Invalid value: -1: {NONNEG}"),
                ),
            ],
        ),
        row(
            "liveness and startup successThreshold 1",
            "pods",
            pod("p15"),
            move |o| {
                c0(o)["livenessProbe"] =
                    json!({"tcpSocket": {"port": 9898}, "successThreshold": 2});
                c0(o)["startupProbe"] = json!({"tcpSocket": {"port": 9898}, "successThreshold": 3});
            },
            &[
                (
                    INVALID,
                    "spec.containers[0].livenessProbe.successThreshold",
                    "Invalid value: 2: must be 1",
                ),
                (
                    INVALID,
                    "spec.containers[0].startupProbe.successThreshold",
                    "Invalid value: 3: must be 1",
                ),
            ],
        ),
        row(
            "resource names",
            "pods",
            pod("p16"),
            // A Pod's requests are defaulted from its limits, so both are reported.
            move |o| c0(o)["resources"] = json!({"limits": {"gpu": "1"}}),
            &[
                (
                    INVALID,
                    "spec.containers[0].resources.limits[gpu]",
                    "Invalid value: \"gpu\": must be a standard resource for containers",
                ),
                (
                    INVALID,
                    "spec.containers[0].resources.requests[gpu]",
                    "Invalid value: \"gpu\": must be a standard resource for containers",
                ),
            ],
        ),
        row(
            "resource quantities not negative",
            "pods",
            pod("p17"),
            move |o| {
                c0(o)["resources"] =
                    json!({"limits": {"memory": "-1Gi"}, "requests": {"memory": "1Mi"}})
            },
            &[
                (
                    INVALID,
                    "spec.containers[0].resources.limits[memory]",
                    &format!("Invalid value: \"-1Gi\": {NONNEG}"),
                ),
                (
                    INVALID,
                    "spec.containers[0].resources.requests",
                    "Invalid value: \"1Mi\": must be less than or equal to memory limit of -1Gi",
                ),
            ],
        ),
        row(
            "requests not above limits",
            "pods",
            pod("p18"),
            move |o| {
                c0(o)["resources"] = json!({"limits": {"cpu": "100m"}, "requests": {"cpu": "200m"}})
            },
            &[(
                INVALID,
                "spec.containers[0].resources.requests",
                "Invalid value: \"200m\": must be less than or equal to cpu limit of 100m",
            )],
        ),
        row(
            "env names required and printable ASCII but '='",
            "pods",
            pod("p19"),
            move |o| c0(o)["env"] = json!([{"name": "", "value": "x"}, {"name": "A=B", "value": "y"}, {"name": "my.env-name 1", "value": "z"}]),
            &[
                (REQUIRED, "spec.containers[0].env[0].name", "Required value"),
                (
                    INVALID,
                    "spec.containers[0].env[1].name",
                    "Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                ),
            ],
        ),
        row(
            "volume names DNS labels and unique",
            "pods",
            pod("p20"),
            |o| o["spec"]["volumes"] = json!([{"name": "cfg"}, {"name": "cfg"}, {"name": "Data"}]),
            &[
                (
                    DUPLICATE,
                    "spec.volumes[1].name",
                    "Duplicate value: \"cfg\"",
                ),
                (
                    INVALID,
                    "spec.volumes[2].name",
                    &format!("Invalid value: \"Data\": {DNS_LABEL}"),
                ),
            ],
        ),
        row(
            "volume mounts name a volume",
            "pods",
            pod("p21"),
            move |o| c0(o)["volumeMounts"] = json!([{"name": "data", "mountPath": "/data"}]),
            &[(
                NOT_FOUND,
                "spec.containers[0].volumeMounts[0].name",
                "Not found: \"data\"",
            )],
        ),
        row(
            "restart policy",
            "pods",
            pod("p22"),
            |o| o["spec"]["restartPolicy"] = json!("Sometimes"),
            &[(
                NOT_SUPPORTED,
                "spec.restartPolicy",
                "Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            )],
        ),
        row(
            "DNS policy values",
            "pods",
            pod("p23"),
            |o| o["spec"]["dnsPolicy"] = json!("Cluster"),
            &[(
                NOT_SUPPORTED,
                "spec.dnsPolicy",
                "Unsupported value: \"Cluster\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\"",
            )],
        ),
        row(
            "DNS policy None needs dnsConfig",
            "pods",
            pod("p24"),
            |o| o["spec"]["dnsPolicy"] = json!("None"),
            &[(
                REQUIRED,
                "spec.dnsConfig",
                "Required value: must provide `dnsConfig` when `dnsPolicy` is None",
            )],
        ),
        row(
            "probes forbidden on init containers",
            "pods",
            pod("p25"),
            |o| {
                o["spec"]["initContainers"] = json!([{"name": "init", "image": "busybox:1.36",
                    "readinessProbe": {"exec": {"command": ["true"]}}}])
            },
            &[(
                FORBIDDEN,
                "spec.initContainers[0].readinessProbe",
                "Forbidden: may not be set for init containers without restartPolicy=Always",
            )],
        ),
        row(
            "pod template labels (a Deployment's)",
            "deployments",
            deploy("p26"),
            |o| o["spec"]["template"]["metadata"]["annotations"] = json!({"a b": "c"}),
            &[(
                INVALID,
                "spec.template.annotations",
                "Invalid value: \"a b\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            )],
        ),
    ]
}

fn workload_rows() -> Vec<Row> {
    let ru = |o: &mut Value, v: Value| {
        o["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": v})
    };
    let ds_ru = |o: &mut Value, v: Value| {
        o["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": v})
    };
    vec![
        row(
            "Deployment selector required",
            "deployments",
            deploy("d1"),
            |o| o["spec"]["selector"] = Value::Null,
            &[(REQUIRED, "spec.selector", "Required value")],
        ),
        row(
            "Deployment selector not empty",
            "deployments",
            deploy("d2"),
            |o| o["spec"]["selector"] = json!({}),
            &[(
                INVALID,
                "spec.selector",
                "Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
            )],
        ),
        row(
            "Deployment selector matches the template labels",
            "deployments",
            deploy("d3"),
            |o| o["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"}),
            &[(
                INVALID,
                "spec.template.metadata.labels",
                "Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`",
            )],
        ),
        row(
            "Deployment template restartPolicy Always",
            "deployments",
            deploy("d4"),
            |o| o["spec"]["template"]["spec"]["restartPolicy"] = json!("Never"),
            &[(
                NOT_SUPPORTED,
                "spec.template.spec.restartPolicy",
                "Unsupported value: \"Never\": supported values: \"Always\"",
            )],
        ),
        row(
            "Deployment replicas non-negative",
            "deployments",
            deploy("d5"),
            |o| o["spec"]["replicas"] = json!(-1),
            &[(
                INVALID,
                "spec.replicas",
                &format!("Invalid value: -1: {NONNEG}"),
            )],
        ),
        row(
            "Deployment revisionHistoryLimit non-negative",
            "deployments",
            deploy("d6"),
            |o| o["spec"]["revisionHistoryLimit"] = json!(-1),
            &[(
                INVALID,
                "spec.revisionHistoryLimit",
                &format!("Invalid value: -1: {NONNEG}"),
            )],
        ),
        row(
            "Deployment maxSurge and maxUnavailable not both 0",
            "deployments",
            deploy("d7"),
            move |o| ru(o, json!({"maxSurge": 0, "maxUnavailable": "0%"})),
            &[(
                INVALID,
                "spec.strategy.rollingUpdate.maxUnavailable",
                "Invalid value: 0%: may not be 0 when `maxSurge` is 0",
            )],
        ),
        row(
            "Deployment maxUnavailable at most 100%",
            "deployments",
            deploy("d8"),
            move |o| ru(o, json!({"maxSurge": 1, "maxUnavailable": "120%"})),
            &[(
                INVALID,
                "spec.strategy.rollingUpdate.maxUnavailable",
                "Invalid value: 120%: must not be greater than 100%",
            )],
        ),
        row(
            "Deployment maxSurge percent syntax",
            "deployments",
            deploy("d9"),
            move |o| ru(o, json!({"maxSurge": "half", "maxUnavailable": 1})),
            &[(
                INVALID,
                "spec.strategy.rollingUpdate.maxSurge",
                "Invalid value: half: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )],
        ),
        row(
            "Deployment progressDeadlineSeconds above minReadySeconds",
            "deployments",
            deploy("d10"),
            |o| {
                o["spec"]["minReadySeconds"] = json!(30);
                o["spec"]["progressDeadlineSeconds"] = json!(30);
            },
            &[(
                INVALID,
                "spec.progressDeadlineSeconds",
                "Invalid value: 30: must be greater than minReadySeconds",
            )],
        ),
        row(
            "Deployment strategy type",
            "deployments",
            deploy("d11"),
            |o| o["spec"]["strategy"] = json!({"type": "BlueGreen"}),
            &[(
                NOT_SUPPORTED,
                "spec.strategy",
                "Unsupported value: apps.DeploymentStrategy{Type:\"BlueGreen\", RollingUpdate:(*apps.RollingUpdateDeployment)(nil)}: supported values: \"Recreate\", \"RollingUpdate\"",
            )],
        ),
        row(
            "Deployment Recreate without rollingUpdate",
            "deployments",
            deploy("d12"),
            |o| {
                o["spec"]["strategy"] =
                    json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})
            },
            &[(
                FORBIDDEN,
                "spec.strategy.rollingUpdate",
                "Forbidden: may not be specified when strategy `type` is 'Recreate'",
            )],
        ),
        on_update(row(
            "Deployment selector immutable",
            "deployments",
            deploy("d13"),
            |o| {
                o["spec"]["selector"] = json!({"matchLabels": {"app": "web", "tier": "front"}});
                o["spec"]["template"]["metadata"]["labels"] =
                    json!({"app": "web", "tier": "front"});
            },
            &[(
                INVALID,
                "spec.selector",
                "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"tier\":\"front\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
            )],
        )),
        row(
            "ReplicaSet replicas non-negative",
            "replicasets",
            workload("ReplicaSet", "rs1"),
            |o| o["spec"]["replicas"] = json!(-2),
            &[(
                INVALID,
                "spec.replicas",
                &format!("Invalid value: -2: {NONNEG}"),
            )],
        ),
        row(
            "DaemonSet updateStrategy type",
            "daemonsets",
            workload("DaemonSet", "ds1"),
            |o| o["spec"]["updateStrategy"] = json!({"type": "Surge"}),
            &[(
                NOT_SUPPORTED,
                "spec.updateStrategy",
                "Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Surge\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\"",
            )],
        ),
        row(
            "DaemonSet maxSurge and maxUnavailable not both set",
            "daemonsets",
            workload("DaemonSet", "ds2"),
            move |o| ds_ru(o, json!({"maxSurge": 1, "maxUnavailable": 1})),
            &[(
                INVALID,
                "spec.updateStrategy.rollingUpdate.maxSurge",
                "Invalid value: 1: may not be set when maxUnavailable is non-zero",
            )],
        ),
        row(
            "DaemonSet maxSurge and maxUnavailable not both 0",
            "daemonsets",
            workload("DaemonSet", "ds3"),
            move |o| ds_ru(o, json!({"maxSurge": 0, "maxUnavailable": 0})),
            &[(
                REQUIRED,
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
                "Required value: cannot be 0 when maxSurge is 0",
            )],
        ),
        row(
            "DaemonSet maxSurge at most 100%",
            "daemonsets",
            workload("DaemonSet", "ds4"),
            move |o| ds_ru(o, json!({"maxSurge": "150%", "maxUnavailable": 0})),
            &[(
                INVALID,
                "spec.updateStrategy.rollingUpdate.maxSurge",
                "Invalid value: 150%: must not be greater than 100%",
            )],
        ),
        row(
            "DaemonSet revisionHistoryLimit non-negative",
            "daemonsets",
            workload("DaemonSet", "ds5"),
            |o| o["spec"]["revisionHistoryLimit"] = json!(-3),
            &[(
                INVALID,
                "spec.revisionHistoryLimit",
                &format!("Invalid value: -3: {NONNEG}"),
            )],
        ),
        row(
            "DaemonSet selector not empty",
            "daemonsets",
            workload("DaemonSet", "ds6"),
            |o| o["spec"]["selector"] = json!({"matchLabels": {}}),
            // An empty selector selects everything, so the labels match it.
            &[(
                INVALID,
                "spec.selector",
                "Invalid value: v1.LabelSelector{MatchLabels:map[string]string{}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset",
            )],
        ),
        row(
            "StatefulSet updateStrategy type",
            "statefulsets",
            workload("StatefulSet", "ss1"),
            |o| o["spec"]["updateStrategy"] = json!({"type": "Canary"}),
            &[(
                INVALID,
                "spec.updateStrategy",
                "Invalid value: apps.StatefulSetUpdateStrategy{Type:\"Canary\", RollingUpdate:(*apps.RollingUpdateStatefulSetStrategy)(nil)}: must be 'RollingUpdate' or 'OnDelete'",
            )],
        ),
        row(
            "StatefulSet podManagementPolicy",
            "statefulsets",
            workload("StatefulSet", "ss2"),
            |o| o["spec"]["podManagementPolicy"] = json!("Random"),
            &[(
                INVALID,
                "spec.podManagementPolicy",
                "Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'",
            )],
        ),
        row(
            "StatefulSet OnDelete has no rollingUpdate",
            "statefulsets",
            workload("StatefulSet", "ss3"),
            |o| {
                o["spec"]["updateStrategy"] =
                    json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}})
            },
            &[(
                INVALID,
                "spec.updateStrategy.rollingUpdate",
                "Invalid value: apps.RollingUpdateStatefulSetStrategy{Partition:1, MaxUnavailable:(*intstr.IntOrString)(nil)}: only allowed for updateStrategy 'RollingUpdate'",
            )],
        ),
        row(
            "StatefulSet partition non-negative",
            "statefulsets",
            workload("StatefulSet", "ss4"),
            |o| {
                o["spec"]["updateStrategy"] =
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": -1}})
            },
            &[(
                INVALID,
                "spec.updateStrategy.rollingUpdate.partition",
                &format!("Invalid value: -1: {NONNEG}"),
            )],
        ),
        row(
            "StatefulSet PVC retention policy values",
            "statefulsets",
            workload("StatefulSet", "ss5"),
            |o| {
                o["spec"]["persistentVolumeClaimRetentionPolicy"] =
                    json!({"whenDeleted": "Keep", "whenScaled": "Delete"})
            },
            &[(
                NOT_SUPPORTED,
                "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
                "Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\"",
            )],
        ),
        on_update(row(
            "StatefulSet updates limited to its mutable fields",
            "statefulsets",
            workload("StatefulSet", "ss6"),
            |o| o["spec"]["serviceName"] = json!("other"),
            &[(
                FORBIDDEN,
                "spec",
                "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            )],
        )),
    ]
}

fn data_rows() -> Vec<Row> {
    let big = "x".repeat(1024 * 1024 + 1);
    let big_b64 = b64(&"x".repeat(1024 * 1024 + 1));
    vec![
        row(
            "ConfigMap keys",
            "configmaps",
            cm("c1"),
            |o| o["data"] = json!({"a/b": "1"}),
            &[(
                INVALID,
                "data[a/b]",
                "Invalid value: \"a/b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
            )],
        ),
        row(
            "ConfigMap at most 1 MiB",
            "configmaps",
            cm("c2"),
            move |o| o["data"] = json!({"big": big}),
            &[(TOO_LONG, "", "Too long: must have at most 1048576 bytes")],
        ),
        on_update(row(
            "immutable ConfigMap data",
            "configmaps",
            {
                let mut c = cm("c3");
                c["immutable"] = json!(true);
                c
            },
            |o| o["data"] = json!({"a": "2"}),
            &[(
                FORBIDDEN,
                "data",
                "Forbidden: field is immutable when `immutable` is set",
            )],
        )),
        on_update(row(
            "immutable ConfigMap stays immutable",
            "configmaps",
            {
                let mut c = cm("c4");
                c["immutable"] = json!(true);
                c
            },
            |o| o["immutable"] = json!(false),
            &[(
                FORBIDDEN,
                "immutable",
                "Forbidden: field is immutable when `immutable` is set",
            )],
        )),
        row(
            "Secret at most 1 MiB",
            "secrets",
            secret("x1", "Opaque", json!({})),
            move |o| o["data"] = json!({"big": big_b64}),
            &[(
                TOO_LONG,
                "data",
                "Too long: must have at most 1048576 bytes",
            )],
        ),
        row(
            "Secret keys",
            "secrets",
            secret("x2", "Opaque", json!({})),
            |o| o["data"] = json!({"..a": b64("x")}),
            &[(
                INVALID,
                "data[..a]",
                "Invalid value: \"..a\": must not start with '..'",
            )],
        ),
        row(
            "tls Secret needs tls.crt and tls.key",
            "secrets",
            secret("x3", "Opaque", json!({})),
            |o| {
                o["type"] = json!("kubernetes.io/tls");
                o["data"] = json!({"tls.crt": b64("cert")});
            },
            &[(REQUIRED, "data[tls.key]", "Required value")],
        ),
        row(
            "dockerconfigjson Secret needs .dockerconfigjson",
            "secrets",
            secret("x4", "Opaque", json!({})),
            |o| o["type"] = json!("kubernetes.io/dockerconfigjson"),
            &[(REQUIRED, "data[.dockerconfigjson]", "Required value")],
        ),
        row(
            "dockerconfigjson Secret holds a JSON object",
            "secrets",
            secret("x5", "Opaque", json!({})),
            |o| {
                o["type"] = json!("kubernetes.io/dockerconfigjson");
                o["data"] = json!({".dockerconfigjson": b64("[]")});
            },
            &[(
                INVALID,
                "data[.dockerconfigjson]",
                "Invalid value: \"<secret contents redacted>\": json: cannot unmarshal array into Go value of type map[string]interface {}",
            )],
        ),
        row(
            "dockerconfigjson Secret holds JSON",
            "secrets",
            secret("x6", "Opaque", json!({})),
            |o| {
                o["type"] = json!("kubernetes.io/dockerconfigjson");
                o["data"] = json!({".dockerconfigjson": b64("{auths}")});
            },
            &[(
                INVALID,
                "data[.dockerconfigjson]",
                "Invalid value: \"<secret contents redacted>\": invalid character '{' looking for beginning of value",
            )],
        ),
        row(
            "basic-auth Secret needs username or password",
            "secrets",
            secret("x7", "Opaque", json!({})),
            |o| o["type"] = json!("kubernetes.io/basic-auth"),
            &[
                (REQUIRED, "data[username]", "Required value"),
                (REQUIRED, "data[password]", "Required value"),
            ],
        ),
        row(
            "ssh-auth Secret needs a non-empty ssh-privatekey",
            "secrets",
            secret("x8", "Opaque", json!({})),
            |o| {
                o["type"] = json!("kubernetes.io/ssh-auth");
                o["data"] = json!({"ssh-privatekey": ""});
            },
            &[(REQUIRED, "data[ssh-privatekey]", "Required value")],
        ),
        on_update(row(
            "Secret type immutable",
            "secrets",
            secret("x9", "Opaque", json!({"a": b64("1")})),
            |o| o["type"] = json!("example.com/other"),
            &[(
                INVALID,
                "type",
                "Invalid value: \"example.com/other\": field is immutable",
            )],
        )),
        row(
            "Namespace spec.finalizers names",
            "namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n1"}}),
            |o| o["spec"] = json!({"finalizers": ["example"]}),
            &[(
                INVALID,
                "spec.finalizers",
                "Invalid value: \"example\": name is neither a standard finalizer name nor is it fully qualified",
            )],
        ),
    ]
}

fn other_rows() -> Vec<Row> {
    vec![
        row(
            "HPA minReplicas at least 1, maxReplicas at least minReplicas",
            "horizontalpodautoscalers",
            hpa("h1"),
            |o| {
                o["spec"]["minReplicas"] = json!(5);
                o["spec"]["maxReplicas"] = json!(2);
            },
            &[(
                INVALID,
                "spec.maxReplicas",
                "Invalid value: 2: must be greater than or equal to `minReplicas`",
            )],
        ),
        row(
            "HPA scaleTargetRef name",
            "horizontalpodautoscalers",
            hpa("h2"),
            |o| o["spec"]["scaleTargetRef"]["name"] = json!(""),
            &[(REQUIRED, "spec.scaleTargetRef.name", "Required value")],
        ),
        row(
            "HPA metric source type",
            "horizontalpodautoscalers",
            hpa("h3"),
            |o| o["spec"]["metrics"] = json!([{"type": "Memory"}]),
            &[(
                NOT_SUPPORTED,
                "spec.metrics[0].type",
                "Unsupported value: \"Memory\": supported values: \"ContainerResource\", \"External\", \"Object\", \"Pods\", \"Resource\"",
            )],
        ),
        row(
            "HPA target utilization above 0",
            "horizontalpodautoscalers",
            hpa("h4"),
            |o| o["spec"]["metrics"] = json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 0}}}]),
            &[(
                INVALID,
                "spec.metrics[0].resource.target.averageUtilization",
                "Invalid value: 0: must be greater than 0",
            )],
        ),
        row(
            "Ingress rules or a default backend",
            "ingresses",
            ingress("i1"),
            |o| o["spec"] = json!({}),
            &[(
                INVALID,
                "spec",
                "Invalid value: []networking.IngressRule(nil): either `defaultBackend` or `rules` must be specified",
            )],
        ),
        row(
            "Ingress hosts are not IPs",
            "ingresses",
            ingress("i2"),
            |o| o["spec"]["rules"][0]["host"] = json!("10.0.0.1"),
            &[(
                INVALID,
                "spec.rules[0].host",
                "Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address",
            )],
        ),
        row(
            "Ingress pathType required",
            "ingresses",
            ingress("i3"),
            |o| o["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = Value::Null,
            &[(
                REQUIRED,
                "spec.rules[0].http.paths[0].pathType",
                "Required value: pathType must be specified",
            )],
        ),
        row(
            "Ingress backend port",
            "ingresses",
            ingress("i4"),
            |o| o["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = json!({}),
            &[(
                REQUIRED,
                "spec.rules[0].http.paths[0].backend",
                "Required value: port name or number is required",
            )],
        ),
        row(
            "object names (ConfigMaps: DNS-1123 subdomains)",
            "configmaps",
            cm("m1"),
            |o| o["metadata"]["name"] = json!("Bad_Name"),
            &[(
                INVALID,
                "metadata.name",
                "Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
            )],
        ),
        row(
            "object names (Services: DNS-1035 labels)",
            "services",
            svc("m2"),
            |o| o["metadata"]["name"] = json!("1web"),
            &[(
                INVALID,
                "metadata.name",
                "Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
            )],
        ),
        row(
            "metadata finalizers on built-in kinds",
            "configmaps",
            cm("m3"),
            |o| o["metadata"]["finalizers"] = json!(["cleanup"]),
            &[(
                INVALID,
                "metadata.finalizers[0]",
                "Invalid value: \"cleanup\": name is neither a standard finalizer name nor is it fully qualified",
            )],
        ),
    ]
}

fn expected_message(
    kind: &str,
    group: &str,
    name: &str,
    causes: &[(&str, &str, String)],
) -> String {
    let kg = if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    };
    let texts: Vec<String> = causes.iter().map(|(_, f, m)| format!("{f}: {m}")).collect();
    let agg = match texts.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    format!("{kg} \"{name}\" is invalid: {agg}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_answers_as_kube_apiserver() {
    let (h, _client) = common::start().await;
    let url = h.url();
    let rows: Vec<Row> = [
        service_rows(),
        pod_rows(),
        workload_rows(),
        data_rows(),
        other_rows(),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut failures = Vec::new();
    for r in &rows {
        let coll = format!("{url}{}", collection(r.plural));
        let mut obj = r.base.clone();
        if r.update {
            let (code, created) = send("POST", &coll, &r.base).await;
            assert_eq!(
                code, 201,
                "{}: the valid object is created: {created}",
                r.rule
            );
            obj = created;
            // An unconditional update, as the controllers may have written the object since.
            if let Some(m) = obj["metadata"].as_object_mut() {
                m.remove("resourceVersion");
            }
        } else {
            // The valid object is valid (created under another name, then the rule's row).
            let mut probe = r.base.clone();
            probe["metadata"]["name"] = json!(format!("{}-ok", name_of(&r.base)));
            let (code, body) = send("POST", &coll, &probe).await;
            assert_eq!(code, 201, "{}: the valid object is created: {body}", r.rule);
        }
        (r.broken)(&mut obj);
        let name = name_of(&obj);
        let (code, body) = if r.update {
            send("PUT", &format!("{coll}/{name}"), &obj).await
        } else {
            send("POST", &coll, &obj).await
        };
        let (kind, group) = kind_group(r.plural);
        let want = json!({
            "code": 422,
            "reason": "Invalid",
            "message": expected_message(kind, group, &name, &r.causes),
            "details": {"name": name, "group": group, "kind": kind, "causes":
                r.causes.iter().map(|(reason, field, message)| json!({"reason": reason, "message": message, "field": field})).collect::<Vec<_>>()},
        });
        let got = json!({
            "code": code,
            "reason": body["reason"],
            "message": body["message"],
            "details": body["details"],
        });
        if got != want || body["kind"] != "Status" || body["status"] != "Failure" {
            failures.push(format!(
                "{}:\n  want {}\n  got  {}",
                r.rule,
                serde_json::to_string(&want).unwrap_or_default(),
                serde_json::to_string(&body).unwrap_or_default()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rules differ:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Fields a decoder cannot read are a 400 before validation, as kube-apiserver's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_quantities_are_decode_errors() {
    let (h, _client) = common::start().await;
    let mut p = pod("q1");
    p["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "lots"}});
    let (code, body) = send("POST", &format!("{}{}", h.url(), collection("pods")), &p).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["reason"], "BadRequest");
    assert_eq!(
        body["message"],
        "Pod in version \"v1\" cannot be handled as a Pod: quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    );
}
