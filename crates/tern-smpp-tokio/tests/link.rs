//! Two real TCP connections on loopback, one per role, driven by this crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tern_smpp::pdu::{Bind, BindKind, BindResp, MessageIdResp, SubmitSm};
use tern_smpp::{Body, Pdu, Role, SessionConfig, status};
use tern_smpp_tokio::{Closed, ConnectError, Incoming, connect, spawn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An SMSC that accepts `acme`/`secret`, answers each submit_sm with `m-<n>` and tracks
/// how many requests were outstanding at once.
async fn smsc(window_peak: Arc<AtomicUsize>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let peak = window_peak.clone();
            tokio::spawn(async move {
                let (link, mut incoming) =
                    spawn(stream, Role::Server, SessionConfig::default()).unwrap();
                let mut held = Vec::new();
                let mut n = 0;
                while let Some(ev) = incoming.recv().await {
                    match ev {
                        Incoming::BindRequest { bind, .. } => {
                            if bind.password == "secret" {
                                link.accept_bind("SMSC").await.unwrap();
                            } else {
                                link.reject_bind(status::ESME_RINVPASWD).unwrap();
                            }
                        }
                        Incoming::Request(pdu) => {
                            // Answer in batches of 5 so the client's window fills up.
                            held.push(pdu.sequence_number);
                            peak.fetch_max(held.len(), Ordering::SeqCst);
                            if held.len() == 5 {
                                for seq in held.drain(..) {
                                    n += 1;
                                    let resp = MessageIdResp {
                                        message_id: format!("m-{n}"),
                                        ..Default::default()
                                    };
                                    link.respond(seq, status::ESME_ROK, Body::SubmitSmResp(resp))
                                        .unwrap();
                                }
                            }
                        }
                        Incoming::Closed(_) => break,
                        _ => {}
                    }
                }
            });
        }
    });
    addr
}

fn bind(password: &str) -> Bind {
    Bind {
        system_id: "acme".into(),
        password: password.into(),
        interface_version: 0x34,
        ..Bind::default()
    }
}

#[tokio::test]
async fn requests_queue_for_the_window_and_all_get_their_response() {
    let peak = Arc::new(AtomicUsize::new(0));
    let addr = smsc(peak.clone()).await;
    let config = SessionConfig {
        window: 5,
        ..SessionConfig::default()
    };
    let (link, mut incoming, system_id) =
        connect(&addr, BindKind::Transceiver, bind("secret"), config)
            .await
            .unwrap();
    assert_eq!(system_id, "SMSC");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let link = link.clone();
        tasks.push(tokio::spawn(async move {
            link.request(Body::SubmitSm(SubmitSm::default())).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        let pdu = t.await.unwrap().unwrap();
        assert_eq!(pdu.command_status, status::ESME_ROK);
        let Body::SubmitSmResp(r) = pdu.body else {
            panic!("not a submit_sm_resp: {pdu:?}")
        };
        ids.push(r.message_id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    assert_eq!(
        peak.load(Ordering::SeqCst),
        5,
        "the window bounds what is outstanding"
    );

    link.unbind();
    match incoming.recv().await {
        Some(Incoming::Closed(Closed::Session(reason))) => {
            assert_eq!(reason, tern_smpp::CloseReason::Unbound)
        }
        other => panic!("expected a clean unbind, got {other:?}"),
    }
    assert!(
        link.request(Body::SubmitSm(SubmitSm::default()))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused() {
    let addr = smsc(Arc::new(AtomicUsize::new(0))).await;
    let err = connect(
        &addr,
        BindKind::Transmitter,
        bind("nope"),
        SessionConfig::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, ConnectError::Rejected { status } if status == status::ESME_RINVPASWD),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_peer_that_vanishes_fails_what_is_in_flight() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        // A bare socket: answer the bind, then vanish on the first submit without unbinding.
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = stream.read(&mut buf).await.unwrap();
        let (bind, _) = tern_smpp::decode(&buf[..n]).unwrap().unwrap();
        let resp = Pdu::new(
            bind.sequence_number,
            Body::BindTransceiverResp(BindResp {
                system_id: "SMSC".into(),
                ..Default::default()
            }),
        );
        let mut out = Vec::new();
        tern_smpp::encode(&resp, &mut out).unwrap();
        stream.write_all(&out).await.unwrap();
        let _ = stream.read(&mut buf).await.unwrap();
    });
    let (link, mut incoming, _) = connect(
        &addr,
        BindKind::Transceiver,
        bind("secret"),
        SessionConfig::default(),
    )
    .await
    .unwrap();
    let err = link
        .request(Body::SubmitSm(SubmitSm::default()))
        .await
        .unwrap_err();
    assert_eq!(err, tern_smpp_tokio::LinkError::Closed);
    assert!(matches!(
        incoming.recv().await,
        Some(Incoming::Closed(Closed::PeerDisconnected))
    ));
    assert!(!link.is_open());
}
