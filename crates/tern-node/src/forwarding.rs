//! A carrier reached through whichever node of the region binds it.
//!
//! A carrier's `binds` are shared by the region's nodes ([`crate::binds`]), so with fewer
//! binds than nodes some nodes hold no connection to it. [`RegionCarrier`] wraps a node's
//! SMPP connector: while this node has a connection that can transmit, submissions and
//! queries go out on it; otherwise they are asked of a node that has one, over the bus
//! ([`Queue::request`] to the service `carrier-<id>`), which every node serves for each of
//! its carriers while it can transmit on it ([`RegionCarrier::serve`]).
//!
//! The work stays with the asking node: its route job is finished by the outcome it writes
//! (`sent` with the carrier's id, or a retry), exactly as after a local submission, and a
//! node that dies while asking leaves the job to be published again. The receipt arrives
//! at the node whose connection carried the message, which finds the message by the
//! carrier's id in the shared store; that node awaits it (told by [`Served`]), so an
//! overdue receipt is noticed by the Super Network that gets the receipts, and the asking
//! node does not await it ([`ReceiptsTo::AnotherNode`]). A request left unanswered in time
//! may have been submitted; like a `submit_sm` whose response is lost, it is retried, and
//! the carrier may see it twice.
//!
//! To the Super Network the carrier is up on this node while this node or another one can
//! transmit on it: this node's connections plus the carrier's bind slots other live nodes
//! hold (counted by [`crate::binds::BindSlots`] every renewal round). A slot whose node
//! cannot transmit shows up as failed submits, which the network learns from.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tern_bus::{Queue, Request, RequestError};
use tern_carriers::smpp::SmppCarrier;
use tern_carriers::{Carrier, OutboundSms, Receipt, ReceiptsTo, SubmitError, Submitted};
use tokio::sync::{Semaphore, watch};
use tracing::{info, warn};

/// How long an asking node waits for the bound node's answer: beyond a submission's own
/// waits (rate, window, the SMSC's response) so that the bound node answers first.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Other nodes' requests carried out at once, at most (more wait on the bus).
const SERVING_LIMIT: usize = 1024;
/// Pause before serving again after the bus refused.
const SERVE_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Serialize, Deserialize)]
enum Ask {
    Submit(OutboundSms),
    Query {
        carrier_message_id: String,
        to: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Submitted(Result<String, SubmitError>),
    Queried(Option<Receipt>),
    /// The request could not be read (a node of another version, say).
    Refused(String),
}

/// The serving node's side of a submission it is asked to carry out for another node.
#[async_trait]
pub trait Served: Send + Sync + 'static {
    /// Whether `sms` is a stored outbound message waiting for (or moving between)
    /// carriers, as written: only such a message is submitted. Anyone who can publish on
    /// the region's NATS subjects could ask; this keeps them from sending what Tern never
    /// accepted.
    async fn vouches_for(&self, sms: &OutboundSms) -> bool;
    /// `carrier` took `sms` on this node's connection: its receipt will come here.
    fn submitted(&self, carrier: &str, sms: &OutboundSms);
}

/// The bus service through which a carrier's bound nodes serve the others.
fn service(carrier: &str) -> String {
    format!("carrier-{carrier}")
}

/// One SMPP carrier as the region sees it; see the module docs.
pub struct RegionCarrier {
    smpp: Arc<SmppCarrier>,
    queue: Arc<dyn Queue>,
    service: String,
    /// This node's connections that can transmit.
    local: watch::Receiver<usize>,
    /// The carrier's bind slots other live nodes hold.
    elsewhere: watch::Sender<usize>,
    /// `local + elsewhere`, kept by a task.
    transmitting: watch::Sender<usize>,
}

impl RegionCarrier {
    pub fn new(smpp: Arc<SmppCarrier>, queue: Arc<dyn Queue>) -> Arc<RegionCarrier> {
        let local = smpp.connections_transmitting();
        let elsewhere = watch::Sender::new(0);
        let transmitting = watch::Sender::new(*local.borrow());
        tokio::spawn(add_up(
            local.clone(),
            elsewhere.subscribe(),
            transmitting.clone(),
        ));
        Arc::new(RegionCarrier {
            service: service(smpp.id()),
            smpp,
            queue,
            local,
            elsewhere,
            transmitting,
        })
    }

    /// The connector this node binds with.
    pub fn smpp(&self) -> &Arc<SmppCarrier> {
        &self.smpp
    }

    /// How many of the carrier's bind slots other live nodes hold (as last counted).
    pub fn held_elsewhere(&self) -> usize {
        *self.elsewhere.borrow()
    }

    /// Tells how many of the carrier's bind slots other live nodes hold.
    pub fn set_held_elsewhere(&self, slots: usize) {
        self.elsewhere.send_if_modified(|n| {
            let changed = *n != slots;
            *n = slots;
            changed
        });
    }

    fn here(&self) -> bool {
        *self.local.borrow() > 0
    }

    async fn ask(&self, ask: &Ask) -> Result<Answer, String> {
        let payload = serde_json::to_vec(ask).map_err(|e| e.to_string())?;
        let answer = self
            .queue
            .request(&self.service, payload, FORWARD_TIMEOUT)
            .await;
        let result = match &answer {
            Ok(_) => "answered",
            Err(RequestError::NoServer(_)) => "no_node",
            Err(RequestError::TimedOut { .. }) => "timed_out",
            Err(RequestError::Unreachable { .. }) => "unreachable",
        };
        metrics::counter!("tern_carrier_forwarded_total", "carrier" => self.smpp.id().to_owned(), "result" => result)
            .increment(1);
        let answer = answer.map_err(|e| match e {
            RequestError::NoServer(_) => format!(
                "no node of the region is bound to carrier {}",
                self.smpp.id()
            ),
            other => other.to_string(),
        })?;
        serde_json::from_slice(&answer).map_err(|e| format!("unreadable answer: {e}"))
    }

    /// Carries out other nodes' requests on this node's connections while it has one that
    /// can transmit, until `stop` turns true; `served` hears of each message taken.
    pub async fn serve(self: Arc<Self>, mut stop: watch::Receiver<bool>, served: Arc<dyn Served>) {
        let limit = Arc::new(Semaphore::new(SERVING_LIMIT));
        let mut local = self.local.clone();
        // `true` once the watched value holds (or can never hold); the guards `wait_for`
        // returns must not live across the awaits below.
        async fn until<T>(w: &mut watch::Receiver<T>, f: impl FnMut(&T) -> bool) -> bool {
            w.wait_for(f).await.is_ok()
        }
        loop {
            tokio::select! {
                biased;
                _ = until(&mut stop, |s| *s) => return,
                up = until(&mut local, |n| *n > 0) => if !up { return },
            }
            let mut requests = match self.queue.serve(&self.service).await {
                Ok(r) => r,
                Err(e) => {
                    warn!(carrier = %self.smpp.id(), error = %e, "cannot serve the carrier to the region; trying again");
                    tokio::select! {
                        _ = until(&mut stop, |s| *s) => return,
                        () = tokio::time::sleep(SERVE_RETRY) => continue,
                    }
                }
            };
            info!(carrier = %self.smpp.id(), "serving the carrier to the region's other nodes");
            let stopping = loop {
                tokio::select! {
                    biased;
                    _ = until(&mut stop, |s| *s) => break true,
                    _ = until(&mut local, |n| *n == 0) => break false,
                    request = requests.recv() => {
                        let Some(request) = request else { break false };
                        let Ok(permit) = limit.clone().acquire_owned().await else { return };
                        let (me, served) = (self.clone(), served.clone());
                        tokio::spawn(async move {
                            me.carry_out(request, &*served).await;
                            drop(permit);
                        });
                    }
                }
            };
            info!(carrier = %self.smpp.id(), "no longer serving the carrier to the region");
            // Requests already here are answered (a submit that finds no connection now
            // says so at once); later ones go to other nodes.
            requests.close();
            while let Some(request) = requests.recv().await {
                let (me, served) = (self.clone(), served.clone());
                tokio::spawn(async move { me.carry_out(request, &*served).await });
            }
            if stopping {
                return;
            }
        }
    }

    async fn carry_out(&self, request: Request, served: &dyn Served) {
        let answer = match serde_json::from_slice::<Ask>(&request.payload) {
            Ok(Ask::Submit(sms)) if !served.vouches_for(&sms).await => {
                warn!(carrier = %self.smpp.id(), message_sid = %sms.message_sid, "refused to submit a message that is not waiting for a carrier");
                Answer::Refused("not a message waiting for a carrier".into())
            }
            Ok(Ask::Submit(sms)) => {
                let result = self.smpp.submit(&sms).await;
                if result.is_ok() {
                    served.submitted(self.smpp.id(), &sms);
                }
                Answer::Submitted(result)
            }
            Ok(Ask::Query {
                carrier_message_id,
                to,
            }) => Answer::Queried(self.smpp.query(&carrier_message_id, &to).await),
            Err(e) => {
                warn!(carrier = %self.smpp.id(), error = %e, "unreadable request from another node");
                Answer::Refused(e.to_string())
            }
        };
        metrics::counter!("tern_carrier_served_total", "carrier" => self.smpp.id().to_owned())
            .increment(1);
        match serde_json::to_vec(&answer) {
            Ok(payload) => request.reply(payload).await,
            Err(e) => warn!(error = %e, "cannot encode an answer"),
        }
    }
}

/// Keeps `sum` at `a + b` until either side is gone.
async fn add_up(
    mut a: watch::Receiver<usize>,
    mut b: watch::Receiver<usize>,
    sum: watch::Sender<usize>,
) {
    loop {
        let total = *a.borrow_and_update() + *b.borrow_and_update();
        sum.send_if_modified(|n| {
            let changed = *n != total;
            *n = total;
            changed
        });
        tokio::select! {
            r = a.changed() => if r.is_err() { return },
            r = b.changed() => if r.is_err() { return },
        }
    }
}

#[async_trait]
impl Carrier for RegionCarrier {
    fn id(&self) -> &str {
        self.smpp.id()
    }

    async fn submit(&self, sms: &OutboundSms) -> Result<String, SubmitError> {
        self.submit_tracked(sms).await.map(|s| s.id)
    }

    async fn submit_tracked(&self, sms: &OutboundSms) -> Result<Submitted, SubmitError> {
        if self.here() {
            return self.smpp.submit_tracked(sms).await;
        }
        match self.ask(&Ask::Submit(sms.clone())).await {
            Ok(Answer::Submitted(result)) => result.map(|id| Submitted {
                id,
                receipts: ReceiptsTo::AnotherNode,
            }),
            Ok(Answer::Refused(why)) => Err(SubmitError::Retryable(format!(
                "the bound node refused the request: {why}"
            ))),
            Ok(other) => Err(SubmitError::Retryable(format!(
                "unexpected answer: {other:?}"
            ))),
            Err(why) => Err(SubmitError::Retryable(why)),
        }
    }

    async fn query(&self, carrier_message_id: &str, to: &str) -> Option<Receipt> {
        if self.here() {
            return self.smpp.query(carrier_message_id, to).await;
        }
        let ask = Ask::Query {
            carrier_message_id: carrier_message_id.to_owned(),
            to: to.to_owned(),
        };
        match self.ask(&ask).await {
            Ok(Answer::Queried(receipt)) => receipt,
            Ok(other) => {
                warn!(carrier = %self.smpp.id(), answer = ?other, "unexpected answer to a query");
                None
            }
            Err(why) => {
                warn!(carrier = %self.smpp.id(), %why, "cannot query the carrier through another node");
                None
            }
        }
    }

    fn transmitting(&self) -> Option<watch::Receiver<usize>> {
        Some(self.transmitting.subscribe())
    }
}
