//! What the engine tells the network about one path: the [`PathKey`] it speaks of and the
//! [`Signal`] it saw.

use std::fmt;

use serde::Serialize;

/// One path: a carrier serving one route prefix. Paths are learned independently, so a
/// carrier that fails for `+44` keeps its standing for `+33`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PathKey {
    /// The carrier id (as in the route table).
    pub carrier: String,
    /// The route prefix the message was routed by (`"+"` or `"+"` followed by digits).
    pub prefix: String,
}

impl PathKey {
    pub fn new(carrier: impl Into<String>, prefix: impl Into<String>) -> PathKey {
        PathKey {
            carrier: carrier.into(),
            prefix: prefix.into(),
        }
    }
}

impl fmt::Display for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.carrier, self.prefix)
    }
}

/// An outcome the engine observed on a path. Each is reported once, at the time it was
/// observed (`now_ms` of [`super::Network::observe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Signal {
    /// The carrier accepted a submission (`submit_sm_resp` with status 0) after
    /// `latency_ms`.
    SubmitOk { latency_ms: u64 },
    /// A submission failed in a way worth retrying: throttled, timed out, no bind to
    /// submit on. Report only carrier-side causes, not a message's own fault.
    SubmitRetryable,
    /// The carrier refused a submission permanently (a carrier-side error status).
    SubmitRefused,
    /// A delivery receipt arrived, `latency_ms` after the message was sent (accepted by
    /// the carrier). `late` is true when the engine has already reported
    /// [`Signal::ReceiptOverdue`] for this very message: the receipt then corrects that
    /// censored failure instead of adding a new observation.
    Receipt {
        delivered: bool,
        latency_ms: u64,
        late: bool,
    },
    /// A receipt expected by now is missing: the engine's sweep reports it once per
    /// message sent on the path whose receipt deadline
    /// ([`super::Network::receipt_deadline_ms`]) has passed. This is how a carrier that
    /// accepts everything and delivers nothing becomes visible. Carriers that never send
    /// receipts must not be swept.
    ReceiptOverdue,
    /// The customer's Feedback API: `confirmed` when the recipient demonstrably got the
    /// message, `false` when feedback was requested and never confirmed (weak evidence).
    Feedback { confirmed: bool },
    /// The carrier has no bound connection left. Applies to every path of the carrier
    /// (whatever the key's prefix): they go Down at once and do not probe while it lasts.
    LinkDown,
    /// The carrier has a bound connection again. Only lifts the floor set by
    /// [`Signal::LinkDown`]: paths still recover through Probing, never straight back.
    LinkUp,
}
