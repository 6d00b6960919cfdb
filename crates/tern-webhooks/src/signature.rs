//! Twilio's `X-Twilio-Signature` request signing, byte-for-byte compatible with
//! twilio-python's `RequestValidator`. Pure: no IO, no clock.
//!
//! * Form-encoded requests are signed over `url + name1 + value1 + name2 + value2 …`
//!   with the POST parameters sorted by name (byte order), the values of a repeated
//!   name sorted too, and identical `name=value` pairs counted once.
//! * JSON requests are signed over the URL only; the body is bound to it through a
//!   `bodySHA256=<hex sha256(body)>` query parameter appended to the URL.
//!
//! The signature is `base64(HMAC-SHA1(auth_token, data))`.
//!
//! Validation accepts the URL both with and without the scheme's default port
//! (`:443` for `https`, `:80` for `http`), because the port a proxy or load balancer
//! shows the application rarely matches what Twilio signed. Unlike twilio-python,
//! a *non-default* port is never stripped: `https://host:8443/` and `https://host/`
//! are different endpoints and a signature for one does not validate the other.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

type HmacSha1 = Hmac<Sha1>;

/// The query parameter carrying the hex SHA-256 of a JSON body.
pub const BODY_SHA256_PARAM: &str = "bodySHA256";

/// Signature of a form-encoded (`application/x-www-form-urlencoded`) request.
///
/// `url` is the full URL Twilio requested, including the query string; `params`
/// are the decoded POST body parameters, in any order, repeated names allowed.
pub fn sign_form(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    // Tuple order = name by bytes, then value by bytes; that is exactly
    // `for name in sorted(set(names)): for value in sorted(set(values))`.
    sorted.sort_unstable();
    sorted.dedup();

    let mut mac = new_mac(auth_token);
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// Signs a request with a JSON (or any non-form) body.
///
/// Returns `(url_to_request, signature)`: the URL with
/// `bodySHA256=<hex sha256(body)>` appended to its query string, and the signature
/// computed over that URL alone (no parameters).
pub fn sign_json(auth_token: &str, url: &str, body: &[u8]) -> (String, String) {
    let signed_url = append_query_param(url, BODY_SHA256_PARAM, &body_sha256_hex(body));
    let signature = sign_form(auth_token, &signed_url, &[]);
    (signed_url, signature)
}

/// Validates the signature of a form-encoded request in constant time.
///
/// The URL is tried as given and with the scheme's default port added or removed.
pub fn validate_form(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> bool {
    let mut ok = ct_eq_str(&sign_form(auth_token, url, params), signature);
    if let Some(alt) = default_port_variant(url) {
        ok |= ct_eq_str(&sign_form(auth_token, &alt, params), signature);
    }
    ok.into()
}

/// Validates a JSON-body request: `url` must carry a `bodySHA256` query parameter
/// matching `body`, and `signature` must be valid for `url` with no parameters.
pub fn validate_json(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(claimed) = query_param(url, BODY_SHA256_PARAM) else {
        return false;
    };
    let body_ok = ct_eq_str(&body_sha256_hex(body), claimed);
    let sig_ok = Choice::from(u8::from(validate_form(auth_token, url, &[], signature)));
    (body_ok & sig_ok).into()
}

/// Lower-case hex SHA-256 of `body`, as used in the `bodySHA256` query parameter.
pub fn body_sha256_hex(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn new_mac(auth_token: &str) -> HmacSha1 {
    match HmacSha1::new_from_slice(auth_token.as_bytes()) {
        Ok(mac) => mac,
        // HMAC hashes over-long keys and pads short ones: every length is valid.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn ct_eq_str(a: &str, b: &str) -> Choice {
    // `ct_eq` on slices of different lengths returns false (length is not secret).
    a.as_bytes().ct_eq(b.as_bytes())
}

/// Appends `name=value` to the query of `url`, keeping any `#fragment` last.
fn append_query_param(url: &str, name: &str, value: &str) -> String {
    let (base, fragment) = match url.find('#') {
        Some(i) => url.split_at(i),
        None => (url, ""),
    };
    let sep = if !base.contains('?') {
        "?"
    } else if base.ends_with('?') || base.ends_with('&') {
        ""
    } else {
        "&"
    };
    format!("{base}{sep}{name}={value}{fragment}")
}

/// The raw (not percent-decoded) value of the first `name` parameter in the query.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let without_fragment = url.split('#').next().unwrap_or(url);
    let (_, query) = without_fragment.split_once('?')?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// The other spelling of `url` with respect to its scheme's default port:
/// `https://h/p` ⇄ `https://h:443/p`, `http://h/p` ⇄ `http://h:80/p`.
/// `None` for other schemes, non-default ports or URLs without an authority.
fn default_port_variant(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let default_port = if scheme.eq_ignore_ascii_case("https") {
        "443"
    } else if scheme.eq_ignore_ascii_case("http") {
        "80"
    } else {
        return None;
    };
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority_start = url.len() - rest.len();
    let authority_end = authority_start + authority_len;
    let authority = &rest[..authority_len];
    // Skip userinfo; a bracketed IPv6 host may contain ':' itself.
    let host_port_start = authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &authority[host_port_start..];
    let host_end = if host_port.starts_with('[') {
        host_port.find(']')? + 1
    } else {
        host_port.find(':').unwrap_or(host_port.len())
    };
    let port_part = &host_port[host_end..];
    if host_port[..host_end].is_empty() {
        return None;
    }
    if port_part.is_empty() {
        // No port: add the default one.
        Some(format!(
            "{}:{default_port}{}",
            &url[..authority_end],
            &url[authority_end..]
        ))
    } else if port_part.strip_prefix(':') == Some(default_port) {
        // Default port: remove it.
        let port_start = authority_start + host_port_start + host_end;
        Some(format!("{}{}", &url[..port_start], &url[authority_end..]))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const JSON_BODY: &[u8] = br#"{"property": "value", "boolean": true}"#;
    const JSON_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn call_params() -> Vec<(String, String)> {
        p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
            ("Caller", "+14158675309"),
        ])
    }

    #[test]
    fn form_vector() {
        assert_eq!(
            sign_form(TOKEN, URL, &call_params()),
            "RSOYDt4T1cUTdK1PDd93/VVr8B8="
        );
    }

    #[test]
    fn form_vectors_with_ports() {
        let params = call_params();
        assert_eq!(
            sign_form(
                TOKEN,
                "https://mycompany.com:443/myapp.php?foo=1&bar=2",
                &params
            ),
            "kvajT1Ptam85bY51eRf/AJRuM3w="
        );
        assert_eq!(
            sign_form(
                TOKEN,
                "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
                &params
            ),
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="
        );
        assert_eq!(
            sign_form(
                TOKEN,
                "http://mycompany.com:80/myapp.php?foo=1&bar=2",
                &params
            ),
            "0ZXoZLH/DfblKGATFgpif+LLRf4="
        );
    }

    #[test]
    fn form_vector_multi_value() {
        let params = p(&[
            ("Sid", "CA123"),
            ("SidAccount", "AC123"),
            ("Digits", "5678"),
            ("Digits", "1234"),
            ("Digits", "1234"),
        ]);
        assert_eq!(
            sign_form(TOKEN, URL, &params),
            "IK+Dwps556ElfBT0I3Rgjkr1wJU="
        );
    }

    #[test]
    fn form_vector_other_caller() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]);
        assert_eq!(
            sign_form(TOKEN, URL, &params),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
    }

    #[test]
    fn json_vectors() {
        assert_eq!(body_sha256_hex(JSON_BODY), JSON_HASH);

        let (url, sig) = sign_json(TOKEN, URL, JSON_BODY);
        assert_eq!(
            url,
            format!("https://mycompany.com/myapp.php?foo=1&bar=2&bodySHA256={JSON_HASH}")
        );
        assert_eq!(sig, "a9nBmqA0ju/hNViExpshrM61xv4=");

        let (url, sig) = sign_json(TOKEN, "https://mycompany.com/myapp.php", JSON_BODY);
        assert_eq!(
            url,
            format!("https://mycompany.com/myapp.php?bodySHA256={JSON_HASH}")
        );
        assert_eq!(sig, "y77kIzt2vzLz71DgmJGsen2scGs=");
    }

    #[test]
    fn json_validation() {
        let (url, sig) = sign_json(TOKEN, URL, JSON_BODY);
        assert!(validate_json(TOKEN, &url, JSON_BODY, &sig));
        assert!(!validate_json(TOKEN, &url, b"{}", &sig));
        assert!(!validate_json(TOKEN, URL, JSON_BODY, &sig));
        let port_url = url.replace("mycompany.com/", "mycompany.com:443/");
        assert!(validate_json(TOKEN, &port_url, JSON_BODY, &sig));
    }

    #[test]
    fn append_keeps_fragment_and_separators() {
        assert_eq!(
            append_query_param("http://h/p#f", "a", "1"),
            "http://h/p?a=1#f"
        );
        assert_eq!(
            append_query_param("http://h/p?", "a", "1"),
            "http://h/p?a=1"
        );
        assert_eq!(
            append_query_param("http://h/p?x=&", "a", "1"),
            "http://h/p?x=&a=1"
        );
    }

    #[test]
    fn validate_accepts_default_port_either_way() {
        let params = call_params();
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";

        // Signed without the port, request seen with it.
        let sig = sign_form(TOKEN, URL, &params);
        assert!(validate_form(TOKEN, URL, &params, &sig));
        assert!(validate_form(TOKEN, with_port, &params, &sig));

        // Signed with the port, request seen without it.
        let sig = sign_form(TOKEN, with_port, &params);
        assert!(validate_form(TOKEN, with_port, &params, &sig));
        assert!(validate_form(TOKEN, URL, &params, &sig));

        // Same for plain http and :80.
        let http = "http://mycompany.com/myapp.php?foo=1&bar=2";
        let http80 = "http://mycompany.com:80/myapp.php?foo=1&bar=2";
        assert!(validate_form(
            TOKEN,
            http80,
            &params,
            &sign_form(TOKEN, http, &params)
        ));
        assert!(validate_form(
            TOKEN,
            http,
            &params,
            &sign_form(TOKEN, http80, &params)
        ));
    }

    #[test]
    fn validate_rejects_tampering() {
        let params = call_params();
        let sig = sign_form(TOKEN, URL, &params);

        let mut tampered = params.clone();
        tampered[1].1 = "9999".to_owned();
        assert!(!validate_form(TOKEN, URL, &tampered, &sig));

        let mut extra = params.clone();
        extra.push(("Body".to_owned(), "hi".to_owned()));
        assert!(!validate_form(TOKEN, URL, &extra, &sig));

        assert!(!validate_form("54321", URL, &params, &sig));
        assert!(!validate_form(
            TOKEN,
            "https://mycompany.com/other.php",
            &params,
            &sig
        ));
        assert!(!validate_form(TOKEN, URL, &params, ""));
        assert!(!validate_form(TOKEN, URL, &params, &sig[..sig.len() - 1]));
        // A non-default port is a different endpoint.
        assert!(!validate_form(
            TOKEN,
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            &params,
            &sig
        ));
    }

    #[test]
    fn default_port_variants() {
        let v = |u: &str| default_port_variant(u);
        assert_eq!(v("https://h/p").as_deref(), Some("https://h:443/p"));
        assert_eq!(v("https://h:443/p").as_deref(), Some("https://h/p"));
        assert_eq!(v("http://h?x=1").as_deref(), Some("http://h:80?x=1"));
        assert_eq!(v("HTTP://h:80").as_deref(), Some("HTTP://h"));
        assert_eq!(
            v("https://u:pw@h/p").as_deref(),
            Some("https://u:pw@h:443/p")
        );
        assert_eq!(
            v("https://u:pw@h:443/p").as_deref(),
            Some("https://u:pw@h/p")
        );
        assert_eq!(v("https://[::1]/p").as_deref(), Some("https://[::1]:443/p"));
        assert_eq!(v("https://[::1]:443/p").as_deref(), Some("https://[::1]/p"));
        assert_eq!(v("https://h:8443/p"), None);
        assert_eq!(v("http://h:443/p"), None);
        assert_eq!(v("ftp://h/p"), None);
        assert_eq!(v("not a url"), None);
        assert_eq!(v("https:///p"), None);
    }

    fn params_strategy() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec((".{0,12}", ".{0,24}"), 0..12)
    }

    proptest! {
        #[test]
        fn sign_then_validate(token in ".{0,40}", params in params_strategy()) {
            let sig = sign_form(&token, URL, &params);
            prop_assert!(validate_form(&token, URL, &params, &sig));
        }

        #[test]
        fn param_order_is_irrelevant(
            params in params_strategy(),
            seed in any::<u64>(),
        ) {
            let mut shuffled = params.clone();
            // Deterministic Fisher-Yates driven by the seed (no rand dependency).
            let mut state = seed | 1;
            for i in (1..shuffled.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let j = usize::try_from(state % (i as u64 + 1)).unwrap_or(0);
                shuffled.swap(i, j);
            }
            prop_assert_eq!(
                sign_form(TOKEN, URL, &params),
                sign_form(TOKEN, URL, &shuffled)
            );
        }

        #[test]
        fn duplicate_pairs_are_counted_once(params in params_strategy()) {
            let mut doubled = params.clone();
            doubled.extend(params.iter().cloned());
            prop_assert_eq!(
                sign_form(TOKEN, URL, &params),
                sign_form(TOKEN, URL, &doubled)
            );
        }
    }
}
