//! Generic webhook sink: the message as JSON, POSTed to one URL, signed with
//! the bridge's generic scheme when a secret is configured.

use super::Sink;
use crate::executors::outbound;
use crate::executors::step::{StepDone, StepResult};
use crate::executors::BoxFuture;
use crate::stages::notify::Message;

/// POSTs each message as JSON.
pub struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<Vec<u8>>,
}

impl WebhookSink {
    /// A sink for `url`, signing bodies with `secret` when given; fails on a
    /// URL that is not http(s).
    pub fn new(url: &str, secret: Option<&str>) -> Result<WebhookSink, String> {
        Ok(WebhookSink {
            client: outbound::client(concat!("medic/", env!("CARGO_PKG_VERSION")))?,
            url: super::http_url(url)?,
            secret: secret.map(|s| s.as_bytes().to_vec()),
        })
    }
}

impl Sink for WebhookSink {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, key: &'a str, message: &'a Message) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let body = serde_json::to_vec(message).unwrap_or_default();
            let mut request = self
                .client
                .post(self.url.clone())
                .header("Content-Type", "application/json")
                .header("Idempotency-Key", header_safe(key));
            if let Some(secret) = &self.secret {
                let timestamp = crate::timefmt::wall_clock().div_euclid(1_000).to_string();
                let signature =
                    crate::bridge::verify::sign_hex(secret, &[timestamp.as_bytes(), b".", &body]);
                request = request
                    .header("X-Medic-Timestamp", timestamp)
                    .header("X-Medic-Signature", format!("sha256={signature}"));
            }
            let (status, _) = outbound::send(request.body(body), "POST").await?;
            Ok(StepDone {
                detail: format!("HTTP {status}"),
                http_status: Some(status),
                observed: None,
            })
        })
    }
}

/// `key` for a header value: bytes outside visible ASCII percent-encoded
/// (recovery ids are built from names found in logs).
fn header_safe(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn idempotency_keys_are_valid_header_values() {
        assert_eq!(
            super::header_safe("web/prod#1/outcome/ops"),
            "web/prod#1/outcome/ops"
        );
        assert_eq!(super::header_safe("wéb\r\n x"), "w%C3%A9b%0D%0A%20x");
    }
}
