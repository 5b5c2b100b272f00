//! What the dashboard knows: ONE reflector of every Canary and ONE watch of events per server,
//! a bounded history of each canary (weight, phase, each check's value) kept from the watch
//! events, the canaries' recent events, and a bounded broadcast of the changes to the browsers'
//! streams (a browser that falls behind is dropped, never buffered without bound).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use flagger_api::Canary;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Event;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::kubectl::{EventLine, summary, watch_text};

/// Events kept per canary.
const EVENTS_KEPT: usize = 100;
/// Changes the broadcast holds for the slowest stream before that stream is dropped.
pub const BROADCAST_CAPACITY: usize = 256;

/// One point of a canary's history.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Point {
    /// Milliseconds since the epoch.
    pub t: i64,
    pub weight: i32,
    pub phase: String,
    /// Each check's value (absent: no value).
    pub checks: Vec<(String, Option<f64>)>,
}

/// A change, as the streams send it.
#[derive(Debug)]
pub struct Update {
    pub namespace: String,
    /// `canary`, `deleted` or `event`.
    pub kind: &'static str,
    /// The JSON payload.
    pub data: String,
}

#[derive(Default)]
struct Data {
    history: HashMap<(String, String), VecDeque<Point>>,
    events: HashMap<(String, String), VecDeque<(String, EventLine)>>,
}

pub struct State {
    pub client: Client,
    pub canaries: reflector::Store<Canary>,
    data: Mutex<Data>,
    pub tx: broadcast::Sender<Arc<Update>>,
    history_kept: usize,
}

fn key(c: &Canary) -> (String, String) {
    (c.namespace().unwrap_or_default(), c.name_any())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The point a canary's state makes now.
pub fn point(c: &Canary, t: i64) -> Point {
    let s = summary(c);
    let checks = c
        .status
        .as_ref()
        .and_then(|s| s.analysis.as_ref())
        .map(|a| a.checks.iter().map(|k| (k.name.clone(), k.value)).collect())
        .unwrap_or_default();
    Point {
        t,
        weight: s.weight,
        phase: s.phase,
        checks,
    }
}

/// Appends `p` unless it says what the last point says; keeps at most `max`.
fn push_point(history: &mut VecDeque<Point>, p: Point, max: usize) -> bool {
    if let Some(last) = history.back()
        && last.weight == p.weight
        && last.phase == p.phase
        && last.checks == p.checks
    {
        return false;
    }
    history.push_back(p);
    while history.len() > max.max(1) {
        history.pop_front();
    }
    true
}

impl State {
    /// Starts the watches; the store fills as the initial lists arrive.
    pub fn start(client: Client, history_kept: usize) -> Arc<State> {
        let (reader, writer) = reflector::store();
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let state = Arc::new(State {
            client: client.clone(),
            canaries: reader,
            data: Mutex::new(Data::default()),
            tx,
            history_kept,
        });
        let s = state.clone();
        let canaries: Api<Canary> = Api::all(client.clone());
        tokio::spawn(async move {
            let mut stream = watcher(canaries, watcher::Config::default())
                .default_backoff()
                .reflect(writer)
                .boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(c) | watcher::Event::InitApply(c)) => s.applied(&c),
                    Ok(watcher::Event::Delete(c)) => s.deleted(&c),
                    Ok(_) => {}
                    Err(e) => eprintln!("dashboard: the canary watch: {}", watch_text(&e)),
                }
            }
        });
        let s = state.clone();
        let events: Api<Event> = Api::all(client);
        tokio::spawn(async move {
            let mut stream = watcher(events, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(e) | watcher::Event::InitApply(e)) => s.event(e),
                    Ok(_) => {}
                    Err(e) => eprintln!("dashboard: the event watch: {}", watch_text(&e)),
                }
            }
        });
        state
    }

    fn send(&self, namespace: String, kind: &'static str, data: serde_json::Value) {
        // No receiver is not an error: nobody is looking.
        let _ = self.tx.send(Arc::new(Update {
            namespace,
            kind,
            data: data.to_string(),
        }));
    }

    fn applied(&self, c: &Canary) {
        let p = point(c, now_ms());
        let changed = match self.data.lock() {
            Ok(mut d) => push_point(
                d.history.entry(key(c)).or_default(),
                p.clone(),
                self.history_kept,
            ),
            Err(_) => false,
        };
        self.send(
            c.namespace().unwrap_or_default(),
            "canary",
            serde_json::json!({
                "summary": summary(c),
                "point": changed.then_some(&p),
                "checks": c.status.as_ref().and_then(|s| s.analysis.as_ref()).map(|a| &a.checks),
            }),
        );
    }

    fn deleted(&self, c: &Canary) {
        if let Ok(mut d) = self.data.lock() {
            d.history.remove(&key(c));
            d.events.remove(&key(c));
        }
        self.send(
            c.namespace().unwrap_or_default(),
            "deleted",
            serde_json::json!({"namespace": c.namespace(), "name": c.name_any()}),
        );
    }

    fn event(&self, e: Event) {
        if e.involved_object.kind.as_deref() != Some("Canary") {
            return;
        }
        let ns = e
            .involved_object
            .namespace
            .clone()
            .or_else(|| e.namespace())
            .unwrap_or_default();
        let name = e.involved_object.name.clone().unwrap_or_default();
        let uid = e.uid().unwrap_or_else(|| e.name_any());
        let line = EventLine {
            time: e
                .last_timestamp
                .as_ref()
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .or_else(|| e.first_timestamp.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default(),
            kind: e.type_.clone().unwrap_or_default(),
            count: e.count.unwrap_or(1),
            message: e.message.clone().unwrap_or_default(),
        };
        if let Ok(mut d) = self.data.lock() {
            let list = d.events.entry((ns.clone(), name.clone())).or_default();
            list.retain(|(u, _)| *u != uid);
            list.push_back((uid, line.clone()));
            while list.len() > EVENTS_KEPT {
                list.pop_front();
            }
        }
        self.send(
            ns.clone(),
            "event",
            serde_json::json!({"namespace": ns, "name": name, "event": line}),
        );
    }

    /// A canary's history, oldest first.
    pub fn history(&self, ns: &str, name: &str) -> Vec<Point> {
        self.data
            .lock()
            .ok()
            .and_then(|d| {
                d.history
                    .get(&(ns.to_string(), name.to_string()))
                    .map(|h| h.iter().cloned().collect())
            })
            .unwrap_or_default()
    }

    /// A canary's recent events, oldest first.
    pub fn events(&self, ns: &str, name: &str) -> Vec<EventLine> {
        let mut out: Vec<EventLine> = self
            .data
            .lock()
            .ok()
            .and_then(|d| {
                d.events
                    .get(&(ns.to_string(), name.to_string()))
                    .map(|h| h.iter().map(|(_, e)| e.clone()).collect())
            })
            .unwrap_or_default();
        out.sort_by(|a, b| a.time.cmp(&b.time));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(t: i64, weight: i32) -> Point {
        Point {
            t,
            weight,
            phase: "Progressing".into(),
            checks: vec![("request-success-rate".into(), Some(99.0))],
        }
    }

    #[test]
    fn history_keeps_changes_only_and_is_bounded() {
        let mut h = VecDeque::new();
        assert!(push_point(&mut h, p(1, 10), 3));
        assert!(!push_point(&mut h, p(2, 10), 3));
        for (t, w) in [(3, 20), (4, 30), (5, 40)] {
            assert!(push_point(&mut h, p(t, w), 3));
        }
        let weights: Vec<i32> = h.iter().map(|p| p.weight).collect();
        assert_eq!(weights, vec![20, 30, 40]);
    }
}
