//! [`bench_bind`]: submits per second over one transceiver bind, with receipts.
//!
//! `window` submitter tasks share one [`tern_smpp_tokio::Link`], so exactly `window`
//! `submit_sm` are outstanding at any time; a reader task answers every `deliver_sm` at
//! once and counts receipts. Works against any SMSC, not only this simulator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tern_smpp::pdu::{Address, BindKind, MessageIdResp, SubmitSm};
use tern_smpp::receipt::is_receipt;
use tern_smpp::status::ESME_ROK;
use tern_smpp::{Body, SessionConfig};
use tern_smpp_tokio::{Incoming, connect};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::Error;

/// What [`bench_bind`] sends.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub system_id: String,
    pub password: String,
    /// Submits outstanding at once (and the session window).
    pub window: usize,
    /// Submits in total.
    pub count: u64,
    /// Ask for receipts (`registered_delivery` 1) and wait for all of them.
    pub receipts: bool,
    /// How long to wait for the last receipt after the last submit response.
    pub receipt_timeout: Duration,
    /// The message text (GSM-7, `data_coding` 0).
    pub body: String,
    /// Sender and recipient of every submit.
    pub source: Address,
    pub destination: Address,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            system_id: "tern".into(),
            password: String::new(),
            window: 100,
            count: 100_000,
            receipts: true,
            receipt_timeout: Duration::from_secs(60),
            body: "Tern benchmark message".into(),
            source: Address::new(5, 0, "TernBench"),
            destination: Address::new(1, 1, "15555550100"),
        }
    }
}

/// The result of one [`bench_bind`] run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchFigures {
    pub window: usize,
    /// Submits answered `ESME_ROK`.
    pub accepted: u64,
    /// Submits answered with an error status.
    pub rejected: u64,
    /// First submit to last submit response.
    pub submit_secs: f64,
    /// Submit responses per second over `submit_secs`.
    pub submits_per_sec: f64,
    /// Receipts received (and answered).
    pub receipts: u64,
    /// First submit to last receipt (or to the last response without receipts).
    pub total_secs: f64,
    /// `submit_sm` plus receipt `deliver_sm` per second over `total_secs`.
    pub pdus_per_sec: f64,
    /// Submit response latency percentiles, milliseconds.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
}

impl std::fmt::Display for BenchFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "window {:>4}: {} submits in {:.2} s = {:.0} submit_sm/s (p50 {:.2} ms, p99 {:.2} ms, {} rejected); {} receipts, all done in {:.2} s = {:.0} PDUs/s",
            self.window,
            self.accepted,
            self.submit_secs,
            self.submits_per_sec,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.rejected,
            self.receipts,
            self.total_secs,
            self.pdus_per_sec,
        )
    }
}

/// Binds one transceiver to `addr` and submits `opts.count` messages with `opts.window`
/// outstanding; with `opts.receipts` waits (up to `receipt_timeout`) for every receipt.
pub async fn bench_bind(addr: &str, opts: &BenchOptions) -> Result<BenchFigures, Error> {
    let window = opts.window.max(1);
    let session = SessionConfig {
        window,
        inbound_window: window.max(1000),
        ..SessionConfig::default()
    };
    let bind = tern_smpp::pdu::Bind {
        system_id: opts.system_id.clone(),
        password: opts.password.clone(),
        interface_version: 0x34,
        ..Default::default()
    };
    let (link, mut incoming, _) = connect(addr, BindKind::Transceiver, bind, session).await?;

    let expected = if opts.receipts { opts.count } else { 0 };
    let receipts = Arc::new(AtomicU64::new(0));
    let (all_in, all_in_rx) = oneshot::channel::<Instant>();
    let reader = {
        let link = link.clone();
        let receipts = receipts.clone();
        tokio::spawn(async move {
            let mut all_in = Some(all_in);
            while let Some(message) = incoming.recv().await {
                match message {
                    Incoming::Request(pdu) => {
                        let receipt =
                            matches!(&pdu.body, Body::DeliverSm(sm) if is_receipt(sm.esm_class));
                        let _ = link.respond(
                            pdu.sequence_number,
                            ESME_ROK,
                            Body::DeliverSmResp(MessageIdResp::default()),
                        );
                        if receipt
                            && receipts.fetch_add(1, Ordering::Relaxed) + 1 == expected
                            && let Some(tx) = all_in.take()
                        {
                            let _ = tx.send(Instant::now());
                        }
                    }
                    Incoming::Closed(_) => return,
                    _ => {}
                }
            }
        })
    };

    let template = SubmitSm {
        source: opts.source.clone(),
        destination: opts.destination.clone(),
        registered_delivery: u8::from(opts.receipts),
        short_message: opts.body.as_bytes().to_vec(),
        ..SubmitSm::default()
    };
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::with_capacity(window);
    for _ in 0..window {
        let link = link.clone();
        let next = next.clone();
        let template = template.clone();
        let count = opts.count;
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut rejected) = (0u64, 0u64);
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t = Instant::now();
                let pdu = link.request(Body::SubmitSm(template.clone())).await?;
                latencies.push(u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX));
                if pdu.command_status == ESME_ROK {
                    ok += 1;
                } else {
                    rejected += 1;
                }
            }
            Ok::<_, Error>((ok, rejected, latencies))
        }));
    }
    let (mut accepted, mut rejected, mut latencies) = (0, 0, Vec::new());
    let mut failure = None;
    for w in workers {
        match w.await {
            Ok(Ok((ok, bad, l))) => {
                accepted += ok;
                rejected += bad;
                latencies.extend(l);
            }
            Ok(Err(e)) => failure = Some(e),
            Err(_) => failure = Some(Error::Link(tern_smpp_tokio::LinkError::Closed)),
        }
    }
    let submit_done = Instant::now();
    if let Some(e) = failure {
        link.unbind();
        return Err(e);
    }
    let finished = if expected > 0 {
        match tokio::time::timeout(opts.receipt_timeout, all_in_rx).await {
            Ok(Ok(at)) => at,
            _ => Instant::now(),
        }
    } else {
        submit_done
    };
    link.unbind();
    let _ = tokio::time::timeout(Duration::from_secs(5), reader).await;

    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len().saturating_sub(1)) as f64 * p).round() as usize;
        latencies.get(i).map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    let submit_secs = submit_done.duration_since(started).as_secs_f64();
    let total_secs = finished
        .max(submit_done)
        .duration_since(started)
        .as_secs_f64();
    let receipts = receipts.load(Ordering::Relaxed);
    Ok(BenchFigures {
        window,
        accepted,
        rejected,
        submit_secs,
        submits_per_sec: (accepted + rejected) as f64 / submit_secs.max(1e-9),
        receipts,
        total_secs,
        pdus_per_sec: (accepted + rejected + receipts) as f64 / total_secs.max(1e-9),
        latency_p50_ms: pct(0.5),
        latency_p99_ms: pct(0.99),
    })
}
