//! PagerDuty sink: the Events API v2 (`POST /v2/enqueue`), so that a
//! recovery that needs a person pages one, and a later recovery of the same
//! deployment that succeeds resolves the page.
//!
//! Which message opens, acknowledges or resolves the deployment's alert, and
//! its `dedup_key`, are [`super::paging`]'s; severity follows the failure's.

use super::paging::{alert_key, page, Page};
use super::Sink;
use crate::domain::Severity;
use crate::executors::outbound;
use crate::executors::step::{StepDone, StepResult};
use crate::executors::BoxFuture;
use crate::stages::notify::cut;
use crate::stages::notify::{Message, MessageKind};
use serde_json::{json, Value};

/// The Events API v2 endpoint.
pub const EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// Sends each message as a PagerDuty event.
pub struct PagerdutySink {
    client: reqwest::Client,
    url: reqwest::Url,
    routing_key: String,
}

impl PagerdutySink {
    /// A sink for the integration `routing_key`, at `url` (the Events API v2
    /// endpoint unless given).
    pub fn new(url: Option<&str>, routing_key: &str) -> Result<PagerdutySink, String> {
        outbound::check_token(routing_key, "key")?;
        Ok(PagerdutySink {
            client: outbound::client(concat!("medic/", env!("CARGO_PKG_VERSION")))?,
            url: super::http_url(url.unwrap_or(EVENTS_URL))?,
            routing_key: routing_key.to_string(),
        })
    }
}

/// PagerDuty's severity for a failure's.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "info",
    }
}

/// The event for `message`, or `None` when nobody needs to hear it.
pub fn event(routing_key: &str, message: &Message) -> Option<Value> {
    let dedup_key = alert_key(message);
    let action = match page(message)? {
        Page::Open => "trigger",
        Page::Acknowledge => "acknowledge",
        Page::Resolve => "resolve",
    };
    let Some(about) = &message.about else {
        return Some(json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": dedup_key,
            "payload": {
                "summary": cut(&message.text, 1024),
                "source": "medic",
                "severity": "warning",
                "custom_details": {"held back": message.digest},
            },
        }));
    };
    if action != "trigger" {
        return Some(json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": dedup_key,
        }));
    }
    let severity = match message.kind {
        MessageKind::ApprovalNeeded => "warning",
        _ => severity(about.severity),
    };
    let dry_run = if about.dry_run { "[dry run] " } else { "" };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": cut(&format!("{dry_run}{}: {}", message.title(), message.text), 1024),
            "source": "medic",
            "severity": severity,
            "component": about.service,
            "group": about.environment,
            "class": about.failure_type.as_str(),
            "custom_details": {
                "recovery_id": about.recovery_id,
                "strategy": about.strategy,
                "outcome": about.outcome.map(|o| o.as_str()),
                "detail": message.text,
                "approve": about.approval_command,
                "dry_run": about.dry_run,
            },
        },
    });
    if let Some(link) = &about.link {
        event["links"] = json!([{"href": link, "text": "the failed run"}]);
    }
    Some(event)
}

impl Sink for PagerdutySink {
    fn kind(&self) -> &'static str {
        "pagerduty"
    }

    fn send<'a>(&'a self, _key: &'a str, message: &'a Message) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let Some(event) = event(&self.routing_key, message) else {
                return Ok(StepDone {
                    detail: "nothing to page: the recovery was skipped".into(),
                    http_status: None,
                    observed: None,
                });
            };
            let action = event["event_action"]
                .as_str()
                .unwrap_or("trigger")
                .to_string();
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let request = self
                .client
                .post(self.url.clone())
                .header("Content-Type", "application/json")
                .body(body);
            let what = format!("PagerDuty {action}");
            let (status, _) = outbound::send(request, &what).await?;
            Ok(StepDone {
                detail: format!(
                    "{what} {}: HTTP {status}",
                    event["dedup_key"].as_str().unwrap_or("")
                ),
                http_status: Some(status),
                observed: None,
            })
        })
    }
}
