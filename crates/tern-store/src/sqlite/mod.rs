//! The SQLite store: one writer thread with group commit, a pool of reader connections.
//!
//! SQLite allows one writer at a time, so every write goes to a single thread that takes
//! all waiting writes into one transaction (each in its own savepoint, so one failing
//! write does not undo the others) and commits with `synchronous=FULL`: one fsync covers
//! the whole batch, and no caller hears "done" before its write is on disk. Readers use
//! WAL snapshots on their own connections and never wait for the writer.

mod rows;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tern_bus::Job;
use tern_types::{MessageStatus, Sid};
use tokio::sync::oneshot;

use crate::{
    Account, AccountStatus, ApiKey, Feedback, FeedbackOutcome, FeedbackSet, Lease, Message,
    MessageQuery, MessagingService, NewJob, NumberConfig, Page, PhoneNumber, Result, RouteAttempt,
    ServiceConfig, SmppCredential, Store, StoreError, Transition,
};
use rows::*;

/// Migrations in order; `PRAGMA user_version` is the number applied. Never edit an applied one.
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
/// Sticks a sender to a service's recipient unless another is stuck there that is not
/// `?5` (NULL matches nothing), and returns the one stuck afterwards. The no-op update of
/// the "keep" case makes RETURNING yield the row either way.
const STICK_SENDER: &str = "INSERT INTO sticky_senders (service_sid, handset, sender, updated)
    VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (service_sid, handset) DO UPDATE SET
        sender = CASE WHEN sticky_senders.sender = ?5 THEN excluded.sender ELSE sticky_senders.sender END,
        updated = CASE WHEN sticky_senders.sender = ?5 THEN excluded.updated ELSE sticky_senders.updated END
    RETURNING sender";
/// The most writes committed together; bounds a batch's latency and memory.
const MAX_BATCH: usize = 1024;
const READERS: usize = 4;
/// The longest a batch stays open, so a steady stream of writes still commits often.
const MAX_BATCH_TIME: std::time::Duration = std::time::Duration::from_millis(2);
/// How long an open batch waits for one more write before committing.
const LINGER: std::time::Duration = std::time::Duration::from_micros(100);

type Reply = Box<dyn FnOnce(bool) + Send>;

thread_local! {
    /// Per-thread read connections for point lookups, one per open store.
    static LOOKUP_CONNS: std::cell::RefCell<Vec<(u64, Connection)>> = const { std::cell::RefCell::new(Vec::new()) };
}
static NEXT_STORE_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
type WriteOp = Box<dyn FnOnce(&Connection) -> Reply + Send>;

pub struct SqliteStore {
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    checkpointer: Mutex<
        Option<(
            Arc<std::sync::atomic::AtomicBool>,
            std::thread::JoinHandle<()>,
        )>,
    >,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    id: u64,
    path: std::path::PathBuf,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn map_sql(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, ref msg) = e
        && f.code == rusqlite::ErrorCode::ConstraintViolation
    {
        return StoreError::Conflict(msg.clone().unwrap_or_default());
    }
    StoreError::Unavailable(e.to_string())
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(map_sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(map_sql)?;
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        .map_err(map_sql)?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// Deletes a message with its feedback and route attempts; whether it existed.
fn delete_message_rows(c: &Connection, sid: &str) -> Result<bool> {
    for sql in [
        "DELETE FROM message_feedback WHERE message_sid = ?1",
        "DELETE FROM route_attempts WHERE message_sid = ?1",
    ] {
        c.prepare_cached(sql)
            .and_then(|mut s| s.execute([sid]))
            .map_err(map_sql)?;
    }
    c.prepare_cached("DELETE FROM messages WHERE sid = ?1")
        .and_then(|mut s| s.execute([sid]))
        .map(|n| n > 0)
        .map_err(map_sql)
}

fn migrate(conn: &Connection) -> Result<()> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(map_sql)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        let tx = conn.unchecked_transaction().map_err(map_sql)?;
        tx.execute_batch(sql).map_err(map_sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))
            .map_err(map_sql)?;
        tx.commit().map_err(map_sql)?;
        tracing::info!(migration = i + 1, "applied store migration");
    }
    Ok(())
}

/// Copies committed WAL frames into the database file twice a second.
fn run_checkpointer(conn: Connection, stop: Arc<std::sync::atomic::AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(std::time::Duration::from_millis(500));
        if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(error = %e, "WAL checkpoint failed; it is retried");
        }
    }
    let _ = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
}

fn run_writer(conn: Connection, rx: mpsc::Receiver<WriteOp>) {
    let mut replies: Vec<Reply> = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = rx.recv() {
        // Writes that arrive while the batch runs join it, and the batch waits a moment
        // for more before committing: under load one fsync then covers hundreds of writes
        // and pages touched by several of them are written once.
        let began = conn.execute_batch("BEGIN IMMEDIATE").is_ok();
        let opened = std::time::Instant::now();
        replies.push(first(&conn));
        while replies.len() < MAX_BATCH && opened.elapsed() < MAX_BATCH_TIME {
            match rx.try_recv() {
                Ok(op) => replies.push(op(&conn)),
                Err(mpsc::TryRecvError::Empty) => match rx.recv_timeout(LINGER) {
                    Ok(op) => replies.push(op(&conn)),
                    Err(_) => break,
                },
                Err(mpsc::TryRecvError::Disconnected) => break,
            }
        }
        metrics::histogram!("tern_store_commit_batch_size").record(replies.len() as f64);
        let committed = began && conn.execute_batch("COMMIT").is_ok();
        if !committed {
            let _ = conn.execute_batch("ROLLBACK");
            tracing::error!("store commit failed; the batch's writes are reported as failed");
        }
        for reply in replies.drain(..) {
            reply(committed);
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = open(path)?;
        migrate(&conn)?;
        // Checkpoints run on their own thread so that commits never wait for one.
        conn.execute_batch("PRAGMA wal_autocheckpoint=0")
            .map_err(map_sql)?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let checkpointer = {
            let conn = open(path)?;
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tern-sqlite-checkpoint".into())
                .spawn(move || run_checkpointer(conn, stop))
                .map_err(unavailable)?
        };
        let readers = (0..READERS)
            .map(|_| open(path).map(Mutex::new))
            .collect::<Result<Vec<_>>>()?;
        let (tx, rx) = mpsc::channel::<WriteOp>();
        let handle = std::thread::Builder::new()
            .name("tern-sqlite-writer".into())
            .spawn(move || run_writer(conn, rx))
            .map_err(unavailable)?;
        Ok(SqliteStore {
            writer: Mutex::new(Some(tx)),
            writer_thread: Mutex::new(Some(handle)),
            checkpointer: Mutex::new(Some((stop, checkpointer))),
            readers: Arc::new(readers),
            next_reader: AtomicUsize::new(0),
            id: NEXT_STORE_ID.fetch_add(1, Ordering::Relaxed),
            path: path.to_path_buf(),
        })
    }

    /// Stops the writer after the writes already sent; later writes fail as unavailable.
    pub fn close(&self) {
        if let Ok(mut w) = self.writer.lock() {
            w.take();
        }
        if let Some(h) = self.writer_thread.lock().ok().and_then(|mut h| h.take()) {
            let _ = h.join();
        }
        if let Some((stop, h)) = self.checkpointer.lock().ok().and_then(|mut h| h.take()) {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = oneshot::channel();
        let op: WriteOp = Box::new(move |conn| {
            let result = in_savepoint(conn, f);
            Box::new(move |committed| {
                let _ = tx.send(if committed {
                    result
                } else {
                    Err(StoreError::Unavailable("commit failed".into()))
                });
            })
        });
        let sender = self
            .writer
            .lock()
            .map_err(unavailable)?
            .as_ref()
            .cloned()
            .ok_or_else(|| StoreError::Unavailable("store closed".into()))?;
        sender
            .send(op)
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("writer stopped".into()))?
    }

    /// A point lookup, run on the calling thread with that thread's own connection: an
    /// indexed read on a WAL database takes microseconds, less than handing it to another
    /// thread would. Scans and lists use [`Self::read`].
    async fn lookup<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        LOOKUP_CONNS.with(|cell| {
            let mut conns = cell.borrow_mut();
            if !conns.iter().any(|(id, _)| *id == self.id) {
                conns.push((self.id, open(&self.path)?));
            }
            let conn = conns.iter().find(|(id, _)| *id == self.id).map(|(_, c)| c);
            match conn {
                Some(c) => f(c),
                None => Err(StoreError::Unavailable("no connection".into())),
            }
        })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % READERS;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = readers[i].lock().map_err(unavailable)?;
            f(&conn)
        })
        .await
        .map_err(unavailable)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        self.close();
    }
}

fn exec_cached(conn: &Connection, sql: &str) -> Result<()> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([]))
        .map_err(map_sql)?;
    Ok(())
}

fn in_savepoint<T>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    exec_cached(conn, "SAVEPOINT op")?;
    match f(conn) {
        Ok(v) => {
            exec_cached(conn, "RELEASE op")?;
            Ok(v)
        }
        Err(e) => {
            let _ = exec_cached(conn, "ROLLBACK TO op");
            let _ = exec_cached(conn, "RELEASE op");
            Err(e)
        }
    }
}

/// A new message and its jobs.
fn write_message(c: &Connection, m: &Message, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
    insert_message_row(c, m)?;
    insert_jobs(c, jobs)
}

fn opted_out(c: &Connection, account: Sid, handset: &str) -> Result<bool> {
    c.prepare_cached("SELECT 1 FROM opt_outs WHERE account_sid = ?1 AND handset = ?2")
        .and_then(|mut s| s.exists(params![account.as_str(), handset]))
        .map_err(map_sql)
}

fn insert_jobs(conn: &Connection, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
    let mut stmt = conn
        .prepare_cached("INSERT INTO jobs (kind, subject, run_at, attempts, payload) VALUES (?1, ?2, ?3, 0, ?4)")
        .map_err(map_sql)?;
    jobs.into_iter()
        .map(|j| {
            stmt.execute(params![
                j.kind.as_str(),
                j.subject.as_str(),
                j.run_at,
                j.payload
            ])
            .map_err(map_sql)?;
            Ok(Job {
                id: conn.last_insert_rowid(),
                kind: j.kind,
                subject: j.subject,
                run_at: j.run_at,
                attempts: 0,
                payload: j.payload,
            })
        })
        .collect()
}

/// The job `id` as stored now, if it still exists.
fn job_by_id(conn: &Connection, id: i64) -> Result<Option<Job>> {
    query_opt(
        conn,
        "SELECT id, kind, subject, run_at, attempts, payload FROM jobs WHERE id = ?1",
        [id],
        job_row,
    )
}

fn delete_job(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(map_sql)?;
    Ok(())
}

fn apply_transition(conn: &Connection, t: Transition) -> Result<Vec<Job>> {
    let (carrier, carrier_id) = t.carrier.map_or((None, None), |(c, i)| (Some(c), Some(i)));
    let sent = matches!(t.to, MessageStatus::Sent | MessageStatus::Sending).then_some(t.at);
    // Compare-and-set: the update applies only while the status is the expected one.
    let changed = conn
        .prepare_cached(
            "UPDATE messages SET status = ?2, updated = ?3,
                error_code = COALESCE(?4, error_code),
                from_number = COALESCE(?5, from_number),
                carrier = COALESCE(?6, carrier),
                carrier_message_id = COALESCE(?7, carrier_message_id),
                raw_dlr_done_date = COALESCE(?8, raw_dlr_done_date),
                sent = COALESCE(sent, ?9)
             WHERE sid = ?1 AND status = ?10",
        )
        .and_then(|mut s| {
            s.execute(params![
                t.sid.as_str(),
                t.to.as_str(),
                t.at,
                t.error_code,
                t.from,
                carrier,
                carrier_id,
                t.raw_dlr_done_date,
                sent,
                t.expected.as_str()
            ])
        })
        .map_err(map_sql)?;
    if changed == 0 {
        let current: Option<String> = conn
            .prepare_cached("SELECT status FROM messages WHERE sid = ?1")
            .and_then(|mut s| s.query_row([t.sid.as_str()], |r| r.get(0)).optional())
            .map_err(map_sql)?;
        let current = current.ok_or(StoreError::NotFound)?;
        let current = MessageStatus::parse(&current).ok_or(StoreError::Corrupt(current))?;
        return Err(StoreError::StaleStatus(current));
    }
    if let Some(id) = t.done_job {
        delete_job(conn, id)?;
    }
    insert_attempts(conn, &t.attempts)?;
    insert_jobs(conn, t.jobs)
}

fn insert_attempts(conn: &Connection, attempts: &[RouteAttempt]) -> Result<()> {
    if attempts.is_empty() {
        return Ok(());
    }
    let mut s = conn
        .prepare_cached(&format!(
            "INSERT INTO route_attempts ({ATTEMPT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
        ))
        .map_err(map_sql)?;
    for a in attempts {
        s.execute(params![
            a.message_sid.as_str(),
            a.carrier,
            a.prefix,
            a.at,
            a.result.as_str(),
            a.carrier_message_id,
            a.error_code,
            a.reason
        ])
        .map_err(map_sql)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        // Writes are what a closed store cannot do; reads would still work.
        if self.writer.lock().map_err(unavailable)?.is_none() {
            return Err(StoreError::Unavailable("store closed".into()));
        }
        self.lookup(|c| c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_sql))
            .await
    }

    async fn create_account(&self, a: Account) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO accounts (sid, parent_sid, friendly_name, auth_token, status, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    a.sid.as_str(),
                    a.parent_sid.map(|s| s.to_string()),
                    a.friendly_name,
                    a.auth_token,
                    a.status.as_str(),
                    a.created,
                    a.updated
                ],
            )
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn account(&self, sid: Sid) -> Result<Option<Account>> {
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE sid = ?1"),
                [sid.as_str()],
                account_row,
            )
        })
        .await
    }

    async fn first_account(&self) -> Result<Option<Account>> {
        self.read(move |c| {
            query_opt(
                c,
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE parent_sid IS NULL ORDER BY created, sid LIMIT 1"),
                [],
                account_row,
            )
        })
        .await
    }

    async fn subaccounts(&self, parent: Sid) -> Result<Vec<Account>> {
        self.read(move |c| {
            query_all(
                c,
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE parent_sid = ?1 ORDER BY created, sid"),
                [parent.as_str()],
                account_row,
            )
        })
        .await
    }

    async fn update_account(
        &self,
        sid: Sid,
        friendly_name: Option<String>,
        status: Option<AccountStatus>,
        at: i64,
    ) -> Result<Option<Account>> {
        self.write(move |c| {
            c.execute(
                "UPDATE accounts SET friendly_name = COALESCE(?2, friendly_name),
                    status = COALESCE(?3, status), updated = ?4 WHERE sid = ?1",
                params![sid.as_str(), friendly_name, status.map(|s| s.as_str()), at],
            )
            .map_err(map_sql)?;
            query_opt(
                c,
                &format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE sid = ?1"),
                [sid.as_str()],
                account_row,
            )
        })
        .await
    }

    async fn create_key(&self, k: ApiKey) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO api_keys (sid, account_sid, friendly_name, secret_hash, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![k.sid.as_str(), k.account_sid.as_str(), k.friendly_name, k.secret_hash, k.created, k.updated],
            )
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn key(&self, sid: Sid) -> Result<Option<ApiKey>> {
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE sid = ?1"),
                [sid.as_str()],
                key_row,
            )
        })
        .await
    }

    async fn keys(&self, account: Sid) -> Result<Vec<ApiKey>> {
        self.read(move |c| {
            query_all(
                c,
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE account_sid = ?1 ORDER BY created DESC, sid"),
                [account.as_str()],
                key_row,
            )
        })
        .await
    }

    async fn update_key(&self, sid: Sid, friendly_name: String, at: i64) -> Result<Option<ApiKey>> {
        self.write(move |c| {
            c.execute(
                "UPDATE api_keys SET friendly_name = ?2, updated = ?3 WHERE sid = ?1",
                params![sid.as_str(), friendly_name, at],
            )
            .map_err(map_sql)?;
            query_opt(
                c,
                &format!("SELECT {KEY_COLS} FROM api_keys WHERE sid = ?1"),
                [sid.as_str()],
                key_row,
            )
        })
        .await
    }

    async fn delete_key(&self, sid: Sid) -> Result<bool> {
        self.write(move |c| {
            Ok(
                c.execute("DELETE FROM api_keys WHERE sid = ?1", [sid.as_str()])
                    .map_err(map_sql)?
                    > 0,
            )
        })
        .await
    }

    async fn create_number(&self, n: PhoneNumber) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO phone_numbers (sid, account_sid, phone_number, config, created, updated)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![n.sid.as_str(), n.account_sid.as_str(), n.phone_number, to_json(&n.config)?, n.created, n.updated],
            )
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn number(&self, sid: Sid) -> Result<Option<PhoneNumber>> {
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE sid = ?1"),
                [sid.as_str()],
                number_row,
            )
        })
        .await
    }

    async fn number_by_phone(&self, phone: &str) -> Result<Option<PhoneNumber>> {
        let phone = phone.to_string();
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE phone_number = ?1"),
                [phone],
                number_row,
            )
        })
        .await
    }

    async fn numbers(&self, account: Sid) -> Result<Vec<PhoneNumber>> {
        self.read(move |c| {
            query_all(
                c,
                &format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE account_sid = ?1 ORDER BY created, sid"),
                [account.as_str()],
                number_row,
            )
        })
        .await
    }

    async fn update_number(
        &self,
        sid: Sid,
        cfg: NumberConfig,
        at: i64,
    ) -> Result<Option<PhoneNumber>> {
        self.write(move |c| {
            let sql = format!("SELECT {NUMBER_COLS} FROM phone_numbers WHERE sid = ?1");
            let Some(mut n) = query_opt(c, &sql, [sid.as_str()], number_row)? else {
                return Ok(None);
            };
            n.config.merge(cfg);
            n.updated = at;
            c.execute(
                "UPDATE phone_numbers SET config = ?2, updated = ?3 WHERE sid = ?1",
                params![sid.as_str(), to_json(&n.config)?, at],
            )
            .map_err(map_sql)?;
            Ok(Some(n))
        })
        .await
    }

    async fn delete_number(&self, sid: Sid) -> Result<bool> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM service_numbers WHERE number_sid = ?1",
                [sid.as_str()],
            )
            .map_err(map_sql)?;
            Ok(
                c.execute("DELETE FROM phone_numbers WHERE sid = ?1", [sid.as_str()])
                    .map_err(map_sql)?
                    > 0,
            )
        })
        .await
    }

    async fn create_service(&self, s: MessagingService) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO messaging_services (sid, account_sid, config, created, updated) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.sid.as_str(), s.account_sid.as_str(), to_json(&s.config)?, s.created, s.updated],
            )
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn service(&self, sid: Sid) -> Result<Option<MessagingService>> {
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {SERVICE_COLS} FROM messaging_services WHERE sid = ?1"),
                [sid.as_str()],
                service_row,
            )
        })
        .await
    }

    async fn services(&self, account: Sid) -> Result<Vec<MessagingService>> {
        self.read(move |c| {
            query_all(
                c,
                &format!("SELECT {SERVICE_COLS} FROM messaging_services WHERE account_sid = ?1 ORDER BY created DESC, sid"),
                [account.as_str()],
                service_row,
            )
        })
        .await
    }

    async fn update_service(
        &self,
        sid: Sid,
        cfg: ServiceConfig,
        at: i64,
    ) -> Result<Option<MessagingService>> {
        self.write(move |c| {
            let sql = format!("SELECT {SERVICE_COLS} FROM messaging_services WHERE sid = ?1");
            let Some(mut s) = query_opt(c, &sql, [sid.as_str()], service_row)? else {
                return Ok(None);
            };
            s.config.merge(cfg);
            s.updated = at;
            c.execute(
                "UPDATE messaging_services SET config = ?2, updated = ?3 WHERE sid = ?1",
                params![sid.as_str(), to_json(&s.config)?, at],
            )
            .map_err(map_sql)?;
            Ok(Some(s))
        })
        .await
    }

    async fn delete_service(&self, sid: Sid) -> Result<bool> {
        self.write(move |c| {
            c.execute(
                "DELETE FROM service_numbers WHERE service_sid = ?1",
                [sid.as_str()],
            )
            .map_err(map_sql)?;
            c.execute(
                "DELETE FROM sticky_senders WHERE service_sid = ?1",
                [sid.as_str()],
            )
            .map_err(map_sql)?;
            Ok(c.execute(
                "DELETE FROM messaging_services WHERE sid = ?1",
                [sid.as_str()],
            )
            .map_err(map_sql)?
                > 0)
        })
        .await
    }

    async fn add_service_number(&self, service: Sid, number: Sid, at: i64) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO service_numbers (service_sid, number_sid, created) VALUES (?1, ?2, ?3)",
                params![service.as_str(), number.as_str(), at],
            )
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn remove_service_number(&self, service: Sid, number: Sid) -> Result<bool> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM service_numbers WHERE service_sid = ?1 AND number_sid = ?2",
                params![service.as_str(), number.as_str()],
            )
            .map_err(map_sql)?
                > 0)
        })
        .await
    }

    async fn service_numbers(&self, service: Sid) -> Result<Vec<(PhoneNumber, i64)>> {
        self.lookup(move |c| {
            let cols = NUMBER_COLS.split(", ").map(|col| format!("n.{col}")).collect::<Vec<_>>().join(", ");
            query_all(
                c,
                &format!(
                    "SELECT {cols}, s.created FROM service_numbers s JOIN phone_numbers n ON n.sid = s.number_sid
                     WHERE s.service_sid = ?1 ORDER BY s.created, n.sid"
                ),
                [service.as_str()],
                |r| Ok((number_row(r)?, r.get::<_, i64>(6)?)),
            )
        })
        .await
    }

    async fn number_service(&self, number: Sid) -> Result<Option<MessagingService>> {
        self.lookup(move |c| {
            let cols = SERVICE_COLS.split(", ").map(|col| format!("m.{col}")).collect::<Vec<_>>().join(", ");
            query_opt(
                c,
                &format!(
                    "SELECT {cols} FROM service_numbers s JOIN messaging_services m ON m.sid = s.service_sid
                     WHERE s.number_sid = ?1 ORDER BY s.created LIMIT 1"
                ),
                [number.as_str()],
                service_row,
            )
        })
        .await
    }

    async fn next_sender_counter(&self, service: Sid) -> Result<u64> {
        self.write(move |c| {
            let v: Option<i64> = c
                .prepare_cached("UPDATE messaging_services SET rr_counter = rr_counter + 1 WHERE sid = ?1 RETURNING rr_counter")
                .and_then(|mut s| s.query_row([service.as_str()], |r| r.get(0)).optional())
                .map_err(map_sql)?;
            v.map(|v| v.max(1) as u64 - 1).ok_or(StoreError::NotFound)
        })
        .await
    }

    async fn sticky_sender(&self, service: Sid, to: &str) -> Result<Option<String>> {
        let to = to.to_owned();
        self.lookup(move |c| {
            query_opt(
                c,
                "SELECT sender FROM sticky_senders WHERE service_sid = ?1 AND handset = ?2",
                params![service.as_str(), to],
                |r| r.get(0),
            )
        })
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
        let (to, sender, replacing) = (
            to.to_owned(),
            sender.to_owned(),
            replacing.map(str::to_owned),
        );
        self.write(move |c| {
            c.prepare_cached(STICK_SENDER)
                .and_then(|mut s| {
                    s.query_row(params![service.as_str(), to, sender, at, replacing], |r| {
                        r.get(0)
                    })
                })
                .map_err(map_sql)
        })
        .await
    }

    async fn create_smpp_credential(&self, cred: SmppCredential) -> Result<()> {
        self.write(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO smpp_credentials ({SMPP_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    cred.sid.as_str(),
                    cred.account_sid.as_str(),
                    cred.system_id,
                    cred.password_hash,
                    cred.friendly_name,
                    cred.created
                ],
            )
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn smpp_credentials(&self, account: Sid) -> Result<Vec<SmppCredential>> {
        self.read(move |c| {
            query_all(
                c,
                &format!("SELECT {SMPP_COLS} FROM smpp_credentials WHERE account_sid = ?1 ORDER BY created, sid"),
                [account.as_str()],
                smpp_row,
            )
        })
        .await
    }

    async fn smpp_credential_by_system_id(
        &self,
        system_id: &str,
    ) -> Result<Option<SmppCredential>> {
        let system_id = system_id.to_string();
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {SMPP_COLS} FROM smpp_credentials WHERE system_id = ?1"),
                [system_id],
                smpp_row,
            )
        })
        .await
    }

    async fn delete_smpp_credential(&self, account: Sid, sid: Sid) -> Result<bool> {
        self.write(move |c| {
            Ok(c.execute(
                "DELETE FROM smpp_credentials WHERE sid = ?1 AND account_sid = ?2",
                params![sid.as_str(), account.as_str()],
            )
            .map_err(map_sql)?
                > 0)
        })
        .await
    }

    async fn insert_message(&self, m: Message, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        self.write(move |c| write_message(c, &m, jobs)).await
    }

    async fn insert_outbound(&self, m: Message, jobs: Vec<NewJob>) -> Result<Option<Vec<Job>>> {
        self.write(move |c| {
            if opted_out(c, m.account_sid, &m.to)? {
                return Ok(None);
            }
            write_message(c, &m, jobs).map(Some)
        })
        .await
    }

    async fn message(&self, sid: Sid) -> Result<Option<Message>> {
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {MESSAGE_COLS} FROM messages WHERE sid = ?1"),
                [sid.as_str()],
                message_row,
            )
        })
        .await
    }

    async fn message_by_carrier_id(&self, carrier: &str, id: &str) -> Result<Option<Message>> {
        let (carrier, id) = (carrier.to_string(), id.to_string());
        self.lookup(move |c| {
            let current = query_opt(
                c,
                &format!("SELECT {MESSAGE_COLS} FROM messages WHERE carrier = ?1 AND carrier_message_id = ?2"),
                [&carrier, &id],
                message_row,
            )?;
            if current.is_some() {
                return Ok(current);
            }
            query_opt(
                c,
                &format!(
                    "SELECT {MESSAGE_COLS} FROM messages WHERE sid = (SELECT message_sid FROM route_attempts
                     WHERE carrier = ?1 AND carrier_message_id = ?2 AND result = 'accepted' LIMIT 1)"
                ),
                [&carrier, &id],
                message_row,
            )
        })
        .await
    }

    async fn messages(&self, account: Sid, q: MessageQuery) -> Result<Page<Message>> {
        self.read(move |c| list_messages(c, account, q)).await
    }

    async fn transition(&self, t: Transition) -> Result<Vec<Job>> {
        self.write(move |c| apply_transition(c, t)).await
    }

    async fn transitions(&self, ts: Vec<Transition>) -> Result<Vec<Result<Vec<Job>>>> {
        self.write(move |c| {
            Ok(ts
                .into_iter()
                .map(|t| in_savepoint(c, |c| apply_transition(c, t)))
                .collect())
        })
        .await
    }

    async fn resend_message(
        &self,
        sid: Sid,
        from: (String, String),
        to: (String, String),
        at: i64,
        attempts: Vec<RouteAttempt>,
    ) -> Result<bool> {
        self.write(move |c| {
            let changed = c
                .prepare_cached(
                    "UPDATE messages SET carrier = ?4, carrier_message_id = ?5, updated = ?6
                     WHERE sid = ?1 AND status = 'sent' AND carrier = ?2 AND carrier_message_id = ?3",
                )
                .and_then(|mut s| {
                    s.execute(params![sid.as_str(), from.0, from.1, to.0, to.1, at])
                })
                .map_err(map_sql)?;
            if changed == 0 {
                return Ok(false);
            }
            insert_attempts(c, &attempts)?;
            Ok(true)
        })
        .await
    }

    async fn add_route_attempts(&self, attempts: Vec<RouteAttempt>) -> Result<()> {
        self.write(move |c| insert_attempts(c, &attempts)).await
    }

    async fn route_attempts(&self, message: Sid) -> Result<Vec<RouteAttempt>> {
        self.lookup(move |c| {
            query_all(
                c,
                &format!(
                    "SELECT {ATTEMPT_COLS} FROM route_attempts WHERE message_sid = ?1 ORDER BY id"
                ),
                [message.as_str()],
                attempt_row,
            )
        })
        .await
    }

    async fn redact_message(&self, sid: Sid, at: i64) -> Result<Option<Message>> {
        self.write(move |c| {
            c.execute(
                "UPDATE messages SET body = '', updated = ?2 WHERE sid = ?1",
                params![sid.as_str(), at],
            )
            .map_err(map_sql)?;
            query_opt(
                c,
                &format!("SELECT {MESSAGE_COLS} FROM messages WHERE sid = ?1"),
                [sid.as_str()],
                message_row,
            )
        })
        .await
    }

    async fn delete_message(&self, sid: Sid) -> Result<bool> {
        self.write(move |c| delete_message_rows(c, sid.as_str()))
            .await
    }

    async fn delete_stale_messages(&self, updated_before: i64, limit: u32) -> Result<u64> {
        // Our own constants, not input: spelled into the statement.
        let terminal = MessageStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(|s| format!("'{}'", s.as_str()))
            .collect::<Vec<_>>()
            .join(", ");
        self.write(move |c| {
            let sids: Vec<String> = c
                .prepare_cached(&format!(
                    "SELECT sid FROM messages m
                     WHERE updated < ?1 AND status IN ({terminal})
                       AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.subject = m.sid)
                     ORDER BY updated LIMIT ?2"
                ))
                .and_then(|mut s| {
                    s.query_map(params![updated_before, i64::from(limit)], |r| r.get(0))?
                        .collect()
                })
                .map_err(map_sql)?;
            let mut deleted = 0;
            for sid in &sids {
                deleted += u64::from(delete_message_rows(c, sid)?);
            }
            Ok(deleted)
        })
        .await
    }

    async fn stale_messages(
        &self,
        statuses: &[MessageStatus],
        updated_before: i64,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let statuses: Vec<&'static str> = statuses.iter().map(|s| s.as_str()).collect();
        self.read(move |c| {
            let marks = (0..statuses.len()).map(|i| format!("?{}", i + 3)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "SELECT {MESSAGE_COLS} FROM messages WHERE updated < ?1 AND status IN ({marks}) ORDER BY updated LIMIT ?2"
            );
            let mut values: Vec<rusqlite::types::Value> = vec![updated_before.into(), i64::from(limit).into()];
            values.extend(statuses.iter().map(|s| rusqlite::types::Value::Text(s.to_string())));
            query_all(c, &sql, rusqlite::params_from_iter(values), message_row)
        })
        .await
    }

    async fn set_feedback(
        &self,
        message: Sid,
        outcome: FeedbackOutcome,
        at: i64,
    ) -> Result<Option<FeedbackSet>> {
        self.write(move |c| {
            let exists = c
                .prepare_cached("SELECT 1 FROM messages WHERE sid = ?1")
                .and_then(|mut s| s.exists([message.as_str()]))
                .map_err(map_sql)?;
            if !exists {
                return Ok(None);
            }
            let previous = query_opt(
                c,
                "SELECT outcome FROM message_feedback WHERE message_sid = ?1",
                [message.as_str()],
                |r| rows::outcome(r, 0),
            )?;
            let feedback = query_opt(
                c,
                &format!(
                    "INSERT INTO message_feedback ({FEEDBACK_COLS}) VALUES (?1, ?2, ?3, ?3)
                     ON CONFLICT (message_sid) DO UPDATE SET outcome = excluded.outcome,
                         updated = MAX(message_feedback.created, excluded.updated)
                     RETURNING {FEEDBACK_COLS}"
                ),
                params![message.as_str(), outcome.as_str(), at],
                feedback_row,
            )?
            .ok_or_else(|| StoreError::Unavailable("feedback upsert returned no row".into()))?;
            Ok(Some(FeedbackSet { feedback, previous }))
        })
        .await
    }

    async fn feedback(&self, message: Sid) -> Result<Option<Feedback>> {
        self.lookup(move |c| {
            query_opt(
                c,
                &format!("SELECT {FEEDBACK_COLS} FROM message_feedback WHERE message_sid = ?1"),
                [message.as_str()],
                feedback_row,
            )
        })
        .await
    }

    async fn set_opt_out(
        &self,
        account: Sid,
        handset: &str,
        opted_out: bool,
        at: i64,
    ) -> Result<()> {
        let handset = handset.to_string();
        self.write(move |c| {
            if opted_out {
                c.execute(
                    "INSERT OR IGNORE INTO opt_outs (account_sid, handset, created) VALUES (?1, ?2, ?3)",
                    params![account.as_str(), handset, at],
                )
            } else {
                c.execute(
                    "DELETE FROM opt_outs WHERE account_sid = ?1 AND handset = ?2",
                    params![account.as_str(), handset],
                )
            }
            .map_err(map_sql)?;
            Ok(())
        })
        .await
    }

    async fn is_opted_out(&self, account: Sid, handset: &str) -> Result<bool> {
        let handset = handset.to_string();
        self.lookup(move |c| opted_out(c, account, &handset)).await
    }

    async fn pending_jobs(&self) -> Result<Vec<Job>> {
        self.read(move |c| {
            query_all(
                c,
                "SELECT id, kind, subject, run_at, attempts, payload FROM jobs ORDER BY id",
                [],
                job_row,
            )
        })
        .await
    }

    async fn complete_jobs(&self, ids: Vec<i64>) -> Result<()> {
        self.write(move |c| ids.into_iter().try_for_each(|id| delete_job(c, id)))
            .await
    }

    async fn claim_job(
        &self,
        id: i64,
        holder: &str,
        presence_prefix: &str,
        now: i64,
    ) -> Result<bool> {
        let (holder, prefix) = (holder.to_owned(), presence_prefix.to_owned());
        self.write(move |c| {
            c.prepare_cached(
                "UPDATE jobs SET owner = ?2
                 WHERE id = ?1 AND (owner IS NULL OR owner = ?2 OR NOT EXISTS (
                     SELECT 1 FROM leases l
                     WHERE l.name = ?3 || jobs.owner AND l.expires_at > ?4))",
            )
            .and_then(|mut s| s.execute(params![id, holder, prefix, now]))
            .map(|n| n > 0)
            .map_err(map_sql)
        })
        .await
    }

    async fn retry_job(&self, id: i64, run_at: i64) -> Result<Option<Job>> {
        self.write(move |c| {
            c.prepare_cached("UPDATE jobs SET attempts = attempts + 1, run_at = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, run_at]))
                .map_err(map_sql)?;
            job_by_id(c, id)
        })
        .await
    }

    async fn defer_job(&self, id: i64, run_at: i64, payload: String) -> Result<Option<Job>> {
        self.write(move |c| {
            c.prepare_cached("UPDATE jobs SET run_at = ?2, payload = ?3 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, run_at, payload]))
                .map_err(map_sql)?;
            job_by_id(c, id)
        })
        .await
    }

    async fn insert_jobs(&self, jobs: Vec<NewJob>) -> Result<Vec<Job>> {
        self.write(move |c| insert_jobs(c, jobs)).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl_ms: u32,
        now: i64,
    ) -> Result<Option<Lease>> {
        // The single writer serialises contenders; the rule is the PostgreSQL store's.
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            query_opt(
                c,
                &format!(
                    "INSERT INTO leases ({LEASE_COLS}) VALUES (?1, ?2, ?3 + ?4, 1)
                     ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                         expires_at = excluded.expires_at,
                         epoch = leases.epoch + CASE
                             WHEN leases.holder = excluded.holder AND leases.expires_at > ?3
                             THEN 0 ELSE 1 END
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3
                     RETURNING {LEASE_COLS}"
                ),
                params![name, holder, now, i64::from(ttl_ms)],
                lease_row,
            )
        })
        .await
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<bool> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE leases SET expires_at = 0
                 WHERE name = ?1 AND holder = ?2 AND expires_at <> 0",
                params![name, holder],
            )
            .map(|n| n > 0)
            .map_err(map_sql)
        })
        .await
    }

    async fn leases(&self, prefix: &str) -> Result<Vec<Lease>> {
        let prefix = prefix.to_owned();
        self.read(move |c| {
            query_all(
                c,
                &format!(
                    "SELECT {LEASE_COLS} FROM leases
                     WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name"
                ),
                [prefix],
                lease_row,
            )
        })
        .await
    }

    async fn delete_released_leases(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_owned();
        self.write(move |c| {
            c.execute(
                "DELETE FROM leases WHERE substr(name, 1, length(?1)) = ?1 AND expires_at = 0",
                [prefix],
            )
            .map(|n| n as u64)
            .map_err(map_sql)
        })
        .await
    }
}

fn list_messages(c: &Connection, account: Sid, q: MessageQuery) -> Result<Page<Message>> {
    let mut sql = format!("SELECT {MESSAGE_COLS} FROM messages WHERE account_sid = ?1");
    let mut values: Vec<rusqlite::types::Value> = vec![account.to_string().into()];
    let mut add = |cond: &str, v: rusqlite::types::Value, sql: &mut String| {
        values.push(v);
        sql.push_str(&cond.replace('?', &format!("?{}", values.len())));
    };
    if let Some(to) = q.to {
        add(" AND to_number = ?", to.into(), &mut sql);
    }
    if let Some(from) = q.from {
        add(" AND from_number = ?", from.into(), &mut sql);
    }
    if let Some(t) = q.sent_after {
        add(" AND COALESCE(sent, created) >= ?", t.into(), &mut sql);
    }
    if let Some(t) = q.sent_before {
        add(" AND COALESCE(sent, created) <= ?", t.into(), &mut sql);
    }
    if let Some((created, sid)) = q.after {
        values.push(created.into());
        values.push(sid.to_string().into());
        let (a, b) = (values.len() - 1, values.len());
        sql.push_str(&format!(
            " AND (created < ?{a} OR (created = ?{a} AND sid < ?{b}))"
        ));
    }
    let limit = q.limit.clamp(1, 1000);
    sql.push_str(&format!(
        " ORDER BY created DESC, sid DESC LIMIT {}",
        limit + 1
    ));
    let mut items = query_all(c, &sql, rusqlite::params_from_iter(values), message_row)?;
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
