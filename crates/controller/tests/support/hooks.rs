//! A scriptable webhook receiver: `POST /<name>` answers the status set for `<name>` (200 by
//! default) and records the payload, so tests can hold and release gates and fail hooks.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;

#[derive(Default)]
struct Inner {
    status: HashMap<String, u16>,
    calls: Vec<(String, serde_json::Value)>,
}

/// The receiver; clones share state.
#[derive(Clone)]
pub struct Hooks {
    pub addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
}

impl Hooks {
    pub async fn start() -> Hooks {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("hooks bind");
        let addr = listener.local_addr().expect("hooks address");
        let app = Router::new()
            .route("/{name}", post(receive))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Hooks { addr, inner }
    }

    /// The URL of hook `name`.
    pub fn url(&self, name: &str) -> String {
        format!("http://{}/{name}", self.addr)
    }

    /// Sets the status hook `name` answers with.
    pub fn set(&self, name: &str, status: u16) {
        if let Ok(mut i) = self.inner.lock() {
            i.status.insert(name.to_string(), status);
        }
    }

    /// The payloads hook `name` received, in order.
    pub fn calls(&self, name: &str) -> Vec<serde_json::Value> {
        self.inner
            .lock()
            .map(|i| {
                i.calls
                    .iter()
                    .filter(|(n, _)| n == name)
                    .map(|(_, p)| p.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

async fn receive(
    State(inner): State<Arc<Mutex<Inner>>>,
    Path(name): Path<String>,
    body: Bytes,
) -> StatusCode {
    let payload = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let status = match inner.lock() {
        Ok(mut i) => {
            i.calls.push((name.clone(), payload));
            i.status.get(&name).copied().unwrap_or(200)
        }
        Err(_) => 500,
    };
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
