//! One customer connection: authenticate the bind, turn submits into messages, answer
//! queries.

use std::sync::{Arc, OnceLock};

use tern_domain::SendParams;
use tern_domain::credentials::{hash_password, verify_password};
use tern_node::{EngineError, SMPP_CALLBACK_SCHEME, SendOrigin};
use tern_smpp::pdu::{Address, Bind, MessageIdResp, QuerySmResp, SubmitSm};
use tern_smpp::text::{Assembled, Reassembler, TextOptions, read_part};
use tern_smpp::{Body, Pdu, Role, status::*};
use tern_smpp_tokio::{Incoming, Link};
use tern_store::{Account, AccountStatus};
use tern_types::{Sid, SidPrefix};
use tokio::net::TcpStream;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::{Promised, SmppServer, codes};

/// Who is bound on this connection.
struct Bound {
    account: Account,
    system_id: String,
    bind_id: u64,
}

pub(crate) async fn run(server: Arc<SmppServer>, stream: TcpStream) {
    let (link, mut incoming) =
        match tern_smpp_tokio::spawn(stream, Role::Server, server.config.session.clone()) {
            Ok(x) => x,
            Err(e) => {
                debug!(error = %e, "smpp connection lost before it started");
                return;
            }
        };
    let mut bound: Option<Bound> = None;
    let mut reassembler = Reassembler::new(server.config.reassembly.clone());
    let mut promised = Promised::new();
    loop {
        let deadline = reassembler
            .next_deadline()
            .map(tokio::time::Instant::from_std);
        let event = tokio::select! {
            event = incoming.recv() => event,
            () = sleep_until(deadline) => {
                for partial in reassembler.expire(tokio::time::Instant::now().into_std()) {
                    if let Some(b) = &bound {
                        send_assembled(&server, b, partial, &mut promised);
                    }
                }
                continue;
            }
        };
        let Some(event) = event else { break };
        match event {
            Incoming::BindRequest { kind, bind } => match authenticate(&server, &bind).await {
                Ok(account) => {
                    if link.accept_bind(&server.config.system_id).await.is_err() {
                        break;
                    }
                    let bind_id = server.register(account.sid, &bind.system_id, kind, link.clone());
                    info!(account_sid = %account.sid, system_id = %bind.system_id, ?kind, "smpp customer bound");
                    metrics::counter!("tern_smpp_server_bind_attempts_total", "result" => "ok")
                        .increment(1);
                    bound = Some(Bound {
                        account,
                        system_id: bind.system_id,
                        bind_id,
                    });
                }
                Err(status) => {
                    metrics::counter!("tern_smpp_server_bind_attempts_total", "result" => "refused").increment(1);
                    info!(system_id = %bind.system_id, status = format!("{status:#x}"), "smpp bind refused");
                    let _ = link.reject_bind(status);
                }
            },
            Incoming::Request(pdu) => {
                let Some(b) = &bound else {
                    // The session only passes requests on once bound.
                    let _ = link.reject(pdu.sequence_number, ESME_RINVBNDSTS);
                    continue;
                };
                on_request(&server, &link, b, pdu, &mut reassembler, &mut promised);
            }
            Incoming::Closed(reason) => {
                debug!(?reason, "smpp customer connection closed");
                break;
            }
            Incoming::Alert(_) | Incoming::Outbind(_) => {}
        }
    }
    if let Some(b) = bound {
        server.unregister(b.bind_id);
    }
}

/// The account a bind's credentials belong to, or the `command_status` refusing it. An
/// unknown `system_id` and a wrong password get the same answer after the same work, so
/// a client cannot learn which system_ids exist.
async fn authenticate(server: &SmppServer, bind: &Bind) -> Result<Account, u32> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    let credential = server
        .store
        .smpp_credential_by_system_id(&bind.system_id)
        .await
        .map_err(|_| ESME_RBINDFAIL)?;
    let phc = match &credential {
        Some(c) => c.password_hash.clone(),
        None => DUMMY.get_or_init(|| hash_password("-")).clone(),
    };
    let password = bind.password.clone();
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &phc))
        .await
        .unwrap_or(false);
    let credential = match credential {
        Some(c) if ok => c,
        _ => return Err(ESME_RINVPASWD),
    };
    match server.store.account(credential.account_sid).await {
        Ok(Some(a)) if a.status == AccountStatus::Active => Ok(a),
        Ok(_) => Err(ESME_RINVPASWD),
        Err(_) => Err(ESME_RBINDFAIL),
    }
}

fn on_request(
    server: &Arc<SmppServer>,
    link: &Link,
    b: &Bound,
    pdu: Pdu,
    reassembler: &mut Reassembler,
    promised: &mut Promised,
) {
    let seq = pdu.sequence_number;
    match pdu.body {
        Body::SubmitSm(sm) => {
            let part = match read_part(&sm, &TextOptions::default()) {
                Ok(p) => p,
                Err(e) => {
                    debug!(error = %e, "unreadable submit_sm");
                    let _ = link.reject(seq, ESME_RINVMSGLEN);
                    return;
                }
            };
            let callback = callback_for(&b.system_id, sm.registered_delivery);
            let Some(concat) = part.concat.filter(|c| c.total() > 1) else {
                let text = part.text();
                spawn_submit(server, link, b, seq, &sm, text, callback);
                return;
            };
            // A part of a longer message: promise the whole message's SID now (the
            // client's window may be smaller than the part count) and send it when the
            // last part arrives.
            let key = (
                part.source.addr.clone(),
                part.destination.addr.clone(),
                Some(concat.reference()),
                concat.total(),
            );
            if promised.len() >= MAX_PROMISED && !promised.contains_key(&key) {
                let _ = link.reject(seq, ESME_RMSGQFUL);
                return;
            }
            let sid = *promised
                .entry(key)
                .or_insert_with(|| Sid::generate(SidPrefix::Message));
            respond_id(link, seq, sid);
            let now = tokio::time::Instant::now().into_std();
            if let Some(done) = reassembler.push(part, now) {
                send_assembled_with(server, b, done, promised, callback);
            }
        }
        Body::QuerySm(q) => {
            let server = server.clone();
            let link = link.clone();
            let account = b.account.sid;
            tokio::spawn(async move {
                let found = match Sid::parse_as(&q.message_id, SidPrefix::Message) {
                    Ok(sid) => server.store.message(sid).await.ok().flatten(),
                    Err(_) => None,
                };
                let Some(m) = found.filter(|m| m.account_sid == account) else {
                    let _ = link.reject(seq, ESME_RQUERYFAIL);
                    return;
                };
                let stat = codes::receipt_stat(m.status, m.error_code);
                let state = stat
                    .as_ref()
                    .and_then(|s| s.message_state())
                    .map_or(1, |s| s.as_u8());
                let resp = QuerySmResp {
                    message_id: q.message_id,
                    final_date: if stat.is_some() {
                        smpp_time(m.updated)
                    } else {
                        String::new()
                    },
                    message_state: state,
                    error_code: 0,
                };
                let _ = link.respond(seq, ESME_ROK, Body::QuerySmResp(resp));
            });
        }
        Body::CancelSm(_) => {
            let _ = link.reject(seq, ESME_RCANCELFAIL);
        }
        Body::ReplaceSm(_) => {
            let _ = link.reject(seq, ESME_RREPLACEFAIL);
        }
        _ => {
            let _ = link.reject(seq, ESME_RINVCMDID);
        }
    }
}

/// Most concatenated messages one connection may have half-received.
const MAX_PROMISED: usize = 4096;

/// Where the engine sends this message's status: the submitting credential's receivers,
/// when `registered_delivery` asks for receipts (1: every final outcome, 2: failures).
fn callback_for(system_id: &str, registered_delivery: u8) -> Option<String> {
    match registered_delivery & 0x03 {
        0 => None,
        rd => Some(format!("{SMPP_CALLBACK_SCHEME}{system_id}?rd={rd}")),
    }
}

/// What a `submit_sm` address means as an E.164 number: digits with a `+` in front when
/// the address is international or plain digits; anything else (alphanumeric sender IDs)
/// as given, for the engine to judge.
pub(crate) fn e164(a: &Address) -> String {
    let digits = a.addr.strip_prefix('+').unwrap_or(&a.addr);
    if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) {
        format!("+{digits}")
    } else {
        a.addr.clone()
    }
}

fn respond_id(link: &Link, seq: u32, sid: Sid) {
    let resp = MessageIdResp {
        message_id: sid.as_str().to_owned(),
        ..Default::default()
    };
    let _ = link.respond(seq, ESME_ROK, Body::SubmitSmResp(resp));
}

fn params(from: String, to: String, body: String) -> SendParams {
    SendParams {
        to: Some(to),
        from: Some(from),
        body: Some(body),
        ..SendParams::default()
    }
}

/// Sends a single-part submit and answers it with the SID or the refusal.
fn spawn_submit(
    server: &Arc<SmppServer>,
    link: &Link,
    b: &Bound,
    seq: u32,
    sm: &SubmitSm,
    text: String,
    callback: Option<String>,
) {
    let server = server.clone();
    let link = link.clone();
    let account = b.account.clone();
    let p = params(e164(&sm.source), e164(&sm.destination), text);
    let span = info_span!("smpp_submit", account_sid = %account.sid);
    tokio::spawn(
        async move {
            let origin = SendOrigin {
                sid: None,
                status_callback: callback,
            };
            match server.engine.send_with(&account, &p, origin).await {
                Ok(m) => {
                    metrics::counter!("tern_smpp_server_submits_total", "result" => "ok")
                        .increment(1);
                    respond_id(&link, seq, m.sid);
                }
                Err(e) => {
                    metrics::counter!("tern_smpp_server_submits_total", "result" => "refused")
                        .increment(1);
                    let status = match &e {
                        EngineError::Rejected { code, .. } => codes::submit_status(*code),
                        EngineError::Store(_) => ESME_RX_T_APPN,
                    };
                    debug!(error = %e, "smpp submit refused");
                    let _ = link.reject(seq, status);
                }
            }
        }
        .instrument(span),
    );
}

fn send_assembled(server: &Arc<SmppServer>, b: &Bound, a: Assembled, promised: &mut Promised) {
    // An expired partial message keeps the receipts its parts asked for: the first part's
    // flag is not known any more, so every final outcome is reported.
    let callback = callback_for(&b.system_id, 1);
    send_assembled_with(server, b, a, promised, callback);
}

/// Sends a reassembled (or given-up, incomplete) concatenated message under the SID its
/// parts were answered with. A refusal now can only be reported as a receipt.
fn send_assembled_with(
    server: &Arc<SmppServer>,
    b: &Bound,
    a: Assembled,
    promised: &mut Promised,
    callback: Option<String>,
) {
    let key = (
        a.source.addr.clone(),
        a.destination.addr.clone(),
        a.reference,
        a.total,
    );
    let sid = promised.remove(&key);
    if !a.is_complete() {
        warn!(missing = ?a.missing, "smpp concatenated submit incomplete; sending the parts that arrived");
        metrics::counter!("tern_smpp_server_incomplete_total").increment(1);
    }
    let server = server.clone();
    let account = b.account.clone();
    let p = params(e164(&a.source), e164(&a.destination), a.text);
    tokio::spawn(async move {
        let origin = SendOrigin {
            sid,
            status_callback: callback,
        };
        if let Err(e) = server.engine.send_with(&account, &p, origin).await {
            metrics::counter!("tern_smpp_server_submits_total", "result" => "refused").increment(1);
            warn!(error = %e, "a concatenated smpp submit was refused after its parts were answered");
        }
    });
}

/// SMPP's `YYMMDDhhmm` form of a store time (UTC).
pub(crate) fn smpp_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%y%m%d%H%M")
        .to_string()
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
