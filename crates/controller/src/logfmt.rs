//! Flagger-style JSON log lines: `{"level":"info","ts":"...","caller":"...","msg":"...",
//! "canary":"podinfo.test","namespace":"test", ...}`, so that `jq .msg` and the usual
//! `jq 'select(.canary == "podinfo.test")'` work as they do on Flagger's logs.
//!
//! Every text field goes through `flagger_core::redact::text` (a URL's token, a webhook path,
//! an `Authorization` header never reach a log line); text logs get the same through
//! [`redacted_stderr`].

use std::fmt;
use std::io::Write;

use flagger_core::redact;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The event formatter.
pub struct FlaggerJson;

struct Fields(Map<String, Value>);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.0.insert(
            field.name().to_string(),
            Value::String(redact::text(&text).into_owned()),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(
            field.name().to_string(),
            Value::String(redact::text(value).into_owned()),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
}

/// Builds the JSON object of one line from the level, time, caller and the event's fields.
pub fn line(level: &str, ts: &str, caller: &str, mut fields: Map<String, Value>) -> Value {
    let mut out = Map::new();
    out.insert("level".into(), Value::from(level));
    out.insert("ts".into(), Value::from(ts));
    out.insert("caller".into(), Value::from(caller));
    let msg = fields.remove("message").unwrap_or(Value::from(""));
    out.insert("msg".into(), msg);
    // `canary` is `name.namespace`, as Flagger logs it; the namespace is also given alone.
    if let Some(Value::String(canary)) = fields.get("canary")
        && !fields.contains_key("namespace")
        && let Some((_, ns)) = canary.split_once('.')
    {
        fields.insert("namespace".into(), Value::from(ns));
    }
    out.extend(fields);
    Value::Object(out)
}

impl<S, N> FormatEvent<S, N> for FlaggerJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = Fields(Map::new());
        event.record(&mut fields);
        let level = match *meta.level() {
            tracing::Level::ERROR => "error",
            tracing::Level::WARN => "warn",
            tracing::Level::INFO => "info",
            _ => "debug",
        };
        let caller = match (meta.file(), meta.line()) {
            (Some(f), Some(l)) => format!("{}:{l}", f.rsplit('/').next().unwrap_or(f)),
            _ => meta.target().to_string(),
        };
        let ts = k8s_openapi::jiff::Timestamp::now().to_string();
        writeln!(writer, "{}", line(level, &ts, &caller, fields.0))
    }
}

/// Standard error with credentials redacted from each line (the writer of text logs; JSON
/// logs are redacted field by field before they are encoded).
pub fn redacted_stderr() -> RedactedStderr {
    RedactedStderr
}

/// See [`redacted_stderr`].
pub struct RedactedStderr;

impl Write for RedactedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes one whole event per call.
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().write_all(redact::text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_becomes_msg_and_the_namespace_is_split_out() {
        let mut fields = Map::new();
        fields.insert(
            "message".into(),
            json!("Advance podinfo.test canary weight 10"),
        );
        fields.insert("canary".into(), json!("podinfo.test"));
        let l = line("info", "2026-11-28T00:00:00Z", "apply.rs:10", fields);
        assert_eq!(l["msg"], "Advance podinfo.test canary weight 10");
        assert_eq!(l["canary"], "podinfo.test");
        assert_eq!(l["namespace"], "test");
        assert_eq!(l["level"], "info");
        assert!(l.get("message").is_none());
    }

    #[test]
    fn lines_without_a_canary_have_no_namespace() {
        let l = line("warn", "t", "c", Map::new());
        assert_eq!(l["msg"], "");
        assert!(l.get("namespace").is_none());
    }

    #[test]
    fn fields_are_redacted_before_they_are_encoded() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                if let Ok(mut v) = self.0.lock() {
                    v.extend_from_slice(b);
                }
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .event_format(FlaggerJson)
            .with_writer(move || sink.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let url = "http://lt.test/?access_token=MARKER";
            tracing::warn!(
                hook = url,
                "POST {url} \"failed\" (Authorization: Bearer MARKER123456)"
            );
        });
        let out = String::from_utf8(buf.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(!out.contains("MARKER"), "{out}");
        let l: Value = serde_json::from_str(out.trim()).expect("one JSON line");
        assert_eq!(l["hook"], "http://lt.test/?access_token=REDACTED");
        assert_eq!(
            l["msg"],
            "POST http://lt.test/?access_token=REDACTED \"failed\" (Authorization: REDACTED)"
        );
    }
}
