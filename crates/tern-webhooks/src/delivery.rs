//! One attempt at delivering a webhook, and the retry schedule between attempts.
//!
//! The caller owns durability and ordering (the webhook outbox); this module only makes a
//! signed HTTP request and classifies what happened.

use std::time::Duration;

use rand::Rng;

/// A webhook to deliver.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WebhookRequest {
    pub url: String,
    /// `POST` (form body) or `GET` (parameters in the query).
    pub method: String,
    pub params: Vec<(String, String)>,
    /// Sent as `I-Twilio-Idempotency-Token`; the same on every retry of one webhook.
    pub idempotency_token: String,
}

/// What one attempt achieved.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered {
        content_type: Option<String>,
        body: Vec<u8>,
    },
    /// Worth retrying: connection failure, timeout, 5xx or 429.
    Retry(String),
    /// Retrying cannot help: a 4xx other than 429, or a URL we cannot send to.
    Rejected(String),
}

/// The most of a response body read (TwiML); a larger body is treated as a failure.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
}

impl WebhookClient {
    /// `connect` and `total` are Twilio's defaults of 5 s and 15 s unless configured.
    pub fn new(connect: Duration, total: Duration) -> Result<WebhookClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(connect)
            .timeout(total)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("TwilioProxy/1.1 tern/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(WebhookClient { http })
    }

    /// Signs `req` with `auth_token` and sends it once.
    pub async fn attempt(&self, req: &WebhookRequest, auth_token: &str) -> Attempt {
        let get = req.method.eq_ignore_ascii_case("GET");
        let (url, signature, body) = if get {
            let mut url = match url::Url::parse(&req.url) {
                Ok(u) => u,
                Err(e) => return Attempt::Rejected(format!("bad URL: {e}")),
            };
            url.query_pairs_mut().extend_pairs(req.params.iter());
            let url = url.to_string();
            let sig = crate::signature::sign_form(auth_token, &url, &[]);
            (url, sig, None)
        } else {
            let sig = crate::signature::sign_form(auth_token, &req.url, &req.params);
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(req.params.iter())
                .finish();
            (req.url.clone(), sig, Some(body))
        };
        let mut builder = if get {
            self.http.get(&url)
        } else {
            self.http.post(&url)
        };
        builder = builder
            .header("X-Twilio-Signature", signature)
            .header("I-Twilio-Idempotency-Token", &req.idempotency_token)
            .header("Accept", "*/*");
        if let Some(body) = body {
            builder = builder
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body);
        }
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) if e.is_builder() => return Attempt::Rejected(format!("cannot send: {e}")),
            Err(e) => return Attempt::Retry(format!("request failed: {e}")),
        };
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if status.is_success() {
            match read_limited(resp).await {
                Ok(body) => Attempt::Delivered { content_type, body },
                Err(e) => Attempt::Retry(e),
            }
        } else if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Retry(format!("HTTP {status}"))
        } else {
            Attempt::Rejected(format!("HTTP {status}"))
        }
    }
}

async fn read_limited(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("reading response: {e}"))?
    {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err("response body too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Delay before retry number `attempt` (1-based): exponential from 1 s, capped at 60 s,
/// with full jitter so receivers that come back are not hit by every retry at once.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = 1000u64
        .saturating_mul(1 << attempt.saturating_sub(1).min(6))
        .min(60_000);
    let ms = rand::rng().random_range(cap_ms / 2..=cap_ms);
    Duration::from_millis(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = backoff(attempt).as_millis() as u64;
            let cap = (1000u64 << (attempt - 1).min(6)).min(60_000);
            assert!(d >= cap / 2 && d <= cap, "attempt {attempt}: {d}");
        }
    }

    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    async fn receiver(status: u16) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let s = seen.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::any(move |headers: axum::http::HeaderMap, body: String| {
                let s = s.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    s.lock().unwrap().push((
                        h("x-twilio-signature"),
                        h("i-twilio-idempotency-token"),
                        body,
                    ));
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        [("content-type", "text/xml")],
                        "<Response/>",
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}/hook"), seen)
    }

    fn request(url: String) -> WebhookRequest {
        WebhookRequest {
            url,
            method: "POST".into(),
            params: vec![
                ("MessageSid".into(), "SM1".into()),
                ("Body".into(), "a b&c".into()),
            ],
            idempotency_token: "tok-1".into(),
        }
    }

    #[tokio::test]
    async fn a_delivered_webhook_is_signed_and_carries_its_token() {
        let (url, seen) = receiver(200).await;
        let client = WebhookClient::new(Duration::from_secs(1), Duration::from_secs(2)).unwrap();
        let req = request(url.clone());
        let got = client.attempt(&req, "secret").await;
        assert!(matches!(got, Attempt::Delivered { ref body, .. } if body == b"<Response/>"));
        let (sig, token, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(token, "tok-1");
        let params: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        assert_eq!(params, req.params);
        assert!(crate::signature::validate_form(
            "secret", &url, &params, &sig
        ));
    }

    #[tokio::test]
    async fn failures_are_classified() {
        let client =
            WebhookClient::new(Duration::from_millis(500), Duration::from_secs(2)).unwrap();
        let (url, _) = receiver(503).await;
        assert!(matches!(
            client.attempt(&request(url), "t").await,
            Attempt::Retry(_)
        ));
        let (url, _) = receiver(404).await;
        assert!(matches!(
            client.attempt(&request(url), "t").await,
            Attempt::Rejected(_)
        ));
        // Nothing listens on port 9 of loopback.
        assert!(matches!(
            client
                .attempt(&request("http://127.0.0.1:9/x".into()), "t")
                .await,
            Attempt::Retry(_)
        ));
    }
}
