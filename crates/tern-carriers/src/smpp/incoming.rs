//! What the SMSC sends us on a bound connection: `deliver_sm` and `data_sm`, each either a
//! delivery receipt or a mobile-originated (MO) message.
//!
//! The rule for every one: hand it to the engine first, answer `ESME_ROK` only after the
//! hand-over succeeded. If the event channel is closed (the node is stopping) the answer is
//! `ESME_RX_T_APPN`, a temporary error, so the SMSC keeps the PDU and sends it again later
//! — never an acknowledgement for something nobody has.

use tern_smpp::pdu::{Body, DataSm, MessageIdResp, Pdu, SubmitSm};
use tern_smpp::receipt::{DeliveryReceipt, ReceiptStat, is_receipt};
use tern_smpp::status::{ESME_RINVCMDID, ESME_ROK, ESME_RX_P_APPN, ESME_RX_T_APPN};
use tern_smpp::text::{Assembled, InboundSm, read_part};
use tern_smpp_tokio::Link;
use tracing::{debug, info, warn};

use super::bind::Conn;
use super::config::e164_from_smpp;
use super::errors::receipt_outcome;
use super::{Shared, std_now};
use crate::{CarrierEvent, InboundSms, Receipt};

/// Answers one request from the SMSC.
pub async fn handle(shared: &Shared, conn: &Conn, link: &Link, pdu: Pdu) {
    let seq = pdu.sequence_number;
    let (status, ok_body) = match &pdu.body {
        Body::DeliverSm(sm) => (
            on_message(shared, conn, sm).await,
            Body::DeliverSmResp(MessageIdResp::default()),
        ),
        Body::DataSm(d) => (
            on_message(shared, conn, &as_deliver_sm(d)).await,
            Body::DataSmResp(MessageIdResp::default()),
        ),
        _ => (ESME_RINVCMDID, Body::GenericNack),
    };
    let sent = if status == ESME_ROK {
        link.respond(seq, status, ok_body)
    } else {
        link.reject(seq, status)
    };
    if let Err(e) = sent {
        // The connection is gone: the SMSC will send it again on another.
        debug!(error = %e, seq, "response to the smsc not sent");
    }
}

/// A `data_sm` in the layout of a `deliver_sm`, so receipts and MO share one path; its text
/// is in `message_payload`, which both readers prefer when `short_message` is empty.
fn as_deliver_sm(d: &DataSm) -> SubmitSm {
    SubmitSm {
        service_type: d.service_type.clone(),
        source: d.source.clone(),
        destination: d.destination.clone(),
        esm_class: d.esm_class,
        registered_delivery: d.registered_delivery,
        data_coding: d.data_coding,
        tlvs: d.tlvs.clone(),
        ..SubmitSm::default()
    }
}

async fn on_message(shared: &Shared, conn: &Conn, sm: &SubmitSm) -> u32 {
    if is_receipt(sm.esm_class) || sm.tlvs.receipted_message_id().is_some() {
        on_receipt(shared, conn, sm).await
    } else {
        on_mo(shared, conn, sm).await
    }
}

fn stat_label(stat: &ReceiptStat) -> &'static str {
    match stat {
        ReceiptStat::Delivered => "DELIVRD",
        ReceiptStat::Expired => "EXPIRED",
        ReceiptStat::Deleted => "DELETED",
        ReceiptStat::Undeliverable => "UNDELIV",
        ReceiptStat::Accepted => "ACCEPTD",
        ReceiptStat::Unknown => "UNKNOWN",
        ReceiptStat::Rejected => "REJECTD",
        ReceiptStat::Enroute => "ENROUTE",
        ReceiptStat::Other(_) => "other",
    }
}

/// `YYMMDDhhmm` from a receipt's `done date` or a `query_sm_resp` `final_date` (which may
/// carry seconds and more); `None` unless it starts with ten digits.
pub fn done_date(raw: &str) -> Option<String> {
    let d = raw.trim().get(..10)?;
    d.bytes().all(|b| b.is_ascii_digit()).then(|| d.to_owned())
}

async fn on_receipt(shared: &Shared, conn: &Conn, sm: &SubmitSm) -> u32 {
    let s = &shared.settings;
    let counter = |stat: &'static str| {
        metrics::counter!("tern_smpp_receipts_total", "carrier" => s.id.clone(), "bind" => conn.label.clone(), "stat" => stat)
            .increment(1);
    };
    let parsed = DeliveryReceipt::from_deliver_sm(sm);
    let (Some(id), Some(stat)) = (
        parsed
            .as_ref()
            .and_then(|r| r.id.clone())
            .filter(|id| !id.trim().is_empty()),
        parsed.as_ref().and_then(|r| r.stat.clone()),
    ) else {
        // Sending it again will not make it readable: acknowledge, count, log.
        counter("unreadable");
        warn!(text = %String::from_utf8_lossy(&sm.short_message), "receipt without an id or a stat");
        return ESME_ROK;
    };
    counter(stat_label(&stat));
    let err = parsed.as_ref().and_then(|r| r.err.clone());
    let known = shared.recent().lookup(&id);
    if let Some(k) = known.as_ref().filter(|k| !k.first) {
        // The first segment's receipt decides the message (see docs/smpp.md).
        metrics::counter!("tern_smpp_segment_receipts_total", "carrier" => s.id.clone(), "stat" => stat_label(&stat))
            .increment(1);
        debug!(%id, message_id = %k.message_id, stat = stat.as_str(), "receipt for a later segment");
        return ESME_ROK;
    }
    let Some(outcome) = receipt_outcome(
        &stat,
        err.as_deref(),
        sm.tlvs.network_error_code(),
        &s.receipt_err_codes,
    ) else {
        if matches!(stat, ReceiptStat::Other(_)) {
            info!(%id, stat = stat.as_str(), "receipt with an unknown stat ignored");
        } else {
            debug!(%id, stat = stat.as_str(), "intermediate receipt");
        }
        return ESME_ROK;
    };
    let receipt = Receipt {
        carrier: s.id.clone(),
        // The id as `submit` returned it, when the receipt prints it differently.
        carrier_message_id: known.map_or(id, |k| k.message_id),
        outcome,
        done_date: parsed
            .as_ref()
            .and_then(|r| r.done_date.as_deref())
            .and_then(done_date),
    };
    debug!(id = %receipt.carrier_message_id, ?outcome, "receipt");
    match shared.events.send(CarrierEvent::Receipt(receipt)).await {
        Ok(()) => ESME_ROK,
        Err(_) => {
            warn!("event channel closed: receipt refused with ESME_RX_T_APPN");
            ESME_RX_T_APPN
        }
    }
}

async fn on_mo(shared: &Shared, conn: &Conn, sm: &SubmitSm) -> u32 {
    let s = &shared.settings;
    let part = match read_part(InboundSm::from(sm), &s.text) {
        Ok(p) => p,
        Err(e) => {
            metrics::counter!("tern_smpp_inbound_total", "carrier" => s.id.clone(), "bind" => conn.label.clone(), "result" => "unreadable")
                .increment(1);
            warn!(error = %e, "unreadable inbound message refused");
            // Permanent: the same octets will not read better next time.
            return ESME_RX_P_APPN;
        }
    };
    let assembled = shared.reassembler().push(part, std_now());
    let Some(message) = assembled else {
        // Held until its other parts arrive (acknowledged now: an SMSC waits for the
        // response of each part, and would resend them all if we held the answers), or a
        // duplicate of a part already held or delivered.
        return ESME_ROK;
    };
    if deliver(shared, message).await {
        metrics::counter!("tern_smpp_inbound_total", "carrier" => s.id.clone(), "bind" => conn.label.clone(), "result" => "ok")
            .increment(1);
        ESME_ROK
    } else {
        ESME_RX_T_APPN
    }
}

/// Hands a (possibly incomplete) MO message to the engine; `false` if the channel is closed.
pub async fn deliver(shared: &Shared, message: Assembled) -> bool {
    if !message.is_complete() {
        warn!(
            from = %message.source.addr,
            reference = ?message.reference,
            total = message.total,
            missing = ?message.missing,
            "delivering a concatenated message with parts missing"
        );
    }
    let sms = InboundSms {
        carrier: shared.settings.id.clone(),
        from: e164_from_smpp(&message.source),
        to: e164_from_smpp(&message.destination),
        body: message.text,
    };
    if shared
        .events
        .send(CarrierEvent::Inbound(sms))
        .await
        .is_err()
    {
        warn!("event channel closed: inbound message refused with ESME_RX_T_APPN");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_dates_keep_minutes() {
        assert_eq!(done_date("2401011201"), Some("2401011201".into()));
        assert_eq!(done_date(" 240101120159 "), Some("2401011201".into()));
        assert_eq!(done_date("240101120159000+"), Some("2401011201".into()));
        assert_eq!(done_date("24-01-01"), None);
        assert_eq!(done_date(""), None);
        assert_eq!(done_date("24010112é0"), None);
    }
}
