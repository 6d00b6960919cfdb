//! JSON representations, field for field as Twilio's OpenAPI files give them.

use serde::Serialize;
use serde_json::{Value, json};
use tern_store::{Account, ApiKey, Feedback, Message, MessagingService, PhoneNumber};
use tern_types::time::{from_millis, iso8601, rfc2822};
use tern_types::{ErrorCode, Sid};

fn date(ms: i64) -> String {
    rfc2822(from_millis(ms))
}

pub fn account(a: &Account) -> Value {
    let base = format!("/2010-04-01/Accounts/{}", a.sid);
    json!({
        "auth_token": a.auth_token,
        "date_created": date(a.created),
        "date_updated": date(a.updated),
        "friendly_name": a.friendly_name,
        "owner_account_sid": a.parent_sid.unwrap_or(a.sid),
        "sid": a.sid,
        "status": a.status.as_str(),
        "subresource_uris": {
            "messages": format!("{base}/Messages.json"),
            "incoming_phone_numbers": format!("{base}/IncomingPhoneNumbers.json"),
            "keys": format!("{base}/Keys.json"),
        },
        "type": "Full",
        "uri": format!("{base}.json"),
    })
}

pub fn key(k: &ApiKey, secret: Option<&str>) -> Value {
    let mut v = json!({
        "sid": k.sid,
        "friendly_name": k.friendly_name,
        "date_created": date(k.created),
        "date_updated": date(k.updated),
    });
    if let (Some(s), Some(obj)) = (secret, v.as_object_mut()) {
        obj.insert("secret".into(), json!(s));
    }
    v
}

pub fn number(n: &PhoneNumber) -> Value {
    let c = &n.config;
    let or = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_string());
    json!({
        "account_sid": n.account_sid,
        "address_requirements": "none",
        "address_sid": null,
        "api_version": "2010-04-01",
        "beta": false,
        "bundle_sid": null,
        "capabilities": {"fax": false, "mms": true, "sms": true, "voice": true},
        "date_created": date(n.created),
        "date_updated": date(n.updated),
        "emergency_address_sid": null,
        "emergency_address_status": "unregistered",
        "emergency_status": "Inactive",
        "friendly_name": c.friendly_name.clone().unwrap_or_else(|| n.phone_number.clone()),
        "identity_sid": null,
        "origin": "twilio",
        "phone_number": n.phone_number,
        "sid": n.sid,
        "sms_application_sid": "",
        "sms_fallback_method": or(&c.sms_fallback_method, "POST"),
        "sms_fallback_url": or(&c.sms_fallback_url, ""),
        "sms_method": or(&c.sms_method, "POST"),
        "sms_url": or(&c.sms_url, ""),
        "status": "in-use",
        "status_callback": or(&c.status_callback, ""),
        "status_callback_method": or(&c.status_callback_method, "POST"),
        "subresource_uris": {
            "assigned_add_ons": format!("/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{}/AssignedAddOns.json", n.account_sid, n.sid),
        },
        "trunk_sid": null,
        "uri": format!("/2010-04-01/Accounts/{}/IncomingPhoneNumbers/{}.json", n.account_sid, n.sid),
        "voice_application_sid": "",
        "voice_caller_id_lookup": false,
        "voice_fallback_method": or(&c.voice_fallback_method, "POST"),
        "voice_fallback_url": or(&c.voice_fallback_url, ""),
        "voice_method": or(&c.voice_method, "POST"),
        "voice_receive_mode": "voice",
        "voice_url": or(&c.voice_url, ""),
    })
}

/// A message as the 2010-04-01 API shows it: fields in Twilio's (alphabetical) order.
///
/// A struct rather than a `json!` map because the create call answers with one per
/// request: the map costs a key string and a tree node per field before anything is
/// written (4 % of a node's CPU while accepting).
#[derive(Serialize)]
pub struct MessageRepr {
    account_sid: Sid,
    api_version: &'static str,
    body: String,
    date_created: String,
    date_sent: Option<String>,
    date_updated: String,
    direction: &'static str,
    error_code: Option<u32>,
    error_message: Option<&'static str>,
    from: Option<String>,
    messaging_service_sid: Option<Sid>,
    num_media: String,
    num_segments: String,
    price: Option<&'static str>,
    price_unit: &'static str,
    sid: Sid,
    status: &'static str,
    subresource_uris: MessageSubresources,
    to: String,
    uri: String,
}

#[derive(Serialize)]
struct MessageSubresources {
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<String>,
    media: String,
}

pub fn message(m: Message) -> MessageRepr {
    let base = format!("/2010-04-01/Accounts/{}/Messages/{}", m.account_sid, m.sid);
    MessageRepr {
        account_sid: m.account_sid,
        api_version: "2010-04-01",
        body: m.body,
        date_created: date(m.created),
        date_sent: m.sent.map(date),
        date_updated: date(m.updated),
        direction: m.direction.as_str(),
        error_code: m.error_code,
        error_message: m
            .error_code
            .and_then(|c| ErrorCode::from_code(c).map(|e| e.message())),
        from: m.from,
        messaging_service_sid: m.messaging_service_sid,
        num_media: m.num_media.to_string(),
        num_segments: m.num_segments.to_string(),
        price: None,
        price_unit: "USD",
        sid: m.sid,
        status: m.status.as_str(),
        subresource_uris: MessageSubresources {
            feedback: m.provide_feedback.then(|| format!("{base}/Feedback.json")),
            media: format!("{base}/Media.json"),
        },
        to: m.to,
        uri: format!("{base}.json"),
    }
}

pub fn service(s: &MessagingService, base_url: &str) -> Value {
    let c = &s.config;
    let url = format!("{base_url}/v1/Services/{}", s.sid);
    json!({
        "account_sid": s.account_sid,
        "area_code_geomatch": true,
        "date_created": iso8601(from_millis(s.created)),
        "date_updated": iso8601(from_millis(s.updated)),
        "fallback_method": "POST",
        "fallback_to_long_code": true,
        "fallback_url": c.fallback_url,
        "friendly_name": c.friendly_name.clone().unwrap_or_default(),
        "inbound_method": c.inbound_method.clone().unwrap_or_else(|| "POST".into()),
        "inbound_request_url": c.inbound_request_url,
        "links": {
            "phone_numbers": format!("{url}/PhoneNumbers"),
            "short_codes": format!("{url}/ShortCodes"),
            "alpha_senders": format!("{url}/AlphaSenders"),
        },
        "mms_converter": true,
        "scan_message_content": "inherit",
        "sid": s.sid,
        "smart_encoding": true,
        "status_callback": c.status_callback,
        "sticky_sender": c.sticky(),
        "synchronous_validation": true,
        "url": url,
        "us_app_to_person_registered": false,
        "use_inbound_webhook_on_number": false,
        "usecase": "undeclared",
        "validity_period": c.validity_period.unwrap_or(36_000),
    })
}

pub fn service_number(
    service: &MessagingService,
    n: &PhoneNumber,
    added: i64,
    base_url: &str,
) -> Value {
    let country = tern_types::E164::parse(&n.phone_number)
        .ok()
        .and_then(|e| e.country())
        .unwrap_or_default();
    json!({
        "account_sid": n.account_sid,
        "capabilities": ["SMS", "MMS", "Voice"],
        "country_code": country,
        "date_created": iso8601(from_millis(added)),
        "date_updated": iso8601(from_millis(added)),
        "phone_number": n.phone_number,
        "service_sid": service.sid,
        "sid": n.sid,
        "url": format!("{base_url}/v1/Services/{}/PhoneNumbers/{}", service.sid, n.sid),
    })
}

/// `api.v2010.account.message.message_feedback`.
pub fn feedback(a: &Account, f: &Feedback) -> Value {
    json!({
        "account_sid": a.sid,
        "message_sid": f.message_sid,
        "outcome": f.outcome.as_str(),
        "date_created": date(f.created),
        "date_updated": date(f.updated),
        "uri": format!(
            "/2010-04-01/Accounts/{}/Messages/{}/Feedback.json",
            a.sid, f.message_sid
        ),
    })
}
