//! Column lists and row mappings of the SQLite store.

use rusqlite::{Connection, OptionalExtension, Params, Row, params};
use tern_bus::{Job, JobKind};
use tern_types::{Direction, MessageStatus, Sid};

use super::map_sql;
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
pub const MESSAGE_COLS: &str = "sid, account_sid, messaging_service_sid, direction, from_number, \
    to_number, body, status, error_code, num_segments, num_media, status_callback, validity_secs, \
    send_at, carrier, carrier_message_id, raw_dlr_done_date, provide_feedback, created, updated, sent";

/// A stored value that does not parse is reported as a conversion failure of its column.
fn corrupt(col: usize, what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        col,
        rusqlite::types::Type::Text,
        format!("bad {what}").into(),
    )
}

fn sid(r: &Row, i: usize) -> rusqlite::Result<Sid> {
    let s: String = r.get(i)?;
    s.parse().map_err(|_| corrupt(i, "sid"))
}

fn opt_sid(r: &Row, i: usize) -> rusqlite::Result<Option<Sid>> {
    let s: Option<String> = r.get(i)?;
    s.map(|s| s.parse().map_err(|_| corrupt(i, "sid")))
        .transpose()
}

fn json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let s: String = r.get(i)?;
    serde_json::from_str(&s).map_err(|_| corrupt(i, "json"))
}

pub fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub fn account_row(r: &Row) -> rusqlite::Result<Account> {
    let status: String = r.get(4)?;
    Ok(Account {
        sid: sid(r, 0)?,
        parent_sid: opt_sid(r, 1)?,
        friendly_name: r.get(2)?,
        auth_token: r.get(3)?,
        status: AccountStatus::parse(&status).ok_or_else(|| corrupt(4, "status"))?,
        created: r.get(5)?,
        updated: r.get(6)?,
    })
}

pub fn attempt_row(r: &Row) -> rusqlite::Result<RouteAttempt> {
    let result: String = r.get(4)?;
    Ok(RouteAttempt {
        message_sid: sid(r, 0)?,
        carrier: r.get(1)?,
        prefix: r.get(2)?,
        at: r.get(3)?,
        result: AttemptResult::parse(&result).ok_or_else(|| corrupt(4, "attempt result"))?,
        carrier_message_id: r.get(5)?,
        error_code: r.get(6)?,
        reason: r.get(7)?,
    })
}

pub fn key_row(r: &Row) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        friendly_name: r.get(2)?,
        secret_hash: r.get(3)?,
        created: r.get(4)?,
        updated: r.get(5)?,
    })
}

pub fn number_row(r: &Row) -> rusqlite::Result<PhoneNumber> {
    Ok(PhoneNumber {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        phone_number: r.get(2)?,
        config: json(r, 3)?,
        created: r.get(4)?,
        updated: r.get(5)?,
    })
}

pub fn service_row(r: &Row) -> rusqlite::Result<MessagingService> {
    Ok(MessagingService {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        config: json(r, 2)?,
        created: r.get(3)?,
        updated: r.get(4)?,
    })
}

pub fn smpp_row(r: &Row) -> rusqlite::Result<SmppCredential> {
    Ok(SmppCredential {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        system_id: r.get(2)?,
        password_hash: r.get(3)?,
        friendly_name: r.get(4)?,
        created: r.get(5)?,
    })
}

pub fn outcome(r: &Row, i: usize) -> rusqlite::Result<FeedbackOutcome> {
    let s: String = r.get(i)?;
    FeedbackOutcome::parse(&s).ok_or_else(|| corrupt(i, "feedback outcome"))
}

pub fn feedback_row(r: &Row) -> rusqlite::Result<Feedback> {
    Ok(Feedback {
        message_sid: sid(r, 0)?,
        outcome: outcome(r, 1)?,
        created: r.get(2)?,
        updated: r.get(3)?,
    })
}

pub fn lease_row(r: &Row) -> rusqlite::Result<Lease> {
    Ok(Lease {
        name: r.get(0)?,
        holder: r.get(1)?,
        expires_at: r.get(2)?,
        epoch: r.get(3)?,
    })
}

pub fn message_row(r: &Row) -> rusqlite::Result<Message> {
    let direction: String = r.get(3)?;
    let status: String = r.get(7)?;
    Ok(Message {
        sid: sid(r, 0)?,
        account_sid: sid(r, 1)?,
        messaging_service_sid: opt_sid(r, 2)?,
        direction: Direction::parse(&direction).ok_or_else(|| corrupt(3, "direction"))?,
        from: r.get(4)?,
        to: r.get(5)?,
        body: r.get(6)?,
        status: MessageStatus::parse(&status).ok_or_else(|| corrupt(7, "status"))?,
        error_code: r.get(8)?,
        num_segments: r.get(9)?,
        num_media: r.get(10)?,
        status_callback: r.get(11)?,
        validity_secs: r.get(12)?,
        send_at: r.get(13)?,
        carrier: r.get(14)?,
        carrier_message_id: r.get(15)?,
        raw_dlr_done_date: r.get(16)?,
        provide_feedback: r.get(17)?,
        created: r.get(18)?,
        updated: r.get(19)?,
        sent: r.get(20)?,
    })
}

pub fn job_row(r: &Row) -> rusqlite::Result<Job> {
    let kind: String = r.get(1)?;
    Ok(Job {
        id: r.get(0)?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt(1, "job kind"))?,
        subject: sid(r, 2)?,
        run_at: r.get(3)?,
        attempts: r.get(4)?,
        payload: r.get(5)?,
    })
}

pub fn insert_message_row(c: &Connection, m: &Message) -> Result<()> {
    c.prepare_cached(&format!(
        "INSERT INTO messages ({MESSAGE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
         ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)"
    ))
    .and_then(|mut s| {
        s.execute(params![
            m.sid.as_str(),
            m.account_sid.as_str(),
            m.messaging_service_sid.map(|s| s.to_string()),
            m.direction.as_str(),
            m.from,
            m.to,
            m.body,
            m.status.as_str(),
            m.error_code,
            m.num_segments,
            m.num_media,
            m.status_callback,
            m.validity_secs,
            m.send_at,
            m.carrier,
            m.carrier_message_id,
            m.raw_dlr_done_date,
            m.provide_feedback,
            m.created,
            m.updated,
            m.sent
        ])
    })
    .map_err(map_sql)?;
    Ok(())
}

fn from_row_error(e: rusqlite::Error) -> StoreError {
    match e {
        rusqlite::Error::FromSqlConversionFailure(_, _, msg) => {
            StoreError::Corrupt(msg.to_string())
        }
        e => map_sql(e),
    }
}

pub fn query_opt<T, P: Params>(
    c: &Connection,
    sql: &str,
    p: P,
    f: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> Result<Option<T>> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_row(p, f).optional())
        .map_err(from_row_error)
}

pub fn query_all<T, P: Params>(
    c: &Connection,
    sql: &str,
    p: P,
    f: impl FnMut(&Row) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    c.prepare_cached(sql)
        .and_then(|mut s| s.query_map(p, f)?.collect::<rusqlite::Result<Vec<T>>>())
        .map_err(from_row_error)
}
