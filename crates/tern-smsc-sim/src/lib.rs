//! A carrier simulator: a real SMPP 3.4 server (SMSC) for tests, demos and benchmarks, with
//! faults switchable at run time.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tern_smsc_sim::Error> {
//! use tern_smsc_sim::{Faults, Smsc, SmscConfig};
//!
//! let sim = Smsc::start(SmscConfig {
//!     listen: "127.0.0.1:0".into(),
//!     password: Some("secret".into()),
//!     ..SmscConfig::default()
//! })
//! .await?;
//! println!("SMPP on {}", sim.addr());
//! sim.set_faults(Faults { throttle_mps: Some(100), ..Faults::default() })?;
//! sim.inject_mo("+15550001111", "12345", "STOP")?;
//! println!("{}", sim.stats().summary());
//! sim.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # What it does
//!
//! * Accepts `bind_transmitter`/`receiver`/`transceiver` (credentials checked when
//!   [`SmscConfig::password`] is set), answers `submit_sm`, `data_sm` and `submit_multi`
//!   with a fresh message id (hex or decimal) and, when `registered_delivery` asks for one,
//!   sends a delivery receipt after [`Faults::receipt_delay_ms`]: a `deliver_sm` with
//!   `esm_class` 0x04, the `id:… sub:001 dlvrd:… stat:… err:… text:…` text and the
//!   `receipted_message_id`/`message_state` TLVs, to a receiver bound with the submitter's
//!   `system_id` (round robin). Every segment of a long message is its own submit with its
//!   own id and receipt, as at real SMSCs.
//! * Receipts wait for a receiver when none is bound, are retried with backoff when a
//!   `deliver_sm` gets an error or no response, and are bounded in number by
//!   [`SmscConfig::max_pending`] (beyond it they are dropped and counted).
//! * `query_sm` answers from memory for the last [`SmscConfig::query_memory`] ids;
//!   `cancel_sm` and `replace_sm` work while a message is en route (see
//!   `connection.rs` for the statuses).
//! * [`SmscHandle::inject_mo`] (or `POST /mo`) sends a mobile-originated message.
//! * The admin HTTP port ([`SmscConfig::admin_listen`]) serves `GET /faults`,
//!   `PUT /faults`, `GET /stats` and `POST /mo`.
//! * [`bench_bind`] measures submits per second over one bind against any SMSC.
//!
//! The socket side is `tern-smpp-tokio` in the server role: one driver task per
//! connection, one task here reading its events. Scheduled receipts live in one binary
//! heap under one timer task, never a task per message.

mod admin;
mod bench;
mod config;
mod connection;
mod messages;
mod outbound;
mod stats;
mod store;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicU64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tern_smpp_tokio::Link;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, info, warn};

pub use bench::{BenchFigures, BenchOptions, bench_bind};
pub use config::{DelayMs, DeliveryRule, Faults, MessageIdFormat, SmscConfig, UniformMs};
pub use stats::Stats;

use crate::outbound::{Due, Hub, Kind, Outbound};
use crate::stats::inc;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("invalid faults: {0}")]
    InvalidFaults(String),
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    #[error("{0} receipts and messages are already waiting (max_pending); message refused")]
    Full(u64),
    #[error(transparent)]
    Connect(#[from] tern_smpp_tokio::ConnectError),
    #[error(transparent)]
    Link(#[from] tern_smpp_tokio::LinkError),
}

/// The simulator; [`Smsc::start`] runs one.
pub struct Smsc;

impl Smsc {
    /// Binds the SMPP listener (and the admin port if configured) and starts serving.
    pub async fn start(config: SmscConfig) -> Result<SmscHandle, Error> {
        config.validate()?;
        let listener = TcpListener::bind(&config.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: config.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Listen {
            addr: config.listen.clone(),
            source,
        })?;
        let admin = match &config.admin_listen {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|source| Error::Listen {
                addr: a.clone(),
                source,
            })?),
            None => None,
        };
        let admin_addr = match &admin {
            Some(l) => Some(l.local_addr().map_err(|source| Error::Listen {
                addr: config.admin_listen.clone().unwrap_or_default(),
                source,
            })?),
            None => None,
        };

        // Ids start from the clock so a restarted simulator does not reissue old ids.
        let first_id = store::first_sequence(chrono::Utc::now().timestamp_millis());
        let (schedule, schedule_rx) = mpsc::unbounded_channel();
        let (shutdown, _) = watch::channel(false);
        let (faults, _) = watch::channel(Arc::new(config.faults.clone()));
        let inner = Arc::new(Inner {
            store: Mutex::new(Store::new(
                config.message_id_format,
                config.query_memory,
                first_id,
            )),
            config,
            faults,
            counters: stats::Counters::default(),
            hub: Mutex::new(Hub::default()),
            schedule,
            connections: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            connection_closed: Notify::new(),
            epoch: Instant::now(),
            shutdown,
            mo_reference: AtomicU8::new(0),
        });

        let mut tasks = vec![
            tokio::spawn(outbound::run_scheduler(
                inner.clone(),
                schedule_rx,
                inner.shutdown.subscribe(),
            )),
            tokio::spawn(accept(inner.clone(), listener)),
            tokio::spawn(supervise(inner.clone())),
        ];
        if let Some(listener) = admin {
            tasks.push(tokio::spawn(admin::serve(inner.clone(), listener)));
        }
        info!(%addr, ?admin_addr, "SMSC simulator listening");
        Ok(SmscHandle {
            inner,
            addr,
            admin_addr,
            tasks,
        })
    }
}

/// A running simulator. Dropping it stops the listener and cuts every connection; call
/// [`SmscHandle::shutdown`] to unbind clients gracefully instead.
pub struct SmscHandle {
    inner: Arc<Inner>,
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for SmscHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmscHandle")
            .field("addr", &self.addr)
            .field("admin_addr", &self.admin_addr)
            .finish()
    }
}

impl SmscHandle {
    /// The SMPP listener's address (the real port when `listen` had port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin HTTP port's address, if one was configured.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn faults(&self) -> Faults {
        Faults::clone(&self.inner.faults.borrow())
    }

    /// Replaces the faults in force; they apply to the next PDU of every connection.
    pub fn set_faults(&self, faults: Faults) -> Result<(), Error> {
        self.inner.set_faults(faults)
    }

    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    /// Sends a mobile-originated message from `from` to `to` as `deliver_sm` (split with a
    /// UDH when long) to a bound receiver, or holds it until one binds. Returns the number
    /// of segments.
    pub fn inject_mo(&self, from: &str, to: &str, body: &str) -> Result<usize, Error> {
        self.inner.inject_mo(from, to, body)
    }

    /// Stops accepting, unbinds every client (waiting up to 5 s for their `unbind_resp`),
    /// cuts whatever is left and stops the simulator's tasks.
    pub async fn shutdown(mut self) {
        let inner = self.inner.clone();
        inner.shutdown.send_replace(true);
        for entry in inner.lock_connections().values() {
            entry.link.unbind();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let closed = inner.connection_closed.notified();
            if inner.lock_connections().is_empty() {
                break;
            }
            if tokio::time::timeout_at(deadline, closed).await.is_err() {
                warn!("clients did not unbind within 5 s; closing their connections");
                for entry in inner.lock_connections().values_mut() {
                    entry.cut();
                }
                break;
            }
        }
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        info!("SMSC simulator stopped");
    }
}

impl Drop for SmscHandle {
    fn drop(&mut self) {
        if !self.tasks.is_empty() {
            self.inner.shutdown.send_replace(true);
            for entry in self.inner.lock_connections().values_mut() {
                entry.cut();
            }
        }
    }
}

pub(crate) struct ConnEntry {
    pub link: Link,
    pub killer: std::net::TcpStream,
    pub dropped: bool,
}

pub(crate) struct Inner {
    pub config: SmscConfig,
    pub faults: watch::Sender<Arc<Faults>>,
    pub counters: stats::Counters,
    pub store: Mutex<Store>,
    pub hub: Mutex<Hub>,
    pub schedule: mpsc::UnboundedSender<Due>,
    pub connections: Mutex<HashMap<u64, ConnEntry>>,
    pub next_conn: AtomicU64,
    pub connection_closed: Notify,
    /// Monotonic zero of the message store's clock.
    pub epoch: Instant,
    pub shutdown: watch::Sender<bool>,
    pub mo_reference: AtomicU8,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data (plain inserts and
    // removals), so a poisoned lock is used as is.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    pub fn lock_store(&self) -> MutexGuard<'_, Store> {
        lock(&self.store)
    }

    pub fn lock_hub(&self) -> MutexGuard<'_, Hub> {
        lock(&self.hub)
    }

    pub fn lock_connections(&self) -> MutexGuard<'_, HashMap<u64, ConnEntry>> {
        lock(&self.connections)
    }

    /// Milliseconds since the simulator started, on tokio's clock.
    pub fn now_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    pub fn set_faults(&self, faults: Faults) -> Result<(), Error> {
        faults.validate()?;
        info!(?faults, "faults changed");
        self.faults.send_replace(Arc::new(faults));
        Ok(())
    }

    pub fn inject_mo(&self, from: &str, to: &str, body: &str) -> Result<usize, Error> {
        let reference = self
            .mo_reference
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let segments = messages::mobile_originated(
            messages::address(from)?,
            messages::address(to)?,
            body,
            reference,
        )?;
        let pending = self.counters.pending();
        if pending + segments.len() as u64 > self.config.max_pending as u64 {
            return Err(Error::Full(pending));
        }
        let n = segments.len();
        let mut hub = self.lock_hub();
        for pdu in segments {
            inc(&self.counters.mo_pending);
            hub.dispatch(
                self,
                Outbound {
                    kind: Kind::MobileOriginated,
                    target: None,
                    pdu,
                    attempts: 0,
                },
            );
        }
        debug!(from, to, segments = n, "mobile-originated message injected");
        Ok(n)
    }

    /// Cuts every open connection; returns how many.
    fn cut_all(&self) -> usize {
        let mut n = 0;
        for entry in self.lock_connections().values_mut() {
            if entry.cut() {
                inc(&self.counters.connections_dropped);
                n += 1;
            }
        }
        n
    }
}

async fn accept(inner: Arc<Inner>, listener: TcpListener) {
    let mut shutdown = inner.shutdown.subscribe();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection::serve(inner.clone(), stream));
                }
                Err(e) => {
                    // Out of descriptors and the like: wait a little instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies the connection faults: `refuse_binds` cuts every connection when it is switched
/// on, `drop_every_secs` cuts them all on its period.
async fn supervise(inner: Arc<Inner>) {
    let mut faults = inner.faults.subscribe();
    let mut shutdown = inner.shutdown.subscribe();
    let mut refused = false;
    loop {
        let (refuse, every) = {
            let f = faults.borrow_and_update();
            (f.refuse_binds, f.drop_every_secs)
        };
        if refuse && !refused {
            let n = inner.cut_all();
            info!(connections = n, "refuse_binds: connections cut");
        }
        refused = refuse;
        let tick = every.map(|s| Instant::now() + Duration::from_secs(s));
        tokio::select! {
            changed = faults.changed() => if changed.is_err() { return },
            () = sleep_until(tick) => {
                let n = inner.cut_all();
                info!(connections = n, "drop_every_secs: connections cut");
            }
            _ = shutdown.changed() => return,
        }
    }
}

pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
