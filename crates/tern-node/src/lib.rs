//! A Tern node: configuration and the messaging engine that turns accepted messages into
//! carrier submissions, receipts into status changes, and status changes into webhooks.

pub mod binds;
pub mod callbacks;
pub mod config;
pub mod engine;
pub mod forwarding;
pub mod leader;
pub mod network;
mod outbox;
mod pacing;
mod saturation;
mod settling;

pub use config::Config;
pub use engine::{CustomerLinks, Engine, EngineError, Purpose, SMPP_CALLBACK_SCHEME, SendOrigin};

/// Milliseconds since the Unix epoch: the store's clock.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
