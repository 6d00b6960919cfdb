//! An in-memory carrier for the engine's own tests: accepts every message, answers with an
//! id, and after a configurable delay sends a receipt whose outcome depends on the
//! destination's prefix. Nodes never run it: `tern up` binds over real SMPP to the carrier
//! simulator (`tern-smsc-sim`); this one lets engine tests pin an outcome without a socket.

mod config;

pub use config::{SimConfig, SimOutcome, SimRule};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::RngCore;
use tokio::sync::mpsc;

use crate::{Carrier, CarrierEvent, OutboundSms, Receipt, ReceiptOutcome, SubmitError};

pub struct SimCarrier {
    id: String,
    config: Arc<SimConfig>,
    events: mpsc::Sender<CarrierEvent>,
}

impl SimCarrier {
    pub fn new(
        id: impl Into<String>,
        config: SimConfig,
        events: mpsc::Sender<CarrierEvent>,
    ) -> Self {
        SimCarrier {
            id: id.into(),
            config: Arc::new(config),
            events,
        }
    }

    /// The receipt this carrier gives a message to `to`.
    fn receipt_for(&self, carrier_message_id: String, to: &str) -> Receipt {
        let outcome = match self.config.rule_for(to) {
            Some(SimRule {
                outcome: SimOutcome::Undelivered,
                error_code,
                ..
            }) => ReceiptOutcome::Undelivered(error_code.unwrap_or(30003)),
            Some(SimRule {
                outcome: SimOutcome::Failed,
                error_code,
                ..
            }) => ReceiptOutcome::Failed(error_code.unwrap_or(30008)),
            _ => ReceiptOutcome::Delivered,
        };
        Receipt {
            carrier: self.id.clone(),
            carrier_message_id,
            outcome,
            done_date: Some(chrono::Utc::now().format("%y%m%d%H%M").to_string()),
        }
    }
}

#[async_trait]
impl Carrier for SimCarrier {
    fn id(&self) -> &str {
        &self.id
    }

    async fn submit(&self, sms: &OutboundSms) -> Result<String, SubmitError> {
        if let Some(SimRule {
            outcome: SimOutcome::Rejected,
            error_code,
            ..
        }) = self.config.rule_for(&sms.to)
        {
            return Err(SubmitError::Permanent {
                code: error_code.unwrap_or(30007),
                reason: "rejected by the simulated carrier".into(),
            });
        }
        if let Some(SimRule {
            outcome: SimOutcome::Throttled,
            ..
        }) = self.config.rule_for(&sms.to)
        {
            return Err(SubmitError::Retryable(
                "throttled by the simulated carrier".into(),
            ));
        }
        let mut raw = [0u8; 8];
        rand::rng().fill_bytes(&mut raw);
        let id = hex::encode(raw);
        metrics::counter!("tern_carrier_submits_total", "carrier" => self.id.clone()).increment(1);
        let receipt = self.receipt_for(id.clone(), &sms.to);
        let delay = Duration::from_millis(self.config.receipt_delay_ms);
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = events.send(CarrierEvent::Receipt(receipt)).await;
        });
        Ok(id)
    }

    async fn query(&self, carrier_message_id: &str, to: &str) -> Option<Receipt> {
        Some(self.receipt_for(carrier_message_id.to_string(), to))
    }

    /// In memory: no connections, so no liveness floor.
    fn transmitting(&self) -> Option<tokio::sync::watch::Receiver<usize>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tern_types::{Sid, SidPrefix};

    fn sms(to: &str) -> OutboundSms {
        OutboundSms {
            message_sid: Sid::generate(SidPrefix::Message),
            from: "+14155550100".into(),
            to: to.into(),
            body: "hi".into(),
            validity_secs: 60,
        }
    }

    #[tokio::test]
    async fn receipts_follow_the_prefix_rules() {
        let (tx, mut rx) = mpsc::channel(16);
        let config = SimConfig {
            receipt_delay_ms: 1,
            rules: vec![
                SimRule {
                    prefix: "+1415555012".into(),
                    outcome: SimOutcome::Undelivered,
                    error_code: Some(30005),
                },
                SimRule {
                    prefix: "+1212".into(),
                    outcome: SimOutcome::Rejected,
                    error_code: None,
                },
            ],
        };
        let sim = SimCarrier::new("sim", config, tx);
        let ok = sim.submit(&sms("+14155552671")).await.unwrap();
        let bad = sim.submit(&sms("+14155550123")).await.unwrap();
        assert!(matches!(
            sim.submit(&sms("+12125550123")).await,
            Err(SubmitError::Permanent { code: 30007, .. })
        ));
        let mut got = Vec::new();
        for _ in 0..2 {
            if let Some(CarrierEvent::Receipt(r)) = rx.recv().await {
                got.push((r.carrier_message_id, r.outcome));
            }
        }
        got.sort_by_key(|(id, _)| if *id == ok { 0 } else { 1 });
        assert_eq!(
            got,
            vec![
                (ok, ReceiptOutcome::Delivered),
                (bad, ReceiptOutcome::Undelivered(30005))
            ]
        );
    }
}
