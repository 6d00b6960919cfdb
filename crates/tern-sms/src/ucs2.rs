//! UCS-2 (`data_coding = 0x08`) as used in practice: UTF-16 big-endian.
//!
//! Strict UCS-2 cannot represent characters outside the Basic Multilingual
//! Plane, but every current handset and carrier (and Twilio) sends astral
//! characters such as emoji as UTF-16 surrogate pairs, so that is what we do.
//! A surrogate pair costs two code units and must never be split across
//! segments (see [`crate::split`]).

/// Encode `s` as UTF-16BE. Astral characters become surrogate pairs.
pub fn encode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    for unit in s.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// Decode UTF-16BE bytes. Never panics.
///
/// Lone or mis-ordered surrogates and a dangling odd trailing byte each
/// decode to U+FFFD, because carrier data is untrusted and a message body
/// must still be stored and shown.
pub fn decode(b: &[u8]) -> String {
    let chunks = b.chunks_exact(2);
    let dangling = !chunks.remainder().is_empty();
    let units = chunks.map(|c| u16::from_be_bytes([c[0], c[1]]));
    let mut out: String = char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    if dangling {
        out.push(char::REPLACEMENT_CHARACTER);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_and_astral() {
        assert_eq!(encode("Aé"), vec![0x00, 0x41, 0x00, 0xE9]);
        assert_eq!(encode("😀"), vec![0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode(&[0xD8, 0x3D, 0xDE, 0x00]), "😀");
    }

    #[test]
    fn lossy_on_bad_input() {
        assert_eq!(decode(&[0xD8, 0x3D]), "\u{FFFD}");
        assert_eq!(decode(&[0xDE, 0x00, 0x00, 0x41]), "\u{FFFD}A");
        assert_eq!(decode(&[0x00, 0x41, 0x42]), "A\u{FFFD}");
        assert_eq!(decode(&[]), "");
    }
}
