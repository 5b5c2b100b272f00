//! The install manifests (`deploy/`): the kustomize bases are applied with the real
//! `kubectl apply -k` to localkube and the objects they create are checked; the controller is
//! then started with the Deployment's own arguments and must become ready, and so must a
//! controller started with the arguments of each of Flagger's install variants (its kustomize
//! overlays and the chart values of its install docs). The Helm charts are rendered with the
//! real `helm template` (scripts/test.sh installs Helm) for Flagger's documented value sets and
//! the objects checked; a rendered chart is applied to localkube with kubectl.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy");

fn deploy(path: &str) -> PathBuf {
    Path::new(DEPLOY).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(deploy(path)).unwrap_or_else(|e| panic!("reading deploy/{path}: {e}"))
}

/// Runs kubectl against `kubeconfig`; panics with its stderr when it fails.
fn kubectl(kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn kubectl_json(kubeconfig: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    serde_json::from_str(&kubectl(kubeconfig, &all)).expect("kubectl prints JSON")
}

/// Every rule as (apiGroup, resource, verb) triples.
fn rule_triples(rules: &Value) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules.as_array().expect("rules is a list") {
        let strings = |key: &str| -> Vec<String> {
            rule[key]
                .as_array()
                .unwrap_or_else(|| panic!("rule without {key}: {rule}"))
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect()
        };
        for group in strings("apiGroups") {
            for resource in strings("resources") {
                for verb in strings("verbs") {
                    out.insert((group.clone(), resource.clone(), verb));
                }
            }
        }
    }
    out
}

/// The permissions the controller uses (crates/controller/src), and only those.
fn expected_rules() -> BTreeSet<(String, String, String)> {
    let spec: &[(&str, &[&str], &[&str])] = &[
        (
            "flagger.app",
            &["canaries"],
            &["get", "list", "watch", "patch"],
        ),
        ("flagger.app", &["canaries/status"], &["get", "update"]),
        (
            "flagger.app",
            &["metrictemplates", "alertproviders"],
            &["get", "list", "watch"],
        ),
        (
            "apps",
            &["deployments", "daemonsets"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "",
            &["configmaps", "secrets"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            "",
            &["services"],
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        (
            "autoscaling",
            &["horizontalpodautoscalers"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "keda.sh",
            &["scaledobjects"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "coordination.k8s.io",
            &["leases"],
            &["get", "list", "create", "update"],
        ),
        (
            "networking.istio.io",
            &["virtualservices"],
            &["get", "list", "watch", "create", "update", "patch"],
        ),
        (
            "networking.istio.io",
            &["destinationrules"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "split.smi-spec.io",
            &["trafficsplits"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "gateway.networking.k8s.io",
            &["httproutes"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "networking.k8s.io",
            &["ingresses"],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        (
            "projectcontour.io",
            &["httpproxies"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "gloo.solo.io",
            &["upstreams"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "gateway.solo.io",
            &["routetables"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "traefik.io",
            &["traefikservices"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "traefik.containo.us",
            &["traefikservices"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "apisix.apache.org",
            &["apisixroutes"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "kuma.io",
            &["trafficroutes"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "appmesh.k8s.aws",
            &["virtualnodes", "virtualrouters", "virtualservices"],
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "serving.knative.dev",
            &["services"],
            &["get", "list", "watch", "patch"],
        ),
        (
            "serving.knative.dev",
            &["revisions"],
            &["get", "list", "watch"],
        ),
        ("metrics.keptn.sh", &["keptnmetrics"], &["get"]),
        (
            "metrics.keptn.sh",
            &["analyses"],
            &["get", "create", "delete"],
        ),
        ("external.metrics.k8s.io", &["*"], &["get", "list"]),
        ("flagger.app", &["alertproviders"], &["get"]),
        ("", &["events"], &["create", "patch"]),
        ("", &["namespaces"], &["get"]),
    ];
    let mut out = BTreeSet::new();
    for (group, resources, verbs) in spec {
        for r in *resources {
            for v in *verbs {
                out.insert((group.to_string(), r.to_string(), v.to_string()));
            }
        }
    }
    out
}

/// A localkube served by a runtime of its own, so the test thread can block on kubectl.
struct Cluster {
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    _handle: localkube::Handle,
    rt: tokio::runtime::Runtime,
}

impl Cluster {
    fn start() -> Cluster {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let handle = rt
            .block_on(localkube::Server::start(localkube::Config::default()))
            .expect("localkube starts");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        handle.write_kubeconfig(&kubeconfig).unwrap();
        Cluster {
            _dir: dir,
            kubeconfig,
            _handle: handle,
            rt,
        }
    }
}

/// `GET path` on 127.0.0.1:port: (status, body), or None when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// A child process killed when the test ends, panicking or not.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `flagger` started as a container would run it, with `-port` and `-kubeconfig` added (the
/// pod gets both in-cluster); its log goes to a file.
struct Controller {
    child: KillOnDrop,
    port: u16,
    args: Vec<String>,
    log: tempfile::NamedTempFile,
}

impl Controller {
    fn start<S: AsRef<str>>(cluster: &Cluster, args: &[S]) -> Controller {
        let port = free_port();
        let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_flagger"))
            .args(&args)
            .arg(format!("-port={port}"))
            .arg(format!("-kubeconfig={}", cluster.kubeconfig.display()))
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("flagger starts");
        Controller {
            child: KillOnDrop(child),
            port,
            args,
            log,
        }
    }

    /// Waits for 200 on `/readyz`; panics with the controller's log when it exits or never
    /// gets there.
    fn wait_ready(&mut self, cluster: &Cluster) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, _)) = http_get(self.port, "/readyz") {
                return;
            }
            let exited = self.child.0.try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                panic!(
                    "flagger {} never answered 200 on /readyz ({}):\n{}",
                    self.args.join(" "),
                    exited.map_or("timed out".to_string(), |s| format!("exited: {s}")),
                    self.log()
                );
            }
            cluster.rt.block_on(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
            });
        }
    }

    /// What the controller logged so far.
    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn kustomize_bases_install_into_localkube() {
    let cluster = Cluster::start();
    let kc = cluster.kubeconfig.as_path();
    let base = deploy("flagger");
    let base = base.to_str().unwrap();

    let out = kubectl(kc, &["apply", "-k", base]);
    println!("{out}");
    // Applying again changes nothing.
    let again = kubectl(kc, &["apply", "-k", base]);
    assert!(
        again.lines().all(|l| l.ends_with(" unchanged")),
        "second apply should change nothing:\n{again}"
    );

    // CRDs.
    let crds = kubectl(
        kc,
        &[
            "get",
            "crd",
            "canaries.flagger.app",
            "metrictemplates.flagger.app",
            "alertproviders.flagger.app",
            "-o",
            "jsonpath={.items[*].metadata.annotations.helm\\.sh/resource-policy}",
        ],
    );
    assert_eq!(crds, "keep keep keep");

    // Namespace and ServiceAccount.
    kubectl(kc, &["get", "namespace", "flagger-system"]);
    let sa = kubectl_json(
        kc,
        &["-n", "flagger-system", "get", "serviceaccount", "flagger"],
    );
    assert_eq!(
        sa["metadata"]["labels"]["app.kubernetes.io/name"],
        "flagger"
    );

    // ClusterRole: exactly the permissions the controller uses.
    let role = kubectl_json(kc, &["get", "clusterrole", "flagger"]);
    let got = rule_triples(&role["rules"]);
    assert_eq!(got, expected_rules(), "ClusterRole flagger rules");
    assert!(
        got.iter().all(|(g, r, v)| (v != "delete"
            || r == "services"
            || r == "configmaps"
            || r == "secrets"
            || r == "analyses"
            || r == "ingresses")
            && (r != "*" || g == "external.metrics.k8s.io")
            && v != "*"),
        "no delete (but on Services, ConfigMaps and Secrets, for the owner-reference admission \
         check, on the keptn provider's own Analyses and on Ingresses, skipper's canary \
         Ingress), no wildcards (but the External Metrics API, whose resources are metric names)"
    );
    assert!(
        role["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.get("nonResourceURLs").is_none())
    );

    // ClusterRoleBinding: the ServiceAccount in the namespace the base installs into.
    let binding = kubectl_json(kc, &["get", "clusterrolebinding", "flagger"]);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], "flagger");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": "flagger", "namespace": "flagger-system"}])
    );

    // Deployment.
    let d = kubectl_json(
        kc,
        &["-n", "flagger-system", "get", "deployment", "flagger"],
    );
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let pod = &d["spec"]["template"];
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/scrape"],
        "true"
    );
    assert_eq!(pod["metadata"]["annotations"]["prometheus.io/port"], "8080");
    assert_eq!(pod["spec"]["serviceAccountName"], "flagger");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "flagger-rs/flagger:0.1.0");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "controller",
            "-log-level=info",
            "-metrics-server=http://prometheus:9090",
            "-include-label-prefix=app.kubernetes.io",
        ]
    );
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["resources"]["requests"]["cpu"], "10m");
    assert_eq!(c["resources"]["requests"]["memory"], "32Mi");
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");

    // The Deployment's arguments are the controller's: they parse, and the controller started
    // with them (plus a free port and the kubeconfig, which the pod gets in-cluster) against
    // this cluster becomes ready and serves its metrics.
    let parsed = flagger_controller::Args::try_parse_from(
        std::iter::once("controller").chain(args[1..].iter().copied()),
    )
    .expect("the Deployment's args parse");
    // No -mesh-provider: istio, as in Flagger's base.
    assert_eq!(parsed.mesh_provider.as_str(), "istio");
    assert_eq!(parsed.port, 8080);
    let mut controller = Controller::start(&cluster, &args);
    controller.wait_ready(&cluster);
    let healthz = http_get(controller.port, "/healthz");
    let metrics = http_get(controller.port, "/metrics");
    drop(controller);
    assert_eq!(healthz.map(|h| h.0), Some(200));
    let (status, body) = metrics.expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(
        body.contains("flagger_info") && body.contains("mesh_provider=\"istio\""),
        "{body}"
    );

    // The load tester's base, into a namespace created first.
    kubectl(kc, &["create", "namespace", "test"]);
    let lt = deploy("loadtester");
    kubectl(kc, &["apply", "-k", lt.to_str().unwrap(), "-n", "test"]);
    let svc = kubectl_json(kc, &["-n", "test", "get", "service", "flagger-loadtester"]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["selector"]["app"], "flagger-loadtester");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let ltd = kubectl_json(
        kc,
        &["-n", "test", "get", "deployment", "flagger-loadtester"],
    );
    let ltc = &ltd["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ltc["image"], "flagger-rs/flagger-loadtester:0.1.0");
    assert_eq!(ltc["ports"][0]["containerPort"], 8080);
    assert_eq!(ltc["readinessProbe"]["httpGet"]["path"], "/healthz");
}

/// An overlay that sets `namespace:` moves the Namespace, the ServiceAccount, the Deployment
/// and the ClusterRoleBinding's subject together (kubectl's built-in kustomize).
#[test]
fn overlay_namespace_moves_the_binding_subject() {
    let dir = tempfile::tempdir().unwrap();
    // kustomize takes relative paths only: climb from the overlay to / and descend to the base.
    let overlay = dir.path().canonicalize().unwrap();
    let base = deploy("flagger").canonicalize().unwrap();
    let relative = format!(
        "{}{}",
        "../".repeat(overlay.components().count() - 1),
        base.strip_prefix("/").unwrap().display()
    );
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: flagger\nresources:\n  - {}\nimages:\n  - name: flagger-rs/flagger\n    newName: registry.example.com/flagger\n    newTag: 9.9.9\n",
            relative
        ),
    )
    .unwrap();
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(dir.path())
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let find = |kind: &str| -> &Value {
        docs.iter()
            .find(|d| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    assert_eq!(find("Namespace")["metadata"]["name"], "flagger");
    assert_eq!(find("ServiceAccount")["metadata"]["namespace"], "flagger");
    assert_eq!(find("Deployment")["metadata"]["namespace"], "flagger");
    assert_eq!(
        find("ClusterRoleBinding")["subjects"][0]["namespace"],
        "flagger"
    );
    assert_eq!(
        find("Deployment")["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/flagger:9.9.9"
    );
}

/// The CRD copies kustomize and Helm need (neither may read outside its directory) are the
/// generated file.
#[test]
fn crd_copies_match_deploy_crds() {
    let crds = read("crds/crds.yaml");
    assert!(
        read("flagger/crd.yaml") == crds,
        "deploy/flagger/crd.yaml differs from deploy/crds/crds.yaml: cp deploy/crds/crds.yaml deploy/flagger/crd.yaml"
    );
    assert!(
        read("charts/flagger/crds/crds.yaml") == crds,
        "deploy/charts/flagger/crds/crds.yaml differs from deploy/crds/crds.yaml: cp deploy/crds/crds.yaml deploy/charts/flagger/crds/crds.yaml"
    );
}

/// The `rules:` block of a ClusterRole file, up to the next document.
fn rules_block(text: &str) -> String {
    let start = text.find("\nrules:\n").expect("a rules: block");
    let rest = &text[start + 1..];
    let end = rest.find("\n---").unwrap_or(rest.len());
    rest[..end].to_string()
}

/// The chart's ClusterRole has the kustomize base's rules, and those are the expected ones.
#[test]
fn chart_rbac_matches_kustomize() {
    let kustomize = rules_block(&read("flagger/rbac.yaml"));
    let chart = rules_block(&read("charts/flagger/templates/rbac.yaml"));
    assert_eq!(
        chart, kustomize,
        "chart and kustomize ClusterRole rules differ"
    );
    let parsed: Value = serde_yaml::from_str(&kustomize).unwrap();
    assert_eq!(rule_triples(&parsed["rules"]), expected_rules());
}

/// Sample values of the flags the chart's Deployment template can pass.
const CHART_FLAGS: &[(&str, &str)] = &[
    ("log-level", "info"),
    ("log-format", "json"),
    ("mesh-provider", "kubernetes"),
    ("metrics-server", "http://prometheus.monitoring:9090"),
    ("namespace", "test"),
    ("selector-labels", "app,name"),
    ("include-label-prefix", "app.kubernetes.io"),
    ("enable-config-tracking", "false"),
    ("event-webhook", "http://hooks.example/flagger"),
    ("cluster-name", "prod"),
    ("ingress-annotations-prefix", "custom.ingress.kubernetes.io"),
    ("slack-url", "https://hooks.slack.com/services/x"),
    ("slack-user", "flagger"),
    ("slack-channel", "alerts"),
    ("slack-proxy-url", "http://proxy:3128"),
    ("msteams-url", "https://outlook.office.com/webhook/y"),
    ("msteams-proxy-url", "http://proxy:3128"),
    ("threadiness", "4"),
    ("no-cross-namespace-refs", "true"),
    ("no-data-policy", "hold"),
    ("max-concurrent-canaries", "3"),
    ("max-concurrent-canaries-per-namespace", "1"),
    ("shards", "3"),
    ("autoscaler-sync", "immediate"),
    ("enable-leader-election", "true"),
    ("kubeconfig-qps", "50"),
    ("kubeconfig-burst", "100"),
    ("leader-election-namespace", "flagger-system"),
    ("ingress-class", "contour"),
    ("kubeconfig-service-mesh", "/tmp/controlplane/kubeconfig"),
];

/// Every flag the chart's Deployment template can pass is one the controller accepts (it
/// refuses unknown flags), and values.yaml has the Flagger-compatible keys.
#[test]
fn chart_passes_only_flags_the_controller_accepts() {
    let template = read("charts/flagger/templates/deployment.yaml");
    let mut emitted = BTreeSet::new();
    for line in template.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("- ") else {
            continue;
        };
        // `- {{ printf "-flag=%s" ... }}` or `- "-flag=value"`.
        let rest = rest
            .trim_start_matches("{{ printf ")
            .trim_start_matches('"');
        if let Some(flag) = rest.strip_prefix('-')
            && let Some((name, _)) = flag.split_once('=')
        {
            emitted.insert(name.to_string());
        }
    }
    let known: BTreeSet<String> = CHART_FLAGS.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(emitted, known, "flags in the chart's Deployment template");
    let argv = std::iter::once("controller".to_string())
        .chain(CHART_FLAGS.iter().map(|(f, v)| format!("-{f}={v}")));
    let args = flagger_controller::Args::try_parse_from(argv).expect("the chart's flags parse");
    assert_eq!(args.threadiness, 4);
    assert!(!args.enable_config_tracking);
    assert!(args.no_cross_namespace_refs);
    assert_eq!(args.no_data_policy, flagger_core::steer::NoDataPolicy::Hold);
    assert_eq!(
        (
            args.max_concurrent_canaries,
            args.max_concurrent_canaries_per_namespace
        ),
        (3, 1)
    );
    assert_eq!(args.autoscaler_sync, "immediate");
    assert_eq!(
        args.ingress_annotations_prefix,
        "custom.ingress.kubernetes.io"
    );
}

/// Every key of Flagger 1.44's `charts/flagger/values.yaml` with Flagger's default (`null` where
/// Flagger leaves the value empty), as JSON pointers into our values.yaml.
const FLAGGER_VALUES: &[(&str, &str)] = &[
    ("/image/pullPolicy", r#""IfNotPresent""#),
    ("/image/pullSecret", "null"),
    ("/logLevel", r#""info""#),
    (
        "/podAnnotations",
        r#"{"prometheus.io/scrape": "true", "prometheus.io/port": "8080",
            "appmesh.k8s.aws/sidecarInjectorWebhook": "disabled", "linkerd.io/inject": "enabled"}"#,
    ),
    ("/podPriorityClassName", r#""""#),
    ("/metricsServer", r#""http://prometheus:9090""#),
    ("/serviceMonitor/enabled", "false"),
    ("/serviceMonitor/honorLabels", "false"),
    ("/meshProvider", r#""""#),
    ("/namespace", r#""""#),
    ("/selectorLabels", r#""""#),
    ("/configTracking/enabled", "true"),
    ("/ingressAnnotationsPrefix", r#""""#),
    ("/ingressClass", r#""""#),
    ("/securityContext/enabled", "true"),
    ("/securityContext/context/readOnlyRootFilesystem", "true"),
    ("/securityContext/context/runAsUser", "10001"),
    ("/eventWebhook", r#""""#),
    ("/clusterName", r#""""#),
    ("/slack/user", r#""flagger""#),
    ("/slack/channel", "null"),
    ("/slack/url", "null"),
    ("/slack/proxy", "null"),
    ("/msteams/url", "null"),
    ("/podMonitor/enabled", "false"),
    ("/podMonitor/namespace", "null"),
    ("/podMonitor/interval", r#""15s""#),
    ("/podMonitor/additionalLabels", "{}"),
    ("/podMonitor/honorLabels", "false"),
    ("/env", "[]"),
    ("/leaderElection/enabled", "false"),
    ("/leaderElection/replicaCount", "1"),
    ("/serviceAccount/create", "true"),
    ("/serviceAccount/name", r#""""#),
    ("/serviceAccount/annotations", "{}"),
    ("/rbac/create", "true"),
    ("/rbac/pspEnabled", "false"),
    ("/crd/create", "false"),
    ("/linkerdAuthPolicy/create", "false"),
    ("/linkerdAuthPolicy/namespace", r#""linkerd-viz""#),
    ("/nameOverride", r#""""#),
    ("/fullnameOverride", r#""""#),
    (
        "/resources",
        r#"{"limits": {"memory": "512Mi", "cpu": "1000m"}, "requests": {"memory": "32Mi", "cpu": "10m"}}"#,
    ),
    ("/nodeSelector", "{}"),
    ("/tolerations", "[]"),
    (
        "/affinity/podAntiAffinity/preferredDuringSchedulingIgnoredDuringExecution/0/podAffinityTerm/topologyKey",
        r#""kubernetes.io/hostname""#,
    ),
    ("/prometheus/install", "false"),
    (
        "/prometheus/image",
        r#""docker.io/prom/prometheus:v2.41.0""#,
    ),
    ("/prometheus/pullSecret", "null"),
    ("/prometheus/retention", r#""2h""#),
    ("/prometheus/securityContext/enabled", "false"),
    (
        "/prometheus/securityContext/context",
        r#"{"readOnlyRootFilesystem": true, "runAsUser": 10001}"#,
    ),
    ("/kubeconfigQPS", r#""""#),
    ("/kubeconfigBurst", r#""""#),
    ("/controlplane/kubeconfig/secretName", r#""""#),
    ("/controlplane/kubeconfig/key", r#""kubeconfig""#),
    ("/podDisruptionBudget/enabled", "false"),
    ("/podDisruptionBudget/minAvailable", "1"),
    ("/podLabels", "{}"),
    ("/deploymentLabels", "{}"),
    ("/noCrossNamespaceRefs", "false"),
    ("/additionalVolumes", "[]"),
    ("/additionalVolumeMounts", "[]"),
];

/// values.yaml has every key of Flagger's with Flagger's default.
#[test]
fn values_have_every_key_of_flaggers_chart_with_its_default() {
    let values: Value = serde_yaml::from_str(&read("charts/flagger/values.yaml")).unwrap();
    for (pointer, want) in FLAGGER_VALUES {
        let want: Value = serde_json::from_str(want).unwrap_or_else(|e| panic!("{pointer}: {e}"));
        let got = values
            .pointer(pointer)
            .unwrap_or_else(|| panic!("values.yaml lacks {pointer}"));
        assert_eq!(got, &want, "values.yaml {pointer}");
    }
    // The image is ours; its tag defaults to the chart's appVersion.
    assert_eq!(values["image"]["repository"], "flagger-rs/flagger");
    assert_eq!(values["image"]["tag"], "");
}

/// The chart's directory.
fn chart(name: &str) -> PathBuf {
    deploy(&format!("charts/{name}"))
}

/// `helm template <release> <chart> -n <namespace> <extra...>`, parsed into its objects.
fn helm_template(chart: &Path, release: &str, namespace: &str, extra: &[&str]) -> Vec<Value> {
    let out = Command::new("helm")
        .args(["template", release])
        .arg(chart)
        .args(["--namespace", namespace])
        .args(extra)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "helm is not on PATH ({e}): scripts/test.sh installs it (Helm's official binary, \
                 from the npm package named there)"
            )
        });
    assert!(
        out.status.success(),
        "helm template {} {extra:?} failed:\n{}",
        chart.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_yaml::Deserializer::from_str(&text)
        .filter_map(|doc| {
            let v = Value::deserialize(doc).expect("helm renders YAML");
            (!v.is_null()).then_some(v)
        })
        .collect()
}

use k8s_openapi::serde::Deserialize as _;

/// Renders the flagger chart as release `flagger` in `flagger-system` with `--set` values.
fn render(sets: &[&str]) -> Vec<Value> {
    let mut extra = Vec::new();
    for s in sets {
        extra.push("--set");
        extra.push(s);
    }
    helm_template(&chart("flagger"), "flagger", "flagger-system", &extra)
}

/// The objects of a kind.
fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one object of a kind with a name.
fn object<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = docs
                .iter()
                .map(|d| format!("{}/{}", d["kind"], d["metadata"]["name"]))
                .collect();
            panic!("no {kind} {name} in {have:?}")
        })
}

/// The controller Deployment's container arguments.
fn controller_args(docs: &[Value]) -> Vec<String> {
    object(docs, "Deployment", "flagger")["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("string arg").to_string())
        .collect()
}

fn parse_args(args: &[String]) -> flagger_controller::Args {
    flagger_controller::Args::try_parse_from(args.iter().map(String::as_str))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// Flagger's defaults: no -mesh-provider (istio), the objects Flagger's chart creates by default
/// and no others, Flagger's pod annotations and anti-affinity.
#[test]
fn chart_defaults_render_like_flaggers() {
    let docs = render(&[]);
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "ServiceAccount"
        ]
    );
    let args = controller_args(&docs);
    assert_eq!(
        args,
        [
            "controller",
            "-log-level=info",
            "-log-format=json",
            "-metrics-server=http://prometheus:9090",
            "-enable-config-tracking=true",
            "-slack-user=flagger",
        ]
    );
    let parsed = parse_args(&args);
    assert_eq!(parsed.mesh_provider.as_str(), "istio");

    let d = object(&docs, "Deployment", "flagger");
    assert_eq!(d["metadata"]["namespace"], "flagger-system");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let pod = &d["spec"]["template"];
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "8080");
    assert_eq!(ann["appmesh.k8s.aws/sidecarInjectorWebhook"], "disabled");
    assert_eq!(ann["linkerd.io/inject"], "enabled");
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"],
        "flagger"
    );
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/instance"],
        "flagger"
    );
    let term = &pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0];
    assert_eq!(term["weight"], 100);
    assert_eq!(
        term["podAffinityTerm"]["labelSelector"]["matchLabels"],
        serde_json::json!({"app.kubernetes.io/name": "flagger", "app.kubernetes.io/instance": "flagger"})
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "flagger");
    assert!(pod["spec"].get("priorityClassName").is_none());
    assert!(pod["spec"].get("volumes").is_none());
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "flagger-rs/flagger:0.1.0");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsUser"], 10001);
    assert_eq!(c["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c.get("volumeMounts").is_none());
    let binding = object(&docs, "ClusterRoleBinding", "flagger");
    assert_eq!(binding["subjects"][0]["name"], "flagger");
    assert_eq!(binding["subjects"][0]["namespace"], "flagger-system");

    // meshProvider set to empty explicitly is the same as unset.
    let empty = render(&["meshProvider="]);
    assert_eq!(controller_args(&empty), args);
    let kubernetes = controller_args(&render(&["meshProvider=kubernetes"]));
    assert_eq!(parse_args(&kubernetes).mesh_provider.as_str(), "kubernetes");
}

/// prometheus.install=true: a Prometheus configured like Flagger's bundled one, and the
/// controller pointed at it (seed 004 installs Flagger this way).
#[test]
fn chart_bundles_prometheus_when_asked() {
    let docs = render(&["prometheus.install=true"]);
    let args = controller_args(&docs);
    assert!(
        args.contains(&"-metrics-server=http://flagger-prometheus:9090".to_string()),
        "{args:?}"
    );
    let d = object(&docs, "Deployment", "flagger-prometheus");
    let pod = &d["spec"]["template"];
    assert_eq!(
        pod["metadata"]["labels"]["app.kubernetes.io/name"],
        "flagger-prometheus"
    );
    assert_eq!(
        d["spec"]["selector"]["matchLabels"],
        pod["metadata"]["labels"]
    );
    assert_eq!(
        pod["metadata"]["annotations"]["sidecar.istio.io/inject"],
        "false"
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "flagger-prometheus");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "docker.io/prom/prometheus:v2.41.0");
    assert_eq!(
        c["args"],
        serde_json::json!([
            "--storage.tsdb.retention.time=2h",
            "--config.file=/etc/prometheus/prometheus.yml"
        ])
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert!(c.get("securityContext").is_none());
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        "flagger-prometheus"
    );
    let svc = object(&docs, "Service", "flagger-prometheus");
    assert_eq!(svc["spec"]["ports"][0]["port"], 9090);
    assert_eq!(svc["spec"]["selector"], pod["metadata"]["labels"]);
    let role = object(&docs, "ClusterRole", "flagger-prometheus");
    let rules = rule_triples(&serde_json::json!([role["rules"][0], role["rules"][1]]));
    for r in ["nodes", "services", "endpoints", "pods", "nodes/proxy"] {
        for v in ["get", "list", "watch"] {
            assert!(
                rules.contains(&(String::new(), r.into(), v.into())),
                "{r} {v}"
            );
        }
    }
    assert_eq!(role["rules"][2]["nonResourceURLs"][0], "/metrics");
    let binding = object(&docs, "ClusterRoleBinding", "flagger-prometheus");
    assert_eq!(binding["subjects"][0]["name"], "flagger-prometheus");
    object(&docs, "ServiceAccount", "flagger-prometheus");

    // The scrape configuration: Flagger's jobs, every 5s, pods by their prometheus.io
    // annotations with the namespace and pod name labels the builtin queries select on.
    let cm = object(&docs, "ConfigMap", "flagger-prometheus");
    let config: Value =
        serde_yaml::from_str(cm["data"]["prometheus.yml"].as_str().expect("config")).unwrap();
    assert_eq!(config["global"]["scrape_interval"], "5s");
    let jobs: Vec<&str> = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["job_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        jobs,
        [
            "appmesh-envoy",
            "kubernetes-apiservers",
            "kubernetes-cadvisor",
            "kubernetes-pods"
        ]
    );
    let pods = &config["scrape_configs"][3];
    assert_eq!(pods["kubernetes_sd_configs"][0]["role"], "pod");
    let relabels = pods["relabel_configs"].as_array().unwrap();
    assert_eq!(
        relabels[0]["source_labels"][0],
        "__meta_kubernetes_pod_annotation_prometheus_io_scrape"
    );
    assert_eq!(relabels[0]["action"], "keep");
    let targets: Vec<&str> = relabels
        .iter()
        .filter_map(|r| r["target_label"].as_str())
        .collect();
    assert_eq!(
        targets,
        [
            "__metrics_path__",
            "__address__",
            "kubernetes_namespace",
            "kubernetes_pod_name"
        ]
    );

    // Retention, pull secret and security context follow their values.
    let tuned = render(&[
        "prometheus.install=true",
        "prometheus.retention=6h",
        "prometheus.pullSecret=regcred",
        "prometheus.securityContext.enabled=true",
        "prometheus.image=registry.example.com/prometheus:v3",
    ]);
    let pod = &object(&tuned, "Deployment", "flagger-prometheus")["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "registry.example.com/prometheus:v3");
    assert_eq!(c["args"][0], "--storage.tsdb.retention.time=6h");
    assert_eq!(c["securityContext"]["runAsUser"], 10001);
}

/// ServiceMonitor, PodMonitor, PodDisruptionBudget, priority class and the other optional
/// objects and fields, each from its value.
#[test]
fn chart_optional_objects_follow_their_values() {
    let docs = render(&[
        "serviceMonitor.enabled=true",
        "serviceMonitor.honorLabels=true",
        "serviceMonitor.namespace=monitoring",
        "serviceMonitor.labels.release=kube-prometheus",
        "podMonitor.enabled=true",
        "podMonitor.interval=30s",
        "podMonitor.additionalLabels.team=platform",
        "podDisruptionBudget.enabled=true",
        "podDisruptionBudget.minAvailable=1",
        "podPriorityClassName=system-cluster-critical",
        "annotations.example\\.com/owner=platform",
        "deploymentLabels.team=platform",
        "podLabels.tier=control",
        "additionalVolumes[0].name=tmpfs",
        "additionalVolumes[0].emptyDir.medium=Memory",
        "additionalVolumeMounts[0].name=tmpfs",
        "additionalVolumeMounts[0].mountPath=/tmp",
        "rbac.pspEnabled=true",
        "linkerdAuthPolicy.create=true",
        "grafanaDashboard.enabled=true",
    ]);
    let svc = object(&docs, "Service", "flagger");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let sm = object(&docs, "ServiceMonitor", "flagger");
    assert_eq!(sm["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(sm["metadata"]["namespace"], "monitoring");
    assert_eq!(sm["metadata"]["labels"]["release"], "kube-prometheus");
    let ep = &sm["spec"]["endpoints"][0];
    assert_eq!(ep["port"], "http");
    assert_eq!(ep["path"], "/metrics");
    assert_eq!(ep["honorLabels"], true);
    assert_eq!(
        sm["spec"]["namespaceSelector"]["matchNames"][0],
        "flagger-system"
    );
    assert_eq!(
        sm["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"]
    );
    let pm = object(&docs, "PodMonitor", "flagger");
    assert_eq!(pm["metadata"]["namespace"], "flagger-system");
    assert_eq!(pm["metadata"]["labels"]["team"], "platform");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["interval"], "30s");
    assert_eq!(pm["spec"]["podMetricsEndpoints"][0]["port"], "http");
    let pdb = object(&docs, "PodDisruptionBudget", "flagger");
    assert_eq!(pdb["apiVersion"], "policy/v1");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "flagger"
    );

    let d = object(&docs, "Deployment", "flagger");
    assert_eq!(
        d["metadata"]["annotations"]["example.com/owner"],
        "platform"
    );
    assert_eq!(d["metadata"]["labels"]["team"], "platform");
    let pod = &d["spec"]["template"];
    // Services, monitors and the PDB select the controller's pods.
    for selector in [
        &svc["spec"]["selector"],
        &pm["spec"]["selector"]["matchLabels"],
        &pdb["spec"]["selector"]["matchLabels"],
    ] {
        for (k, v) in selector.as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][k], v, "selector {k}");
        }
    }
    assert_eq!(pod["metadata"]["labels"]["tier"], "control");
    assert_eq!(pod["spec"]["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["spec"]["volumes"][0]["name"], "tmpfs");
    assert_eq!(pod["spec"]["volumes"][0]["emptyDir"]["medium"], "Memory");
    assert_eq!(
        pod["spec"]["containers"][0]["volumeMounts"][0],
        serde_json::json!({"name": "tmpfs", "mountPath": "/tmp"})
    );

    let psp = object(&docs, "PodSecurityPolicy", "flagger");
    assert_eq!(psp["apiVersion"], "policy/v1beta1");
    assert_eq!(
        object(&docs, "ClusterRole", "flagger-psp")["rules"][0]["resourceNames"][0],
        "flagger"
    );
    assert_eq!(
        object(&docs, "RoleBinding", "flagger-psp")["subjects"][0]["name"],
        "flagger"
    );
    let policy = object(&docs, "AuthorizationPolicy", "prometheus-admin-flagger");
    assert_eq!(policy["metadata"]["namespace"], "linkerd-viz");
    assert_eq!(policy["spec"]["targetRef"]["name"], "prometheus-admin");
    assert_eq!(
        policy["spec"]["requiredAuthenticationRefs"][0],
        serde_json::json!({"kind": "ServiceAccount", "name": "flagger", "namespace": "flagger-system"})
    );
    let dashboard = object(&docs, "ConfigMap", "flagger-grafana-dashboard");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: Value = serde_json::from_str(
        dashboard["data"]["flagger-canary.json"]
            .as_str()
            .expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert_eq!(json["uid"], "flagger-rs-canary");

    // The older flagger-rs key still sets the priority class.
    let older = render(&["priorityClassName=high"]);
    assert_eq!(
        object(&older, "Deployment", "flagger")["spec"]["template"]["spec"]["priorityClassName"],
        "high"
    );
    // Disabled, none of them.
    let none = render(&[]);
    for kind in [
        "Service",
        "ServiceMonitor",
        "PodMonitor",
        "PodDisruptionBudget",
        "PodSecurityPolicy",
        "AuthorizationPolicy",
        "ConfigMap",
    ] {
        assert!(
            of_kind(&none, kind).is_empty(),
            "{kind} rendered by default"
        );
    }
}

/// CRDs as templates, RBAC and ServiceAccount switches, leader election.
#[test]
fn chart_crds_rbac_and_leader_election_follow_their_values() {
    // `helm template` leaves crds/ out unless asked (--include-crds): these are the templates.
    let with_crds = render(&["crd.create=true"]);
    let crds = of_kind(&with_crds, "CustomResourceDefinition");
    assert_eq!(crds.len(), 3);
    assert!(
        crds.iter()
            .all(|c| c["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep")
    );
    let no_rbac = render(&["rbac.create=false", "serviceAccount.create=false"]);
    assert!(of_kind(&no_rbac, "ClusterRole").is_empty());
    assert!(of_kind(&no_rbac, "ServiceAccount").is_empty());
    assert_eq!(
        object(&no_rbac, "Deployment", "flagger")["spec"]["template"]["spec"]["serviceAccountName"],
        "default"
    );
    let named = render(&["serviceAccount.name=ops", "serviceAccount.annotations.a=b"]);
    assert_eq!(
        object(&named, "ServiceAccount", "ops")["metadata"]["annotations"]["a"],
        "b"
    );
    let le = render(&[
        "leaderElection.enabled=true",
        "leaderElection.replicaCount=2",
    ]);
    let d = object(&le, "Deployment", "flagger");
    assert_eq!(d["spec"]["replicas"], 2);
    assert!(d["spec"].get("strategy").is_none());
    let args = controller_args(&le);
    assert!(args.contains(&"-enable-leader-election=true".to_string()));
    assert!(args.contains(&"-leader-election-namespace=flagger-system".to_string()));
    // Sharding: three replicas, each acting on the canaries of the shards it holds.
    let sharded = render(&["shards=3", "leaderElection.replicaCount=3"]);
    let d = object(&sharded, "Deployment", "flagger");
    assert_eq!(d["spec"]["replicas"], 3);
    assert!(d["spec"].get("strategy").is_none());
    let args = controller_args(&sharded);
    assert!(args.contains(&"-shards=3".to_string()), "{args:?}");
    assert!(args.contains(&"-leader-election-namespace=flagger-system".to_string()));
    assert!(!args.contains(&"-enable-leader-election=true".to_string()));
    // Two replicas without leader election would both drive the canaries: refused.
    let out = Command::new("helm")
        .args(["template", "flagger"])
        .arg(chart("flagger"))
        .args(["--set", "leaderElection.replicaCount=2"])
        .output()
        .expect("helm runs");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs leaderElection.enabled=true"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Flagger 1.44's kustomize overlays (`kustomize/<provider>/patch.yaml`): the `args` each
/// patch gives the container. Flagger's image runs its binary with flags alone.
const FLAGGER_KUSTOMIZE_ARGS: &[(&str, &[&str])] = &[
    (
        "apisix",
        &[
            "-mesh-provider=apisix",
            "-metrics-server=http://flagger-prometheus:9090",
        ],
    ),
    (
        "appmesh",
        &[
            "-mesh-provider=appmesh",
            "-metrics-server=http://appmesh-prometheus:9090",
        ],
    ),
    (
        "contour",
        &[
            "-mesh-provider=contour",
            "-ingress-class=contour",
            "-metrics-server=http://flagger-prometheus:9090",
        ],
    ),
    (
        "gatewayapi",
        &[
            "-mesh-provider=gatewayapi:v1",
            "-metrics-server=http://flagger-prometheus:9090",
        ],
    ),
    (
        "istio",
        &[
            "-mesh-provider=istio",
            "-metrics-server=http://prometheus:9090",
        ],
    ),
    (
        "knative",
        &[
            "-mesh-provider=knative",
            "-metrics-server=http://flagger-prometheus:9090",
        ],
    ),
    (
        "kubernetes",
        &[
            "-mesh-provider=kubernetes",
            "-metrics-server=http://flagger-prometheus:9090",
        ],
    ),
    (
        "kuma",
        &[
            "-mesh-provider=kuma",
            "-metrics-server=http://prometheus-server.mesh-observability:80",
        ],
    ),
    (
        "linkerd",
        &[
            "-mesh-provider=gatewayapi:v1beta1",
            "-metrics-server=http://prometheus.linkerd-viz:9090",
        ],
    ),
];

/// The chart values of Flagger's install docs and tutorials (`docs/gitbook`), one set per
/// documented `helm upgrade -i flagger` command.
const FLAGGER_DOCUMENTED_VALUES: &[(&str, &[&str])] = &[
    (
        "install: istio",
        &[
            "crd.create=false",
            "meshProvider=istio",
            "metricsServer=http://prometheus:9090",
        ],
    ),
    (
        "install: istio shared control plane",
        &[
            "crd.create=false",
            "meshProvider=istio",
            "metricsServer=http://istio-cluster-prometheus:9090",
            "controlplane.kubeconfig.secretName=istio-kubeconfig",
            "controlplane.kubeconfig.key=kubeconfig",
        ],
    ),
    (
        "install: linkerd",
        &[
            "crd.create=false",
            "meshProvider=linkerd",
            "metricsServer=http://linkerd-prometheus:9090",
        ],
    ),
    (
        "install: labels",
        &["podLabels.team=platform", "deploymentLabels.team=platform"],
    ),
    (
        "apisix",
        &["prometheus.install=true", "meshProvider=apisix"],
    ),
    (
        "contour",
        &[
            "meshProvider=contour",
            "ingressClass=contour",
            "prometheus.install=true",
        ],
    ),
    (
        "gatewayapi",
        &[
            "prometheus.install=false",
            "meshProvider=gatewayapi:v1",
            "metricsServer=http://prometheus.istio-system:9090",
        ],
    ),
    ("gloo", &["prometheus.install=true", "meshProvider=gloo"]),
    (
        "keda / kubernetes blue-green",
        &["prometheus.install=true", "meshProvider=kubernetes"],
    ),
    (
        "kubernetes blue-green: own Prometheus",
        &["metricsServer=http://prometheus.monitoring:9090"],
    ),
    (
        "kubernetes blue-green: Slack",
        &[
            "slack.url=https://hooks.slack.com/services/YOUR/SLACK/WEBHOOK",
            "slack.channel=general",
            "slack.user=flagger",
        ],
    ),
    (
        "linkerd (Gateway API)",
        &[
            "meshProvider=gatewayapi:v1beta1",
            "metricsServer=http://prometheus.linkerd-viz:9090",
            "linkerdAuthPolicy.create=true",
        ],
    ),
    ("nginx", &["prometheus.install=true", "meshProvider=nginx"]),
    (
        "prometheus-operator",
        &[
            "metricsServer=http://prometheus-prometheus.monitoring:9090",
            "meshProvider=kubernetes",
        ],
    ),
    (
        "traefik",
        &["prometheus.install=true", "meshProvider=traefik"],
    ),
];

/// Our image's default command (`ENTRYPOINT` + `CMD` of the root Dockerfile), which runs when
/// a manifest gives no `args`, as Flagger's kustomize base does.
fn image_default_args() -> Vec<String> {
    let dockerfile = std::fs::read_to_string(Path::new(DEPLOY).join("../Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .expect("the Dockerfile has a CMD");
    serde_json::from_str(cmd).expect("CMD in exec form")
}

/// A controller started with the arguments of each of Flagger's install variants becomes
/// ready against localkube: Flagger's kustomize base (no args: our image's default command)
/// and overlays (flags alone), and the chart rendered with each documented value set, whatever
/// provider the variant names (every provider of the CRD's enum has a router).
#[test]
fn every_flagger_install_variant_starts_ready() {
    let cluster = Cluster::start();
    let crds = deploy("crds/crds.yaml");
    kubectl(
        &cluster.kubeconfig,
        &["apply", "-f", crds.to_str().unwrap()],
    );

    let mut variants: Vec<(String, Vec<String>)> =
        vec![("kustomize base".into(), image_default_args())];
    for (overlay, flags) in FLAGGER_KUSTOMIZE_ARGS {
        // Every overlay also passes these two first.
        let mut args = vec![
            "-log-level=info".to_string(),
            "-include-label-prefix=app.kubernetes.io".to_string(),
        ];
        args.extend(flags.iter().map(|f| f.to_string()));
        variants.push((format!("kustomize {overlay}"), args));
    }
    for (doc, sets) in FLAGGER_DOCUMENTED_VALUES {
        let docs = render(sets);
        let args = controller_args(&docs);
        // Each value reached the controller's flags.
        let parsed = parse_args(&args);
        for set in *sets {
            match set.split_once('=').unwrap() {
                ("meshProvider", p) => assert_eq!(parsed.mesh_provider.as_str(), p, "{doc}"),
                ("metricsServer", m) if !sets.contains(&"prometheus.install=true") => {
                    assert_eq!(parsed.metrics_server, m, "{doc}")
                }
                ("prometheus.install", "true") => {
                    assert_eq!(
                        parsed.metrics_server, "http://flagger-prometheus:9090",
                        "{doc}"
                    );
                    object(&docs, "Deployment", "flagger-prometheus");
                }
                ("ingressClass", c) => {
                    assert_eq!(parsed.ingress_class.as_deref(), Some(c), "{doc}")
                }
                ("controlplane.kubeconfig.secretName", secret) => {
                    let pod = &object(&docs, "Deployment", "flagger")["spec"]["template"]["spec"];
                    assert_eq!(pod["volumes"][0]["secret"]["secretName"], secret);
                    assert_eq!(
                        pod["containers"][0]["volumeMounts"][0]["mountPath"],
                        "/tmp/controlplane"
                    );
                    assert_eq!(
                        parsed.kubeconfig_service_mesh,
                        Some(PathBuf::from("/tmp/controlplane/kubeconfig"))
                    );
                }
                ("slack.url", url) => assert_eq!(parsed.slack_url.as_deref(), Some(url)),
                ("slack.channel", c) => assert_eq!(parsed.slack_channel.as_deref(), Some(c)),
                ("podLabels.team", v) => assert_eq!(
                    object(&docs, "Deployment", "flagger")["spec"]["template"]["metadata"]["labels"]
                        ["team"],
                    v
                ),
                ("deploymentLabels.team", v) => assert_eq!(
                    object(&docs, "Deployment", "flagger")["metadata"]["labels"]["team"],
                    v
                ),
                ("linkerdAuthPolicy.create", _) => {
                    object(&docs, "AuthorizationPolicy", "prometheus-admin-flagger");
                }
                _ => {}
            }
        }
        variants.push((format!("chart: {doc}"), args));
    }

    // Start them all, then wait for each: they share the cluster and its CRDs.
    let mut running: Vec<(String, Controller)> = variants
        .iter()
        .map(|(name, args)| (name.clone(), Controller::start(&cluster, args)))
        .collect();
    for (name, controller) in &mut running {
        println!("{name}: flagger {}", controller.args.join(" "));
        controller.wait_ready(&cluster);
    }
    // `-ingress-class` is acted on (the contour router's `spec.ingressClassName`): accepted,
    // and no startup note calls it unused.
    let contour = running
        .iter()
        .find(|(n, _)| n == "kustomize contour")
        .map(|(_, c)| c)
        .unwrap();
    assert!(
        contour.args.iter().any(|a| a == "-ingress-class=contour"),
        "{:?}",
        contour.args
    );
    let log = contour.log();
    assert!(!log.contains("-ingress-class=contour:"), "{log}");
}

/// A rendered chart applies to localkube with kubectl (Flagger's default values plus the
/// bundled Prometheus, a PodDisruptionBudget and a priority class) and the controller started
/// with the rendered arguments becomes ready.
#[test]
fn rendered_chart_applies_and_the_controller_gets_ready() {
    let cluster = Cluster::start();
    let kc = cluster.kubeconfig.as_path();
    let out = Command::new("helm")
        .args(["template", "flagger"])
        .arg(chart("flagger"))
        .args(["--namespace", "flagger-system", "--include-crds"])
        .args(["--set", "prometheus.install=true"])
        .args(["--set", "podDisruptionBudget.enabled=true"])
        .args(["--set", "podPriorityClassName=system-cluster-critical"])
        .output()
        .expect("helm is on PATH (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("flagger.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    kubectl(kc, &["create", "namespace", "flagger-system"]);
    let applied = kubectl(kc, &["apply", "-f", rendered.to_str().unwrap()]);
    println!("{applied}");
    for object in [
        "deployment/flagger",
        "deployment/flagger-prometheus",
        "service/flagger-prometheus",
        "configmap/flagger-prometheus",
        "serviceaccount/flagger",
        "serviceaccount/flagger-prometheus",
        "poddisruptionbudget/flagger",
    ] {
        kubectl(kc, &["-n", "flagger-system", "get", object]);
    }
    kubectl(
        kc,
        &[
            "get",
            "clusterrole/flagger",
            "clusterrole/flagger-prometheus",
        ],
    );
    kubectl(kc, &["get", "crd/canaries.flagger.app"]);
    let d = kubectl_json(
        kc,
        &["-n", "flagger-system", "get", "deployment", "flagger"],
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["priorityClassName"],
        "system-cluster-critical"
    );
    let args: Vec<String> = d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let mut controller = Controller::start(&cluster, &args);
    controller.wait_ready(&cluster);
}

/// Every key of Flagger 1.44's `charts/loadtester/values.yaml`, with Flagger's default where
/// ours keeps it (the image's user differs: 10001 here, 100:101 in Flagger's).
const FLAGGER_LOADTESTER_VALUES: &[(&str, &str)] = &[
    ("/replicaCount", "1"),
    ("/image/pullPolicy", r#""IfNotPresent""#),
    ("/image/pullSecret", "null"),
    ("/podLabels", "{}"),
    (
        "/podAnnotations",
        r#"{"prometheus.io/scrape": "true", "prometheus.io/port": "8080"}"#,
    ),
    ("/podPriorityClassName", r#""""#),
    ("/logLevel", r#""info""#),
    ("/cmd/timeout", r#""1h""#),
    ("/cmd/namespaceRegexp", r#""""#),
    ("/nameOverride", r#""""#),
    ("/fullnameOverride", r#""""#),
    ("/env", "[]"),
    ("/service/type", r#""ClusterIP""#),
    ("/service/port", "80"),
    (
        "/resources",
        r#"{"requests": {"cpu": "10m", "memory": "64Mi"}}"#,
    ),
    ("/volumes", "[]"),
    ("/volumeMounts", "[]"),
    ("/nodeSelector", "{}"),
    ("/tolerations", "[]"),
    ("/affinity", "{}"),
    ("/rbac/create", "false"),
    ("/rbac/scope", "null"),
    ("/rbac/rules", "[]"),
    ("/rbac/serviceAccountAnnotations", "{}"),
    ("/serviceAccountName", r#""""#),
    ("/meshName", r#""""#),
    ("/appmesh/enabled", "false"),
    ("/appmesh/backends", r#"["podinfo", "podinfo-canary"]"#),
    ("/istio/enabled", "false"),
    ("/istio/host", r#""flagger-loadtester.flagger""#),
    ("/istio/gateway/enabled", "false"),
    ("/istio/tls/enabled", "false"),
    ("/istio/tls/httpsRedirect", "false"),
    ("/securityContext/enabled", "false"),
    ("/securityContext/context/readOnlyRootFilesystem", "true"),
    ("/podSecurityContext/enabled", "false"),
    (
        "/podSecurityContext/context/fsGroupChangePolicy",
        r#""OnRootMismatch""#,
    ),
    ("/podDisruptionBudget/enabled", "false"),
    ("/podDisruptionBudget/minAvailable", "1"),
];

fn render_loadtester(sets: &[&str]) -> Vec<Value> {
    let mut extra = Vec::new();
    for s in sets {
        extra.push("--set");
        extra.push(s);
    }
    helm_template(&chart("loadtester"), "flagger-loadtester", "test", &extra)
}

#[test]
fn loadtester_values_have_every_key_of_flaggers_chart() {
    let values: Value = serde_yaml::from_str(&read("charts/loadtester/values.yaml")).unwrap();
    for (pointer, want) in FLAGGER_LOADTESTER_VALUES {
        let want: Value = serde_json::from_str(want).unwrap_or_else(|e| panic!("{pointer}: {e}"));
        let got = values
            .pointer(pointer)
            .unwrap_or_else(|| panic!("loadtester values.yaml lacks {pointer}"));
        assert_eq!(got, &want, "loadtester values.yaml {pointer}");
    }
    assert_eq!(values["securityContext"]["context"]["runAsUser"], 10001);
}

/// The load tester chart with Flagger's defaults: the Service webhooks call
/// (`http://flagger-loadtester.<namespace>/`) selecting the pods, and the load tester's flags;
/// then every optional object from its values.
#[test]
fn loadtester_chart_renders_like_flaggers() {
    let docs = render_loadtester(&[]);
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(kinds, ["Deployment", "Service"]);
    let svc = object(&docs, "Service", "flagger-loadtester");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "http");
    let d = object(&docs, "Deployment", "flagger-loadtester");
    let pod = &d["spec"]["template"];
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "loadtester");
    for (k, v) in svc["spec"]["selector"].as_object().unwrap() {
        assert_eq!(&pod["metadata"]["labels"][k], v);
    }
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(
        ann["openservicemesh.io/inbound-port-exclusion-list"],
        "80, 8080"
    );
    assert_eq!(ann["prometheus.io/scrape"], "true");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "flagger-rs/flagger-loadtester:0.1.0");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    let command: Vec<String> = c["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        command,
        [
            "flagger-loadtester",
            "-port=8080",
            "-log-level=info",
            "-timeout=1h",
            "-namespace-regexp="
        ]
    );
    let parsed = flagger_loadtester::cli::LoadtesterArgs::parse_go(
        command[1..].iter().map(std::ffi::OsString::from),
    )
    .expect("the load tester parses the chart's flags");
    assert_eq!(parsed.port, 8080);
    assert_eq!(parsed.timeout, Duration::from_secs(3600));
    assert!(pod["spec"].get("serviceAccountName").is_none());

    let docs = render_loadtester(&[
        "cmd.timeout=30m",
        "cmd.namespaceRegexp=^test$",
        "rbac.create=true",
        "rbac.scope=cluster",
        "rbac.rules[0].apiGroups[0]=",
        "rbac.rules[0].resources[0]=pods",
        "rbac.rules[0].verbs[0]=list",
        "rbac.serviceAccountAnnotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/lt",
        "podPriorityClassName=low",
        "podDisruptionBudget.enabled=true",
        "securityContext.enabled=true",
        "podSecurityContext.enabled=true",
        "istio.enabled=true",
        "istio.gateway.enabled=true",
        "istio.tls.enabled=true",
        "appmesh.enabled=true",
        "meshName=global",
        "podLabels.team=qa",
        "volumes[0].name=tmp",
        "volumes[0].emptyDir.medium=Memory",
        "volumeMounts[0].name=tmp",
        "volumeMounts[0].mountPath=/tmp",
        "service.port=8080",
    ]);
    let role = object(&docs, "ClusterRole", "flagger-loadtester");
    assert_eq!(
        role["rules"][0],
        serde_json::json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]})
    );
    let binding = object(&docs, "ClusterRoleBinding", "flagger-loadtester");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["subjects"][0]["namespace"], "test");
    let sa = object(&docs, "ServiceAccount", "flagger-loadtester");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::1:role/lt"
    );
    let d = object(&docs, "Deployment", "flagger-loadtester");
    let spec = &d["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "flagger-loadtester");
    assert_eq!(spec["priorityClassName"], "low");
    assert_eq!(spec["securityContext"]["fsGroup"], 10001);
    assert_eq!(spec["volumes"][0]["emptyDir"]["medium"], "Memory");
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["runAsUser"], 10001);
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/tmp");
    assert_eq!(c["command"][3], "-timeout=30m");
    assert_eq!(c["command"][4], "-namespace-regexp=^test$");
    assert_eq!(d["spec"]["template"]["metadata"]["labels"]["team"], "qa");
    let pdb = object(&docs, "PodDisruptionBudget", "flagger-loadtester");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        "loadtester"
    );
    let vs = object(&docs, "VirtualService", "flagger-loadtester");
    assert_eq!(vs["spec"]["hosts"][0], "flagger-loadtester.flagger");
    assert_eq!(
        vs["spec"]["http"][0]["route"][0]["destination"]["port"]["number"],
        8080
    );
    let gw = object(&docs, "Gateway", "flagger-loadtester");
    assert_eq!(
        gw["spec"]["servers"][1]["tls"]["credentialName"],
        "flagger-loadtester"
    );
    let nodes = of_kind(&docs, "VirtualNode");
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes
            .iter()
            .any(|n| n["apiVersion"] == "appmesh.k8s.aws/v1beta2"
                && n["spec"]["backends"][1]["virtualService"]["virtualServiceRef"]["name"]
                    == "podinfo-canary")
    );
    assert!(
        nodes
            .iter()
            .any(|n| n["apiVersion"] == "appmesh.k8s.aws/v1beta1"
                && n["spec"]["meshName"] == "global")
    );
    // Seed 004's Helm tester: an existing ServiceAccount.
    let tiller = render_loadtester(&["serviceAccountName=tiller"]);
    assert_eq!(
        object(&tiller, "Deployment", "flagger-loadtester")["spec"]["template"]["spec"]["serviceAccountName"],
        "tiller"
    );
    assert!(of_kind(&tiller, "ServiceAccount").is_empty());
    // Namespace scope: a Role.
    let ns_scoped = render_loadtester(&["rbac.create=true"]);
    object(&ns_scoped, "Role", "flagger-loadtester");
    object(&ns_scoped, "RoleBinding", "flagger-loadtester");
}

/// The rendered load tester chart applies to localkube, and the load tester started with the
/// rendered command (on a free port) answers on /healthz.
#[test]
fn rendered_loadtester_chart_applies_and_serves() {
    let cluster = Cluster::start();
    let kc = cluster.kubeconfig.as_path();
    let out = Command::new("helm")
        .args(["template", "flagger-loadtester"])
        .arg(chart("loadtester"))
        .args([
            "--namespace",
            "test",
            "--set",
            "podDisruptionBudget.enabled=true",
        ])
        .output()
        .expect("helm is on PATH (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    let rendered = dir.path().join("loadtester.yaml");
    std::fs::write(&rendered, &out.stdout).unwrap();
    kubectl(kc, &["create", "namespace", "test"]);
    kubectl(
        kc,
        &["-n", "test", "apply", "-f", rendered.to_str().unwrap()],
    );
    let d = kubectl_json(
        kc,
        &["-n", "test", "get", "deployment", "flagger-loadtester"],
    );
    kubectl(
        kc,
        &[
            "-n",
            "test",
            "get",
            "service/flagger-loadtester",
            "pdb/flagger-loadtester",
        ],
    );
    let port = free_port();
    let command: Vec<String> = d["spec"]["template"]["spec"]["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .map(|a| {
            if a == "-port=8080" {
                format!("-port={port}")
            } else {
                a
            }
        })
        .collect();
    assert_eq!(command[0], "flagger-loadtester");
    let child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_flagger"))
            .arg("loadtester")
            .args(&command[1..])
            .arg("-listen-address=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("flagger loadtester starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some((200, body)) = http_get(port, "/healthz") {
            assert_eq!(body, "OK");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the load tester never answered /healthz"
        );
        cluster.rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
        });
    }
    drop(child);
}

/// The dashboard shipped in the chart is the one in deploy/grafana.
#[test]
fn dashboard_copies_match() {
    assert!(
        read("charts/flagger/dashboards/flagger-canary.json")
            == read("grafana/flagger-canary.json"),
        "deploy/charts/flagger/dashboards/flagger-canary.json differs from deploy/grafana/flagger-canary.json: cp deploy/grafana/flagger-canary.json deploy/charts/flagger/dashboards/"
    );
}

/// Percent-encodes a query parameter.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The bundled Prometheus's pod job, run by the real Prometheus. Debian's build has no
/// Kubernetes service discovery, so the two pods the discovery would report are given as
/// static targets carrying the same `__meta_kubernetes_*` labels: an ingress controller
/// annotated `prometheus.io/scrape`, `prometheus.io/port` and `prometheus.io/path`, and a pod
/// without the annotations. The chart's relabeling must scrape only the first, on its annotated
/// port and path, and label its series with the pod's namespace, name and labels (what the
/// builtin queries select on).
#[test]
fn bundled_prometheus_scrapes_annotated_pods() {
    let docs = render(&["prometheus.install=true"]);
    let cm = object(&docs, "ConfigMap", "flagger-prometheus");
    let config: Value =
        serde_yaml::from_str(cm["data"]["prometheus.yml"].as_str().unwrap()).unwrap();
    let mut job = config["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "kubernetes-pods")
        .unwrap()
        .clone();

    // The ingress controller's metrics, on a path of its own.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let body = if request.starts_with("GET /ingress-metrics ") {
                "nginx_ingress_controller_requests{ingress=\"podinfo\",status=\"200\"} 5\n"
            } else {
                ""
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let pod = |name: &str, scrape: &str| {
        serde_json::json!({
            // The pod's IP and declared container port; the annotation names the real one.
            "targets": ["127.0.0.1:1"],
            "labels": {
                "__meta_kubernetes_pod_annotation_prometheus_io_scrape": scrape,
                "__meta_kubernetes_pod_annotation_prometheus_io_port": metrics_port.to_string(),
                "__meta_kubernetes_pod_annotation_prometheus_io_path": "/ingress-metrics",
                "__meta_kubernetes_namespace": "ingress-nginx",
                "__meta_kubernetes_pod_name": name,
                "__meta_kubernetes_pod_label_app_kubernetes_io_name": "ingress-nginx",
            }
        })
    };
    let job_map = job.as_object_mut().unwrap();
    job_map.remove("kubernetes_sd_configs");
    job_map.insert(
        "static_configs".into(),
        serde_json::json!([
            pod("ingress-nginx-controller-7d9f8-x2k4p", "true"),
            pod("podinfo-5c8d7-abcde", "false")
        ]),
    );
    let test_config = serde_json::json!({
        "global": {"scrape_interval": "500ms"},
        "scrape_configs": [job],
    });
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, serde_yaml::to_string(&test_config).unwrap()).unwrap();
    let port = free_port();
    let _prometheus = KillOnDrop(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (scripts/test.sh installs Debian's package)"),
    );
    let query = |q: &str| -> Value {
        http_get(port, &format!("/api/v1/query?query={}", urlencode(q)))
            .and_then(|(status, body)| (status == 200).then_some(body))
            .and_then(|body| serde_json::from_str(&body).ok())
            .unwrap_or(Value::Null)
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let series = loop {
        let answer = query("nginx_ingress_controller_requests");
        if let Some(first) = answer.pointer("/data/result/0/metric") {
            break first.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the annotated pod was never scraped: {answer}"
        );
        rt.block_on(async { tokio::time::sleep(Duration::from_millis(100)).await });
    };
    assert_eq!(series["kubernetes_namespace"], "ingress-nginx");
    assert_eq!(
        series["kubernetes_pod_name"],
        "ingress-nginx-controller-7d9f8-x2k4p"
    );
    assert_eq!(series["app_kubernetes_io_name"], "ingress-nginx");
    assert_eq!(series["instance"], format!("127.0.0.1:{metrics_port}"));
    assert_eq!(series["job"], "kubernetes-pods");
    // Only the annotated pod is a target.
    let up = query("up");
    let targets = up["data"]["result"].as_array().map_or(0, Vec::len);
    assert_eq!(targets, 1, "{up}");
}

/// `dashboard.enabled=true`: a second container runs `flagger dashboard` with flags it accepts,
/// behind a Service, under a ClusterRole of its own equal to deploy/flagger/dashboard-rbac.yaml's
/// and bound to the pod's ServiceAccount; the controller's ClusterRole is unchanged. Off by
/// default (chart_defaults_render_like_flaggers lists the default objects).
#[test]
fn chart_dashboard_switch_adds_a_container_and_its_own_cluster_role() {
    let docs = render(&[
        "dashboard.enabled=true",
        "dashboard.readOnly=true",
        "dashboard.authProxyHeaders=true",
        "dashboard.trustedProxies={10.0.0.0/8}",
    ]);
    let pod = &object(&docs, "Deployment", "flagger")["spec"]["template"]["spec"];
    let container = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "dashboard")
        .expect("a dashboard container");
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(&args[..3], ["dashboard", "--listen", "0.0.0.0:9090"]);
    assert!(args.contains(&"--read-only".to_string()), "{args:?}");
    // The flags parse: the binary gets past its arguments to reading the kubeconfig.
    // (on a free loopback port here).
    let local: Vec<&str> = args
        .iter()
        .map(|a| {
            if a == "0.0.0.0:9090" {
                "127.0.0.1:0"
            } else {
                a.as_str()
            }
        })
        .collect();
    let out = Command::new(env!("CARGO_BIN_EXE_flagger"))
        .args(&local)
        .args(["--kubeconfig", "/nonexistent/kubeconfig"])
        .output()
        .expect("flagger runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("reading the kubeconfig"), "{stderr}");
    let role = object(&docs, "ClusterRole", "flagger-dashboard");
    let plain: Vec<Value> =
        serde_yaml::Deserializer::from_str(&read("flagger/dashboard-rbac.yaml"))
            .map(|d| Value::deserialize(d).unwrap())
            .collect();
    assert_eq!(role["rules"], plain[0]["rules"]);
    let binding = object(&docs, "ClusterRoleBinding", "flagger-dashboard");
    assert_eq!(binding["roleRef"]["name"], "flagger-dashboard");
    assert_eq!(binding["subjects"][0]["name"], "flagger");
    let svc = object(&docs, "Service", "flagger-dashboard");
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "dashboard");
    // The controller's ClusterRole is the kustomize one still.
    let controller = object(&docs, "ClusterRole", "flagger");
    let base: Value = serde_yaml::from_str(&rules_block(&read("flagger/rbac.yaml"))).unwrap();
    assert_eq!(
        rule_triples(&controller["rules"]),
        rule_triples(&base["rules"])
    );
}

/// A flag Flagger does not have stops the process before it does anything: exit code 2 and
/// the flag named in one line, with or without the `controller` subcommand (flags alone imply
/// it), and no Rust debug text.
#[test]
fn an_unknown_flag_stops_the_binary_with_a_clear_message() {
    for args in [
        &["controller", "-mesh-provider=kubernetes", "-no-such-flag=1"][..],
        &["-mesh-provider=kubernetes", "--no-such-flag"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_flagger"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines()
                .next()
                .is_some_and(|l| l.contains("unexpected argument '--no-such-flag'")),
            "{args:?}: {err}"
        );
        for debug in ["Some(", "Error {", "panicked"] {
            assert!(!err.contains(debug), "{args:?}: {debug} in {err}");
        }
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    }
}
