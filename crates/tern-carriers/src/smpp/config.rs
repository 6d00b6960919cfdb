//! Settings of one SMPP carrier: one TOML table per carrier, wherever the node config puts it.
//!
//! Every key but `id`, `address`, `system_id` and one of `password` / `password_env` has a
//! default; unknown keys are an error so that a typo does not silently fall back to one.
//! [`SmppCarrierConfig::resolve`] checks the values and reads the password from the
//! environment, once, at start.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use tern_smpp::pdu::Address;
use tern_smpp::pdu::max_len;
use tern_smpp::text::{LongMessageMode, TextOptions};

/// How each bind slot connects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BindMode {
    /// One `bind_transceiver` connection per slot (the default).
    #[default]
    Transceiver,
    /// Two connections per slot, `bind_transmitter` and `bind_receiver`, for SMSCs that do
    /// not offer transceiver binds.
    TransmitterReceiver,
}

/// How texts longer than one segment are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LongMessages {
    /// Concatenation UDH with an 8-bit reference (the most widely accepted; default).
    #[default]
    Udh8,
    /// Concatenation UDH with a 16-bit reference.
    Udh16,
    /// `sar_*` TLVs instead of a UDH.
    Sar,
    /// One `submit_sm` with the whole text in `message_payload`; the SMSC splits it.
    Payload,
}

impl From<LongMessages> for LongMessageMode {
    fn from(m: LongMessages) -> Self {
        match m {
            LongMessages::Udh8 => LongMessageMode::Udh8,
            LongMessages::Udh16 => LongMessageMode::Udh16,
            LongMessages::Sar => LongMessageMode::Sar,
            LongMessages::Payload => LongMessageMode::Payload,
        }
    }
}

/// The `encoding` table: how bodies become `short_message` octets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodingConfig {
    /// Texts longer than one segment: `"udh8"` (default), `"udh16"`, `"sar"` or
    /// `"payload"`.
    pub long_messages: LongMessages,
    /// Pack GSM-7 septets (7 bits each) instead of one septet per octet. Most SMSCs expect
    /// unpacked GSM-7 with `data_coding` 0 (the default, `false`).
    pub gsm7_packed: bool,
    /// Send texts that fit ISO-8859-1 but not GSM-7 as Latin-1 (`data_coding` 3, 140
    /// characters a segment) instead of UCS-2 (70). Default `false`: many handsets and
    /// SMSCs mishandle `data_coding` 3.
    pub latin1: bool,
}

impl EncodingConfig {
    pub fn text_options(&self) -> TextOptions {
        TextOptions {
            gsm7_packed: self.gsm7_packed,
            latin1_data_coding: self.latin1,
            long: self.long_messages.into(),
        }
    }
}

fn default_binds() -> u16 {
    1
}
fn default_window() -> usize {
    10
}
fn default_ton() -> u8 {
    1
}
fn default_npi() -> u8 {
    1
}
fn default_enquire_link_secs() -> u64 {
    30
}
fn default_response_timeout_secs() -> u64 {
    10
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}
fn default_mo_reassembly_secs() -> u64 {
    60
}
fn default_true() -> bool {
    true
}

/// One SMPP carrier as written in the config file.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmppCarrierConfig {
    /// The carrier's name in Tern (message records, metrics, logs).
    pub id: String,
    /// The SMSC, `"host:port"`.
    pub address: String,
    /// Our `system_id` (at most 15 characters).
    pub system_id: String,
    /// The bind password (at most 8 characters). Exactly one of `password` and
    /// `password_env` must be set.
    #[serde(default)]
    pub password: Option<String>,
    /// The name of an environment variable holding the password, so the secret stays out
    /// of the config file.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `system_type` sent in the bind (default empty).
    #[serde(default)]
    pub system_type: String,
    /// Bind slots to keep open (default 1).
    #[serde(default = "default_binds")]
    pub binds: u16,
    /// `"transceiver"` (default) or `"transmitter_receiver"` (a TX and an RX connection per
    /// slot).
    #[serde(default)]
    pub bind_mode: BindMode,
    /// Outstanding requests per connection (default 10).
    #[serde(default = "default_window")]
    pub window: usize,
    /// Messages (submit_sm PDUs) per second across all binds of this carrier; no limit when
    /// absent (the adaptive limit still applies after throttling).
    #[serde(default)]
    pub max_mps: Option<f64>,
    #[serde(default)]
    pub encoding: EncodingConfig,
    /// TON/NPI of numeric senders (E.164: 1/1). Alphanumeric senders always use 5/0 and
    /// short codes (up to 8 digits without `+`) 3/0.
    #[serde(default = "default_ton")]
    pub source_ton: u8,
    #[serde(default = "default_npi")]
    pub source_npi: u8,
    /// TON/NPI of destinations (E.164: 1/1).
    #[serde(default = "default_ton")]
    pub dest_ton: u8,
    #[serde(default = "default_npi")]
    pub dest_npi: u8,
    /// Idle seconds before an `enquire_link` (default 30).
    #[serde(default = "default_enquire_link_secs")]
    pub enquire_link_secs: u64,
    /// Seconds to wait for any response (bind, submit_sm, query_sm, unbind; default 10).
    #[serde(default = "default_response_timeout_secs")]
    pub response_timeout_secs: u64,
    /// Reconnect backoff: the first delay's ceiling and the floor of every delay
    /// (default 500 ms) …
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// … and the largest delay (default 30 s).
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Seconds the parts of a concatenated inbound message are waited for, counted from the
    /// first part; then what arrived is delivered (default 60).
    #[serde(default = "default_mo_reassembly_secs")]
    pub mo_reassembly_secs: u64,
    /// Ask for delivery receipts (`registered_delivery` 1; default true).
    #[serde(default = "default_true")]
    pub registered_delivery: bool,
    /// Vendor `command_status` values (keys `"0x0400"` or `"1024"`) mapped to Twilio
    /// codes; a mapped status is a permanent refusal with that code.
    #[serde(default)]
    pub status_codes: BTreeMap<String, u32>,
    /// Receipt `err:` values (as the carrier prints them; leading zeros ignored) mapped to
    /// Twilio codes for `UNDELIV`/`REJECTD`/… receipts.
    #[serde(default)]
    pub receipt_err_codes: BTreeMap<String, u32>,
}

impl SmppCarrierConfig {
    /// A carrier with every optional key at its default, as a config table naming only
    /// these four would give.
    pub fn new(id: &str, address: &str, system_id: &str, password: &str) -> Self {
        SmppCarrierConfig {
            id: id.to_owned(),
            address: address.to_owned(),
            system_id: system_id.to_owned(),
            password: Some(password.to_owned()),
            password_env: None,
            system_type: String::new(),
            binds: default_binds(),
            bind_mode: BindMode::default(),
            window: default_window(),
            max_mps: None,
            encoding: EncodingConfig::default(),
            source_ton: default_ton(),
            source_npi: default_npi(),
            dest_ton: default_ton(),
            dest_npi: default_npi(),
            enquire_link_secs: default_enquire_link_secs(),
            response_timeout_secs: default_response_timeout_secs(),
            reconnect_min_ms: default_reconnect_min_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
            mo_reassembly_secs: default_mo_reassembly_secs(),
            registered_delivery: default_true(),
            status_codes: BTreeMap::new(),
            receipt_err_codes: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for SmppCarrierConfig {
    // Hand-written so the password never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmppCarrierConfig")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("system_id", &self.system_id)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_env", &self.password_env)
            .field("binds", &self.binds)
            .field("bind_mode", &self.bind_mode)
            .field("window", &self.window)
            .field("max_mps", &self.max_mps)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("carrier {id}: set one of `password` and `password_env`, not {what}")]
    Password { id: String, what: &'static str },
    #[error("carrier {id}: environment variable {var} (password_env) is not set or not UTF-8")]
    PasswordEnv { id: String, var: String },
    #[error("carrier {id}: {field} {problem}")]
    Invalid {
        id: String,
        field: &'static str,
        problem: String,
    },
}

/// The checked settings the connector runs on.
#[derive(Clone)]
pub(crate) struct Settings {
    pub id: String,
    pub address: String,
    pub system_id: String,
    pub password: String,
    pub system_type: String,
    pub binds: u16,
    pub bind_mode: BindMode,
    pub window: usize,
    pub max_mps: Option<f64>,
    pub text: TextOptions,
    pub source_ton: u8,
    pub source_npi: u8,
    pub dest_ton: u8,
    pub dest_npi: u8,
    pub enquire_link: Duration,
    pub response_timeout: Duration,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub mo_reassembly: Duration,
    pub registered_delivery: bool,
    pub status_codes: BTreeMap<u32, u32>,
    /// Keys normalised by [`normalize_err`].
    pub receipt_err_codes: BTreeMap<String, u32>,
}

/// `err:` values compared without case, surrounding space and leading zeros.
pub(crate) fn normalize_err(err: &str) -> String {
    let t = err.trim().to_ascii_lowercase();
    let s = t.trim_start_matches('0');
    if s.is_empty() && !t.is_empty() {
        "0".into()
    } else {
        s.to_owned()
    }
}

fn parse_status(key: &str) -> Option<u32> {
    let k = key.trim();
    match k.strip_prefix("0x").or_else(|| k.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => k.parse().ok(),
    }
}

impl SmppCarrierConfig {
    /// Checks the settings and reads the password (from `password_env` if so configured).
    pub(crate) fn resolve(&self) -> Result<Settings, ConfigError> {
        let invalid = |field: &'static str, problem: String| ConfigError::Invalid {
            id: self.id.clone(),
            field,
            problem,
        };
        let password = match (&self.password, &self.password_env) {
            (Some(p), None) => p.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| ConfigError::PasswordEnv {
                id: self.id.clone(),
                var: var.clone(),
            })?,
            (None, None) => {
                return Err(ConfigError::Password {
                    id: self.id.clone(),
                    what: "neither",
                });
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::Password {
                    id: self.id.clone(),
                    what: "both",
                });
            }
        };
        // Ids name leases (`bind/<region>/<id>/<slot>`), bus subjects and metric labels.
        let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if self.id.is_empty() || self.id.len() > 64 || !self.id.chars().all(plain) {
            return Err(invalid(
                "id",
                "must have 1 to 64 letters, digits, '-' or '_'".into(),
            ));
        }
        if !self.address.contains(':') {
            return Err(invalid("address", "must be \"host:port\"".into()));
        }
        // The PDU limits count the terminating NUL.
        let too_long = |s: &str, max: usize| s.len() + 1 > max;
        if self.system_id.is_empty() || too_long(&self.system_id, max_len::SYSTEM_ID) {
            return Err(invalid("system_id", "must have 1 to 15 characters".into()));
        }
        if too_long(&password, max_len::PASSWORD) {
            return Err(invalid("password", "must have at most 8 characters".into()));
        }
        if too_long(&self.system_type, max_len::SYSTEM_TYPE) {
            return Err(invalid(
                "system_type",
                "must have at most 12 characters".into(),
            ));
        }
        if self.binds == 0 {
            return Err(invalid("binds", "must be at least 1".into()));
        }
        if self.window == 0 || self.window > 1000 {
            return Err(invalid("window", "must be 1..=1000".into()));
        }
        if let Some(mps) = self.max_mps
            && !(mps.is_finite() && mps >= 0.01)
        {
            return Err(invalid("max_mps", "must be a number ≥ 0.01".into()));
        }
        if self.response_timeout_secs == 0
            || self.enquire_link_secs == 0
            || self.mo_reassembly_secs == 0
        {
            return Err(invalid(
                "response_timeout_secs/enquire_link_secs/mo_reassembly_secs",
                "must be at least 1".into(),
            ));
        }
        if self.reconnect_min_ms == 0 || self.reconnect_min_ms > self.reconnect_max_ms {
            return Err(invalid(
                "reconnect_min_ms",
                "must be at least 1 and at most reconnect_max_ms".into(),
            ));
        }
        let mut status_codes = BTreeMap::new();
        for (k, v) in &self.status_codes {
            let status = parse_status(k)
                .ok_or_else(|| invalid("status_codes", format!("key {k:?} is not a number")))?;
            status_codes.insert(status, *v);
        }
        Ok(Settings {
            id: self.id.clone(),
            address: self.address.clone(),
            system_id: self.system_id.clone(),
            password,
            system_type: self.system_type.clone(),
            binds: self.binds,
            bind_mode: self.bind_mode,
            window: self.window,
            max_mps: self.max_mps,
            text: self.encoding.text_options(),
            source_ton: self.source_ton,
            source_npi: self.source_npi,
            dest_ton: self.dest_ton,
            dest_npi: self.dest_npi,
            enquire_link: Duration::from_secs(self.enquire_link_secs),
            response_timeout: Duration::from_secs(self.response_timeout_secs),
            reconnect_min: Duration::from_millis(self.reconnect_min_ms),
            reconnect_max: Duration::from_millis(self.reconnect_max_ms),
            mo_reassembly: Duration::from_secs(self.mo_reassembly_secs),
            registered_delivery: self.registered_delivery,
            status_codes,
            receipt_err_codes: self
                .receipt_err_codes
                .iter()
                .map(|(k, v)| (normalize_err(k), *v))
                .collect(),
        })
    }
}

impl Settings {
    /// The SMPP address of a sender as Tern stores it (E.164 with `+`, a short code, or an
    /// alphanumeric id).
    ///
    /// * `+` followed by digits: international, `source_ton`/`source_npi` (1/1), `+`
    ///   stripped;
    /// * up to 8 digits without `+`: a short code, TON 3 (network specific) NPI 0;
    /// * more digits without `+`: taken as E.164 without its `+`;
    /// * anything else: alphanumeric, TON 5 NPI 0.
    pub fn source_address(&self, from: &str) -> Address {
        let from = from.trim();
        let digits = from.strip_prefix('+').unwrap_or(from);
        let numeric = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
        if !numeric {
            return Address::new(5, 0, from);
        }
        if !from.starts_with('+') && digits.len() <= 8 {
            return Address::new(3, 0, digits);
        }
        Address::new(self.source_ton, self.source_npi, digits)
    }

    /// The SMPP address of a destination: `dest_ton`/`dest_npi`, `+` stripped.
    pub fn dest_address(&self, to: &str) -> Address {
        let to = to.trim();
        Address::new(
            self.dest_ton,
            self.dest_npi,
            to.strip_prefix('+').unwrap_or(to),
        )
    }
}

/// An address from the SMSC in the form Tern stores numbers.
///
/// `+` is added when the TON says international (1), or when the TON is unknown (0) and the
/// address is 11 to 15 digits — the length of an E.164 number with its country code and
/// too long for a national number in most plans. Everything else (national numbers, short
/// codes, alphanumeric ids, addresses that already carry a `+`) is kept as sent, because a
/// wrong country code is worse than a number the engine does not recognise.
pub fn e164_from_smpp(address: &Address) -> String {
    let a = address.addr.trim();
    let numeric = !a.is_empty() && a.bytes().all(|b| b.is_ascii_digit());
    let international = address.ton == 1 || (address.ton == 0 && (11..=15).contains(&a.len()));
    if numeric && international {
        format!("+{a}")
    } else {
        a.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SmppCarrierConfig {
        toml::from_str(s).unwrap()
    }

    const MINIMAL: &str = r#"
        id = "acme"
        address = "127.0.0.1:2775"
        system_id = "tern"
        password = "secret"
    "#;

    #[test]
    fn defaults_fit_an_e164_transceiver_carrier() {
        let s = parse(MINIMAL).resolve().unwrap();
        assert_eq!(s.binds, 1);
        assert_eq!(s.bind_mode, BindMode::Transceiver);
        assert_eq!(s.window, 10);
        assert_eq!(s.max_mps, None);
        assert_eq!(
            (s.source_ton, s.source_npi, s.dest_ton, s.dest_npi),
            (1, 1, 1, 1)
        );
        assert_eq!(s.enquire_link, Duration::from_secs(30));
        assert_eq!(s.response_timeout, Duration::from_secs(10));
        assert_eq!(s.reconnect_min, Duration::from_millis(500));
        assert_eq!(s.reconnect_max, Duration::from_secs(30));
        assert!(s.registered_delivery);
        assert_eq!(s.mo_reassembly, Duration::from_secs(60));
        assert_eq!(s.text.long, LongMessageMode::Udh8);
        assert!(!s.text.gsm7_packed && !s.text.latin1_data_coding);
    }

    #[test]
    fn ids_are_plain_names() {
        for id in ["acme", "carrier-1", "EU_2"] {
            assert!(
                SmppCarrierConfig::new(id, "h:1", "tern", "pw")
                    .resolve()
                    .is_ok(),
                "{id}"
            );
        }
        for id in ["", "a.b", "a/b", "a b", "a*", &"x".repeat(65)] {
            let err = SmppCarrierConfig::new(id, "h:1", "tern", "pw")
                .resolve()
                .err();
            assert!(
                matches!(err, Some(ConfigError::Invalid { field: "id", .. })),
                "{id:?}: {err:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<SmppCarrierConfig>(&format!("{MINIMAL}\nwindw = 5\n"));
        assert!(err.is_err());
    }

    #[test]
    fn every_key_parses() {
        let c = parse(
            r#"
            id = "acme"
            address = "smsc.example:2775"
            system_id = "tern"
            password_env = "TERN_TEST_NEVER_SET"
            system_type = "VMA"
            binds = 4
            bind_mode = "transmitter_receiver"
            window = 50
            max_mps = 200.0
            source_ton = 0
            source_npi = 1
            dest_ton = 1
            dest_npi = 1
            enquire_link_secs = 15
            response_timeout_secs = 5
            reconnect_min_ms = 100
            reconnect_max_ms = 5000
            mo_reassembly_secs = 30
            registered_delivery = false
            status_codes = { "0x0400" = 30034, "1025" = 30004 }
            receipt_err_codes = { "001" = 30005 }
            [encoding]
            long_messages = "sar"
            gsm7_packed = true
            latin1 = true
            "#,
        );
        assert_eq!(c.bind_mode, BindMode::TransmitterReceiver);
        assert_eq!(c.encoding.long_messages, LongMessages::Sar);
        // The variable is not set, so resolving fails naming it.
        assert_eq!(
            c.resolve().err(),
            Some(ConfigError::PasswordEnv {
                id: "acme".into(),
                var: "TERN_TEST_NEVER_SET".into()
            })
        );
        let c = SmppCarrierConfig {
            password: Some("pw".into()),
            password_env: None,
            ..c
        };
        let s = c.resolve().unwrap();
        assert_eq!(s.status_codes.get(&0x400), Some(&30034));
        assert_eq!(s.status_codes.get(&1025), Some(&30004));
        assert_eq!(s.receipt_err_codes.get("1"), Some(&30005));
    }

    #[test]
    fn password_and_password_env_are_exclusive() {
        let mut c = parse(MINIMAL);
        c.password_env = Some("X".into());
        assert!(matches!(
            c.resolve(),
            Err(ConfigError::Password { what: "both", .. })
        ));
        c.password = None;
        c.password_env = None;
        assert!(matches!(
            c.resolve(),
            Err(ConfigError::Password {
                what: "neither",
                ..
            })
        ));
    }

    #[test]
    fn limits_are_checked() {
        let mut c = parse(MINIMAL);
        c.password = Some("123456789".into());
        assert!(c.resolve().is_err());
        let mut c = parse(MINIMAL);
        c.system_id = "a-very-long-system-id".into();
        assert!(c.resolve().is_err());
        let mut c = parse(MINIMAL);
        c.max_mps = Some(0.0);
        assert!(c.resolve().is_err());
        let mut c = parse(MINIMAL);
        c.reconnect_min_ms = 60_000;
        assert!(c.resolve().is_err());
        let mut c = parse(MINIMAL);
        c.status_codes.insert("zz".into(), 30008);
        assert!(c.resolve().is_err());
    }

    #[test]
    fn debug_hides_the_password() {
        let c = parse(MINIMAL);
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn sender_addresses() {
        let s = parse(MINIMAL).resolve().unwrap();
        assert_eq!(
            s.source_address("+14155550100"),
            Address::new(1, 1, "14155550100")
        );
        assert_eq!(s.source_address("12345"), Address::new(3, 0, "12345"));
        assert_eq!(
            s.source_address("14155550100"),
            Address::new(1, 1, "14155550100")
        );
        assert_eq!(s.source_address("Tern"), Address::new(5, 0, "Tern"));
        assert_eq!(s.source_address("+1 415"), Address::new(5, 0, "+1 415"));
        assert_eq!(
            s.dest_address("+447700900123"),
            Address::new(1, 1, "447700900123")
        );
    }

    #[test]
    fn inbound_addresses_become_e164_when_unambiguous() {
        assert_eq!(
            e164_from_smpp(&Address::new(1, 1, "447700900123")),
            "+447700900123"
        );
        assert_eq!(
            e164_from_smpp(&Address::new(0, 1, "14155550100")),
            "+14155550100"
        );
        // Ten digits with an unknown TON could be a national number: kept.
        assert_eq!(
            e164_from_smpp(&Address::new(0, 1, "4155550100")),
            "4155550100"
        );
        assert_eq!(
            e164_from_smpp(&Address::new(2, 1, "4155550100")),
            "4155550100"
        );
        assert_eq!(e164_from_smpp(&Address::new(3, 0, "12345")), "12345");
        assert_eq!(e164_from_smpp(&Address::new(5, 0, "Bank")), "Bank");
        assert_eq!(
            e164_from_smpp(&Address::new(1, 1, "+14155550100")),
            "+14155550100"
        );
    }
}
