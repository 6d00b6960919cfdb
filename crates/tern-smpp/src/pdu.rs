//! SMPP 3.4 PDUs: types, [`decode`] and [`encode`].
//!
//! # Why a hand-written codec and not rusmpp
//!
//! `rusmpp` 0.4 (recommended in `shared/research/rust-deps.md` §1) is a v5.0 codec with 3.4
//! as a mode. This crate needs three things that are cheaper to own than to adapt:
//!
//! * **3.4 field limits enforced on decode** (`system_id` ≤ 16 octets including the NUL,
//!   `password` ≤ 9, `source_addr` ≤ 21, …), each mapped to the status the session answers
//!   with (`ESME_RINVSYSID`, `ESME_RINVPASWD`, `ESME_RINVSRCADR`, …).
//! * **TLVs kept byte-exact and in wire order**, known and unknown alike, so a relay or a
//!   simulator re-encodes what it received; typed accessors read them lazily.
//! * **Framing errors that carry the header**, so the session can answer with the right
//!   `generic_nack` or `*_resp` and know how many bytes to skip (or that it must close).
//!
//! The whole codec is a bounds-checked reader and writer over byte slices (long but flat: no
//! dependencies, no `unsafe`, no indexing that can panic); proptest round trips every PDU
//! kind and a cargo-fuzz target (`fuzz/`) drives `decode` on arbitrary bytes.

use std::fmt;

use crate::status::*;

/// Octets in the PDU header (`command_length`, `command_id`, `command_status`,
/// `sequence_number`).
pub const HEADER_LEN: usize = 16;
/// Default upper bound on `command_length`; larger frames are rejected before any buffering.
pub const DEFAULT_MAX_PDU_LEN: usize = 64 * 1024;
/// Bit set in the `command_id` of every response.
pub const RESPONSE_BIT: u32 = 0x8000_0000;

/// `command_id` values (§5.1.2.1).
pub mod command_id {
    pub const GENERIC_NACK: u32 = 0x8000_0000;
    pub const BIND_RECEIVER: u32 = 0x0000_0001;
    pub const BIND_RECEIVER_RESP: u32 = 0x8000_0001;
    pub const BIND_TRANSMITTER: u32 = 0x0000_0002;
    pub const BIND_TRANSMITTER_RESP: u32 = 0x8000_0002;
    pub const QUERY_SM: u32 = 0x0000_0003;
    pub const QUERY_SM_RESP: u32 = 0x8000_0003;
    pub const SUBMIT_SM: u32 = 0x0000_0004;
    pub const SUBMIT_SM_RESP: u32 = 0x8000_0004;
    pub const DELIVER_SM: u32 = 0x0000_0005;
    pub const DELIVER_SM_RESP: u32 = 0x8000_0005;
    pub const UNBIND: u32 = 0x0000_0006;
    pub const UNBIND_RESP: u32 = 0x8000_0006;
    pub const REPLACE_SM: u32 = 0x0000_0007;
    pub const REPLACE_SM_RESP: u32 = 0x8000_0007;
    pub const CANCEL_SM: u32 = 0x0000_0008;
    pub const CANCEL_SM_RESP: u32 = 0x8000_0008;
    pub const BIND_TRANSCEIVER: u32 = 0x0000_0009;
    pub const BIND_TRANSCEIVER_RESP: u32 = 0x8000_0009;
    pub const OUTBIND: u32 = 0x0000_000B;
    pub const ENQUIRE_LINK: u32 = 0x0000_0015;
    pub const ENQUIRE_LINK_RESP: u32 = 0x8000_0015;
    pub const SUBMIT_MULTI: u32 = 0x0000_0021;
    pub const SUBMIT_MULTI_RESP: u32 = 0x8000_0021;
    pub const ALERT_NOTIFICATION: u32 = 0x0000_0102;
    pub const DATA_SM: u32 = 0x0000_0103;
    pub const DATA_SM_RESP: u32 = 0x8000_0103;
}

/// Optional parameter tags (§5.3.2) this crate has typed accessors for.
pub mod tag {
    pub const DEST_ADDR_SUBUNIT: u16 = 0x0005;
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    pub const SOURCE_PORT: u16 = 0x020A;
    pub const DESTINATION_PORT: u16 = 0x020B;
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    pub const MS_AVAILABILITY_STATUS: u16 = 0x0422;
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    pub const MESSAGE_STATE: u16 = 0x0427;
}

/// Maximum lengths of C-octet strings, **including** the terminating NUL (§4).
pub mod max_len {
    pub const SYSTEM_ID: usize = 16;
    pub const PASSWORD: usize = 9;
    pub const SYSTEM_TYPE: usize = 13;
    pub const ADDRESS_RANGE: usize = 41;
    pub const SERVICE_TYPE: usize = 6;
    pub const ADDR: usize = 21;
    /// `data_sm` and `alert_notification` addresses are longer.
    pub const ADDR_65: usize = 65;
    pub const TIME: usize = 17;
    pub const MESSAGE_ID: usize = 65;
    pub const DL_NAME: usize = 21;
}

/// The 16-octet PDU header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub command_length: u32,
    pub command_id: u32,
    pub command_status: u32,
    pub sequence_number: u32,
}

/// One PDU: the header fields that are not derived from the body, and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdu {
    pub command_status: u32,
    pub sequence_number: u32,
    pub body: Body,
}

impl Pdu {
    /// A PDU with `command_status` = `ESME_ROK`.
    pub fn new(sequence_number: u32, body: Body) -> Self {
        Self {
            command_status: ESME_ROK,
            sequence_number,
            body,
        }
    }

    pub fn command_id(&self) -> u32 {
        self.body.command_id()
    }

    pub fn is_response(&self) -> bool {
        self.command_id() & RESPONSE_BIT != 0
    }
}

/// The kinds of bind (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindKind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl BindKind {
    pub fn command_id(self) -> u32 {
        match self {
            BindKind::Transmitter => command_id::BIND_TRANSMITTER,
            BindKind::Receiver => command_id::BIND_RECEIVER,
            BindKind::Transceiver => command_id::BIND_TRANSCEIVER,
        }
    }

    pub fn from_command_id(id: u32) -> Option<Self> {
        match id & !RESPONSE_BIT {
            command_id::BIND_TRANSMITTER => Some(BindKind::Transmitter),
            command_id::BIND_RECEIVER => Some(BindKind::Receiver),
            command_id::BIND_TRANSCEIVER => Some(BindKind::Transceiver),
            _ => None,
        }
    }
}

/// An SME address: type of number, numbering plan indicator and the digits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub ton: u8,
    pub npi: u8,
    pub addr: String,
}

impl Address {
    pub fn new(ton: u8, npi: u8, addr: impl Into<String>) -> Self {
        Self {
            ton,
            npi,
            addr: addr.into(),
        }
    }
}

/// `bind_transmitter`, `bind_receiver`, `bind_transceiver`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bind {
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub interface_version: u8,
    pub addr_ton: u8,
    pub addr_npi: u8,
    pub address_range: String,
}

/// `bind_*_resp`; the optional `sc_interface_version` TLV lives in `tlvs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindResp {
    pub system_id: String,
    pub tlvs: Tlvs,
}

/// `outbind`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outbind {
    pub system_id: String,
    pub password: String,
}

/// `submit_sm` and `deliver_sm` (same layout, §4.4.1 and §4.6.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitSm {
    pub service_type: String,
    pub source: Address,
    pub destination: Address,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub replace_if_present_flag: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    /// At most 255 octets (`sm_length` is one octet); longer text goes in `message_payload`.
    pub short_message: Vec<u8>,
    pub tlvs: Tlvs,
}

/// `deliver_sm` has the layout of `submit_sm`.
pub type DeliverSm = SubmitSm;

/// `submit_sm_resp`, `deliver_sm_resp` and `data_sm_resp`.
///
/// 3.4 gives only `data_sm_resp` TLVs; they are accepted on the other two as well because
/// SMSCs speaking 5.0 dialects send them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageIdResp {
    pub message_id: String,
    pub tlvs: Tlvs,
}

/// One destination of `submit_multi`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestAddress {
    /// `dest_flag` 1.
    Sme(Address),
    /// `dest_flag` 2.
    DistributionList(String),
}

/// `submit_multi` (§4.5.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitMulti {
    pub service_type: String,
    pub source: Address,
    /// At most 255 (`number_of_dests` is one octet).
    pub destinations: Vec<DestAddress>,
    pub esm_class: u8,
    pub protocol_id: u8,
    pub priority_flag: u8,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub replace_if_present_flag: u8,
    pub data_coding: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Vec<u8>,
    pub tlvs: Tlvs,
}

/// A destination `submit_multi` could not deliver to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsuccessSme {
    pub address: Address,
    pub error_status_code: u32,
}

/// `submit_multi_resp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitMultiResp {
    pub message_id: String,
    /// At most 255.
    pub unsuccess: Vec<UnsuccessSme>,
}

/// `data_sm` (§4.7.1); its addresses may be up to 65 octets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataSm {
    pub service_type: String,
    pub source: Address,
    pub destination: Address,
    pub esm_class: u8,
    pub registered_delivery: u8,
    pub data_coding: u8,
    pub tlvs: Tlvs,
}

/// `query_sm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySm {
    pub message_id: String,
    pub source: Address,
}

/// `query_sm_resp`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuerySmResp {
    pub message_id: String,
    pub final_date: String,
    /// See [`MessageState`].
    pub message_state: u8,
    pub error_code: u8,
}

/// `cancel_sm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelSm {
    pub service_type: String,
    pub message_id: String,
    pub source: Address,
    pub destination: Address,
}

/// `replace_sm`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplaceSm {
    pub message_id: String,
    pub source: Address,
    pub schedule_delivery_time: String,
    pub validity_period: String,
    pub registered_delivery: u8,
    pub sm_default_msg_id: u8,
    pub short_message: Vec<u8>,
}

/// `alert_notification`; `ms_availability_status` lives in `tlvs`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertNotification {
    pub source: Address,
    pub esme: Address,
    pub tlvs: Tlvs,
}

/// Every PDU body of SMPP 3.4.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    GenericNack,
    BindTransmitter(Bind),
    BindTransmitterResp(BindResp),
    BindReceiver(Bind),
    BindReceiverResp(BindResp),
    BindTransceiver(Bind),
    BindTransceiverResp(BindResp),
    Outbind(Outbind),
    Unbind,
    UnbindResp,
    SubmitSm(SubmitSm),
    SubmitSmResp(MessageIdResp),
    SubmitMulti(SubmitMulti),
    SubmitMultiResp(SubmitMultiResp),
    DeliverSm(DeliverSm),
    DeliverSmResp(MessageIdResp),
    DataSm(DataSm),
    DataSmResp(MessageIdResp),
    QuerySm(QuerySm),
    QuerySmResp(QuerySmResp),
    CancelSm(CancelSm),
    CancelSmResp,
    ReplaceSm(ReplaceSm),
    ReplaceSmResp,
    EnquireLink,
    EnquireLinkResp,
    AlertNotification(AlertNotification),
}

impl Body {
    pub fn command_id(&self) -> u32 {
        use command_id::*;
        match self {
            Body::GenericNack => GENERIC_NACK,
            Body::BindTransmitter(_) => BIND_TRANSMITTER,
            Body::BindTransmitterResp(_) => BIND_TRANSMITTER_RESP,
            Body::BindReceiver(_) => BIND_RECEIVER,
            Body::BindReceiverResp(_) => BIND_RECEIVER_RESP,
            Body::BindTransceiver(_) => BIND_TRANSCEIVER,
            Body::BindTransceiverResp(_) => BIND_TRANSCEIVER_RESP,
            Body::Outbind(_) => OUTBIND,
            Body::Unbind => UNBIND,
            Body::UnbindResp => UNBIND_RESP,
            Body::SubmitSm(_) => SUBMIT_SM,
            Body::SubmitSmResp(_) => SUBMIT_SM_RESP,
            Body::SubmitMulti(_) => SUBMIT_MULTI,
            Body::SubmitMultiResp(_) => SUBMIT_MULTI_RESP,
            Body::DeliverSm(_) => DELIVER_SM,
            Body::DeliverSmResp(_) => DELIVER_SM_RESP,
            Body::DataSm(_) => DATA_SM,
            Body::DataSmResp(_) => DATA_SM_RESP,
            Body::QuerySm(_) => QUERY_SM,
            Body::QuerySmResp(_) => QUERY_SM_RESP,
            Body::CancelSm(_) => CANCEL_SM,
            Body::CancelSmResp => CANCEL_SM_RESP,
            Body::ReplaceSm(_) => REPLACE_SM,
            Body::ReplaceSmResp => REPLACE_SM_RESP,
            Body::EnquireLink => ENQUIRE_LINK,
            Body::EnquireLinkResp => ENQUIRE_LINK_RESP,
            Body::AlertNotification(_) => ALERT_NOTIFICATION,
        }
    }

    /// The default (empty-field) response body for a request `command_id`; `None` for
    /// commands that have no response (`outbind`, `alert_notification`, responses, unknown
    /// ids) — those are answered with `generic_nack` if at all.
    pub fn default_response(request_command_id: u32) -> Option<Body> {
        use command_id::*;
        Some(match request_command_id {
            BIND_TRANSMITTER => Body::BindTransmitterResp(BindResp::default()),
            BIND_RECEIVER => Body::BindReceiverResp(BindResp::default()),
            BIND_TRANSCEIVER => Body::BindTransceiverResp(BindResp::default()),
            UNBIND => Body::UnbindResp,
            SUBMIT_SM => Body::SubmitSmResp(MessageIdResp::default()),
            SUBMIT_MULTI => Body::SubmitMultiResp(SubmitMultiResp::default()),
            DELIVER_SM => Body::DeliverSmResp(MessageIdResp::default()),
            DATA_SM => Body::DataSmResp(MessageIdResp::default()),
            QUERY_SM => Body::QuerySmResp(QuerySmResp::default()),
            CANCEL_SM => Body::CancelSmResp,
            REPLACE_SM => Body::ReplaceSmResp,
            ENQUIRE_LINK => Body::EnquireLinkResp,
            _ => return None,
        })
    }

    /// The TLVs of bodies that carry them.
    pub fn tlvs(&self) -> Option<&Tlvs> {
        match self {
            Body::BindTransmitterResp(b)
            | Body::BindReceiverResp(b)
            | Body::BindTransceiverResp(b) => Some(&b.tlvs),
            Body::SubmitSm(b) | Body::DeliverSm(b) => Some(&b.tlvs),
            Body::SubmitSmResp(b) | Body::DeliverSmResp(b) | Body::DataSmResp(b) => Some(&b.tlvs),
            Body::SubmitMulti(b) => Some(&b.tlvs),
            Body::DataSm(b) => Some(&b.tlvs),
            Body::AlertNotification(b) => Some(&b.tlvs),
            _ => None,
        }
    }
}

/// The error response for a request that could not be served: the command's own `*_resp`
/// carrying `status`, or `generic_nack` for commands without one.
pub fn error_response(request_command_id: u32, sequence_number: u32, status: u32) -> Pdu {
    let body = Body::default_response(request_command_id).unwrap_or(Body::GenericNack);
    Pdu {
        command_status: status,
        sequence_number,
        body,
    }
}

/// `message_state` values (§5.2.28), used by the TLV and by `query_sm_resp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    Enroute,
    Delivered,
    Expired,
    Deleted,
    Undeliverable,
    Accepted,
    Unknown,
    Rejected,
}

impl MessageState {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => MessageState::Enroute,
            2 => MessageState::Delivered,
            3 => MessageState::Expired,
            4 => MessageState::Deleted,
            5 => MessageState::Undeliverable,
            6 => MessageState::Accepted,
            7 => MessageState::Unknown,
            8 => MessageState::Rejected,
            _ => return None,
        })
    }

    pub fn as_u8(self) -> u8 {
        match self {
            MessageState::Enroute => 1,
            MessageState::Delivered => 2,
            MessageState::Expired => 3,
            MessageState::Deleted => 4,
            MessageState::Undeliverable => 5,
            MessageState::Accepted => 6,
            MessageState::Unknown => 7,
            MessageState::Rejected => 8,
        }
    }

    /// Every state but `Enroute` (and `Accepted`/`Unknown`, which 3.4 also calls final).
    pub fn is_final(self) -> bool {
        !matches!(self, MessageState::Enroute)
    }
}

/// The `network_error_code` TLV: network type (1 ANSI-136, 2 IS-95, 3 GSM, …) and code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkErrorCode {
    pub network_type: u8,
    pub error_code: u16,
}

/// One optional parameter, value kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tlv {
    pub tag: u16,
    /// At most 65535 octets.
    pub value: Vec<u8>,
}

/// A body's TLVs in wire order. Known and unknown tags alike are kept byte-exact and
/// re-encoded as received; the typed getters parse on access and return `None` for an
/// absent tag or a value of the wrong length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tlvs(pub Vec<Tlv>);

impl Tlvs {
    pub fn iter(&self) -> impl Iterator<Item = &Tlv> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first value with this tag.
    pub fn get(&self, tag: u16) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|t| t.tag == tag)
            .map(|t| t.value.as_slice())
    }

    /// Replace the first value with this tag (dropping later duplicates), or append.
    pub fn set(&mut self, tag: u16, value: Vec<u8>) {
        let mut seen = false;
        self.0.retain(|t| {
            let keep = t.tag != tag || !seen;
            if t.tag == tag {
                seen = true;
            }
            keep
        });
        match self.0.iter_mut().find(|t| t.tag == tag) {
            Some(t) => t.value = value,
            None => self.0.push(Tlv { tag, value }),
        }
    }

    pub fn remove(&mut self, tag: u16) {
        self.0.retain(|t| t.tag != tag);
    }

    fn get_u8(&self, tag: u16) -> Option<u8> {
        match self.get(tag)? {
            [v] => Some(*v),
            _ => None,
        }
    }

    fn get_u16(&self, tag: u16) -> Option<u16> {
        match self.get(tag)? {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    pub fn message_payload(&self) -> Option<&[u8]> {
        self.get(tag::MESSAGE_PAYLOAD)
    }
    pub fn set_message_payload(&mut self, payload: Vec<u8>) {
        self.set(tag::MESSAGE_PAYLOAD, payload)
    }

    /// `receipted_message_id` is a C-octet string inside the TLV; the NUL is stripped (and
    /// tolerated when missing). `None` if the value is not UTF-8.
    pub fn receipted_message_id(&self) -> Option<&str> {
        let v = self.get(tag::RECEIPTED_MESSAGE_ID)?;
        let v = v.split(|b| *b == 0).next().unwrap_or(v);
        std::str::from_utf8(v).ok()
    }
    pub fn set_receipted_message_id(&mut self, id: &str) {
        let mut v = id.as_bytes().to_vec();
        v.push(0);
        self.set(tag::RECEIPTED_MESSAGE_ID, v)
    }

    /// The raw `message_state` octet; see [`MessageState::from_u8`].
    pub fn message_state(&self) -> Option<u8> {
        self.get_u8(tag::MESSAGE_STATE)
    }
    pub fn set_message_state(&mut self, state: MessageState) {
        self.set(tag::MESSAGE_STATE, vec![state.as_u8()])
    }

    pub fn network_error_code(&self) -> Option<NetworkErrorCode> {
        match self.get(tag::NETWORK_ERROR_CODE)? {
            [t, a, b] => Some(NetworkErrorCode {
                network_type: *t,
                error_code: u16::from_be_bytes([*a, *b]),
            }),
            _ => None,
        }
    }
    pub fn set_network_error_code(&mut self, code: NetworkErrorCode) {
        let [a, b] = code.error_code.to_be_bytes();
        self.set(tag::NETWORK_ERROR_CODE, vec![code.network_type, a, b])
    }

    pub fn sar_msg_ref_num(&self) -> Option<u16> {
        self.get_u16(tag::SAR_MSG_REF_NUM)
    }
    pub fn set_sar_msg_ref_num(&mut self, v: u16) {
        self.set(tag::SAR_MSG_REF_NUM, v.to_be_bytes().to_vec())
    }

    pub fn sar_total_segments(&self) -> Option<u8> {
        self.get_u8(tag::SAR_TOTAL_SEGMENTS)
    }
    pub fn set_sar_total_segments(&mut self, v: u8) {
        self.set(tag::SAR_TOTAL_SEGMENTS, vec![v])
    }

    pub fn sar_segment_seqnum(&self) -> Option<u8> {
        self.get_u8(tag::SAR_SEGMENT_SEQNUM)
    }
    pub fn set_sar_segment_seqnum(&mut self, v: u8) {
        self.set(tag::SAR_SEGMENT_SEQNUM, vec![v])
    }

    pub fn user_message_reference(&self) -> Option<u16> {
        self.get_u16(tag::USER_MESSAGE_REFERENCE)
    }
    pub fn set_user_message_reference(&mut self, v: u16) {
        self.set(tag::USER_MESSAGE_REFERENCE, v.to_be_bytes().to_vec())
    }

    pub fn source_port(&self) -> Option<u16> {
        self.get_u16(tag::SOURCE_PORT)
    }
    pub fn set_source_port(&mut self, v: u16) {
        self.set(tag::SOURCE_PORT, v.to_be_bytes().to_vec())
    }

    pub fn destination_port(&self) -> Option<u16> {
        self.get_u16(tag::DESTINATION_PORT)
    }
    pub fn set_destination_port(&mut self, v: u16) {
        self.set(tag::DESTINATION_PORT, v.to_be_bytes().to_vec())
    }

    pub fn sc_interface_version(&self) -> Option<u8> {
        self.get_u8(tag::SC_INTERFACE_VERSION)
    }
    pub fn set_sc_interface_version(&mut self, v: u8) {
        self.set(tag::SC_INTERFACE_VERSION, vec![v])
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// The body field a decode or encode error is about; decides the status sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    SystemId,
    Password,
    SystemType,
    AddressRange,
    ServiceType,
    SourceAddr,
    DestinationAddr,
    EsmeAddr,
    ScheduleDeliveryTime,
    ValidityPeriod,
    MessageId,
    FinalDate,
    DlName,
    DestFlag,
    NumberOfDests,
    NoUnsuccess,
    ShortMessage,
    Tlv,
    /// A fixed-size integer field.
    Integer,
    /// Octets after the last field of a body that has no TLVs.
    Trailing,
}

impl Field {
    /// The `command_status` that names this field's error (`ESME_RINVCMDLEN` when none does).
    pub fn status(self) -> u32 {
        match self {
            Field::SystemId => ESME_RINVSYSID,
            Field::Password => ESME_RINVPASWD,
            Field::SystemType => ESME_RINVSYSTYP,
            Field::ServiceType => ESME_RINVSERTYP,
            Field::SourceAddr => ESME_RINVSRCADR,
            Field::DestinationAddr | Field::EsmeAddr => ESME_RINVDSTADR,
            Field::ScheduleDeliveryTime => ESME_RINVSCHED,
            Field::ValidityPeriod => ESME_RINVEXPIRY,
            Field::MessageId => ESME_RINVMSGID,
            Field::DlName => ESME_RINVDLNAME,
            Field::DestFlag => ESME_RINVDESTFLAG,
            Field::NumberOfDests => ESME_RINVNUMDESTS,
            Field::ShortMessage => ESME_RINVMSGLEN,
            Field::Tlv => ESME_RINVOPTPARSTREAM,
            Field::AddressRange
            | Field::FinalDate
            | Field::NoUnsuccess
            | Field::Integer
            | Field::Trailing => ESME_RINVCMDLEN,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What is wrong with one field of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("body ends inside {0}")]
    Truncated(Field),
    #[error("{0} has no NUL within its maximum length")]
    TooLong(Field),
    #[error("{0} is not UTF-8")]
    NotUtf8(Field),
    #[error("{field} has invalid value {value}")]
    InvalidValue { field: Field, value: u8 },
    #[error("octets after the last field")]
    TrailingBytes,
}

impl BodyError {
    pub fn field(&self) -> Field {
        match self {
            BodyError::Truncated(f) | BodyError::TooLong(f) | BodyError::NotUtf8(f) => *f,
            BodyError::InvalidValue { field, .. } => *field,
            BodyError::TrailingBytes => Field::Trailing,
        }
    }

    pub fn status(&self) -> u32 {
        match self {
            // A field cut short by the end of the body is a length problem, whatever field.
            BodyError::Truncated(Field::Tlv) => ESME_RINVOPTPARSTREAM,
            BodyError::Truncated(_) | BodyError::TrailingBytes => ESME_RINVCMDLEN,
            other => other.field().status(),
        }
    }
}

/// Why a buffer could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// `command_length` is below 16 or above the limit. The stream cannot be resynchronised:
    /// answer with `generic_nack` (`ESME_RINVCMDLEN`) and close.
    #[error("command_length {command_length} outside 16..={max}")]
    InvalidLength {
        command_length: u32,
        max: usize,
        /// Known only when the first 16 octets had arrived.
        sequence_number: Option<u32>,
    },
    /// A well-framed PDU with a `command_id` SMPP 3.4 does not define.
    #[error("unknown command_id {:#010x}", .header.command_id)]
    UnknownCommand { header: Header },
    /// A well-framed PDU whose body does not parse.
    #[error("invalid body of command {:#010x}: {error}", .header.command_id)]
    InvalidBody { header: Header, error: BodyError },
}

impl DecodeError {
    /// Octets to skip to reach the next PDU, or `None` when the stream is lost.
    pub fn frame_len(&self) -> Option<usize> {
        match self {
            DecodeError::InvalidLength { .. } => None,
            DecodeError::UnknownCommand { header } | DecodeError::InvalidBody { header, .. } => {
                Some(header.command_length as usize)
            }
        }
    }

    pub fn header(&self) -> Option<&Header> {
        match self {
            DecodeError::InvalidLength { .. } => None,
            DecodeError::UnknownCommand { header } | DecodeError::InvalidBody { header, .. } => {
                Some(header)
            }
        }
    }

    /// The `command_status` to answer with.
    pub fn command_status(&self) -> u32 {
        match self {
            DecodeError::InvalidLength { .. } => ESME_RINVCMDLEN,
            DecodeError::UnknownCommand { .. } => ESME_RINVCMDID,
            DecodeError::InvalidBody { error, .. } => error.status(),
        }
    }
}

/// Why a PDU could not be encoded (a field exceeds its SMPP limit).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("{field} is {len} octets; at most {max} allowed")]
    TooLong {
        field: Field,
        len: usize,
        max: usize,
    },
    #[error("{0} contains a NUL")]
    InteriorNul(Field),
    #[error("PDU is larger than u32::MAX octets")]
    PduTooLarge,
}

// ---------------------------------------------------------------------------------------
// Decode
// ---------------------------------------------------------------------------------------

/// Decode one PDU from the front of `buf` with the default 64 KiB limit.
///
/// `Ok(None)`: more bytes are needed. `Ok(Some((pdu, n)))`: the PDU used the first `n`
/// octets. Never panics, and never allocates more than the frame it parses.
pub fn decode(buf: &[u8]) -> Result<Option<(Pdu, usize)>, DecodeError> {
    decode_with_max(buf, DEFAULT_MAX_PDU_LEN)
}

/// [`decode`] with an explicit upper bound on `command_length`.
pub fn decode_with_max(buf: &[u8], max_len: usize) -> Result<Option<(Pdu, usize)>, DecodeError> {
    let Some(len_bytes) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let command_length = u32::from_be_bytes(*len_bytes);
    let len = command_length as usize;
    if len < HEADER_LEN || len > max_len {
        let sequence_number = buf
            .get(12..16)
            .and_then(|s| s.first_chunk::<4>())
            .map(|b| u32::from_be_bytes(*b));
        return Err(DecodeError::InvalidLength {
            command_length,
            max: max_len,
            sequence_number,
        });
    }
    let Some(frame) = buf.get(..len) else {
        return Ok(None);
    };
    let mut r = Reader { buf: frame, pos: 4 };
    let header = Header {
        command_length,
        command_id: r
            .u32(Field::Integer)
            .map_err(|_| invalid_len(command_length, max_len))?,
        command_status: r
            .u32(Field::Integer)
            .map_err(|_| invalid_len(command_length, max_len))?,
        sequence_number: r
            .u32(Field::Integer)
            .map_err(|_| invalid_len(command_length, max_len))?,
    };
    let body_bytes = frame.get(HEADER_LEN..).unwrap_or_default();
    match decode_body(&header, body_bytes) {
        Ok(Some(body)) => Ok(Some((
            Pdu {
                command_status: header.command_status,
                sequence_number: header.sequence_number,
                body,
            },
            len,
        ))),
        Ok(None) => Err(DecodeError::UnknownCommand { header }),
        Err(error) => Err(DecodeError::InvalidBody { header, error }),
    }
}

fn invalid_len(command_length: u32, max: usize) -> DecodeError {
    DecodeError::InvalidLength {
        command_length,
        max,
        sequence_number: None,
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.rest().is_empty()
    }

    fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], BodyError> {
        let end = self.pos.checked_add(n).ok_or(BodyError::Truncated(field))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or(BodyError::Truncated(field))?;
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, field: Field) -> Result<u8, BodyError> {
        let s = self.take(1, field)?;
        s.first().copied().ok_or(BodyError::Truncated(field))
    }

    fn u16(&mut self, field: Field) -> Result<u16, BodyError> {
        let s = self.take(2, field)?;
        s.first_chunk::<2>()
            .map(|b| u16::from_be_bytes(*b))
            .ok_or(BodyError::Truncated(field))
    }

    fn u32(&mut self, field: Field) -> Result<u32, BodyError> {
        let s = self.take(4, field)?;
        s.first_chunk::<4>()
            .map(|b| u32::from_be_bytes(*b))
            .ok_or(BodyError::Truncated(field))
    }

    /// A C-octet string of at most `max` octets including its NUL.
    fn cstr(&mut self, field: Field, max: usize) -> Result<String, BodyError> {
        let rest = self.rest();
        let window = rest.get(..max).unwrap_or(rest);
        let Some(nul) = window.iter().position(|b| *b == 0) else {
            return Err(if window.len() < max {
                BodyError::Truncated(field)
            } else {
                BodyError::TooLong(field)
            });
        };
        let s = window.get(..nul).unwrap_or_default();
        let s = std::str::from_utf8(s).map_err(|_| BodyError::NotUtf8(field))?;
        self.pos += nul + 1;
        Ok(s.to_owned())
    }

    fn address(&mut self, field: Field, max: usize) -> Result<Address, BodyError> {
        Ok(Address {
            ton: self.u8(Field::Integer)?,
            npi: self.u8(Field::Integer)?,
            addr: self.cstr(field, max)?,
        })
    }

    fn short_message(&mut self) -> Result<Vec<u8>, BodyError> {
        let n = self.u8(Field::ShortMessage)?;
        Ok(self.take(n as usize, Field::ShortMessage)?.to_vec())
    }

    fn tlvs(&mut self) -> Result<Tlvs, BodyError> {
        let mut out = Vec::new();
        while !self.is_empty() {
            let tag = self.u16(Field::Tlv)?;
            let len = self.u16(Field::Tlv)?;
            let value = self.take(len as usize, Field::Tlv)?.to_vec();
            out.push(Tlv { tag, value });
        }
        Ok(Tlvs(out))
    }

    fn end(&self) -> Result<(), BodyError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(BodyError::TrailingBytes)
        }
    }
}

/// `Ok(None)` for an unknown `command_id`.
fn decode_body(header: &Header, body: &[u8]) -> Result<Option<Body>, BodyError> {
    use command_id::*;
    let id = header.command_id;
    // A response with an error status may omit its body (§3.3 / §4.x.2 notes).
    if body.is_empty()
        && header.command_status != ESME_ROK
        && let Some(default) =
            Body::default_response(id & !RESPONSE_BIT).filter(|_| id & RESPONSE_BIT != 0)
    {
        return Ok(Some(default));
    }
    let mut r = Reader { buf: body, pos: 0 };
    let out = match id {
        GENERIC_NACK => Body::GenericNack,
        BIND_TRANSMITTER => Body::BindTransmitter(bind(&mut r)?),
        BIND_RECEIVER => Body::BindReceiver(bind(&mut r)?),
        BIND_TRANSCEIVER => Body::BindTransceiver(bind(&mut r)?),
        BIND_TRANSMITTER_RESP => Body::BindTransmitterResp(bind_resp(&mut r)?),
        BIND_RECEIVER_RESP => Body::BindReceiverResp(bind_resp(&mut r)?),
        BIND_TRANSCEIVER_RESP => Body::BindTransceiverResp(bind_resp(&mut r)?),
        OUTBIND => Body::Outbind(Outbind {
            system_id: r.cstr(Field::SystemId, max_len::SYSTEM_ID)?,
            password: r.cstr(Field::Password, max_len::PASSWORD)?,
        }),
        UNBIND => Body::Unbind,
        UNBIND_RESP => Body::UnbindResp,
        SUBMIT_SM => Body::SubmitSm(submit_sm(&mut r)?),
        DELIVER_SM => Body::DeliverSm(submit_sm(&mut r)?),
        SUBMIT_SM_RESP => Body::SubmitSmResp(message_id_resp(&mut r)?),
        DELIVER_SM_RESP => Body::DeliverSmResp(message_id_resp(&mut r)?),
        DATA_SM_RESP => Body::DataSmResp(message_id_resp(&mut r)?),
        SUBMIT_MULTI => Body::SubmitMulti(submit_multi(&mut r)?),
        SUBMIT_MULTI_RESP => {
            let message_id = r.cstr(Field::MessageId, max_len::MESSAGE_ID)?;
            let n = r.u8(Field::NoUnsuccess)?;
            let mut unsuccess = Vec::with_capacity(n as usize);
            for _ in 0..n {
                unsuccess.push(UnsuccessSme {
                    address: r.address(Field::DestinationAddr, max_len::ADDR)?,
                    error_status_code: r.u32(Field::Integer)?,
                });
            }
            Body::SubmitMultiResp(SubmitMultiResp {
                message_id,
                unsuccess,
            })
        }
        DATA_SM => Body::DataSm(DataSm {
            service_type: r.cstr(Field::ServiceType, max_len::SERVICE_TYPE)?,
            source: r.address(Field::SourceAddr, max_len::ADDR_65)?,
            destination: r.address(Field::DestinationAddr, max_len::ADDR_65)?,
            esm_class: r.u8(Field::Integer)?,
            registered_delivery: r.u8(Field::Integer)?,
            data_coding: r.u8(Field::Integer)?,
            tlvs: r.tlvs()?,
        }),
        QUERY_SM => Body::QuerySm(QuerySm {
            message_id: r.cstr(Field::MessageId, max_len::MESSAGE_ID)?,
            source: r.address(Field::SourceAddr, max_len::ADDR)?,
        }),
        QUERY_SM_RESP => Body::QuerySmResp(QuerySmResp {
            message_id: r.cstr(Field::MessageId, max_len::MESSAGE_ID)?,
            final_date: r.cstr(Field::FinalDate, max_len::TIME)?,
            message_state: r.u8(Field::Integer)?,
            error_code: r.u8(Field::Integer)?,
        }),
        CANCEL_SM => Body::CancelSm(CancelSm {
            service_type: r.cstr(Field::ServiceType, max_len::SERVICE_TYPE)?,
            message_id: r.cstr(Field::MessageId, max_len::MESSAGE_ID)?,
            source: r.address(Field::SourceAddr, max_len::ADDR)?,
            destination: r.address(Field::DestinationAddr, max_len::ADDR)?,
        }),
        CANCEL_SM_RESP => Body::CancelSmResp,
        REPLACE_SM => Body::ReplaceSm(ReplaceSm {
            message_id: r.cstr(Field::MessageId, max_len::MESSAGE_ID)?,
            source: r.address(Field::SourceAddr, max_len::ADDR)?,
            schedule_delivery_time: r.cstr(Field::ScheduleDeliveryTime, max_len::TIME)?,
            validity_period: r.cstr(Field::ValidityPeriod, max_len::TIME)?,
            registered_delivery: r.u8(Field::Integer)?,
            sm_default_msg_id: r.u8(Field::Integer)?,
            short_message: r.short_message()?,
        }),
        REPLACE_SM_RESP => Body::ReplaceSmResp,
        ENQUIRE_LINK => Body::EnquireLink,
        ENQUIRE_LINK_RESP => Body::EnquireLinkResp,
        ALERT_NOTIFICATION => Body::AlertNotification(AlertNotification {
            source: r.address(Field::SourceAddr, max_len::ADDR_65)?,
            esme: r.address(Field::EsmeAddr, max_len::ADDR_65)?,
            tlvs: r.tlvs()?,
        }),
        _ => return Ok(None),
    };
    r.end()?;
    Ok(Some(out))
}

fn bind(r: &mut Reader<'_>) -> Result<Bind, BodyError> {
    Ok(Bind {
        system_id: r.cstr(Field::SystemId, max_len::SYSTEM_ID)?,
        password: r.cstr(Field::Password, max_len::PASSWORD)?,
        system_type: r.cstr(Field::SystemType, max_len::SYSTEM_TYPE)?,
        interface_version: r.u8(Field::Integer)?,
        addr_ton: r.u8(Field::Integer)?,
        addr_npi: r.u8(Field::Integer)?,
        address_range: r.cstr(Field::AddressRange, max_len::ADDRESS_RANGE)?,
    })
}

fn bind_resp(r: &mut Reader<'_>) -> Result<BindResp, BodyError> {
    Ok(BindResp {
        system_id: r.cstr(Field::SystemId, max_len::SYSTEM_ID)?,
        tlvs: r.tlvs()?,
    })
}

fn message_id_resp(r: &mut Reader<'_>) -> Result<MessageIdResp, BodyError> {
    Ok(MessageIdResp {
        message_id: r.cstr(Field::MessageId, max_len::MESSAGE_ID)?,
        tlvs: r.tlvs()?,
    })
}

fn submit_sm(r: &mut Reader<'_>) -> Result<SubmitSm, BodyError> {
    Ok(SubmitSm {
        service_type: r.cstr(Field::ServiceType, max_len::SERVICE_TYPE)?,
        source: r.address(Field::SourceAddr, max_len::ADDR)?,
        destination: r.address(Field::DestinationAddr, max_len::ADDR)?,
        esm_class: r.u8(Field::Integer)?,
        protocol_id: r.u8(Field::Integer)?,
        priority_flag: r.u8(Field::Integer)?,
        schedule_delivery_time: r.cstr(Field::ScheduleDeliveryTime, max_len::TIME)?,
        validity_period: r.cstr(Field::ValidityPeriod, max_len::TIME)?,
        registered_delivery: r.u8(Field::Integer)?,
        replace_if_present_flag: r.u8(Field::Integer)?,
        data_coding: r.u8(Field::Integer)?,
        sm_default_msg_id: r.u8(Field::Integer)?,
        short_message: r.short_message()?,
        tlvs: r.tlvs()?,
    })
}

fn submit_multi(r: &mut Reader<'_>) -> Result<SubmitMulti, BodyError> {
    let service_type = r.cstr(Field::ServiceType, max_len::SERVICE_TYPE)?;
    let source = r.address(Field::SourceAddr, max_len::ADDR)?;
    let n = r.u8(Field::NumberOfDests)?;
    let mut destinations = Vec::with_capacity(n as usize);
    for _ in 0..n {
        destinations.push(match r.u8(Field::DestFlag)? {
            1 => DestAddress::Sme(r.address(Field::DestinationAddr, max_len::ADDR)?),
            2 => DestAddress::DistributionList(r.cstr(Field::DlName, max_len::DL_NAME)?),
            value => {
                return Err(BodyError::InvalidValue {
                    field: Field::DestFlag,
                    value,
                });
            }
        });
    }
    Ok(SubmitMulti {
        service_type,
        source,
        destinations,
        esm_class: r.u8(Field::Integer)?,
        protocol_id: r.u8(Field::Integer)?,
        priority_flag: r.u8(Field::Integer)?,
        schedule_delivery_time: r.cstr(Field::ScheduleDeliveryTime, max_len::TIME)?,
        validity_period: r.cstr(Field::ValidityPeriod, max_len::TIME)?,
        registered_delivery: r.u8(Field::Integer)?,
        replace_if_present_flag: r.u8(Field::Integer)?,
        data_coding: r.u8(Field::Integer)?,
        sm_default_msg_id: r.u8(Field::Integer)?,
        short_message: r.short_message()?,
        tlvs: r.tlvs()?,
    })
}

// ---------------------------------------------------------------------------------------
// Encode
// ---------------------------------------------------------------------------------------

/// Append the wire form of `pdu` to `out`. On error `out` is left as it was.
pub fn encode(pdu: &Pdu, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_inner(pdu, out, start);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Encode into a fresh buffer.
pub fn to_bytes(pdu: &Pdu) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode(pdu, &mut out)?;
    Ok(out)
}

fn encode_inner(pdu: &Pdu, out: &mut Vec<u8>, start: usize) -> Result<(), EncodeError> {
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&pdu.command_id().to_be_bytes());
    out.extend_from_slice(&pdu.command_status.to_be_bytes());
    out.extend_from_slice(&pdu.sequence_number.to_be_bytes());
    let mut w = Writer { out };
    match &pdu.body {
        Body::GenericNack
        | Body::Unbind
        | Body::UnbindResp
        | Body::CancelSmResp
        | Body::ReplaceSmResp
        | Body::EnquireLink
        | Body::EnquireLinkResp => {}
        Body::BindTransmitter(b) | Body::BindReceiver(b) | Body::BindTransceiver(b) => {
            w.cstr(&b.system_id, Field::SystemId, max_len::SYSTEM_ID)?;
            w.cstr(&b.password, Field::Password, max_len::PASSWORD)?;
            w.cstr(&b.system_type, Field::SystemType, max_len::SYSTEM_TYPE)?;
            w.u8(b.interface_version);
            w.u8(b.addr_ton);
            w.u8(b.addr_npi);
            w.cstr(
                &b.address_range,
                Field::AddressRange,
                max_len::ADDRESS_RANGE,
            )?;
        }
        Body::BindTransmitterResp(b) | Body::BindReceiverResp(b) | Body::BindTransceiverResp(b) => {
            w.cstr(&b.system_id, Field::SystemId, max_len::SYSTEM_ID)?;
            w.tlvs(&b.tlvs)?;
        }
        Body::Outbind(b) => {
            w.cstr(&b.system_id, Field::SystemId, max_len::SYSTEM_ID)?;
            w.cstr(&b.password, Field::Password, max_len::PASSWORD)?;
        }
        Body::SubmitSm(b) | Body::DeliverSm(b) => {
            w.cstr(&b.service_type, Field::ServiceType, max_len::SERVICE_TYPE)?;
            w.address(&b.source, Field::SourceAddr, max_len::ADDR)?;
            w.address(&b.destination, Field::DestinationAddr, max_len::ADDR)?;
            w.u8(b.esm_class);
            w.u8(b.protocol_id);
            w.u8(b.priority_flag);
            w.cstr(
                &b.schedule_delivery_time,
                Field::ScheduleDeliveryTime,
                max_len::TIME,
            )?;
            w.cstr(&b.validity_period, Field::ValidityPeriod, max_len::TIME)?;
            w.u8(b.registered_delivery);
            w.u8(b.replace_if_present_flag);
            w.u8(b.data_coding);
            w.u8(b.sm_default_msg_id);
            w.short_message(&b.short_message)?;
            w.tlvs(&b.tlvs)?;
        }
        Body::SubmitSmResp(b) | Body::DeliverSmResp(b) | Body::DataSmResp(b) => {
            w.cstr(&b.message_id, Field::MessageId, max_len::MESSAGE_ID)?;
            w.tlvs(&b.tlvs)?;
        }
        Body::SubmitMulti(b) => {
            w.cstr(&b.service_type, Field::ServiceType, max_len::SERVICE_TYPE)?;
            w.address(&b.source, Field::SourceAddr, max_len::ADDR)?;
            w.count(b.destinations.len(), Field::NumberOfDests)?;
            for d in &b.destinations {
                match d {
                    DestAddress::Sme(a) => {
                        w.u8(1);
                        w.address(a, Field::DestinationAddr, max_len::ADDR)?;
                    }
                    DestAddress::DistributionList(name) => {
                        w.u8(2);
                        w.cstr(name, Field::DlName, max_len::DL_NAME)?;
                    }
                }
            }
            w.u8(b.esm_class);
            w.u8(b.protocol_id);
            w.u8(b.priority_flag);
            w.cstr(
                &b.schedule_delivery_time,
                Field::ScheduleDeliveryTime,
                max_len::TIME,
            )?;
            w.cstr(&b.validity_period, Field::ValidityPeriod, max_len::TIME)?;
            w.u8(b.registered_delivery);
            w.u8(b.replace_if_present_flag);
            w.u8(b.data_coding);
            w.u8(b.sm_default_msg_id);
            w.short_message(&b.short_message)?;
            w.tlvs(&b.tlvs)?;
        }
        Body::SubmitMultiResp(b) => {
            w.cstr(&b.message_id, Field::MessageId, max_len::MESSAGE_ID)?;
            w.count(b.unsuccess.len(), Field::NoUnsuccess)?;
            for u in &b.unsuccess {
                w.address(&u.address, Field::DestinationAddr, max_len::ADDR)?;
                w.u32(u.error_status_code);
            }
        }
        Body::DataSm(b) => {
            w.cstr(&b.service_type, Field::ServiceType, max_len::SERVICE_TYPE)?;
            w.address(&b.source, Field::SourceAddr, max_len::ADDR_65)?;
            w.address(&b.destination, Field::DestinationAddr, max_len::ADDR_65)?;
            w.u8(b.esm_class);
            w.u8(b.registered_delivery);
            w.u8(b.data_coding);
            w.tlvs(&b.tlvs)?;
        }
        Body::QuerySm(b) => {
            w.cstr(&b.message_id, Field::MessageId, max_len::MESSAGE_ID)?;
            w.address(&b.source, Field::SourceAddr, max_len::ADDR)?;
        }
        Body::QuerySmResp(b) => {
            w.cstr(&b.message_id, Field::MessageId, max_len::MESSAGE_ID)?;
            w.cstr(&b.final_date, Field::FinalDate, max_len::TIME)?;
            w.u8(b.message_state);
            w.u8(b.error_code);
        }
        Body::CancelSm(b) => {
            w.cstr(&b.service_type, Field::ServiceType, max_len::SERVICE_TYPE)?;
            w.cstr(&b.message_id, Field::MessageId, max_len::MESSAGE_ID)?;
            w.address(&b.source, Field::SourceAddr, max_len::ADDR)?;
            w.address(&b.destination, Field::DestinationAddr, max_len::ADDR)?;
        }
        Body::ReplaceSm(b) => {
            w.cstr(&b.message_id, Field::MessageId, max_len::MESSAGE_ID)?;
            w.address(&b.source, Field::SourceAddr, max_len::ADDR)?;
            w.cstr(
                &b.schedule_delivery_time,
                Field::ScheduleDeliveryTime,
                max_len::TIME,
            )?;
            w.cstr(&b.validity_period, Field::ValidityPeriod, max_len::TIME)?;
            w.u8(b.registered_delivery);
            w.u8(b.sm_default_msg_id);
            w.short_message(&b.short_message)?;
        }
        Body::AlertNotification(b) => {
            w.address(&b.source, Field::SourceAddr, max_len::ADDR_65)?;
            w.address(&b.esme, Field::EsmeAddr, max_len::ADDR_65)?;
            w.tlvs(&b.tlvs)?;
        }
    }
    let len = u32::try_from(out.len() - start).map_err(|_| EncodeError::PduTooLarge)?;
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.out.push(v);
    }

    fn u32(&mut self, v: u32) {
        self.out.extend_from_slice(&v.to_be_bytes());
    }

    fn cstr(&mut self, s: &str, field: Field, max: usize) -> Result<(), EncodeError> {
        if s.len() + 1 > max {
            return Err(EncodeError::TooLong {
                field,
                len: s.len() + 1,
                max,
            });
        }
        if s.as_bytes().contains(&0) {
            return Err(EncodeError::InteriorNul(field));
        }
        self.out.extend_from_slice(s.as_bytes());
        self.out.push(0);
        Ok(())
    }

    fn address(&mut self, a: &Address, field: Field, max: usize) -> Result<(), EncodeError> {
        self.u8(a.ton);
        self.u8(a.npi);
        self.cstr(&a.addr, field, max)
    }

    fn count(&mut self, n: usize, field: Field) -> Result<(), EncodeError> {
        let n = u8::try_from(n).map_err(|_| EncodeError::TooLong {
            field,
            len: n,
            max: 255,
        })?;
        self.u8(n);
        Ok(())
    }

    fn short_message(&mut self, sm: &[u8]) -> Result<(), EncodeError> {
        self.count(sm.len(), Field::ShortMessage)?;
        self.out.extend_from_slice(sm);
        Ok(())
    }

    fn tlvs(&mut self, tlvs: &Tlvs) -> Result<(), EncodeError> {
        for t in tlvs.iter() {
            let len = u16::try_from(t.value.len()).map_err(|_| EncodeError::TooLong {
                field: Field::Tlv,
                len: t.value.len(),
                max: u16::MAX as usize,
            })?;
            self.out.extend_from_slice(&t.tag.to_be_bytes());
            self.out.extend_from_slice(&len.to_be_bytes());
            self.out.extend_from_slice(&t.value);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enquire_link_is_sixteen_octets() {
        let bytes = to_bytes(&Pdu::new(7, Body::EnquireLink)).unwrap();
        assert_eq!(bytes, [0, 0, 0, 16, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7]);
        assert_eq!(
            decode(&bytes).unwrap(),
            Some((Pdu::new(7, Body::EnquireLink), 16))
        );
    }

    #[test]
    fn too_long_system_id_is_rejected_on_decode_with_rinvsysid() {
        let mut bytes = to_bytes(&Pdu::new(1, Body::BindTransmitter(Bind::default()))).unwrap();
        // Replace the empty system_id with 16 non-NUL octets + NUL (17 > 16).
        bytes.splice(16..17, b"ABCDEFGHIJKLMNOP\0".iter().copied());
        let len = bytes.len() as u32;
        bytes[0..4].copy_from_slice(&len.to_be_bytes());
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.command_status(), ESME_RINVSYSID);
        assert_eq!(err.frame_len(), Some(bytes.len()));
    }

    #[test]
    fn oversized_length_rejected_from_first_four_octets() {
        let err = decode(&[0, 1, 0, 1]).unwrap_err();
        assert!(matches!(
            err,
            DecodeError::InvalidLength {
                command_length: 65537,
                sequence_number: None,
                ..
            }
        ));
        assert!(decode(&[0, 0, 0, 15]).is_err());
        assert_eq!(decode(&[0, 0, 0]).unwrap(), None);
    }

    #[test]
    fn error_response_may_omit_body() {
        let bytes = [0, 0, 0, 16, 0x80, 0, 0, 4, 0, 0, 0, 0x58, 0, 0, 0, 9];
        let (pdu, _) = decode(&bytes).unwrap().unwrap();
        assert_eq!(pdu.command_status, ESME_RTHROTTLED);
        assert_eq!(pdu.body, Body::SubmitSmResp(MessageIdResp::default()));
    }

    #[test]
    fn tlv_accessors_read_and_write() {
        let mut t = Tlvs::default();
        t.set_receipted_message_id("abc");
        t.set_message_state(MessageState::Delivered);
        t.set_network_error_code(NetworkErrorCode {
            network_type: 3,
            error_code: 0x0102,
        });
        t.set_sar_msg_ref_num(0xBEEF);
        t.set_sar_total_segments(3);
        t.set_sar_segment_seqnum(2);
        t.set_user_message_reference(9);
        t.set_source_port(1);
        t.set_destination_port(2);
        t.set_sc_interface_version(0x34);
        t.set_message_payload(b"hi".to_vec());
        t.set_message_state(MessageState::Expired);
        assert_eq!(t.receipted_message_id(), Some("abc"));
        assert_eq!(t.message_state(), Some(3));
        assert_eq!(t.network_error_code().unwrap().error_code, 0x0102);
        assert_eq!(t.sar_msg_ref_num(), Some(0xBEEF));
        assert_eq!(t.sar_total_segments(), Some(3));
        assert_eq!(t.sar_segment_seqnum(), Some(2));
        assert_eq!(t.user_message_reference(), Some(9));
        assert_eq!(t.source_port(), Some(1));
        assert_eq!(t.destination_port(), Some(2));
        assert_eq!(t.sc_interface_version(), Some(0x34));
        assert_eq!(t.message_payload(), Some(&b"hi"[..]));
        assert_eq!(t.0.len(), 11);
        // Wrong length → None, not a panic.
        t.set(tag::SOURCE_PORT, vec![1, 2, 3]);
        assert_eq!(t.source_port(), None);
    }

    #[test]
    fn encode_rejects_over_long_fields_and_leaves_buffer_alone() {
        let mut out = vec![1, 2, 3];
        let bind = Bind {
            password: "123456789".into(),
            ..Bind::default()
        };
        let err = encode(&Pdu::new(1, Body::BindTransceiver(bind)), &mut out).unwrap_err();
        assert!(matches!(
            err,
            EncodeError::TooLong {
                field: Field::Password,
                ..
            }
        ));
        assert_eq!(out, [1, 2, 3]);
    }
}
