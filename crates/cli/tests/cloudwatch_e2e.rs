//! A canary analysed with a CloudWatch MetricTemplate, end to end, with the controller as EKS
//! runs it under IRSA: `flagger controller` is a process (this package's binary) whose
//! environment is the one EKS's pod identity webhook gives a pod (`AWS_ROLE_ARN`,
//! `AWS_WEB_IDENTITY_TOKEN_FILE` holding the projected service-account token), plus the SDKs'
//! `AWS_ENDPOINT_URL` pointing at the fake of AWS STS and CloudWatch that the controller's
//! tests use (`crates/controller/tests/support/fakes/aws.rs`: it follows AWS's API references
//! and recomputes every SigV4 signature). Its own process because the credential chain reads
//! the controller's environment, which an in-process controller shares with every test.
//!
//! localkube runs in this test, kubectl is the real one. CloudWatch answers a healthy error
//! rate while the first revision is analysed (promoted), a failing one for the next (rolled
//! back); the MetricTemplate is written as a Flagger user writes it (a region, no address).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The vendor fakes of the controller's tests: the shared part and AWS's.
#[path = "../../controller/tests/support/fakes"]
#[allow(dead_code)]
mod fakes {
    #[path = "shared.rs"]
    mod shared;
    pub use shared::*;
    #[path = "aws.rs"]
    pub mod aws;
}

/// The podinfo workload of the chaos scenarios.
#[path = "../../controller/tests/support/chaos.rs"]
mod chaos;

use chaos::PODINFO;
use fakes::Answer;
use fakes::aws::{self as fake_aws, Aws};

const NS: &str = "test";
const BIN: &str = env!("CARGO_BIN_EXE_flagger");
/// How long any awaited condition may take.
const DEADLINE: Duration = Duration::from_secs(90);

/// The controller process, stopped and reaped on drop.
struct Controller(Child);

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn kubectl(kc: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = tokio::process::Command::new("kubectl")
        .env("KUBECONFIG", kc)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kubectl runs");
    if let Some(text) = stdin {
        use tokio::io::AsyncWriteExt as _;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).await.unwrap();
    }
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "kubectl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The canary's phase as kubectl shows it.
async fn phase(kc: &Path) -> String {
    kubectl(
        kc,
        &[
            "-n",
            NS,
            "get",
            "canary/podinfo",
            "-o",
            "jsonpath={.status.phase}",
        ],
        None,
    )
    .await
}

/// Waits until the canary is in `want`; panics with the last phase and the controller's log.
async fn wait_phase(kc: &Path, dir: &Path, want: &str) {
    let deadline = Instant::now() + DEADLINE;
    let mut interval = tokio::time::interval(Duration::from_millis(200));
    loop {
        interval.tick().await;
        let got = phase(kc).await;
        if got == want {
            return;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.join("controller.err")).unwrap_or_default();
            panic!("canary not {want} in time (last {got:?}); controller log:\n{log}");
        }
    }
}

/// The messages of the canary's events, oldest first.
async fn events(kc: &Path) -> Vec<String> {
    let list: serde_json::Value =
        serde_json::from_str(&kubectl(kc, &["-n", NS, "get", "events", "-o", "json"], None).await)
            .unwrap();
    let mut mine: Vec<&serde_json::Value> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["involvedObject"]["kind"] == "Canary" && e["involvedObject"]["name"] == "podinfo"
        })
        .collect();
    mine.sort_by_key(|e| e["firstTimestamp"].as_str().unwrap_or_default().to_string());
    mine.iter()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

async fn primary_image(kc: &Path) -> String {
    kubectl(
        kc,
        &[
            "-n",
            NS,
            "get",
            "deployment/podinfo-primary",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
        None,
    )
    .await
}

async fn set_image(kc: &Path, tag: &str) {
    kubectl(
        kc,
        &[
            "-n",
            NS,
            "set",
            "image",
            "deployment/podinfo",
            &format!("podinfod={PODINFO}:{tag}"),
        ],
        None,
    )
    .await;
}

/// The ALB's 5xx percentage of the target group, as CloudWatch users of Flagger query it.
const QUERY: &str = r#"[
  {"Id": "e1", "Expression": "m1 / m2 * 100", "Label": "error rate of {{ target }}", "ReturnData": true},
  {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "HTTPCode_Target_5XX_Count",
    "Dimensions": [{"Name": "TargetGroup", "Value": "targetgroup/{{ target }}/1"}]}, "Period": 60, "Stat": "Sum"}, "ReturnData": false},
  {"Id": "m2", "MetricStat": {"Metric": {"Namespace": "AWS/ApplicationELB", "MetricName": "RequestCount",
    "Dimensions": [{"Name": "TargetGroup", "Value": "targetgroup/{{ target }}/1"}]}, "Period": 60, "Stat": "Sum"}, "ReturnData": false}
]"#;

fn manifests() -> String {
    format!(
        r#"apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata: {{name: error-rate, namespace: {NS}}}
spec:
  provider: {{type: cloudwatch, region: {region}}}
  query: {query}
{deployment}---
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
      templateRef: {{name: error-rate}}
      thresholdRange: {{max: 1}}
      interval: 1m
"#,
        region = fake_aws::REGION,
        query = serde_json::to_string(QUERY).unwrap(),
        deployment = chaos::podinfo_deployment("podinfo", 1),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_template_promotes_and_rolls_back_under_irsa() {
    let (aws, aws_url) = Aws::start().await;
    let kube = localkube::Server::start(localkube::Config::default())
        .await
        .expect("localkube starts");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let kc = d.join("kubeconfig");
    kube.write_kubeconfig(&kc).unwrap();
    let crds = Command::new(BIN).arg("crd").output().unwrap();
    kubectl(
        &kc,
        &["apply", "-f", "-"],
        Some(&String::from_utf8_lossy(&crds.stdout)),
    )
    .await;
    kubectl(&kc, &["create", "namespace", NS], None).await;

    // The projected service-account token, where the pod identity webhook mounts it.
    let token = d.join("token");
    std::fs::write(&token, fake_aws::WEB_IDENTITY_TOKEN).unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut controller = Command::new(BIN);
    controller
        .args([
            "controller".to_string(),
            format!("-kubeconfig={}", kc.display()),
            "-mesh-provider=kubernetes".into(),
            format!("-metrics-server=http://{dead}"),
            "-min-analysis-interval=1s".into(),
            "-port=0".into(),
        ])
        .env_remove("RUST_LOG")
        .env("NO_PROXY", "*")
        .env("HOME", d)
        .env("AWS_ROLE_ARN", fake_aws::ROLE_ARN)
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", &token)
        .env("AWS_ENDPOINT_URL", &aws_url)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(d.join("controller.out")).unwrap())
        .stderr(std::fs::File::create(d.join("controller.err")).unwrap());
    for (name, _) in std::env::vars() {
        if name.starts_with("AWS_")
            && ![
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_ENDPOINT_URL",
                "AWS_EC2_METADATA_DISABLED",
            ]
            .contains(&name.as_str())
        {
            controller.env_remove(name);
        }
    }
    let _controller = Controller(controller.spawn().unwrap());

    aws.state.set(Answer::Value(0.2));
    kubectl(&kc, &["apply", "-f", "-"], Some(&manifests())).await;
    wait_phase(&kc, d, "Initialized").await;
    set_image(&kc, "6.0.1").await;
    wait_phase(&kc, d, "Succeeded").await;
    assert_eq!(primary_image(&kc).await, format!("{PODINFO}:6.0.1"));

    aws.state.set(Answer::Value(4.5));
    set_image(&kc, "6.0.2").await;
    wait_phase(&kc, d, "Failed").await;
    assert_eq!(
        primary_image(&kc).await,
        format!("{PODINFO}:6.0.1"),
        "the primary keeps the promoted revision"
    );
    let events = events(&kc).await;
    for text in [
        "all the metrics providers are available!",
        "Promotion completed! Scaling down podinfo.test",
        "Halt podinfo.test advancement error-rate 4.50 > 1",
        "Rolling back podinfo.test failed checks threshold reached 2",
    ] {
        assert!(
            events.iter().any(|e| e == text),
            "{text:?} not in {events:#?}"
        );
    }

    // What reached AWS: the web identity exchanged at STS, then GetMetricData signed with the
    // session it gave (the fake answers 403 to any other signature), over ten intervals.
    let seen = aws.state.seen();
    assert!(
        seen.iter()
            .any(|s| s.body.contains("Action=AssumeRoleWithWebIdentity")),
        "no STS call"
    );
    let calls: Vec<serde_json::Value> = seen
        .iter()
        .filter(|s| s.headers.contains_key("x-amz-target"))
        .map(|s| {
            assert_eq!(s.headers["x-amz-security-token"], fake_aws::SESSION_TOKEN);
            serde_json::from_str(&s.body).unwrap()
        })
        .collect();
    let queries: Vec<&serde_json::Value> = calls
        .iter()
        .filter(|c| {
            c["MetricDataQueries"]
                .as_array()
                .is_some_and(|q| !q.is_empty())
        })
        .collect();
    assert!(queries.len() >= 6, "{} queries", queries.len());
    for q in &queries {
        assert_eq!(q["MaxDatapoints"], 20);
        assert_eq!(
            q["EndTime"].as_u64().unwrap() - q["StartTime"].as_u64().unwrap(),
            600
        );
        assert_eq!(
            q["MetricDataQueries"][1]["MetricStat"]["Metric"]["Dimensions"][0]["Value"],
            "targetgroup/podinfo/1"
        );
    }
    assert_eq!(
        calls.len() - queries.len(),
        2,
        "one availability check (an empty call) per revision"
    );

    // The session's secrets appear nowhere the controller writes.
    let log = std::fs::read_to_string(d.join("controller.err")).unwrap()
        + &std::fs::read_to_string(d.join("controller.out")).unwrap();
    let described = kubectl(&kc, &["-n", NS, "describe", "canary/podinfo"], None).await;
    for secret in [
        fake_aws::SECRET_ACCESS_KEY,
        fake_aws::SESSION_TOKEN,
        fake_aws::WEB_IDENTITY_TOKEN,
    ] {
        for (what, text) in [("log", &log), ("describe", &described)] {
            assert!(!text.contains(secret), "{secret} in the {what}");
        }
        assert!(
            !events.iter().any(|e| e.contains(secret)),
            "{secret} in an event"
        );
    }
}
