//! Redaction of credentials in text meant for people: log lines, Kubernetes Events, status
//! conditions and command-line output.
//!
//! Credentials reach such text inside URLs (user info, query parameters such as
//! `access_token`, `key` or `sig`, and the paths of chat webhooks, which are the credential
//! themselves), inside headers (`Authorization`, `X-Api-Key`, `DD-API-KEY`, ...), and inside
//! error texts that quote either (an HTTP client's error names the URL it failed on).
//!
//! - [`url`] hides what a URL may carry and keeps what helps to diagnose (scheme, host, port,
//!   the path of ordinary URLs);
//! - [`credential_url`] is for URLs that are a credential as a whole (an alert provider's
//!   address, `-slack-url`): only scheme, host and port remain;
//! - [`header`] hides the value of a header that carries a credential;
//! - [`text`] finds URLs, `Bearer`/`Basic` credentials, credential headers (`Name: value`) and
//!   credential parameters (`name=value`) in free text and hides them; it is the last line of
//!   defence applied to every log line and event, the functions above are for the places that
//!   format a URL or a header on purpose.
//!
//! Redaction errs on the side of hiding: a parameter named like a key (`monkey=1`) loses its
//! value too.

use std::borrow::Cow;

/// What replaces a hidden value.
pub const MASK: &str = "REDACTED";

/// Hosts whose webhook URLs are credentials in their path (Slack, Microsoft Teams and Power
/// Automate, Discord, Google Chat).
const WEBHOOK_HOSTS: &[&str] = &[
    "hooks.slack.com",
    "outlook.office.com",
    "outlook.office365.com",
    "discord.com",
    "discordapp.com",
    "chat.googleapis.com",
];

/// Host suffixes of the same kind (`<tenant>.webhook.office.com`, Power Automate's
/// `<region>.logic.azure.com`, Discord's `ptb.`/`canary.` hosts).
const WEBHOOK_HOST_SUFFIXES: &[&str] = &[
    ".webhook.office.com",
    ".logic.azure.com",
    ".discord.com",
    ".hooks.slack.com",
];

/// Path segments after which any webhook's path is a credential (`/hooks/<id>/<token>` of
/// Rocket.Chat and most self-hosted services, `/webhook/...`, `/webhookb2/...`).
const WEBHOOK_SEGMENTS: &[&str] = &["hooks", "hook", "webhook", "webhooks", "webhookb2"];

/// Headers that carry credentials, lower case.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "apikey",
    "dd-api-key",
    "dd-application-key",
    "x-query-key",
    "x-insert-key",
    "api-token",
    "x-sf-token",
    "x-auth-token",
    "x-access-token",
    "private-token",
    "x-vault-token",
    "x-amz-security-token",
    "x-goog-api-key",
    "x-honeycomb-team",
    "token",
    "password",
    "secret",
];

/// Whether a header (any case) carries a credential.
pub fn is_secret_header(name: &str) -> bool {
    let n = name.trim().to_ascii_lowercase();
    SECRET_HEADERS.contains(&n.as_str())
        || [
            "-token",
            "_token",
            "-api-key",
            "_api_key",
            "-secret",
            "-password",
        ]
        .iter()
        .any(|s| n.ends_with(s))
}

/// Whether a query parameter or a `name=value` pair (any case, `-`, `_`, `.` and leading
/// dashes ignored) carries a credential: `access_token`, `token`, `key`, `apikey`, `sig`,
/// `password`, `X-Amz-Signature`, `client_secret`, ...
pub fn is_secret_param(name: &str) -> bool {
    let n: String = name
        .trim_start_matches('-')
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .map(|c| c.to_ascii_lowercase())
        .collect();
    matches!(
        n.as_str(),
        "sig" | "key" | "auth" | "pass" | "pwd" | "passwd" | "session" | "sessionid" | "jwt"
    ) || [
        "token",
        "apikey",
        "secret",
        "password",
        "signature",
        "credential",
        "credentials",
    ]
    .iter()
    .any(|s| n.ends_with(s))
}

/// A header as it may be shown: its value hidden when it carries a credential.
pub fn header(name: &str, value: &str) -> String {
    if is_secret_header(name) {
        MASK.to_string()
    } else {
        text(value).into_owned()
    }
}

fn is_webhook_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    WEBHOOK_HOSTS.contains(&host.as_str())
        || WEBHOOK_HOST_SUFFIXES.iter().any(|s| host.ends_with(s))
}

/// A URL as it may be shown: user info, credential parameters, the fragment and the path of
/// chat webhooks hidden. Text that does not parse as a URL goes through [`text`].
pub fn url(raw: &str) -> String {
    let Ok(mut u) = url::Url::parse(raw) else {
        return text_without_urls(raw).into_owned();
    };
    let mut changed = false;
    if !u.username().is_empty() || u.password().is_some() {
        let _ = u.set_password(None);
        let _ = u.set_username(MASK);
        changed = true;
    }
    if u.has_host() {
        let segments: Vec<String> = u
            .path_segments()
            .map(|s| s.map(str::to_string).collect())
            .unwrap_or_default();
        let webhook_host = u.host_str().is_some_and(is_webhook_host);
        let cut = if webhook_host {
            Some(0)
        } else {
            segments
                .iter()
                .position(|s| WEBHOOK_SEGMENTS.contains(&s.to_ascii_lowercase().as_str()))
                .map(|i| i + 1)
                .filter(|&i| i < segments.len())
        };
        if let Some(keep) = cut
            && segments.iter().skip(keep).any(|s| !s.is_empty())
        {
            let mut path: String = segments[..keep].iter().map(|s| format!("/{s}")).collect();
            path.push('/');
            path.push_str(MASK);
            u.set_path(&path);
            changed = true;
        }
    }
    if let Some(query) = u.query() {
        let mut any = false;
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .map(|(k, v)| {
                if is_secret_param(&k) {
                    any = true;
                    (k.into_owned(), MASK.to_string())
                } else if v.contains("://") || v.contains('=') {
                    let hidden = text(&v);
                    any |= hidden != v;
                    (k.into_owned(), hidden.into_owned())
                } else {
                    (k.into_owned(), v.into_owned())
                }
            })
            .collect();
        if any {
            let mut ser = url::form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                ser.append_pair(k, v);
            }
            u.set_query(Some(&ser.finish()));
            changed = true;
        }
    }
    if u.fragment().is_some_and(|f| !f.is_empty()) {
        u.set_fragment(Some(MASK));
        changed = true;
    }
    if changed {
        u.to_string()
    } else {
        raw.to_string()
    }
}

/// A URL that is a credential as a whole (an alert provider's address, a webhook from a
/// Secret): only its scheme, host and port are shown.
pub fn credential_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(u) if u.has_host() => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            let host = u.host_str().unwrap_or_default();
            let rest = if u.path().trim_matches('/').is_empty() && u.query().is_none() {
                ""
            } else {
                "/REDACTED"
            };
            let user = if u.username().is_empty() && u.password().is_none() {
                ""
            } else {
                "REDACTED@"
            };
            format!("{}://{user}{host}{port}{rest}", u.scheme())
        }
        _ => MASK.to_string(),
    }
}

/// Characters that end a URL in free text.
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '"' | '\'' | '<' | '>' | '`' | '\\' | '|' | '^' | '{' | '}'
        )
}

/// The URLs in `s`, as byte ranges: `scheme://...` up to whitespace or a quote, without
/// trailing punctuation or an unbalanced closing bracket.
fn find_urls(s: &str) -> Vec<(usize, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(pos) = s[from..].find("://").map(|p| p + from) {
        let mut start = pos;
        while start > 0
            && (b[start - 1].is_ascii_alphanumeric() || matches!(b[start - 1], b'+' | b'.' | b'-'))
        {
            start -= 1;
        }
        // The scheme begins with a letter.
        while start < pos && !b[start].is_ascii_alphabetic() {
            start += 1;
        }
        let mut end = s[pos + 3..]
            .char_indices()
            .find(|&(_, c)| ends_url(c))
            .map_or(s.len(), |(i, _)| pos + 3 + i);
        loop {
            let tail = &s[start..end];
            let Some(last) = tail.chars().last() else {
                break;
            };
            let unbalanced = |open: char, close: char| {
                last == close && tail.matches(close).count() > tail.matches(open).count()
            };
            if matches!(last, '.' | ',' | ';' | ':' | '!' | '?')
                || unbalanced('(', ')')
                || unbalanced('[', ']')
            {
                end -= last.len_utf8();
            } else {
                break;
            }
        }
        if start < pos && end > pos + 3 {
            out.push((start, end));
        }
        from = end.max(pos + 3);
    }
    out
}

/// Free text with every credential found hidden: URLs through [`url`], `Bearer`/`Basic`
/// credentials, credential headers written `Name: value` and parameters written
/// `name=value`.
pub fn text(s: &str) -> Cow<'_, str> {
    if !s.contains("://") {
        return text_without_urls(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (start, end) in find_urls(s) {
        out.push_str(&text_without_urls(&s[last..start]));
        out.push_str(&url(&s[start..end]));
        last = end;
    }
    out.push_str(&text_without_urls(&s[last..]));
    if out == s {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(out)
    }
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
}

/// The end of a value that starts at `from`: the matching quote when it is quoted, else the
/// first character in `stops`.
fn value_end(s: &str, from: usize, stops: &[u8]) -> (usize, usize) {
    let b = s.as_bytes();
    match b.get(from) {
        Some(&q @ (b'"' | b'\'')) => {
            let end = s[from + 1..]
                .find(q as char)
                .map_or(s.len(), |i| from + 1 + i);
            (from + 1, end)
        }
        _ => {
            let end = b[from..]
                .iter()
                .position(|c| c.is_ascii_whitespace() || stops.contains(c))
                .map_or(s.len(), |i| from + i);
            (from, end)
        }
    }
}

/// A value that stands for a credential in documentation or a message (`<token>`,
/// `Bearer <token>`), not one.
fn is_placeholder(value: &str) -> bool {
    let v = value.trim();
    let v = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("Basic "))
        .unwrap_or(v);
    v.starts_with('<')
}

/// [`text`] for a text in which URLs were already handled.
fn text_without_urls(s: &str) -> Cow<'_, str> {
    let b = s.as_bytes();
    // (start, end) byte ranges to hide, in order, not overlapping.
    let mut hide: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let word_start = i == 0 || !is_name_char(b[i - 1]);
        // `Bearer <token>` / `Basic <credentials>` (a credential of 8 characters or more, so
        // that "a bearer token" stays readable).
        if word_start && (c == b'b' || c == b'B') {
            let lower = s[i..].get(..7).map(str::to_ascii_lowercase);
            let skip = match lower.as_deref() {
                Some("bearer ") => Some(7),
                Some(l) if l.starts_with("basic ") => Some(6),
                _ => None,
            };
            if let Some(skip) = skip {
                let from = i + skip;
                let len = b[from..]
                    .iter()
                    .take_while(|&&c| {
                        c.is_ascii_alphanumeric()
                            || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
                    })
                    .count();
                if len >= 8 {
                    hide.push((from, from + len));
                    i = from + len;
                    continue;
                }
            }
        }
        if word_start && is_name_char(c) {
            let name_len = b[i..].iter().take_while(|&&c| is_name_char(c)).count();
            let name = &s[i..i + name_len];
            let after = i + name_len;
            match b.get(after) {
                Some(b'=') if is_secret_param(name) => {
                    let (from, end) = value_end(s, after + 1, b"&,;)\"'");
                    if end > from && !is_placeholder(&s[from..end]) {
                        hide.push((from, end));
                    }
                    i = end.max(after + 1);
                    continue;
                }
                Some(b':')
                    if is_secret_header(name) && matches!(b.get(after + 1), Some(b' ' | b'\t')) =>
                {
                    let mut from = after + 1;
                    while matches!(b.get(from), Some(b' ' | b'\t')) {
                        from += 1;
                    }
                    let (from, end) = match b.get(from) {
                        Some(b'"' | b'\'') => value_end(s, from, b""),
                        _ => {
                            // The rest of the line, up to a quote that closes the header,
                            // without a closing bracket that belongs to the text around.
                            let mut end = b[from..]
                                .iter()
                                .position(|&c| matches!(c, b'\n' | b'\r' | b'"' | b'\''))
                                .map_or(s.len(), |p| from + p);
                            while end > from
                                && b[end - 1] == b')'
                                && s[from..end].matches('(').count()
                                    < s[from..end].matches(')').count()
                            {
                                end -= 1;
                            }
                            (from, end)
                        }
                    };
                    if end > from && !is_placeholder(&s[from..end]) {
                        hide.push((from, end));
                    }
                    i = end.max(after + 1);
                    continue;
                }
                _ => {}
            }
            i = after;
            continue;
        }
        i += 1;
    }
    if hide.is_empty() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut last = 0;
    for (from, end) in hide {
        out.push_str(&s[last..from]);
        out.push_str(MASK);
        last = end;
    }
    out.push_str(&s[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_what_helps_and_lose_credentials() {
        assert_eq!(
            url("http://flagger-loadtester.test/?access_token=s3cret&x=1"),
            "http://flagger-loadtester.test/?access_token=REDACTED&x=1"
        );
        assert_eq!(
            url("https://user:pass@prometheus.example:9090/api/v1/query?query=up"),
            "https://REDACTED@prometheus.example:9090/api/v1/query?query=up"
        );
        assert_eq!(
            url("https://hooks.slack.com/services/T000/B000/XXXX"),
            "https://hooks.slack.com/REDACTED"
        );
        assert_eq!(
            url("https://discord.com/api/webhooks/123/abc"),
            "https://discord.com/REDACTED"
        );
        assert_eq!(
            url("https://acme.webhook.office.com/webhookb2/uuid@uuid/IncomingWebhook/x/y"),
            "https://acme.webhook.office.com/REDACTED"
        );
        assert_eq!(
            url("https://chat.googleapis.com/v1/spaces/AAA/messages?key=k&token=t"),
            "https://chat.googleapis.com/REDACTED?key=REDACTED&token=REDACTED"
        );
        assert_eq!(
            url(
                "https://prod.westus.logic.azure.com/workflows/1/triggers/manual/paths/invoke?api-version=1&sp=%2Fx&sv=1.0&sig=abc"
            ),
            "https://prod.westus.logic.azure.com/REDACTED?api-version=1&sp=%2Fx&sv=1.0&sig=REDACTED"
        );
        assert_eq!(
            url("https://rocket.example.com/hooks/id/token"),
            "https://rocket.example.com/hooks/REDACTED"
        );
        assert_eq!(
            url("https://s3.example.com/b/o?X-Amz-Credential=a&X-Amz-Signature=b&X-Amz-Date=c"),
            "https://s3.example.com/b/o?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Date=c"
        );
        // Ordinary URLs are left exactly as they were.
        for plain in [
            "http://podinfo-canary.test:9898/",
            "http://127.0.0.1:6443/api/v1/namespaces/test/services/podinfo",
            "http://prometheus:9090/api/v1/query?query=sum(rate(x%7Ba%3D%22b%22%7D%5B1m%5D))",
            "https://example.com/hooks",
        ] {
            assert_eq!(url(plain), plain);
        }
        // A URL inside a parameter is redacted too.
        assert_eq!(
            url("http://a/?next=http://b/?token=t"),
            "http://a/?next=http%3A%2F%2Fb%2F%3Ftoken%3DREDACTED"
        );
        assert_eq!(
            url("https://x.example/#access_token=t"),
            "https://x.example/#REDACTED"
        );
    }

    #[test]
    fn credential_urls_show_only_where_they_go() {
        assert_eq!(
            credential_url("https://hooks.slack.com/services/T/B/X"),
            "https://hooks.slack.com/REDACTED"
        );
        assert_eq!(
            credential_url("http://user:pw@127.0.0.1:8080/x?y=z"),
            "http://REDACTED@127.0.0.1:8080/REDACTED"
        );
        assert_eq!(
            credential_url("http://127.0.0.1:8080"),
            "http://127.0.0.1:8080"
        );
        assert_eq!(credential_url("not a url SECRET"), "REDACTED");
    }

    #[test]
    fn headers() {
        assert_eq!(header("Authorization", "Bearer abc"), "REDACTED");
        assert_eq!(header("dd-api-key", "abc"), "REDACTED");
        for h in [
            "X-Api-Key",
            "DD-API-KEY",
            "X-Query-Key",
            "Api-Token",
            "X-SF-Token",
            "Cookie",
            "X-Custom-Token",
        ] {
            assert!(is_secret_header(h), "{h}");
        }
        assert_eq!(
            header("Content-Type", "application/json"),
            "application/json"
        );
    }

    #[test]
    fn free_text() {
        let cases = [
            (
                "error sending request for url (http://lt.test/?access_token=MARKER): connection refused",
                "error sending request for url (http://lt.test/?access_token=REDACTED): connection refused",
            ),
            (
                "POST https://hooks.slack.com/services/T/B/MARKER, giving up.",
                "POST https://hooks.slack.com/REDACTED, giving up.",
            ),
            (
                "hey -H 'Authorization: Bearer MARKERMARKER' http://podinfo:9898/",
                "hey -H 'Authorization: REDACTED' http://podinfo:9898/",
            ),
            (
                "curl -H \"X-Api-Key: MARKER\" -d x http://a/",
                "curl -H \"X-Api-Key: REDACTED\" -d x http://a/",
            ),
            ("Bearer abcdefghijkl", "Bearer REDACTED"),
            (
                "TOKEN=MARKER ./run --password='MARKER two'",
                "TOKEN=REDACTED ./run --password='REDACTED'",
            ),
            ("api_key=MARKER&x=1", "api_key=REDACTED&x=1"),
            (
                "DD-API-KEY: MARKER\nnext line",
                "DD-API-KEY: REDACTED\nnext line",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), want, "{input}");
        }
        // Text without credentials is returned as it is, without a copy.
        for plain in [
            "Unauthorized: a valid bearer token is required (Authorization: Bearer <token>)",
            "Advance podinfo.test canary weight 10",
            "Halt advancement no values found for istio metric request-success-rate",
            "labelSelector app=podinfo, key missing",
            "secret podinfo.test has no address key",
            "",
        ] {
            assert!(matches!(text(plain), Cow::Borrowed(_)), "{plain}");
        }
    }

    #[test]
    fn urls_end_where_text_resumes() {
        assert_eq!(
            find_urls("see (http://a/b?x=1). and https://c/d, then ftp://e)"),
            vec![(5, 19), (26, 37), (44, 51)]
        );
        assert_eq!(find_urls("no scheme ://x"), vec![]);
        assert_eq!(
            text("\"url\":\"http://u:p@h/\",\"x\":1"),
            "\"url\":\"http://REDACTED@h/\",\"x\":1"
        );
    }
}
