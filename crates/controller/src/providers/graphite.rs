//! The Graphite provider (reference §5.4): the render API, `GET <address path>/render?<query>&
//! format=json`, where the query is a raw URL query string (`target=...&from=-1min`) with its
//! whitespace collapsed; basic auth from the Secret's `username` and `password`. The value is
//! the last non-null datapoint across every returned series. The availability check renders
//! `target=test`, for which "no values" is a good answer.

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub struct Graphite {
    url: reqwest::Url,
    credentials: Option<(String, String)>,
    http: reqwest::Client,
}

impl Graphite {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let url = http::url_address("graphite", setup.spec.address.as_deref())?;
        let credentials = match setup.spec.secret_ref {
            None => None,
            Some(_) => Some((
                http::secret_key(setup.secret, "username", || {
                    "graphite credentials does not contain a username".into()
                })?,
                http::secret_key(setup.secret, "password", || {
                    "graphite credentials does not contain a password".into()
                })?,
            )),
        };
        Ok(Box::new(Graphite {
            url,
            credentials,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    /// The render URL of a query: the address's path joined with `render`, the query's own
    /// parameters (in their order) and `format=json` (replacing any the query has).
    fn render_url(&self, query: &str) -> reqwest::Url {
        let query = http::collapse_whitespace(query);
        let mut url = self.url.clone();
        let path = format!("{}/render", url.path().trim_end_matches('/'));
        url.set_path(&path);
        let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
            .filter(|(k, _)| k != "format")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.set_query(None);
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in &pairs {
                q.append_pair(k, v);
            }
            q.append_pair("format", "json");
        }
        url
    }

    /// The render API's answer to a query: the body of a success.
    async fn render(&self, query: &str) -> Result<String, ProviderError> {
        let mut request = self.http.get(self.render_url(query));
        if let Some((user, password)) = &self.credentials
            && !user.is_empty()
            && !password.is_empty()
        {
            request = request.basic_auth(user, Some(password));
        }
        let (status, body) = http::send(request, self.url.as_str()).await?;
        if status.as_u16() >= 400 {
            return Err(ProviderError::answered(
                status,
                http::error_response(status, None, &body),
            ));
        }
        Ok(body)
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        read(&self.render(query).await?)
    }

    async fn online(&self) -> Result<(), ProviderError> {
        let body = self
            .render("target=test")
            .await
            .map_err(|e| e.context("running query failed: "))?;
        match read(&body) {
            Ok(_) | Err(QueryError::NoValues(_)) => Ok(()),
            Err(QueryError::Failed(e)) => Err(ProviderError::provider(format!(
                "running query failed: {e}"
            ))),
        }
    }
}

impl MetricsProvider for Graphite {
    fn name(&self) -> &'static str {
        "graphite"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    datapoints: Vec<(serde_json::Value, serde_json::Value)>,
}

/// A datapoint's value: a number, a numeric string, or null (no data in that bucket).
fn value(v: &serde_json::Value) -> Result<Option<f64>, QueryError> {
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Number(n) => Ok(n.as_f64()),
        serde_json::Value::String(s) => s
            .parse::<f64>()
            .map(Some)
            .map_err(|e| QueryError::Failed(format!("invalid datapoint value {s:?}: {e}"))),
        other => Err(QueryError::Failed(format!(
            "invalid datapoint value {other}"
        ))),
    }
}

fn read(body: &str) -> Result<f64, QueryError> {
    let series: Vec<Series> = serde_json::from_str(body)
        .map_err(|e| QueryError::Failed(format!("error unmarshaling result: {e}")))?;
    let mut last = None;
    for s in &series {
        for (v, _) in &s.datapoints {
            if let Some(v) = value(v)?
                && !v.is_nan()
            {
                last = Some(v);
            }
        }
    }
    last.ok_or_else(|| QueryError::NoValues("no values found".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webhook::Clients;

    #[test]
    fn takes_the_last_non_null_datapoint_of_all_series() {
        let body = r#"[{"target":"a","tags":{"name":"a"},"datapoints":[[1.0,1700000000],[null,1700000010]]},
                       {"target":"b","tags":{"name":"b"},"datapoints":[[2.5,1700000000],["3.5",1700000010],[null,1700000020]]}]"#;
        assert_eq!(read(body), Ok(3.5));
    }

    #[test]
    fn nothing_but_nulls_is_no_values() {
        for body in [
            "[]",
            r#"[{"target":"a","datapoints":[[null,1700000000]]}]"#,
            r#"[{"target":"a","datapoints":[]}]"#,
        ] {
            assert_eq!(
                read(body),
                Err(QueryError::NoValues("no values found".into())),
                "{body}"
            );
        }
    }

    #[test]
    fn the_render_url_keeps_the_address_path_and_the_query() {
        let clients = Clients::new().expect("clients");
        let g = Graphite {
            url: reqwest::Url::parse("http://graphite:8080/graphite/").expect("url"),
            credentials: None,
            http: clients.verified,
        };
        let url = g.render_url(
            "target=summarize(\n  sumSeries(app.*.requests), '1min', 'sum')\n&from=-1min&format=raw",
        );
        assert_eq!(
            url.as_str(),
            "http://graphite:8080/graphite/render?target=summarize%28+sumSeries%28app.*.requests%29%2C+%271min%27%2C+%27sum%27%29+&from=-1min&format=json"
        );
    }
}
