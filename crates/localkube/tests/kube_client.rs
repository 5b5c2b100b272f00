//! localkube against the `kube` crate: typed CRUD, watches, reflectors, controllers,
//! finalizers, server-side apply, subresources, selectors, pagination and watch resumption.

#![allow(
    clippy::unwrap_used,
    reason = "test code: a panic is the failure report"
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, WatchStreamExt, finalizer, reflector, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use common::{eventually, start, start_with};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))
    .unwrap()
}

#[tokio::test]
async fn typed_crud_and_conflicts() {
    let (_h, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let created = cms
        .create(&PostParams::default(), &cm("a", json!({"app": "x"})))
        .await
        .unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    let rv1 = created.resource_version().unwrap();

    let err = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "AlreadyExists"),
        "{err:?}"
    );

    let mut got = cms.get("a").await.unwrap();
    got.data.as_mut().unwrap().insert("k".into(), "v2".into());
    let updated = cms
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap();
    assert!(
        updated.resource_version().unwrap().parse::<u64>().unwrap() > rv1.parse::<u64>().unwrap()
    );

    // Stale resourceVersion: 409 Conflict.
    let err = cms
        .replace("a", &PostParams::default(), &got)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{err:?}"
    );

    // Merge patch, JSON patch and strategic merge patch.
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"m": "1"}})),
    )
    .await
    .unwrap();
    let jp: json_patch::Patch =
        serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "2"}])).unwrap();
    cms.patch("a", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    let p = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Strategic(json!({"data": {"s": "3"}})),
        )
        .await
        .unwrap();
    let data = p.data.unwrap();
    assert_eq!(
        (data["m"].as_str(), data["j"].as_str(), data["s"].as_str()),
        ("1", "2", "3")
    );
    // Every non-apply write is an Update in managedFields.
    assert!(
        p.metadata
            .managed_fields
            .unwrap()
            .iter()
            .all(|m| m.operation.as_deref() == Some("Update"))
    );

    // generateName and dry run.
    let mut g = cm("", json!({}));
    g.metadata.name = None;
    g.metadata.generate_name = Some("gen-".into());
    let made = cms.create(&PostParams::default(), &g).await.unwrap();
    assert!(made.name_any().starts_with("gen-") && made.name_any().len() == 9);
    let dry = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm("dry", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(dry.name_any(), "dry");
    assert!(cms.get_opt("dry").await.unwrap().is_none());

    // Delete, then NotFound.
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    let err = cms.get("a").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404 && s.reason == "NotFound"),
        "{err:?}"
    );

    // Unknown namespace.
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "nope");
    let err = other
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );

    // Delete preconditions.
    let c = cms
        .create(&PostParams::default(), &cm("pre", json!({})))
        .await
        .unwrap();
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: Some("wrong".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let err = cms.delete("pre", &dp).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
    let dp = DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid: c.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    cms.delete("pre", &dp).await.unwrap();
}

#[tokio::test]
async fn selectors_and_pagination() {
    let (_h, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..25 {
        let tier = if i % 2 == 0 { "web" } else { "db" };
        cms.create(
            &PostParams::default(),
            &cm(
                &format!("c{i:02}"),
                json!({"tier": tier, "n": i.to_string()}),
            ),
        )
        .await
        .unwrap();
    }
    let l = |s: &str| ListParams::default().labels(s);
    assert_eq!(cms.list(&l("tier=web")).await.unwrap().items.len(), 13);
    assert_eq!(cms.list(&l("tier!=web")).await.unwrap().items.len(), 12);
    assert_eq!(cms.list(&l("n in (1,2,3)")).await.unwrap().items.len(), 3);
    assert_eq!(
        cms.list(&l("n notin (1,2,3),tier"))
            .await
            .unwrap()
            .items
            .len(),
        22
    );
    assert_eq!(cms.list(&l("!tier")).await.unwrap().items.len(), 0);
    let f = cms
        .list(&ListParams::default().fields("metadata.name=c03"))
        .await
        .unwrap();
    assert_eq!(f.items.len(), 1);
    let f = cms
        .list(&ListParams::default().fields("metadata.namespace=default,metadata.name!=c03"))
        .await
        .unwrap();
    assert_eq!(f.items.len(), 24);

    // Pagination.
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.iter().map(|c| c.name_any()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = ListParams::default().limit(10).continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 25);
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 25);

    // Pagination of a label-selected list: pages hold matching objects only, and
    // remainingItemCount counts the matching objects still to come.
    let first = cms
        .list(&ListParams::default().labels("tier=web").limit(5))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 5);
    assert_eq!(first.metadata.remaining_item_count, Some(8));
    let mut web = first.items.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    let mut token = first.metadata.continue_.clone();
    while let Some(c) = token.filter(|c| !c.is_empty()) {
        let page = cms
            .list(
                &ListParams::default()
                    .labels("tier=web")
                    .limit(5)
                    .continue_token(&c),
            )
            .await
            .unwrap();
        web.extend(page.items.iter().map(|c| c.name_any()));
        token = page.metadata.continue_;
    }
    let expected: Vec<String> = (0..25).step_by(2).map(|i| format!("c{i:02}")).collect();
    assert_eq!(web, expected, "every matching object once, in name order");

    // Cluster-wide list sees the namespaces seeded at start.
    let nss: Api<Namespace> = Api::all(client.clone());
    let n: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(n.contains(&"default".to_string()) && n.contains(&"kube-system".to_string()));
}

#[tokio::test]
async fn watch_events_resume_and_gone() {
    let config = localkube::Config {
        watch_window: 20,
        ..Default::default()
    };
    let (_h, client) = start_with(config).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv0 = list.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    cms.create(&PostParams::default(), &cm("w", json!({})))
        .await
        .unwrap();
    cms.patch(
        "w",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "y"}})),
    )
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(_) => kinds.push("ADDED"),
            WatchEvent::Modified(_) => kinds.push("MODIFIED"),
            WatchEvent::Deleted(_) => kinds.push("DELETED"),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);

    // Resume from a resourceVersion within the window: the missed events are replayed.
    let created = cms
        .create(&PostParams::default(), &cm("r", json!({})))
        .await
        .unwrap();
    let rv = created.resource_version().unwrap();
    cms.patch(
        "r",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "1"}})),
    )
    .await
    .unwrap();
    let mut s = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Modified(c) => assert_eq!(c.data.unwrap()["a"], "1"),
        other => panic!("unexpected {other:?}"),
    }

    // Push the window past rv0: resuming there gives 410 Gone.
    for i in 0..30 {
        cms.create(&PostParams::default(), &cm(&format!("f{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut s = cms
        .watch(&WatchParams::default(), &rv0)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .unwrap()
    {
        Ok(Some(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        Err(kube::Error::Api(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }

    // Bookmarks and label-selected watches.
    let wp = WatchParams::default().labels("pick=yes").timeout(30);
    let cur = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = cms.watch(&wp, &cur).await.unwrap().boxed();
    cms.create(&PostParams::default(), &cm("nopick", json!({"pick": "no"})))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("pick", json!({"pick": "yes"})))
        .await
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "pick"),
        other => panic!("unexpected {other:?}"),
    }
    // Relabelled out of the selector: DELETED for this watcher.
    cms.patch(
        "pick",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"pick": "no"}}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        WatchEvent::Deleted(c) => assert_eq!(c.name_any(), "pick"),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn watch_timeout_ends_stream_and_bookmarks_arrive() {
    let config = localkube::Config {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    };
    let (_h, client) = start_with(config).await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let wp = WatchParams {
        bookmarks: true,
        ..WatchParams::default()
    }
    .timeout(1);
    let mut s = cms.watch(&wp, &rv).await.unwrap().boxed();
    let mut bookmarks = 0;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(ev) = s.try_next().await.unwrap() {
            if matches!(ev, WatchEvent::Bookmark(_)) {
                bookmarks += 1;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "stream should end after timeoutSeconds");
    assert!(bookmarks >= 1);
}

#[tokio::test]
async fn watcher_and_reflector() {
    let (_h, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream =
        reflector(writer, watcher(cms.clone(), watcher::Config::default())).applied_objects();
    let task = tokio::spawn(async move {
        futures::pin_mut!(stream);
        while stream.try_next().await.unwrap().is_some() {}
    });
    reader.wait_until_ready().await.unwrap();
    cms.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .unwrap();
    eventually(5, "reflector sees both", || {
        let r = reader.clone();
        async move { (r.state().len() == 2).then_some(()) }
    })
    .await;
    cms.delete("before", &DeleteParams::default())
        .await
        .unwrap();
    eventually(5, "reflector sees the delete", || {
        let r = reader.clone();
        async move { (r.state().len() == 1).then_some(()) }
    })
    .await;
    task.abort();
}

#[derive(Debug, thiserror::Error)]
enum E {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Fin(String),
}

struct Ctx {
    client: Client,
    reconciles: std::sync::atomic::AtomicUsize,
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, E> {
    ctx.reconciles
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let ns = cm.namespace().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, "localkube.test/cleanup", cm, |ev| async {
        match ev {
            finalizer::Event::Apply(cm) => {
                let oref = cm.controller_owner_ref(&()).unwrap();
                let child: Secret = serde_json::from_value(json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": {"name": format!("{}-child", cm.name_any()), "ownerReferences": [oref]},
                    "stringData": {"x": "y"},
                }))
                .unwrap();
                secrets
                    .patch(&child.name_any(), &PatchParams::apply("test-ctrl").force(), &Patch::Apply(&child))
                    .await?;
                Ok::<_, kube::Error>(Action::await_change())
            }
            finalizer::Event::Cleanup(cm) => {
                secrets.delete(&format!("{}-child", cm.name_any()), &DeleteParams::default()).await.ok();
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e: finalizer::Error<kube::Error>| E::Fin(e.to_string()))
}

#[tokio::test]
async fn controller_with_owns_and_finalizer() {
    let (_h, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        reconciles: Default::default(),
    });
    let c2 = ctx.clone();
    let ctrl = tokio::spawn(async move {
        Controller::new(cms.clone(), watcher::Config::default())
            .owns(secrets.clone(), watcher::Config::default())
            .run(
                reconcile,
                |_, _, _| Action::requeue(Duration::from_secs(1)),
                c2,
            )
            .for_each(|r| async move {
                if let Err(e) = r {
                    eprintln!("reconcile error: {e:?}");
                }
            })
            .await;
    });
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("parent", json!({})))
        .await
        .unwrap();
    let child = eventually(10, "child secret", || {
        let s = secrets.clone();
        async move { s.get_opt("parent-child").await.unwrap() }
    })
    .await;
    assert_eq!(child.owner_references()[0].name, "parent");
    let parent = cms.get("parent").await.unwrap();
    assert_eq!(parent.finalizers(), ["localkube.test/cleanup"]);

    // A change to the owned object triggers the owner's reconcile.
    let before = ctx.reconciles.load(std::sync::atomic::Ordering::SeqCst);
    secrets
        .patch(
            "parent-child",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}})),
        )
        .await
        .unwrap();
    eventually(10, "reconcile after child change", || {
        let n = ctx.reconciles.load(std::sync::atomic::Ordering::SeqCst);
        async move { (n > before).then_some(()) }
    })
    .await;

    // Deleting the parent: it stays (finalizer) until the cleanup removes the finalizer.
    cms.delete("parent", &DeleteParams::default())
        .await
        .unwrap();
    eventually(10, "parent gone", || {
        let c = cms.clone();
        async move { c.get_opt("parent").await.unwrap().is_none().then_some(()) }
    })
    .await;
    assert!(secrets.get_opt("parent-child").await.unwrap().is_none());
    ctrl.abort();
}

#[tokio::test]
async fn finalizers_keep_object_until_removed() {
    let (_h, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let mut c = cm("fin", json!({}));
    c.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&PostParams::default(), &c).await.unwrap();
    cms.delete("fin", &DeleteParams::default()).await.unwrap();
    let held = cms.get("fin").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    cms.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("fin").await.unwrap().is_none());
}

fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "app", "image": image}]}},
        },
    }))
    .unwrap()
}

#[tokio::test]
async fn server_side_apply_with_conflict() {
    let (_h, client) = start().await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deployment("ssa", "nginx:1", 2);
    let applied = deps
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&d))
        .await
        .unwrap();
    let mf = applied.metadata.managed_fields.clone().unwrap();
    assert!(
        mf.iter()
            .any(|m| m.manager.as_deref() == Some("alice")
                && m.operation.as_deref() == Some("Apply"))
    );
    assert_eq!(applied.metadata.generation, Some(1));

    // Bob applies a different replicas value: conflict naming alice and the field.
    let mut b = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "ssa"}, "spec": {"replicas": 5}});
    let err = deps
        .patch("ssa", &PatchParams::apply("bob"), &Patch::Apply(&b))
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains("alice") && s.message.contains(".spec.replicas"),
                "{}",
                s.message
            );
        }
        other => panic!("{other:?}"),
    }
    // Forced: bob takes the field over.
    let forced = deps
        .patch("ssa", &PatchParams::apply("bob").force(), &Patch::Apply(&b))
        .await
        .unwrap();
    assert_eq!(forced.spec.unwrap().replicas, Some(5));
    assert_eq!(forced.metadata.generation, Some(2));
    // Same value from a second manager: shared, no conflict.
    b["spec"]["replicas"] = json!(5);
    deps.patch("ssa", &PatchParams::apply("carol"), &Patch::Apply(&b))
        .await
        .unwrap();

    // Alice re-applies with a new image but without replicas: image changes, replicas stay.
    let mut d2 = d.clone();
    d2.spec.as_mut().unwrap().replicas = None;
    d2.spec
        .as_mut()
        .unwrap()
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .image = Some("nginx:2".into());
    let r = deps
        .patch("ssa", &PatchParams::apply("alice"), &Patch::Apply(&d2))
        .await
        .unwrap();
    let spec = r.spec.unwrap();
    assert_eq!(spec.replicas, Some(5));
    assert_eq!(
        spec.template.spec.unwrap().containers[0].image.as_deref(),
        Some("nginx:2")
    );
}

#[tokio::test]
async fn status_subresource_semantics() {
    let (_h, client) = start_with(localkube::Config {
        controllers: false,
        ..Default::default()
    })
    .await;
    let deps: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deps
        .create(&PostParams::default(), &deployment("st", "nginx:1", 1))
        .await
        .unwrap();
    assert_eq!(d.metadata.generation, Some(1));
    let s = deps
        .patch_status("st", &PatchParams::default(), &Patch::Merge(json!({"status": {"observedGeneration": 1, "replicas": 1}, "spec": {"replicas": 9}})))
        .await
        .unwrap();
    assert_eq!(s.status.as_ref().unwrap().replicas, Some(1));
    assert_eq!(
        s.spec.as_ref().unwrap().replicas,
        Some(1),
        "status writes change only .status"
    );
    assert_eq!(
        s.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    let m = deps
        .patch(
            "st",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"replicas": 7}, "metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        m.status.as_ref().unwrap().replicas,
        Some(1),
        "main writes ignore .status"
    );
    assert_eq!(
        m.metadata.generation,
        Some(1),
        "metadata changes do not bump generation"
    );
    let m = deps
        .patch(
            "st",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    assert_eq!(m.metadata.generation, Some(2));
    // Scale subresource.
    let sc = deps.get_scale("st").await.unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(3));
    assert_eq!(sc.status.unwrap().selector.as_deref(), Some("app=st"));
    deps.patch_scale(
        "st",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    assert_eq!(
        deps.get("st").await.unwrap().spec.unwrap().replicas,
        Some(4)
    );
}

#[tokio::test]
async fn pods_strategic_merge_keys() {
    let (_h, client) = start_with(localkube::Config {
        controllers: false,
        ..Default::default()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [
            {"name": "a", "image": "a:1", "ports": [{"containerPort": 80}], "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &p).await.unwrap();
    let patched = pods
        .patch("p", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"containers": [
            {"name": "a", "env": [{"name": "Y", "value": "2"}], "ports": [{"containerPort": 81}]}
        ]}})))
        .await
        .unwrap();
    let cs = patched.spec.unwrap().containers;
    assert_eq!(cs.len(), 2);
    assert_eq!(cs[0].env.as_ref().unwrap().len(), 2);
    assert_eq!(cs[0].ports.as_ref().unwrap().len(), 2);
    assert_eq!(cs[0].image.as_deref(), Some("a:1"));
}

#[tokio::test]
async fn services_get_cluster_ips_and_node_ports() {
    let (_h, client) = start().await;
    let svcs: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(client.clone(), "default");
    let svc = |name: &str, ty: &str| -> k8s_openapi::api::core::v1::Service {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"type": ty, "selector": {"app": name}, "ports": [
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "grpc", "port": 9000, "targetPort": 9000}]},
        }))
        .unwrap()
    };
    let np = svcs
        .create(&PostParams::default(), &svc("np", "NodePort"))
        .await
        .unwrap();
    let spec = np.spec.unwrap();
    assert!(spec.cluster_ip.unwrap().starts_with("10.96."));
    let ports: Vec<i32> = spec
        .ports
        .unwrap()
        .iter()
        .map(|p| p.node_port.unwrap())
        .collect();
    assert!(
        ports.iter().all(|p| (30000..=32767).contains(p)),
        "{ports:?}"
    );
    assert_ne!(ports[0], ports[1]);
    // An apply that leaves node ports out keeps them.
    let kept = svcs
        .patch(
            "np",
            &PatchParams::apply("someone").force(),
            &Patch::Apply(svc("np", "NodePort")),
        )
        .await
        .unwrap();
    let again: Vec<i32> = kept
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.node_port.unwrap())
        .collect();
    assert_eq!(again, ports);
    // ClusterIP Services get no node ports; ExternalName Services no cluster IP.
    let cip = svcs
        .create(&PostParams::default(), &svc("cip", "ClusterIP"))
        .await
        .unwrap();
    assert!(
        cip.spec
            .unwrap()
            .ports
            .unwrap()
            .iter()
            .all(|p| p.node_port.is_none())
    );
    let ext: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "ext"},
        "spec": {"type": "ExternalName", "externalName": "example.com"},
    }))
    .unwrap();
    let ext = svcs.create(&PostParams::default(), &ext).await.unwrap();
    assert_eq!(ext.spec.unwrap().cluster_ip, None);
}
