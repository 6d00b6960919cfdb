//! SMPP credentials (`/v1/SmppCredentials`, a Tern extension in Messaging v1's style): the
//! `system_id`/`password` logins an account's ESMEs bind to Tern's SMPP server with.
//!
//! Like API keys, they are managed with the account's own credentials (auth token), not an
//! API key, and only for the authenticated account. The password is shown once, in the
//! create response; the store keeps its argon2id hash. A `system_id` is unique across all
//! accounts (a bind names nothing else): a taken one is `409` with code 20001.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tern_domain::credentials::{
    generate_password, generate_system_id, hash_password, validate_password, validate_system_id,
};
use tern_store::{SmppCredential, StoreError};
use tern_types::time::{from_millis, iso8601};
use tern_types::{ErrorCode, Sid, SidPrefix};

use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::form::Params;
use crate::paging::{PageRequest, page_v1, slice};
use crate::{AppState, base_url};

/// The list's key in the v1 envelope.
const LIST_KEY: &str = "credentials";
/// The longest `FriendlyName` accepted, as for Twilio's v1 resources.
const MAX_FRIENDLY_NAME: usize = 64;
/// Generated `system_id`s to try before giving up (a collision is ~2^-41 per try).
const GENERATE_ATTEMPTS: usize = 5;

/// The JSON of a credential; `password` only in the create response.
pub fn repr(c: &SmppCredential, base_url: &str, password: Option<&str>) -> Value {
    let mut v = json!({
        "sid": c.sid,
        "account_sid": c.account_sid,
        "system_id": c.system_id,
        "friendly_name": c.friendly_name,
        "date_created": iso8601(from_millis(c.created)),
        "url": format!("{base_url}/v1/SmppCredentials/{}", c.sid),
    });
    if let (Some(p), Some(obj)) = (password, v.as_object_mut()) {
        obj.insert("password".into(), json!(p));
    }
    v
}

/// What a create request asks for, validated; `None` fields are generated.
#[derive(Debug, PartialEq)]
struct CreateRequest {
    system_id: Option<String>,
    password: Option<String>,
    friendly_name: String,
}

fn parse_create(f: &Params) -> ApiResult<CreateRequest> {
    let system_id = f.string("SystemId");
    if let Some(id) = &system_id {
        validate_system_id(id)
            .map_err(|e| ApiError::invalid(format!("SystemId is invalid: {e}")))?;
    }
    let password = f.string("Password");
    if let Some(p) = &password {
        validate_password(p).map_err(|e| ApiError::invalid(format!("Password is invalid: {e}")))?;
    }
    let friendly_name = f.string("FriendlyName").unwrap_or_default();
    if friendly_name.chars().count() > MAX_FRIENDLY_NAME {
        return Err(ApiError::invalid(format!(
            "FriendlyName must be at most {MAX_FRIENDLY_NAME} characters"
        )));
    }
    Ok(CreateRequest {
        system_id,
        password,
        friendly_name,
    })
}

async fn account_principal(s: &AppState, headers: &HeaderMap) -> ApiResult<Principal> {
    let p = s.principal(headers).await?;
    p.require_account_credentials()?;
    Ok(p)
}

/// The authenticated account's credential named in the path; anything else is 404.
async fn own(s: &AppState, headers: &HeaderMap, sid: &str) -> ApiResult<SmppCredential> {
    let p = account_principal(s, headers).await?;
    let path = format!("/v1/SmppCredentials/{sid}");
    let sid =
        Sid::parse_as(sid, SidPrefix::SmppCredential).map_err(|_| ApiError::not_found(&path))?;
    // Accounts hold a handful of credentials: the list is the lookup.
    s.store
        .smpp_credentials(p.account.sid)
        .await?
        .into_iter()
        .find(|c| c.sid == sid)
        .ok_or_else(|| ApiError::not_found(&path))
}

pub async fn create(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let p = account_principal(&s, &headers).await?;
    let req = parse_create(&Params::parse(&body))?;
    let password = req.password.unwrap_or_else(generate_password);
    let hashed = password.clone();
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&hashed))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "hashing an SMPP password failed");
            ApiError::new(ErrorCode::Internal)
        })?;
    let attempts = if req.system_id.is_some() {
        1
    } else {
        GENERATE_ATTEMPTS
    };
    for _ in 0..attempts {
        let system_id = req.system_id.clone().unwrap_or_else(generate_system_id);
        let c = SmppCredential {
            sid: Sid::generate(SidPrefix::SmppCredential),
            account_sid: p.account.sid,
            system_id,
            password_hash: password_hash.clone(),
            friendly_name: req.friendly_name.clone(),
            created: tern_node::now_ms(),
        };
        match s.store.create_smpp_credential(c.clone()).await {
            Ok(()) => {
                return Ok((
                    StatusCode::CREATED,
                    Json(repr(&c, &base_url(&headers), Some(&password))),
                ));
            }
            Err(StoreError::Conflict(_)) if req.system_id.is_none() => continue,
            Err(StoreError::Conflict(_)) => {
                return Err(ApiError::conflict(format!(
                    "SystemId {:?} is already in use; choose another or leave SystemId out to have one generated",
                    c.system_id
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    tracing::error!("{GENERATE_ATTEMPTS} generated SMPP system_ids in a row were taken");
    Err(ApiError::new(ErrorCode::Internal))
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let p = account_principal(&s, &headers).await?;
    let q = Params::parse(q.unwrap_or_default().as_bytes());
    let req = PageRequest::from(&q)?;
    let (items, next) = slice(s.store.smpp_credentials(p.account.sid).await?, &req);
    let base = base_url(&headers);
    let items = items.iter().map(|c| repr(c, &base, None)).collect();
    Ok(Json(page_v1(
        LIST_KEY,
        items,
        &format!("{base}/v1/SmppCredentials"),
        &req,
        next,
    )))
}

pub async fn fetch(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> ApiResult<Json<Value>> {
    let c = own(&s, &headers, &sid).await?;
    Ok(Json(repr(&c, &base_url(&headers), None)))
}

pub async fn delete(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> ApiResult<StatusCode> {
    let c = own(&s, &headers, &sid).await?;
    if !s.store.delete_smpp_credential(c.account_sid, c.sid).await? {
        // Deleted by a concurrent request in between.
        return Err(ApiError::not_found(&format!("/v1/SmppCredentials/{sid}")));
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Params {
        Params(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn cred() -> SmppCredential {
        SmppCredential {
            sid: Sid::generate(SidPrefix::SmppCredential),
            account_sid: Sid::generate(SidPrefix::Account),
            system_id: "esme1".into(),
            password_hash: "$argon2id$v=19$m=12288,t=3,p=1$c2FsdHNhbHQ$aGFzaA".into(),
            friendly_name: "primary".into(),
            created: 1_700_000_000_000,
        }
    }

    #[test]
    fn representation_shows_the_password_only_when_given_and_never_the_hash() {
        let c = cred();
        let v = repr(&c, "http://h:1", None);
        assert_eq!(v["sid"], c.sid.as_str());
        assert_eq!(v["account_sid"], c.account_sid.as_str());
        assert_eq!(v["system_id"], "esme1");
        assert_eq!(v["friendly_name"], "primary");
        assert_eq!(v["date_created"], "2023-11-14T22:13:20Z");
        assert_eq!(v["url"], format!("http://h:1/v1/SmppCredentials/{}", c.sid));
        assert!(v.get("password").is_none());
        assert!(!v.to_string().contains("argon2"));
        let created = repr(&c, "http://h:1", Some("pw"));
        assert_eq!(created["password"], "pw");
        assert!(!created.to_string().contains("argon2"));
    }

    #[test]
    fn create_parameters_are_validated_with_precise_messages() {
        assert_eq!(
            parse_create(&form(&[])).unwrap(),
            CreateRequest {
                system_id: None,
                password: None,
                friendly_name: String::new()
            }
        );
        let ok = parse_create(&form(&[
            ("SystemId", "esme_01"),
            ("Password", "p@ss w0r"),
            ("FriendlyName", "n"),
        ]))
        .unwrap();
        assert_eq!(ok.system_id.as_deref(), Some("esme_01"));
        assert_eq!(ok.password.as_deref(), Some("p@ss w0r"));
        for (pairs, needle) in [
            (
                vec![("SystemId", "")],
                "SystemId is invalid: system_id is empty",
            ),
            (vec![("SystemId", "sixteen_chars_xx")], "at most 15"),
            (vec![("SystemId", "has space")], "position 3"),
            (
                vec![("Password", "")],
                "Password is invalid: password is empty",
            ),
            (vec![("Password", "ninechars")], "at most 8"),
            (vec![("Password", "p\u{e4}ss")], "not printable ASCII"),
        ] {
            let e = parse_create(&form(&pairs)).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParameter);
            assert!(e.status.is_none());
            assert!(e.message.contains(needle), "{pairs:?}: {}", e.message);
        }
        let long = "x".repeat(65);
        let e = parse_create(&form(&[("FriendlyName", long.as_str())])).unwrap_err();
        assert!(e.message.contains("FriendlyName"), "{}", e.message);
    }

    #[test]
    fn a_conflict_is_409_with_code_20001() {
        use axum::response::IntoResponse;
        let r = ApiError::conflict("taken").into_response();
        assert_eq!(r.status(), StatusCode::CONFLICT);
        let r = ApiError::invalid("bad").into_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    }
}
