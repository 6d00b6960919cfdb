//! Accounts (subaccounts) and API keys.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;
use tern_store::{Account, AccountStatus, ApiKey};
use tern_types::{ErrorCode, Sid, SidPrefix};

use crate::error::{ApiError, ApiResult};
use crate::form::Params;
use crate::paging::{PageRequest, page_2010, slice};
use crate::{AppState, repr, strip_json};

fn now() -> i64 {
    tern_node::now_ms()
}

/// A fresh auth token: 32 lowercase hex characters, as Twilio's are.
pub fn new_auth_token() -> String {
    Sid::generate(SidPrefix::Account).as_str()[2..].to_string()
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = s.principal(&headers).await?;
    p.require_account_credentials()?;
    let q = Params::parse(q.unwrap_or_default().as_bytes());
    let mut all = vec![p.account.clone()];
    all.extend(s.store.subaccounts(p.account.sid).await?);
    if let Some(name) = q.get("FriendlyName") {
        all.retain(|a| a.friendly_name == name);
    }
    if let Some(status) = q.get("Status") {
        all.retain(|a| a.status.as_str() == status);
    }
    let req = PageRequest::from(&q)?;
    let (items, next) = slice(all, &req);
    let items = items.iter().map(repr::account).collect();
    Ok(Json(page_2010(
        "accounts",
        items,
        "/2010-04-01/Accounts.json",
        &[],
        &req,
        next,
    )))
}

pub async fn create(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = s.principal(&headers).await?;
    p.require_account_credentials()?;
    if p.account.parent_sid.is_some() {
        return Err(ApiError::with(
            ErrorCode::InvalidParameter,
            "A subaccount cannot create subaccounts.",
        ));
    }
    let form = Params::parse(&body);
    let t = now();
    let a = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: Some(p.account.sid),
        friendly_name: form.string("FriendlyName").unwrap_or_else(|| {
            format!(
                "SubAccount Created at {}",
                tern_types::time::rfc2822(tern_types::time::from_millis(t))
            )
        }),
        auth_token: new_auth_token(),
        status: AccountStatus::Active,
        created: t,
        updated: t,
    };
    s.store.create_account(a.clone()).await?;
    Ok((StatusCode::CREATED, Json(repr::account(&a))))
}

pub async fn fetch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> ApiResult<Json<Value>> {
    let (_, a) = s.authorize(&headers, strip_json(&file)).await?;
    Ok(Json(repr::account(&a)))
}

pub async fn update(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(file): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (p, a) = s.authorize(&headers, strip_json(&file)).await?;
    p.require_account_credentials()?;
    let form = Params::parse(&body);
    let status = match form.get("Status") {
        None => None,
        Some(st) => Some(AccountStatus::parse(st).ok_or_else(|| {
            ApiError::invalid(format!(
                "Status must be active, suspended or closed, not {st}"
            ))
        })?),
    };
    if status.is_some() && a.parent_sid.is_none() {
        return Err(ApiError::invalid(
            "The status of a main account cannot be changed through the API.",
        ));
    }
    if a.status == AccountStatus::Closed && status.is_some_and(|s| s != AccountStatus::Closed) {
        return Err(ApiError::invalid("A closed account cannot be reopened."));
    }
    let updated = s
        .store
        .update_account(a.sid, form.string("FriendlyName"), status, now())
        .await?;
    let updated = updated
        .ok_or_else(|| ApiError::not_found(&format!("/2010-04-01/Accounts/{}.json", a.sid)))?;
    Ok(Json(repr::account(&updated)))
}

pub async fn list_keys(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(acct): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let (p, a) = s.authorize(&headers, &acct).await?;
    p.require_account_credentials()?;
    let q = Params::parse(q.unwrap_or_default().as_bytes());
    let req = PageRequest::from(&q)?;
    let (items, next) = slice(s.store.keys(a.sid).await?, &req);
    let items = items.iter().map(|k| repr::key(k, None)).collect();
    Ok(Json(page_2010(
        "keys",
        items,
        &format!("/2010-04-01/Accounts/{}/Keys.json", a.sid),
        &[],
        &req,
        next,
    )))
}

pub async fn create_key(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(acct): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (p, a) = s.authorize(&headers, &acct).await?;
    p.require_account_credentials()?;
    let form = Params::parse(&body);
    let secret = Alphanumeric.sample_string(&mut rand::rng(), 32);
    let t = now();
    let k = ApiKey {
        sid: Sid::generate(SidPrefix::ApiKey),
        account_sid: a.sid,
        friendly_name: form.string("FriendlyName").unwrap_or_default(),
        secret_hash: crate::hash_secret(&secret),
        created: t,
        updated: t,
    };
    s.store.create_key(k.clone()).await?;
    Ok((StatusCode::CREATED, Json(repr::key(&k, Some(&secret)))))
}

async fn own_key(s: &AppState, headers: &HeaderMap, acct: &str, key: &str) -> ApiResult<ApiKey> {
    let (p, a) = s.authorize(headers, acct).await?;
    p.require_account_credentials()?;
    let path = format!("/2010-04-01/Accounts/{acct}/Keys/{key}");
    let sid = Sid::parse_as(strip_json(key), SidPrefix::ApiKey)
        .map_err(|_| ApiError::not_found(&path))?;
    match s.store.key(sid).await? {
        Some(k) if k.account_sid == a.sid => Ok(k),
        _ => Err(ApiError::not_found(&path)),
    }
}

pub async fn fetch_key(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, key)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let k = own_key(&s, &headers, &acct, &key).await?;
    Ok(Json(repr::key(&k, None)))
}

pub async fn update_key(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, key)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let k = own_key(&s, &headers, &acct, &key).await?;
    let form = Params::parse(&body);
    let name = form
        .string("FriendlyName")
        .unwrap_or(k.friendly_name.clone());
    let k = s.store.update_key(k.sid, name, now()).await?.unwrap_or(k);
    Ok(Json(repr::key(&k, None)))
}

pub async fn delete_key(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path((acct, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let k = own_key(&s, &headers, &acct, &key).await?;
    s.store.delete_key(k.sid).await?;
    Ok(StatusCode::NO_CONTENT)
}
