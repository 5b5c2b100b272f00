//! Golden tests of the ingress-family routing objects (reference §4.7 to §4.11): Contour's
//! HTTPProxy, Gloo's Upstreams and RouteTable, Traefik's TraefikService, Skipper's canary
//! Ingress and APISIX's canary ApisixRoute, for a set of Canary specs (plain, A/B match,
//! service options), compared with committed files under `tests/golden/routing/<provider>/`
//! (regenerate with `UPDATE_GOLDEN=1 cargo test -p flagger-core --test routing_golden_ingress`
//! and review the diff). Every weight pair 0/100 … 100/0 reads back as written, and what a
//! provider cannot express is refused with Flagger's words.

mod support;

use k8s_openapi::api::networking::v1::Ingress;
use serde_json::{Value, json};

use flagger_core::effects::Routes;
use flagger_core::model::ValidatedCanary;
use flagger_core::routing::{RoutingError, apisix, contour, gloo, skipper, traefik};
use support::golden::{ab_analysis, golden, mk, progressive, w};

/// A/B by an exact header and a cookie suffix (Contour's `exact` and `contains`).
fn ab_exact_and_suffix() -> Value {
    json!({
        "interval": "1m", "threshold": 5, "iterations": 10,
        "match": [{"headers": {"x-canary": {"exact": "insider"}}}]
    })
}

fn ab_two_headers() -> Value {
    json!({
        "interval": "1m", "threshold": 5, "iterations": 10,
        "match": [
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"headers": {"cookie": {"suffix": "canary=always"}}}
        ]
    })
}

/// The service options Flagger's ingress routers read: ports, timeout, retries, the path
/// prefix and the apex metadata.
fn service_options() -> Value {
    json!({
        "port": 80,
        "targetPort": 9898,
        "timeout": "15s",
        "retries": {"attempts": 3, "perTryTimeout": "5s", "retryOn": "5xx,gateway-error"},
        "match": [{"uri": {"prefix": "/api"}}],
        "apex": {"labels": {"team": "web"}, "annotations": {"owner": "web-team"}}
    })
}

// === contour ===

fn proxy(c: &ValidatedCanary, r: Routes, class: &str) -> Value {
    contour::http_proxy(c, r, class).expect("http proxy")
}

#[test]
fn contour_goldens() {
    let plain = mk("contour", json!({"port": 9898}), progressive());
    golden("contour/plain.json", &proxy(&plain, w(90, 10), ""));
    golden(
        "contour/plain_initial.json",
        &proxy(&plain, Routes::PRIMARY, ""),
    );
    let ab = mk("contour", json!({"port": 9898}), ab_exact_and_suffix());
    golden("contour/ab.json", &proxy(&ab, w(0, 100), ""));
    golden("contour/ab_initial.json", &proxy(&ab, Routes::PRIMARY, ""));
    // Two headers: each condition repeats the prefix, as Flagger writes them (Contour then
    // refuses the route: one path condition per block).
    let two = mk("contour", json!({"port": 9898}), ab_two_headers());
    golden("contour/ab_two_headers.json", &proxy(&two, w(0, 100), ""));
    let options = mk("contour", service_options(), progressive());
    golden(
        "contour/service_options_ingress_class.json",
        &proxy(&options, w(90, 10), "contour"),
    );
    let ab_options = mk("contour", service_options(), ab_exact_and_suffix());
    golden(
        "contour/ab_service_options.json",
        &proxy(&ab_options, w(0, 100), ""),
    );
}

#[test]
fn contour_refuses_regex_headers_and_reads_the_first_route() {
    let regex = mk("contour", json!({"port": 9898}), ab_analysis());
    assert!(matches!(
        contour::http_proxy(&regex, w(0, 100), ""),
        Err(RoutingError::Unsupported(m)) if m.contains("cannot match header cookie by regex")
    ));
    let plain = mk("contour", json!({"port": 9898}), progressive());
    let mut p = proxy(&plain, w(90, 10), "");
    p["spec"]["routes"][0]["services"] = json!([{"name": "podinfo-primary", "port": 9898}]);
    assert_eq!(
        contour::read_routes(&plain, &p),
        Err(RoutingError::NoRoutes(
            "HTTPProxy podinfo.test services not found".into()
        ))
    );
}

// === gloo ===

fn template() -> Value {
    json!({
        "apiVersion": "gloo.solo.io/v1", "kind": "Upstream",
        "metadata": {"name": "podinfo-template", "namespace": "test"},
        "spec": {
            "kube": {"serviceName": "podinfo", "serviceNamespace": "test", "servicePort": 9898},
            "labels": {"team": "web"},
            "sslConfig": {"sni": "podinfo.example.com"},
            "circuitBreakers": {"maxConnections": 100},
            "connectionConfig": {"maxRequestsPerConnection": 10},
            "loadBalancerConfig": {"roundRobin": {}},
            "useHttp2": true,
            "initialStreamWindowSize": 65535,
            "initialConnectionWindowSize": 65535,
            "httpProxyHostname": "proxy.example.com",
            "healthChecks": [{"timeout": "1s"}]
        }
    })
}

fn table(c: &ValidatedCanary, r: Routes) -> Value {
    gloo::route_table(c, r).expect("route table")
}

#[test]
fn gloo_goldens() {
    let plain = mk("gloo", json!({"port": 9898}), progressive());
    let selector = json!({"app": "podinfo"});
    golden(
        "gloo/upstream_canary.json",
        &gloo::upstream(
            &plain,
            &gloo::canary_upstream(&plain),
            "podinfo-canary",
            &selector,
            None,
        ),
    );
    golden(
        "gloo/upstream_primary_from_template.json",
        &gloo::upstream(
            &plain,
            &gloo::primary_upstream(&plain),
            "podinfo-primary",
            &json!({"app": "podinfo-primary"}),
            Some(&template()),
        ),
    );
    golden("gloo/route_table.json", &table(&plain, w(90, 10)));
    golden(
        "gloo/route_table_initial.json",
        &table(&plain, Routes::PRIMARY),
    );
    let ab = mk("gloo", json!({"port": 9898}), ab_analysis());
    golden("gloo/route_table_ab.json", &table(&ab, w(0, 100)));
    let options = mk("gloo", service_options(), progressive());
    golden(
        "gloo/route_table_service_options.json",
        &table(&options, w(90, 10)),
    );
}

#[test]
fn gloo_refuses_prefix_headers_and_names_its_upstreams() {
    let prefix = mk("gloo", json!({"port": 9898}), ab_two_headers());
    assert!(matches!(
        gloo::route_table(&prefix, w(0, 100)),
        Err(RoutingError::Unsupported(m)) if m.contains("cannot match header cookie by prefix or suffix")
    ));
    let c = mk("gloo", json!({"port": 80}), progressive());
    assert_eq!(
        gloo::primary_upstream(&c),
        "test-podinfo-primaryupstream-80"
    );
    assert_eq!(gloo::canary_upstream(&c), "test-podinfo-canaryupstream-80");
    let mut t = table(&c, w(90, 10));
    t["spec"]["routes"][0]["routeAction"]["multi"]["destinations"] =
        json!([t["spec"]["routes"][0]["routeAction"]["multi"]["destinations"][0]]);
    assert_eq!(
        gloo::read_routes(&c, &t),
        Err(RoutingError::NoRoutes(
            "RouteTable podinfo.test destinations not found".into()
        ))
    );
}

// === traefik ===

#[test]
fn traefik_goldens() {
    let plain = mk("traefik", json!({"port": 80}), progressive());
    let ts = |c: &ValidatedCanary, r: Routes| traefik::traefik_service(c, r, traefik::API_VERSION);
    golden("traefik/plain.json", &ts(&plain, w(90, 10)));
    golden("traefik/plain_initial.json", &ts(&plain, Routes::PRIMARY));
    golden("traefik/all_to_canary.json", &ts(&plain, Routes::CANARY));
    golden(
        "traefik/legacy_group.json",
        &traefik::traefik_service(&plain, w(90, 10), traefik::LEGACY_API_VERSION),
    );
    // Traefik has no A/B in Flagger: the match is not written, the canary gets all.
    let ab = mk("traefik", json!({"port": 80}), ab_analysis());
    golden("traefik/ab.json", &ts(&ab, w(0, 100)));
    let options = mk("traefik", service_options(), progressive());
    golden("traefik/service_options.json", &ts(&options, w(90, 10)));
}

// === skipper ===

fn user_ingress() -> Ingress {
    serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": {"app": "podinfo"},
            "annotations": {
                "kubernetes.io/ingress.class": "skipper",
                "zalando.org/skipper-predicate": "Weight(100) && Method(\"GET\")",
                "zalando.org/skipper-filter": "compress()",
                "kubectl.kubernetes.io/last-applied-configuration": "{}"
            },
            "resourceVersion": "7"
        },
        "spec": {
            "rules": [
                {"host": "app.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"number": 80}}}},
                    {"path": "/other", "pathType": "Prefix", "backend": {"service": {"name": "other", "port": {"number": 80}}}}
                ]}},
                {"host": "www.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "podinfo", "port": {"name": "http"}}}}
                ]}}
            ]
        }
    }))
    .expect("ingress")
}

fn ingress_ref() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "podinfo"})
}

fn mk_ref(provider: &str, field: &str, reference: Value, analysis: Value) -> ValidatedCanary {
    mk_ref_service(
        provider,
        field,
        reference,
        json!({"port": 80, "targetPort": 9898}),
        analysis,
    )
}

fn mk_ref_service(
    provider: &str,
    field: &str,
    reference: Value,
    service: Value,
    analysis: Value,
) -> ValidatedCanary {
    let doc = json!({
        "apiVersion": "flagger.app/v1beta1",
        "kind": "Canary",
        "metadata": {"name": "podinfo", "namespace": "test"},
        "spec": {
            "provider": provider,
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            field: reference,
            "service": service,
            "analysis": analysis,
        }
    });
    support::canary(&doc.to_string())
}

fn canary_ingress(c: &ValidatedCanary, r: Routes) -> Ingress {
    skipper::canary_ingress(c, &user_ingress(), r).expect("canary ingress")
}

#[test]
fn skipper_goldens() {
    let plain = mk_ref("skipper", "ingressRef", ingress_ref(), progressive());
    golden("skipper/weight.json", &canary_ingress(&plain, w(90, 10)));
    golden(
        "skipper/initial.json",
        &canary_ingress(&plain, Routes::PRIMARY),
    );
    // No A/B in Flagger's Skipper router: all traffic to the canary during the test.
    let ab = mk_ref("skipper", "ingressRef", ingress_ref(), ab_analysis());
    golden("skipper/ab.json", &canary_ingress(&ab, w(0, 100)));
    // Flagger's Skipper router reads no service option: the canary Ingress is the same.
    let options = mk_ref_service(
        "skipper",
        "ingressRef",
        ingress_ref(),
        service_options(),
        progressive(),
    );
    assert_eq!(
        canary_ingress(&options, w(90, 10)),
        canary_ingress(&plain, w(90, 10))
    );
}

#[test]
fn skipper_needs_a_backend_for_the_apex_and_its_weights_annotation() {
    let c = mk_ref("skipper", "ingressRef", ingress_ref(), progressive());
    let mut ing = user_ingress();
    for rule in ing
        .spec
        .as_mut()
        .expect("spec")
        .rules
        .as_mut()
        .expect("rules")
    {
        rule.http.as_mut().expect("http").paths.retain(|p| {
            p.backend
                .service
                .as_ref()
                .is_some_and(|s| s.name != "podinfo")
        });
    }
    assert_eq!(
        skipper::canary_ingress(&c, &ing, w(90, 10)),
        Err(RoutingError::Missing(
            "backend podinfo not found in ingress podinfo".into()
        ))
    );
    let mut bare = canary_ingress(&c, w(90, 10));
    bare.metadata
        .annotations
        .as_mut()
        .expect("annotations")
        .remove(skipper::BACKEND_WEIGHTS);
    assert!(matches!(
        skipper::read_routes(&c, &bare),
        Err(RoutingError::NoRoutes(_))
    ));
}

// === apisix ===

fn user_route() -> Value {
    json!({
        "apiVersion": "apisix.apache.org/v2",
        "kind": "ApisixRoute",
        "metadata": {
            "name": "podinfo",
            "namespace": "test",
            "labels": {"app": "podinfo"},
            "annotations": {"owner": "web-team", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
            "resourceVersion": "9"
        },
        "spec": {
            "ingressClassName": "apisix",
            "http": [
                {"name": "other", "match": {"paths": ["/other/*"]}, "backends": [{"serviceName": "other", "servicePort": 80}]},
                {
                    "name": "method",
                    "priority": 5,
                    "match": {"hosts": ["app.example.com"], "methods": ["GET"], "paths": ["/*"]},
                    "backends": [{"serviceName": "podinfo", "servicePort": 80, "resolveGranularity": "service", "subset": "v1"}],
                    "plugins": [{"name": "prometheus", "enable": true, "config": {"prefer_name": true}}],
                    "websocket": false
                }
            ]
        }
    })
}

fn route_ref() -> Value {
    json!({"apiVersion": "apisix.apache.org/v2", "kind": "ApisixRoute", "name": "podinfo"})
}

#[test]
fn apisix_goldens() {
    let plain = mk_ref("apisix", "routeRef", route_ref(), progressive());
    let route = |r: Routes| apisix::canary_route(&plain, &user_route(), r).expect("route");
    golden("apisix/weight.json", &route(w(90, 10)));
    golden("apisix/initial.json", &route(Routes::PRIMARY));
    let ab = mk_ref("apisix", "routeRef", route_ref(), ab_analysis());
    golden(
        "apisix/ab.json",
        &apisix::canary_route(&ab, &user_route(), w(0, 100)).expect("route"),
    );
    // Nor does Flagger's APISIX router: the backends keep the user's route's port.
    let options = mk_ref_service(
        "apisix",
        "routeRef",
        route_ref(),
        service_options(),
        progressive(),
    );
    assert_eq!(
        apisix::canary_route(&options, &user_route(), w(90, 10)).expect("route"),
        route(w(90, 10))
    );
}

#[test]
fn apisix_refuses_what_flagger_refuses() {
    let c = mk_ref("apisix", "routeRef", route_ref(), progressive());
    let mut two = user_route();
    two["spec"]["http"][1]["backends"]
        .as_array_mut()
        .expect("backends")
        .push(json!({"serviceName": "podinfo-v2", "servicePort": 80}));
    assert!(matches!(
        apisix::canary_route(&c, &two, w(90, 10)),
        Err(RoutingError::Unsupported(m)) if m.contains("only one http backend is supported")
    ));
    let mut none = user_route();
    none["spec"]["http"][1]["backends"][0]["serviceName"] = json!("elsewhere");
    assert_eq!(
        apisix::canary_route(&c, &none, w(90, 10)),
        Err(RoutingError::Missing(
            "Can not find podinfo backend on apisix route podinfo.test".into()
        ))
    );
    let mut empty = user_route();
    empty["spec"]["http"] = json!([]);
    assert_eq!(
        apisix::canary_route(&c, &empty, w(90, 10)),
        Err(RoutingError::Missing(
            "APISIX route podinfo.test's spec.http is empty".into()
        ))
    );
    assert_eq!(
        apisix::canary_route_name(&c, "podinfo"),
        "podinfo-podinfo-canary"
    );
}

// === every weight ===

#[test]
fn every_weight_pair_reads_back_as_written() {
    let contour_plain = mk("contour", service_options(), progressive());
    let contour_ab = mk("contour", json!({"port": 9898}), ab_exact_and_suffix());
    let gloo_plain = mk("gloo", json!({"port": 9898}), progressive());
    let gloo_ab = mk("gloo", json!({"port": 9898}), ab_analysis());
    let traefik_plain = mk("traefik", json!({"port": 80}), progressive());
    let skipper_plain = mk_ref("skipper", "ingressRef", ingress_ref(), progressive());
    let apisix_plain = mk_ref("apisix", "routeRef", route_ref(), progressive());
    for canary_weight in 0..=100 {
        let r = w(100 - canary_weight, canary_weight);
        for c in [&contour_plain, &contour_ab] {
            assert_eq!(
                contour::read_routes(c, &proxy(c, r, "contour")),
                Ok(r),
                "contour {r:?}"
            );
        }
        for c in [&gloo_plain, &gloo_ab] {
            assert_eq!(gloo::read_routes(c, &table(c, r)), Ok(r), "gloo {r:?}");
        }
        for v in [traefik::API_VERSION, traefik::LEGACY_API_VERSION] {
            let ts = traefik::traefik_service(&traefik_plain, r, v);
            assert_eq!(
                traefik::read_routes(&traefik_plain, &ts),
                Ok(r),
                "traefik {r:?}"
            );
        }
        // Through JSON, as the controller reads the Ingress from the API server.
        let ing: Ingress = serde_json::from_value(
            serde_json::to_value(canary_ingress(&skipper_plain, r)).expect("json"),
        )
        .expect("decode");
        assert_eq!(
            skipper::read_routes(&skipper_plain, &ing),
            Ok(r),
            "skipper {r:?}"
        );
        let route = apisix::canary_route(&apisix_plain, &user_route(), r).expect("route");
        assert_eq!(
            apisix::read_routes(&apisix_plain, &route),
            Ok(r),
            "apisix {r:?}"
        );
    }
}
