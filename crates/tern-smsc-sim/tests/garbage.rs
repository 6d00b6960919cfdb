//! Garbage on the wire never takes the simulator down: seeded random byte streams, some
//! behind plausible SMPP headers, on many connections; a real client still binds and
//! submits afterwards.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tern_smpp::pdu::BindKind;
use tern_smpp::status::ESME_ROK;
use tern_smsc_sim::Faults;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn garbage(rng: &mut StdRng) -> Vec<u8> {
    let len = rng.random_range(0..600);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    match rng.random_range(0..4) {
        // A plausible header: a length that fits, a real or unknown command id.
        0 | 1 => {
            let ids = [
                1u32,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                9,
                0x15,
                0x21,
                0x103,
                0x8000_0004,
                0x42,
            ];
            let id = ids[rng.random_range(0..ids.len())];
            let mut pdu = Vec::new();
            let body_len = rng.random_range(0..200usize);
            pdu.extend_from_slice(&(16 + body_len as u32).to_be_bytes());
            pdu.extend_from_slice(&id.to_be_bytes());
            pdu.extend_from_slice(&0u32.to_be_bytes());
            pdu.extend_from_slice(&rng.random::<u32>().to_be_bytes());
            pdu.extend((0..body_len).map(|_| rng.random::<u8>()));
            // Sometimes a valid bind first, so the garbage reaches the bound state.
            if rng.random() {
                let bind = tern_smpp::pdu::Bind {
                    system_id: SYSTEM_ID.into(),
                    password: PASSWORD.into(),
                    ..Default::default()
                };
                if let Ok(mut b) = tern_smpp::pdu::to_bytes(&tern_smpp::Pdu::new(
                    1,
                    tern_smpp::Body::BindTransceiver(bind),
                )) {
                    b.extend(pdu);
                    pdu = b;
                }
            }
            pdu.extend(bytes);
            bytes = pdu;
        }
        // A huge or tiny command_length.
        2 => {
            bytes.splice(0..0, rng.random::<u32>().to_be_bytes());
        }
        _ => {}
    }
    bytes
}

#[tokio::test]
async fn random_bytes_never_kill_the_server() {
    let sim = start(Faults::default()).await;
    let mut rng = StdRng::seed_from_u64(0x7e4e);
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(sim.addr()).await.unwrap();
        let bytes = garbage(&mut rng);
        let _ = stream.write_all(&bytes).await;
        let _ = stream.shutdown().await;
        // Read whatever the server answers until it closes (it must, on EOF).
        let mut sink = Vec::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            stream.read_to_end(&mut sink),
        )
        .await
        .expect("the server neither answered nor closed");
    }
    let c = bind(&sim, BindKind::Transceiver).await;
    let (status, id) = submit(&c.link, submit_sm("15550001000", 0, "still alive")).await;
    assert_eq!(status, ESME_ROK);
    assert!(!id.is_empty());
    until_stats(&sim, |s| s.connections == 1).await;
}
