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
