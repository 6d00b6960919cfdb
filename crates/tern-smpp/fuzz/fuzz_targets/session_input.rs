#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_smpp::pdu::{self, BindKind, Body};
use tern_smpp::session::{Event, Role, Session, SessionConfig};
use tern_smpp::status::ESME_ROK;

// Input: byte 0 picks the role and whether binds are accepted; then records of
// [len: u8][op: u8][len bytes]. op bit 0: advance the clock by op seconds and fire timers
// before feeding the bytes.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else { return };
    let now0 = Instant::now();
    let mut now = now0;
    let config = SessionConfig {
        window: 4,
        inbound_window: 8,
        response_timeout: Duration::from_secs(5),
        enquire_link_interval: Duration::from_secs(10),
        ..SessionConfig::default()
    };
    let role = if mode & 1 == 0 { Role::Server } else { Role::Client };
    let accept = mode & 2 == 0;
    let mut s = Session::new(role, config, now);
    if role == Role::Client {
        let _ = s.bind(BindKind::Transceiver, "esme", "pw", now);
    }
    while let Some((&len, tail)) = rest.split_first() {
        let Some((&op, tail)) = tail.split_first() else { break };
        let take = (len as usize).min(tail.len());
        let (chunk, tail) = tail.split_at(take);
        rest = tail;
        if op & 1 == 1 {
            now += Duration::from_secs(u64::from(op >> 1));
            s.handle_timeout(now);
        }
        s.handle_input(chunk, now);
        while let Some(ev) = s.poll_event() {
            match ev {
                Event::BindRequest { .. } => {
                    let _ = if accept { s.accept_bind("tern") } else { s.reject_bind(0x0E) };
                }
                Event::Request(p) => {
                    if let Some(body) = Body::default_response(p.command_id()) {
                        let _ = s.respond(p.sequence_number, ESME_ROK, body);
                    }
                }
                _ => {}
            }
        }
        if op & 2 == 2 && s.state().is_bound() {
            let _ = s.submit(pdu::Pdu::new(0, Body::EnquireLink), now); // refused: session-managed
            let _ = s.submit(pdu::Pdu::new(0, Body::DataSm(Default::default())), now);
        }
        // Everything the session sends must be well-formed SMPP.
        if let Some(out) = s.poll_transmit() {
            let mut bytes = out.as_slice();
            while !bytes.is_empty() {
                let (_, n) = pdu::decode(bytes).expect("own output decodes").expect("complete PDU");
                bytes = &bytes[n..];
            }
        }
        if let Some(t) = s.poll_timeout() {
            assert!(t >= now0);
        }
    }
});
