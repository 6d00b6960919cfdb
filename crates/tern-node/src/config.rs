//! The node's configuration file (TOML). Every key has a default, so an empty file (or none)
//! gives the embedded default.

use serde::Deserialize;
use tern_carriers::smpp::SmppCarrierConfig;
use tern_smsc_sim::Faults;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub node: NodeConfig,
    pub store: StoreConfig,
    pub bus: BusConfig,
    /// Faults of the built-in carrier simulators `tern up` and `tern serve` run when no
    /// `[[carrier]]` is declared (the `[faults]` keys of `tern sim smsc`).
    pub sim: Faults,
    /// `[[carrier]]` tables: the SMPP carriers this node binds to. When present they
    /// replace the built-in simulated carriers.
    #[serde(rename = "carrier")]
    pub carriers: Vec<SmppCarrierConfig>,
    pub smpp: SmppServerSettings,
    pub operator: OperatorConfig,
    pub webhooks: WebhookConfig,
    pub messaging: MessagingConfig,
    pub retention: RetentionConfig,
    /// The Super Network: learned carrier ranking (`learn`) and its health thresholds.
    pub network: crate::network::NetworkConfig,
    /// `[[route]]` tables: which carriers serve which destinations. None means every
    /// carrier serves every destination, in declaration order.
    #[serde(rename = "route")]
    pub routes: Vec<RouteConfig>,
}

/// One `[[route]]`: destinations starting with `prefix` (`"+"` for all; the longest
/// match wins) go to `carriers`, the first preferred and the next on error.
pub type RouteConfig = tern_domain::Route;

/// The customer-facing SMPP server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmppServerSettings {
    /// The `system_id` Tern answers binds with.
    pub system_id: String,
}

impl Default for SmppServerSettings {
    fn default() -> Self {
        SmppServerSettings {
            system_id: "TERN".into(),
        }
    }
}

/// Who may use the operator API (`/v1/Operator/…`): a bearer token, given in the file or,
/// better, in the environment variable `token_env` names. Without one the operator API
/// answers 404, as if it did not exist.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OperatorConfig {
    pub token: Option<String>,
    pub token_env: Option<String>,
}

impl OperatorConfig {
    /// The token in force, read from the environment when `token_env` is set.
    pub fn resolve(&self) -> Result<Option<String>, String> {
        match (&self.token, &self.token_env) {
            (Some(_), Some(_)) => Err("[operator] sets both token and token_env".into()),
            (Some(t), None) => Ok(Some(t.clone())),
            (None, Some(var)) => match std::env::var(var) {
                Ok(t) if !t.is_empty() => Ok(Some(t)),
                _ => Err(format!(
                    "[operator] token_env names {var}, which is not set"
                )),
            },
            (None, None) => Ok(None),
        }
    }
}

/// Identity of this node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub name: String,
    /// The region (failure domain) the node belongs to; it names the bus subjects and the
    /// leader lease.
    pub region: String,
    /// How long the region's leader lease lasts without renewal: how long a region may go
    /// without a leader after its leader dies.
    pub leader_ttl_ms: u32,
    /// How often the leader renews its lease (and other nodes ask for it); at most half
    /// the ttl.
    pub leader_renew_ms: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "node-1".into(),
            region: "local".into(),
            leader_ttl_ms: 10_000,
            leader_renew_ms: 3_000,
        }
    }
}

/// Where durable state lives: `sqlite://PATH` (the default, in the data directory) or
/// `postgres://…`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    pub url: Option<String>,
    /// Connections in the PostgreSQL pool.
    pub pool_size: Option<usize>,
}

/// How work moves between workers: in-process (the default) or `nats://…` (JetStream).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub url: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookConfig {
    /// Attempts per webhook, the first included, before it is given up.
    pub max_attempts: u32,
    pub connect_timeout_ms: u64,
    /// Deadline for the whole request, response included (Twilio's is 15 s).
    pub timeout_ms: u64,
    /// Webhooks in flight at once across all messages.
    pub concurrency: usize,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        WebhookConfig {
            max_attempts: 8,
            connect_timeout_ms: 5_000,
            timeout_ms: 15_000,
            concurrency: 128,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagingConfig {
    /// How long after `sent` a missing receipt is asked for with a carrier query.
    pub receipt_grace_secs: u64,
    /// Submissions in flight at once. Bounded so that background work never crowds the
    /// API's writes out of a commit batch (measured: 64 keeps accept p99 under 10 ms on
    /// 2 cores while the pipeline still sustains > 3,000 messages/s).
    pub concurrency: usize,
    /// Sends being accepted at once (REST and SMPP) from which the node counts as
    /// saturated; `0` never. While saturated, at most `concurrency_when_saturated` route
    /// workers start: the API keeps its rate and accepted messages wait in `queued` until
    /// the burst eases (then the pipeline drains at `concurrency`). A saturated node accepts
    /// 1.5–2× as much; a burst is delivered about 8 % later (`tern-node::saturation`).
    pub saturated_at_sends: usize,
    /// Route workers that may start while the node is saturated.
    pub concurrency_when_saturated: usize,
    /// Attempts at submitting one message before it fails.
    pub max_submit_attempts: u32,
    /// Messages per second one sender may send, by its kind
    /// (`tern_domain::pacing::classify`); `0` leaves that kind unpaced. A message over its
    /// sender's rate waits in `queued` for the sender's next free slot, and fails with
    /// 30001 if that slot is after its validity period. Each node paces what it routes
    /// (per node, in memory). Twilio's figures are 1 (long code), 3 (toll-free) and 100
    /// (short code).
    pub sender_mps_long_code: f64,
    pub sender_mps_toll_free: f64,
    pub sender_mps_short_code: f64,
}

impl Default for MessagingConfig {
    fn default() -> Self {
        MessagingConfig {
            receipt_grace_secs: 10,
            concurrency: 64,
            saturated_at_sends: 8,
            concurrency_when_saturated: 8,
            max_submit_attempts: 10,
            // Unpaced unless configured, so that a test or a benchmark sending from one
            // number is not held to a carrier's rate.
            sender_mps_long_code: 0.0,
            sender_mps_toll_free: 0.0,
            sender_mps_short_code: 0.0,
        }
    }
}

/// `[retention]`: how long message records are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days a message in a final status is kept after its last change (Twilio keeps 400);
    /// `0` keeps messages for ever. The region's leader deletes older ones, with their
    /// events, route attempts and feedback, a batch at a time.
    pub message_days: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig { message_days: 400 }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_and_unknown_keys_are_refused() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.webhooks.max_attempts, 8);
        let c = Config::from_toml(
            "[sim]\nreceipt_delay_ms = 5\n[[sim.rules]]\nprefix = \"+1415555\"\ndelivery_ratio = 0.0\nerr = 3\n",
        )
        .unwrap();
        assert_eq!(c.sim.rules.len(), 1);
        let c = Config::from_toml(
            "[[carrier]]\nid = \"a\"\naddress = \"127.0.0.1:2775\"\nsystem_id = \"t\"\npassword = \"p\"\n[[route]]\nprefix = \"+\"\ncarriers = [\"a\"]\n",
        )
        .unwrap();
        assert_eq!((c.carriers.len(), c.routes.len()), (1, 1));
        assert!(Config::from_toml("[sim]\nbogus = 1\n").is_err());
        assert_eq!(c.retention.message_days, 400);
        let c = Config::from_toml("[retention]\nmessage_days = 0\n").unwrap();
        assert_eq!(c.retention.message_days, 0);
        let c = Config::from_toml(
            "[node]\nname = \"a\"\nregion = \"us1\"\n[store]\nurl = \"postgres://x\"\n[bus]\nurl = \"nats://y\"\n",
        )
        .unwrap();
        assert_eq!(
            (c.node.region.as_str(), c.store.url.as_deref()),
            ("us1", Some("postgres://x"))
        );
        let c = Config::from_toml(
            "[messaging]\nsender_mps_long_code = 1.0\nsender_mps_toll_free = 3\nsender_mps_short_code = 100.0\n",
        )
        .unwrap();
        assert_eq!(
            (
                c.messaging.sender_mps_long_code,
                c.messaging.sender_mps_toll_free,
                c.messaging.sender_mps_short_code,
                c.messaging.concurrency
            ),
            (1.0, 3.0, 100.0, 64)
        );
    }
}
