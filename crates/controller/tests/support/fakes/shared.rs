//! What every fake shares: the scripted [`Answer`], the record of requests ([`Seen`]), and
//! serving on an ephemeral port. Its own file so that a test of another crate can take one
//! vendor's fake with it (`crates/cli/tests/cloudwatch_e2e.rs` takes `aws.rs`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// What a fake answers to the next queries.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// One series with this value.
    Value(f64),
    /// The query matched nothing.
    Empty,
    /// A series whose point has no value (null, or NaN where the vendor has it).
    Null,
    /// The vendor's error answer for a query it cannot run (400).
    BadQuery,
    /// The vendor's rate-limit answer.
    RateLimited,
}

/// One request a fake received.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// The script and the record of a fake.
#[derive(Clone)]
pub struct State {
    answer: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Default for State {
    fn default() -> Self {
        State {
            answer: Arc::new(Mutex::new(Answer::Empty)),
            seen: Arc::default(),
        }
    }
}

impl State {
    pub fn set(&self, answer: Answer) {
        *self.answer.lock().expect("answer lock") = answer;
    }

    pub fn answer(&self) -> Answer {
        self.answer.lock().expect("answer lock").clone()
    }

    pub fn record(&self, seen: Seen) {
        self.seen.lock().expect("seen lock").push(seen);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// The requests to `path`.
    pub fn seen_at(&self, path: &str) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.path == path).collect()
    }
}

/// Records an axum request's parts.
pub fn seen(
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Seen {
    Seen {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri
            .query()
            .map(|q| {
                url::form_urlencoded::parse(q.as_bytes())
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(body).into_owned(),
    }
}

/// Serves `app` on an ephemeral port of the loopback.
pub async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("fake binds");
    let addr = listener.local_addr().expect("fake address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}
