//! The parameters of status callbacks and inbound-message webhooks, as Twilio sends them.

use tern_store::Message;
use tern_types::MessageStatus;

fn p(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

/// A status callback for `m` having moved to `status`.
pub fn status_params(
    m: &Message,
    status: MessageStatus,
    error_code: Option<u32>,
    raw_dlr_done_date: Option<&str>,
    from: Option<&str>,
) -> Vec<(String, String)> {
    let mut v = vec![
        p("AccountSid", m.account_sid.as_str()),
        p("ApiVersion", "2010-04-01"),
        p("From", from.or(m.from.as_deref()).unwrap_or_default()),
        p("MessageSid", m.sid.as_str()),
        p("MessageStatus", status.as_str()),
        p("SmsSid", m.sid.as_str()),
        p("SmsStatus", status.as_str()),
        p("To", m.to.as_str()),
    ];
    if let Some(s) = m.messaging_service_sid {
        v.push(p("MessagingServiceSid", s.as_str()));
    }
    if let Some(code) = error_code.or(m.error_code) {
        v.push(p("ErrorCode", code.to_string()));
    }
    if matches!(
        status,
        MessageStatus::Delivered | MessageStatus::Undelivered
    ) && let Some(d) = raw_dlr_done_date
    {
        v.push(p("RawDlrDoneDate", d));
    }
    v
}

/// The webhook to a number's `SmsUrl` for an inbound message.
pub fn inbound_params(m: &Message) -> Vec<(String, String)> {
    let mut v = vec![
        p("ToCountry", country(&m.to)),
        p("ToState", ""),
        p("SmsMessageSid", m.sid.as_str()),
        p("NumMedia", m.num_media.to_string()),
        p("ToCity", ""),
        p("FromZip", ""),
        p("SmsSid", m.sid.as_str()),
        p("FromState", ""),
        p("SmsStatus", "received"),
        p("FromCity", ""),
        p("Body", m.body.as_str()),
        p(
            "FromCountry",
            m.from.as_deref().map(country).unwrap_or_default(),
        ),
        p("To", m.to.as_str()),
        p("ToZip", ""),
        p("NumSegments", m.num_segments.to_string()),
        p("MessageSid", m.sid.as_str()),
        p("AccountSid", m.account_sid.as_str()),
        p("From", m.from.as_deref().unwrap_or_default()),
        p("ApiVersion", "2010-04-01"),
    ];
    if let Some(s) = m.messaging_service_sid {
        v.push(p("MessagingServiceSid", s.as_str()));
    }
    v
}

fn country(number: &str) -> String {
    tern_types::E164::parse(number)
        .ok()
        .and_then(|n| n.country())
        .unwrap_or_default()
}
