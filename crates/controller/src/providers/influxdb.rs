//! The InfluxDB provider (reference §5.4): InfluxDB v2's query API with Flux,
//! `POST <address>/api/v2/query?org=<org>` with `Authorization: Token <token>` (both from the
//! Secret when `secretRef` is set) and the annotated-CSV dialect; the value is the `_value` of
//! the first record. The availability check runs
//! `from(bucket: "default") |> range(start: -2h)`.
//!
//! The answer is read by [`annotated_csv`], a small reader of Flux's annotated CSV on top of
//! the `csv` crate: no maintained Rust crate reads it without also bringing a whole InfluxDB
//! client (and its own HTTP stack) with it.
//!
//! Two readings differ from Flagger's on purpose, both where Flagger would judge a check on a
//! number nobody measured: an answer without records is "no values" (Flagger returns 0 and
//! passes a `max` threshold), and `long`/`unsignedLong` values are numbers (Flagger refuses
//! anything but `double`).

use futures::future::BoxFuture;
use serde::Deserialize;

use super::http;
use super::seam::{MetricsProvider, ProviderError, QueryError, Setup};

pub struct InfluxDb {
    url: reqwest::Url,
    token: Option<String>,
    org: Option<String>,
    http: reqwest::Client,
}

/// Flagger's InfluxDB client waits 15 s for an answer.
const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

impl InfluxDb {
    pub fn build(setup: &Setup<'_>) -> Result<Box<dyn MetricsProvider>, ProviderError> {
        let url = http::url_address("influxdb", setup.spec.address.as_deref())?;
        let (token, org) = match setup.spec.secret_ref {
            None => (None, None),
            Some(_) => (
                Some(http::secret_key(setup.secret, "token", || {
                    "influxdb credentials does not contain an authentication token".into()
                })?),
                Some(http::secret_key(setup.secret, "org", || {
                    "influxdb credentials does not contain an organisation".into()
                })?),
            ),
        };
        Ok(Box::new(InfluxDb {
            url,
            token,
            org,
            http: http::client(setup.http, setup.spec.insecure_skip_verify.unwrap_or(false)),
        }))
    }

    async fn flux(&self, query: &str) -> Result<Vec<Table>, ProviderError> {
        let mut url = self.url.clone();
        let path = format!("{}/api/v2/query", url.path().trim_end_matches('/'));
        url.set_path(&path);
        if let Some(org) = &self.org {
            url.query_pairs_mut().append_pair("org", org);
        }
        let mut request = self
            .http
            .post(url)
            .header(reqwest::header::ACCEPT, "text/csv")
            .header(reqwest::header::ACCEPT_ENCODING, "identity")
            .json(&serde_json::json!({
                "query": query,
                "type": "flux",
                "dialect": {
                    "header": true,
                    "delimiter": ",",
                    "annotations": ["datatype", "group", "default"],
                    "commentPrefix": "#",
                    "dateTimeFormat": "RFC3339",
                },
            }))
            .timeout(TIMEOUT);
        if let Some(token) = &self.token {
            request = request.header(reqwest::header::AUTHORIZATION, format!("Token {token}"));
        }
        let (status, body) = http::send(request, self.url.as_str())
            .await
            .map_err(|e| e.context("error accessing influxdb query api: "))?;
        if !status.is_success() {
            return Err(ProviderError::answered(
                status,
                format!(
                    "error accessing influxdb query api: {}",
                    failure(status, &body)
                ),
            ));
        }
        annotated_csv(&body).map_err(|e| ProviderError::provider(format!("query error: {e}")))
    }

    async fn query(&self, query: &str) -> Result<f64, QueryError> {
        let tables = self.flux(query).await?;
        let Some(record) = tables.iter().flat_map(|t| t.records.iter()).next() else {
            return Err(QueryError::NoValues(
                "no values found: the query returned no records".into(),
            ));
        };
        match record {
            Value::Null => Err(QueryError::NoValues(
                "no values found: the first record has no _value".into(),
            )),
            Value::Number(v) if v.is_nan() => Err(QueryError::NoValues("no values found".into())),
            Value::Number(v) => Ok(*v),
            Value::Other(datatype, text) => Err(QueryError::Failed(format!(
                "invalid response: the first record's _value is {datatype} {text:?}, not a number"
            ))),
        }
    }

    async fn online(&self) -> Result<(), ProviderError> {
        self.flux(r#"from(bucket: "default") |> range(start: -2h)"#)
            .await
            .map(|_| ())
    }
}

impl MetricsProvider for InfluxDb {
    fn name(&self) -> &'static str {
        "influxdb"
    }

    fn run_query<'a>(&'a self, query: &'a str) -> BoxFuture<'a, Result<f64, QueryError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }
}

/// InfluxDB words its errors as `{"code": "invalid", "message": "..."}`.
fn failure(status: reqwest::StatusCode, body: &str) -> String {
    #[derive(Deserialize)]
    struct Error {
        #[serde(default)]
        message: String,
    }
    let reason = serde_json::from_str::<Error>(body).ok().map(|e| e.message);
    http::error_response(status, reason, body)
}

/// A `_value` as its column's `#datatype` says.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An empty cell (and no `#default`).
    Null,
    /// `double`, `long` or `unsignedLong`.
    Number(f64),
    /// Any other datatype (`string`, `boolean`, `dateTime:RFC3339`, ...), with its text.
    Other(String, String),
}

/// One table of an answer: the `_value` of each record, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub records: Vec<Value>,
}

/// Reads Flux's annotated CSV: tables separated by empty lines, each opened by `#datatype`,
/// `#group` and `#default` annotation rows and a header row. An error table (a header with an
/// `error` column) is the query's error.
pub fn annotated_csv(body: &str) -> Result<Vec<Table>, String> {
    let mut tables = Vec::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body.as_bytes());
    let mut datatypes: Vec<String> = Vec::new();
    let mut defaults: Vec<String> = Vec::new();
    let mut header: Option<Vec<String>> = None;
    let mut current: Option<Table> = None;
    for row in reader.records() {
        let row = row.map_err(|e| format!("unreadable CSV: {e}"))?;
        let cells: Vec<String> = row.iter().map(str::to_string).collect();
        if cells.iter().all(String::is_empty) {
            // An empty line ends a table.
            if let Some(t) = current.take() {
                tables.push(t);
            }
            header = None;
            datatypes.clear();
            defaults.clear();
            continue;
        }
        match cells.first().map(String::as_str) {
            Some("#datatype") => {
                if let Some(t) = current.take() {
                    tables.push(t);
                }
                header = None;
                datatypes = cells;
                continue;
            }
            Some("#default") => {
                defaults = cells;
                continue;
            }
            Some(first) if first.starts_with('#') => continue,
            _ => {}
        }
        let Some(columns) = &header else {
            if let Some(at) = cells.iter().position(|c| c == "error") {
                // An error table: its one row says why.
                let reference = cells.iter().position(|c| c == "reference");
                let next = reader
                    .records()
                    .next()
                    .transpose()
                    .map_err(|e| format!("unreadable CSV: {e}"))?;
                let message = next
                    .as_ref()
                    .and_then(|r| r.get(at))
                    .unwrap_or("unknown error")
                    .to_string();
                let code = reference
                    .and_then(|i| next.as_ref().and_then(|r| r.get(i)))
                    .filter(|c| !c.is_empty());
                return Err(match code {
                    Some(code) => format!("{message} (reference {code})"),
                    None => message,
                });
            }
            header = Some(cells);
            current = Some(Table::default());
            continue;
        };
        let Some(at) = columns.iter().position(|c| c == "_value") else {
            return Err("the answer has no _value column".into());
        };
        let mut text = cells.get(at).cloned().unwrap_or_default();
        if text.is_empty() {
            text = defaults.get(at).cloned().unwrap_or_default();
        }
        let datatype = datatypes.get(at).map(String::as_str).unwrap_or("string");
        let value = if text.is_empty() {
            Value::Null
        } else {
            match datatype {
                "double" | "long" | "unsignedLong" => match text.as_str() {
                    "+Inf" => Value::Number(f64::INFINITY),
                    "-Inf" => Value::Number(f64::NEG_INFINITY),
                    t => t
                        .parse::<f64>()
                        .map(Value::Number)
                        .map_err(|e| format!("the {datatype} _value {t:?} is not a number: {e}"))?,
                },
                other => Value::Other(other.to_string(), text),
            }
        };
        if let Some(t) = current.as_mut() {
            t.records.push(value);
        }
    }
    if let Some(t) = current.take() {
        tables.push(t);
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_TABLES: &str = "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,double,string\r\n\
#group,false,false,true,true,false,true\r\n\
#default,_result,,,,,\r\n\
,result,table,_start,_stop,_value,_field\r\n\
,,0,2024-01-01T00:00:00Z,2024-01-01T00:10:00Z,0.75,errors\r\n\
,,0,2024-01-01T00:00:00Z,2024-01-01T00:10:00Z,1.5,errors\r\n\
\r\n\
#datatype,string,long,long\r\n\
#group,false,false,false\r\n\
#default,_result,,\r\n\
,result,table,_value\r\n\
,,1,42\r\n\
\r\n";

    #[test]
    fn reads_every_table_with_its_datatypes() {
        let tables = annotated_csv(TWO_TABLES).expect("tables");
        assert_eq!(
            tables,
            vec![
                Table {
                    records: vec![Value::Number(0.75), Value::Number(1.5)]
                },
                Table {
                    records: vec![Value::Number(42.0)]
                }
            ]
        );
    }

    #[test]
    fn empty_cells_strings_and_quoted_commas() {
        let body = "#datatype,string,long,double,string\n#group,false,false,false,false\n#default,_result,,,\n,result,table,_value,note\n,,0,,\"a, b\"\n";
        assert_eq!(
            annotated_csv(body).expect("tables"),
            vec![Table {
                records: vec![Value::Null]
            }]
        );
        let body = "#datatype,string,long,string\n#group,false,false,false\n#default,_result,,\n,result,table,_value\n,,0,\"hello, world\"\n";
        assert_eq!(
            annotated_csv(body).expect("tables"),
            vec![Table {
                records: vec![Value::Other("string".into(), "hello, world".into())]
            }]
        );
        assert_eq!(annotated_csv("\r\n").expect("no tables"), vec![]);
    }

    #[test]
    fn an_error_table_is_the_querys_error() {
        let body = "#datatype,string,string\n#group,true,true\n#default,,\n,error,reference\n,\"compilation failed: error at @1:1-1:5: undefined identifier frm\",897\n";
        assert_eq!(
            annotated_csv(body),
            Err(
                "compilation failed: error at @1:1-1:5: undefined identifier frm (reference 897)"
                    .into()
            )
        );
    }
}
