//! One client connection: bind checks, submits and their faults, queries.
//!
//! The socket and the SMPP session run in the tern-smpp-tokio driver; this task reads the
//! driver's [`Incoming`] channel and answers through the [`Link`]. Delayed responses
//! (`response_delay_ms`) wait in a per-connection heap so that submits stay pipelined.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use tern_smpp::pdu::{
    Address, Bind, BindKind, CancelSm, DataSm, DestAddress, MessageIdResp, QuerySm, QuerySmResp,
    ReplaceSm, SubmitMulti, SubmitMultiResp, SubmitSm, UnsuccessSme,
};
use tern_smpp::status::*;
use tern_smpp::text::InboundSm;
use tern_smpp::{Body, Pdu, ReceiptStat, Role, SessionConfig};
use tern_smpp_tokio::{Incoming, Link};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::config::Faults;
use crate::messages::{ReceiptFacts, receipt, smpp_time, text_of};
use crate::outbound::{Due, Kind, Outbound, run_pump};
use crate::stats::{dec, inc};
use crate::store::Change;
use crate::{ConnEntry, Inner};

/// Accepts one TCP connection and serves it until it closes.
pub(crate) async fn serve(inner: Arc<Inner>, stream: TcpStream) {
    // A second descriptor of the socket lets the simulator cut the connection (faults,
    // shutdown) without the driver's cooperation: shutting it down ends the driver's reads.
    let split = stream
        .into_std()
        .and_then(|s| Ok((s.try_clone()?, s)))
        .and_then(|(killer, s)| Ok((killer, TcpStream::from_std(s)?)));
    let (killer, stream) = match split {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "cannot prepare an accepted connection");
            return;
        }
    };
    let session = SessionConfig {
        window: inner.config.window,
        inbound_window: inner.config.inbound_window,
        ..SessionConfig::default()
    };
    let (link, incoming) = match tern_smpp_tokio::spawn(stream, Role::Server, session) {
        Ok(pair) => pair,
        Err(e) => {
            debug!(error = %e, "cannot start an SMPP session");
            return;
        }
    };
    let conn = inner
        .next_conn
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    inner.lock_connections().insert(
        conn,
        ConnEntry {
            link: link.clone(),
            killer,
            dropped: false,
        },
    );
    inc(&inner.counters.connections);
    debug!(conn, peer = %link.peer_addr(), "connection accepted");
    let mut c = Connection {
        inner: inner.clone(),
        conn,
        link,
        bound: None,
        throttle: Throttle::default(),
        delayed: BinaryHeap::new(),
        delayed_seq: 0,
    };
    c.run(incoming).await;
    inner.lock_hub().unregister(conn);
    inner.lock_connections().remove(&conn);
    dec(&inner.counters.connections);
    inner.connection_closed.notify_waiters();
}

struct Connection {
    inner: Arc<Inner>,
    conn: u64,
    link: Link,
    /// The bind kind and the client's `system_id`, once bound.
    bound: Option<(BindKind, String)>,
    throttle: Throttle,
    /// Responses held back by `response_delay_ms`: (due, arrival, response).
    delayed: BinaryHeap<Reverse<(Instant, u64, Response)>>,
    delayed_seq: u64,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Response {
    sequence_number: u32,
    status: u32,
    message_id: Option<ResponseBody>,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum ResponseBody {
    Submit(String),
    Data(String),
    Multi(String, Vec<(u8, u8, String, u32)>),
}

/// Fixed one-second windows per bind.
#[derive(Default)]
struct Throttle {
    window_start: Option<Instant>,
    count: u32,
}

impl Throttle {
    /// Whether one more submit is allowed now under `limit` per second.
    fn admit(&mut self, limit: Option<u32>, now: Instant) -> bool {
        let Some(limit) = limit else { return true };
        match self.window_start {
            Some(start) if now.duration_since(start) < Duration::from_secs(1) => {}
            _ => {
                self.window_start = Some(now);
                self.count = 0;
            }
        }
        if self.count >= limit {
            return false;
        }
        self.count += 1;
        true
    }
}

/// Constant-time comparison of credentials.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Connection {
    async fn run(&mut self, mut incoming: mpsc::Receiver<Incoming>) {
        loop {
            let next = self.delayed.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                message = incoming.recv() => match message {
                    None => return,
                    Some(Incoming::Closed(reason)) => {
                        debug!(conn = self.conn, ?reason, "connection closed");
                        return;
                    }
                    Some(Incoming::BindRequest { kind, bind }) => self.bind(kind, bind).await,
                    Some(Incoming::Request(pdu)) => self.request(pdu),
                    Some(Incoming::Alert(_) | Incoming::Outbind(_)) => {}
                },
                () = crate::sleep_until(next) => self.release_delayed(),
            }
        }
    }

    async fn bind(&mut self, kind: BindKind, bind: Bind) {
        let inner = &self.inner;
        let refuse = inner.faults.borrow().refuse_binds;
        let refusal = if refuse {
            Some(ESME_RBINDFAIL)
        } else if let Some(password) = &inner.config.password {
            if !same(&bind.system_id, &inner.config.system_id) {
                Some(ESME_RINVSYSID)
            } else if !same(&bind.password, password) {
                Some(ESME_RINVPASWD)
            } else {
                None
            }
        } else {
            None
        };
        if let Some(status) = refusal {
            inc(&inner.counters.binds_rejected);
            info!(conn = self.conn, system_id = %bind.system_id, status = ?name(status), "bind rejected");
            let _ = self.link.reject_bind(status);
            return;
        }
        if let Err(e) = self.link.accept_bind(&inner.config.system_id).await {
            debug!(conn = self.conn, error = %e, "bind not accepted");
            return;
        }
        inc(&inner.counters.binds);
        info!(conn = self.conn, system_id = %bind.system_id, ?kind, "bound");
        if kind != BindKind::Transmitter {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run_pump(
                inner.clone(),
                self.conn,
                self.link.clone(),
                rx,
                inner.config.window,
            ));
            inner
                .lock_hub()
                .register(inner, self.conn, &bind.system_id, tx);
        }
        self.bound = Some((kind, bind.system_id));
    }

    fn request(&mut self, pdu: Pdu) {
        let seq = pdu.sequence_number;
        match pdu.body {
            Body::SubmitSm(sm) => self.submit_sm(seq, &sm),
            Body::DataSm(sm) => self.data_sm(seq, &sm),
            Body::SubmitMulti(sm) => self.submit_multi(seq, &sm),
            Body::QuerySm(q) => self.query_sm(seq, &q),
            Body::CancelSm(c) => self.cancel_sm(seq, &c),
            Body::ReplaceSm(r) => self.replace_sm(seq, &r),
            _ => {
                let _ = self.link.reject(seq, ESME_RINVCMDID);
            }
        }
    }

    /// Throttling, injected errors and per-destination refusals (`destination`, when the
    /// submit has one): `Err(status)` refuses the submit.
    fn admit(&mut self, faults: &Faults, destination: Option<&str>) -> Result<(), u32> {
        if !self.throttle.admit(faults.throttle_mps, Instant::now()) {
            inc(&self.inner.counters.throttled);
            return Err(ESME_RTHROTTLED);
        }
        if faults.submit_error_ratio > 0.0 && rand::random::<f64>() < faults.submit_error_ratio {
            inc(&self.inner.counters.errors);
            return Err(faults.submit_error_status);
        }
        if let Some(status) = destination.and_then(|d| faults.refusal(d)) {
            inc(&self.inner.counters.errors);
            return Err(status);
        }
        Ok(())
    }

    fn submit_sm(&mut self, seq: u32, sm: &SubmitSm) {
        let faults = self.inner.faults.borrow().clone();
        if let Err(status) = self.admit(&faults, Some(&sm.destination.addr)) {
            return self.answer(&faults, seq, status, None);
        }
        let text = || text_of(sm);
        let id = self.accept(
            &faults,
            &sm.source,
            &sm.destination,
            sm.registered_delivery,
            text,
        );
        self.answer(&faults, seq, ESME_ROK, Some(ResponseBody::Submit(id)));
    }

    fn data_sm(&mut self, seq: u32, sm: &DataSm) {
        let faults = self.inner.faults.borrow().clone();
        if let Err(status) = self.admit(&faults, None) {
            return self.answer(&faults, seq, status, None);
        }
        let text = || text_of(sm);
        if sm.source.addr.len() > 20 || sm.destination.addr.len() > 20 {
            // data_sm allows 64-octet addresses; the receipt's deliver_sm does not.
            return self.answer(&faults, seq, ESME_RINVDSTADR, None);
        }
        let id = self.accept(
            &faults,
            &sm.source,
            &sm.destination,
            sm.registered_delivery,
            text,
        );
        self.answer(&faults, seq, ESME_ROK, Some(ResponseBody::Data(id)));
    }

    /// One id for the whole `submit_multi`, one receipt per SME destination (all with that
    /// id; `query_sm` and `cancel_sm` act on the first destination's message);
    /// distribution lists are listed as unsuccessful with `ESME_RINVDLNAME`.
    fn submit_multi(&mut self, seq: u32, sm: &SubmitMulti) {
        let faults = self.inner.faults.borrow().clone();
        if let Err(status) = self.admit(&faults, None) {
            return self.answer(&faults, seq, status, None);
        }
        let text = text_of(InboundSm {
            source: &sm.source,
            destination: &sm.source,
            esm_class: sm.esm_class,
            data_coding: sm.data_coding,
            short_message: &sm.short_message,
            tlvs: &sm.tlvs,
        });
        let mut id = None;
        let mut unsuccess = Vec::new();
        for d in &sm.destinations {
            match d {
                DestAddress::Sme(a) => {
                    let this = self.accept_as(
                        &faults,
                        &sm.source,
                        a,
                        sm.registered_delivery,
                        &text,
                        id.as_deref(),
                    );
                    id.get_or_insert(this);
                }
                DestAddress::DistributionList(name) => {
                    unsuccess.push((0, 0, name.clone(), ESME_RINVDLNAME));
                }
            }
        }
        match id {
            Some(id) => self.answer(
                &faults,
                seq,
                ESME_ROK,
                Some(ResponseBody::Multi(id, unsuccess)),
            ),
            None => self.answer(&faults, seq, ESME_RINVNUMDESTS, None),
        }
    }

    /// Issues an id, remembers the message and schedules its receipt.
    fn accept(
        &mut self,
        faults: &Faults,
        source: &Address,
        destination: &Address,
        registered_delivery: u8,
        text: impl FnOnce() -> String,
    ) -> String {
        let wants = wants_receipt(registered_delivery);
        let text = if wants.is_some() {
            text()
        } else {
            String::new()
        };
        self.accept_as(
            faults,
            source,
            destination,
            registered_delivery,
            &text,
            None,
        )
    }

    /// [`Connection::accept`] with the text at hand; `same_id` reuses an id for the extra
    /// destinations of `submit_multi` (their receipts carry it; `query_sm` sees the first).
    fn accept_as(
        &mut self,
        faults: &Faults,
        source: &Address,
        destination: &Address,
        registered_delivery: u8,
        text: &str,
        same_id: Option<&str>,
    ) -> String {
        let inner = &self.inner;
        inc(&inner.counters.submits);
        let (stat, err) = faults.outcome(&destination.addr);
        let delay = faults.receipt_delay_ms.sample();
        let delay_ms = u32::try_from(delay.as_millis()).unwrap_or(u32::MAX);
        let now = Instant::now();
        let unix_ms = chrono::Utc::now().timestamp_millis();
        let (number, id) = {
            let mut store = inner.lock_store();
            let number = store.insert(inner.now_ms(now), unix_ms, delay_ms, &stat, err);
            let id = same_id.map_or_else(|| store.format_id(number), str::to_owned);
            (number, id)
        };
        let wanted = match wants_receipt(registered_delivery) {
            None => false,
            Some(Want::Always) => true,
            Some(Want::Failure) => stat != ReceiptStat::Delivered,
            Some(Want::Success) => stat == ReceiptStat::Delivered,
        };
        if !wanted || faults.silent {
            return id;
        }
        if inner.counters.pending() >= inner.config.max_pending as u64 {
            inc(&inner.counters.receipts_dropped);
            return id;
        }
        let Some((_, system_id)) = &self.bound else {
            return id;
        };
        let pdu = receipt(&ReceiptFacts {
            id: &id,
            source,
            destination,
            stat: &stat,
            err,
            submitted_unix_ms: unix_ms,
            done_unix_ms: unix_ms + i64::from(delay_ms),
            text,
        });
        inc(&inner.counters.receipts_pending);
        let due = Due {
            at: now + delay,
            item: Outbound {
                kind: Kind::Receipt { number },
                target: Some(system_id.clone()),
                pdu,
                attempts: 0,
            },
        };
        if inner.schedule.send(due).is_err() {
            dec(&inner.counters.receipts_pending);
        }
        id
    }

    /// Sends a submit response now or after `response_delay_ms`.
    fn answer(&mut self, faults: &Faults, seq: u32, status: u32, body: Option<ResponseBody>) {
        let response = Response {
            sequence_number: seq,
            status,
            message_id: body,
        };
        if faults.response_delay_ms.is_zero() {
            self.send(response);
            return;
        }
        let at = Instant::now() + faults.response_delay_ms.sample();
        self.delayed_seq += 1;
        self.delayed.push(Reverse((at, self.delayed_seq, response)));
    }

    fn release_delayed(&mut self) {
        let now = Instant::now();
        while self
            .delayed
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            if let Some(Reverse((_, _, response))) = self.delayed.pop() {
                self.send(response);
            }
        }
    }

    fn send(&self, r: Response) {
        let result = match r.message_id {
            None => self.link.reject(r.sequence_number, r.status),
            Some(ResponseBody::Submit(message_id)) => self.link.respond(
                r.sequence_number,
                r.status,
                Body::SubmitSmResp(MessageIdResp {
                    message_id,
                    ..MessageIdResp::default()
                }),
            ),
            Some(ResponseBody::Data(message_id)) => self.link.respond(
                r.sequence_number,
                r.status,
                Body::DataSmResp(MessageIdResp {
                    message_id,
                    ..MessageIdResp::default()
                }),
            ),
            Some(ResponseBody::Multi(message_id, unsuccess)) => self.link.respond(
                r.sequence_number,
                r.status,
                Body::SubmitMultiResp(SubmitMultiResp {
                    message_id,
                    unsuccess: unsuccess
                        .into_iter()
                        .map(|(ton, npi, addr, error_status_code)| UnsuccessSme {
                            address: Address::new(ton, npi, addr),
                            error_status_code,
                        })
                        .collect(),
                }),
            ),
        };
        if let Err(e) = result {
            debug!(conn = self.conn, error = %e, "response not sent");
        }
    }

    /// `query_sm`: the state computed from what was drawn at submission; unknown (never
    /// issued, or forgotten after `query_memory` newer ids) → `ESME_RINVMSGID`.
    fn query_sm(&self, seq: u32, q: &QuerySm) {
        let now_ms = self.inner.now_ms(Instant::now());
        let status = self.inner.lock_store().query(&q.message_id, now_ms);
        let result = match status {
            None => self.link.reject(seq, ESME_RINVMSGID),
            Some(s) => self.link.respond(
                seq,
                ESME_ROK,
                Body::QuerySmResp(QuerySmResp {
                    message_id: q.message_id.clone(),
                    final_date: s.final_unix_ms.map(smpp_time).unwrap_or_default(),
                    message_state: s.state.as_u8(),
                    error_code: u8::try_from(s.err).unwrap_or(u8::MAX),
                }),
            ),
        };
        if let Err(e) = result {
            debug!(conn = self.conn, error = %e, "query_sm_resp not sent");
        }
    }

    /// `cancel_sm` by id while the message is en route (its receipt is then not sent and
    /// `query_sm` says `DELETED`); final → `ESME_RCANCELFAIL`; unknown → `ESME_RINVMSGID`;
    /// without an id (cancel by addresses) → `ESME_RCANCELFAIL`.
    fn cancel_sm(&self, seq: u32, c: &CancelSm) {
        let result = if c.message_id.is_empty() {
            self.link.reject(seq, ESME_RCANCELFAIL)
        } else {
            let now_ms = self.inner.now_ms(Instant::now());
            match self.inner.lock_store().cancel(&c.message_id, now_ms) {
                Change::Done => self.link.respond(seq, ESME_ROK, Body::CancelSmResp),
                Change::Final => self.link.reject(seq, ESME_RCANCELFAIL),
                Change::Unknown => self.link.reject(seq, ESME_RINVMSGID),
            }
        };
        if let Err(e) = result {
            debug!(conn = self.conn, error = %e, "cancel_sm_resp not sent");
        }
    }

    /// `replace_sm` while en route → `ESME_ROK` (the receipt keeps the original text);
    /// final → `ESME_RREPLACEFAIL`; unknown → `ESME_RINVMSGID`.
    fn replace_sm(&self, seq: u32, r: &ReplaceSm) {
        let now_ms = self.inner.now_ms(Instant::now());
        let result = match self.inner.lock_store().replace(&r.message_id, now_ms) {
            Change::Done => self.link.respond(seq, ESME_ROK, Body::ReplaceSmResp),
            Change::Final => self.link.reject(seq, ESME_RREPLACEFAIL),
            Change::Unknown => self.link.reject(seq, ESME_RINVMSGID),
        };
        if let Err(e) = result {
            debug!(conn = self.conn, error = %e, "replace_sm_resp not sent");
        }
    }
}

enum Want {
    Always,
    Failure,
    Success,
}

/// `registered_delivery` bits 0-1: 1 a receipt always, 2 on failure only, 3 on success
/// only (the SMPP 5.0 meaning of the value 3.4 reserves).
fn wants_receipt(registered_delivery: u8) -> Option<Want> {
    match registered_delivery & 0x03 {
        1 => Some(Want::Always),
        2 => Some(Want::Failure),
        3 => Some(Want::Success),
        _ => None,
    }
}

impl ConnEntry {
    /// Cuts the connection (TCP shutdown, no unbind). Returns false if it already was.
    pub(crate) fn cut(&mut self) -> bool {
        if self.dropped {
            return false;
        }
        self.dropped = true;
        let _ = self.killer.shutdown(std::net::Shutdown::Both);
        true
    }
}
