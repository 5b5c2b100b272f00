//! A fake of AWS STS and CloudWatch, after AWS's API references:
//!
//! * STS "AssumeRoleWithWebIdentity" (docs.aws.amazon.com/STS/latest/APIReference/
//!   API_AssumeRoleWithWebIdentity.html): the Query protocol (`POST /` with a form of `Action`,
//!   `Version=2011-06-15`, `RoleArn`, `RoleSessionName`, `WebIdentityToken`), unsigned; the XML
//!   answer `<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>
//!   <AccessKeyId/><SecretAccessKey/><SessionToken/><Expiration/>...`, or
//!   `<ErrorResponse><Error><Type>Sender</Type><Code>InvalidIdentityToken</Code>...` (400).
//! * CloudWatch "GetMetricData" (docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/
//!   API_GetMetricData.html) over the AWS JSON 1.0 protocol (`X-Amz-Target:
//!   GraniteServiceVersion20100801.GetMetricData`, `Content-Type: application/x-amz-json-1.0`):
//!   `{"MetricDataQueries", "StartTime", "EndTime", "MaxDatapoints"}`, answered by
//!   `{"MetricDataResults": [{"Id", "Label", "Timestamps", "Values", "StatusCode"}],
//!   "Messages": []}`; errors `{"__type", "message"}`: 400 `InvalidParameterValue` or
//!   `ValidationError`, 400 `Throttling` ("Rate exceeded"), 403 `MissingAuthenticationToken`,
//!   `SignatureDoesNotMatch`, `AccessDenied`.
//! * "Signature Version 4" (docs.aws.amazon.com/IAM/latest/UserGuide/reference_sigv-create-
//!   signed-request.html): the fake recomputes each request's signature with AWS's own signer
//!   (`aws-sigv4`) from the session credentials it issued and compares.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Shared;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use super::{Answer, State};

pub const ROLE_ARN: &str = "arn:aws:iam::111122223333:role/flagger";
pub const WEB_IDENTITY_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.sig";
pub const ACCESS_KEY_ID: &str = "ASIAFAKEFLAGGER00001";
pub const SECRET_ACCESS_KEY: &str = "fakeSecretAccessKey/0123456789abcdefghij";
pub const SESSION_TOKEN: &str = "FwoGZXIvYXdzEFAKESESSIONTOKEN";
pub const REGION: &str = "eu-west-1";

#[derive(Clone, Default)]
pub struct Aws {
    pub state: State,
}

impl Aws {
    pub async fn start() -> (Aws, String) {
        let aws = Aws::default();
        let app = Router::new()
            .route("/", post(dispatch))
            .with_state(aws.clone());
        let addr = super::serve(app).await;
        (aws, format!("http://{addr}"))
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/x-amz-json-1.0")],
        body.to_string(),
    )
        .into_response()
}

fn aws_error(status: StatusCode, code: &str, message: &str) -> Response {
    json(
        status,
        serde_json::json!({"__type": code, "message": message}),
    )
}

async fn dispatch(
    Shared(aws): Shared<Aws>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = super::seen(&method, &uri, &headers, &body);
    aws.state.record(seen.clone());
    match headers.get("x-amz-target").and_then(|t| t.to_str().ok()) {
        Some("GraniteServiceVersion20100801.GetMetricData") => {
            get_metric_data(&aws, &headers, &body)
        }
        Some(other) => aws_error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("unknown operation {other}"),
        ),
        None => sts(&body),
    }
}

fn sts(body: &[u8]) -> Response {
    let form: std::collections::BTreeMap<String, String> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let xml_error = |code: &str, message: &str| {
        (
            StatusCode::BAD_REQUEST,
            [("content-type", "text/xml")],
            format!(
                "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId></ErrorResponse>"
            ),
        )
            .into_response()
    };
    if form.get("Action").map(String::as_str) != Some("AssumeRoleWithWebIdentity")
        || form.get("Version").map(String::as_str) != Some("2011-06-15")
    {
        return xml_error("InvalidAction", "Could not find operation");
    }
    if form.get("RoleSessionName").is_none_or(|s| s.is_empty()) {
        return xml_error(
            "ValidationError",
            "1 validation error detected: Value null at 'roleSessionName'",
        );
    }
    if form.get("WebIdentityToken").map(String::as_str) != Some(WEB_IDENTITY_TOKEN) {
        return xml_error(
            "InvalidIdentityToken",
            "Couldn't retrieve verification key from your identity provider",
        );
    }
    if form.get("RoleArn").map(String::as_str) != Some(ROLE_ARN) {
        return xml_error(
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
        );
    }
    (
        StatusCode::OK,
        [("content-type", "text/xml")],
        format!(
            "<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>system:serviceaccount:flagger-system:flagger</SubjectFromWebIdentityToken><AssumedRoleUser><Arn>arn:aws:sts::111122223333:assumed-role/flagger/s</Arn><AssumedRoleId>AROACLKWSDQRAOEXAMPLE:s</AssumedRoleId></AssumedRoleUser><Credentials><SessionToken>{SESSION_TOKEN}</SessionToken><SecretAccessKey>{SECRET_ACCESS_KEY}</SecretAccessKey><Expiration>2099-01-01T00:00:00Z</Expiration><AccessKeyId>{ACCESS_KEY_ID}</AccessKeyId></Credentials><Provider>oidc.eks.eu-west-1.amazonaws.com</Provider><Audience>sts.amazonaws.com</Audience></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>ad4156e9-bce1-11e2-82e6-6b6efEXAMPLE</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>"
        ),
    )
        .into_response()
}

/// Recomputes the request's SigV4 signature with the credentials STS issued.
fn signature_matches(headers: &HeaderMap, body: &[u8]) -> Result<(), (&'static str, String)> {
    use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let authorization = h("authorization");
    let Some(rest) = authorization.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Err((
            "MissingAuthenticationTokenException",
            "Missing Authentication Token".into(),
        ));
    };
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|p| p.strip_prefix(&format!("{name}=")))
            .unwrap_or_default()
            .to_string()
    };
    let credential = field("Credential");
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.first() != Some(&ACCESS_KEY_ID) {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    if scope.get(2) != Some(&REGION) || scope.get(3) != Some(&"monitoring") {
        return Err((
            "SignatureDoesNotMatch",
            format!("Credential should be scoped to a valid region and service, not {credential}"),
        ));
    }
    if h("x-amz-security-token") != SESSION_TOKEN {
        return Err((
            "UnrecognizedClientException",
            "The security token included in the request is invalid.".into(),
        ));
    }
    let time = k8s_openapi::jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", h("x-amz-date"))
        .ok()
        .and_then(|d| d.to_zoned(k8s_openapi::jiff::tz::TimeZone::UTC).ok())
        .map(|z| std::time::SystemTime::from(z.timestamp()))
        .ok_or((
            "IncompleteSignatureException",
            "X-Amz-Date is missing or malformed".to_string(),
        ))?;
    let identity = aws_credential_types::Credentials::new(
        ACCESS_KEY_ID,
        SECRET_ACCESS_KEY,
        Some(SESSION_TOKEN.into()),
        None,
        "fake",
    )
    .into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(REGION)
        .name("monitoring")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("signing params")
        .into();
    let signed_headers: Vec<(&str, &str)> = ["content-type", "x-amz-target"]
        .into_iter()
        .map(|n| (n, h(n)))
        .collect();
    let uri = format!("http://{}/", h("host"));
    let signable = SignableRequest::new(
        "POST",
        &uri,
        signed_headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .expect("signable");
    let (_, expected) = sign(signable, &params).expect("sign").into_parts();
    if field("Signature") != expected {
        return Err((
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.".into(),
        ));
    }
    Ok(())
}

fn get_metric_data(aws: &Aws, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Err((code, message)) = signature_matches(headers, body) {
        return aws_error(StatusCode::FORBIDDEN, code, &message);
    }
    let input: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let queries = input["MetricDataQueries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let (Some(start), Some(end)) = (input["StartTime"].as_f64(), input["EndTime"].as_f64()) else {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "The parameters StartTime and EndTime are required.",
        );
    };
    if queries.is_empty() || end <= start {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            "The value for parameter StartTime must be before EndTime, and MetricDataQueries must not be empty.",
        );
    }
    if queries.iter().any(|q| {
        q["Id"]
            .as_str()
            .is_none_or(|id| id.is_empty() || !id.starts_with(|c: char| c.is_ascii_lowercase()))
    }) {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "The value for parameter MetricDataQueries.member.1.Id must start with a lowercase letter.",
        );
    }
    let ids: Vec<String> = queries
        .iter()
        .filter(|q| q["ReturnData"].as_bool() != Some(false))
        .filter_map(|q| q["Id"].as_str().map(str::to_string))
        .collect();
    let result = |values: Vec<f64>| {
        let n = values.len() as f64;
        json(
            StatusCode::OK,
            serde_json::json!({
                "MetricDataResults": ids.iter().map(|id| serde_json::json!({
                    "Id": id,
                    "Label": id,
                    "Timestamps": (0..values.len()).map(|i| end - 60.0 * (i as f64 + 1.0 - n + n)).collect::<Vec<_>>(),
                    "Values": values,
                    "StatusCode": "Complete",
                })).collect::<Vec<_>>(),
                "Messages": [],
            }),
        )
    };
    match aws.state.answer() {
        // Newest first: the provider reads the first value.
        Answer::Value(v) => result(vec![v, v * 2.0 + 10.0]),
        Answer::Null | Answer::Empty => result(vec![]),
        Answer::BadQuery => aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "Error in expression 'e3': Unrecognized token",
        ),
        Answer::RateLimited => aws_error(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded"),
    }
}
