//! `tern bench`: load a running node and print what it sustains.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;

use crate::node::Credentials;

#[path = "chaos.rs"]
mod chaos;

#[derive(clap::Subcommand)]
pub enum BenchCommand {
    /// Accepted messages/s with p50/p99 latency, then end-to-end messages/s
    /// (accept → simulated carrier → delivered → status callback received).
    Messages(MessagesArgs),
    /// submit_sm/s over one SMPP bind, with every delivery receipt awaited, at each window:
    /// against a simulator (`--addr`, or one started in-process) or end to end through a
    /// node's customer SMPP server (`--credentials`: submit → store → carrier → receipt →
    /// store → deliver_sm back).
    Smpp(SmppArgs),
    /// The Super Network under carrier faults (silent, hard, partial), brain on and off,
    /// all in this process: simulators, SMPP connectors, engine, SQLite.
    Chaos(chaos::ChaosArgs),
}

#[derive(clap::Args)]
pub struct SmppArgs {
    /// An SMSC to bind to (e.g. `tern sim smsc`); default: a simulator in this process.
    #[arg(long, conflicts_with = "credentials")]
    addr: Option<String>,
    #[arg(long, default_value = "tern")]
    system_id: String,
    #[arg(long, default_value = "")]
    password: String,
    /// A node's `credentials.json`: bind to its SMPP server with its login and send from
    /// its first number.
    #[arg(long)]
    credentials: Option<PathBuf>,
    /// Windows to measure, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10,100")]
    windows: Vec<usize>,
    /// Submits per run.
    #[arg(long, default_value_t = 200_000)]
    count: u64,
}

#[derive(clap::Args)]
pub struct MessagesArgs {
    /// The node's `credentials.json` (written by `tern up`).
    #[arg(long, default_value = "./tern-data/credentials.json")]
    credentials: PathBuf,
    /// Concurrent connections.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds of the accept phase.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Messages sent in the end-to-end phase (0 skips it).
    #[arg(long, default_value_t = 20_000)]
    e2e_messages: u64,
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Messages(args) => messages(args).await,
        BenchCommand::Smpp(args) => smpp(args).await,
        BenchCommand::Chaos(args) => chaos::run(args).await,
    }
}

async fn smpp(args: SmppArgs) -> anyhow::Result<()> {
    use tern_smpp::pdu::Address;
    use tern_smsc_sim::{BenchOptions, Smsc, SmscConfig, bench_bind};
    let mut base = BenchOptions::default();
    let mut simulator = None;
    let addr = match (&args.addr, &args.credentials) {
        (Some(addr), _) => {
            base.system_id = args.system_id.clone();
            base.password = args.password.clone();
            addr.clone()
        }
        (None, Some(path)) => {
            let creds: Credentials = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
            .with_context(|| format!("{} is not a credentials.json", path.display()))?;
            anyhow::ensure!(
                !creds.smpp_address.is_empty() && !creds.smpp_system_id.is_empty(),
                "{} names no SMPP server or login (written by an older tern up?)",
                path.display()
            );
            let from = creds
                .phone_numbers
                .first()
                .context("the credentials list no phone number")?;
            base.system_id = creds.smpp_system_id;
            base.password = creds.smpp_password;
            base.source = Address::new(1, 1, from.trim_start_matches('+'));
            base.destination = Address::new(1, 1, "14155552671");
            creds.smpp_address
        }
        (None, None) => {
            let sim = Smsc::start(SmscConfig {
                listen: "127.0.0.1:0".into(),
                ..SmscConfig::default()
            })
            .await?;
            let addr = sim.addr().to_string();
            simulator = Some(sim);
            addr
        }
    };
    println!(
        "SMPP bench against {addr}: {} submits per run, one transceiver bind",
        args.count
    );
    for window in &args.windows {
        let opts = BenchOptions {
            window: *window,
            count: args.count,
            ..base.clone()
        };
        let figures = bench_bind(&addr, &opts).await?;
        println!("{figures}");
    }
    if let Some(sim) = simulator {
        println!("simulator: {}", sim.stats().summary());
        sim.shutdown().await;
    }
    Ok(())
}

struct Target {
    client: reqwest::Client,
    url: String,
    auth: String,
    from: String,
}

impl Target {
    async fn send(&self, to: &str, callback: Option<&str>) -> anyhow::Result<u16> {
        let body = {
            let mut form = form_urlencoded::Serializer::new(String::new());
            form.append_pair("To", to)
                .append_pair("From", &self.from)
                .append_pair("Body", "Tern benchmark message");
            if let Some(cb) = callback {
                form.append_pair("StatusCallback", cb);
            }
            form.finish()
        };
        let resp = self
            .client
            .post(&self.url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let _ = resp.bytes().await?;
        Ok(status)
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn messages(args: MessagesArgs) -> anyhow::Result<()> {
    let creds: Credentials = serde_json::from_slice(
        &std::fs::read(&args.credentials)
            .with_context(|| format!("cannot read {}", args.credentials.display()))?,
    )?;
    let from = creds
        .phone_numbers
        .first()
        .context("the credentials list no phone number")?
        .clone();
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.account_sid, creds.auth_token))
    );
    let target = Arc::new(Target {
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(args.concurrency)
            .build()?,
        url: format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            creds.api_base_url, creds.account_sid
        ),
        auth,
        from,
    });
    let to = "+14155552671";

    println!(
        "tern bench messages: {} connections, {} s accept phase, against {}",
        args.concurrency, args.duration, creds.api_base_url
    );
    let deadline = Instant::now() + Duration::from_secs(args.duration);
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let target = target.clone();
        let errors = errors.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let t = Instant::now();
                match target.send(to, None).await {
                    Ok(201) => lat.push(t.elapsed().as_micros() as u64),
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await?);
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    println!(
        "accept: {} messages in {:.1} s = {:.0} accepted/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {} errors",
        all.len(),
        secs,
        all.len() as f64 / secs,
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 1.0),
        errors.load(Ordering::Relaxed)
    );

    if args.e2e_messages > 0 {
        end_to_end(&target, to, args.e2e_messages, args.concurrency).await?;
    }
    Ok(())
}

/// Sends `n` messages with a status callback to a local receiver and times until every
/// `delivered` callback has arrived.
async fn end_to_end(
    target: &Arc<Target>,
    to: &str,
    n: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let delivered = Arc::new(AtomicU64::new(0));
    let notify = Arc::new(tokio::sync::Notify::new());
    let app = {
        let delivered = delivered.clone();
        let notify = notify.clone();
        axum::Router::new().route(
            "/cb",
            axum::routing::post(move |body: axum::body::Bytes| {
                let delivered = delivered.clone();
                let notify = notify.clone();
                async move {
                    if form_urlencoded::parse(&body)
                        .any(|(k, v)| k == "MessageStatus" && v == "delivered")
                    {
                        delivered.fetch_add(1, Ordering::Relaxed);
                        notify.notify_one();
                    }
                    ""
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let cb = format!("http://{}/cb", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (target, next, cb, to) = (target.clone(), next.clone(), cb.clone(), to.to_string());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                if !matches!(target.send(&to, Some(&cb)).await, Ok(201)) {
                    return Err(anyhow::anyhow!("a send failed during the end-to-end phase"));
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let accepted_in = started.elapsed().as_secs_f64();
    let wait_until = Instant::now() + Duration::from_secs(120);
    while delivered.load(Ordering::Relaxed) < n && Instant::now() < wait_until {
        let _ = tokio::time::timeout(Duration::from_millis(200), notify.notified()).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let got = delivered.load(Ordering::Relaxed);
    println!(
        "end to end: {got}/{n} delivered callbacks in {secs:.1} s = {:.0} messages/s (all accepted in {accepted_in:.1} s)",
        got as f64 / secs
    );
    Ok(())
}
