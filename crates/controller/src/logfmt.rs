//! Flagger-style JSON log lines: `{"level":"info","ts":"...","caller":"...","msg":"...",
//! "canary":"podinfo.test","namespace":"test", ...}`, so that `jq .msg` and the usual
//! `jq 'select(.canary == "podinfo.test")'` work as they do on Flagger's logs.

use std::fmt;

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
        self.0.insert(
            field.name().to_string(),
            Value::String(format!("{value:?}")),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
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
}
