//! Counters, kept as relaxed atomics on the hot path and read as one [`Stats`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// A snapshot of the simulator's counters (`GET /stats`, [`crate::SmscHandle::stats`]).
/// Totals only grow; the fields marked *now* are current levels.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Binds accepted.
    pub binds: u64,
    /// Binds rejected (credentials or `refuse_binds`).
    pub binds_rejected: u64,
    /// Connections open *now*.
    pub connections: u64,
    /// Connections closed by the simulator (`refuse_binds`, `drop_every_secs`).
    pub connections_dropped: u64,
    /// Submits answered with a message id (`submit_sm`, `data_sm`, `submit_multi`).
    pub submits: u64,
    /// Submits answered `ESME_RTHROTTLED` by `throttle_mps`.
    pub throttled: u64,
    /// Submits answered with `submit_error_status` by `submit_error_ratio`.
    pub errors: u64,
    /// Delivery receipts acknowledged by a client.
    pub receipts_sent: u64,
    /// Receipts not yet acknowledged *now* (scheduled, held, queued or in flight).
    pub receipts_pending: u64,
    /// Receipts and mobile-originated messages held *now* because no receiver is bound.
    pub held: u64,
    /// Receipts discarded because `silent` was on when they came due, or their message was
    /// cancelled.
    pub receipts_suppressed: u64,
    /// Receipts not scheduled because `max_pending` was reached.
    pub receipts_dropped: u64,
    /// `deliver_sm` attempts that failed (error response, no response) and were retried.
    pub deliver_retries: u64,
    /// Mobile-originated `deliver_sm` acknowledged by a client (one per segment).
    pub mo_sent: u64,
    /// Mobile-originated segments not yet acknowledged *now*.
    pub mo_pending: u64,
}

impl Stats {
    /// One line for logs and the CLI.
    pub fn summary(&self) -> String {
        format!(
            "conns={} binds={} submits={} throttled={} errors={} receipts sent={} pending={} held={} suppressed={} dropped={} retries={} mo sent={} pending={} conns_dropped={}",
            self.connections,
            self.binds,
            self.submits,
            self.throttled,
            self.errors,
            self.receipts_sent,
            self.receipts_pending,
            self.held,
            self.receipts_suppressed,
            self.receipts_dropped,
            self.deliver_retries,
            self.mo_sent,
            self.mo_pending,
            self.connections_dropped,
        )
    }
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub binds: AtomicU64,
    pub binds_rejected: AtomicU64,
    pub connections: AtomicU64,
    pub connections_dropped: AtomicU64,
    pub submits: AtomicU64,
    pub throttled: AtomicU64,
    pub errors: AtomicU64,
    pub receipts_sent: AtomicU64,
    pub receipts_pending: AtomicU64,
    pub held: AtomicU64,
    pub receipts_suppressed: AtomicU64,
    pub receipts_dropped: AtomicU64,
    pub deliver_retries: AtomicU64,
    pub mo_sent: AtomicU64,
    pub mo_pending: AtomicU64,
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn dec(c: &AtomicU64) {
    // Never wraps below zero even if an accounting path ran twice.
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(1))
    });
}

impl Counters {
    pub fn snapshot(&self) -> Stats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            binds: r(&self.binds),
            binds_rejected: r(&self.binds_rejected),
            connections: r(&self.connections),
            connections_dropped: r(&self.connections_dropped),
            submits: r(&self.submits),
            throttled: r(&self.throttled),
            errors: r(&self.errors),
            receipts_sent: r(&self.receipts_sent),
            receipts_pending: r(&self.receipts_pending),
            held: r(&self.held),
            receipts_suppressed: r(&self.receipts_suppressed),
            receipts_dropped: r(&self.receipts_dropped),
            deliver_retries: r(&self.deliver_retries),
            mo_sent: r(&self.mo_sent),
            mo_pending: r(&self.mo_pending),
        }
    }

    /// Receipts plus mobile-originated messages waiting: what `max_pending` bounds.
    pub fn pending(&self) -> u64 {
        self.receipts_pending.load(Ordering::Relaxed) + self.mo_pending.load(Ordering::Relaxed)
    }
}
