//! Tern's SMPP server for customers — something Twilio does not offer.
//!
//! An account binds with one of its SMPP credentials (system_id + password, the password
//! stored as an argon2 hash) and then uses SMPP instead of REST:
//!
//! * `submit_sm` becomes a message through [`Engine::send_with`], with the same validation,
//!   routing, lifecycle and storage as `POST …/Messages.json`; `submit_sm_resp` carries the
//!   Message SID. Concatenated submits (UDH or SAR) are reassembled into one message; each
//!   part is answered at once with the SID the whole will have.
//! * When `registered_delivery` asks for it, the message's final status comes back as a
//!   delivery receipt (`deliver_sm`, `esm_class` 0x04, text form plus
//!   `receipted_message_id` and `message_state`). The receipt rides the engine's durable
//!   webhook outbox with an `smpp://SYSTEM_ID?rd=N` address, so it survives restarts and is
//!   retried until a receiver of that credential is bound.
//! * Inbound messages to the account's numbers that have no `SmsUrl` go to any bound
//!   receiver of the account as `deliver_sm` (split with a UDH when long).
//! * `query_sm` answers from the store; `cancel_sm` and `replace_sm` are refused
//!   (`ESME_RCANCELFAIL`, `ESME_RREPLACEFAIL`): a message leaves for a carrier within
//!   milliseconds, so there is nothing left to change.
//!
//! The protocol is [`tern_smpp`]'s session and the socket [`tern_smpp_tokio`]'s driver, the
//! same ones the carrier connector and the carrier simulator run on.

mod codes;
mod connection;
mod delivery;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tern_node::Engine;
use tern_smpp::SessionConfig;
use tern_smpp::pdu::BindKind;
use tern_smpp::text::ReassemblerConfig;
use tern_smpp_tokio::Link;
use tern_store::Store;
use tern_types::Sid;
use tokio::net::TcpListener;
use tracing::{debug, warn};

pub use codes::{receipt_stat, submit_status};

/// Settings of the customer SMPP server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Our `system_id` in bind responses.
    pub system_id: String,
    pub session: SessionConfig,
    pub reassembly: ReassemblerConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            system_id: "TERN".into(),
            session: SessionConfig {
                // Customers pipeline submits; each is a store write, so allow a deep
                // window of unanswered requests before throttling them.
                inbound_window: 256,
                window: 32,
                response_timeout: Duration::from_secs(10),
                ..SessionConfig::default()
            },
            reassembly: ReassemblerConfig::default(),
        }
    }
}

/// One bound connection, as the operator API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct BindInfo {
    pub account_sid: String,
    pub system_id: String,
    pub mode: &'static str,
    pub peer: String,
}

/// A bound connection that can take `deliver_sm`.
struct Receiver {
    bind_id: u64,
    account: Sid,
    system_id: String,
    kind: BindKind,
    link: Link,
}

pub struct SmppServer {
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    config: ServerConfig,
    binds: Mutex<Vec<Receiver>>,
    next_bind: AtomicU64,
    round_robin: AtomicUsize,
}

impl SmppServer {
    /// Builds the server and connects it to the engine, which hands it every callback
    /// addressed to an SMPP bind.
    pub fn new(engine: Arc<Engine>, config: ServerConfig) -> Arc<SmppServer> {
        let server = Arc::new(SmppServer {
            store: engine.store().clone(),
            engine: engine.clone(),
            config,
            binds: Mutex::new(Vec::new()),
            next_bind: AtomicU64::new(1),
            round_robin: AtomicUsize::new(0),
        });
        engine.set_customer_links(server.clone());
        server
    }

    /// Accepts connections until the task is dropped.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, peer)) => {
                    debug!(%peer, "smpp customer connected");
                    tokio::spawn(connection::run(self.clone(), stream));
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    warn!(error = %e, "smpp accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Every bound connection.
    pub fn binds(&self) -> Vec<BindInfo> {
        self.lock_binds()
            .iter()
            .map(|r| BindInfo {
                account_sid: r.account.as_str().to_owned(),
                system_id: r.system_id.clone(),
                mode: match r.kind {
                    BindKind::Transmitter => "transmitter",
                    BindKind::Receiver => "receiver",
                    BindKind::Transceiver => "transceiver",
                },
                peer: r.link.peer_addr().to_string(),
            })
            .collect()
    }

    /// Unbinds every customer (on shutdown).
    pub fn unbind_all(&self) {
        for r in self.lock_binds().iter() {
            r.link.unbind();
        }
    }

    fn lock_binds(&self) -> std::sync::MutexGuard<'_, Vec<Receiver>> {
        self.binds.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn register(&self, account: Sid, system_id: &str, kind: BindKind, link: Link) -> u64 {
        let bind_id = self.next_bind.fetch_add(1, Ordering::Relaxed);
        let mut binds = self.lock_binds();
        binds.push(Receiver {
            bind_id,
            account,
            system_id: system_id.to_owned(),
            kind,
            link,
        });
        metrics::gauge!("tern_smpp_server_binds").set(binds.len() as f64);
        bind_id
    }

    fn unregister(&self, bind_id: u64) {
        let mut binds = self.lock_binds();
        binds.retain(|r| r.bind_id != bind_id);
        metrics::gauge!("tern_smpp_server_binds").set(binds.len() as f64);
    }

    /// A receiving link of `account`, of `system_id` when given; round robin.
    fn receiver(&self, account: Sid, system_id: Option<&str>) -> Option<Link> {
        let binds = self.lock_binds();
        let candidates: Vec<&Receiver> = binds
            .iter()
            .filter(|r| {
                r.account == account
                    && r.kind != BindKind::Transmitter
                    && r.link.is_open()
                    && system_id.is_none_or(|s| s == r.system_id)
            })
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let i = self.round_robin.fetch_add(1, Ordering::Relaxed) % candidates.len();
        candidates.get(i).map(|r| r.link.clone())
    }
}

/// Messages promised to customers by SID before their last part arrived.
type Promised = HashMap<(String, String, Option<u16>, u8), Sid>;
