//! Column lists, row mappings and query helpers of the PostgreSQL store.

use deadpool_postgres::GenericClient;
use tern_bus::{Job, JobKind};
use tern_types::{Direction, MessageStatus, Sid};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, Json, ToSql};

use super::map_pg;
use crate::{
    Account, AccountStatus, ApiKey, AttemptResult, Feedback, FeedbackOutcome, Lease, Message,
    MessagingService, PhoneNumber, Result, RouteAttempt, SmppCredential, StoreError,
};

pub const ACCOUNT_COLS: &str =
    "sid, parent_sid, friendly_name, auth_token, status, created, updated";
pub const KEY_COLS: &str = "sid, account_sid, friendly_name, secret_hash, created, updated";
pub const NUMBER_COLS: &str = "sid, account_sid, phone_number, config, created, updated";
pub const SERVICE_COLS: &str = "sid, account_sid, config, created, updated";
pub const SMPP_COLS: &str = "sid, account_sid, system_id, password_hash, friendly_name, created";
pub const FEEDBACK_COLS: &str = "message_sid, outcome, created, updated";
pub const LEASE_COLS: &str = "name, holder, expires_at, epoch";
pub const ATTEMPT_COLS: &str =
    "message_sid, carrier, prefix, at, result, carrier_message_id, error_code, reason";
pub const JOB_COLS: &str = "id, kind, subject, run_at, attempts, payload";
pub const MESSAGE_COLS: &str = "sid, account_sid, messaging_service_sid, direction, from_number, \
    to_number, body, status, error_code, num_segments, num_media, status_callback, validity_secs, \
    send_at, carrier, carrier_message_id, raw_dlr_done_date, provide_feedback, created, updated, sent";

/// `cols` with every column qualified by `alias` (`n.sid, n.account_sid, …`).
pub fn qualified(cols: &str, alias: &str) -> String {
    cols.split(", ")
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column of `r`; a value of the wrong type is a damaged record.
fn get<'a, T: FromSql<'a>>(r: &'a Row, i: usize) -> Result<T> {
    r.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

pub fn sid(r: &Row, i: usize) -> Result<Sid> {
    let s: &str = get(r, i)?;
    s.parse()
        .map_err(|_| StoreError::Corrupt(format!("bad sid {s:?}")))
}

fn opt_sid(r: &Row, i: usize) -> Result<Option<Sid>> {
    let s: Option<&str> = get(r, i)?;
    s.map(|s| {
        s.parse()
            .map_err(|_| StoreError::Corrupt(format!("bad sid {s:?}")))
    })
    .transpose()
}

/// A BIGINT column holding a `u32`.
fn u32_col(r: &Row, i: usize) -> Result<u32> {
    let v: i64 = get(r, i)?;
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {i}: {v} out of range")))
}

fn opt_u32_col(r: &Row, i: usize) -> Result<Option<u32>> {
    let v: Option<i64> = get(r, i)?;
    v.map(|v| {
        u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("column {i}: {v} out of range")))
    })
    .transpose()
}

fn json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> Result<T> {
    let Json(v): Json<T> = get(r, i)?;
    Ok(v)
}

pub fn account_row(r: &Row) -> Result<Account> {
    let status: &str = get(r, 4)?;
    Ok(Account {
        sid: sid(r, 0)?,
        parent_sid: opt_sid(r, 1)?,
        friendly_name: get(r, 2)?,
        auth_token: get(r, 3)?,
        status: AccountStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("account status {status:?}")))?,
        created: get(r, 5)?,
        updated: get(r, 6)?,
    })
}

pub fn key_row(r: &Row) -> Result<ApiKey> {
    Ok(ApiKey {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        friendly_name: get(r, 2)?,
        secret_hash: get(r, 3)?,
        created: get(r, 4)?,
        updated: get(r, 5)?,
    })
}

pub fn number_row(r: &Row) -> Result<PhoneNumber> {
    Ok(PhoneNumber {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        phone_number: get(r, 2)?,
        config: json(r, 3)?,
        created: get(r, 4)?,
        updated: get(r, 5)?,
    })
}

pub fn service_row(r: &Row) -> Result<MessagingService> {
    Ok(MessagingService {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        config: json(r, 2)?,
        created: get(r, 3)?,
        updated: get(r, 4)?,
    })
}

pub fn smpp_row(r: &Row) -> Result<SmppCredential> {
    Ok(SmppCredential {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        system_id: get(r, 2)?,
        password_hash: get(r, 3)?,
        friendly_name: get(r, 4)?,
        created: get(r, 5)?,
    })
}

pub fn message_row(r: &Row) -> Result<Message> {
    let direction: &str = get(r, 3)?;
    let status: &str = get(r, 7)?;
    Ok(Message {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        messaging_service_sid: opt_sid(r, 2)?,
        direction: Direction::parse(direction)
            .ok_or_else(|| StoreError::Corrupt(format!("direction {direction:?}")))?,
        from: get(r, 4)?,
        to: get(r, 5)?,
        body: get(r, 6)?,
        status: parse_status(status)?,
        error_code: opt_u32_col(r, 8)?,
        num_segments: u32_col(r, 9)?,
        num_media: u32_col(r, 10)?,
        status_callback: get(r, 11)?,
        validity_secs: u32_col(r, 12)?,
        send_at: get(r, 13)?,
        carrier: get(r, 14)?,
        carrier_message_id: get(r, 15)?,
        raw_dlr_done_date: get(r, 16)?,
        provide_feedback: get(r, 17)?,
        created: get(r, 18)?,
        updated: get(r, 19)?,
        sent: get(r, 20)?,
    })
}

pub fn parse_status(s: &str) -> Result<MessageStatus> {
    MessageStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("message status {s:?}")))
}

/// An outcome column, possibly NULL.
pub fn opt_outcome(r: &Row, i: usize) -> Result<Option<FeedbackOutcome>> {
    let s: Option<&str> = get(r, i)?;
    s.map(|s| {
        FeedbackOutcome::parse(s)
            .ok_or_else(|| StoreError::Corrupt(format!("feedback outcome {s:?}")))
    })
    .transpose()
}

/// A row of [`FEEDBACK_COLS`].
pub fn feedback_row(r: &Row) -> Result<Feedback> {
    Ok(Feedback {
        message_sid: sid(r, 0)?,
        outcome: opt_outcome(r, 1)?
            .ok_or_else(|| StoreError::Corrupt("feedback outcome NULL".into()))?,
        created: get(r, 2)?,
        updated: get(r, 3)?,
    })
}

/// A row of [`LEASE_COLS`].
pub fn lease_row(r: &Row) -> Result<Lease> {
    Ok(Lease {
        name: get(r, 0)?,
        holder: get(r, 1)?,
        expires_at: get(r, 2)?,
        epoch: get(r, 3)?,
    })
}

pub fn attempt_row(r: &Row) -> Result<RouteAttempt> {
    let result: &str = get(r, 4)?;
    Ok(RouteAttempt {
        message_sid: sid(r, 0)?,
        carrier: get(r, 1)?,
        prefix: get(r, 2)?,
        at: get(r, 3)?,
        result: AttemptResult::parse(result)
            .ok_or_else(|| StoreError::Corrupt(format!("attempt result {result:?}")))?,
        carrier_message_id: get(r, 5)?,
        error_code: opt_u32_col(r, 6)?,
        reason: get(r, 7)?,
    })
}

pub fn job_row(r: &Row) -> Result<Job> {
    let kind: &str = get(r, 1)?;
    Ok(Job {
        id: get(r, 0)?,
        kind: JobKind::parse(kind)
            .ok_or_else(|| StoreError::Corrupt(format!("job kind {kind:?}")))?,
        subject: sid(r, 2)?,
        run_at: get(r, 3)?,
        attempts: u32_col(r, 4)?,
        payload: get(r, 5)?,
    })
}

pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// The longest a statement may take, from preparing it to its last row. A server that
/// stops answering (frozen, or a statement stuck behind a lock) then fails the call as
/// unavailable, so the API answers 503 instead of hanging. The statement may still run
/// (and commit) on the server afterwards: like a lost connection, the outcome is unknown.
pub const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `f` within [`STATEMENT_TIMEOUT`].
pub async fn deadline<T>(f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(STATEMENT_TIMEOUT, f)
        .await
        .unwrap_or_else(|_| Err(timed_out()))
}

pub fn timed_out() -> StoreError {
    StoreError::Unavailable(format!(
        "no answer from PostgreSQL within {STATEMENT_TIMEOUT:?}"
    ))
}

/// Runs a statement (prepared once per connection) and returns the rows it changed.
pub async fn exec<C: GenericClient>(c: &C, sql: &str, params: Params<'_>) -> Result<u64> {
    deadline(async {
        let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
        c.execute(&stmt, params).await.map_err(map_pg)
    })
    .await
}

pub async fn query_all<C: GenericClient, T>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    f: impl Fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let rows = deadline(async {
        let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
        c.query(&stmt, params).await.map_err(map_pg)
    })
    .await?;
    rows.iter().map(f).collect()
}

pub async fn query_opt<C: GenericClient, T>(
    c: &C,
    sql: &str,
    params: Params<'_>,
    f: impl FnOnce(&Row) -> Result<T>,
) -> Result<Option<T>> {
    let row = deadline(async {
        let stmt = c.prepare_cached(sql).await.map_err(map_pg)?;
        c.query_opt(&stmt, params).await.map_err(map_pg)
    })
    .await?;
    row.as_ref().map(f).transpose()
}
