//! Opsgenie sink: the Alert API (`POST /v2/alerts`, and
//! `/v2/alerts/{alias}/acknowledge|close?identifierType=alias`). What opens,
//! acknowledges or closes the deployment's alert, and its alias, are
//! [`super::paging`]'s, as for PagerDuty; priority follows the failure's
//! severity.

use super::paging::{alert_key, page, Page};
use super::Sink;
use crate::domain::Severity;
use crate::executors::outbound;
use crate::executors::step::{StepDone, StepResult};
use crate::executors::BoxFuture;
use crate::stages::notify::cut;
use crate::stages::notify::{Message, MessageKind};
use serde_json::{json, Value};

/// The Alert API's host (EU accounts: `https://api.eu.opsgenie.com`).
pub const API_URL: &str = "https://api.opsgenie.com";

/// Sends each message as an Opsgenie alert request.
pub struct OpsgenieSink {
    client: reqwest::Client,
    base: reqwest::Url,
    api_key: String,
}

/// Opsgenie's priority for a failure's severity.
pub fn priority(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "P1",
        Severity::High => "P2",
        Severity::Medium => "P3",
        Severity::Low => "P4",
        Severity::Info => "P5",
    }
}

/// What to ask Opsgenie for `message`: the alias and verb of an update
/// below `/v2/alerts` (none: create) and the body; `None` when nobody needs
/// to hear it.
pub fn request(message: &Message) -> Option<(Option<(String, &'static str)>, Value)> {
    let alias = alert_key(message);
    let verb = match page(message)? {
        Page::Open => None,
        Page::Acknowledge => Some("acknowledge"),
        Page::Resolve => Some("close"),
    };
    if let Some(verb) = verb {
        return Some((
            Some((alias, verb)),
            json!({"source": "medic", "user": "medic", "note": cut(&message.text, 25_000)}),
        ));
    }
    let Some(about) = &message.about else {
        return Some((
            None,
            json!({
                "message": cut(&message.text, 130),
                "alias": alias,
                "description": cut(&message.digest.join("\n"), 15_000),
                "source": "medic",
                "priority": "P3",
            }),
        ));
    };
    let priority = match message.kind {
        MessageKind::ApprovalNeeded => "P3",
        _ => priority(about.severity),
    };
    let dry_run = if about.dry_run { "[dry run] " } else { "" };
    Some((
        None,
        json!({
            "message": cut(&format!("{dry_run}{}", message.title()), 130),
            "alias": alias,
            "description": cut(&message.text, 15_000),
            "source": "medic",
            "entity": about.deployment_key,
            "tags": ["medic", about.failure_type.as_str(), about.environment],
            "priority": priority,
            "details": {
                "recovery_id": about.recovery_id,
                "strategy": about.strategy,
                "outcome": about.outcome.map(|o| o.as_str()).unwrap_or("waiting for approval"),
                "link": about.link.clone().unwrap_or_default(),
                "approve": about.approval_command.clone().unwrap_or_default(),
            },
        }),
    ))
}

impl OpsgenieSink {
    /// A sink with the API integration's `api_key`, at `url` (the global
    /// API host unless given).
    pub fn new(url: Option<&str>, api_key: &str) -> Result<OpsgenieSink, String> {
        outbound::check_token(api_key, "key")?;
        Ok(OpsgenieSink {
            client: outbound::client(concat!("medic/", env!("CARGO_PKG_VERSION")))?,
            base: super::http_url(url.unwrap_or(API_URL))?,
            api_key: api_key.to_string(),
        })
    }
}

impl Sink for OpsgenieSink {
    fn kind(&self) -> &'static str {
        "opsgenie"
    }

    fn send<'a>(&'a self, _key: &'a str, message: &'a Message) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let Some((update, body)) = request(message) else {
                return Ok(StepDone {
                    detail: "nothing to alert: the recovery was skipped".into(),
                    http_status: None,
                    observed: None,
                });
            };
            let (url, what) = match &update {
                // The alias holds names from logs: one percent-encoded segment.
                Some((alias, verb)) => {
                    let mut url = outbound::join(&self.base, &["v2", "alerts", alias, verb])?;
                    url.query_pairs_mut().append_pair("identifierType", "alias");
                    (url, format!("Opsgenie {verb}"))
                }
                None => (
                    outbound::join(&self.base, &["v2", "alerts"])?,
                    "Opsgenie create".to_string(),
                ),
            };
            let request = self
                .client
                .post(url)
                .header("Authorization", format!("GenieKey {}", self.api_key))
                .header("Content-Type", "application/json")
                .body(serde_json::to_vec(&body).unwrap_or_default());
            let (status, _) = outbound::send(request, &what).await?;
            Ok(StepDone {
                detail: format!("{what}: HTTP {status}"),
                http_status: Some(status),
                observed: None,
            })
        })
    }
}
