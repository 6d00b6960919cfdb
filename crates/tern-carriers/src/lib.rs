//! Carriers behind one small trait. A connector takes outbound messages with
//! [`Carrier::submit`] and reports what the network tells it — delivery receipts and
//! carrier-originated (inbound) messages — as [`CarrierEvent`]s on a channel.
//!
//! Connectors live one folder each: `sim/` is the built-in simulated carrier of `tern up`,
//! `smpp/` the SMPP 3.4 client for real carriers.

pub mod sim;
pub mod smpp;

use async_trait::async_trait;
use tern_types::Sid;

/// A message handed to a carrier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OutboundSms {
    pub message_sid: Sid,
    pub from: String,
    pub to: String,
    pub body: String,
    pub validity_secs: u32,
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum SubmitError {
    /// Try again later (throttled, queue full, connection down).
    #[error("temporary carrier error: {0}")]
    Retryable(String),
    /// The carrier refused the message for good; `code` is the Twilio 30xxx code that fits.
    #[error("carrier rejected the message ({code}): {reason}")]
    Permanent { code: u32, reason: String },
}

/// The final outcome a delivery receipt reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ReceiptOutcome {
    Delivered,
    /// Not delivered to the handset, with the Twilio error code that fits.
    Undelivered(u32),
    /// The carrier could not send it at all.
    Failed(u32),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Receipt {
    pub carrier: String,
    pub carrier_message_id: String,
    pub outcome: ReceiptOutcome,
    /// The receipt's `done date` (`YYMMDDhhmm`), passed on as `RawDlrDoneDate`.
    pub done_date: Option<String>,
}

/// A carrier-originated message to one of our numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundSms {
    pub carrier: String,
    pub from: String,
    pub to: String,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CarrierEvent {
    Receipt(Receipt),
    Inbound(InboundSms),
}

/// Which node a submission's delivery receipt will reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptsTo {
    /// This one: it holds the connection the message went out on.
    ThisNode,
    /// Another node of the region, which carried the submission out on its connection.
    AnotherNode,
}

/// A message the carrier took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The carrier's id for it.
    pub id: String,
    pub receipts: ReceiptsTo,
}

#[async_trait]
pub trait Carrier: Send + Sync + 'static {
    fn id(&self) -> &str;
    /// Hands a message to the carrier; on success, the carrier's id for it.
    async fn submit(&self, sms: &OutboundSms) -> Result<String, SubmitError>;
    /// [`Carrier::submit`], also saying which node its receipt will reach: this one,
    /// unless the carrier was reached through another node.
    async fn submit_tracked(&self, sms: &OutboundSms) -> Result<Submitted, SubmitError> {
        self.submit(sms).await.map(|id| Submitted {
            id,
            receipts: ReceiptsTo::ThisNode,
        })
    }
    /// Asks the carrier for the final state of a message it accepted (SMPP `query_sm`):
    /// how a receipt lost to a crash or a dropped connection is recovered. `None` while the
    /// carrier has no final state yet or cannot tell.
    async fn query(&self, carrier_message_id: &str, to: &str) -> Option<Receipt>;
    /// The number of connections that can transmit now, for connectors that keep
    /// connections (`None` for those that don't): the Super Network's liveness floor. No
    /// default, so that a wrapper cannot hide its inner carrier's connections by accident.
    fn transmitting(&self) -> Option<tokio::sync::watch::Receiver<usize>>;
}
