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
//!
//! And it carries **requests** between the nodes of a region ([`Queue::request`],
//! [`Queue::serve`]): a question for whichever node serves a named service now — a carrier
//! bound by another node, say — answered once or not at all. Requests are not durable
//! either: the asker holds the work (a job still in the store) and decides what a missing
//! answer means.

pub mod conformance;
pub mod inproc;
pub mod jetstream;

pub use jetstream::{BusError, JetStreamQueue};

use std::time::Duration;

use async_trait::async_trait;
use tern_types::Sid;
use tokio::sync::{mpsc, oneshot};

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

/// Requests waiting for a slow server, at most; beyond it askers are told it is busy.
pub const SERVE_BUFFER: usize = 256;

/// Why a request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// No node of the region serves it now (nobody got the request).
    #[error("no node of the region serves {0}")]
    NoServer(String),
    /// Nobody answered in time: the request may or may not have been acted on.
    #[error("{service} did not answer within {timeout:?}")]
    TimedOut { service: String, timeout: Duration },
    /// The bus could not carry the request (nobody got it).
    #[error("cannot ask {service}: {reason}")]
    Unreachable { service: String, reason: String },
}

/// A request for a service this node serves; answer it with [`Request::reply`].
pub struct Request {
    pub payload: Vec<u8>,
    reply: Reply,
}

enum Reply {
    InProcess(oneshot::Sender<Vec<u8>>),
    Nats {
        client: async_nats::Client,
        subject: async_nats::Subject,
    },
}

impl Request {
    pub(crate) fn in_process(payload: Vec<u8>) -> (Request, oneshot::Receiver<Vec<u8>>) {
        let (tx, rx) = oneshot::channel();
        (
            Request {
                payload,
                reply: Reply::InProcess(tx),
            },
            rx,
        )
    }

    pub(crate) fn nats(
        payload: Vec<u8>,
        client: async_nats::Client,
        subject: async_nats::Subject,
    ) -> Request {
        Request {
            payload,
            reply: Reply::Nats { client, subject },
        }
    }

    /// Sends the answer to the asker (best effort: the asker may have given up).
    pub async fn reply(self, payload: Vec<u8>) {
        match self.reply {
            Reply::InProcess(tx) => {
                let _ = tx.send(payload);
            }
            Reply::Nats { client, subject } => {
                if let Err(e) = client.publish(subject, payload.into()).await {
                    tracing::debug!(error = %e, "reply not sent");
                }
            }
        }
    }
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Makes committed jobs available; a job whose `run_at` is in the future waits until then.
    fn publish(&self, jobs: Vec<Job>);
    /// The next ready job of `kind`; `None` once the queue is closed (jobs not yet taken
    /// stay in the store for the next start or another node).
    async fn next(&self, kind: JobKind) -> Option<Job>;
    /// Jobs published but not yet taken by a worker, per kind (for metrics and draining).
    /// A queue that carries jobs published together as one message may count them once.
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
    /// Asks one node of the region that serves `service` (see [`Queue::serve`]) and waits
    /// up to `timeout` for its answer.
    async fn request(
        &self,
        service: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RequestError>;
    /// Serves `service` (letters, digits, `-` and `_`) until the receiver is dropped: each
    /// request for it goes to one of the nodes serving it.
    async fn serve(&self, service: &str) -> Result<mpsc::Receiver<Request>, BusError>;
}
