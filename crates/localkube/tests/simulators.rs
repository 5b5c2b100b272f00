//! Simulated controllers, garbage collection, CRDs, fault injection and metrics, driven
//! through the `kube` crate.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Namespace, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Discovery;
use serde_json::json;

use common::{eventually, start, start_with};

fn deployment(name: &str, replicas: i32, annotations: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}, "annotations": annotations},
                         "spec": {"containers": [{"name": "app", "image": "podinfo:1", "ports": [{"name": "http", "containerPort": 9898}]}]}},
        },
    }))
    .unwrap()
}

fn cond<'a>(
    d: &'a Deployment,
    t: &str,
) -> Option<&'a k8s_openapi::api::apps::v1::DeploymentCondition> {
    d.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
}

#[tokio::test]
async fn deployment_rollout_status_and_conditions() {
    let (_h, client) = start().await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deps.create(
        &PostParams::default(),
        &deployment("app", 3, json!({"localkube.dev/ready-after": "300ms"})),
    )
    .await
    .unwrap();
    // Before readiness: progressing, not available.
    let d = eventually(5, "status observed", || {
        let deps = deps.clone();
        async move {
            deps.get("app")
                .await
                .ok()
                .filter(|d| d.status.as_ref().and_then(|s| s.replicas) == Some(3))
        }
    })
    .await;
    assert_eq!(d.status.as_ref().unwrap().observed_generation, Some(1));
    assert_eq!(
        cond(&d, "Available").unwrap().reason.as_deref(),
        Some("MinimumReplicasUnavailable")
    );
    let reason = cond(&d, "Progressing").unwrap().reason.clone().unwrap();
    assert!(
        reason == "NewReplicaSetCreated" || reason == "ReplicaSetUpdated",
        "{reason}"
    );
    let d = eventually(10, "complete", || {
        let deps = deps.clone();
        async move {
            deps.get("app").await.ok().filter(|d| {
                cond(d, "Progressing").and_then(|c| c.reason.as_deref())
                    == Some("NewReplicaSetAvailable")
            })
        }
    })
    .await;
    let st = d.status.clone().unwrap();
    assert_eq!(
        (
            st.ready_replicas,
            st.available_replicas,
            st.updated_replicas
        ),
        (Some(3), Some(3), Some(3))
    );
    assert_eq!(
        cond(&d, "Available").unwrap().reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );

    // Rolling update: a new ReplicaSet with a new pod-template-hash; the old one scaled to 0.
    deps.patch("app", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "podinfo:2"}]}}}})))
        .await
        .unwrap();
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    eventually(10, "rollout done", || {
        let deps = deps.clone();
        async move {
            let d = deps.get("app").await.ok()?;
            let st = d.status.clone()?;
            (st.observed_generation == Some(2)
                && st.updated_replicas == Some(3)
                && st.available_replicas == Some(3)
                && st.replicas == Some(3)
                && cond(&d, "Progressing")?.reason.as_deref() == Some("NewReplicaSetAvailable"))
            .then_some(())
        }
    })
    .await;
    let list = rss
        .list(&ListParams::default().labels("app=app"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 2);
    let hashes: Vec<String> = list
        .items
        .iter()
        .map(|r| r.labels()["pod-template-hash"].clone())
        .collect();
    assert_ne!(hashes[0], hashes[1]);
    assert_eq!(
        list.items
            .iter()
            .filter(|r| r.spec.as_ref().unwrap().replicas == Some(0))
            .count(),
        1
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p = pods
        .list(&ListParams::default().labels("app=app"))
        .await
        .unwrap();
    assert_eq!(p.items.len(), 3);
    for pod in &p.items {
        assert!(
            pod.status
                .as_ref()
                .unwrap()
                .pod_ip
                .as_ref()
                .unwrap()
                .starts_with("10.244.")
        );
        assert_eq!(
            pod.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some("podinfo:2")
        );
    }
    // Field selectors as kubelets use them.
    let on_node = pods
        .list(&ListParams::default().fields("spec.nodeName=localkube-node-0,status.phase=Running"))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 3);
}

#[tokio::test]
async fn failure_modes_by_annotation() {
    let (_h, client) = start().await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("stuck", 1, json!({"localkube.dev/never-ready": "true"}));
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(1);
    deps.create(&PostParams::default(), &d).await.unwrap();
    deps.create(
        &PostParams::default(),
        &deployment("crash", 1, json!({"localkube.dev/crash-loop": "true"})),
    )
    .await
    .unwrap();
    eventually(10, "progress deadline exceeded", || {
        let deps = deps.clone();
        async move {
            let d = deps.get("stuck").await.ok()?;
            let c = cond(&d, "Progressing")?;
            (c.reason.as_deref() == Some("ProgressDeadlineExceeded") && c.status == "False")
                .then_some(())
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    eventually(10, "crash loop restarts", || {
        let pods = pods.clone();
        async move {
            let p = pods
                .list(&ListParams::default().labels("app=crash"))
                .await
                .ok()?
                .items
                .pop()?;
            let cs = p.status?.container_statuses?.pop()?;
            (cs.restart_count >= 1
                && !cs.ready
                && cs.state?.waiting?.reason.as_deref() == Some("CrashLoopBackOff"))
            .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn daemonsets_on_selected_nodes() {
    let mut config = localkube::Config::default();
    config.sim.nodes = 3;
    config.sim.node_labels = vec![
        HashMap::from([("pool".to_string(), "edge".to_string())]),
        HashMap::from([("pool".to_string(), "edge".to_string())]),
        HashMap::new(),
    ];
    let (_h, client) = start_with(config).await;
    let dss: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let ds: DaemonSet = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "agent"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}},
                 "template": {"metadata": {"labels": {"app": "agent"}},
                              "spec": {"nodeSelector": {"pool": "edge"}, "containers": [{"name": "a", "image": "agent:1"}]}}}
    }))
    .unwrap();
    dss.create(&PostParams::default(), &ds).await.unwrap();
    eventually(10, "daemonset ready", || {
        let dss = dss.clone();
        async move {
            let st = dss.get("agent").await.ok()?.status?;
            (st.desired_number_scheduled == 2
                && st.number_ready == 2
                && st.number_available == Some(2)
                && st.updated_number_scheduled == Some(2)
                && st.observed_generation == Some(1))
            .then_some(())
        }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut nodes: Vec<String> = pods
        .list(&ListParams::default().labels("app=agent"))
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| p.spec.as_ref().unwrap().node_name.clone().unwrap())
        .collect();
    nodes.sort();
    assert_eq!(nodes, ["localkube-node-0", "localkube-node-1"]);
    // Template change: pods replaced, status follows the new generation.
    dss.patch("agent", &PatchParams::default(), &Patch::Merge(json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "agent:2"}]}}}})))
        .await
        .unwrap();
    eventually(10, "daemonset updated", || {
        let (dss, pods) = (dss.clone(), pods.clone());
        async move {
            let st = dss.get("agent").await.ok()?.status?;
            let images: Vec<String> = pods
                .list(&ListParams::default().labels("app=agent"))
                .await
                .ok()?
                .items
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
                .collect();
            (st.observed_generation == Some(2)
                && st.updated_number_scheduled == Some(2)
                && st.number_ready == 2
                && images == ["agent:2", "agent:2"])
            .then_some(())
        }
    })
    .await;
}

#[tokio::test]
async fn endpoints_follow_ready_pods() {
    let (_h, client) = start().await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deps.create(&PostParams::default(), &deployment("web", 2, json!({})))
        .await
        .unwrap();
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }))
    .unwrap();
    let created = svcs.create(&PostParams::default(), &svc).await.unwrap();
    assert!(
        created
            .spec
            .unwrap()
            .cluster_ip
            .unwrap()
            .starts_with("10.96.")
    );
    let eps: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let ep = eventually(10, "two ready endpoints", || {
        let eps = eps.clone();
        async move {
            let e = eps.get("web").await.ok()?;
            let s = e.subsets.clone()?.pop()?;
            (s.addresses.as_ref()?.len() == 2).then_some(e)
        }
    })
    .await;
    let subset = ep.subsets.unwrap().pop().unwrap();
    assert_eq!(
        subset.ports.unwrap()[0].port,
        9898,
        "named targetPort resolved"
    );
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let s = slices
        .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
        .await
        .unwrap();
    assert_eq!(s.items.len(), 1);
    assert_eq!(s.items[0].endpoints.len(), 2);
    assert!(
        s.items[0]
            .endpoints
            .iter()
            .all(|e| e.conditions.as_ref().unwrap().ready == Some(true))
    );
    // Scale to zero: endpoints emptied.
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    eventually(10, "no endpoints", || {
        let eps = eps.clone();
        async move {
            eps.get("web")
                .await
                .ok()?
                .subsets
                .is_none_or(|s| s.is_empty())
                .then_some(())
        }
    })
    .await;
}

fn cm(name: &str, owner: Option<&ConfigMap>, block: bool) -> ConfigMap {
    let mut v = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
    if let Some(o) = owner {
        v["metadata"]["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "ConfigMap", "name": o.name_any(), "uid": o.uid().unwrap(), "blockOwnerDeletion": block
        }]);
    }
    serde_json::from_value(v).unwrap()
}

#[tokio::test]
async fn garbage_collection_propagation() {
    let (_h, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    // Background.
    let owner = cms.create(&pp, &cm("owner", None, false)).await.unwrap();
    cms.create(&pp, &cm("dep", Some(&owner), false))
        .await
        .unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    eventually(10, "background gc", || {
        let cms = cms.clone();
        async move { cms.get_opt("dep").await.unwrap().is_none().then_some(()) }
    })
    .await;
    // Orphan: dependents stay, without the owner reference.
    let owner = cms.create(&pp, &cm("owner2", None, false)).await.unwrap();
    cms.create(&pp, &cm("dep2", Some(&owner), false))
        .await
        .unwrap();
    cms.delete("owner2", &DeleteParams::orphan()).await.unwrap();
    eventually(10, "orphaned", || {
        let cms = cms.clone();
        async move {
            let gone = cms.get_opt("owner2").await.unwrap().is_none();
            let d = cms.get("dep2").await.ok()?;
            (gone && d.owner_references().is_empty()).then_some(())
        }
    })
    .await;
    // Foreground: the owner waits (deletionTimestamp, foregroundDeletion finalizer) for
    // blocking dependents, which here hold a finalizer of their own.
    let owner = cms.create(&pp, &cm("owner3", None, false)).await.unwrap();
    let mut d = cm("dep3", Some(&owner), true);
    d.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&pp, &d).await.unwrap();
    cms.delete("owner3", &DeleteParams::foreground())
        .await
        .unwrap();
    let o = cms.get("owner3").await.unwrap();
    assert!(o.metadata.deletion_timestamp.is_some());
    assert!(o.finalizers().contains(&"foregroundDeletion".to_string()));
    eventually(10, "dependent marked for deletion", || {
        let cms = cms.clone();
        async move {
            cms.get("dep3")
                .await
                .ok()?
                .metadata
                .deletion_timestamp
                .map(|_| ())
        }
    })
    .await;
    assert!(
        cms.get_opt("owner3").await.unwrap().is_some(),
        "owner blocked by dependent"
    );
    cms.patch(
        "dep3",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(10, "owner released", || {
        let cms = cms.clone();
        async move { cms.get_opt("owner3").await.unwrap().is_none().then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn namespace_deletion_removes_contents() {
    let (_h, client) = start().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "tmp"}})).unwrap(),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "tmp");
    cms.create(&PostParams::default(), &cm("a", None, false))
        .await
        .unwrap();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "tmp");
    deps.create(&PostParams::default(), &deployment("d", 1, json!({})))
        .await
        .unwrap();
    nss.delete("tmp", &DeleteParams::default()).await.unwrap();
    let ns = nss.get("tmp").await;
    if let Ok(ns) = ns {
        assert_eq!(ns.status.unwrap().phase.as_deref(), Some("Terminating"));
        let err = cms
            .create(&PostParams::default(), &cm("b", None, false))
            .await
            .unwrap_err();
        assert!(
            matches!(err, kube::Error::Api(ref s) if s.code == 403),
            "{err:?}"
        );
    }
    eventually(10, "namespace gone", || {
        let nss = nss.clone();
        async move { nss.get_opt("tmp").await.unwrap().is_none().then_some(()) }
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "tmp");
    assert!(
        pods.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn crds_from_flagger_manifests() {
    let (_h, client) = start().await;
    let text = std::fs::read_to_string(format!(
        "{}/../../deploy/crds/crds.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        let crd: CustomResourceDefinition = serde_json::from_value(v).unwrap();
        let made = crds.create(&PostParams::default(), &crd).await.unwrap();
        let conds = made.status.unwrap().conditions.unwrap();
        assert!(
            conds
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
        );
    }
    // Served at once, discovery included.
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("flagger.app", "v1beta1", "Canary"))
        .expect("Canary discovered");
    assert_eq!(ar.plural, "canaries");
    assert!(
        caps.subresources.iter().any(|(s, _)| s.plural == "status"),
        "{:?}",
        caps.subresources
    );

    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("flagger.app", "v1beta1", "Canary"),
        "canaries",
    );
    let canaries: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &ar);
    let canary = |name: &str, extra: serde_json::Value| -> DynamicObject {
        let mut v = json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary", "metadata": {"name": name},
            "spec": {"targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
                     "service": {"port": 9898},
                     "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10}},
        });
        json_patch::merge(&mut v, &extra);
        serde_json::from_value(v).unwrap()
    };
    canaries
        .create(&PostParams::default(), &canary("ok", json!({})))
        .await
        .unwrap();

    // Strict: unknown fields are a 400 listing them.
    let strict = PatchParams::apply("test").validation_strict();
    let err = canaries
        .patch(
            "strict",
            &strict,
            &Patch::Apply(canary("strict", json!({"spec": {"bogus": 1}}))),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert!(
                s.message.contains("unknown field \"spec.bogus\""),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    // Ignore (and Warn): accepted, pruned.
    let ignore = PatchParams::apply("test").validation_ignore();
    let made = canaries
        .patch(
            "pruned",
            &ignore,
            &Patch::Apply(canary("pruned", json!({"spec": {"bogus": 1}}))),
        )
        .await
        .unwrap();
    assert!(made.data["spec"].get("bogus").is_none());
    // Type errors: 422 Invalid.
    let err = canaries
        .patch(
            "typed",
            &strict,
            &Patch::Apply(canary(
                "typed",
                json!({"spec": {"analysis": {"threshold": "five"}}}),
            )),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422 && s.reason == "Invalid"),
        "{err:?}"
    );

    // Status subresource: main writes ignore status, status writes only status.
    canaries
        .patch_status(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Initialized"}})),
        )
        .await
        .unwrap();
    let c = canaries
        .patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bogus"}})),
        )
        .await
        .unwrap();
    assert_eq!(c.data["status"]["phase"], "Initialized");

    // Deleting the CRD deletes its objects and unserves it.
    crds.delete("canaries.flagger.app", &DeleteParams::default())
        .await
        .unwrap();
    let err = canaries.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    let mut crd: CustomResourceDefinition = serde_json::from_value(
        serde_yaml::from_str::<serde_json::Value>(
            text.split("\n---\n")
                .find(|d| d.contains("name: canaries.flagger.app"))
                .unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    crd.metadata.resource_version = None;
    crds.create(&PostParams::default(), &crd).await.unwrap();
    assert!(
        canaries
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "objects went with the CRD"
    );
}

#[tokio::test]
async fn fault_injection_and_metrics() {
    let (h, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("a", None, false))
        .await
        .unwrap();
    h.set_faults(localkube::Faults {
        rules: vec![
            // 500 rather than 503: the kube client retries 429/503/504 with backoff (15 times),
            // as it should against a real apiserver; a 500 surfaces at once.
            localkube::FaultRule {
                verb: Some("list".into()),
                resource: Some("configmaps".into()),
                error_rate: 1.0,
                code: 500,
                ..Default::default()
            },
            localkube::FaultRule {
                verb: Some("list".into()),
                resource: Some("secrets".into()),
                error_rate: 1.0,
                code: 503,
                ..Default::default()
            },
            localkube::FaultRule {
                verb: Some("patch".into()),
                conflict_rate: 1.0,
                ..Default::default()
            },
            localkube::FaultRule {
                verb: Some("get".into()),
                latency: Duration::from_millis(200),
                ..Default::default()
            },
        ],
        watch_cut: None,
    });
    let err = cms.list(&ListParams::default()).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 500 && s.reason == "InternalError"),
        "{err:?}"
    );
    // A 503 carries the reason and Retry-After kube-apiserver sends (seen raw: the kube
    // client would retry it).
    let raw = raw_get(&h, "/api/v1/namespaces/default/secrets").await;
    assert!(raw.starts_with("HTTP/1.1 503"), "{raw}");
    assert!(raw.to_ascii_lowercase().contains("retry-after: 1"), "{raw}");
    assert!(raw.contains("\"reason\":\"ServiceUnavailable\""), "{raw}");
    let err = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"x": "y"}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );
    let t = tokio::time::Instant::now();
    cms.get("a").await.unwrap();
    assert!(t.elapsed() >= Duration::from_millis(200));
    h.set_faults(localkube::Faults::default());
    assert_eq!(
        cms.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );

    let metrics = raw_get(&h, "/metrics").await;
    assert!(
        metrics.contains(
            "apiserver_request_total{verb=\"list\",resource=\"configmaps\",code=\"500\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "apiserver_request_total{verb=\"list\",resource=\"configmaps\",code=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "apiserver_request_total{verb=\"patch\",resource=\"configmaps\",code=\"409\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("apiserver_request_duration_seconds_bucket"));
    assert!(metrics.contains("apiserver_storage_objects{resource=\"configmaps\"} 1"));
}

/// The `apiserver_request_total` count of watch requests on configmaps.
fn watch_requests(metrics: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{verb=\"watch\",resource=\"configmaps\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn watch_streams_are_cut_when_configured() {
    let config = localkube::Config {
        faults: localkube::Faults {
            rules: vec![],
            watch_cut: Some(Duration::from_millis(300)),
        },
        ..Default::default()
    };
    let (h, client) = start_with(config).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    use futures::{StreamExt, TryStreamExt};
    // A raw watch ends by itself (long before its default timeout).
    let mut s = cms.watch(&Default::default(), "0").await.unwrap().boxed();
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while s.try_next().await.ok().flatten().is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the stream is cut");

    // The kube watcher recovers transparently: it resumes from its last resourceVersion,
    // without relisting and without losing events. It is driven by its own task, as a
    // controller drives it, so it keeps watching while the test waits.
    use kube::runtime::{WatchStreamExt, watcher};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let w = watcher(cms.clone(), watcher::Config::default()).applied_objects();
    let driver = tokio::spawn(async move {
        let mut w = w.boxed();
        while let Some(ev) = w.next().await {
            if tx.send(ev.map(|o| o.name_any())).is_err() {
                break;
            }
        }
    });
    cms.create(&PostParams::default(), &cm("x", None, false))
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first, "x");
    // Wait until the watcher has been cut twice and has watched again each time.
    let before = watch_requests(&raw_get(&h, "/metrics").await);
    eventually(10, "watch re-established twice", || async {
        (watch_requests(&raw_get(&h, "/metrics").await) >= before + 2).then_some(())
    })
    .await;
    cms.create(&PostParams::default(), &cm("y", None, false))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next, "y", "nothing replayed, nothing lost");
    let metrics = raw_get(&h, "/metrics").await;
    let lists: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{verb=\"list\",resource=\"configmaps\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(
        lists, 1,
        "resumed by resourceVersion, never relisted: {metrics}"
    );
    driver.abort();
}

/// GET `path` over a raw HTTP/1.1 connection (no extra client dependency); the whole
/// response, status line and headers included.
async fn raw_get(h: &localkube::Handle, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}
