#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Decoders of bytes from carriers must never panic; what they produce re-encodes.
    let text = tern_sms::gsm7::decode_unpacked(data);
    let _ = tern_sms::gsm7::encode_unpacked(&text);
    let septets = tern_sms::gsm7::unpack(data, data.len() * 8 / 7);
    assert!(septets.len() <= data.len() * 8 / 7);
    let _ = tern_sms::gsm7::decode_unpacked(&septets);
    let ucs = tern_sms::ucs2::decode(data);
    let _ = tern_sms::segment_info(&ucs);
    let _ = tern_sms::split(&ucs);
    let latin = tern_sms::latin1::decode(data);
    assert_eq!(tern_sms::latin1::encode(&latin).as_deref(), Some(data));
});
