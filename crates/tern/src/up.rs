//! `tern up`: one process, SQLite in the data directory, the in-process queue and the
//! simulated carrier. The first start creates an account with two numbers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tern_api::AppState;
use tern_bus::inproc::InProcessQueue;
use tern_carriers::Carrier;
use tern_carriers::sim::SimCarrier;
use tern_node::{Config, Engine, now_ms};
use tern_store::sqlite::SqliteStore;
use tern_store::{Account, AccountStatus, NumberConfig, PhoneNumber, Store};
use tern_types::{E164, Sid, SidPrefix};

#[derive(clap::Args)]
pub struct UpArgs {
    /// Where the database and credentials live.
    #[arg(long, default_value = "./tern-data")]
    data_dir: PathBuf,
    /// Address of the HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Credentials {
    pub account_sid: String,
    pub auth_token: String,
    pub api_base_url: String,
    pub phone_numbers: Vec<String>,
}

fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    let Some(path) = path else {
        return Ok(Config::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the config file {}", path.display()))?;
    Config::from_toml(&text).with_context(|| format!("invalid config file {}", path.display()))
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

/// The account `tern up` runs with: the first one in the store, or a new one.
async fn bootstrap(store: &dyn Store) -> anyhow::Result<(Account, Vec<String>)> {
    if let Some(a) = store.first_account().await? {
        let numbers = store
            .numbers(a.sid)
            .await?
            .into_iter()
            .map(|n| n.phone_number)
            .collect();
        return Ok((a, numbers));
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
    for _ in 0..2 {
        let phone = free_number(store).await?;
        store
            .create_number(PhoneNumber {
                sid: Sid::generate(SidPrefix::PhoneNumber),
                account_sid: account.sid,
                phone_number: phone.clone(),
                config: NumberConfig::default(),
                created: t,
                updated: t,
            })
            .await?;
        numbers.push(phone);
    }
    Ok((account, numbers))
}

fn write_credentials(dir: &Path, creds: &Credentials) -> anyhow::Result<()> {
    let path = dir.join("credentials.json");
    let tmp = dir.join("credentials.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(creds)?)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.as_deref())?;
    std::fs::create_dir_all(&args.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            args.data_dir.display()
        )
    })?;
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])
        .context("metrics buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;

    let store = Arc::new(
        SqliteStore::open(&args.data_dir.join("tern.db")).context("cannot open the store")?,
    );
    let dyn_store: Arc<dyn Store> = store.clone();
    let (account, numbers) = bootstrap(&*dyn_store).await?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let creds = Credentials {
        account_sid: account.sid.to_string(),
        auth_token: account.auth_token.clone(),
        api_base_url: format!("http://{addr}"),
        phone_numbers: numbers,
    };
    write_credentials(&args.data_dir, &creds)?;

    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());
    let (events_tx, events_rx) = tokio::sync::mpsc::unbounded_channel();
    let sim = Arc::new(SimCarrier::new("sim", config.sim.clone(), events_tx));
    let carriers: Vec<Arc<dyn Carrier>> = vec![sim.clone()];
    let engine =
        Engine::new(dyn_store.clone(), queue, carriers, config).map_err(anyhow::Error::msg)?;
    engine.start(events_rx).await?;

    let draining = Arc::new(AtomicBool::new(false));
    let state = Arc::new(AppState {
        store: dyn_store,
        engine: engine.clone(),
        sim: Some(sim),
        metrics: Some(metrics),
        draining: draining.clone(),
    });

    println!("Tern is up on http://{addr}");
    println!("  account_sid   {}", creds.account_sid);
    println!("  auth_token    {}", creds.auth_token);
    println!("  phone numbers {}", creds.phone_numbers.join(", "));
    println!(
        "  credentials   {}",
        args.data_dir.join("credentials.json").display()
    );
    println!("Point a Twilio SDK at it: client.api.base_url = \"http://{addr}\"");

    axum::serve(listener, tern_api::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: draining work in flight");
        })
        .await?;
    engine.drain(Duration::from_secs(10)).await;
    store.close();
    tracing::info!("stopped");
    Ok(())
}
