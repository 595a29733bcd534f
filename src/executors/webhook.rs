//! Generic webhook sink: POSTs the notification JSON to one configured URL.

use super::{BoxFuture, Executor};
use crate::stages::{EffectRequest, EffectResult};
use std::time::Duration;

/// POSTs JSON bodies, retrying 5xx, 429 and connection errors with backoff.
pub struct Webhook {
    client: reqwest::Client,
    url: reqwest::Url,
    attempts: u32,
}

impl Webhook {
    /// A sink for `url`; fails on a malformed URL.
    pub fn new(url: &str, timeout: Duration, attempts: u32) -> Result<Webhook, String> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| format!("notify.webhook_url is not a URL: {e}"))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Webhook {
            client,
            url,
            attempts: attempts.max(1),
        })
    }
}

impl Executor for Webhook {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        Box::pin(async move {
            let key = request.key().to_string();
            let EffectRequest::Notify { body, .. } = request else {
                return EffectResult {
                    idempotency_key: key,
                    success: false,
                    detail: "not a notification".into(),
                    attempts: 0,
                    http_status: None,
                };
            };
            let mut detail = String::new();
            let mut status = None;
            for attempt in 1..=self.attempts {
                let sent = self
                    .client
                    .post(self.url.clone())
                    .header("content-type", "application/json")
                    .header("idempotency-key", &key)
                    .body(body.clone())
                    .send()
                    .await;
                let retry = match sent {
                    Ok(response) => {
                        let code = response.status();
                        status = Some(code.as_u16());
                        if code.is_success() {
                            return EffectResult {
                                idempotency_key: key,
                                success: true,
                                detail: format!("HTTP {code}"),
                                attempts: attempt,
                                http_status: status,
                            };
                        }
                        detail = format!("HTTP {code}");
                        code.is_server_error() || code.as_u16() == 429
                    }
                    Err(e) => {
                        status = None;
                        detail = format!("request failed: {e}");
                        true
                    }
                };
                if !retry || attempt == self.attempts {
                    return EffectResult {
                        idempotency_key: key,
                        success: false,
                        detail,
                        attempts: attempt,
                        http_status: status,
                    };
                }
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
            }
            EffectResult {
                idempotency_key: key,
                success: false,
                detail,
                attempts: self.attempts,
                http_status: status,
            }
        })
    }
}
