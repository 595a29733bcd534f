//! What a notification says, independent of the channel that carries it.
//! Sinks render a [`Message`] as a Slack Block Kit message, a JSON body or an
//! e-mail; the text here is plain and may contain anything that came from
//! logs or payloads, so every sink escapes it for its own format.

use crate::domain::*;
use serde::Serialize;

/// Most lines listed in one digest; the rest are counted.
pub const DIGEST_LINES: usize = 50;

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// A recovery waits at an approval gate.
    ApprovalNeeded,
    /// A recovery ended.
    Outcome,
    /// Messages a channel's rate limit held back, sent together.
    Digest,
    /// A recovery's `escalate` step: a person takes over.
    Escalation,
    /// A recovery's `notify` step: what it is doing.
    Update,
}

/// One message for people (and for machines, as the generic webhook's body).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Why it is sent.
    pub kind: MessageKind,
    /// One line that says it all.
    pub text: String,
    /// The recovery it is about; `None` for a digest.
    #[serde(flatten)]
    pub about: Option<About>,
    /// For a digest: the held messages' lines (at most [`DIGEST_LINES`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub digest: Vec<String>,
    /// For a digest: how many messages it stands for.
    #[serde(skip_serializing_if = "is_zero")]
    pub held: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The recovery a message is about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct About {
    /// The recovery.
    pub recovery_id: String,
    /// `service/environment`.
    pub deployment_key: String,
    /// Service.
    pub service: String,
    /// Environment.
    pub environment: String,
    /// Failure type.
    pub failure_type: FailureType,
    /// Severity.
    pub severity: Severity,
    /// Recovery strategy.
    pub strategy: String,
    /// The recovery phase, when known.
    pub phase: Option<Phase>,
    /// How it ended, for outcomes.
    pub outcome: Option<Outcome>,
    /// Nothing was executed.
    pub dry_run: bool,
    /// The CI run behind the failure, or the configured link.
    pub link: Option<String>,
    /// The command that approves the recovery, when a gate waits.
    pub approval_command: Option<String>,
}

impl Message {
    /// A short title: what happened to which deployment.
    pub fn title(&self) -> String {
        match (&self.kind, &self.about) {
            (MessageKind::Digest, _) | (_, None) => {
                format!("medic: {} notifications held back", self.held)
            }
            (MessageKind::ApprovalNeeded, Some(a)) => format!(
                "medic: {} recovery of {} waits for approval",
                a.strategy, a.deployment_key
            ),
            (MessageKind::Outcome, Some(a)) => format!(
                "medic: {} recovery of {} {}",
                a.strategy,
                a.deployment_key,
                a.outcome.map_or("ended", |o| o.as_str())
            ),
            (MessageKind::Escalation, Some(a)) => format!(
                "medic: {} recovery of {} needs a person",
                a.strategy, a.deployment_key
            ),
            (MessageKind::Update, Some(a)) => {
                format!("medic: {} recovery of {}", a.strategy, a.deployment_key)
            }
        }
    }
}

/// A digest of `lines` (messages held back on `channel`).
pub fn digest(channel: &str, limit_max: u32, per_seconds: u64, lines: &[String]) -> Message {
    let mut digest: Vec<String> = lines.iter().take(DIGEST_LINES).cloned().collect();
    if lines.len() > DIGEST_LINES {
        digest.push(format!("... and {} more", lines.len() - DIGEST_LINES));
    }
    Message {
        kind: MessageKind::Digest,
        text: format!(
            "{} notifications on channel {channel} were held back by its rate limit \
             ({limit_max} per {per_seconds}s)",
            lines.len()
        ),
        about: None,
        digest,
        held: lines.len(),
    }
}

/// The command that approves `recovery_id`, quoted for a POSIX shell: the id
/// is made of a service and an environment name that came from logs.
pub fn approval_command(recovery_id: &str) -> String {
    format!("medic approve {} --by \"$USER\"", shell_quote(recovery_id))
}

/// `text` as one POSIX shell word: in single quotes, each `'` as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A link people can follow: an http(s) URL without spaces or control
/// characters, at most 2,000 bytes. Anything else is dropped.
pub fn usable_link(url: Option<&str>) -> Option<String> {
    let url = url?;
    let ok = (url.starts_with("https://") || url.starts_with("http://"))
        && url.len() <= 2_000
        && !url.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then(|| url.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_approval_command_survives_quotes_in_service_names() {
        assert_eq!(
            approval_command("web/prod#1"),
            "medic approve 'web/prod#1' --by \"$USER\""
        );
        assert_eq!(shell_quote("a'b; rm -rf /"), r"'a'\''b; rm -rf /'");
    }

    #[test]
    fn only_plain_http_links_are_kept() {
        assert_eq!(
            usable_link(Some("https://ci.example.com/run/1")).as_deref(),
            Some("https://ci.example.com/run/1")
        );
        assert_eq!(usable_link(Some("javascript:alert(1)")), None);
        assert_eq!(usable_link(Some("https://x/ y")), None);
        assert_eq!(usable_link(None), None);
    }

    #[test]
    fn a_digest_lists_at_most_fifty_lines_and_counts_the_rest() {
        let lines: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
        let m = digest("ops", 20, 60, &lines);
        assert_eq!(m.digest.len(), DIGEST_LINES + 1);
        assert_eq!(m.digest.last().map(String::as_str), Some("... and 10 more"));
        assert_eq!(m.title(), "medic: 60 notifications held back");
        let json = serde_json::to_value(&m).expect("json");
        assert_eq!(json["kind"], "digest");
        assert!(json.get("recovery_id").is_none());
    }
}
