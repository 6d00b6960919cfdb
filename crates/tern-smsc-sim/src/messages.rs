//! The `deliver_sm` bodies the simulator builds: delivery receipts and mobile-originated
//! messages, and the date formats they carry.

use tern_smpp::pdu::{Address, DeliverSm, NetworkErrorCode};
use tern_smpp::text::InboundSm;
use tern_smpp::{DeliveryReceipt, ReceiptStat, TextOptions, encode_submits, read_part};

use crate::Error;

/// `esm_class` of a delivery receipt (SMSC delivery receipt, bit 2).
pub const ESM_CLASS_RECEIPT: u8 = 0x04;

/// What a receipt is built from.
pub(crate) struct ReceiptFacts<'a> {
    pub id: &'a str,
    /// The submitted message's source and destination (the receipt swaps them).
    pub source: &'a Address,
    pub destination: &'a Address,
    pub stat: &'a ReceiptStat,
    pub err: u16,
    pub submitted_unix_ms: i64,
    pub done_unix_ms: i64,
    /// The start of the message text (at most 20 characters are used).
    pub text: &'a str,
}

/// A delivery receipt `deliver_sm`: the Appendix B text plus the `receipted_message_id`
/// and `message_state` TLVs (and `network_error_code` when `err` is not 0).
pub(crate) fn receipt(f: &ReceiptFacts<'_>) -> DeliverSm {
    let mut r = DeliveryReceipt::new(
        f.id,
        f.stat.clone(),
        receipt_date(f.submitted_unix_ms),
        receipt_date(f.done_unix_ms),
    );
    r.err = Some(format!("{:03}", f.err.min(999)));
    r.text = Some(receipt_text(f.text));
    let mut sm = DeliverSm {
        source: f.destination.clone(),
        destination: f.source.clone(),
        esm_class: ESM_CLASS_RECEIPT,
        short_message: r.to_text().into_bytes(),
        ..DeliverSm::default()
    };
    if sm.short_message.len() > 255 {
        // Only an absurdly long id could do this; the TLVs still carry the facts.
        sm.tlvs
            .set_message_payload(std::mem::take(&mut sm.short_message));
    }
    sm.tlvs.set_receipted_message_id(f.id);
    if let Some(state) = f.stat.message_state() {
        sm.tlvs.set_message_state(state);
    }
    if f.err != 0 {
        sm.tlvs.set_network_error_code(NetworkErrorCode {
            network_type: 3, // GSM
            error_code: f.err,
        });
    }
    sm
}

/// The `text:` field: the first 20 characters, printable ASCII only (others become `?`) so
/// the receipt stays plain ASCII in `data_coding` 0.
fn receipt_text(text: &str) -> String {
    text.chars()
        .take(20)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

/// `YYMMDDhhmm` (UTC), the receipt date format. Two per receipt at tens of thousands of
/// receipts per second: the last minute formatted is kept per thread.
pub(crate) fn receipt_date(unix_ms: i64) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, String)> =
            const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let minute = unix_ms.div_euclid(60_000);
    LAST.with_borrow_mut(|(cached, text)| {
        if *cached != minute {
            *text = chrono::DateTime::from_timestamp_millis(unix_ms)
                .map(|t| t.format("%y%m%d%H%M").to_string())
                .unwrap_or_default();
            *cached = minute;
        }
        text.clone()
    })
}

/// SMPP absolute time `YYMMDDhhmmsstnnp` (UTC, so `nn` is `00` and `p` is `+`), for
/// `query_sm_resp.final_date`.
pub(crate) fn smpp_time(unix_ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(unix_ms)
        .map(|t| {
            let tenths = (unix_ms.rem_euclid(1000)) / 100;
            format!("{}{tenths}00+", t.format("%y%m%d%H%M%S"))
        })
        .unwrap_or_default()
}

/// The text of a submitted message, for the receipt's `text:` field: the user data
/// (`short_message`, or `message_payload` when that is empty) without its UDH, decoded by
/// `data_coding`; empty when it cannot be read.
pub(crate) fn text_of<'a>(sm: impl Into<InboundSm<'a>>) -> String {
    read_part(sm, &TextOptions::default())
        .map(|part| part.text())
        .unwrap_or_default()
}

/// An address from a number as people write it: `+15551234567` is international
/// (TON 1, NPI 1), other digits unknown/ISDN (TON 0, NPI 1), anything else alphanumeric
/// (TON 5, NPI 0).
pub(crate) fn address(s: &str) -> Result<Address, Error> {
    let s = s.trim();
    let address = if let Some(digits) = s.strip_prefix('+') {
        Address::new(1, 1, digits)
    } else if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        Address::new(0, 1, s)
    } else {
        Address::new(5, 0, s)
    };
    if address.addr.is_empty() || address.addr.len() > 20 || address.addr.contains('\0') {
        return Err(Error::InvalidMessage(format!(
            "address {s:?} must be 1 to 20 characters"
        )));
    }
    Ok(address)
}

/// The segments of a mobile-originated message: GSM-7 (`data_coding` 0, one septet per
/// octet) when every character fits, UCS-2 (`data_coding` 8) otherwise; several segments
/// carry an 8-bit-reference concatenation UDH and `esm_class` 0x40.
pub(crate) fn mobile_originated(
    source: Address,
    destination: Address,
    body: &str,
    reference: u8,
) -> Result<Vec<DeliverSm>, Error> {
    let template = DeliverSm {
        source,
        destination,
        ..DeliverSm::default()
    };
    encode_submits(
        &template,
        body,
        u16::from(reference),
        &TextOptions::default(),
    )
    .map_err(|e| Error::InvalidMessage(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receipt_carries_text_and_tlvs() {
        let src = Address::new(5, 0, "Tern");
        let dst = Address::new(1, 1, "15551234567");
        let sm = receipt(&ReceiptFacts {
            id: "abc",
            source: &src,
            destination: &dst,
            stat: &ReceiptStat::Undeliverable,
            err: 27,
            submitted_unix_ms: 1_704_110_400_000, // 2024-01-01 12:00 UTC
            done_unix_ms: 1_704_110_460_000,
            text: "Héllo wörld, this is longer than twenty",
        });
        assert_eq!(
            String::from_utf8(sm.short_message.clone()).unwrap(),
            "id:abc sub:001 dlvrd:000 submit date:2401011200 done date:2401011201 stat:UNDELIV err:027 text:H?llo w?rld, this is"
        );
        assert_eq!(sm.esm_class, 0x04);
        assert_eq!(sm.source, dst);
        assert_eq!(sm.destination, src);
        assert_eq!(sm.tlvs.receipted_message_id(), Some("abc"));
        assert_eq!(sm.tlvs.message_state(), Some(5));
        assert_eq!(sm.tlvs.network_error_code().unwrap().error_code, 27);
        assert_eq!(smpp_time(1_704_110_400_250), "240101120000200+");
        assert_eq!(receipt_date(1_704_110_459_999), "2401011200");
        assert_eq!(receipt_date(1_704_110_460_000), "2401011201");
        assert_eq!(receipt_date(1_704_110_400_000), "2401011200");
    }

    #[test]
    fn text_skips_udh_and_decodes() {
        let mut sm = DeliverSm {
            esm_class: 0x40,
            data_coding: 8,
            short_message: vec![5, 0, 3, 1, 2, 1],
            ..DeliverSm::default()
        };
        sm.short_message.extend(tern_sms::ucs2::encode("Привет"));
        assert_eq!(text_of(&sm), "Привет");
        sm.short_message = vec![200];
        assert_eq!(text_of(&sm), "", "a UDH longer than the data");
    }

    #[test]
    fn long_ucs2_body_is_split_with_udh() {
        let body = "ж".repeat(100);
        let segs = mobile_originated(
            address("+15550001111").unwrap(),
            address("12345").unwrap(),
            &body,
            7,
        )
        .unwrap();
        assert_eq!(segs.len(), 2);
        assert!(
            segs.iter()
                .all(|s| s.data_coding == 8 && s.esm_class == 0x40)
        );
        assert_eq!(&segs[1].short_message[..6], &[5, 0, 3, 7, 2, 2]);
        let text: String = segs.iter().map(text_of).collect();
        assert_eq!(text, body);
        let one = mobile_originated(address("1").unwrap(), address("2").unwrap(), "hi", 0).unwrap();
        assert_eq!((one[0].data_coding, one[0].esm_class), (0, 0));
        assert!(address("").is_err());
        assert!(address(&"1".repeat(21)).is_err());
    }
}
