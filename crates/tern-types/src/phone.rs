//! E.164 numbers, validated with libphonenumber's metadata (via `rlibphonenumber`).

use std::fmt;

use rlibphonenumber::{PHONE_NUMBER_UTIL, PhoneNumber, PhoneNumberFormat, Region};

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

/// The calling code of a country (ISO 3166 alpha-2: `1` for `CA`, `44` for `GB`); `None`
/// for a code the metadata does not know.
pub fn calling_code(country: &str) -> Option<u32> {
    // Uppercase only: it is compared with the codes the metadata gives numbers.
    if country.len() != 2 || !country.bytes().all(|b| b.is_ascii_uppercase()) {
        return None;
    }
    let region = Region::from_code(country).ok()?;
    let code = PHONE_NUMBER_UTIL.get_country_code_for_region(region)?;
    u32::try_from(code).ok().filter(|c| *c > 0)
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
    fn countries_and_calling_codes_follow_the_metadata() {
        for (n, want) in [
            ("+442079460958", Some("GB")),
            ("+447911123456", Some("GG")), // Guernsey mobiles share +44
            ("+14165550123", Some("CA")),
            ("+12465551234", Some("BB")),
            ("+33612345678", Some("FR")),
        ] {
            assert_eq!(
                E164::from_trusted(n.into()).country().as_deref(),
                want,
                "{n}"
            );
        }
        assert_eq!(E164::from_trusted("+999".into()).country(), None);
        assert_eq!(calling_code("GB"), Some(44));
        assert_eq!(calling_code("CA"), Some(1));
        assert_eq!(calling_code("IR"), Some(98));
        for bad in ["ZZ", "gb", "GBR", ""] {
            assert_eq!(calling_code(bad), None, "{bad:?}");
        }
    }

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
