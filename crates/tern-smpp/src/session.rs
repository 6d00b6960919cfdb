//! One SMPP session as a sans-IO state machine (the quinn-proto shape).
//!
//! The driver owns the socket and the clock. It feeds received bytes to
//! [`Session::handle_input`], writes whatever [`Session::poll_transmit`] returns, sleeps
//! until [`Session::poll_timeout`] and then calls [`Session::handle_timeout`], and drains
//! [`Session::poll_event`]. The application acts through [`Session::bind`],
//! [`Session::submit`], [`Session::respond`], [`Session::accept_bind`] /
//! [`Session::reject_bind`] and [`Session::unbind`]. After [`Event::Closed`] the driver
//! flushes the pending transmit and closes the connection.
//!
//! What the session does by itself: answers `enquire_link`, sends `enquire_link` after
//! [`SessionConfig::enquire_link_interval`] without traffic and declares the link dead after
//! [`SessionConfig::max_missed_enquire_links`] unanswered ones, answers wrong-state
//! requests (`ESME_RINVBNDSTS`, `ESME_RALYBND`), undecodable PDUs (`generic_nack` or the
//! command's `*_resp` with the fitting status) and requests beyond the inbound window
//! (`ESME_RTHROTTLED`), times out requests, and runs the unbind handshake.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::pdu::{
    self, Bind, BindKind, BindResp, Body, DEFAULT_MAX_PDU_LEN, DecodeError, EncodeError, Outbind,
    Pdu, RESPONSE_BIT, command_id::*, error_response,
};
use crate::status::*;

/// Which end of the connection this session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The ESME: binds, submits, receives `deliver_sm`.
    Client,
    /// The SMSC (Tern's customer-facing server, or the carrier simulator).
    Server,
}

impl Role {
    fn peer(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// Bind state (§2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Connected, not bound.
    Open,
    /// Client: bind sent, waiting for the response. Server: bind received, waiting for the
    /// application's [`Session::accept_bind`] / [`Session::reject_bind`].
    Binding,
    BoundTx,
    BoundRx,
    BoundTrx,
    /// `unbind` sent, waiting for `unbind_resp`.
    Unbinding,
    /// Done; flush the transmit buffer and close the connection.
    Closed,
}

impl State {
    fn bound(kind: BindKind) -> State {
        match kind {
            BindKind::Transmitter => State::BoundTx,
            BindKind::Receiver => State::BoundRx,
            BindKind::Transceiver => State::BoundTrx,
        }
    }

    pub fn is_bound(self) -> bool {
        matches!(self, State::BoundTx | State::BoundRx | State::BoundTrx)
    }
}

/// Session settings. Defaults follow common carrier practice.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Requests this side may have outstanding (sent, unanswered) at once; `submit` fails
    /// with [`SessionError::WindowFull`] beyond it. Default 10.
    pub window: usize,
    /// Requests from the peer the application may hold unanswered; further ones are answered
    /// `ESME_RTHROTTLED` by the session. Default 100.
    pub inbound_window: usize,
    /// How long a request waits for its response before [`Event::ResponseTimeout`].
    /// Default 30 s.
    pub response_timeout: Duration,
    /// Idle time (nothing received) after which a bound session sends `enquire_link`.
    /// Default 30 s.
    pub enquire_link_interval: Duration,
    /// Consecutive unanswered `enquire_link`s after which the link is dead and the session
    /// closes with [`CloseReason::LinkDead`]. Default 3.
    pub max_missed_enquire_links: u32,
    /// Server only: how long a connection may stay unbound before it is closed. Default
    /// 30 s; `None` disables it.
    pub session_init_timeout: Option<Duration>,
    /// Largest `command_length` accepted; bigger frames are answered with `generic_nack`
    /// and the session closes. Default 64 KiB.
    pub max_pdu_len: usize,
    /// `interface_version` sent in bind and `sc_interface_version` in bind responses.
    /// Default 0x34.
    pub interface_version: u8,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            window: 10,
            inbound_window: 100,
            response_timeout: Duration::from_secs(30),
            enquire_link_interval: Duration::from_secs(30),
            max_missed_enquire_links: 3,
            session_init_timeout: Some(Duration::from_secs(30)),
            max_pdu_len: DEFAULT_MAX_PDU_LEN,
            interface_version: 0x34,
        }
    }
}

/// Why the session closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Our `unbind` was acknowledged.
    Unbound,
    /// The peer unbound (we answered `unbind_resp`).
    PeerUnbound,
    /// Our `unbind` was not answered in time.
    UnbindTimeout,
    /// Our bind was not answered in time.
    BindTimeout,
    /// Server: no bind within `session_init_timeout`.
    SessionInitTimeout,
    /// `max_missed_enquire_links` keepalives went unanswered.
    LinkDead,
    /// The peer sent a frame with an impossible `command_length`; we answered
    /// `generic_nack` and the stream cannot be resynchronised.
    Framing,
}

/// Something the application must see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Server: a peer asks to bind; answer with [`Session::accept_bind`] or
    /// [`Session::reject_bind`].
    BindRequest {
        sequence_number: u32,
        kind: BindKind,
        bind: Bind,
    },
    /// Client: the bind succeeded. `system_id` is the SMSC's.
    Bound {
        kind: BindKind,
        system_id: String,
        sc_interface_version: Option<u8>,
    },
    /// Client: the bind was refused (or answered with `generic_nack`); the session is
    /// `Open` again.
    BindRejected { status: u32 },
    /// Client: the SMSC asks us to bind as a receiver.
    Outbind(Outbind),
    /// A request the application must answer with [`Session::respond`]: `submit_sm`,
    /// `submit_multi`, `data_sm`, `query_sm`, `cancel_sm`, `replace_sm` (server) or
    /// `deliver_sm`, `data_sm` (client).
    Request(Pdu),
    /// Client: `alert_notification` (has no response).
    Alert(Pdu),
    /// The response (or `generic_nack`) to a request sent with [`Session::submit`].
    Response { request_command_id: u32, pdu: Pdu },
    /// A request sent with [`Session::submit`] got no response in time; its window slot is
    /// released. Whether the peer acted on it is unknown.
    ResponseTimeout {
        sequence_number: u32,
        command_id: u32,
    },
    /// A response that matches no outstanding request; dropped.
    UnexpectedResponse(Pdu),
    /// The peer sent something undecodable; already answered where SMPP allows it (never
    /// for a response: an undecodable response leaves its request to time out).
    ProtocolError(DecodeError),
    /// The session is over.
    Closed(CloseReason),
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the window of {0} outstanding requests is full")]
    WindowFull(usize),
    #[error("not bound (state {0:?})")]
    NotBound(State),
    #[error("command {command_id:#010x} not allowed for this role in state {state:?}")]
    NotAllowed { command_id: u32, state: State },
    #[error("the session is closed")]
    Closed,
    #[error("no request with sequence number {0} awaits a response")]
    UnknownRequest(u32),
    #[error("{body:#010x} does not answer a request {request:#010x}")]
    WrongResponse { request: u32, body: u32 },
    #[error("only a client binds, from the Open state (state {0:?})")]
    CannotBind(State),
    #[error("no bind request is pending")]
    NoBindPending,
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

#[derive(Debug, Clone, Copy)]
struct Outstanding {
    command_id: u32,
    deadline: Instant,
    /// Sent by the session itself (bind, unbind, enquire_link): not in the window.
    internal: bool,
}

/// One SMPP session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: SessionConfig,
    state: State,
    rx: Vec<u8>,
    tx: Vec<u8>,
    events: VecDeque<Event>,
    next_seq: u32,
    outstanding: BTreeMap<u32, Outstanding>,
    /// Peer requests the application has not answered yet: sequence number → command id.
    inbound: BTreeMap<u32, u32>,
    /// Server: the bind awaiting `accept_bind`; client: the bind in flight.
    pending_bind: Option<(u32, BindKind)>,
    opened_at: Instant,
    last_rx: Instant,
    enquire_in_flight: Option<u32>,
    missed_enquire_links: u32,
}

/// Largest sequence number; numbers wrap to 1 after it (§5.1.4: 0x00000001..0x7FFFFFFF).
pub const MAX_SEQUENCE_NUMBER: u32 = 0x7FFF_FFFF;

impl Session {
    pub fn new(role: Role, config: SessionConfig, now: Instant) -> Self {
        Session {
            role,
            config,
            state: State::Open,
            rx: Vec::new(),
            tx: Vec::new(),
            events: VecDeque::new(),
            next_seq: 1,
            outstanding: BTreeMap::new(),
            inbound: BTreeMap::new(),
            pending_bind: None,
            opened_at: now,
            last_rx: now,
            enquire_in_flight: None,
            missed_enquire_links: 0,
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Requests sent with [`Session::submit`] still awaiting a response.
    pub fn outstanding(&self) -> usize {
        self.outstanding.values().filter(|o| !o.internal).count()
    }

    /// Sequence numbers of submitted requests still awaiting a response (to fail them
    /// when the connection drops).
    pub fn outstanding_requests(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.outstanding
            .iter()
            .filter(|(_, o)| !o.internal)
            .map(|(seq, o)| (*seq, o.command_id))
    }

    /// Set the next sequence number (for tests of wrap-around and for resuming). `0` and
    /// values above [`MAX_SEQUENCE_NUMBER`] become 1.
    pub fn set_next_sequence_number(&mut self, seq: u32) {
        self.next_seq = if seq == 0 || seq > MAX_SEQUENCE_NUMBER {
            1
        } else {
            seq
        };
    }

    // ------------------------------------------------------------------ driver interface

    /// Bytes to write to the connection, coalesced; `None` when there is nothing to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.tx.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.tx))
        }
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Session::handle_timeout`] must next be called; `None` when no timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.state == State::Closed {
            return None;
        }
        let mut next = self.outstanding.values().map(|o| o.deadline).min();
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state.is_bound() && self.enquire_in_flight.is_none() {
            consider(self.last_rx + self.config.enquire_link_interval);
        }
        if let Some(t) = self.session_init_deadline() {
            consider(t);
        }
        next
    }

    fn session_init_deadline(&self) -> Option<Instant> {
        match (self.role, self.state, self.config.session_init_timeout) {
            (Role::Server, State::Open, Some(t)) => Some(self.opened_at + t),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        let expired: Vec<u32> = self
            .outstanding
            .iter()
            .filter(|(_, o)| o.deadline <= now)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in expired {
            let Some(o) = self.outstanding.remove(&seq) else {
                continue;
            };
            match o.command_id {
                ENQUIRE_LINK => {
                    self.enquire_in_flight = None;
                    self.missed_enquire_links += 1;
                    if self.missed_enquire_links >= self.config.max_missed_enquire_links {
                        self.close(CloseReason::LinkDead);
                        return;
                    }
                }
                BIND_TRANSMITTER | BIND_RECEIVER | BIND_TRANSCEIVER => {
                    self.events.push_back(Event::ResponseTimeout {
                        sequence_number: seq,
                        command_id: o.command_id,
                    });
                    self.close(CloseReason::BindTimeout);
                    return;
                }
                UNBIND => {
                    self.close(CloseReason::UnbindTimeout);
                    return;
                }
                command_id => self.events.push_back(Event::ResponseTimeout {
                    sequence_number: seq,
                    command_id,
                }),
            }
        }
        if self.session_init_deadline().is_some_and(|t| t <= now) {
            self.close(CloseReason::SessionInitTimeout);
            return;
        }
        if self.state.is_bound()
            && self.enquire_in_flight.is_none()
            && self.last_rx + self.config.enquire_link_interval <= now
        {
            let seq = self.send_request(Body::EnquireLink, now, true);
            self.enquire_in_flight = seq;
        }
    }

    /// Feed bytes received from the connection.
    pub fn handle_input(&mut self, bytes: &[u8], now: Instant) {
        if self.state == State::Closed || bytes.is_empty() {
            return;
        }
        self.last_rx = now;
        self.rx.extend_from_slice(bytes);
        let mut consumed = 0;
        while self.state != State::Closed {
            let buf = self.rx.get(consumed..).unwrap_or_default();
            match pdu::decode_with_max(buf, self.config.max_pdu_len) {
                Ok(None) => break,
                Ok(Some((pdu, n))) => {
                    consumed += n;
                    self.on_pdu(pdu);
                }
                Err(e) => match e.frame_len() {
                    Some(n) => {
                        consumed += n;
                        self.on_undecodable(e);
                    }
                    None => {
                        let seq = match &e {
                            DecodeError::InvalidLength {
                                sequence_number, ..
                            } => sequence_number.unwrap_or(0),
                            _ => 0,
                        };
                        self.queue(&Pdu {
                            command_status: ESME_RINVCMDLEN,
                            sequence_number: seq,
                            body: Body::GenericNack,
                        });
                        self.events.push_back(Event::ProtocolError(e));
                        self.close(CloseReason::Framing);
                    }
                },
            }
        }
        if self.state == State::Closed {
            self.rx = Vec::new();
        } else {
            self.rx.drain(..consumed.min(self.rx.len()));
        }
    }

    // ------------------------------------------------------------------ application commands

    /// Client: bind with the default `system_type`, `addr_ton`/`addr_npi` and
    /// `address_range`. Returns the bind's sequence number.
    pub fn bind(
        &mut self,
        kind: BindKind,
        system_id: &str,
        password: &str,
        now: Instant,
    ) -> Result<u32, SessionError> {
        let bind = Bind {
            system_id: system_id.to_owned(),
            password: password.to_owned(),
            interface_version: self.config.interface_version,
            ..Bind::default()
        };
        self.bind_with(kind, bind, now)
    }

    /// Client: bind with every field given.
    pub fn bind_with(
        &mut self,
        kind: BindKind,
        bind: Bind,
        now: Instant,
    ) -> Result<u32, SessionError> {
        if self.role != Role::Client || self.state != State::Open {
            return Err(SessionError::CannotBind(self.state));
        }
        let body = match kind {
            BindKind::Transmitter => Body::BindTransmitter(bind),
            BindKind::Receiver => Body::BindReceiver(bind),
            BindKind::Transceiver => Body::BindTransceiver(bind),
        };
        let seq = self.try_send_request(body, now, true)?;
        self.state = State::Binding;
        self.pending_bind = Some((seq, kind));
        Ok(seq)
    }

    /// Server: accept the pending bind; `system_id` is ours, sent in the response.
    pub fn accept_bind(&mut self, system_id: &str) -> Result<(), SessionError> {
        let (seq, kind) = self.take_pending_bind()?;
        let mut resp = BindResp {
            system_id: system_id.to_owned(),
            ..BindResp::default()
        };
        resp.tlvs
            .set_sc_interface_version(self.config.interface_version);
        let body = match kind {
            BindKind::Transmitter => Body::BindTransmitterResp(resp),
            BindKind::Receiver => Body::BindReceiverResp(resp),
            BindKind::Transceiver => Body::BindTransceiverResp(resp),
        };
        if let Err(e) = self.try_queue(&Pdu::new(seq, body)) {
            self.pending_bind = Some((seq, kind));
            return Err(e);
        }
        self.state = State::bound(kind);
        Ok(())
    }

    /// Server: refuse the pending bind (e.g. `ESME_RINVPASWD`, `ESME_RBINDFAIL`); the
    /// session returns to `Open` so the peer may try again.
    pub fn reject_bind(&mut self, status: u32) -> Result<(), SessionError> {
        let (seq, kind) = self.take_pending_bind()?;
        self.queue(&error_response(kind.command_id(), seq, status));
        self.state = State::Open;
        Ok(())
    }

    fn take_pending_bind(&mut self) -> Result<(u32, BindKind), SessionError> {
        if self.role != Role::Server || self.state != State::Binding {
            return Err(SessionError::NoBindPending);
        }
        self.pending_bind.take().ok_or(SessionError::NoBindPending)
    }

    /// Send a request (`submit_sm`, `deliver_sm`, `data_sm`, `query_sm`, …) allowed for
    /// this role and bind state. Its `sequence_number` and `command_status` are set by the
    /// session; the assigned sequence number is returned and comes back in
    /// [`Event::Response`] or [`Event::ResponseTimeout`].
    pub fn submit(&mut self, mut pdu: Pdu, now: Instant) -> Result<u32, SessionError> {
        let id = pdu.command_id();
        match self.state {
            State::Closed => return Err(SessionError::Closed),
            s if !s.is_bound() => return Err(SessionError::NotBound(s)),
            _ => {}
        }
        let session_managed = matches!(
            id,
            BIND_TRANSMITTER | BIND_RECEIVER | BIND_TRANSCEIVER | UNBIND | ENQUIRE_LINK | OUTBIND
        );
        if session_managed
            || id & RESPONSE_BIT != 0
            || permitted(self.role.peer(), self.state, id).is_err()
        {
            return Err(SessionError::NotAllowed {
                command_id: id,
                state: self.state,
            });
        }
        if id == ALERT_NOTIFICATION {
            // No response exists, so no window slot.
            let seq = self.allocate_seq();
            pdu.sequence_number = seq;
            pdu.command_status = ESME_ROK;
            self.try_queue(&pdu)?;
            return Ok(seq);
        }
        if self.outstanding() >= self.config.window {
            return Err(SessionError::WindowFull(self.config.window));
        }
        self.try_send_request(pdu.body, now, false)
    }

    /// Answer a request delivered as [`Event::Request`]. `body` must be that request's
    /// `*_resp` or [`Body::GenericNack`].
    pub fn respond(
        &mut self,
        sequence_number: u32,
        command_status: u32,
        body: Body,
    ) -> Result<(), SessionError> {
        if self.state == State::Closed {
            return Err(SessionError::Closed);
        }
        let Some(request) = self.inbound.get(&sequence_number).copied() else {
            return Err(SessionError::UnknownRequest(sequence_number));
        };
        let body_id = body.command_id();
        if body_id != request | RESPONSE_BIT && body_id != GENERIC_NACK {
            return Err(SessionError::WrongResponse {
                request,
                body: body_id,
            });
        }
        self.try_queue(&Pdu {
            command_status,
            sequence_number,
            body,
        })?;
        self.inbound.remove(&sequence_number);
        Ok(())
    }

    /// Answer a request with an error status and the default response body.
    pub fn reject(
        &mut self,
        sequence_number: u32,
        command_status: u32,
    ) -> Result<(), SessionError> {
        let request = self
            .inbound
            .get(&sequence_number)
            .copied()
            .ok_or(SessionError::UnknownRequest(sequence_number))?;
        self.respond(
            sequence_number,
            command_status,
            error_response(request, sequence_number, command_status).body,
        )
    }

    /// Start the unbind handshake; the session closes with [`CloseReason::Unbound`] when
    /// the peer answers (or [`CloseReason::UnbindTimeout`]).
    pub fn unbind(&mut self, now: Instant) -> Result<(), SessionError> {
        if !self.state.is_bound() {
            return Err(if self.state == State::Closed {
                SessionError::Closed
            } else {
                SessionError::NotBound(self.state)
            });
        }
        self.try_send_request(Body::Unbind, now, true)?;
        self.state = State::Unbinding;
        Ok(())
    }

    // ------------------------------------------------------------------ internals

    fn allocate_seq(&mut self) -> u32 {
        // Skip numbers still in flight after a wrap (only possible with a huge backlog).
        for _ in 0..=self.outstanding.len() {
            let seq = self.next_seq;
            self.next_seq = if seq >= MAX_SEQUENCE_NUMBER {
                1
            } else {
                seq + 1
            };
            if !self.outstanding.contains_key(&seq) {
                return seq;
            }
        }
        self.next_seq
    }

    fn try_send_request(
        &mut self,
        body: Body,
        now: Instant,
        internal: bool,
    ) -> Result<u32, SessionError> {
        let command_id = body.command_id();
        let seq = self.allocate_seq();
        self.try_queue(&Pdu::new(seq, body))?;
        self.outstanding.insert(
            seq,
            Outstanding {
                command_id,
                deadline: now + self.config.response_timeout,
                internal,
            },
        );
        Ok(seq)
    }

    /// For bodies the session builds itself, which always encode.
    fn send_request(&mut self, body: Body, now: Instant, internal: bool) -> Option<u32> {
        self.try_send_request(body, now, internal).ok()
    }

    fn try_queue(&mut self, pdu: &Pdu) -> Result<(), SessionError> {
        pdu::encode(pdu, &mut self.tx)?;
        Ok(())
    }

    /// For PDUs the session builds itself (empty or default bodies), which always encode.
    fn queue(&mut self, pdu: &Pdu) {
        let _ = pdu::encode(pdu, &mut self.tx);
    }

    fn close(&mut self, reason: CloseReason) {
        self.state = State::Closed;
        self.pending_bind = None;
        self.enquire_in_flight = None;
        self.inbound.clear();
        self.events.push_back(Event::Closed(reason));
    }

    fn on_undecodable(&mut self, e: DecodeError) {
        if let Some(h) = e.header() {
            // Never answer a response; answer a request with its own *_resp where it has one.
            if h.command_id & RESPONSE_BIT == 0 || matches!(e, DecodeError::UnknownCommand { .. }) {
                let reply = match e {
                    DecodeError::UnknownCommand { .. } => Pdu {
                        command_status: ESME_RINVCMDID,
                        sequence_number: h.sequence_number,
                        body: Body::GenericNack,
                    },
                    _ => error_response(h.command_id, h.sequence_number, e.command_status()),
                };
                self.queue(&reply);
            }
        }
        self.events.push_back(Event::ProtocolError(e));
    }

    fn on_pdu(&mut self, pdu: Pdu) {
        // Any well-formed PDU proves the link is alive.
        self.missed_enquire_links = 0;
        let id = pdu.command_id();
        if id & RESPONSE_BIT != 0 {
            self.on_response(pdu);
            return;
        }
        if let Err(status) = permitted(self.role, self.state, id) {
            if id == OUTBIND && self.role == Role::Client {
                // outbind has no response; a second one is ignored.
                return;
            }
            self.queue(&error_response(id, pdu.sequence_number, status));
            return;
        }
        let seq = pdu.sequence_number;
        match pdu.body {
            Body::EnquireLink => self.queue(&Pdu::new(seq, Body::EnquireLinkResp)),
            Body::BindTransmitter(bind)
            | Body::BindReceiver(bind)
            | Body::BindTransceiver(bind) => {
                let kind = BindKind::from_command_id(id).unwrap_or(BindKind::Transceiver);
                self.state = State::Binding;
                self.pending_bind = Some((seq, kind));
                self.events.push_back(Event::BindRequest {
                    sequence_number: seq,
                    kind,
                    bind,
                });
            }
            Body::Unbind => {
                self.queue(&Pdu::new(seq, Body::UnbindResp));
                self.close(CloseReason::PeerUnbound);
            }
            Body::Outbind(o) => self.events.push_back(Event::Outbind(o)),
            Body::AlertNotification(_) => self.events.push_back(Event::Alert(pdu)),
            _ => {
                if self.inbound.len() >= self.config.inbound_window {
                    self.queue(&error_response(id, seq, ESME_RTHROTTLED));
                } else if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.inbound.entry(seq)
                {
                    slot.insert(id);
                    self.events.push_back(Event::Request(pdu));
                } else {
                    // A duplicate sequence number would make the responses ambiguous.
                    self.queue(&error_response(id, seq, ESME_RSYSERR));
                }
            }
        }
    }

    fn on_response(&mut self, pdu: Pdu) {
        let seq = pdu.sequence_number;
        let id = pdu.command_id();
        let Some(o) = self.outstanding.get(&seq).copied() else {
            self.events.push_back(Event::UnexpectedResponse(pdu));
            return;
        };
        if id != GENERIC_NACK && id != o.command_id | RESPONSE_BIT {
            self.events.push_back(Event::UnexpectedResponse(pdu));
            return;
        }
        self.outstanding.remove(&seq);
        match o.command_id {
            ENQUIRE_LINK => {
                if self.enquire_in_flight == Some(seq) {
                    self.enquire_in_flight = None;
                }
            }
            BIND_TRANSMITTER | BIND_RECEIVER | BIND_TRANSCEIVER => {
                let kind = self
                    .pending_bind
                    .take()
                    .map_or(BindKind::Transceiver, |(_, k)| k);
                match pdu.body {
                    Body::BindTransmitterResp(r)
                    | Body::BindReceiverResp(r)
                    | Body::BindTransceiverResp(r)
                        if pdu.command_status == ESME_ROK =>
                    {
                        self.state = State::bound(kind);
                        let sc_interface_version = r.tlvs.sc_interface_version();
                        self.events.push_back(Event::Bound {
                            kind,
                            system_id: r.system_id,
                            sc_interface_version,
                        });
                    }
                    _ => {
                        self.state = State::Open;
                        let status = if pdu.command_status == ESME_ROK {
                            ESME_RBINDFAIL
                        } else {
                            pdu.command_status
                        };
                        self.events.push_back(Event::BindRejected { status });
                    }
                }
            }
            UNBIND => self.close(CloseReason::Unbound),
            request_command_id => self.events.push_back(Event::Response {
                request_command_id,
                pdu,
            }),
        }
    }
}

/// Whether a `receiver` in `state` may receive request `id`; `Err(status)` is the status
/// of the error response otherwise (§2.3, Table 2-1).
fn permitted(receiver: Role, state: State, id: u32) -> Result<(), u32> {
    use State::*;
    let by_esme = receiver == Role::Server;
    match id {
        ENQUIRE_LINK => {
            if state == Closed {
                Err(ESME_RINVBNDSTS)
            } else {
                Ok(())
            }
        }
        BIND_TRANSMITTER | BIND_RECEIVER | BIND_TRANSCEIVER => match (by_esme, state) {
            (false, _) => Err(ESME_RINVCMDID),
            (true, Open) => Ok(()),
            (true, _) => Err(ESME_RALYBND),
        },
        OUTBIND => match (by_esme, state) {
            (false, Open) => Ok(()),
            (false, _) => Err(ESME_RINVBNDSTS),
            (true, _) => Err(ESME_RINVCMDID),
        },
        UNBIND => {
            if state.is_bound() || state == Unbinding {
                Ok(())
            } else {
                Err(ESME_RINVBNDSTS)
            }
        }
        SUBMIT_SM | SUBMIT_MULTI | QUERY_SM | CANCEL_SM | REPLACE_SM => match (by_esme, state) {
            (false, _) => Err(ESME_RINVCMDID),
            (true, BoundTx | BoundTrx) => Ok(()),
            (true, _) => Err(ESME_RINVBNDSTS),
        },
        DELIVER_SM | ALERT_NOTIFICATION => match (by_esme, state) {
            (true, _) => Err(ESME_RINVCMDID),
            (false, BoundRx | BoundTrx) => Ok(()),
            (false, _) => Err(ESME_RINVBNDSTS),
        },
        DATA_SM => match (by_esme, state) {
            (true, BoundTx | BoundTrx) | (false, BoundRx | BoundTrx) => Ok(()),
            _ => Err(ESME_RINVBNDSTS),
        },
        _ => Err(ESME_RINVCMDID),
    }
}
