//! Golden tests of the Kuma, App Mesh and Knative routing objects (reference §4.5, §4.12,
//! §4.14, §3.11), as `routing_golden.rs` does for the other providers: each generated object
//! is compared with a committed JSON file under `tests/golden/routing/<provider>/<case>.json`
//! (regenerate with `UPDATE_GOLDEN=1 cargo test -p flagger-core --test
//! routing_golden_kuma_appmesh_knative` and review the diff), and every provider round-trips
//! every weight pair.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};

use flagger_core::effects::Routes;
use flagger_core::model::ValidatedCanary;
use flagger_core::routing::appmesh::{self, Options, Version};
use flagger_core::routing::{RoutingError, knative, kuma};
use support::canary;
use support::golden::{golden, mk, progressive, w};

fn ab_analysis() -> Value {
    json!({
        "interval": "1m", "threshold": 5, "iterations": 10,
        "match": [
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"headers": {"user-agent": {"regex": ".*Firefox.*"}, "x-team": {"prefix": "qa"}}}
        ]
    })
}

// === Kuma ===

#[test]
fn kuma_traffic_route() {
    let plain = mk("kuma", json!({"port": 9898}), progressive());
    golden(
        "kuma/initial.json",
        &kuma::traffic_route(&plain, &kuma::mesh_of(None), Routes::PRIMARY),
    );
    let with_meta = mk(
        "kuma",
        json!({
            "port": 80,
            "apex": {"labels": {"team": "web"}, "annotations": {"note": "apex"}}
        }),
        progressive(),
    );
    let annotations = BTreeMap::from([(kuma::MESH_ANNOTATION.to_string(), "prod".to_string())]);
    golden(
        "kuma/weights_mesh_metadata.json",
        &kuma::traffic_route(&with_meta, &kuma::mesh_of(Some(&annotations)), w(70, 30)),
    );
}

#[test]
fn kuma_reads_the_primary_weight_and_the_rest_is_the_canarys() {
    let c = mk("kuma", json!({"port": 9898}), progressive());
    for canary_weight in 0..=100 {
        let r = w(100 - canary_weight, canary_weight);
        assert_eq!(
            kuma::read_routes(&c, &kuma::traffic_route(&c, "default", r)),
            Ok(r)
        );
    }
    // Flagger identifies the primary by the tag's first part only: the canary weight written
    // is not read.
    let mut tr = kuma::traffic_route(&c, "default", w(80, 20));
    tr["spec"]["conf"]["split"][1]["weight"] = json!(55);
    assert_eq!(kuma::read_routes(&c, &tr), Ok(w(80, 20)));
    tr["spec"]["conf"]["split"] = json!([]);
    assert_eq!(
        kuma::read_routes(&c, &tr),
        Err(RoutingError::NoRoutes(
            "TrafficRoute podinfo does not contain routes for podinfo-primary and podinfo-canary"
                .into()
        ))
    );
}

// === App Mesh ===

fn opts(access_log: bool) -> Options<'static> {
    Options {
        access_log,
        selector_label: "app",
    }
}

fn appmesh_options() -> Value {
    json!({
        "port": 9898,
        "portName": "grpc-web",
        "targetPort": 9899,
        "meshName": "global",
        "timeout": "15s",
        "backends": ["backend.test", "arn:aws:appmesh:eu-west-1:123456789012:mesh/global/virtualService/db.test"],
        "hosts": ["app.example.com", "www.example.com"],
        "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "gateway-error,client-error"},
        "match": [{"uri": {"prefix": "/api"}}],
        "apex": {"labels": {"team": "web"}}
    })
}

#[test]
fn appmesh_v1beta1_objects() {
    let v = Version::V1Beta1;
    let plain = mk(
        "appmesh",
        json!({"port": 9898, "meshName": "global"}),
        progressive(),
    );
    golden(
        "appmesh_v1beta1/initial.json",
        &appmesh::objects(&plain, v, opts(false), Routes::PRIMARY).expect("objects"),
    );
    let options = mk("appmesh", appmesh_options(), progressive());
    golden(
        "appmesh_v1beta1/options_weights_access_log.json",
        &appmesh::objects(&options, v, opts(true), w(60, 40)).expect("objects"),
    );
    let ab = mk(
        "appmesh",
        json!({"port": 9898, "meshName": "global"}),
        ab_analysis(),
    );
    golden(
        "appmesh_v1beta1/ab.json",
        &appmesh::objects(&ab, v, opts(false), Routes::CANARY).expect("objects"),
    );
    // Validation refuses a missing meshName; the builder still does.
    let mut no_mesh = plain.clone();
    no_mesh.service.mesh_name = None;
    assert_eq!(
        appmesh::objects(&no_mesh, v, opts(false), Routes::PRIMARY),
        Err(RoutingError::Missing("mesh name cannot be empty".into()))
    );
}

#[test]
fn appmesh_v1beta2_objects() {
    let v = Version::V1Beta2;
    let plain = mk("appmesh:v1beta2", json!({"port": 9898}), progressive());
    golden(
        "appmesh_v1beta2/initial.json",
        &appmesh::objects(&plain, v, opts(false), Routes::PRIMARY).expect("objects"),
    );
    let options = mk("appmesh:v1beta2", appmesh_options(), progressive());
    golden(
        "appmesh_v1beta2/options_weights_access_log.json",
        &appmesh::objects(&options, v, opts(true), w(60, 40)).expect("objects"),
    );
    let ab = mk("appmesh:v1beta2", json!({"port": 9898}), ab_analysis());
    golden(
        "appmesh_v1beta2/ab.json",
        &appmesh::objects(&ab, v, opts(false), Routes::CANARY).expect("objects"),
    );
}

/// The object holding the weights among those built.
fn weights_object(c: &ValidatedCanary, v: Version, routes: Routes) -> Value {
    let (kind, name) = appmesh::weights_object(c, v);
    appmesh::objects(c, v, opts(false), routes)
        .expect("objects")
        .into_iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name.as_str())
        .expect("weights object")
}

#[test]
fn appmesh_round_trips_every_weight() {
    for (provider, v) in [
        ("appmesh", Version::V1Beta1),
        ("appmesh:v1beta2", Version::V1Beta2),
    ] {
        assert_eq!(
            Version::of(flagger_core::model::Provider::parse(provider).expect("provider")),
            Some(v)
        );
        let plain = mk(
            provider,
            json!({"port": 9898, "meshName": "m"}),
            progressive(),
        );
        let ab = mk(
            provider,
            json!({"port": 9898, "meshName": "m"}),
            ab_analysis(),
        );
        for canary_weight in 0..=100 {
            let r = w(100 - canary_weight, canary_weight);
            for c in [&plain, &ab] {
                let o = weights_object(c, v, r);
                assert_eq!(appmesh::read_routes(c, v, &o), Ok(r), "{provider} {r:?}");
            }
        }
        let mut broken = weights_object(&plain, v, Routes::PRIMARY);
        broken["spec"]["routes"] = json!([]);
        assert!(matches!(
            appmesh::read_routes(&plain, v, &broken),
            Err(RoutingError::NoRoutes(_))
        ));
    }
}

// === Knative ===

fn knative_canary() -> ValidatedCanary {
    canary(
        &json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "provider": "knative",
                "targetRef": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "podinfo"},
                "analysis": progressive(),
            }
        })
        .to_string(),
    )
}

#[test]
fn knative_service_patches() {
    let c = knative_canary();
    golden(
        "knative/initialize.json",
        &knative::service_patch(&c, "podinfo-00001", Some(Routes::PRIMARY)),
    );
    golden(
        "knative/set_routes.json",
        &knative::service_patch(&c, "podinfo-00001", Some(w(70, 30))),
    );
    golden(
        "knative/promote.json",
        &knative::service_patch(&c, "podinfo-00002", None),
    );
}

/// A Knative Service as Knative reports it: `status.traffic` as written in `spec.traffic`,
/// the latest revision resolved to its name.
fn reported(primary: &str, latest: &str, routes: Routes) -> Value {
    let mut traffic = knative::traffic(primary, routes);
    traffic[0]["revisionName"] = json!(latest);
    json!({
        "metadata": {"name": "podinfo", "annotations": {"flagger.app/primary-revision": primary}},
        "status": {"latestCreatedRevisionName": latest, "traffic": traffic},
    })
}

#[test]
fn knative_reads_the_weights_from_the_status() {
    let c = knative_canary();
    for canary_weight in 0..=100 {
        let r = w(100 - canary_weight, canary_weight);
        let s = reported("podinfo-00001", "podinfo-00002", r);
        assert_eq!(knative::read_routes(&c, &s), Ok(r));
        assert_eq!(knative::primary_revision(&s), Some("podinfo-00001"));
        assert_eq!(knative::latest_created_revision(&s), Some("podinfo-00002"));
    }
    let mut s = reported("podinfo-00001", "podinfo-00002", w(90, 10));
    s["status"]["traffic"][1]["percent"] = Value::Null;
    assert_eq!(
        knative::read_routes(&c, &s),
        Err(RoutingError::NoRoutes(
            "Knative Service podinfo.test primary revision traffic percent does not exist".into()
        ))
    );
    s["status"]["traffic"] = json!([]);
    assert_eq!(
        knative::read_routes(&c, &s),
        Err(RoutingError::NoRoutes(
            "Knative Service podinfo.test traffic spec invalid".into()
        ))
    );
    s["metadata"]["annotations"] = json!({});
    assert_eq!(
        knative::read_routes(&c, &s),
        Err(RoutingError::NoRoutes(
            "Knative Service podinfo.test annotation not found".into()
        ))
    );
}
