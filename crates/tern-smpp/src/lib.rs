//! SMPP 3.4 as a sans-IO protocol library.
//!
//! Nothing here touches a socket, a clock or a runtime; the carrier connector, the carrier
//! simulator and the customer-facing SMPP server each wrap the same pieces in their own
//! async task:
//!
//! * [`pdu`] — every 3.4 PDU as a typed struct, [`pdu::decode`] (framing: `Ok(None)` means
//!   "need more bytes") and [`pdu::encode`]. Field limits are enforced in both directions,
//!   `command_length` is checked against a limit before anything is buffered, TLVs are kept
//!   byte-exact in wire order (unknown ones included) behind typed accessors, and no byte
//!   sequence makes it panic. The module comment explains why the codec is hand-written
//!   rather than wrapping `rusmpp`.
//! * [`receipt`] — the `id:… stat:…` delivery-receipt text (parse, tolerant; build, for the
//!   simulator) and the hex/decimal message-id matching rule.
//! * [`session`] — one bind as a state machine in the quinn-proto shape:
//!   `handle_input(bytes, now)`, `poll_transmit()`, `poll_event()`, `poll_timeout()`,
//!   `handle_timeout(now)`, plus `bind`/`accept_bind`/`submit`/`respond`/`unbind`. It owns
//!   sequence numbers, the request window and its timeouts, enquire_link keepalives,
//!   wrong-state and garbage handling and the unbind handshake; the application owns
//!   credentials, message ids and what a submit means.
//! * [`status`] — `command_status` constants.
//! * [`text`] — message bodies to `submit_sm` PDUs (GSM-7 packed or not, Latin-1 or UCS-2;
//!   long messages by 8- or 16-bit UDH, SAR TLVs or `message_payload`, split exactly as
//!   `tern_sms` counts segments), received `deliver_sm`/`data_sm` back to text, and a
//!   bounded [`text::Reassembler`] for concatenated messages driven by a passed-in clock.
//!
//! Every edge case is therefore a plain unit test with a virtual clock (`tests/session.rs`
//! wires two sessions back to back), and `fuzz/` drives the decoder and the session with
//! arbitrary bytes.
//!
//! ```
//! use std::time::Instant;
//! use tern_smpp::pdu::{BindKind, Body, MessageIdResp, Pdu, SubmitSm};
//! use tern_smpp::{Event, Role, Session, SessionConfig, status};
//!
//! let now = Instant::now();
//! let mut esme = Session::new(Role::Client, SessionConfig::default(), now);
//! let mut smsc = Session::new(Role::Server, SessionConfig::default(), now);
//!
//! esme.bind(BindKind::Transceiver, "acme", "secret", now)?;
//! smsc.handle_input(&esme.poll_transmit().unwrap_or_default(), now);
//! let Some(Event::BindRequest { bind, .. }) = smsc.poll_event() else { unreachable!() };
//! assert_eq!(bind.password, "secret"); // the application checks credentials
//! smsc.accept_bind("tern")?;
//! esme.handle_input(&smsc.poll_transmit().unwrap_or_default(), now);
//! assert!(matches!(esme.poll_event(), Some(Event::Bound { .. })));
//!
//! let seq = esme.submit(Pdu::new(0, Body::SubmitSm(SubmitSm::default())), now)?;
//! smsc.handle_input(&esme.poll_transmit().unwrap_or_default(), now);
//! let Some(Event::Request(req)) = smsc.poll_event() else { unreachable!() };
//! let resp = MessageIdResp { message_id: "m-1".into(), ..Default::default() };
//! smsc.respond(req.sequence_number, status::ESME_ROK, Body::SubmitSmResp(resp))?;
//! esme.handle_input(&smsc.poll_transmit().unwrap_or_default(), now);
//! let Some(Event::Response { pdu, .. }) = esme.poll_event() else { unreachable!() };
//! assert_eq!(pdu.sequence_number, seq);
//! # Ok::<(), tern_smpp::SessionError>(())
//! ```

pub mod pdu;
pub mod receipt;
pub mod session;
pub mod status;
pub mod text;

pub use pdu::{Body, DecodeError, EncodeError, Pdu, decode, encode};
pub use receipt::{DeliveryReceipt, ReceiptStat, message_ids_match};
pub use session::{CloseReason, Event, Role, Session, SessionConfig, SessionError, State};
pub use text::{LongMessageMode, Reassembler, TextOptions, encode_submits, read_part};
