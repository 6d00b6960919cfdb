//! Records the store keeps. Times are milliseconds since the Unix epoch.

use tern_bus::JobKind;
use tern_types::{Direction, MessageStatus, Sid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Suspended,
    Closed,
}

impl AccountStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Active => "active",
            AccountStatus::Suspended => "suspended",
            AccountStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<AccountStatus> {
        [
            AccountStatus::Active,
            AccountStatus::Suspended,
            AccountStatus::Closed,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub sid: Sid,
    /// The owning account of a subaccount.
    pub parent_sid: Option<Sid>,
    pub friendly_name: String,
    /// Kept retrievable because it is the HMAC key of webhook signatures.
    pub auth_token: String,
    pub status: AccountStatus,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub sid: Sid,
    pub account_sid: Sid,
    pub friendly_name: String,
    /// SHA-256 of the secret; the secret itself is shown once and never stored.
    pub secret_hash: Vec<u8>,
    pub created: i64,
    pub updated: i64,
}

/// An account's SMPP login: what a customer's ESME names in `bind_*` (`system_id`,
/// `password`). `system_id` is unique across the store, because a bind names nothing
/// else. The password is kept only as an argon2id PHC string (`tern_domain::credentials`).
#[derive(Clone, PartialEq)]
pub struct SmppCredential {
    pub sid: Sid,
    pub account_sid: Sid,
    pub system_id: String,
    /// `$argon2id$v=19$…`; never printed (see the `Debug` impl).
    pub password_hash: String,
    pub friendly_name: String,
    pub created: i64,
}

impl std::fmt::Debug for SmppCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppCredential")
            .field("sid", &self.sid)
            .field("account_sid", &self.account_sid)
            .field("system_id", &self.system_id)
            .field("password_hash", &"<redacted>")
            .field("friendly_name", &self.friendly_name)
            .field("created", &self.created)
            .finish()
    }
}

/// The configurable URLs of a phone number; `None` leaves a field unchanged on update.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NumberConfig {
    pub friendly_name: Option<String>,
    pub sms_url: Option<String>,
    pub sms_method: Option<String>,
    pub sms_fallback_url: Option<String>,
    pub sms_fallback_method: Option<String>,
    pub status_callback: Option<String>,
    pub status_callback_method: Option<String>,
    pub voice_url: Option<String>,
    pub voice_method: Option<String>,
    pub voice_fallback_url: Option<String>,
    pub voice_fallback_method: Option<String>,
}

impl NumberConfig {
    /// Overlays the fields set in `update`.
    pub fn merge(&mut self, update: NumberConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if update.$f.is_some() { self.$f = update.$f; } )* };
        }
        take!(
            friendly_name,
            sms_url,
            sms_method,
            sms_fallback_url,
            sms_fallback_method,
            status_callback,
            status_callback_method,
            voice_url,
            voice_method,
            voice_fallback_url,
            voice_fallback_method
        );
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumber {
    pub sid: Sid,
    pub account_sid: Sid,
    pub phone_number: String,
    pub config: NumberConfig,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ServiceConfig {
    pub friendly_name: Option<String>,
    pub status_callback: Option<String>,
    pub inbound_request_url: Option<String>,
    pub inbound_method: Option<String>,
    pub fallback_url: Option<String>,
    pub validity_period: Option<u32>,
    /// Whether a recipient keeps getting messages from the same sender of the pool
    /// (Twilio's `StickySender`); `None` is Twilio's default, on.
    pub sticky_sender: Option<bool>,
}

impl ServiceConfig {
    pub fn merge(&mut self, u: ServiceConfig) {
        macro_rules! take {
            ($($f:ident),*) => { $( if u.$f.is_some() { self.$f = u.$f; } )* };
        }
        take!(
            friendly_name,
            status_callback,
            inbound_request_url,
            inbound_method,
            fallback_url,
            validity_period,
            sticky_sender
        );
    }

    /// Whether sticky sender is on, Twilio's default when never set.
    pub fn sticky(&self) -> bool {
        self.sticky_sender.unwrap_or(true)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessagingService {
    pub sid: Sid,
    pub account_sid: Sid,
    pub config: ServiceConfig,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub sid: Sid,
    pub account_sid: Sid,
    pub messaging_service_sid: Option<Sid>,
    pub direction: Direction,
    /// `None` until a Messaging Service picks the sender.
    pub from: Option<String>,
    pub to: String,
    pub body: String,
    pub status: MessageStatus,
    pub error_code: Option<u32>,
    pub num_segments: u32,
    pub num_media: u32,
    pub status_callback: Option<String>,
    pub validity_secs: u32,
    pub send_at: Option<i64>,
    pub carrier: Option<String>,
    pub carrier_message_id: Option<String>,
    pub raw_dlr_done_date: Option<String>,
    pub provide_feedback: bool,
    pub created: i64,
    pub updated: i64,
    pub sent: Option<i64>,
}

impl Message {
    /// A new message with a fresh SID, created at `at`, with one segment's worth of the
    /// body counted, no sender, no carrier and no validity period; callers set the rest.
    pub fn new(
        account_sid: Sid,
        direction: Direction,
        status: MessageStatus,
        to: String,
        body: String,
        num_segments: u32,
        at: i64,
    ) -> Message {
        Message {
            sid: Sid::generate(tern_types::SidPrefix::Message),
            account_sid,
            messaging_service_sid: None,
            direction,
            from: None,
            to,
            body,
            status,
            error_code: None,
            num_segments,
            num_media: 0,
            status_callback: None,
            validity_secs: 0,
            send_at: None,
            carrier: None,
            carrier_message_id: None,
            raw_dlr_done_date: None,
            provide_feedback: false,
            created: at,
            updated: at,
            sent: None,
        }
    }

    /// When the message's `ValidityPeriod` runs out.
    pub fn expires_at(&self) -> i64 {
        self.send_at.unwrap_or(self.created) + i64::from(self.validity_secs) * 1000
    }
}

/// What a customer reported about a message through Twilio's Message Feedback resource:
/// whether the recipient demonstrably got it (`confirmed`) or not (`unconfirmed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackOutcome {
    Confirmed,
    Unconfirmed,
}

impl FeedbackOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            FeedbackOutcome::Confirmed => "confirmed",
            FeedbackOutcome::Unconfirmed => "unconfirmed",
        }
    }

    /// The outcome a stored or requested value names, exactly as Twilio spells it.
    pub fn parse(s: &str) -> Option<FeedbackOutcome> {
        [FeedbackOutcome::Confirmed, FeedbackOutcome::Unconfirmed]
            .into_iter()
            .find(|o| o.as_str() == s)
    }

    pub const fn is_confirmed(self) -> bool {
        matches!(self, FeedbackOutcome::Confirmed)
    }
}

/// What came of one try of a carrier for an outbound message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptResult {
    /// The carrier took the message (its id is the attempt's `carrier_message_id`).
    Accepted,
    /// The carrier refused it for good; another carrier of the route may be tried.
    Refused,
    /// It could not be handed over now (throttled, no bind, timeout); tried again later.
    Retryable,
    /// The message was taken back from this accepted attempt and sent again elsewhere
    /// (its receipt was overdue on a failing carrier, or it came back undelivered).
    Resent,
}

impl AttemptResult {
    pub const ALL: [AttemptResult; 4] = [
        AttemptResult::Accepted,
        AttemptResult::Refused,
        AttemptResult::Retryable,
        AttemptResult::Resent,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            AttemptResult::Accepted => "accepted",
            AttemptResult::Refused => "refused",
            AttemptResult::Retryable => "retryable",
            AttemptResult::Resent => "resent",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptResult> {
        AttemptResult::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One routing decision about an outbound message: which carrier was tried on which route,
/// when, what came of it and why. Appended, never changed: the message's route history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouteAttempt {
    pub message_sid: Sid,
    pub carrier: String,
    /// The route (prefix) the message was routed by.
    pub prefix: String,
    /// When (ms since the epoch).
    pub at: i64,
    pub result: AttemptResult,
    /// The carrier's id for the message, when it took it.
    pub carrier_message_id: Option<String>,
    /// The Twilio error code that fits, when it refused it.
    pub error_code: Option<u32>,
    /// Why this carrier (its rank and health), or why it failed.
    pub reason: String,
}

/// The feedback of one message (one per message; posting again replaces the outcome).
#[derive(Debug, Clone, PartialEq)]
pub struct Feedback {
    pub message_sid: Sid,
    pub outcome: FeedbackOutcome,
    /// When feedback was first reported.
    pub created: i64,
    /// When it was last reported (never before `created`).
    pub updated: i64,
}

/// What [`crate::Store::set_feedback`] did: the feedback as now stored and the outcome it
/// replaced (`None` for the first report), so that callers can tell a change from a
/// repetition.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackSet {
    pub feedback: Feedback,
    pub previous: Option<FeedbackOutcome>,
}

/// A named lease: who may do one piece of work (lead a region…) until `expires_at`.
/// Holders renew before it runs out; once it has, anyone may take it over.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Lease {
    pub name: String,
    pub holder: String,
    /// When the lease runs out (ms); a released lease has 0.
    pub expires_at: i64,
    /// The fencing token: grows by one every time a term starts — a grant to another
    /// holder, or to the same one after the lease had run out or been released — and stays
    /// put on renewal. Work tagged with an older epoch was started by a holder that may
    /// since have lost the lease.
    pub epoch: i64,
}

impl Lease {
    /// Whether the lease is still held at `now` (ms).
    pub fn is_held_at(&self, now: i64) -> bool {
        self.expires_at > now
    }
}

/// A job to write together with a state change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub subject: Sid,
    pub run_at: i64,
    pub payload: String,
}

/// A status change of one message, applied atomically with the jobs it causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub sid: Sid,
    /// The status the caller saw; the change applies only if it is still current.
    pub expected: MessageStatus,
    pub to: MessageStatus,
    pub at: i64,
    pub error_code: Option<u32>,
    /// Sender chosen by a Messaging Service.
    pub from: Option<String>,
    /// Carrier id and the carrier's message id, once a carrier accepted it.
    pub carrier: Option<(String, String)>,
    pub raw_dlr_done_date: Option<String>,
    /// Jobs to create.
    pub jobs: Vec<NewJob>,
    /// A job this change completes (deleted in the same transaction).
    pub done_job: Option<i64>,
    /// Route attempts to record with the change.
    pub attempts: Vec<RouteAttempt>,
}

impl Transition {
    pub fn new(sid: Sid, expected: MessageStatus, to: MessageStatus, at: i64) -> Self {
        Transition {
            sid,
            expected,
            to,
            at,
            error_code: None,
            from: None,
            carrier: None,
            raw_dlr_done_date: None,
            jobs: Vec::new(),
            done_job: None,
            attempts: Vec::new(),
        }
    }
}

/// Filters and paging of a message list. Results are newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageQuery {
    pub to: Option<String>,
    pub from: Option<String>,
    /// Inclusive bounds on the date sent (falling back to the date created), in ms.
    pub sent_after: Option<i64>,
    pub sent_before: Option<i64>,
    /// Continue after this (created, sid) position.
    pub after: Option<(i64, Sid)>,
    pub limit: u32,
}

/// A page of a list query plus the position to continue from.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<(i64, Sid)>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_types::SidPrefix;

    #[test]
    fn smpp_credential_debug_redacts_the_password_hash() {
        let c = SmppCredential {
            sid: Sid::generate(SidPrefix::SmppCredential),
            account_sid: Sid::generate(SidPrefix::Account),
            system_id: "tern1234".into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            friendly_name: "primary".into(),
            created: 7,
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("argon2"), "{shown}");
        assert!(!shown.contains("aGFzaA"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(
            shown.contains("tern1234") && shown.contains(c.sid.as_str()),
            "{shown}"
        );
        let shown = format!("{c:#?}");
        assert!(!shown.contains("argon2"), "{shown}");
    }
}
