//! IncomingPhoneNumbers: provisioning numbers to an account (simulated: any valid number
//! nobody holds), with their messaging and voice URLs.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tern_store::{NumberConfig, PhoneNumber, StoreError};
use tern_types::{E164, ErrorCode, Sid, SidPrefix};

use crate::error::{ApiError, ApiResult};
use crate::form::Params;
use crate::paging::{PageRequest, page_2010, slice};
use crate::{AppState, repr, strip_json};

fn config(form: &Params) -> ApiResult<NumberConfig> {
    Ok(NumberConfig {
        friendly_name: form.string("FriendlyName"),
        sms_url: form.url("SmsUrl")?,
        sms_method: form.method("SmsMethod")?,
        sms_fallback_url: form.url("SmsFallbackUrl")?,
        sms_fallback_method: form.method("SmsFallbackMethod")?,
        status_callback: form.url("StatusCallback")?,
        status_callback_method: form.method("StatusCallbackMethod")?,
        voice_url: form.url("VoiceUrl")?,
        voice_method: form.method("VoiceMethod")?,
        voice_fallback_url: form.url("VoiceFallbackUrl")?,
        voice_fallback_method: form.method("VoiceFallbackMethod")?,
    })
}

pub async fn create(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(acct): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (_, a) = s.authorize(&headers, &acct).await?;
    let form = Params::parse(&body);
    let raw = form
        .get("PhoneNumber")
        .ok_or_else(|| ApiError::with(ErrorCode::InvalidPhoneNumber, "PhoneNumber is required."))?;
    let phone = E164::parse(raw).map_err(|_| {
        ApiError::with(
            ErrorCode::InvalidPhoneNumber,
            format!("{raw} is not a valid phone number."),
        )
    })?;
    let t = tern_node::now_ms();
    let n = PhoneNumber {
        sid: Sid::generate(SidPrefix::PhoneNumber),
        account_sid: a.sid,
        phone_number: phone.as_str().to_string(),
        config: config(&form)?,
        created: t,
        updated: t,
    };
    match s.store.create_number(n.clone()).await {
        Ok(()) => Ok((StatusCode::CREATED, Json(repr::number(&n)))),
        Err(StoreError::Conflict(_)) => Err(ApiError::with(
            ErrorCode::PhoneNumberUnavailable,
            format!("{phone} is not available."),
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(acct): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let (_, a) = s.authorize(&headers, &acct).await?;
    let q = Params::parse(q.unwrap_or_default().as_bytes());
    let mut all = s.store.numbers(a.sid).await?;
    let mut filters = Vec::new();
    if let Some(pn) = q.string("PhoneNumber") {
        all.retain(|n| n.phone_number.contains(pn.trim()));
        filters.push(("PhoneNumber".to_string(), pn));
    }
    if let Some(name) = q.string("FriendlyName") {
        all.retain(|n| n.config.friendly_name.as_deref().unwrap_or(&n.phone_number) == name);
        filters.push(("FriendlyName".to_string(), name));
    }
    let req = PageRequest::from(&q)?;
    let (items, next) = slice(all, &req);
    let items = items.iter().map(repr::number).collect();
    let path = format!("/2010-04-01/Accounts/{}/IncomingPhoneNumbers.json", a.sid);
    Ok(Json(page_2010(
        "incoming_phone_numbers",
        items,
        &path,
        &filters,
        &req,
        next,
    )))
}

async fn own(
    s: &AppState,
    headers: &HeaderMap,
    acct: &str,
    number: &str,
) -> ApiResult<PhoneNumber> {
    let (_, a) = s.authorize(headers, acct).await?;
    let path = format!("/2010-04-01/Accounts/{acct}/IncomingPhoneNumbers/{number}");
    let sid = Sid::parse_as(strip_json(number), SidPrefix::PhoneNumber)
        .map_err(|_| ApiError::not_found(&path))?;
    match s.store.number(sid).await? {
        Some(n) if n.account_sid == a.sid => Ok(n),
        _ => Err(ApiError::not_found(&path)),
    }
}

pub async fn fetch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, number)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    Ok(Json(repr::number(
        &own(&s, &headers, &acct, &number).await?,
    )))
}

pub async fn update(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, number)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let n = own(&s, &headers, &acct, &number).await?;
    let cfg = config(&Params::parse(&body))?;
    let n = s
        .store
        .update_number(n.sid, cfg, tern_node::now_ms())
        .await?
        .unwrap_or(n);
    Ok(Json(repr::number(&n)))
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, number)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let n = own(&s, &headers, &acct, &number).await?;
    s.store.delete_number(n.sid).await?;
    Ok(StatusCode::NO_CONTENT)
}
