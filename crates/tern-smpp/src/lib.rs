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
//!
//! Every edge case is therefore a plain unit test with a virtual clock (`tests/session.rs`
//! wires two sessions back to back), and `fuzz/` drives the decoder and the session with
//! arbitrary bytes.

pub mod pdu;
pub mod receipt;
pub mod session;
pub mod status;

pub use pdu::{Body, DecodeError, EncodeError, Pdu, decode, encode};
pub use receipt::{DeliveryReceipt, ReceiptStat, message_ids_match};
pub use session::{CloseReason, Event, Role, Session, SessionConfig, SessionError, State};
