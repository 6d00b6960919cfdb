//! A [`Queue`] on NATS JetStream, for running several nodes against one work queue.
//!
//! Layout: one work-queue stream (`TERN_JOBS`, or `<namespace>_TERN_JOBS`) holding the
//! subjects `tern.*.jobs.*` (prefixed `<namespace>.` when a namespace is given); a job of kind
//! `k` published in region `r` goes to `tern.<r>.jobs.<k>`, and each (region, kind) pair has
//! one durable pull consumer (`tern_<r>_<k>`) with explicit acks. Several nodes of a region
//! share those consumers, so each job goes to one worker in the region.
//!
//! * [`Queue::publish`] is synchronous, so jobs go through an ordered channel to a background
//!   task that publishes them in order and waits for the stream's acknowledgements
//!   concurrently. The task sends what it finds waiting together: ready jobs of one kind
//!   share a message, up to [`JOBS_PER_MESSAGE`] (a JSON array; a job due later travels
//!   alone). Under load this divides what the server and both clients spend per job —
//!   storing, acknowledging, delivering, deleting a message — by the batch; when idle a
//!   message carries the one job there is. A failed publish is retried with backoff: while
//!   the client is disconnected the message waits for the connection without counting
//!   attempts; once [`PUBLISH_ATTEMPTS`] attempts made while connected have failed it is
//!   given up, and its jobs' ids handed back by [`Queue::take_dropped`] (the store still
//!   holds the jobs, and the engine publishes them again once the queue is healthy).
//! * Every publish carries a `Nats-Msg-Id` of its own, repeated by its retries, so that
//!   JetStream stores a job once however many attempts reach it (a publish made while
//!   disconnected is buffered by the client and may arrive after its retries).
//! * A job whose `run_at` is in the future carries the [`RUN_AT_HEADER`]. When a worker pulls
//!   it early, the queue naks it with a delay of the remaining time, so JetStream redelivers
//!   it when it is due; while it waits it is "ack pending" on the consumer.
//! * [`Queue::next`] serves from a per-kind inbox that pull requests for up to
//!   [`PULL_BATCH`] messages deliver to; a new request goes out, from inside `next`, once
//!   fewer than half a batch are still owed, so the inbox is refilled before it runs dry
//!   and a worker pays no round trip per job. A message is acknowledged (a plain ack, no
//!   confirmation awaited) when its first job is handed out, and the rest of its jobs are
//!   held for the next calls: the store is the durable record, and workers finish jobs
//!   through the store. Until then a delivered message is "ack pending", so it still
//!   counts in the depth; at close, messages still in the inbox are nak'd and held jobs
//!   published again, so that other nodes get them at once.
//! * [`Queue::depth`] is `num_pending + num_ack_pending` of the kind's consumer (ready plus
//!   waiting-for-their-time messages), cached and refreshed in the background every
//!   [`DEPTH_REFRESH`]. It counts messages: jobs published together count once.
//! * [`Queue::health`] is the client's connection state: the client reconnects by itself
//!   (without limit), and pulls and publishes resume when it has.
//! * [`Queue::close`] makes waiting and later `next` calls return `None`; jobs still in the
//!   stream (or delivered but not handed out, which are nak'd) stay there for the next node.
//!   Publishing keeps working after close (the stream is shared), queued publishes are sent,
//!   and depth keeps being refreshed until the queue is dropped.
//! * Events ([`Queue::emit`]) are plain NATS messages on `[<namespace>.]tern.<region>.events.<kind>`,
//!   not JetStream: they are signals, worth nothing once superseded, so nothing stores
//!   them. Each queue subscribes to its region's events once and fans them out to
//!   [`Queue::events`] receivers.
//! * Requests ([`Queue::request`]) are NATS request/reply on
//!   `[<namespace>.]tern.<region>.services.<service>`; the nodes serving a service share one
//!   queue group, so one of them gets each request, and with none the server answers "no
//!   responders" at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::consumer::pull::BatchConfig;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::stream::{self, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, AckKind, Context};
use async_nats::{HeaderMap, RequestErrorKind, StatusCode, Subject, Subscriber};
use async_trait::async_trait;
use futures_util::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use tern_types::Sid;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::{EVENT_BUFFER, Event, Job, JobKind, Queue, Request, RequestError, SERVE_BUFFER};

/// The region used when none is given.
pub const DEFAULT_REGION: &str = "local";
/// Header carrying a delayed job's `run_at` (ms since the epoch).
pub const RUN_AT_HEADER: &str = "Tern-Run-At";
/// How often the cached depth is refreshed from the server.
pub const DEPTH_REFRESH: Duration = Duration::from_millis(500);

/// Messages asked for by one pull request: what a node may hold per kind, delivered but not
/// yet handed out, is at most one and a half of these (and the jobs of one message).
pub const PULL_BATCH: usize = 64;
/// Ready jobs of one kind at most in one message. With a message per job, nats-server
/// spent 45–61 µs of CPU per message a node accepted (store, acknowledgement, delivery,
/// ack, deletion); with ~10 jobs a message under load, 21–27 µs (session 13,
/// `scripts/bench-pipeline-cpu`). Small enough that a pull of [`PULL_BATCH`] messages
/// (≤ 1,024 jobs) does not keep work from the region's other nodes.
pub const JOBS_PER_MESSAGE: usize = 16;

/// How long a delivered, unacknowledged message stays with its node before redelivery.
/// `next` acknowledges when it hands a job out and the engine takes jobs as fast as they
/// come, so this only matters when a node dies (or stalls) between delivery and hand-out.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// Deliveries before JetStream gives up on a message. Early deliveries of delayed jobs count,
/// so this is generous; a job given up on stays in the store and is re-published on restart.
const MAX_DELIVER: i64 = 100;
/// Unacknowledged messages per consumer, including delayed jobs waiting out their nak delay.
const MAX_ACK_PENDING: i64 = 1_000_000;
/// Lifetime of one pull request; `next` renews it while waiting.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// After its expiry, how long a pull request's end (a 408 status) may take to arrive before
/// the request is presumed lost and replaced.
const PULL_GRACE: Duration = Duration::from_secs(5);
/// Pause after a failed pull before trying again.
const PULL_RETRY: Duration = Duration::from_millis(250);
/// Attempts at publishing one job, made while connected, before giving up on it.
const PUBLISH_ATTEMPTS: u32 = 5;
/// How often a publish waiting for the connection looks at it again.
const RECONNECT_POLL: Duration = Duration::from_millis(250);
/// The queue group of every service's servers: one of them gets each request.
const SERVICE_GROUP: &str = "tern";
/// Bound on connecting and on each setup request.
const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors setting up or managing the JetStream queue.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("invalid {what} {value:?}: use letters, digits, '-' and '_' only")]
    InvalidName { what: &'static str, value: String },
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error("JetStream {op} failed: {source}")]
    JetStream {
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("timed out after {timeout:?}: {op}")]
    Timeout { op: String, timeout: Duration },
    #[error("the queue's publisher has stopped")]
    Stopped,
    /// The server cannot be reached now; the client keeps trying to reconnect.
    #[error("NATS is unreachable (connection {0})")]
    Unreachable(String),
}

impl BusError {
    fn js(op: impl Into<String>, e: impl std::error::Error + Send + Sync + 'static) -> Self {
        BusError::JetStream {
            op: op.into(),
            source: Box::new(e),
        }
    }
}

async fn bounded<T>(
    op: &str,
    fut: impl Future<Output = Result<T, BusError>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(SETUP_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(BusError::Timeout {
            op: op.to_string(),
            timeout: SETUP_TIMEOUT,
        }),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub(crate) fn check_name(what: &'static str, value: &str) -> Result<(), BusError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidName {
            what,
            value: value.to_string(),
        })
    }
}

/// Validates the names; returns the region to use.
fn check_names<'a>(region: &'a str, namespace: &str) -> Result<&'a str, BusError> {
    let region = if region.is_empty() {
        DEFAULT_REGION
    } else {
        region
    };
    check_name("region", region)?;
    if !namespace.is_empty() {
        check_name("namespace", namespace)?;
    }
    Ok(region)
}

/// A job as it travels through the stream.
#[derive(Debug, Serialize, Deserialize)]
struct WireJob {
    id: i64,
    kind: String,
    subject: Sid,
    run_at: i64,
    attempts: u32,
    payload: String,
}

impl WireJob {
    fn from_job(j: &Job) -> WireJob {
        WireJob {
            id: j.id,
            kind: j.kind.as_str().to_string(),
            subject: j.subject,
            run_at: j.run_at,
            attempts: j.attempts,
            payload: j.payload.clone(),
        }
    }

    fn into_job(self) -> Result<Job, String> {
        let kind =
            JobKind::parse(&self.kind).ok_or_else(|| format!("unknown kind {:?}", self.kind))?;
        Ok(Job {
            id: self.id,
            kind,
            subject: self.subject,
            run_at: self.run_at,
            attempts: self.attempts,
            payload: self.payload,
        })
    }
}

/// A message's body: the jobs published together (a single object is what nodes before
/// batching sent, and is still read).
#[derive(Deserialize)]
#[serde(untagged)]
enum WireJobs {
    Many(Vec<WireJob>),
    One(WireJob),
}

/// Work for the publisher task.
enum Cmd {
    Publish(Vec<Job>),
    /// Reply once everything sent before has been acknowledged (or given up on).
    Flush(oneshot::Sender<()>),
}

/// Names derived from the namespace and region.
#[derive(Clone)]
struct Layout {
    stream: String,
    /// `[<namespace>.]tern.<region>.jobs`
    subject_base: String,
    /// Stream subjects: `[<namespace>.]tern.*.jobs.*`
    stream_subject: String,
    consumer_prefix: String,
}

impl Layout {
    fn new(region: &str, namespace: &str) -> Layout {
        let (ns_stream, ns_subject) = if namespace.is_empty() {
            (String::new(), String::new())
        } else {
            (format!("{namespace}_"), format!("{namespace}."))
        };
        Layout {
            stream: format!("{ns_stream}TERN_JOBS"),
            subject_base: format!("{ns_subject}tern.{region}.jobs"),
            stream_subject: format!("{ns_subject}tern.*.jobs.*"),
            consumer_prefix: format!("{ns_stream}tern_{region}"),
        }
    }

    fn subject(&self, kind: JobKind) -> String {
        format!("{}.{}", self.subject_base, kind.as_str())
    }

    /// `[<namespace>.]tern.<region>.events.<kind>` (`*` for all kinds).
    fn events_subject(&self, kind: &str) -> String {
        let base = self.subject_base.trim_end_matches(".jobs");
        format!("{base}.events.{kind}")
    }

    /// `[<namespace>.]tern.<region>.services.<service>`.
    fn service_subject(&self, service: &str) -> String {
        let base = self.subject_base.trim_end_matches(".jobs");
        format!("{base}.services.{service}")
    }

    fn consumer(&self, kind: JobKind) -> String {
        format!("{}_{}", self.consumer_prefix, kind.as_str())
    }
}

/// The JetStream-backed queue; see the module docs.
pub struct JetStreamQueue {
    context: Context,
    layout: Layout,
    pullers: Arc<HashMap<JobKind, Mutex<Puller>>>,
    depth: Arc<HashMap<JobKind, AtomicUsize>>,
    publish_tx: mpsc::UnboundedSender<Cmd>,
    closed: watch::Sender<bool>,
    /// Ids of the jobs given up on, for [`Queue::take_dropped`].
    dropped: Dropped,
    events: tokio::sync::broadcast::Sender<Event>,
    events_out: mpsc::Sender<(String, Vec<u8>)>,
}

/// Ids of jobs the publisher gave up on.
type Dropped = Arc<std::sync::Mutex<Vec<i64>>>;

fn record_dropped(dropped: &Dropped, ids: impl IntoIterator<Item = i64>) {
    dropped
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .extend(ids);
}

impl JetStreamQueue {
    /// Connects to NATS at `url` and sets up the stream and consumers for `region` (empty
    /// means [`DEFAULT_REGION`]). A non-empty `namespace` prefixes the stream, subject and
    /// consumer names, so separate deployments (or tests) on one server do not meet.
    pub async fn connect(url: &str, region: &str, namespace: &str) -> Result<Arc<Self>, BusError> {
        check_names(region, namespace)?;
        let client = bounded("connect", async {
            async_nats::ConnectOptions::new()
                .name("tern")
                .connect(url)
                .await
                .map_err(|source| BusError::Connect {
                    url: url.to_string(),
                    source,
                })
        })
        .await?;
        Self::with_client(client, region, namespace).await
    }

    /// Like [`JetStreamQueue::connect`], on an existing client.
    pub async fn with_client(
        client: async_nats::Client,
        region: &str,
        namespace: &str,
    ) -> Result<Arc<Self>, BusError> {
        let region = check_names(region, namespace)?;
        let layout = Layout::new(region, namespace);
        let context = jetstream::new(client);

        let stream = bounded("create stream", async {
            context
                .get_or_create_stream(stream::Config {
                    name: layout.stream.clone(),
                    subjects: vec![layout.stream_subject.clone()],
                    retention: RetentionPolicy::WorkQueue,
                    storage: StorageType::File,
                    description: Some("Tern jobs (the store holds the durable copy)".to_string()),
                    ..Default::default()
                })
                .await
                .map_err(|e| BusError::js(format!("creating stream {}", layout.stream), e))
        })
        .await?;

        let mut consumers = HashMap::new();
        for kind in JobKind::ALL {
            let name = layout.consumer(kind);
            let consumer: PullConsumer = bounded("create consumer", async {
                stream
                    .get_or_create_consumer(
                        &name,
                        pull::Config {
                            durable_name: Some(name.clone()),
                            description: Some(format!("Tern {} workers", kind.as_str())),
                            filter_subject: layout.subject(kind),
                            deliver_policy: DeliverPolicy::All,
                            ack_policy: AckPolicy::Explicit,
                            ack_wait: ACK_WAIT,
                            max_deliver: MAX_DELIVER,
                            max_ack_pending: MAX_ACK_PENDING,
                            ..Default::default()
                        },
                    )
                    .await
                    .map_err(|e| BusError::js(format!("creating consumer {name}"), e))
            })
            .await?;
            consumers.insert(kind, consumer);
        }

        let depth: Arc<HashMap<JobKind, AtomicUsize>> = Arc::new(
            JobKind::ALL
                .into_iter()
                .map(|k| (k, AtomicUsize::new(0)))
                .collect(),
        );
        let (closed, closed_rx) = watch::channel(false);
        let (publish_tx, publish_rx) = mpsc::unbounded_channel();

        let dropped = Dropped::default();
        tokio::spawn(run_publisher(
            context.clone(),
            layout.clone(),
            publish_rx,
            dropped.clone(),
        ));
        let pullers: Arc<HashMap<JobKind, Mutex<Puller>>> = Arc::new(
            consumers
                .iter()
                .map(|(kind, consumer)| (*kind, Mutex::new(Puller::new(consumer.clone()))))
                .collect(),
        );
        tokio::spawn(release_on_close(
            context.clone(),
            pullers.clone(),
            closed_rx.clone(),
            publish_tx.clone(),
        ));
        let refresher = DepthRefresher {
            consumers,
            depth: depth.clone(),
        };
        // Take a first reading before handing the queue out.
        refresher.refresh().await;
        tokio::spawn(refresher.run(closed_rx));

        let events = tokio::sync::broadcast::Sender::new(EVENT_BUFFER);
        let subscriber = bounded("subscribe to events", async {
            context
                .client()
                .subscribe(layout.events_subject("*"))
                .await
                .map_err(|e| BusError::js("subscribing to events", e))
        })
        .await?;
        tokio::spawn(fan_out_events(subscriber, events.clone()));
        let (events_out, mut outgoing) = mpsc::channel::<(String, Vec<u8>)>(EVENT_BUFFER);
        let client = context.client();
        tokio::spawn(async move {
            while let Some((subject, payload)) = outgoing.recv().await {
                if let Err(e) = client.publish(subject, payload.into()).await {
                    tracing::debug!(error = %e, "event not published");
                }
            }
        });

        Ok(Arc::new(JetStreamQueue {
            context,
            layout,
            pullers,
            depth,
            publish_tx,
            closed,
            dropped,
            events,
            events_out,
        }))
    }

    /// The stream's name.
    pub fn stream_name(&self) -> &str {
        &self.layout.stream
    }

    /// The subject jobs of `kind` are published to.
    pub fn subject(&self, kind: JobKind) -> String {
        self.layout.subject(kind)
    }

    /// Waits until every job published before this call has been stored by JetStream (or
    /// given up on after retries).
    pub async fn flush(&self) -> Result<(), BusError> {
        let (tx, rx) = oneshot::channel();
        self.publish_tx
            .send(Cmd::Flush(tx))
            .map_err(|_| BusError::Stopped)?;
        rx.await.map_err(|_| BusError::Stopped)
    }

    /// Deletes the stream with its consumers and jobs (for tests and teardown).
    pub async fn delete_stream(&self) -> Result<(), BusError> {
        self.close();
        bounded("delete stream", async {
            self.context
                .delete_stream(&self.layout.stream)
                .await
                .map(|_| ())
                .map_err(|e| BusError::js(format!("deleting stream {}", self.layout.stream), e))
        })
        .await
    }

    fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Turns a delivered message into its jobs (in the order published): holds it back if
    /// it is early, drops it if it is unreadable, acknowledges it otherwise.
    async fn take(&self, kind: JobKind, msg: jetstream::Message) -> Option<Vec<Job>> {
        let run_at = msg
            .headers
            .as_ref()
            .and_then(|h| h.get(RUN_AT_HEADER))
            .and_then(|v| v.as_str().parse::<i64>().ok());
        if let Some(run_at) = run_at {
            let wait = run_at - now_ms();
            if wait > 0 {
                let delay = Duration::from_millis(wait as u64);
                if let Err(e) = msg.ack_with(AckKind::Nak(Some(delay))).await {
                    // JetStream redelivers it after the ack wait instead.
                    tracing::warn!(kind = kind.as_str(), error = %e, "cannot hold back a delayed job");
                }
                return None;
            }
        }
        // A job that cannot be read is dropped alone (it stays in the store); a message
        // with none that can is terminated.
        let wire = match serde_json::from_slice::<WireJobs>(&msg.payload) {
            Ok(WireJobs::Many(wire)) => wire,
            Ok(WireJobs::One(wire)) => vec![wire],
            Err(e) => {
                tracing::error!(kind = kind.as_str(), subject = %msg.subject, error = %e,
                    "unreadable job message");
                Vec::new()
            }
        };
        let read = wire.len();
        let jobs: Vec<Job> = wire
            .into_iter()
            .filter_map(|w| {
                w.into_job()
                    .inspect_err(|e| {
                        tracing::error!(kind = kind.as_str(), error = %e, "unreadable job dropped");
                    })
                    .ok()
            })
            .collect();
        if jobs.is_empty() || jobs.len() < read {
            metrics::counter!("tern_bus_bad_messages_total").increment(1);
        }
        if jobs.is_empty() {
            if let Err(e) = msg.ack_with(AckKind::Term).await {
                tracing::warn!(error = %e, "cannot terminate an unreadable job message");
            }
            return None;
        }
        for job in jobs.iter().filter(|j| j.kind != kind) {
            tracing::warn!(
                job = job.id,
                expected = kind.as_str(),
                got = job.kind.as_str(),
                "job on the wrong subject; handing it out anyway"
            );
        }
        // A plain ack: nothing waits for the server. Should it get lost, the jobs are
        // delivered again after the ack wait, which workers tolerate (the store decides).
        if let Err(e) = msg.ack().await {
            tracing::warn!(jobs = jobs.len(), error = %e,
                "acknowledging a job message failed; its jobs may be delivered again");
        }
        Some(jobs)
    }
}

/// Hands the region's events to this node's receivers until the subscription ends.
async fn fan_out_events(mut subscriber: Subscriber, events: tokio::sync::broadcast::Sender<Event>) {
    while let Some(msg) = subscriber.next().await {
        match serde_json::from_slice::<Event>(&msg.payload) {
            Ok(e) => {
                let _ = events.send(e);
            }
            Err(e) => {
                tracing::debug!(subject = %msg.subject, error = %e, "unreadable event ignored")
            }
        }
    }
}

#[async_trait]
impl Queue for JetStreamQueue {
    fn emit(&self, event: Event) {
        // Kinds become subject tokens: anything else would publish somewhere unexpected.
        let valid = !event.kind.is_empty()
            && event
                .kind
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
            && !event.kind.starts_with('.')
            && !event.kind.ends_with('.')
            && !event.kind.contains("..");
        if !valid {
            tracing::warn!(kind = %event.kind, "event with an invalid kind dropped");
            return;
        }
        let payload = match serde_json::to_vec(&event) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode an event");
                return;
            }
        };
        // Only the last token of the subject is the kind's first segment: `network.path`
        // goes to `….events.network_path` so one wildcard subscription sees every kind.
        let subject = self.layout.events_subject(&event.kind.replace('.', "_"));
        // One publisher task keeps events in order; a full channel drops (best effort).
        if self.events_out.try_send((subject, payload)).is_err() {
            tracing::debug!("event dropped: the publisher is behind");
        }
    }

    fn events(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn publish(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        if let Err(mpsc::error::SendError(Cmd::Publish(jobs))) =
            self.publish_tx.send(Cmd::Publish(jobs))
        {
            tracing::error!("the JetStream publisher has stopped; jobs stay in the store only");
            record_dropped(&self.dropped, jobs.iter().map(|j| j.id));
        }
    }

    async fn next(&self, kind: JobKind) -> Option<Job> {
        let puller = self.pullers.get(&kind)?;
        let mut closed = self.closed.subscribe();
        if self.is_closed() {
            return None;
        }
        // Workers of one kind take turns at the kind's inbox.
        let mut puller = tokio::select! {
            biased;
            _ = closed.wait_for(|c| *c) => return None,
            p = puller.lock() => p,
        };
        loop {
            if self.is_closed() {
                return None;
            }
            if let Some(job) = puller.held.pop_front() {
                return Some(job);
            }
            let msg = tokio::select! {
                biased;
                _ = closed.wait_for(|c| *c) => return None,
                m = puller.receive(&self.context, kind) => m,
            };
            if let Some(jobs) = self.take(kind, msg).await {
                puller.held.extend(jobs);
            }
        }
    }

    fn depth(&self, kind: JobKind) -> usize {
        self.depth
            .get(&kind)
            .map_or(0, |d| d.load(Ordering::Relaxed))
    }

    fn close(&self) {
        self.closed.send_replace(true);
    }

    fn health(&self) -> Result<(), BusError> {
        match self.context.client().connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            other => Err(BusError::Unreachable(other.to_string())),
        }
    }

    fn take_dropped(&self) -> Vec<i64> {
        std::mem::take(&mut *self.dropped.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn request(
        &self,
        service: &str,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RequestError> {
        // A name nobody can serve (see `serve`) has no server.
        check_name("service", service).map_err(|_| RequestError::NoServer(service.to_owned()))?;
        // While disconnected the client would buffer the request and time out, which
        // would read as "may have been acted on"; nobody can have got it.
        self.health().map_err(|e| RequestError::Unreachable {
            service: service.to_owned(),
            reason: e.to_string(),
        })?;
        let request = async_nats::Request::new()
            .payload(payload.into())
            .timeout(Some(timeout));
        match self
            .context
            .client()
            .send_request(self.layout.service_subject(service), request)
            .await
        {
            Ok(answer) => Ok(answer.payload.to_vec()),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => RequestError::NoServer(service.to_owned()),
                RequestErrorKind::TimedOut => RequestError::TimedOut {
                    service: service.to_owned(),
                    timeout,
                },
                // Nobody got it: the subject, the size or the connection was refused.
                _ => RequestError::Unreachable {
                    service: service.to_owned(),
                    reason: e.to_string(),
                },
            }),
        }
    }

    async fn serve(&self, service: &str) -> Result<mpsc::Receiver<Request>, BusError> {
        check_name("service", service)?;
        let client = self.context.client();
        let subject = self.layout.service_subject(service);
        let mut requests = bounded("serve", async {
            let sub = client
                .queue_subscribe(subject.clone(), SERVICE_GROUP.to_owned())
                .await
                .map_err(|e| BusError::js(format!("subscribing to {subject}"), e))?;
            // Once the server has the subscription, requests reach this node.
            client
                .flush()
                .await
                .map_err(|e| BusError::js(format!("subscribing to {subject}"), e))?;
            Ok(sub)
        })
        .await?;
        let (tx, rx) = mpsc::channel(SERVE_BUFFER);
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    () = tx.closed() => break,
                    msg = requests.next() => match msg {
                        Some(msg) => msg,
                        None => break,
                    },
                };
                // A plain publish on the subject is no request: there is nobody to answer.
                let Some(reply) = msg.reply else { continue };
                let request = Request::nats(msg.payload.to_vec(), client.clone(), reply);
                if tx.send(request).await.is_err() {
                    break;
                }
            }
            let _ = requests.unsubscribe().await;
        });
        Ok(rx)
    }
}

/// The pulling side of one kind: an inbox that pull requests deliver to, and how many
/// messages the open requests may still deliver. Requests are only made from inside
/// [`Queue::next`], so a node that stops taking jobs stops asking for them.
struct Puller {
    consumer: PullConsumer,
    inbox: Option<(Subject, Subscriber)>,
    /// Messages the open pull requests may still deliver.
    owed: usize,
    /// When the newest pull request has ended at the latest; if nothing has accounted for
    /// what is owed by then, the requests are presumed lost.
    owed_until: Instant,
    /// After an error, no new request (or subscription) before this.
    pause_until: Option<Instant>,
    /// The jobs of an acknowledged message not handed out yet, in order.
    held: std::collections::VecDeque<Job>,
}

impl Puller {
    fn new(consumer: PullConsumer) -> Puller {
        Puller {
            consumer,
            inbox: None,
            owed: 0,
            owed_until: Instant::now(),
            pause_until: None,
            held: std::collections::VecDeque::new(),
        }
    }

    fn pause(&mut self) {
        self.pause_until = Some(Instant::now() + PULL_RETRY);
    }

    /// The next message delivered to the inbox, asking for more as needed. Errors are logged
    /// and retried after [`PULL_RETRY`]. Cancel-safe: dropping the future loses no message
    /// (at worst an extra pull request is made).
    async fn receive(&mut self, context: &Context, kind: JobKind) -> jetstream::Message {
        loop {
            if let Some(at) = self.pause_until {
                tokio::time::sleep_until(at).await;
                self.pause_until = None;
            }
            if self.inbox.is_none() {
                let inbox = Subject::from(context.client().new_inbox());
                match context.client().subscribe(inbox.clone()).await {
                    Ok(sub) => {
                        self.inbox = Some((inbox, sub));
                        self.owed = 0;
                    }
                    Err(e) => {
                        tracing::warn!(kind = kind.as_str(), error = %e, "subscribing to an inbox failed");
                        self.pause();
                        continue;
                    }
                }
            }
            let Some((inbox, sub)) = self.inbox.as_mut() else {
                continue;
            };
            let now = Instant::now();
            if self.owed > 0 && now >= self.owed_until {
                tracing::debug!(
                    kind = kind.as_str(),
                    owed = self.owed,
                    "pull requests presumed lost"
                );
                self.owed = 0;
            }
            if self.owed <= PULL_BATCH / 2 {
                let request = BatchConfig {
                    batch: PULL_BATCH,
                    expires: Some(PULL_EXPIRES),
                    ..Default::default()
                };
                if let Err(e) = self.consumer.request_batch(request, inbox.clone()).await {
                    tracing::warn!(kind = kind.as_str(), error = %e, "pull request failed");
                    self.pause();
                    continue;
                }
                self.owed += PULL_BATCH;
                self.owed_until = now + PULL_EXPIRES + PULL_GRACE;
            }
            let got = tokio::select! {
                m = sub.next() => m,
                _ = tokio::time::sleep_until(self.owed_until) => continue,
            };
            let Some(m) = got else {
                tracing::warn!(
                    kind = kind.as_str(),
                    "the inbox subscription ended; renewing it"
                );
                self.inbox = None;
                self.pause();
                continue;
            };
            match m.status {
                None | Some(StatusCode::OK) => {
                    self.owed = self.owed.saturating_sub(1);
                    return jetstream::Message {
                        message: m,
                        context: context.clone(),
                    };
                }
                Some(StatusCode::IDLE_HEARTBEAT) => {}
                Some(status) => {
                    // A request ended (408: expired) or was refused (409: consumer deleted,
                    // too many waiting requests…); the header says how much it still owed.
                    let left = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get("Nats-Pending-Messages"))
                        .and_then(|v| v.as_str().parse::<usize>().ok())
                        .unwrap_or(PULL_BATCH);
                    self.owed = self.owed.saturating_sub(left);
                    if status != StatusCode::TIMEOUT {
                        tracing::warn!(kind = kind.as_str(), status = %status,
                            description = m.description.as_deref().unwrap_or(""),
                            "pull request refused");
                        self.pause();
                    }
                }
            }
        }
    }

    /// Stops pulling and naks what was delivered but not handed out, so that JetStream
    /// offers it again at once (to this region's other nodes) instead of after the ack wait;
    /// the held jobs of an acknowledged message are published again.
    async fn release(
        &mut self,
        context: &Context,
        kind: JobKind,
        publish: &mpsc::UnboundedSender<Cmd>,
    ) {
        let held: Vec<Job> = self.held.drain(..).collect();
        if !held.is_empty() {
            tracing::debug!(
                kind = kind.as_str(),
                held = held.len(),
                "publishing held jobs again"
            );
            if publish.send(Cmd::Publish(held)).is_err() {
                tracing::warn!(
                    kind = kind.as_str(),
                    "the publisher has stopped; held jobs stay in the store only"
                );
            }
        }
        let Some((_, mut sub)) = self.inbox.take() else {
            return;
        };
        self.owed = 0;
        if let Err(e) = sub.unsubscribe().await {
            tracing::debug!(kind = kind.as_str(), error = %e, "unsubscribing an inbox failed");
        }
        let mut released = 0usize;
        while let Some(Some(m)) = sub.next().now_or_never() {
            if !matches!(m.status, None | Some(StatusCode::OK)) {
                continue;
            }
            let msg = jetstream::Message {
                message: m,
                context: context.clone(),
            };
            if let Err(e) = msg.ack_with(AckKind::Nak(None)).await {
                tracing::debug!(kind = kind.as_str(), error = %e, "releasing a job failed");
            }
            released += 1;
        }
        if released > 0 {
            tracing::debug!(kind = kind.as_str(), released, "released undelivered jobs");
        }
    }
}

/// Once the queue is closed (or dropped), releases what its inboxes hold.
async fn release_on_close(
    context: Context,
    pullers: Arc<HashMap<JobKind, Mutex<Puller>>>,
    mut closed: watch::Receiver<bool>,
    publish: mpsc::UnboundedSender<Cmd>,
) {
    // An error means the queue was dropped: release as well.
    let _ = closed.wait_for(|c| *c).await;
    for (kind, puller) in pullers.iter() {
        puller.lock().await.release(&context, *kind, &publish).await;
    }
}

/// Jobs gathered from the channel at most before they are sent (a bound on one round's
/// memory; the rest waits for the next round).
const GATHER: usize = 4 * 1024;

/// Publishes jobs in the order they were handed over, together where they can go together
/// ([`batches`]); acknowledgements are awaited concurrently. Ends when the queue is dropped,
/// after sending what is queued.
async fn run_publisher(
    context: Context,
    layout: Layout,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    dropped: Dropped,
) {
    let mut acks: JoinSet<()> = JoinSet::new();
    // Message ids: unique to this publisher (a random prefix) and to each publish.
    let sid = Sid::generate(tern_types::SidPrefix::Message);
    let instance = &sid.as_str()[sid.as_str().len() - 12..];
    let mut published: u64 = 0;
    loop {
        let cmd = tokio::select! {
            cmd = rx.recv() => cmd,
            Some(_) = acks.join_next(), if !acks.is_empty() => continue,
        };
        match cmd {
            Some(Cmd::Publish(mut jobs)) => {
                // One commit answers many sends at once, and each publishes its jobs as its
                // task runs: a turn at the back of the run queue lets those tasks run first.
                tokio::task::yield_now().await;
                // What else is waiting goes with these; a flush waits for them.
                let mut flush = None;
                while jobs.len() < GATHER {
                    match rx.try_recv() {
                        Ok(Cmd::Publish(more)) => jobs.extend(more),
                        Ok(Cmd::Flush(reply)) => {
                            flush = Some(reply);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let now = now_ms();
                for batch in batches(jobs, now) {
                    metrics::histogram!("tern_bus_jobs_per_message").record(batch.len() as f64);
                    published += 1;
                    let msg_id = format!("{instance}-{published}");
                    let ids: Vec<i64> = batch.iter().map(|j| j.id).collect();
                    let (subject, headers, body) = match encode(&layout, &batch, &msg_id, now) {
                        Ok(encoded) => encoded,
                        Err(e) => {
                            tracing::error!(jobs = ?ids, error = %e, "cannot encode jobs");
                            continue;
                        }
                    };
                    let sent = context
                        .publish_with_headers(subject.clone(), headers.clone(), body.clone().into())
                        .await;
                    let (context, dropped) = (context.clone(), dropped.clone());
                    acks.spawn(async move {
                        match sent {
                            Ok(ack) => match ack.await {
                                Ok(_) => return,
                                Err(e) => tracing::warn!(jobs = ?ids, error = %e,
                                    "publish not acknowledged; retrying"),
                            },
                            Err(e) => {
                                tracing::warn!(jobs = ?ids, error = %e, "publish failed; retrying")
                            }
                        }
                        if !retry_publish(&context, &ids, subject, headers, body).await {
                            record_dropped(&dropped, ids);
                        }
                    });
                }
                if let Some(reply) = flush {
                    while acks.join_next().await.is_some() {}
                    let _ = reply.send(());
                }
            }
            Some(Cmd::Flush(reply)) => {
                while acks.join_next().await.is_some() {}
                let _ = reply.send(());
            }
            None => {
                while acks.join_next().await.is_some() {}
                return;
            }
        }
    }
}

/// The messages `jobs` go out in, in order: ready jobs of one kind together, up to
/// [`JOBS_PER_MESSAGE`] (so each kind's jobs keep their order); a job due after `now`
/// alone, as its message carries its time ([`RUN_AT_HEADER`]).
fn batches(jobs: Vec<Job>, now: i64) -> Vec<Vec<Job>> {
    let mut out: Vec<Vec<Job>> = Vec::new();
    // Where each kind's batch still open is in `out`.
    let mut open: HashMap<JobKind, usize> = HashMap::new();
    for job in jobs {
        if job.run_at > now {
            out.push(vec![job]);
            continue;
        }
        let batch = open
            .get(&job.kind)
            .and_then(|&i| out.get_mut(i))
            .filter(|b| b.len() < JOBS_PER_MESSAGE);
        match batch {
            Some(b) => b.push(job),
            None => {
                open.insert(job.kind, out.len());
                out.push(vec![job]);
            }
        }
    }
    out
}

/// A message's subject, headers and body for `jobs` (of one kind; one if it is due after
/// `now`, the time [`batches`] went by).
fn encode(
    layout: &Layout,
    jobs: &[Job],
    msg_id: &str,
    now: i64,
) -> Result<(String, HeaderMap, Vec<u8>), serde_json::Error> {
    let wire: Vec<WireJob> = jobs.iter().map(WireJob::from_job).collect();
    let body = serde_json::to_vec(&wire)?;
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id);
    let kind = jobs.first().map_or(JobKind::Route, |j| j.kind);
    if let [job] = jobs
        && job.run_at > now
    {
        headers.insert(RUN_AT_HEADER, job.run_at.to_string().as_str());
    }
    Ok((layout.subject(kind), headers, body))
}

/// Publishes the message of the jobs `ids` again with backoff until it is stored, waiting
/// out disconnections; `false` once [`PUBLISH_ATTEMPTS`] attempts made while connected
/// have failed.
async fn retry_publish(
    context: &Context,
    ids: &[i64],
    subject: String,
    headers: HeaderMap,
    body: Vec<u8>,
) -> bool {
    let mut backoff = Duration::from_millis(200);
    let mut attempt = 1;
    while attempt < PUBLISH_ATTEMPTS {
        tokio::time::sleep(backoff).await;
        if context.client().connection_state() != async_nats::connection::State::Connected {
            // Not an attempt: the client reconnects by itself, and the job waits for it.
            backoff = RECONNECT_POLL;
            continue;
        }
        attempt += 1;
        backoff = Duration::from_millis(200) * 2u32.pow(attempt - 1);
        let sent = context
            .publish_with_headers(subject.clone(), headers.clone(), body.clone().into())
            .await;
        let result = match sent {
            Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match result {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(jobs = ?ids, attempt, error = %e, "publish retry failed");
            }
        }
    }
    metrics::counter!("tern_bus_publish_failures_total").increment(1);
    tracing::error!(
        jobs = ?ids,
        %subject,
        "giving up publishing jobs; they stay in the store and are published again once NATS is back"
    );
    false
}

/// Keeps the cached depths current.
struct DepthRefresher {
    consumers: HashMap<JobKind, PullConsumer>,
    depth: Arc<HashMap<JobKind, AtomicUsize>>,
}

impl DepthRefresher {
    async fn refresh(&self) {
        for (kind, consumer) in &self.consumers {
            let info = tokio::time::timeout(SETUP_TIMEOUT, consumer.get_info()).await;
            match info {
                Ok(Ok(info)) => {
                    let n = (info.num_pending as usize).saturating_add(info.num_ack_pending);
                    if let Some(d) = self.depth.get(kind) {
                        d.store(n, Ordering::Relaxed);
                    }
                }
                Ok(Err(e)) => {
                    tracing::debug!(kind = kind.as_str(), error = %e, "reading consumer info failed");
                }
                Err(_) => {
                    tracing::debug!(kind = kind.as_str(), "reading consumer info timed out");
                }
            }
        }
    }

    /// Runs until the queue is dropped (depth stays meaningful after `close`, for metrics).
    async fn run(self, mut closed: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                r = closed.changed() => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(DEPTH_REFRESH) => self.refresh().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::conformance::job;

    proptest! {
        /// Every job goes out once; a message holds ready jobs of one kind (at most
        /// `JOBS_PER_MESSAGE`) or one job due later; each kind's jobs keep their order.
        #[test]
        fn batches_keep_every_job_once_and_each_kinds_order(
            spec in proptest::collection::vec((any::<bool>(), any::<bool>()), 0..100)
        ) {
            let now = 1_000;
            let jobs: Vec<Job> = spec
                .iter()
                .enumerate()
                .map(|(i, &(webhook, later))| {
                    let kind = if webhook { JobKind::Webhook } else { JobKind::Route };
                    job(i as i64, kind, if later { now + 1 } else { now })
                })
                .collect();
            let out = batches(jobs.clone(), now);
            for b in &out {
                prop_assert!(!b.is_empty() && b.len() <= JOBS_PER_MESSAGE);
                prop_assert!(b.iter().all(|j| j.kind == b[0].kind));
                if b.iter().any(|j| j.run_at > now) {
                    prop_assert_eq!(b.len(), 1);
                }
            }
            for kind in JobKind::ALL {
                let sent: Vec<i64> =
                    out.iter().flatten().filter(|j| j.kind == kind).map(|j| j.id).collect();
                let given: Vec<i64> = jobs.iter().filter(|j| j.kind == kind).map(|j| j.id).collect();
                let mut sorted = sent.clone();
                sorted.sort_unstable();
                prop_assert_eq!(&sorted, &given);
                // Ready jobs keep their order.
                let ready = |ids: &[i64]| -> Vec<i64> {
                    ids.iter().copied().filter(|id| !spec[*id as usize].1).collect()
                };
                prop_assert_eq!(ready(&sent), ready(&given));
            }
        }
    }

    #[test]
    fn a_burst_of_one_kind_fills_messages_in_order() {
        let jobs: Vec<Job> = (0..40).map(|i| job(i, JobKind::Route, 0)).collect();
        let sizes: Vec<usize> = batches(jobs, 0).iter().map(Vec::len).collect();
        assert_eq!(sizes, [16, 16, 8]);
    }

    #[test]
    fn a_message_of_one_job_from_before_batching_is_read() {
        let one = serde_json::to_vec(&WireJob::from_job(&job(7, JobKind::Route, 0))).unwrap();
        assert!(
            matches!(serde_json::from_slice::<WireJobs>(&one), Ok(WireJobs::One(w)) if w.id == 7)
        );
        let many = serde_json::to_vec(&[WireJob::from_job(&job(8, JobKind::Route, 0))]).unwrap();
        assert!(
            matches!(serde_json::from_slice::<WireJobs>(&many), Ok(WireJobs::Many(w)) if w.len() == 1)
        );
    }
}
