//! Group commit for the message pipeline's writes: new messages, transitions, completed
//! jobs and job claims.
//!
//! Every such write goes through one bounded queue; a few writer tasks each take
//! everything waiting and write it in one transaction on one connection: the new messages
//! in one multi-row statement, the completed jobs in one `DELETE`, the transitions in one
//! statement too (each still its own compare-and-set; see `transition`), the claims in one
//! `UPDATE`. One commit, so one WAL
//! flush, then covers the whole batch, and no caller hears "done" before that commit.
//! Under load the batches grow by themselves (the writers are busy while more arrive);
//! when idle, a write runs alone in autocommit as before, with no added latency.
//!
//! A batch that fails as a whole (a unique violation, a deadlock with another batch, a
//! lost connection) is rolled back and every write in it is run again alone, so each
//! caller gets its own answer and one bad write never fails the others. A compare-and-set
//! that does not hold is an answer (`StaleStatus`), not a failure: it fails no batch.
//!
//! Savepoints are not used: PostgreSQL keeps at most 64 subtransactions per backend in
//! shared memory, and past that every snapshot in the database has to look up
//! `pg_subtrans`, slowing all sessions.

use deadpool_postgres::{GenericClient, Pool};
use futures_util::future::join_all;
use tern_bus::Job;
use tokio::sync::oneshot;
use tokio_postgres::types::ToSql;

use super::batches::{Batches, Workers};
use super::rows::{
    MESSAGE_COLS, STATEMENT_TIMEOUT, deadline, exec, qualified, query_all, query_opt, timed_out,
};
use super::transition::apply_transitions;
use super::{
    OWNED_JOB_IDS, OwnedJobParams, corrupt, map_pg, map_pool, owned_job_ctes, probed_by_key,
    with_ids,
};
use crate::{Message, NewJob, Result, StoreError, Transition};

/// Writer tasks: while one commits (waiting for its WAL flush), the other gathers and runs
/// the next batch. A free writer takes whatever is waiting, however little, so more
/// writers make smaller batches: with four, PostgreSQL spent 539-588 µs of CPU per message
/// over accept and delivery, with two 441-533 (end to end even or faster; session 12,
/// `scripts/bench-pipeline-cpu`). Session 9 found two and four even before the API came
/// first on a saturated node.
const WRITERS: usize = 2;
/// The most writes in one transaction: bounds a batch's latency, locks and memory.
const MAX_BATCH: usize = 512;
/// Writes waiting for a writer; past this, callers wait to enqueue (back-pressure).
const QUEUE: usize = 8192;

/// A write and where its answer goes.
enum Op {
    Insert(NewMessage, oneshot::Sender<Result<Option<Vec<Job>>>>),
    Transition(Transition, oneshot::Sender<Result<Vec<Job>>>),
    Complete(Vec<i64>, oneshot::Sender<Result<()>>),
    Claim(Claim, oneshot::Sender<Result<bool>>),
}

/// A job to take for a holder (see `Store::claim_job`).
struct Claim {
    id: i64,
    holder: String,
    presence_prefix: String,
    now: i64,
}

/// A message to write with its first jobs.
struct NewMessage {
    message: Message,
    jobs: Vec<NewJob>,
    /// Not written if its recipient opted out of the account's messages.
    unless_opted_out: bool,
}

/// What a write came to.
enum Outcome {
    Inserted(Result<Option<Vec<Job>>>),
    Jobs(Result<Vec<Job>>),
    Done(Result<()>),
    Claimed(Result<bool>),
}

impl Op {
    fn reply(self, outcome: Outcome) {
        // A caller that stopped waiting (its request was dropped) needs no answer.
        match (self, outcome) {
            (Op::Insert(_, tx), Outcome::Inserted(r)) => {
                let _ = tx.send(r);
            }
            (Op::Transition(_, tx), Outcome::Jobs(r)) => {
                let _ = tx.send(r);
            }
            (Op::Complete(_, tx), Outcome::Done(r)) => {
                let _ = tx.send(r);
            }
            (Op::Claim(_, tx), Outcome::Claimed(r)) => {
                let _ = tx.send(r);
            }
            (op, _) => op.fail(StoreError::Corrupt("a write got another's answer".into())),
        }
    }

    fn fail(self, e: StoreError) {
        match self {
            Op::Insert(_, tx) => {
                let _ = tx.send(Err(e));
            }
            Op::Transition(_, tx) => {
                let _ = tx.send(Err(e));
            }
            Op::Complete(_, tx) => {
                let _ = tx.send(Err(e));
            }
            Op::Claim(_, tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

/// The queue in front of the writer tasks. The tasks end when it is dropped.
pub(super) struct GroupCommit {
    writers: Batches<Op>,
}

impl GroupCommit {
    /// Starts the writer tasks on the current Tokio runtime.
    pub(super) fn start(pool: Pool) -> GroupCommit {
        let workers = Workers {
            tasks: WRITERS,
            max_batch: MAX_BATCH,
            queue: QUEUE,
            metric: "tern_store_commit_batch_size",
            name: "writers",
        };
        let writers = Batches::start(workers, move |ops| {
            let pool = pool.clone();
            async move { run_batch(&pool, ops).await }
        });
        GroupCommit { writers }
    }

    /// The most writes one batch has held so far.
    pub(super) fn largest_batch(&self) -> usize {
        self.writers.largest_batch()
    }

    /// Writes `message` and its jobs; `None` (nothing written) if `unless_opted_out` and
    /// its recipient opted out.
    pub(super) async fn insert_message(
        &self,
        message: Message,
        jobs: Vec<NewJob>,
        unless_opted_out: bool,
    ) -> Result<Option<Vec<Job>>> {
        let (tx, rx) = oneshot::channel();
        let new = NewMessage {
            message,
            jobs,
            unless_opted_out,
        };
        self.submit(Op::Insert(new, tx), rx).await
    }

    pub(super) async fn transition(&self, t: Transition) -> Result<Vec<Job>> {
        let (tx, rx) = oneshot::channel();
        self.submit(Op::Transition(t, tx), rx).await
    }

    pub(super) async fn complete_jobs(&self, ids: Vec<i64>) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.submit(Op::Complete(ids, tx), rx).await
    }

    pub(super) async fn claim_job(
        &self,
        id: i64,
        holder: &str,
        presence_prefix: &str,
        now: i64,
    ) -> Result<bool> {
        let (tx, rx) = oneshot::channel();
        let claim = Claim {
            id,
            holder: holder.to_owned(),
            presence_prefix: presence_prefix.to_owned(),
            now,
        };
        self.submit(Op::Claim(claim, tx), rx).await
    }

    async fn submit<T>(&self, op: Op, rx: oneshot::Receiver<Result<T>>) -> Result<T> {
        self.writers.ask(op, rx).await
    }
}

async fn run_batch(pool: &Pool, ops: Vec<Op>) {
    let mut client = match pool.get().await {
        Ok(c) => c,
        Err(e) => {
            let e = map_pool(e);
            for op in ops {
                op.fail(e.clone());
            }
            return;
        }
    };
    if ops.len() > 1 {
        match together(&mut client, &ops).await {
            Ok(outcomes) => {
                for (op, outcome) in ops.into_iter().zip(outcomes) {
                    op.reply(outcome);
                }
                return;
            }
            // Rolled back: nothing of it was written, so each write can be tried alone.
            Err(Failed::Statement(e)) => {
                metrics::counter!("tern_store_batches_split_total").increment(1);
                tracing::debug!(error = %e, writes = ops.len(), "store batch failed; writing its writes one by one");
            }
            Err(Failed::Unknown(e)) => {
                for op in ops {
                    op.fail(e.clone());
                }
                return;
            }
        }
    }
    // Alone, each in its own autocommit statement (pipelined on the one connection).
    let outcomes = join_all(ops.iter().map(|op| alone(&client, op))).await;
    for (op, outcome) in ops.into_iter().zip(outcomes) {
        op.reply(outcome);
    }
}

/// One write in its own statement (so its own transaction).
async fn alone<C: GenericClient>(c: &C, op: &Op) -> Outcome {
    match op {
        Op::Insert(new, _) => {
            Outcome::Inserted(insert_messages(c, &[new]).await.and_then(|mut r| {
                r.pop()
                    .ok_or_else(|| StoreError::Corrupt("an insert got no answer".into()))
            }))
        }
        Op::Transition(t, _) => {
            Outcome::Jobs(apply_transitions(c, &[t]).await.and_then(|mut r| {
                r.pop().unwrap_or_else(|| {
                    Err(StoreError::Corrupt("a transition got no answer".into()))
                })
            }))
        }
        Op::Complete(ids, _) => Outcome::Done(complete_jobs(c, ids).await),
        Op::Claim(claim, _) => Outcome::Claimed(claim_jobs(c, &[claim]).await.and_then(|r| {
            r.first()
                .copied()
                .ok_or_else(|| StoreError::Corrupt("a claim got no answer".into()))
        })),
    }
}

/// Why a batch failed.
enum Failed {
    /// A statement failed: rolled back, nothing of it was written; its writes can be
    /// tried one by one.
    Statement(StoreError),
    /// No answer in time (trying again would wait as long), or the commit failed (written
    /// or not, nobody knows: trying again could write twice).
    Unknown(StoreError),
}

/// Every write of `ops` in one transaction; the outcomes in the order of `ops`.
async fn together(
    client: &mut deadpool_postgres::Client,
    ops: &[Op],
) -> Result<Vec<Outcome>, Failed> {
    let written = async {
        let tx = client.transaction().await.map_err(map_pg)?;
        let outcomes = write_all(&tx, ops).await?;
        Ok((tx, outcomes))
    };
    let (tx, outcomes) = tokio::time::timeout(STATEMENT_TIMEOUT, written)
        .await
        .map_err(|_| Failed::Unknown(timed_out()))?
        .map_err(Failed::Statement)?;
    deadline(async { tx.commit().await.map_err(map_pg) })
        .await
        .map_err(Failed::Unknown)?;
    Ok(outcomes)
}

/// The writes of `ops` in `tx`, the outcomes in the order of `ops`; `Err` if a statement
/// failed (which aborts the transaction).
async fn write_all(tx: &deadpool_postgres::Transaction<'_>, ops: &[Op]) -> Result<Vec<Outcome>> {
    let (mut inserts, mut done, mut transitions) = (Vec::new(), Vec::new(), Vec::new());
    let mut claims = Vec::new();
    for op in ops {
        match op {
            Op::Insert(new, _) => inserts.push(new),
            Op::Complete(ids, _) => done.extend_from_slice(ids),
            Op::Transition(t, _) => transitions.push(t),
            Op::Claim(claim, _) => claims.push(claim),
        }
    }
    // All statements go out at once (tokio-postgres pipelines what is polled together);
    // the server runs them in this order.
    let (inserted, completed, transitions, claimed) = tokio::join!(
        async {
            if inserts.is_empty() {
                Ok(Vec::new())
            } else {
                insert_messages(tx, &inserts).await
            }
        },
        complete_jobs(tx, &done),
        async {
            if transitions.is_empty() {
                Ok(Vec::new())
            } else {
                apply_transitions(tx, &transitions).await
            }
        },
        claim_jobs(tx, &claims),
    );
    let mut inserted = inserted?.into_iter();
    completed?;
    let mut transitions = transitions?.into_iter();
    let mut claimed = claimed?.into_iter();
    let mut outcomes = Vec::with_capacity(ops.len());
    for op in ops {
        outcomes.push(match op {
            Op::Insert(..) => Outcome::Inserted(Ok(inserted
                .next()
                .ok_or_else(|| StoreError::Corrupt("fewer inserts answered than made".into()))?)),
            Op::Complete(..) => Outcome::Done(Ok(())),
            Op::Transition(..) => Outcome::Jobs(transitions.next().ok_or_else(|| {
                StoreError::Corrupt("fewer transitions answered than made".into())
            })?),
            Op::Claim(..) => Outcome::Claimed(Ok(claimed
                .next()
                .ok_or_else(|| StoreError::Corrupt("fewer claims answered than made".into()))?)),
        });
    }
    Ok(outcomes)
}

/// Deletes completed jobs in one statement.
pub(super) async fn complete_jobs<C: GenericClient>(c: &C, ids: &[i64]) -> Result<()> {
    match ids {
        [] => {}
        // The usual case; unlike `= ANY`, it gets a generic plan (no planning per call).
        [id] => {
            exec(c, "DELETE FROM jobs WHERE id = $1", &[id]).await?;
        }
        _ => {
            exec(c, "DELETE FROM jobs WHERE id = ANY($1::bigint[])", &[&ids]).await?;
        }
    }
    Ok(())
}

/// Takes jobs for their holders (see `Store::claim_job`) in one statement; whether each
/// was taken, in order. Of several claims of one job in a batch the statement applies one
/// (it updates a row once, with whichever joined claim comes first); that holder's first
/// claim is the one answered `true`.
async fn claim_jobs<C: GenericClient>(c: &C, claims: &[&Claim]) -> Result<Vec<bool>> {
    let owners: std::collections::HashMap<i64, String> = match claims {
        [] => return Ok(Vec::new()),
        // The usual case when idle; it gets a generic plan.
        [one] => {
            let n = exec(
                c,
                super::CLAIM_JOB,
                &[&one.id, &one.holder, &one.presence_prefix, &one.now],
            )
            .await?;
            return Ok(vec![n > 0]);
        }
        _ => {
            let ids: Vec<i64> = claims.iter().map(|c| c.id).collect();
            let holders: Vec<&str> = claims.iter().map(|c| c.holder.as_str()).collect();
            let prefixes: Vec<&str> = claims.iter().map(|c| c.presence_prefix.as_str()).collect();
            let nows: Vec<i64> = claims.iter().map(|c| c.now).collect();
            query_all(
                c,
                &format!(
                    "UPDATE jobs j SET owner = c.holder
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                     WITH ORDINALITY AS c(id, holder, prefix, now, ord)
                 WHERE {by_key} AND j.id = c.id AND (j.owner IS NULL OR j.owner = c.holder
                     OR NOT EXISTS (SELECT 1 FROM leases l
                         WHERE l.name = c.prefix || j.owner AND l.expires_at > c.now))
                 RETURNING j.id, j.owner",
                    by_key = probed_by_key("c.ord", "$1::bigint[]")
                ),
                &[&ids, &holders, &prefixes, &nows],
                |r| {
                    Ok((
                        r.try_get::<_, i64>(0).map_err(map_pg)?,
                        r.try_get::<_, String>(1).map_err(map_pg)?,
                    ))
                },
            )
            .await?
            .into_iter()
            .collect()
        }
    };
    let mut answered = std::collections::HashSet::new();
    Ok(claims
        .iter()
        .map(|c| owners.get(&c.id) == Some(&c.holder) && answered.insert(c.id))
        .collect())
}

/// The columns of new messages, as arrays for `UNNEST` (in [`MESSAGE_COLS`]' order).
struct MessageArrays<'a> {
    sids: Vec<&'a str>,
    accounts: Vec<&'a str>,
    services: Vec<Option<String>>,
    directions: Vec<&'static str>,
    froms: Vec<Option<&'a str>>,
    tos: Vec<&'a str>,
    bodies: Vec<&'a str>,
    statuses: Vec<&'static str>,
    error_codes: Vec<Option<i64>>,
    segments: Vec<i64>,
    media: Vec<i64>,
    callbacks: Vec<Option<&'a str>>,
    validities: Vec<i64>,
    send_ats: Vec<Option<i64>>,
    carriers: Vec<Option<&'a str>>,
    carrier_ids: Vec<Option<&'a str>>,
    done_dates: Vec<Option<&'a str>>,
    feedback: Vec<bool>,
    created: Vec<i64>,
    updated: Vec<i64>,
    sent: Vec<Option<i64>>,
}

impl<'a> MessageArrays<'a> {
    fn new(ms: &[&'a Message]) -> MessageArrays<'a> {
        MessageArrays {
            sids: ms.iter().map(|m| m.sid.as_str()).collect(),
            accounts: ms.iter().map(|m| m.account_sid.as_str()).collect(),
            services: ms
                .iter()
                .map(|m| m.messaging_service_sid.map(|s| s.to_string()))
                .collect(),
            directions: ms.iter().map(|m| m.direction.as_str()).collect(),
            froms: ms.iter().map(|m| m.from.as_deref()).collect(),
            tos: ms.iter().map(|m| m.to.as_str()).collect(),
            bodies: ms.iter().map(|m| m.body.as_str()).collect(),
            statuses: ms.iter().map(|m| m.status.as_str()).collect(),
            error_codes: ms.iter().map(|m| m.error_code.map(i64::from)).collect(),
            segments: ms.iter().map(|m| i64::from(m.num_segments)).collect(),
            media: ms.iter().map(|m| i64::from(m.num_media)).collect(),
            callbacks: ms.iter().map(|m| m.status_callback.as_deref()).collect(),
            validities: ms.iter().map(|m| i64::from(m.validity_secs)).collect(),
            send_ats: ms.iter().map(|m| m.send_at).collect(),
            carriers: ms.iter().map(|m| m.carrier.as_deref()).collect(),
            carrier_ids: ms.iter().map(|m| m.carrier_message_id.as_deref()).collect(),
            done_dates: ms.iter().map(|m| m.raw_dlr_done_date.as_deref()).collect(),
            feedback: ms.iter().map(|m| m.provide_feedback).collect(),
            created: ms.iter().map(|m| m.created).collect(),
            updated: ms.iter().map(|m| m.updated).collect(),
            sent: ms.iter().map(|m| m.sent).collect(),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 21] {
        [
            &self.sids,
            &self.accounts,
            &self.services,
            &self.directions,
            &self.froms,
            &self.tos,
            &self.bodies,
            &self.statuses,
            &self.error_codes,
            &self.segments,
            &self.media,
            &self.callbacks,
            &self.validities,
            &self.send_ats,
            &self.carriers,
            &self.carrier_ids,
            &self.done_dates,
            &self.feedback,
            &self.created,
            &self.updated,
            &self.sent,
        ]
    }
}

/// Writes messages and their jobs in one statement (so atomically,
/// without an explicit transaction): for each, the jobs with their ids (increasing in the
/// order given), or `None` where it was not written because its recipient opted out.
///
/// The opt-out is looked up per message by a `LATERAL … LIMIT 1`, which keeps it an index
/// probe whatever the statistics say (as an `EXISTS` it could become a hash of the whole
/// `opt_outs` table).
async fn insert_messages<C: GenericClient>(
    c: &C,
    messages: &[&NewMessage],
) -> Result<Vec<Option<Vec<Job>>>> {
    let sql = format!(
        "WITH n AS (
            SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],
                $12::text[], $13::bigint[], $14::bigint[], $15::text[], $16::text[],
                $17::text[], $18::bool[], $19::bigint[], $20::bigint[], $21::bigint[],
                $22::bool[])
                AS n ({MESSAGE_COLS}, unless_opted_out)
        ), m AS (
            INSERT INTO messages ({MESSAGE_COLS})
            SELECT {} FROM n
            LEFT JOIN LATERAL (
                SELECT TRUE AS out FROM opt_outs o
                WHERE n.unless_opted_out AND o.account_sid = n.account_sid
                    AND o.handset = n.to_number
                LIMIT 1
            ) stop ON TRUE
            WHERE stop.out IS NULL
            RETURNING sid
        ), {}
        SELECT ARRAY(SELECT sid FROM m), {OWNED_JOB_IDS}",
        qualified(MESSAGE_COLS, "n"),
        owned_job_ctes(23, "text", "SELECT sid FROM m")
    );
    let ms: Vec<&Message> = messages.iter().map(|n| &n.message).collect();
    let columns = MessageArrays::new(&ms);
    let unless_opted_out: Vec<bool> = messages.iter().map(|n| n.unless_opted_out).collect();
    let jobs = OwnedJobParams::new(
        messages
            .iter()
            .map(|n| (n.message.sid.as_str(), n.jobs.as_slice())),
    );
    let params: Vec<&(dyn ToSql + Sync)> = columns
        .params()
        .into_iter()
        .chain([&unless_opted_out as &(dyn ToSql + Sync)])
        .chain(jobs.params())
        .collect();
    let (written, ids): (Vec<String>, Vec<i64>) = query_opt(c, &sql, &params, |r| {
        Ok((
            r.try_get(0).map_err(corrupt)?,
            r.try_get(1).map_err(corrupt)?,
        ))
    })
    .await?
    .ok_or_else(|| StoreError::Unavailable("insert returned no row".into()))?;
    let written: std::collections::HashSet<&str> = written.iter().map(String::as_str).collect();
    let is_written = |n: &NewMessage| written.contains(n.message.sid.as_str());
    // The jobs of written messages, in order, get the ids in order.
    let new_jobs: Vec<NewJob> = messages
        .iter()
        .filter(|n| is_written(n))
        .flat_map(|n| n.jobs.iter().cloned())
        .collect();
    let mut new_jobs = with_ids(new_jobs, ids)?.into_iter();
    Ok(messages
        .iter()
        .map(|n| is_written(n).then(|| new_jobs.by_ref().take(n.jobs.len()).collect()))
        .collect())
}
