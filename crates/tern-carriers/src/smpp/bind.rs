//! One connection of a bind slot and the task that keeps it bound: connect, bind, serve
//! what the SMSC sends, and on loss reconnect after an exponential backoff with full jitter.
//!
//! A `transceiver` slot has one such connection; a `transmitter_receiver` slot has two,
//! each with its own task, so a lost receiver does not take the transmitter down with it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde::Serialize;
use tern_smpp::SessionConfig;
use tern_smpp::pdu::{Bind, BindKind};
use tern_smpp_tokio::{Closed, Incoming, Link};

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Phase, Shared, incoming, wait_phase};

/// A bind lasting at least this long resets the backoff; shorter ones count as failures, so
/// an SMSC that accepts binds and drops them at once is not hammered.
pub const STABLE_BIND: Duration = Duration::from_secs(10);

/// Where a connection is in its life, for the operator API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BindState {
    /// Connecting or waiting for the bind response.
    Connecting,
    Bound,
    /// Waiting to reconnect until `until` (RFC 3339).
    Backoff {
        until: String,
    },
    /// Not bound because this node does not hold the slot (another node of the region
    /// does, or nobody yet).
    Idle,
    /// Stopped for good (shutdown).
    Closed,
}

/// One connection as the operator API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BindStatus {
    pub slot: u16,
    /// `transceiver`, `transmitter` or `receiver`.
    pub mode: &'static str,
    #[serde(flatten)]
    pub state: BindState,
    /// The SMSC's `system_id` from the last successful bind.
    pub system_id: Option<String>,
    /// When the connection entered its current state (RFC 3339).
    pub since: String,
    /// Requests sent on this connection and not answered yet.
    pub in_flight: usize,
    pub last_error: Option<String>,
}

struct ConnState {
    link: Option<Link>,
    state: BindState,
    peer_system_id: Option<String>,
    since: String,
    last_error: Option<String>,
}

/// One SMPP connection of a bind slot.
pub struct Conn {
    pub slot: u16,
    pub kind: BindKind,
    /// The `bind` metrics label: the slot number, plus `-tx`/`-rx` for split slots.
    pub label: String,
    carrier: String,
    state: Mutex<ConnState>,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn mode_name(kind: BindKind) -> &'static str {
    match kind {
        BindKind::Transceiver => "transceiver",
        BindKind::Transmitter => "transmitter",
        BindKind::Receiver => "receiver",
    }
}

impl Conn {
    pub fn new(carrier: &str, slot: u16, kind: BindKind) -> Self {
        let label = match kind {
            BindKind::Transceiver => slot.to_string(),
            BindKind::Transmitter => format!("{slot}-tx"),
            BindKind::Receiver => format!("{slot}-rx"),
        };
        Conn {
            slot,
            kind,
            label,
            carrier: carrier.to_owned(),
            state: Mutex::new(ConnState {
                link: None,
                state: BindState::Connecting,
                peer_system_id: None,
                since: now_rfc3339(),
                last_error: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ConnState> {
        // A panic while holding this lock cannot leave the state half-written (every
        // update is a few assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether submits may go out on this connection.
    pub fn transmits(&self) -> bool {
        self.kind != BindKind::Receiver
    }

    /// The link, if bound and still open.
    pub fn bound_link(&self) -> Option<Link> {
        let s = self.lock();
        match (&s.state, &s.link) {
            (BindState::Bound, Some(link)) if link.is_open() => Some(link.clone()),
            _ => None,
        }
    }

    pub fn status(&self) -> BindStatus {
        let s = self.lock();
        BindStatus {
            slot: self.slot,
            mode: mode_name(self.kind),
            state: s.state.clone(),
            system_id: s.peer_system_id.clone(),
            since: s.since.clone(),
            in_flight: s.link.as_ref().map_or(0, |l| l.in_flight()),
            last_error: s.last_error.clone(),
        }
    }

    fn set_state(&self, state: BindState) {
        let mut s = self.lock();
        if s.state != state {
            s.state = state;
            s.since = now_rfc3339();
        }
    }

    fn set_bound(&self, link: Link, system_id: String) {
        let mut s = self.lock();
        s.link = Some(link);
        s.peer_system_id = Some(system_id);
        s.state = BindState::Bound;
        s.since = now_rfc3339();
    }

    fn set_down(&self, error: Option<String>) {
        let mut s = self.lock();
        s.link = None;
        if error.is_some() {
            s.last_error = error;
        }
    }

    fn up_gauge(&self, up: bool) {
        metrics::gauge!("tern_smpp_bind_up", "carrier" => self.carrier.clone(), "bind" => self.label.clone())
            .set(if up { 1.0 } else { 0.0 });
    }
}

/// The delay before reconnect attempt `failures` (1 for the first): uniform between
/// `min` and `min · 2^(failures−1)` capped at `max` ("full jitter", with `min` as a floor
/// so that an SMSC refusing connections at once is never retried in a tight loop). Jitter
/// keeps the binds of many nodes from reconnecting in lockstep after a carrier outage.
pub fn backoff_delay(min: Duration, max: Duration, failures: u32, rng: &mut impl Rng) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    let ceiling = min.saturating_mul(1u32 << exp).min(max).max(min);
    let lo = min.as_millis() as u64;
    let hi = ceiling.as_millis() as u64;
    Duration::from_millis(rng.random_range(lo..=hi.max(lo)))
}

fn session_config(shared: &Shared) -> SessionConfig {
    let s = &shared.settings;
    SessionConfig {
        window: s.window,
        response_timeout: s.response_timeout,
        enquire_link_interval: s.enquire_link,
        // A client is never waited on for a bind.
        session_init_timeout: None,
        ..SessionConfig::default()
    }
}

/// Keeps `conn` bound until the carrier shuts down.
pub async fn run(shared: Arc<Shared>, conn: Arc<Conn>) {
    let mut phase = shared.phase.subscribe();
    let mut failures: u32 = 0;
    let s = &shared.settings;
    conn.up_gauge(false);
    let mut slots = shared.active_slots.subscribe();
    loop {
        if *phase.borrow() != Phase::Running {
            break;
        }
        if !shared.slot_active(conn.slot) {
            // Leased to another node (or not yet to this one): stay unbound until it is ours.
            conn.set_state(BindState::Idle);
            failures = 0;
            tokio::select! {
                r = async { slots.wait_for(|a| a.as_ref().is_none_or(|s| s.contains(&conn.slot))).await.map(|_| ()) } => {
                    if r.is_err() {
                        break;
                    }
                }
                () = wait_phase(&mut phase, |p| *p != Phase::Running) => break,
            }
            continue;
        }
        conn.set_state(BindState::Connecting);
        debug!("connecting");
        let bind = Bind {
            system_id: s.system_id.clone(),
            password: s.password.clone(),
            system_type: s.system_type.clone(),
            interface_version: 0x34,
            ..Bind::default()
        };
        let connecting =
            tern_smpp_tokio::connect(&s.address, conn.kind, bind, session_config(&shared));
        let connected = tokio::select! {
            r = connecting => Some(r),
            () = wait_phase(&mut phase, |p| *p != Phase::Running) => None,
        };
        let Some(connected) = connected else {
            break;
        };
        match connected {
            Ok((link, incoming, system_id)) => {
                let bound_at = Instant::now();
                info!(peer = %link.peer_addr(), smsc_system_id = %system_id, "smpp bound");
                conn.set_bound(link.clone(), system_id);
                shared.binds_changed();
                conn.up_gauge(true);
                let closed = serve(&shared, &conn, link, incoming, &mut phase, &mut slots).await;
                conn.set_down(None);
                shared.binds_changed();
                conn.up_gauge(false);
                let expected = matches!(closed, Closed::Session(tern_smpp::CloseReason::Unbound))
                    && (*phase.borrow() != Phase::Running || !shared.slot_active(conn.slot));
                if expected {
                    info!("smpp unbound");
                    conn.set_down(None);
                    if *phase.borrow() == Phase::Running {
                        // The slot went to another node: no backoff, wait for it instead.
                        continue;
                    }
                } else {
                    warn!(reason = ?closed, "smpp connection lost");
                    conn.set_down(Some(format!("connection lost: {closed:?}")));
                }
                if bound_at.elapsed() >= STABLE_BIND {
                    failures = 0;
                }
            }
            Err(e) => {
                warn!(error = %e, "smpp bind failed");
                conn.set_down(Some(e.to_string()));
            }
        }
        if *phase.borrow() != Phase::Running {
            break;
        }
        failures = failures.saturating_add(1);
        let delay = backoff_delay(s.reconnect_min, s.reconnect_max, failures, &mut rand::rng());
        let until = chrono::Utc::now()
            + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::zero());
        conn.set_state(BindState::Backoff {
            until: until.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        });
        metrics::counter!("tern_smpp_reconnects_total", "carrier" => s.id.clone(), "bind" => conn.label.clone())
            .increment(1);
        info!(
            delay_ms = delay.as_millis() as u64,
            failures, "smpp reconnecting after backoff"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = wait_phase(&mut phase, |p| *p != Phase::Running) => break,
        }
    }
    conn.set_down(None);
    conn.set_state(BindState::Closed);
    conn.up_gauge(false);
    shared.binds_changed();
    shared.task_ended.notify_one();
    debug!("bind task done");
}

/// Answers what the SMSC sends until the connection ends; unbinds when the carrier reaches
/// [`Phase::Unbinding`], or when the slot is taken away from this node once the submits
/// in flight on it have their responses (no new ones are picked for it meanwhile).
async fn serve(
    shared: &Shared,
    conn: &Conn,
    link: Link,
    mut incoming: mpsc::Receiver<Incoming>,
    phase: &mut watch::Receiver<Phase>,
    slots: &mut watch::Receiver<Option<BTreeSet<u16>>>,
) -> Closed {
    let mut unbinding = false;
    let slot = conn.slot;
    let mut released = false;
    let mut watching = true;
    let mut drain = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            msg = incoming.recv() => match msg {
                None => return Closed::Abandoned,
                Some(Incoming::Closed(closed)) => return closed,
                // Handled one at a time: awaiting the engine here is the back-pressure that
                // keeps a slow engine from buffering receipts without bound (the session
                // answers ESME_RTHROTTLED beyond its inbound window).
                Some(Incoming::Request(pdu)) => incoming::handle(shared, conn, &link, pdu).await,
                Some(Incoming::Alert(pdu)) => debug!(seq = pdu.sequence_number, "alert_notification ignored"),
                Some(Incoming::Outbind(_)) => debug!("outbind on a bound connection ignored"),
                Some(Incoming::BindRequest { .. }) => debug!("bind request to a client ignored"),
            },
            () = wait_phase(phase, |p| *p >= Phase::Unbinding), if !unbinding => {
                unbinding = true;
                info!("smpp unbinding");
                link.unbind();
            }
            r = async { slots.wait_for(|a| a.as_ref().is_some_and(|s| !s.contains(&slot))).await.map(|_| ()) }, if watching => {
                watching = false;
                if r.is_ok() {
                    released = true;
                    info!("smpp bind slot released: unbinding once its submits are answered");
                }
            }
            _ = drain.tick(), if released && !unbinding => {
                if link.in_flight() == 0 {
                    unbinding = true;
                    link.unbind();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_and_never_goes_below_the_floor() {
        let mut rng = rand::rng();
        let min = Duration::from_millis(500);
        let max = Duration::from_secs(30);
        for failures in 1..40 {
            let ceiling = (500u64 << (failures - 1).min(20)).min(30_000);
            for _ in 0..50 {
                let d = backoff_delay(min, max, failures, &mut rng);
                assert!(d >= min, "{failures}: {d:?}");
                assert!(d.as_millis() as u64 <= ceiling, "{failures}: {d:?}");
            }
        }
        assert_eq!(backoff_delay(min, min, 7, &mut rng), min);
    }

    #[test]
    fn status_serialises_flat() {
        let conn = Conn::new("acme", 2, BindKind::Transmitter);
        conn.set_state(BindState::Backoff {
            until: "2024-01-01T00:00:00.000Z".into(),
        });
        let v = serde_json::to_value(conn.status()).unwrap();
        assert_eq!(v["slot"], 2);
        assert_eq!(v["mode"], "transmitter");
        assert_eq!(v["state"], "backoff");
        assert_eq!(v["until"], "2024-01-01T00:00:00.000Z");
        assert_eq!(v["in_flight"], 0);
        assert_eq!(conn.label, "2-tx");
    }
}
