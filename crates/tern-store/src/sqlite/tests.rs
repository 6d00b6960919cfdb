use std::sync::Arc;

use super::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("tern.db")).unwrap());
    crate::conformance::run_all(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let a = {
        let store = SqliteStore::open(&path).unwrap();
        let a = crate::conformance::message(
            tern_types::Sid::generate(tern_types::SidPrefix::Account),
            1,
            "+14155552671",
        );
        crate::Store::insert_message(&store, a.clone(), vec![])
            .await
            .unwrap();
        a
    };
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(crate::Store::message(&store, a.sid).await.unwrap(), Some(a));
}

/// A database written by a build that knew only migration 1 is upgraded in place, and
/// its data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_1_database_gains_smpp_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let account = tern_types::Sid::generate(tern_types::SidPrefix::Account);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(super::MIGRATIONS[0]).unwrap();
        c.execute_batch("PRAGMA user_version = 1").unwrap();
        c.execute(
            "INSERT INTO accounts (sid, parent_sid, friendly_name, auth_token, status, created, updated)
             VALUES (?1, NULL, 'old', 'token', 'active', 1, 1)",
            [account.as_str()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, super::MIGRATIONS.len() as i64);
    assert_eq!(
        crate::Store::account(&store, account)
            .await
            .unwrap()
            .unwrap()
            .friendly_name,
        "old"
    );
    let cred = crate::conformance::smpp_credential(account, "upgraded", 5);
    crate::Store::create_smpp_credential(&store, cred.clone())
        .await
        .unwrap();
    assert_eq!(
        crate::Store::smpp_credential_by_system_id(&store, "upgraded")
            .await
            .unwrap(),
        Some(cred)
    );
    store.close();
    // Opening again applies nothing twice.
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        crate::Store::smpp_credentials(&again, account)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A database at version 2 (SMPP credentials) gains Message Feedback, and its messages
/// can take feedback at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_2_database_gains_message_feedback() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let m = crate::conformance::message(
        tern_types::Sid::generate(tern_types::SidPrefix::Account),
        1,
        "+14155552671",
    );
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(super::MIGRATIONS[0]).unwrap();
        c.execute_batch(super::MIGRATIONS[1]).unwrap();
        c.execute_batch("PRAGMA user_version = 2").unwrap();
        super::rows::insert_message_row(&c, &m).unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, super::MIGRATIONS.len() as i64);
    let set = crate::Store::set_feedback(&store, m.sid, crate::FeedbackOutcome::Confirmed, 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(set.previous, None);
    store.close();
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(
        crate::Store::feedback(&again, m.sid).await.unwrap(),
        Some(set.feedback)
    );
}

/// A database at version 3 gains sticky senders; a service stored before `sticky_sender`
/// existed reads as never set, which is Twilio's default: on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_database_gains_sticky_senders() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    let svc = tern_types::Sid::generate(tern_types::SidPrefix::MessagingService);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for m in &super::MIGRATIONS[..3] {
            c.execute_batch(m).unwrap();
        }
        c.execute_batch("PRAGMA user_version = 3").unwrap();
        c.execute(
            "INSERT INTO messaging_services (sid, account_sid, config, created, updated)
             VALUES (?1, 'AC00000000000000000000000000000000', '{\"friendly_name\":\"old\"}', 1, 1)",
            [svc.as_str()],
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let old = crate::Store::service(&store, svc).await.unwrap().unwrap();
    assert_eq!(old.config.sticky_sender, None);
    assert!(old.config.sticky());
    assert_eq!(
        crate::Store::stick_sender(&store, svc, "+14155552671", "+14155550100", None, 2)
            .await
            .unwrap(),
        "+14155550100"
    );
}

/// A database at version 5 (route attempts) gains leases, which can be taken at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_5_database_gains_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tern.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        for m in &super::MIGRATIONS[..5] {
            c.execute_batch(m).unwrap();
        }
        c.execute_batch("PRAGMA user_version = 5").unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let lease = crate::Store::acquire_lease(&store, "leader", "a", 1_000, 5)
        .await
        .unwrap();
    assert_eq!(lease.map(|l| l.epoch), Some(1));
    store.close();
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(crate::Store::leases(&again, "").await.unwrap().len(), 1);
}
