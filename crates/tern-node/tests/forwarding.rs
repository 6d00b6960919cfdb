//! A carrier bound by one node is reached from another through the bus
//! (`tern_node::forwarding`): two nodes' connectors to one carrier simulator over real
//! SMPP on loopback, one of them without a bind, sharing an in-process bus.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tern_bus::Queue;
use tern_bus::inproc::InProcessQueue;
use tern_carriers::smpp::{SmppCarrier, SmppCarrierConfig};
use tern_carriers::{Carrier, CarrierEvent, OutboundSms, ReceiptOutcome, ReceiptsTo, SubmitError};
use tern_node::forwarding::{RegionCarrier, Served};
use tern_smsc_sim::{Smsc, SmscConfig};
use tern_types::{Sid, SidPrefix};
use tokio::sync::{mpsc, watch};

const WAIT: Duration = Duration::from_secs(30);

/// What the serving node heard: (carrier, message) of each submission it carried out. It
/// vouches for every message but those with a body of "forged".
#[derive(Default)]
struct Recorded(Mutex<Vec<(String, Sid)>>);

#[async_trait::async_trait]
impl Served for Recorded {
    async fn vouches_for(&self, sms: &OutboundSms) -> bool {
        sms.body != "forged"
    }

    fn submitted(&self, carrier: &str, sms: &OutboundSms) {
        self.0
            .lock()
            .unwrap()
            .push((carrier.to_owned(), sms.message_sid));
    }
}

impl Recorded {
    fn taken(&self) -> Vec<(String, Sid)> {
        self.0.lock().unwrap().clone()
    }
}

fn sms(body: &str) -> OutboundSms {
    OutboundSms {
        message_sid: Sid::generate(SidPrefix::Message),
        from: "+14155550100".into(),
        to: "+14155550199".into(),
        body: body.into(),
        validity_secs: 3600,
    }
}

async fn until(w: &mut watch::Receiver<usize>, f: impl FnMut(&usize) -> bool) {
    tokio::time::timeout(WAIT, w.wait_for(f))
        .await
        .expect("in time")
        .expect("watch open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_a_bind_submits_through_the_node_with_one() {
    let smsc = Smsc::start(SmscConfig {
        listen: "127.0.0.1:0".into(),
        ..SmscConfig::default()
    })
    .await
    .unwrap();
    let mut config = SmppCarrierConfig::new("acme", &smsc.addr().to_string(), "tern", "pw");
    config.binds = 1;
    let queue: Arc<dyn Queue> = Arc::new(InProcessQueue::new());
    // Node B holds the carrier's one bind slot; node A holds none.
    let (b_events, mut b_receipts) = mpsc::channel(16);
    let b_smpp =
        SmppCarrier::start_with_slots(&config, b_events, Some(BTreeSet::from([0]))).unwrap();
    let (a_events, mut a_receipts) = mpsc::channel::<CarrierEvent>(16);
    let a_smpp = SmppCarrier::start_with_slots(&config, a_events, Some(BTreeSet::new())).unwrap();
    let a = RegionCarrier::new(a_smpp, queue.clone());
    let b = RegionCarrier::new(b_smpp.clone(), queue.clone());

    // Nobody serves it yet: A is told at once that no node is bound.
    match a.submit(&sms("too early")).await {
        Err(SubmitError::Retryable(why)) => {
            assert!(why.contains("no node of the region is bound"), "{why}")
        }
        other => panic!("before anyone serves: {other:?}"),
    }

    let (stop, stopped) = watch::channel(false);
    let served = Arc::new(Recorded::default());
    let serving = tokio::spawn(b.clone().serve(stopped, served.clone()));
    b_smpp.wait_until_bound().await;
    // A can transmit once it knows another node holds a slot.
    let mut a_up = a.transmitting().unwrap();
    assert_eq!(*a_up.borrow(), 0);
    a.set_held_elsewhere(1);
    until(&mut a_up, |n| *n == 1).await;

    // B serves once its bind is up; the request may race the subscription, so retry.
    let through_b = sms("through B");
    let id = tokio::time::timeout(WAIT, async {
        loop {
            match a.submit_tracked(&through_b).await {
                Ok(s) => {
                    // B's connection carried it: B gets the receipt and watches for it.
                    assert_eq!(s.receipts, ReceiptsTo::AnotherNode);
                    break s.id;
                }
                Err(SubmitError::Retryable(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("forwarded submit: {e}"),
            }
        }
    })
    .await
    .expect("a forwarded submit in time");
    assert!(!id.is_empty());
    // The receipt comes to the bound node (B), not to A.
    let receipt = tokio::time::timeout(WAIT, b_receipts.recv())
        .await
        .unwrap()
        .unwrap();
    match receipt {
        CarrierEvent::Receipt(r) => {
            assert_eq!(
                (r.carrier.as_str(), r.carrier_message_id.as_str()),
                ("acme", id.as_str())
            );
            assert_eq!(r.outcome, ReceiptOutcome::Delivered);
        }
        other => panic!("expected a receipt, got {other:?}"),
    }
    assert!(a_receipts.try_recv().is_err());
    // B was told, so that its Super Network awaits the receipt.
    assert_eq!(
        served.taken(),
        [("acme".to_string(), through_b.message_sid)]
    );
    // A query goes the same way.
    let queried = a.query(&id, "+14155550199").await.expect("a final state");
    assert_eq!(queried.outcome, ReceiptOutcome::Delivered);

    // B's own submissions go out on its connection, receipts to B.
    let own = b.submit_tracked(&sms("B's own")).await.unwrap();
    assert_eq!(own.receipts, ReceiptsTo::ThisNode);
    let _ = tokio::time::timeout(WAIT, b_receipts.recv()).await.unwrap();

    // A message the serving node does not vouch for (one Tern never accepted, asked for
    // by anyone on the bus) is refused, not submitted.
    match a.submit(&sms("forged")).await {
        Err(SubmitError::Retryable(why)) => assert!(why.contains("refused"), "{why}"),
        other => panic!("a forged submission: {other:?}"),
    }
    assert_eq!(served.taken().len(), 1);

    // Several at once, each answered once (and each told to B once).
    let many = (0..20).map(|n| {
        let a = a.clone();
        tokio::spawn(async move { a.submit(&sms(&format!("many {n}"))).await })
    });
    let mut ids = BTreeSet::new();
    for h in many {
        ids.insert(h.await.unwrap().expect("submitted"));
    }
    assert_eq!(ids.len(), 20);
    assert_eq!(served.taken().len(), 21);

    // B loses its slot: it stops serving, and A hears that no node is bound.
    b_smpp.set_active_slots(Some(BTreeSet::new()));
    let mut b_up = b.transmitting().unwrap();
    until(&mut b_up, |n| *n == 0).await;
    tokio::time::timeout(WAIT, async {
        loop {
            match a.submit(&sms("after the unbind")).await {
                Err(SubmitError::Retryable(why)) if why.contains("no node") => break,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await
    .expect("A to hear nobody is bound");

    stop.send_replace(true);
    tokio::time::timeout(WAIT, serving).await.unwrap().unwrap();
    smsc.shutdown().await;
}
