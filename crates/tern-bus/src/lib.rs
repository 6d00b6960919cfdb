//! Tern's work queue.
//!
//! Work is made durable by the store: a job row is written in the same transaction as the
//! state change that caused it (the outbox), and only then handed to a [`Queue`] with
//! [`Queue::publish`]. The queue moves jobs to workers; workers finish a job through the
//! store (deleting its row together with the next state change) or hand it back with
//! [`Queue::publish`] carrying a later `run_at`. After a crash the node reloads every job
//! row and publishes it again, so a queue may lose nothing but may deliver a job twice —
//! workers are idempotent against the store's state.
//!
//! The in-process queue ([`inproc::InProcessQueue`]) is the embedded default; the JetStream
//! queue ([`jetstream::JetStreamQueue`]) slots in behind the same trait for several nodes.
//! [`conformance`] holds the behavioural suite every implementation must pass.
//!
//! Beside the work, a queue carries **events**: state changes other parts of the platform
//! react to (the status page, alerts) — a carrier path's health moving, say. They go to
//! every node of the region ([`Queue::emit`], [`Queue::events`]) and are signals, not
//! work: best effort, never stored by Tern, each superseded by the next state.

pub mod conformance;
pub mod inproc;
pub mod jetstream;

pub use jetstream::{BusError, JetStreamQueue};

use async_trait::async_trait;
use tern_types::Sid;

/// The kinds of work, each with its own workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    /// Choose a sender and a carrier for a message and submit it.
    Route,
    /// Deliver one webhook (status callback or inbound request).
    Webhook,
}

impl JobKind {
    pub const ALL: [JobKind; 2] = [JobKind::Route, JobKind::Webhook];

    pub const fn as_str(self) -> &'static str {
        match self {
            JobKind::Route => "route",
            JobKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// A unit of work, as persisted in the store's job table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Store-assigned, increasing: jobs of one message are ordered by id.
    pub id: i64,
    pub kind: JobKind,
    /// The message (or other resource) the job is about.
    pub subject: Sid,
    /// Not before this time (ms since the epoch).
    pub run_at: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Kind-specific data (JSON for webhooks).
    pub payload: String,
}

/// A state change announced to every node of the region.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Event {
    /// What changed, dotted: `network.path` (a carrier path's health), for instance.
    /// Letters, digits, `_` and `.` only (it becomes part of a subject name).
    pub kind: String,
    /// The node that saw it.
    pub node: String,
    /// When (ms since the epoch).
    pub at: i64,
    /// The kind's own fields.
    pub data: serde_json::Value,
}

/// Events waiting for a slow subscriber, at most; beyond it the oldest are skipped (the
/// subscriber is told how many, by `broadcast`'s `Lagged`).
pub const EVENT_BUFFER: usize = 1024;

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Makes committed jobs available; a job whose `run_at` is in the future waits until then.
    fn publish(&self, jobs: Vec<Job>);
    /// The next ready job of `kind`; `None` once the queue is closed (jobs not yet taken
    /// stay in the store for the next start or another node).
    async fn next(&self, kind: JobKind) -> Option<Job>;
    /// Jobs published but not yet taken by a worker, per kind (for metrics and draining).
    fn depth(&self, kind: JobKind) -> usize;
    /// Stops handing out jobs; waiting `next` calls return `None`.
    fn close(&self);
    /// Whether the queue can move jobs now (for readiness): `Err` says why not.
    fn health(&self) -> Result<(), BusError>;
    /// The ids of jobs this queue gave up publishing since the last call. They are still in
    /// the store; the caller publishes them again once [`Queue::health`] is back.
    fn take_dropped(&self) -> Vec<i64>;
    /// Announces an event to every node of the region (this one included), best effort.
    fn emit(&self, event: Event);
    /// Events of the region from now on.
    fn events(&self) -> tokio::sync::broadcast::Receiver<Event>;
}
