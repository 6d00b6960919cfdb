//! The Twilio error codes Tern emits, in one table: code, HTTP status and message.

/// A Twilio error code. REST errors carry an HTTP status; 30xxx codes are asynchronous and
/// appear only on messages and callbacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 20001: a parameter is unknown or badly formed.
    InvalidParameter,
    /// 20003: authentication failed.
    Authentication,
    /// 20005: the account is not active (suspended or closed).
    AccountNotActive,
    /// 20404: the resource does not exist (or belongs to someone else).
    NotFound,
    /// 20429: too many concurrent requests.
    TooManyRequests,
    /// 20500: an internal error.
    Internal,
    /// 20503: the service is unavailable (store or bus down).
    Unavailable,
    /// 21211: the `To` number is invalid.
    InvalidTo,
    /// 21408: no route covers the `To` number's region.
    RegionNotEnabled,
    /// 21212: the `From` number is invalid.
    InvalidFrom,
    /// 21602: the message needs a body or media.
    BodyRequired,
    /// 21603: the message needs a `From` or `MessagingServiceSid`.
    FromRequired,
    /// 21604: `To` is required.
    ToRequired,
    /// 21606: `From` is not a number of this account.
    FromNotOwned,
    /// 21609: a callback URL is invalid.
    InvalidCallbackUrl,
    /// 21610: the recipient has opted out (STOP).
    OptedOut,
    /// 21617: the body exceeds 1,600 characters.
    BodyTooLong,
    /// 21701: the Messaging Service does not exist.
    MessagingServiceNotFound,
    /// 21703: the Messaging Service has no phone numbers.
    MessagingServiceEmpty,
    /// 21421: the phone number is invalid or not available.
    InvalidPhoneNumber,
    /// 21422: the phone number is already provisioned.
    PhoneNumberUnavailable,
    /// 35111: `SendAt` is missing for a scheduled message.
    SendAtRequired,
    /// 35114: only a message that is still scheduled can be canceled.
    NotCancelable,
    /// 35115: `SendAt` is outside 300 s .. 35 days ahead.
    SendAtOutOfRange,
    /// 35118: scheduling needs a Messaging Service.
    ScheduleNeedsService,
    /// 35126: `ScheduleType` other than `fixed`.
    InvalidScheduleType,
    /// 20009: the resource cannot be changed or deleted while in flight.
    InFlight,
    /// 30001: queue overflow; Tern also uses it for a message whose `ValidityPeriod`
    /// ran out before a carrier accepted it, as Twilio does.
    QueueOverflow,
    /// 30003: unreachable destination handset.
    Unreachable,
    /// 30005: unknown destination handset.
    UnknownDestination,
    /// 30006: landline or unreachable carrier.
    Landline,
    /// 30007: message filtered by the carrier.
    Filtered,
    /// 30008: unknown error.
    Unknown,
}

impl ErrorCode {
    pub const fn code(self) -> u32 {
        match self {
            ErrorCode::InvalidParameter => 20001,
            ErrorCode::Authentication => 20003,
            ErrorCode::AccountNotActive => 20005,
            ErrorCode::InFlight => 20009,
            ErrorCode::NotFound => 20404,
            ErrorCode::TooManyRequests => 20429,
            ErrorCode::Internal => 20500,
            ErrorCode::Unavailable => 20503,
            ErrorCode::InvalidTo => 21211,
            ErrorCode::RegionNotEnabled => 21408,
            ErrorCode::InvalidFrom => 21212,
            ErrorCode::InvalidPhoneNumber => 21421,
            ErrorCode::PhoneNumberUnavailable => 21422,
            ErrorCode::BodyRequired => 21602,
            ErrorCode::FromRequired => 21603,
            ErrorCode::ToRequired => 21604,
            ErrorCode::FromNotOwned => 21606,
            ErrorCode::InvalidCallbackUrl => 21609,
            ErrorCode::OptedOut => 21610,
            ErrorCode::BodyTooLong => 21617,
            ErrorCode::MessagingServiceNotFound => 21701,
            ErrorCode::MessagingServiceEmpty => 21703,
            ErrorCode::SendAtRequired => 35111,
            ErrorCode::NotCancelable => 35114,
            ErrorCode::SendAtOutOfRange => 35115,
            ErrorCode::ScheduleNeedsService => 35118,
            ErrorCode::InvalidScheduleType => 35126,
            ErrorCode::QueueOverflow => 30001,
            ErrorCode::Unreachable => 30003,
            ErrorCode::UnknownDestination => 30005,
            ErrorCode::Landline => 30006,
            ErrorCode::Filtered => 30007,
            ErrorCode::Unknown => 30008,
        }
    }

    pub const fn http_status(self) -> u16 {
        match self {
            ErrorCode::Authentication => 401,
            ErrorCode::AccountNotActive => 401,
            ErrorCode::NotFound => 404,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Internal => 500,
            ErrorCode::Unavailable => 503,
            _ => 400,
        }
    }

    pub const fn message(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameter => "Invalid parameter",
            ErrorCode::Authentication => "Authenticate",
            ErrorCode::AccountNotActive => "Account is not active",
            ErrorCode::InFlight => "The resource is in flight and cannot be changed now",
            ErrorCode::NotFound => "The requested resource was not found",
            ErrorCode::TooManyRequests => "Too many requests",
            ErrorCode::Internal => "Internal error",
            ErrorCode::Unavailable => "Service temporarily unavailable",
            ErrorCode::InvalidTo => "The 'To' number is not a valid phone number.",
            ErrorCode::InvalidFrom => "The 'From' number is not a valid phone number.",
            ErrorCode::RegionNotEnabled => {
                "Permission to send an SMS has not been enabled for the region indicated by the 'To' number."
            }
            ErrorCode::InvalidPhoneNumber => "This phone number is invalid.",
            ErrorCode::PhoneNumberUnavailable => "This phone number is not available.",
            ErrorCode::BodyRequired => "Message body is required.",
            ErrorCode::FromRequired => {
                "A 'From' phone number or a MessagingServiceSid is required."
            }
            ErrorCode::ToRequired => "A 'To' phone number is required.",
            ErrorCode::FromNotOwned => {
                "The 'From' phone number is not a valid, SMS-capable inbound phone number or short code for your account."
            }
            ErrorCode::InvalidCallbackUrl => "Invalid callback URL.",
            ErrorCode::OptedOut => {
                "Attempt to send to unsubscribed recipient: the recipient replied STOP."
            }
            ErrorCode::BodyTooLong => {
                "The concatenated message body exceeds the 1600 character limit."
            }
            ErrorCode::MessagingServiceNotFound => "The Messaging Service does not exist.",
            ErrorCode::MessagingServiceEmpty => "The Messaging Service has no phone numbers.",
            ErrorCode::SendAtRequired => "SendAt is required for a scheduled message.",
            ErrorCode::NotCancelable => "Only a scheduled message can be canceled.",
            ErrorCode::SendAtOutOfRange => {
                "SendAt must be between 300 seconds and 35 days in the future."
            }
            ErrorCode::ScheduleNeedsService => {
                "Scheduling a message requires a MessagingServiceSid."
            }
            ErrorCode::InvalidScheduleType => "ScheduleType must be 'fixed'.",
            ErrorCode::QueueOverflow => "Queue overflow",
            ErrorCode::Unreachable => "Unreachable destination handset",
            ErrorCode::UnknownDestination => "Unknown destination handset",
            ErrorCode::Landline => "Landline or unreachable carrier",
            ErrorCode::Filtered => "Message filtered",
            ErrorCode::Unknown => "Unknown error",
        }
    }

    pub fn more_info(self) -> String {
        format!("https://www.twilio.com/docs/errors/{}", self.code())
    }

    /// The asynchronous codes a carrier outcome can carry, looked up by number.
    pub fn from_code(code: u32) -> Option<ErrorCode> {
        [
            ErrorCode::QueueOverflow,
            ErrorCode::Unreachable,
            ErrorCode::UnknownDestination,
            ErrorCode::Landline,
            ErrorCode::Filtered,
            ErrorCode::Unknown,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}
