//! Tests against a real PostgreSQL server: `TERN_TEST_POSTGRES_URL`, else
//! `postgres://postgres@127.0.0.1:5432/test`. Each test works in a schema of its own
//! (`tern_test_<random>`, set as the pool connections' `search_path`) and drops it at the
//! end. An unreachable server fails the tests: it is never a reason to skip them.

use std::future::Future;
use std::sync::Arc;

use tern_bus::JobKind;
use tern_types::{MessageStatus, Sid, SidPrefix};
use tokio_postgres::NoTls;

use super::PostgresStore;
use crate::{NewJob, NumberConfig, PhoneNumber, ServiceConfig, Store, StoreError, Transition};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn url() -> String {
    std::env::var("TERN_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// A fresh schema on the test server, and a client outside it to inspect and drop it.
struct Schema {
    name: String,
    admin: tokio_postgres::Client,
}

impl Schema {
    async fn create() -> Schema {
        let url = url();
        let mut config: tokio_postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("TERN_TEST_POSTGRES_URL {url:?} does not parse: {e}"));
        config.connect_timeout(std::time::Duration::from_secs(10));
        let (admin, conn) = config.connect(NoTls).await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is unreachable at {url}: {}. The PostgreSQL store tests need a \
                 running server (scripts/test starts one); set TERN_TEST_POSTGRES_URL to use \
                 another.",
                super::describe(&e)
            )
        });
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let sid = Sid::generate(SidPrefix::Account);
        let name = format!("tern_test_{}", &sid.as_str()[2..18]);
        admin
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating schema {name}: {}", super::describe(&e)));
        Schema { name, admin }
    }

    fn config(&self) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = url().parse().unwrap();
        config.options(format!("-c search_path={}", self.name));
        config
    }

    async fn store(&self, pool_size: usize) -> PostgresStore {
        PostgresStore::connect_with_config(self.config(), pool_size)
            .await
            .unwrap_or_else(|e| panic!("connecting the store to schema {}: {e}", self.name))
    }

    async fn count(&self, table_and_filter: &str) -> i64 {
        self.admin
            .query_one(
                &format!("SELECT COUNT(*) FROM {}.{table_and_filter}", self.name),
                &[],
            )
            .await
            .unwrap()
            .get(0)
    }

    async fn drop_schema(self) {
        let _ = self
            .admin
            .batch_execute(&format!("DROP SCHEMA {} CASCADE", self.name))
            .await;
    }
}

/// Runs `body` with a fresh schema and drops the schema afterwards, even if `body` panics.
async fn in_schema<F, Fut>(body: F)
where
    F: FnOnce(Arc<Schema>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = Arc::new(Schema::create().await);
    let outcome = tokio::spawn(body(schema.clone())).await;
    match Arc::try_unwrap(schema) {
        Ok(schema) => schema.drop_schema().await,
        Err(schema) => {
            let _ = schema
                .admin
                .batch_execute(&format!("DROP SCHEMA {} CASCADE", schema.name))
                .await;
        }
    }
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

fn new_job(subject: Sid, kind: JobKind, payload: &str) -> NewJob {
    NewJob {
        kind,
        subject,
        run_at: 0,
        payload: payload.into(),
    }
}

async fn account(s: &dyn Store) -> Sid {
    let a = crate::Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "acct".into(),
        auth_token: "token".into(),
        status: crate::AccountStatus::Active,
        created: 1,
        updated: 1,
    };
    s.create_account(a.clone()).await.unwrap();
    a.sid
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_passes_the_conformance_suite() {
    in_schema(|schema| async move {
        let store = Arc::new(schema.store(4).await);
        crate::conformance::run_all(store).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_are_recorded_once_and_concurrent_connects_agree() {
    in_schema(|schema| async move {
        let (a, b, c) = tokio::join!(schema.store(1), schema.store(1), schema.store(1));
        let newest = i64::try_from(super::MIGRATIONS.len()).unwrap();
        for s in [&a, &b, &c] {
            assert_eq!(s.schema_version().await.unwrap(), newest);
        }
        let again = schema.store(1).await;
        assert_eq!(again.schema_version().await.unwrap(), newest);
        assert_eq!(schema.count("schema_migrations").await, newest);
    })
    .await;
}

/// A schema written by a build that knew only migration 1 is upgraded in place (the same
/// advisory-locked transaction), and its data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_schema_gains_smpp_credentials() {
    in_schema(|schema| async move {
        let account = Sid::generate(SidPrefix::Account);
        schema
            .admin
            .batch_execute(&format!(
                "BEGIN;
                 SET LOCAL search_path TO {name};
                 {v1}
                 CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 0);
                 INSERT INTO accounts (sid, parent_sid, friendly_name, auth_token, status, created, updated)
                 VALUES ('{account}', NULL, 'old', 'token', 'active', 1, 1);
                 COMMIT;",
                name = schema.name,
                v1 = super::MIGRATIONS[0],
            ))
            .await
            .unwrap();
        let store = schema.store(2).await;
        let newest = i64::try_from(super::MIGRATIONS.len()).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), newest);
        assert_eq!(schema.count("schema_migrations").await, newest);
        assert_eq!(
            store.account(account).await.unwrap().unwrap().friendly_name,
            "old"
        );
        let cred = crate::conformance::smpp_credential(account, "upgraded", 5);
        store.create_smpp_credential(cred.clone()).await.unwrap();
        assert_eq!(
            store.smpp_credential_by_system_id("upgraded").await.unwrap(),
            Some(cred)
        );
        store.close();
        let again = schema.store(1).await;
        assert_eq!(again.schema_version().await.unwrap(), newest);
        assert_eq!(again.smpp_credentials(account).await.unwrap().len(), 1);
    })
    .await;
}

/// A schema at version 2 (SMPP credentials) gains Message Feedback; its messages can take
/// feedback at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_schema_gains_message_feedback() {
    in_schema(|schema| async move {
        let account = Sid::generate(SidPrefix::Account);
        let m = crate::conformance::message(account, 1, "+14155552671");
        schema
            .admin
            .batch_execute(&format!(
                "BEGIN;
                 SET LOCAL search_path TO {name};
                 {v1}
                 {v2}
                 CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 0), (2, 0);
                 COMMIT;",
                name = schema.name,
                v1 = super::MIGRATIONS[0],
                v2 = super::MIGRATIONS[1],
            ))
            .await
            .unwrap();
        let store = schema.store(2).await;
        store.insert_message(m.clone(), vec![]).await.unwrap();
        let newest = i64::try_from(super::MIGRATIONS.len()).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), newest);
        assert_eq!(schema.count("schema_migrations").await, newest);
        let set = store
            .set_feedback(m.sid, crate::FeedbackOutcome::Unconfirmed, 7)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(set.previous, None);
        store.close();
        let again = schema.store(1).await;
        assert_eq!(again.feedback(m.sid).await.unwrap(), Some(set.feedback));
        assert_eq!(schema.count("message_feedback").await, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reconnecting() {
    in_schema(|schema| async move {
        let m = {
            let store = schema.store(2).await;
            let a = account(&store).await;
            let m = crate::conformance::message(a, 1, "+14155552671");
            store.insert_message(m.clone(), vec![]).await.unwrap();
            store.close();
            m
        };
        let store = schema.store(2).await;
        assert_eq!(store.message(m.sid).await.unwrap(), Some(m));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_ids_increase_in_the_order_given_and_complete_in_one_batch() {
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let subject = Sid::generate(SidPrefix::Message);
        let kinds = [JobKind::Route, JobKind::Webhook, JobKind::Webhook];
        let jobs = store
            .insert_jobs(
                ["a", "b", "c"]
                    .iter()
                    .zip(kinds)
                    .map(|(p, k)| new_job(subject, k, p))
                    .collect(),
            )
            .await
            .unwrap();
        let more = store
            .insert_jobs(vec![new_job(subject, JobKind::Route, "d")])
            .await
            .unwrap();
        let all: Vec<_> = jobs.iter().chain(&more).collect();
        assert!(all.windows(2).all(|w| w[0].id < w[1].id), "{all:?}");
        assert_eq!(
            all.iter().map(|j| j.payload.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c", "d"]
        );
        let pending = store.pending_jobs().await.unwrap();
        assert_eq!(
            pending.iter().collect::<Vec<_>>(),
            all,
            "pending jobs come back as written, in id order"
        );
        store
            .complete_jobs(vec![jobs[0].id, jobs[2].id, 999_999])
            .await
            .unwrap();
        store.complete_jobs(vec![]).await.unwrap();
        let left: Vec<i64> = store
            .pending_jobs()
            .await
            .unwrap()
            .iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(left, vec![jobs[1].id, more[0].id]);
        assert!(store.retry_job(jobs[0].id, 5).await.unwrap().is_none());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_statement_writes_are_atomic_and_keep_the_job_order() {
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let a = account(&store).await;
        let m = crate::conformance::message(a, 10, "+14155552671");
        let jobs: Vec<NewJob> = ["r", "w1", "w2"]
            .iter()
            .zip([JobKind::Route, JobKind::Webhook, JobKind::Webhook])
            .map(|(p, k)| new_job(m.sid, k, p))
            .collect();
        let written = store.insert_message(m.clone(), jobs).await.unwrap();
        assert_eq!(
            written
                .iter()
                .map(|j| j.payload.as_str())
                .collect::<Vec<_>>(),
            ["r", "w1", "w2"]
        );
        assert!(written.windows(2).all(|w| w[0].id < w[1].id), "{written:?}");
        assert_eq!(store.pending_jobs().await.unwrap(), written);

        // The same sid again: nothing of the failed statement stays, jobs included.
        let again = store
            .insert_message(m.clone(), vec![new_job(m.sid, JobKind::Route, "dup")])
            .await;
        assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
        assert_eq!(store.pending_jobs().await.unwrap(), written);

        // A transition completing one job and creating several, in one statement.
        let mut t = Transition::new(m.sid, MessageStatus::Queued, MessageStatus::Sending, 20);
        t.done_job = Some(written[0].id);
        t.jobs = ["x", "y", "z"]
            .iter()
            .map(|p| new_job(m.sid, JobKind::Webhook, p))
            .collect();
        let created = store.transition(t.clone()).await.unwrap();
        assert_eq!(
            created
                .iter()
                .map(|j| j.payload.as_str())
                .collect::<Vec<_>>(),
            ["x", "y", "z"]
        );
        assert!(created.windows(2).all(|w| w[0].id < w[1].id), "{created:?}");
        assert!(created[0].id > written[2].id);
        let pending = store.pending_jobs().await.unwrap();
        let want: Vec<_> = written[1..].iter().chain(&created).cloned().collect();
        assert_eq!(pending, want);
        // Replayed, it is stale and writes nothing.
        assert!(matches!(
            store.transition(t).await,
            Err(StoreError::StaleStatus(MessageStatus::Sending))
        ));
        assert_eq!(store.pending_jobs().await.unwrap(), want);
        let now = store.message(m.sid).await.unwrap().unwrap();
        assert_eq!((now.status, now.updated), (MessageStatus::Sending, 20));
    })
    .await;
}

/// Lookups of single messages made at once are answered together, each with its own
/// message: by sid (found or not) and by carrier id (the current one, the one a message
/// was resent from, an unknown one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_message_reads_are_answered_together() {
    use crate::AttemptResult;
    use crate::conformance::attempt;
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let a = account(&store).await;
        let mut sids = Vec::new();
        for i in 0..40 {
            let m = crate::conformance::message(a, 10 + i, "+14155552671");
            store.insert_message(m.clone(), Vec::new()).await.unwrap();
            let mut t = Transition::new(m.sid, MessageStatus::Queued, MessageStatus::Sent, 20);
            t.carrier = Some(("sim".into(), format!("c{i}")));
            t.attempts = vec![attempt(
                m.sid,
                "sim",
                20,
                AttemptResult::Accepted,
                Some(&format!("c{i}")),
            )];
            store.transition(t).await.unwrap();
            sids.push(m.sid);
        }
        // The first message was resent: c0 now names it through its attempt only.
        let resent = store
            .resend_message(
                sids[0],
                ("sim".into(), "c0".into()),
                ("sim".into(), "r0".into()),
                21,
                vec![attempt(
                    sids[0],
                    "sim",
                    21,
                    AttemptResult::Accepted,
                    Some("r0"),
                )],
            )
            .await
            .unwrap();
        assert!(resent);
        let missing: Vec<Sid> = (0..5).map(|_| Sid::generate(SidPrefix::Message)).collect();

        let by_sid = futures_util::future::join_all(
            sids.iter().chain(&missing).map(|sid| store.message(*sid)),
        );
        let mut carrier_ids: Vec<String> = (1..40).map(|i| format!("c{i}")).collect();
        carrier_ids.extend(["c0".to_owned(), "r0".to_owned(), "nope".to_owned()]);
        let by_carrier = futures_util::future::join_all(
            carrier_ids
                .iter()
                .map(|id| store.message_by_carrier_id("sim", id)),
        );
        let (by_sid, by_carrier) = tokio::join!(by_sid, by_carrier);

        let found: Vec<Option<Sid>> = by_sid
            .into_iter()
            .map(|r| r.unwrap().map(|m| m.sid))
            .collect();
        let want: Vec<Option<Sid>> = sids
            .iter()
            .map(|s| Some(*s))
            .chain(missing.iter().map(|_| None))
            .collect();
        assert_eq!(found, want);
        let found: Vec<Option<Sid>> = by_carrier
            .into_iter()
            .map(|r| r.unwrap().map(|m| m.sid))
            .collect();
        let mut want: Vec<Option<Sid>> = sids[1..].iter().map(|s| Some(*s)).collect();
        want.extend([Some(sids[0]), Some(sids[0]), None]);
        assert_eq!(found, want);
        assert!(store.reads.largest_batch() > 1, "no read was coalesced");
    })
    .await;
}

/// PostgreSQL plans a prepared statement afresh at every execution when its generic plan
/// looks costlier than the custom ones (an `= ANY($1)` or a `generate_series` over a
/// parameter does that); on the hot path that planning is most of a simple statement's
/// cost. Every statement a message's life runs must settle on its generic plan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_statements_settle_on_generic_plans() {
    in_schema(|schema| async move {
        // One connection, so that every statement is prepared on it.
        let store = schema.store(1).await;
        let a = account(&store).await;
        let n = PhoneNumber {
            sid: Sid::generate(SidPrefix::PhoneNumber),
            account_sid: a,
            phone_number: "+14155550100".into(),
            config: NumberConfig::default(),
            created: 1,
            updated: 1,
        };
        store.create_number(n).await.unwrap();
        for i in 0..10 {
            let to = format!("+1415555{i:04}");
            store.account(a).await.unwrap();
            store.number_by_phone("+14155550100").await.unwrap();
            let mut m = crate::conformance::message(a, 10 + i, &to);
            m.status = MessageStatus::Accepted;
            let route = store
                .insert_outbound(m.clone(), vec![new_job(m.sid, JobKind::Route, "")])
                .await
                .unwrap()
                .unwrap();
            store.message(m.sid).await.unwrap();
            let mut t = Transition::new(m.sid, m.status, MessageStatus::Queued, 20);
            t.jobs = vec![new_job(m.sid, JobKind::Webhook, "{}")];
            let hooks = store.transition(t).await.unwrap();
            let t = Transition::new(m.sid, MessageStatus::Queued, MessageStatus::Sending, 21);
            store.transition(t).await.unwrap();
            let mut t = Transition::new(m.sid, MessageStatus::Sending, MessageStatus::Sent, 22);
            let carrier_id = format!("c{i}");
            t.carrier = Some(("sim".into(), carrier_id.clone()));
            t.done_job = Some(route[0].id);
            store.transition(t).await.unwrap();
            store.complete_jobs(vec![hooks[0].id]).await.unwrap();
            assert!(
                store
                    .message_by_carrier_id("sim", &carrier_id)
                    .await
                    .unwrap()
                    .is_some()
            );
            let mut t = Transition::new(m.sid, MessageStatus::Sent, MessageStatus::Delivered, 23);
            t.jobs = vec![new_job(m.sid, JobKind::Webhook, "{}")];
            let hooks = store.transition(t).await.unwrap();
            store.retry_job(hooks[0].id, 30).await.unwrap();
            store.complete_jobs(vec![hooks[0].id]).await.unwrap();
        }
        let c = store.client().await.unwrap();
        // Except the insert of new messages, which looks up each recipient's opt-out: its
        // generic plan assumes ten rows of every array, so ten lookups, and always costs
        // more than a custom plan for the rows at hand (one here). Planned each time, it
        // still gave +20 % accepted/s over a separate opt-out lookup per request.
        let replanned: Vec<(String, i64)> = c
            .query(
                "SELECT statement, custom_plans FROM pg_prepared_statements
                 WHERE custom_plans > 5 AND statement NOT LIKE '%FROM opt_outs o%'
                 ORDER BY statement",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        assert!(
            replanned.is_empty(),
            "statements planned at every execution: {replanned:#?}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transitions_from_one_status_let_exactly_one_win() {
    in_schema(|schema| async move {
        let store = Arc::new(schema.store(4).await);
        let a = account(&*store).await;
        let m = crate::conformance::message(a, 10, "+14155552671");
        let route = store
            .insert_message(m.clone(), vec![new_job(m.sid, JobKind::Route, "")])
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let mut t = Transition::new(m.sid, MessageStatus::Queued, MessageStatus::Sending, 20);
            t.done_job = Some(route[0].id);
            t.jobs
                .push(new_job(m.sid, JobKind::Webhook, &i.to_string()));
            tasks.push(tokio::spawn(async move { store.transition(t).await }));
        }
        let mut won = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(jobs) => {
                    assert_eq!(jobs.len(), 1);
                    won += 1;
                }
                Err(StoreError::StaleStatus(MessageStatus::Sending)) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
        }
        assert_eq!(won, 1);
        // The winner's job only; the route job is completed.
        let pending = store.pending_jobs().await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].kind, JobKind::Webhook);
        let now = store.message(m.sid).await.unwrap().unwrap();
        assert_eq!((now.status, now.updated), (MessageStatus::Sending, 20));
    })
    .await;
}

/// Concurrent pipeline writes are committed in groups; a write that fails (a duplicate
/// sid) fails alone, a compare-and-set that does not hold answers `StaleStatus`, and every
/// other write of the same batches lands with its jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_writes_answer_each_caller_and_one_bad_write_fails_alone() {
    in_schema(|schema| async move {
        let store = Arc::new(schema.store(4).await);
        let a = account(&*store).await;
        let first = crate::conformance::message(a, 10, "+14155550000");
        let first_jobs = store
            .insert_message(first.clone(), vec![new_job(first.sid, JobKind::Route, "")])
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..300 {
            let store = store.clone();
            let m = crate::conformance::message(a, 11 + i, &format!("+1415555{i:04}"));
            tasks.push(tokio::spawn(async move {
                let jobs = vec![
                    new_job(m.sid, JobKind::Route, &format!("r{i}")),
                    new_job(m.sid, JobKind::Webhook, &format!("w{i}")),
                ];
                let written = store.insert_message(m.clone(), jobs).await?;
                assert_eq!(written.len(), 2);
                assert_eq!(written[0].payload, format!("r{i}"));
                assert_eq!(written[1].payload, format!("w{i}"));
                assert!(written[0].id < written[1].id);
                let mut t =
                    Transition::new(m.sid, MessageStatus::Queued, MessageStatus::Sending, 20);
                t.done_job = Some(written[0].id);
                let created = store.transition(t.clone()).await?;
                assert!(created.is_empty());
                // Replayed: the compare-and-set no longer holds.
                assert!(matches!(
                    store.transition(t).await,
                    Err(StoreError::StaleStatus(MessageStatus::Sending))
                ));
                store.complete_jobs(vec![written[1].id]).await?;
                Ok::<_, StoreError>(())
            }));
        }
        // The same sid again, among them: only it fails.
        let dup = {
            let store = store.clone();
            let first = first.clone();
            tokio::spawn(async move {
                store
                    .insert_message(
                        first.clone(),
                        vec![new_job(first.sid, JobKind::Route, "dup")],
                    )
                    .await
            })
        };
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        assert!(matches!(dup.await.unwrap(), Err(StoreError::Conflict(_))));
        assert!(store.group.largest_batch() > 1, "no write was grouped");
        assert_eq!(schema.count("messages").await, 301);
        assert_eq!(schema.count("messages WHERE status = 'sending'").await, 300);
        assert_eq!(store.pending_jobs().await.unwrap(), first_jobs);
    })
    .await;
}

/// Many transitions in one statement: each its own compare-and-set; two of one message
/// apply in order (in successive rounds); the jobs of applied ones get increasing ids in
/// the order given; stale and missing ones write nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_in_one_statement_answer_each_in_order() {
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let a = account(&store).await;
        let mut ms = Vec::new();
        for i in 0..3 {
            let m = crate::conformance::message(a, 10 + i, &format!("+1415555000{i}"));
            let route = store
                .insert_message(m.clone(), vec![new_job(m.sid, JobKind::Route, "")])
                .await
                .unwrap();
            ms.push((m, route[0].id));
        }
        let (m0, m1, m2) = (&ms[0].0, &ms[1].0, &ms[2].0);
        let hook = |m: &crate::Message, p: &str| new_job(m.sid, JobKind::Webhook, p);
        let mut t0 = Transition::new(m0.sid, MessageStatus::Queued, MessageStatus::Sending, 20);
        t0.jobs = vec![hook(m0, "a"), hook(m0, "b")];
        let mut t0b = Transition::new(m0.sid, MessageStatus::Sending, MessageStatus::Sent, 21);
        t0b.carrier = Some(("sim".into(), "c0".into()));
        t0b.done_job = Some(ms[0].1);
        t0b.jobs = vec![hook(m0, "c")];
        t0b.attempts = vec![crate::conformance::attempt(
            m0.sid,
            "sim",
            21,
            crate::AttemptResult::Accepted,
            Some("c0"),
        )];
        // Expects a status m1 is not in.
        let mut stale = Transition::new(m1.sid, MessageStatus::Sent, MessageStatus::Delivered, 22);
        stale.jobs = vec![hook(m1, "never")];
        stale.done_job = Some(ms[1].1);
        let missing = Transition::new(
            Sid::generate(SidPrefix::Message),
            MessageStatus::Queued,
            MessageStatus::Sending,
            23,
        );
        let mut t2 = Transition::new(m2.sid, MessageStatus::Queued, MessageStatus::Failed, 24);
        t2.error_code = Some(30_001);
        t2.jobs = vec![hook(m2, "d")];
        let all = [&t0, &t0b, &stale, &missing, &t2];
        let c = store.client().await.unwrap();
        let out = super::transition::apply_transitions(&c, &all)
            .await
            .unwrap();
        let payloads = |r: &crate::Result<Vec<tern_bus::Job>>| -> Vec<String> {
            r.as_ref()
                .unwrap()
                .iter()
                .map(|j| j.payload.clone())
                .collect()
        };
        assert_eq!(payloads(&out[0]), ["a", "b"]);
        assert_eq!(payloads(&out[1]), ["c"]);
        assert!(
            matches!(out[2], Err(StoreError::StaleStatus(MessageStatus::Queued))),
            "{:?}",
            out[2]
        );
        assert!(matches!(out[3], Err(StoreError::NotFound)), "{:?}", out[3]);
        assert_eq!(payloads(&out[4]), ["d"]);
        // The first round (a, b, d) drew its ids before the second (c).
        let id = |r: usize, j: usize| out[r].as_ref().unwrap()[j].id;
        assert!(id(0, 0) < id(0, 1) && id(0, 1) < id(4, 0) && id(4, 0) < id(1, 0));

        let m0_now = store.message(m0.sid).await.unwrap().unwrap();
        assert_eq!(m0_now.status, MessageStatus::Sent);
        assert_eq!(m0_now.carrier_message_id.as_deref(), Some("c0"));
        assert_eq!(m0_now.sent, Some(20));
        assert_eq!(
            store.message(m1.sid).await.unwrap().unwrap().status,
            MessageStatus::Queued
        );
        let m2_now = store.message(m2.sid).await.unwrap().unwrap();
        assert_eq!(
            (m2_now.status, m2_now.error_code),
            (MessageStatus::Failed, Some(30_001))
        );
        assert_eq!(store.route_attempts(m0.sid).await.unwrap().len(), 1);
        assert!(store.route_attempts(m1.sid).await.unwrap().is_empty());
        // m0's route job is done; m1's stays (its transition did not apply).
        let pending: Vec<String> = store
            .pending_jobs()
            .await
            .unwrap()
            .into_iter()
            .map(|j| format!("{}:{}", j.subject, j.payload))
            .collect();
        assert_eq!(
            pending,
            [
                format!("{}:", m1.sid),
                format!("{}:", m2.sid),
                format!("{}:a", m0.sid),
                format!("{}:b", m0.sid),
                format!("{}:d", m2.sid),
                format!("{}:c", m0.sid),
            ]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transition_writes_nothing() {
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let a = account(&store).await;
        let m = crate::conformance::message(a, 10, "+14155552671");
        let route = store
            .insert_message(m.clone(), vec![new_job(m.sid, JobKind::Route, "")])
            .await
            .unwrap();
        // Expecting the wrong status: no job deleted, none created, no change.
        let mut t = Transition::new(m.sid, MessageStatus::Sending, MessageStatus::Sent, 20);
        t.done_job = Some(route[0].id);
        t.jobs.push(new_job(m.sid, JobKind::Webhook, "{}"));
        t.carrier = Some(("sim".into(), "x".into()));
        assert!(matches!(
            store.transition(t.clone()).await,
            Err(StoreError::StaleStatus(MessageStatus::Queued))
        ));
        assert_eq!(store.pending_jobs().await.unwrap(), route);
        assert_eq!(store.message(m.sid).await.unwrap(), Some(m.clone()));
        // A message that does not exist.
        let mut missing = t.clone();
        missing.sid = Sid::generate(SidPrefix::Message);
        assert!(matches!(
            store.transition(missing.clone()).await,
            Err(StoreError::NotFound)
        ));
        // In a batch each transition stands alone: the good one commits.
        let mut good = Transition::new(m.sid, MessageStatus::Queued, MessageStatus::Failed, 30);
        good.error_code = Some(30_008);
        good.jobs = vec![
            new_job(m.sid, JobKind::Webhook, "1"),
            new_job(m.sid, JobKind::Webhook, "2"),
        ];
        let results = store.transitions(vec![missing, good, t]).await.unwrap();
        assert!(matches!(results[0], Err(StoreError::NotFound)));
        let created = results[1].as_ref().unwrap();
        assert_eq!(created.len(), 2);
        assert!(created[0].id < created[1].id);
        assert!(matches!(
            results[2],
            Err(StoreError::StaleStatus(MessageStatus::Failed))
        ));
        let got = store.message(m.sid).await.unwrap().unwrap();
        assert_eq!(
            (got.status, got.error_code, got.updated),
            (MessageStatus::Failed, Some(30_008), 30)
        );
        assert_eq!(got.sent, None, "a failed message was never sent");
        assert_eq!(store.pending_jobs().await.unwrap().len(), 3);
        assert_eq!(store.transitions(vec![]).await.unwrap().len(), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sender_counter_hands_out_each_value_once_under_concurrency() {
    in_schema(|schema| async move {
        let store = Arc::new(schema.store(4).await);
        let a = account(&*store).await;
        let svc = crate::MessagingService {
            sid: Sid::generate(SidPrefix::MessagingService),
            account_sid: a,
            config: ServiceConfig::default(),
            created: 1,
            updated: 1,
        };
        store.create_service(svc.clone()).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.next_sender_counter(svc.sid).await.unwrap() })
            })
            .collect();
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got.sort_unstable();
        assert_eq!(got, (0..20).collect::<Vec<u64>>());
        assert!(matches!(
            store
                .next_sender_counter(Sid::generate(SidPrefix::MessagingService))
                .await,
            Err(StoreError::NotFound)
        ));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configs_and_keys_round_trip() {
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let a = account(&store).await;
        let n = PhoneNumber {
            sid: Sid::generate(SidPrefix::PhoneNumber),
            account_sid: a,
            phone_number: "+14155550123".into(),
            config: NumberConfig {
                friendly_name: Some("front desk".into()),
                sms_url: Some("http://x/sms".into()),
                ..Default::default()
            },
            created: 1,
            updated: 1,
        };
        store.create_number(n.clone()).await.unwrap();
        let upd = store
            .update_number(
                n.sid,
                NumberConfig {
                    sms_method: Some("GET".into()),
                    ..Default::default()
                },
                7,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(upd.config.sms_url.as_deref(), Some("http://x/sms"));
        assert_eq!(upd.config.sms_method.as_deref(), Some("GET"));
        assert_eq!(store.number(n.sid).await.unwrap(), Some(upd.clone()));
        assert_eq!(store.numbers(a).await.unwrap(), vec![upd]);
        assert!(
            store
                .update_number(
                    Sid::generate(SidPrefix::PhoneNumber),
                    NumberConfig::default(),
                    1
                )
                .await
                .unwrap()
                .is_none()
        );

        let svc = crate::MessagingService {
            sid: Sid::generate(SidPrefix::MessagingService),
            account_sid: a,
            config: ServiceConfig {
                validity_period: Some(600),
                ..Default::default()
            },
            created: 1,
            updated: 1,
        };
        store.create_service(svc.clone()).await.unwrap();
        let upd = store
            .update_service(
                svc.sid,
                ServiceConfig {
                    inbound_request_url: Some("http://x/in".into()),
                    ..Default::default()
                },
                9,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(upd.config.validity_period, Some(600));
        assert_eq!(store.services(a).await.unwrap(), vec![upd]);

        let key = crate::ApiKey {
            sid: Sid::generate(SidPrefix::ApiKey),
            account_sid: a,
            friendly_name: "ci".into(),
            secret_hash: vec![0, 1, 2, 255],
            created: 3,
            updated: 3,
        };
        store.create_key(key.clone()).await.unwrap();
        assert!(matches!(
            store.create_key(key.clone()).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.key(key.sid).await.unwrap(), Some(key.clone()));
        let renamed = store
            .update_key(key.sid, "cd".into(), 4)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((renamed.friendly_name.as_str(), renamed.updated), ("cd", 4));
        assert_eq!(store.keys(a).await.unwrap(), vec![renamed]);
        assert!(store.delete_key(key.sid).await.unwrap());
        assert!(!store.delete_key(key.sid).await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1 on the loopback: nothing listens there, the connection is refused at once.
    let err = PostgresStore::connect_with("postgres://postgres@127.0.0.1:1/test", 1)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let err = PostgresStore::connect("not a url=").await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
}

/// A schema at version 5 (route attempts) gains leases, which can be taken at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_5_schema_gains_leases() {
    in_schema(|schema| async move {
        schema
            .admin
            .batch_execute(&format!(
                "BEGIN;
                 SET LOCAL search_path TO {name};
                 {applied}
                 CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL);
                 INSERT INTO schema_migrations VALUES (1, 0), (2, 0), (3, 0), (4, 0), (5, 0);
                 COMMIT;",
                name = schema.name,
                applied = super::MIGRATIONS[..5].join("\n"),
            ))
            .await
            .unwrap();
        let store = schema.store(2).await;
        let newest = i64::try_from(super::MIGRATIONS.len()).unwrap();
        assert_eq!(store.schema_version().await.unwrap(), newest);
        let lease = store.acquire_lease("leader", "a", 1_000, 5).await.unwrap();
        assert_eq!(lease.map(|l| l.epoch), Some(1));
        assert_eq!(schema.count("leases").await, 1);
    })
    .await;
}

/// A call that cannot get a connection fails as unavailable after the acquire timeout
/// instead of waiting for one indefinitely (the API answers 503 rather than hang).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_cannot_get_a_connection_fails_instead_of_waiting() {
    in_schema(|schema| async move {
        let store = schema.store(1).await;
        store.ping().await.unwrap();
        let held = store.client().await.unwrap();
        let waited = tokio::time::timeout(super::PostgresStore::ACQUIRE_TIMEOUT * 6, store.ping())
            .await
            .expect("the call waited on past the acquire timeout");
        assert!(
            matches!(waited, Err(StoreError::Unavailable(_))),
            "{waited:?}"
        );
        drop(held);
        store.ping().await.unwrap();
    })
    .await;
}

/// A statement that gets no answer (here: stuck behind another session's lock, as on a
/// frozen server) fails as unavailable after the statement timeout instead of hanging,
/// reads and grouped writes alike; once the server answers, the store works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_without_an_answer_fails_instead_of_hanging() {
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let a = account(&store).await;
        let m = crate::conformance::message(a, 10, "+14155552671");
        schema
            .admin
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {0}.opt_outs, {0}.messages IN ACCESS EXCLUSIVE MODE",
                schema.name
            ))
            .await
            .unwrap();
        let limit = super::rows::STATEMENT_TIMEOUT * 3;
        let (read, write) = tokio::time::timeout(
            limit,
            futures_util::future::join(
                store.is_opted_out(a, "+14155552671"),
                store.insert_message(m.clone(), Vec::new()),
            ),
        )
        .await
        .expect("the calls waited on past the statement timeout");
        assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
        assert!(
            matches!(write, Err(StoreError::Unavailable(_))),
            "{write:?}"
        );
        schema.admin.batch_execute("ROLLBACK").await.unwrap();
        assert!(!store.is_opted_out(a, "+14155552671").await.unwrap());
        // The insert that timed out ran once the lock was gone: its outcome was unknown.
        let again = store.insert_message(m.clone(), Vec::new()).await;
        assert!(
            matches!(again, Ok(_) | Err(StoreError::Conflict(_))),
            "{again:?}"
        );
        assert_eq!(
            store.message(m.sid).await.unwrap().map(|x| x.sid),
            Some(m.sid)
        );
    })
    .await;
}

/// Accounts and numbers are cached for a second: a node sees its own writes at once and
/// another node's within the cache's life; a row just created is never hidden by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_rows_follow_this_nodes_writes_at_once_and_others_within_a_second() {
    in_schema(|schema| async move {
        let (here, there) = (schema.store(2).await, schema.store(2).await);
        let a = account(&here).await;
        assert!(here.account(a).await.unwrap().is_some());
        assert!(there.account(a).await.unwrap().is_some());
        let suspended = Some(crate::AccountStatus::Suspended);
        here.update_account(a, None, suspended, 2).await.unwrap();
        assert_eq!(
            here.account(a).await.unwrap().unwrap().status,
            crate::AccountStatus::Suspended
        );
        // The other node: at most a second late.
        let deadline = std::time::Instant::now() + super::cache::TTL * 3;
        while there.account(a).await.unwrap().unwrap().status != crate::AccountStatus::Suspended {
            assert!(
                std::time::Instant::now() < deadline,
                "another node's write never seen"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }

        let phone = "+14155550199";
        assert!(here.number_by_phone(phone).await.unwrap().is_none());
        let n = crate::PhoneNumber {
            sid: Sid::generate(SidPrefix::PhoneNumber),
            account_sid: a,
            phone_number: phone.into(),
            config: crate::NumberConfig::default(),
            created: 3,
            updated: 3,
        };
        here.create_number(n.clone()).await.unwrap();
        // Absent rows are not cached: the new number is found at once, on both nodes.
        assert_eq!(here.number_by_phone(phone).await.unwrap(), Some(n.clone()));
        assert_eq!(there.number_by_phone(phone).await.unwrap(), Some(n.clone()));
        let cfg = crate::NumberConfig {
            sms_url: Some("https://example.com/sms".into()),
            ..Default::default()
        };
        here.update_number(n.sid, cfg, 4).await.unwrap();
        assert_eq!(
            here.number_by_phone(phone)
                .await
                .unwrap()
                .unwrap()
                .config
                .sms_url
                .as_deref(),
            Some("https://example.com/sms")
        );
        assert!(here.delete_number(n.sid).await.unwrap());
        assert!(here.number_by_phone(phone).await.unwrap().is_none());
    })
    .await;
}

/// A batch of transitions finds its messages by primary key however much the table has
/// grown since the connection first ran the statement. Prepared, PostgreSQL settles after
/// five runs on a generic plan made for the table as it was then: on a nearly empty table
/// a sequential scan, which the connection then keeps for every batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transitions_read_by_key_after_the_table_grows() {
    in_schema(|schema| async move {
        let store = schema.store(2).await;
        let a = account(&store).await;
        let mut client = store.client().await.unwrap();
        let mut last = None;
        for i in 0..10 {
            let m = crate::conformance::message(a, i, "+14155550199");
            store.insert_message(m.clone(), vec![]).await.unwrap();
            let t = Transition::new(m.sid, m.status, MessageStatus::Sending, 20);
            let tx = client.transaction().await.unwrap();
            let applied = super::transition::apply_transitions(&tx, &[&t])
                .await
                .unwrap();
            assert!(matches!(applied.as_slice(), [Ok(_)]), "{applied:?}");
            tx.commit().await.unwrap();
            last = Some(m);
        }
        let m = last.unwrap();
        let copies = super::rows::qualified(super::rows::MESSAGE_COLS, "m").replacen(
            "m.sid",
            "'SM' || md5(g::text)",
            1,
        );
        client
            .execute(
                &format!(
                    "INSERT INTO messages ({}) SELECT {copies}
                     FROM messages m, generate_series(1, 5000) g WHERE m.sid = $1",
                    super::rows::MESSAGE_COLS
                ),
                &[&m.sid.as_str()],
            )
            .await
            .unwrap();
        let mut t = Transition::new(m.sid, MessageStatus::Sending, MessageStatus::Sent, 30);
        t.carrier = Some(("sim".into(), "c1".into()));
        let tx = client.transaction().await.unwrap();
        // The backend's counts not yet reported, which include earlier transactions': only
        // the difference across the batch is its own.
        let seq_scans = async || -> i64 {
            tx.query_one(
                "SELECT seq_scan FROM pg_stat_xact_user_tables WHERE relid = 'messages'::regclass",
                &[],
            )
            .await
            .unwrap()
            .get(0)
        };
        let before = seq_scans().await;
        let applied = super::transition::apply_transitions(&tx, &[&t])
            .await
            .unwrap();
        assert!(matches!(applied.as_slice(), [Ok(_)]), "{applied:?}");
        assert_eq!(
            seq_scans().await - before,
            0,
            "the transition read all 5,011 messages"
        );
        tx.commit().await.unwrap();
    })
    .await;
}
