//! Delivery receipts: the de-facto text form of SMPP 3.4 Appendix B, and message-id
//! matching across the hex/decimal confusion carriers are known for.
//!
//! ```text
//! id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...
//! ```
//!
//! Parsing is tolerant: keys in any case, any amount of whitespace between fields (and
//! between a key and its colon), `submit_date`/`submitdate` spellings, missing and
//! reordered fields. `text:` takes the rest of the string. Unknown `stat` values are kept.

use crate::pdu::{MessageState, SubmitSm, Tlvs};

/// The final (or intermediate) state a receipt reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReceiptStat {
    Delivered,
    Expired,
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
    Enroute,
    /// A value outside the spec, kept as sent.
    Other(String),
}

impl ReceiptStat {
    /// Case-insensitive; also accepts the long forms some SMSCs send (`DELIVERED`, …).
    pub fn parse(s: &str) -> Self {
        match s.trim().to_ascii_uppercase().as_str() {
            "DELIVRD" | "DELIVERED" => ReceiptStat::Delivered,
            "EXPIRED" => ReceiptStat::Expired,
            "DELETED" => ReceiptStat::Deleted,
            "UNDELIV" | "UNDELIVERABLE" => ReceiptStat::Undeliverable,
            "ACCEPTD" | "ACCEPTED" => ReceiptStat::Accepted,
            "UNKNOWN" => ReceiptStat::Unknown,
            "REJECTD" | "REJECTED" => ReceiptStat::Rejected,
            "ENROUTE" => ReceiptStat::Enroute,
            _ => ReceiptStat::Other(s.trim().to_owned()),
        }
    }

    /// The 7-character form used in receipts.
    pub fn as_str(&self) -> &str {
        match self {
            ReceiptStat::Delivered => "DELIVRD",
            ReceiptStat::Expired => "EXPIRED",
            ReceiptStat::Deleted => "DELETED",
            ReceiptStat::Undeliverable => "UNDELIV",
            ReceiptStat::Accepted => "ACCEPTD",
            ReceiptStat::Unknown => "UNKNOWN",
            ReceiptStat::Rejected => "REJECTD",
            ReceiptStat::Enroute => "ENROUTE",
            ReceiptStat::Other(s) => s,
        }
    }

    pub fn message_state(&self) -> Option<MessageState> {
        Some(match self {
            ReceiptStat::Delivered => MessageState::Delivered,
            ReceiptStat::Expired => MessageState::Expired,
            ReceiptStat::Deleted => MessageState::Deleted,
            ReceiptStat::Undeliverable => MessageState::Undeliverable,
            ReceiptStat::Accepted => MessageState::Accepted,
            ReceiptStat::Unknown => MessageState::Unknown,
            ReceiptStat::Rejected => MessageState::Rejected,
            ReceiptStat::Enroute => MessageState::Enroute,
            ReceiptStat::Other(_) => return None,
        })
    }

    pub fn from_message_state(state: MessageState) -> Self {
        match state {
            MessageState::Delivered => ReceiptStat::Delivered,
            MessageState::Expired => ReceiptStat::Expired,
            MessageState::Deleted => ReceiptStat::Deleted,
            MessageState::Undeliverable => ReceiptStat::Undeliverable,
            MessageState::Accepted => ReceiptStat::Accepted,
            MessageState::Unknown => ReceiptStat::Unknown,
            MessageState::Rejected => ReceiptStat::Rejected,
            MessageState::Enroute => ReceiptStat::Enroute,
        }
    }
}

/// A parsed delivery receipt. Every field is optional because carriers omit them freely;
/// values are kept as text (dates are `YYMMDDhhmm[ss]` in the carrier's time zone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryReceipt {
    pub id: Option<String>,
    pub sub: Option<String>,
    pub dlvrd: Option<String>,
    pub submit_date: Option<String>,
    pub done_date: Option<String>,
    pub stat: Option<ReceiptStat>,
    pub err: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// Key spellings; a space inside a key matches any run of whitespace or `_`, or nothing.
const KEYS: &[(&str, Key)] = &[
    ("submit date", Key::SubmitDate),
    ("done date", Key::DoneDate),
    ("id", Key::Id),
    ("sub", Key::Sub),
    ("dlvrd", Key::Dlvrd),
    ("stat", Key::Stat),
    ("err", Key::Err),
    ("text", Key::Text),
];

/// If a key starts at `at`, the offset just past its colon.
fn match_key(s: &[u8], at: usize, key: &str) -> Option<usize> {
    let mut i = at;
    for part in key.as_bytes().split(|b| *b == b' ').enumerate() {
        let (n, word) = part;
        if n > 0 {
            while s
                .get(i)
                .is_some_and(|b| b.is_ascii_whitespace() || *b == b'_')
            {
                i += 1;
            }
        }
        let end = i + word.len();
        if !s.get(i..end)?.eq_ignore_ascii_case(word) {
            return None;
        }
        i = end;
    }
    while s.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
        i += 1;
    }
    (s.get(i) == Some(&b':')).then_some(i + 1)
}

impl DeliveryReceipt {
    /// Parse the text form. `None` if not a single known key is present.
    pub fn parse(text: &str) -> Option<Self> {
        let s = text.as_bytes();
        // (key, key start, value start), in order of appearance.
        let mut found: Vec<(Key, usize, usize)> = Vec::new();
        let mut i = 0;
        while i < s.len() {
            let at_boundary = i == 0 || s.get(i - 1).is_some_and(|b| b.is_ascii_whitespace());
            if at_boundary
                && let Some((key, value_start)) = KEYS
                    .iter()
                    .find_map(|(k, key)| Some((*key, match_key(s, i, k)?)))
            {
                found.push((key, i, value_start));
                if key == Key::Text {
                    break;
                }
                i = value_start;
                continue;
            }
            i += 1;
        }
        if found.is_empty() {
            return None;
        }
        let mut r = DeliveryReceipt::default();
        for (n, (key, _, value_start)) in found.iter().enumerate() {
            let end = found.get(n + 1).map_or(s.len(), |next| next.1);
            // Key boundaries are ASCII, so these are char boundaries.
            let value = text.get(*value_start..end).unwrap_or_default().trim();
            let value = value.to_owned();
            let slot = match key {
                Key::Id => &mut r.id,
                Key::Sub => &mut r.sub,
                Key::Dlvrd => &mut r.dlvrd,
                Key::SubmitDate => &mut r.submit_date,
                Key::DoneDate => &mut r.done_date,
                Key::Err => &mut r.err,
                Key::Text => &mut r.text,
                Key::Stat => {
                    if r.stat.is_none() {
                        r.stat = Some(ReceiptStat::parse(&value));
                    }
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        Some(r)
    }

    /// A receipt for the simulator: `sub:001`, `dlvrd` 001 when delivered else 000, and
    /// `err:000` unless set otherwise.
    pub fn new(
        id: impl Into<String>,
        stat: ReceiptStat,
        submit_date: impl Into<String>,
        done_date: impl Into<String>,
    ) -> Self {
        let delivered = stat == ReceiptStat::Delivered;
        DeliveryReceipt {
            id: Some(id.into()),
            sub: Some("001".into()),
            dlvrd: Some(if delivered { "001" } else { "000" }.into()),
            submit_date: Some(submit_date.into()),
            done_date: Some(done_date.into()),
            stat: Some(stat),
            err: Some("000".into()),
            text: Some(String::new()),
        }
    }

    /// The text form, fields in the Appendix B order; absent fields are left out.
    pub fn to_text(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut push = |k: &str, v: Option<&str>| {
            if let Some(v) = v {
                parts.push(format!("{k}:{v}"));
            }
        };
        push("id", self.id.as_deref());
        push("sub", self.sub.as_deref());
        push("dlvrd", self.dlvrd.as_deref());
        push("submit date", self.submit_date.as_deref());
        push("done date", self.done_date.as_deref());
        push("stat", self.stat.as_ref().map(ReceiptStat::as_str));
        push("err", self.err.as_deref());
        push("text", self.text.as_deref());
        parts.join(" ")
    }

    /// The receipt carried by a `deliver_sm` (`esm_class` bit 2 set): the text in
    /// `short_message` (or `message_payload`), with the `receipted_message_id` and
    /// `message_state` TLVs taking precedence over the text when present.
    pub fn from_deliver_sm(sm: &SubmitSm) -> Option<Self> {
        let body = sm.tlvs.message_payload().unwrap_or(&sm.short_message);
        let text = String::from_utf8_lossy(body);
        let mut r = DeliveryReceipt::parse(&text).unwrap_or_default();
        apply_tlvs(&mut r, &sm.tlvs);
        (r != DeliveryReceipt::default()).then_some(r)
    }
}

fn apply_tlvs(r: &mut DeliveryReceipt, tlvs: &Tlvs) {
    if let Some(id) = tlvs.receipted_message_id() {
        r.id = Some(id.to_owned());
    }
    if let Some(state) = tlvs.message_state().and_then(MessageState::from_u8) {
        r.stat = Some(ReceiptStat::from_message_state(state));
    }
}

/// `esm_class` bit 2 (value 0x04): this `deliver_sm` is a delivery receipt.
pub fn is_receipt(esm_class: u8) -> bool {
    esm_class & 0x3C == 0x04
}

/// A message id reduced to the forms it can be compared in.
///
/// # The matching rule
///
/// SMSCs disagree on how they print the id they returned in `submit_sm_resp`: some repeat
/// it, some print the same number in decimal in the receipt, some in hex (with or without
/// `0x`, in either case, with leading zeros). Two ids **match** when
///
/// 1. their texts are equal after trimming, ASCII-lowercasing, dropping a `0x` prefix and
///    leading zeros; or
/// 2. a numeric reading of one equals a numeric reading of the other, where an id's numeric
///    readings are: hex only, if it had a `0x` prefix or contains `a`–`f`; decimal **and**
///    hex, if it is all decimal digits; none otherwise (at most 32 hex / 38 decimal digits).
///
/// So `"0x1A"`, `"1a"`, `"001A"` and `"26"` all match each other, and `"26"` also matches
/// `"0x26"` (the digits could be either). Rule 2 is deliberately permissive: the id space of
/// one carrier is what is searched, and a false match needs two live messages whose ids
/// are the same number read in the two bases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedMessageId {
    /// Trimmed, lowercase, without `0x` and leading zeros (`"0"` for all-zero ids).
    pub text: String,
    pub hex: Option<u128>,
    pub decimal: Option<u128>,
}

impl NormalizedMessageId {
    pub fn new(id: &str) -> Self {
        let lower = id.trim().to_ascii_lowercase();
        let (prefixed, digits) = match lower.strip_prefix("0x") {
            Some(rest) if !rest.is_empty() => (true, rest),
            _ => (false, lower.as_str()),
        };
        let stripped = digits.trim_start_matches('0');
        let text = if stripped.is_empty() && !digits.is_empty() {
            "0".to_owned()
        } else {
            stripped.to_owned()
        };
        let all_hex = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_hexdigit());
        let all_dec = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        let hex = if all_hex {
            u128::from_str_radix(digits, 16).ok()
        } else {
            None
        };
        let decimal = if all_dec && !prefixed {
            digits.parse::<u128>().ok()
        } else {
            None
        };
        NormalizedMessageId { text, hex, decimal }
    }

    pub fn matches(&self, other: &NormalizedMessageId) -> bool {
        if self.text == other.text {
            return true;
        }
        let mine = [self.hex, self.decimal];
        let theirs = [other.hex, other.decimal];
        mine.iter()
            .flatten()
            .any(|a| theirs.iter().flatten().any(|b| a == b))
    }
}

/// Whether two message ids name the same message under the rule of [`NormalizedMessageId`].
pub fn message_ids_match(a: &str, b: &str) -> bool {
    NormalizedMessageId::new(a).matches(&NormalizedMessageId::new(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_appendix_b_form() {
        let r = DeliveryReceipt::parse(
            "id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:Hello world",
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("0123456789"));
        assert_eq!(r.sub.as_deref(), Some("001"));
        assert_eq!(r.dlvrd.as_deref(), Some("001"));
        assert_eq!(r.submit_date.as_deref(), Some("2401011200"));
        assert_eq!(r.done_date.as_deref(), Some("2401011201"));
        assert_eq!(r.stat, Some(ReceiptStat::Delivered));
        assert_eq!(r.err.as_deref(), Some("000"));
        assert_eq!(r.text.as_deref(), Some("Hello world"));
    }

    #[test]
    fn tolerates_case_spacing_and_missing_fields() {
        let r = DeliveryReceipt::parse(
            "ID: 1a2b   Submit_Date:2401011200  DONE  DATE : 2401011201 Stat:undeliv",
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("1a2b"));
        assert_eq!(r.submit_date.as_deref(), Some("2401011200"));
        assert_eq!(r.done_date.as_deref(), Some("2401011201"));
        assert_eq!(r.stat, Some(ReceiptStat::Undeliverable));
        assert_eq!(r.err, None);
        assert_eq!(r.text, None);
        assert_eq!(DeliveryReceipt::parse("no receipt here"), None);
    }

    #[test]
    fn text_takes_the_rest_even_if_it_looks_like_keys() {
        let r = DeliveryReceipt::parse("stat:EXPIRED text:id:5 stat:DELIVRD").unwrap();
        assert_eq!(r.stat, Some(ReceiptStat::Expired));
        assert_eq!(r.text.as_deref(), Some("id:5 stat:DELIVRD"));
        assert_eq!(r.id, None);
    }

    #[test]
    fn every_stat_value_round_trips() {
        for s in [
            "DELIVRD", "EXPIRED", "DELETED", "UNDELIV", "ACCEPTD", "UNKNOWN", "REJECTD", "ENROUTE",
        ] {
            let stat = ReceiptStat::parse(&s.to_lowercase());
            assert!(!matches!(stat, ReceiptStat::Other(_)), "{s}");
            assert_eq!(stat.as_str(), s);
            assert_eq!(
                ReceiptStat::from_message_state(stat.message_state().unwrap()),
                stat
            );
        }
        assert_eq!(
            ReceiptStat::parse("WEIRD"),
            ReceiptStat::Other("WEIRD".into())
        );
    }

    #[test]
    fn built_text_parses_back() {
        let r = DeliveryReceipt::new("abc123", ReceiptStat::Delivered, "2401011200", "2401011201");
        let text = r.to_text();
        assert_eq!(
            text,
            "id:abc123 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:"
        );
        assert_eq!(DeliveryReceipt::parse(&text).unwrap(), r);
    }

    #[test]
    fn hex_and_decimal_ids_match() {
        assert!(message_ids_match("0x1A", "1a"));
        assert!(message_ids_match("1a", "26"));
        assert!(message_ids_match("0x1A", "26"));
        assert!(message_ids_match("001A", "26"));
        assert!(message_ids_match(" ABC-1 ", "abc-1"));
        assert!(!message_ids_match("0x26", "27"));
        assert!(!message_ids_match("1b", "26"));
        assert!(!message_ids_match("abc-1", "abc-2"));
        assert!(message_ids_match("000", "0"));
    }

    #[test]
    fn deliver_sm_tlvs_take_precedence() {
        let mut sm = SubmitSm {
            esm_class: 0x04,
            short_message: b"id:1 stat:ENROUTE".to_vec(),
            ..SubmitSm::default()
        };
        sm.tlvs.set_receipted_message_id("0x1");
        sm.tlvs.set_message_state(MessageState::Delivered);
        assert!(is_receipt(sm.esm_class));
        let r = DeliveryReceipt::from_deliver_sm(&sm).unwrap();
        assert_eq!(r.id.as_deref(), Some("0x1"));
        assert_eq!(r.stat, Some(ReceiptStat::Delivered));
    }
}
