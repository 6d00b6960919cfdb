//! Tern's durable state behind one trait, [`Store`].
//!
//! Every state change of a message is a [`Transition`] applied with compare-and-set on the
//! current status, together with the jobs it causes (the outbox) and the job it completes,
//! in one transaction. Callers hand the returned jobs to the queue only after the store
//! has committed them.
//!
//! Implementations: [`sqlite::SqliteStore`] (the embedded default). PostgreSQL slots in
//! behind the same trait.

pub mod conformance;
pub mod model;
pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use tern_bus::Job;
use tern_types::{MessageStatus, Sid};

pub use model::*;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (a number already provisioned…).
    #[error("conflict: {0}")]
    Conflict(String),
    /// A compare-and-set transition found another status.
    #[error("message is {0}, not the expected status")]
    StaleStatus(MessageStatus),
    #[error("not found")]
    NotFound,
    /// The database cannot be reached or written; the caller should retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value does not parse: a bug or a damaged database.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A cheap round trip to the database (for readiness): `Err` while it cannot be reached.
    async fn ping(&self) -> Result<()>;

    // Accounts
    async fn create_account(&self, account: Account) -> Result<()>;
    async fn account(&self, sid: Sid) -> Result<Option<Account>>;
    /// The first top-level account created, if any (the one `tern up` reuses).
    async fn first_account(&self) -> Result<Option<Account>>;
    async fn subaccounts(&self, parent: Sid) -> Result<Vec<Account>>;
    async fn update_account(
        &self,
        sid: Sid,
        friendly_name: Option<String>,
        status: Option<AccountStatus>,
        at: i64,
    ) -> Result<Option<Account>>;

    // API keys
    async fn create_key(&self, key: ApiKey) -> Result<()>;
    async fn key(&self, sid: Sid) -> Result<Option<ApiKey>>;
    async fn keys(&self, account: Sid) -> Result<Vec<ApiKey>>;
    async fn update_key(&self, sid: Sid, friendly_name: String, at: i64) -> Result<Option<ApiKey>>;
    async fn delete_key(&self, sid: Sid) -> Result<bool>;

    // Phone numbers
    async fn create_number(&self, number: PhoneNumber) -> Result<()>;
    async fn number(&self, sid: Sid) -> Result<Option<PhoneNumber>>;
    async fn number_by_phone(&self, phone: &str) -> Result<Option<PhoneNumber>>;
    async fn numbers(&self, account: Sid) -> Result<Vec<PhoneNumber>>;
    async fn update_number(
        &self,
        sid: Sid,
        cfg: NumberConfig,
        at: i64,
    ) -> Result<Option<PhoneNumber>>;
    async fn delete_number(&self, sid: Sid) -> Result<bool>;

    // Messaging services
    async fn create_service(&self, service: MessagingService) -> Result<()>;
    async fn service(&self, sid: Sid) -> Result<Option<MessagingService>>;
    async fn services(&self, account: Sid) -> Result<Vec<MessagingService>>;
    async fn update_service(
        &self,
        sid: Sid,
        cfg: ServiceConfig,
        at: i64,
    ) -> Result<Option<MessagingService>>;
    async fn delete_service(&self, sid: Sid) -> Result<bool>;
    async fn add_service_number(&self, service: Sid, number: Sid, at: i64) -> Result<()>;
    async fn remove_service_number(&self, service: Sid, number: Sid) -> Result<bool>;
    /// The pool, in the order the numbers were added, with the time each was added.
    async fn service_numbers(&self, service: Sid) -> Result<Vec<(PhoneNumber, i64)>>;
    /// The Messaging Service whose pool holds `number`, if any.
    async fn number_service(&self, number: Sid) -> Result<Option<MessagingService>>;
    /// Increments and returns the service's round-robin counter.
    async fn next_sender_counter(&self, service: Sid) -> Result<u64>;
    /// The sender the service stuck to recipient `to` (sticky sender), if any. It may have
    /// left the pool since; the caller checks.
    async fn sticky_sender(&self, service: Sid, to: &str) -> Result<Option<String>>;
    /// Sticks `sender` to the service's recipient `to` if nothing is stuck there yet or
    /// `replacing` is (a sender that left the pool), and returns the sender stuck afterwards:
    /// another one when a concurrent first send got there first, so that every message to
    /// a recipient agrees. Deleting the service deletes its mappings.
    async fn stick_sender(
        &self,
        service: Sid,
        to: &str,
        sender: &str,
        replacing: Option<&str>,
        at: i64,
    ) -> Result<String>;

    // SMPP credentials (a Tern extension: the logins of Tern's own SMPP server)
    /// Stores a new credential. `system_id` is unique across the whole store (a bind names
    /// nothing else): a taken one is [`StoreError::Conflict`], whoever holds it.
    async fn create_smpp_credential(&self, c: SmppCredential) -> Result<()>;
    /// The account's credentials in creation order.
    async fn smpp_credentials(&self, account: Sid) -> Result<Vec<SmppCredential>>;
    /// The credential a bind names, whichever account holds it.
    async fn smpp_credential_by_system_id(&self, system_id: &str)
    -> Result<Option<SmppCredential>>;
    /// Deletes the account's credential `sid`; `false` if there is none or it is another
    /// account's.
    async fn delete_smpp_credential(&self, account: Sid, sid: Sid) -> Result<bool>;

    // Messages
    /// Writes a new message and its first jobs in one transaction.
    async fn insert_message(&self, message: Message, jobs: Vec<NewJob>) -> Result<Vec<Job>>;
    /// [`Store::insert_message`] for an outbound message, unless its recipient (`to`) opted
    /// out of the account's messages: then nothing is written and `None`. The check and the
    /// write are one step, so an opt-out committed first always wins.
    async fn insert_outbound(
        &self,
        message: Message,
        jobs: Vec<NewJob>,
    ) -> Result<Option<Vec<Job>>>;
    async fn message(&self, sid: Sid) -> Result<Option<Message>>;
    /// The message a carrier's id names: the carrier's current one, or one of an earlier
    /// accepted attempt it was resent from (compare `Message::carrier_message_id`).
    async fn message_by_carrier_id(&self, carrier: &str, id: &str) -> Result<Option<Message>>;
    async fn messages(&self, account: Sid, query: MessageQuery) -> Result<Page<Message>>;
    /// Applies a status change if the message is still in `expected` status.
    async fn transition(&self, t: Transition) -> Result<Vec<Job>>;
    /// Applies many transitions in one call; each succeeds or fails on its own.
    async fn transitions(&self, ts: Vec<Transition>) -> Result<Vec<Result<Vec<Job>>>>;
    /// Moves a `sent` message from the carrier attempt `from` (carrier, carrier's id) to
    /// `to`, recording `attempts`; `false` (and nothing written) unless the message is still
    /// `sent` on `from` — a receipt or another resend came first.
    async fn resend_message(
        &self,
        sid: Sid,
        from: (String, String),
        to: (String, String),
        at: i64,
        attempts: Vec<RouteAttempt>,
    ) -> Result<bool>;
    /// Appends route attempts that change nothing else (a retry scheduled for later).
    async fn add_route_attempts(&self, attempts: Vec<RouteAttempt>) -> Result<()>;
    /// The message's route attempts, oldest first. Deleting the message deletes them.
    async fn route_attempts(&self, message: Sid) -> Result<Vec<RouteAttempt>>;
    async fn redact_message(&self, sid: Sid, at: i64) -> Result<Option<Message>>;
    async fn delete_message(&self, sid: Sid) -> Result<bool>;
    /// Retention: deletes up to `limit` messages in a final status last changed before
    /// `updated_before`, oldest first, with their feedback and route attempts —
    /// none that still has a job (a callback being retried). Says how many.
    async fn delete_stale_messages(&self, updated_before: i64, limit: u32) -> Result<u64>;
    /// Messages in one of `statuses` last changed before `updated_before`, oldest first.
    async fn stale_messages(
        &self,
        statuses: &[MessageStatus],
        updated_before: i64,
        limit: u32,
    ) -> Result<Vec<Message>>;

    // Message Feedback
    /// Records `outcome` as message `message`'s feedback at `at`: the first report creates
    /// it (created = updated = `at`), a later one replaces the outcome and moves `updated`.
    /// `None` if there is no such message. Whether the message asked for feedback is the
    /// caller's rule, not the store's.
    async fn set_feedback(
        &self,
        message: Sid,
        outcome: FeedbackOutcome,
        at: i64,
    ) -> Result<Option<FeedbackSet>>;
    /// The message's feedback, if any was reported. Deleting the message deletes it.
    async fn feedback(&self, message: Sid) -> Result<Option<Feedback>>;

    // Opt-outs (per account and handset)
    async fn set_opt_out(
        &self,
        account: Sid,
        handset: &str,
        opted_out: bool,
        at: i64,
    ) -> Result<()>;
    async fn is_opted_out(&self, account: Sid, handset: &str) -> Result<bool>;

    // Leases (who does once-per-region work; see [`Lease`])
    /// Grants `name` to `holder` until `now + ttl_ms` if it is free, has run out at `now`,
    /// or is already `holder`'s (a renewal). `None` while someone else holds it. Atomic:
    /// of several holders asking at once, one gets it.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u32,
        now: i64,
    ) -> Result<Option<Lease>>;
    /// Gives `name` up if `holder` holds it, so another may take it at once; `false` if it
    /// is someone else's (or was never taken).
    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool>;
    /// Every lease whose name starts with `prefix` (literally), by name, including run-out
    /// and released ones ([`Lease::is_held_at`] tells).
    async fn leases(&self, prefix: &str) -> Result<Vec<Lease>>;
    /// Deletes the released leases whose name starts with `prefix` (literally), and says
    /// how many: for names that are not reused (a process's presence), which would
    /// otherwise pile up. Never for a name whose epoch fences its holders.
    async fn delete_released_leases(&self, prefix: &str) -> Result<u64>;

    // Jobs
    /// Every job not yet completed, in id order (to publish after a restart).
    async fn pending_jobs(&self) -> Result<Vec<Job>>;
    async fn complete_jobs(&self, ids: Vec<i64>) -> Result<()>;
    /// Takes job `id` to run for `holder`: `true` if it is now `holder`'s — it had no
    /// owner, was `holder`'s already, or its owner's presence lease (`presence_prefix` +
    /// owner) is not held at `now`, as when that node died or stopped. `false` if the job
    /// is gone or a live node owns it (a copy published again while that node runs it).
    /// Not durable by itself: a claim lost to a crash only lets a copy run again.
    async fn claim_job(
        &self,
        id: i64,
        holder: &str,
        presence_prefix: &str,
        now: i64,
    ) -> Result<bool>;
    /// Records a failed attempt and the time of the next one.
    async fn retry_job(&self, id: i64, run_at: i64) -> Result<Option<Job>>;
    /// Moves a job to `run_at` with a new `payload` without counting an attempt: the job
    /// waits its turn rather than having failed. `None` if the job is gone.
    async fn defer_job(&self, id: i64, run_at: i64, payload: String) -> Result<Option<Job>>;
    /// Creates jobs outside a transition (webhooks for inbound messages…).
    async fn insert_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Job>>;
}
