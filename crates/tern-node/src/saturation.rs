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
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

/// Sends being accepted right now, and the route workers allowed while they are many.
pub(crate) struct Saturation {
    sends: AtomicUsize,
    /// Sends in flight from which the node counts as saturated; `0` never.
    threshold: usize,
    /// Signalled when the sends in flight fall below the threshold.
    eased: Notify,
    /// Route workers that may start while saturated.
    while_saturated: Arc<Semaphore>,
}

/// A send being accepted; counted until dropped.
pub(crate) struct Accepting<'a>(&'a Saturation);

impl Drop for Accepting<'_> {
    fn drop(&mut self) {
        let was = self.0.sends.fetch_sub(1, Ordering::AcqRel);
        if was == self.0.threshold {
            self.0.eased.notify_waiters();
        }
    }
}

impl Saturation {
    /// Saturated from `threshold` sends in flight (`0`: never), with at most
    /// `route_workers` route workers starting meanwhile.
    pub(crate) fn new(threshold: usize, route_workers: usize) -> Saturation {
        Saturation {
            sends: AtomicUsize::new(0),
            threshold,
            eased: Notify::new(),
            while_saturated: Arc::new(Semaphore::new(route_workers.max(1))),
        }
    }

    /// Counts a send until the returned guard is dropped.
    pub(crate) fn accepting(&self) -> Accepting<'_> {
        self.sends.fetch_add(1, Ordering::AcqRel);
        Accepting(self)
    }

    fn saturated(&self) -> bool {
        self.threshold > 0 && self.sends.load(Ordering::Acquire) >= self.threshold
    }

    /// Waits until a route worker may start: at once unless saturated; while saturated,
    /// until one of the few slots is free (the permit, held while the worker runs) or the
    /// saturation ends.
    pub(crate) async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        loop {
            if !self.saturated() {
                return None;
            }
            let eased = self.eased.notified();
            let mut eased = std::pin::pin!(eased);
            // Registered before the check below, so an easing in between is not missed.
            eased.as_mut().enable();
            if !self.saturated() {
                return None;
            }
            tokio::select! {
                permit = self.while_saturated.clone().acquire_owned() => {
                    metrics::counter!("tern_routes_started_saturated_total").increment(1);
                    return permit.ok();
                }
                () = &mut eased => {}
            }
        }
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

    #[tokio::test]
    async fn a_waiting_worker_starts_when_the_saturation_ends() {
        let s = Saturation::new(1, 1);
        let a = s.accepting();
        let _slot = s.admit().await.unwrap();
        let mut waiting = std::pin::pin!(s.admit());
        assert!(pending(waiting.as_mut()).await);
        drop(a);
        assert!(
            waiting.await.is_none(),
            "no longer saturated: starts without a slot"
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
