//! The messaging engine: accepts sends, routes and submits them, applies receipts, receives
//! inbound messages and delivers every webhook — durable through the store's outbox.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_bus::{Event, Job, JobKind, Queue};
use tern_carriers::{
    Carrier, CarrierEvent, InboundSms, OutboundSms, Receipt, ReceiptOutcome, ReceiptsTo,
    SubmitError, Submitted,
};
use tern_domain::keywords::{self, Keyword};
use tern_domain::{Route, RouteError, RouteTable, SendParams, check_transition, plan_send};
use tern_store::{
    Account, AttemptResult, Feedback, FeedbackOutcome, Message, NewJob, PhoneNumber, RouteAttempt,
    Store, StoreError, Transition,
};
use tern_types::{Direction, ErrorCode, MessageStatus, Sid, SidPrefix};
use tern_webhooks::{Attempt, WebhookClient, WebhookRequest, backoff};
use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::leader::{Leadership, LeaseTiming};
use crate::network::Brain;
use crate::outbox::Resync;
use crate::pacing::{Admission, Pacing};
use crate::saturation::Saturation;
use crate::{Config, callbacks, now_ms};
use tern_domain::network::{PathKey, PathView, Signal};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The request breaks a rule; the code says which.
    #[error("{message}")]
    Rejected { code: ErrorCode, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    fn code(code: ErrorCode) -> Self {
        EngineError::Rejected {
            code,
            message: code.message().to_string(),
        }
    }
}

impl From<tern_domain::SendError> for EngineError {
    fn from(e: tern_domain::SendError) -> Self {
        EngineError::Rejected {
            code: e.code,
            message: e.message,
        }
    }
}

/// What a webhook job is for, which decides what its response means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A status callback: only 2xx matters.
    Status,
    /// An inbound message to a number's `SmsUrl`: the response is TwiML.
    Inbound,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct WebhookJob {
    purpose: Purpose,
    account_sid: Sid,
    request: WebhookRequest,
    /// `SmsFallbackUrl` and its method, tried when the primary URL fails.
    fallback: Option<(String, String)>,
}

/// How deep a chain of TwiML `<Redirect>`s is followed.
const MAX_REDIRECTS: u32 = 5;

/// Callback addresses with this scheme are not HTTP: they name a customer's SMPP binds
/// (`smpp://SYSTEM_ID?rd=N` for a submitting credential's receipts, `smpp://*` for any
/// bind of the account), and the engine hands such jobs to [`CustomerLinks`]. Riding on the
/// webhook outbox gives SMPP deliveries the same durability, per-message order and retry
/// schedule as HTTP callbacks, with no second queue.
pub const SMPP_CALLBACK_SCHEME: &str = "smpp://";

/// Where callbacks addressed to [`SMPP_CALLBACK_SCHEME`] go: the customer SMPP server.
#[async_trait::async_trait]
pub trait CustomerLinks: Send + Sync + 'static {
    /// Delivers a status report or an inbound message (`params` are the webhook's form
    /// parameters) to a bind named by `target` (what follows the scheme).
    async fn deliver(
        &self,
        account_sid: Sid,
        target: &str,
        purpose: Purpose,
        params: &[(String, String)],
    ) -> Attempt;

    /// Whether `account` has SMPP credentials, so inbound messages without an `SmsUrl`
    /// go to its binds.
    async fn takes_inbound(&self, account: Sid) -> bool;
}

/// What a non-REST ingress (the customer SMPP server) decides about a send beyond
/// [`SendParams`].
#[derive(Debug, Clone, Default)]
pub struct SendOrigin {
    /// The SID to give the message, when it was promised before the send (SMPP answers
    /// each part of a concatenated message before the whole exists).
    pub sid: Option<Sid>,
    /// A callback address chosen by the ingress (an `smpp://` one), not validated as a URL.
    pub status_callback: Option<String>,
}

/// How often the leader deletes messages past their retention.
const RETENTION_EVERY: Duration = Duration::from_secs(60);
/// Messages deleted per statement by retention: bounds its locks and its transaction.
const RETENTION_BATCH: u32 = 1_000;

/// One message's webhooks on this node: the job running and those waiting behind it.
struct Chain {
    running: i64,
    waiting: VecDeque<Job>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    carriers: HashMap<String, Arc<dyn Carrier>>,
    /// Swapped whole by [`Engine::set_routes`]; a route in use stays valid meanwhile.
    routes: std::sync::RwLock<Arc<RouteTable>>,
    carrier_ids: Vec<String>,
    webhooks: WebhookClient,
    config: Config,
    /// Webhooks waiting behind an earlier one of the same message (callbacks stay in order).
    chains: Mutex<HashMap<Sid, Chain>>,
    route_permits: Arc<Semaphore>,
    /// Holds route workers back while the API is saturated.
    saturation: Saturation,
    webhook_permits: Arc<Semaphore>,
    customer_links: std::sync::OnceLock<Arc<dyn CustomerLinks>>,
    brain: Brain,
    /// Whether this node does the region's once-per-region work (the receipt sweep).
    leadership: Arc<Leadership>,
    /// Jobs the bus lost, to publish again from the store.
    resync: Arc<Resync>,
    counters: ResendCounters,
    /// The region's latest events, at most [`RECENT_EVENTS`].
    recent_events: Mutex<VecDeque<Event>>,
    /// The engine itself, for tasks spawned from `&self` methods.
    me: std::sync::Weak<Engine>,
    pacing: Pacing,
    /// Accepted submissions whose `sent` is being written (receipts wait for it).
    settling: crate::settling::Settling,
}

/// What resends did since the engine started (the chaos benchmark reads them; the same
/// figures are Prometheus counters).
#[derive(Debug, Default)]
pub struct ResendCounters {
    /// Messages moved to another carrier.
    pub resent: AtomicU64,
    /// Resends whose copy went out although a receipt came first (the handset may get two).
    pub resend_races: AtomicU64,
    /// Messages both carriers reported delivered.
    pub duplicate_deliveries: AtomicU64,
}

/// Events kept for the operator API.
const RECENT_EVENTS: usize = 1_000;

fn token() -> String {
    Sid::generate(SidPrefix::Message).as_str()[2..].to_string()
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        carriers: Vec<Arc<dyn Carrier>>,
        config: Config,
    ) -> Result<Arc<Engine>, String> {
        if carriers.is_empty() {
            return Err("at least one carrier is needed".into());
        }
        let ids: Vec<&str> = carriers.iter().map(|c| c.id()).collect();
        let routes = RouteTable::new(config.routes.clone(), &ids).map_err(|e| e.to_string())?;
        let carrier_ids = ids.iter().map(|c| (*c).to_owned()).collect();
        let mut by_id = HashMap::new();
        for c in carriers {
            let id = c.id().to_owned();
            if by_id.insert(id.clone(), c).is_some() {
                return Err(format!("two carriers have the id {id:?}"));
            }
        }
        let webhooks = WebhookClient::new(
            Duration::from_millis(config.webhooks.connect_timeout_ms),
            Duration::from_millis(config.webhooks.timeout_ms),
        )
        .map_err(|e| e.to_string())?;
        let brain = Brain::new(&config.network);
        let leadership = Leadership::new(
            store.clone(),
            &config.node.region,
            &config.node.name,
            LeaseTiming::new(
                Duration::from_millis(config.node.leader_ttl_ms.into()),
                Duration::from_millis(config.node.leader_renew_ms.into()),
            ),
        );
        let pacing = Pacing::new(&config.messaging).map_err(|e| e.to_string())?;
        Ok(Arc::new_cyclic(|me| Engine {
            route_permits: Arc::new(Semaphore::new(config.messaging.concurrency.max(1))),
            saturation: Saturation::new(
                config.messaging.saturated_at_sends,
                config.messaging.concurrency_when_saturated,
            ),
            webhook_permits: Arc::new(Semaphore::new(config.webhooks.concurrency.max(1))),
            store,
            queue,
            carriers: by_id,
            routes: std::sync::RwLock::new(Arc::new(routes)),
            carrier_ids,
            webhooks,
            config,
            chains: Mutex::new(HashMap::new()),
            customer_links: std::sync::OnceLock::new(),
            brain,
            leadership,
            resync: Arc::default(),
            counters: ResendCounters::default(),
            recent_events: Mutex::new(VecDeque::new()),
            me: me.clone(),
            pacing,
            settling: Default::default(),
        }))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// This node's standing in its region's leader election.
    pub fn leadership(&self) -> &Arc<Leadership> {
        &self.leadership
    }

    /// The bus this node takes its jobs from.
    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    /// This node's name and region.
    pub fn node(&self) -> &crate::config::NodeConfig {
        &self.config.node
    }

    /// The region's latest events (oldest first), as this node received them.
    pub fn recent_events(&self) -> Vec<Event> {
        self.recent_events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    /// Keeps the region's latest events for [`Engine::recent_events`].
    async fn event_log_loop(self: Arc<Self>) {
        let mut events = self.queue.events();
        loop {
            match events.recv().await {
                Ok(e) => {
                    let mut log = self.recent_events.lock().unwrap_or_else(|p| p.into_inner());
                    if log.len() >= RECENT_EVENTS {
                        log.pop_front();
                    }
                    log.push_back(e);
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    warn!(skipped = n, "event log fell behind; skipped events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// The route table in force.
    pub fn routes(&self) -> Arc<RouteTable> {
        self.routes
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the route table (the operator API, a config reload): checked against the
    /// carriers first, then swapped whole. Messages already routed keep their carrier;
    /// the next routing decision uses the new table.
    pub fn set_routes(&self, routes: Vec<Route>) -> Result<Arc<RouteTable>, RouteError> {
        let ids: Vec<&str> = self.carrier_ids.iter().map(String::as_str).collect();
        let table = Arc::new(RouteTable::new(routes, &ids)?);
        *self.routes.write().unwrap_or_else(|p| p.into_inner()) = table.clone();
        tracing::info!(routes = table.routes().len(), "route table replaced");
        Ok(table)
    }

    /// What resends did since the start.
    pub fn resend_counters(&self) -> &ResendCounters {
        &self.counters
    }

    /// Every carrier × route path the Super Network knows, with its health and estimates.
    pub fn network_snapshot(&self) -> Vec<PathView> {
        self.brain.snapshot()
    }

    /// The path a message to `to` on `carrier` takes: the carrier and its route's prefix.
    fn path(&self, carrier: &str, to: &str) -> PathKey {
        let routes = self.routes();
        let prefix = routes.route_for(to).map_or("+", |r| r.key());
        PathKey::new(carrier, prefix)
    }

    async fn network_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let resends = self.brain.tick();
            for (kind, data) in self.brain.take_events() {
                self.queue.emit(Event {
                    kind: kind.to_owned(),
                    node: self.config.node.name.clone(),
                    at: now_ms(),
                    data,
                });
            }
            for c in resends {
                let me = self.clone();
                let span = info_span!("resend", message_sid = %c.sid, carrier = %c.key.carrier);
                tokio::spawn(
                    async move {
                        let why = "receipt overdue on a carrier gone down";
                        if let Err(e) = me.resend(c.sid, &c.key, why).await {
                            warn!(error = %e, "could not resend a message");
                        }
                    }
                    .instrument(span),
                );
            }
        }
    }

    /// Connects the customer SMPP server, which is built after the engine (it sends
    /// through it). Only the first call counts.
    pub fn set_customer_links(&self, links: Arc<dyn CustomerLinks>) {
        let _ = self.customer_links.set(links);
    }

    /// Publishes every job left in the store (after a restart) and starts the workers.
    pub async fn start(
        self: &Arc<Self>,
        events: mpsc::Receiver<CarrierEvent>,
    ) -> Result<(), StoreError> {
        let pending = self.store.pending_jobs().await?;
        if !pending.is_empty() {
            tracing::info!(jobs = pending.len(), "resuming work left from the last run");
        }
        self.queue.publish(pending);
        self.leadership.start();
        tokio::spawn(
            self.resync
                .clone()
                .run(self.store.clone(), self.queue.clone()),
        );
        tokio::spawn(
            self.resync
                .clone()
                .after_lost_peers(self.leadership.peers_lost()),
        );
        tokio::spawn(self.clone().route_loop());
        tokio::spawn(self.clone().webhook_loop());
        tokio::spawn(self.clone().event_loop(events));
        tokio::spawn(self.clone().sweep_loop());
        tokio::spawn(self.clone().retention_loop());
        tokio::spawn(self.clone().event_log_loop());
        tokio::spawn(self.clone().network_loop());
        for (id, carrier) in &self.carriers {
            if let Some(transmitting) = carrier.transmitting() {
                let (me, id) = (self.clone(), id.clone());
                tokio::spawn(async move { me.brain.watch_link(&id, transmitting).await });
            }
        }
        Ok(())
    }

    /// Stops taking jobs and waits (up to `deadline`) for work in flight to finish.
    pub async fn drain(&self, deadline: Duration) {
        self.queue.close();
        // Another node can take the leader's work over at once.
        self.leadership.stop().await;
        let all = |s: &Arc<Semaphore>, n: usize| {
            let s = s.clone();
            async move { s.acquire_many_owned(n as u32).await.ok() }
        };
        // Every permit is held, and kept until the semaphores are closed: a permit given
        // back first would go straight to a waiting worker, which would start a webhook or
        // a submission that the ending process never records (and that is sent again by
        // whoever takes its job next).
        let mut wait = std::pin::pin!(async {
            let r = all(
                &self.route_permits,
                self.config.messaging.concurrency.max(1),
            )
            .await;
            let w = all(
                &self.webhook_permits,
                self.config.webhooks.concurrency.max(1),
            )
            .await;
            (r, w)
        });
        let held = tokio::time::timeout(deadline, &mut wait).await;
        if held.is_err() {
            warn!("drain deadline passed with work in flight; it resumes on the next start");
        }
        self.route_permits.close();
        self.webhook_permits.close();
        // Only now may what was acquired (and the unfinished wait) go.
        drop(held);
    }

    fn publish(&self, jobs: Vec<Job>) {
        if !jobs.is_empty() {
            self.queue.publish(jobs);
        }
    }

    // ---- Accepting a send -------------------------------------------------------------

    /// Validates and persists a new outbound message with its routing job.
    pub async fn send(
        &self,
        account: &Account,
        params: &SendParams,
    ) -> Result<Message, EngineError> {
        self.send_with(account, params, SendOrigin::default()).await
    }

    /// [`Engine::send`] with what a non-REST ingress decides itself.
    pub async fn send_with(
        &self,
        account: &Account,
        params: &SendParams,
        origin: SendOrigin,
    ) -> Result<Message, EngineError> {
        let _accepting = self.saturation.accepting();
        let now = chrono::Utc::now();
        let plan = plan_send(params, now)?;
        if self
            .routes()
            .route_for(plan.to.as_str())
            .is_none_or(|r| r.deny)
        {
            return Err(EngineError::code(ErrorCode::RegionNotEnabled));
        }
        if let Some(from) = &plan.from {
            match self.store.number_by_phone(from.as_str()).await? {
                Some(n) if n.account_sid == account.sid => {}
                _ => {
                    return Err(EngineError::Rejected {
                        code: ErrorCode::FromNotOwned,
                        message: format!(
                            "The 'From' number {from} is not a valid, SMS-capable inbound phone number or short code for your account."
                        ),
                    });
                }
            }
        }
        let mut status_callback = origin.status_callback.or(plan.status_callback.clone());
        let mut validity_secs = plan.validity_secs;
        if let Some(svc) = plan.messaging_service_sid {
            match self.store.service(svc).await? {
                Some(s) if s.account_sid == account.sid => {
                    status_callback = status_callback.or(s.config.status_callback);
                    validity_secs = validity_secs.or(s.config.validity_period);
                }
                _ => return Err(EngineError::code(ErrorCode::MessagingServiceNotFound)),
            }
        }
        let created = now.timestamp_millis();
        let num_segments = if plan.messaging_service_sid.is_some() {
            0
        } else {
            plan.num_segments
        };
        let mut message = Message {
            messaging_service_sid: plan.messaging_service_sid,
            from: plan.from.map(|f| f.as_str().to_string()),
            num_media: plan.media_urls.len() as u32,
            status_callback,
            validity_secs: validity_secs.unwrap_or(tern_domain::send::MAX_VALIDITY_SECS),
            send_at: plan.send_at.map(|t| t.timestamp_millis()),
            provide_feedback: plan.provide_feedback,
            ..Message::new(
                account.sid,
                Direction::OutboundApi,
                plan.initial_status,
                plan.to.as_str().to_string(),
                plan.body,
                num_segments,
                created,
            )
        };
        if let Some(sid) = origin.sid {
            message.sid = sid;
        }
        let route = NewJob {
            kind: JobKind::Route,
            subject: message.sid,
            run_at: message.send_at.unwrap_or(created),
            payload: String::new(),
        };
        // Not written if the recipient opted out (checked in the same step as the write).
        let sid = message.sid;
        let jobs = self
            .store
            .insert_outbound(message.clone(), vec![route])
            .await
            .inspect_err(|e| self.resync.unsure(sid, e))?
            .ok_or_else(|| EngineError::code(ErrorCode::OptedOut))?;
        metrics::counter!("tern_messages_accepted_total").increment(1);
        self.publish(jobs);
        Ok(message)
    }

    /// Cancels a scheduled message.
    pub async fn cancel(&self, m: &Message) -> Result<Message, EngineError> {
        if m.status != MessageStatus::Scheduled {
            return Err(EngineError::code(ErrorCode::NotCancelable));
        }
        let t = self.transition(m, MessageStatus::Canceled, now_ms());
        match self.apply(t).await {
            Ok(()) => {}
            Err(StoreError::StaleStatus(_)) => {
                return Err(EngineError::code(ErrorCode::NotCancelable));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(self
            .store
            .message(m.sid)
            .await?
            .unwrap_or_else(|| m.clone()))
    }

    // ---- Transitions ------------------------------------------------------------------

    /// A transition of `m` to `to`, with the status callback it causes.
    fn transition(&self, m: &Message, to: MessageStatus, at: i64) -> Transition {
        let mut t = Transition::new(m.sid, m.status, to, at);
        t.jobs = self.callback_jobs(m, to, None, None, None);
        t
    }

    fn callback_jobs(
        &self,
        m: &Message,
        to: MessageStatus,
        error: Option<u32>,
        done: Option<&str>,
        from: Option<&str>,
    ) -> Vec<NewJob> {
        let Some(url) = m.status_callback.clone() else {
            return Vec::new();
        };
        // SMPP receipts report outcomes only: no job for the steps on the way.
        if url.starts_with(SMPP_CALLBACK_SCHEME) && !to.is_terminal() {
            return Vec::new();
        }
        let job = WebhookJob {
            purpose: Purpose::Status,
            account_sid: m.account_sid,
            request: WebhookRequest {
                url,
                method: "POST".into(),
                params: callbacks::status_params(m, to, error, done, from),
                idempotency_token: token(),
            },
            fallback: None,
        };
        match serde_json::to_string(&job) {
            Ok(payload) => vec![NewJob {
                kind: JobKind::Webhook,
                subject: m.sid,
                run_at: 0,
                payload,
            }],
            Err(e) => {
                warn!(error = %e, "could not encode a status callback");
                Vec::new()
            }
        }
    }

    async fn apply(&self, t: Transition) -> Result<(), StoreError> {
        if let Err(e) = check_transition(t.expected, t.to) {
            // A bug in the caller: refuse rather than corrupt the lifecycle.
            warn!(message_sid = %t.sid, error = %e, "refused an illegal transition");
            return Err(StoreError::StaleStatus(t.expected));
        }
        let (to, sid, makes_jobs) = (t.to, t.sid, !t.jobs.is_empty());
        let jobs = self.store.transition(t).await.inspect_err(|e| {
            if makes_jobs {
                self.resync.unsure(sid, e);
            }
        })?;
        metrics::counter!("tern_message_transitions_total", "status" => to.as_str()).increment(1);
        self.publish(jobs);
        Ok(())
    }

    // ---- Routing and submission ---------------------------------------------------------

    async fn route_loop(self: Arc<Self>) {
        while let Some(job) = self.queue.next(JobKind::Route).await {
            let Ok(permit) = self.route_permits.clone().acquire_owned().await else {
                break;
            };
            let while_saturated = self.saturation.admit().await;
            let me = self.clone();
            let span = info_span!("route", message_sid = %job.subject);
            tokio::spawn(
                async move {
                    if let Err(e) = me.route(&job).await {
                        me.retry_later(job, format!("store: {e}")).await;
                    }
                    drop((permit, while_saturated));
                }
                .instrument(span),
            );
        }
    }

    async fn retry_later(&self, job: Job, why: String) {
        let delay = backoff(job.attempts + 1);
        debug!(reason = %why, delay_ms = delay.as_millis() as u64, "retrying job later");
        let run_at = now_ms() + delay.as_millis() as i64;
        match self.store.retry_job(job.id, run_at).await {
            Ok(Some(j)) => self.publish(vec![j]),
            Ok(None) => {}
            // The job stays in the store alone: published again once the store is back.
            Err(e) => {
                warn!(error = %e, "could not reschedule a job");
                self.resync.lost(job.id);
            }
        }
    }

    async fn route(&self, job: &Job) -> Result<(), StoreError> {
        let Some(mut m) = self.store.message(job.subject).await? else {
            return self.store.complete_jobs(vec![job.id]).await;
        };
        loop {
            let now = now_ms();
            if m.status.is_terminal() || m.status == MessageStatus::Sent {
                return self.store.complete_jobs(vec![job.id]).await;
            }
            // Expiry applies until a carrier has taken the message, retries included.
            if now > m.expires_at() {
                return self.expire(&m, job, now).await;
            }
            let mut t = match m.status {
                MessageStatus::Scheduled | MessageStatus::Accepted => {
                    let from = match &m.from {
                        Some(f) => Some(f.clone()),
                        None => self.pick_sender(&m).await?,
                    };
                    let Some(from) = from else {
                        let mut t = self.transition_with_error(
                            &m,
                            MessageStatus::Failed,
                            ErrorCode::MessagingServiceEmpty.code(),
                            now,
                        );
                        t.done_job = Some(job.id);
                        return self.apply_or_reload(t).await;
                    };
                    let mut t = Transition::new(m.sid, m.status, MessageStatus::Queued, now);
                    t.jobs = self.callback_jobs(&m, MessageStatus::Queued, None, None, Some(&from));
                    t.from = Some(from);
                    t
                }
                MessageStatus::Queued => {
                    // A message over its sender's rate waits here, still `queued`.
                    if let Some(from) = &m.from {
                        match self.pacing.admit(from, &job.payload, now, m.expires_at()) {
                            Admission::Go => {}
                            Admission::Wait { run_at, payload } => {
                                return self.defer(job, run_at, payload).await;
                            }
                            Admission::Expired => return self.expire(&m, job, now).await,
                        }
                    }
                    return self.submit(&m, job).await;
                }
                // Written by versions that recorded `sending` before submitting.
                MessageStatus::Sending => return self.submit(&m, job).await,
                _ => return self.store.complete_jobs(vec![job.id]).await,
            };
            if m.num_segments == 0 {
                // A Messaging Service send counts its segments once a sender is chosen.
                m.num_segments = tern_sms::segment_info(&m.body).num_segments;
            }
            t.expected = m.status;
            let from = t.from.clone();
            match self.apply(t).await {
                Ok(()) => {
                    // What the store now holds, without reading it back.
                    m.status = MessageStatus::Queued;
                    m.from = from.or(m.from);
                    m.updated = now;
                }
                // Someone else moved it (a cancel): continue from what is stored.
                Err(StoreError::StaleStatus(_)) => {
                    m = match self.store.message(m.sid).await? {
                        Some(m) => m,
                        None => return self.store.complete_jobs(vec![job.id]).await,
                    };
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn transition_with_error(
        &self,
        m: &Message,
        to: MessageStatus,
        code: u32,
        at: i64,
    ) -> Transition {
        let mut t = Transition::new(m.sid, m.status, to, at);
        t.error_code = Some(code);
        t.jobs = self.callback_jobs(m, to, Some(code), None, None);
        t
    }

    /// Fails a message whose validity period ends before a carrier takes it, as Twilio
    /// does (30001, queue overflow).
    async fn expire(&self, m: &Message, job: &Job, now: i64) -> Result<(), StoreError> {
        let mut t = self.transition_with_error(
            m,
            MessageStatus::Failed,
            ErrorCode::QueueOverflow.code(),
            now,
        );
        t.done_job = Some(job.id);
        self.apply_or_reload(t).await
    }

    /// Puts a route job back until `run_at` without counting an attempt: its message
    /// waits for its sender's slot.
    async fn defer(&self, job: &Job, run_at: i64, payload: String) -> Result<(), StoreError> {
        metrics::counter!("tern_messages_paced_total").increment(1);
        if let Some(j) = self.store.defer_job(job.id, run_at, payload).await? {
            self.publish(vec![j]);
        }
        Ok(())
    }

    async fn apply_or_reload(&self, t: Transition) -> Result<(), StoreError> {
        match self.apply(t).await {
            Ok(()) | Err(StoreError::StaleStatus(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The sender a Messaging Service send goes from: with sticky sender (the default),
    /// the one the recipient got before while it is still in the pool; otherwise the next
    /// of the pool in turn, remembered for the recipient when sticky.
    async fn pick_sender(&self, m: &Message) -> Result<Option<String>, StoreError> {
        let Some(svc) = m.messaging_service_sid else {
            return Ok(None);
        };
        let pool = self.store.service_numbers(svc).await?;
        if pool.is_empty() {
            return Ok(None);
        }
        let sticky = match self.store.service(svc).await? {
            Some(s) => s.config.sticky(),
            None => return Ok(None),
        };
        let stuck = if sticky {
            self.store.sticky_sender(svc, &m.to).await?
        } else {
            None
        };
        if let Some(from) = &stuck
            && pool.iter().any(|(n, _)| n.phone_number == *from)
        {
            return Ok(stuck);
        }
        let counter = self.store.next_sender_counter(svc).await?;
        let Some(from) =
            tern_domain::send::pick_sender(&pool, counter).map(|(n, _)| n.phone_number)
        else {
            return Ok(None);
        };
        if !sticky {
            return Ok(Some(from));
        }
        // A concurrent first send to the same recipient may have stuck another sender;
        // the store's answer is the one every message to the recipient uses.
        let from = self
            .store
            .stick_sender(svc, &m.to, &from, stuck.as_deref(), now_ms())
            .await?;
        Ok(Some(from))
    }

    /// `t`, the outcome of a submission, with the `sending` status callback first. A
    /// message is not written as `sending` before it is offered to a carrier: that write
    /// was a third of the pipeline's transitions (PostgreSQL's costliest statement) and
    /// guarded nothing — a submission cut short by a node's death is offered again from
    /// `queued` as it was from `sending`, and only a scheduled message can be canceled —
    /// so the message goes from `queued` to its outcome in one write, and the callbacks
    /// stay `sending`, then the outcome, in that order.
    fn after_sending(&self, m: &Message, mut t: Transition) -> Transition {
        if m.status == MessageStatus::Queued {
            let mut jobs = self.callback_jobs(m, MessageStatus::Sending, None, None, None);
            jobs.append(&mut t.jobs);
            t.jobs = jobs;
        }
        t
    }

    async fn submit(&self, m: &Message, job: &Job) -> Result<(), StoreError> {
        let now = now_ms();
        let routes = self.routes();
        let Some(route) = routes.route_for(&m.to).filter(|r| !r.deny) else {
            // The route table changed since the message was accepted.
            let mut t = self.transition_with_error(
                m,
                MessageStatus::Failed,
                ErrorCode::Unknown.code(),
                now,
            );
            t.done_job = Some(job.id);
            return self.apply_or_reload(self.after_sending(m, t)).await;
        };
        let picked = self
            .brain
            .pick(route, &m.sid, job.attempts, &[])
            .and_then(|p| Some((self.carriers.get(&p.carrier)?, p)));
        let Some((carrier, pick)) = picked else {
            let mut t = self.transition_with_error(
                m,
                MessageStatus::Failed,
                ErrorCode::Unknown.code(),
                now,
            );
            t.done_job = Some(job.id);
            return self.apply_or_reload(self.after_sending(m, t)).await;
        };
        if !pick.wait.is_zero() {
            // Every carrier is at its route's max_mps: this slot is reserved for us.
            tokio::time::sleep(pick.wait).await;
        }
        let key = PathKey::new(carrier.id(), route.key());
        let route = &route.carriers;
        let last_attempt = job.attempts + 1 >= self.config.messaging.max_submit_attempts;
        let (result, attempt) = self
            .try_carrier(m, carrier.as_ref(), &key, pick.reason)
            .await;
        match result {
            Ok(Submitted { id, receipts }) => {
                // A receipt that reaches another node is that node's to watch.
                let _settle = match receipts {
                    ReceiptsTo::ThisNode => {
                        self.brain.sent(m.sid, key.clone());
                        Some(self.settling.begin(carrier.id(), &id))
                    }
                    ReceiptsTo::AnotherNode => {
                        self.brain.handed_on(&m.sid);
                        None
                    }
                };
                let mut t = self.transition(m, MessageStatus::Sent, now);
                t.carrier = Some((carrier.id().to_string(), id));
                t.done_job = Some(job.id);
                t.attempts = vec![attempt];
                self.apply_or_reload(self.after_sending(m, t)).await
            }
            // Another carrier of the route may take what this one refused; each is asked
            // at most once for a refusal, in route order.
            Err(SubmitError::Permanent { code, reason })
                if !last_attempt && (job.attempts as usize) + 1 < route.len() =>
            {
                debug!(%reason, code, carrier = carrier.id(), "carrier refused the message; trying the next one");
                metrics::counter!("tern_carrier_failovers_total", "carrier" => carrier.id().to_string()).increment(1);
                self.store.add_route_attempts(vec![attempt]).await?;
                self.retry_later(job.clone(), reason).await;
                Ok(())
            }
            Err(SubmitError::Permanent { code, reason }) => {
                self.brain.routed(&m.sid);
                debug!(%reason, code, "carrier refused the message");
                let mut t = self.transition_with_error(m, MessageStatus::Failed, code, now);
                t.done_job = Some(job.id);
                t.attempts = vec![attempt];
                self.apply_or_reload(self.after_sending(m, t)).await
            }
            Err(SubmitError::Retryable(reason)) => {
                metrics::counter!("tern_carrier_submit_retries_total", "carrier" => carrier.id().to_string()).increment(1);
                if last_attempt {
                    self.brain.routed(&m.sid);
                    let mut t = self.transition_with_error(
                        m,
                        MessageStatus::Failed,
                        ErrorCode::Unknown.code(),
                        now,
                    );
                    t.done_job = Some(job.id);
                    t.attempts = vec![attempt];
                    return self.apply_or_reload(self.after_sending(m, t)).await;
                }
                self.store.add_route_attempts(vec![attempt]).await?;
                self.retry_later(job.clone(), reason).await;
                Ok(())
            }
        }
    }

    /// Offers `m` to `carrier` on path `key`, tells the network what happened and returns
    /// the result with its route attempt (`why` says why this carrier was chosen).
    async fn try_carrier(
        &self,
        m: &Message,
        carrier: &dyn Carrier,
        key: &PathKey,
        why: String,
    ) -> (Result<Submitted, SubmitError>, RouteAttempt) {
        let sms = OutboundSms {
            message_sid: m.sid,
            from: m.from.clone().unwrap_or_default(),
            to: m.to.clone(),
            body: m.body.clone(),
            validity_secs: m.validity_secs,
        };
        let started = std::time::Instant::now();
        let result = carrier.submit_tracked(&sms).await;
        self.brain.observe(
            key,
            match &result {
                Ok(_) => Signal::SubmitOk {
                    latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                },
                Err(SubmitError::Retryable(_)) => Signal::SubmitRetryable,
                Err(SubmitError::Permanent { .. }) => Signal::SubmitRefused,
            },
        );
        if result.is_err() {
            self.brain.failed(m.sid, carrier.id());
        }
        let (outcome, carrier_message_id, error_code, reason) = match &result {
            Ok(s) => (AttemptResult::Accepted, Some(s.id.clone()), None, why),
            Err(SubmitError::Permanent { code, reason }) => (
                AttemptResult::Refused,
                None,
                Some(*code),
                format!("{why}; refused: {reason}"),
            ),
            Err(SubmitError::Retryable(reason)) => (
                AttemptResult::Retryable,
                None,
                None,
                format!("{why}; not taken now: {reason}"),
            ),
        };
        let attempt = RouteAttempt {
            message_sid: m.sid,
            carrier: carrier.id().to_owned(),
            prefix: key.prefix.clone(),
            at: now_ms(),
            result: outcome,
            carrier_message_id,
            error_code,
            reason,
        };
        (result, attempt)
    }

    // ---- Resends (the Super Network's retry on another carrier) -------------------------

    /// Sends `sid`, taken by the carrier of `from` and judged failing there, again on the
    /// next carrier of its route. `true` if another carrier took it. Bounded: a budget
    /// per second, `resend_max_carriers` per message, never once the message is final.
    async fn resend(&self, sid: Sid, from: &PathKey, why: &str) -> Result<bool, StoreError> {
        let settings = self.brain.resend_settings();
        let Some(m) = self.store.message(sid).await? else {
            return Ok(false);
        };
        let (Some(old_carrier), Some(old_id)) = (m.carrier.clone(), m.carrier_message_id.clone())
        else {
            return Ok(false);
        };
        if m.status != MessageStatus::Sent || old_carrier != from.carrier {
            return Ok(false);
        }
        let routes = self.routes();
        let Some(route) = routes.route_for(&m.to) else {
            return Ok(false);
        };
        let history = self.store.route_attempts(sid).await?;
        let taken = history
            .iter()
            .filter(|a| a.result == AttemptResult::Accepted)
            .count()
            .max(1);
        if taken >= settings.max_carriers as usize {
            metrics::counter!("tern_network_resends_total", "result" => "max_carriers")
                .increment(1);
            return Ok(false);
        }
        let mut tried: Vec<String> = history
            .iter()
            .filter(|a| a.result != AttemptResult::Retryable)
            .map(|a| a.carrier.clone())
            .collect();
        tried.push(old_carrier.clone());
        let picked = self
            .brain
            .pick(route, &sid, 0, &tried)
            .and_then(|p| Some((self.carriers.get(&p.carrier)?, p)));
        let Some((carrier, pick)) = picked else {
            metrics::counter!("tern_network_resends_total", "result" => "no_carrier").increment(1);
            return Ok(false);
        };
        if !pick.wait.is_zero() {
            tokio::time::sleep(pick.wait).await;
        }
        let key = PathKey::new(carrier.id(), route.key());
        let reason = format!("resent from {old_carrier}: {why}; {}", pick.reason);
        let (result, attempt) = self.try_carrier(&m, carrier.as_ref(), &key, reason).await;
        self.brain.routed(&sid);
        let Ok(Submitted {
            id: new_id,
            receipts,
        }) = result
        else {
            metrics::counter!("tern_network_resends_total", "result" => "refused").increment(1);
            self.store.add_route_attempts(vec![attempt]).await?;
            return Ok(false);
        };
        let now = now_ms();
        let old_id_for_query = old_id.clone();
        let given_up = RouteAttempt {
            message_sid: sid,
            carrier: old_carrier.clone(),
            prefix: from.prefix.clone(),
            at: now,
            result: AttemptResult::Resent,
            carrier_message_id: Some(old_id.clone()),
            error_code: None,
            reason: why.to_owned(),
        };
        let moved = self
            .store
            .resend_message(
                sid,
                (old_carrier, old_id),
                (carrier.id().to_owned(), new_id),
                now,
                vec![given_up, attempt],
            )
            .await?;
        if moved {
            match receipts {
                ReceiptsTo::ThisNode => self.brain.sent(sid, key),
                ReceiptsTo::AnotherNode => self.brain.handed_on(&sid),
            }
            metrics::counter!("tern_network_resends_total", "result" => "resent").increment(1);
            self.counters.resent.fetch_add(1, Ordering::Relaxed);
            self.follow_up(from.carrier.clone(), old_id_for_query, m.to.clone());
        } else {
            // A receipt (or another resend) won the race: the new carrier has a copy the
            // handset may also get.
            metrics::counter!("tern_network_resends_total", "result" => "raced").increment(1);
            self.counters.resend_races.fetch_add(1, Ordering::Relaxed);
        }
        Ok(moved)
    }

    // ---- Carrier events ----------------------------------------------------------------

    async fn event_loop(self: Arc<Self>, mut events: mpsc::Receiver<CarrierEvent>) {
        while let Some(ev) = events.recv().await {
            let me = self.clone();
            tokio::spawn(async move {
                match ev {
                    CarrierEvent::Receipt(r) => me.on_receipt(r).await,
                    CarrierEvent::Inbound(sms) => {
                        if let Err(e) = me.receive_inbound(sms).await {
                            warn!(error = %e, "could not take an inbound message");
                        }
                    }
                }
            });
        }
    }

    async fn on_receipt(&self, r: Receipt) {
        // A receipt can overtake the commit of the submission it answers; look again
        // a few times before giving it up to the receipt sweeper.
        for attempt in 0..20u32 {
            // Submitted from this node and being written: wait for that, not a poll.
            self.settling
                .settled(&r.carrier, &r.carrier_message_id, Duration::from_secs(10))
                .await;
            match self.apply_receipt(&r, true).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => warn!(error = %e, "could not apply a receipt"),
            }
            tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
        }
        metrics::counter!("tern_receipts_unmatched_total", "carrier" => r.carrier.clone())
            .increment(1);
    }

    /// Applies a receipt; `false` when no message with its carrier id exists (yet). With
    /// `hold`, an undelivered receipt first waits `undelivered_hold_ms` and, if the path is
    /// judged failing by then, the message is resent rather than ended.
    async fn apply_receipt(&self, r: &Receipt, hold: bool) -> Result<bool, StoreError> {
        let Some(m) = self
            .store
            .message_by_carrier_id(&r.carrier, &r.carrier_message_id)
            .await?
        else {
            return Ok(false);
        };
        let (to, code) = match r.outcome {
            ReceiptOutcome::Delivered => (MessageStatus::Delivered, None),
            ReceiptOutcome::Undelivered(c) => (MessageStatus::Undelivered, Some(c)),
            ReceiptOutcome::Failed(c) => (MessageStatus::Failed, Some(c)),
        };
        // The receipt of the attempt the message is on, or of one it was resent from.
        let current = m.carrier.as_deref() == Some(r.carrier.as_str())
            && m.carrier_message_id.as_deref() == Some(r.carrier_message_id.as_str());
        let key = self.path(&r.carrier, &m.to);
        if check_transition(m.status, to).is_err() {
            if to == MessageStatus::Delivered
                && m.status == MessageStatus::Delivered
                && (!current || self.was_resent(m.sid).await?)
            {
                // Both carriers delivered it: the handset got it twice.
                metrics::counter!("tern_network_duplicate_deliveries_total").increment(1);
                self.counters
                    .duplicate_deliveries
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                metrics::counter!("tern_receipts_duplicate_total").increment(1);
            }
            if !current {
                self.brain
                    .receipt(m.sid, key, to == MessageStatus::Delivered, 0);
            }
            return Ok(true);
        }
        let latency = m.sent.map_or(0, |s| (now_ms() - s).max(0) as u64);
        self.brain
            .receipt(m.sid, key.clone(), to == MessageStatus::Delivered, latency);
        if !current && to != MessageStatus::Delivered {
            // An attempt the message was resent from failed: the current one decides.
            return Ok(true);
        }
        let settings = self.brain.resend_settings();
        if hold && current && to == MessageStatus::Undelivered && settings.enabled {
            tokio::time::sleep(settings.undelivered_hold).await;
            if self.brain.judged_failing(&key) && self.brain.take_resend() {
                let why = format!("undelivered ({}) on a failing path", code.unwrap_or(0));
                if self.resend(m.sid, &key, &why).await? {
                    return Ok(true);
                }
            }
            // Still the attempt the receipt speaks of? (A duplicate receipt may have
            // resent it meanwhile.)
            let still = self.store.message(m.sid).await?;
            if still
                .as_ref()
                .map(|s| (&s.carrier, &s.carrier_message_id, s.status))
                != Some((&m.carrier, &m.carrier_message_id, m.status))
            {
                return Ok(true);
            }
        }
        if !current {
            metrics::counter!("tern_network_resends_total", "result" => "first_delivered")
                .increment(1);
        }
        let mut t = Transition::new(m.sid, m.status, to, now_ms());
        t.error_code = code;
        t.raw_dlr_done_date = r.done_date.clone();
        t.jobs = self.callback_jobs(&m, to, code, r.done_date.as_deref(), None);
        self.apply_or_reload(t).await?;
        Ok(true)
    }

    /// Asks the carrier a message was resent from, after the receipt grace, what became
    /// of its copy: a late delivery corrects that carrier's standing and, with the other
    /// copy delivered too, is counted as a duplicate at the handset. In memory only: a
    /// restart forgets it, which only loses that evidence.
    fn follow_up(&self, carrier: String, carrier_message_id: String, to: String) {
        let Some(c) = self.carriers.get(&carrier).cloned() else {
            return;
        };
        let grace = Duration::from_secs(self.config.messaging.receipt_grace_secs);
        let Some(me) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(r) = c.query(&carrier_message_id, &to).await
                && let Err(e) = me.apply_receipt(&r, false).await
            {
                warn!(error = %e, "could not apply the receipt of a resent message's first copy");
            }
        });
    }

    /// Whether `sid` was ever sent again on another carrier.
    async fn was_resent(&self, sid: Sid) -> Result<bool, StoreError> {
        Ok(self
            .store
            .route_attempts(sid)
            .await?
            .iter()
            .any(|a| a.result == AttemptResult::Resent))
    }

    /// Reports queue depths and, on the region's leader only (nodes share the store, and
    /// any node's carrier binds can answer a query), asks carriers about messages whose
    /// receipt is overdue.
    async fn sweep_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            for kind in JobKind::ALL {
                metrics::gauge!("tern_queue_depth", "queue" => kind.as_str())
                    .set(self.queue.depth(kind) as f64);
            }
            if !self.leadership.is_leader() {
                continue;
            }
            let grace = self.config.messaging.receipt_grace_secs as i64 * 1000;
            let overdue = match self
                .store
                .stale_messages(&[MessageStatus::Sent], now_ms() - grace, 500)
                .await
            {
                Ok(v) => v,
                Err(e) => {
                    warn!(error = %e, "receipt sweep could not read the store");
                    continue;
                }
            };
            for m in overdue {
                // A lost lease stops the sweep at once, not after a batch of queries.
                if !self.leadership.is_leader() {
                    break;
                }
                let (Some(carrier), Some(id)) = (&m.carrier, &m.carrier_message_id) else {
                    continue;
                };
                let Some(c) = self.carriers.get(carrier) else {
                    continue;
                };
                if let Some(r) = c.query(id, &m.to).await {
                    metrics::counter!("tern_receipts_recovered_total", "carrier" => carrier.clone()).increment(1);
                    let _ = self.apply_receipt(&r, false).await;
                }
            }
        }
    }

    /// On the region's leader, once a minute (and at once on taking the lead), deletes the
    /// messages past `[retention] message_days`, a batch at a time; a loop of its own, so
    /// that a large backlog never holds up the receipt sweep.
    async fn retention_loop(self: Arc<Self>) {
        let days = self.config.retention.message_days;
        if days == 0 {
            return;
        }
        let mut leads = self.leadership.subscribe();
        loop {
            if leads.wait_for(|l| *l).await.is_err() {
                return;
            }
            self.retain(days).await;
            // The next round a minute on, or at once on a new term.
            tokio::select! {
                () = tokio::time::sleep(RETENTION_EVERY) => {}
                _ = leads.wait_for(|l| !*l) => {}
            }
        }
    }

    /// Deletes the messages past `days`, a batch at a time, while this node leads.
    async fn retain(&self, days: u32) {
        let before = now_ms() - i64::from(days) * 86_400_000;
        while self.leadership.is_leader() {
            match self
                .store
                .delete_stale_messages(before, RETENTION_BATCH)
                .await
            {
                Ok(n) => {
                    metrics::counter!("tern_retention_deleted_total").increment(n);
                    if n > 0 {
                        info!(messages = n, days, "deleted messages past their retention");
                    }
                    if n < u64::from(RETENTION_BATCH) {
                        return;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "retention could not delete old messages; it runs again later");
                    return;
                }
            }
        }
    }

    // ---- Inbound ------------------------------------------------------------------------

    /// Takes a carrier-originated message: records it, applies opt-out keywords, and
    /// queues the webhook to the number's `SmsUrl`. `None` if no account owns `To`.
    pub async fn receive_inbound(&self, sms: InboundSms) -> Result<Option<Message>, EngineError> {
        let Some(number) = self.store.number_by_phone(&sms.to).await? else {
            metrics::counter!("tern_inbound_unrouted_total").increment(1);
            return Ok(None);
        };
        let service = self.store.number_service(number.sid).await?;
        let now = now_ms();
        let seg = tern_sms::segment_info(&sms.body);
        let m = Message {
            messaging_service_sid: service.as_ref().map(|s| s.sid),
            from: Some(sms.from.clone()),
            carrier: Some(sms.carrier.clone()),
            sent: Some(now),
            ..Message::new(
                number.account_sid,
                Direction::Inbound,
                MessageStatus::Received,
                sms.to.clone(),
                sms.body.clone(),
                seg.num_segments,
                now,
            )
        };
        let keyword = keywords::classify(&sms.body);
        match keyword {
            Some(Keyword::OptOut) => {
                self.store
                    .set_opt_out(number.account_sid, &sms.from, true, now)
                    .await?
            }
            Some(Keyword::OptIn) => {
                self.store
                    .set_opt_out(number.account_sid, &sms.from, false, now)
                    .await?
            }
            _ => {}
        }
        let mut jobs = Vec::new();
        // A number in a Messaging Service takes the service's inbound settings when it has
        // them, as on Twilio; otherwise the number's own.
        let svc_target = service.as_ref().and_then(|s| {
            let c = &s.config;
            let url = c.inbound_request_url.clone().filter(|u| !u.is_empty())?;
            let method = c.inbound_method.clone().unwrap_or_else(|| "POST".into());
            let fallback = c
                .fallback_url
                .clone()
                .filter(|u| !u.is_empty())
                .map(|f| (f, "POST".to_string()));
            Some((url, method, fallback))
        });
        let target = svc_target.or_else(|| {
            let c = &number.config;
            let url = c.sms_url.clone().filter(|u| !u.is_empty())?;
            let method = c.sms_method.clone().unwrap_or_else(|| "POST".into());
            let fallback = c
                .sms_fallback_url
                .clone()
                .filter(|u| !u.is_empty())
                .map(|f| {
                    (
                        f,
                        c.sms_fallback_method
                            .clone()
                            .unwrap_or_else(|| "POST".into()),
                    )
                });
            Some((url, method, fallback))
        });
        let target = match target {
            Some(t) => Some(t),
            None => match self.customer_links.get() {
                Some(links) if links.takes_inbound(number.account_sid).await => {
                    Some((format!("{SMPP_CALLBACK_SCHEME}*"), "POST".into(), None))
                }
                _ => None,
            },
        };
        if let Some((url, method, fallback)) = target {
            let job = WebhookJob {
                purpose: Purpose::Inbound,
                account_sid: number.account_sid,
                request: WebhookRequest {
                    url,
                    method,
                    params: callbacks::inbound_params(&m),
                    idempotency_token: token(),
                },
                fallback,
            };
            if let Ok(payload) = serde_json::to_string(&job) {
                jobs.push(NewJob {
                    kind: JobKind::Webhook,
                    subject: m.sid,
                    run_at: 0,
                    payload,
                });
            }
        }
        let jobs = self.insert_message(m.clone(), jobs).await?;
        metrics::counter!("tern_messages_received_total").increment(1);
        self.publish(jobs);
        if let Some(k) = keyword {
            self.reply(&number, &sms.from, k.reply().to_string(), None)
                .await?;
        }
        Ok(Some(m))
    }

    /// Queues an `outbound-reply` message from `number` to `to`.
    async fn reply(
        &self,
        number: &PhoneNumber,
        to: &str,
        body: String,
        status_callback: Option<String>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let seg = tern_sms::segment_info(&body);
        let m = Message {
            from: Some(number.phone_number.clone()),
            status_callback,
            validity_secs: tern_domain::send::MAX_VALIDITY_SECS,
            ..Message::new(
                number.account_sid,
                Direction::OutboundReply,
                MessageStatus::Queued,
                to.to_string(),
                body,
                seg.num_segments,
                now,
            )
        };
        let route = NewJob {
            kind: JobKind::Route,
            subject: m.sid,
            run_at: now,
            payload: String::new(),
        };
        let jobs = self.insert_message(m, vec![route]).await?;
        self.publish(jobs);
        Ok(())
    }

    /// Writes a new message with its first jobs; should the answer be lost with the
    /// connection, the jobs are looked for again once the store is back.
    async fn insert_message(&self, m: Message, jobs: Vec<NewJob>) -> Result<Vec<Job>, StoreError> {
        let sid = m.sid;
        self.store
            .insert_message(m, jobs)
            .await
            .inspect_err(|e| self.resync.unsure(sid, e))
    }

    // ---- Webhooks -------------------------------------------------------------------------

    async fn webhook_loop(self: Arc<Self>) {
        while let Some(job) = self.queue.next(JobKind::Webhook).await {
            {
                let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(chain) = chains.get_mut(&job.subject) {
                    // A copy of a job this node holds (published again) is not run twice.
                    if chain.running != job.id && chain.waiting.iter().all(|j| j.id != job.id) {
                        chain.waiting.push_back(job);
                    }
                    continue;
                }
                chains.insert(
                    job.subject,
                    Chain {
                        running: job.id,
                        waiting: VecDeque::new(),
                    },
                );
            }
            let me = self.clone();
            let span = info_span!("webhooks", message_sid = %job.subject);
            tokio::spawn(me.run_chain(job).instrument(span));
        }
    }

    /// Delivers one message's webhooks one after another, in the order they were made.
    async fn run_chain(self: Arc<Self>, first: Job) {
        let subject = first.subject;
        let mut next = Some(first);
        while let Some(job) = next {
            if self.claim(&job).await {
                self.deliver(job).await;
            }
            let mut chains = self.chains.lock().unwrap_or_else(|p| p.into_inner());
            next = chains.get_mut(&subject).and_then(|c| {
                let job = c.waiting.pop_front()?;
                c.running = job.id;
                Some(job)
            });
            if next.is_none() {
                chains.remove(&subject);
            }
        }
    }

    /// Takes `job` for this node in the store; `false` when another live node runs it (a
    /// copy published again after a restart or a peer's death) or it is done.
    async fn claim(&self, job: &Job) -> bool {
        let holder = self.leadership.holder();
        let presences = self.leadership.presence_prefix();
        loop {
            match self
                .store
                .claim_job(job.id, holder, presences, now_ms())
                .await
            {
                Ok(true) => return true,
                Ok(false) => {
                    metrics::counter!("tern_webhooks_skipped_total").increment(1);
                    debug!(
                        job = job.id,
                        "webhook job done or held by another node; skipped"
                    );
                    return false;
                }
                Err(e) => {
                    warn!(error = %e, "webhook waits for the store");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn deliver(&self, mut job: Job) {
        let payload: WebhookJob = match serde_json::from_str(&job.payload) {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "dropping an unreadable webhook job");
                let _ = self.store.complete_jobs(vec![job.id]).await;
                return;
            }
        };
        loop {
            let token = match self.store.account(payload.account_sid).await {
                Ok(Some(a)) => a.auth_token,
                Ok(None) => {
                    let _ = self.store.complete_jobs(vec![job.id]).await;
                    return;
                }
                Err(e) => {
                    warn!(error = %e, "webhook waits for the store");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            // A permit per attempt, not per webhook: retries wait without holding one.
            let Ok(permit) = self.webhook_permits.clone().acquire_owned().await else {
                return;
            };
            let smpp_target = payload.request.url.strip_prefix(SMPP_CALLBACK_SCHEME);
            let mut outcome = match (smpp_target, self.customer_links.get()) {
                (Some(target), Some(links)) => {
                    links
                        .deliver(
                            payload.account_sid,
                            target,
                            payload.purpose,
                            &payload.request.params,
                        )
                        .await
                }
                (Some(_), None) => Attempt::Retry("the SMPP server is not running".into()),
                (None, _) => self.webhooks.attempt(&payload.request, &token).await,
            };
            if !matches!(outcome, Attempt::Delivered { .. })
                && let Some((url, method)) = &payload.fallback
            {
                let req = WebhookRequest {
                    url: url.clone(),
                    method: method.clone(),
                    ..payload.request.clone()
                };
                let fb = self.webhooks.attempt(&req, &token).await;
                if matches!(fb, Attempt::Delivered { .. }) {
                    outcome = fb;
                }
            }
            let label = match &outcome {
                Attempt::Delivered { .. } => "delivered",
                Attempt::Retry(_) => "retry",
                Attempt::Rejected(_) => "rejected",
            };
            metrics::counter!("tern_webhook_attempts_total", "outcome" => label).increment(1);
            match outcome {
                Attempt::Delivered { body, content_type } => {
                    if payload.purpose == Purpose::Inbound {
                        self.follow_twiml(&payload, &token, body, content_type, 0)
                            .await;
                    }
                    let _ = self.store.complete_jobs(vec![job.id]).await;
                    return;
                }
                Attempt::Rejected(why) => {
                    debug!(url = %payload.request.url, %why, "webhook rejected; not retried");
                    let _ = self.store.complete_jobs(vec![job.id]).await;
                    return;
                }
                Attempt::Retry(why) => {
                    if job.attempts + 1 >= self.config.webhooks.max_attempts {
                        metrics::counter!("tern_webhooks_abandoned_total").increment(1);
                        warn!(url = %payload.request.url, %why, attempts = job.attempts + 1, "webhook given up");
                        let _ = self.store.complete_jobs(vec![job.id]).await;
                        return;
                    }
                    let delay = backoff(job.attempts + 1);
                    let run_at = now_ms() + delay.as_millis() as i64;
                    if let Ok(Some(j)) = self.store.retry_job(job.id, run_at).await {
                        job = j;
                    } else {
                        job.attempts += 1;
                    }
                    drop(permit);
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Carries out the TwiML an `SmsUrl` answered with.
    async fn follow_twiml(
        &self,
        hook: &WebhookJob,
        token: &str,
        body: Vec<u8>,
        content_type: Option<String>,
        depth: u32,
    ) {
        if body.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let xml_like = content_type
            .as_deref()
            .is_none_or(|c| c.contains("xml") || c.starts_with("text/"));
        if !xml_like {
            return;
        }
        let twiml = match tern_twiml::parse_messaging(&body) {
            Ok(t) => t,
            Err(e) => {
                metrics::counter!("tern_twiml_errors_total").increment(1);
                warn!(error = %e, "the SmsUrl answered with TwiML Tern cannot follow");
                return;
            }
        };
        let param = |k: &str| {
            hook.request
                .params
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let (Some(handset), Some(ours)) = (param("From"), param("To")) else {
            return;
        };
        for verb in twiml.verbs {
            match verb {
                tern_twiml::Verb::Message(msg) => {
                    let from = msg.from.clone().unwrap_or_else(|| ours.clone());
                    let Ok(Some(number)) = self.store.number_by_phone(&from).await else {
                        continue;
                    };
                    if number.account_sid != hook.account_sid {
                        continue;
                    }
                    let to = msg.to.clone().unwrap_or_else(|| handset.clone());
                    let cb = msg.action.clone().or(msg.status_callback.clone());
                    if let Err(e) = self.reply(&number, &to, msg.body, cb).await {
                        warn!(error = %e, "could not queue a TwiML reply");
                    }
                }
                tern_twiml::Verb::Redirect { url, method } => {
                    if depth >= MAX_REDIRECTS {
                        warn!("too many TwiML redirects; stopping");
                        return;
                    }
                    let req = WebhookRequest {
                        url,
                        method: method.unwrap_or_else(|| "POST".into()),
                        ..hook.request.clone()
                    };
                    if let Attempt::Delivered { body, content_type } =
                        self.webhooks.attempt(&req, token).await
                    {
                        let next = WebhookJob {
                            request: req,
                            ..hook.clone()
                        };
                        Box::pin(self.follow_twiml(&next, token, body, content_type, depth + 1))
                            .await;
                    }
                    return;
                }
            }
        }
    }

    // ---- Message Feedback ---------------------------------------------------------------

    /// Records the customer's Message Feedback on message `sid` (Twilio's
    /// `Messages/{Sid}/Feedback.json`): `confirmed` when the recipient demonstrably got it.
    /// The message must be `account`'s and created with `ProvideFeedback=true`; otherwise
    /// there is no such resource (20404). Posting again replaces the outcome.
    ///
    /// A first report, or one that changes the outcome, is a [`Signal::Feedback`] for the
    /// path the message took, once a carrier took it; repeating an outcome is stored but not
    /// counted again, so a client's retries do not weigh on the path.
    pub async fn feedback(
        &self,
        account: &Account,
        sid: Sid,
        confirmed: bool,
    ) -> Result<Feedback, EngineError> {
        let not_found = || EngineError::Rejected {
            code: ErrorCode::NotFound,
            message: format!(
                "The requested resource /2010-04-01/Accounts/{}/Messages/{sid}/Feedback.json \
                 was not found",
                account.sid
            ),
        };
        let m = match self.store.message(sid).await? {
            Some(m) if m.account_sid == account.sid && m.provide_feedback => m,
            _ => return Err(not_found()),
        };
        let outcome = if confirmed {
            FeedbackOutcome::Confirmed
        } else {
            FeedbackOutcome::Unconfirmed
        };
        // `None`: the message was deleted since it was read.
        let set = self
            .store
            .set_feedback(sid, outcome, now_ms())
            .await?
            .ok_or_else(not_found)?;
        if set.previous != Some(outcome)
            && let Some(carrier) = &m.carrier
        {
            self.brain
                .observe(&self.path(carrier, &m.to), Signal::Feedback { confirmed });
        }
        debug!(message_sid = %sid, outcome = outcome.as_str(), "message feedback");
        Ok(set.feedback)
    }
}

#[async_trait::async_trait]
impl crate::forwarding::Served for Engine {
    async fn vouches_for(&self, sms: &OutboundSms) -> bool {
        match self.store.message(sms.message_sid).await {
            Ok(Some(m)) => {
                m.direction != Direction::Inbound
                    && matches!(
                        m.status,
                        // `sent`: a resend moves a message to another carrier.
                        MessageStatus::Queued | MessageStatus::Sending | MessageStatus::Sent
                    )
                    && m.to == sms.to
                    && m.body == sms.body
                    && m.from.as_deref().unwrap_or_default() == sms.from
            }
            Ok(None) => false,
            Err(e) => {
                warn!(error = %e, "cannot look up a message another node asks to submit");
                false
            }
        }
    }

    /// A message this node submitted for another node: its receipt comes here, so the
    /// Super Network here awaits it.
    fn submitted(&self, carrier: &str, sms: &OutboundSms) {
        self.brain
            .sent(sms.message_sid, self.path(carrier, &sms.to));
    }
}
