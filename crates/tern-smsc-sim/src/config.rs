//! The simulator's settings: [`SmscConfig`] (fixed at start) and [`Faults`] (switchable at
//! run time through [`crate::SmscHandle::set_faults`] or `PUT /faults`).
//!
//! Both are serde types with `deny_unknown_fields` and a default for every field, so a TOML
//! file or a JSON body names only what it changes:
//!
//! ```toml
//! listen = "127.0.0.1:2775"
//! system_id = "acme"
//! password = "secret"
//! admin_listen = "127.0.0.1:8775"
//!
//! [faults]
//! receipt_delay_ms = { min = 200, max = 2000 }   # or a fixed number: receipt_delay_ms = 500
//! throttle_mps = 500
//!
//! [[faults.rules]]
//! prefix = "+44"
//! delivery_ratio = 0.9
//! stat = "EXPIRED"
//! err = 27
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_smpp::ReceiptStat;
use tern_smpp::status;

use crate::Error;

/// How message ids issued in `submit_sm_resp` are printed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageIdFormat {
    /// Lower-case hexadecimal (the default), e.g. `19a3f0c2e4b00001`.
    #[default]
    Hex,
    /// Decimal digits, e.g. `1849273645000001`.
    Decimal,
}

/// Settings fixed for the life of one simulator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmscConfig {
    /// Address of the SMPP listener; port 0 picks a free one. Default `127.0.0.1:2775`.
    pub listen: String,
    /// The `system_id` clients must bind with when `password` is set; also the `system_id`
    /// this SMSC returns in bind responses. Default `tern`.
    pub system_id: String,
    /// When set, binds must carry this password and `system_id` (wrong password →
    /// `ESME_RINVPASWD`, wrong system_id → `ESME_RINVSYSID`). When `None` (the default)
    /// every bind is accepted and receipts follow whatever `system_id` the client used.
    pub password: Option<String>,
    /// Address of the admin HTTP port (`GET/PUT /faults`, `GET /stats`, `POST /mo`); none
    /// by default.
    pub admin_listen: Option<String>,
    /// How message ids are printed. Default `hex`.
    pub message_id_format: MessageIdFormat,
    /// `deliver_sm` requests this SMSC keeps outstanding per receiver bind. Default 100.
    pub window: usize,
    /// Requests a client may keep unanswered per bind before the session answers
    /// `ESME_RTHROTTLED` by itself. Default 1000.
    pub inbound_window: usize,
    /// Receipts and mobile-originated messages waiting at once (scheduled, held for a
    /// receiver or in flight); beyond it new receipts are dropped (and counted) and
    /// `inject_mo` fails. Default 1,000,000.
    pub max_pending: usize,
    /// Message ids remembered for `query_sm`/`cancel_sm`/`replace_sm`; the oldest are
    /// forgotten first. Default 1,000,000.
    pub query_memory: usize,
    /// Faults in force at start.
    pub faults: Faults,
}

impl Default for SmscConfig {
    fn default() -> Self {
        SmscConfig {
            listen: "127.0.0.1:2775".into(),
            system_id: "tern".into(),
            password: None,
            admin_listen: None,
            message_id_format: MessageIdFormat::Hex,
            window: 100,
            inbound_window: 1000,
            max_pending: 1_000_000,
            query_memory: 1_000_000,
            faults: Faults::default(),
        }
    }
}

impl SmscConfig {
    /// Reads a TOML configuration (see the module documentation) and validates it.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let config: SmscConfig =
            toml::from_str(text).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |m: &str| Err(Error::InvalidConfig(m.to_owned()));
        if self.system_id.is_empty() || self.system_id.len() > 15 {
            return invalid("system_id must be 1 to 15 characters");
        }
        if self.password.as_ref().is_some_and(|p| p.len() > 8) {
            return invalid("password must be at most 8 characters (SMPP 3.4)");
        }
        if self.window == 0 || self.inbound_window == 0 {
            return invalid("window and inbound_window must be at least 1");
        }
        if self.max_pending == 0 || self.query_memory == 0 {
            return invalid("max_pending and query_memory must be at least 1");
        }
        self.faults.validate()
    }
}

/// A delay in milliseconds: a fixed number (`500`) or a uniform range
/// (`{ min = 100, max = 2000 }` in TOML, `{"min":100,"max":2000}` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DelayMs {
    Fixed(u64),
    Uniform(UniformMs),
}

/// The `{min, max}` form of [`DelayMs`]; both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UniformMs {
    pub min: u64,
    pub max: u64,
}

impl Default for DelayMs {
    fn default() -> Self {
        DelayMs::Fixed(0)
    }
}

impl DelayMs {
    /// One draw from the distribution.
    pub fn sample(&self) -> Duration {
        Duration::from_millis(match *self {
            DelayMs::Fixed(ms) => ms,
            DelayMs::Uniform(UniformMs { min, max }) if min < max => rand::random_range(min..=max),
            DelayMs::Uniform(UniformMs { min, .. }) => min,
        })
    }

    pub fn is_zero(&self) -> bool {
        matches!(
            self,
            DelayMs::Fixed(0) | DelayMs::Uniform(UniformMs { max: 0, .. })
        )
    }

    fn validate(&self, name: &str) -> Result<(), Error> {
        if let DelayMs::Uniform(UniformMs { min, max }) = self
            && min > max
        {
            return Err(Error::InvalidFaults(format!(
                "{name}: min ({min}) is greater than max ({max})"
            )));
        }
        Ok(())
    }
}

/// What happens to messages whose destination starts with `prefix`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryRule {
    /// Destination prefix; a leading `+` is ignored on both sides, the longest matching
    /// prefix wins and `""` matches everything.
    pub prefix: String,
    /// Share of messages delivered (`stat:DELIVRD`), 0..=1. Default 1.
    #[serde(default = "one")]
    pub delivery_ratio: f64,
    /// The `stat` of the others: `UNDELIV` (default), `EXPIRED`, `REJECTD`, `DELETED`,
    /// `UNKNOWN`, `ACCEPTD` or `ENROUTE`.
    #[serde(default)]
    pub stat: Option<String>,
    /// The `err` of the others (printed as three digits). Default 1.
    #[serde(default = "default_err")]
    pub err: u16,
    /// Refuse every submit to these destinations with this `command_status` (e.g. 11,
    /// `ESME_RINVDSTADR`) instead of accepting it; `delivery_ratio` then never applies.
    #[serde(default)]
    pub submit_status: Option<u32>,
}

fn one() -> f64 {
    1.0
}

fn default_err() -> u16 {
    1
}

/// Faults, all switchable at run time. The defaults are a healthy carrier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Faults {
    /// Time from `submit_sm` to its delivery receipt. Default 0 (at once).
    pub receipt_delay_ms: DelayMs,
    /// Per-destination outcomes; destinations no rule matches are delivered.
    pub rules: Vec<DeliveryRule>,
    /// At most this many `submit_sm`/`data_sm`/`submit_multi` per second per bind (fixed
    /// one-second windows); the rest are answered `ESME_RTHROTTLED`. `None`: no limit.
    pub throttle_mps: Option<u32>,
    /// Share of submits answered with `submit_error_status` instead of an id, 0..=1.
    pub submit_error_ratio: f64,
    /// Status of those errors. Default `ESME_RSYSERR` (0x08).
    pub submit_error_status: u32,
    /// Accept submits but never send receipts (receipts already scheduled are discarded
    /// when due). `query_sm` still reports the final state.
    pub silent: bool,
    /// Hard failure: binds are rejected with `ESME_RBINDFAIL` and open connections are
    /// closed (TCP, no unbind).
    pub refuse_binds: bool,
    /// Close every connection (TCP, no unbind) every this many seconds.
    pub drop_every_secs: Option<u64>,
    /// Delay before each submit response (`submit_sm_resp`, `data_sm_resp`,
    /// `submit_multi_resp`); responses keep flowing in parallel. Default 0.
    pub response_delay_ms: DelayMs,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            receipt_delay_ms: DelayMs::default(),
            rules: Vec::new(),
            throttle_mps: None,
            submit_error_ratio: 0.0,
            submit_error_status: status::ESME_RSYSERR,
            silent: false,
            refuse_binds: false,
            drop_every_secs: None,
            response_delay_ms: DelayMs::default(),
        }
    }
}

impl Faults {
    /// Checks ratios, ranges and `stat` names.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |m: String| Err(Error::InvalidFaults(m));
        self.receipt_delay_ms.validate("receipt_delay_ms")?;
        self.response_delay_ms.validate("response_delay_ms")?;
        if !(0.0..=1.0).contains(&self.submit_error_ratio) {
            return invalid(format!(
                "submit_error_ratio must be between 0 and 1, not {}",
                self.submit_error_ratio
            ));
        }
        if self.submit_error_status == status::ESME_ROK {
            return invalid("submit_error_status must not be 0 (ESME_ROK)".into());
        }
        if self.throttle_mps == Some(0) {
            return invalid("throttle_mps must be at least 1 (leave it out for no limit)".into());
        }
        if self.drop_every_secs == Some(0) {
            return invalid(
                "drop_every_secs must be at least 1 (leave it out to never drop)".into(),
            );
        }
        for rule in &self.rules {
            if !(0.0..=1.0).contains(&rule.delivery_ratio) {
                return invalid(format!(
                    "rule {:?}: delivery_ratio must be between 0 and 1, not {}",
                    rule.prefix, rule.delivery_ratio
                ));
            }
            if let Some(stat) = &rule.stat
                && (matches!(ReceiptStat::parse(stat), ReceiptStat::Other(_))
                    || ReceiptStat::parse(stat) == ReceiptStat::Delivered)
            {
                return invalid(format!(
                    "rule {:?}: stat {stat:?} is not one of UNDELIV, EXPIRED, REJECTD, DELETED, UNKNOWN, ACCEPTD, ENROUTE",
                    rule.prefix
                ));
            }
            if rule.err > 999 {
                return invalid(format!(
                    "rule {:?}: err must be at most 999, not {}",
                    rule.prefix, rule.err
                ));
            }
        }
        Ok(())
    }

    /// The rule for a destination: the longest matching prefix.
    pub fn rule_for(&self, destination: &str) -> Option<&DeliveryRule> {
        let to = destination.trim_start_matches('+');
        self.rules
            .iter()
            .filter(|r| to.starts_with(r.prefix.trim_start_matches('+')))
            .max_by_key(|r| r.prefix.trim_start_matches('+').len())
    }

    /// The status every submit to `destination` is refused with, if its rule says so.
    pub(crate) fn refusal(&self, destination: &str) -> Option<u32> {
        self.rule_for(destination)
            .and_then(|r| r.submit_status)
            .filter(|s| *s != status::ESME_ROK)
    }

    /// Draws the outcome of one message to `destination`: the receipt's stat and err.
    pub(crate) fn outcome(&self, destination: &str) -> (ReceiptStat, u16) {
        let Some(rule) = self.rule_for(destination) else {
            return (ReceiptStat::Delivered, 0);
        };
        if rule.delivery_ratio >= 1.0 || rand::random::<f64>() < rule.delivery_ratio {
            return (ReceiptStat::Delivered, 0);
        }
        let stat = rule
            .stat
            .as_deref()
            .map_or(ReceiptStat::Undeliverable, ReceiptStat::parse);
        (stat, rule.err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_parses_fixed_and_range_in_toml_and_json() {
        let f: Faults = toml::from_str("receipt_delay_ms = 250").unwrap();
        assert_eq!(f.receipt_delay_ms, DelayMs::Fixed(250));
        let f: Faults =
            toml::from_str("receipt_delay_ms = { min = 10, max = 20 }\nsilent = true").unwrap();
        assert_eq!(
            f.receipt_delay_ms,
            DelayMs::Uniform(UniformMs { min: 10, max: 20 })
        );
        assert!(f.silent);
        let f: Faults = serde_json::from_str(r#"{"response_delay_ms":{"min":1,"max":1}}"#).unwrap();
        assert_eq!(f.response_delay_ms.sample(), Duration::from_millis(1));
        assert!(serde_json::from_str::<Faults>(r#"{"bogus":1}"#).is_err());
    }

    #[test]
    fn longest_prefix_wins_and_plus_is_ignored() {
        let f = Faults {
            rules: vec![
                DeliveryRule {
                    prefix: "+44".into(),
                    delivery_ratio: 1.0,
                    stat: None,
                    err: 1,
                    submit_status: None,
                },
                DeliveryRule {
                    prefix: "447".into(),
                    delivery_ratio: 0.0,
                    stat: Some("EXPIRED".into()),
                    err: 27,
                    submit_status: None,
                },
            ],
            ..Faults::default()
        };
        assert_eq!(f.outcome("+447700900000"), (ReceiptStat::Expired, 27));
        assert_eq!(f.outcome("441234"), (ReceiptStat::Delivered, 0));
        assert_eq!(f.outcome("+1555"), (ReceiptStat::Delivered, 0));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = Faults {
            submit_error_ratio: 1.5,
            ..Faults::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("submit_error_ratio")
        );
        let bad = Faults {
            rules: vec![DeliveryRule {
                prefix: "1".into(),
                delivery_ratio: 0.5,
                stat: Some("NOPE".into()),
                err: 1,
                submit_status: None,
            }],
            ..Faults::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("NOPE"));
        let bad = Faults {
            receipt_delay_ms: DelayMs::Uniform(UniformMs { min: 5, max: 1 }),
            ..Faults::default()
        };
        assert!(bad.validate().is_err());
        assert!(Faults::default().validate().is_ok());
        assert!(SmscConfig::default().validate().is_ok());
    }
}
