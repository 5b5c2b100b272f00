//! Authentication and RBAC through the real kubectl: `kubectl auth can-i` (and `--list`),
//! `kubectl auth whoami`, the 401 and 403 texts kubectl prints, impersonation, the escalation
//! check, ClusterRole aggregation, and a TokenRequest + TokenReview round trip.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const KUBECTL: &str = "/usr/bin/kubectl";

struct Env {
    handle: localkube::Handle,
    dir: tempfile::TempDir,
    admin: PathBuf,
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

const TOKENS: &str = "alice-token,alice,uid-alice\nbob-token,bob,uid-bob,\"devs,ops\"\n";

impl Env {
    async fn start() -> Option<Env> {
        // The real kubectl is part of the machine these tests run on: its absence is a
        // failure, not a silent pass.
        assert!(
            Path::new(KUBECTL).exists(),
            "{KUBECTL} is installed (the tests compare its output)"
        );
        let mut config = localkube::Config::default();
        config.auth.rbac = true;
        config.auth.static_tokens =
            localkube::auth::tokens::parse_token_file(TOKENS).expect("token file parses");
        let handle = localkube::Server::start(config)
            .await
            .expect("server starts");
        let dir = tempfile::tempdir().expect("tempdir");
        let admin = dir.path().join("admin.kubeconfig");
        handle.write_kubeconfig(&admin).expect("write kubeconfig");
        Some(Env { handle, dir, admin })
    }

    /// A kubeconfig presenting `token`.
    fn as_token(&self, who: &str, token: &str) -> PathBuf {
        let p = self.dir.path().join(format!("{who}.kubeconfig"));
        std::fs::write(&p, self.handle.kubeconfig_with_token(token)).expect("write kubeconfig");
        p
    }

    async fn run(&self, kc: &Path, args: &[&str], stdin: Option<&str>) -> Out {
        let mut c = Command::new(KUBECTL);
        c.args(args)
            .env("KUBECONFIG", kc)
            .env("HOME", self.dir.path())
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = c.spawn().expect("kubectl runs");
        if let (Some(text), Some(mut w)) = (stdin, child.stdin.take()) {
            w.write_all(text.as_bytes()).await.expect("stdin");
        }
        let o = child.wait_with_output().await.expect("kubectl finishes");
        Out {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    async fn ok(&self, kc: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(kc, args, stdin).await;
        assert!(
            o.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        o.stdout
    }

    async fn fails(&self, kc: &Path, args: &[&str], stdin: Option<&str>) -> String {
        let o = self.run(kc, args, stdin).await;
        assert!(!o.ok, "kubectl {args:?} should fail: {}", o.stdout);
        o.stderr
    }

    /// `kubectl auth can-i ...`: "yes" or "no" (it exits 1 on "no").
    async fn can_i(&self, kc: &Path, args: &[&str]) -> String {
        let mut a = vec!["auth", "can-i"];
        a.extend(args);
        let o = self.run(kc, &a, None).await;
        match o.stdout.trim() {
            "" => format!("(nothing; stderr: {})", o.stderr.trim()),
            out => out.to_string(),
        }
    }

    async fn apply(&self, yaml: &str) {
        self.ok(&self.admin.clone(), &["apply", "-f", "-"], Some(yaml))
            .await;
    }
}

const SETUP: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team}
rules:
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list]
- apiGroups: [""]
  resources: [pods/log]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps]
  resourceNames: [settings]
  verbs: [get, update, patch]
- apiGroups: [rbac.authorization.k8s.io]
  resources: [roles, rolebindings]
  verbs: [create, get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads-pods, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-reader}
subjects:
- {kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: devs-view}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_can_i_whoami_and_the_401_403_texts() {
    let Some(env) = Env::start().await else {
        return;
    };
    env.apply(SETUP).await;
    let admin = env.admin.clone();
    let alice = env.as_token("alice", "alice-token");
    let bob = env.as_token("bob", "bob-token");

    // Who each one is.
    let who: Value = serde_json::from_str(
        &env.ok(&alice, &["auth", "whoami", "-o", "json"], None)
            .await,
    )
    .expect("whoami prints JSON");
    assert_eq!(who["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        who["status"]["userInfo"]["groups"],
        serde_json::json!(["system:authenticated"])
    );
    let who = env.ok(&admin, &["auth", "whoami"], None).await;
    assert!(
        who.contains("kubernetes-admin") && who.contains("system:masters"),
        "{who}"
    );

    // can-i, as kube-apiserver's RBAC answers.
    let cases: &[(&Path, &[&str], &str)] = &[
        (&alice, &["list", "pods", "-n", "team"], "yes"),
        (&alice, &["watch", "pods", "-n", "team"], "no"),
        (&alice, &["list", "pods", "-n", "other"], "no"),
        (&alice, &["list", "pods", "--all-namespaces"], "no"),
        (
            &alice,
            &["get", "pods", "--subresource=log", "-n", "team"],
            "yes",
        ),
        (
            &alice,
            &["get", "pods", "--subresource=exec", "-n", "team"],
            "no",
        ),
        (&alice, &["get", "configmaps/settings", "-n", "team"], "yes"),
        (&alice, &["get", "configmaps/other", "-n", "team"], "no"),
        (&alice, &["list", "configmaps", "-n", "team"], "no"),
        (&alice, &["create", "selfsubjectaccessreviews"], "yes"),
        (&alice, &["get", "/healthz"], "yes"),
        (&alice, &["get", "/metrics"], "no"),
        // bob is in `devs`, bound to the aggregated `view`.
        (&bob, &["list", "deployments.apps", "-n", "other"], "yes"),
        (&bob, &["get", "secrets", "-n", "other"], "no"),
        (&bob, &["delete", "pods", "-n", "other"], "no"),
        (&admin, &["*", "*"], "yes"),
        (
            &admin,
            &["list", "pods", "-n", "team", "--as", "alice"],
            "yes",
        ),
        (
            &admin,
            &["list", "pods", "-n", "other", "--as", "alice"],
            "no",
        ),
    ];
    for (kc, args, want) in cases {
        assert_eq!(&env.can_i(kc, args).await, want, "can-i {args:?} as {kc:?}");
    }
    let list = env
        .ok(&alice, &["auth", "can-i", "--list", "-n", "team"], None)
        .await;
    let pods = list
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_default();
    assert!(pods.contains("[get list]"), "{list}");
    assert!(
        list.lines()
            .any(|l| l.starts_with("configmaps ") && l.contains("[settings]")),
        "{list}"
    );
    assert!(list.contains("/healthz"), "{list}");

    // 403 as kubectl prints kube-apiserver's message.
    let e = env
        .fails(&alice, &["get", "pods", "-n", "other"], None)
        .await;
    assert!(
        e.contains(r#"Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "other""#),
        "{e}"
    );
    let e = env
        .fails(&alice, &["get", "deployments", "-n", "team", "web"], None)
        .await;
    assert!(
        e.contains(r#"deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments" in API group "apps" in the namespace "team""#),
        "{e}"
    );
    let e = env.fails(&alice, &["get", "nodes"], None).await;
    assert!(
        e.contains(
            r#"User "alice" cannot list resource "nodes" in API group "" at the cluster scope"#
        ),
        "{e}"
    );
    let e = env
        .fails(
            &alice,
            &[
                "get",
                "pods",
                "-n",
                "team",
                "--watch",
                "--request-timeout=5s",
            ],
            None,
        )
        .await;
    assert!(e.contains(r#"cannot watch resource "pods""#), "{e}");
    // Impersonation needs `impersonate`.
    let e = env
        .fails(&alice, &["get", "pods", "-n", "team", "--as", "bob"], None)
        .await;
    assert!(
        e.contains(r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{e}"
    );

    // 401 for a token nobody issued.
    let nobody = env.as_token("nobody", "not-a-token");
    let e = env.fails(&nobody, &["get", "pods"], None).await;
    assert!(
        e.contains("error: You must be logged in to the server (Unauthorized)"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_check_and_aggregated_roles() {
    let Some(env) = Env::start().await else {
        return;
    };
    env.apply(SETUP).await;
    let alice = env.as_token("alice", "alice-token");
    let bob = env.as_token("bob", "bob-token");

    // alice may create Roles, but only with what she holds.
    let held = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: mine, namespace: team}\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get]\n";
    env.ok(&alice, &["create", "-f", "-"], Some(held)).await;
    let more = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: more, namespace: team}\nrules:\n- apiGroups: [\"\"]\n  resources: [secrets]\n  verbs: [get, list]\n";
    let e = env.fails(&alice, &["create", "-f", "-"], Some(more)).await;
    assert!(
        e.contains(r#"roles.rbac.authorization.k8s.io "more" is forbidden: user "alice" (groups=["system:authenticated"]) is attempting to grant RBAC permissions not currently held:"#)
            && e.contains(r#"{APIGroups:[""], Resources:["secrets"], Verbs:["get" "list"]}"#),
        "{e}"
    );
    // Binding a role whose rules she holds is fine; binding `edit` is not.
    let bind = |role_kind: &str, role: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: b-{role}, namespace: team}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: {role_kind}, name: {role}}}\nsubjects:\n- {{kind: User, name: carol, apiGroup: rbac.authorization.k8s.io}}\n"
        )
    };
    env.ok(&alice, &["create", "-f", "-"], Some(&bind("Role", "mine")))
        .await;
    let e = env
        .fails(
            &alice,
            &["create", "-f", "-"],
            Some(&bind("ClusterRole", "edit")),
        )
        .await;
    assert!(
        e.contains(r#"rolebindings.rbac.authorization.k8s.io "b-edit" is forbidden: user "alice""#),
        "{e}"
    );

    // A server-side apply that would create the object needs `create` as well.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: team}\ndata: {a: b}\n";
    let e = env
        .fails(&alice, &["apply", "--server-side", "-f", "-"], Some(cm))
        .await;
    assert!(
        e.contains(r#"Error from server (Forbidden): configmaps "settings" is forbidden"#),
        "{e}"
    );
    env.apply(cm).await;
    env.ok(
        &alice,
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&cm.replace("a: b", "a: c")),
    )
    .await;

    // Aggregation: a ClusterRole labelled for `view` extends it, and who holds `view` gets it
    // (the default `view` grants no Nodes).
    assert_eq!(env.can_i(&bob, &["get", "nodes"]).await, "no");
    env.apply("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: node-view\n  labels: {rbac.authorization.k8s.io/aggregate-to-view: \"true\"}\nrules:\n- apiGroups: [\"\"]\n  resources: [nodes]\n  verbs: [get]\n").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while env.can_i(&bob, &["get", "nodes"]).await != "yes" {
        if tokio::time::Instant::now() > deadline {
            let view = env
                .ok(
                    &env.admin.clone(),
                    &["get", "clusterrole", "view", "-o", "yaml"],
                    None,
                )
                .await;
            let asked: Vec<_> = env
                .handle
                .auth()
                .audit
                .records()
                .into_iter()
                .filter(|r| r.user == "bob")
                .collect();
            let said = env.can_i(&bob, &["get", "nodes"]).await;
            panic!("view never aggregated node-view: {said} {asked:?} {view}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // `edit` and `admin` aggregate `view`'s labelled roles too.
    let admin_rules = env
        .ok(
            &env.admin.clone(),
            &["get", "clusterrole", "admin", "-o", "json"],
            None,
        )
        .await;
    assert!(admin_rules.contains("nodes"), "{admin_rules}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_request_and_token_review_round_trip() {
    let Some(env) = Env::start().await else {
        return;
    };
    env.apply(SETUP).await;
    let admin = env.admin.clone();
    env.ok(
        &admin,
        &["create", "serviceaccount", "bot", "-n", "team"],
        None,
    )
    .await;
    let token = env
        .ok(&admin, &["create", "token", "bot", "-n", "team"], None)
        .await
        .trim()
        .to_string();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let e = env
        .fails(
            &admin,
            &["create", "token", "bot", "-n", "team", "--duration=1m"],
            None,
        )
        .await;
    assert!(
        e.contains("may not specify a duration less than 10 minutes"),
        "{e}"
    );

    let review = format!(
        "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n"
    );
    let out: Value = serde_json::from_str(
        &env.ok(&admin, &["create", "-f", "-", "-o", "json"], Some(&review))
            .await,
    )
    .expect("TokenReview JSON");
    assert_eq!(out["status"]["authenticated"], true, "{out}");
    assert_eq!(
        out["status"]["user"]["username"],
        "system:serviceaccount:team:bot"
    );
    assert_eq!(
        out["status"]["user"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:team",
            "system:authenticated"
        ])
    );
    assert_eq!(out["status"]["audiences"][0], localkube::auth::ISSUER);
    // Another audience is not this token's.
    let other = format!("{review}  audiences: [vault]\n");
    let out: Value = serde_json::from_str(
        &env.ok(&admin, &["create", "-f", "-", "-o", "json"], Some(&other))
            .await,
    )
    .expect("TokenReview JSON");
    assert_ne!(out["status"]["authenticated"], true, "{out}");

    // The token works as a credential, within its RBAC: the ServiceAccount's group.
    let bot = env.as_token("bot", &token);
    let who = env.ok(&bot, &["auth", "whoami"], None).await;
    assert!(who.contains("system:serviceaccount:team:bot"), "{who}");
    assert_eq!(env.can_i(&bot, &["list", "pods", "-n", "team"]).await, "no");
    env.ok(
        &admin,
        &[
            "create",
            "rolebinding",
            "bots",
            "-n",
            "team",
            "--role=pod-reader",
            "--group=system:serviceaccounts:team",
        ],
        None,
    )
    .await;
    assert_eq!(
        env.can_i(&bot, &["list", "pods", "-n", "team"]).await,
        "yes"
    );

    // A user without `create tokenreviews` may not review.
    let alice = env.as_token("alice", "alice-token");
    let e = env
        .fails(&alice, &["create", "-f", "-"], Some(&review))
        .await;
    assert!(e.contains(r#"cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#), "{e}");

    // Deleting the ServiceAccount revokes its tokens.
    env.ok(
        &admin,
        &["delete", "serviceaccount", "bot", "-n", "team"],
        None,
    )
    .await;
    let e = env.fails(&bot, &["auth", "whoami"], None).await;
    assert!(e.contains("Unauthorized"), "{e}");

    // The signer's tokens are checked against its key; the audit saw these decisions.
    let audit = env.handle.auth().audit.records();
    assert!(
        audit
            .iter()
            .any(|r| r.user == "alice" && r.resource == "tokenreviews" && !r.allowed),
        "{audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_see_only_public_info() {
    let Some(env) = Env::start().await else {
        return;
    };
    assert!(env.handle.url().starts_with("https://"));
    // kubectl prompts for a password without credentials: a client without a token instead.
    let kc = env
        .handle
        .kubeconfig_with_token("none")
        .replace("  user:\n    token: none\n", "  user: {}\n");
    let kc = kube::config::Kubeconfig::from_yaml(&kc).expect("kubeconfig parses");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    let client = kube::Client::try_from(cfg).expect("client");
    let v = client
        .request_text(
            axum::http::Request::get("/version")
                .body(Vec::new())
                .expect("request"),
        )
        .await
        .expect("/version is public");
    assert!(v.contains("gitVersion"), "{v}");
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> = kube::Api::namespaced(client, "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert_eq!(
                s.message,
                r#"pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group "" in the namespace "default""#
            );
        }
        other => panic!("anonymous list of pods: {other:?}"),
    }
}
