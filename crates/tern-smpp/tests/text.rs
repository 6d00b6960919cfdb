//! Property tests of `text`: every body survives encode → wire → decode → reassembly in any
//! arrival order with duplicates, part counts agree with `tern_sms`, and nothing received
//! makes reading or reassembly panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::{Duration, Instant};

use proptest::prelude::*;
use tern_smpp::pdu::{self, Address, Body, DataSm, Pdu, SubmitSm, Tlv, Tlvs};
use tern_smpp::text::*;
use tern_sms::{UDH16_OCTETS, gsm7};

/// Every character of the GSM 03.38 basic and extension tables, found through the decoder
/// rather than copied from `tern_sms`.
fn gsm_chars() -> Vec<char> {
    let mut out: Vec<char> = (0u8..0x80)
        .filter(|&s| s != gsm7::ESC)
        .filter_map(|s| gsm7::decode_unpacked(&[s]).chars().next())
        .collect();
    for code in 0u8..0x80 {
        let c = gsm7::decode_unpacked(&[gsm7::ESC, code]);
        if code != gsm7::ESC && c != gsm7::decode_unpacked(&[code]) {
            out.extend(c.chars());
        }
    }
    out
}

/// Mostly GSM-7, with Latin-1-only, BMP and astral characters often enough that every
/// alphabet is chosen and part boundaries land on escapes and surrogate pairs.
fn body() -> impl Strategy<Value = String> {
    let gsm = gsm_chars();
    let ext: Vec<char> = gsm
        .iter()
        .copied()
        .filter(|c| gsm7::encode_unpacked(&c.to_string()).is_some_and(|v| v.len() == 2))
        .collect();
    assert_eq!(ext.len(), 10);
    let ch = prop_oneof![
        8 => prop::sample::select(gsm),
        2 => prop::sample::select(ext),
        1 => prop::sample::select(vec!['ç', 'ÿ', '`', '\u{A0}']),
        1 => prop::sample::select(vec!['😀', '🇺', 'Ж', '€']),
        1 => any::<char>(),
    ];
    let any_body = prop::collection::vec(ch.clone(), 0..700);
    let gsm_only = prop::collection::vec(prop::sample::select(gsm_chars()), 0..700);
    let latin = prop::collection::vec(
        prop_oneof![3 => prop::sample::select(gsm_chars()), 1 => prop::sample::select(vec!['ç', 'ÿ', '`'])],
        0..700,
    );
    prop_oneof![any_body, gsm_only, latin].prop_map(|v| v.into_iter().collect())
}

fn options() -> impl Strategy<Value = TextOptions> {
    let long = prop::sample::select(vec![
        LongMessageMode::Udh8,
        LongMessageMode::Udh16,
        LongMessageMode::Sar,
        LongMessageMode::Payload,
    ]);
    (any::<bool>(), any::<bool>(), long).prop_map(|(gsm7_packed, latin1_data_coding, long)| {
        TextOptions {
            gsm7_packed,
            latin1_data_coding,
            long,
        }
    })
}

fn template() -> SubmitSm {
    SubmitSm {
        source: Address::new(1, 1, "15550001111"),
        destination: Address::new(1, 1, "15550002222"),
        registered_delivery: 1,
        ..SubmitSm::default()
    }
}

/// The submit_sm as the SMSC would deliver it: a deliver_sm, through the wire codec.
fn over_the_wire(sm: &SubmitSm) -> SubmitSm {
    let bytes = pdu::to_bytes(&Pdu::new(9, Body::DeliverSm(sm.clone()))).unwrap();
    match pdu::decode(&bytes).unwrap().unwrap().0.body {
        Body::DeliverSm(d) => d,
        other => panic!("decoded {other:?}"),
    }
}

/// Deliver `pdus` in the order `order` picks (indices may repeat: duplicates), then all of
/// them again in order, and return the message. A concatenated message must come out
/// exactly once; a single-part one comes out once per copy (the reassembler does not
/// deduplicate whole messages), and every copy must be the same.
fn deliver(pdus: &[SubmitSm], order: &[usize], opts: &TextOptions) -> Assembled {
    let mut r = Reassembler::default();
    let t = Instant::now();
    let mut out = Vec::new();
    for &i in order {
        let sm = over_the_wire(&pdus[i % pdus.len()]);
        let part = read_part(&sm, opts).unwrap();
        out.extend(r.push(part, t));
    }
    for sm in pdus {
        let part = read_part(&over_the_wire(sm), opts).unwrap();
        out.extend(r.push(part, t));
    }
    assert_eq!(r.pending_len(), 0);
    if pdus.len() > 1 {
        assert_eq!(out.len(), 1, "one message whatever the duplicates");
    }
    let first = out.first().unwrap().clone();
    assert!(out.iter().all(|a| *a == first));
    first
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// The default options: counts are exactly what the API reports as NumSegments.
    #[test]
    fn default_options_round_trip_and_count(body in body(), order in prop::collection::vec(any::<usize>(), 0..40)) {
        let opts = TextOptions::default();
        let pdus = encode_submits(&template(), &body, 0xAB, &opts).unwrap();
        prop_assert_eq!(pdus.len() as u32, tern_sms::segment_info(&body).num_segments);
        for sm in &pdus {
            prop_assert!(sm.short_message.len() <= 6 + 160);
            prop_assert_eq!(sm.registered_delivery, 1);
        }
        let got = deliver(&pdus, &order, &opts);
        prop_assert!(got.is_complete());
        prop_assert_eq!(&got.text, &body);
    }

    /// Every option combination round trips. Packed GSM-7 cannot tell a final '@' from
    /// seven padding bits (SMPP counts octets), so there '@' is replaced beforehand; the
    /// ambiguity itself is unit-tested in tern-sms.
    #[test]
    fn every_option_round_trips(body in body(), opts in options(), reference in any::<u16>(), order in prop::collection::vec(any::<usize>(), 0..40)) {
        let body = if opts.gsm7_packed { body.replace('@', "A") } else { body };
        let pdus = encode_submits(&template(), &body, reference, &opts).unwrap();
        let info = tern_sms::segment_info(&body);
        let expected_parts = match opts.long {
            LongMessageMode::Payload => 1,
            _ if opts.latin1_data_coding && !tern_sms::is_gsm7(&body) && tern_sms::latin1::encode(&body).is_some() => {
                let n = body.chars().count();
                if n <= 140 { 1 } else { n.div_ceil(if opts.long == LongMessageMode::Udh16 { 133 } else { 134 }) }
            }
            LongMessageMode::Udh16 => tern_sms::segment_info_with_udh(&body, UDH16_OCTETS).num_segments as usize,
            LongMessageMode::Udh8 | LongMessageMode::Sar => info.num_segments as usize,
        };
        prop_assert_eq!(pdus.len(), expected_parts);
        for sm in &pdus {
            // What goes over the air fits one SMS (unpacked GSM-7 is one septet an octet).
            let limit = if opts.long == LongMessageMode::Payload { 65_535 }
                else if sm.data_coding == 0 && !opts.gsm7_packed { 7 + 160 } else { 140 };
            let len = sm.short_message.len().max(sm.tlvs.message_payload().map_or(0, <[u8]>::len));
            prop_assert!(len <= limit, "{} > {}", len, limit);
        }
        let got = deliver(&pdus, &order, &opts);
        prop_assert!(got.is_complete());
        prop_assert_eq!(&got.text, &body);
    }

    /// Whatever a carrier sends, reading it never panics, and the part, if any, decodes.
    #[test]
    fn read_part_never_panics(
        esm_class in any::<u8>(),
        data_coding in any::<u8>(),
        short_message in prop::collection::vec(any::<u8>(), 0..=255),
        tlvs in prop::collection::vec((prop::sample::select(vec![0x020Cu16, 0x020E, 0x020F, 0x0424, 0x0005]), prop::collection::vec(any::<u8>(), 0..6)), 0..5),
        packed in any::<bool>(),
    ) {
        let tlvs = Tlvs(tlvs.into_iter().map(|(tag, value)| Tlv { tag, value }).collect());
        let opts = TextOptions { gsm7_packed: packed, ..TextOptions::default() };
        let sm = SubmitSm { esm_class, data_coding, short_message, tlvs: tlvs.clone(), ..SubmitSm::default() };
        if let Ok(p) = read_part(&sm, &opts) {
            let _ = p.text();
            if let Some(c) = p.concat {
                prop_assert!(c.seq() >= 1 && c.seq() <= c.total());
            }
        }
        let data = DataSm { esm_class, data_coding, tlvs, ..DataSm::default() };
        let _ = read_part(&data, &opts).map(|p| p.text());
        let _ = decode_short_message(data_coding, &sm.short_message);
    }

    /// Arbitrary parts, times and limits: bounded, and every held message comes out once
    /// everything has expired.
    #[test]
    fn reassembler_stays_bounded(
        parts in prop::collection::vec((0u16..4, 0u8..5, 0u8..6, 0u8..3, prop::collection::vec(any::<u8>(), 0..30), 0u64..20), 0..200),
        max_pending in 0usize..5,
        max_message_bytes in 0usize..100,
    ) {
        let config = ReassemblerConfig { timeout: Duration::from_secs(30), max_pending, max_message_bytes };
        let mut r = Reassembler::new(config);
        let t0 = Instant::now();
        let mut now = t0;
        for (reference, total, seq, sender, payload, step) in parts {
            now += Duration::from_secs(step);
            let part = Part {
                source: Address::new(0, 0, format!("{sender}")),
                destination: Address::new(0, 0, "1"),
                charset: if reference % 2 == 0 { Charset::Gsm7 } else { Charset::Ucs2 },
                payload,
                concat: Concat::new(reference, total, seq),
            };
            if let Some(a) = r.push(part, now) {
                prop_assert!(a.missing.windows(2).all(|w| w[0] < w[1]));
                prop_assert!(a.missing.iter().all(|&m| m >= 1 && m <= a.total));
                prop_assert!(a.missing.len() < usize::from(a.total).max(1));
            }
            prop_assert!(r.pending_len() <= max_pending.max(1));
            if let Some(d) = r.next_deadline() {
                prop_assert!(d >= t0);
            }
            for a in r.expire(now) {
                prop_assert!(!a.is_complete());
            }
        }
        let _ = r.expire(now + Duration::from_secs(31));
        prop_assert_eq!(r.pending_len(), 0);
        prop_assert_eq!(r.next_deadline(), None);
    }
}
