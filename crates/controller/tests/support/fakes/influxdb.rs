//! A fake of InfluxDB v2's query API, after InfluxData's API reference "POST /api/v2/query"
//! (docs.influxdata.com/influxdb/v2/api/#operation/PostQuery) and "Annotated CSV"
//! (docs.influxdata.com/influxdb/v2/reference/syntax/annotated-csv/): a JSON body
//! `{"query", "type": "flux", "dialect"}` with `org` in the query string and
//! `Authorization: Token <token>`; the answer is annotated CSV (`#datatype`, `#group`,
//! `#default` rows, a header, records; an empty line for no results); errors are JSON
//! `{"code": "unauthorized" | "invalid" | "too many requests", "message": ...}` with 401, 400,
//! 429.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Answer, State};

pub const TOKEN: &str = "influx-token-0123";
pub const ORG: &str = "flagger";

#[derive(Clone, Default)]
pub struct InfluxDb {
    pub state: State,
}

impl InfluxDb {
    pub async fn start() -> (InfluxDb, String) {
        let db = InfluxDb::default();
        let app = Router::new()
            .route("/api/v2/query", post(query))
            .with_state(db.clone());
        let addr = super::serve(app).await;
        (db, format!("http://{addr}"))
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        serde_json::json!({"code": code, "message": message}).to_string(),
    )
        .into_response()
}

fn csv(body: String) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/csv; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn query(
    Shared(db): Shared<InfluxDb>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = super::seen(&method, &uri, &headers, &body);
    db.state.record(seen.clone());
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Token {TOKEN}"))
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unauthorized access",
        );
    }
    if seen.query.get("org").map(String::as_str) != Some(ORG) {
        return error(
            StatusCode::NOT_FOUND,
            "not found",
            "failed to decode request body: organization name \"\" not found",
        );
    }
    let Ok(request) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "failed to decode request body",
        );
    };
    let flux = request
        .get("query")
        .and_then(|q| q.as_str())
        .unwrap_or_default();
    if flux.contains("bucket: \"default\"") {
        return csv("\r\n".into());
    }
    let table = |value: &str| {
        format!(
            "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double,string,string\r\n\
#group,false,false,true,true,false,true,true\r\n\
#default,_result,,,,,,\r\n\
,result,table,_start,_stop,_value,_field,_measurement\r\n\
,,0,2024-01-01T00:00:00Z,2024-01-01T00:10:00Z,{value},error_rate,http\r\n\r\n"
        )
    };
    match db.state.answer() {
        Answer::Value(v) => csv(table(&v.to_string())),
        Answer::Null => csv(table("")),
        Answer::Empty => csv("\r\n".into()),
        Answer::BadQuery => error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "compilation failed: error at @1:1-1:4: undefined identifier frm",
        ),
        Answer::RateLimited => error(
            StatusCode::TOO_MANY_REQUESTS,
            "too many requests",
            "org has exceeded its query quota",
        ),
    }
}
