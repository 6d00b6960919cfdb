//! Property tests: round trips, count/split agreement, and panic-freedom of
//! decoders on arbitrary (carrier-supplied) bytes.

use proptest::prelude::*;
use tern_sms::{
    Encoding, UDH_OCTETS, UDH16_OCTETS, gsm7, latin1, segment_info, segment_info_with_udh, split,
    split_with_udh, ucs2,
};

/// Every character of the GSM 03.38 basic + extension tables (minus ESC).
const GSM_CHARS: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà\u{0C}^{}\\[~]|€";

fn gsm_string() -> impl Strategy<Value = String> {
    let chars: Vec<char> = GSM_CHARS.chars().collect();
    prop::collection::vec(prop::sample::select(chars), 0..400).prop_map(|v| v.into_iter().collect())
}

/// Mostly-GSM text with occasional non-GSM and astral characters, biased so
/// that segment boundaries land on escapes and surrogate pairs often.
fn mixed_string() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        6 => prop::sample::select(GSM_CHARS.chars().collect::<Vec<_>>()),
        2 => prop::sample::select(vec!['€', '{', '😀', '🇺', 'ç', 'Ж']),
        1 => any::<char>(),
    ];
    prop::collection::vec(ch, 0..500).prop_map(|v| v.into_iter().collect())
}

proptest! {
    #[test]
    fn gsm7_unpacked_round_trip(s in gsm_string()) {
        let septets = gsm7::encode_unpacked(&s).expect("GSM string encodes");
        prop_assert!(septets.iter().all(|&b| b < 0x80));
        prop_assert_eq!(gsm7::decode_unpacked(&septets), s);
    }

    #[test]
    fn gsm7_encode_agrees_with_is_gsm7(s in mixed_string()) {
        prop_assert_eq!(gsm7::encode_unpacked(&s).is_some(), tern_sms::is_gsm7(&s));
    }

    #[test]
    fn pack_unpack_round_trip(septets in prop::collection::vec(0u8..0x80, 0..400)) {
        let packed = gsm7::pack(&septets);
        prop_assert_eq!(packed.len(), (septets.len() * 7).div_ceil(8));
        prop_assert_eq!(gsm7::unpack(&packed, septets.len()), septets);
    }

    #[test]
    fn pack_with_header_round_trip(
        header in prop::collection::vec(any::<u8>(), 0..10),
        septets in prop::collection::vec(0u8..0x80, 0..200),
    ) {
        let packed = gsm7::pack_with_header(&header, &septets);
        prop_assert_eq!(&packed[..header.len()], &header[..]);
        let bits = gsm7::fill_bits(header.len()) + septets.len() * 7;
        prop_assert_eq!(packed.len(), header.len() + bits.div_ceil(8));
        prop_assert_eq!(gsm7::unpack_after_header(&packed, header.len(), septets.len()), septets.clone());
        // Without the count, only a final '@' that could be padding is lost.
        let all = gsm7::unpack_all(&packed, header.len());
        if all.len() == septets.len() {
            prop_assert_eq!(all, septets);
        } else {
            prop_assert_eq!(all.len() + 1, septets.len());
            prop_assert_eq!(septets.last(), Some(&0));
            prop_assert_eq!(&septets[..all.len()], &all[..]);
        }
    }

    #[test]
    fn ucs2_round_trip(s in any::<String>()) {
        let bytes = ucs2::encode(&s);
        prop_assert_eq!(bytes.len(), s.encode_utf16().count() * 2);
        prop_assert_eq!(ucs2::decode(&bytes), s);
    }

    #[test]
    fn latin1_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let s = latin1::decode(&bytes);
        prop_assert_eq!(latin1::encode(&s), Some(bytes));
    }

    #[test]
    fn decoders_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600), n in 0usize..1000) {
        let _ = gsm7::decode_unpacked(&bytes);
        let _ = gsm7::unpack(&bytes, n);
        let _ = gsm7::unpack_after_header(&bytes, n, n);
        let _ = gsm7::unpack_all(&bytes, n);
        let _ = ucs2::decode(&bytes);
        let _ = latin1::decode(&bytes);
    }

    #[test]
    fn segment_count_matches_split(s in mixed_string()) {
        let info = segment_info(&s);
        let parts = split(&s);
        prop_assert_eq!(info.num_segments as usize, parts.len());
        prop_assert!(info.num_segments >= 1);
        let total: u32 = parts.iter().map(|p| p.units()).sum();
        prop_assert_eq!(total, info.units);
    }

    #[test]
    fn split_respects_limits_and_round_trips(s in mixed_string()) {
        let info = segment_info(&s);
        let parts = split(&s);
        let limit = if parts.len() == 1 {
            info.encoding.single_limit()
        } else {
            info.encoding.multi_limit()
        };
        let mut joined = String::new();
        for p in &parts {
            prop_assert_eq!(p.encoding, info.encoding);
            prop_assert!(p.units() <= limit);
            match p.encoding {
                // Each part decodes on its own: no dangling ESC.
                Encoding::Gsm7 => {
                    let enc = gsm7::encode_unpacked(&p.text());
                    prop_assert_eq!(enc.as_ref(), Some(&p.payload));
                }
                // No lone surrogates at part edges: re-encoding is exact.
                Encoding::Ucs2 => {
                    prop_assert_eq!(ucs2::encode(&p.text()), p.payload.clone());
                }
            }
            joined.push_str(&p.text());
        }
        prop_assert_eq!(joined, s);
    }

    #[test]
    fn split_with_udh_agrees_with_count_and_round_trips(s in mixed_string(), udh in 0u32..20) {
        let info = segment_info_with_udh(&s, udh);
        let parts = split_with_udh(&s, udh);
        prop_assert_eq!(info.num_segments as usize, parts.len());
        let limit = if parts.len() == 1 {
            info.encoding.single_limit()
        } else {
            info.encoding.multi_limit_with_udh(udh)
        };
        prop_assert!(parts.iter().all(|p| p.units() <= limit));
        prop_assert_eq!(parts.iter().map(|p| p.text()).collect::<String>(), s.clone());
        // The default header is the plain split; a larger header never needs fewer parts.
        prop_assert_eq!(split_with_udh(&s, UDH_OCTETS), split(&s));
        prop_assert!(segment_info_with_udh(&s, UDH16_OCTETS).num_segments >= segment_info(&s).num_segments);
    }

    #[test]
    fn parts_are_greedy(s in mixed_string()) {
        // No part could have taken the next part's first character.
        let parts = split(&s);
        let info = segment_info(&s);
        for w in parts.windows(2) {
            let first_next = w[1].text().chars().next().expect("non-empty later part");
            let size = match info.encoding {
                Encoding::Gsm7 => gsm7::encode_unpacked(&first_next.to_string()).map_or(0, |v| v.len() as u32),
                Encoding::Ucs2 => first_next.len_utf16() as u32,
            };
            prop_assert!(w[0].units() + size > info.encoding.multi_limit());
        }
    }
}
