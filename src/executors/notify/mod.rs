//! Notification sinks: Slack incoming webhooks, signed generic webhooks,
//! e-mail, PagerDuty and Opsgenie, one per configured channel, behind one [`Executor`] that retries
//! each delivery with backoff and counts it (`medic_notifications_total`).

mod email;
pub mod opsgenie;
pub mod pagerduty;
pub mod paging;
mod slack;
mod steps;
mod webhook;

pub use email::{body as email_body, subject as email_subject, EmailSink};
pub use opsgenie::OpsgenieSink;
pub use pagerduty::PagerdutySink;
pub use slack::{blocks as slack_blocks, escape as slack_escape, SlackSink};
pub use steps::ChannelSteps;
pub use webhook::WebhookSink;

use super::step::{with_retries, Retry, StepResult};
use super::{BoxFuture, Executor};
use crate::stages::notify::config::{ChannelKind, NotifyConfig};
use crate::stages::notify::Message;
use crate::stages::{EffectRequest, EffectResult};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Delivers messages of one kind of channel.
pub trait Sink: Send + Sync {
    /// `slack`, `webhook`, `email`, `pagerduty` or `opsgenie` (a metric label).
    fn kind(&self) -> &'static str;
    /// One delivery attempt of `message`, whose notification id is `key`.
    /// Errors say whether another attempt may work.
    fn send<'a>(&'a self, key: &'a str, message: &'a Message) -> BoxFuture<'a, StepResult>;
}

/// A channel's sink with its retry policy.
struct Route {
    sink: Arc<dyn Sink>,
    retry: Retry,
    timeout: Duration,
}

/// Every configured channel's sink, by channel name.
pub struct Channels {
    routes: BTreeMap<String, Route>,
}

impl Channels {
    /// No channels: every notification fails as unconfigured.
    pub fn none() -> Channels {
        Channels {
            routes: BTreeMap::new(),
        }
    }

    /// Adds `sink` as channel `name`, `attempts` tries each bounded by `timeout`.
    pub fn with(
        mut self,
        name: &str,
        sink: Arc<dyn Sink>,
        attempts: u32,
        timeout: Duration,
        backoff: Duration,
    ) -> Channels {
        let retry = Retry {
            attempts: attempts.max(1),
            initial_backoff: backoff,
            max_backoff: backoff * 16,
        };
        self.routes.insert(
            name.to_string(),
            Route {
                sink,
                retry,
                timeout,
            },
        );
        self
    }

    /// The sinks of every channel ([`NotifyConfig::all_channels`]); errors
    /// name the channel's field.
    pub fn from_config(config: &NotifyConfig) -> Result<Channels, String> {
        let backoff = Duration::from_millis(500);
        let mut channels = Channels::none();
        for c in &config.all_channels() {
            let field = |e: String| format!("notify.channels.{}: {e}", c.name);
            let url = || {
                c.url
                    .as_deref()
                    .ok_or_else(|| field("url is required".into()))
            };
            let key = || {
                c.key
                    .as_deref()
                    .ok_or_else(|| field("key is required".into()))
            };
            let sink: Arc<dyn Sink> = match c.kind {
                ChannelKind::Slack => Arc::new(SlackSink::new(url()?).map_err(field)?),
                ChannelKind::Webhook => {
                    Arc::new(WebhookSink::new(url()?, c.secret.as_deref()).map_err(field)?)
                }
                ChannelKind::Pagerduty => {
                    Arc::new(PagerdutySink::new(c.url.as_deref(), key()?).map_err(field)?)
                }
                ChannelKind::Opsgenie => {
                    Arc::new(OpsgenieSink::new(c.url.as_deref(), key()?).map_err(field)?)
                }
                ChannelKind::Email => {
                    let smtp = c
                        .smtp
                        .as_ref()
                        .ok_or_else(|| field("smtp is required".into()))?;
                    let from = c
                        .from
                        .as_deref()
                        .ok_or_else(|| field("from is required".into()))?;
                    Arc::new(
                        EmailSink::new(smtp, from, &c.to, Duration::from_millis(c.timeout_ms))
                            .map_err(field)?,
                    )
                }
            };
            channels = channels.with(
                &c.name,
                sink,
                c.attempts,
                Duration::from_millis(c.timeout_ms),
                backoff,
            );
        }
        Ok(channels)
    }

    /// Whether no channel is configured.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

impl Channels {
    /// Whether a channel called `name` is configured.
    pub fn has(&self, name: &str) -> bool {
        self.routes.contains_key(name)
    }

    /// Delivers `message` on `channel` with the channel's retries; `key`
    /// identifies the delivery (idempotency key, e-mail `Message-ID`).
    pub async fn deliver(&self, channel: &str, key: &str, message: &Message) -> EffectResult {
        let Some(route) = self.routes.get(channel) else {
            return unconfigured(key, &format!("no channel named {channel} is configured"));
        };
        let kind = route.sink.kind();
        with_retries(
            &route.retry,
            route.timeout,
            || route.sink.send(key, message),
            |attempt, outcome, retry| {
                let label = match (outcome, retry) {
                    (Ok(_), _) => "delivered",
                    (Err(_), true) => "retried",
                    (Err(_), false) => "failed",
                };
                metrics::counter!("medic_notifications_total", "sink" => kind, "result" => label)
                    .increment(1);
                if let Err(e) = outcome {
                    tracing::warn!(key, channel = %channel, attempt, retry, error = %e.detail, "notification attempt failed");
                }
            },
        )
        .await
        .into_effect_result(key, kind)
    }
}

impl Executor for Channels {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        Box::pin(async move {
            let key = request.key();
            let EffectRequest::Notify {
                channel, message, ..
            } = request
            else {
                return unconfigured(key, "not a notification");
            };
            self.deliver(channel, key, message).await
        })
    }
}

fn unconfigured(key: &str, detail: &str) -> EffectResult {
    EffectResult {
        idempotency_key: key.to_string(),
        success: false,
        detail: detail.to_string(),
        attempts: 0,
        http_status: None,
        retries: Vec::new(),
        observed: None,
    }
}

/// An http(s) URL from the configuration.
fn http_url(text: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("url is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("url must be an http or https URL with a host".into());
    }
    Ok(url)
}
