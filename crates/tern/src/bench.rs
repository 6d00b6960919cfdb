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

/// The Messages resource of one node, loaded over plain HTTP/1.1 keep-alive connections.
///
/// hyper directly rather than reqwest: the load generator shares the machine with the
/// node (and here with PostgreSQL and NATS), and reqwest's per-request work (URL and
/// header maps, pool bookkeeping) cost 37-40 us of CPU a request, about a tenth of what
/// a send costs everything else together; a prepared request costs 22-23 us.
struct Target {
    /// `host:port`, to connect to and to name in `Host`.
    authority: String,
    path: String,
    auth: hyper::header::HeaderValue,
    from: String,
}

/// One keep-alive connection to the node.
struct Connection(hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>);

impl Target {
    fn new(creds: &Credentials, from: String) -> anyhow::Result<Target> {
        let base: hyper::Uri = creds
            .api_base_url
            .parse()
            .with_context(|| format!("the API base URL {} is not a URL", creds.api_base_url))?;
        anyhow::ensure!(
            base.scheme_str() == Some("http"),
            "tern bench messages speaks plain HTTP to the node; {} is not http://",
            creds.api_base_url
        );
        let authority = base
            .authority()
            .context("the API base URL names no host")?
            .to_string();
        let prefix = base.path().trim_end_matches('/');
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", creds.account_sid, creds.auth_token))
        );
        Ok(Target {
            authority,
            path: format!(
                "{prefix}/2010-04-01/Accounts/{}/Messages.json",
                creds.account_sid
            ),
            auth: hyper::header::HeaderValue::from_str(&auth)
                .context("the credentials do not fit in an Authorization header")?,
            from,
        })
    }

    /// A send's form body, made once and sent as often as wanted.
    fn body(&self, to: &str, callback: Option<&str>) -> bytes::Bytes {
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair("To", to)
            .append_pair("From", &self.from)
            .append_pair("Body", "Tern benchmark message");
        if let Some(cb) = callback {
            form.append_pair("StatusCallback", cb);
        }
        form.finish().into()
    }

    async fn connect(&self) -> anyhow::Result<Connection> {
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .with_context(|| format!("cannot connect to {}", self.authority))?;
        tcp.set_nodelay(true)?;
        let (send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        Ok(Connection(send))
    }

    /// Sends one message; its HTTP status.
    async fn send(&self, c: &mut Connection, body: bytes::Bytes) -> anyhow::Result<u16> {
        use http_body_util::BodyExt as _;
        use hyper::header;
        let req = hyper::Request::post(&self.path)
            .header(header::HOST, &self.authority)
            .header(header::AUTHORIZATION, self.auth.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(body))?;
        c.0.ready().await?;
        let resp = c.0.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }

    /// [`Target::send`] on a new connection when the last one broke.
    async fn send_on(&self, c: &mut Option<Connection>, body: bytes::Bytes) -> anyhow::Result<u16> {
        let conn = match c {
            Some(conn) => conn,
            None => c.insert(self.connect().await?),
        };
        let sent = self.send(conn, body).await;
        if sent.is_err() {
            *c = None;
        }
        sent
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
    let target = Arc::new(Target::new(&creds, from)?);
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
            let (body, mut conn) = (target.body(to, None), None);
            while Instant::now() < deadline {
                let t = Instant::now();
                match target.send_on(&mut conn, body.clone()).await {
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
            let (body, mut conn) = (target.body(&to, Some(&cb)), None);
            while next.fetch_add(1, Ordering::Relaxed) < n {
                if !matches!(target.send_on(&mut conn, body.clone()).await, Ok(201)) {
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
