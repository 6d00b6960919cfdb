//! The API comes first when the node is saturated.
//!
//! Accepting a send is one durable write; routing it later is three or four, a carrier
//! submission and a receipt, so on a node whose cores (or whose database) are all in use
//! every route worker takes capacity from the API. While many sends are being accepted at
//! once, only a few route workers run: the API keeps its throughput and latency, accepted
//! messages wait in `queued` (durably, as they would behind a carrier's rate) and the
//! pipeline drains at full concurrency as soon as the burst eases. A node that is not
//! saturated never holds its pipeline back.
//!
//! On by default (`[messaging] saturated_at_sends = 8`; `0` turns it off). Measured on one
//! `tern serve` node on PostgreSQL + JetStream, all on 2 vCPU, 64 connections: saturated
//! from 8 sends in flight, 3,845–5,837 accepted/s against 2,280–2,814 when off; from 16
//! sends, 4,264 (with group commit a request spends only a few milliseconds in the engine,
//! so even a saturated node seldom has many more sends in flight). The cost: a burst of
//! 10,000 messages with status callbacks, accepted in 3.2–4.0 s instead of 6.4–7.6 s, was
//! delivered in full at 893–1,080 messages/s instead of 950–1,136 (about 8 % later): the
//! cores are busy either way, and the pipeline's work in a backlog batches a little worse.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// How long a node stays saturated after its sends in flight were last at the threshold.
/// Group commit answers a batch of sends at once, so the count drops to almost nothing
/// for a moment after every batch even in a sustained burst: counted alone, those dips let
/// ~3 in 4 route workers start unheld (3,467 of 4,499 in an 8 s run). A burst that really
/// ends frees the pipeline this much later.
const HOLD: Duration = Duration::from_millis(50);

/// Sends being accepted right now, and the route workers allowed while they are many.
pub(crate) struct Saturation {
    sends: AtomicUsize,
    /// Sends in flight from which the node counts as saturated; `0` never.
    threshold: usize,
    /// When the sends in flight were last at the threshold, in µs since `epoch` (`0`:
    /// never).
    last_at: AtomicU64,
    epoch: Instant,
    /// Route workers that may start while saturated.
    while_saturated: Arc<Semaphore>,
}

/// A send being accepted; counted until dropped.
pub(crate) struct Accepting<'a>(&'a Saturation);

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        self.0.sends.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Saturation {
    /// Saturated from `threshold` sends in flight (`0`: never), with at most
    /// `route_workers` route workers starting meanwhile.
    pub(crate) fn new(threshold: usize, route_workers: usize) -> Saturation {
        Saturation {
            sends: AtomicUsize::new(0),
            threshold,
            last_at: AtomicU64::new(0),
            epoch: Instant::now(),
            while_saturated: Arc::new(Semaphore::new(route_workers.max(1))),
        }
    }

    /// Counts a send until the returned guard is dropped.
    pub(crate) fn accepting(&self) -> Accepting<'_> {
        let sends = self.sends.fetch_add(1, Ordering::AcqRel) + 1;
        if self.threshold > 0 && sends >= self.threshold {
            self.last_at
                .store(self.micros(Instant::now()), Ordering::Release);
        }
        Accepting(self)
    }

    fn micros(&self, at: Instant) -> u64 {
        // Never 0, which means "never saturated".
        u64::try_from(at.duration_since(self.epoch).as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Until when the node is saturated (held `HOLD` past its last saturated moment);
    /// `None` when it is not.
    fn saturated_until(&self) -> Option<Instant> {
        if self.threshold == 0 {
            return None;
        }
        let now = Instant::now();
        if self.sends.load(Ordering::Acquire) >= self.threshold {
            return Some(now + HOLD);
        }
        let last = self.last_at.load(Ordering::Acquire);
        let until = self
            .epoch
            .checked_add(Duration::from_micros(last))?
            .checked_add(HOLD)?;
        (last != 0 && until > now).then_some(until)
    }

    /// Waits until a route worker may start: at once unless saturated; while saturated,
    /// until one of the few slots is free (the permit, held while the worker runs) or the
    /// saturation ends.
    pub(crate) async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        while let Some(until) = self.saturated_until() {
            tokio::select! {
                permit = self.while_saturated.clone().acquire_owned() => {
                    metrics::counter!("tern_routes_started_saturated_total").increment(1);
                    return permit.ok();
                }
                () = tokio::time::sleep_until(until) => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `f` is still pending when polled once.
    async fn pending<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        tokio::select! {
            biased;
            _ = f => false,
            () = std::future::ready(()) => true,
        }
    }

    #[tokio::test]
    async fn workers_start_freely_until_the_api_is_saturated() {
        let s = Saturation::new(2, 1);
        assert!(s.admit().await.is_none());
        let _a = s.accepting();
        assert!(s.admit().await.is_none(), "one send is not saturation");
        let _b = s.accepting();
        let first = s.admit().await;
        assert!(
            first.is_some(),
            "saturated: a worker takes one of the slots"
        );
        let mut second = std::pin::pin!(s.admit());
        assert!(
            pending(second.as_mut()).await,
            "saturated: no second worker while the one slot is held"
        );
        drop(first);
        assert!(
            second.await.is_some(),
            "the freed slot goes to the waiting worker"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_worker_starts_once_the_saturation_has_eased_for_a_while() {
        let s = Saturation::new(1, 1);
        let a = s.accepting();
        let _slot = s.admit().await.unwrap();
        let mut waiting = std::pin::pin!(s.admit());
        assert!(pending(waiting.as_mut()).await);
        drop(a);
        let eased = Instant::now();
        assert!(
            pending(waiting.as_mut()).await,
            "a dip between two batches of sends is not the end of a burst"
        );
        assert!(
            waiting.await.is_none(),
            "no longer saturated: starts without a slot"
        );
        // Timers fire on the millisecond after their deadline.
        let held = eased.elapsed();
        assert!(
            held >= HOLD && held <= HOLD + Duration::from_millis(2),
            "held {held:?}, not HOLD after the last send"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn sends_within_the_hold_keep_the_node_saturated() {
        let s = Saturation::new(1, 1);
        let _slot = {
            let _a = s.accepting();
            s.admit().await.unwrap()
        };
        // Bursts with short gaps between them: the worker stays held throughout.
        let mut waiting = std::pin::pin!(s.admit());
        for _ in 0..5 {
            tokio::time::sleep(HOLD / 2).await;
            drop(s.accepting());
            assert!(pending(waiting.as_mut()).await);
        }
        let last = Instant::now();
        assert!(waiting.await.is_none());
        let held = last.elapsed();
        assert!(
            held >= HOLD && held <= HOLD + Duration::from_millis(2),
            "held {held:?}"
        );
    }

    #[tokio::test]
    async fn a_threshold_of_zero_never_holds_workers_back() {
        let s = Saturation::new(0, 1);
        let _a: Vec<_> = (0..100).map(|_| s.accepting()).collect();
        assert!(s.admit().await.is_none());
        assert!(s.admit().await.is_none());
    }
}
