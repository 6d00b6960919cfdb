//! Tern's Twilio-compatible REST API: Accounts, Keys, IncomingPhoneNumbers, Messages and
//! their Feedback (2010-04-01), Messaging Services (v1), SMPP credentials (a Tern extension in
//! v1's style), plus health, readiness, metrics and the simulated carrier's inbound endpoint.

mod accounts;
pub mod auth;
pub mod error;
mod form;
mod messages;
mod numbers;
mod ops;
mod paging;
mod repr;
mod services;
mod smpp_credentials;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tern_node::Engine;
use tern_store::{Account, Store};

pub use accounts::new_auth_token;
use auth::Principal;
pub use auth::hash_secret;
use error::ApiResult;
/// SMPP credential rules and password hashing, for the binary's admin commands.
pub use tern_domain::credentials;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    /// The built-in simulated carrier whose handsets `/sim/v1/Inbound` speaks for, when
    /// this node runs simulators.
    pub inbound_carrier: Option<String>,
    /// The operator API, when an operator token is configured.
    pub operator: Option<Operator>,
    pub metrics: Option<PrometheusHandle>,
    /// Set while the node drains; readiness turns false.
    pub draining: Arc<AtomicBool>,
}

/// What the operator API shows, supplied by the binary that owns carriers and servers.
pub trait OperatorView: Send + Sync + 'static {
    /// Every carrier with its binds' state.
    fn carriers(&self) -> serde_json::Value;
    /// Every customer SMPP bind.
    fn customer_binds(&self) -> serde_json::Value;
    /// Every carrier × route path: health, estimates, share, recent transitions.
    fn network(&self) -> serde_json::Value;
}

pub struct Operator {
    /// The bearer token operator requests must carry.
    pub token: String,
    pub view: Arc<dyn OperatorView>,
}

impl AppState {
    async fn principal(&self, headers: &HeaderMap) -> ApiResult<Principal> {
        auth::authenticate(&*self.store, headers).await
    }

    /// Authenticates and resolves the account in the URL.
    async fn authorize(
        &self,
        headers: &HeaderMap,
        path_account: &str,
    ) -> ApiResult<(Principal, Account)> {
        let p = self.principal(headers).await?;
        let a = auth::account_in_path(&*self.store, &p, path_account).await?;
        Ok((p, a))
    }
}

/// The `{sid}.json` path segment without its extension.
fn strip_json(segment: &str) -> &str {
    segment.strip_suffix(".json").unwrap_or(segment)
}

/// `http://host[:port]` of the request, for v1's absolute URLs.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

pub fn router(state: Arc<AppState>) -> Router {
    let v2010 = "/2010-04-01/Accounts";
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/sim/v1/Inbound", post(ops::sim_inbound))
        .route("/v1/Operator/Carriers", get(ops::operator_carriers))
        .route("/v1/Operator/SmppBinds", get(ops::operator_smpp_binds))
        .route("/v1/Operator/Network", get(ops::operator_network))
        .route("/v1/Operator/Node", get(ops::operator_node))
        .route("/v1/Operator/Events", get(ops::operator_events))
        .route(
            "/v1/Operator/Routes",
            get(ops::operator_routes).put(ops::operator_set_routes),
        )
        .route(
            "/v1/Operator/Messages/{sid}/RouteAttempts",
            get(ops::operator_route_attempts),
        )
        .route(
            "/2010-04-01/Accounts.json",
            get(accounts::list).post(accounts::create),
        )
        .route(
            &format!("{v2010}/{{account}}"),
            get(accounts::fetch).post(accounts::update),
        )
        .route(
            &format!("{v2010}/{{account}}/Keys.json"),
            get(accounts::list_keys).post(accounts::create_key),
        )
        .route(
            &format!("{v2010}/{{account}}/Keys/{{key}}"),
            get(accounts::fetch_key)
                .post(accounts::update_key)
                .delete(accounts::delete_key),
        )
        .route(
            &format!("{v2010}/{{account}}/IncomingPhoneNumbers.json"),
            get(numbers::list).post(numbers::create),
        )
        .route(
            &format!("{v2010}/{{account}}/IncomingPhoneNumbers/{{number}}"),
            get(numbers::fetch)
                .post(numbers::update)
                .delete(numbers::delete),
        )
        .route(
            &format!("{v2010}/{{account}}/Messages.json"),
            get(messages::list).post(messages::create),
        )
        .route(
            &format!("{v2010}/{{account}}/Messages/{{message}}"),
            get(messages::fetch)
                .post(messages::update)
                .delete(messages::delete),
        )
        .route(
            &format!("{v2010}/{{account}}/Messages/{{message}}/Feedback.json"),
            post(messages::feedback),
        )
        .route(
            &format!("{v2010}/{{account}}/Messages/{{message}}/Feedback"),
            post(messages::feedback),
        )
        .route("/v1/Services", get(services::list).post(services::create))
        .route(
            "/v1/Services/{service}",
            get(services::fetch)
                .post(services::update)
                .delete(services::delete),
        )
        .route(
            "/v1/Services/{service}/PhoneNumbers",
            get(services::list_numbers).post(services::add_number),
        )
        .route(
            "/v1/Services/{service}/PhoneNumbers/{number}",
            get(services::fetch_number).delete(services::remove_number),
        )
        .route(
            "/v1/SmppCredentials",
            get(smpp_credentials::list).post(smpp_credentials::create),
        )
        .route(
            "/v1/SmppCredentials/{credential}",
            get(smpp_credentials::fetch).delete(smpp_credentials::delete),
        )
        .fallback(ops::not_found)
        .layer(axum::middleware::from_fn(ops::observe))
        .with_state(state)
}
