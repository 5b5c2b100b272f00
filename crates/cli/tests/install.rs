//! The install manifests (`deploy/`): the kustomize bases are applied with the real
//! `kubectl apply -k` to localkube and the objects they create are checked; the controller is
//! then started with the Deployment's own arguments and must become ready; the Helm chart's
//! copies (CRDs, RBAC rules) are checked against the kustomize base, and the flags its
//! Deployment template can pass are checked against the controller's parser.

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
        ("flagger.app", &["canaries/status"], &["get", "patch"]),
        ("flagger.app", &["canaries/finalizers"], &["update"]),
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
            &["get", "list", "watch", "create", "patch"],
        ),
        (
            "",
            &["services"],
            &["get", "list", "watch", "create", "update", "patch"],
        ),
        (
            "autoscaling",
            &["horizontalpodautoscalers"],
            &["get", "list", "watch", "create", "patch"],
        ),
        ("keda.sh", &["scaledobjects"], &["get", "create", "patch"]),
        (
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update"],
        ),
        (
            "networking.istio.io",
            &["virtualservices", "destinationrules"],
            &["get", "create", "update", "patch"],
        ),
        (
            "split.smi-spec.io",
            &["trafficsplits"],
            &["get", "create", "patch"],
        ),
        (
            "gateway.networking.k8s.io",
            &["httproutes"],
            &["get", "create", "patch"],
        ),
        (
            "networking.k8s.io",
            &["ingresses"],
            &["get", "create", "patch"],
        ),
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
        got.iter()
            .all(|(_, r, v)| v != "delete" && r != "*" && v != "*"),
        "no delete, no wildcards"
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
            "-mesh-provider=kubernetes",
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
    assert_eq!(parsed.mesh_provider.as_str(), "kubernetes");
    assert_eq!(parsed.port, 8080);
    let port = free_port();
    let mut controller = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_flagger"))
            .args(&args)
            .arg(format!("-port={port}"))
            .arg(format!("-kubeconfig={}", kc.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("flagger controller starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let ready = loop {
        if let Some(status) = controller.0.try_wait().unwrap() {
            panic!("flagger controller exited: {status}");
        }
        if let Some((200, _)) = http_get(port, "/readyz") {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        cluster.rt.block_on(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
        });
    };
    let healthz = http_get(port, "/healthz");
    let metrics = http_get(port, "/metrics");
    drop(controller);
    assert!(ready, "the controller never answered 200 on /readyz");
    assert_eq!(healthz.map(|h| h.0), Some(200));
    let (status, body) = metrics.expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(
        body.contains("flagger_info") && body.contains("mesh_provider=\"kubernetes\""),
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
    ("enable-leader-election", "true"),
    ("kubeconfig-qps", "50"),
    ("kubeconfig-burst", "100"),
    ("leader-election-namespace", "flagger-system"),
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
    assert_eq!(
        args.ingress_annotations_prefix,
        "custom.ingress.kubernetes.io"
    );

    let values: Value = serde_yaml::from_str(&read("charts/flagger/values.yaml")).unwrap();
    for pointer in [
        "/image/repository",
        "/image/tag",
        "/image/pullPolicy",
        "/meshProvider",
        "/metricsServer",
        "/logLevel",
        "/slack/url",
        "/slack/channel",
        "/slack/user",
        "/leaderElection/enabled",
        "/leaderElection/replicaCount",
        "/crd/create",
        "/rbac/create",
        "/serviceAccount/create",
        "/serviceAccount/name",
        "/resources/requests/cpu",
        "/podAnnotations",
        "/nodeSelector",
        "/tolerations",
        "/affinity",
        "/securityContext/context/readOnlyRootFilesystem",
    ] {
        assert!(
            values.pointer(pointer).is_some(),
            "values.yaml lacks {pointer}"
        );
    }
    assert_eq!(values["meshProvider"], "kubernetes");
    assert_eq!(values["crd"]["create"], false);
}

/// Renders the chart with `helm template`. Helm is not installed on CI machines, so the test is
/// ignored there rather than passing without checking anything:
/// `cargo test -p flagger-cli --test install -- --ignored` where helm is on PATH.
#[test]
#[ignore = "needs helm on PATH"]
fn helm_template_renders_with_helm() {
    let version = Command::new("helm")
        .arg("version")
        .output()
        .expect("helm is on PATH");
    assert!(version.status.success());
    let chart = deploy("charts/flagger");
    let render = |extra: &[&str]| -> String {
        let out = Command::new("helm")
            .args(["template", "flagger"])
            .arg(&chart)
            .args(["--namespace", "flagger-system"])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "helm template {extra:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let plain = render(&[]);
    assert!(plain.contains("\"-mesh-provider=kubernetes\""), "{plain}");
    assert!(plain.contains("kind: ClusterRole"), "{plain}");
    assert!(
        !plain.contains("kind: CustomResourceDefinition"),
        "crd.create=false"
    );
    let with_crds = render(&["--set", "crd.create=true", "--skip-crds"]);
    assert_eq!(
        with_crds.matches("kind: CustomResourceDefinition").count(),
        3
    );
    let no_rbac = render(&["--set", "rbac.create=false,serviceAccount.create=false"]);
    assert!(!no_rbac.contains("kind: ClusterRole"), "{no_rbac}");
    assert!(no_rbac.contains("serviceAccountName: default"), "{no_rbac}");
}
