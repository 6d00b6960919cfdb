//! Message text ↔ SMPP short messages: encoding a body into the `submit_sm` PDUs a carrier
//! needs, decoding received `deliver_sm`/`data_sm` text, and reassembling concatenated
//! messages.
//!
//! # Outbound
//!
//! [`encode_submits`] picks the alphabet the way [`tern_sms`] does (GSM 03.38 when every
//! character is in the default alphabet or its extension table, UCS-2 otherwise, optionally
//! Latin-1 in between) and splits with [`tern_sms::split_with_udh`], so that for the default
//! [`TextOptions`] the number of PDUs is exactly [`tern_sms::segment_info`]'s
//! `num_segments`, the figure reported to the customer as `NumSegments`. Escape sequences
//! and surrogate pairs are never split across parts. Long messages travel as
//! [`LongMessageMode`] says: a concatenation UDH with an 8- or 16-bit reference, the
//! `sar_*` TLVs, or one `submit_sm` whose `message_payload` carries the whole body.
//!
//! # Inbound
//!
//! [`read_part`] turns a `deliver_sm` or `data_sm` into a [`Part`]: its user data without
//! the UDH, the alphabet named by `data_coding`, and the concatenation information from the
//! UDH (IEI 0x00 or 0x08) or the `sar_*` TLVs. [`Reassembler`] collects the parts of a
//! concatenated message and yields the text once every part is present, or what arrived when
//! the message times out or must be evicted. It is sans-IO like the rest of the crate: the
//! caller passes the clock in.
//!
//! Nothing here trusts the network: no input makes these functions panic, and the
//! reassembler's memory is bounded by [`ReassemblerConfig`].

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::{Duration, Instant};

use tern_sms::{Encoding, SEGMENT_OCTETS, UDH_OCTETS, UDH16_OCTETS, gsm7, latin1, ucs2};

use crate::pdu::{Address, DataSm, SubmitSm, Tlvs, tag};

/// `esm_class` bit: the user data begins with a User Data Header (UDHI).
pub const ESM_CLASS_UDHI: u8 = 0x40;

/// `data_coding` values (SMPP 3.4 §5.2.19) this module produces or names.
pub mod data_coding {
    /// SMSC default alphabet; taken to be GSM 03.38, as every carrier we know does.
    pub const DEFAULT: u8 = 0x00;
    /// IA5 (CCITT T.50) / ASCII.
    pub const IA5: u8 = 0x01;
    /// Octet unspecified (8-bit binary), the 3.4 value.
    pub const BINARY_2: u8 = 0x02;
    /// ISO-8859-1.
    pub const LATIN1: u8 = 0x03;
    /// Octet unspecified (8-bit binary), the GSM 03.38 value.
    pub const BINARY_4: u8 = 0x04;
    /// UCS-2, sent in practice as UTF-16BE (surrogate pairs for astral characters).
    pub const UCS2: u8 = 0x08;
}

/// Information element identifier of the 8-bit-reference concatenation IE (TS 23.040).
const IEI_CONCAT_8: u8 = 0x00;
/// Information element identifier of the 16-bit-reference concatenation IE.
const IEI_CONCAT_16: u8 = 0x08;

/// Largest `message_payload` value: a TLV length is two octets.
const MAX_PAYLOAD_OCTETS: usize = u16::MAX as usize;

/// How a message longer than one SMS is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LongMessageMode {
    /// One `submit_sm` per part, each starting with a 6-octet UDH (IEI 0x00, 8-bit
    /// reference) and `esm_class` UDHI set. What handsets and most carriers expect, and the
    /// layout Twilio's segment counts assume.
    #[default]
    Udh8,
    /// Like `Udh8` with a 7-octet UDH (IEI 0x08, 16-bit reference). The extra octet costs a
    /// part one GSM-7 septet (152) or one UCS-2 unit (66), so a body can need one part more
    /// than [`tern_sms::segment_info`] reports.
    Udh16,
    /// One `submit_sm` per part without a UDH; `sar_msg_ref_num`, `sar_total_segments` and
    /// `sar_segment_seqnum` TLVs tell the SMSC, which builds the UDH itself. Parts are split
    /// as for `Udh8`, leaving the SMSC room for its 6-octet header.
    Sar,
    /// One `submit_sm` with an empty `short_message` and the whole encoded body in the
    /// `message_payload` TLV; the SMSC splits it.
    Payload,
}

/// How text is put into `submit_sm` PDUs for one carrier. Plain data: the configuration
/// layer maps its own (serde) settings onto it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TextOptions {
    /// GSM-7 as packed septets (7 bits each, TP-UD layout: UDH, fill bits, septets) instead
    /// of the usual one septet per octet. Applies to received GSM-7 too, see [`read_part`].
    /// `data_coding` stays 0 either way.
    pub gsm7_packed: bool,
    /// A body that is not GSM-7 but fits ISO-8859-1 goes as Latin-1 (`data_coding` 3, 140
    /// octets in one part, 134 per part with an 8-bit UDH) rather than UCS-2.
    pub latin1_data_coding: bool,
    /// How bodies longer than one SMS are sent.
    pub long: LongMessageMode,
}

/// Why text could not be encoded or a received short message read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A concatenated message numbers its parts in one octet.
    #[error("the body needs {parts} parts; a concatenated message has at most 255")]
    TooManyParts { parts: usize },
    /// `message_payload` is a TLV, whose length is two octets.
    #[error("the encoded body is {len} octets; message_payload holds at most 65535")]
    PayloadTooLong { len: usize },
    /// `esm_class` says the user data starts with a UDH, but the data is shorter than the
    /// header's length octet says (or empty).
    #[error("the UDH needs {needed} octets but the user data has {len}")]
    UdhTruncated { needed: usize, len: usize },
    /// A concatenation UDH or the `sar_*` TLVs name segment `seq` of `total`, which cannot
    /// exist (`total` 0, `seq` 0 or `seq` > `total`).
    #[error("invalid concatenation: segment {seq} of {total}")]
    InvalidConcat { total: u8, seq: u8 },
}

// ---------------------------------------------------------------------------------------
// Alphabets
// ---------------------------------------------------------------------------------------

/// The alphabet of a short message's user data, as named by `data_coding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// GSM 03.38 default alphabet, one septet per octet.
    Gsm7,
    /// IA5 / ASCII.
    Ascii,
    /// ISO-8859-1.
    Latin1,
    /// UCS-2 / UTF-16BE.
    Ucs2,
    /// 8-bit data with no character meaning (binary, compressed, or a `data_coding` we do
    /// not know). Decoded as Latin-1: that is lossless, so the octets can be recovered with
    /// `tern_sms::latin1::encode(&text)`, and printable ASCII stays readable — which hex
    /// would not be for the many carriers that mislabel text.
    Octets,
}

impl Charset {
    /// The alphabet named by `data_coding`.
    ///
    /// SMPP 3.4 defines 0x00–0x0E; carriers also pass GSM 03.38 data coding schemes through
    /// (0x10–0x1F for flash and other message classes, 0xC0–0xEF for message waiting,
    /// 0xF0–0xFF for data coding/message class), so those are read by their alphabet bits.
    /// Everything else, compressed data included, is [`Charset::Octets`].
    pub fn from_data_coding(data_coding: u8) -> Self {
        match data_coding {
            data_coding::DEFAULT => Charset::Gsm7,
            data_coding::IA5 => Charset::Ascii,
            data_coding::LATIN1 => Charset::Latin1,
            data_coding::UCS2 => Charset::Ucs2,
            // General data coding and automatic-deletion groups (0x00–0x7F) beyond the
            // values SMPP defines itself: bit 5 marks compression, bits 3..2 the alphabet.
            0x10..=0x7F if data_coding & 0x20 == 0 => match (data_coding >> 2) & 0x03 {
                0 => Charset::Gsm7,
                2 => Charset::Ucs2,
                _ => Charset::Octets,
            },
            // Message waiting indication: discard/store with the default alphabet, or UCS-2.
            0xC0..=0xDF => Charset::Gsm7,
            0xE0..=0xEF => Charset::Ucs2,
            // Data coding/message class: bit 2 selects 8-bit data over the default alphabet.
            0xF0..=0xFF if data_coding & 0x04 == 0 => Charset::Gsm7,
            _ => Charset::Octets,
        }
    }

    /// Decode user data in this alphabet (without UDH; GSM-7 unpacked). Never panics:
    /// every decoder is total (invalid UTF-16 becomes U+FFFD).
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Gsm7 => gsm7::decode_unpacked(bytes),
            // IA5 is ASCII; an octet above 0x7F is not IA5 at all, and Latin-1 keeps it.
            Charset::Ascii | Charset::Latin1 | Charset::Octets => latin1::decode(bytes),
            Charset::Ucs2 => ucs2::decode(bytes),
        }
    }

    /// Whether joining two parts' octets can split a character's code units; UTF-16 needs
    /// an even number of octets before the join.
    fn aligned(self, len: usize) -> bool {
        self != Charset::Ucs2 || len.is_multiple_of(2)
    }
}

/// Decode a `short_message` (without UDH) by its `data_coding`: 0 as GSM 03.38 with one
/// septet per octet, 1 as ASCII, 3 as Latin-1, 8 as UTF-16BE with surrogate pairs, binary
/// (2, 4) and unknown values as Latin-1 (see [`Charset::Octets`] for why). Never panics.
pub fn decode_short_message(data_coding: u8, bytes: &[u8]) -> String {
    Charset::from_data_coding(data_coding).decode(bytes)
}

// ---------------------------------------------------------------------------------------
// Outbound
// ---------------------------------------------------------------------------------------

/// The `submit_sm` PDUs that carry `body`, one per part in order.
///
/// Every PDU is a clone of `template` (addresses, `registered_delivery`, `service_type`,
/// other TLVs, … as the caller set them) in which this function owns `data_coding`,
/// `short_message`, the UDHI bit of `esm_class` and the `message_payload` and `sar_*` TLVs.
/// A body that fits one SMS is one PDU without UDH or SAR TLVs (except in
/// [`LongMessageMode::Payload`], which always uses `message_payload`). `reference` is the
/// concatenation reference (`reference as u8` with [`LongMessageMode::Udh8`]); the caller
/// varies it per message so a handset does not mix two messages' parts.
///
/// With the default [`TextOptions`] (and with [`LongMessageMode::Sar`]) the number of PDUs
/// is [`tern_sms::segment_info`]`(body).num_segments`.
pub fn encode_submits(
    template: &SubmitSm,
    body: &str,
    reference: u16,
    opts: &TextOptions,
) -> Result<Vec<SubmitSm>, TextError> {
    let (charset, parts) = encode_parts(body, opts);
    let total =
        u8::try_from(parts.len()).map_err(|_| TextError::TooManyParts { parts: parts.len() })?;
    let data_coding = match charset {
        Charset::Gsm7 => Encoding::Gsm7.data_coding(),
        Charset::Ucs2 => Encoding::Ucs2.data_coding(),
        _ => data_coding::LATIN1,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (seq, payload) in (1..=total).zip(parts) {
        let mut sm = template.clone();
        sm.data_coding = data_coding;
        sm.esm_class &= !ESM_CLASS_UDHI;
        for t in [
            tag::MESSAGE_PAYLOAD,
            tag::SAR_MSG_REF_NUM,
            tag::SAR_TOTAL_SEGMENTS,
            tag::SAR_SEGMENT_SEQNUM,
        ] {
            sm.tlvs.remove(t);
        }
        let udh = match opts.long {
            _ if total == 1 => Vec::new(),
            LongMessageMode::Udh8 => vec![0x05, IEI_CONCAT_8, 0x03, reference as u8, total, seq],
            LongMessageMode::Udh16 => {
                let [hi, lo] = reference.to_be_bytes();
                vec![0x06, IEI_CONCAT_16, 0x04, hi, lo, total, seq]
            }
            LongMessageMode::Sar => {
                sm.tlvs.set_sar_msg_ref_num(reference);
                sm.tlvs.set_sar_total_segments(total);
                sm.tlvs.set_sar_segment_seqnum(seq);
                Vec::new()
            }
            // `encode_parts` never splits in this mode.
            LongMessageMode::Payload => Vec::new(),
        };
        if !udh.is_empty() {
            sm.esm_class |= ESM_CLASS_UDHI;
        }
        let data = if charset == Charset::Gsm7 && opts.gsm7_packed {
            gsm7::pack_with_header(&udh, &payload)
        } else {
            let mut data = udh;
            data.extend_from_slice(&payload);
            data
        };
        if opts.long == LongMessageMode::Payload {
            if data.len() > MAX_PAYLOAD_OCTETS {
                return Err(TextError::PayloadTooLong { len: data.len() });
            }
            sm.short_message = Vec::new();
            sm.tlvs.set_message_payload(data);
        } else {
            sm.short_message = data;
        }
        out.push(sm);
    }
    Ok(out)
}

/// The alphabet for `body` and its parts' user data (GSM-7 unpacked), without headers.
fn encode_parts(body: &str, opts: &TextOptions) -> (Charset, Vec<Vec<u8>>) {
    let latin1 = if opts.latin1_data_coding && !tern_sms::is_gsm7(body) {
        latin1::encode(body)
    } else {
        None
    };
    if opts.long == LongMessageMode::Payload {
        // The SMSC splits; we only encode.
        return match (gsm7::encode_unpacked(body), latin1) {
            (Some(septets), _) => (Charset::Gsm7, vec![septets]),
            (None, Some(octets)) => (Charset::Latin1, vec![octets]),
            (None, None) => (Charset::Ucs2, vec![ucs2::encode(body)]),
        };
    }
    let udh_octets = match opts.long {
        LongMessageMode::Udh16 => UDH16_OCTETS,
        _ => UDH_OCTETS,
    };
    if let Some(octets) = latin1 {
        // One octet per character: no escape or surrogate to keep whole, so plain chunks.
        let single = SEGMENT_OCTETS as usize;
        if octets.len() <= single {
            return (Charset::Latin1, vec![octets]);
        }
        let per_part = SEGMENT_OCTETS.saturating_sub(udh_octets) as usize;
        return (
            Charset::Latin1,
            octets.chunks(per_part).map(<[u8]>::to_vec).collect(),
        );
    }
    let segments = tern_sms::split_with_udh(body, udh_octets);
    let charset = match segments.first().map(|s| s.encoding) {
        Some(Encoding::Ucs2) => Charset::Ucs2,
        _ => Charset::Gsm7,
    };
    (charset, segments.into_iter().map(|s| s.payload).collect())
}

// ---------------------------------------------------------------------------------------
// Inbound
// ---------------------------------------------------------------------------------------

/// Which part of which concatenated message a short message is. Always valid:
/// `1 <= seq <= total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Concat {
    reference: u16,
    total: u8,
    seq: u8,
}

impl Concat {
    /// `None` unless `1 <= seq <= total` (so `total` is at least 1; it cannot exceed 255,
    /// the limit of the one-octet fields that carry it).
    pub fn new(reference: u16, total: u8, seq: u8) -> Option<Self> {
        (seq >= 1 && seq <= total).then_some(Concat {
            reference,
            total,
            seq,
        })
    }

    /// The concatenation reference; an 8-bit one widened.
    pub fn reference(self) -> u16 {
        self.reference
    }

    /// Number of parts of the message.
    pub fn total(self) -> u8 {
        self.total
    }

    /// This part's number, from 1.
    pub fn seq(self) -> u8 {
        self.seq
    }
}

/// The fields of a `deliver_sm` (or `submit_sm`) or `data_sm` that carry text, so that
/// [`read_part`] serves both; `data_sm` has no `short_message`.
#[derive(Debug, Clone, Copy)]
pub struct InboundSm<'a> {
    pub source: &'a Address,
    pub destination: &'a Address,
    pub esm_class: u8,
    pub data_coding: u8,
    pub short_message: &'a [u8],
    pub tlvs: &'a Tlvs,
}

impl<'a> From<&'a SubmitSm> for InboundSm<'a> {
    fn from(sm: &'a SubmitSm) -> Self {
        InboundSm {
            source: &sm.source,
            destination: &sm.destination,
            esm_class: sm.esm_class,
            data_coding: sm.data_coding,
            short_message: &sm.short_message,
            tlvs: &sm.tlvs,
        }
    }
}

impl<'a> From<&'a DataSm> for InboundSm<'a> {
    fn from(sm: &'a DataSm) -> Self {
        InboundSm {
            source: &sm.source,
            destination: &sm.destination,
            esm_class: sm.esm_class,
            data_coding: sm.data_coding,
            short_message: &[],
            tlvs: &sm.tlvs,
        }
    }
}

/// One received short message: who sent it to whom, its user data and, when it is part of
/// a concatenated message, which part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub source: Address,
    pub destination: Address,
    pub charset: Charset,
    /// User data without the UDH; GSM-7 as one septet per octet even when it was packed.
    pub payload: Vec<u8>,
    pub concat: Option<Concat>,
}

impl Part {
    /// This part's text on its own. For a concatenated message prefer
    /// [`Reassembler::push`], which decodes the joined user data (a sender may have split
    /// an escape sequence or surrogate pair between parts).
    pub fn text(&self) -> String {
        self.charset.decode(&self.payload)
    }
}

/// Read the text-carrying part of a `deliver_sm`/`data_sm`.
///
/// The user data is `short_message`, or the `message_payload` TLV when `short_message` is
/// empty (always, for `data_sm`). When `esm_class` has UDHI set the UDH is stripped and a
/// concatenation IE (IEI 0x00 or 0x08; the last one wins, as TS 23.040 says of repeated
/// IEs) gives the part's place; otherwise all three `sar_*` TLVs do, if present. Other IEs
/// (ports, …) and IEs that overrun the header are ignored.
///
/// `opts.gsm7_packed` says the carrier packs GSM-7: the septets are then unpacked after the
/// UDH and its fill bits; because `sm_length` counts octets, a final `@` that may be seven
/// padding bits is dropped ([`tern_sms::gsm7::unpack_all`]).
///
/// Errors: a UDH longer than the user data, and concatenation numbers that cannot exist
/// (total 0, segment 0 or beyond the total). Never panics.
pub fn read_part<'a>(sm: impl Into<InboundSm<'a>>, opts: &TextOptions) -> Result<Part, TextError> {
    let sm = sm.into();
    let data = if sm.short_message.is_empty() {
        sm.tlvs.message_payload().unwrap_or_default()
    } else {
        sm.short_message
    };
    let mut concat = None;
    let mut header_len = 0;
    if sm.esm_class & ESM_CLASS_UDHI != 0 {
        let Some((&udhl, rest)) = data.split_first() else {
            return Err(TextError::UdhTruncated { needed: 1, len: 0 });
        };
        let Some(ies) = rest.get(..usize::from(udhl)) else {
            return Err(TextError::UdhTruncated {
                needed: 1 + usize::from(udhl),
                len: data.len(),
            });
        };
        header_len = 1 + usize::from(udhl);
        concat = udh_concat(ies);
    }
    if concat.is_none() {
        let t = sm.tlvs;
        if let (Some(r), Some(total), Some(seq)) = (
            t.sar_msg_ref_num(),
            t.sar_total_segments(),
            t.sar_segment_seqnum(),
        ) {
            concat = Some((r, total, seq));
        }
    }
    let concat = match concat {
        None => None,
        Some((reference, total, seq)) => Some(
            Concat::new(reference, total, seq).ok_or(TextError::InvalidConcat { total, seq })?,
        ),
    };
    let charset = Charset::from_data_coding(sm.data_coding);
    let payload = if charset == Charset::Gsm7 && opts.gsm7_packed {
        gsm7::unpack_all(data, header_len)
    } else {
        data.get(header_len..).unwrap_or_default().to_vec()
    };
    Ok(Part {
        source: sm.source.clone(),
        destination: sm.destination.clone(),
        charset,
        payload,
        concat,
    })
}

/// The `(reference, total, seq)` of the last concatenation IE among a UDH's IEs (without
/// the UDHL octet), unvalidated.
fn udh_concat(mut ies: &[u8]) -> Option<(u16, u8, u8)> {
    let mut found = None;
    while let [iei, len, rest @ ..] = ies {
        let len = usize::from(*len);
        let Some(value) = rest.get(..len) else {
            // The IE claims more octets than the header holds: nothing after it is reliable.
            break;
        };
        match (*iei, value) {
            (IEI_CONCAT_8, &[r, total, seq]) => found = Some((u16::from(r), total, seq)),
            (IEI_CONCAT_16, &[hi, lo, total, seq]) => {
                found = Some((u16::from_be_bytes([hi, lo]), total, seq));
            }
            _ => {}
        }
        ies = rest.get(len..).unwrap_or_default();
    }
    found
}

// ---------------------------------------------------------------------------------------
// Reassembly
// ---------------------------------------------------------------------------------------

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassemblerConfig {
    /// How long after its first part arrived an incomplete message is given up and
    /// delivered as it is. Counted from the first part, not the latest, so that a trickle
    /// of parts cannot hold memory forever; SMSCs send a message's parts back to back.
    /// Also how long a completed message's parts are remembered to drop late duplicates.
    pub timeout: Duration,
    /// Incomplete messages held at once (at least 1 is used); a new one beyond this evicts
    /// the oldest, which is delivered incomplete.
    pub max_pending: usize,
    /// User-data octets one incomplete message may hold; a part that would exceed this
    /// delivers the message, incomplete, at once. 255 parts of 255 octets fit the default.
    pub max_message_bytes: usize,
}

impl Default for ReassemblerConfig {
    fn default() -> Self {
        ReassemblerConfig {
            timeout: Duration::from_secs(60),
            max_pending: 1024,
            max_message_bytes: 64 * 1024,
        }
    }
}

/// A message ready for delivery: complete, or given up on (timed out, evicted, or over
/// the size limit) with the parts that arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembled {
    /// Addresses as in the first part received.
    pub source: Address,
    pub destination: Address,
    /// The parts' text in segment order. Contiguous runs of parts are decoded as one
    /// (so an escape sequence or surrogate pair split between parts survives); a missing
    /// part leaves no marker in the text, see `missing`.
    pub text: String,
    /// The concatenation reference; `None` for a message that was not concatenated.
    pub reference: Option<u16>,
    /// Parts the message has (1 when not concatenated).
    pub total: u8,
    /// Segment numbers that never arrived, ascending; empty when the message is complete.
    pub missing: Vec<u8>,
}

impl Assembled {
    /// Whether every part arrived.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }
}

/// What identifies one concatenated message: sender, recipient, reference and part count
/// (a different total under the same reference is a different message). Addresses are
/// compared by digits only: a carrier may vary TON/NPI between parts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    source: String,
    destination: String,
    reference: u16,
    total: u8,
}

struct Pending {
    id: u64,
    first_seen: Instant,
    source: Address,
    destination: Address,
    /// One slot per segment; `len() == total`.
    parts: Vec<Option<(Charset, Vec<u8>)>>,
    received: usize,
    bytes: usize,
}

/// A completed message's part digests, kept for `timeout` to recognise late duplicates
/// (an SMSC that missed our `deliver_sm_resp` sends the part again).
struct Completed {
    id: u64,
    done_at: Instant,
    digests: Vec<u64>,
}

/// Collects the parts of concatenated messages. Feed it every received [`Part`] with
/// [`push`](Self::push), and call [`expire`](Self::expire) when
/// [`next_deadline`](Self::next_deadline) passes.
///
/// Parts may arrive in any order; a duplicate of a part already held, or of a part of a
/// message completed less than `timeout` ago (same segment, same user data), is dropped.
/// Memory is bounded by `max_pending × max_message_bytes` plus as many completed
/// messages' digests.
pub struct Reassembler {
    config: ReassemblerConfig,
    pending: HashMap<Key, Pending>,
    /// Pending keys by insertion, oldest first, for eviction and expiry.
    order: BTreeMap<u64, Key>,
    completed: HashMap<Key, Completed>,
    completed_order: BTreeMap<u64, Key>,
    next_id: u64,
}

impl Reassembler {
    pub fn new(config: ReassemblerConfig) -> Self {
        Reassembler {
            config,
            pending: HashMap::new(),
            order: BTreeMap::new(),
            completed: HashMap::new(),
            completed_order: BTreeMap::new(),
            next_id: 0,
        }
    }

    /// Incomplete messages currently held.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Add a received part.
    ///
    /// Returns the message when this part completes it (a part that is not concatenated,
    /// or is part 1 of 1, is complete at once). Otherwise it may return *another* message,
    /// incomplete: the oldest pending one, evicted because this part starts a new message
    /// beyond `max_pending`; or this part's own message when its user data would exceed
    /// `max_message_bytes`. Only one of these can happen per call, so one `Option` suffices.
    /// Duplicates return `None`.
    pub fn push(&mut self, part: Part, now: Instant) -> Option<Assembled> {
        let Some(concat) = part.concat.filter(|c| c.total() > 1) else {
            let text = part.text();
            return Some(Assembled {
                source: part.source,
                destination: part.destination,
                text,
                reference: part.concat.map(Concat::reference),
                total: 1,
                missing: Vec::new(),
            });
        };
        let key = Key {
            source: part.source.addr.clone(),
            destination: part.destination.addr.clone(),
            reference: concat.reference(),
            total: concat.total(),
        };
        // `Concat` guarantees 1 <= seq <= total.
        let slot = usize::from(concat.seq()).saturating_sub(1);
        let len = part.payload.len();

        if let Some(p) = self.pending.get_mut(&key) {
            let entry = p.parts.get_mut(slot)?;
            if entry.is_some() {
                return None;
            }
            *entry = Some((part.charset, part.payload));
            p.received += 1;
            p.bytes = p.bytes.saturating_add(len);
            if p.received >= p.parts.len() {
                let p = self.remove_pending(&key)?;
                let digests = p.parts.iter().map(digest).collect();
                self.remember_completed(key.clone(), digests, now);
                return Some(p.assemble(&key));
            }
            if p.bytes > self.config.max_message_bytes {
                return self.remove_pending(&key).map(|p| p.assemble(&key));
            }
            return None;
        }

        if let Some(c) = self.completed.get(&key) {
            let seen = Some((part.charset, part.payload.clone()));
            if c.digests.get(slot) == Some(&digest(&seen)) {
                return None;
            }
            // Same key, different data: the sender reused the reference for a new message.
            let id = c.id;
            self.completed.remove(&key);
            self.completed_order.remove(&id);
        }

        let mut parts = vec![None; usize::from(concat.total())];
        if let Some(entry) = parts.get_mut(slot) {
            *entry = Some((part.charset, part.payload));
        }
        let p = Pending {
            id: self.take_id(),
            first_seen: now,
            source: part.source,
            destination: part.destination,
            parts,
            received: 1,
            bytes: len,
        };
        if len > self.config.max_message_bytes {
            return Some(p.assemble(&key));
        }
        let evicted = if self.pending.len() >= self.config.max_pending.max(1) {
            self.evict_oldest()
        } else {
            None
        };
        self.order.insert(p.id, key.clone());
        self.pending.insert(key, p);
        evicted
    }

    /// Give up on messages whose first part arrived `timeout` or more before `now`, and
    /// return them incomplete, oldest first, with the parts that arrived in segment order.
    /// Delivering what arrived rather than dropping it is deliberate: the recipient of a
    /// message with a hole still gets most of it, and `missing` says what is lost.
    pub fn expire(&mut self, now: Instant) -> Vec<Assembled> {
        let timeout = self.config.timeout;
        let mut out = Vec::new();
        while let Some((&id, key)) = self.order.first_key_value() {
            let due = self
                .pending
                .get(key)
                .is_none_or(|p| now.saturating_duration_since(p.first_seen) >= timeout);
            if !due {
                break;
            }
            let key = key.clone();
            self.order.remove(&id);
            if let Some(p) = self.pending.remove(&key) {
                out.push(p.assemble(&key));
            }
        }
        while let Some((&id, key)) = self.completed_order.first_key_value() {
            let due = self
                .completed
                .get(key)
                .is_none_or(|c| now.saturating_duration_since(c.done_at) >= timeout);
            if !due {
                break;
            }
            let key = key.clone();
            self.completed_order.remove(&id);
            self.completed.remove(&key);
        }
        out
    }

    /// When [`expire`](Self::expire) next has work: the oldest pending message's or
    /// remembered completion's deadline. `None` when there is nothing to expire (or the
    /// deadline is beyond what `Instant` can represent).
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self.config.timeout;
        let pending = self
            .order
            .first_key_value()
            .and_then(|(_, k)| self.pending.get(k))
            .and_then(|p| p.first_seen.checked_add(timeout));
        let completed = self
            .completed_order
            .first_key_value()
            .and_then(|(_, k)| self.completed.get(k))
            .and_then(|c| c.done_at.checked_add(timeout));
        match (pending, completed) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    fn remove_pending(&mut self, key: &Key) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.order.remove(&p.id);
        Some(p)
    }

    fn evict_oldest(&mut self) -> Option<Assembled> {
        let (_, key) = self.order.pop_first()?;
        self.pending.remove(&key).map(|p| p.assemble(&key))
    }

    fn remember_completed(&mut self, key: Key, digests: Vec<u64>, now: Instant) {
        if self.completed.len() >= self.config.max_pending.max(1)
            && let Some((_, oldest)) = self.completed_order.pop_first()
        {
            self.completed.remove(&oldest);
        }
        let id = self.take_id();
        self.completed_order.insert(id, key.clone());
        if let Some(old) = self.completed.insert(
            key,
            Completed {
                id,
                done_at: now,
                digests,
            },
        ) {
            self.completed_order.remove(&old.id);
        }
    }
}

impl Default for Reassembler {
    fn default() -> Self {
        Reassembler::new(ReassemblerConfig::default())
    }
}

impl Pending {
    fn assemble(self, key: &Key) -> Assembled {
        let missing = (1..=key.total)
            .zip(&self.parts)
            .filter(|(_, p)| p.is_none())
            .map(|(seq, _)| seq)
            .collect();
        Assembled {
            source: self.source,
            destination: self.destination,
            text: join(&self.parts),
            reference: Some(key.reference),
            total: key.total,
            missing,
        }
    }
}

/// Decode parts in order, joining the user data of neighbouring parts in the same alphabet
/// before decoding, so that a character whose code units a sender split between two parts
/// decodes whole. A gap, a change of alphabet, or odd UTF-16 octets start a new run.
fn join(parts: &[Option<(Charset, Vec<u8>)>]) -> String {
    let mut text = String::new();
    let mut run: Option<(Charset, Vec<u8>)> = None;
    for part in parts {
        match (part, &mut run) {
            (Some((charset, bytes)), Some((run_charset, buf)))
                if charset == run_charset && charset.aligned(buf.len()) =>
            {
                buf.extend_from_slice(bytes);
            }
            (Some((charset, bytes)), _) => {
                if let Some((c, buf)) = run.replace((*charset, bytes.clone())) {
                    text.push_str(&c.decode(&buf));
                }
            }
            (None, _) => {
                if let Some((c, buf)) = run.take() {
                    text.push_str(&c.decode(&buf));
                }
            }
        }
    }
    if let Some((c, buf)) = run {
        text.push_str(&c.decode(&buf));
    }
    text
}

/// A part's identity for duplicate detection. `DefaultHasher::new()` has fixed keys, which
/// is fine here: a collision only makes a forged part look like a duplicate of a message
/// its sender already delivered.
fn digest(part: &Option<(Charset, Vec<u8>)>) -> u64 {
    let mut h = DefaultHasher::new();
    part.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Body, Pdu};

    fn template() -> SubmitSm {
        SubmitSm {
            source: Address::new(1, 1, "15550001111"),
            destination: Address::new(1, 1, "15550002222"),
            registered_delivery: 1,
            ..SubmitSm::default()
        }
    }

    fn opts(long: LongMessageMode) -> TextOptions {
        TextOptions {
            long,
            ..TextOptions::default()
        }
    }

    /// Encode, read every PDU back as a received message and reassemble.
    fn round_trip(body: &str, opts: &TextOptions) -> (Vec<SubmitSm>, Assembled) {
        let pdus = encode_submits(&template(), body, 0x1234, opts).unwrap();
        let mut r = Reassembler::default();
        let now = Instant::now();
        let mut done = None;
        for sm in &pdus {
            // Every PDU must be encodable on the wire.
            crate::pdu::to_bytes(&Pdu::new(1, Body::SubmitSm(sm.clone()))).unwrap();
            let part = read_part(sm, opts).unwrap();
            if let Some(a) = r.push(part, now) {
                assert!(done.is_none());
                done = Some(a);
            }
        }
        (pdus, done.unwrap())
    }

    #[test]
    fn short_gsm_body_is_one_plain_pdu() {
        let (pdus, a) = round_trip("Hello €", &TextOptions::default());
        assert_eq!(pdus.len(), 1);
        let sm = &pdus[0];
        assert_eq!(sm.data_coding, 0);
        assert_eq!(sm.esm_class & ESM_CLASS_UDHI, 0);
        assert_eq!(sm.short_message, b"Hello \x1b\x65");
        assert_eq!(sm.registered_delivery, 1);
        assert_eq!(sm.destination.addr, "15550002222");
        assert!(sm.tlvs.is_empty());
        assert_eq!(a.text, "Hello €");
        assert_eq!(a.reference, None);
        assert!(a.is_complete());
    }

    #[test]
    fn gsm_161_chars_is_153_plus_8_with_8_bit_udh() {
        let body = "a".repeat(161);
        let (pdus, a) = round_trip(&body, &TextOptions::default());
        assert_eq!(pdus.len(), 2);
        assert_eq!(pdus[0].short_message[..6], [0x05, 0x00, 0x03, 0x34, 2, 1]);
        assert_eq!(pdus[1].short_message[..6], [0x05, 0x00, 0x03, 0x34, 2, 2]);
        assert_eq!(pdus[0].short_message.len(), 6 + 153);
        assert_eq!(pdus[1].short_message.len(), 6 + 8);
        assert!(pdus.iter().all(|p| p.esm_class & ESM_CLASS_UDHI != 0));
        assert_eq!(a.text, body);
        assert_eq!((a.reference, a.total), (Some(0x34), 2));
    }

    #[test]
    fn sixteen_bit_reference_header_and_capacity() {
        let body = "a".repeat(161);
        let (pdus, a) = round_trip(&body, &opts(LongMessageMode::Udh16));
        assert_eq!(pdus.len(), 2);
        assert_eq!(
            pdus[0].short_message[..7],
            [0x06, 0x08, 0x04, 0x12, 0x34, 2, 1]
        );
        assert_eq!(pdus[0].short_message.len(), 7 + 152);
        assert_eq!(a.text, body);
        assert_eq!(a.reference, Some(0x1234));
        // 306 septets: 2 parts with an 8-bit reference, 3 with a 16-bit one.
        let body = "a".repeat(306);
        assert_eq!(round_trip(&body, &TextOptions::default()).0.len(), 2);
        assert_eq!(round_trip(&body, &opts(LongMessageMode::Udh16)).0.len(), 3);
    }

    #[test]
    fn sar_mode_uses_tlvs_and_no_udh() {
        let body = "é".repeat(200); // GSM-7 (é is in the basic table)
        let (pdus, a) = round_trip(&body, &opts(LongMessageMode::Sar));
        assert_eq!(pdus.len(), 2);
        for (i, sm) in pdus.iter().enumerate() {
            assert_eq!(sm.esm_class & ESM_CLASS_UDHI, 0);
            assert_eq!(sm.tlvs.sar_msg_ref_num(), Some(0x1234));
            assert_eq!(sm.tlvs.sar_total_segments(), Some(2));
            assert_eq!(sm.tlvs.sar_segment_seqnum(), Some(i as u8 + 1));
        }
        assert_eq!(pdus[0].short_message, vec![0x05; 153]);
        assert_eq!(a.text, body);
    }

    #[test]
    fn payload_mode_is_one_pdu_with_message_payload() {
        let body = "Ω".repeat(500);
        let (pdus, a) = round_trip(&body, &opts(LongMessageMode::Payload));
        assert_eq!(pdus.len(), 1);
        assert!(pdus[0].short_message.is_empty());
        assert_eq!(pdus[0].tlvs.message_payload().map(<[u8]>::len), Some(500));
        assert_eq!(pdus[0].esm_class & ESM_CLASS_UDHI, 0);
        assert_eq!(a.text, body);
        let body = "😀".repeat(20_000); // 80,000 octets of UTF-16
        assert_eq!(
            encode_submits(&template(), &body, 1, &opts(LongMessageMode::Payload)),
            Err(TextError::PayloadTooLong { len: 80_000 })
        );
    }

    #[test]
    fn template_fields_this_module_owns_are_replaced() {
        let mut t = template();
        t.esm_class = ESM_CLASS_UDHI | 0x03;
        t.data_coding = 8;
        t.short_message = b"stale".to_vec();
        t.tlvs.set_message_payload(b"stale".to_vec());
        t.tlvs.set_sar_msg_ref_num(9);
        t.tlvs.set_user_message_reference(7);
        let pdus = encode_submits(&t, "hi", 1, &TextOptions::default()).unwrap();
        assert_eq!(pdus.len(), 1);
        assert_eq!(pdus[0].esm_class, 0x03);
        assert_eq!(pdus[0].data_coding, 0);
        assert_eq!(pdus[0].short_message, b"hi");
        assert_eq!(pdus[0].tlvs.message_payload(), None);
        assert_eq!(pdus[0].tlvs.sar_msg_ref_num(), None);
        assert_eq!(pdus[0].tlvs.user_message_reference(), Some(7));
    }

    #[test]
    fn e_acute_is_gsm_but_c_cedilla_forces_ucs2_or_latin1() {
        let (pdus, _) = round_trip("café", &TextOptions::default());
        assert_eq!(pdus[0].data_coding, 0);
        assert_eq!(pdus[0].short_message, [b'c', b'a', b'f', 0x05]);

        let (pdus, a) = round_trip("ça été", &TextOptions::default());
        assert_eq!(pdus[0].data_coding, 8);
        assert_eq!(&pdus[0].short_message[..4], &[0x00, 0xE7, 0x00, b'a']);
        assert_eq!(a.text, "ça été");

        let latin = TextOptions {
            latin1_data_coding: true,
            ..TextOptions::default()
        };
        let (pdus, a) = round_trip("ça été", &latin);
        assert_eq!(pdus[0].data_coding, 3);
        assert_eq!(pdus[0].short_message, b"\xE7a \xE9t\xE9");
        assert_eq!(a.text, "ça été");
        // GSM-7 still wins when the body is GSM-7, and UCS-2 when Latin-1 cannot hold it.
        assert_eq!(round_trip("café", &latin).0[0].data_coding, 0);
        assert_eq!(round_trip("ç€", &latin).0[0].data_coding, 8);
    }

    #[test]
    fn latin1_segments_are_140_then_134_octets() {
        let latin = TextOptions {
            latin1_data_coding: true,
            ..TextOptions::default()
        };
        assert_eq!(round_trip(&"ç".repeat(140), &latin).0.len(), 1);
        let body = "ç".repeat(141);
        let (pdus, a) = round_trip(&body, &latin);
        assert_eq!(pdus.len(), 2);
        assert_eq!(pdus[0].short_message.len(), 6 + 134);
        assert_eq!(pdus[1].short_message.len(), 6 + 7);
        assert_eq!(a.text, body);
    }

    #[test]
    fn emoji_surrogate_pairs_stay_whole() {
        // 66 units + an emoji (2) do not fit 67: the emoji moves to part 2 whole.
        let body = format!("{}😀xxx", "ç".repeat(66));
        let (pdus, a) = round_trip(&body, &TextOptions::default());
        assert_eq!(pdus.len(), 2);
        assert_eq!(pdus[0].data_coding, 8);
        assert_eq!(pdus[0].short_message.len(), 6 + 132);
        assert_eq!(&pdus[1].short_message[6..10], &[0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(a.text, body);
        assert_eq!(
            decode_short_message(8, &[0xD8, 0x3D, 0xDE, 0x00, 0x00, 0x41]),
            "😀A"
        );
        let (pdus, a) = round_trip(&"😀".repeat(67), &TextOptions::default());
        assert_eq!(
            pdus.len(),
            tern_sms::segment_info(&"😀".repeat(67)).num_segments as usize
        );
        assert_eq!(a.text, "😀".repeat(67));
    }

    #[test]
    fn extension_chars_at_a_segment_boundary_stay_whole() {
        // 152 septets, then '€' (ESC 0x65) would straddle the 153-septet boundary.
        for ext in ['€', '[', ']', '{', '}'] {
            let body = format!("{}{ext}{}", "a".repeat(152), "b".repeat(10));
            let (pdus, a) = round_trip(&body, &TextOptions::default());
            assert_eq!(pdus.len(), 2, "{ext}");
            assert_eq!(pdus[0].short_message.len(), 6 + 152);
            assert_eq!(pdus[1].short_message[6], gsm7::ESC);
            assert_eq!(a.text, body);
        }
        let body = "€[]{}".repeat(40); // 400 septets
        let (pdus, a) = round_trip(&body, &TextOptions::default());
        assert_eq!(
            pdus.len(),
            tern_sms::segment_info(&body).num_segments as usize
        );
        assert!(
            pdus.iter()
                .all(|p| p.short_message.last() != Some(&gsm7::ESC))
        );
        assert_eq!(a.text, body);
    }

    #[test]
    fn packed_gsm_with_and_without_udh() {
        let packed = TextOptions {
            gsm7_packed: true,
            ..TextOptions::default()
        };
        let (pdus, a) = round_trip("hellohello", &packed);
        assert_eq!(
            pdus[0].short_message,
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        assert_eq!(a.text, "hellohello");
        let body = "a".repeat(161);
        let (pdus, a) = round_trip(&body, &packed);
        assert_eq!(pdus.len(), 2);
        // 6 octets of UDH + 153 septets with one fill bit = 140 octets.
        assert_eq!(pdus[0].short_message.len(), 140);
        assert_eq!(pdus[0].short_message[..6], [0x05, 0x00, 0x03, 0x34, 2, 1]);
        assert_eq!(a.text, body);
        for long in [
            LongMessageMode::Udh16,
            LongMessageMode::Sar,
            LongMessageMode::Payload,
        ] {
            let o = TextOptions {
                long,
                ..packed.clone()
            };
            assert_eq!(round_trip(&body, &o).1.text, body, "{long:?}");
        }
    }

    #[test]
    fn too_many_parts_is_an_error() {
        let body = "a".repeat(153 * 256);
        assert_eq!(
            encode_submits(&template(), &body, 1, &TextOptions::default()),
            Err(TextError::TooManyParts { parts: 256 })
        );
        assert_eq!(
            encode_submits(
                &template(),
                &"a".repeat(153 * 255),
                1,
                &TextOptions::default()
            )
            .map(|v| v.len()),
            Ok(255)
        );
    }

    #[test]
    fn empty_body_is_one_empty_pdu() {
        let (pdus, a) = round_trip("", &TextOptions::default());
        assert_eq!(pdus.len(), 1);
        assert!(pdus[0].short_message.is_empty());
        assert_eq!(a.text, "");
    }

    #[test]
    fn decode_short_message_by_data_coding() {
        assert_eq!(decode_short_message(0, &[0x00, 0x1B, 0x65, 0x41]), "@€A");
        assert_eq!(decode_short_message(1, b"plain ASCII"), "plain ASCII");
        assert_eq!(decode_short_message(3, &[0x63, 0xE9]), "cé");
        assert_eq!(decode_short_message(8, &[0x04, 0x16]), "Ж");
        assert_eq!(decode_short_message(8, &[0xD8, 0x3D]), "\u{FFFD}");
        assert_eq!(decode_short_message(4, &[0x00, 0xFF, b'A']), "\u{0}ÿA");
        assert_eq!(decode_short_message(2, &[0x80]), "\u{80}");
        assert_eq!(decode_short_message(0x07, &[0xE9]), "é"); // unknown → Latin-1
        // GSM 03.38 schemes carriers pass through.
        assert_eq!(Charset::from_data_coding(0x10), Charset::Gsm7); // flash
        assert_eq!(Charset::from_data_coding(0x18), Charset::Ucs2);
        assert_eq!(Charset::from_data_coding(0x14), Charset::Octets);
        assert_eq!(Charset::from_data_coding(0x30), Charset::Octets); // compressed
        assert_eq!(Charset::from_data_coding(0xF0), Charset::Gsm7);
        assert_eq!(Charset::from_data_coding(0xF4), Charset::Octets);
        assert_eq!(Charset::from_data_coding(0xC8), Charset::Gsm7);
        assert_eq!(Charset::from_data_coding(0xE8), Charset::Ucs2);
        for dc in 0..=255u8 {
            let _ = decode_short_message(dc, &[0x1B, 0xD8, 0x00, 0xFF, 0x1B]);
        }
    }

    fn deliver(esm_class: u8, data_coding: u8, short_message: &[u8]) -> SubmitSm {
        SubmitSm {
            source: Address::new(1, 1, "447700900001"),
            destination: Address::new(0, 0, "12345"),
            esm_class,
            data_coding,
            short_message: short_message.to_vec(),
            ..SubmitSm::default()
        }
    }

    #[test]
    fn read_part_strips_udh_and_finds_concatenation() {
        let sm = deliver(0x40, 0, &[0x05, 0x00, 0x03, 0xAB, 3, 2, b'h', b'i']);
        let p = read_part(&sm, &TextOptions::default()).unwrap();
        assert_eq!(p.text(), "hi");
        assert_eq!(p.concat, Concat::new(0xAB, 3, 2));

        // 16-bit reference after a port-addressing IE.
        let sm = deliver(
            0x43,
            8,
            &[
                0x0C, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x08, 0x04, 0x01, 0x02, 2, 1, 0x00, 0x41,
            ],
        );
        let p = read_part(&sm, &TextOptions::default()).unwrap();
        assert_eq!(p.text(), "A");
        assert_eq!(p.concat, Concat::new(0x0102, 2, 1));

        // A UDH without a concatenation IE, and an IE overrunning its header.
        let sm = deliver(0x40, 0, &[0x03, 0x05, 0x09, 0x00, b'x']);
        let p = read_part(&sm, &TextOptions::default()).unwrap();
        assert_eq!((p.text().as_str(), p.concat), ("x", None));

        // UDHI clear: the same octets are text.
        let sm = deliver(0x00, 0, &[0x05, 0x00, 0x03, 0xAB, 3, 2, b'h', b'i']);
        let p = read_part(&sm, &TextOptions::default()).unwrap();
        assert_eq!(p.payload.len(), 8);
        assert_eq!(p.concat, None);
    }

    #[test]
    fn read_part_sar_tlvs_and_message_payload() {
        let mut sm = deliver(0, 3, &[]);
        sm.tlvs.set_message_payload(b"caf\xE9".to_vec());
        sm.tlvs.set_sar_msg_ref_num(0xBEEF);
        sm.tlvs.set_sar_total_segments(4);
        sm.tlvs.set_sar_segment_seqnum(4);
        let p = read_part(&sm, &TextOptions::default()).unwrap();
        assert_eq!(p.text(), "café");
        assert_eq!(p.concat, Concat::new(0xBEEF, 4, 4));
        // short_message wins when both are present; partial SAR TLVs are not concatenation.
        sm.short_message = b"sm".to_vec();
        sm.tlvs.remove(tag::SAR_SEGMENT_SEQNUM);
        let p = read_part(&sm, &TextOptions::default()).unwrap();
        assert_eq!((p.text().as_str(), p.concat), ("sm", None));

        let data = DataSm {
            source: Address::new(1, 1, "1"),
            data_coding: 8,
            tlvs: {
                let mut t = Tlvs::default();
                t.set_message_payload(vec![0x00, 0x48, 0x00, 0x69]);
                t
            },
            ..DataSm::default()
        };
        let p = read_part(&data, &TextOptions::default()).unwrap();
        assert_eq!(p.text(), "Hi");
    }

    #[test]
    fn read_part_rejects_bad_udh_and_impossible_concatenation() {
        let o = TextOptions::default();
        assert_eq!(
            read_part(&deliver(0x40, 0, &[]), &o),
            Err(TextError::UdhTruncated { needed: 1, len: 0 })
        );
        assert_eq!(
            read_part(&deliver(0x40, 0, &[0x05, 0x00, 0x03]), &o),
            Err(TextError::UdhTruncated { needed: 6, len: 3 })
        );
        for (total, seq) in [(0, 0), (0, 1), (3, 0), (3, 4)] {
            let sm = deliver(0x40, 0, &[0x05, 0x00, 0x03, 1, total, seq, b'x']);
            assert_eq!(
                read_part(&sm, &o),
                Err(TextError::InvalidConcat { total, seq })
            );
        }
        let mut sm = deliver(0, 0, b"x");
        sm.tlvs.set_sar_msg_ref_num(1);
        sm.tlvs.set_sar_total_segments(0);
        sm.tlvs.set_sar_segment_seqnum(1);
        assert_eq!(
            read_part(&sm, &o),
            Err(TextError::InvalidConcat { total: 0, seq: 1 })
        );
        assert_eq!(Concat::new(1, 255, 255).map(Concat::total), Some(255));
        assert_eq!(Concat::new(1, 0, 0), None);
    }

    fn part(reference: u16, total: u8, seq: u8, text: &str) -> Part {
        Part {
            source: Address::new(1, 1, "447700900001"),
            destination: Address::new(0, 0, "12345"),
            charset: Charset::Gsm7,
            payload: gsm7::encode_unpacked(text).unwrap(),
            concat: Concat::new(reference, total, seq),
        }
    }

    #[test]
    fn reassembles_out_of_order_with_duplicates() {
        let mut r = Reassembler::default();
        let t = Instant::now();
        assert_eq!(r.push(part(7, 3, 3, "ld!"), t), None);
        assert_eq!(r.push(part(7, 3, 1, "Hello "), t), None);
        assert_eq!(r.push(part(7, 3, 3, "ld!"), t), None); // duplicate
        assert_eq!(r.pending_len(), 1);
        let a = r.push(part(7, 3, 2, "wor"), t).unwrap();
        assert_eq!(a.text, "Hello world!");
        assert!(a.is_complete());
        assert_eq!((a.reference, a.total), (Some(7), 3));
        assert_eq!(r.pending_len(), 0);
        // A late retransmission of a part is recognised and dropped...
        assert_eq!(r.push(part(7, 3, 2, "wor"), t), None);
        assert_eq!(r.pending_len(), 0);
        // ...but new data under the same reference is a new message.
        assert_eq!(r.push(part(7, 3, 1, "New "), t), None);
        assert_eq!(r.pending_len(), 1);
        // After the timeout the completion is forgotten.
        let later = t + Duration::from_secs(61);
        assert_eq!(r.expire(later).len(), 1);
        assert_eq!(r.push(part(7, 3, 2, "wor"), later), None);
        assert_eq!(r.pending_len(), 1);
    }

    #[test]
    fn keys_separate_senders_references_and_totals() {
        let mut r = Reassembler::default();
        let t = Instant::now();
        let mut other_sender = part(1, 2, 1, "B1");
        other_sender.source.addr = "447700900002".into();
        assert_eq!(r.push(part(1, 2, 1, "A1"), t), None);
        assert_eq!(r.push(other_sender, t), None);
        assert_eq!(r.push(part(1, 3, 1, "C1"), t), None);
        assert_eq!(r.push(part(2, 2, 1, "D1"), t), None);
        assert_eq!(r.pending_len(), 4);
        assert_eq!(r.push(part(1, 2, 2, "A2"), t).unwrap().text, "A1A2");
    }

    #[test]
    fn single_parts_pass_straight_through() {
        let mut r = Reassembler::default();
        let t = Instant::now();
        let mut p = part(0, 1, 1, "x");
        p.concat = None;
        let a = r.push(p, t).unwrap();
        assert_eq!((a.text.as_str(), a.reference, a.total), ("x", None, 1));
        let a = r.push(part(5, 1, 1, "y"), t).unwrap();
        assert_eq!((a.text.as_str(), a.reference, a.total), ("y", Some(5), 1));
        assert!(a.is_complete());
        assert_eq!(r.pending_len(), 0);
    }

    #[test]
    fn timeout_delivers_what_arrived_in_order_and_flags_it() {
        let cfg = ReassemblerConfig {
            timeout: Duration::from_secs(10),
            ..ReassemblerConfig::default()
        };
        let mut r = Reassembler::new(cfg);
        let t = Instant::now();
        assert_eq!(r.next_deadline(), None);
        r.push(part(1, 4, 4, "D"), t);
        r.push(part(1, 4, 1, "A"), t);
        r.push(part(2, 2, 1, "later"), t + Duration::from_secs(5));
        assert_eq!(r.next_deadline(), Some(t + Duration::from_secs(10)));
        assert!(r.expire(t + Duration::from_secs(9)).is_empty());
        let out = r.expire(t + Duration::from_secs(10));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "AD");
        assert_eq!(out[0].missing, vec![2, 3]);
        assert!(!out[0].is_complete());
        assert_eq!(r.next_deadline(), Some(t + Duration::from_secs(15)));
        let out = r.expire(t + Duration::from_secs(100));
        assert_eq!(out[0].text, "later");
        assert_eq!(out[0].missing, vec![2]);
        assert_eq!(r.pending_len(), 0);
        assert_eq!(r.next_deadline(), None);
    }

    #[test]
    fn huge_timeout_never_overflows() {
        let mut r = Reassembler::new(ReassemblerConfig {
            timeout: Duration::MAX,
            ..ReassemblerConfig::default()
        });
        let t = Instant::now();
        r.push(part(1, 2, 1, "a"), t);
        assert_eq!(r.next_deadline(), None);
        assert!(r.expire(t + Duration::from_secs(1_000_000)).is_empty());
    }

    #[test]
    fn max_pending_evicts_the_oldest_as_incomplete() {
        let mut r = Reassembler::new(ReassemblerConfig {
            max_pending: 2,
            ..ReassemblerConfig::default()
        });
        let t = Instant::now();
        assert_eq!(r.push(part(1, 2, 1, "one"), t), None);
        assert_eq!(r.push(part(2, 2, 1, "two"), t), None);
        let evicted = r.push(part(3, 2, 1, "three"), t).unwrap();
        assert_eq!(evicted.text, "one");
        assert_eq!(evicted.reference, Some(1));
        assert_eq!(evicted.missing, vec![2]);
        assert_eq!(r.pending_len(), 2);
        // Parts of held messages do not evict.
        assert_eq!(r.push(part(2, 2, 2, "!"), t).unwrap().text, "two!");
        assert_eq!(r.pending_len(), 1);
    }

    #[test]
    fn oversized_messages_are_delivered_early() {
        let mut r = Reassembler::new(ReassemblerConfig {
            max_message_bytes: 10,
            ..ReassemblerConfig::default()
        });
        let t = Instant::now();
        let a = r.push(part(1, 3, 2, "0123456789AB"), t).unwrap();
        assert_eq!(
            (a.text.as_str(), a.missing.as_slice()),
            ("0123456789AB", &[1, 3][..])
        );
        assert_eq!(r.pending_len(), 0);
        assert_eq!(r.push(part(2, 3, 1, "012345"), t), None);
        let a = r.push(part(2, 3, 2, "6789A"), t).unwrap();
        assert_eq!(a.text, "0123456789A");
        assert_eq!(a.missing, vec![3]);
        // Completing is always allowed, whatever the size.
        assert_eq!(r.push(part(3, 2, 1, "012345"), t), None);
        assert!(r.push(part(3, 2, 2, "6789A"), t).unwrap().is_complete());
    }

    #[test]
    fn joins_split_escapes_and_surrogates_across_parts() {
        let mut r = Reassembler::default();
        let t = Instant::now();
        // A sender that split ESC from its code, and a surrogate pair, between parts.
        let mut a = part(1, 2, 1, "x");
        a.payload.push(gsm7::ESC);
        let mut b = part(1, 2, 2, "y");
        b.payload.insert(0, 0x65);
        r.push(a, t);
        assert_eq!(r.push(b, t).unwrap().text, "x€y");
        let ucs = |seq, payload: &[u8]| Part {
            charset: Charset::Ucs2,
            payload: payload.to_vec(),
            ..part(2, 2, seq, "")
        };
        r.push(ucs(2, &[0xDE, 0x00]), t);
        assert_eq!(
            r.push(ucs(1, &[0x00, 0x41, 0xD8, 0x3D]), t).unwrap().text,
            "A😀"
        );
        // An odd-length UTF-16 part does not shift the next one.
        r.push(ucs(1, &[0x00, 0x41, 0x00]), t);
        assert_eq!(r.push(ucs(2, &[0x00, 0x42]), t).unwrap().text, "A\u{FFFD}B");
    }
}
