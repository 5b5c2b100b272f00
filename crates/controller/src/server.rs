//! The controller's HTTP endpoints: `/metrics` (Prometheus text), `/healthz`, and `/readyz`
//! (200 only once the caches have synced), and `/debug/memory` (where the memory goes: see
//! [`crate::memory`]).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::context::Context;

struct Shared {
    registry: Registry,
    ctx: Arc<Context>,
}

/// The router of the controller's HTTP server.
pub fn router(registry: Registry, ctx: Arc<Context>) -> Router {
    let shared = Arc::new(Shared { registry, ctx });
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "OK" }))
        .route("/readyz", get(readyz))
        .route("/debug/memory", get(memory))
        .with_state(shared)
}

async fn metrics(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &s.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
}

/// Where the memory goes (see [`crate::memory`]); sized off the async workers.
async fn memory(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    let ctx = s.ctx.clone();
    match tokio::task::spawn_blocking(move || crate::memory::report(&ctx)).await {
        Ok(report) => (StatusCode::OK, report),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn readyz(State(s): State<Arc<Shared>>) -> impl IntoResponse {
    if s.ctx.is_ready() {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}
