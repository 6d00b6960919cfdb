//! What SMPP answers mean for a message: `command_status` of a `submit_sm_resp` →
//! retry or a Twilio 30xxx code, and a receipt's `stat`/`err` → the final outcome.
//! `docs/smpp.md` carries the same tables for operators; keep the two in step.
//!
//! # `submit_sm_resp` `command_status`
//!
//! | `command_status` | result | why |
//! | --- | --- | --- |
//! | `ESME_ROK` (0x00) | accepted: the `message_id` | |
//! | `ESME_RTHROTTLED` (0x58) | retry, and the carrier's send rate is halved | the SMSC asks us to slow down |
//! | `ESME_RMSGQFUL` (0x14) | retry, and the send rate is halved | the SMSC's queue (for us or the handset) is full: slowing down is what helps |
//! | `ESME_RX_T_APPN` (0x64) | retry | "temporary application error" by definition |
//! | `ESME_RSYSERR` (0x08) | retry | an SMSC fault, usually passing; retries are bounded by the engine's attempts |
//! | `ESME_RINVBNDSTS` (0x04) | retry | the SMSC thinks this connection is not bound: another bind (or this one, rebound) can take it |
//! | no response in `response_timeout_secs` | retry | see the duplicate risk below |
//! | connection lost before the response | retry | same |
//! | `ESME_RINVDSTADR` (0x0B), `ESME_RINVDSTTON` (0x50), `ESME_RINVDSTNPI` (0x51), `ESME_RINVNUMDESTS` (0x33) | 30005 unknown destination | the carrier cannot route to that number |
//! | `ESME_RINVSRCADR` (0x0A), `ESME_RINVSRCTON` (0x48), `ESME_RINVSRCNPI` (0x49) | 30007 carrier violation | the carrier refuses our sender for this traffic; Twilio reports senders a carrier will not carry as filtering |
//! | `ESME_RX_R_APPN` (0x66) | 30007 carrier violation | "receiver reject": the message itself was refused |
//! | `ESME_RDELIVERYFAILURE` (0xFE) | 30003 unreachable handset | the SMSC tried delivering at once and failed |
//! | every other status, vendor ones (0x400…) included | 30008 unknown error | malformed-request statuses (`ESME_RINVMSGLEN`, `ESME_RINVESMCLASS`, …) are a configuration problem, not the recipient's |
//! | a status listed in the carrier's `status_codes` | that code | operators know their carrier's vendor statuses |
//!
//! **Duplicate risk.** A timeout or a lost connection after the `submit_sm` left us is
//! answered "retry", yet the SMSC may have taken the message: the retry can deliver it
//! twice. This is bounded by the window — at most `window` messages per connection can be
//! in that state at once — and is the usual SMPP trade-off: the alternative (giving up)
//! loses messages the carrier never saw.
//!
//! # Receipts (`stat`)
//!
//! | `stat` | outcome | why |
//! | --- | --- | --- |
//! | `DELIVRD` | delivered | |
//! | `EXPIRED` | undelivered, 30003 | the SMSC kept retrying the handset until the validity period ran out: the handset was unreachable. (30001 "queue overflow" is about Tern's own queue, which this message left.) |
//! | `DELETED` | undelivered, 30008 | removed at the SMSC (operator or `cancel_sm`); no code says more |
//! | `UNDELIV` | undelivered, 30003 unless the error says more | |
//! | `REJECTD` | undelivered, 30007 unless the error says more | the carrier refused it after accepting it — filtering. `undelivered` rather than `failed`: on Twilio `failed` means the message never reached a carrier |
//! | `UNKNOWN` | undelivered, 30008 | |
//! | `ACCEPTD`, `ENROUTE` | none: acknowledged and dropped | intermediate states; the final receipt (or `query_sm`) follows |
//! | anything else | none: acknowledged, dropped and logged | an unknown word is not evidence of failure; the receipt sweep queries the message later |
//!
//! "Unless the error says more", for every undelivered outcome: a receipt `err:` value
//! listed in the carrier's `receipt_err_codes` wins; otherwise a GSM `network_error_code`
//! TLV (network type 3, a MAP error) is mapped by [`gsm_map_error`]; otherwise the default
//! above.

use std::collections::BTreeMap;

use tern_smpp::ReceiptStat;
use tern_smpp::pdu::NetworkErrorCode;
use tern_smpp::status::{self, *};

use crate::ReceiptOutcome;

/// Twilio 30003: unreachable destination handset.
pub const UNREACHABLE: u32 = 30003;
/// Twilio 30004: message blocked.
pub const BLOCKED: u32 = 30004;
/// Twilio 30005: unknown destination handset.
pub const UNKNOWN_DESTINATION: u32 = 30005;
/// Twilio 30006: landline or unreachable carrier.
pub const LANDLINE: u32 = 30006;
/// Twilio 30007: carrier violation (filtered).
pub const CARRIER_VIOLATION: u32 = 30007;
/// Twilio 30008: unknown error.
pub const UNKNOWN_ERROR: u32 = 30008;

/// What a non-`ESME_ROK` `command_status` means for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// Retry later, and send more slowly.
    SlowDown,
    /// Retry later.
    Retry,
    /// Refused for good, with the Twilio code that fits.
    Refused(u32),
}

/// Classifies a `submit_sm_resp` (or `generic_nack`) status; `overrides` is the carrier's
/// `status_codes`.
pub fn submit_outcome(command_status: u32, overrides: &BTreeMap<u32, u32>) -> SubmitOutcome {
    if let Some(code) = overrides.get(&command_status) {
        return SubmitOutcome::Refused(*code);
    }
    match command_status {
        ESME_RTHROTTLED | ESME_RMSGQFUL => SubmitOutcome::SlowDown,
        s if status::is_transient(s) => SubmitOutcome::Retry,
        ESME_RSYSERR | ESME_RINVBNDSTS => SubmitOutcome::Retry,
        s => SubmitOutcome::Refused(twilio_code(s)),
    }
}

/// The Twilio code for a permanent `command_status` (see the module table).
pub fn twilio_code(command_status: u32) -> u32 {
    match command_status {
        ESME_RINVDSTADR | ESME_RINVDSTTON | ESME_RINVDSTNPI | ESME_RINVNUMDESTS => {
            UNKNOWN_DESTINATION
        }
        ESME_RINVSRCADR | ESME_RINVSRCTON | ESME_RINVSRCNPI | ESME_RX_R_APPN => CARRIER_VIOLATION,
        ESME_RDELIVERYFAILURE => UNREACHABLE,
        _ => UNKNOWN_ERROR,
    }
}

/// A status for logs and error text: `ESME_RINVDSTADR (0x0000000b)`.
pub fn describe_status(command_status: u32) -> String {
    match status::name(command_status) {
        Some(name) => format!("{name} ({command_status:#010x})"),
        None => format!("vendor status {command_status:#010x}"),
    }
}

/// The final outcome a receipt reports; `None` for intermediate or unknown states.
/// `err_codes` is the carrier's `receipt_err_codes`, keys normalised with
/// [`super::config::normalize_err`].
pub fn receipt_outcome(
    stat: &ReceiptStat,
    err: Option<&str>,
    network_error: Option<NetworkErrorCode>,
    err_codes: &BTreeMap<String, u32>,
) -> Option<ReceiptOutcome> {
    let default = match stat {
        ReceiptStat::Delivered => return Some(ReceiptOutcome::Delivered),
        ReceiptStat::Accepted | ReceiptStat::Enroute | ReceiptStat::Other(_) => return None,
        ReceiptStat::Expired | ReceiptStat::Undeliverable => UNREACHABLE,
        ReceiptStat::Rejected => CARRIER_VIOLATION,
        ReceiptStat::Deleted | ReceiptStat::Unknown => UNKNOWN_ERROR,
    };
    let configured = err.and_then(|e| err_codes.get(&super::config::normalize_err(e)).copied());
    let from_network = network_error
        .filter(|n| n.network_type == GSM_NETWORK)
        .and_then(|n| gsm_map_error(n.error_code));
    Some(ReceiptOutcome::Undelivered(
        configured.or(from_network).unwrap_or(default),
    ))
}

/// `network_type` of GSM in the `network_error_code` TLV.
const GSM_NETWORK: u8 = 3;

/// Twilio codes for the GSM MAP errors (3GPP TS 29.002) that say something about the
/// recipient; `None` for the rest, which keep the receipt's default.
pub fn gsm_map_error(code: u16) -> Option<u32> {
    Some(match code {
        // unknownSubscriber, unidentifiedSubscriber, illegalSubscriber, illegalEquipment
        1 | 5 | 9 | 12 => UNKNOWN_DESTINATION,
        // absentSubscriberSM, absentSubscriber, subscriberBusyForMT-SMS, sm-DeliveryFailure,
        // messageWaitingListFull
        6 | 27 | 31 | 32 | 33 => UNREACHABLE,
        // bearer/teleserviceNotProvisioned, facilityNotSupported: cannot take SMS
        10 | 11 | 21 => LANDLINE,
        // callBarred
        13 => BLOCKED,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_slows_down_and_transient_statuses_retry() {
        let none = BTreeMap::new();
        assert_eq!(
            submit_outcome(ESME_RTHROTTLED, &none),
            SubmitOutcome::SlowDown
        );
        assert_eq!(
            submit_outcome(ESME_RMSGQFUL, &none),
            SubmitOutcome::SlowDown
        );
        assert_eq!(submit_outcome(ESME_RX_T_APPN, &none), SubmitOutcome::Retry);
        assert_eq!(submit_outcome(ESME_RSYSERR, &none), SubmitOutcome::Retry);
    }

    #[test]
    fn permanent_statuses_get_their_code() {
        let none = BTreeMap::new();
        let code = |s| submit_outcome(s, &none);
        assert_eq!(code(ESME_RINVDSTADR), SubmitOutcome::Refused(30005));
        assert_eq!(code(ESME_RINVSRCADR), SubmitOutcome::Refused(30007));
        assert_eq!(code(ESME_RINVMSGLEN), SubmitOutcome::Refused(30008));
        assert_eq!(code(0x0000_0401), SubmitOutcome::Refused(30008));
        let overrides = BTreeMap::from([(0x401, 30034)]);
        assert_eq!(
            submit_outcome(0x401, &overrides),
            SubmitOutcome::Refused(30034)
        );
        assert_eq!(
            describe_status(ESME_RINVDSTADR),
            "ESME_RINVDSTADR (0x0000000b)"
        );
        assert_eq!(describe_status(0x401), "vendor status 0x00000401");
    }

    #[test]
    fn receipt_table() {
        let none = BTreeMap::new();
        let out = |s: &str| receipt_outcome(&ReceiptStat::parse(s), None, None, &none);
        assert_eq!(out("DELIVRD"), Some(ReceiptOutcome::Delivered));
        assert_eq!(out("delivrd"), Some(ReceiptOutcome::Delivered));
        assert_eq!(out("EXPIRED"), Some(ReceiptOutcome::Undelivered(30003)));
        assert_eq!(out("DELETED"), Some(ReceiptOutcome::Undelivered(30008)));
        assert_eq!(out("UNDELIV"), Some(ReceiptOutcome::Undelivered(30003)));
        assert_eq!(out("REJECTD"), Some(ReceiptOutcome::Undelivered(30007)));
        assert_eq!(out("UNKNOWN"), Some(ReceiptOutcome::Undelivered(30008)));
        assert_eq!(out("ACCEPTD"), None);
        assert_eq!(out("ENROUTE"), None);
        assert_eq!(out("BUFFRED"), None);
    }

    #[test]
    fn receipt_errors_refine_the_code() {
        let map = BTreeMap::from([("1".to_owned(), 30005)]);
        let undeliv = ReceiptStat::Undeliverable;
        assert_eq!(
            receipt_outcome(&undeliv, Some("001"), None, &map),
            Some(ReceiptOutcome::Undelivered(30005))
        );
        let gsm = |error_code| NetworkErrorCode {
            network_type: 3,
            error_code,
        };
        assert_eq!(
            receipt_outcome(&undeliv, Some("999"), Some(gsm(13)), &map),
            Some(ReceiptOutcome::Undelivered(30004))
        );
        // The configured err mapping wins over the network error.
        assert_eq!(
            receipt_outcome(&undeliv, Some("1"), Some(gsm(13)), &map),
            Some(ReceiptOutcome::Undelivered(30005))
        );
        // Not GSM: ignored.
        let other = NetworkErrorCode {
            network_type: 1,
            error_code: 13,
        };
        assert_eq!(
            receipt_outcome(&undeliv, None, Some(other), &map),
            Some(ReceiptOutcome::Undelivered(30003))
        );
        // A delivered receipt stays delivered whatever err says.
        assert_eq!(
            receipt_outcome(&ReceiptStat::Delivered, Some("1"), None, &map),
            Some(ReceiptOutcome::Delivered)
        );
    }
}
