//! A fake of Dynatrace's Metrics API v2, after Dynatrace's reference "Metrics API - GET metric
//! data points" (docs.dynatrace.com/docs/dynatrace-api/environment-api/metric-v2/get-data-points)
//! and "GET metrics" (.../metric-v2/get-all-metrics): `GET /api/v2/metrics/query` with
//! `metricSelector` (required), `resolution`, `from`, `to`; `GET /api/v2/metrics?pageSize=`;
//! `Authorization: Api-Token <token>` (401 `{"error": {"code": 401, "message": ...}}` without it);
//! the answer `{"totalCount", "nextPageKey", "resolution", "result": [{"metricId", "data":
//! [{"dimensions", "dimensionMap", "timestamps", "values"}]}]}`; 429 when throttled.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Answer, State};

pub const TOKEN: &str = "dt0c01.SAMPLE.TOKEN";

#[derive(Clone, Default)]
pub struct Dynatrace {
    pub state: State,
}

impl Dynatrace {
    pub async fn start() -> (Dynatrace, String) {
        let dt = Dynatrace::default();
        let app = Router::new()
            .route("/api/v2/metrics/query", get(query))
            .route("/api/v2/metrics", get(list))
            .with_state(dt.clone());
        let addr = super::serve(app).await;
        (dt, format!("http://{addr}"))
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error(code: StatusCode, message: &str) -> Response {
    json(
        code,
        serde_json::json!({"error": {"code": code.as_u16(), "message": message}}),
    )
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Api-Token {TOKEN}"))
}

async fn list(
    Shared(dt): Shared<Dynatrace>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dt.state.record(super::seen(&method, &uri, &headers, &body));
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Missing authorization parameter.");
    }
    json(
        StatusCode::OK,
        serde_json::json!({"totalCount": 1, "nextPageKey": null, "metrics": [{"metricId": "builtin:service.errors.total.rate"}]}),
    )
}

async fn query(
    Shared(dt): Shared<Dynatrace>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = super::seen(&method, &uri, &headers, &body);
    dt.state.record(seen.clone());
    if !authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "Missing authorization parameter.");
    }
    let Some(selector) = seen.query.get("metricSelector") else {
        return error(StatusCode::BAD_REQUEST, "Constraints violated.");
    };
    let to: i64 = seen
        .query
        .get("to")
        .and_then(|t| t.parse().ok())
        .unwrap_or_default();
    let result = |values: serde_json::Value| {
        serde_json::json!({"totalCount": 1, "nextPageKey": null, "resolution": "Inf", "result": [{
            "metricId": selector,
            "dataPointCountRatio": 0.0001,
            "dimensionCountRatio": 0.001,
            "data": [{"dimensions": [], "dimensionMap": {}, "timestamps": [to], "values": values}],
        }]})
    };
    match dt.state.answer() {
        Answer::Value(v) => json(StatusCode::OK, result(serde_json::json!([v]))),
        Answer::Null => json(StatusCode::OK, result(serde_json::json!([null]))),
        Answer::Empty => json(
            StatusCode::OK,
            serde_json::json!({"totalCount": 0, "nextPageKey": null, "resolution": "Inf", "result": [{"metricId": selector, "data": []}]}),
        ),
        Answer::BadQuery => error(
            StatusCode::BAD_REQUEST,
            &format!("Metric selector parse error: {selector}"),
        ),
        Answer::RateLimited => error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
    }
}
