//! What `tern up` and `tern serve` share: opening the configured backends, the first
//! account, and running the API and engine until a signal.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tern_api::AppState;
use tern_bus::Queue;
use tern_bus::inproc::InProcessQueue;
use tern_bus::jetstream::JetStreamQueue;
use tern_smpp_server::{ServerConfig, SmppServer};

use crate::carriers::{BUILT_IN, Carriers};
use tern_node::forwarding::RegionCarrier;
use tern_node::{Config, Engine, now_ms};
use tern_store::postgres::PostgresStore;
use tern_store::sqlite::SqliteStore;
use tern_store::{Account, AccountStatus, NumberConfig, PhoneNumber, Store};
use tern_types::{E164, Sid, SidPrefix};

/// The shape of `credentials.json` and of `tern admin bootstrap`'s output.
#[derive(Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub account_sid: String,
    pub auth_token: String,
    pub api_base_url: String,
    pub phone_numbers: Vec<String>,
    /// An SMPP login of the account, for Tern's SMPP server. The password is stored hashed:
    /// this file is the only place it can be read back from (see `crate::admin`). Empty in
    /// a file written before SMPP logins existed.
    #[serde(default)]
    pub smpp_system_id: String,
    #[serde(default)]
    pub smpp_password: String,
    /// Where the SMPP server listens (`host:port`); empty when not known (bootstrap).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub smpp_address: String,
    /// The bearer token of the operator API, when this file's node made one (`tern up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_token: Option<String>,
}

pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    Config::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
}

/// An open store and how to close it.
pub enum Backend {
    Sqlite(Arc<SqliteStore>),
    Postgres(Arc<PostgresStore>),
}

impl Backend {
    pub fn store(&self) -> Arc<dyn Store> {
        match self {
            Backend::Sqlite(s) => s.clone(),
            Backend::Postgres(s) => s.clone(),
        }
    }

    pub fn close(&self) {
        match self {
            Backend::Sqlite(s) => s.close(),
            Backend::Postgres(s) => s.close(),
        }
    }
}

/// Opens `[store] url`, or SQLite at `default_sqlite` when none is configured.
pub async fn open_store(config: &Config, default_sqlite: Option<&Path>) -> anyhow::Result<Backend> {
    match config.store.url.as_deref() {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            let pool = config.store.pool_size.unwrap_or(16);
            let store = PostgresStore::connect_with(url, pool).await.with_context(
                || "cannot open the PostgreSQL store (is [store] url right and the server up?)",
            )?;
            Ok(Backend::Postgres(Arc::new(store)))
        }
        Some(url) => {
            let path = url.strip_prefix("sqlite://").with_context(|| {
                format!("[store] url must start with sqlite:// or postgres://, not {url}")
            })?;
            open_sqlite(Path::new(path))
        }
        None => match default_sqlite {
            Some(path) => open_sqlite(path),
            None => anyhow::bail!(
                "the config file must set [store] url (sqlite://PATH or postgres://…)"
            ),
        },
    }
}

fn open_sqlite(path: &Path) -> anyhow::Result<Backend> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let store = SqliteStore::open(path)
        .with_context(|| format!("cannot open the SQLite store {}", path.display()))?;
    Ok(Backend::Sqlite(Arc::new(store)))
}

/// The in-process queue, or JetStream when `[bus] url` is set.
pub async fn open_queue(config: &Config) -> anyhow::Result<Arc<dyn Queue>> {
    match config.bus.url.as_deref() {
        Some(url) => {
            let q = JetStreamQueue::connect(url, &config.node.region, "")
                .await
                .with_context(|| format!("cannot open the JetStream bus at {url}"))?;
            Ok(q)
        }
        None => {
            let q = Arc::new(InProcessQueue::new());
            tokio::spawn(q.clone().run_timer());
            Ok(q)
        }
    }
}

/// A valid US number nobody in this store holds yet.
async fn free_number(store: &dyn Store) -> anyhow::Result<String> {
    for _ in 0..1000 {
        let n: u32 = rand::random_range(2_000_000..9_999_999);
        let candidate = format!("+1415{n}");
        if let Ok(e) = E164::parse(&candidate)
            && store.number_by_phone(e.as_str()).await?.is_none()
        {
            return Ok(e.as_str().to_string());
        }
    }
    anyhow::bail!("could not find a free phone number")
}

/// The first account of the store with its numbers and an SMPP login, created (with two
/// numbers and the login) if the store has none. `previous` is an earlier credentials
/// file: its SMPP login is kept if it still verifies, since the store cannot give the
/// password back (`crate::admin::bootstrap_smpp_login` says what happens otherwise).
pub async fn bootstrap(
    store: &dyn Store,
    previous: Option<&Credentials>,
) -> anyhow::Result<(Account, Vec<String>, crate::admin::SmppLogin)> {
    if let Some(a) = store.first_account().await? {
        let numbers = store
            .numbers(a.sid)
            .await?
            .into_iter()
            .map(|n| n.phone_number)
            .collect();
        let smpp = crate::admin::bootstrap_smpp_login(store, a.sid, previous).await?;
        return Ok((a, numbers, smpp));
    }
    let t = now_ms();
    let account = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "Tern default account".into(),
        auth_token: tern_api::new_auth_token(),
        status: AccountStatus::Active,
        created: t,
        updated: t,
    };
    store.create_account(account.clone()).await?;
    let mut numbers = Vec::new();
    for i in 0..2 {
        let phone = free_number(store).await?;
        store
            .create_number(PhoneNumber {
                sid: Sid::generate(SidPrefix::PhoneNumber),
                account_sid: account.sid,
                phone_number: phone.clone(),
                config: NumberConfig::default(),
                // Distinct times keep the numbers in creation order when listed.
                created: t + i,
                updated: t + i,
            })
            .await?;
        numbers.push(phone);
    }
    let smpp = crate::admin::bootstrap_smpp_login(store, account.sid, None).await?;
    Ok((account, numbers, smpp))
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")
}

/// The listeners a node serves on.
pub struct Listeners {
    pub http: tokio::net::TcpListener,
    pub smpp: tokio::net::TcpListener,
}

/// What `/v1/Operator/…` shows: the carriers' binds and the customers' binds.
struct OperatorView {
    carriers: Vec<Arc<tern_carriers::smpp::SmppCarrier>>,
    /// The leased carriers as the region sees them (none when not leased).
    regional: Vec<Arc<RegionCarrier>>,
    smpp_server: Arc<SmppServer>,
    engine: Arc<Engine>,
}

impl tern_api::OperatorView for OperatorView {
    fn carriers(&self) -> serde_json::Value {
        let carriers = self.carriers.iter().map(|c| {
            let mut status = serde_json::to_value(c.status()).unwrap_or_default();
            // Where a node without a slot of its own sends through.
            if let (Some(r), Some(fields)) = (
                self.regional.iter().find(|r| Arc::ptr_eq(r.smpp(), c)),
                status.as_object_mut(),
            ) {
                fields.insert("slots_elsewhere".into(), r.held_elsewhere().into());
            }
            status
        });
        serde_json::Value::Array(carriers.collect())
    }

    fn customer_binds(&self) -> serde_json::Value {
        serde_json::to_value(self.smpp_server.binds()).unwrap_or_default()
    }

    fn network(&self) -> serde_json::Value {
        serde_json::to_value(self.engine.network_snapshot()).unwrap_or_default()
    }
}

/// Runs the engine, the carriers, the API and the customer SMPP server until
/// SIGINT/SIGTERM, then drains: the API stops, customers are unbound, work in flight
/// finishes, carriers unbind.
pub async fn run(
    config: Config,
    config_path: Option<std::path::PathBuf>,
    backend: Backend,
    queue: Arc<dyn Queue>,
    listeners: Listeners,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<()> {
    let store = backend.store();
    let operator_token = config.operator.resolve().map_err(anyhow::Error::msg)?;
    let (events_tx, events_rx) = tokio::sync::mpsc::channel(4096);
    // Nodes sharing a store share the carriers' bind slots (a lease each).
    let shared = config
        .store
        .url
        .as_deref()
        .is_some_and(|u| u.starts_with("postgres"));
    let carriers = Carriers::start(&config, events_tx, shared).await?;
    let lease_timing = tern_node::leader::LeaseTiming::new(
        Duration::from_millis(config.node.leader_ttl_ms.into()),
        Duration::from_millis(config.node.leader_renew_ms.into()),
    );
    let region = config.node.region.clone();
    let inbound_carrier = (!carriers.simulators.is_empty()).then(|| BUILT_IN[0].to_string());
    let smpp_settings = config.smpp.clone();
    // Leased carriers are reached through whichever node binds them.
    let regional: Vec<Arc<RegionCarrier>> = if carriers.leased {
        carriers
            .smpp
            .iter()
            .map(|c| RegionCarrier::new(c.clone(), queue.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let engine_carriers = if carriers.leased {
        regional
            .iter()
            .map(|c| c.clone() as Arc<dyn tern_carriers::Carrier>)
            .collect()
    } else {
        carriers.as_dyn()
    };
    let engine =
        Engine::new(store.clone(), queue, engine_carriers, config).map_err(anyhow::Error::msg)?;
    engine.start(events_rx).await?;
    let (stop_serving, serving) = tokio::sync::watch::channel(false);
    for c in &regional {
        tokio::spawn(c.clone().serve(serving.clone(), engine.clone()));
    }
    let bind_slots = carriers.leased.then(|| {
        tern_node::binds::BindSlots::start(
            store.clone(),
            &region,
            engine.leadership().holder(),
            lease_timing,
            regional.clone(),
        )
    });
    if let Some(path) = config_path {
        tokio::spawn(reload_routes_on_hangup(path, engine.clone()));
    }
    let smpp_server = SmppServer::new(
        engine.clone(),
        ServerConfig {
            system_id: smpp_settings.system_id,
            ..ServerConfig::default()
        },
    );
    let smpp_task = tokio::spawn(smpp_server.clone().serve(listeners.smpp));
    let draining = Arc::new(AtomicBool::new(false));
    let operator = operator_token.map(|token| tern_api::Operator {
        token,
        view: Arc::new(OperatorView {
            carriers: carriers.smpp.clone(),
            regional: regional.clone(),
            smpp_server: smpp_server.clone(),
            engine: engine.clone(),
        }),
    });
    let state = Arc::new(AppState {
        store,
        engine: engine.clone(),
        inbound_carrier,
        operator,
        metrics: Some(metrics),
        draining: draining.clone(),
    });
    axum::serve(listeners.http, tern_api::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: draining work in flight");
        })
        .await?;
    smpp_task.abort();
    smpp_server.unbind_all();
    engine.drain(Duration::from_secs(10)).await;
    stop_serving.send_replace(true);
    if let Some(slots) = bind_slots {
        slots.stop().await;
    }
    carriers.shutdown().await;
    backend.close();
    tracing::info!("stopped");
    Ok(())
}

/// On SIGHUP, reads the config file again and swaps in its `[[route]]` table (checked
/// whole first; a bad file keeps the table in force). Carriers and other settings take a
/// restart.
async fn reload_routes_on_hangup(path: std::path::PathBuf, engine: Arc<Engine>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGHUP: routes reload only on restart");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        let reloaded = load_config(Some(&path)).and_then(|c| {
            engine
                .set_routes(c.routes)
                .map_err(|e| anyhow::anyhow!("{e}"))
        });
        match reloaded {
            Ok(table) => tracing::info!(
                routes = table.routes().len(),
                file = %path.display(),
                "SIGHUP: route table reloaded"
            ),
            Err(e) => tracing::warn!(
                error = %format!("{e:#}"),
                "SIGHUP: route table not reloaded; the one in force stays"
            ),
        }
    }
}

pub async fn listen(addr: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}
