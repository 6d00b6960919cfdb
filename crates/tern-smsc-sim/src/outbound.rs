//! Everything the simulator sends as `deliver_sm`: delivery receipts and mobile-originated
//! messages.
//!
//! * One **scheduler** task owns a binary heap of everything due later (receipts waiting
//!   for their delay, retries after a failed attempt) and sleeps until the earliest; no
//!   task or timer exists per message.
//! * The **hub** knows the bound receivers (`bind_receiver`/`bind_transceiver`) and hands
//!   each due message to one of them, round robin among those bound with the message's
//!   `system_id` (receipts) or among all (mobile-originated). With none bound it holds the
//!   message and hands it over when one binds.
//! * One **pump** task per receiver keeps up to `window` `deliver_sm` in flight. A success
//!   response completes the message; an error response or no response schedules a retry
//!   with backoff; a closed connection sends the message back to the hub at once.
//!
//! Every message is counted in `receipts_pending`/`mo_pending` from the moment it is
//! accepted until it is acknowledged or discarded, and [`crate::SmscConfig::max_pending`]
//! bounds their sum.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tern_smpp::Body;
use tern_smpp::pdu::DeliverSm;
use tern_smpp::status;
use tern_smpp_tokio::{Link, LinkError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::Inner;
use crate::stats::{dec, inc};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The receipt of message `number` (skipped if it was cancelled).
    Receipt {
        number: u64,
    },
    MobileOriginated,
}

#[derive(Debug)]
pub(crate) struct Outbound {
    pub kind: Kind,
    /// Receipts go to receivers bound with this `system_id`; `None` (mobile-originated):
    /// any receiver.
    pub target: Option<String>,
    pub pdu: DeliverSm,
    /// Failed attempts so far.
    pub attempts: u32,
}

struct Receiver {
    conn: u64,
    system_id: String,
    tx: mpsc::UnboundedSender<Outbound>,
}

/// The bound receivers and the messages held for want of one.
#[derive(Default)]
pub(crate) struct Hub {
    receivers: Vec<Receiver>,
    next: usize,
    held: HashMap<Option<String>, VecDeque<Outbound>>,
}

impl Hub {
    /// Hands `item` to a receiver, or holds it.
    pub fn dispatch(&mut self, inner: &Inner, mut item: Outbound) {
        loop {
            let n = self.receivers.len();
            let chosen = (0..n).map(|i| (self.next + i) % n).find(|&i| {
                self.receivers
                    .get(i)
                    .is_some_and(|r| item.target.as_deref().is_none_or(|t| t == r.system_id))
            });
            let Some(i) = chosen else { break };
            self.next = i + 1;
            let Some(receiver) = self.receivers.get(i) else {
                break;
            };
            match receiver.tx.send(item) {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => {
                    // Its pump is gone; forget it and choose again.
                    item = back;
                    self.receivers.remove(i);
                }
            }
        }
        inc(&inner.counters.held);
        self.held
            .entry(item.target.clone())
            .or_default()
            .push_back(item);
    }

    /// A receiver bound: it gets every message held for its `system_id` and for anyone.
    pub fn register(
        &mut self,
        inner: &Inner,
        conn: u64,
        system_id: &str,
        tx: mpsc::UnboundedSender<Outbound>,
    ) {
        for key in [Some(system_id.to_owned()), None] {
            if let Some(queue) = self.held.remove(&key) {
                for item in queue {
                    dec(&inner.counters.held);
                    if let Err(mpsc::error::SendError(item)) = tx.send(item) {
                        inc(&inner.counters.held);
                        self.held
                            .entry(item.target.clone())
                            .or_default()
                            .push_back(item);
                    }
                }
            }
        }
        self.receivers.push(Receiver {
            conn,
            system_id: system_id.to_owned(),
            tx,
        });
    }

    pub fn unregister(&mut self, conn: u64) {
        self.receivers.retain(|r| r.conn != conn);
    }
}

/// An entry of the scheduler's heap, ordered by due time then arrival.
pub(crate) struct Due {
    pub at: Instant,
    pub item: Outbound,
}

struct Entry {
    at: Instant,
    seq: u64,
    item: Outbound,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and the earliest must come first.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The one timer task: keeps what is due later and dispatches it when due.
pub(crate) async fn run_scheduler(
    inner: Arc<Inner>,
    mut rx: mpsc::UnboundedReceiver<Due>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut heap: BinaryHeap<Entry> = BinaryHeap::new();
    let mut seq = 0u64;
    let mut push = |heap: &mut BinaryHeap<Entry>, due: Due| {
        seq += 1;
        heap.push(Entry {
            at: due.at,
            seq,
            item: due.item,
        });
    };
    let mut ready = Vec::new();
    loop {
        let next = heap.peek().map(|e| e.at);
        tokio::select! {
            due = rx.recv() => match due {
                Some(due) => {
                    push(&mut heap, due);
                    while let Ok(due) = rx.try_recv() {
                        push(&mut heap, due);
                    }
                }
                None => return,
            },
            () = crate::sleep_until(next) => {
                let now = Instant::now();
                while heap.peek().is_some_and(|e| e.at <= now) {
                    if let Some(e) = heap.pop() {
                        ready.push(e.item);
                    }
                }
                release(&inner, &mut ready);
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Dispatches due messages, discarding receipts of cancelled messages and, in silent mode,
/// every receipt.
fn release(inner: &Inner, ready: &mut Vec<Outbound>) {
    if ready.is_empty() {
        return;
    }
    let silent = inner.faults.borrow().silent;
    let mut keep = Vec::with_capacity(ready.len());
    {
        let store = inner.lock_store();
        for item in ready.drain(..) {
            let suppressed = match item.kind {
                Kind::Receipt { number } => silent || store.is_cancelled(number),
                Kind::MobileOriginated => false,
            };
            if suppressed {
                dec(&inner.counters.receipts_pending);
                inc(&inner.counters.receipts_suppressed);
            } else {
                keep.push(item);
            }
        }
    }
    let mut hub = inner.lock_hub();
    for item in keep {
        hub.dispatch(inner, item);
    }
}

/// Backoff before retrying a `deliver_sm` after `attempts` failures: 1 s, 2 s, 4 s, … 60 s.
pub(crate) fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.saturating_sub(1).min(6)).min(Duration::from_secs(60))
}

enum Outcome {
    Delivered,
    Retry,
    /// The connection is gone: hand the message to another receiver (or hold it).
    Redispatch,
    /// The PDU cannot be encoded; retrying cannot help.
    Drop,
}

fn judge(result: &Result<tern_smpp::Pdu, LinkError>) -> Outcome {
    match result {
        Ok(pdu)
            if pdu.command_status == status::ESME_ROK && !matches!(pdu.body, Body::GenericNack) =>
        {
            Outcome::Delivered
        }
        Ok(_) | Err(LinkError::Timeout) => Outcome::Retry,
        Err(LinkError::Session(tern_smpp::SessionError::Encode(_))) => Outcome::Drop,
        Err(LinkError::Closed | LinkError::Session(_)) => Outcome::Redispatch,
    }
}

/// Sends what the hub hands to one receiver connection, `window` at a time.
pub(crate) async fn run_pump(
    inner: Arc<Inner>,
    conn: u64,
    link: Link,
    mut rx: mpsc::UnboundedReceiver<Outbound>,
    window: usize,
) {
    let mut queue: VecDeque<Outbound> = VecDeque::new();
    let mut in_flight: JoinSet<(Outbound, Result<tern_smpp::Pdu, LinkError>)> = JoinSet::new();
    let mut open = true;
    loop {
        while in_flight.len() < window {
            let Some(item) = queue.pop_front() else { break };
            let link = link.clone();
            in_flight.spawn(async move {
                let result = link.request(Body::DeliverSm(item.pdu.clone())).await;
                (item, result)
            });
        }
        if !open && queue.is_empty() && in_flight.is_empty() {
            return;
        }
        tokio::select! {
            item = rx.recv(), if open => match item {
                Some(item) => {
                    queue.push_back(item);
                    while let Ok(item) = rx.try_recv() {
                        queue.push_back(item);
                    }
                }
                None => open = false,
            },
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => {
                match joined {
                    Ok((item, result)) => settle(&inner, conn, item, &result),
                    Err(e) => warn!(error = %e, "deliver_sm task failed"),
                }
            }
        }
    }
}

fn settle(
    inner: &Inner,
    conn: u64,
    mut item: Outbound,
    result: &Result<tern_smpp::Pdu, LinkError>,
) {
    let (pending, sent) = match item.kind {
        Kind::Receipt { .. } => (
            &inner.counters.receipts_pending,
            &inner.counters.receipts_sent,
        ),
        Kind::MobileOriginated => (&inner.counters.mo_pending, &inner.counters.mo_sent),
    };
    match judge(result) {
        Outcome::Delivered => {
            dec(pending);
            inc(sent);
        }
        Outcome::Retry => {
            item.attempts = item.attempts.saturating_add(1);
            inc(&inner.counters.deliver_retries);
            debug!(
                attempts = item.attempts,
                ?result,
                "deliver_sm failed; retrying later"
            );
            let at = Instant::now() + retry_delay(item.attempts);
            if let Err(mpsc::error::SendError(due)) = inner.schedule.send(Due { at, item }) {
                // Shutting down: the scheduler is gone.
                drop(due);
                dec(pending);
            }
        }
        Outcome::Redispatch => {
            let mut hub = inner.lock_hub();
            hub.unregister(conn);
            hub.dispatch(inner, item);
        }
        Outcome::Drop => {
            warn!(?result, "deliver_sm cannot be encoded; dropped");
            dec(pending);
        }
    }
}
