//! Tern's shared vocabulary: SIDs, E.164 numbers, message statuses, Twilio error codes
//! and the date formats of the 2010-04-01 API. Pure data, no IO.

pub mod error_code;
pub mod phone;
pub mod sid;
pub mod status;
pub mod time;

pub use error_code::ErrorCode;
pub use phone::{E164, PhoneError};
pub use sid::{Sid, SidError, SidPrefix};
pub use status::{Direction, MessageStatus};
