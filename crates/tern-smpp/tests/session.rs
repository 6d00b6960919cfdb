//! Session behaviour with a virtual clock: a client and a server wired back to back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use tern_smpp::pdu::{self, BindKind, Body, MessageIdResp, Pdu, SubmitSm, command_id};
use tern_smpp::session::{CloseReason, Event, Role, Session, SessionConfig, SessionError, State};
use tern_smpp::status::*;

struct Pair {
    client: Session,
    server: Session,
    now: Instant,
}

fn config() -> SessionConfig {
    SessionConfig {
        window: 3,
        response_timeout: Duration::from_secs(5),
        enquire_link_interval: Duration::from_secs(30),
        max_missed_enquire_links: 3,
        ..SessionConfig::default()
    }
}

impl Pair {
    fn new() -> Self {
        let now = Instant::now();
        Pair {
            client: Session::new(Role::Client, config(), now),
            server: Session::new(Role::Server, config(), now),
            now,
        }
    }

    /// Move bytes both ways until neither side has anything to send.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if let Some(bytes) = self.client.poll_transmit() {
                self.server.handle_input(&bytes, self.now);
                moved = true;
            }
            if let Some(bytes) = self.server.poll_transmit() {
                self.client.handle_input(&bytes, self.now);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
    }

    fn bound(kind: BindKind) -> Self {
        let mut p = Pair::new();
        p.client.bind(kind, "esme", "secret", p.now).unwrap();
        p.pump();
        match p.server.poll_event() {
            Some(Event::BindRequest { kind: k, bind, .. }) => {
                assert_eq!(k, kind);
                assert_eq!(bind.system_id, "esme");
                assert_eq!(bind.password, "secret");
                assert_eq!(bind.interface_version, 0x34);
            }
            other => panic!("expected BindRequest, got {other:?}"),
        }
        p.server.accept_bind("tern").unwrap();
        p.pump();
        match p.client.poll_event() {
            Some(Event::Bound {
                kind: k,
                system_id,
                sc_interface_version,
            }) => {
                assert_eq!(k, kind);
                assert_eq!(system_id, "tern");
                assert_eq!(sc_interface_version, Some(0x34));
            }
            other => panic!("expected Bound, got {other:?}"),
        }
        p
    }
}

fn events(s: &mut Session) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn submit_sm(to: &str) -> Pdu {
    let mut sm = SubmitSm::default();
    sm.destination.addr = to.into();
    sm.short_message = b"hello".to_vec();
    Pdu::new(0, Body::SubmitSm(sm))
}

fn decode_all(mut bytes: &[u8]) -> Vec<Pdu> {
    let mut out = Vec::new();
    while let Some((p, n)) = pdu::decode(bytes).unwrap() {
        out.push(p);
        bytes = &bytes[n..];
    }
    out
}

#[test]
fn client_binds_to_server() {
    let p = Pair::bound(BindKind::Transceiver);
    assert_eq!(p.client.state(), State::BoundTrx);
    assert_eq!(p.server.state(), State::BoundTrx);
}

#[test]
fn rejected_bind_returns_to_open_and_may_retry() {
    let mut p = Pair::new();
    p.client
        .bind(BindKind::Transmitter, "esme", "wrong", p.now)
        .unwrap();
    p.pump();
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::BindRequest { .. })
    ));
    p.server.reject_bind(ESME_RINVPASWD).unwrap();
    p.pump();
    assert_eq!(
        events(&mut p.client),
        vec![Event::BindRejected {
            status: ESME_RINVPASWD
        }]
    );
    assert_eq!(p.client.state(), State::Open);
    assert_eq!(p.server.state(), State::Open);
    p.client
        .bind(BindKind::Transmitter, "esme", "right", p.now)
        .unwrap();
    p.pump();
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::BindRequest { .. })
    ));
}

#[test]
fn submits_within_window_are_answered_in_order() {
    let mut p = Pair::bound(BindKind::Transmitter);
    let seqs: Vec<u32> = (0..3)
        .map(|i| {
            p.client
                .submit(submit_sm(&format!("+1555000{i}")), p.now)
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, vec![2, 3, 4], "bind used 1");
    p.pump();
    let requests = events(&mut p.server);
    assert_eq!(requests.len(), 3);
    for (i, e) in requests.into_iter().enumerate() {
        let Event::Request(req) = e else {
            panic!("{e:?}")
        };
        assert_eq!(req.sequence_number, seqs[i]);
        let resp = MessageIdResp {
            message_id: format!("msg{i}"),
            ..Default::default()
        };
        p.server
            .respond(req.sequence_number, ESME_ROK, Body::SubmitSmResp(resp))
            .unwrap();
    }
    p.pump();
    let responses = events(&mut p.client);
    assert_eq!(responses.len(), 3);
    for (i, e) in responses.into_iter().enumerate() {
        let Event::Response {
            request_command_id,
            pdu,
        } = e
        else {
            panic!("{e:?}")
        };
        assert_eq!(request_command_id, command_id::SUBMIT_SM);
        assert_eq!(pdu.sequence_number, seqs[i]);
        assert_eq!(
            pdu.body,
            Body::SubmitSmResp(MessageIdResp {
                message_id: format!("msg{i}"),
                ..Default::default()
            })
        );
    }
    assert_eq!(p.client.outstanding(), 0);
}

#[test]
fn full_window_refuses_submit_until_a_response_arrives() {
    let mut p = Pair::bound(BindKind::Transmitter);
    for _ in 0..3 {
        p.client.submit(submit_sm("1"), p.now).unwrap();
    }
    assert_eq!(
        p.client.submit(submit_sm("1"), p.now),
        Err(SessionError::WindowFull(3))
    );
    p.pump();
    let Some(Event::Request(req)) = p.server.poll_event() else {
        panic!()
    };
    p.server
        .reject(req.sequence_number, ESME_RTHROTTLED)
        .unwrap();
    p.pump();
    let Some(Event::Response { pdu, .. }) = p.client.poll_event() else {
        panic!()
    };
    assert_eq!(pdu.command_status, ESME_RTHROTTLED);
    assert!(p.client.submit(submit_sm("1"), p.now).is_ok());
}

#[test]
fn submit_requires_a_bind_that_allows_it() {
    let mut p = Pair::new();
    assert_eq!(
        p.client.submit(submit_sm("1"), p.now),
        Err(SessionError::NotBound(State::Open))
    );
    let mut p = Pair::bound(BindKind::Receiver);
    assert!(matches!(
        p.client.submit(submit_sm("1"), p.now),
        Err(SessionError::NotAllowed { .. })
    ));
    // The server may not submit_sm, but may deliver_sm to a receiver.
    assert!(matches!(
        p.server.submit(submit_sm("1"), p.now),
        Err(SessionError::NotAllowed { .. })
    ));
    let deliver = Pdu::new(0, Body::DeliverSm(SubmitSm::default()));
    assert!(p.server.submit(deliver, p.now).is_ok());
}

#[test]
fn response_timeout_fires_and_frees_the_slot() {
    let mut p = Pair::bound(BindKind::Transmitter);
    let seq = p.client.submit(submit_sm("1"), p.now).unwrap();
    let _ = p.client.poll_transmit(); // lost on the wire
    assert_eq!(
        p.client.poll_timeout(),
        Some(p.now + Duration::from_secs(5))
    );
    p.advance(Duration::from_secs(4));
    assert_eq!(events(&mut p.client), vec![]);
    p.advance(Duration::from_secs(1));
    assert_eq!(
        events(&mut p.client),
        vec![Event::ResponseTimeout {
            sequence_number: seq,
            command_id: command_id::SUBMIT_SM
        }]
    );
    assert_eq!(p.client.outstanding(), 0);
    // A late response is reported as unexpected, not matched.
    p.server.poll_event();
    let late = Pdu::new(seq, Body::SubmitSmResp(MessageIdResp::default()));
    p.client.handle_input(&pdu::to_bytes(&late).unwrap(), p.now);
    assert!(matches!(
        p.client.poll_event(),
        Some(Event::UnexpectedResponse(_))
    ));
}

#[test]
fn enquire_link_sent_after_idle_interval_and_answered() {
    let mut p = Pair::bound(BindKind::Transceiver);
    assert_eq!(
        p.client.poll_timeout(),
        Some(p.now + Duration::from_secs(30))
    );
    p.advance(Duration::from_secs(29));
    assert_eq!(p.client.poll_transmit(), None);
    p.advance(Duration::from_secs(1));
    let sent = p.client.poll_transmit().expect("enquire_link");
    let pdus = decode_all(&sent);
    assert!(pdus.iter().any(|x| x.body == Body::EnquireLink), "{pdus:?}");
    // Both sides were idle; the server probes as well.
    let server_sent = p.server.poll_transmit().expect("server enquire_link");
    p.server.handle_input(&sent, p.now);
    p.client.handle_input(&server_sent, p.now);
    p.pump();
    assert_eq!(events(&mut p.client), vec![]);
    assert_eq!(events(&mut p.server), vec![]);
    assert_eq!(p.client.state(), State::BoundTrx);
    // The answer counted as traffic: the next probe is a full interval away.
    assert_eq!(
        p.client.poll_timeout(),
        Some(p.now + Duration::from_secs(30))
    );
}

#[test]
fn link_dead_after_missed_keepalives() {
    let mut p = Pair::bound(BindKind::Transceiver);
    let mut probes = 0;
    for _ in 0..20 {
        let Some(t) = p.client.poll_timeout() else {
            break;
        };
        p.now = t;
        p.client.handle_timeout(p.now);
        if let Some(bytes) = p.client.poll_transmit() {
            probes += decode_all(&bytes)
                .iter()
                .filter(|x| x.body == Body::EnquireLink)
                .count();
        }
    }
    assert_eq!(probes, 3);
    assert_eq!(
        events(&mut p.client),
        vec![Event::Closed(CloseReason::LinkDead)]
    );
    assert!(p.client.is_closed());
    assert_eq!(p.client.poll_timeout(), None);
}

#[test]
fn unbind_handshake_closes_both_sides() {
    let mut p = Pair::bound(BindKind::Transceiver);
    p.client.unbind(p.now).unwrap();
    assert_eq!(p.client.state(), State::Unbinding);
    p.pump();
    assert_eq!(
        events(&mut p.server),
        vec![Event::Closed(CloseReason::PeerUnbound)]
    );
    assert_eq!(
        events(&mut p.client),
        vec![Event::Closed(CloseReason::Unbound)]
    );
    assert!(p.client.is_closed() && p.server.is_closed());
    assert_eq!(
        p.client.submit(submit_sm("1"), p.now),
        Err(SessionError::Closed)
    );
}

#[test]
fn unanswered_unbind_times_out() {
    let mut p = Pair::bound(BindKind::Transmitter);
    p.client.unbind(p.now).unwrap();
    let _ = p.client.poll_transmit();
    p.advance(Duration::from_secs(5));
    assert_eq!(
        events(&mut p.client),
        vec![Event::Closed(CloseReason::UnbindTimeout)]
    );
}

#[test]
fn wrong_state_pdu_answered_with_rinvbndsts() {
    let mut p = Pair::new();
    // submit_sm before binding.
    let mut bytes = Vec::new();
    pdu::encode(
        &Pdu::new(42, Body::SubmitSm(SubmitSm::default())),
        &mut bytes,
    )
    .unwrap();
    p.server.handle_input(&bytes, p.now);
    let reply = decode_all(&p.server.poll_transmit().unwrap());
    assert_eq!(reply.len(), 1);
    assert_eq!(reply[0].command_status, ESME_RINVBNDSTS);
    assert_eq!(reply[0].sequence_number, 42);
    assert_eq!(reply[0].command_id(), command_id::SUBMIT_SM_RESP);
    assert_eq!(events(&mut p.server), vec![]);

    // deliver_sm to a transmitter-only client.
    let mut p = Pair::bound(BindKind::Transmitter);
    let bytes = pdu::to_bytes(&Pdu::new(9, Body::DeliverSm(SubmitSm::default()))).unwrap();
    p.client.handle_input(&bytes, p.now);
    let reply = decode_all(&p.client.poll_transmit().unwrap());
    assert_eq!(
        (reply[0].command_id(), reply[0].command_status),
        (command_id::DELIVER_SM_RESP, ESME_RINVBNDSTS)
    );

    // A second bind on a bound session.
    let bytes = pdu::to_bytes(&Pdu::new(10, Body::BindTransmitter(Default::default()))).unwrap();
    p.server.handle_input(&bytes, p.now);
    let reply = decode_all(&p.server.poll_transmit().unwrap());
    assert_eq!(
        (reply[0].command_id(), reply[0].command_status),
        (command_id::BIND_TRANSMITTER_RESP, ESME_RALYBND)
    );
}

#[test]
fn unknown_command_id_gets_generic_nack_and_session_continues() {
    let mut p = Pair::bound(BindKind::Transceiver);
    let garbage = [
        0, 0, 0, 20, 0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 77, 1, 2, 3, 4,
    ];
    let mut input = garbage.to_vec();
    pdu::encode(&Pdu::new(78, Body::EnquireLink), &mut input).unwrap();
    p.server.handle_input(&input, p.now);
    let reply = decode_all(&p.server.poll_transmit().unwrap());
    assert_eq!(reply.len(), 2);
    assert_eq!(
        (
            reply[0].body.clone(),
            reply[0].command_status,
            reply[0].sequence_number
        ),
        (Body::GenericNack, ESME_RINVCMDID, 77)
    );
    assert_eq!(
        (reply[1].body.clone(), reply[1].sequence_number),
        (Body::EnquireLinkResp, 78)
    );
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::ProtocolError(_))
    ));
    assert_eq!(p.server.state(), State::BoundTrx);
}

#[test]
fn bad_length_gets_generic_nack_and_closes() {
    let mut p = Pair::bound(BindKind::Transceiver);
    p.server
        .handle_input(&[0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 5], p.now);
    let reply = decode_all(&p.server.poll_transmit().unwrap());
    assert_eq!(
        reply,
        vec![Pdu {
            command_status: ESME_RINVCMDLEN,
            sequence_number: 5,
            body: Body::GenericNack
        }]
    );
    let ev = events(&mut p.server);
    assert!(matches!(ev[0], Event::ProtocolError(_)));
    assert_eq!(ev[1], Event::Closed(CloseReason::Framing));
    // A 1 GiB length prefix is refused from four octets.
    let mut s = Session::new(Role::Server, config(), p.now);
    s.handle_input(&[0x40, 0, 0, 0], p.now);
    assert!(s.is_closed());
}

#[test]
fn invalid_field_answered_with_the_fields_status() {
    let mut p = Pair::bound(BindKind::Transmitter);
    let mut bytes = pdu::to_bytes(&Pdu::new(11, Body::SubmitSm(SubmitSm::default()))).unwrap();
    bytes.splice(16..17, b"TOOLONGSVC\0".iter().copied()); // service_type max 6 incl NUL
    let l = bytes.len() as u32;
    bytes[0..4].copy_from_slice(&l.to_be_bytes());
    p.server.handle_input(&bytes, p.now);
    let reply = decode_all(&p.server.poll_transmit().unwrap());
    assert_eq!(
        (reply[0].command_id(), reply[0].command_status),
        (command_id::SUBMIT_SM_RESP, ESME_RINVSERTYP)
    );
}

#[test]
fn input_split_byte_by_byte_is_reassembled() {
    let mut p = Pair::new();
    p.client
        .bind(BindKind::Transceiver, "esme", "pw", p.now)
        .unwrap();
    let bytes = p.client.poll_transmit().unwrap();
    for b in &bytes {
        p.server.handle_input(std::slice::from_ref(b), p.now);
    }
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::BindRequest { .. })
    ));
}

#[test]
fn sequence_numbers_wrap_to_one() {
    let mut p = Pair::bound(BindKind::Transmitter);
    p.client.set_next_sequence_number(0x7FFF_FFFF);
    assert_eq!(p.client.submit(submit_sm("1"), p.now).unwrap(), 0x7FFF_FFFF);
    assert_eq!(p.client.submit(submit_sm("1"), p.now).unwrap(), 1);
}

#[test]
fn server_closes_connection_that_never_binds() {
    let now = Instant::now();
    let mut s = Session::new(Role::Server, config(), now);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(30)));
    s.handle_timeout(now + Duration::from_secs(30));
    assert_eq!(
        s.poll_event(),
        Some(Event::Closed(CloseReason::SessionInitTimeout))
    );
}

#[test]
fn unanswered_bind_times_out_and_closes() {
    let mut p = Pair::new();
    let seq = p
        .client
        .bind(BindKind::Transmitter, "esme", "pw", p.now)
        .unwrap();
    let _ = p.client.poll_transmit();
    p.advance(Duration::from_secs(5));
    assert_eq!(
        events(&mut p.client),
        vec![
            Event::ResponseTimeout {
                sequence_number: seq,
                command_id: command_id::BIND_TRANSMITTER
            },
            Event::Closed(CloseReason::BindTimeout)
        ]
    );
}

#[test]
fn inbound_requests_beyond_the_window_are_throttled() {
    let mut cfg = config();
    cfg.inbound_window = 2;
    let now = Instant::now();
    let mut client = Session::new(Role::Client, config(), now);
    let mut server = Session::new(Role::Server, cfg, now);
    client.bind(BindKind::Transmitter, "a", "b", now).unwrap();
    server.handle_input(&client.poll_transmit().unwrap(), now);
    server.poll_event();
    server.accept_bind("s").unwrap();
    client.handle_input(&server.poll_transmit().unwrap(), now);
    let mut bytes = Vec::new();
    for seq in 10..13 {
        pdu::encode(
            &Pdu::new(seq, Body::SubmitSm(SubmitSm::default())),
            &mut bytes,
        )
        .unwrap();
    }
    server.handle_input(&bytes, now);
    let reply = decode_all(&server.poll_transmit().unwrap());
    assert_eq!(reply.len(), 1);
    assert_eq!(
        (reply[0].sequence_number, reply[0].command_status),
        (12, ESME_RTHROTTLED)
    );
    assert_eq!(events(&mut server).len(), 2);
    // Answering frees a slot; answering twice is refused.
    server
        .respond(10, ESME_ROK, Body::SubmitSmResp(MessageIdResp::default()))
        .unwrap();
    assert_eq!(
        server.respond(10, ESME_ROK, Body::SubmitSmResp(MessageIdResp::default())),
        Err(SessionError::UnknownRequest(10))
    );
    assert!(matches!(
        server.respond(11, ESME_ROK, Body::DeliverSmResp(MessageIdResp::default())),
        Err(SessionError::WrongResponse { .. })
    ));
}

#[test]
fn generic_nack_completes_the_request() {
    let mut p = Pair::bound(BindKind::Transmitter);
    let seq = p.client.submit(submit_sm("1"), p.now).unwrap();
    p.pump();
    p.server.poll_event();
    p.server
        .respond(seq, ESME_RSYSERR, Body::GenericNack)
        .unwrap();
    p.pump();
    let Some(Event::Response {
        request_command_id,
        pdu,
    }) = p.client.poll_event()
    else {
        panic!()
    };
    assert_eq!(request_command_id, command_id::SUBMIT_SM);
    assert_eq!(
        (pdu.body, pdu.command_status),
        (Body::GenericNack, ESME_RSYSERR)
    );
    assert_eq!(p.client.outstanding(), 0);
}

#[test]
fn outbind_is_reported_to_an_open_client() {
    let now = Instant::now();
    let mut c = Session::new(Role::Client, config(), now);
    let bytes = pdu::to_bytes(&Pdu::new(
        1,
        Body::Outbind(pdu::Outbind {
            system_id: "smsc".into(),
            password: "pw".into(),
        }),
    ))
    .unwrap();
    c.handle_input(&bytes, now);
    assert!(matches!(c.poll_event(), Some(Event::Outbind(o)) if o.system_id == "smsc"));
    c.bind(BindKind::Receiver, "esme", "pw", now).unwrap();
}

#[test]
fn deliver_sm_reaches_a_receiver_and_is_answered() {
    let mut p = Pair::bound(BindKind::Receiver);
    let seq = p
        .server
        .submit(
            Pdu::new(
                0,
                Body::DeliverSm(SubmitSm {
                    esm_class: 4,
                    ..SubmitSm::default()
                }),
            ),
            p.now,
        )
        .unwrap();
    p.pump();
    let Some(Event::Request(req)) = p.client.poll_event() else {
        panic!()
    };
    assert_eq!(req.sequence_number, seq);
    p.client
        .respond(seq, ESME_ROK, Body::DeliverSmResp(MessageIdResp::default()))
        .unwrap();
    p.pump();
    assert!(matches!(
        p.server.poll_event(),
        Some(Event::Response {
            request_command_id: command_id::DELIVER_SM,
            ..
        })
    ));
}

mod garbage {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Arbitrary bytes never panic a session, and whatever it sends back is valid SMPP.
        #[test]
        fn arbitrary_input_is_survived(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8), client in any::<bool>()) {
            let mut p = Pair::bound(BindKind::Transceiver);
            let s = if client { &mut p.client } else { &mut p.server };
            for c in &chunks {
                s.handle_input(c, p.now);
                while s.poll_event().is_some() {}
                if let Some(out) = s.poll_transmit() {
                    let mut bytes = out.as_slice();
                    while !bytes.is_empty() {
                        let (_, n) = pdu::decode(bytes).unwrap().unwrap();
                        bytes = &bytes[n..];
                    }
                }
            }
        }
    }
}
