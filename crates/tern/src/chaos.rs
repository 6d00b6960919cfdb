//! `tern bench chaos`: the Super Network under carrier faults, brain on and brain off.
//!
//! Everything runs in this process: a SQLite store in a temporary directory, the
//! in-process queue, two or three carrier simulators (`carrier-a`, preferred, then
//! `carrier-b` and `carrier-c`; costs are not modelled, only route order) bound over real
//! SMPP on loopback, and an [`Engine`] whose routes list them. A steady load goes to one
//! destination prefix; at `--fault-at-secs` carrier-a gets a fault, at `--recover-at-secs`
//! it is healthy again. Each scenario runs twice: with `[network] learn = true` (the Super
//! Network ranks carriers from outcomes) and `learn = false` (the static route order,
//! next carrier only after a submit error).
//!
//! Each run gets its own tokio runtime, store, queue, simulators and connectors; the
//! runtime is shut down after the run, so no task of one run outlives it (the engine's
//! sweep and network loops never end by themselves).
//!
//! What is measured, from the store after the run (plus a drain of up to `--drain-secs`):
//!
//! - **moved**: from the fault until the first 1 s window of *created* messages (sliding
//!   in 50 ms steps, window starting at or after the fault) in which < 5 % of the messages
//!   that reached a carrier were taken by carrier-a (`Message.carrier`: the carrier that
//!   accepted the message, after any failover); **1st tries moved** is the same on the
//!   carrier each message was first offered to (a static route fails over after a submit
//!   error, so its messages end on carrier-b while every one of them still tries
//!   carrier-a first and pays a retry backoff);
//! - **resume**: from the recovery until the first such window in which carrier-a takes
//!   ≥ 50 % again (`n/a` when it never left);
//! - statuses at the end, **lost** = never final;
//! - **duplicated**: submits the simulators accepted (answered with a message id) beyond
//!   one per message a carrier took. A submit refused with an error status, or never sent
//!   (no bind), is a legitimate retry and is not counted; a submit the SMSC accepted whose
//!   response never reached Tern (connection cut, timeout) and that Tern then sent again is
//!   a duplicate at the handset and is counted;
//! - p99 created → delivered latency of messages created during the incident (store
//!   timestamps: `updated` is the time of the last transition, `delivered`);
//! - the share of all accepted messages delivered within 60 s of creation.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use serde::Serialize;
use tern_bus::inproc::InProcessQueue;
use tern_carriers::smpp::{SmppCarrier, SmppCarrierConfig};
use tern_carriers::{Carrier, CarrierEvent, OutboundSms, Receipt, SubmitError, Submitted};
use tern_domain::SendParams;
use tern_node::config::{MessagingConfig, RouteConfig};
use tern_node::network::NetworkConfig;
use tern_node::{Config, Engine, now_ms};
use tern_smsc_sim::{DelayMs, DeliveryRule, Faults, Smsc, SmscConfig, SmscHandle};
use tern_store::sqlite::SqliteStore;
use tern_store::{Account, AccountStatus, Message, MessageQuery, NumberConfig, PhoneNumber, Store};
use tern_types::{MessageStatus, Sid, SidPrefix};
use tokio::time::Instant;

const CARRIER_IDS: [&str; 3] = ["carrier-a", "carrier-b", "carrier-c"];
/// The main destination prefix (UK mobiles), `+4479110` + 5 digits. (The fictional
/// `+447700900…` range is not a valid number for libphonenumber, so sends to it are
/// refused.)
const MAIN_PREFIX: &str = "+4479110";
/// The second destination of the partial scenario (French mobiles), `+3361` + 7 digits.
const OTHER_PREFIX: &str = "+3361";
/// The route prefixes: one per destination country, both `[a, b, c]`, so a carrier's
/// health is learned per destination (a partial failure of +44 leaves +33 alone).
const ROUTES: [&str; 2] = ["+44", "+33"];
const FROM: &str = "+14155550100";
/// Resolution of the share windows.
const BUCKET_MS: i64 = 50;
const WINDOW_MS: i64 = 1_000;

const TARGET_LOST: u64 = 0;
const TARGET_DELIVERED_60S: f64 = 0.999;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// carrier-a accepts submits but sends no receipt.
    Silent,
    /// carrier-a refuses binds and cuts its connections.
    Hard,
    /// carrier-a delivers 40 % of the main prefix (60 % UNDELIV); 20 % of the load goes to
    /// a second prefix it keeps delivering.
    Partial,
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Silent => "silent",
            Scenario::Hard => "hard",
            Scenario::Partial => "partial",
        }
    }

    /// Target for "moved", seconds.
    fn moved_target_s(self) -> f64 {
        match self {
            Scenario::Silent => 10.0,
            Scenario::Hard => 1.0,
            Scenario::Partial => 30.0,
        }
    }

    fn faults(self, healthy: &Faults) -> Faults {
        match self {
            Scenario::Silent => Faults {
                silent: true,
                ..healthy.clone()
            },
            Scenario::Hard => Faults {
                refuse_binds: true,
                ..healthy.clone()
            },
            Scenario::Partial => Faults {
                rules: vec![DeliveryRule {
                    prefix: MAIN_PREFIX.into(),
                    delivery_ratio: 0.4,
                    stat: None,
                    err: 1,
                    submit_status: None,
                }],
                ..healthy.clone()
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// `[network] learn = true`.
    On,
    /// `[network] learn = false`: the static route order.
    Off,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Messages per second sent through `Engine::send`.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Seconds of load per run.
    #[arg(long, default_value_t = 45)]
    duration_secs: u64,
    /// When carrier-a fails, seconds from the start of the load.
    #[arg(long, default_value_t = 10)]
    fault_at_secs: u64,
    /// When carrier-a is healthy again.
    #[arg(long, default_value_t = 25)]
    recover_at_secs: u64,
    /// Scenarios to run, each brain on and brain off.
    #[arg(long, value_delimiter = ',', default_value = "silent,hard,partial")]
    scenarios: Vec<Scenario>,
    /// Brain modes to run for each scenario.
    #[arg(long, value_delimiter = ',', default_value = "on,off")]
    modes: Vec<Mode>,
    /// Carriers (2 or 3): carrier-a, carrier-b[, carrier-c].
    #[arg(long, default_value_t = 3)]
    carriers: usize,
    /// Simulated receipt delay, ms.
    #[arg(long, default_value_t = 200)]
    receipt_delay_ms: u64,
    /// After the load, how long messages may take to reach a final state before the rest
    /// count as lost.
    #[arg(long, default_value_t = 60)]
    drain_secs: u64,
    /// Print the results as JSON on stdout (progress then goes to stderr).
    #[arg(long)]
    json: bool,
}

/// One scenario × mode.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    scenario: Scenario,
    learn: bool,
    carriers: usize,
    rate: u32,
    duration_secs: u64,
    fault_at_secs: u64,
    recover_at_secs: u64,
    /// Seconds from the fault until < 5 % of new main-prefix traffic goes to carrier-a.
    moved_s: Option<f64>,
    /// The same, counting the carrier each message was first offered to (before any
    /// failover after a submit error).
    moved_first_try_s: Option<f64>,
    moved_target_s: f64,
    /// Seconds from the recovery until carrier-a takes ≥ 50 % again; `None` with
    /// `left = true` means not within the load.
    resume_s: Option<f64>,
    /// Whether carrier-a's share ever fell below 5 % (otherwise resume is n/a).
    left: bool,
    sent: u64,
    accepted: u64,
    rejected: u64,
    delivered: u64,
    undelivered: u64,
    failed: u64,
    lost: u64,
    duplicated: u64,
    resends: Resends,
    /// Submits that failed and were retried (legitimate retries, not duplicates).
    submit_errors: u64,
    /// Submits each simulator accepted.
    smsc_submits: BTreeMap<String, u64>,
    /// Messages each carrier took.
    taken: BTreeMap<String, u64>,
    incident_messages: u64,
    incident_delivered: u64,
    incident_p50_ms: Option<i64>,
    incident_p99_ms: Option<i64>,
    delivered_60s_share: f64,
    /// Per destination prefix (the partial scenario has two).
    prefixes: Vec<PrefixResult>,
    drain_s: f64,
    wall_s: f64,
}

/// What the engine's resends did in a run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Resends {
    /// Messages sent again on another carrier (overdue on a carrier gone down, or
    /// undelivered on a failing path).
    resent: u64,
    /// Resends whose copy went out although a receipt came first.
    races: u64,
    /// Messages both carriers reported delivered (the handset got two).
    duplicate_deliveries: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PrefixResult {
    prefix: String,
    accepted: u64,
    delivered: u64,
    undelivered: u64,
    /// carrier-a's share of this prefix's messages created during the incident.
    a_share_incident: f64,
    /// carrier-a's share before the fault.
    a_share_before: f64,
}

/// Where progress lines go: stdout, or stderr when stdout carries JSON.
#[derive(Clone, Copy)]
struct Out {
    json: bool,
}

impl Out {
    fn line(self, s: &str) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    }
}

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rate >= 1, "--rate must be at least 1");
    anyhow::ensure!(
        (2..=3).contains(&args.carriers),
        "--carriers must be 2 or 3"
    );
    anyhow::ensure!(
        args.fault_at_secs < args.recover_at_secs && args.recover_at_secs <= args.duration_secs,
        "need --fault-at-secs < --recover-at-secs <= --duration-secs"
    );
    anyhow::ensure!(
        !args.scenarios.is_empty() && !args.modes.is_empty(),
        "no scenario or mode to run"
    );
    let out = Out { json: args.json };
    let dispatch = quiet_dispatch();
    out.line(&format!(
        "tern bench chaos: {} msg/s for {} s per run, fault at {} s, recovery at {} s, {} carriers, receipts after {} ms, drain ≤ {} s",
        args.rate,
        args.duration_secs,
        args.fault_at_secs,
        args.recover_at_secs,
        args.carriers,
        args.receipt_delay_ms,
        args.drain_secs
    ));
    let mut results = Vec::new();
    for &scenario in &args.scenarios {
        for &mode in &args.modes {
            let learn = mode == Mode::On;
            out.line(&format!(
                "\n== {} · brain {} ==",
                scenario.name(),
                if learn { "on" } else { "off" }
            ));
            let (a, d) = (args.clone(), dispatch.clone());
            let r = tokio::task::spawn_blocking(move || isolated(a, scenario, learn, d))
                .await
                .context("the run panicked")??;
            out.line(&format!(
                "   done: moved {}, lost {}, duplicated {}, p99 incident {}, delivered ≤ 60 s {:.2} %",
                fmt_opt_s(r.moved_s),
                r.lost,
                r.duplicated,
                fmt_opt_ms(r.incident_p99_ms),
                r.delivered_60s_share * 100.0
            ));
            results.push(r);
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        println!("\n{}", table(&results));
    }
    Ok(())
}

/// `RUST_LOG`, or warnings only: the engine logs every health change at info.
fn quiet_dispatch() -> tracing::Dispatch {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing::Dispatch::new(
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .finish(),
    )
}

thread_local! {
    static LOG_GUARD: RefCell<Option<tracing::dispatcher::DefaultGuard>> =
        const { RefCell::new(None) };
}

/// One run on a runtime of its own, shut down afterwards: every task the run spawned
/// (engine loops included) ends with it.
fn isolated(
    args: ChaosArgs,
    scenario: Scenario,
    learn: bool,
    dispatch: tracing::Dispatch,
) -> anyhow::Result<RunResult> {
    let _log = tracing::dispatcher::set_default(&dispatch);
    let d = dispatch.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tern-chaos")
        .on_thread_start(move || {
            LOG_GUARD.with(|g| *g.borrow_mut() = Some(tracing::dispatcher::set_default(&d)));
        })
        .on_thread_stop(|| {
            LOG_GUARD.with(|g| g.borrow_mut().take());
        })
        .build()?;
    let outcome = runtime.block_on(one_run(&args, scenario, learn));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let (result, store, dir) = outcome?;
    store.close();
    drop(dir);
    Ok(result)
}

/// The carrier each message was first offered to.
type FirstTry = Arc<std::sync::Mutex<HashMap<Sid, bool>>>;

/// A carrier that counts its submissions and remembers which messages carrier-a was
/// offered first.
struct Counted {
    inner: Arc<SmppCarrier>,
    is_a: bool,
    first_try: FirstTry,
    ok: AtomicU64,
    errors: AtomicU64,
}

#[async_trait]
impl Carrier for Counted {
    fn id(&self) -> &str {
        self.inner.id()
    }

    async fn submit(&self, sms: &OutboundSms) -> Result<String, SubmitError> {
        self.submit_tracked(sms).await.map(|s| s.id)
    }

    async fn submit_tracked(&self, sms: &OutboundSms) -> Result<Submitted, SubmitError> {
        self.first_try
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(sms.message_sid)
            .or_insert(self.is_a);
        let r = self.inner.submit_tracked(sms).await;
        match &r {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.errors.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    async fn query(&self, carrier_message_id: &str, to: &str) -> Option<Receipt> {
        self.inner.query(carrier_message_id, to).await
    }

    fn transmitting(&self) -> Option<tokio::sync::watch::Receiver<usize>> {
        self.inner.transmitting()
    }
}

#[derive(Default)]
struct Load {
    sent: AtomicU64,
    accepted: AtomicU64,
    rejected: AtomicU64,
}

fn destination(i: u64, partial: bool) -> String {
    if partial && i % 5 == 4 {
        format!("{OTHER_PREFIX}{:07}", i % 10_000_000)
    } else {
        format!("{MAIN_PREFIX}{:05}", i % 100_000)
    }
}

async fn seed(store: &dyn Store) -> anyhow::Result<Account> {
    let t = now_ms();
    let account = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "chaos".into(),
        auth_token: "chaos-token".into(),
        status: AccountStatus::Active,
        created: t,
        updated: t,
    };
    store.create_account(account.clone()).await?;
    store
        .create_number(PhoneNumber {
            sid: Sid::generate(SidPrefix::PhoneNumber),
            account_sid: account.sid,
            phone_number: FROM.into(),
            config: NumberConfig::default(),
            created: t,
            updated: t,
        })
        .await?;
    Ok(account)
}

/// Sends at `rate` msg/s until `end`, each send its own task (the store commits them in
/// groups).
struct LoadPlan {
    engine: Arc<Engine>,
    account: Arc<Account>,
    rate: u32,
    start: Instant,
    end: Instant,
    partial: bool,
    counters: Arc<Load>,
    first_error: Arc<std::sync::Mutex<Option<String>>>,
}

async fn load(plan: LoadPlan) {
    let LoadPlan {
        engine,
        account,
        rate,
        start,
        end,
        partial,
        counters,
        first_error,
    } = plan;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut tasks = tokio::task::JoinSet::new();
    let mut i: u64 = 0;
    loop {
        tick.tick().await;
        let now = Instant::now();
        let due = if now >= end {
            (end - start).as_secs_f64()
        } else {
            (now - start).as_secs_f64()
        };
        let due = (due * f64::from(rate)) as u64;
        while i < due {
            let params = SendParams {
                to: Some(destination(i, partial)),
                from: Some(FROM.into()),
                body: Some("Tern chaos benchmark".into()),
                ..SendParams::default()
            };
            let (engine, account, counters, first_error) = (
                engine.clone(),
                account.clone(),
                counters.clone(),
                first_error.clone(),
            );
            counters.sent.fetch_add(1, Ordering::Relaxed);
            tasks.spawn(async move {
                match engine.send(&account, &params).await {
                    Ok(_) => {
                        counters.accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        counters.rejected.fetch_add(1, Ordering::Relaxed);
                        let mut first = first_error.lock().unwrap_or_else(|p| p.into_inner());
                        first.get_or_insert_with(|| e.to_string());
                    }
                }
            });
            i += 1;
        }
        while tasks.try_join_next().is_some() {}
        if now >= end {
            break;
        }
    }
    while tasks.join_next().await.is_some() {}
}

fn health_line(engine: &Engine) -> String {
    let paths: Vec<String> = engine
        .network_snapshot()
        .into_iter()
        .filter(|p| p.key.carrier == CARRIER_IDS[0])
        .map(|p| {
            format!(
                "a{} {:?} share {:.2} up {:.2} err {:.2} overdue {}",
                p.key.prefix,
                p.health,
                p.share,
                p.success.upper,
                p.submit_error_rate,
                p.overdue_streak
            )
        })
        .collect();
    if paths.is_empty() {
        "a: no signal yet".into()
    } else {
        paths.join(" | ")
    }
}

type RunOutput = (RunResult, Arc<SqliteStore>, tempfile::TempDir);

async fn one_run(args: &ChaosArgs, scenario: Scenario, learn: bool) -> anyhow::Result<RunOutput> {
    let out = Out { json: args.json };
    let wall = std::time::Instant::now();
    let dir = tempfile::tempdir()?;
    let sqlite = Arc::new(SqliteStore::open(&dir.path().join("chaos.db"))?);
    let store: Arc<dyn Store> = sqlite.clone();
    let account = Arc::new(seed(&*store).await?);
    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());

    let healthy = Faults {
        receipt_delay_ms: DelayMs::Fixed(args.receipt_delay_ms),
        ..Faults::default()
    };
    let ids: Vec<String> = CARRIER_IDS[..args.carriers]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let password = "chaos";
    let (events_tx, events_rx) = tokio::sync::mpsc::channel::<CarrierEvent>(4096);
    let mut sims: Vec<SmscHandle> = Vec::new();
    let mut counted: Vec<Arc<Counted>> = Vec::new();
    let first_try: FirstTry = Arc::default();
    for id in &ids {
        let sim = Smsc::start(SmscConfig {
            listen: "127.0.0.1:0".into(),
            system_id: "tern".into(),
            password: Some(password.into()),
            faults: healthy.clone(),
            ..SmscConfig::default()
        })
        .await
        .with_context(|| format!("cannot start the simulator of {id}"))?;
        let mut c = SmppCarrierConfig::new(id, &sim.addr().to_string(), "tern", password);
        c.window = 100;
        c.reconnect_max_ms = 2_000;
        let carrier = SmppCarrier::start(&c, events_tx.clone())
            .map_err(|e| anyhow::anyhow!("carrier {id}: {e}"))?;
        tokio::time::timeout(Duration::from_secs(5), carrier.wait_until_bound())
            .await
            .with_context(|| format!("{id} did not bind to its simulator"))?;
        sims.push(sim);
        counted.push(Arc::new(Counted {
            inner: carrier,
            is_a: counted.is_empty(),
            first_try: first_try.clone(),
            ok: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        }));
    }
    drop(events_tx);

    let config = Config {
        routes: ROUTES
            .iter()
            .map(|p| RouteConfig::new(*p, ids.clone()))
            .collect(),
        messaging: MessagingConfig {
            receipt_grace_secs: 5,
            ..MessagingConfig::default()
        },
        network: NetworkConfig {
            learn,
            ..NetworkConfig::default()
        },
        ..Config::default()
    };
    let carriers: Vec<Arc<dyn Carrier>> = counted
        .iter()
        .map(|c| c.clone() as Arc<dyn Carrier>)
        .collect();
    let engine = Engine::new(store.clone(), queue, carriers, config).map_err(anyhow::Error::msg)?;
    engine.start(events_rx).await?;

    // The load and the fault schedule.
    let partial = scenario == Scenario::Partial;
    let start = Instant::now();
    let start_ms = now_ms();
    let fault_at = start + Duration::from_secs(args.fault_at_secs);
    let recover_at = start + Duration::from_secs(args.recover_at_secs);
    let end = start + Duration::from_secs(args.duration_secs);
    let counters = Arc::new(Load::default());
    let first_error = Arc::new(std::sync::Mutex::new(None));
    let load_task = tokio::spawn(load(LoadPlan {
        engine: engine.clone(),
        account: account.clone(),
        rate: args.rate,
        start,
        end,
        partial,
        counters: counters.clone(),
        first_error: first_error.clone(),
    }));
    let mut fault_ms = start_ms + args.fault_at_secs as i64 * 1000;
    let mut recover_ms = start_ms + args.recover_at_secs as i64 * 1000;
    let mut progress =
        tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut stage = 0u8; // 0: before the fault, 1: during, 2: recovered
    let mut last_accepted = 0u64;
    let mut last_ok: Vec<u64> = vec![0; counted.len()];
    loop {
        let next = match stage {
            0 => Some(fault_at),
            1 => Some(recover_at),
            _ => None,
        };
        tokio::select! {
            () = sleep_opt(next) => {
                if stage == 0 {
                    sims[0].set_faults(scenario.faults(&healthy))?;
                    fault_ms = now_ms();
                    out.line(&format!("   t={:>5.1}s  FAULT: carrier-a {}", start.elapsed().as_secs_f64(), scenario.name()));
                } else {
                    sims[0].set_faults(healthy.clone())?;
                    recover_ms = now_ms();
                    out.line(&format!("   t={:>5.1}s  RECOVERED: carrier-a healthy", start.elapsed().as_secs_f64()));
                }
                stage += 1;
            }
            _ = progress.tick() => {
                let accepted = counters.accepted.load(Ordering::Relaxed);
                let ok: Vec<u64> = counted.iter().map(|c| c.ok.load(Ordering::Relaxed)).collect();
                let delta: Vec<u64> = ok.iter().zip(&last_ok).map(|(n, l)| n - l).collect();
                let total: u64 = delta.iter().sum();
                let shares: Vec<String> = ids
                    .iter()
                    .zip(&delta)
                    .map(|(id, d)| {
                        let pct = if total == 0 { 0.0 } else { *d as f64 * 100.0 / total as f64 };
                        format!("{} {:>3.0}%", id.trim_start_matches("carrier-"), pct)
                    })
                    .collect();
                out.line(&format!(
                    "   t={:>3}s  sent {:>4}/s  taken {}  | {}",
                    start.elapsed().as_secs(),
                    accepted - last_accepted,
                    shares.join(" "),
                    health_line(&engine)
                ));
                last_accepted = accepted;
                last_ok = ok;
                if Instant::now() >= end {
                    break;
                }
            }
        }
    }
    load_task.await.context("the load task panicked")?;
    if let Some(e) = first_error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
    {
        out.line(&format!("   a send was rejected: {e}"));
    }

    // Drain: wait for every message to reach a final state.
    let drain_start = Instant::now();
    let mut pending: Vec<Sid> = all_messages(&*store, account.sid)
        .await?
        .into_iter()
        .filter(|m| !m.status.is_terminal())
        .map(|m| m.sid)
        .collect();
    let drain_deadline = drain_start + Duration::from_secs(args.drain_secs);
    let mut last_report = drain_start;
    while !pending.is_empty() && Instant::now() < drain_deadline {
        if last_report.elapsed() >= Duration::from_secs(5) {
            out.line(&format!(
                "   draining: {} messages not final yet",
                pending.len()
            ));
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut still = Vec::with_capacity(pending.len());
        for sid in pending {
            match store.message(sid).await? {
                Some(m) if !m.status.is_terminal() => still.push(sid),
                _ => {}
            }
        }
        pending = still;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let messages = all_messages(&*store, account.sid).await?;
    let smsc_submits: BTreeMap<String, u64> = ids
        .iter()
        .zip(&sims)
        .map(|(id, s)| (id.clone(), s.stats().submits))
        .collect();
    let submit_errors = counted
        .iter()
        .map(|c| c.errors.load(Ordering::Relaxed))
        .sum();

    // Stop: no new work, connectors unbind, simulators stop. The engine's endless loops
    // end with the runtime.
    engine.drain(Duration::from_secs(5)).await;
    for c in &counted {
        c.inner.shutdown().await;
    }
    for s in sims {
        s.shutdown().await;
    }

    let times = Times {
        start_ms,
        fault_ms,
        recover_ms,
        end_ms: start_ms + args.duration_secs as i64 * 1000,
    };
    let first_try = std::mem::take(&mut *first_try.lock().unwrap_or_else(|p| p.into_inner()));
    // The carrier that first took each message: a resend moves `Message.carrier` on, but
    // routing moved only if new messages stopped going to carrier-a in the first place.
    let mut first_taken = HashMap::new();
    for m in &messages {
        let attempts = store.route_attempts(m.sid).await?;
        if let Some(a) = attempts
            .iter()
            .find(|a| a.result == tern_store::AttemptResult::Accepted)
        {
            first_taken.insert(m.sid, a.carrier == CARRIER_IDS[0]);
        }
    }
    let resends = engine.resend_counters();
    let resends = Resends {
        resent: resends.resent.load(Ordering::Relaxed),
        races: resends.resend_races.load(Ordering::Relaxed),
        duplicate_deliveries: resends.duplicate_deliveries.load(Ordering::Relaxed),
    };
    let result = analyse(
        args,
        scenario,
        learn,
        &messages,
        &first_try,
        &first_taken,
        resends,
        &times,
        &counters,
        smsc_submits,
        submit_errors,
        drain_s,
        wall.elapsed().as_secs_f64(),
    );
    Ok((result, sqlite, dir))
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Every message of the account, newest first.
async fn all_messages(store: &dyn Store, account: Sid) -> anyhow::Result<Vec<Message>> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .messages(
                account,
                MessageQuery {
                    after,
                    limit: 1000,
                    ..MessageQuery::default()
                },
            )
            .await?;
        all.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(all),
        }
    }
}

/// Store-clock (Unix ms) times of one run.
struct Times {
    start_ms: i64,
    fault_ms: i64,
    recover_ms: i64,
    end_ms: i64,
}

/// carrier-a's share of the messages created in 1 s windows starting every `BUCKET_MS`.
struct Shares {
    start_ms: i64,
    /// Per bucket: (taken by carrier-a, taken by any carrier).
    buckets: Vec<(u64, u64)>,
}

impl Shares {
    /// From (created, whether carrier-a) of the messages that reached a carrier.
    fn new(messages: impl Iterator<Item = (i64, bool)>, t: &Times) -> Shares {
        let n = ((t.end_ms - t.start_ms) / BUCKET_MS + 1).max(1) as usize;
        let mut buckets = vec![(0u64, 0u64); n];
        for (created, is_a) in messages {
            let i = (created - t.start_ms) / BUCKET_MS;
            if let Some(b) = usize::try_from(i).ok().and_then(|i| buckets.get_mut(i)) {
                b.1 += 1;
                if is_a {
                    b.0 += 1;
                }
            }
        }
        Shares {
            start_ms: t.start_ms,
            buckets,
        }
    }

    /// The share of the window [from, from + 1 s) of created time; `None` when empty or
    /// past the load.
    fn share(&self, from_ms: i64) -> Option<f64> {
        let first = usize::try_from((from_ms - self.start_ms) / BUCKET_MS).ok()?;
        let last = first + (WINDOW_MS / BUCKET_MS) as usize;
        if last > self.buckets.len() {
            return None;
        }
        let (a, all) = self.buckets[first..last]
            .iter()
            .fold((0, 0), |(a, n), b| (a + b.0, n + b.1));
        (all > 0).then(|| a as f64 / all as f64)
    }

    /// Seconds from `at` to the first window starting at or after `at` whose share
    /// satisfies `pred`.
    fn first_after(&self, at_ms: i64, pred: impl Fn(f64) -> bool) -> Option<f64> {
        let rel = at_ms - self.start_ms;
        // The first bucket boundary at or after `at`.
        let mut from = self.start_ms + (rel + BUCKET_MS - 1).div_euclid(BUCKET_MS) * BUCKET_MS;
        loop {
            let first = (from - self.start_ms) / BUCKET_MS;
            if first as usize + (WINDOW_MS / BUCKET_MS) as usize > self.buckets.len() {
                return None;
            }
            if let Some(s) = self.share(from)
                && pred(s)
            {
                return Some((from - at_ms) as f64 / 1000.0);
            }
            from += BUCKET_MS;
        }
    }
}

fn share_between<'a>(messages: impl Iterator<Item = &'a Message>, from: i64, to: i64) -> f64 {
    let (mut a, mut n) = (0u64, 0u64);
    for m in messages.filter(|m| m.created >= from && m.created < to) {
        if let Some(c) = &m.carrier {
            n += 1;
            if c == CARRIER_IDS[0] {
                a += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { a as f64 / n as f64 }
}

fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).ceil() as usize;
    sorted.get(i.min(sorted.len() - 1)).copied()
}

#[allow(clippy::too_many_arguments)]
fn analyse(
    args: &ChaosArgs,
    scenario: Scenario,
    learn: bool,
    messages: &[Message],
    first_try: &HashMap<Sid, bool>,
    first_taken: &HashMap<Sid, bool>,
    resends: Resends,
    t: &Times,
    counters: &Load,
    smsc_submits: BTreeMap<String, u64>,
    submit_errors: u64,
    drain_s: f64,
    wall_s: f64,
) -> RunResult {
    let main = || messages.iter().filter(|m| m.to.starts_with(MAIN_PREFIX));
    let shares = Shares::new(
        main().filter_map(|m| Some((m.created, *first_taken.get(&m.sid)?))),
        t,
    );
    let moved_s = shares.first_after(t.fault_ms, |s| s < 0.05);
    let first_shares = Shares::new(
        main().filter_map(|m| Some((m.created, *first_try.get(&m.sid)?))),
        t,
    );
    let moved_first_try_s = first_shares.first_after(t.fault_ms, |s| s < 0.05);
    let left = moved_s.is_some();
    let resume_s = if left {
        shares.first_after(t.recover_ms, |s| s >= 0.5)
    } else {
        None
    };
    let count = |s: MessageStatus| messages.iter().filter(|m| m.status == s).count() as u64;
    let lost = messages.iter().filter(|m| !m.status.is_terminal()).count() as u64;
    let mut taken: BTreeMap<String, u64> = BTreeMap::new();
    for m in messages {
        if let Some(c) = &m.carrier {
            *taken.entry(c.clone()).or_default() += 1;
        }
    }
    let taken_total: u64 = taken.values().sum();
    // Resends are copies sent on purpose; what is left was sent twice unintended.
    let duplicated = smsc_submits
        .values()
        .sum::<u64>()
        .saturating_sub(taken_total + resends.resent);
    let incident: Vec<&Message> = messages
        .iter()
        .filter(|m| m.created >= t.fault_ms && m.created < t.recover_ms)
        .collect();
    let mut latencies: Vec<i64> = incident
        .iter()
        .filter(|m| m.status == MessageStatus::Delivered)
        .map(|m| m.updated - m.created)
        .collect();
    latencies.sort_unstable();
    let accepted = counters.accepted.load(Ordering::Relaxed);
    let within = messages
        .iter()
        .filter(|m| m.status == MessageStatus::Delivered && m.updated - m.created <= 60_000)
        .count() as f64;
    let prefixes = [MAIN_PREFIX, OTHER_PREFIX]
        .iter()
        .filter_map(|p| {
            let of = || messages.iter().filter(move |m| m.to.starts_with(p));
            let n = of().count() as u64;
            (n > 0).then(|| PrefixResult {
                prefix: (*p).to_owned(),
                accepted: n,
                delivered: of()
                    .filter(|m| m.status == MessageStatus::Delivered)
                    .count() as u64,
                undelivered: of()
                    .filter(|m| m.status == MessageStatus::Undelivered)
                    .count() as u64,
                a_share_incident: share_between(of(), t.fault_ms, t.recover_ms),
                a_share_before: share_between(of(), t.start_ms, t.fault_ms),
            })
        })
        .collect();
    RunResult {
        scenario,
        learn,
        carriers: args.carriers,
        rate: args.rate,
        duration_secs: args.duration_secs,
        fault_at_secs: args.fault_at_secs,
        recover_at_secs: args.recover_at_secs,
        moved_s,
        moved_first_try_s,
        moved_target_s: scenario.moved_target_s(),
        resume_s,
        left,
        sent: counters.sent.load(Ordering::Relaxed),
        accepted,
        rejected: counters.rejected.load(Ordering::Relaxed),
        delivered: count(MessageStatus::Delivered),
        undelivered: count(MessageStatus::Undelivered),
        failed: count(MessageStatus::Failed),
        lost,
        duplicated,
        resends,
        submit_errors,
        smsc_submits,
        taken,
        incident_messages: incident.len() as u64,
        incident_delivered: latencies.len() as u64,
        incident_p50_ms: percentile(&latencies, 0.50),
        incident_p99_ms: percentile(&latencies, 0.99),
        delivered_60s_share: if accepted == 0 {
            0.0
        } else {
            within / accepted as f64
        },
        prefixes,
        drain_s,
        wall_s,
    }
}

fn fmt_opt_s(v: Option<f64>) -> String {
    v.map_or_else(|| "never".into(), |s| format!("{s:.2} s"))
}

fn fmt_opt_ms(v: Option<i64>) -> String {
    v.map_or_else(|| "–".into(), |ms| format!("{:.2} s", ms as f64 / 1000.0))
}

fn mark(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISS" }
}

/// The results table (Markdown), with targets and the brain on/off gains.
fn table(results: &[RunResult]) -> String {
    let mut s = String::new();
    s.push_str("| scenario | brain | moved (target) | 1st tries moved | resume | accepted | delivered | undelivered | failed | lost (target 0) | duplicated | resent / 2× delivered | p50 / p99 incident latency | delivered ≤ 60 s (target ≥ 99.9 %) |\n");
    s.push_str(
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |\n",
    );
    for r in results {
        let moved = match r.moved_s {
            Some(m) => format!(
                "{m:.2} s (≤ {:.0} s {})",
                r.moved_target_s,
                mark(m <= r.moved_target_s)
            ),
            None => format!("never (≤ {:.0} s MISS)", r.moved_target_s),
        };
        let resume = match (r.left, r.resume_s) {
            (false, _) => "n/a".to_string(),
            (true, Some(x)) => format!("{x:.2} s"),
            (true, None) => format!(
                "> {} s (not within the load)",
                r.duration_secs - r.recover_at_secs
            ),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} {} | {} | {} / {} | {} / {} | {:.2} % {} |\n",
            r.scenario.name(),
            if r.learn { "on" } else { "off" },
            moved,
            fmt_opt_s(r.moved_first_try_s),
            resume,
            r.accepted,
            r.delivered,
            r.undelivered,
            r.failed,
            r.lost,
            mark(r.lost == TARGET_LOST),
            r.duplicated,
            r.resends.resent,
            r.resends.duplicate_deliveries,
            fmt_opt_ms(r.incident_p50_ms),
            fmt_opt_ms(r.incident_p99_ms),
            r.delivered_60s_share * 100.0,
            mark(r.delivered_60s_share >= TARGET_DELIVERED_60S),
        ));
    }
    // Gains: brain off / brain on, per scenario run both ways.
    let mut gains = Vec::new();
    for on in results.iter().filter(|r| r.learn) {
        let Some(off) = results
            .iter()
            .find(|r| !r.learn && r.scenario == on.scenario)
        else {
            continue;
        };
        let not_delivered =
            |r: &RunResult| r.accepted as f64 - r.delivered_60s_share * r.accepted as f64;
        let ratio = |a: f64, b: f64| {
            if b > 0.0 {
                format!("{:.1}×", a / b)
            } else if a > 0.0 {
                "∞".to_string()
            } else {
                "1×".to_string()
            }
        };
        let latency = |off: Option<i64>, on: Option<i64>| match (off, on) {
            (Some(a), Some(b)) => format!(
                "{} vs {} = {}",
                fmt_opt_ms(Some(a)),
                fmt_opt_ms(Some(b)),
                ratio(a as f64, b as f64)
            ),
            _ => format!("{} vs {}", fmt_opt_ms(off), fmt_opt_ms(on)),
        };
        gains.push(format!(
            "- {}: not delivered within 60 s {:.0} (off) vs {:.0} (on) = {}; undelivered {} vs {} = {}; incident latency p50 {}, p99 {}; moved {} vs {}",
            on.scenario.name(),
            not_delivered(off),
            not_delivered(on),
            ratio(not_delivered(off), not_delivered(on)),
            off.undelivered,
            on.undelivered,
            ratio(off.undelivered as f64, on.undelivered as f64),
            latency(off.incident_p50_ms, on.incident_p50_ms),
            latency(off.incident_p99_ms, on.incident_p99_ms),
            fmt_opt_s(off.moved_s),
            fmt_opt_s(on.moved_s),
        ));
    }
    if !gains.is_empty() {
        s.push_str("\nGain of the brain (off / on):\n\n");
        for g in gains {
            s.push_str(&g);
            s.push('\n');
        }
    }
    let mut notes = Vec::new();
    for r in results {
        let per: Vec<String> = r
            .prefixes
            .iter()
            .map(|p| {
                format!(
                    "{}…: {} accepted, {} delivered, {} undelivered, carrier-a share {:.1} % before / {:.1} % during the incident",
                    p.prefix,
                    p.accepted,
                    p.delivered,
                    p.undelivered,
                    p.a_share_before * 100.0,
                    p.a_share_incident * 100.0
                )
            })
            .collect();
        let taken: Vec<String> = r.taken.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let smsc: Vec<String> = r
            .smsc_submits
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        notes.push(format!(
            "- {} brain {}: taken {}; SMSC submits {}; submit errors retried {}; {}; drain {:.1} s, run {:.0} s",
            r.scenario.name(),
            if r.learn { "on" } else { "off" },
            taken.join(", "),
            smsc.join(", "),
            r.submit_errors,
            per.join("; "),
            r.drain_s,
            r.wall_s
        ));
    }
    s.push_str("\nDetails:\n\n");
    for n in notes {
        s.push_str(&n);
        s.push('\n');
    }
    s
}
