//! A fake of Google's OAuth 2.0 token endpoint and Cloud Monitoring's MQL query API, after
//! Google's references:
//!
//! * "Using OAuth 2.0 for Server to Server Applications" (developers.google.com/identity/
//!   protocols/oauth2/service-account#httprest): `POST <token_uri>` with
//!   `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<RS256 JWT>` whose claims
//!   name the key's `client_email` (`iss`), the scope and the token URI (`aud`); answered by
//!   `{"access_token", "expires_in", "token_type": "Bearer"}`, or 400 `{"error": "invalid_grant"}`.
//! * "Method: projects.timeSeries.query" (cloud.google.com/monitoring/api/ref_v3/rest/v3/
//!   projects.timeSeries/query): `POST /v3/projects/<project>/timeSeries:query` with
//!   `{"query": <MQL>}` and a bearer token; the answer `{"timeSeriesDescriptor",
//!   "timeSeriesData": [{"labelValues", "pointData": [{"values": [{"doubleValue"}],
//!   "timeInterval"}]}]}`; errors in Google's shape `{"error": {"code", "message", "status"}}`
//!   (401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 400 INVALID_ARGUMENT for an empty or bad
//!   query, 429 RESOURCE_EXHAUSTED).
//!
//! The JWT's signature is checked with the service account's public key.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as Shared};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Answer, State};

pub const PROJECT: &str = "flagger-demo";
pub const CLIENT_EMAIL: &str = "flagger@flagger-demo.iam.gserviceaccount.com";
const ACCESS_TOKEN: &str = "ya29.fake-access-token";

#[derive(Clone)]
pub struct Gcp {
    pub state: State,
    /// The service account's public key (DER, PKCS#1), to check assertions.
    public_key: std::sync::Arc<Vec<u8>>,
}

/// A throwaway RSA key made for the tests (PKCS#8 PEM and its PKCS#1 DER public key).
pub fn test_key() -> (String, Vec<u8>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let pem = dir.path().join("key.pem");
    let der = dir.path().join("pub.der");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs (Debian's openssl package)")
        .success()
        && std::process::Command::new("openssl")
            .args(["rsa", "-RSAPublicKey_out", "-outform", "DER", "-in"])
            .arg(&pem)
            .arg("-out")
            .arg(&der)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl runs")
            .success();
    assert!(ok, "openssl made a key");
    (
        std::fs::read_to_string(&pem).expect("key"),
        std::fs::read(&der).expect("public key"),
    )
}

impl Gcp {
    /// The fake, its address, and a service account key whose `token_uri` is the fake's.
    pub async fn start() -> (Gcp, String, String) {
        let (private_pem, public_der) = test_key();
        let gcp = Gcp {
            state: State::default(),
            public_key: std::sync::Arc::new(public_der),
        };
        let app = Router::new()
            .route("/token", post(token))
            .route("/v3/projects/{project}/timeSeries:query", post(query))
            .with_state(gcp.clone());
        let addr = super::serve(app).await;
        let url = format!("http://{addr}");
        let key = serde_json::json!({
            "type": "service_account",
            "project_id": PROJECT,
            "private_key_id": "0123456789abcdef",
            "private_key": private_pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000000",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": format!("{url}/token"),
        });
        (gcp, url, key.to_string())
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

fn google_error(code: StatusCode, status: &str, message: &str) -> Response {
    json(
        code,
        serde_json::json!({"error": {"code": code.as_u16(), "message": message, "status": status}}),
    )
}

/// Checks an RS256 JWT assertion: signature, issuer, audience, scope.
fn check_assertion(gcp: &Gcp, jwt: &str, token_uri: &str) -> Result<(), String> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // Google's token endpoint takes segments with or without base64 padding; the signature
    // covers them as sent.
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("not a JWT".into());
    };
    let signature = b64
        .decode(signature.trim_end_matches('='))
        .map_err(|e| e.to_string())?;
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        gcp.public_key.as_slice(),
    );
    key.verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| "Invalid JWT Signature.".to_string())?;
    let claims: serde_json::Value = serde_json::from_slice(
        &b64.decode(claims.trim_end_matches('='))
            .map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    if claims["iss"] != CLIENT_EMAIL {
        return Err("Invalid issuer".into());
    }
    if claims["aud"] != token_uri {
        return Err(
            "Invalid JWT: Token must be a short-lived token and in a reasonable timeframe".into(),
        );
    }
    if !claims["scope"]
        .as_str()
        .is_some_and(|s| s.contains("https://www.googleapis.com/auth/monitoring"))
    {
        return Err("Invalid scope".into());
    }
    Ok(())
}

async fn token(
    Shared(gcp): Shared<Gcp>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = super::seen(&method, &uri, &headers, &body);
    gcp.state.record(seen.clone());
    let form: std::collections::BTreeMap<String, String> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let token_uri = format!("http://{host}/token");
    let grant = form.get("grant_type").map(String::as_str);
    let checked = match (grant, form.get("assertion")) {
        (Some("urn:ietf:params:oauth:grant-type:jwt-bearer"), Some(jwt)) => {
            check_assertion(&gcp, jwt, &token_uri)
        }
        _ => Err("Invalid grant_type".into()),
    };
    match checked {
        Ok(()) => json(
            StatusCode::OK,
            serde_json::json!({"access_token": ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
        ),
        Err(why) => json(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"error": "invalid_grant", "error_description": why}),
        ),
    }
}

async fn query(
    Shared(gcp): Shared<Gcp>,
    Path(project): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = super::seen(&method, &uri, &headers, &body);
    gcp.state.record(seen.clone());
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {ACCESS_TOKEN}"))
    {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    }
    if project != PROJECT {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            &format!(
                "Permission monitoring.timeSeries.list denied (or the resource may not exist) in project {project}."
            ),
        );
    }
    let mql = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|b| b.get("query").and_then(|q| q.as_str()).map(str::to_string))
        .unwrap_or_default();
    if mql.trim().is_empty() {
        return google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Field query had an invalid value: Query must not be empty.",
        );
    }
    let series = |values: serde_json::Value| {
        serde_json::json!({
            "timeSeriesDescriptor": {
                "labelDescriptors": [{"key": "resource.project_id"}],
                "pointDescriptors": [{"key": "value.ratio", "valueType": "DOUBLE", "metricKind": "GAUGE"}],
            },
            "timeSeriesData": [{
                "labelValues": [{"stringValue": PROJECT}],
                "pointData": [{"values": values, "timeInterval": {"startTime": "2024-01-01T00:00:00Z", "endTime": "2024-01-01T00:01:00Z"}}],
            }],
        })
    };
    match gcp.state.answer() {
        Answer::Value(v) => json(
            StatusCode::OK,
            series(serde_json::json!([{"doubleValue": v}])),
        ),
        Answer::Null => json(StatusCode::OK, series(serde_json::json!([]))),
        Answer::Empty => json(
            StatusCode::OK,
            serde_json::json!({"timeSeriesDescriptor": {"labelDescriptors": [], "pointDescriptors": []}}),
        ),
        Answer::BadQuery => google_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Line 1, column 1: Expected a table operation; found 'fetc'.",
        ),
        Answer::RateLimited => google_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            "Quota exceeded for quota metric 'Time series queries' of service 'monitoring.googleapis.com'.",
        ),
    }
}
