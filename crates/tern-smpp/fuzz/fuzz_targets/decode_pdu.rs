#![no_main]

use libfuzzer_sys::fuzz_target;
use tern_smpp::pdu::{self, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    // Walk the buffer as a stream. Must never panic; whatever decodes must re-encode and
    // decode to the same PDU, and errors must report consistent frame lengths.
    let mut rest = data;
    while !rest.is_empty() {
        match pdu::decode_with_max(rest, 4096) {
            Ok(None) => break,
            Ok(Some((p, n))) => {
                assert!((HEADER_LEN..=rest.len()).contains(&n));
                let bytes = pdu::to_bytes(&p).expect("a decoded PDU encodes");
                let (again, m) = pdu::decode(&bytes).expect("re-decode").expect("complete");
                assert_eq!(m, bytes.len());
                assert_eq!(again, p);
                rest = &rest[n..];
            }
            Err(e) => {
                let _ = (e.command_status(), e.to_string());
                match e.frame_len() {
                    Some(n) => {
                        assert!((HEADER_LEN..=rest.len()).contains(&n));
                        rest = &rest[n..];
                    }
                    None => break,
                }
            }
        }
    }
});
