//! Settings of the simulated carrier (`[sim]` in the config file).

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SimOutcome {
    /// A receipt saying delivered (the default).
    Delivered,
    /// A receipt saying undelivered, with `error_code` (default 30003).
    Undelivered,
    /// A receipt saying failed, with `error_code` (default 30008).
    Failed,
    /// Refused at submission with `error_code` (default 30007).
    Rejected,
    /// Every submission is throttled (a temporary error), so the message is retried until
    /// its validity period runs out.
    Throttled,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimRule {
    /// Destinations starting with this E.164 prefix follow the rule; the longest match wins.
    pub prefix: String,
    pub outcome: SimOutcome,
    pub error_code: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    /// Delay between accepting a message and sending its receipt.
    pub receipt_delay_ms: u64,
    #[serde(rename = "rule")]
    pub rules: Vec<SimRule>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            receipt_delay_ms: 200,
            rules: Vec::new(),
        }
    }
}

impl SimConfig {
    pub fn rule_for(&self, to: &str) -> Option<&SimRule> {
        self.rules
            .iter()
            .filter(|r| to.starts_with(&r.prefix))
            .max_by_key(|r| r.prefix.len())
    }
}
