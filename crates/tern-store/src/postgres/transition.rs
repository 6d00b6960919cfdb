//! Transitions, many in one statement: each a compare-and-set on its message's status
//! that, where it holds, also deletes the job it completes, writes the jobs it creates and
//! records its route attempts.
//!
//! One statement for a whole batch costs PostgreSQL far less than one per transition
//! (each statement has its own executor start, snapshot and plan-cache lookup, and each
//! data-modifying CTE its own scan); under load that was most of the store's work.

use std::collections::HashMap;

use deadpool_postgres::GenericClient;
use tern_bus::Job;
use tern_types::{MessageStatus, Sid};
use tokio_postgres::types::ToSql;

use super::rows::{ATTEMPT_COLS, parse_status, query_all, query_opt, sid};
use super::{
    AttemptParams, OWNED_JOB_IDS, OwnedJobParams, corrupt, owned_job_ctes, probed_by_key, with_ids,
};
use crate::{NewJob, Result, StoreError, Transition};

/// Transitions (`t`, numbered by `ord` from 1) applied where their compare-and-set holds
/// (`u`), then what follows from each applied one: the deletion of the job it
/// completes, the jobs it creates (`$12`…`$16`, each job naming the `ord` of its
/// transition; ids in increasing order in the order given) and its route attempts
/// (`$17`…). Returns the `ord`s applied and the new jobs' ids in order.
fn apply_sql() -> String {
    let by_key = probed_by_key("t.ord", "$1::text[]");
    format!(
        "WITH t AS (
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::bigint[], $10::text[], $11::bigint[])
                WITH ORDINALITY AS t (sid, status, at, error_code, from_number, carrier,
                    carrier_id, done_date, sent, expected, done_job, ord)
            WHERE {by_key}
        ), u AS (
            UPDATE messages m SET status = t.status, updated = t.at,
                error_code = COALESCE(t.error_code, m.error_code),
                from_number = COALESCE(t.from_number, m.from_number),
                carrier = COALESCE(t.carrier, m.carrier),
                carrier_message_id = COALESCE(t.carrier_id, m.carrier_message_id),
                raw_dlr_done_date = COALESCE(t.done_date, m.raw_dlr_done_date),
                sent = COALESCE(m.sent, t.sent)
            FROM t WHERE m.sid = t.sid AND m.status = t.expected
            RETURNING t.ord, t.done_job
        ), done AS (
            DELETE FROM jobs WHERE id IN (SELECT done_job FROM u)
        ), {}, new_attempts AS (
            INSERT INTO route_attempts ({ATTEMPT_COLS})
            SELECT a.sid, a.carrier, a.prefix, a.at, a.result, a.carrier_id, a.error_code,
                a.reason
            FROM UNNEST($17::bigint[], $18::text[], $19::text[], $20::text[], $21::bigint[],
                $22::text[], $23::text[], $24::bigint[], $25::text[])
                AS a (owner, sid, carrier, prefix, at, result, carrier_id, error_code, reason)
            WHERE a.owner IN (SELECT ord FROM u)
        )
        SELECT ARRAY(SELECT ord FROM u), {OWNED_JOB_IDS}",
        owned_job_ctes(12, "bigint", "SELECT ord FROM u")
    )
}

/// The columns of transitions and their attempts, as arrays for [`apply_sql`].
#[derive(Default)]
struct Columns<'a> {
    sids: Vec<&'a str>,
    tos: Vec<&'static str>,
    ats: Vec<i64>,
    error_codes: Vec<Option<i64>>,
    froms: Vec<Option<&'a str>>,
    carriers: Vec<Option<&'a str>>,
    carrier_ids: Vec<Option<&'a str>>,
    done_dates: Vec<Option<&'a str>>,
    sent: Vec<Option<i64>>,
    expected: Vec<&'static str>,
    done_jobs: Vec<Option<i64>>,
    /// The transition (`ord`) each attempt belongs to.
    attempt_owners: Vec<i64>,
    attempts: AttemptParams<'a>,
}

impl<'a> Columns<'a> {
    fn new(ts: &[&'a Transition]) -> Columns<'a> {
        let mut c = Columns::default();
        for (ord, t) in (1i64..).zip(ts) {
            let (carrier, carrier_id) = t
                .carrier
                .as_ref()
                .map_or((None, None), |(c, i)| (Some(c.as_str()), Some(i.as_str())));
            c.sids.push(t.sid.as_str());
            c.tos.push(t.to.as_str());
            c.ats.push(t.at);
            c.error_codes.push(t.error_code.map(i64::from));
            c.froms.push(t.from.as_deref());
            c.carriers.push(carrier);
            c.carrier_ids.push(carrier_id);
            c.done_dates.push(t.raw_dlr_done_date.as_deref());
            c.sent
                .push(matches!(t.to, MessageStatus::Sent | MessageStatus::Sending).then_some(t.at));
            c.expected.push(t.expected.as_str());
            c.done_jobs.push(t.done_job);
            for a in &t.attempts {
                c.attempt_owners.push(ord);
                c.attempts.push(a);
            }
        }
        c
    }

    /// `$1`…`$11`, then `$17`… (the jobs' `$12`…`$16` come from [`OwnedJobParams`]).
    fn params<'p>(&'p self, jobs: &'p OwnedJobParams<'a, i64>) -> Vec<&'p (dyn ToSql + Sync)> {
        let mut p: Vec<&(dyn ToSql + Sync)> = vec![
            &self.sids,
            &self.tos,
            &self.ats,
            &self.error_codes,
            &self.froms,
            &self.carriers,
            &self.carrier_ids,
            &self.done_dates,
            &self.sent,
            &self.expected,
            &self.done_jobs,
        ];
        p.extend(jobs.params());
        p.push(&self.attempt_owners);
        p.extend(self.attempts.params());
        p
    }
}

/// Applies `ts` in the order given, each on its own: its created jobs with their ids,
/// `StaleStatus` where the message had moved on, `NotFound` where there is none. `Err`
/// when the statements fail as a whole (nothing of a failed statement is written).
///
/// Runs one statement per round; a round holds at most one transition of each message
/// (two of one message in one `UPDATE … FROM` would apply only one), so a message's
/// later transitions run in later rounds, in order.
pub(super) async fn apply_transitions<C: GenericClient>(
    c: &C,
    ts: &[&Transition],
) -> Result<Vec<Result<Vec<Job>>>> {
    let mut out: Vec<Option<Result<Vec<Job>>>> = ts.iter().map(|_| None).collect();
    let mut round_of: HashMap<Sid, usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, t) in ts.iter().enumerate() {
        let r = round_of.entry(t.sid).and_modify(|r| *r += 1).or_insert(0);
        if rounds.len() <= *r {
            rounds.push(Vec::new());
        }
        rounds[*r].push(i);
    }
    for round in rounds {
        let batch: Vec<&Transition> = round.iter().map(|&i| ts[i]).collect();
        for (i, r) in round.into_iter().zip(apply_round(c, &batch).await?) {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .map(|r| r.ok_or_else(|| StoreError::Corrupt("a transition got no answer".into())))
        .collect()
}

/// [`apply_transitions`] for transitions of distinct messages.
async fn apply_round<C: GenericClient>(c: &C, ts: &[&Transition]) -> Result<Vec<Result<Vec<Job>>>> {
    let columns = Columns::new(ts);
    let jobs = OwnedJobParams::new((1i64..).zip(ts.iter().map(|t| t.jobs.as_slice())));
    let (applied, ids): (Vec<i64>, Vec<i64>) =
        query_opt(c, &apply_sql(), &columns.params(&jobs), |r| {
            Ok((
                r.try_get(0).map_err(corrupt)?,
                r.try_get(1).map_err(corrupt)?,
            ))
        })
        .await?
        .ok_or_else(|| StoreError::Unavailable("transitions returned no row".into()))?;
    let applied: Vec<bool> = {
        let mut v = vec![false; ts.len()];
        for ord in applied {
            let i = usize::try_from(ord - 1)
                .ok()
                .filter(|&i| i < ts.len())
                .ok_or_else(|| StoreError::Corrupt(format!("transition {ord} of {}", ts.len())))?;
            v[i] = true;
        }
        v
    };
    // The jobs of applied transitions, in order, get the ids in order.
    let jobs: Vec<NewJob> = ts
        .iter()
        .zip(&applied)
        .filter(|&(_, &a)| a)
        .flat_map(|(t, _)| t.jobs.iter().cloned())
        .collect();
    let mut jobs = with_ids(jobs, ids)?.into_iter();
    let now: HashMap<Sid, MessageStatus> = current_statuses(
        c,
        ts.iter()
            .zip(&applied)
            .filter(|&(_, &a)| !a)
            .map(|(t, _)| t.sid),
    )
    .await?;
    Ok(ts
        .iter()
        .zip(&applied)
        .map(|(t, &a)| {
            if a {
                Ok(jobs.by_ref().take(t.jobs.len()).collect())
            } else {
                Err(now
                    .get(&t.sid)
                    .map_or(StoreError::NotFound, |s| StoreError::StaleStatus(*s)))
            }
        })
        .collect())
}

/// The status of each of `sids` that exists (why a compare-and-set did not hold).
async fn current_statuses<C: GenericClient>(
    c: &C,
    sids: impl Iterator<Item = Sid>,
) -> Result<HashMap<Sid, MessageStatus>> {
    let sids: Vec<String> = sids.map(|s| s.to_string()).collect();
    if sids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = query_all(
        c,
        "SELECT sid, status FROM messages WHERE sid = ANY($1::text[])",
        &[&sids],
        |r| {
            let status: &str = r.try_get(1).map_err(corrupt)?;
            Ok((sid(r, 0)?, parse_status(status)?))
        },
    )
    .await?;
    Ok(rows.into_iter().collect())
}
