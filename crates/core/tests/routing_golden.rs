//! Golden tests of the routing objects (reference §4.3, §4.4, §4.6, §4.13): for each provider a
//! set of Canary specs whose generated object is compared with a committed JSON file under
//! `tests/golden/routing/<provider>/<case>.json`. The goldens are the spec: each was reviewed
//! against the reference. After an intended change, regenerate them with
//! `UPDATE_GOLDEN=1 cargo test -p flagger-core --test routing_golden` and review the diff.
//!
//! Each provider also has a round trip: build with weights (90, 10), read back, get (90, 10).

mod support;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use flagger_core::effects::Routes;
use flagger_core::model::{SmiVersion, Steps, Strategy, ValidatedCanary};
use flagger_core::routing::gatewayapi::{self, Version};
use flagger_core::routing::{RoutingError, StickyCookies, istio, nginx, smi};
use support::canary;
use support::golden::{ab_analysis, golden, mk, progressive, w};

fn affinity_analysis() -> Value {
    json!({
        "interval": "30s", "threshold": 5, "maxWeight": 50, "stepWeight": 10,
        "sessionAffinity": {
            "cookieName": "flagger-cookie",
            "primaryCookieName": "flagger-primary-cookie",
            "maxAge": 21600,
            "path": "/",
            "sameSite": "Strict",
            "secure": true
        }
    })
}

fn sticky_cookies() -> StickyCookies {
    StickyCookies {
        canary: Some("flagger-cookie=abcdefghij".into()),
        primary: Some("flagger-primary-cookie=klmnopqrst".into()),
        previous: None,
    }
}

fn retired_cookies() -> StickyCookies {
    StickyCookies {
        canary: None,
        primary: Some("flagger-primary-cookie=klmnopqrst".into()),
        previous: Some("flagger-cookie=abcdefghij".into()),
    }
}

fn mirrored(primary: u32, canary: u32) -> Routes {
    Routes {
        primary,
        canary,
        mirrored: true,
    }
}

// === istio ===

fn istio_options() -> Value {
    json!({
        "port": 9898,
        "portDiscovery": true,
        "hosts": ["app.example.com"],
        "gateways": ["public-gateway.istio-system.svc.cluster.local"],
        "apex": {"labels": {"team": "web"}, "annotations": {"owner": "web-team"}},
        "match": [{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/v2"}, "headers": {"x-dropped": {"exact": "1"}}}],
        "rewrite": {"uri": "/", "authority": "backend.example.com"},
        "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "gateway-error,connect-failure"},
        "timeout": "30s",
        "headers": {
            "request": {"add": {"x-some-header": "value"}},
            "response": {"remove": ["x-envoy-upstream-service-time"]}
        },
        "corsPolicy": {
            "allowOrigin": ["example.com"],
            "allowMethods": ["GET", "POST"],
            "allowCredentials": false,
            "allowHeaders": ["x-some-header"],
            "maxAge": "24h"
        },
        "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}, "loadBalancer": {"simple": "LEAST_CONN"}}
    })
}

fn istio_vs(c: &ValidatedCanary, routes: Routes, cookies: &StickyCookies) -> istio::VirtualService {
    istio::virtual_service(c, routes, cookies).expect("virtual service")
}

#[test]
fn istio_goldens() {
    let plain = mk("istio", json!({"port": 9898}), progressive());
    golden(
        "istio/plain.json",
        &istio_vs(&plain, w(90, 10), &StickyCookies::default()),
    );
    golden(
        "istio/plain_initial.json",
        &istio_vs(&plain, Routes::PRIMARY, &StickyCookies::default()),
    );
    golden(
        "istio/destination_rules_plain.json",
        &istio::destination_rules(&plain),
    );

    let ab = mk("istio", json!({"port": 9898}), ab_analysis());
    golden(
        "istio/ab.json",
        &istio_vs(&ab, w(0, 100), &StickyCookies::default()),
    );
    let ab_svc = mk("istio", istio_options(), ab_analysis());
    golden(
        "istio/ab_service_match.json",
        &istio_vs(&ab_svc, w(0, 100), &StickyCookies::default()),
    );

    let mut labels = ab_analysis();
    labels["match"] = json!([
        {"sourceLabels": {"app": "frontend"}, "queryParams": {"canary": {"exact": "true"}}},
        {"headers": {"user-agent": {"suffix": "Firefox"}}}
    ]);
    let ab_labels = mk("istio", json!({"port": 9898}), labels);
    golden(
        "istio/ab_source_labels_query_params.json",
        &istio_vs(&ab_labels, w(0, 100), &StickyCookies::default()),
    );

    let mut mirror_analysis = progressive();
    mirror_analysis["mirror"] = json!(true);
    mirror_analysis["mirrorWeight"] = json!(50);
    let mirror = mk("istio", json!({"port": 9898}), mirror_analysis);
    golden(
        "istio/mirror.json",
        &istio_vs(&mirror, mirrored(100, 0), &StickyCookies::default()),
    );

    let sticky = mk("istio", json!({"port": 9898}), affinity_analysis());
    golden(
        "istio/session_affinity.json",
        &istio_vs(&sticky, w(90, 10), &sticky_cookies()),
    );
    golden(
        "istio/session_affinity_expire.json",
        &istio_vs(&sticky, Routes::PRIMARY, &retired_cookies()),
    );
    golden(
        "istio/session_affinity_first_run_initial.json",
        &istio_vs(&sticky, Routes::PRIMARY, &StickyCookies::default()),
    );

    let mut sticky_options = affinity_analysis();
    sticky_options["interval"] = json!("1m");
    let sticky_svc = mk("istio", istio_options(), sticky_options);
    golden(
        "istio/session_affinity_service_options.json",
        &istio_vs(&sticky_svc, w(90, 10), &sticky_cookies()),
    );
    golden(
        "istio/session_affinity_expire_service_options.json",
        &istio_vs(&sticky_svc, Routes::PRIMARY, &retired_cookies()),
    );

    let options = mk("istio", istio_options(), progressive());
    golden(
        "istio/service_options.json",
        &istio_vs(&options, w(90, 10), &StickyCookies::default()),
    );
    golden(
        "istio/destination_rules_traffic_policy.json",
        &istio::destination_rules(&options),
    );

    let delegate = mk(
        "istio",
        json!({"port": 9898, "delegation": true, "portDiscovery": true}),
        progressive(),
    );
    golden(
        "istio/delegation.json",
        &istio_vs(&delegate, w(90, 10), &StickyCookies::default()),
    );

    let tcp = mk(
        "istio",
        json!({"port": 9898, "appProtocol": "TCP", "match": [{"port": 9898}]}),
        progressive(),
    );
    golden(
        "istio/tcp.json",
        &istio_vs(&tcp, w(90, 10), &StickyCookies::default()),
    );
}

#[test]
fn istio_round_trips_weights() {
    for (name, c, cookies) in [
        (
            "plain",
            mk("istio", json!({"port": 9898}), progressive()),
            StickyCookies::default(),
        ),
        (
            "options",
            mk("istio", istio_options(), progressive()),
            StickyCookies::default(),
        ),
        (
            "sticky",
            mk("istio", json!({"port": 9898}), affinity_analysis()),
            sticky_cookies(),
        ),
        (
            "tcp",
            mk(
                "istio",
                json!({"port": 9898, "appProtocol": "tcp"}),
                progressive(),
            ),
            StickyCookies::default(),
        ),
    ] {
        let vs = istio_vs(&c, w(90, 10), &cookies);
        // Through JSON, as the controller reads it from the API server.
        let vs: istio::VirtualService =
            serde_json::from_value(serde_json::to_value(&vs).expect("json")).expect("decode");
        assert_eq!(istio::read_routes(&c, &vs), Ok(w(90, 10)), "{name}");
    }
    let ab = mk("istio", json!({"port": 9898}), ab_analysis());
    assert_eq!(
        istio::read_routes(&ab, &istio_vs(&ab, w(0, 100), &StickyCookies::default())),
        Ok(w(0, 100))
    );
    let mut m = progressive();
    m["mirror"] = json!(true);
    let mirror = mk("istio", json!({"port": 9898}), m);
    assert_eq!(
        istio::read_routes(
            &mirror,
            &istio_vs(&mirror, mirrored(100, 0), &StickyCookies::default())
        ),
        Ok(mirrored(100, 0))
    );
}

#[test]
fn istio_refuses_and_reports_what_flagger_does() {
    let delegate = mk("istio", json!({"port": 9898}), progressive());
    let mut bad = delegate.clone();
    bad.service.delegation = Some(true);
    bad.service.hosts = Some(vec!["app.example.com".into()]);
    assert_eq!(
        istio::virtual_service(&bad, w(90, 10), &StickyCookies::default()),
        Err(RoutingError::Unsupported(
            "VirtualService podinfo.test cannot have hosts and gateways when delegation enabled"
                .into()
        ))
    );
    let mut vs = istio_vs(&delegate, w(90, 10), &StickyCookies::default());
    for r in &mut vs.spec.http[0].route {
        r.weight = 0;
    }
    assert_eq!(
        istio::read_routes(&delegate, &vs),
        Err(RoutingError::NoRoutes(
            "VirtualService podinfo.test does not contain routes for podinfo-primary and podinfo-canary".into()
        ))
    );
    let sticky = mk("istio", json!({"port": 9898}), affinity_analysis());
    assert!(matches!(
        istio::virtual_service(&sticky, w(90, 10), &StickyCookies::default()),
        Err(RoutingError::Missing(_))
    ));
}

// === smi ===

#[test]
fn smi_goldens() {
    let linkerd = mk("linkerd", json!({"port": 9898}), progressive());
    golden(
        "smi/v1alpha1_linkerd.json",
        &smi::traffic_split(&linkerd, SmiVersion::V1Alpha1, w(90, 10)),
    );
    golden(
        "smi/v1alpha1_initial.json",
        &smi::traffic_split(&linkerd, SmiVersion::V1Alpha1, Routes::PRIMARY),
    );
    let osm = mk(
        "osm",
        json!({"port": 9898, "hosts": ["podinfo.test"]}),
        progressive(),
    );
    golden(
        "smi/v1alpha2_osm_hosts.json",
        &smi::traffic_split(&osm, SmiVersion::V1Alpha2, w(90, 10)),
    );
    let v3 = mk("smi:v1alpha3", json!({"port": 9898}), progressive());
    golden(
        "smi/v1alpha3.json",
        &smi::traffic_split(&v3, SmiVersion::V1Alpha3, w(90, 10)),
    );
}

#[test]
fn smi_round_trips_weights_in_every_version() {
    for (provider, v) in [
        ("linkerd", SmiVersion::V1Alpha1),
        ("smi:v1alpha1", SmiVersion::V1Alpha1),
        ("osm", SmiVersion::V1Alpha2),
        ("smi:v1alpha2", SmiVersion::V1Alpha2),
        ("smi:v1alpha3", SmiVersion::V1Alpha3),
    ] {
        let c = mk(provider, json!({"port": 9898}), progressive());
        assert_eq!(smi::version(c.provider), Some(v), "{provider}");
        let split = smi::traffic_split(&c, v, w(90, 10));
        assert_eq!(smi::read_routes(&c, &split), Ok(w(90, 10)), "{provider}");
    }
    let c = mk("linkerd", json!({"port": 9898}), progressive());
    let zero = smi::traffic_split(&c, SmiVersion::V1Alpha1, w(0, 0));
    assert!(matches!(
        smi::read_routes(&c, &zero),
        Err(RoutingError::NoRoutes(_))
    ));
}

// === nginx ===

fn user_ingress() -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": {"app": "podinfo"},
            "annotations": {
                "kubernetes.io/ingress.class": "nginx",
                "nginx.ingress.kubernetes.io/canary-weight": "35",
                "nginx.ingress.kubernetes.io/canary-by-header": "stale",
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "nginx.ingress.kubernetes.io/proxy-body-size": "8m"
            },
            "resourceVersion": "42",
            "uid": "0a1b"
        },
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{
                "host": "app.example.com",
                "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
                    {"path": "/other", "pathType": "Prefix", "backend": {"service": {"name": "other", "port": {"number": 80}}}}
                ]}
            }]
        }
    }))
    .expect("ingress")
}

fn ingress_ref() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"})
}

fn mk_nginx(analysis: Value) -> ValidatedCanary {
    let doc = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "provider": "nginx",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "ingressRef": ingress_ref(),
            "service": {"port": 80, "targetPort": 9898},
            "analysis": analysis,
        }
    });
    canary(&doc.to_string())
}

#[test]
fn nginx_goldens() {
    let prefix = nginx::DEFAULT_PREFIX;
    let plain = mk_nginx(progressive());
    let build = |c: &ValidatedCanary, r: Routes, prefix: &str| {
        nginx::canary_ingress(c, &user_ingress(), r, prefix).expect("canary ingress")
    };
    golden(
        "nginx/initial.json",
        &build(&plain, Routes::PRIMARY, prefix),
    );
    golden("nginx/weight.json", &build(&plain, w(90, 10), prefix));
    let ab = mk_nginx(ab_analysis());
    golden("nginx/ab.json", &build(&ab, w(0, 100), prefix));
    golden("nginx/ab_reset.json", &build(&ab, Routes::PRIMARY, prefix));
    let mut regex = ab_analysis();
    regex["match"] = json!([
        {"headers": {"x-canary": {"regex": "^(insider|beta)$"}}},
        {"headers": {"cookie": {"exact": "canary"}}}
    ]);
    let ab_regex = mk_nginx(regex);
    golden(
        "nginx/ab_header_pattern_and_cookie.json",
        &build(&ab_regex, w(0, 100), prefix),
    );
    golden(
        "nginx/custom_prefix.json",
        &build(&plain, w(90, 10), "custom.ingress.kubernetes.io"),
    );
}

#[test]
fn nginx_round_trips_weights() {
    let prefix = nginx::DEFAULT_PREFIX;
    let plain = mk_nginx(progressive());
    let ing = nginx::canary_ingress(&plain, &user_ingress(), w(90, 10), prefix).expect("ingress");
    assert_eq!(nginx::read_routes(&plain, &ing, prefix), Ok(w(90, 10)));
    let ing =
        nginx::canary_ingress(&plain, &user_ingress(), Routes::PRIMARY, prefix).expect("ingress");
    assert_eq!(
        nginx::read_routes(&plain, &ing, prefix),
        Ok(Routes::PRIMARY)
    );
    let ab = mk_nginx(ab_analysis());
    let ing = nginx::canary_ingress(&ab, &user_ingress(), w(0, 100), prefix).expect("ingress");
    assert_eq!(nginx::read_routes(&ab, &ing, prefix), Ok(w(0, 100)));
    let ing =
        nginx::canary_ingress(&ab, &user_ingress(), Routes::PRIMARY, prefix).expect("ingress");
    assert_eq!(nginx::read_routes(&ab, &ing, prefix), Ok(Routes::PRIMARY));
}

#[test]
fn nginx_needs_a_backend_for_the_apex() {
    let plain = mk_nginx(progressive());
    let mut ing = user_ingress();
    ing.spec
        .as_mut()
        .expect("spec")
        .rules
        .as_mut()
        .expect("rules")[0]
        .http
        .as_mut()
        .expect("http")
        .paths
        .remove(0);
    assert_eq!(
        nginx::canary_ingress(&plain, &ing, w(90, 10), nginx::DEFAULT_PREFIX),
        Err(RoutingError::Missing(
            "backend podinfo not found in ingress podinfo".into()
        ))
    );
}

// === gateway api ===

fn gateway_refs() -> Value {
    json!([{"name": "gateway", "namespace": "istio-ingress"}])
}

fn gw_service() -> Value {
    json!({"port": 9898, "hosts": ["app.example.com"], "gatewayRefs": gateway_refs()})
}

fn gw_options() -> Value {
    json!({
        "port": 9898,
        "hosts": ["app.example.com"],
        "gatewayRefs": [{"name": "gateway", "namespace": "istio-ingress", "sectionName": "https"}],
        "apex": {"labels": {"team": "web"}},
        "timeout": "30s",
        "backendTimeout": "10s",
        "match": [
            {"uri": {"prefix": "/api"}, "method": {"exact": "GET"}, "headers": {"x-dropped": {"exact": "1"}}},
            {"uri": {"regex": "/v[0-9]+/.*"}, "queryParams": {"debug": {"exact": "true"}}}
        ],
        "rewrite": {"uri": "/", "authority": "backend.example.com", "type": "ReplacePrefixMatch"},
        "headers": {
            "request": {"add": {"x-b": "2", "x-a": "1"}, "set": {"x-set": "v"}, "remove": ["x-remove"]},
            "response": {"add": {"x-served-by": "flagger"}}
        },
        "mirror": [{"backendRef": {"name": "shadow", "port": 80}}],
        "corsPolicy": {
            "allowOrigin": ["https://example.com"],
            "allowMethods": ["GET", "POST"],
            "allowHeaders": ["x-some-header"],
            "exposeHeaders": ["x-exposed"],
            "allowCredentials": true,
            "maxAge": "24h"
        }
    })
}

fn route(
    c: &ValidatedCanary,
    v: Version,
    r: Routes,
    cookies: &StickyCookies,
) -> gatewayapi::HttpRoute {
    gatewayapi::http_route(c, v, r, cookies).expect("http route")
}

#[test]
fn gatewayapi_goldens() {
    let none = StickyCookies::default();
    for (dir, provider, v) in [
        ("gatewayapi_v1", "gatewayapi:v1", Version::V1),
        ("gatewayapi_v1beta1", "gatewayapi:v1beta1", Version::V1Beta1),
    ] {
        let plain = mk(provider, gw_service(), progressive());
        golden(
            &format!("{dir}/plain.json"),
            &route(&plain, v, w(90, 10), &none),
        );
        golden(
            &format!("{dir}/plain_initial.json"),
            &route(&plain, v, Routes::PRIMARY, &none),
        );

        let ab = mk(provider, gw_service(), ab_analysis());
        golden(&format!("{dir}/ab.json"), &route(&ab, v, w(0, 100), &none));
        let ab_svc = mk(provider, gw_options(), ab_analysis());
        golden(
            &format!("{dir}/ab_service_match.json"),
            &route(&ab_svc, v, w(0, 100), &none),
        );

        let mut query = ab_analysis();
        query["match"] = json!([
            {"queryParams": {"canary": {"exact": "true"}}},
            {"headers": {"x-canary": {"regex": "^insider$"}}, "queryParams": {"beta": {"regex": "^(1|yes)$"}}}
        ]);
        let ab_query = mk(provider, gw_options(), query);
        golden(
            &format!("{dir}/ab_query_params.json"),
            &route(&ab_query, v, w(0, 100), &none),
        );

        let bg_mirror = mk(
            provider,
            gw_service(),
            json!({"interval": "1m", "threshold": 5, "iterations": 10, "mirror": true}),
        );
        golden(
            &format!("{dir}/mirror_bluegreen.json"),
            &route(&bg_mirror, v, mirrored(100, 0), &none),
        );

        let sticky = mk(provider, gw_service(), affinity_analysis());
        golden(
            &format!("{dir}/session_affinity.json"),
            &route(&sticky, v, w(90, 10), &sticky_cookies()),
        );
        golden(
            &format!("{dir}/session_affinity_expire.json"),
            &route(&sticky, v, Routes::PRIMARY, &retired_cookies()),
        );

        let sticky_svc = mk(provider, gw_options(), affinity_analysis());
        golden(
            &format!("{dir}/session_affinity_service_options.json"),
            &route(&sticky_svc, v, w(90, 10), &sticky_cookies()),
        );
        golden(
            &format!("{dir}/session_affinity_expire_service_options.json"),
            &route(&sticky_svc, v, Routes::PRIMARY, &retired_cookies()),
        );

        let options = mk(provider, gw_options(), progressive());
        golden(
            &format!("{dir}/service_options.json"),
            &route(&options, v, w(90, 10), &none),
        );
    }
}

#[test]
fn gatewayapi_round_trips_weights() {
    for (provider, v) in [
        ("gatewayapi:v1", Version::V1),
        ("gatewayapi:v1beta1", Version::V1Beta1),
    ] {
        for (name, c, cookies) in [
            (
                "plain",
                mk(provider, gw_service(), progressive()),
                StickyCookies::default(),
            ),
            (
                "options",
                mk(provider, gw_options(), progressive()),
                StickyCookies::default(),
            ),
            (
                "sticky",
                mk(provider, gw_service(), affinity_analysis()),
                sticky_cookies(),
            ),
        ] {
            assert_eq!(Version::of(c.provider), Some(v));
            let r = route(&c, v, w(90, 10), &cookies);
            let r: gatewayapi::HttpRoute =
                serde_json::from_value(serde_json::to_value(&r).expect("json")).expect("decode");
            assert_eq!(
                gatewayapi::read_routes(&c, v, &r),
                Ok(w(90, 10)),
                "{provider} {name}"
            );
        }
        let bg = mk(
            provider,
            gw_service(),
            json!({"interval": "1m", "threshold": 5, "iterations": 10, "mirror": true}),
        );
        let r = route(&bg, v, mirrored(100, 0), &StickyCookies::default());
        assert_eq!(gatewayapi::read_routes(&bg, v, &r), Ok(mirrored(100, 0)));
    }
}

#[test]
fn gatewayapi_mirrors_only_blue_green() {
    // Validation refuses this combination; the builder still ignores the mirror flag.
    let mut c = mk("gatewayapi:v1", gw_service(), progressive());
    c.analysis.strategy = Strategy::Canary {
        steps: Steps::Linear(10),
        max_weight: 50,
        mirror: true,
    };
    let r = route(&c, Version::V1, mirrored(100, 0), &StickyCookies::default());
    assert!(r.spec.rules[0].filters.is_empty());
    assert_eq!(
        gatewayapi::read_routes(&c, Version::V1, &r),
        Ok(Routes::PRIMARY)
    );
}

#[test]
fn gatewayapi_v1_read_waits_for_accepted_parents() {
    let c = mk("gatewayapi:v1", gw_service(), progressive());
    let mut r = route(&c, Version::V1, w(90, 10), &StickyCookies::default());
    r.metadata.generation = Some(3);
    let status = |accepted: &str, observed: i64| {
        serde_json::from_value::<gatewayapi::HttpRouteStatus>(json!({"parents": [{
            "parentRef": {"name": "gateway", "namespace": "istio-ingress"},
            "controllerName": "istio.io/gateway-controller",
            "conditions": [{"type": "Accepted", "status": accepted, "observedGeneration": observed}]
        }]}))
        .expect("status")
    };
    r.status = Some(status("True", 3));
    assert_eq!(gatewayapi::read_routes(&c, Version::V1, &r), Ok(w(90, 10)));
    r.status = Some(status("True", 2));
    assert_eq!(
        gatewayapi::read_routes(&c, Version::V1, &r),
        Err(RoutingError::NotReady(
            "HTTPRoute podinfo.test parent gateway is not ready (status: True, observed generation: 2, current generation: 3)".into()
        ))
    );
    r.status = Some(status("False", 3));
    assert!(matches!(
        gatewayapi::read_routes(&c, Version::V1, &r),
        Err(RoutingError::NotReady(_))
    ));
    // v1beta1 does not check the parents.
    assert_eq!(
        gatewayapi::read_routes(&c, Version::V1Beta1, &r),
        Ok(w(90, 10))
    );
}

#[test]
fn gatewayapi_refuses_what_it_cannot_express() {
    let mut c = mk("gatewayapi:v1", gw_service(), progressive());
    c.service.gateway_refs = None;
    assert_eq!(
        gatewayapi::http_route(&c, Version::V1, w(90, 10), &StickyCookies::default()),
        Err(RoutingError::Missing(
            "GatewayRefs must be specified when using Gateway API as a provider.".into()
        ))
    );
    let mut a = ab_analysis();
    a["match"] = json!([{"headers": {"x-canary": {"prefix": "ins"}}}]);
    let c = mk("gatewayapi:v1", gw_service(), a);
    assert!(matches!(
        gatewayapi::http_route(&c, Version::V1, w(0, 100), &StickyCookies::default()),
        Err(RoutingError::Unsupported(_))
    ));
}

// === every weight ===

#[test]
fn every_weight_pair_reads_back_as_written() {
    let none = StickyCookies::default();
    let istio_plain = mk("istio", json!({"port": 9898}), progressive());
    let istio_sticky = mk("istio", json!({"port": 9898}), affinity_analysis());
    let linkerd = mk("linkerd", json!({"port": 9898}), progressive());
    let osm = mk("osm", json!({"port": 9898}), progressive());
    let v3 = mk("smi:v1alpha3", json!({"port": 9898}), progressive());
    let tcp = mk(
        "istio",
        json!({"port": 9898, "appProtocol": "tcp"}),
        progressive(),
    );
    let nginx_plain = mk_nginx(progressive());
    let gw = mk("gatewayapi:v1", gw_service(), progressive());
    let gw_sticky = mk("gatewayapi:v1", gw_service(), affinity_analysis());
    for canary_weight in 0..=100 {
        let r = w(100 - canary_weight, canary_weight);
        let cookies = if canary_weight > 0 {
            sticky_cookies()
        } else {
            retired_cookies()
        };
        assert_eq!(
            istio::read_routes(&istio_plain, &istio_vs(&istio_plain, r, &none)),
            Ok(r)
        );
        assert_eq!(
            istio::read_routes(&istio_sticky, &istio_vs(&istio_sticky, r, &cookies)),
            Ok(r),
            "istio sticky {r:?}"
        );
        assert_eq!(
            smi::read_routes(
                &linkerd,
                &smi::traffic_split(&linkerd, SmiVersion::V1Alpha1, r)
            ),
            Ok(r)
        );
        assert_eq!(
            smi::read_routes(&osm, &smi::traffic_split(&osm, SmiVersion::V1Alpha2, r)),
            Ok(r)
        );
        assert_eq!(
            smi::read_routes(&v3, &smi::traffic_split(&v3, SmiVersion::V1Alpha3, r)),
            Ok(r)
        );
        assert_eq!(istio::read_routes(&tcp, &istio_vs(&tcp, r, &none)), Ok(r));
        let ing = nginx::canary_ingress(&nginx_plain, &user_ingress(), r, nginx::DEFAULT_PREFIX)
            .expect("ingress");
        assert_eq!(
            nginx::read_routes(&nginx_plain, &ing, nginx::DEFAULT_PREFIX),
            Ok(r)
        );
        for v in [Version::V1, Version::V1Beta1] {
            assert_eq!(
                gatewayapi::read_routes(&gw, v, &route(&gw, v, r, &none)),
                Ok(r)
            );
            assert_eq!(
                gatewayapi::read_routes(&gw_sticky, v, &route(&gw_sticky, v, r, &cookies)),
                Ok(r),
                "gateway api sticky {v:?} {r:?}"
            );
        }
    }
}
