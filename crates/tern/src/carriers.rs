//! The carriers a node binds to: the `[[carrier]]`s of its config, or — when it declares
//! none — two built-in carrier simulators on loopback, bound over real SMPP exactly as a
//! carrier would be, so failover between carriers is visible out of the box.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use tern_carriers::smpp::{SmppCarrier, SmppCarrierConfig};
use tern_carriers::{Carrier, CarrierEvent};
use tern_node::Config;
use tern_smsc_sim::{Smsc, SmscConfig, SmscHandle};
use tokio::sync::mpsc;

/// Names of the built-in simulated carriers, most preferred first.
pub const BUILT_IN: [&str; 2] = ["sim-a", "sim-b"];

/// How long a starting node waits for its carriers to bind before it serves anyway
/// (submits then wait in the queue and retry).
const BIND_WAIT: Duration = Duration::from_secs(5);

pub struct Carriers {
    pub smpp: Vec<Arc<SmppCarrier>>,
    /// The simulators behind the built-in carriers (empty when the config declares some).
    pub simulators: Vec<SmscHandle>,
    /// Whether the declared carriers' bind slots are leased (a shared store).
    pub leased: bool,
}

impl Carriers {
    /// Starts the declared carriers, or the built-in simulators. With `leased`, declared
    /// carriers bind no slot until [`tern_node::binds::BindSlots`] leases them some (the
    /// simulators are this process's own and never leased).
    pub async fn start(
        config: &Config,
        events: mpsc::Sender<CarrierEvent>,
        leased: bool,
    ) -> anyhow::Result<Carriers> {
        let mut simulators = Vec::new();
        let declared = if config.carriers.is_empty() {
            // A fresh password per start: the simulators live and die with this process.
            let password = Alphanumeric.sample_string(&mut rand::rng(), 8);
            let mut declared = Vec::new();
            for id in BUILT_IN {
                let smsc = Smsc::start(SmscConfig {
                    listen: "127.0.0.1:0".into(),
                    system_id: "tern".into(),
                    password: Some(password.clone()),
                    faults: config.sim.clone(),
                    ..SmscConfig::default()
                })
                .await
                .with_context(|| format!("cannot start the built-in carrier simulator {id}"))?;
                let mut c = SmppCarrierConfig::new(id, &smsc.addr().to_string(), "tern", &password);
                // Loopback: a deep window keeps one bind far from being the bottleneck.
                c.window = 100;
                c.reconnect_max_ms = 2_000;
                declared.push(c);
                simulators.push(smsc);
            }
            declared
        } else {
            config.carriers.clone()
        };
        let leased = leased && simulators.is_empty();
        let mut smpp = Vec::new();
        for c in &declared {
            let slots = leased.then(std::collections::BTreeSet::new);
            let carrier = SmppCarrier::start_with_slots(c, events.clone(), slots)
                .with_context(|| format!("invalid [[carrier]] {}", c.id))?;
            smpp.push(carrier);
        }
        for c in smpp.iter().filter(|_| !leased) {
            if tokio::time::timeout(BIND_WAIT, c.wait_until_bound())
                .await
                .is_err()
            {
                tracing::warn!(carrier = %c.status().id, "carrier not bound yet; messages wait for it");
            }
        }
        Ok(Carriers {
            smpp,
            simulators,
            leased,
        })
    }

    pub fn as_dyn(&self) -> Vec<Arc<dyn Carrier>> {
        self.smpp
            .iter()
            .map(|c| c.clone() as Arc<dyn Carrier>)
            .collect()
    }

    /// Unbinds every carrier gracefully, then stops the simulators.
    pub async fn shutdown(self) {
        for c in &self.smpp {
            c.shutdown().await;
        }
        for s in self.simulators {
            s.shutdown().await;
        }
    }
}
