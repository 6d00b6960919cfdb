//! E.164 numbers, validated with libphonenumber's metadata (via `rlibphonenumber`).

use std::fmt;

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PhoneError {
    #[error("not an E.164 number (it must start with + and a country code)")]
    NotE164,
    #[error("not a valid number for its country")]
    Invalid,
}

/// A valid phone number in canonical E.164 form (`+14155552671`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164(String);

impl E164 {
    /// Parses and validates a number. Only international form is accepted: Tern has no
    /// default region to guess from.
    pub fn parse(s: &str) -> Result<E164, PhoneError> {
        let s = s.trim();
        if !s.starts_with('+') || s.len() > 20 {
            return Err(PhoneError::NotE164);
        }
        let n = PhoneNumber::parse(s, None).map_err(|_| PhoneError::NotE164)?;
        if !n.is_valid() {
            return Err(PhoneError::Invalid);
        }
        Ok(E164(n.format_as(PhoneNumberFormat::E164).into_owned()))
    }

    /// Wraps a number that was validated before it was stored.
    pub fn from_trusted(s: String) -> E164 {
        E164(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// ISO 3166 country of the number, when the metadata knows it (`US`, `GB`…).
    pub fn country(&self) -> Option<String> {
        let n = PhoneNumber::parse(&self.0, None).ok()?;
        n.get_region_code().map(|r| r.to_string())
    }
}

impl fmt::Display for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_international_numbers() {
        assert_eq!(
            E164::parse("+14155552671").unwrap().as_str(),
            "+14155552671"
        );
        assert_eq!(
            E164::parse("+44 20 7946 0958").unwrap().as_str(),
            "+442079460958"
        );
        assert_eq!(
            E164::parse("+14155552671").unwrap().country().as_deref(),
            Some("US")
        );
    }

    #[test]
    fn rejects_national_and_invalid_numbers() {
        assert_eq!(E164::parse("4155552671"), Err(PhoneError::NotE164));
        assert_eq!(E164::parse("+1"), Err(PhoneError::NotE164));
        assert_eq!(E164::parse("hello"), Err(PhoneError::NotE164));
        assert_eq!(E164::parse("+10000000000"), Err(PhoneError::Invalid));
    }
}
