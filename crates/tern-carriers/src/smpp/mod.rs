//! The SMPP 3.4 client connector: Tern as an ESME bound to a carrier's SMSC.
//!
//! * `config.rs` — [`SmppCarrierConfig`], the TOML settings, and address mapping.
//! * `errors.rs` — `command_status` and receipt → Twilio 30xxx tables.
//! * `bind.rs` — one connection and its reconnect loop; [`BindStatus`].
//! * `incoming.rs` — receipts and MO messages from the SMSC.
//! * `rate.rs` — the adaptive send-rate limit shared by the carrier's binds.
//! * `recent.rs` — recently returned message ids (segments, hex/decimal, `query_sm`).
//!
//! [`SmppCarrier::start`] spawns one task per connection (one per bind slot, two for a
//! `transmitter_receiver` slot) and a housekeeping task. [`Carrier::submit`] waits for the
//! rate limit, picks a bound transmitting connection round robin, sends the message's
//! segments there one after the other, and returns the first segment's id. Receipts and
//! MO messages go to the engine as [`CarrierEvent`]s; each is acknowledged to the SMSC
//! only once the engine's channel took it. [`SmppCarrier::shutdown`] refuses new submits,
//! waits for those in flight and unbinds every connection.
//!
//! The protocol itself (sequence numbers, window, enquire_link, timeouts, unbind
//! handshake) is `tern-smpp`'s session driven by `tern-smpp-tokio`; text encoding and MO
//! reassembly are `tern_smpp::text`. This module decides what SMPP events mean for
//! messages. `docs/smpp.md` is the operator's view.

mod bind;
mod config;
pub mod errors;
mod incoming;
mod rate;
mod recent;

pub use bind::{BindState, BindStatus};
pub use config::{
    BindMode, ConfigError, EncodingConfig, LongMessages, SmppCarrierConfig, e164_from_smpp,
};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde::Serialize;
use tern_smpp::pdu::{Address, BindKind, Body, MessageState, QuerySm, SubmitSm};
use tern_smpp::receipt::ReceiptStat;
use tern_smpp::status::ESME_ROK;
use tern_smpp::text::{Reassembler, ReassemblerConfig, encode_submits};
use tern_smpp_tokio::{Link, LinkError};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{Carrier, CarrierEvent, OutboundSms, Receipt, SubmitError};
use bind::Conn;
use config::Settings;
use errors::{SubmitOutcome, describe_status, submit_outcome};
use rate::RateLimit;
use recent::RecentIds;

/// How often partial MO messages are expired and old ids forgotten.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(1);

/// The carrier's life cycle, in order; tasks watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Running,
    /// `shutdown` began: no new submits; those in flight finish.
    Draining,
    /// Nothing in flight: every connection unbinds.
    Unbinding,
    /// Every connection is closed.
    Stopped,
}

/// What the operator API shows of one SMPP carrier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CarrierStatus {
    pub id: String,
    pub address: String,
    /// The send rate in force (messages per second): `max_mps`, or lower after throttling;
    /// `None` when unlimited.
    pub rate_limit_mps: Option<f64>,
    pub binds: Vec<BindStatus>,
}

/// State shared by the carrier handle and its tasks.
struct Shared {
    settings: Settings,
    events: mpsc::Sender<CarrierEvent>,
    conns: Vec<Arc<Conn>>,
    rate: Mutex<RateLimit>,
    next_conn: AtomicUsize,
    next_reference: AtomicU32,
    recent: Mutex<RecentIds>,
    reassembler: Mutex<Reassembler>,
    phase: watch::Sender<Phase>,
    /// Submits and queries between their admission and their last response.
    in_flight: watch::Sender<usize>,
    /// Connections currently bound that can transmit.
    transmitting: watch::Sender<usize>,
    /// The bind slots this node may bind (`None`: all of them). In a region of several
    /// nodes each slot is leased to one node at a time.
    active_slots: watch::Sender<Option<BTreeSet<u16>>>,
    /// Poked when a bind task ends, so housekeeping notices the last one at once.
    task_ended: Notify,
}

/// Locks a mutex whose data stays consistent across a panic (each critical section is a
/// single call on a structure that checks its own invariants), so poisoning is ignored.
fn relock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// tokio's clock as a std `Instant`, for the sans-IO parts: a paused test runtime then
/// drives them too.
fn std_now() -> std::time::Instant {
    Instant::now().into_std()
}

impl Shared {
    fn recent(&self) -> MutexGuard<'_, RecentIds> {
        relock(&self.recent)
    }

    fn reassembler(&self) -> MutexGuard<'_, Reassembler> {
        relock(&self.reassembler)
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Whether this node may use bind slot `slot`.
    fn slot_active(&self, slot: u16) -> bool {
        self.active_slots
            .borrow()
            .as_ref()
            .is_none_or(|s| s.contains(&slot))
    }

    /// Recounts the bound transmitting connections after one changed state.
    fn binds_changed(&self) {
        let n = self
            .conns
            .iter()
            .filter(|c| c.transmits() && c.bound_link().is_some() && self.slot_active(c.slot))
            .count();
        self.transmitting.send_replace(n);
    }

    /// A bound connection that can transmit, round robin among those that are.
    fn pick(&self) -> Option<(Arc<Conn>, Link)> {
        let n = self.conns.len();
        let start = self.next_conn.fetch_add(1, Ordering::Relaxed);
        (0..n).find_map(|i| {
            let conn = self.conns.get((start + i) % n)?;
            if !conn.transmits() || !self.slot_active(conn.slot) {
                return None;
            }
            Some((conn.clone(), conn.bound_link()?))
        })
    }

    /// Waits for the rate limit; `false` if the carrier began shutting down meanwhile.
    async fn wait_for_rate(&self) -> bool {
        let at = relock(&self.rate).reserve(Instant::now());
        if at <= Instant::now() {
            return true;
        }
        let mut phase = self.phase.subscribe();
        tokio::select! {
            () = tokio::time::sleep_until(at) => true,
            () = wait_phase(&mut phase, |p| *p != Phase::Running) => false,
        }
    }
}

/// Waits until the phase satisfies `f` (or for ever if the carrier is gone). Returns `()`
/// rather than watch's guard, which must not be held across an await.
async fn wait_phase(phase: &mut watch::Receiver<Phase>, f: impl FnMut(&Phase) -> bool) {
    if phase.wait_for(f).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Counts a submit or query as in flight until dropped.
struct InFlight<'a>(&'a watch::Sender<usize>);

impl<'a> InFlight<'a> {
    fn new(counter: &'a watch::Sender<usize>) -> Self {
        counter.send_modify(|n| *n += 1);
        InFlight(counter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// An SMPP carrier: its binds, rate limit and the [`Carrier`] implementation.
pub struct SmppCarrier {
    shared: Arc<Shared>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for SmppCarrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppCarrier")
            .field("id", &self.shared.settings.id)
            .field("address", &self.shared.settings.address)
            .finish_non_exhaustive()
    }
}

impl SmppCarrier {
    /// Checks `config` (reading `password_env`), then spawns the bind tasks on the current
    /// tokio runtime. Receipts and MO messages are sent on `events`.
    pub fn start(
        config: &SmppCarrierConfig,
        events: mpsc::Sender<CarrierEvent>,
    ) -> Result<Arc<SmppCarrier>, ConfigError> {
        Self::start_with_slots(config, events, None)
    }

    /// [`SmppCarrier::start`] binding only `slots` at first (`None`: all of them; see
    /// [`SmppCarrier::set_active_slots`]) — for a node that must lease its slots before
    /// it binds any.
    pub fn start_with_slots(
        config: &SmppCarrierConfig,
        events: mpsc::Sender<CarrierEvent>,
        slots: Option<BTreeSet<u16>>,
    ) -> Result<Arc<SmppCarrier>, ConfigError> {
        let settings = config.resolve()?;
        let mut conns = Vec::new();
        for slot in 0..settings.binds {
            let kinds: &[BindKind] = match settings.bind_mode {
                BindMode::Transceiver => &[BindKind::Transceiver],
                BindMode::TransmitterReceiver => &[BindKind::Transmitter, BindKind::Receiver],
            };
            for kind in kinds {
                conns.push(Arc::new(Conn::new(&settings.id, slot, *kind)));
            }
        }
        let now = Instant::now();
        let shared = Arc::new(Shared {
            rate: Mutex::new(RateLimit::new(settings.max_mps, now)),
            events,
            conns,
            next_conn: AtomicUsize::new(0),
            // Start the concatenation references somewhere random, so that a restart does
            // not reuse the references the previous run just sent to the same handsets.
            next_reference: AtomicU32::new(rand::random::<u16>().into()),
            recent: Mutex::new(RecentIds::default()),
            reassembler: Mutex::new(Reassembler::new(ReassemblerConfig {
                timeout: settings.mo_reassembly,
                ..ReassemblerConfig::default()
            })),
            phase: watch::Sender::new(Phase::Running),
            in_flight: watch::Sender::new(0),
            transmitting: watch::Sender::new(0),
            active_slots: watch::Sender::new(slots),
            task_ended: Notify::new(),
            settings,
        });
        let mut tasks = Vec::new();
        for conn in &shared.conns {
            let span = info_span!("smpp_bind", carrier = %shared.settings.id, bind = %conn.label);
            tasks.push(tokio::spawn(
                bind::run(shared.clone(), conn.clone()).instrument(span),
            ));
        }
        let span = info_span!("smpp_housekeeping", carrier = %shared.settings.id);
        tasks.push(tokio::spawn(housekeeping(shared.clone()).instrument(span)));
        info!(carrier = %shared.settings.id, address = %shared.settings.address, connections = shared.conns.len(), "smpp carrier started");
        Ok(Arc::new(SmppCarrier {
            shared,
            tasks: Mutex::new(tasks),
        }))
    }

    /// The number of bind slots (`binds`): what can be leased.
    pub fn slots(&self) -> u16 {
        self.shared.settings.binds
    }

    /// Limits this node to the bind slots in `slots` (`None`: all, the default). A slot
    /// taken away stops taking submits at once, lets its submits in flight finish, then
    /// unbinds; a slot given binds.
    pub fn set_active_slots(&self, slots: Option<BTreeSet<u16>>) {
        self.shared.active_slots.send_replace(slots);
        self.shared.binds_changed();
    }

    /// Stops taking submits (they fail `Retryable`), waits for the submits and queries in
    /// flight to get their responses (each bounded by `response_timeout_secs`), unbinds
    /// every connection and waits for the unbinds to complete. MO parts still waiting for
    /// their siblings are delivered as they are.
    pub async fn shutdown(&self) {
        let s = &self.shared;
        let first = s.phase.send_if_modified(|p| {
            let running = *p == Phase::Running;
            if running {
                *p = Phase::Draining;
            }
            running
        });
        if !first {
            // Another caller is shutting down; wait for it to finish.
            let mut phase = s.phase.subscribe();
            wait_phase(&mut phase, |p| *p == Phase::Stopped).await;
            return;
        }
        info!(carrier = %s.settings.id, "smpp carrier shutting down");
        let mut in_flight = s.in_flight.subscribe();
        let _ = in_flight.wait_for(|n| *n == 0).await;
        s.phase.send_replace(Phase::Unbinding);
        let tasks = std::mem::take(&mut *relock(&self.tasks));
        for t in tasks {
            if let Err(e) = t.await {
                warn!(error = %e, "smpp task ended abnormally");
            }
        }
        s.phase.send_replace(Phase::Stopped);
        info!(carrier = %s.settings.id, "smpp carrier stopped");
    }

    /// Waits until at least one connection that can transmit is bound (for a node that
    /// wants its carriers up before it takes traffic, and for tests). Submits before that
    /// fail `Retryable("no bind")`.
    pub async fn wait_until_bound(&self) {
        let mut n = self.shared.transmitting.subscribe();
        let _ = n.wait_for(|n| *n > 0).await;
    }

    /// The number of this carrier's connections that can transmit now.
    pub fn connections_transmitting(&self) -> watch::Receiver<usize> {
        self.shared.transmitting.subscribe()
    }

    /// A snapshot for the operator API.
    pub fn status(&self) -> CarrierStatus {
        let s = &self.shared;
        CarrierStatus {
            id: s.settings.id.clone(),
            address: s.settings.address.clone(),
            rate_limit_mps: relock(&s.rate).rate(Instant::now()),
            binds: s.conns.iter().map(|c| c.status()).collect(),
        }
    }

    async fn submit_inner(&self, sms: &OutboundSms) -> Result<String, SubmitError> {
        let s = &self.shared;
        let settings = &s.settings;
        // Counted before the phase is checked, so `shutdown` either sees this submit or
        // this submit sees `shutdown`.
        let _in_flight = InFlight::new(&s.in_flight);
        if s.phase() != Phase::Running {
            return Err(SubmitError::Retryable(
                "the carrier is shutting down".into(),
            ));
        }
        let source = settings.source_address(&sms.from);
        let template = SubmitSm {
            source: source.clone(),
            destination: settings.dest_address(&sms.to),
            registered_delivery: u8::from(settings.registered_delivery),
            validity_period: relative_validity(sms.validity_secs),
            ..SubmitSm::default()
        };
        // One reference per message; parts of one message share it.
        let reference = s.next_reference.fetch_add(1, Ordering::Relaxed) as u16;
        let segments =
            encode_submits(&template, &sms.body, reference, &settings.text).map_err(|e| {
                SubmitError::Permanent {
                    code: errors::UNKNOWN_ERROR,
                    reason: e.to_string(),
                }
            })?;
        if !s.wait_for_rate().await {
            return Err(SubmitError::Retryable(
                "the carrier is shutting down".into(),
            ));
        }
        let Some((conn, link)) = s.pick() else {
            metrics::counter!("tern_smpp_submits_total", "carrier" => settings.id.clone(), "bind" => "none", "result" => "no_bind")
                .increment(1);
            return Err(SubmitError::Retryable("no bind".into()));
        };
        let mut ids = Vec::with_capacity(segments.len());
        let total = segments.len();
        for (n, segment) in segments.into_iter().enumerate() {
            if n > 0 && !s.wait_for_rate().await {
                // Parts already sent stay sent; the retry sends the whole message again.
                return Err(SubmitError::Retryable(
                    "the carrier is shutting down".into(),
                ));
            }
            let id = self.send_segment(&conn, &link, segment).await?;
            debug!(part = n + 1, total, %id, bind = %conn.label, "segment accepted");
            ids.push(id);
        }
        s.recent().record(&ids, &source, Instant::now());
        let id = ids.into_iter().next().unwrap_or_default();
        if id.is_empty() {
            warn!(
                "the smsc accepted the message without a message id; its receipt cannot be matched"
            );
        }
        Ok(id)
    }

    /// One `submit_sm` and what its response means.
    async fn send_segment(
        &self,
        conn: &Conn,
        link: &Link,
        segment: SubmitSm,
    ) -> Result<String, SubmitError> {
        let s = &self.shared;
        let carrier = s.settings.id.clone();
        let bind = conn.label.clone();
        let count = |result: &'static str| {
            metrics::counter!("tern_smpp_submits_total", "carrier" => carrier.clone(), "bind" => bind.clone(), "result" => result)
                .increment(1);
        };
        let window = metrics::gauge!("tern_smpp_window_in_use", "carrier" => carrier.clone(), "bind" => bind.clone());
        let permit = link.slot().await.map_err(|_| {
            count("closed");
            SubmitError::Retryable("the connection closed".into())
        })?;
        window.increment(1.0);
        let started = Instant::now();
        let response = link.request_with(permit, Body::SubmitSm(segment)).await;
        window.decrement(1.0);
        metrics::histogram!("tern_smpp_submit_seconds", "carrier" => carrier.clone(), "bind" => bind.clone())
            .record(started.elapsed().as_secs_f64());
        let pdu = match response {
            Ok(pdu) => pdu,
            Err(LinkError::Timeout) => {
                // The SMSC may have taken it: the retry can duplicate it (bounded by the
                // window; see errors.rs).
                count("timeout");
                return Err(SubmitError::Retryable(format!(
                    "no submit_sm_resp within {}s",
                    s.settings.response_timeout.as_secs()
                )));
            }
            Err(LinkError::Session(tern_smpp::SessionError::Encode(e))) => {
                count("permanent");
                return Err(SubmitError::Permanent {
                    code: errors::UNKNOWN_ERROR,
                    reason: format!("cannot encode the submit_sm: {e}"),
                });
            }
            Err(e) => {
                count("closed");
                return Err(SubmitError::Retryable(format!("connection: {e}")));
            }
        };
        let status = pdu.command_status;
        if status == ESME_ROK {
            let id = match pdu.body {
                Body::SubmitSmResp(r) => r.message_id,
                _ => String::new(),
            };
            count("ok");
            return Ok(id);
        }
        let what = describe_status(status);
        match submit_outcome(status, &s.settings.status_codes) {
            SubmitOutcome::SlowDown => {
                count("throttled");
                metrics::counter!("tern_smpp_throttled_total", "carrier" => carrier.clone(), "bind" => bind.clone())
                    .increment(1);
                relock(&s.rate).throttled(Instant::now());
                info!(status = %what, "smsc throttled us; slowing down");
                Err(SubmitError::Retryable(format!("carrier throttled: {what}")))
            }
            SubmitOutcome::Retry => {
                count("retryable");
                Err(SubmitError::Retryable(format!("carrier: {what}")))
            }
            SubmitOutcome::Refused(code) => {
                count("permanent");
                Err(SubmitError::Permanent {
                    code,
                    reason: format!("carrier refused: {what}"),
                })
            }
        }
    }

    async fn query_inner(&self, carrier_message_id: &str) -> Option<Receipt> {
        let s = &self.shared;
        let _in_flight = InFlight::new(&s.in_flight);
        if s.phase() != Phase::Running {
            return None;
        }
        if !s.wait_for_rate().await {
            return None;
        }
        let (_, link) = s.pick()?;
        // query_sm names the message by id *and* its source address; the latter is only
        // known while the id is remembered. Many SMSCs ignore an empty one.
        let source = s
            .recent()
            .lookup(carrier_message_id)
            .map_or_else(Address::default, |k| k.source);
        let body = Body::QuerySm(QuerySm {
            message_id: carrier_message_id.to_owned(),
            source,
        });
        let pdu = match link.request(body).await {
            Ok(pdu) => pdu,
            Err(e) => {
                debug!(error = %e, "query_sm failed");
                return None;
            }
        };
        let Body::QuerySmResp(r) = pdu.body else {
            return None;
        };
        if pdu.command_status != ESME_ROK {
            debug!(status = %describe_status(pdu.command_status), "query_sm refused");
            return None;
        }
        let state = MessageState::from_u8(r.message_state)?;
        let stat = ReceiptStat::from_message_state(state);
        let outcome = errors::receipt_outcome(&stat, None, None, &s.settings.receipt_err_codes)?;
        Some(Receipt {
            carrier: s.settings.id.clone(),
            carrier_message_id: carrier_message_id.to_owned(),
            outcome,
            done_date: incoming::done_date(&r.final_date),
        })
    }
}

/// `validity_period` in SMPP's relative form (`YYMMDDhhmmss000R`); empty (the SMSC's
/// default) for 0.
fn relative_validity(secs: u32) -> String {
    if secs == 0 {
        return String::new();
    }
    let days = (secs / 86_400).min(99);
    let hours = secs / 3600 % 24;
    let minutes = secs / 60 % 60;
    let seconds = secs % 60;
    format!("0000{days:02}{hours:02}{minutes:02}{seconds:02}000R")
}

impl Drop for SmppCarrier {
    fn drop(&mut self) {
        // Dropped without `shutdown`: still unbind rather than leave the tasks running.
        if self.shared.phase() < Phase::Unbinding {
            self.shared.phase.send_replace(Phase::Unbinding);
        }
    }
}

/// Expires incomplete MO messages (delivering what arrived) and forgets old ids, until
/// every connection has closed after an unbind; then delivers every MO part still held.
async fn housekeeping(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shared.task_ended.notified() => {}
        }
        // Checked rather than awaited: parts can still arrive while connections unbind, and
        // this also ends the task when the carrier is dropped without `shutdown`.
        let stopping = shared.phase() >= Phase::Unbinding
            && shared
                .conns
                .iter()
                .all(|c| c.status().state == BindState::Closed);
        let now = if stopping {
            // Everything still held is due.
            std_now() + shared.settings.mo_reassembly
        } else {
            std_now()
        };
        let due = shared.reassembler().expire(now);
        for message in due {
            if !incoming::deliver(&shared, message).await {
                warn!("an incomplete inbound message was lost: the event channel is closed");
            }
        }
        shared.recent().prune(Instant::now());
        if stopping {
            break;
        }
    }
}

#[async_trait]
impl Carrier for SmppCarrier {
    fn id(&self) -> &str {
        &self.shared.settings.id
    }

    async fn submit(&self, sms: &OutboundSms) -> Result<String, SubmitError> {
        let span = info_span!("smpp_submit", carrier = %self.shared.settings.id, message_sid = %sms.message_sid);
        self.submit_inner(sms).instrument(span).await
    }

    async fn query(&self, carrier_message_id: &str, to: &str) -> Option<Receipt> {
        let span =
            info_span!("smpp_query", carrier = %self.shared.settings.id, carrier_message_id, to);
        self.query_inner(carrier_message_id).instrument(span).await
    }

    fn transmitting(&self) -> Option<watch::Receiver<usize>> {
        Some(self.connections_transmitting())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_is_relative() {
        assert_eq!(relative_validity(0), "");
        assert_eq!(relative_validity(36_000), "000000100000000R");
        assert_eq!(relative_validity(90_061), "000001010101000R");
    }
}
