//! A fake of New Relic's Insights query API, after New Relic's reference "Query Insights event
//! data via API" (docs.newrelic.com/docs/apis/insights-apis/query-insights-event-data-api/):
//! `GET /v1/accounts/<account id>/query?nrql=<NRQL>` with the `X-Query-Key` header; the answer
//! `{"results": [{"<function>": value}], "metadata": {...}}` (a `result` key for
//! `percentage`/`filter` style functions); a wrong key is 401 `{"error": "..."}`, an NRQL syntax
//! error 400 `{"error": "NRQL Syntax Error: ..."}`, too many requests 429.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as Shared};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::{Answer, State};

pub const ACCOUNT: &str = "1234567";
pub const QUERY_KEY: &str = "NRIQ-0123456789abcdef";

#[derive(Clone, Default)]
pub struct NewRelic {
    pub state: State,
}

impl NewRelic {
    pub async fn start() -> (NewRelic, String) {
        let nr = NewRelic::default();
        let app = Router::new()
            .route("/v1/accounts/{account}/query", get(query))
            .with_state(nr.clone());
        let addr = super::serve(app).await;
        (nr, format!("http://{addr}"))
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

async fn query(
    Shared(nr): Shared<NewRelic>,
    Path(account): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = super::seen(&method, &uri, &headers, &body);
    nr.state.record(seen.clone());
    if headers.get("x-query-key").and_then(|v| v.to_str().ok()) != Some(QUERY_KEY)
        || account != ACCOUNT
    {
        return json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "Invalid query key or account"}),
        );
    }
    let Some(nrql) = seen.query.get("nrql") else {
        return json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "Missing parameter: nrql"}),
        );
    };
    if nrql.starts_with("SELECT * FROM Metric") {
        return json(
            StatusCode::OK,
            serde_json::json!({"results": [{"events": []}], "metadata": {"eventTypes": ["Metric"]}}),
        );
    }
    let metadata = serde_json::json!({"eventTypes": ["Transaction"], "rawSince": "60 SECONDS AGO"});
    match nr.state.answer() {
        Answer::Value(v) => json(
            StatusCode::OK,
            serde_json::json!({"results": [{"result": v}], "metadata": metadata}),
        ),
        Answer::Empty => json(
            StatusCode::OK,
            serde_json::json!({"results": [], "metadata": metadata}),
        ),
        Answer::Null => json(
            StatusCode::OK,
            serde_json::json!({"results": [{"result": null}], "metadata": metadata}),
        ),
        Answer::BadQuery => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "NRQL Syntax Error: Error at line 1 position 8, unexpected 'FROM'"}),
        ),
        Answer::RateLimited => json(
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({"error": "Too many requests"}),
        ),
    }
}
