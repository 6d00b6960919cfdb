//! Health, readiness, metrics, request observation and the simulated carrier's endpoint.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{MatchedPath, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tern_types::ErrorCode;

use crate::AppState;
use crate::error::{ApiError, ApiResult};
use crate::form::Params;

pub async fn healthz() -> &'static str {
    "ok"
}

/// How long readiness waits for the store to answer before calling it unreachable.
const READY_STORE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Ready while the node is not draining and both the store and the bus can be reached;
/// 503 with the reason otherwise.
pub async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let unready = |why: String| (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    if s.draining.load(Ordering::Relaxed) {
        return unready("draining".into());
    }
    match tokio::time::timeout(READY_STORE_TIMEOUT, s.store.ping()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return unready(format!("store: {e}")),
        Err(_) => return unready(format!("store: no answer within {READY_STORE_TIMEOUT:?}")),
    }
    match s.engine.queue().health() {
        Ok(()) => "ready".into_response(),
        Err(e) => unready(format!("bus: {e}")),
    }
}

pub async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    match &s.metrics {
        Some(h) => ([("content-type", "text/plain; version=0.0.4")], h.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(uri.path())
}

/// Counts and times every request by route and status.
pub async fn observe(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("tern_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("tern_http_requests_total", "route" => route, "method" => method, "status" => status).increment(1);
    resp
}

/// A handset sends `Body` from `From` to `To` (a number of the caller's account) through the
/// simulated carrier.
pub async fn sim_inbound(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let p = s.principal(&headers).await?;
    let carrier = s
        .inbound_carrier
        .clone()
        .ok_or_else(|| ApiError::not_found("/sim/v1/Inbound"))?;
    let f = Params::parse(&body);
    let need = |k: &str| {
        f.string(k)
            .ok_or_else(|| ApiError::invalid(format!("{k} is required")))
    };
    let (from, to, text) = (
        need("From")?,
        need("To")?,
        f.string("Body").unwrap_or_default(),
    );
    let to = tern_types::E164::parse(&to).map_err(|_| ApiError::new(ErrorCode::InvalidTo))?;
    let from = tern_types::E164::parse(&from).map_err(|_| ApiError::new(ErrorCode::InvalidFrom))?;
    match s.store.number_by_phone(to.as_str()).await? {
        Some(n) if n.account_sid == p.account.sid => {}
        _ => {
            return Err(ApiError::with(
                ErrorCode::InvalidTo,
                "To must be a number of this account",
            ));
        }
    }
    // The handset's message as the built-in carrier would hand it over; the simulator's
    // own MO path over SMPP is exercised by `tern sim smsc`'s `POST /mo`.
    let sms = tern_carriers::InboundSms {
        carrier,
        from: from.as_str().to_string(),
        to: to.as_str().to_string(),
        body: text,
    };
    let m = s
        .engine
        .receive_inbound(sms)
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidTo))?;
    Ok((StatusCode::CREATED, Json(json!({"message_sid": m.sid}))))
}

/// The operator's view, or 404 (as if the route did not exist) without the right token.
fn operator(
    s: &AppState,
    headers: &HeaderMap,
    path: &str,
) -> ApiResult<Arc<dyn crate::OperatorView>> {
    use subtle::ConstantTimeEq;
    let op = s
        .operator
        .as_ref()
        .ok_or_else(|| ApiError::not_found(path))?;
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(given.as_bytes().ct_eq(op.token.as_bytes())) {
        return Err(ApiError::new(ErrorCode::Authentication));
    }
    Ok(op.view.clone())
}

/// `GET /v1/Operator/Carriers`: every carrier and its binds.
pub async fn operator_carriers(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let view = operator(&s, &headers, "/v1/Operator/Carriers")?;
    Ok(Json(json!({ "carriers": view.carriers() })))
}

/// `GET /v1/Operator/SmppBinds`: every customer bound to the SMPP server.
pub async fn operator_smpp_binds(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let view = operator(&s, &headers, "/v1/Operator/SmppBinds")?;
    Ok(Json(json!({ "binds": view.customer_binds() })))
}

/// `GET /v1/Operator/Network`: the Super Network's view of every carrier path.
pub async fn operator_network(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    let view = operator(&s, &headers, "/v1/Operator/Network")?;
    Ok(Json(json!({ "paths": view.network() })))
}

/// `GET /v1/Operator/Node`: this node's name and region, whether it leads its region, and
/// the leases it holds.
pub async fn operator_node(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    operator(&s, &headers, "/v1/Operator/Node")?;
    let node = s.engine.node();
    let leadership = s.engine.leadership();
    Ok(Json(json!({
        "name": node.name,
        "region": node.region,
        "holder": leadership.holder(),
        "is_leader": leadership.is_leader(),
        "leases": leadership.leases(),
    })))
}

/// `GET /v1/Operator/Messages/{Sid}/RouteAttempts`: every carrier tried for a message
/// (any account's), when, with what result and why — the Super Network's explained
/// decisions — beside where the message is now.
pub async fn operator_route_attempts(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(sid): axum::extract::Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let path = format!("/v1/Operator/Messages/{sid}/RouteAttempts");
    operator(&s, &headers, &path)?;
    let sid: tern_types::Sid = sid.parse().map_err(|_| ApiError::not_found(&path))?;
    let m = s
        .store
        .message(sid)
        .await?
        .ok_or_else(|| ApiError::not_found(&path))?;
    let attempts = s.store.route_attempts(sid).await?;
    Ok(Json(json!({
        "message_sid": m.sid,
        "account_sid": m.account_sid,
        "to": m.to,
        "status": m.status.as_str(),
        "carrier": m.carrier,
        "carrier_message_id": m.carrier_message_id,
        "route_attempts": attempts,
    })))
}

/// The route table as the operator API shows it.
fn routes_json(table: &tern_domain::RouteTable) -> serde_json::Value {
    json!({ "routes": table.routes() })
}

/// `GET /v1/Operator/Routes`: the route table in force on this node, longest prefix
/// first, in the shape of `[[route]]`.
pub async fn operator_routes(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    operator(&s, &headers, "/v1/Operator/Routes")?;
    Ok(Json(routes_json(&s.engine.routes())))
}

/// `PUT /v1/Operator/Routes` with `{"routes": [...]}` (each as a `[[route]]` table):
/// checked whole, then swapped in without stopping traffic (messages already routed keep
/// their carrier). Answers the table now in force.
pub async fn operator_set_routes(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<serde_json::Value>> {
    operator(&s, &headers, "/v1/Operator/Routes")?;
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        routes: Vec<tern_domain::Route>,
    }
    let body: Body = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("The route table is not valid JSON: {e}")))?;
    let table = s
        .engine
        .set_routes(body.routes)
        .map_err(|e| ApiError::invalid(format!("The route table was refused: {e}")))?;
    Ok(Json(routes_json(&table)))
}

/// `GET /v1/Operator/Events[?Kind=network.path]`: the region's latest events as this node
/// received them (at most 1,000, oldest first): carrier paths changing health
/// (`network.path`), carriers losing or regaining every connection (`network.link`).
pub async fn operator_events(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<serde_json::Value>> {
    operator(&s, &headers, "/v1/Operator/Events")?;
    let kind = Params::parse(q.unwrap_or_default().as_bytes()).string("Kind");
    let events: Vec<_> = s
        .engine
        .recent_events()
        .into_iter()
        .filter(|e| kind.as_deref().is_none_or(|k| e.kind == k))
        .collect();
    Ok(Json(json!({ "events": events })))
}
