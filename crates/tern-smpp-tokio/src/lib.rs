//! One SMPP connection driven by tokio: the IO adapter around [`tern_smpp::Session`].
//!
//! The sans-IO session decides everything (sequence numbers, window, timeouts, keepalive,
//! unbind); this crate only moves bytes and time into it and its output out. One task per
//! connection owns the socket and the session. The application holds a [`Link`] (cheap to
//! clone) to send requests and answers, and reads what the peer asks for from an
//! [`Incoming`] channel. The carrier connector (client role), the carrier simulator and the
//! customer-facing SMPP server (server role) all run on it, so a fix here fixes all three.
//!
//! Back-pressure: [`Link::request`] waits for a window slot (a semaphore sized like the
//! session's window), so callers queue in the application rather than in memory here; the
//! incoming channel is bounded, and when the application falls behind the task stops
//! reading from the socket. Reads and writes are both branches of one `select!`, so a peer
//! that stops reading can never deadlock us against our own writes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_smpp::pdu::{Bind, BindKind, Outbind};
use tern_smpp::{Body, CloseReason, Event, Pdu, Role, Session, SessionConfig, SessionError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, trace};

/// Something the peer sent that the application must act on.
#[derive(Debug)]
pub enum Incoming {
    /// Server: a bind to accept ([`Link::accept_bind`]) or refuse ([`Link::reject_bind`]).
    BindRequest { kind: BindKind, bind: Bind },
    /// A request to answer with [`Link::respond`] or [`Link::reject`] (`submit_sm`,
    /// `deliver_sm`, `query_sm`, …). Unanswered requests count against the session's
    /// inbound window.
    Request(Pdu),
    /// `alert_notification` (no answer exists).
    Alert(Pdu),
    /// Client: the SMSC asks us to bind as a receiver.
    Outbind(Outbind),
    /// The connection is over; nothing more follows.
    Closed(Closed),
}

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The session closed itself (unbind, dead link, framing error, …).
    Session(CloseReason),
    /// The peer closed the TCP connection without unbinding.
    PeerDisconnected,
    /// Reading or writing failed.
    Io(String),
    /// Every [`Link`] was dropped.
    Abandoned,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the SMPP connection is closed")]
    Closed,
    #[error("no response within the session's response timeout")]
    Timeout,
    #[error(transparent)]
    Session(#[from] SessionError),
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("the bind was refused with command_status {status:#010x}")]
    Rejected { status: u32 },
    #[error("the connection closed during the bind: {0:?}")]
    Closed(Closed),
    #[error("no bind response within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Link(#[from] LinkError),
}

enum Command {
    Request {
        body: Body,
        reply: oneshot::Sender<Result<Pdu, LinkError>>,
    },
    Respond {
        sequence_number: u32,
        status: u32,
        body: Option<Body>,
    },
    AcceptBind {
        system_id: String,
        reply: oneshot::Sender<Result<(), LinkError>>,
    },
    RejectBind {
        status: u32,
    },
    Bind {
        kind: BindKind,
        bind: Bind,
        reply: oneshot::Sender<Result<String, ConnectError>>,
    },
    Unbind,
}

/// A handle on one connection. Dropping every clone unbinds (client) or closes it.
#[derive(Clone)]
pub struct Link {
    commands: mpsc::UnboundedSender<Command>,
    window: Arc<Semaphore>,
    window_size: usize,
    peer: SocketAddr,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("peer", &self.peer).finish()
    }
}

/// Starts the task that drives `stream` with a session of `role`.
pub fn spawn(
    stream: TcpStream,
    role: Role,
    config: SessionConfig,
) -> std::io::Result<(Link, mpsc::Receiver<Incoming>)> {
    let peer = stream.peer_addr()?;
    // Small PDUs are written as soon as they are produced; batching happens because the
    // session coalesces everything queued between two writes.
    stream.set_nodelay(true)?;
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (incoming_tx, incoming) = mpsc::channel(config.inbound_window.max(1) + 16);
    let window_size = config.window.max(1);
    let window = Arc::new(Semaphore::new(window_size));
    let response_timeout = config.response_timeout;
    let session = Session::new(role, config, now());
    let driver = Driver {
        session,
        stream,
        commands: command_rx,
        incoming: incoming_tx,
        window: window.clone(),
        pending: std::collections::HashMap::new(),
        binding: None,
        response_timeout,
    };
    tokio::spawn(driver.run());
    Ok((
        Link {
            commands,
            window,
            window_size,
            peer,
        },
        incoming,
    ))
}

/// Client: connects to `addr` and binds. Returns the link, the incoming channel and the
/// SMSC's `system_id`.
pub async fn connect(
    addr: &str,
    kind: BindKind,
    bind: Bind,
    config: SessionConfig,
) -> Result<(Link, mpsc::Receiver<Incoming>, String), ConnectError> {
    let bind_timeout = config.response_timeout;
    let stream = tokio::time::timeout(bind_timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| ConnectError::Timeout(bind_timeout))?
        .map_err(|source| ConnectError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let (link, incoming) =
        spawn(stream, Role::Client, config).map_err(|source| ConnectError::Connect {
            addr: addr.to_owned(),
            source,
        })?;
    let (reply, rx) = oneshot::channel();
    link.send(Command::Bind { kind, bind, reply })?;
    let system_id = rx.await.map_err(|_| LinkError::Closed)??;
    Ok((link, incoming, system_id))
}

impl Link {
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    /// False once the connection task has ended.
    pub fn is_open(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Requests currently holding a window slot.
    pub fn in_flight(&self) -> usize {
        self.window_size
            .saturating_sub(self.window.available_permits())
    }

    /// Waits for a window slot, sends the request and returns its response (check its
    /// `command_status`; a `generic_nack` comes back here too).
    pub async fn request(&self, body: Body) -> Result<Pdu, LinkError> {
        let permit = self.slot().await?;
        self.request_with(permit, body).await
    }

    /// Takes a window slot without sending yet, so a caller can reserve its place in order
    /// before preparing the request.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, LinkError> {
        self.window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LinkError::Closed)
    }

    /// Sends a request in a slot taken with [`Link::slot`].
    pub async fn request_with(
        &self,
        permit: OwnedSemaphorePermit,
        body: Body,
    ) -> Result<Pdu, LinkError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::Request { body, reply })?;
        let result = rx.await.map_err(|_| LinkError::Closed)?;
        drop(permit);
        result
    }

    /// Answers a request received as [`Incoming::Request`].
    pub fn respond(&self, sequence_number: u32, status: u32, body: Body) -> Result<(), LinkError> {
        self.send(Command::Respond {
            sequence_number,
            status,
            body: Some(body),
        })
    }

    /// Answers a request with an error status and the default response body.
    pub fn reject(&self, sequence_number: u32, status: u32) -> Result<(), LinkError> {
        self.send(Command::Respond {
            sequence_number,
            status,
            body: None,
        })
    }

    /// Server: accepts the pending bind, sending our `system_id`.
    pub async fn accept_bind(&self, system_id: &str) -> Result<(), LinkError> {
        let (reply, rx) = oneshot::channel();
        self.send(Command::AcceptBind {
            system_id: system_id.to_owned(),
            reply,
        })?;
        rx.await.map_err(|_| LinkError::Closed)?
    }

    /// Server: refuses the pending bind (e.g. `ESME_RINVPASWD`).
    pub fn reject_bind(&self, status: u32) -> Result<(), LinkError> {
        self.send(Command::RejectBind { status })
    }

    /// Starts the unbind handshake; the incoming channel reports [`Incoming::Closed`] when
    /// it is done (or when the connection was not bound, at once).
    pub fn unbind(&self) {
        let _ = self.commands.send(Command::Unbind);
    }

    fn send(&self, command: Command) -> Result<(), LinkError> {
        self.commands.send(command).map_err(|_| LinkError::Closed)
    }
}

fn now() -> std::time::Instant {
    // tokio's clock, so tests with a paused runtime drive the session's timers too.
    Instant::now().into_std()
}

struct Driver {
    session: Session,
    stream: TcpStream,
    commands: mpsc::UnboundedReceiver<Command>,
    incoming: mpsc::Sender<Incoming>,
    window: Arc<Semaphore>,
    pending: std::collections::HashMap<u32, oneshot::Sender<Result<Pdu, LinkError>>>,
    binding: Option<(u32, oneshot::Sender<Result<String, ConnectError>>)>,
    response_timeout: Duration,
}

/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;

impl Driver {
    async fn run(mut self) {
        let closed = self.drive().await;
        debug!(?closed, "smpp connection ended");
        self.window.close();
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(LinkError::Closed));
        }
        if let Some((_, reply)) = self.binding.take() {
            let _ = reply.send(Err(ConnectError::Closed(closed.clone())));
        }
        let _ = self.incoming.send(Incoming::Closed(closed)).await;
        let _ = self.stream.shutdown().await;
    }

    async fn drive(&mut self) -> Closed {
        let mut tx: Vec<u8> = Vec::new();
        let mut tx_pos = 0usize;
        let mut rx = vec![0u8; READ_CHUNK];
        let mut commands_open = true;
        loop {
            if let Some(closed) = self.dispatch_events().await {
                // Flush what the session queued last (unbind_resp, generic_nack, …).
                if let Some(bytes) = self.session.poll_transmit() {
                    tx.extend_from_slice(&bytes);
                }
                let _ = self.stream.write_all(&tx[tx_pos..]).await;
                return closed;
            }
            if let Some(bytes) = self.session.poll_transmit() {
                if tx_pos == tx.len() {
                    tx = bytes;
                    tx_pos = 0;
                } else {
                    tx.extend_from_slice(&bytes);
                }
            }
            let deadline = self.session.poll_timeout().map(Instant::from_std);
            let (mut reader, mut writer) = self.stream.split();
            tokio::select! {
                biased;
                written = writer.write(&tx[tx_pos..]), if tx_pos < tx.len() => match written {
                    Ok(0) => return Closed::PeerDisconnected,
                    Ok(n) => {
                        tx_pos += n;
                        if tx_pos == tx.len() {
                            tx.clear();
                            tx_pos = 0;
                        }
                    }
                    Err(e) => return Closed::Io(e.to_string()),
                },
                read = reader.read(&mut rx) => match read {
                    Ok(0) => return Closed::PeerDisconnected,
                    Ok(n) => {
                        trace!(bytes = n, "smpp read");
                        if let Some(chunk) = rx.get(..n) {
                            self.session.handle_input(chunk, now());
                        }
                    }
                    Err(e) => return Closed::Io(e.to_string()),
                },
                command = self.commands.recv(), if commands_open => match command {
                    Some(command) => {
                        self.apply(command);
                        // Take whatever else is queued so one write carries it all.
                        while let Ok(command) = self.commands.try_recv() {
                            self.apply(command);
                        }
                    }
                    None => {
                        commands_open = false;
                        if self.session.state().is_bound() {
                            let _ = self.session.unbind(now());
                        } else {
                            return Closed::Abandoned;
                        }
                    }
                },
                () = sleep_until(deadline) => self.session.handle_timeout(now()),
            }
        }
    }

    fn apply(&mut self, command: Command) {
        let t = now();
        match command {
            Command::Request { body, reply } => match self.session.submit(Pdu::new(0, body), t) {
                Ok(seq) => {
                    self.pending.insert(seq, reply);
                }
                Err(e) => {
                    let _ = reply.send(Err(match e {
                        SessionError::Closed => LinkError::Closed,
                        e => LinkError::Session(e),
                    }));
                }
            },
            Command::Respond {
                sequence_number,
                status,
                body,
            } => {
                let result = match body {
                    Some(body) => self.session.respond(sequence_number, status, body),
                    None => self.session.reject(sequence_number, status),
                };
                if let Err(e) = result {
                    debug!(error = %e, sequence_number, "smpp response not sent");
                }
            }
            Command::AcceptBind { system_id, reply } => {
                let _ = reply.send(self.session.accept_bind(&system_id).map_err(Into::into));
            }
            Command::RejectBind { status } => {
                if let Err(e) = self.session.reject_bind(status) {
                    debug!(error = %e, "smpp bind rejection not sent");
                }
            }
            Command::Bind { kind, bind, reply } => match self.session.bind_with(kind, bind, t) {
                Ok(seq) => self.binding = Some((seq, reply)),
                Err(e) => {
                    let _ = reply.send(Err(LinkError::Session(e).into()));
                }
            },
            Command::Unbind => {
                if self.session.state().is_bound() {
                    let _ = self.session.unbind(t);
                } else if !self.session.is_closed() {
                    // Not bound: nothing to hand over, just close.
                    self.commands.close();
                }
            }
        }
    }

    /// Hands the session's events to their owners; `Some` when the session is over.
    async fn dispatch_events(&mut self) -> Option<Closed> {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Response { pdu, .. } => {
                    if let Some(reply) = self.pending.remove(&pdu.sequence_number) {
                        let _ = reply.send(Ok(pdu));
                    }
                }
                Event::ResponseTimeout {
                    sequence_number, ..
                } => {
                    if let Some(reply) = self.pending.remove(&sequence_number) {
                        let _ = reply.send(Err(LinkError::Timeout));
                    }
                    if let Some((seq, reply)) = self.binding.take() {
                        if seq == sequence_number {
                            let _ = reply.send(Err(ConnectError::Timeout(self.response_timeout)));
                        } else {
                            self.binding = Some((seq, reply));
                        }
                    }
                }
                Event::Bound { system_id, .. } => {
                    if let Some((_, reply)) = self.binding.take() {
                        let _ = reply.send(Ok(system_id));
                    }
                }
                Event::BindRejected { status } => {
                    if let Some((_, reply)) = self.binding.take() {
                        let _ = reply.send(Err(ConnectError::Rejected { status }));
                    }
                }
                Event::BindRequest { kind, bind, .. } => {
                    self.forward(Incoming::BindRequest { kind, bind }).await;
                }
                Event::Request(pdu) => self.forward(Incoming::Request(pdu)).await,
                Event::Alert(pdu) => self.forward(Incoming::Alert(pdu)).await,
                Event::Outbind(o) => self.forward(Incoming::Outbind(o)).await,
                Event::UnexpectedResponse(pdu) => {
                    debug!(seq = pdu.sequence_number, "smpp response to no request");
                }
                Event::ProtocolError(e) => debug!(error = %e, "smpp protocol error from peer"),
                Event::Closed(reason) => return Some(Closed::Session(reason)),
            }
        }
        None
    }

    async fn forward(&mut self, incoming: Incoming) {
        // Bounded: a slow application stops our reads instead of growing memory.
        let _ = self.incoming.send(incoming).await;
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
