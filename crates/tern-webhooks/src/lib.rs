//! Webhooks as Twilio sends them: signed with `X-Twilio-Signature`, delivered with
//! timeouts and retried with exponential backoff and jitter.

pub mod delivery;
pub mod signature;

pub use delivery::{Attempt, WebhookClient, WebhookRequest, backoff};
