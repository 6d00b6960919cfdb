//! GSM 03.38 (3GPP TS 23.038) default 7-bit alphabet.
//!
//! Functions here work on *unpacked* septets (one septet per byte, high bit
//! clear), which is what SMPP `data_coding = 0` and our internal segment
//! payloads use, plus [`pack`]/[`unpack`] for the 7-bit packed form used on
//! the air interface (TP-UD).
//!
//! Characters from the extension table (form feed, `^ { } \ [ ~ ] |` and
//! `€`) are encoded as the two-septet sequence `ESC` (0x1B) + code, which is
//! why they cost two septets when counting segments.

/// The escape septet that introduces an extension-table character.
pub const ESC: u8 = 0x1B;

/// Basic character set, indexed by septet value. Index 0x1B is the escape
/// septet and never decodes to itself (see [`decode_unpacked`]).
const BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{A0}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Extension table: `(septet after ESC, character)`.
///
/// Only the characters of the default (non-national) extension table are
/// listed; 0x0D (CR2) and 0x1B (reserved for a further extension) have no
/// printable meaning and are handled in [`decode_unpacked`].
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{0C}'), // form feed
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Marker for "not in the basic table" in [`LATIN_REVERSE`].
const NONE: u8 = 0xFF;

/// Reverse lookup for code points below U+0100 (covers everything in the
/// basic table except the Greek capitals), built at compile time so that
/// [`is_gsm7`](crate::is_gsm7) over a 1,600-char body is a table lookup per
/// character rather than a scan.
const LATIN_REVERSE: [u8; 256] = {
    let mut table = [NONE; 256];
    let mut i = 0;
    while i < 128 {
        let c = BASIC[i] as u32;
        // Skip the ESC slot (its placeholder NBSP must not encode to ESC).
        if i != ESC as usize && c < 256 {
            table[c as usize] = i as u8;
        }
        i += 1;
    }
    table
};

/// How a single character is represented in GSM-7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Septets {
    /// One septet from the basic table.
    Basic(u8),
    /// `ESC` followed by this extension-table septet.
    Extended(u8),
}

impl Septets {
    /// Number of septets this character occupies (1 or 2).
    pub(crate) fn len(self) -> u32 {
        match self {
            Septets::Basic(_) => 1,
            Septets::Extended(_) => 2,
        }
    }

    pub(crate) fn push_to(self, out: &mut Vec<u8>) {
        match self {
            Septets::Basic(s) => out.push(s),
            Septets::Extended(s) => {
                out.push(ESC);
                out.push(s);
            }
        }
    }
}

/// Map one character to its GSM-7 representation, or `None` if it is not in
/// the basic or extension table.
pub(crate) fn lookup(c: char) -> Option<Septets> {
    let cp = c as u32;
    if cp < 256 {
        let s = LATIN_REVERSE[cp as usize];
        if s != NONE {
            return Some(Septets::Basic(s));
        }
    } else {
        let greek = match c {
            'Δ' => Some(0x10),
            'Φ' => Some(0x12),
            'Γ' => Some(0x13),
            'Λ' => Some(0x14),
            'Ω' => Some(0x15),
            'Π' => Some(0x16),
            'Ψ' => Some(0x17),
            'Σ' => Some(0x18),
            'Θ' => Some(0x19),
            'Ξ' => Some(0x1A),
            _ => None,
        };
        if let Some(s) = greek {
            return Some(Septets::Basic(s));
        }
    }
    EXTENSION
        .iter()
        .find(|&&(_, e)| e == c)
        .map(|&(s, _)| Septets::Extended(s))
}

/// Encode `s` as unpacked GSM-7 septets (one per byte, values 0..=0x7F).
///
/// Extension-table characters become `ESC` + code. Returns `None` if any
/// character is outside the GSM 03.38 default alphabet — callers should then
/// fall back to UCS-2, exactly as a handset or Twilio would.
///
/// The mapping is strict (no "smart" substitution of e.g. curly quotes or
/// `ç` → `Ç`) so that `decode_unpacked(encode_unpacked(s)) == s` always holds.
pub fn encode_unpacked(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    for c in s.chars() {
        lookup(c)?.push_to(&mut out);
    }
    Some(out)
}

/// Decode unpacked GSM-7 septets. Never panics.
///
/// Leniency rules (for bytes received from carriers, which are not always
/// well-formed):
/// * the high bit of every byte is ignored (septets are 7-bit);
/// * `ESC` followed by a code that is not in the extension table decodes as
///   the basic-table character for that code, as TS 23.038 requires of a
///   receiving entity;
/// * `ESC ESC` and a trailing lone `ESC` decode as a space (TS 23.038
///   "display a space" for unknown extensions).
pub fn decode_unpacked(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    let mut iter = b.iter().map(|&x| x & 0x7F);
    while let Some(s) = iter.next() {
        if s != ESC {
            out.push(BASIC[usize::from(s)]);
            continue;
        }
        match iter.next() {
            None | Some(ESC) => out.push(' '),
            Some(e) => match EXTENSION.iter().find(|&&(code, _)| code == e) {
                Some(&(_, c)) => out.push(c),
                None => out.push(BASIC[usize::from(e)]),
            },
        }
    }
    out
}

/// Pack septets into the 7-bit packed octet form (LSB first, TS 23.038 §6.1.2.1.1).
///
/// Output length is `ceil(septets.len() * 7 / 8)`. Unused trailing bits are
/// zero; because 7 trailing zero bits are indistinguishable from an `@`, the
/// septet count must travel alongside the octets (it does: TP-UDL), which is
/// why [`unpack`] takes it explicitly. The high bit of each input byte is
/// ignored.
pub fn pack(septets: &[u8]) -> Vec<u8> {
    pack_with_header(&[], septets)
}

/// Fill bits between a User Data Header of `header_octets` octets (including
/// its length octet) and the first septet, so that septets start on a septet
/// boundary of the user data (TS 23.040 §9.2.3.24): 1 for the 6-octet 8-bit
/// concatenation header, 0 for the 7-octet 16-bit one.
pub fn fill_bits(header_octets: usize) -> usize {
    (7 - (header_octets % 7 * 8) % 7) % 7
}

/// Packed GSM-7 user data with a header in front, laid out as TP-UD: the
/// `header` octets verbatim, [`fill_bits`] zero bits, then `septets` packed
/// LSB first. With an empty header this is [`pack`].
///
/// This is the layout a handset receives, so a message built here decodes
/// with [`unpack_after_header`] (or [`unpack_all`] when the septet count was
/// lost, as SMPP's `sm_length` loses it).
pub fn pack_with_header(header: &[u8], septets: &[u8]) -> Vec<u8> {
    let fill = fill_bits(header.len());
    let mut out = Vec::with_capacity(header.len() + (fill + septets.len() * 7).div_ceil(8));
    out.extend_from_slice(header);
    let mut acc: u16 = 0;
    // The fill bits are the first `fill` (zero) bits of the accumulator.
    let mut bits = fill as u32;
    for &s in septets {
        acc |= u16::from(s & 0x7F) << bits;
        bits += 7;
        if bits >= 8 {
            out.push((acc & 0xFF) as u8);
            acc >>= 8;
            bits -= 8;
        }
    }
    if bits > 0 {
        out.push((acc & 0xFF) as u8);
    }
    out
}

/// Unpack `septet_count` septets from 7-bit packed octets. Never panics.
///
/// If `b` is too short to hold `septet_count` septets, only the septets that
/// are fully present are returned (at most `b.len() * 8 / 7`), rather than
/// inventing data from missing bits.
pub fn unpack(b: &[u8], septet_count: usize) -> Vec<u8> {
    unpack_after_header(b, 0, septet_count)
}

/// First bit of the septets in user data whose header is `header_octets` long.
fn septet_start_bit(header_octets: usize) -> usize {
    header_octets
        .saturating_mul(8)
        .saturating_add(fill_bits(header_octets))
}

/// Unpack `septet_count` septets that follow a `header_octets`-octet header and
/// its [`fill_bits`] in `b` (the inverse of [`pack_with_header`]). Never panics:
/// like [`unpack`], returns only the septets fully present, and nothing when the
/// header is longer than `b`.
pub fn unpack_after_header(b: &[u8], header_octets: usize, septet_count: usize) -> Vec<u8> {
    let start = septet_start_bit(header_octets);
    let available = b.len().saturating_mul(8).saturating_sub(start) / 7;
    let n = septet_count.min(available);
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let bit = start + i * 7;
        let byte = bit / 8;
        let shift = bit % 8;
        let lo = u16::from(b.get(byte).copied().unwrap_or(0));
        let hi = u16::from(b.get(byte + 1).copied().unwrap_or(0));
        out.push((((lo | (hi << 8)) >> shift) & 0x7F) as u8);
    }
    out
}

/// Unpack every septet after a `header_octets`-octet header when the septet
/// count is unknown — SMPP's `sm_length` counts octets, not septets.
///
/// When the bits after the last whole septet number exactly zero, the sender
/// may have packed one septet fewer and left seven zero padding bits, which
/// read as a final `@` (0x00). That final `@` is then taken as padding and
/// dropped: a padding `@` is far more common than a message whose septet count
/// is a multiple of eight *and* ends in `@`, which is the one case this
/// loses a character (TS 23.038 §6.1.2.3.1 has the same ambiguity for CBS).
pub fn unpack_all(b: &[u8], header_octets: usize) -> Vec<u8> {
    let bits = b
        .len()
        .saturating_mul(8)
        .saturating_sub(septet_start_bit(header_octets));
    let mut out = unpack_after_header(b, header_octets, bits / 7);
    if bits.is_multiple_of(7) && out.last() == Some(&0) {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_table_round_trips_every_septet() {
        for s in 0u8..128 {
            if s == ESC {
                continue;
            }
            let decoded = decode_unpacked(&[s]);
            assert_eq!(encode_unpacked(&decoded), Some(vec![s]), "septet {s:#x}");
        }
    }

    #[test]
    fn extension_chars_use_escape() {
        assert_eq!(encode_unpacked("€"), Some(vec![ESC, 0x65]));
        assert_eq!(encode_unpacked("{}"), Some(vec![ESC, 0x28, ESC, 0x29]));
        assert_eq!(encode_unpacked("\u{0C}"), Some(vec![ESC, 0x0A]));
        for &(code, c) in &EXTENSION {
            assert_eq!(decode_unpacked(&[ESC, code]), c.to_string());
        }
    }

    #[test]
    fn rejects_non_gsm() {
        assert_eq!(encode_unpacked("ç"), None);
        assert_eq!(encode_unpacked("\u{A0}"), None); // NBSP placeholder in ESC slot
        assert_eq!(encode_unpacked("\u{1B}"), None);
        assert_eq!(encode_unpacked("`"), None);
        assert_eq!(encode_unpacked("😀"), None);
    }

    #[test]
    fn lenient_decoding() {
        // Unknown extension -> basic char; lone/double ESC -> space; high bit ignored.
        assert_eq!(decode_unpacked(&[ESC, 0x41]), "A");
        assert_eq!(decode_unpacked(&[0x41, ESC]), "A ");
        assert_eq!(decode_unpacked(&[ESC, ESC, 0x41]), " A");
        assert_eq!(decode_unpacked(&[0xC1]), "A");
    }

    #[test]
    fn pack_known_vector() {
        // "hellohello" from the classic 3GPP example.
        let septets = encode_unpacked("hellohello").unwrap();
        assert_eq!(
            pack(&septets),
            vec![0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(
            unpack(&[0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37], 10),
            septets
        );
    }

    #[test]
    fn pack_lengths() {
        assert!(pack(&[]).is_empty());
        assert_eq!(pack(&[0x41]).len(), 1);
        assert_eq!(pack(&[0x41; 8]).len(), 7);
        assert_eq!(pack(&[0x41; 9]).len(), 8);
        assert_eq!(pack(&[0x41; 160]).len(), 140);
        assert_eq!(pack(&[0x41; 153]).len(), 134); // + 6 octets UDH = 140
    }

    #[test]
    fn fill_bits_align_septets_after_the_header() {
        assert_eq!(fill_bits(0), 0);
        assert_eq!(fill_bits(6), 1); // 48 bits + 1 = 7 septets
        assert_eq!(fill_bits(7), 0); // 56 bits = 8 septets
        assert_eq!(fill_bits(1), 6);
        assert_eq!(fill_bits(usize::MAX), (7 - (usize::MAX % 7 * 8) % 7) % 7);
        for h in 0..50 {
            assert_eq!((h * 8 + fill_bits(h)) % 7, 0, "header {h}");
            assert!(fill_bits(h) < 7);
        }
    }

    #[test]
    fn pack_with_8_bit_concatenation_header() {
        // UDH 05 00 03 2A 02 01, then "hello" packed from bit 49 (one fill bit).
        let udh = [0x05, 0x00, 0x03, 0x2A, 0x02, 0x01];
        let septets = encode_unpacked("hello").unwrap();
        let packed = pack_with_header(&udh, &septets);
        assert_eq!(&packed[..6], &udh);
        // 'h' = 0x68 shifted left by the fill bit: 0xD0, then the rest of the stream.
        assert_eq!(&packed[6..], &[0xD0, 0x65, 0x36, 0xFB, 0x0D]);
        assert_eq!(unpack_after_header(&packed, 6, 5), septets);
        assert_eq!(unpack_all(&packed, 6), septets);
        // 153 septets + 6 octets of header make exactly one 140-octet segment.
        assert_eq!(pack_with_header(&udh, &[0x41; 153]).len(), 140);
        // 7-octet header: no fill bits, 152 septets fill the segment.
        let udh16 = [0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01];
        assert_eq!(pack_with_header(&udh16, &[0x41; 152]).len(), 140);
        assert_eq!(&pack_with_header(&udh16, &[0x41])[7..], &[0x41]);
    }

    #[test]
    fn unpack_all_drops_only_padding_at_septet_boundaries() {
        // 7 septets pack into 7 octets with 7 zero padding bits: not an '@'.
        let seven = encode_unpacked("abcdefg").unwrap();
        let packed = pack(&seven);
        assert_eq!(packed.len(), 7);
        assert_eq!(unpack_all(&packed, 0), seven);
        // 8 septets fill 7 octets exactly; a real final '@' is the lost case.
        let eight = encode_unpacked("abcdefg@").unwrap();
        assert_eq!(pack(&eight), packed);
        assert_eq!(unpack_all(&packed, 0), seven);
        // An '@' elsewhere, or when the count is not ambiguous, survives.
        let at = encode_unpacked("@bc@").unwrap();
        assert_eq!(unpack_all(&pack(&at), 0), at);
        let nine = encode_unpacked("abcdefgh@").unwrap();
        assert_eq!(unpack_all(&pack(&nine), 0), nine);
        assert!(unpack_all(&[], 0).is_empty());
        assert!(unpack_all(&[1, 2, 3], 6).is_empty());
        assert!(unpack_after_header(&[1, 2, 3], usize::MAX, 10).is_empty());
    }

    #[test]
    fn unpack_clamps_to_available_bits() {
        assert_eq!(unpack(&[0xFF], 5), vec![0x7F]);
        assert!(unpack(&[], 3).is_empty());
    }
}
