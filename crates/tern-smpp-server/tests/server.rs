#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The customer SMPP server over real TCP: a tern-smpp-tokio client binds, submits and
//! receives receipts and inbound messages, with the engine on SQLite and the in-process
//! queue behind it.

use std::sync::Arc;
use std::time::Duration;

use tern_bus::inproc::InProcessQueue;
use tern_carriers::Carrier;
use tern_carriers::sim::{SimCarrier, SimConfig, SimOutcome, SimRule};
use tern_domain::credentials::hash_password;
use tern_node::{Config, Engine, now_ms};
use tern_smpp::pdu::{Address, Bind, BindKind, SubmitSm};
use tern_smpp::text::{LongMessageMode, TextOptions, encode_submits};
use tern_smpp::{Body, DeliveryReceipt, Pdu, SessionConfig, status};
use tern_smpp_server::{ServerConfig, SmppServer};
use tern_smpp_tokio::{ConnectError, Incoming, Link, connect};
use tern_store::sqlite::SqliteStore;
use tern_store::{Account, AccountStatus, NumberConfig, PhoneNumber, SmppCredential, Store};
use tern_types::{MessageStatus, Sid, SidPrefix};
use tokio::sync::mpsc;

const NUMBER: &str = "+14155550100";

struct Fixture {
    _dir: tempfile::TempDir,
    addr: String,
    store: Arc<dyn Store>,
    engine: Arc<Engine>,
    account: Account,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("t.db")).unwrap());
    let t = now_ms();
    let account = Account {
        sid: Sid::generate(SidPrefix::Account),
        parent_sid: None,
        friendly_name: "t".into(),
        auth_token: "token".into(),
        status: AccountStatus::Active,
        created: t,
        updated: t,
    };
    store.create_account(account.clone()).await.unwrap();
    store
        .create_number(PhoneNumber {
            sid: Sid::generate(SidPrefix::PhoneNumber),
            account_sid: account.sid,
            phone_number: NUMBER.into(),
            config: NumberConfig::default(),
            created: t,
            updated: t,
        })
        .await
        .unwrap();
    store
        .create_smpp_credential(SmppCredential {
            sid: Sid::generate(SidPrefix::SmppCredential),
            account_sid: account.sid,
            system_id: "acme".into(),
            password_hash: hash_password("s3cret"),
            friendly_name: "test".into(),
            created: t,
        })
        .await
        .unwrap();
    let queue = Arc::new(InProcessQueue::new());
    tokio::spawn(queue.clone().run_timer());
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let sim_config = SimConfig {
        receipt_delay_ms: 5,
        rules: vec![SimRule {
            prefix: "+1415666".into(),
            outcome: SimOutcome::Undelivered,
            error_code: Some(30003),
        }],
    };
    let sim: Arc<dyn Carrier> = Arc::new(SimCarrier::new("sim", sim_config, tx));
    let engine = Engine::new(store.clone(), queue, vec![sim], Config::default()).unwrap();
    engine.start(rx).await.unwrap();
    let server = SmppServer::new(engine.clone(), ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(server.serve(listener));
    Fixture {
        _dir: dir,
        addr,
        store,
        engine,
        account,
    }
}

async fn bind(
    addr: &str,
    password: &str,
) -> Result<(Link, mpsc::Receiver<Incoming>), ConnectError> {
    let bind = Bind {
        system_id: "acme".into(),
        password: password.into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    let (link, incoming, system_id) =
        connect(addr, BindKind::Transceiver, bind, SessionConfig::default()).await?;
    assert_eq!(system_id, "TERN");
    Ok((link, incoming))
}

fn submit(to: &str, text: &str) -> SubmitSm {
    SubmitSm {
        source: Address::new(1, 1, NUMBER.trim_start_matches('+')),
        destination: Address::new(1, 1, to),
        registered_delivery: 1,
        short_message: text.as_bytes().to_vec(),
        ..SubmitSm::default()
    }
}

async fn submit_id(link: &Link, sm: SubmitSm) -> Result<String, u32> {
    let resp = link.request(Body::SubmitSm(sm)).await.unwrap();
    match resp.body {
        Body::SubmitSmResp(r) if resp.command_status == status::ESME_ROK => Ok(r.message_id),
        _ => Err(resp.command_status),
    }
}

/// The next deliver_sm, answered with ESME_ROK.
async fn next_deliver(link: &Link, incoming: &mut mpsc::Receiver<Incoming>) -> SubmitSm {
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), incoming.recv())
            .await
            .expect("no deliver_sm in time")
            .expect("connection closed");
        if let Incoming::Request(Pdu {
            sequence_number,
            body: Body::DeliverSm(sm),
            ..
        }) = ev
        {
            let resp = tern_smpp::pdu::MessageIdResp::default();
            link.respond(sequence_number, status::ESME_ROK, Body::DeliverSmResp(resp))
                .unwrap();
            return sm;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_gets_no_session() {
    let f = fixture().await;
    let err = bind(&f.addr, "wrong").await.unwrap_err();
    assert!(
        matches!(err, ConnectError::Rejected { status } if status == status::ESME_RINVPASWD),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_becomes_a_message_and_its_receipt_comes_back() {
    let f = fixture().await;
    let (link, mut incoming) = bind(&f.addr, "s3cret").await.unwrap();
    let id = submit_id(&link, submit("14155552671", "hello over smpp"))
        .await
        .unwrap();
    let sid = Sid::parse_as(&id, SidPrefix::Message).unwrap();
    let m = f.store.message(sid).await.unwrap().unwrap();
    assert_eq!(
        (m.to.as_str(), m.body.as_str()),
        ("+14155552671", "hello over smpp")
    );
    assert_eq!(m.account_sid, f.account.sid);

    let dlr = next_deliver(&link, &mut incoming).await;
    assert_eq!(dlr.esm_class, 0x04);
    assert_eq!(dlr.tlvs.receipted_message_id(), Some(id.as_str()));
    let text = String::from_utf8(dlr.short_message).unwrap();
    let r = DeliveryReceipt::parse(&text).unwrap();
    assert_eq!(r.id.as_deref(), Some(id.as_str()));
    assert_eq!(r.stat.unwrap().as_str(), "DELIVRD");
    let m = f.store.message(sid).await.unwrap().unwrap();
    assert_eq!(m.status, MessageStatus::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_message_reports_undeliv_with_its_code() {
    let f = fixture().await;
    let (link, mut incoming) = bind(&f.addr, "s3cret").await.unwrap();
    let id = submit_id(&link, submit("14156660000", "nope"))
        .await
        .unwrap();
    let dlr = next_deliver(&link, &mut incoming).await;
    let r = DeliveryReceipt::parse(&String::from_utf8(dlr.short_message).unwrap()).unwrap();
    assert_eq!(r.id.as_deref(), Some(id.as_str()));
    assert_eq!(r.stat.unwrap().as_str(), "UNDELIV");
    assert_eq!(r.err.as_deref(), Some("003"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_fitting_status() {
    let f = fixture().await;
    let (link, _incoming) = bind(&f.addr, "s3cret").await.unwrap();
    // A sender the account does not own.
    let mut sm = submit("14155552671", "x");
    sm.source = Address::new(1, 1, "14155559999");
    assert_eq!(submit_id(&link, sm).await, Err(status::ESME_RINVSRCADR));
    // An impossible destination.
    assert_eq!(
        submit_id(&link, submit("12", "x")).await,
        Err(status::ESME_RINVDSTADR)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concatenated_submit_is_one_message() {
    let f = fixture().await;
    let (link, mut incoming) = bind(&f.addr, "s3cret").await.unwrap();
    let body = "Grüße aus Tern! ".repeat(12); // GSM-7 (ü and ß are in it), 2 parts
    // Distinct references: the reassembler drops a completed message's parts if they come
    // again with the same reference.
    for (reference, mode) in [(7, LongMessageMode::Udh8), (8, LongMessageMode::Sar)] {
        let opts = TextOptions {
            long: mode,
            ..TextOptions::default()
        };
        let parts = encode_submits(&submit("14155552671", ""), &body, reference, &opts).unwrap();
        assert!(parts.len() > 1);
        let mut ids = Vec::new();
        for p in parts {
            ids.push(submit_id(&link, p).await.unwrap());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "every part answers with the message's SID");
        let dlr = next_deliver(&link, &mut incoming).await;
        assert_eq!(dlr.tlvs.receipted_message_id(), Some(ids[0].as_str()));
        let sid = Sid::parse_as(&ids[0], SidPrefix::Message).unwrap();
        let m = f.store.message(sid).await.unwrap().unwrap();
        assert_eq!(m.body, body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_messages_reach_a_bound_receiver_as_deliver_sm() {
    let f = fixture().await;
    let (link, mut incoming) = bind(&f.addr, "s3cret").await.unwrap();
    let body = "Ответ: да 👍 ".repeat(8); // UCS-2 with surrogate pairs, several parts
    let sms = tern_carriers::InboundSms {
        carrier: "sim".into(),
        from: "+14155552671".into(),
        to: NUMBER.into(),
        body: body.clone(),
    };
    f.engine.receive_inbound(sms).await.unwrap().unwrap();
    let mut re = tern_smpp::text::Reassembler::default();
    let now = std::time::Instant::now();
    let assembled = loop {
        let sm = next_deliver(&link, &mut incoming).await;
        assert_eq!(sm.esm_class & 0x04, 0, "not a receipt");
        let part = tern_smpp::text::read_part(&sm, &TextOptions::default()).unwrap();
        if let Some(a) = re.push(part, now) {
            break a;
        }
    };
    assert!(assembled.is_complete());
    assert_eq!(assembled.text, body);
    assert_eq!(assembled.source.addr, "14155552671");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_sm_reports_the_state_of_own_messages_only() {
    let f = fixture().await;
    let (link, mut incoming) = bind(&f.addr, "s3cret").await.unwrap();
    let id = submit_id(&link, submit("14155552671", "q")).await.unwrap();
    next_deliver(&link, &mut incoming).await;
    let q = tern_smpp::pdu::QuerySm {
        message_id: id.clone(),
        ..Default::default()
    };
    let resp = link.request(Body::QuerySm(q)).await.unwrap();
    let Body::QuerySmResp(r) = resp.body else {
        panic!("{resp:?}")
    };
    assert_eq!(r.message_state, 2, "DELIVERED");
    let q = tern_smpp::pdu::QuerySm {
        message_id: Sid::generate(SidPrefix::Message).as_str().to_owned(),
        ..Default::default()
    };
    let resp = link.request(Body::QuerySm(q)).await.unwrap();
    assert_eq!(resp.command_status, status::ESME_RQUERYFAIL);
}
