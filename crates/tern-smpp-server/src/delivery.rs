//! Receipts and inbound messages to bound customers: the engine's callbacks addressed
//! `smpp://…`, turned into `deliver_sm`.

use std::sync::atomic::{AtomicU16, Ordering};

use tern_node::{CustomerLinks, Purpose};
use tern_smpp::pdu::{Address, DeliverSm};
use tern_smpp::receipt::DeliveryReceipt;
use tern_smpp::text::{TextOptions, encode_submits};
use tern_smpp::{Body, ReceiptStat, status::ESME_ROK};
use tern_smpp_tokio::Link;
use tern_types::{MessageStatus, Sid, SidPrefix};
use tern_webhooks::Attempt;

use crate::connection::smpp_time;
use crate::{SmppServer, codes};

/// `esm_class` of a delivery receipt (§5.2.12: SMSC delivery receipt).
const ESM_CLASS_RECEIPT: u8 = 0x04;

fn done() -> Attempt {
    Attempt::Delivered {
        content_type: None,
        body: Vec::new(),
    }
}

/// An address as SMPP carries it: international numbers without `+` (TON 1, NPI 1),
/// anything else alphanumeric (TON 5).
fn address(number: &str) -> Address {
    match number.strip_prefix('+') {
        Some(digits) if digits.bytes().all(|c| c.is_ascii_digit()) => Address::new(1, 1, digits),
        _ => Address::new(5, 0, number),
    }
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Sends `pdus` in order on `link`; delivered only when every one is acknowledged.
async fn send_all(link: &Link, pdus: Vec<DeliverSm>) -> Attempt {
    for sm in pdus {
        match link.request(Body::DeliverSm(sm)).await {
            Ok(resp) if resp.command_status == ESME_ROK => {}
            Ok(resp) => {
                return Attempt::Retry(format!(
                    "the customer answered deliver_sm with {:#x}",
                    resp.command_status
                ));
            }
            Err(e) => return Attempt::Retry(format!("deliver_sm not acknowledged: {e}")),
        }
    }
    metrics::counter!("tern_smpp_server_deliveries_total").increment(1);
    done()
}

impl SmppServer {
    async fn deliver_receipt(
        &self,
        account: Sid,
        target: &str,
        params: &[(String, String)],
    ) -> Attempt {
        let (system_id, rd) = match target.split_once("?rd=") {
            Some((s, rd)) => (s, rd),
            None => (target, "1"),
        };
        let Some(status) = param(params, "MessageStatus").and_then(MessageStatus::parse) else {
            return Attempt::Rejected("no MessageStatus".into());
        };
        let error_code = param(params, "ErrorCode").and_then(|c| c.parse().ok());
        let Some(stat) = codes::receipt_stat(status, error_code) else {
            // Not final: SMPP receipts report outcomes only.
            return done();
        };
        if rd == "2" && stat == ReceiptStat::Delivered {
            return done();
        }
        let Some(sid) =
            param(params, "MessageSid").and_then(|s| Sid::parse_as(s, SidPrefix::Message).ok())
        else {
            return Attempt::Rejected("no MessageSid".into());
        };
        let message = match self.store.message(sid).await {
            Ok(Some(m)) => m,
            Ok(None) => return Attempt::Rejected("the message is gone".into()),
            Err(e) => return Attempt::Retry(format!("store: {e}")),
        };
        let Some(link) = self.receiver(account, Some(system_id)) else {
            return Attempt::Retry(format!("no receiver of {system_id} is bound"));
        };
        let mut receipt = DeliveryReceipt::new(
            sid.as_str(),
            stat.clone(),
            smpp_time(message.created),
            smpp_time(message.updated),
        );
        receipt.err = Some(codes::receipt_err(error_code));
        receipt.text = Some(message.body.chars().take(20).collect());
        let mut sm = DeliverSm {
            // A receipt comes from the handset the message went to.
            source: address(&message.to),
            destination: address(message.from.as_deref().unwrap_or_default()),
            esm_class: ESM_CLASS_RECEIPT,
            short_message: receipt.to_text().into_bytes(),
            ..DeliverSm::default()
        };
        sm.tlvs.set_receipted_message_id(sid.as_str());
        if let Some(state) = stat.message_state() {
            sm.tlvs.set_message_state(state);
        }
        send_all(&link, vec![sm]).await
    }

    async fn deliver_inbound(&self, account: Sid, params: &[(String, String)]) -> Attempt {
        static REFERENCE: AtomicU16 = AtomicU16::new(0);
        let (Some(from), Some(to)) = (param(params, "From"), param(params, "To")) else {
            return Attempt::Rejected("no From or To".into());
        };
        let body = param(params, "Body").unwrap_or_default();
        let Some(link) = self.receiver(account, None) else {
            return Attempt::Retry("no receiver of the account is bound".into());
        };
        let template = DeliverSm {
            source: address(from),
            destination: address(to),
            ..DeliverSm::default()
        };
        let reference = REFERENCE.fetch_add(1, Ordering::Relaxed);
        match encode_submits(&template, body, reference, &TextOptions::default()) {
            Ok(pdus) => send_all(&link, pdus).await,
            Err(e) => Attempt::Rejected(format!("cannot encode the body: {e}")),
        }
    }
}

#[async_trait::async_trait]
impl CustomerLinks for SmppServer {
    async fn deliver(
        &self,
        account_sid: Sid,
        target: &str,
        purpose: Purpose,
        params: &[(String, String)],
    ) -> Attempt {
        match purpose {
            Purpose::Status => self.deliver_receipt(account_sid, target, params).await,
            Purpose::Inbound => self.deliver_inbound(account_sid, params).await,
        }
    }

    async fn takes_inbound(&self, account: Sid) -> bool {
        self.store
            .smpp_credentials(account)
            .await
            .is_ok_and(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::e164;

    #[test]
    fn numbers_go_international_and_names_alphanumeric() {
        assert_eq!(address("+15551234567"), Address::new(1, 1, "15551234567"));
        assert_eq!(address("TERN"), Address::new(5, 0, "TERN"));
        assert_eq!(e164(&Address::new(1, 1, "15551234567")), "+15551234567");
        assert_eq!(e164(&Address::new(0, 1, "+15551234567")), "+15551234567");
        assert_eq!(e164(&Address::new(5, 0, "ACME")), "ACME");
    }
}
