//! The admin HTTP port: `GET /faults`, `PUT /faults` (a JSON [`Faults`]), `GET /stats`,
//! `POST /mo` (JSON `{"from": "+1555…", "to": "12345", "body": "…"}` → `202` with
//! `{"segments": N}`).
//!
//! Errors are `400` (invalid faults or message; serde's own rejections keep axum's `4xx`)
//! and `503` when `max_pending` messages are already waiting, each with a plain-text
//! reason.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::warn;

use crate::{Error, Faults, Inner, Stats};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mo {
    from: String,
    to: String,
    body: String,
}

#[derive(Debug, Serialize)]
struct MoAccepted {
    segments: usize,
}

pub(crate) async fn serve(inner: Arc<Inner>, listener: TcpListener) {
    let mut shutdown = inner.shutdown.subscribe();
    let app = Router::new()
        .route("/faults", get(get_faults).put(put_faults))
        .route("/stats", get(get_stats))
        .route("/mo", post(post_mo))
        .with_state(inner);
    let stopped = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(stopped)
        .await
    {
        warn!(error = %e, "admin HTTP server failed");
    }
}

async fn get_faults(State(inner): State<Arc<Inner>>) -> Json<Faults> {
    Json(Faults::clone(&inner.faults.borrow()))
}

async fn put_faults(State(inner): State<Arc<Inner>>, Json(faults): Json<Faults>) -> Response {
    match inner.set_faults(faults.clone()) {
        Ok(()) => Json(faults).into_response(),
        Err(e) => error(e),
    }
}

async fn get_stats(State(inner): State<Arc<Inner>>) -> Json<Stats> {
    Json(inner.counters.snapshot())
}

async fn post_mo(State(inner): State<Arc<Inner>>, Json(mo): Json<Mo>) -> Response {
    match inner.inject_mo(&mo.from, &mo.to, &mo.body) {
        Ok(segments) => (StatusCode::ACCEPTED, Json(MoAccepted { segments })).into_response(),
        Err(e) => error(e),
    }
}

fn error(e: Error) -> Response {
    let status = match e {
        Error::Full(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    (status, e.to_string()).into_response()
}
