//! The SMPP connector against a real SMPP server over loopback TCP: a small SMSC written
//! here on `tern-smpp-tokio`'s server role, reached through a TCP proxy that can cut
//! connections and refuse new ones (a network outage). Nothing is mocked: every test goes
//! through the connector's binds, sessions and sockets.
//!
//! Tests synchronise on events (what the SMSC saw, what the carrier emitted), never on
//! sleeps. They run on the real clock with short settings: tokio's paused clock advances to
//! the next timer whenever the runtime is idle, even while bytes are crossing a loopback
//! socket, so it fires response timeouts that real time would not. The timing logic itself
//! (backoff, rate limit, recovery) is unit-tested with explicit instants next to the code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_carriers::smpp::{BindState, SmppCarrier, SmppCarrierConfig};
use tern_carriers::{
    Carrier, CarrierEvent, InboundSms, OutboundSms, Receipt, ReceiptOutcome, SubmitError,
};
use tern_smpp::pdu::{
    Address, BindKind, Body, DeliverSm, MessageIdResp, MessageState, Pdu, QuerySm, QuerySmResp,
    SubmitSm,
};
use tern_smpp::status::*;
use tern_smpp::{Role, SessionConfig};
use tern_smpp_tokio::{Closed, Incoming, Link};
use tern_types::{Sid, SidPrefix};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};

const PASSWORD: &str = "secret";
/// Generous: only reached when a test is broken.
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// The test SMSC
// ---------------------------------------------------------------------------------------

/// How the SMSC answers a `submit_sm`.
#[derive(Debug, Clone)]
enum Reply {
    /// `submit_sm_resp` with a generated id (`msg-N`).
    Ok,
    /// `submit_sm_resp` with this id.
    Id(String),
    /// An error status.
    Status(u32),
    /// A generated id after a delay (to hold window slots).
    After(Duration),
    /// Not answered by the SMSC: the test answers via [`SmscEvent::Submit`]'s link.
    Manual,
}

#[derive(Debug)]
enum SmscEvent {
    Bound {
        kind: BindKind,
        system_id: String,
        system_type: String,
        link: Link,
    },
    BindRefused,
    Submit {
        seq: u32,
        sm: SubmitSm,
        link: Link,
    },
    Query(QuerySm),
    Closed(Closed),
}

type Script = Box<dyn FnMut(&SubmitSm) -> Reply + Send>;
/// `None`: the query is never answered.
type QueryScript = Box<dyn FnMut(&QuerySm) -> Option<(u32, QuerySmResp)> + Send>;

struct SmscState {
    password: String,
    script: Mutex<Script>,
    query: Mutex<QueryScript>,
    events: mpsc::UnboundedSender<SmscEvent>,
    next_id: AtomicU64,
    /// Submits received and not answered yet, and the most ever at once.
    open_submits: AtomicUsize,
    max_open_submits: AtomicUsize,
}

struct Smsc {
    /// Where the carrier connects: the proxy in front of the SMSC.
    addr: String,
    events: mpsc::UnboundedReceiver<SmscEvent>,
    state: Arc<SmscState>,
    proxy: Arc<Proxy>,
    _tasks: Vec<JoinHandle<()>>,
}

impl Smsc {
    async fn start() -> Smsc {
        Smsc::start_with_password(PASSWORD).await
    }

    async fn start_with_password(password: &str) -> Smsc {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let backend = listener.local_addr().unwrap().to_string();
        let (tx, events) = mpsc::unbounded_channel();
        let state = Arc::new(SmscState {
            password: password.to_owned(),
            script: Mutex::new(Box::new(|_| Reply::Ok)),
            query: Mutex::new(Box::new(|_| {
                Some((ESME_RQUERYFAIL, QuerySmResp::default()))
            })),
            events: tx,
            next_id: AtomicU64::new(1),
            open_submits: AtomicUsize::new(0),
            max_open_submits: AtomicUsize::new(0),
        });
        let st = state.clone();
        let smsc_task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, st.clone()));
            }
        });
        let (proxy, proxy_task) = Proxy::start(backend).await;
        Smsc {
            addr: proxy.addr.clone(),
            events,
            state,
            proxy,
            _tasks: vec![smsc_task, proxy_task],
        }
    }

    fn script(&self, f: impl FnMut(&SubmitSm) -> Reply + Send + 'static) {
        *self.state.script.lock().unwrap() = Box::new(f);
    }

    fn on_query(&self, f: impl FnMut(&QuerySm) -> Option<(u32, QuerySmResp)> + Send + 'static) {
        *self.state.query.lock().unwrap() = Box::new(f);
    }

    async fn next(&mut self) -> SmscEvent {
        timeout(WAIT, self.events.recv())
            .await
            .expect("the smsc saw nothing in time")
            .expect("smsc event channel closed")
    }

    /// The next bind (connections closing meanwhile are skipped).
    async fn bound(&mut self) -> (BindKind, Link) {
        loop {
            match self.next().await {
                SmscEvent::Bound { kind, link, .. } => return (kind, link),
                SmscEvent::Closed(_) => continue,
                other => panic!("expected a bind, got {other:?}"),
            }
        }
    }

    /// The next refused bind (connections closing meanwhile are skipped).
    async fn refused(&mut self) {
        loop {
            match self.next().await {
                SmscEvent::BindRefused => return,
                SmscEvent::Closed(_) => continue,
                other => panic!("expected a refused bind, got {other:?}"),
            }
        }
    }

    async fn submit(&mut self) -> (u32, SubmitSm, Link) {
        loop {
            match self.next().await {
                SmscEvent::Submit { seq, sm, link } => return (seq, sm, link),
                SmscEvent::Bound { .. } => continue,
                other => panic!("expected a submit, got {other:?}"),
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, state: Arc<SmscState>) {
    let Ok((link, mut incoming)) =
        tern_smpp_tokio::spawn(stream, Role::Server, SessionConfig::default())
    else {
        return;
    };
    while let Some(msg) = incoming.recv().await {
        match msg {
            Incoming::BindRequest { kind, bind } => {
                if bind.password == state.password {
                    link.accept_bind("test-smsc").await.unwrap();
                    let _ = state.events.send(SmscEvent::Bound {
                        kind,
                        system_id: bind.system_id,
                        system_type: bind.system_type,
                        link: link.clone(),
                    });
                } else {
                    link.reject_bind(ESME_RINVPASWD).unwrap();
                    let _ = state.events.send(SmscEvent::BindRefused);
                }
            }
            Incoming::Request(Pdu {
                sequence_number: seq,
                body: Body::SubmitSm(sm),
                ..
            }) => {
                let open = state.open_submits.fetch_add(1, Ordering::SeqCst) + 1;
                state.max_open_submits.fetch_max(open, Ordering::SeqCst);
                let reply = (state.script.lock().unwrap())(&sm);
                let _ = state.events.send(SmscEvent::Submit {
                    seq,
                    sm,
                    link: link.clone(),
                });
                let id = || format!("msg-{}", state.next_id.fetch_add(1, Ordering::SeqCst));
                match reply {
                    Reply::Ok => answer(&state, &link, seq, id()),
                    Reply::Id(id) => answer(&state, &link, seq, id),
                    Reply::Status(status) => {
                        state.open_submits.fetch_sub(1, Ordering::SeqCst);
                        link.reject(seq, status).unwrap();
                    }
                    Reply::After(delay) => {
                        let (state, link, id) = (state.clone(), link.clone(), id());
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            answer(&state, &link, seq, id);
                        });
                    }
                    Reply::Manual => {}
                }
            }
            Incoming::Request(Pdu {
                sequence_number: seq,
                body: Body::QuerySm(q),
                ..
            }) => {
                let reply = (state.query.lock().unwrap())(&q);
                let _ = state.events.send(SmscEvent::Query(q));
                if let Some((status, resp)) = reply {
                    link.respond(seq, status, Body::QuerySmResp(resp)).unwrap();
                }
            }
            Incoming::Request(pdu) => link.reject(pdu.sequence_number, ESME_RINVCMDID).unwrap(),
            Incoming::Closed(c) => {
                let _ = state.events.send(SmscEvent::Closed(c));
                return;
            }
            Incoming::Alert(_) | Incoming::Outbind(_) => {}
        }
    }
}

fn answer(state: &SmscState, link: &Link, seq: u32, id: String) {
    state.open_submits.fetch_sub(1, Ordering::SeqCst);
    let _ = link.respond(
        seq,
        ESME_ROK,
        Body::SubmitSmResp(MessageIdResp {
            message_id: id,
            ..Default::default()
        }),
    );
}

/// The test answering a [`Reply::Manual`] submit.
fn answer_manual(smsc: &Smsc, link: &Link, seq: u32, id: &str) {
    answer(&smsc.state, link, seq, id.to_owned());
}

/// Sends a `deliver_sm` from the SMSC and returns the carrier's `command_status`.
async fn deliver(link: &Link, sm: DeliverSm) -> u32 {
    let resp = timeout(WAIT, link.request(Body::DeliverSm(sm)))
        .await
        .expect("no deliver_sm_resp in time")
        .expect("deliver_sm failed");
    assert!(matches!(resp.body, Body::DeliverSmResp(_)), "{resp:?}");
    resp.command_status
}

fn receipt_text(text: &str) -> DeliverSm {
    DeliverSm {
        source: Address::new(1, 1, "447700900123"),
        destination: Address::new(1, 1, "14155550100"),
        esm_class: 0x04,
        short_message: text.as_bytes().to_vec(),
        ..DeliverSm::default()
    }
}

fn receipt_tlv(id: &str, state: MessageState) -> DeliverSm {
    let mut sm = receipt_text("");
    sm.tlvs.set_receipted_message_id(id);
    sm.tlvs.set_message_state(state);
    sm
}

fn mo_part(text: &[u8], udh: Option<[u8; 6]>) -> DeliverSm {
    let mut short_message = Vec::new();
    if let Some(udh) = udh {
        short_message.extend_from_slice(&udh);
    }
    short_message.extend_from_slice(text);
    DeliverSm {
        source: Address::new(1, 1, "447700900123"),
        destination: Address::new(0, 1, "14155550100"),
        esm_class: if udh.is_some() { 0x40 } else { 0 },
        short_message,
        ..DeliverSm::default()
    }
}

// ---------------------------------------------------------------------------------------
// The proxy: cuts connections and simulates outages
// ---------------------------------------------------------------------------------------

struct Proxy {
    addr: String,
    /// While set, connections are accepted and closed at once.
    down: AtomicBool,
    conns: Mutex<Vec<JoinHandle<()>>>,
    /// When each refused connection arrived (tokio's clock).
    refused: mpsc::UnboundedSender<Instant>,
    refused_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Instant>>,
}

impl Proxy {
    async fn start(backend: String) -> (Arc<Proxy>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (refused, refused_rx) = mpsc::unbounded_channel();
        let proxy = Arc::new(Proxy {
            addr: listener.local_addr().unwrap().to_string(),
            down: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            refused,
            refused_rx: tokio::sync::Mutex::new(refused_rx),
        });
        let p = proxy.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if p.down.load(Ordering::SeqCst) {
                    let _ = p.refused.send(Instant::now());
                    drop(client);
                    continue;
                }
                let backend = backend.clone();
                let conn = tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                });
                p.conns.lock().unwrap().push(conn);
            }
        });
        (proxy, task)
    }

    /// Cuts every connection (no unbind) and refuses new ones until [`Proxy::restore`].
    fn outage(&self) {
        self.down.store(true, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    async fn next_refused(&self) -> Instant {
        timeout(WAIT, self.refused_rx.lock().await.recv())
            .await
            .expect("no reconnect attempt in time")
            .expect("proxy gone")
    }
}

// ---------------------------------------------------------------------------------------
// The carrier under test
// ---------------------------------------------------------------------------------------

fn config(addr: &str, extra: &str) -> SmppCarrierConfig {
    toml::from_str(&format!(
        r#"
        id = "acme"
        address = "{addr}"
        system_id = "tern"
        system_type = "TEST"
        reconnect_min_ms = 50
        reconnect_max_ms = 400
        {extra}
        "#
    ))
    .unwrap()
}

fn with_password(extra: &str) -> String {
    format!("password = \"{PASSWORD}\"\n{extra}")
}

struct Harness {
    smsc: Smsc,
    carrier: Arc<SmppCarrier>,
    events: mpsc::Receiver<CarrierEvent>,
}

async fn harness(extra: &str) -> Harness {
    let smsc = Smsc::start().await;
    let (tx, events) = mpsc::channel(16);
    let carrier = SmppCarrier::start(&config(&smsc.addr, &with_password(extra)), tx).unwrap();
    Harness {
        smsc,
        carrier,
        events,
    }
}

impl Harness {
    /// The SMSC accepted a bind and the carrier can transmit.
    async fn bound(&mut self) -> (BindKind, Link) {
        let bound = self.smsc.bound().await;
        timeout(WAIT, self.carrier.wait_until_bound())
            .await
            .expect("the carrier did not see its bind");
        bound
    }

    async fn event(&mut self) -> CarrierEvent {
        timeout(WAIT, self.events.recv())
            .await
            .expect("the carrier emitted nothing in time")
            .expect("carrier event channel closed")
    }

    async fn receipt(&mut self) -> Receipt {
        match self.event().await {
            CarrierEvent::Receipt(r) => r,
            other => panic!("expected a receipt, got {other:?}"),
        }
    }

    async fn inbound(&mut self) -> InboundSms {
        match self.event().await {
            CarrierEvent::Inbound(m) => m,
            other => panic!("expected an inbound message, got {other:?}"),
        }
    }

    /// Submits in a task, so the test can play the SMSC meanwhile.
    fn submit_later(&self, to: &str, body: &str) -> JoinHandle<Result<String, SubmitError>> {
        let carrier = self.carrier.clone();
        let msg = sms(to, body);
        tokio::spawn(async move { carrier.submit(&msg).await })
    }
}

fn sms(to: &str, body: &str) -> OutboundSms {
    OutboundSms {
        message_sid: Sid::generate(SidPrefix::Message),
        from: "+14155550100".into(),
        to: to.into(),
        body: body.into(),
        validity_secs: 3600,
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_submit_returns_the_smsc_message_id() {
    let mut h = harness("").await;
    let (kind, _) = h.bound().await;
    assert_eq!(kind, BindKind::Transceiver);
    let id = h
        .carrier
        .submit(&sms("+447700900123", "hello"))
        .await
        .unwrap();
    assert_eq!(id, "msg-1");
    let (_, sm, _) = h.smsc.submit().await;
    assert_eq!(sm.source, Address::new(1, 1, "14155550100"));
    assert_eq!(sm.destination, Address::new(1, 1, "447700900123"));
    assert_eq!(sm.registered_delivery, 1);
    assert_eq!(sm.data_coding, 0);
    assert_eq!(sm.short_message, b"hello");
    assert_eq!(sm.validity_period, "000000010000000R");

    let status = h.carrier.status();
    assert_eq!(status.id, "acme");
    assert_eq!(status.binds.len(), 1);
    assert_eq!(status.binds[0].state, BindState::Bound);
    assert_eq!(status.binds[0].system_id.as_deref(), Some("test-smsc"));
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn alphanumeric_senders_and_bind_fields() {
    let mut h = harness("").await;
    match h.smsc.next().await {
        SmscEvent::Bound {
            system_id,
            system_type,
            ..
        } => {
            assert_eq!(system_id, "tern");
            assert_eq!(system_type, "TEST");
        }
        other => panic!("{other:?}"),
    }
    h.carrier.wait_until_bound().await;
    let mut msg = sms("+447700900123", "hi");
    msg.from = "TernBank".into();
    h.carrier.submit(&msg).await.unwrap();
    let (_, sm, _) = h.smsc.submit().await;
    assert_eq!(sm.source, Address::new(5, 0, "TernBank"));
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn receipts_by_tlv_and_by_text_in_either_base_and_case() {
    let mut h = harness("").await;
    let (_, link) = h.bound().await;

    // By TLV.
    h.smsc.script(|_| Reply::Id("1A2B3C".into()));
    let id = h.carrier.submit(&sms("+447700900123", "a")).await.unwrap();
    assert_eq!(id, "1A2B3C");
    let status = deliver(&link, receipt_tlv("1A2B3C", MessageState::Delivered)).await;
    assert_eq!(status, ESME_ROK);
    let r = h.receipt().await;
    assert_eq!(r.carrier, "acme");
    assert_eq!(r.carrier_message_id, "1A2B3C");
    assert_eq!(r.outcome, ReceiptOutcome::Delivered);

    // By text, the id printed in decimal (0x1A2B3D = 1715005) and the stat in lower case;
    // an intermediate receipt first is acknowledged and dropped.
    h.smsc.script(|_| Reply::Id("1A2B3D".into()));
    let id = h.carrier.submit(&sms("+447700900123", "b")).await.unwrap();
    assert_eq!(id, "1A2B3D");
    let enroute = receipt_text("id:1715005 sub:001 dlvrd:000 stat:ENROUTE err:000 text:b");
    assert_eq!(deliver(&link, enroute).await, ESME_ROK);
    let text = "id:1715005 sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:undeliv err:000 text:b";
    assert_eq!(deliver(&link, receipt_text(text)).await, ESME_ROK);
    let r = h.receipt().await;
    assert_eq!(r.carrier_message_id, "1A2B3D");
    assert_eq!(r.outcome, ReceiptOutcome::Undelivered(30003));
    assert_eq!(r.done_date.as_deref(), Some("2401011201"));

    // Upper-case stat words, and a GSM network error refining the code.
    let mut sm = receipt_text("id:77 stat:REJECTD err:0");
    sm.tlvs
        .set_network_error_code(tern_smpp::pdu::NetworkErrorCode {
            network_type: 3,
            error_code: 13,
        });
    assert_eq!(deliver(&link, sm).await, ESME_ROK);
    let r = h.receipt().await;
    assert_eq!(r.carrier_message_id, "77");
    assert_eq!(r.outcome, ReceiptOutcome::Undelivered(30004));

    // Garbage is acknowledged (a retry would not help) but not reported.
    assert_eq!(
        deliver(&link, receipt_text("nothing useful")).await,
        ESME_ROK
    );
    assert_eq!(
        deliver(&link, receipt_text("id:78 stat:EXPIRED")).await,
        ESME_ROK
    );
    let r = h.receipt().await;
    assert_eq!(
        (r.carrier_message_id.as_str(), r.outcome),
        ("78", ReceiptOutcome::Undelivered(30003))
    );
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn a_receipt_before_the_submit_response_is_emitted_at_once() {
    let mut h = harness("").await;
    h.bound().await;
    h.smsc.script(|_| Reply::Manual);
    let submit = h.submit_later("+447700900123", "fast");
    let (seq, _, link) = h.smsc.submit().await;
    assert_eq!(
        deliver(&link, receipt_tlv("early-1", MessageState::Delivered)).await,
        ESME_ROK
    );
    let r = h.receipt().await;
    assert_eq!(r.carrier_message_id, "early-1");
    assert_eq!(r.outcome, ReceiptOutcome::Delivered);
    answer_manual(&h.smsc, &link, seq, "early-1");
    assert_eq!(submit.await.unwrap().unwrap(), "early-1");
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn throttling_is_retryable_and_halves_the_rate() {
    let mut h = harness("max_mps = 100.0").await;
    h.bound().await;
    assert_eq!(h.carrier.status().rate_limit_mps, Some(100.0));
    h.smsc.script(|_| Reply::Status(ESME_RTHROTTLED));
    let err = h
        .carrier
        .submit(&sms("+447700900123", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::Retryable(ref r) if r.contains("ESME_RTHROTTLED")),
        "{err:?}"
    );
    assert_eq!(h.carrier.status().rate_limit_mps, Some(50.0));

    h.smsc.script(|_| Reply::Status(ESME_RX_T_APPN));
    let err = h
        .carrier
        .submit(&sms("+447700900123", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::Retryable(_)), "{err:?}");

    h.smsc.script(|_| Reply::Ok);
    h.carrier.submit(&sms("+447700900123", "x")).await.unwrap();
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn the_rate_limit_spaces_submits() {
    let mut h = harness("max_mps = 20.0").await;
    h.bound().await;
    // At 20/s with bursts of 2 (a tenth of a second's worth), 6 messages take at least
    // 4 × 50 ms.
    let started = Instant::now();
    for _ in 0..6 {
        h.carrier.submit(&sms("+447700900123", "x")).await.unwrap();
    }
    assert!(started.elapsed() >= Duration::from_millis(200));
    // MSGQFUL slows down like THROTTLED; the gradual recovery is rate.rs's unit tests.
    h.smsc.script(|_| Reply::Status(ESME_RMSGQFUL));
    let err = h
        .carrier
        .submit(&sms("+447700900123", "x"))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::Retryable(_)), "{err:?}");
    assert_eq!(h.carrier.status().rate_limit_mps, Some(10.0));
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn permanent_errors_carry_their_twilio_code() {
    let mut h = harness(r#"status_codes = { "0x0401" = 30034 }"#).await;
    h.bound().await;
    h.smsc.script(|_| Reply::Status(ESME_RINVDSTADR));
    let err = h
        .carrier
        .submit(&sms("+447700900123", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::Permanent { code: 30005, ref reason } if reason.contains("ESME_RINVDSTADR")),
        "{err:?}"
    );
    h.smsc.script(|_| Reply::Status(0x401));
    let err = h
        .carrier
        .submit(&sms("+447700900123", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::Permanent { code: 30034, .. }),
        "{err:?}"
    );
    h.smsc.script(|_| Reply::Status(0x402));
    let err = h
        .carrier
        .submit(&sms("+447700900123", "x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, SubmitError::Permanent { code: 30008, .. }),
        "{err:?}"
    );
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn a_killed_connection_reconnects_with_backoff_and_resumes() {
    let mut h = harness("").await;
    h.bound().await;
    h.carrier
        .submit(&sms("+447700900123", "before"))
        .await
        .unwrap();
    h.smsc.submit().await;

    h.smsc.proxy.outage();
    // The carrier notices and retries; each attempt is refused. Delays stay within
    // [50 ms, min(400 ms, 50 ms · 2^(n−1))].
    let mut last = h.smsc.proxy.next_refused().await;
    let err = h
        .carrier
        .submit(&sms("+447700900123", "during"))
        .await
        .unwrap_err();
    assert_eq!(err, SubmitError::Retryable("no bind".into()));
    let status = h.carrier.status();
    assert_ne!(status.binds[0].state, BindState::Bound);
    assert!(status.binds[0].last_error.is_some());
    for n in 2..8u32 {
        let at = h.smsc.proxy.next_refused().await;
        let gap = at - last;
        // The n-th refused attempt follows the n-th failure in a row (the cut bind was the
        // first: it lasted less than STABLE_BIND).
        let ceiling = Duration::from_millis((50u64 << (n - 1)).min(400));
        // Real time: the upper bound allows for a loaded machine's scheduling.
        assert!(
            gap >= Duration::from_millis(50) && gap <= ceiling + Duration::from_millis(300),
            "attempt {n}: {gap:?} not within [50ms, {ceiling:?}]"
        );
        last = at;
    }

    h.smsc.proxy.restore();
    h.bound().await;
    let id = h
        .carrier
        .submit(&sms("+447700900123", "after"))
        .await
        .unwrap();
    assert!(id.starts_with("msg-"));
    assert_eq!(h.carrier.status().binds[0].state, BindState::Bound);
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn shutdown_finishes_what_is_in_flight_then_unbinds() {
    let mut h = harness("binds = 2").await;
    h.bound().await;
    h.bound().await;
    h.smsc.script(|_| Reply::Manual);
    let submits: Vec<_> = (0..3)
        .map(|i| h.submit_later("+447700900123", &format!("m{i}")))
        .collect();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(h.smsc.submit().await);
    }

    let carrier = h.carrier.clone();
    let mut shutdown = Box::pin(async move { carrier.shutdown().await });
    // Poll once: shutdown starts refusing submits, then waits for the three in flight.
    tokio::select! {
        biased;
        () = &mut shutdown => panic!("shutdown finished with submits in flight"),
        () = std::future::ready(()) => {}
    }
    let err = h
        .carrier
        .submit(&sms("+447700900123", "late"))
        .await
        .unwrap_err();
    assert!(matches!(err, SubmitError::Retryable(ref r) if r.contains("shutting down")));

    for (n, (seq, _, link)) in held.iter().enumerate() {
        answer_manual(&h.smsc, link, *seq, &format!("held-{n}"));
    }
    let mut ids: Vec<String> = Vec::new();
    for s in submits {
        ids.push(s.await.unwrap().unwrap());
    }
    ids.sort();
    assert_eq!(ids, ["held-0", "held-1", "held-2"]);
    timeout(WAIT, shutdown).await.expect("shutdown hung");

    // Both connections were unbound by us, not dropped.
    for _ in 0..2 {
        match h.smsc.next().await {
            SmscEvent::Closed(Closed::Session(tern_smpp::CloseReason::PeerUnbound)) => {}
            other => panic!("expected an unbind, got {other:?}"),
        }
    }
    let status = h.carrier.status();
    assert!(status.binds.iter().all(|b| b.state == BindState::Closed));
}

#[tokio::test]
async fn long_messages_go_as_segments_sharing_one_reference() {
    let mut h = harness("").await;
    let (_, link) = h.bound().await;

    // GSM-7: 200 characters are 2 parts of at most 153.
    let gsm = "a".repeat(200);
    let id = h.carrier.submit(&sms("+447700900123", &gsm)).await.unwrap();
    let (_, p1, _) = h.smsc.submit().await;
    let (_, p2, _) = h.smsc.submit().await;
    assert_eq!(id, "msg-1");
    let udh = |sm: &SubmitSm| sm.short_message[..6].to_vec();
    assert_eq!(p1.esm_class & 0x40, 0x40);
    assert_eq!(p1.data_coding, 0);
    let (u1, u2) = (udh(&p1), udh(&p2));
    assert_eq!(&u1[..3], &[0x05, 0x00, 0x03]);
    assert_eq!(u1[3], u2[3], "one reference for the message");
    assert_eq!((u1[4], u1[5], u2[4], u2[5]), (2, 1, 2, 2));
    assert_eq!(p1.short_message.len() - 6 + p2.short_message.len() - 6, 200);

    // UCS-2: 100 Cyrillic characters are 2 parts of at most 67; a new reference.
    let ucs2 = "Ж".repeat(100);
    h.carrier
        .submit(&sms("+447700900123", &ucs2))
        .await
        .unwrap();
    let (_, q1, _) = h.smsc.submit().await;
    let (_, q2, _) = h.smsc.submit().await;
    assert_eq!(q1.data_coding, 8);
    assert_eq!(udh(&q1)[3], udh(&q2)[3]);
    assert_ne!(udh(&q1)[3], u1[3], "each message has its own reference");
    assert_eq!((udh(&q2)[4], udh(&q2)[5]), (2, 2));

    // The second segment's receipt (msg-2) is acknowledged but does not decide the
    // message; the first segment's does.
    assert_eq!(
        deliver(&link, receipt_tlv("msg-2", MessageState::Undeliverable)).await,
        ESME_ROK
    );
    assert_eq!(
        deliver(&link, receipt_tlv("msg-1", MessageState::Delivered)).await,
        ESME_ROK
    );
    let r = h.receipt().await;
    assert_eq!(
        (r.carrier_message_id.as_str(), r.outcome),
        ("msg-1", ReceiptOutcome::Delivered)
    );
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn concatenated_mo_is_reassembled_and_partial_ones_expire() {
    let mut h = harness("mo_reassembly_secs = 1").await;
    let (_, link) = h.bound().await;

    // Parts out of order; each acknowledged; one message to the engine.
    let p2 = mo_part(b" world", Some([0x05, 0x00, 0x03, 0x42, 2, 2]));
    let p1 = mo_part(b"Hello", Some([0x05, 0x00, 0x03, 0x42, 2, 1]));
    assert_eq!(deliver(&link, p2).await, ESME_ROK);
    assert_eq!(deliver(&link, p1).await, ESME_ROK);
    let m = h.inbound().await;
    assert_eq!(m.carrier, "acme");
    assert_eq!(m.from, "+447700900123");
    assert_eq!(m.to, "+14155550100", "11 digits with an unknown TON");
    assert_eq!(m.body, "Hello world");

    // A plain MO.
    assert_eq!(deliver(&link, mo_part(b"STOP", None)).await, ESME_ROK);
    assert_eq!(h.inbound().await.body, "STOP");

    // Part 1 of 3 alone is delivered as it is after the reassembly timeout.
    let started = Instant::now();
    let lone = mo_part(b"Part one", Some([0x05, 0x00, 0x03, 0x43, 3, 1]));
    assert_eq!(deliver(&link, lone).await, ESME_ROK);
    let m = h.inbound().await;
    assert_eq!(m.body, "Part one");
    assert!(started.elapsed() >= Duration::from_secs(1));
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn data_sm_and_ucs2_mo_are_read() {
    let mut h = harness("").await;
    let (_, link) = h.bound().await;
    // data_sm: the text is in message_payload.
    let mut d = tern_smpp::pdu::DataSm {
        source: Address::new(1, 1, "33612345678"),
        destination: Address::new(1, 1, "14155550100"),
        ..Default::default()
    };
    d.tlvs.set_message_payload(b"via data sm".to_vec());
    let resp = timeout(WAIT, link.request(Body::DataSm(d)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.command_status, ESME_ROK);
    assert!(matches!(resp.body, Body::DataSmResp(_)));
    let m = h.inbound().await;
    assert_eq!(
        (m.from.as_str(), m.body.as_str()),
        ("+33612345678", "via data sm")
    );

    // UCS-2 deliver_sm from a short code.
    let mut sm = mo_part(&[0x04, 0x16, 0x00, 0x21], None);
    sm.data_coding = 8;
    sm.source = Address::new(3, 0, "12345");
    assert_eq!(deliver(&link, sm).await, ESME_ROK);
    let m = h.inbound().await;
    assert_eq!((m.from.as_str(), m.body.as_str()), ("12345", "Ж!"));
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn nothing_is_acknowledged_that_the_engine_did_not_take() {
    let mut h = harness("").await;
    let (_, link) = h.bound().await;
    h.events.close();
    assert_eq!(deliver(&link, mo_part(b"hi", None)).await, ESME_RX_T_APPN);
    assert_eq!(
        deliver(&link, receipt_tlv("x", MessageState::Delivered)).await,
        ESME_RX_T_APPN
    );
    // Intermediate receipts carry nothing to hand over: acknowledged.
    assert_eq!(
        deliver(&link, receipt_tlv("x", MessageState::Enroute)).await,
        ESME_ROK
    );
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn query_sm_maps_final_states_and_sends_the_source() {
    let mut h = harness("").await;
    h.bound().await;
    h.smsc.script(|_| Reply::Id("q-1".into()));
    h.carrier.submit(&sms("+447700900123", "q")).await.unwrap();
    h.smsc.on_query(|q| {
        let state = match q.message_id.as_str() {
            "q-1" => MessageState::Delivered,
            "q-2" => MessageState::Enroute,
            "q-3" => MessageState::Expired,
            _ => return Some((ESME_RQUERYFAIL, QuerySmResp::default())),
        };
        Some((
            ESME_ROK,
            QuerySmResp {
                message_id: q.message_id.clone(),
                final_date: "240101120503000+".into(),
                message_state: state.as_u8(),
                error_code: 0,
            },
        ))
    });
    let r = h.carrier.query("q-1", "+447700900123").await.unwrap();
    assert_eq!(r.outcome, ReceiptOutcome::Delivered);
    assert_eq!(r.carrier_message_id, "q-1");
    assert_eq!(r.done_date.as_deref(), Some("2401011205"));
    loop {
        if let SmscEvent::Query(q) = h.smsc.next().await {
            assert_eq!(q.source, Address::new(1, 1, "14155550100"));
            break;
        }
    }
    assert_eq!(h.carrier.query("q-2", "+447700900123").await, None);
    let r = h.carrier.query("q-3", "+447700900123").await.unwrap();
    assert_eq!(r.outcome, ReceiptOutcome::Undelivered(30003));
    assert_eq!(h.carrier.query("q-9", "+447700900123").await, None);
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn unanswered_requests_time_out() {
    let mut h = harness("response_timeout_secs = 2").await;
    h.bound().await;
    // A submit without a response: retryable (the SMSC may have it; see docs/smpp.md).
    // A query without a response: no answer. Both at once, to wait only once.
    h.smsc.script(|_| Reply::Manual);
    h.smsc.on_query(|_| None);
    let started = Instant::now();
    let msg = sms("+447700900123", "x");
    let (submitted, queried) = tokio::join!(
        h.carrier.submit(&msg),
        h.carrier.query("q-1", "+447700900123")
    );
    let err = submitted.unwrap_err();
    assert!(
        matches!(err, SubmitError::Retryable(ref r) if r.contains("submit_sm_resp")),
        "{err:?}"
    );
    assert_eq!(queried, None);
    assert!(started.elapsed() >= Duration::from_secs(2));
    // The bind survives both.
    assert_eq!(h.carrier.status().binds[0].state, BindState::Bound);
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn the_window_is_never_exceeded() {
    let mut h = harness("window = 3").await;
    h.bound().await;
    h.smsc.script(|_| Reply::After(Duration::from_millis(50)));
    let submits: Vec<_> = (0..20)
        .map(|i| h.submit_later("+447700900123", &format!("w{i}")))
        .collect();
    for s in submits {
        s.await.unwrap().unwrap();
    }
    assert_eq!(h.smsc.state.max_open_submits.load(Ordering::SeqCst), 3);
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn transmitter_receiver_binds_split_the_traffic() {
    let mut h = harness("bind_mode = \"transmitter_receiver\"").await;
    let mut rx_link = None;
    for _ in 0..2 {
        let (kind, link) = h.bound().await;
        if kind == BindKind::Receiver {
            rx_link = Some(link);
        } else {
            assert_eq!(kind, BindKind::Transmitter);
        }
    }
    let rx_link = rx_link.unwrap();
    let id = h.carrier.submit(&sms("+447700900123", "tx")).await.unwrap();
    assert_eq!(
        deliver(&rx_link, receipt_tlv(&id, MessageState::Delivered)).await,
        ESME_ROK
    );
    assert_eq!(h.receipt().await.carrier_message_id, id);
    let status = h.carrier.status();
    let modes: Vec<_> = status.binds.iter().map(|b| b.mode).collect();
    assert_eq!(modes, ["transmitter", "receiver"]);
    h.carrier.shutdown().await;
}

#[tokio::test]
async fn the_password_can_come_from_the_environment() {
    // Cargo sets CARGO_PKG_VERSION_MAJOR for the test process; a test cannot set a variable
    // itself (`set_var` is unsafe and this workspace forbids unsafe code).
    let var = "CARGO_PKG_VERSION_MAJOR";
    let value = std::env::var(var).expect("cargo sets CARGO_PKG_VERSION_MAJOR");
    let mut smsc = Smsc::start_with_password(&value).await;
    let (tx, _events) = mpsc::channel(1);
    let carrier = SmppCarrier::start(
        &config(&smsc.addr, &format!("password_env = \"{var}\"")),
        tx,
    )
    .unwrap();
    smsc.bound().await;
    carrier.shutdown().await;

    // A wrong password: refused, shown in the status, retried after a backoff.
    let (tx, _events) = mpsc::channel(1);
    let carrier = SmppCarrier::start(&config(&smsc.addr, "password = \"wrong\""), tx).unwrap();
    smsc.refused().await;
    smsc.refused().await;
    let status = carrier.status();
    let error = status.binds[0].last_error.clone().unwrap();
    assert!(error.contains("0x0000000e"), "{error}");
    carrier.shutdown().await;

    // A variable that is not set is a configuration error.
    let (tx, _events) = mpsc::channel(1);
    let err = SmppCarrier::start(
        &config(
            &smsc.addr,
            "password_env = \"TERN_SMPP_TEST_UNSET_VARIABLE\"",
        ),
        tx,
    )
    .unwrap_err();
    assert!(err.to_string().contains("TERN_SMPP_TEST_UNSET_VARIABLE"));
}

/// A bind slot taken away (leased to another node) stops taking submits at once, lets the
/// one in flight get its answer, then unbinds cleanly and stays unbound; given back, it
/// binds again. The other slot is untouched throughout.
#[tokio::test]
async fn a_released_slot_finishes_its_submit_then_unbinds_and_binds_again_when_given_back() {
    let mut h = harness("binds = 2").await;
    h.bound().await;
    h.bound().await;
    assert_eq!(h.carrier.slots(), 2);
    h.smsc.script(|_| Reply::Manual);
    // One submit in flight on each connection.
    let first = h.submit_later("+447700900123", "m0");
    let second = h.submit_later("+447700900124", "m1");
    let held = [h.smsc.submit().await, h.smsc.submit().await];

    h.carrier.set_active_slots(Some([0].into_iter().collect()));
    let mut transmitting = h
        .carrier
        .transmitting()
        .expect("an SMPP carrier has connections");
    timeout(WAIT, transmitting.wait_for(|n| *n == 1))
        .await
        .expect("slot 1 stopped counting")
        .unwrap();
    // Nothing new goes to slot 1 while its submit is answered.
    for (n, (seq, _, link)) in held.iter().enumerate() {
        answer_manual(&h.smsc, link, *seq, &format!("held-{n}"));
    }
    let mut ids = vec![
        first.await.unwrap().unwrap(),
        second.await.unwrap().unwrap(),
    ];
    ids.sort();
    assert_eq!(ids, ["held-0", "held-1"]);
    match h.smsc.next().await {
        SmscEvent::Closed(Closed::Session(tern_smpp::CloseReason::PeerUnbound)) => {}
        other => panic!("expected slot 1 to unbind, got {other:?}"),
    }
    let idle = |h: &Harness| {
        h.carrier
            .status()
            .binds
            .iter()
            .map(|b| (b.slot, b.state.clone()))
            .collect::<Vec<_>>()
    };
    timeout(WAIT, async {
        while !idle(&h).contains(&(1, BindState::Idle)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("slot 1 idle");
    assert!(idle(&h).contains(&(0, BindState::Bound)));
    // A submit now goes to slot 0.
    h.smsc.script(|_| Reply::Ok);
    h.carrier.submit(&sms("+447700900125", "m2")).await.unwrap();
    h.smsc.submit().await;

    h.carrier.set_active_slots(None);
    h.bound().await;
    timeout(WAIT, transmitting.wait_for(|n| *n == 2))
        .await
        .expect("slot 1 bound again")
        .unwrap();
}
