//! Form bodies and query strings as Twilio sends them: repeated keys are arrays.

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(raw: &[u8]) -> Params {
        Params(form_urlencoded::parse(raw).into_owned().collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.get(name).map(str::to_string)
    }

    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// An optional URL parameter: empty clears it, otherwise it must be absolute http(s).
    pub fn url(&self, name: &str) -> ApiResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some("") => Ok(Some(String::new())),
            Some(u) => tern_domain::send::check_callback_url(u)
                .map(Some)
                .map_err(|_| {
                    ApiError::with(
                        tern_types::ErrorCode::InvalidCallbackUrl,
                        format!("{name} is not a valid URL: {u}"),
                    )
                }),
        }
    }

    /// An optional boolean parameter: `true` or `false`, in any case, as the SDKs send them.
    pub fn bool(&self, name: &str) -> ApiResult<Option<bool>> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(format!(
                "{name} must be true or false, not {v}"
            ))),
        }
    }

    /// An optional HTTP method parameter (`GET` or `POST`).
    pub fn method(&self, name: &str) -> ApiResult<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(m) if m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("POST") => {
                Ok(Some(m.to_ascii_uppercase()))
            }
            Some(m) => Err(ApiError::invalid(format!(
                "{name} must be GET or POST, not {m}"
            ))),
        }
    }
}
