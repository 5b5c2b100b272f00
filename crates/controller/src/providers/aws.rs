//! AWS credentials for the CloudWatch provider: the standard chain of the AWS SDKs, in their
//! order, read from the controller's environment:
//!
//! 1. `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (/ `AWS_SESSION_TOKEN`);
//! 2. web identity (IRSA on EKS): `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN`
//!    (`AWS_ROLE_SESSION_NAME`), exchanged at STS by `AssumeRoleWithWebIdentity`;
//! 3. the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`),
//!    profile `AWS_PROFILE` (else `default`);
//! 4. container credentials (ECS task roles, EKS Pod Identity):
//!    `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`, or `AWS_CONTAINER_CREDENTIALS_FULL_URI` with
//!    `AWS_CONTAINER_AUTHORIZATION_TOKEN(_FILE)`;
//! 5. the EC2 instance metadata service (IMDSv2), unless `AWS_EC2_METADATA_DISABLED=true`
//!    (`AWS_EC2_METADATA_SERVICE_ENDPOINT` moves it).
//!
//! Endpoints follow the SDKs' variables too: `AWS_ENDPOINT_URL_STS`, `AWS_ENDPOINT_URL`.
//!
//! Why by hand: the AWS SDK for Rust's `aws-config` brings the STS, SSO and SSO-OIDC clients
//! and a second HTTP stack into the build for these five sources; signing, the part that is
//! hard to get right, is AWS's own `aws-sigv4` (see [`super::cloudwatch`]). Not read here:
//! SSO profiles, `credential_process` and role chaining in `~/.aws/config`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_credential_types::Credentials;

/// The variables the chain reads: the process's, or given ones (tests).
#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The controller's environment.
    pub fn process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    /// Given variables.
    pub fn from_vars<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// How long a metadata or container-credentials endpoint may take (the SDKs' 1 s).
const LOCAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Resolves credentials through the chain; the error says what every source lacked.
pub async fn credentials(
    env: &Env,
    region: &str,
    http: &reqwest::Client,
) -> Result<Credentials, String> {
    let mut tried = Vec::new();
    // 1. Environment.
    match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => {
            return Ok(Credentials::new(
                id,
                secret,
                env.get("AWS_SESSION_TOKEN").map(str::to_string),
                None,
                "environment",
            ));
        }
        _ => tried.push("no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"),
    }
    // 2. Web identity.
    match (
        env.get("AWS_WEB_IDENTITY_TOKEN_FILE"),
        env.get("AWS_ROLE_ARN"),
    ) {
        (Some(file), Some(role)) => return web_identity(env, region, http, file, role).await,
        _ => tried.push("no AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN"),
    }
    // 3. Shared credentials file.
    let profile = env.get("AWS_PROFILE").unwrap_or("default");
    let file = env
        .get("AWS_SHARED_CREDENTIALS_FILE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            env.get("HOME")
                .map(|h| std::path::Path::new(h).join(".aws/credentials"))
        });
    if let Some(path) = file
        && let Ok(text) = std::fs::read_to_string(&path)
    {
        if let Some(c) = shared_credentials(&text, profile) {
            return Ok(c);
        }
        tried.push("no keys for the profile in the shared credentials file");
    } else {
        tried.push("no shared credentials file");
    }
    // 4. Container credentials.
    let container = match (
        env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Some(relative), _) => Some(format!("http://169.254.170.2{relative}")),
        (None, Some(full)) => Some(full.to_string()),
        _ => None,
    };
    if let Some(url) = container {
        let mut request = http.get(&url).timeout(LOCAL_TIMEOUT);
        let token = match env.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
            Some(f) => std::fs::read_to_string(f)
                .ok()
                .map(|t| t.trim().to_string()),
            None => env
                .get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
                .map(str::to_string),
        };
        if let Some(token) = token {
            request = request.header(reqwest::header::AUTHORIZATION, token);
        }
        return json_credentials(request, "container credentials").await;
    }
    tried.push("no container credentials");
    // 5. Instance metadata.
    if env
        .get("AWS_EC2_METADATA_DISABLED")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        tried.push("instance metadata disabled");
        return Err(format!("no AWS credentials found ({})", tried.join("; ")));
    }
    let imds = env
        .get("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or("http://169.254.169.254")
        .trim_end_matches('/')
        .to_string();
    instance_metadata(&imds, http).await.map_err(|e| {
        format!(
            "no AWS credentials found ({}; instance metadata: {e})",
            tried.join("; ")
        )
    })
}

/// IRSA: the projected service-account token exchanged for role credentials.
async fn web_identity(
    env: &Env,
    region: &str,
    http: &reqwest::Client,
    token_file: &str,
    role: &str,
) -> Result<Credentials, String> {
    let token = std::fs::read_to_string(token_file)
        .map_err(|e| format!("web identity token file {token_file}: {e}"))?;
    let endpoint = env
        .get("AWS_ENDPOINT_URL_STS")
        .or_else(|| env.get("AWS_ENDPOINT_URL"))
        .map(|e| e.trim_end_matches('/').to_string())
        .unwrap_or_else(|| {
            if region.is_empty() {
                "https://sts.amazonaws.com".to_string()
            } else {
                format!("https://sts.{region}.{}", dns_suffix(region))
            }
        });
    let session = env
        .get("AWS_ROLE_SESSION_NAME")
        .map(str::to_string)
        .unwrap_or_else(|| format!("flagger-rs-{}", super::http::now_unix().as_millis()));
    let request = http.post(format!("{endpoint}/")).form(&[
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role),
        ("RoleSessionName", session.as_str()),
        ("WebIdentityToken", token.trim()),
    ]);
    let (status, body) = super::http::send(request, &endpoint)
        .await
        .map_err(|e| format!("AssumeRoleWithWebIdentity: {e}"))?;
    if !status.is_success() {
        let code = xml_text(&body, "Code").unwrap_or_default();
        let message = xml_text(&body, "Message").unwrap_or_else(|| super::http::excerpt(&body));
        return Err(format!(
            "AssumeRoleWithWebIdentity for {role}: {status}: {code}: {message}"
        ));
    }
    let field = |name: &str| {
        xml_text(&body, name)
            .ok_or_else(|| format!("AssumeRoleWithWebIdentity: no {name} in the answer"))
    };
    Ok(Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        Some(field("SessionToken")?),
        None,
        "web identity",
    ))
}

/// `amazonaws.com`, or `amazonaws.com.cn` in the China regions.
pub fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// Credentials from an endpoint answering `{AccessKeyId, SecretAccessKey, Token, ...}`.
async fn json_credentials(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<Credentials, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what}: {}", super::http::cause(&e)))?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(format!("{what}: {status}: {}", super::http::excerpt(&body)));
    }
    let v: serde_json::Value =
        serde_json::from_str(&body).map_err(|e| format!("{what}: unreadable answer: {e}"))?;
    let field = |name: &str| {
        v.get(name)
            .and_then(|x| x.as_str())
            .map(str::to_string)
            .ok_or_else(|| format!("{what}: no {name} in the answer"))
    };
    Ok(Credentials::new(
        field("AccessKeyId")?,
        field("SecretAccessKey")?,
        v.get("Token").and_then(|t| t.as_str()).map(str::to_string),
        None,
        "container or instance",
    ))
}

/// IMDSv2: a session token, the instance role's name, then its credentials.
async fn instance_metadata(endpoint: &str, http: &reqwest::Client) -> Result<Credentials, String> {
    let token = http
        .put(format!("{endpoint}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        .timeout(LOCAL_TIMEOUT)
        .send()
        .await
        .map_err(|e| super::http::cause(&e))?
        .text()
        .await
        .map_err(|e| super::http::cause(&e))?;
    let base = format!("{endpoint}/latest/meta-data/iam/security-credentials/");
    let role = http
        .get(&base)
        .header("X-aws-ec2-metadata-token", &token)
        .timeout(LOCAL_TIMEOUT)
        .send()
        .await
        .map_err(|e| super::http::cause(&e))?
        .text()
        .await
        .map_err(|e| super::http::cause(&e))?;
    let role = role.lines().next().unwrap_or_default().trim().to_string();
    if role.is_empty() {
        return Err("the instance has no role".into());
    }
    json_credentials(
        http.get(format!("{base}{role}"))
            .header("X-aws-ec2-metadata-token", &token)
            .timeout(LOCAL_TIMEOUT),
        "instance metadata",
    )
    .await
}

/// The keys of `profile` in a shared credentials file.
pub fn shared_credentials(text: &str, profile: &str) -> Option<Credentials> {
    let mut in_profile = false;
    let mut keys: BTreeMap<String, String> = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            continue;
        }
        if in_profile && let Some((k, v)) = line.split_once('=') {
            keys.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    Some(Credentials::new(
        keys.get("aws_access_key_id")?,
        keys.get("aws_secret_access_key")?,
        keys.get("aws_session_token").cloned(),
        None,
        "shared credentials file",
    ))
}

/// The text of the first `<name>` element of an XML answer, entities decoded.
pub fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shared_file_gives_the_profiles_keys() {
        let text = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key=s1\n\n[ci]\nAWS_ACCESS_KEY_ID = AKIACI\naws_secret_access_key = s2\naws_session_token = t2\n";
        let c = shared_credentials(text, "ci").expect("ci");
        assert_eq!(c.access_key_id(), "AKIACI");
        assert_eq!(c.secret_access_key(), "s2");
        assert_eq!(c.session_token(), Some("t2"));
        assert_eq!(
            shared_credentials(text, "default").map(|c| c.access_key_id().to_string()),
            Some("AKIADEFAULT".into())
        );
        assert!(shared_credentials(text, "other").is_none());
    }

    #[test]
    fn xml_fields_are_read_and_unescaped() {
        let xml = "<R><Credentials><AccessKeyId>ASIA1</AccessKeyId><SessionToken>a&amp;b</SessionToken></Credentials></R>";
        assert_eq!(xml_text(xml, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_text(xml, "SessionToken").as_deref(), Some("a&b"));
        assert_eq!(xml_text(xml, "Missing"), None);
    }

    #[tokio::test]
    async fn environment_keys_come_first_and_a_disabled_chain_says_what_it_tried() {
        let http = reqwest::Client::new();
        let env = Env::from_vars([
            ("AWS_ACCESS_KEY_ID", "AKIAENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
        ]);
        let c = credentials(&env, "eu-west-1", &http).await.expect("env");
        assert_eq!(c.access_key_id(), "AKIAENV");
        let none = Env::from_vars([
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", "/nonexistent"),
        ]);
        let e = credentials(&none, "eu-west-1", &http).await.unwrap_err();
        assert_eq!(
            e,
            "no AWS credentials found (no AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; no AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN; no shared credentials file; no container credentials; instance metadata disabled)"
        );
    }
}
