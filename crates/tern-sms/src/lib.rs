//! SMS character encodings and segmentation for Tern.
//!
//! Pure: no IO, no async. Mirrors the rules of Twilio's
//! [message-segment-calculator](https://github.com/TwilioDevEd/message-segment-calculator)
//! so that `NumSegments` and pricing match what Twilio would report:
//!
//! * A segment carries 140 octets of user data. A multipart message spends
//!   6 of them on the concatenation UDH, leaving 134.
//! * GSM-7 packs 7-bit septets: 160 per single segment, 153 per part
//!   (134 * 8 / 7, rounded down). Extension-table characters
//!   (form feed, `^ { } \ [ ~ ] |`, `€`) cost 2 septets (`ESC` + code).
//! * UCS-2 (really UTF-16BE) uses 2 octets per code unit: 70 units single,
//!   67 per part. A single non-GSM character switches the *whole* message
//!   to UCS-2. Astral characters (emoji) take 2 code units.
//! * A part never ends in the middle of an escape sequence or a surrogate
//!   pair, so a part may hold one unit less than the maximum. This is why
//!   the segment count is computed by actually packing characters, not by
//!   dividing the unit total.
//! * A 16-bit concatenation reference needs a 7-octet UDH, leaving 152
//!   septets or 66 units per part: [`split_with_udh`] and
//!   [`segment_info_with_udh`] take the header size (Twilio's counts, and
//!   therefore `NumSegments`, always assume the 6-octet header).

pub mod gsm7;
pub mod latin1;
pub mod ucs2;

/// Octets of user data in one SMS.
pub const SEGMENT_OCTETS: u32 = 140;
/// Octets of User Data Header for 8-bit-reference concatenation.
pub const UDH_OCTETS: u32 = 6;
/// Octets of User Data Header for 16-bit-reference concatenation (IEI 0x08): one more
/// than [`UDH_OCTETS`], which costs a GSM-7 part one septet and a UCS-2 part one unit.
pub const UDH16_OCTETS: u32 = 7;
/// GSM-7 septets in a single-segment message.
pub const GSM7_SINGLE_SEPTETS: u32 = 160;
/// GSM-7 septets per part of a multipart message.
pub const GSM7_MULTI_SEPTETS: u32 = 153;
/// UTF-16 code units in a single-segment UCS-2 message.
pub const UCS2_SINGLE_UNITS: u32 = 70;
/// UTF-16 code units per part of a multipart UCS-2 message.
pub const UCS2_MULTI_UNITS: u32 = 67;
/// Twilio's maximum message body length, in characters (see [`char_count`]).
pub const MAX_BODY_CHARS: usize = 1600;

/// Data coding used for a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet (7-bit).
    Gsm7,
    /// UCS-2 / UTF-16BE (16-bit).
    Ucs2,
}

impl Encoding {
    /// SMPP / TP-DCS `data_coding` value: 0x00 for the default alphabet,
    /// 0x08 for UCS-2.
    pub fn data_coding(self) -> u8 {
        match self {
            Encoding::Gsm7 => 0x00,
            Encoding::Ucs2 => 0x08,
        }
    }

    /// Human-readable name, matching Twilio's segment calculator.
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        }
    }

    /// Units allowed in a single-segment message.
    pub fn single_limit(self) -> u32 {
        match self {
            Encoding::Gsm7 => GSM7_SINGLE_SEPTETS,
            Encoding::Ucs2 => UCS2_SINGLE_UNITS,
        }
    }

    /// Units allowed per part of a multipart message.
    pub fn multi_limit(self) -> u32 {
        match self {
            Encoding::Gsm7 => GSM7_MULTI_SEPTETS,
            Encoding::Ucs2 => UCS2_MULTI_UNITS,
        }
    }

    /// Units allowed per part of a multipart message whose parts each carry
    /// `udh_octets` of User Data Header (including its length octet): the octets
    /// left of [`SEGMENT_OCTETS`], as whole septets for GSM-7 (fill bits align the
    /// first septet after the header, so partial septets are lost) or UTF-16 units.
    ///
    /// `multi_limit_with_udh(UDH_OCTETS) == multi_limit()`. The result is never
    /// below 2, so that any one character fits in a part whatever header a caller
    /// asks for (an absurd header size degrades to one character per part instead
    /// of producing parts that overflow).
    pub fn multi_limit_with_udh(self, udh_octets: u32) -> u32 {
        let octets = SEGMENT_OCTETS.saturating_sub(udh_octets).max(4);
        match self {
            Encoding::Gsm7 => octets * 8 / 7,
            Encoding::Ucs2 => octets / 2,
        }
    }
}

/// Summary of how a body will be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Encoding chosen for the whole message.
    pub encoding: Encoding,
    /// Number of SMS parts; always at least 1 (Twilio bills an empty body as
    /// one segment). Always equals `split(body).len()`.
    pub num_segments: u32,
    /// Total size: septets for GSM-7 (extension chars count 2), UTF-16 code
    /// units for UCS-2 (emoji count 2). Excludes UDH.
    pub units: u32,
}

/// One SMS part of a (possibly multipart) message, without UDH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Encoding of `payload` (the same for every part of a message).
    pub encoding: Encoding,
    /// Unpacked septets (one per byte) for GSM-7; UTF-16BE bytes for UCS-2.
    pub payload: Vec<u8>,
}

impl Segment {
    /// Size of this part in units (septets or UTF-16 code units).
    pub fn units(&self) -> u32 {
        let len = u32::try_from(self.payload.len()).unwrap_or(u32::MAX);
        match self.encoding {
            Encoding::Gsm7 => len,
            Encoding::Ucs2 => len / 2,
        }
    }

    /// Decode the payload back to text.
    pub fn text(&self) -> String {
        match self.encoding {
            Encoding::Gsm7 => gsm7::decode_unpacked(&self.payload),
            Encoding::Ucs2 => ucs2::decode(&self.payload),
        }
    }
}

/// True if every character of `body` is in the GSM 03.38 basic or extension
/// table, i.e. the message can be sent as GSM-7. The empty string is GSM-7.
pub fn is_gsm7(body: &str) -> bool {
    body.chars().all(|c| gsm7::lookup(c).is_some())
}

/// Length of `body` for Twilio's 1,600-character limit ([`MAX_BODY_CHARS`]).
///
/// We count Unicode scalar values (`str::chars`). Twilio documents the limit
/// in "characters" without pinning it down; scalar values are
/// encoding-independent (a `€` is one character even though it costs two
/// GSM septets, an emoji is one even though it takes two UTF-16 units), so a
/// user sees the count they expect. Grapheme clusters would require Unicode
/// tables this crate does not carry.
pub fn char_count(body: &str) -> usize {
    body.chars().count()
}

/// Greedy part packer shared by [`segment_info`] and [`split`] so that their
/// counts can never disagree.
struct Packer {
    limit: u32,
    used: u32,
    parts: u32,
}

impl Packer {
    fn new(encoding: Encoding, total_units: u32, udh_octets: u32) -> Self {
        let limit = if total_units <= encoding.single_limit() {
            encoding.single_limit()
        } else {
            encoding.multi_limit_with_udh(udh_octets)
        };
        Packer {
            limit,
            used: 0,
            parts: 1,
        }
    }

    /// Account for one character of `size` units (1 or 2). Returns `true` if
    /// it does not fit in the current part and therefore starts a new one —
    /// this is what keeps escape sequences and surrogate pairs whole.
    fn push(&mut self, size: u32) -> bool {
        if self.used + size > self.limit {
            self.parts += 1;
            self.used = size;
            true
        } else {
            self.used += size;
            false
        }
    }
}

fn gsm7_units(body: &str) -> Option<u32> {
    body.chars().try_fold(0u32, |acc, c| {
        Some(acc.saturating_add(gsm7::lookup(c)?.len()))
    })
}

fn ucs2_units(body: &str) -> u32 {
    body.chars().fold(0u32, |acc, c| {
        // len_utf16 is 1 or 2, the cast cannot truncate.
        acc.saturating_add(c.len_utf16() as u32)
    })
}

/// Encoding, segment count and unit total for `body`, as Twilio computes it.
///
/// An empty body is 1 segment of 0 units.
pub fn segment_info(body: &str) -> SegmentInfo {
    segment_info_with_udh(body, UDH_OCTETS)
}

/// [`segment_info`] for parts that carry `udh_octets` of header each (e.g.
/// [`UDH16_OCTETS`] for 16-bit concatenation references). A single-part message
/// has no header, so only multipart counts can differ from [`segment_info`].
pub fn segment_info_with_udh(body: &str, udh_octets: u32) -> SegmentInfo {
    if let Some(units) = gsm7_units(body) {
        let mut p = Packer::new(Encoding::Gsm7, units, udh_octets);
        for c in body.chars() {
            if let Some(s) = gsm7::lookup(c) {
                p.push(s.len());
            }
        }
        SegmentInfo {
            encoding: Encoding::Gsm7,
            num_segments: p.parts,
            units,
        }
    } else {
        let units = ucs2_units(body);
        let mut p = Packer::new(Encoding::Ucs2, units, udh_octets);
        for c in body.chars() {
            p.push(c.len_utf16() as u32);
        }
        SegmentInfo {
            encoding: Encoding::Ucs2,
            num_segments: p.parts,
            units,
        }
    }
}

/// Split `body` into SMS parts (payload only; the caller adds the UDH for
/// multipart messages).
///
/// Always returns at least one segment (an empty body yields one empty
/// segment), and `split(body).len() == segment_info(body).num_segments`.
/// A part never splits an `ESC`+extension sequence or a surrogate pair, and
/// concatenating the decoded parts gives back `body`.
pub fn split(body: &str) -> Vec<Segment> {
    split_with_udh(body, UDH_OCTETS)
}

/// [`split`] for parts that carry `udh_octets` of header each; always agrees with
/// [`segment_info_with_udh`] for the same `udh_octets`.
pub fn split_with_udh(body: &str, udh_octets: u32) -> Vec<Segment> {
    let (encoding, units) = match gsm7_units(body) {
        Some(u) => (Encoding::Gsm7, u),
        None => (Encoding::Ucs2, ucs2_units(body)),
    };
    let mut packer = Packer::new(encoding, units, udh_octets);
    let mut parts = Vec::new();
    let mut current = Vec::new();
    let mut buf = [0u16; 2];
    for c in body.chars() {
        let size = match encoding {
            Encoding::Gsm7 => gsm7::lookup(c).map_or(1, gsm7::Septets::len),
            Encoding::Ucs2 => c.len_utf16() as u32,
        };
        if packer.push(size) {
            parts.push(Segment {
                encoding,
                payload: std::mem::take(&mut current),
            });
        }
        match encoding {
            Encoding::Gsm7 => {
                if let Some(s) = gsm7::lookup(c) {
                    s.push_to(&mut current);
                }
            }
            Encoding::Ucs2 => {
                for unit in c.encode_utf16(&mut buf) {
                    current.extend_from_slice(&unit.to_be_bytes());
                }
            }
        }
    }
    parts.push(Segment {
        encoding,
        payload: current,
    });
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(body: &str) -> (Encoding, u32, u32) {
        let i = segment_info(body);
        assert_eq!(
            i.num_segments as usize,
            split(body).len(),
            "segment_info and split disagree"
        );
        (i.encoding, i.num_segments, i.units)
    }

    fn joined(body: &str) -> String {
        split(body).iter().map(Segment::text).collect()
    }

    #[test]
    fn empty_body_is_one_segment() {
        assert_eq!(info(""), (Encoding::Gsm7, 1, 0));
        let parts = split("");
        assert_eq!(parts.len(), 1);
        assert!(parts[0].payload.is_empty());
    }

    #[test]
    fn gsm_160_vs_161() {
        assert_eq!(info(&"a".repeat(160)), (Encoding::Gsm7, 1, 160));
        assert_eq!(info(&"a".repeat(161)), (Encoding::Gsm7, 2, 161));
        let parts = split(&"a".repeat(161));
        assert_eq!(parts[0].units(), 153);
        assert_eq!(parts[1].units(), 8);
    }

    #[test]
    fn gsm_multipart_boundaries() {
        assert_eq!(info(&"a".repeat(306)), (Encoding::Gsm7, 2, 306));
        assert_eq!(info(&"a".repeat(307)), (Encoding::Gsm7, 3, 307));
        assert_eq!(info(&"a".repeat(153 * 10)).1, 10);
        assert_eq!(info(&"a".repeat(1600)).1, 11);
    }

    #[test]
    fn euro_counts_two_septets() {
        assert_eq!(info("€"), (Encoding::Gsm7, 1, 2));
        assert_eq!(info(&"€".repeat(80)), (Encoding::Gsm7, 1, 160));
        assert_eq!(info(&"€".repeat(81)), (Encoding::Gsm7, 2, 162));
        assert_eq!(info(&format!("{}€", "a".repeat(159))).1, 2);
        assert_eq!(info(&format!("{}€", "a".repeat(158))).1, 1);
        assert_eq!(char_count("€"), 1);
    }

    #[test]
    fn every_extension_char_costs_two() {
        for c in ['\u{0C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'] {
            assert_eq!(info(&c.to_string()), (Encoding::Gsm7, 1, 2), "{c:?}");
        }
    }

    #[test]
    fn escape_never_split_at_boundary() {
        // 152 + "€" = 154 septets of a 153-septet part would end in ESC;
        // the € must move whole to the next part.
        let body = format!("{}€{}", "a".repeat(152), "b".repeat(10));
        assert_eq!(info(&body), (Encoding::Gsm7, 2, 164));
        let parts = split(&body);
        assert_eq!(parts[0].units(), 152);
        assert_eq!(parts[0].payload.last(), Some(&b'a'));
        assert_eq!(&parts[1].payload[..2], &[gsm7::ESC, 0x65]);
        assert_eq!(joined(&body), body);

        // 306 septets of '€' fit in two exact parts only if escapes could be
        // split; with whole escapes each part holds 76 (152 septets).
        let euros = "€".repeat(153);
        assert_eq!(info(&euros), (Encoding::Gsm7, 3, 306));
        assert!(
            split(&euros)
                .iter()
                .all(|p| p.payload.last() != Some(&gsm7::ESC))
        );
    }

    #[test]
    fn ucs2_70_vs_71() {
        let base = String::from("ç"); // one non-GSM char forces UCS-2
        assert_eq!(
            info(&(base.clone() + &"a".repeat(69))),
            (Encoding::Ucs2, 1, 70)
        );
        assert_eq!(info(&(base + &"a".repeat(70))), (Encoding::Ucs2, 2, 71));
    }

    #[test]
    fn ucs2_multipart_boundaries() {
        assert_eq!(info(&"ç".repeat(134)), (Encoding::Ucs2, 2, 134));
        assert_eq!(info(&"ç".repeat(135)), (Encoding::Ucs2, 3, 135));
        let parts = split(&"ç".repeat(135));
        assert_eq!(parts[0].units(), 67);
        assert_eq!(parts[0].payload.len(), 134);
    }

    #[test]
    fn one_non_gsm_char_forces_ucs2() {
        let body = format!("{}😀", "a".repeat(100));
        assert!(!is_gsm7(&body));
        assert_eq!(info(&body), (Encoding::Ucs2, 2, 102));
        assert!(is_gsm7("Hello, world! {€} ΔΩ"));
    }

    #[test]
    fn emoji_counts_two_units() {
        assert_eq!(info("😀"), (Encoding::Ucs2, 1, 2));
        assert_eq!(info(&"😀".repeat(35)), (Encoding::Ucs2, 1, 70));
        assert_eq!(info(&"😀".repeat(36)), (Encoding::Ucs2, 2, 72));
        assert_eq!(char_count(&"😀".repeat(36)), 36);
    }

    #[test]
    fn emoji_never_split_at_boundary() {
        // 66 units + emoji (2) = 68 > 67: the emoji moves whole.
        let body = format!("{}😀xxx", "ç".repeat(66));
        assert_eq!(info(&body), (Encoding::Ucs2, 2, 71));
        let parts = split(&body);
        assert_eq!(parts[0].units(), 66);
        assert_eq!(&parts[1].payload[..4], &[0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(joined(&body), body);

        // 67 emoji = 134 units: two exact parts if pairs could split, but
        // each part only holds 33 emoji (66 units).
        assert_eq!(info(&"😀".repeat(67)), (Encoding::Ucs2, 3, 134));
    }

    #[test]
    fn split_payloads_and_joined_text() {
        let body = "Hi € [ok]";
        let parts = split(body);
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].encoding, Encoding::Gsm7);
        assert_eq!(Some(parts[0].payload.clone()), gsm7::encode_unpacked(body));
        let body = "Привет";
        let parts = split(body);
        assert_eq!(parts[0].payload, ucs2::encode(body));
    }

    #[test]
    fn encoding_helpers() {
        assert_eq!(Encoding::Gsm7.data_coding(), 0);
        assert_eq!(Encoding::Ucs2.data_coding(), 8);
        assert_eq!(Encoding::Ucs2.as_str(), "UCS-2");
        // The per-part limits follow from 140 octets minus 6 of UDH.
        assert_eq!((SEGMENT_OCTETS - UDH_OCTETS) * 8 / 7, GSM7_MULTI_SEPTETS);
        assert_eq!((SEGMENT_OCTETS - UDH_OCTETS) / 2, UCS2_MULTI_UNITS);
        assert_eq!(SEGMENT_OCTETS * 8 / 7, GSM7_SINGLE_SEPTETS);
        assert_eq!(SEGMENT_OCTETS / 2, UCS2_SINGLE_UNITS);
    }

    #[test]
    fn sixteen_bit_reference_costs_one_unit_per_part() {
        assert_eq!(Encoding::Gsm7.multi_limit_with_udh(UDH_OCTETS), 153);
        assert_eq!(Encoding::Ucs2.multi_limit_with_udh(UDH_OCTETS), 67);
        assert_eq!(Encoding::Gsm7.multi_limit_with_udh(UDH16_OCTETS), 152);
        assert_eq!(Encoding::Ucs2.multi_limit_with_udh(UDH16_OCTETS), 66);
        // Single-part messages carry no header, so the 160/70 limits are unchanged.
        assert_eq!(
            segment_info_with_udh(&"a".repeat(160), UDH16_OCTETS).num_segments,
            1
        );
        // 306 septets: two parts of 153, but three of at most 152.
        let body = "a".repeat(306);
        assert_eq!(segment_info(&body).num_segments, 2);
        assert_eq!(segment_info_with_udh(&body, UDH16_OCTETS).num_segments, 3);
        let parts = split_with_udh(&body, UDH16_OCTETS);
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].units(), 152);
        let body = "ç".repeat(134);
        assert_eq!(segment_info_with_udh(&body, UDH16_OCTETS).num_segments, 3);
        assert_eq!(split_with_udh(&body, UDH16_OCTETS)[0].units(), 66);
    }

    #[test]
    fn absurd_header_sizes_still_fit_one_character_per_part() {
        assert_eq!(Encoding::Gsm7.multi_limit_with_udh(u32::MAX), 4);
        assert_eq!(Encoding::Ucs2.multi_limit_with_udh(u32::MAX), 2);
        let body = "😀€".repeat(100);
        let parts = split_with_udh(&body, 200);
        assert!(parts.iter().all(|p| p.units() <= 2));
        assert_eq!(parts.iter().map(Segment::text).collect::<String>(), body);
    }

    #[test]
    fn char_count_is_scalar_values() {
        assert_eq!(char_count(""), 0);
        assert_eq!(char_count("héllo"), 5);
        assert_eq!(char_count(&"a".repeat(MAX_BODY_CHARS)), 1600);
    }
}
