//! Twilio-shaped identifiers: a two-letter prefix and 32 lowercase hex digits.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;

/// The resource kinds Tern issues SIDs for; the prefixes are Twilio's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SidPrefix {
    Account,
    Message,
    PhoneNumber,
    ApiKey,
    MessagingService,
    Media,
    Call,
    /// A Tern extension: an account's SMPP login (`/v1/SmppCredentials`).
    SmppCredential,
}

impl SidPrefix {
    pub const fn as_str(self) -> &'static str {
        match self {
            SidPrefix::Account => "AC",
            SidPrefix::Message => "SM",
            SidPrefix::PhoneNumber => "PN",
            SidPrefix::ApiKey => "SK",
            SidPrefix::MessagingService => "MG",
            SidPrefix::Media => "ME",
            SidPrefix::Call => "CA",
            SidPrefix::SmppCredential => "SC",
        }
    }

    fn from_str(s: &str) -> Option<Self> {
        Some(match s {
            "AC" => SidPrefix::Account,
            "SM" => SidPrefix::Message,
            "PN" => SidPrefix::PhoneNumber,
            "SK" => SidPrefix::ApiKey,
            "MG" => SidPrefix::MessagingService,
            "ME" => SidPrefix::Media,
            "CA" => SidPrefix::Call,
            "SC" => SidPrefix::SmppCredential,
            _ => return None,
        })
    }
}

/// A 34-character SID such as `SM0123456789abcdef0123456789abcdef`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sid {
    bytes: [u8; 34],
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SidError {
    #[error("a SID is 34 characters long")]
    Length,
    #[error("unknown SID prefix")]
    Prefix,
    #[error("a SID ends in 32 hexadecimal digits")]
    Hex,
}

impl Sid {
    /// A new SID: 48 bits of the current time in milliseconds, then 80 random bits.
    ///
    /// Time first makes SIDs of one kind sort by creation, so the store's indexes grow at
    /// their right edge and a batch of writes touches few pages (random SIDs scatter every
    /// insert over the whole index). 80 random bits keep SIDs unguessable and unique: two
    /// SIDs of the same millisecond collide with probability 2^-80.
    pub fn generate(prefix: SidPrefix) -> Sid {
        let mut raw = [0u8; 16];
        rand::rng().fill_bytes(&mut raw[6..]);
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        raw[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        Self::from_parts(prefix, raw)
    }

    pub fn from_parts(prefix: SidPrefix, raw: [u8; 16]) -> Sid {
        let mut bytes = [0u8; 34];
        bytes[..2].copy_from_slice(prefix.as_str().as_bytes());
        // hex::encode_to_slice only fails on a wrong output length, which is fixed here.
        let _ = hex::encode_to_slice(raw, &mut bytes[2..]);
        Sid { bytes }
    }

    pub fn prefix(&self) -> SidPrefix {
        // Every constructor validates the prefix.
        SidPrefix::from_str(&self.as_str()[..2]).unwrap_or(SidPrefix::Account)
    }

    pub fn as_str(&self) -> &str {
        // Constructors only store ASCII.
        std::str::from_utf8(&self.bytes).unwrap_or("")
    }

    /// Parses a SID and checks that it carries the expected prefix.
    pub fn parse_as(s: &str, prefix: SidPrefix) -> Result<Sid, SidError> {
        let sid: Sid = s.parse()?;
        if sid.prefix() != prefix {
            return Err(SidError::Prefix);
        }
        Ok(sid)
    }
}

impl FromStr for Sid {
    type Err = SidError;

    /// Accepts upper- or lowercase hex (Twilio's regexes do) and normalises to lowercase.
    fn from_str(s: &str) -> Result<Sid, SidError> {
        if s.len() != 34 || !s.is_ascii() {
            return Err(SidError::Length);
        }
        SidPrefix::from_str(&s[..2]).ok_or(SidError::Prefix)?;
        if !s[2..].bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SidError::Hex);
        }
        let mut bytes = [0u8; 34];
        bytes.copy_from_slice(s.as_bytes());
        bytes[2..].make_ascii_lowercase();
        Ok(Sid { bytes })
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Sid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Sid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Sid, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_sids_are_prefix_and_lowercase_hex() {
        let sid = Sid::generate(SidPrefix::Message);
        let s = sid.as_str();
        assert_eq!(s.len(), 34);
        assert!(s.starts_with("SM"));
        assert!(
            s[2..]
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        );
        assert_ne!(sid, Sid::generate(SidPrefix::Message));
    }

    #[test]
    fn later_sids_sort_after_earlier_ones() {
        let a = Sid::generate(SidPrefix::Message);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Sid::generate(SidPrefix::Message);
        assert!(a < b);
    }

    #[test]
    fn parse_rejects_wrong_shapes() {
        assert_eq!("SM123".parse::<Sid>(), Err(SidError::Length));
        assert_eq!(
            format!("XX{}", "a".repeat(32)).parse::<Sid>(),
            Err(SidError::Prefix)
        );
        assert_eq!(
            format!("SM{}", "g".repeat(32)).parse::<Sid>(),
            Err(SidError::Hex)
        );
        assert_eq!(
            Sid::parse_as(&format!("SM{}", "a".repeat(32)), SidPrefix::Account),
            Err(SidError::Prefix)
        );
    }

    const ALL: [SidPrefix; 8] = [
        SidPrefix::Account,
        SidPrefix::Message,
        SidPrefix::PhoneNumber,
        SidPrefix::ApiKey,
        SidPrefix::MessagingService,
        SidPrefix::Media,
        SidPrefix::Call,
        SidPrefix::SmppCredential,
    ];

    #[test]
    fn every_prefix_parses_back_and_prefixes_are_distinct() {
        for p in ALL {
            assert_eq!(SidPrefix::from_str(p.as_str()), Some(p));
            let sid = Sid::generate(p);
            assert_eq!(sid.prefix(), p);
            assert_eq!(Sid::parse_as(sid.as_str(), p), Ok(sid));
        }
        let mut seen: Vec<&str> = ALL.iter().map(|p| p.as_str()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), ALL.len());
    }

    #[test]
    fn smpp_credential_sids_start_with_sc() {
        let sid = Sid::generate(SidPrefix::SmppCredential);
        assert!(sid.as_str().starts_with("SC"));
        assert_eq!(
            Sid::parse_as(sid.as_str(), SidPrefix::Account),
            Err(SidError::Prefix)
        );
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(raw in any::<[u8; 16]>()) {
            let sid = Sid::from_parts(SidPrefix::Account, raw);
            prop_assert_eq!(sid.as_str().parse::<Sid>().unwrap(), sid);
            prop_assert_eq!(format!("AC{}", sid.as_str()[2..].to_uppercase()).parse::<Sid>().unwrap(), sid);
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = s.parse::<Sid>();
        }
    }
}
