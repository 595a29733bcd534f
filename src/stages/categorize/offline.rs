//! Categorization without Kafka: one message in, one result out, through the
//! same window code the categorize stage runs. Backs `medic categorize`, the
//! evaluation test and rule-pack debugging.

use super::config::CategorizeConfig;
use super::rules::RulePack;
use super::window;
use crate::domain::*;
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::LazyLock;

/// One message to categorize, as `medic categorize --input` reads it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineInput {
    /// The log line or error text.
    pub message: String,
    /// Environment (default `unknown`).
    #[serde(default)]
    pub environment: Option<String>,
    /// Service (default `offline`).
    #[serde(default)]
    pub service: Option<String>,
    /// HTTP status codes seen with the message.
    #[serde(default)]
    pub status_codes: Vec<i32>,
    /// Error rate in percent.
    #[serde(default)]
    pub error_rate: Option<f64>,
    /// Users affected.
    #[serde(default)]
    pub affected_users: Option<i64>,
}

impl OfflineInput {
    /// Parses one input line: a JSON object with at least `message`, or any
    /// other text, taken as the message itself.
    pub fn parse_line(line: &str) -> Result<OfflineInput, String> {
        let trimmed = line.trim();
        if trimmed.starts_with('{') {
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(trimmed) {
                return serde_json::from_value(value)
                    .map_err(|e| format!("invalid input object: {e}"));
            }
        }
        Ok(OfflineInput {
            message: line.to_string(),
            ..OfflineInput::default()
        })
    }
}

/// The verdict for one message. `failure_type` is `None` when no rule matched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OfflineResult {
    /// The type, or null.
    pub failure_type: Option<FailureType>,
    /// Severity, or null when nothing matched.
    pub severity: Option<Severity>,
    /// Confidence in [0, 1]; 0 when nothing matched.
    pub confidence: f64,
    /// The second-best type when close.
    pub runner_up: Option<RunnerUp>,
    /// Retrying unchanged may work.
    pub transient: bool,
    /// Components involved.
    pub components: Vec<Component>,
    /// Every rule that fired.
    pub evidence: Vec<Evidence>,
    /// Critical and auto-recovery patterns that fired.
    pub pattern_hits: Vec<PatternHit>,
    /// The rule pack's version hash.
    pub rule_pack_version: String,
}

/// The failure the categorize stage would report for a deployment whose
/// window held only this message, or `None` when no rule matched.
pub fn failure(pack: &RulePack, input: &OfflineInput) -> Option<CategorizedFailure> {
    let key = DeploymentKey::new(
        input.service.as_deref().unwrap_or("offline"),
        input.environment.as_deref().unwrap_or("unknown"),
    );
    let mut signal = Signal::plain_text(&key, "offline", 0, &input.message, 0);
    signal.affected_users = input.affected_users;
    signal.error_rate = input.error_rate;
    let hits = pack.scan(&signal.text);
    let config = CategorizeConfig::default();
    let window::Absorbed::Opened(mut w) = window::absorb(None, &signal, &hits, pack, &config, 0)
    else {
        return None;
    };
    w.status_codes.extend(input.status_codes.iter().copied());
    Some(window::close(&w, pack))
}

/// The failure the categorize stage would report for a deployment that logged
/// `lines`, one signal per line, all within one window; `None` when no rule
/// that opens a window matched any of them. This is how a build-log excerpt
/// reaches medic from a log shipper.
pub fn failure_of_lines<'a>(
    pack: &RulePack,
    environment: &str,
    lines: impl IntoIterator<Item = &'a str>,
) -> Option<CategorizedFailure> {
    let key = DeploymentKey::new("offline", environment);
    failure_of_signals(
        pack,
        (0i64..)
            .zip(lines)
            .map(|(n, line)| Signal::plain_text(&key, "offline", n, line, n)),
    )
}

/// The failure the categorize stage would report for `signals`, all of one
/// deployment and within one window, in order; `None` when none opened a
/// window. Each signal arrives one millisecond after the one before.
pub fn failure_of_signals(
    pack: &RulePack,
    signals: impl IntoIterator<Item = Signal>,
) -> Option<CategorizedFailure> {
    let config = CategorizeConfig::default();
    let mut open: Option<CorrelationWindow> = None;
    for (now, signal) in (0i64..).zip(signals) {
        let hits = pack.scan(&signal.text);
        if let window::Absorbed::Opened(w) =
            window::absorb(open.as_mut(), &signal, &hits, pack, &config, now)
        {
            open = Some(*w);
        }
    }
    open.map(|w| window::close(&w, pack))
}

/// Categorizes one message as the stage would a deployment whose window held
/// only this message.
pub fn categorize(pack: &RulePack, input: &OfflineInput) -> OfflineResult {
    match failure(pack, input) {
        None => OfflineResult {
            failure_type: None,
            severity: None,
            confidence: 0.0,
            runner_up: None,
            transient: false,
            components: Vec::new(),
            evidence: Vec::new(),
            pattern_hits: Vec::new(),
            rule_pack_version: pack.version().to_string(),
        },
        Some(f) => OfflineResult {
            failure_type: Some(f.failure_type),
            severity: Some(f.severity),
            confidence: f.confidence,
            runner_up: f.runner_up,
            transient: f.transient,
            components: f.components,
            evidence: f.evidence,
            pattern_hits: f.pattern_hits,
            rule_pack_version: f.rule_pack_version,
        },
    }
}

/// A byte a mask's match must contain, so a line without one skips it.
#[derive(Clone, Copy)]
enum Needs {
    Dash,
    Dot,
    Digit,
}

static MASKS: LazyLock<Vec<(Regex, &'static str, Needs)>> = LazyLock::new(|| {
    [
        (r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", "<uuid>", Needs::Dash),
        (r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?", "<time>", Needs::Dash),
        (r"\b\d{1,3}(\.\d{1,3}){3}(:\d+)?\b", "<ip>", Needs::Dot),
        (r"\b[a-z0-9]+(-[a-z0-9]+)*-[bcdfghjklmnpqrstvwxz2-9]{8,10}-[bcdfghjklmnpqrstvwxz2-9]{5}\b", "<pod>", Needs::Dash),
        (r"\b(0x)?[0-9a-fA-F]*\d[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\b|\b(0x)?[0-9a-fA-F]*[a-fA-F][0-9a-fA-F]*\d[0-9a-fA-F]*\b", "<hex>", Needs::Digit),
        (r"\d+", "<n>", Needs::Digit),
    ]
    .into_iter()
    .map(|(pattern, tag, needs)| (Regex::new(pattern).unwrap_or_else(|e| panic!("mask {pattern}: {e}")), tag, needs))
    .collect()
});

/// The shape of a line: numbers, ids, hashes, addresses and times masked, so
/// lines that differ only in those count as one.
pub fn shape(line: &str) -> String {
    // Masks run in order, each on the previous one's output; one that cannot
    // match (no `-`, `.` or digit left) is skipped, and a mask that changes
    // nothing copies nothing. The categorize stage shapes unmatched lines of
    // failing deployments as they stream by.
    let mut text = std::borrow::Cow::Borrowed(line.trim());
    for (re, tag, needs) in MASKS.iter() {
        let present = match needs {
            Needs::Dash => text.contains('-'),
            Needs::Dot => text.contains('.'),
            Needs::Digit => text.bytes().any(|b| b.is_ascii_digit()),
        };
        if !present {
            continue;
        }
        if let std::borrow::Cow::Owned(masked) = re.replace_all(&text, *tag) {
            text = std::borrow::Cow::Owned(masked);
        }
    }
    // Hex masking needs at least one letter and one digit; pure words survive.
    text.chars().take(300).collect()
}

/// Lines no rule matched, grouped by [`shape`], most frequent first:
/// `(shape, count, first example)`.
pub fn unmatched_shapes<'a>(
    pack: &RulePack,
    lines: impl IntoIterator<Item = &'a str>,
) -> Vec<(String, usize, String)> {
    let mut groups: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for line in lines {
        if line.trim().is_empty()
            || pack
                .scan(line)
                .iter()
                .any(|h| pack.rules()[h.rule].failure_type().is_some())
        {
            continue;
        }
        let entry = groups
            .entry(shape(line))
            .or_insert_with(|| (0, line.to_string()));
        entry.0 += 1;
    }
    let mut list: Vec<(String, usize, String)> =
        groups.into_iter().map(|(s, (n, e))| (s, n, e)).collect();
    list.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_gets_the_stage_verdict() {
        let pack = RulePack::default_pack();
        let r = categorize(
            &pack,
            &OfflineInput {
                message: "Database connection timeout".into(),
                ..Default::default()
            },
        );
        // A timeout whose cause is named (the connection) takes that cause's type.
        assert_eq!(r.failure_type, Some(FailureType::Network));
        assert!(r.transient);
        let r = categorize(
            &pack,
            &OfflineInput {
                message: "all good".into(),
                ..Default::default()
            },
        );
        assert_eq!(
            (r.failure_type, r.severity, r.confidence),
            (None, None, 0.0)
        );
    }

    #[test]
    fn impact_fields_raise_severity() {
        let pack = RulePack::default_pack();
        let base = OfflineInput {
            message: "dial tcp: connection refused".into(),
            environment: Some("staging".into()),
            ..Default::default()
        };
        assert_eq!(categorize(&pack, &base).severity, Some(Severity::Medium));
        let hurt = OfflineInput {
            status_codes: vec![503; 20],
            ..base.clone()
        };
        assert_eq!(categorize(&pack, &hurt).severity, Some(Severity::High));
    }

    #[test]
    fn input_lines_are_json_objects_or_plain_messages() {
        let obj = OfflineInput::parse_line(
            r#"{"message": "boom", "environment": "prod", "status_codes": [500]}"#,
        )
        .expect("ok");
        assert_eq!(
            (
                obj.message.as_str(),
                obj.environment.as_deref(),
                obj.status_codes.as_slice()
            ),
            ("boom", Some("prod"), &[500][..])
        );
        assert_eq!(
            OfflineInput::parse_line("plain text {x}")
                .expect("ok")
                .message,
            "plain text {x}"
        );
        let err = OfflineInput::parse_line(r#"{"msg": "no message field"}"#).unwrap_err();
        assert!(
            err.contains("unknown field `msg`") || err.contains("missing field `message`"),
            "{err}"
        );
    }

    #[test]
    fn shapes_mask_what_varies() {
        assert_eq!(
            shape("2025-11-29T07:06:40Z pod checkout-7d9f8b6c5-x2x9q failed after 3 retries to 10.0.3.7:8080 (req 3f9a1c0b7e2d)"),
            "<time> pod <pod> failed after <n> retries to <ip> (req <hex>)"
        );
        assert_eq!(
            shape("user 550e8400-e29b-41d4-a716-446655440000 not found"),
            "user <uuid> not found"
        );
        let pack = RulePack::default_pack();
        let lines = [
            "job 17 stuck in queue",
            "job 4242 stuck in queue",
            "OOMKilled",
            "weird thing 1",
        ];
        let shapes = unmatched_shapes(&pack, lines);
        assert_eq!(
            shapes[0],
            (
                "job <n> stuck in queue".to_string(),
                2,
                "job 17 stuck in queue".to_string()
            )
        );
        assert_eq!(shapes.len(), 2, "the OOMKilled line matched a rule");
    }
}
