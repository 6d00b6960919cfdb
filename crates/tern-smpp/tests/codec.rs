//! Property tests of the PDU codec: round trips for every PDU kind, framing at arbitrary
//! split points, and no panics on arbitrary or mutated input.

#![allow(clippy::unwrap_used, clippy::expect_used)]
use proptest::collection::vec;
use proptest::prelude::*;
use tern_smpp::pdu::*;

/// Printable ASCII without NUL, at most `max - 1` octets (room for the NUL).
fn cstr(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[ -~]{{0,{}}}", max - 1)).expect("regex")
}

fn address(max: usize) -> impl Strategy<Value = Address> {
    (any::<u8>(), any::<u8>(), cstr(max)).prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
}

fn tlvs() -> impl Strategy<Value = Tlvs> {
    vec(
        (any::<u16>(), vec(any::<u8>(), 0..40)).prop_map(|(tag, value)| Tlv { tag, value }),
        0..5,
    )
    .prop_map(Tlvs)
}

fn short_message() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=255)
}

fn bind() -> impl Strategy<Value = Bind> {
    (
        cstr(max_len::SYSTEM_ID),
        cstr(max_len::PASSWORD),
        cstr(max_len::SYSTEM_TYPE),
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        cstr(max_len::ADDRESS_RANGE),
    )
        .prop_map(
            |(
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            )| Bind {
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            },
        )
}

fn bind_resp() -> impl Strategy<Value = BindResp> {
    (cstr(max_len::SYSTEM_ID), tlvs()).prop_map(|(system_id, tlvs)| BindResp { system_id, tlvs })
}

fn message_id_resp() -> impl Strategy<Value = MessageIdResp> {
    (cstr(max_len::MESSAGE_ID), tlvs())
        .prop_map(|(message_id, tlvs)| MessageIdResp { message_id, tlvs })
}

fn submit_sm() -> impl Strategy<Value = SubmitSm> {
    (
        (
            cstr(max_len::SERVICE_TYPE),
            address(max_len::ADDR),
            address(max_len::ADDR),
        ),
        any::<[u8; 3]>(),
        (cstr(max_len::TIME), cstr(max_len::TIME)),
        any::<[u8; 4]>(),
        short_message(),
        tlvs(),
    )
        .prop_map(
            |((service_type, source, destination), a, (sched, valid), b, short_message, tlvs)| {
                SubmitSm {
                    service_type,
                    source,
                    destination,
                    esm_class: a[0],
                    protocol_id: a[1],
                    priority_flag: a[2],
                    schedule_delivery_time: sched,
                    validity_period: valid,
                    registered_delivery: b[0],
                    replace_if_present_flag: b[1],
                    data_coding: b[2],
                    sm_default_msg_id: b[3],
                    short_message,
                    tlvs,
                }
            },
        )
}

fn dest_address() -> impl Strategy<Value = DestAddress> {
    prop_oneof![
        address(max_len::ADDR).prop_map(DestAddress::Sme),
        cstr(max_len::DL_NAME).prop_map(DestAddress::DistributionList),
    ]
}

fn submit_multi() -> impl Strategy<Value = SubmitMulti> {
    (submit_sm(), vec(dest_address(), 0..6)).prop_map(|(s, destinations)| SubmitMulti {
        service_type: s.service_type,
        source: s.source,
        destinations,
        esm_class: s.esm_class,
        protocol_id: s.protocol_id,
        priority_flag: s.priority_flag,
        schedule_delivery_time: s.schedule_delivery_time,
        validity_period: s.validity_period,
        registered_delivery: s.registered_delivery,
        replace_if_present_flag: s.replace_if_present_flag,
        data_coding: s.data_coding,
        sm_default_msg_id: s.sm_default_msg_id,
        short_message: s.short_message,
        tlvs: s.tlvs,
    })
}

fn submit_multi_resp() -> impl Strategy<Value = SubmitMultiResp> {
    (
        cstr(max_len::MESSAGE_ID),
        vec(
            (address(max_len::ADDR), any::<u32>()).prop_map(|(address, error_status_code)| {
                UnsuccessSme {
                    address,
                    error_status_code,
                }
            }),
            0..6,
        ),
    )
        .prop_map(|(message_id, unsuccess)| SubmitMultiResp {
            message_id,
            unsuccess,
        })
}

fn data_sm() -> impl Strategy<Value = DataSm> {
    (
        cstr(max_len::SERVICE_TYPE),
        address(max_len::ADDR_65),
        address(max_len::ADDR_65),
        any::<[u8; 3]>(),
        tlvs(),
    )
        .prop_map(|(service_type, source, destination, a, tlvs)| DataSm {
            service_type,
            source,
            destination,
            esm_class: a[0],
            registered_delivery: a[1],
            data_coding: a[2],
            tlvs,
        })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        Just(Body::GenericNack),
        bind().prop_map(Body::BindTransmitter),
        bind_resp().prop_map(Body::BindTransmitterResp),
        bind().prop_map(Body::BindReceiver),
        bind_resp().prop_map(Body::BindReceiverResp),
        bind().prop_map(Body::BindTransceiver),
        bind_resp().prop_map(Body::BindTransceiverResp),
        (cstr(max_len::SYSTEM_ID), cstr(max_len::PASSWORD)).prop_map(|(system_id, password)| {
            Body::Outbind(Outbind {
                system_id,
                password,
            })
        }),
        Just(Body::Unbind),
        Just(Body::UnbindResp),
        submit_sm().prop_map(Body::SubmitSm),
        message_id_resp().prop_map(Body::SubmitSmResp),
        submit_multi().prop_map(Body::SubmitMulti),
        submit_multi_resp().prop_map(Body::SubmitMultiResp),
        submit_sm().prop_map(Body::DeliverSm),
        message_id_resp().prop_map(Body::DeliverSmResp),
        data_sm().prop_map(Body::DataSm),
        message_id_resp().prop_map(Body::DataSmResp),
        (cstr(max_len::MESSAGE_ID), address(max_len::ADDR))
            .prop_map(|(message_id, source)| Body::QuerySm(QuerySm { message_id, source })),
        (
            cstr(max_len::MESSAGE_ID),
            cstr(max_len::TIME),
            any::<u8>(),
            any::<u8>()
        )
            .prop_map(|(message_id, final_date, message_state, error_code)| {
                Body::QuerySmResp(QuerySmResp {
                    message_id,
                    final_date,
                    message_state,
                    error_code,
                })
            }),
        (
            cstr(max_len::SERVICE_TYPE),
            cstr(max_len::MESSAGE_ID),
            address(max_len::ADDR),
            address(max_len::ADDR)
        )
            .prop_map(
                |(service_type, message_id, source, destination)| Body::CancelSm(CancelSm {
                    service_type,
                    message_id,
                    source,
                    destination
                })
            ),
        Just(Body::CancelSmResp),
        (
            cstr(max_len::MESSAGE_ID),
            address(max_len::ADDR),
            cstr(max_len::TIME),
            cstr(max_len::TIME),
            any::<[u8; 2]>(),
            short_message()
        )
            .prop_map(|(message_id, source, sched, valid, a, short_message)| {
                Body::ReplaceSm(ReplaceSm {
                    message_id,
                    source,
                    schedule_delivery_time: sched,
                    validity_period: valid,
                    registered_delivery: a[0],
                    sm_default_msg_id: a[1],
                    short_message,
                })
            }),
        Just(Body::ReplaceSmResp),
        Just(Body::EnquireLink),
        Just(Body::EnquireLinkResp),
        (address(max_len::ADDR_65), address(max_len::ADDR_65), tlvs()).prop_map(
            |(source, esme, tlvs)| Body::AlertNotification(AlertNotification {
                source,
                esme,
                tlvs
            })
        ),
    ]
}

fn pdu() -> impl Strategy<Value = Pdu> {
    (prop_oneof![Just(0u32), any::<u32>()], any::<u32>(), body()).prop_map(
        |(command_status, sequence_number, body)| Pdu {
            command_status,
            sequence_number,
            body,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn every_pdu_round_trips(pdu in pdu()) {
        let bytes = to_bytes(&pdu).unwrap();
        prop_assert_eq!(u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize, bytes.len());
        let (decoded, used) = decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(&decoded, &pdu);
        // Byte-exact re-encoding (unknown TLVs included, in order).
        prop_assert_eq!(to_bytes(&decoded).unwrap(), bytes);
    }

    #[test]
    fn framing_at_any_split_point(pdus in vec(pdu(), 1..5), cuts in vec(any::<prop::sample::Index>(), 0..6)) {
        let mut stream = Vec::new();
        for p in &pdus {
            encode(p, &mut stream).unwrap();
        }
        let mut cut_points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cut_points.push(stream.len());
        cut_points.sort_unstable();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut fed = 0;
        for cut in cut_points {
            buf.extend_from_slice(&stream[fed..cut]);
            fed = cut;
            while let Some((p, n)) = decode(&buf).unwrap() {
                out.push(p);
                buf.drain(..n);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(out, pdus);
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..512)) {
        check_decode(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_pdus(
        pdu in pdu(),
        flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        truncate in any::<prop::sample::Index>(),
        fix_length in any::<bool>(),
    ) {
        let mut bytes = to_bytes(&pdu).unwrap();
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        let len = truncate.index(bytes.len() + 1).max(1);
        bytes.truncate(len);
        if fix_length && bytes.len() >= 4 {
            let l = bytes.len() as u32;
            bytes[0..4].copy_from_slice(&l.to_be_bytes());
        }
        check_decode(&bytes);
    }

    #[test]
    fn invalid_length_is_reported_before_the_frame_arrives(len in prop_oneof![0u32..16, 65537u32..]) {
        let err = decode(&len.to_be_bytes()).unwrap_err();
        let is_invalid_length = matches!(err, DecodeError::InvalidLength { .. });
        prop_assert!(is_invalid_length);
        prop_assert_eq!(err.frame_len(), None);
    }
}

/// Whatever decodes must re-encode and decode to the same PDU; errors must be consistent.
fn check_decode(bytes: &[u8]) {
    match decode_with_max(bytes, 4096) {
        Ok(Some((pdu, n))) => {
            assert!(n >= HEADER_LEN && n <= bytes.len());
            let again = to_bytes(&pdu).unwrap();
            let (pdu2, _) = decode(&again).unwrap().unwrap();
            assert_eq!(pdu2, pdu);
        }
        Ok(None) => assert!(
            bytes.len() < 4
                || bytes.len() < u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize
        ),
        Err(e) => {
            if let Some(n) = e.frame_len() {
                assert!(n >= HEADER_LEN && n <= bytes.len());
            }
            let _ = e.command_status();
            let _ = e.to_string();
        }
    }
}

#[test]
fn unknown_tlvs_survive_next_to_known_ones() {
    let mut sm = SubmitSm::default();
    sm.tlvs.0.push(Tlv {
        tag: 0x1400,
        value: vec![1, 2, 3],
    });
    sm.tlvs.set_sar_msg_ref_num(7);
    sm.tlvs.0.push(Tlv {
        tag: 0xFFFF,
        value: vec![],
    });
    let bytes = to_bytes(&Pdu::new(1, Body::SubmitSm(sm.clone()))).unwrap();
    let (pdu, _) = decode(&bytes).unwrap().unwrap();
    let Body::SubmitSm(got) = pdu.body else {
        panic!("not submit_sm")
    };
    assert_eq!(got.tlvs, sm.tlvs);
    assert_eq!(got.tlvs.sar_msg_ref_num(), Some(7));
    assert_eq!(got.tlvs.get(0x1400), Some(&[1u8, 2, 3][..]));
}

#[test]
fn field_limits_map_to_statuses() {
    // source_addr of 21 octets + NUL is one too many.
    let mut bytes = to_bytes(&Pdu::new(3, Body::SubmitSm(SubmitSm::default()))).unwrap();
    // service_type NUL at 16, source ton/npi at 17,18, source_addr NUL at 19.
    bytes.splice(19..20, std::iter::repeat_n(b'1', 21).chain([0]));
    let l = bytes.len() as u32;
    bytes[0..4].copy_from_slice(&l.to_be_bytes());
    let err = decode(&bytes).unwrap_err();
    assert_eq!(err.command_status(), tern_smpp::status::ESME_RINVSRCADR);

    // A truncated TLV is an optional-parameter stream error.
    let mut sm = SubmitSm::default();
    sm.tlvs.set_source_port(5);
    let mut bytes = to_bytes(&Pdu::new(3, Body::SubmitSm(sm))).unwrap();
    bytes.pop();
    let l = bytes.len() as u32;
    bytes[0..4].copy_from_slice(&l.to_be_bytes());
    assert_eq!(
        decode(&bytes).unwrap_err().command_status(),
        tern_smpp::status::ESME_RINVOPTPARSTREAM
    );

    // Octets after an enquire_link.
    let bytes = [0, 0, 0, 17, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1, 9];
    assert_eq!(
        decode(&bytes).unwrap_err().command_status(),
        tern_smpp::status::ESME_RINVCMDLEN
    );

    // Unknown command id.
    let bytes = [0, 0, 0, 16, 0, 0, 0x77, 0x77, 0, 0, 0, 0, 0, 0, 0, 1];
    let err = decode(&bytes).unwrap_err();
    assert_eq!(err.command_status(), tern_smpp::status::ESME_RINVCMDID);
    assert_eq!(err.frame_len(), Some(16));
}

#[test]
fn configurable_max_length() {
    let bytes = to_bytes(&Pdu::new(
        1,
        Body::SubmitSm(SubmitSm {
            short_message: vec![0; 200],
            ..SubmitSm::default()
        }),
    ))
    .unwrap();
    assert!(decode_with_max(&bytes, 100).is_err());
    assert!(decode_with_max(&bytes, bytes.len()).unwrap().is_some());
    // Rejected from the length prefix alone, before the rest arrives.
    assert!(decode_with_max(&bytes[..4], 100).is_err());
}
