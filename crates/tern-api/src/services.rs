//! Messaging Services (Messaging v1): a pool of senders for `MessagingServiceSid` sends.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use tern_store::{MessagingService, ServiceConfig, StoreError};
use tern_types::{ErrorCode, Sid, SidPrefix};

use crate::error::{ApiError, ApiResult};
use crate::form::Params;
use crate::paging::{PageRequest, page_v1, slice};
use crate::{AppState, base_url, repr};

fn config(f: &Params) -> ApiResult<ServiceConfig> {
    let validity_period = match f.get("ValidityPeriod") {
        None => None,
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=36_000).contains(&n) => Some(n),
            _ => {
                return Err(ApiError::invalid(
                    "ValidityPeriod must be an integer between 1 and 36000",
                ));
            }
        },
    };
    Ok(ServiceConfig {
        friendly_name: f.string("FriendlyName"),
        status_callback: f.url("StatusCallback")?,
        inbound_request_url: f.url("InboundRequestUrl")?,
        inbound_method: f.method("InboundMethod")?,
        fallback_url: f.url("FallbackUrl")?,
        validity_period,
        sticky_sender: f.bool("StickySender")?,
    })
}

fn not_found(path: &str) -> ApiError {
    ApiError::not_found(path)
}

async fn own(s: &AppState, headers: &HeaderMap, service: &str) -> ApiResult<MessagingService> {
    let p = s.principal(headers).await?;
    let path = format!("/v1/Services/{service}");
    let sid = Sid::parse_as(service, SidPrefix::MessagingService).map_err(|_| not_found(&path))?;
    match s.store.service(sid).await? {
        Some(svc) if svc.account_sid == p.account.sid => Ok(svc),
        _ => Err(not_found(&path)),
    }
}

pub async fn create(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = s.principal(&headers).await?;
    let f = Params::parse(&body);
    let cfg = config(&f)?;
    if cfg.friendly_name.as_deref().is_none_or(str::is_empty) {
        return Err(ApiError::invalid("FriendlyName is required"));
    }
    let t = tern_node::now_ms();
    let svc = MessagingService {
        sid: Sid::generate(SidPrefix::MessagingService),
        account_sid: p.account.sid,
        config: cfg,
        created: t,
        updated: t,
    };
    s.store.create_service(svc.clone()).await?;
    Ok((
        StatusCode::CREATED,
        Json(repr::service(&svc, &base_url(&headers))),
    ))
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = s.principal(&headers).await?;
    let q = Params::parse(q.unwrap_or_default().as_bytes());
    let req = PageRequest::from(&q)?;
    let (items, next) = slice(s.store.services(p.account.sid).await?, &req);
    let base = base_url(&headers);
    let items = items.iter().map(|svc| repr::service(svc, &base)).collect();
    Ok(Json(page_v1(
        "services",
        items,
        &format!("{base}/v1/Services"),
        &req,
        next,
    )))
}

pub async fn fetch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> ApiResult<Json<Value>> {
    let svc = own(&s, &headers, &service).await?;
    Ok(Json(repr::service(&svc, &base_url(&headers))))
}

pub async fn update(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let svc = own(&s, &headers, &service).await?;
    let cfg = config(&Params::parse(&body))?;
    let svc = s
        .store
        .update_service(svc.sid, cfg, tern_node::now_ms())
        .await?
        .unwrap_or(svc);
    Ok(Json(repr::service(&svc, &base_url(&headers))))
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(service): Path<String>,
) -> ApiResult<StatusCode> {
    let svc = own(&s, &headers, &service).await?;
    s.store.delete_service(svc.sid).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn add_number(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let svc = own(&s, &headers, &service).await?;
    let f = Params::parse(&body);
    let raw = f
        .get("PhoneNumberSid")
        .ok_or_else(|| ApiError::invalid("PhoneNumberSid is required"))?;
    let bad = || {
        ApiError::with(
            ErrorCode::InvalidPhoneNumber,
            format!("{raw} is not a phone number of this account"),
        )
    };
    let sid = Sid::parse_as(raw, SidPrefix::PhoneNumber).map_err(|_| bad())?;
    let n = match s.store.number(sid).await? {
        Some(n) if n.account_sid == svc.account_sid => n,
        _ => return Err(bad()),
    };
    let t = tern_node::now_ms();
    match s.store.add_service_number(svc.sid, n.sid, t).await {
        Ok(()) => Ok((
            StatusCode::CREATED,
            Json(repr::service_number(&svc, &n, t, &base_url(&headers))),
        )),
        Err(StoreError::Conflict(_)) => Err(ApiError::invalid(
            "The phone number is already in this Messaging Service",
        )),
        Err(e) => Err(e.into()),
    }
}

pub async fn list_numbers(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(service): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let svc = own(&s, &headers, &service).await?;
    let q = Params::parse(q.unwrap_or_default().as_bytes());
    let req = PageRequest::from(&q)?;
    let (items, next) = slice(s.store.service_numbers(svc.sid).await?, &req);
    let base = base_url(&headers);
    let items = items
        .iter()
        .map(|(n, t)| repr::service_number(&svc, n, *t, &base))
        .collect();
    Ok(Json(page_v1(
        "phone_numbers",
        items,
        &format!("{base}/v1/Services/{}/PhoneNumbers", svc.sid),
        &req,
        next,
    )))
}

async fn pool_member(
    s: &AppState,
    headers: &HeaderMap,
    service: &str,
    number: &str,
) -> ApiResult<(MessagingService, tern_store::PhoneNumber, i64)> {
    let svc = own(s, headers, service).await?;
    let path = format!("/v1/Services/{service}/PhoneNumbers/{number}");
    let sid = Sid::parse_as(number, SidPrefix::PhoneNumber).map_err(|_| not_found(&path))?;
    let pool = s.store.service_numbers(svc.sid).await?;
    let (n, t) = pool
        .into_iter()
        .find(|(n, _)| n.sid == sid)
        .ok_or_else(|| not_found(&path))?;
    Ok((svc, n, t))
}

pub async fn fetch_number(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((service, number)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (svc, n, t) = pool_member(&s, &headers, &service, &number).await?;
    Ok(Json(repr::service_number(&svc, &n, t, &base_url(&headers))))
}

pub async fn remove_number(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((service, number)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (svc, n, _) = pool_member(&s, &headers, &service, &number).await?;
    s.store.remove_service_number(svc.sid, n.sid).await?;
    Ok(StatusCode::NO_CONTENT)
}
