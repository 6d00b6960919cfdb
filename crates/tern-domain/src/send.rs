//! Validation of a send request (`POST …/Messages.json`), in Twilio's order of checks.
//! What needs the store (sender ownership, opt-outs, the service's pool) is checked by the
//! caller after this succeeds.

use chrono::{DateTime, Duration, Utc};
use tern_sms::{Encoding, segment_info};
use tern_types::{E164, ErrorCode, MessageStatus, Sid, SidPrefix};

use crate::lifecycle::initial_status;

/// Twilio's limit on a message body, in characters.
pub const MAX_BODY_CHARS: usize = 1600;
/// `ValidityPeriod` bounds in seconds; the maximum is also the default.
pub const MAX_VALIDITY_SECS: u32 = 36_000;
/// `SendAt` must be more than this far ahead…
pub const MIN_SCHEDULE_AHEAD: Duration = Duration::seconds(300);
/// …and no further than this.
pub const MAX_SCHEDULE_AHEAD: Duration = Duration::days(35);

/// The raw parameters of a create request, as the API received them.
#[derive(Debug, Default, Clone)]
pub struct SendParams {
    pub to: Option<String>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: Option<String>,
    pub media_urls: Vec<String>,
    pub status_callback: Option<String>,
    pub validity_period: Option<String>,
    pub schedule_type: Option<String>,
    pub send_at: Option<String>,
    pub provide_feedback: Option<String>,
}

/// A validated send, ready to be checked against the store and persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct SendPlan {
    pub to: E164,
    /// `None` when a Messaging Service picks the sender.
    pub from: Option<E164>,
    pub messaging_service_sid: Option<Sid>,
    pub body: String,
    pub encoding: Encoding,
    pub num_segments: u32,
    pub media_urls: Vec<String>,
    pub status_callback: Option<String>,
    /// `None` when not given: the Messaging Service's, else [`MAX_VALIDITY_SECS`].
    pub validity_secs: Option<u32>,
    pub send_at: Option<DateTime<Utc>>,
    pub provide_feedback: bool,
    pub initial_status: MessageStatus,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{message}")]
pub struct SendError {
    pub code: ErrorCode,
    pub message: String,
}

fn err(code: ErrorCode) -> SendError {
    SendError {
        code,
        message: code.message().to_string(),
    }
}

fn err_msg(code: ErrorCode, message: impl Into<String>) -> SendError {
    SendError {
        code,
        message: message.into(),
    }
}

/// Checks a callback URL the way Twilio does: absolute http(s), a host without underscores.
pub fn check_callback_url(raw: &str) -> Result<String, SendError> {
    let bad = || {
        err_msg(
            ErrorCode::InvalidCallbackUrl,
            format!("The StatusCallback URL {raw} is not a valid URL."),
        )
    };
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad());
    }
    match url.host_str() {
        Some(h) if !h.is_empty() && !h.contains('_') => Ok(raw.to_string()),
        _ => Err(bad()),
    }
}

fn non_empty(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Validates a send request at time `now`.
pub fn plan_send(p: &SendParams, now: DateTime<Utc>) -> Result<SendPlan, SendError> {
    let to = non_empty(&p.to).ok_or_else(|| err(ErrorCode::ToRequired))?;
    let to = E164::parse(to).map_err(|_| {
        err_msg(
            ErrorCode::InvalidTo,
            format!("The 'To' number {to} is not a valid phone number."),
        )
    })?;

    let service = match non_empty(&p.messaging_service_sid) {
        Some(s) => Some(
            Sid::parse_as(s, SidPrefix::MessagingService)
                .map_err(|_| err(ErrorCode::MessagingServiceNotFound))?,
        ),
        None => None,
    };
    let from = match non_empty(&p.from) {
        Some(f) => Some(E164::parse(f).map_err(|_| {
            err_msg(
                ErrorCode::InvalidFrom,
                format!("The 'From' number {f} is not a valid phone number."),
            )
        })?),
        None if service.is_some() => None,
        None => return Err(err(ErrorCode::FromRequired)),
    };

    let body = p.body.clone().unwrap_or_default();
    if body.is_empty() && p.media_urls.is_empty() {
        return Err(err(ErrorCode::BodyRequired));
    }
    if tern_sms::char_count(&body) > MAX_BODY_CHARS {
        return Err(err(ErrorCode::BodyTooLong));
    }
    if p.media_urls.len() > 10 {
        return Err(err_msg(
            ErrorCode::InvalidParameter,
            "At most 10 MediaUrl values are allowed.",
        ));
    }
    for m in &p.media_urls {
        check_callback_url(m).map_err(|_| {
            err_msg(
                ErrorCode::InvalidParameter,
                format!("The MediaUrl {m} is not a valid URL."),
            )
        })?;
    }

    let status_callback = non_empty(&p.status_callback)
        .map(check_callback_url)
        .transpose()?;

    let validity_secs = match non_empty(&p.validity_period) {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=MAX_VALIDITY_SECS).contains(&n) => Some(n),
            _ => {
                return Err(err_msg(
                    ErrorCode::InvalidParameter,
                    "ValidityPeriod must be an integer between 1 and 36000.",
                ));
            }
        },
    };

    let send_at = match non_empty(&p.schedule_type) {
        None => None,
        Some("fixed") => {
            if service.is_none() {
                return Err(err(ErrorCode::ScheduleNeedsService));
            }
            let raw = non_empty(&p.send_at).ok_or_else(|| err(ErrorCode::SendAtRequired))?;
            let at = tern_types::time::parse_instant(raw).ok_or_else(|| {
                err_msg(
                    ErrorCode::SendAtOutOfRange,
                    "SendAt must be an ISO 8601 date-time.",
                )
            })?;
            let ahead = at - now;
            if ahead <= MIN_SCHEDULE_AHEAD || ahead > MAX_SCHEDULE_AHEAD {
                return Err(err(ErrorCode::SendAtOutOfRange));
            }
            Some(at)
        }
        Some(_) => return Err(err(ErrorCode::InvalidScheduleType)),
    };

    let provide_feedback = match non_empty(&p.provide_feedback) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => {
            return Err(err_msg(
                ErrorCode::InvalidParameter,
                "ProvideFeedback must be true or false.",
            ));
        }
    };

    let seg = segment_info(&body);
    Ok(SendPlan {
        to,
        from,
        initial_status: initial_status(service.is_some(), send_at.is_some()),
        messaging_service_sid: service,
        encoding: seg.encoding,
        num_segments: seg.num_segments,
        body,
        media_urls: p.media_urls.clone(),
        status_callback,
        validity_secs,
        send_at,
        provide_feedback,
    })
}

/// Round-robin choice of a sender from a Messaging Service's pool, by a counter the store
/// keeps per service.
pub fn pick_sender<T: Clone>(pool: &[T], counter: u64) -> Option<T> {
    if pool.is_empty() {
        return None;
    }
    let i = (counter % pool.len() as u64) as usize;
    pool.get(i).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> SendParams {
        SendParams {
            to: Some("+14155552671".into()),
            from: Some("+14155550100".into()),
            body: Some("hello".into()),
            ..Default::default()
        }
    }

    fn now() -> DateTime<Utc> {
        tern_types::time::parse_instant("2026-01-01T00:00:00Z").unwrap()
    }

    fn code(p: &SendParams) -> ErrorCode {
        plan_send(p, now()).unwrap_err().code
    }

    #[test]
    fn a_plain_send_is_queued_with_defaults() {
        let plan = plan_send(&params(), now()).unwrap();
        assert_eq!(plan.initial_status, MessageStatus::Queued);
        assert_eq!(plan.validity_secs, None);
        assert_eq!(plan.num_segments, 1);
        assert_eq!(plan.to.as_str(), "+14155552671");
    }

    #[test]
    fn errors_come_in_twilios_order() {
        assert_eq!(code(&SendParams::default()), ErrorCode::ToRequired);
        assert_eq!(
            code(&SendParams {
                to: Some("12".into()),
                ..params()
            }),
            ErrorCode::InvalidTo
        );
        assert_eq!(
            code(&SendParams {
                from: None,
                ..params()
            }),
            ErrorCode::FromRequired
        );
        assert_eq!(
            code(&SendParams {
                from: Some("x".into()),
                ..params()
            }),
            ErrorCode::InvalidFrom
        );
        assert_eq!(
            code(&SendParams {
                body: None,
                ..params()
            }),
            ErrorCode::BodyRequired
        );
        assert_eq!(
            code(&SendParams {
                body: Some("a".repeat(1601)),
                ..params()
            }),
            ErrorCode::BodyTooLong
        );
        assert!(
            plan_send(
                &SendParams {
                    body: Some("a".repeat(1600)),
                    ..params()
                },
                now()
            )
            .is_ok()
        );
        assert_eq!(
            code(&SendParams {
                status_callback: Some("ftp://x".into()),
                ..params()
            }),
            ErrorCode::InvalidCallbackUrl
        );
        assert_eq!(
            code(&SendParams {
                status_callback: Some("http://bad_host/cb".into()),
                ..params()
            }),
            ErrorCode::InvalidCallbackUrl
        );
        assert_eq!(
            code(&SendParams {
                validity_period: Some("0".into()),
                ..params()
            }),
            ErrorCode::InvalidParameter
        );
    }

    #[test]
    fn scheduling_needs_a_service_a_time_and_a_window() {
        let mg = format!("MG{}", "a".repeat(32));
        let sched = SendParams {
            messaging_service_sid: Some(mg.clone()),
            schedule_type: Some("fixed".into()),
            send_at: Some("2026-01-01T01:00:00Z".into()),
            ..params()
        };
        assert_eq!(
            plan_send(&sched, now()).unwrap().initial_status,
            MessageStatus::Scheduled
        );
        assert_eq!(
            code(&SendParams {
                messaging_service_sid: None,
                ..sched.clone()
            }),
            ErrorCode::ScheduleNeedsService
        );
        assert_eq!(
            code(&SendParams {
                send_at: None,
                ..sched.clone()
            }),
            ErrorCode::SendAtRequired
        );
        assert_eq!(
            code(&SendParams {
                send_at: Some("2026-01-01T00:04:00Z".into()),
                ..sched.clone()
            }),
            ErrorCode::SendAtOutOfRange
        );
        assert_eq!(
            code(&SendParams {
                send_at: Some("2026-03-01T00:00:00Z".into()),
                ..sched.clone()
            }),
            ErrorCode::SendAtOutOfRange
        );
        assert_eq!(
            code(&SendParams {
                schedule_type: Some("later".into()),
                ..sched
            }),
            ErrorCode::InvalidScheduleType
        );
        let with_service = SendParams {
            messaging_service_sid: Some(mg),
            from: None,
            ..params()
        };
        assert_eq!(
            plan_send(&with_service, now()).unwrap().initial_status,
            MessageStatus::Accepted
        );
    }

    #[test]
    fn round_robin_cycles_through_the_pool() {
        let pool = ["a", "b"];
        let picks: Vec<_> = (0..4).map(|c| pick_sender(&pool, c).unwrap()).collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
        assert_eq!(pick_sender::<&str>(&[], 3), None);
    }
}
