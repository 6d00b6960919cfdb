//! The PostgreSQL store: a pool of `tokio-postgres` connections (deadpool), statements
//! prepared once per connection (`prepare_cached`), migrations in SQL tracked in a
//! `schema_migrations` table.
//!
//! # What differs from the SQLite store
//!
//! - **Concurrency.** There is no single writer: calls take pooled connections and run in
//!   parallel. The message pipeline's writes (new messages, transitions, completed jobs)
//!   are committed in groups by a few writer tasks (see `group`), so one WAL flush covers
//!   many of them as the SQLite writer's batches do; every other write commits on its own.
//!   Compare-and-set still holds under READ COMMITTED, because PostgreSQL re-checks
//!   `WHERE status = $expected` against the newest row version after waiting for a
//!   concurrent writer of the same row.
//! - **Few statements.** Every write a message's life makes is one statement, atomic
//!   without an explicit transaction, and a batch's writes of one kind share it: new
//!   messages (one multi-row insert with their jobs); transitions (see
//!   `transition`: one `UPDATE … FROM UNNEST` compare-and-set whose data-modifying CTEs
//!   delete the completed jobs, write the new jobs and route attempts of
//!   the transitions that held); `complete_jobs` (`DELETE … WHERE id = $1`, or `= ANY($1)`
//!   for several); `insert_jobs`; deletes cascade through CTEs.
//! - **Prepared once, planned once.** Statements are prepared per connection and written so
//!   that PostgreSQL settles on their generic plans: a statement whose generic plan looks
//!   costlier than its custom ones (`= ANY($1)`, `generate_series` over a parameter) is
//!   planned again at every execution, which costs more than running a simple statement.
//!   A generic plan is made once, for the table as it was then: statements that join
//!   parameter arrays to a table by its key say so (`probed_by_key`), so that a plan made
//!   on a new, empty database is still a key probe when the table holds millions of rows.
//! - **Job ids** come from a `BIGSERIAL` sequence. They increase in the order they are
//!   drawn, which across concurrent transactions is not always commit order (SQLite's
//!   single writer gives both). Jobs of one message are still written in order, because
//!   its transitions are serialised by the compare-and-set on its status.
//! - **Types.** Times are `BIGINT` ms; `u32` fields are `BIGINT` (no unsigned types);
//!   configs are `JSONB`; SIDs are `TEXT COLLATE "C"` so that `ORDER BY sid` is bytewise
//!   as in SQLite, whatever the database's collation.
//! - **Errors.** Integrity violations (SQLSTATE class 23: unique, foreign key…) are
//!   [`StoreError::Conflict`]; anything from the connection or the pool (refused, closed,
//!   timed out) and any other server error is [`StoreError::Unavailable`]; a row that
//!   does not map back to the model is [`StoreError::Corrupt`].
//! - **Migrations** run at [`PostgresStore::connect`] in one transaction that first takes a
//!   transaction-scoped advisory lock keyed by the schema, so nodes starting together do
//!   not race; each applied version is a row of `schema_migrations`.
//!
//! # CockroachDB
//!
//! CockroachDB speaks the same wire protocol and `tokio-postgres` connects to it, but
//! this module would need changes before it could be supported:
//! - `BIGSERIAL` becomes `unique_rowid()` (`serial_normalization = rowid`): ids are unique
//!   and roughly time-ordered but not dense and not strictly increasing across nodes, and
//!   there is no `jobs_id_seq` sequence, which breaks the id pre-allocation of job
//!   inserts. Use an explicit `CREATE SEQUENCE` (slow in
//!   Cockroach) or relax "ids increase" to "ids are unique, ordered per message".
//! - Advisory locks: for most of CockroachDB's history the `pg_advisory_*` builtins were
//!   no-op stubs that lock nothing, and the two-`int4` form used here was not defined at
//!   all (only the newest releases implement transaction-scoped ones). Serialise
//!   migrations another way: `SELECT … FOR UPDATE` on a `schema_migrations` row, or insert
//!   the version first and treat a conflict as "another node is migrating".
//! - Transactions are SERIALIZABLE by default (READ COMMITTED is opt-in in recent
//!   releases): any statement or the commit can fail with SQLSTATE 40001 under
//!   contention, and the whole transaction must be retried by the client (the
//!   `cockroach_restart` savepoint protocol or a retry loop around each method). Today a
//!   40001 is reported as `Unavailable`.
//! - Savepoints work, but a 40001 inside one is not rolled back by `ROLLBACK TO
//!   SAVEPOINT`: in `transitions` one retryable error aborts the whole batch.
//! - Schema changes inside a transaction are limited (DDL runs asynchronously, and mixing
//!   DDL with writes in one transaction is discouraged), so the migration transaction
//!   would have to split; `COLLATE "C"` should go (CockroachDB's collations are ICU
//!   locales, and a plain `STRING` already compares bytewise); partial indexes, `ON
//!   CONFLICT`, `UPDATE … RETURNING` and data-modifying CTEs are supported.

mod batches;
mod cache;
mod group;
mod reads;
mod rows;
mod transition;

use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{
    GenericClient, Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime,
};
use tern_bus::Job;
use tern_types::{MessageStatus, Sid};
use tokio_postgres::NoTls;
use tokio_postgres::types::{Json, ToSql};

use crate::{
    Account, AccountStatus, ApiKey, Feedback, FeedbackOutcome, FeedbackSet, Lease, Message,
    MessageQuery, MessagingService, NewJob, NumberConfig, Page, PhoneNumber, Result, RouteAttempt,
    ServiceConfig, SmppCredential, Store, StoreError, Transition,
};
use rows::*;

/// Migrations in order; version `i + 1` is `MIGRATIONS[i]`. Never edit an applied one.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_smpp_credentials.sql"),
    include_str!("migrations/0003_message_feedback.sql"),
    include_str!("migrations/0004_sticky_senders.sql"),
    include_str!("migrations/0005_route_attempts.sql"),
    include_str!("migrations/0006_leases.sql"),
    include_str!("migrations/0007_job_owners.sql"),
    include_str!("migrations/0008_no_message_events.sql"),
];
/// Deletes the messages whose sids `doomed` (a query) yields, with everything kept about
/// them, in one statement.
fn delete_messages_in(doomed: &str) -> String {
    format!(
        "WITH doomed AS ({doomed}),
             feedback AS (DELETE FROM message_feedback WHERE message_sid IN (SELECT sid FROM doomed)),
             attempts AS (DELETE FROM route_attempts WHERE message_sid IN (SELECT sid FROM doomed))
         DELETE FROM messages WHERE sid IN (SELECT sid FROM doomed)"
    )
}

/// [`Store::claim_job`]: the job is taken unless a live node (its presence lease held)
/// owns it.
pub(super) const CLAIM_JOB: &str = "UPDATE jobs j SET owner = $2
    WHERE j.id = $1 AND (j.owner IS NULL OR j.owner = $2 OR NOT EXISTS (
        SELECT 1 FROM leases l WHERE l.name = $3 || j.owner AND l.expires_at > $4))";
/// First key of the advisory lock taken while migrating ("tern" in ASCII).
const MIGRATION_LOCK_CLASS: i32 = 0x7465_726e;

pub struct PostgresStore {
    pool: Pool,
    /// The message pipeline's writes, committed in groups.
    group: group::GroupCommit,
    /// Reads of one message by sid or carrier id, coalesced.
    reads: reads::Reads,
    accounts: cache::ReadCache<Account>,
    numbers: cache::ReadCache<PhoneNumber>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("pool", &self.pool.status())
            .field("largest_commit_batch", &self.group.largest_batch())
            .field("largest_read_batch", &self.reads.largest_batch())
            .finish()
    }
}

/// A message and the chain of its causes (tokio-postgres keeps the server's words there).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

pub(crate) fn map_pg(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error()
        && db.code().code().starts_with("23")
    {
        let mut msg = db.message().to_string();
        if let Some(detail) = db.detail() {
            msg.push_str(": ");
            msg.push_str(detail);
        }
        return StoreError::Conflict(msg);
    }
    StoreError::Unavailable(describe(&e))
}

fn map_pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Backend(e) => map_pg(e),
        e => StoreError::Unavailable(describe(&e)),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl PostgresStore {
    /// Connections in the pool unless [`Self::connect_with`] says otherwise.
    pub const DEFAULT_POOL_SIZE: usize = 16;
    /// The longest a call waits for a pooled connection, and for a new one to be made
    /// (connecting included, unless the configuration sets its own `connect_timeout`):
    /// while the server is down or overwhelmed, calls fail as unavailable after this
    /// rather than pile up, and the API answers 503 instead of hanging.
    pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

    /// Connects to `url` (`postgres://user@host:5432/db?options=…` or `host=… dbname=…`)
    /// with [`Self::DEFAULT_POOL_SIZE`] connections and applies pending migrations.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        Self::connect_with(url, Self::DEFAULT_POOL_SIZE).await
    }

    /// Like [`Self::connect`], with at most `pool_size` connections (at least one).
    pub async fn connect_with(url: &str, pool_size: usize) -> Result<PostgresStore> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Unavailable(describe(&e)))?;
        Self::connect_with_config(config, pool_size).await
    }

    /// Like [`Self::connect_with`], from a parsed configuration (to set `options`, such
    /// as `-c search_path=…`, or timeouts in code).
    pub async fn connect_with_config(
        mut config: tokio_postgres::Config,
        pool_size: usize,
    ) -> Result<PostgresStore> {
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Self::ACQUIRE_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("tern");
        }
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(Self::ACQUIRE_TIMEOUT))
            .create_timeout(Some(Self::ACQUIRE_TIMEOUT))
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
            .map_err(|e| StoreError::Unavailable(describe(&e)))?;
        let store = PostgresStore {
            group: group::GroupCommit::start(pool.clone()),
            reads: reads::Reads::start(pool.clone()),
            pool,
            accounts: cache::ReadCache::new(),
            numbers: cache::ReadCache::new(),
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Closes the pool: idle connections are dropped, later calls fail as unavailable.
    pub fn close(&self) {
        self.pool.close();
    }

    /// The schema version the database is at (the number of migrations applied).
    pub async fn schema_version(&self) -> Result<i64> {
        let c = self.client().await?;
        let v: Option<i64> =
            query_opt(&c, "SELECT MAX(version) FROM schema_migrations", &[], |r| {
                r.try_get(0).map_err(|e| StoreError::Corrupt(e.to_string()))
            })
            .await?
            .flatten();
        Ok(v.unwrap_or(0))
    }

    async fn client(&self) -> Result<deadpool_postgres::Client> {
        self.pool.get().await.map_err(map_pool)
    }

    async fn migrate(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_pg)?;
        // Nodes starting together against one schema take turns; the lock ends with the
        // transaction.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(COALESCE(current_schema(), '')))",
            &[&MIGRATION_LOCK_CLASS],
        )
        .await
        .map_err(map_pg)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                applied_at BIGINT NOT NULL
            )",
        )
        .await
        .map_err(map_pg)?;
        let applied: Vec<i64> = tx
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(map_pg)?
            .iter()
            .map(|r| r.try_get(0).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect::<Result<_>>()?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        if let Some(&newest) = applied.last()
            && newest > known
        {
            tracing::warn!(
                database = newest,
                known,
                "the database schema is newer than this build knows"
            );
        }
        for (version, sql) in (1..).zip(MIGRATIONS) {
            if applied.contains(&version) {
                continue;
            }
            tx.batch_execute(sql).await.map_err(map_pg)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                &[&version, &now_ms()],
            )
            .await
            .map_err(map_pg)?;
            tracing::info!(migration = version, "applied store migration");
        }
        tx.commit().await.map_err(map_pg)
    }
}

/// A condition that holds for every row of a parameter array unnested `WITH ORDINALITY`
/// (`ord` between 1 and the array's length), written into statements that join such rows
/// to a table by its key (the batched transitions and job claims) for what it makes the
/// planner believe: that the rows are one, not the ten it assumes of any array parameter.
///
/// For ten rows, a generic plan made while the table is small joins them by hash to a
/// sequential scan of the whole table. A prepared statement settles on its generic plan
/// after five executions and keeps it until the table's statistics change: made on a new
/// database, that plan then reads every message for every batch as the table grows,
/// forever where nothing analyzes the table (autovacuum off) — 2.2–3.4 ms a batch instead
/// of 0.9–1.1 ms by the tenth second of a benchmark, PostgreSQL's CPU per message up by a
/// third. For one row the plan is a primary-key probe per row, whatever the table's size
/// (a table never analyzed counts as at least ten pages, where a probe costs less than a
/// scan; once analyzed, the next analysis makes PostgreSQL plan again). The range on both
/// sides is what does it: PostgreSQL estimates a range with no statistics as 0.5 % of the
/// rows.
fn probed_by_key(ord: &str, array: &str) -> String {
    format!("{ord} BETWEEN 1 AND cardinality({array})")
}

/// Common table expressions that write the jobs of whatever a statement wrote: parameters
/// `$first`..`$first + 4` are the jobs' owners (of SQL type `owner_type`), kinds,
/// subjects, run_ats and payloads; a job is written only if its owner is among the rows of
/// `written` (an SQL query of one column). Its ids are drawn for the jobs written and
/// handed out in increasing order in the order the jobs were given; the statement returns
/// them with [`OWNED_JOB_IDS`].
///
/// (Counting rows with `UNNEST` rather than `generate_series` keeps the generic plan's row
/// estimate close to a custom plan's, so that PostgreSQL settles on the generic plan
/// instead of planning the statement again at every execution. The sequence is named as a
/// `regclass` constant, resolved once when planning: `pg_get_serial_sequence` looked it up
/// in the catalog for every row, and made a transition with jobs 2.7× slower.)
fn owned_job_ctes(first: usize, owner_type: &str, written: &str) -> String {
    let p: Vec<usize> = (first..first + 5).collect();
    format!(
        "nj AS (
            SELECT j.*, row_number() OVER (ORDER BY j.ord) AS n
            FROM UNNEST(${}::{owner_type}[], ${}::text[], ${}::text[], ${}::bigint[], ${}::text[])
                WITH ORDINALITY AS j (owner, kind, subject, run_at, payload, ord)
            WHERE j.owner IN ({written})
        ), job_ids AS (
            SELECT nextval('jobs_id_seq'::regclass) AS id FROM nj
        ), job_ord AS (
            SELECT id, row_number() OVER (ORDER BY id) AS n FROM job_ids
        ), new_jobs AS (
            INSERT INTO jobs (id, kind, subject, run_at, attempts, payload)
            SELECT o.id, nj.kind, nj.subject, nj.run_at, 0, nj.payload
            FROM job_ord o JOIN nj ON nj.n = o.n
        )",
        p[0], p[1], p[2], p[3], p[4]
    )
}

/// The ids written by [`owned_job_ctes`], in the order of the jobs given.
const OWNED_JOB_IDS: &str =
    "ARRAY(SELECT o.id FROM job_ord o JOIN nj ON nj.n = o.n ORDER BY nj.ord)";

/// The columns of jobs with their owners, as parameters of [`owned_job_ctes`].
struct OwnedJobParams<'a, O> {
    owners: Vec<O>,
    jobs: JobParams<'a>,
}

impl<'a, O: ToSql + Sync + Copy> OwnedJobParams<'a, O> {
    /// The jobs of each owner, in order.
    fn new(owned: impl Iterator<Item = (O, &'a [NewJob])>) -> OwnedJobParams<'a, O> {
        let mut owners = Vec::new();
        let mut jobs = JobParams::default();
        for (owner, js) in owned {
            for j in js {
                owners.push(owner);
                jobs.push(j);
            }
        }
        OwnedJobParams { owners, jobs }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 5] {
        let [k, s, r, p] = self.jobs.params();
        [&self.owners, k, s, r, p]
    }
}

/// The columns of new jobs (see [`OwnedJobParams`]).
#[derive(Default)]
struct JobParams<'a> {
    kinds: Vec<&'static str>,
    subjects: Vec<&'a str>,
    run_ats: Vec<i64>,
    payloads: Vec<&'a str>,
}

impl<'a> JobParams<'a> {
    fn push(&mut self, j: &'a NewJob) {
        self.kinds.push(j.kind.as_str());
        self.subjects.push(j.subject.as_str());
        self.run_ats.push(j.run_at);
        self.payloads.push(j.payload.as_str());
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 4] {
        [&self.kinds, &self.subjects, &self.run_ats, &self.payloads]
    }
}

/// A CTE that appends route attempts from arrays starting at parameter `$first` (see
/// [`AttemptParams`]), if `guard` holds.
fn attempt_cte(first: usize, guard: &str) -> String {
    let p: Vec<usize> = (first..first + 8).collect();
    format!(
        "new_attempts AS (
            INSERT INTO route_attempts ({ATTEMPT_COLS})
            SELECT * FROM UNNEST(${}::text[], ${}::text[], ${}::text[], ${}::bigint[], ${}::text[],
                ${}::text[], ${}::bigint[], ${}::text[])
            WHERE {guard}
        )",
        p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]
    )
}

/// The columns of route attempts, as parameters of [`attempt_cte`] (and of the
/// transitions statement's, after their owners).
#[derive(Default)]
struct AttemptParams<'a> {
    sids: Vec<&'a str>,
    carriers: Vec<&'a str>,
    prefixes: Vec<&'a str>,
    ats: Vec<i64>,
    results: Vec<&'static str>,
    carrier_ids: Vec<Option<&'a str>>,
    error_codes: Vec<Option<i64>>,
    reasons: Vec<&'a str>,
}

impl<'a> AttemptParams<'a> {
    fn new(attempts: &'a [RouteAttempt]) -> AttemptParams<'a> {
        let mut p = AttemptParams::default();
        for a in attempts {
            p.push(a);
        }
        p
    }

    fn push(&mut self, a: &'a RouteAttempt) {
        self.sids.push(a.message_sid.as_str());
        self.carriers.push(a.carrier.as_str());
        self.prefixes.push(a.prefix.as_str());
        self.ats.push(a.at);
        self.results.push(a.result.as_str());
        self.carrier_ids.push(a.carrier_message_id.as_deref());
        self.error_codes.push(a.error_code.map(i64::from));
        self.reasons.push(a.reason.as_str());
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.sids,
            &self.carriers,
            &self.prefixes,
            &self.ats,
            &self.results,
            &self.carrier_ids,
            &self.error_codes,
            &self.reasons,
        ]
    }
}

/// The jobs with the ids a statement built with [`owned_job_ctes`] returned for them.
fn with_ids(jobs: Vec<NewJob>, ids: Vec<i64>) -> Result<Vec<Job>> {
    if ids.len() != jobs.len() {
        return Err(StoreError::Corrupt(format!(
            "{} job ids returned for {} jobs",
            ids.len(),
            jobs.len()
        )));
    }
    Ok(ids
        .into_iter()
        .zip(jobs)
        .map(|(id, j)| Job {
            id,
            kind: j.kind,
            subject: j.subject,
            run_at: j.run_at,
            attempts: 0,
            payload: j.payload,
        })
        .collect())
}

/// Writes `jobs` in one statement and returns them with their ids, in the order given (ids
/// increasing).
async fn insert_jobs<C: GenericClient>(c: &C, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    // Jobs of their own: one owner, always written.
    let sql = format!(
        "WITH {} SELECT {OWNED_JOB_IDS}",
        owned_job_ctes(1, "bigint", "VALUES (0::bigint)")
    );
    let p = OwnedJobParams::new(std::iter::once((0i64, jobs.as_slice())));
    let ids: Vec<i64> = query_opt(c, &sql, &p.params(), |r| r.try_get(0).map_err(corrupt))
        .await?
        .ok_or_else(|| StoreError::Unavailable("insert returned no ids".into()))?;
    with_ids(jobs, ids)
}

fn corrupt(e: tokio_postgres::Error) -> StoreError {
    StoreError::Corrupt(describe(&e))
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<()> {
        let c = self.client().await?;
        exec(&c, "SELECT 1", &[]).await.map(|_| ())
    }

    async fn create_account(&self, a: Account) -> Result<()> {
        let c = self.client().await?;
        let parent = a.parent_sid.map(|s| s.to_string());
        exec(
            &c,
            "INSERT INTO accounts (sid, parent_sid, friendly_name, auth_token, status, created, updated)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &a.sid.as_str(),
                &parent,
                &a.friendly_name,
                &a.auth_token,
                &a.status.as_str(),
                &a.created,
                &a.updated,
            ],
        )
        .await?;
        Ok(())
    }

    async fn account(&self, sid: Sid) -> Result<Option<Account>> {
        if let Some(a) = self.accounts.get(sid.as_str()) {
            return Ok(Some(a));
        }
        let c = self.client().await?;
        let a = query_opt(
            &c,
            &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE sid = $1"),
            &[&sid.as_str()],
            account_row,
        )
        .await?;
        if let Some(a) = &a {
            self.accounts.put(sid.as_str(), a.clone());
        }
        Ok(a)
    }

    async fn first_account(&self) -> Result<Option<Account>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE parent_sid IS NULL
                 ORDER BY created, sid LIMIT 1"
            ),
            &[],
            account_row,
        )
        .await
    }

    async fn subaccounts(&self, parent: Sid) -> Result<Vec<Account>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!(
                "SELECT {ACCOUNT_COLS} FROM accounts WHERE parent_sid = $1 ORDER BY created, sid"
            ),
            &[&parent.as_str()],
            account_row,
        )
        .await
    }

    async fn update_account(
        &self,
        sid: Sid,
        friendly_name: Option<String>,
        status: Option<AccountStatus>,
        at: i64,
    ) -> Result<Option<Account>> {
        self.accounts.forget(sid.as_str());
        let c = self.client().await?;
        let updated = query_opt(
            &c,
            &format!(
                "UPDATE accounts SET friendly_name = COALESCE($2, friendly_name),
                    status = COALESCE($3, status), updated = $4
                 WHERE sid = $1 RETURNING {ACCOUNT_COLS}"
            ),
            &[
                &sid.as_str(),
                &friendly_name,
                &status.map(|s| s.as_str()),
                &at,
            ],
            account_row,
        )
        .await;
        // Again after the write: a read racing it may have cached the old row.
        self.accounts.forget(sid.as_str());
        updated
    }

    async fn create_key(&self, k: ApiKey) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO api_keys (sid, account_sid, friendly_name, secret_hash, created, updated)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &k.sid.as_str(),
                &k.account_sid.as_str(),
                &k.friendly_name,
                &k.secret_hash,
                &k.created,
                &k.updated,
            ],
        )
        .await?;
        Ok(())
    }

    async fn key(&self, sid: Sid) -> Result<Option<ApiKey>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE sid = $1"),
            &[&sid.as_str()],
            key_row,
        )
        .await
    }

    async fn keys(&self, account: Sid) -> Result<Vec<ApiKey>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE account_sid = $1 ORDER BY created DESC, sid"
            ),
            &[&account.as_str()],
            key_row,
        )
        .await
    }

    async fn update_key(&self, sid: Sid, friendly_name: String, at: i64) -> Result<Option<ApiKey>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "UPDATE api_keys SET friendly_name = $2, updated = $3 WHERE sid = $1 RETURNING {KEY_COLS}"
            ),
            &[&sid.as_str(), &friendly_name, &at],
            key_row,
        )
        .await
    }

    async fn delete_key(&self, sid: Sid) -> Result<bool> {
        let c = self.client().await?;
        Ok(exec(&c, "DELETE FROM api_keys WHERE sid = $1", &[&sid.as_str()]).await? > 0)
    }

    async fn create_number(&self, n: PhoneNumber) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO phone_numbers (sid, account_sid, phone_number, config, created, updated)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &n.sid.as_str(),
                &n.account_sid.as_str(),
                &n.phone_number,
                &Json(&n.config),
                &n.created,
                &n.updated,
            ],
        )
        .await?;
        Ok(())
    }

    async fn number(&self, sid: Sid) -> Result<Option<PhoneNumber>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE sid = $1"),
            &[&sid.as_str()],
            number_row,
        )
        .await
    }

    async fn number_by_phone(&self, phone: &str) -> Result<Option<PhoneNumber>> {
        if let Some(n) = self.numbers.get(phone) {
            return Ok(Some(n));
        }
        let c = self.client().await?;
        let n = query_opt(
            &c,
            &format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE phone_number = $1"),
            &[&phone],
            number_row,
        )
        .await?;
        if let Some(n) = &n {
            self.numbers.put(phone, n.clone());
        }
        Ok(n)
    }

    async fn numbers(&self, account: Sid) -> Result<Vec<PhoneNumber>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!(
                "SELECT {NUMBER_COLS} FROM phone_numbers WHERE account_sid = $1 ORDER BY created, sid"
            ),
            &[&account.as_str()],
            number_row,
        )
        .await
    }

    async fn update_number(
        &self,
        sid: Sid,
        cfg: NumberConfig,
        at: i64,
    ) -> Result<Option<PhoneNumber>> {
        // Number writes are rare: forget every cached number rather than map sids.
        self.numbers.clear();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        // The merge is the model's; the row lock keeps a concurrent update from being lost.
        let Some(mut n) = query_opt(
            &tx,
            &format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE sid = $1 FOR UPDATE"),
            &[&sid.as_str()],
            number_row,
        )
        .await?
        else {
            return Ok(None);
        };
        n.config.merge(cfg);
        n.updated = at;
        exec(
            &tx,
            "UPDATE phone_numbers SET config = $2, updated = $3 WHERE sid = $1",
            &[&sid.as_str(), &Json(&n.config), &at],
        )
        .await?;
        tx.commit().await.map_err(map_pg)?;
        self.numbers.clear();
        Ok(Some(n))
    }

    async fn delete_number(&self, sid: Sid) -> Result<bool> {
        self.numbers.clear();
        let c = self.client().await?;
        let deleted = exec(
            &c,
            "WITH pool AS (DELETE FROM service_numbers WHERE number_sid = $1)
             DELETE FROM phone_numbers WHERE sid = $1",
            &[&sid.as_str()],
        )
        .await?;
        self.numbers.clear();
        Ok(deleted > 0)
    }

    async fn create_service(&self, s: MessagingService) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO messaging_services (sid, account_sid, config, created, updated)
             VALUES ($1, $2, $3, $4, $5)",
            &[
                &s.sid.as_str(),
                &s.account_sid.as_str(),
                &Json(&s.config),
                &s.created,
                &s.updated,
            ],
        )
        .await?;
        Ok(())
    }

    async fn service(&self, sid: Sid) -> Result<Option<MessagingService>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {SERVICE_COLS} FROM messaging_services WHERE sid = $1"),
            &[&sid.as_str()],
            service_row,
        )
        .await
    }

    async fn services(&self, account: Sid) -> Result<Vec<MessagingService>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!(
                "SELECT {SERVICE_COLS} FROM messaging_services WHERE account_sid = $1
                 ORDER BY created DESC, sid"
            ),
            &[&account.as_str()],
            service_row,
        )
        .await
    }

    async fn update_service(
        &self,
        sid: Sid,
        cfg: ServiceConfig,
        at: i64,
    ) -> Result<Option<MessagingService>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_pg)?;
        let Some(mut s) = query_opt(
            &tx,
            &format!("SELECT {SERVICE_COLS} FROM messaging_services WHERE sid = $1 FOR UPDATE"),
            &[&sid.as_str()],
            service_row,
        )
        .await?
        else {
            return Ok(None);
        };
        s.config.merge(cfg);
        s.updated = at;
        exec(
            &tx,
            "UPDATE messaging_services SET config = $2, updated = $3 WHERE sid = $1",
            &[&sid.as_str(), &Json(&s.config), &at],
        )
        .await?;
        tx.commit().await.map_err(map_pg)?;
        Ok(Some(s))
    }

    async fn delete_service(&self, sid: Sid) -> Result<bool> {
        let c = self.client().await?;
        let deleted = exec(
            &c,
            "WITH pool AS (DELETE FROM service_numbers WHERE service_sid = $1),
                  sticky AS (DELETE FROM sticky_senders WHERE service_sid = $1)
             DELETE FROM messaging_services WHERE sid = $1",
            &[&sid.as_str()],
        )
        .await?;
        Ok(deleted > 0)
    }

    async fn add_service_number(&self, service: Sid, number: Sid, at: i64) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO service_numbers (service_sid, number_sid, created) VALUES ($1, $2, $3)",
            &[&service.as_str(), &number.as_str(), &at],
        )
        .await?;
        Ok(())
    }

    async fn remove_service_number(&self, service: Sid, number: Sid) -> Result<bool> {
        let c = self.client().await?;
        let deleted = exec(
            &c,
            "DELETE FROM service_numbers WHERE service_sid = $1 AND number_sid = $2",
            &[&service.as_str(), &number.as_str()],
        )
        .await?;
        Ok(deleted > 0)
    }

    async fn service_numbers(&self, service: Sid) -> Result<Vec<(PhoneNumber, i64)>> {
        let c = self.client().await?;
        let cols = qualified(NUMBER_COLS, "n");
        query_all(
            &c,
            &format!(
                "SELECT {cols}, s.created FROM service_numbers s
                 JOIN phone_numbers n ON n.sid = s.number_sid
                 WHERE s.service_sid = $1 ORDER BY s.created, n.sid"
            ),
            &[&service.as_str()],
            |r| Ok((number_row(r)?, r.try_get::<_, i64>(6).map_err(corrupt)?)),
        )
        .await
    }

    async fn number_service(&self, number: Sid) -> Result<Option<MessagingService>> {
        let c = self.client().await?;
        let cols = qualified(SERVICE_COLS, "m");
        query_opt(
            &c,
            &format!(
                "SELECT {cols} FROM service_numbers s
                 JOIN messaging_services m ON m.sid = s.service_sid
                 WHERE s.number_sid = $1 ORDER BY s.created, s.service_sid LIMIT 1"
            ),
            &[&number.as_str()],
            service_row,
        )
        .await
    }

    async fn next_sender_counter(&self, service: Sid) -> Result<u64> {
        let c = self.client().await?;
        let before: i64 = query_opt(
            &c,
            "UPDATE messaging_services SET rr_counter = rr_counter + 1 WHERE sid = $1
             RETURNING rr_counter - 1",
            &[&service.as_str()],
            |r| r.try_get(0).map_err(corrupt),
        )
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(u64::try_from(before).unwrap_or(0))
    }

    async fn sticky_sender(&self, service: Sid, to: &str) -> Result<Option<String>> {
        let c = self.client().await?;
        query_opt(
            &c,
            "SELECT sender FROM sticky_senders WHERE service_sid = $1 AND handset = $2",
            &[&service.as_str(), &to],
            |r| r.try_get(0).map_err(corrupt),
        )
        .await
    }

    async fn stick_sender(
        &self,
        service: Sid,
        to: &str,
        sender: &str,
        replacing: Option<&str>,
        at: i64,
    ) -> Result<String> {
        // ON CONFLICT DO UPDATE locks and reads the newest row version even when a
        // concurrent first send committed it after this statement's snapshot, so the
        // answer is the sender every writer agrees on. The no-op update of the "keep"
        // case makes RETURNING yield the row either way; `$5` NULL matches nothing.
        let c = self.client().await?;
        query_opt(
            &c,
            "INSERT INTO sticky_senders (service_sid, handset, sender, updated)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (service_sid, handset) DO UPDATE SET
                 sender = CASE WHEN sticky_senders.sender = $5::text
                     THEN EXCLUDED.sender ELSE sticky_senders.sender END,
                 updated = CASE WHEN sticky_senders.sender = $5::text
                     THEN EXCLUDED.updated ELSE sticky_senders.updated END
             RETURNING sender",
            &[&service.as_str(), &to, &sender, &at, &replacing],
            |r| r.try_get(0).map_err(corrupt),
        )
        .await?
        .ok_or_else(|| StoreError::Corrupt("an upsert returned no row".into()))
    }

    async fn create_smpp_credential(&self, cred: SmppCredential) -> Result<()> {
        let c = self.client().await?;
        exec(
            &c,
            &format!("INSERT INTO smpp_credentials ({SMPP_COLS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[
                &cred.sid.as_str(),
                &cred.account_sid.as_str(),
                &cred.system_id,
                &cred.password_hash,
                &cred.friendly_name,
                &cred.created,
            ],
        )
        .await?;
        Ok(())
    }

    async fn smpp_credentials(&self, account: Sid) -> Result<Vec<SmppCredential>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!(
                "SELECT {SMPP_COLS} FROM smpp_credentials WHERE account_sid = $1
                 ORDER BY created, sid"
            ),
            &[&account.as_str()],
            smpp_row,
        )
        .await
    }

    async fn smpp_credential_by_system_id(
        &self,
        system_id: &str,
    ) -> Result<Option<SmppCredential>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {SMPP_COLS} FROM smpp_credentials WHERE system_id = $1"),
            &[&system_id],
            smpp_row,
        )
        .await
    }

    async fn delete_smpp_credential(&self, account: Sid, sid: Sid) -> Result<bool> {
        let c = self.client().await?;
        let deleted = exec(
            &c,
            "DELETE FROM smpp_credentials WHERE sid = $1 AND account_sid = $2",
            &[&sid.as_str(), &account.as_str()],
        )
        .await?;
        Ok(deleted > 0)
    }

    async fn insert_message(&self, m: Message, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        self.group
            .insert_message(m, jobs, false)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a message was not written".into()))
    }

    async fn insert_outbound(&self, m: Message, jobs: Vec<NewJob>) -> Result<Option<Vec<Job>>> {
        self.group.insert_message(m, jobs, true).await
    }

    async fn message(&self, sid: Sid) -> Result<Option<Message>> {
        self.reads.message(sid).await
    }

    async fn message_by_carrier_id(&self, carrier: &str, id: &str) -> Result<Option<Message>> {
        self.reads.by_carrier_id(carrier, id).await
    }

    async fn resend_message(
        &self,
        sid: Sid,
        from: (String, String),
        to: (String, String),
        at: i64,
        attempts: Vec<RouteAttempt>,
    ) -> Result<bool> {
        let c = self.client().await?;
        // One statement: the attempts are written only if the compare-and-set holds.
        let sql = format!(
            "WITH u AS (
                 UPDATE messages SET carrier = $4, carrier_message_id = $5, updated = $6
                 WHERE sid = $1 AND status = 'sent' AND carrier = $2 AND carrier_message_id = $3
                 RETURNING sid
             ), {} SELECT EXISTS (SELECT 1 FROM u)",
            attempt_cte(7, "EXISTS (SELECT 1 FROM u)")
        );
        let sid = sid.as_str();
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&sid, &from.0, &from.1, &to.0, &to.1, &at];
        let attempt_params = AttemptParams::new(&attempts);
        params.extend(attempt_params.params());
        query_opt(&c, &sql, &params, |r| r.try_get(0).map_err(corrupt))
            .await
            .map(|changed| changed.unwrap_or(false))
    }

    async fn add_route_attempts(&self, attempts: Vec<RouteAttempt>) -> Result<()> {
        if attempts.is_empty() {
            return Ok(());
        }
        let c = self.client().await?;
        let sql = format!("WITH {} SELECT 1", attempt_cte(1, "TRUE"));
        let p = AttemptParams::new(&attempts);
        exec(&c, &sql, &p.params()).await?;
        Ok(())
    }

    async fn route_attempts(&self, message: Sid) -> Result<Vec<RouteAttempt>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!(
                "SELECT {ATTEMPT_COLS} FROM route_attempts WHERE message_sid = $1 ORDER BY id"
            ),
            &[&message.as_str()],
            attempt_row,
        )
        .await
    }

    async fn messages(&self, account: Sid, q: MessageQuery) -> Result<Page<Message>> {
        let c = self.client().await?;
        list_messages(&c, account, q).await
    }

    async fn transition(&self, t: Transition) -> Result<Vec<Job>> {
        self.group.transition(t).await
    }

    async fn transitions(&self, ts: Vec<Transition>) -> Result<Vec<Result<Vec<Job>>>> {
        // Each on its own, all at once: the writers commit them together.
        Ok(futures_util::future::join_all(ts.into_iter().map(|t| self.group.transition(t))).await)
    }

    async fn redact_message(&self, sid: Sid, at: i64) -> Result<Option<Message>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "UPDATE messages SET body = '', updated = $2 WHERE sid = $1 RETURNING {MESSAGE_COLS}"
            ),
            &[&sid.as_str(), &at],
            message_row,
        )
        .await
    }

    async fn delete_message(&self, sid: Sid) -> Result<bool> {
        let c = self.client().await?;
        let deleted = exec(
            &c,
            &delete_messages_in("SELECT $1::text AS sid"),
            &[&sid.as_str()],
        )
        .await?;
        Ok(deleted > 0)
    }

    async fn delete_stale_messages(&self, updated_before: i64, limit: u32) -> Result<u64> {
        let terminal: Vec<&'static str> = MessageStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(MessageStatus::as_str)
            .collect();
        let c = self.client().await?;
        exec(
            &c,
            // SKIP LOCKED: a message being written now is not old; and two sweeps (a
            // leader's term ending as the next begins) never wait for each other.
            &delete_messages_in(
                "SELECT sid FROM messages m
                 WHERE updated < $1 AND status = ANY($2::text[])
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.subject = m.sid)
                 ORDER BY updated LIMIT $3 FOR UPDATE SKIP LOCKED",
            ),
            &[&updated_before, &terminal, &i64::from(limit)],
        )
        .await
    }

    async fn stale_messages(
        &self,
        statuses: &[MessageStatus],
        updated_before: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let statuses: Vec<&'static str> = statuses.iter().map(|s| s.as_str()).collect();
        let c = self.client().await?;
        query_all(
            &c,
            &format!(
                "SELECT {MESSAGE_COLS} FROM messages
                 WHERE updated < $1 AND status = ANY($2::text[])
                 ORDER BY updated, sid LIMIT $3"
            ),
            &[&updated_before, &statuses, &i64::from(limit)],
            message_row,
        )
        .await
    }

    async fn set_feedback(
        &self,
        message: Sid,
        outcome: FeedbackOutcome,
        at: i64,
    ) -> Result<Option<FeedbackSet>> {
        // One statement: the upsert happens only if the message exists, and `prev` reads
        // the statement's snapshot, so it is the outcome from before this write.
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "WITH prev AS (
                    SELECT outcome FROM message_feedback WHERE message_sid = $1
                ), up AS (
                    INSERT INTO message_feedback ({FEEDBACK_COLS})
                    SELECT sid, $2::text, $3::bigint, $3::bigint FROM messages WHERE sid = $1
                    ON CONFLICT (message_sid) DO UPDATE SET outcome = EXCLUDED.outcome,
                        updated = GREATEST(message_feedback.created, EXCLUDED.updated)
                    RETURNING {FEEDBACK_COLS}
                )
                SELECT {}, (SELECT outcome FROM prev) FROM up",
                qualified(FEEDBACK_COLS, "up")
            ),
            &[&message.as_str(), &outcome.as_str(), &at],
            |r| {
                Ok(FeedbackSet {
                    feedback: feedback_row(r)?,
                    previous: opt_outcome(r, 4)?,
                })
            },
        )
        .await
    }

    async fn feedback(&self, message: Sid) -> Result<Option<Feedback>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!("SELECT {FEEDBACK_COLS} FROM message_feedback WHERE message_sid = $1"),
            &[&message.as_str()],
            feedback_row,
        )
        .await
    }

    async fn set_opt_out(
        &self,
        account: Sid,
        handset: &str,
        opted_out: bool,
        at: i64,
    ) -> Result<()> {
        let c = self.client().await?;
        if opted_out {
            exec(
                &c,
                "INSERT INTO opt_outs (account_sid, handset, created) VALUES ($1, $2, $3)
                 ON CONFLICT (account_sid, handset) DO NOTHING",
                &[&account.as_str(), &handset, &at],
            )
            .await?;
        } else {
            exec(
                &c,
                "DELETE FROM opt_outs WHERE account_sid = $1 AND handset = $2",
                &[&account.as_str(), &handset],
            )
            .await?;
        }
        Ok(())
    }

    async fn is_opted_out(&self, account: Sid, handset: &str) -> Result<bool> {
        let c = self.client().await?;
        let found = query_opt(
            &c,
            "SELECT 1 FROM opt_outs WHERE account_sid = $1 AND handset = $2",
            &[&account.as_str(), &handset],
            |_| Ok(()),
        )
        .await?;
        Ok(found.is_some())
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u32,
        now: i64,
    ) -> Result<Option<Lease>> {
        // One statement: of concurrent inserts of a new name one wins and the others take
        // the conflict path; there, under READ COMMITTED, the WHERE is evaluated against the
        // newest committed version of the row once its writer is done, so two holders
        // can never both see the lease as free.
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "INSERT INTO leases ({LEASE_COLS}) VALUES ($1, $2, $3::bigint + $4::bigint, 1)
                 ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder,
                     expires_at = EXCLUDED.expires_at,
                     epoch = leases.epoch + CASE
                         WHEN leases.holder = EXCLUDED.holder AND leases.expires_at > $3
                         THEN 0 ELSE 1 END
                 WHERE leases.holder = EXCLUDED.holder OR leases.expires_at <= $3
                 RETURNING {LEASE_COLS}"
            ),
            &[&name, &holder, &now, &i64::from(ttl_ms)],
            lease_row,
        )
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let c = self.client().await?;
        let released = exec(
            &c,
            "UPDATE leases SET expires_at = 0 WHERE name = $1 AND holder = $2 AND expires_at <> 0",
            &[&name, &holder],
        )
        .await?;
        Ok(released > 0)
    }

    async fn leases(&self, prefix: &str) -> Result<Vec<Lease>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!("SELECT {LEASE_COLS} FROM leases WHERE starts_with(name, $1) ORDER BY name"),
            &[&prefix],
            lease_row,
        )
        .await
    }

    async fn delete_released_leases(&self, prefix: &str) -> Result<u64> {
        let c = self.client().await?;
        exec(
            &c,
            "DELETE FROM leases WHERE starts_with(name, $1) AND expires_at = 0",
            &[&prefix],
        )
        .await
    }

    async fn pending_jobs(&self) -> Result<Vec<Job>> {
        let c = self.client().await?;
        query_all(
            &c,
            &format!("SELECT {JOB_COLS} FROM jobs ORDER BY id"),
            &[],
            job_row,
        )
        .await
    }

    async fn complete_jobs(&self, ids: Vec<i64>) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.group.complete_jobs(ids).await
    }

    async fn claim_job(
        &self,
        id: i64,
        holder: &str,
        presence_prefix: &str,
        now: i64,
    ) -> Result<bool> {
        self.group.claim_job(id, holder, presence_prefix, now).await
    }

    async fn retry_job(&self, id: i64, run_at: i64) -> Result<Option<Job>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "UPDATE jobs SET attempts = attempts + 1, run_at = $2 WHERE id = $1
                 RETURNING {JOB_COLS}"
            ),
            &[&id, &run_at],
            job_row,
        )
        .await
    }

    async fn defer_job(&self, id: i64, run_at: i64, payload: String) -> Result<Option<Job>> {
        let c = self.client().await?;
        query_opt(
            &c,
            &format!(
                "UPDATE jobs SET run_at = $2, payload = $3 WHERE id = $1 RETURNING {JOB_COLS}"
            ),
            &[&id, &run_at, &payload],
            job_row,
        )
        .await
    }

    async fn insert_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        let c = self.client().await?;
        insert_jobs(&c, jobs).await
    }
}

/// A page of an account's messages, newest first by (created, sid), continuing strictly
/// after `q.after`; `next` is set when more rows follow.
async fn list_messages<C: GenericClient>(
    c: &C,
    account: Sid,
    q: MessageQuery,
) -> Result<Page<Message>> {
    type Param = Box<dyn ToSql + Sync + Send>;
    let mut sql = format!("SELECT {MESSAGE_COLS} FROM messages WHERE account_sid = $1");
    let mut values: Vec<Param> = vec![Box::new(account.to_string())];
    let mut add = |cond: &str, v: Param, sql: &mut String| {
        values.push(v);
        sql.push_str(&cond.replace('?', &format!("${}", values.len())));
    };
    if let Some(to) = q.to {
        add(" AND to_number = ?", Box::new(to), &mut sql);
    }
    if let Some(from) = q.from {
        add(" AND from_number = ?", Box::new(from), &mut sql);
    }
    if let Some(t) = q.sent_after {
        add(" AND COALESCE(sent, created) >= ?", Box::new(t), &mut sql);
    }
    if let Some(t) = q.sent_before {
        add(" AND COALESCE(sent, created) <= ?", Box::new(t), &mut sql);
    }
    if let Some((created, sid)) = q.after {
        add(" AND (created, sid) < (?", Box::new(created), &mut sql);
        add(", ?)", Box::new(sid.to_string()), &mut sql);
    }
    let limit = q.limit.clamp(1, 1000);
    add(
        " ORDER BY created DESC, sid DESC LIMIT ?",
        Box::new(i64::from(limit) + 1),
        &mut sql,
    );
    let params: Vec<&(dyn ToSql + Sync)> = values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect();
    let mut items = query_all(c, &sql, &params, message_row).await?;
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(|m| (m.created, m.sid))
    } else {
        None
    };
    Ok(Page { items, next })
}

#[cfg(test)]
mod tests;
