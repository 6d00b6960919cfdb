//! Helpers shared by the simulator's tests: a simulator on free ports and real SMPP clients
//! (tern-smpp-tokio's `connect`).

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)] // test helpers: a failure is a test failure

use std::time::Duration;

use tern_smpp::pdu::{Address, Bind, BindKind, MessageIdResp, SubmitSm};
use tern_smpp::status::ESME_ROK;
use tern_smpp::{Body, Pdu, SessionConfig};
use tern_smpp_tokio::{Closed, ConnectError, Incoming, Link, connect};
use tern_smsc_sim::{Faults, Smsc, SmscConfig, SmscHandle};
use tokio::sync::mpsc::Receiver;

pub const SYSTEM_ID: &str = "acme";
pub const PASSWORD: &str = "secret";

/// A simulator on free ports (SMPP and admin) requiring `acme`/`secret`.
pub async fn start(faults: Faults) -> SmscHandle {
    Smsc::start(SmscConfig {
        listen: "127.0.0.1:0".into(),
        admin_listen: Some("127.0.0.1:0".into()),
        system_id: SYSTEM_ID.into(),
        password: Some(PASSWORD.into()),
        faults,
        ..SmscConfig::default()
    })
    .await
    .unwrap()
}

pub struct Client {
    pub link: Link,
    pub incoming: Receiver<Incoming>,
}

pub async fn try_bind(
    sim: &SmscHandle,
    kind: BindKind,
    system_id: &str,
    password: &str,
    window: usize,
) -> Result<Client, ConnectError> {
    let bind = Bind {
        system_id: system_id.into(),
        password: password.into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    let config = SessionConfig {
        window,
        ..SessionConfig::default()
    };
    let (link, incoming, _) = connect(&sim.addr().to_string(), kind, bind, config).await?;
    Ok(Client { link, incoming })
}

pub async fn bind(sim: &SmscHandle, kind: BindKind) -> Client {
    try_bind(sim, kind, SYSTEM_ID, PASSWORD, 10).await.unwrap()
}

pub fn submit_sm(to: &str, registered_delivery: u8, text: &str) -> SubmitSm {
    SubmitSm {
        source: Address::new(5, 0, "Tern"),
        destination: Address::new(1, 1, to),
        registered_delivery,
        short_message: text.as_bytes().to_vec(),
        ..SubmitSm::default()
    }
}

/// Submits and returns (command_status, message_id).
pub async fn submit(link: &Link, sm: SubmitSm) -> (u32, String) {
    let pdu = link.request(Body::SubmitSm(sm)).await.unwrap();
    match pdu.body {
        Body::SubmitSmResp(r) => (pdu.command_status, r.message_id),
        other => panic!("expected submit_sm_resp, got {other:?}"),
    }
}

/// The next request from the SMSC (within 120 s of tokio time), not yet answered.
pub async fn next_request(client: &mut Client) -> Pdu {
    let next = tokio::time::timeout(Duration::from_secs(120), client.incoming.recv())
        .await
        .expect("no request from the SMSC in time");
    match next {
        Some(Incoming::Request(pdu)) => pdu,
        other => panic!("expected a request, got {other:?}"),
    }
}

/// The next `deliver_sm`, answered `ESME_ROK`.
pub async fn next_deliver(client: &mut Client) -> tern_smpp::pdu::DeliverSm {
    let pdu = next_request(client).await;
    client
        .link
        .respond(
            pdu.sequence_number,
            ESME_ROK,
            Body::DeliverSmResp(MessageIdResp::default()),
        )
        .unwrap();
    match pdu.body {
        Body::DeliverSm(sm) => sm,
        other => panic!("expected deliver_sm, got {other:?}"),
    }
}

/// Waits for the connection to end and returns why.
pub async fn closed(client: &mut Client) -> Closed {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), client.incoming.recv())
            .await
            .expect("the connection did not close in time");
        match next {
            Some(Incoming::Closed(c)) => return c,
            Some(Incoming::Request(pdu)) => panic!("unexpected request {pdu:?}"),
            Some(_) => {}
            None => return Closed::Abandoned,
        }
    }
}

/// Polls `cond` on the simulator's stats until it holds (for effects of background tasks
/// that send no PDU, e.g. a receipt being held).
pub async fn until_stats(sim: &SmscHandle, cond: impl Fn(&tern_smsc_sim::Stats) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if cond(&sim.stats()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stats never matched: {:?}",
            sim.stats()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
