//! A fake of Datadog's API, after Datadog's API reference:
//!
//! * "Query timeseries points" (`GET /api/v1/query`, docs.datadoghq.com/api/latest/metrics/
//!   #query-timeseries-points): `from`, `to` (seconds) and `query` required (400
//!   `{"errors": [...]}` otherwise); the answer `{"status": "ok", "res_type": "time_series",
//!   "series": [{"metric", "pointlist": [[ms, value]], ...}], "from_date", "to_date", ...}`.
//! * "Validate API key" (`GET /api/v1/validate`, .../authentication/#validate-api-key):
//!   `{"valid": true}`.
//! * Authentication (.../api/latest/#authentication): both `DD-API-KEY` and
//!   `DD-APPLICATION-KEY`; a missing or wrong key is 403 `{"errors": ["Forbidden"]}`.
//! * Rate limits (.../api/latest/rate-limits/): 429 `{"errors": ["Rate limit exceeded"]}` with
//!   the `X-RateLimit-Limit`, `-Period`, `-Remaining`, `-Reset` and `-Name` headers.
//!
//! The point values come from the scripted [`Answer`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Answer, State};

pub const API_KEY: &str = "dd-api-key-0123456789abcdef";
pub const APPLICATION_KEY: &str = "dd-app-key-fedcba9876543210";

#[derive(Clone, Default)]
pub struct Datadog {
    pub state: State,
}

impl Datadog {
    pub async fn start() -> (Datadog, String) {
        let dd = Datadog::default();
        let app = Router::new()
            .route("/api/v1/query", get(query))
            .route("/api/v1/validate", get(validate))
            .with_state(dd.clone());
        let addr = super::serve(app).await;
        (dd, format!("http://{addr}"))
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

fn authorized(headers: &HeaderMap) -> bool {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    h("dd-api-key") == Some(API_KEY) && h("dd-application-key") == Some(APPLICATION_KEY)
}

fn forbidden() -> Response {
    json(
        StatusCode::FORBIDDEN,
        serde_json::json!({"errors": ["Forbidden"]}),
    )
}

async fn validate(
    Shared(dd): Shared<Datadog>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    dd.state.record(super::seen(&method, &uri, &headers, &body));
    // The validate endpoint checks the API key only.
    if headers.get("dd-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        return forbidden();
    }
    json(StatusCode::OK, serde_json::json!({"valid": true}))
}

async fn query(
    Shared(dd): Shared<Datadog>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = super::seen(&method, &uri, &headers, &body);
    dd.state.record(seen.clone());
    if !authorized(&headers) {
        return forbidden();
    }
    let number = |k: &str| seen.query.get(k).and_then(|v| v.parse::<i64>().ok());
    let (Some(from), Some(to), Some(q)) = (number("from"), number("to"), seen.query.get("query"))
    else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"errors": ["The parameters 'from', 'to' and 'query' are required"]}),
        );
    };
    let series = |points: serde_json::Value| {
        serde_json::json!([{
            "metric": q.split(['{', ':']).nth(1).unwrap_or(q),
            "display_name": q,
            "expression": q,
            "scope": "*",
            "aggr": "avg",
            "interval": 10,
            "length": 2,
            "start": from * 1000,
            "end": to * 1000,
            "pointlist": points,
            "unit": null,
            "tag_set": [],
            "query_index": 0,
        }])
    };
    let ok = |series: serde_json::Value| {
        json(
            StatusCode::OK,
            serde_json::json!({
                "status": "ok",
                "res_type": "time_series",
                "resp_version": 1,
                "query": q,
                "from_date": from * 1000,
                "to_date": to * 1000,
                "group_by": [],
                "message": "",
                "series": series,
            }),
        )
    };
    match dd.state.answer() {
        // The oldest point holds the value; the newest is an incomplete bucket.
        Answer::Value(v) => ok(series(serde_json::json!([
            [(from * 1000) as f64, v],
            [(to * 1000) as f64, v * 3.0 + 50.0]
        ]))),
        Answer::Empty => ok(serde_json::json!([])),
        Answer::Null => ok(series(serde_json::json!([[(from * 1000) as f64, null]]))),
        Answer::BadQuery => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"errors": [format!("Error parsing query: unable to parse {q}: Rule 'scope_expr' didn't match")]}),
        ),
        Answer::RateLimited => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("content-type", "application/json"),
                ("x-ratelimit-limit", "1600"),
                ("x-ratelimit-period", "3600"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1200"),
                ("x-ratelimit-name", "query"),
            ],
            serde_json::json!({"errors": ["Rate limit exceeded"]}).to_string(),
        )
            .into_response(),
    }
}
