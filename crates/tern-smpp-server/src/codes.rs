//! How Tern's outcomes are said in SMPP to a customer: REST validation errors as
//! `command_status`, message statuses as receipt `stat` and `message_state`. The tables are
//! in docs/smpp.md too.

use tern_smpp::ReceiptStat;
use tern_smpp::status::*;
use tern_types::{ErrorCode, MessageStatus};

/// The `submit_sm_resp` status for a send the engine refused with `code`.
///
/// | Twilio code | meaning | command_status |
/// |---|---|---|
/// | 21211, 21604, 21408 | bad or unroutable `To` | `ESME_RINVDSTADR` |
/// | 21212, 21603, 21606 | bad or foreign `From` | `ESME_RINVSRCADR` |
/// | 21602, 21617 | empty or too long body | `ESME_RINVMSGLEN` |
/// | 21610 | recipient opted out | `ESME_RX_P_APPN` |
/// | 20005 | account not active | `ESME_RX_R_APPN` |
/// | 20503 | store or bus unavailable | `ESME_RX_T_APPN` (retry later) |
/// | other | | `ESME_RSUBMITFAIL` |
pub fn submit_status(code: ErrorCode) -> u32 {
    match code {
        ErrorCode::InvalidTo | ErrorCode::ToRequired | ErrorCode::RegionNotEnabled => {
            ESME_RINVDSTADR
        }
        ErrorCode::InvalidFrom | ErrorCode::FromRequired | ErrorCode::FromNotOwned => {
            ESME_RINVSRCADR
        }
        ErrorCode::BodyRequired | ErrorCode::BodyTooLong => ESME_RINVMSGLEN,
        ErrorCode::OptedOut => ESME_RX_P_APPN,
        ErrorCode::AccountNotActive => ESME_RX_R_APPN,
        ErrorCode::Unavailable | ErrorCode::Internal => ESME_RX_T_APPN,
        _ => ESME_RSUBMITFAIL,
    }
}

/// The receipt a customer gets for a message that reached `status` (with `error_code`);
/// `None` while the status is not final.
///
/// | status | error | stat |
/// |---|---|---|
/// | delivered | | `DELIVRD` |
/// | undelivered | | `UNDELIV` |
/// | failed | 30001 (validity ran out) | `EXPIRED` |
/// | failed | other | `REJECTD` |
/// | canceled | | `DELETED` |
pub fn receipt_stat(status: MessageStatus, error_code: Option<u32>) -> Option<ReceiptStat> {
    Some(match status {
        MessageStatus::Delivered => ReceiptStat::Delivered,
        MessageStatus::Undelivered => ReceiptStat::Undeliverable,
        MessageStatus::Failed if error_code == Some(ErrorCode::QueueOverflow.code()) => {
            ReceiptStat::Expired
        }
        MessageStatus::Failed => ReceiptStat::Rejected,
        MessageStatus::Canceled => ReceiptStat::Deleted,
        _ => return None,
    })
}

/// The receipt's three-digit `err` field: the last three digits of the Twilio code
/// (30003 → `003`), `000` when there is none.
pub fn receipt_err(error_code: Option<u32>) -> String {
    format!("{:03}", error_code.unwrap_or(0) % 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_final_statuses_make_receipts() {
        assert_eq!(
            receipt_stat(MessageStatus::Delivered, None),
            Some(ReceiptStat::Delivered)
        );
        assert_eq!(
            receipt_stat(MessageStatus::Failed, Some(30001)),
            Some(ReceiptStat::Expired)
        );
        assert_eq!(
            receipt_stat(MessageStatus::Failed, Some(30007)),
            Some(ReceiptStat::Rejected)
        );
        for s in [
            MessageStatus::Queued,
            MessageStatus::Sending,
            MessageStatus::Sent,
            MessageStatus::Accepted,
        ] {
            assert_eq!(receipt_stat(s, None), None);
        }
        assert_eq!(receipt_err(Some(30003)), "003");
        assert_eq!(receipt_err(None), "000");
    }

    #[test]
    fn validation_errors_map_to_address_and_length_statuses() {
        assert_eq!(submit_status(ErrorCode::InvalidTo), ESME_RINVDSTADR);
        assert_eq!(submit_status(ErrorCode::FromNotOwned), ESME_RINVSRCADR);
        assert_eq!(submit_status(ErrorCode::BodyTooLong), ESME_RINVMSGLEN);
        assert_eq!(submit_status(ErrorCode::Unavailable), ESME_RX_T_APPN);
    }
}
