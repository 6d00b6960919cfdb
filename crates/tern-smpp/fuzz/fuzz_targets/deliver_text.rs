#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tern_smpp::pdu::{Address, DataSm, SubmitSm, Tlvs};
use tern_smpp::text::{
    LongMessageMode, Reassembler, ReassemblerConfig, TextOptions, encode_submits, read_part,
};

// Input: byte 0 sets the options and the reassembler's limits; then records of
// [flags][esm_class][data_coding][ref hi][ref lo][total][seq][len][len bytes], each one
// received deliver_sm (or data_sm) fed through read_part and the Reassembler. flags: bit 0
// adds sar_* TLVs from ref/total/seq, bit 1 moves the bytes to message_payload, bit 2 makes
// it a data_sm, bits 3..=5 advance the clock in seconds, bits 6..=7 pick the sender.
// Afterwards the whole input, as text, must survive encode_submits → read_part → reassembly.
fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    let opts = TextOptions {
        gsm7_packed: mode & 1 != 0,
        latin1_data_coding: mode & 2 != 0,
        long: match (mode >> 2) & 3 {
            0 => LongMessageMode::Udh8,
            1 => LongMessageMode::Udh16,
            2 => LongMessageMode::Sar,
            _ => LongMessageMode::Payload,
        },
    };
    let max_pending = usize::from(mode >> 4);
    let config = ReassemblerConfig {
        timeout: Duration::from_secs(30),
        max_pending,
        max_message_bytes: 16 << (mode >> 5),
    };
    let mut r = Reassembler::new(config);
    let t0 = Instant::now();
    let mut now = t0;
    let destination = Address::new(0, 0, "12345");
    while let Some((hdr, tail)) = rest.split_first_chunk::<8>() {
        let [
            flags,
            esm_class,
            data_coding,
            ref_hi,
            ref_lo,
            total,
            seq,
            len,
        ] = *hdr;
        let take = usize::from(len).min(tail.len());
        let (bytes, tail) = tail.split_at(take);
        rest = tail;
        now += Duration::from_secs(u64::from((flags >> 3) & 7));
        let source = Address::new(1, 1, format!("4477009000{}", flags >> 6));
        let mut tlvs = Tlvs::default();
        if flags & 1 != 0 {
            tlvs.set_sar_msg_ref_num(u16::from_be_bytes([ref_hi, ref_lo]));
            tlvs.set_sar_total_segments(total);
            tlvs.set_sar_segment_seqnum(seq);
        }
        let short_message = if flags & 2 != 0 || flags & 4 != 0 {
            tlvs.set_message_payload(bytes.to_vec());
            Vec::new()
        } else {
            bytes.to_vec()
        };
        let read = if flags & 4 != 0 {
            let sm = DataSm {
                source,
                destination: destination.clone(),
                esm_class,
                data_coding,
                tlvs,
                ..DataSm::default()
            };
            read_part(&sm, &opts)
        } else {
            let sm = SubmitSm {
                source,
                destination: destination.clone(),
                esm_class,
                data_coding,
                short_message,
                tlvs,
                ..SubmitSm::default()
            };
            read_part(&sm, &opts)
        };
        match read {
            Ok(part) => {
                let _ = part.text();
                if let Some(c) = part.concat {
                    assert!(c.seq() >= 1 && c.seq() <= c.total());
                }
                if let Some(a) = r.push(part, now) {
                    assert!(a.total >= 1);
                    assert!(a.missing.windows(2).all(|w| w[0] < w[1]));
                    assert!(a.missing.iter().all(|&m| m >= 1 && m <= a.total));
                }
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
        assert!(r.pending_len() <= max_pending.max(1));
        for a in r.expire(now) {
            assert!(!a.is_complete());
        }
        if let Some(d) = r.next_deadline() {
            assert!(d >= t0);
        }
    }
    let _ = r.expire(now + Duration::from_secs(31));
    assert_eq!(r.pending_len(), 0);

    // Round trip. Packed GSM-7 cannot tell a final '@' from padding (SMPP counts octets).
    let body = String::from_utf8_lossy(data);
    let body = if opts.gsm7_packed {
        body.replace('@', "A")
    } else {
        body.into_owned()
    };
    let template = SubmitSm {
        source: Address::new(1, 1, "15550001111"),
        destination: Address::new(1, 1, "15550002222"),
        ..SubmitSm::default()
    };
    let Ok(pdus) = encode_submits(&template, &body, u16::from(mode), &opts) else {
        return;
    };
    if matches!(opts.long, LongMessageMode::Udh8 | LongMessageMode::Sar) && !opts.latin1_data_coding
    {
        assert_eq!(pdus.len() as u32, tern_sms_segments(&body));
    }
    let mut r = Reassembler::default();
    let mut out = Vec::new();
    for sm in pdus.iter().rev() {
        out.extend(r.push(read_part(sm, &opts).expect("own PDU reads"), t0));
    }
    assert_eq!(out.len(), 1);
    assert!(out[0].is_complete());
    assert_eq!(out[0].text, body);
});

fn tern_sms_segments(body: &str) -> u32 {
    tern_sms::segment_info(body).num_segments
}
