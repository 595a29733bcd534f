//! Slack incoming-webhook sink: one Block Kit message per notification.
//!
//! Everything in a message may come from logs or payloads, so every text is
//! escaped for Slack's `mrkdwn` (`&`, `<`, `>`; a `<` would otherwise start a
//! link or a mention such as `<!channel>`) and cut to the lengths Slack
//! accepts. Links only come from [`usable_link`](crate::stages::notify::usable_link).

use super::Sink;
use crate::executors::outbound;
use crate::executors::step::{StepDone, StepResult};
use crate::executors::BoxFuture;
use crate::stages::notify::{Message, MessageKind};
use serde_json::{json, Value};

/// Longest header text Slack accepts.
const HEADER_MAX: usize = 150;
/// Longest section text Slack accepts.
const TEXT_MAX: usize = 3_000;
/// Longest section field Slack accepts.
const FIELD_MAX: usize = 2_000;

/// Posts Block Kit messages to one incoming webhook.
pub struct SlackSink {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl SlackSink {
    /// A sink for the incoming-webhook `url`.
    pub fn new(url: &str) -> Result<SlackSink, String> {
        Ok(SlackSink {
            client: outbound::client(concat!("medic/", env!("CARGO_PKG_VERSION")))?,
            url: super::http_url(url)?,
        })
    }
}

impl Sink for SlackSink {
    fn kind(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(&'a self, _key: &'a str, message: &'a Message) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let request = self
                .client
                .post(self.url.clone())
                .header("Content-Type", "application/json")
                .body(blocks(message).to_string());
            // The URL is the credential: never in an error text.
            let (status, _) = outbound::send(request, "POST to Slack").await?;
            Ok(StepDone {
                detail: format!("HTTP {status}"),
                http_status: Some(status),
                observed: None,
            })
        })
    }
}

/// `text` escaped for Slack `mrkdwn` and cut to `max` characters.
pub fn escape(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max) + 8);
    for (n, c) in text.chars().enumerate() {
        if n + 1 >= max {
            out.push('…');
            break;
        }
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` cut to `max` characters (for `plain_text`, which Slack shows as is).
fn plain(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The Block Kit payload for `message`.
pub fn blocks(message: &Message) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": plain(&message.title(), HEADER_MAX)},
    })];
    if let Some(a) = &message.about {
        let field = |name: &str, value: &str| json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", escape(value, FIELD_MAX - 40))});
        let state = match (message.kind, a.outcome) {
            (_, Some(outcome)) => outcome.as_str().to_string(),
            (MessageKind::ApprovalNeeded, None) => "waiting for approval".into(),
            (MessageKind::Escalation, None) => "escalated: a person takes over".into(),
            _ => "running".into(),
        };
        blocks.push(json!({
            "type": "section",
            "fields": [
                field("Failure type", a.failure_type.as_str()),
                field("Severity", a.severity.as_str()),
                field("Deployment", &a.deployment_key),
                field("Strategy", &a.strategy),
                field("Phase", a.phase.map_or("-", |p| p.as_str())),
                field(if a.dry_run { "Outcome (dry run)" } else { "Outcome" }, &state),
            ],
        }));
    }
    blocks.push(json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": escape(&message.text, TEXT_MAX)},
    }));
    if !message.digest.is_empty() {
        let lines: Vec<String> = message
            .digest
            .iter()
            .map(|l| format!("• {}", escape(l, 300)))
            .collect();
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": plain(&lines.join("\n"), TEXT_MAX)},
        }));
    }
    if let Some(a) = &message.about {
        if let Some(command) = &a.approval_command {
            blocks.push(json!({
                "type": "section",
                "text": {"type": "mrkdwn", "text": format!(
                    "Approve with (add `--reject` to refuse):\n```{}```",
                    escape(command, TEXT_MAX - 60)
                )},
            }));
        }
        if let Some(link) = &a.link {
            blocks.push(json!({
                "type": "actions",
                "elements": [{
                    "type": "button",
                    "text": {"type": "plain_text", "text": "Open"},
                    "url": link,
                }],
            }));
        }
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": escape(&format!("recovery {}", a.recovery_id), TEXT_MAX)}],
        }));
    }
    json!({
        // Shown in push notifications and where blocks cannot be.
        "text": escape(&message.text, TEXT_MAX),
        "blocks": blocks,
    })
}
