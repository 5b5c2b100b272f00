//! The real kubectl (`/usr/bin/kubectl`) against an in-process localkube.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Env {
    _handle: localkube::Handle,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Env {
    async fn start() -> Option<Env> {
        // The real kubectl is part of the machine these tests run on: its absence is a
        // failure, not a silent pass.
        assert!(
            Path::new(KUBECTL).exists(),
            "{KUBECTL} is installed (the tests compare its output)"
        );
        let handle = localkube::Server::start(localkube::Config::default())
            .await
            .expect("server starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        handle
            .write_kubeconfig(&kubeconfig)
            .expect("write kubeconfig");
        Some(Env {
            _handle: handle,
            dir,
            kubeconfig,
        })
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(KUBECTL);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> Out {
        let o = self.cmd(args).output().await.expect("kubectl runs");
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Runs kubectl and expects success; returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        o.stdout
    }

    async fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&a).await).expect("kubectl -o json prints JSON")
    }

    fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, content).expect("write manifest");
        p.to_string_lossy().into_owned()
    }

    /// Polls `kubectl args` until `pred(stdout)` holds.
    async fn until(&self, secs: u64, args: &[&str], pred: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let o = self.run(args).await;
            if pred(&o.stdout) {
                return o.stdout;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out: kubectl {args:?}: {} {}",
                o.stdout,
                o.stderr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - port: 80
    targetPort: 80
"#;

const CM: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  a: "1"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_api_resources() {
    let Some(k) = Env::start().await else { return };
    let v = k.ok(&["version"]).await;
    assert!(v.contains("Server Version: v1.32.0"), "{v}");
    let r = k.ok(&["api-resources"]).await;
    for needle in [
        "deployments",
        "deploy",
        "apps/v1",
        "customresourcedefinitions",
        "endpointslices",
        "leases",
        "horizontalpodautoscalers",
    ] {
        assert!(r.contains(needle), "api-resources lacks {needle}:\n{r}");
    }
    let ns = k
        .ok(&["api-resources", "--namespaced=false", "-o", "name"])
        .await;
    assert!(
        ns.contains("namespaces") && ns.contains("nodes") && !ns.contains("pods"),
        "{ns}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_client_side_then_server_side_with_conflict() {
    let Some(k) = Env::start().await else { return };
    let f = k.write("app.yaml", &format!("{DEPLOY}---{CM}"));
    let out = k.ok(&["apply", "-f", &f]).await;
    assert!(
        out.contains("deployment.apps/web created") && out.contains("configmap/cfg created"),
        "{out}"
    );
    let out = k.ok(&["apply", "-f", &f]).await;
    assert!(out.contains("deployment.apps/web unchanged"), "{out}");
    let f2 = k.write(
        "app.yaml",
        &format!("{DEPLOY}---{CM}").replace("nginx:1.25", "nginx:1.26"),
    );
    let out = k.ok(&["apply", "-f", &f2]).await;
    assert!(out.contains("deployment.apps/web configured"), "{out}");
    let d = k.json(&["get", "deploy", "web"]).await;
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.26"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    assert!(
        d["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );

    // Server-side apply of the same content by kubectl: shared ownership, no conflict.
    let out = k.ok(&["apply", "--server-side", "-f", &f2]).await;
    assert!(out.contains("serverside-applied"), "{out}");

    // A second field manager changing a field owned by others: conflict.
    let cm2 = k.write("cm2.yaml", &CM.replace("\"1\"", "\"2\""));
    let o = k
        .run(&[
            "apply",
            "--server-side",
            "--field-manager=other",
            "-f",
            &cm2,
        ])
        .await;
    assert!(!o.ok);
    assert!(
        o.stderr.contains("conflict") && o.stderr.contains(".data.a"),
        "{}",
        o.stderr
    );
    k.ok(&[
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        &cm2,
    ])
    .await;
    let cm = k.json(&["get", "cm", "cfg", "--show-managed-fields"]).await;
    assert_eq!(cm["data"]["a"], "2");
    let managers: Vec<&str> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["manager"].as_str())
        .collect();
    assert!(managers.contains(&"other"), "{managers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_get_output_formats_and_watch() {
    let Some(k) = Env::start().await else { return };
    let f = k.write("cm.yaml", CM);
    assert!(
        k.ok(&["create", "-f", &f])
            .await
            .contains("configmap/cfg created")
    );
    let o = k.run(&["create", "-f", &f]).await;
    assert!(!o.ok && o.stderr.contains("AlreadyExists"), "{}", o.stderr);
    let table = k.ok(&["get", "cm"]).await;
    assert!(
        table.starts_with("NAME")
            && table.contains("DATA")
            && table.contains("AGE")
            && table.contains("cfg"),
        "{table}"
    );
    let yaml = k.ok(&["get", "cm", "cfg", "-o", "yaml"]).await;
    assert!(
        yaml.contains("kind: ConfigMap") && yaml.contains("resourceVersion:"),
        "{yaml}"
    );
    let jp = k
        .ok(&["get", "cm", "cfg", "-o", "jsonpath={.data.a}"])
        .await;
    assert_eq!(jp, "1");
    let name = k.ok(&["get", "cm", "-o", "name"]).await;
    assert!(name.contains("configmap/cfg"));
    let o = k.run(&["get", "cm", "missing"]).await;
    assert!(!o.ok && o.stderr.contains("NotFound"), "{}", o.stderr);

    // get -w prints changes as they happen.
    let mut child = k
        .cmd(&[
            "get",
            "cm",
            "cfg",
            "-w",
            "-o",
            "jsonpath={.data.a}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.as_deref(), Some("1"));
    k.ok(&[
        "patch",
        "cm",
        "cfg",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"a":"2"}}"#,
    ])
    .await;
    let next = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(next.as_deref(), Some("2"));
    child.kill().await.ok();

    // Table watch as kubectl prints it by default.
    let mut child = k
        .cmd(&["get", "cm", "-w"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let header = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(header.starts_with("NAME"), "{header}");
    k.ok(&[
        "create",
        "-f",
        &k.write("cm3.yaml", &CM.replace("name: cfg", "name: third")),
    ])
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let l = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        if l.starts_with("third") {
            break;
        }
    }
    child.kill().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_rollout_scale_set_image_describe() {
    let Some(k) = Env::start().await else { return };
    let f = k.write("app.yaml", DEPLOY);
    k.ok(&["apply", "-f", &f]).await;
    let out = k
        .ok(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let table = k.ok(&["get", "deploy", "web"]).await;
    assert!(
        table.contains("READY") && table.contains("UP-TO-DATE") && table.contains("2/2"),
        "{table}"
    );
    let pods = k.ok(&["get", "pods", "-l", "app=web"]).await;
    assert!(pods.contains("Running") && pods.contains("1/1"), "{pods}");
    let wide = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(
        wide.contains("10.244.") && wide.contains("localkube-node-0"),
        "{wide}"
    );
    let ep = k
        .ok(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ])
        .await;
    assert_eq!(ep.split_whitespace().count(), 2, "{ep}");

    k.ok(&["set", "image", "deploy/web", "web=nginx:2"]).await;
    k.ok(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .await;
    let rs = k.json(&["get", "rs", "-l", "app=web"]).await;
    assert_eq!(rs["items"].as_array().unwrap().len(), 2);
    let images = k
        .ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ])
        .await;
    assert!(
        images.split_whitespace().all(|i| i == "nginx:2"),
        "{images}"
    );

    assert!(
        k.ok(&["scale", "deploy/web", "--replicas=3"])
            .await
            .contains("scaled")
    );
    k.ok(&["rollout", "status", "deploy/web", "--timeout=30s"])
        .await;
    k.until(10, &["get", "pods", "-l", "app=web", "-o", "name"], |s| {
        s.lines().count() == 3
    })
    .await;
    let out = k
        .ok(&[
            "wait",
            "--for=condition=Available",
            "deploy/web",
            "--timeout=10s",
        ])
        .await;
    assert!(out.contains("condition met"), "{out}");

    let desc = k.ok(&["describe", "deploy", "web"]).await;
    assert!(
        desc.contains("ScalingReplicaSet") && desc.contains("NewReplicaSetAvailable"),
        "{desc}"
    );
    let desc = k.ok(&["describe", "pods", "-l", "app=web"]).await;
    assert!(
        desc.contains("Scheduled") && desc.contains("10.244."),
        "{desc}"
    );

    // Cascading delete: the ReplicaSets and Pods go with the Deployment.
    k.ok(&["delete", "deploy", "web"]).await;
    k.until(10, &["get", "rs,pods", "-o", "name"], |s| {
        s.trim().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_ready_pods_fail_rollout() {
    let Some(k) = Env::start().await else { return };
    let manifest = DEPLOY.replace(
        "      labels: {app: web}\n    spec:",
        "      labels: {app: web}\n      annotations: {localkube.dev/never-ready: \"true\"}\n    spec:",
    )
    .replace("replicas: 2", "replicas: 1\n  progressDeadlineSeconds: 1");
    k.ok(&["apply", "-f", &k.write("bad.yaml", &manifest)])
        .await;
    let o = k
        .run(&["rollout", "status", "deploy/web", "--timeout=20s"])
        .await;
    assert!(!o.ok, "{}", o.stdout);
    assert!(
        o.stderr.contains("exceeded its progress deadline"),
        "{}",
        o.stderr
    );
    let pods = k.ok(&["get", "pods"]).await;
    assert!(pods.contains("0/1"), "{pods}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_label_annotate_delete() {
    let Some(k) = Env::start().await else { return };
    k.ok(&[
        "apply",
        "-f",
        &k.write("app.yaml", &format!("{DEPLOY}---{CM}")),
    ])
    .await;
    k.ok(&[
        "patch",
        "cm",
        "cfg",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"m":"1"}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "cm",
        "cfg",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/j","value":"2"}]"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "deploy",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox"}]}}}}"#,
    ])
    .await;
    let cm = k.json(&["get", "cm", "cfg"]).await;
    assert_eq!(
        (cm["data"]["m"].as_str(), cm["data"]["j"].as_str()),
        (Some("1"), Some("2"))
    );
    let d = k.json(&["get", "deploy", "web"]).await;
    let names: Vec<&str> = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["web", "side"], "strategic merge by container name");

    k.ok(&["label", "cm", "cfg", "tier=web"]).await;
    k.ok(&["annotate", "cm", "cfg", "note=hello"]).await;
    let cm = k.json(&["get", "cm", "-l", "tier=web"]).await;
    assert_eq!(cm["items"][0]["metadata"]["annotations"]["note"], "hello");
    k.ok(&["label", "cm", "cfg", "tier-"]).await;
    assert!(
        k.ok(&["get", "cm", "-l", "tier", "-o", "name"])
            .await
            .trim()
            .is_empty()
    );

    k.ok(&["delete", "cm", "cfg"]).await;
    let o = k.run(&["get", "cm", "cfg"]).await;
    assert!(!o.ok);
    k.ok(&["delete", "-f", &k.write("app2.yaml", DEPLOY)]).await;
    k.until(10, &["get", "all", "-o", "name"], |s| {
        !s.contains("deployment") && !s.contains("pod/")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kustomize_and_namespaces() {
    let Some(k) = Env::start().await else { return };
    k.write("kust/cm.yaml", CM);
    k.write("kust/deploy.yaml", DEPLOY);
    k.write(
        "kust/kustomization.yaml",
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: team\nnamePrefix: demo-\ncommonLabels:\n  owner: team\nresources:\n- ns.yaml\n- cm.yaml\n- deploy.yaml\n",
    );
    k.write(
        "kust/ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    let dir = k.dir.path().join("kust");
    let out = k.ok(&["apply", "-k", dir.to_str().unwrap()]).await;
    assert!(
        out.contains("configmap/demo-cfg created")
            && out.contains("deployment.apps/demo-web created"),
        "{out}"
    );
    k.ok(&[
        "-n",
        "team",
        "rollout",
        "status",
        "deploy/demo-web",
        "--timeout=30s",
    ])
    .await;
    let labels = k
        .ok(&[
            "-n",
            "team",
            "get",
            "cm",
            "demo-cfg",
            "-o",
            "jsonpath={.metadata.labels.owner}",
        ])
        .await;
    assert_eq!(labels, "team");
    // Deleting the namespace deletes its contents.
    k.ok(&["delete", "namespace", "team", "--timeout=20s"])
        .await;
    let o = k.run(&["get", "ns", "team"]).await;
    assert!(!o.ok);
    assert!(
        k.ok(&["get", "pods", "-A", "-o", "name"])
            .await
            .trim()
            .is_empty()
    );
}

fn crds_path() -> String {
    format!("{}/../../deploy/crds/crds.yaml", env!("CARGO_MANIFEST_DIR"))
}

const CANARY: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_served_validated_and_printed() {
    let Some(k) = Env::start().await else { return };
    let out = k.ok(&["apply", "-f", &crds_path()]).await;
    assert!(
        out.contains("customresourcedefinition.apiextensions.k8s.io/canaries.flagger.app created"),
        "{out}"
    );
    let r = k.ok(&["api-resources", "--api-group=flagger.app"]).await;
    assert!(
        r.contains("canaries") && r.contains("metrictemplates") && r.contains("alertproviders"),
        "{r}"
    );
    let out = k
        .ok(&["apply", "-f", &k.write("canary.yaml", CANARY)])
        .await;
    assert!(out.contains("canary.flagger.app/podinfo created"), "{out}");
    let table = k.ok(&["get", "canaries"]).await;
    assert!(
        table.contains("STATUS")
            && table.contains("WEIGHT")
            && table.contains("LASTTRANSITIONTIME")
            && table.contains("podinfo"),
        "{table}"
    );
    let wide = k.ok(&["get", "canary", "podinfo", "-o", "wide"]).await;
    assert!(
        wide.contains("STEPWEIGHT") && wide.contains("MAXWEIGHT") && wide.contains("50"),
        "{wide}"
    );

    // Unknown fields: kubectl's default validation is Strict, answered by the server.
    let bad = CANARY.replace("  service:\n", "  bogus: true\n  service:\n");
    let o = k
        .run(&[
            "apply",
            "-f",
            &k.write("bad.yaml", &bad.replace("podinfo\nspec", "bad\nspec")),
        ])
        .await;
    assert!(!o.ok, "{}", o.stdout);
    assert!(
        o.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        o.stderr
    );
    let o = k
        .run(&[
            "apply",
            "--validate=warn",
            "-f",
            &k.write(
                "bad2.yaml",
                &bad.replace("name: podinfo\nspec", "name: warned\nspec"),
            ),
        ])
        .await;
    assert!(o.ok, "{}", o.stderr);
    assert!(
        o.stderr.contains("unknown field \"spec.bogus\""),
        "{}",
        o.stderr
    );
    let stored = k.json(&["get", "canary", "warned"]).await;
    assert!(
        stored["spec"].get("bogus").is_none(),
        "unknown fields are pruned"
    );

    // Patch and the status subresource.
    k.ok(&[
        "patch",
        "canary",
        "podinfo",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"analysis":{"stepWeight":20}}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "canary",
        "podinfo",
        "--subresource=status",
        "--type",
        "merge",
        "-p",
        r#"{"status":{"phase":"Progressing","canaryWeight":20}}"#,
    ])
    .await;
    let table = k.ok(&["get", "canary", "podinfo"]).await;
    assert!(
        table.contains("Progressing") && table.contains("20"),
        "{table}"
    );

    // Deleting the CRD deletes its objects and stops serving it.
    k.ok(&["delete", "crd", "canaries.flagger.app"]).await;
    let o = k.run(&["get", "canaries"]).await;
    assert!(!o.ok, "{}", o.stdout);
}

/// kubectl's generators (`create namespace|configmap|secret|serviceaccount|deployment|service`)
/// send protobuf bodies through typed clients; what is stored must be what the same command
/// prints with `--dry-run=client -o json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imperative_generators_send_protobuf() {
    let Some(k) = Env::start().await else { return };
    assert!(
        k.ok(&["create", "namespace", "team"])
            .await
            .contains("namespace/team created")
    );
    assert_eq!(
        k.json(&["get", "ns", "team"]).await["status"]["phase"],
        "Active"
    );
    let cases: [&[&str]; 5] = [
        &[
            "create",
            "configmap",
            "cfg",
            "--from-literal=a=1",
            "--from-literal=b=2",
        ],
        &[
            "create",
            "secret",
            "generic",
            "pw",
            "--from-literal=password=hunter2",
        ],
        &["create", "serviceaccount", "bot"],
        &[
            "create",
            "deployment",
            "web",
            "--image=ghcr.io/stefanprodan/podinfo:6.0.1",
            "--port=9898",
            "--replicas=2",
        ],
        &["create", "service", "clusterip", "web", "--tcp=80:9898"],
    ];
    for args in cases {
        let mut dry: Vec<&str> = vec!["-n", "team"];
        dry.extend(args);
        dry.push("--dry-run=client");
        let want = k.json(&dry).await;
        let mut real: Vec<&str> = vec!["-n", "team"];
        real.extend(args);
        k.ok(&real).await;
        let kind = want["kind"].as_str().unwrap().to_lowercase();
        let name = want["metadata"]["name"].as_str().unwrap();
        let got = k.json(&["-n", "team", "get", &kind, name]).await;
        assert_eq!(
            got["metadata"]["labels"], want["metadata"]["labels"],
            "{args:?}"
        );
        assert_eq!(got["data"], want["data"], "{args:?}: data");
        if kind == "secret" {
            // The server defaults what the client leaves out.
            let want_type = want["type"].as_str().unwrap_or("Opaque");
            assert_eq!(got["type"], want_type, "{args:?}: type");
        }
        if kind == "deployment" {
            for p in [
                "/spec/replicas",
                "/spec/selector",
                "/spec/template/metadata/labels",
            ] {
                assert_eq!(got.pointer(p), want.pointer(p), "{p}");
            }
            let (g, w) = (
                &got["spec"]["template"]["spec"]["containers"][0],
                &want["spec"]["template"]["spec"]["containers"][0],
            );
            assert_eq!((&g["name"], &g["image"]), (&w["name"], &w["image"]));
            assert_eq!(
                g["ports"][0]["containerPort"],
                w["ports"][0]["containerPort"]
            );
        }
        if kind == "service" {
            assert_eq!(got["spec"]["selector"], want["spec"]["selector"]);
            assert_eq!(got["spec"]["type"], want["spec"]["type"]);
            assert_eq!(got["spec"]["ports"], want["spec"]["ports"]);
        }
    }
    assert_eq!(
        k.json(&["-n", "team", "get", "secret", "pw"]).await["data"]["password"],
        "aHVudGVyMg=="
    );
    k.ok(&[
        "-n",
        "team",
        "rollout",
        "status",
        "deploy/web",
        "--timeout=30s",
    ])
    .await;
    // The generated Service selects the generated Deployment's pods.
    k.until(
        10,
        &[
            "-n",
            "team",
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ],
        |s| s.split_whitespace().count() == 2,
    )
    .await;
}

/// What kubectl prints for an object the API server refuses (stderr, trimmed).
async fn refused(k: &Env, args: &[&str]) -> String {
    let o = k.run(args).await;
    assert!(!o.ok, "kubectl {args:?} should fail:\n{}", o.stdout);
    o.stderr.trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_get_kube_apiserver_messages() {
    let Some(k) = Env::start().await else { return };
    let dup = k.write(
        "dup.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: podinfo-svc}\nspec:\n  selector: {app: podinfo}\n  ports:\n  - {name: http, port: 80, targetPort: 9898}\n  - {name: http, port: 9898}\n",
    );
    assert_eq!(
        refused(&k, &["apply", "-f", &dup]).await,
        format!(
            "The Service \"podinfo-svc\" is invalid: spec.ports[1].name: Duplicate value: \"http\""
        )
    );
    // Issue 22's takeover: a client-side-applied port kept beside a server-side-applied one
    // of the same name is what a real API server refuses.
    let mine = k.write(
        "mine.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: podinfo-svc}\nspec:\n  selector: {app: podinfo}\n  ports:\n  - {name: http, port: 9898}\n",
    );
    k.ok(&["apply", "-f", &mine]).await;
    let theirs = k.write(
        "theirs.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: podinfo-svc}\nspec:\n  selector: {app: podinfo}\n  ports:\n  - {name: http, port: 80, targetPort: 9898}\n",
    );
    assert_eq!(
        refused(
            &k,
            &[
                "apply",
                "--server-side",
                "--field-manager=flagger",
                "-f",
                &theirs
            ]
        )
        .await,
        "The Service \"podinfo-svc\" is invalid: spec.ports[1].name: Duplicate value: \"http\""
    );
    k.ok(&["delete", "svc", "podinfo-svc"]).await;
    let unnamed = k.write(
        "unnamed.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: two}\nspec:\n  ports:\n  - {port: 80}\n  - {port: 81}\n",
    );
    assert_eq!(
        refused(&k, &["create", "-f", &unnamed]).await,
        "The Service \"two\" is invalid: \n* spec.ports[0].name: Required value\n* spec.ports[1].name: Required value"
    );
    let mismatch = k.write(
        "mismatch.yaml",
        &DEPLOY.split("---").next().expect("a deployment").replace(
            "labels: {app: web}\n    spec:",
            "labels: {app: other}\n    spec:",
        ),
    );
    assert_eq!(
        refused(&k, &["apply", "-f", &mismatch]).await,
        "The Deployment \"web\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"
    );
    let bad_name = refused(&k, &["create", "configmap", "Bad_Name"]).await;
    assert_eq!(
        bad_name,
        "error: failed to create configmap: ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
    );

    // The result of a patch is validated like any write.
    let web = k.write("web.yaml", DEPLOY);
    k.ok(&["apply", "-f", &web]).await;
    let patch = r#"[{"op":"add","path":"/spec/ports/-","value":{"name":"web","port":81}},{"op":"add","path":"/spec/ports/0/name","value":"web"}]"#;
    assert_eq!(
        refused(&k, &["patch", "svc", "web", "--type=json", "-p", patch]).await,
        "The Service \"web\" is invalid: spec.ports[1].name: Duplicate value: \"web\""
    );
    let moved = DEPLOY.replace("{app: web}", "{app: web2}");
    let moved = k.write(
        "moved.yaml",
        moved.split("---").next().expect("a deployment"),
    );
    assert_eq!(
        refused(&k, &["apply", "-f", &moved]).await,
        "The Deployment \"web\" is invalid: spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
    );
    let ip = k.json(&["get", "svc", "web"]).await["spec"]["clusterIP"].clone();
    assert!(ip.as_str().is_some_and(|s| s.starts_with("10.96.")), "{ip}");
    let other = if ip == "10.96.0.7" {
        "10.96.0.8"
    } else {
        "10.96.0.7"
    };
    let p = format!(r#"{{"spec":{{"clusterIP":"{other}"}}}}"#);
    assert_eq!(
        refused(&k, &["patch", "svc", "web", "-p", &p]).await,
        format!(
            "The Service \"web\" is invalid: spec.clusterIPs[0]: Invalid value: []string{{\"{other}\"}}: may not change once set"
        )
    );

    // Immutable ConfigMaps, and Secrets whose stringData is folded into data.
    let cm = k.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: \"1\"}\n",
    );
    k.ok(&["apply", "-f", &cm]).await;
    assert_eq!(
        refused(
            &k,
            &["patch", "cm", "frozen", "-p", r#"{"data":{"a":"2"}}"#]
        )
        .await,
        "The ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    let secret = k.write(
        "secret.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: token}\nstringData: {token: hunter2}\n",
    );
    k.ok(&["apply", "-f", &secret]).await;
    let s = k.json(&["get", "secret", "token"]).await;
    assert_eq!(s["data"]["token"], "aHVudGVyMg==");
    assert_eq!(s["type"], "Opaque");
    assert!(s.get("stringData").is_none(), "{s}");
}

/// What the real kubectl prints for the rules issue 22's reader found untested (the table in
/// `tests/validation.rs` checks every cause of each over HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_prints_the_service_probe_rollout_and_secret_rules() {
    let Some(k) = Env::start().await else { return };
    let node_port = k.write(
        "np.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  ports:\n  - {port: 80, nodePort: 30080}\n",
    );
    assert_eq!(
        refused(&k, &["apply", "-f", &node_port]).await,
        "The Service \"x\" is invalid: spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
    );
    let range = k.write(
        "range.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: wide}\nspec:\n  type: NodePort\n  ports:\n  - {port: 80, nodePort: 8080}\n",
    );
    assert_eq!(
        refused(&k, &["create", "-f", &range]).await,
        "The Service \"wide\" is invalid: spec.ports[0].nodePort: Invalid value: 8080: provided port is not in the valid range. The range of valid ports is 30000-32767"
    );
    let etp = k.write(
        "etp.yaml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: z}\nspec:\n  externalTrafficPolicy: Local\n  clusterIP: 10.96.0.300\n  ports:\n  - {port: 80}\n",
    );
    assert_eq!(
        refused(&k, &["apply", "-f", &etp]).await,
        "The Service \"z\" is invalid: spec.clusterIPs[0]: Invalid value: \"10.96.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
    );
    let probe = DEPLOY
        .split("---")
        .next()
        .expect("a deployment")
        .replace(
            "        - containerPort: 80\n",
            "        - containerPort: 80\n        readinessProbe:\n          httpGet: {port: 80}\n          tcpSocket: {port: 80}\n        env:\n        - {name: \"A=B\", value: x}\n",
        )
        .replace("  replicas: 2\n", "  replicas: 2\n  strategy:\n    rollingUpdate: {maxSurge: 0, maxUnavailable: 0}\n");
    let probe = k.write("probe.yaml", &probe);
    assert_eq!(
        refused(&k, &["apply", "-f", &probe]).await,
        "The Deployment \"web\" is invalid: \n\
         * spec.template.spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='\n\
         * spec.template.spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type\n\
         * spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"
    );
    let ds = k.write(
        "ds.yaml",
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent}\nspec:\n  selector: {matchLabels: {app: agent}}\n  updateStrategy: {type: Surge}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      containers: [{name: agent, image: busybox:1.36}]\n",
    );
    assert_eq!(
        refused(&k, &["apply", "-f", &ds]).await,
        "The DaemonSet \"agent\" is invalid: spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Surge\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\""
    );
    assert_eq!(
        refused(
            &k,
            &[
                "create",
                "secret",
                "generic",
                "tls-half",
                "--type=kubernetes.io/tls",
                "--from-literal=tls.crt=cert"
            ]
        )
        .await,
        "error: failed to create secret Secret \"tls-half\" is invalid: data[tls.key]: Required value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_show_in_get_and_describe() {
    let Some(k) = Env::start().await else { return };
    let web = k.write("web.yaml", DEPLOY);
    k.ok(&["apply", "-f", &web]).await;
    let d = k.json(&["get", "deploy", "web"]).await;
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c["ports"][0]["protocol"], "TCP");
    assert_eq!(
        d["spec"]["strategy"]["rollingUpdate"],
        serde_json::json!({"maxSurge": "25%", "maxUnavailable": "25%"})
    );
    let s = k.json(&["get", "svc", "web"]).await;
    for (f, v) in [
        ("sessionAffinity", "None"),
        ("ipFamilyPolicy", "SingleStack"),
        ("internalTrafficPolicy", "Cluster"),
        ("type", "ClusterIP"),
    ] {
        assert_eq!(s["spec"][f], v, "{f}");
    }
    assert_eq!(s["spec"]["ipFamilies"], serde_json::json!(["IPv4"]));
    let desc = k.ok(&["describe", "deploy", "web"]).await;
    assert!(
        desc.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
        "{desc}"
    );
    assert_eq!(c["resources"], serde_json::json!({}));
    // A Pod's own defaults (the Priority admission plugin's) and a StatefulSet's PVC policy.
    k.ok(&["run", "solo", "--image=ghcr.io/stefanprodan/podinfo:6.5.0"])
        .await;
    let p = k.json(&["get", "pod", "solo"]).await;
    assert_eq!(p["spec"]["priority"], 0);
    assert_eq!(p["spec"]["preemptionPolicy"], "PreemptLowerPriority");
    assert_eq!(
        p["spec"]["containers"][0]["resources"],
        serde_json::json!({})
    );
    let ss = k.write(
        "ss.yaml",
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: busybox:1.36}]\n",
    );
    k.ok(&["apply", "-f", &ss]).await;
    let ss = k.json(&["get", "statefulset", "db"]).await;
    assert_eq!(
        ss["spec"]["persistentVolumeClaimRetentionPolicy"],
        serde_json::json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
    );
    assert_eq!(ss["spec"]["revisionHistoryLimit"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_termination_waits_for_finalizers() {
    let Some(k) = Env::start().await else { return };
    k.ok(&["create", "namespace", "demo"]).await;
    let web = k.write("web.yaml", DEPLOY);
    k.ok(&["-n", "demo", "apply", "-f", &web]).await;
    let held = k.write(
        "held.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: held, finalizers: [example.com/hold]}\n",
    );
    k.ok(&["-n", "demo", "apply", "-f", &held]).await;
    k.ok(&["delete", "namespace", "demo", "--wait=false"]).await;
    let ns = k
        .until(15, &["get", "ns", "demo", "-o", "json"], |s| {
            s.contains("SomeFinalizersRemain") && !s.contains("deployments.apps has")
        })
        .await;
    let ns: Value = serde_json::from_str(&ns).expect("JSON");
    assert_eq!(ns["status"]["phase"], "Terminating");
    let cond = |t: &str| {
        ns["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == t))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(
        cond("NamespaceContentRemaining")["message"],
        "Some resources are remaining: configmaps. has 1 resource instances"
    );
    assert_eq!(
        cond("NamespaceFinalizersRemaining")["message"],
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
    );
    assert_eq!(cond("NamespaceDeletionContentFailure")["status"], "False");
    let cm = k.write(
        "late.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late}\n",
    );
    let err = refused(&k, &["-n", "demo", "create", "-f", &cm]).await;
    assert!(
        err.ends_with("configmaps \"late\" is forbidden: unable to create new content in namespace demo because it is being terminated"),
        "{err}"
    );
    let again = refused(&k, &["delete", "namespace", "demo"]).await;
    assert!(
        again.contains("Operation cannot be fulfilled on namespaces \"demo\": The system is ensuring all content is removed from this namespace."),
        "{again}"
    );
    k.ok(&[
        "-n",
        "demo",
        "patch",
        "cm",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ])
    .await;
    k.ok(&["wait", "--for=delete", "namespace/demo", "--timeout=20s"])
        .await;

    // `--wait=true` returns once the namespace and its content are gone.
    k.ok(&["create", "namespace", "gone"]).await;
    k.ok(&["-n", "gone", "apply", "-f", &web]).await;
    k.ok(&[
        "delete",
        "namespace",
        "gone",
        "--wait=true",
        "--timeout=30s",
    ])
    .await;
    let o = k.run(&["get", "namespace", "gone"]).await;
    assert!(o.stderr.contains("NotFound"), "{}", o.stderr);
}
