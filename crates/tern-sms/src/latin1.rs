//! ISO-8859-1 (`data_coding = 0x03`), which some SMPP carriers use instead
//! of the GSM default alphabet. Every byte is a code point U+0000..=U+00FF,
//! so decoding is total and lossless.

/// Encode `s` as Latin-1, or `None` if any character is above U+00FF.
pub fn encode(s: &str) -> Option<Vec<u8>> {
    s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect()
}

/// Decode Latin-1 bytes. Total: every byte maps to exactly one character.
pub fn decode(b: &[u8]) -> String {
    b.iter().map(|&x| char::from(x)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(encode("café"), Some(vec![b'c', b'a', b'f', 0xE9]));
        assert_eq!(decode(&[b'c', b'a', b'f', 0xE9]), "café");
        assert_eq!(encode("€"), None);
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(encode(&decode(&all)), Some(all));
    }
}
