//! HTTP Basic authentication with `AccountSid:AuthToken` or `SKxxx:secret`, and the rule of
//! which account a principal may act for: its own, and its subaccounts.

use axum::http::HeaderMap;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tern_store::{Account, AccountStatus, Store};
use tern_types::{ErrorCode, Sid, SidPrefix};

use crate::error::{ApiError, ApiResult};

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account the credentials belong to.
    pub account: Account,
    /// Set when an API key was used.
    pub key: Option<Sid>,
}

impl Principal {
    /// Standard API keys may not manage accounts or keys (as on Twilio).
    pub fn require_account_credentials(&self) -> ApiResult<()> {
        match self.key {
            None => Ok(()),
            Some(_) => Err(ApiError::new(ErrorCode::Authentication)),
        }
    }
}

/// SHA-256 of an API key secret. Secrets are 32 random characters, so a fast hash is as
/// strong as a slow one here and keeps authentication cheap on every request.
pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

fn unauthorized() -> ApiError {
    ApiError::new(ErrorCode::Authentication)
}

fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

pub async fn authenticate(store: &dyn Store, headers: &HeaderMap) -> ApiResult<Principal> {
    let (user, pass) = credentials(headers).ok_or_else(unauthorized)?;
    let sid: Sid = user.parse().map_err(|_| unauthorized())?;
    let principal = match sid.prefix() {
        SidPrefix::Account => {
            let account = store.account(sid).await?.ok_or_else(unauthorized)?;
            if !bool::from(account.auth_token.as_bytes().ct_eq(pass.as_bytes())) {
                return Err(unauthorized());
            }
            Principal { account, key: None }
        }
        SidPrefix::ApiKey => {
            let key = store.key(sid).await?.ok_or_else(unauthorized)?;
            if !bool::from(key.secret_hash.as_slice().ct_eq(&hash_secret(&pass))) {
                return Err(unauthorized());
            }
            let account = store
                .account(key.account_sid)
                .await?
                .ok_or_else(unauthorized)?;
            Principal {
                account,
                key: Some(sid),
            }
        }
        _ => return Err(unauthorized()),
    };
    if principal.account.status != AccountStatus::Active {
        return Err(unauthorized());
    }
    Ok(principal)
}

/// The account named in the URL, if the principal may act for it.
pub async fn account_in_path(
    store: &dyn Store,
    p: &Principal,
    path_sid: &str,
) -> ApiResult<Account> {
    let sid = Sid::parse_as(path_sid, SidPrefix::Account).map_err(|_| unauthorized())?;
    if sid == p.account.sid {
        return Ok(p.account.clone());
    }
    match store.account(sid).await? {
        Some(sub)
            if sub.parent_sid == Some(p.account.sid) && sub.status != AccountStatus::Closed =>
        {
            Ok(sub)
        }
        _ => Err(unauthorized()),
    }
}
