//! Messages: create (send), fetch, list with filters and paging, update (redact, cancel),
//! delete; and their Feedback subresource.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use chrono::{Duration, NaiveTime};
use serde_json::Value;
use tern_domain::SendParams;
use tern_store::{Account, FeedbackOutcome, Message, MessageQuery};
use tern_types::{ErrorCode, Sid, SidPrefix};
use tracing::Instrument;

use crate::error::{ApiError, ApiResult};
use crate::form::Params;
use crate::paging::{PageRequest, page_2010};
use crate::{AppState, repr, strip_json};

pub async fn create(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(acct): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<repr::MessageRepr>)> {
    let (_, a) = s.authorize(&headers, &acct).await?;
    let f = Params::parse(&body);
    let params = SendParams {
        to: f.string("To"),
        from: f.string("From"),
        messaging_service_sid: f.string("MessagingServiceSid"),
        body: f.string("Body"),
        media_urls: f.all("MediaUrl"),
        status_callback: f.string("StatusCallback"),
        validity_period: f.string("ValidityPeriod"),
        schedule_type: f.string("ScheduleType"),
        send_at: f.string("SendAt"),
        provide_feedback: f.string("ProvideFeedback"),
    };
    let span = tracing::info_span!("send", account_sid = %a.sid);
    let m = s.engine.send(&a, &params).instrument(span).await?;
    Ok((StatusCode::CREATED, Json(repr::message(m))))
}

/// A `DateSent` filter value: a day (`YYYY-MM-DD`, the whole day) or an instant
/// (`YYYY-MM-DDTHH:MM:SSZ`, as the SDKs send `datetime` values), as inclusive ms bounds.
fn date_bounds(raw: &str, name: &str) -> ApiResult<(i64, i64)> {
    if let Some(day) = tern_types::time::parse_day(raw) {
        return Ok(day_bounds(day));
    }
    match tern_types::time::parse_instant(raw) {
        Some(t) => Ok((t.timestamp_millis(), t.timestamp_millis())),
        None => Err(ApiError::invalid(format!(
            "{name} must be a date (YYYY-MM-DD) or a UTC date-time (YYYY-MM-DDTHH:MM:SSZ)"
        ))),
    }
}

/// The whole of `day` (UTC) as inclusive ms bounds.
fn day_bounds(day: chrono::NaiveDate) -> (i64, i64) {
    let start = day.and_time(NaiveTime::MIN).and_utc();
    (
        start.timestamp_millis(),
        (start + Duration::days(1)).timestamp_millis() - 1,
    )
}

/// `PA<created>_<sid>`: where the next page starts.
fn parse_token(t: &str) -> Option<(i64, Sid)> {
    let (created, sid) = t.strip_prefix("PA")?.split_once('_')?;
    Some((created.parse().ok()?, sid.parse().ok()?))
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(acct): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let (_, a) = s.authorize(&headers, &acct).await?;
    let q = Params::parse(q.unwrap_or_default().as_bytes());
    let req = PageRequest::from(&q)?;
    let mut query = MessageQuery {
        limit: req.size,
        ..Default::default()
    };
    let mut filters = Vec::new();
    for name in ["To", "From", "DateSent", "DateSent<", "DateSent>"] {
        let Some(v) = q.string(name) else { continue };
        filters.push((name.to_string(), v.clone()));
        match name {
            "To" => query.to = Some(v),
            "From" => query.from = Some(v),
            "DateSent" => {
                let (lo, hi) = match tern_types::time::parse_instant(&v) {
                    // An instant names its whole day here.
                    Some(t) => day_bounds(t.date_naive()),
                    None => date_bounds(&v, name)?,
                };
                query.sent_after = Some(lo);
                query.sent_before = Some(hi);
            }
            "DateSent<" => query.sent_before = Some(date_bounds(&v, name)?.1),
            _ => query.sent_after = Some(date_bounds(&v, name)?.0),
        }
    }
    if let Some(t) = &req.token {
        query.after =
            Some(parse_token(t).ok_or_else(|| ApiError::invalid("PageToken is not valid"))?);
    } else if req.page > 0 {
        return Err(ApiError::invalid(
            "Page > 0 needs the PageToken of the previous page's next_page_uri",
        ));
    }
    let page = s.store.messages(a.sid, query).await?;
    let next = page.next.map(|(created, sid)| format!("PA{created}_{sid}"));
    let items: Vec<_> = page.items.into_iter().map(repr::message).collect();
    let path = format!("/2010-04-01/Accounts/{}/Messages.json", a.sid);
    Ok(Json(page_2010(
        "messages", items, &path, &filters, &req, next,
    )))
}

async fn own(
    s: &AppState,
    headers: &HeaderMap,
    acct: &str,
    message: &str,
) -> ApiResult<(Account, Message)> {
    let (_, a) = s.authorize(headers, acct).await?;
    let path = format!("/2010-04-01/Accounts/{acct}/Messages/{message}");
    let sid = Sid::parse_as(strip_json(message), SidPrefix::Message)
        .map_err(|_| ApiError::not_found(&path))?;
    match s.store.message(sid).await? {
        Some(m) if m.account_sid == a.sid => Ok((a, m)),
        _ => Err(ApiError::not_found(&path)),
    }
}

pub async fn fetch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, message)): Path<(String, String)>,
) -> ApiResult<Json<repr::MessageRepr>> {
    let (_, m) = own(&s, &headers, &acct, &message).await?;
    Ok(Json(repr::message(m)))
}

pub async fn update(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, message)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<repr::MessageRepr>> {
    let (_, m) = own(&s, &headers, &acct, &message).await?;
    let f = Params::parse(&body);
    let mut m = m;
    if let Some(status) = f.get("Status") {
        if status != "canceled" {
            return Err(ApiError::invalid("Status can only be set to canceled"));
        }
        m = s.engine.cancel(&m).await?;
    }
    if let Some(body) = f.get("Body") {
        if !body.is_empty() {
            return Err(ApiError::invalid(
                "Body can only be set to the empty string (redaction)",
            ));
        }
        if !m.status.is_terminal() {
            return Err(ApiError::with(
                ErrorCode::InFlight,
                "A message can be redacted only once it is in a final state.",
            ));
        }
        m = s
            .store
            .redact_message(m.sid, tern_node::now_ms())
            .await?
            .unwrap_or(m);
    }
    Ok(Json(repr::message(m)))
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, message)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, m) = own(&s, &headers, &acct, &message).await?;
    if !m.status.is_terminal() {
        return Err(ApiError::with(
            ErrorCode::InFlight,
            "A message can be deleted only once it is in a final state.",
        ));
    }
    s.store.delete_message(m.sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST Messages/{Sid}/Feedback.json`: whether the recipient of a message sent with
/// `ProvideFeedback=true` performed the tracked action (`Outcome`, `confirmed` when
/// absent: the point of posting is to confirm, as the message starts out unconfirmed).
/// Posting again replaces the outcome. 200, as the 2010-04-01 OpenAPI file answers.
pub async fn feedback(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, message)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (_, a) = s.authorize(&headers, &acct).await?;
    let path = format!("/2010-04-01/Accounts/{acct}/Messages/{message}/Feedback.json");
    let sid =
        Sid::parse_as(&message, SidPrefix::Message).map_err(|_| ApiError::not_found(&path))?;
    let f = Params::parse(&body);
    let outcome = match f.get("Outcome") {
        None | Some("") => FeedbackOutcome::Confirmed,
        Some(o) => FeedbackOutcome::parse(o).ok_or_else(|| {
            ApiError::invalid(format!(
                "Outcome must be confirmed or unconfirmed, not {o:?}"
            ))
        })?,
    };
    let span = tracing::info_span!("feedback", account_sid = %a.sid, message_sid = %sid);
    let fb = s
        .engine
        .feedback(&a, sid, outcome.is_confirmed())
        .instrument(span)
        .await?;
    Ok(Json(repr::feedback(&a, &fb)))
}
