//! Paging a person: the PagerDuty (Events API v2) and Opsgenie (Alert API)
//! channels against scripted local servers that answer as the documented
//! APIs do — `POST /v2/enqueue` answering 202 `{"status":"success"}`, 400
//! for an invalid event, 429 when rate limited; `POST /v2/alerts` and
//! `/v2/alerts/{alias}/close|acknowledge?identifierType=alias` answering 202
//! `{"result":"Request will be processed"}` — checking method, path,
//! headers and body, and the whole life of a page: triggered when a
//! recovery fails, resolved when a later one of the deployment succeeds.

mod common;

use common::block_on;

use medic::domain::*;
use medic::executors::notify::{OpsgenieSink, PagerdutySink, Sink};
use medic::stages::notify::{About, Message, MessageKind};
use serde_json::Value;

const ACCEPTED: &str =
    r#"{"status":"success","message":"Event processed","dedup_key":"medic/checkout/production"}"#;
const OPSGENIE_ACCEPTED: &str = r#"{"result":"Request will be processed","took":0.302,"requestId":"43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}"#;

fn message(kind: MessageKind, outcome: Option<Outcome>, recovery: &str) -> Message {
    Message {
        kind,
        text: match outcome {
            Some(Outcome::Succeeded) => "traffic flows again (6 of 6 steps succeeded)".into(),
            Some(_) => "escalated: network on-call paged".into(),
            None => "waits for approval before enable_circuit_breaker".into(),
        },
        about: Some(About {
            recovery_id: recovery.into(),
            deployment_key: "checkout/production".into(),
            service: "checkout".into(),
            environment: "production".into(),
            failure_type: FailureType::Network,
            severity: Severity::Critical,
            strategy: "network_recovery".into(),
            phase: None,
            outcome,
            dry_run: false,
            link: Some("https://github.com/acme/checkout/actions/runs/42".into()),
            approval_command: None,
        }),
        digest: Vec::new(),
        held: 0,
    }
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (n, v) = h.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// A failed recovery triggers a critical page for the deployment; the
/// later recovery that succeeds resolves the same `dedup_key`; a rejection
/// acknowledges it; a skipped recovery pages nobody.
#[test]
fn pagerduty_pages_when_a_recovery_fails_and_resolves_when_a_later_one_succeeds() {
    let (url, seen) =
        common::http::server_answering(vec![(202, ACCEPTED), (202, ACCEPTED), (202, ACCEPTED)]);
    let enqueue = url.replace("/hooks/medic", "/v2/enqueue");
    let sink =
        PagerdutySink::new(Some(&enqueue), "R0UT1NGKEY0123456789abcdefABCDEF").expect("sink");
    let failed = message(
        MessageKind::Outcome,
        Some(Outcome::Failed),
        "checkout/production#1",
    );
    let done = block_on(sink.send("k1", &failed)).expect("triggered");
    assert_eq!(done.http_status, Some(202));
    let rejected = message(
        MessageKind::Outcome,
        Some(Outcome::Rejected),
        "checkout/production#2",
    );
    block_on(sink.send("k2", &rejected)).expect("acknowledged");
    let later = message(
        MessageKind::Outcome,
        Some(Outcome::Succeeded),
        "checkout/production#3",
    );
    block_on(sink.send("k3", &later)).expect("resolved");
    let skipped = message(
        MessageKind::Outcome,
        Some(Outcome::Skipped),
        "checkout/production#4",
    );
    let quiet = block_on(sink.send("k4", &skipped)).expect("nothing to page");
    assert_eq!(quiet.http_status, None);

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3, "the skipped recovery sent nothing");
    let bodies: Vec<Value> = seen
        .iter()
        .map(|(h, b)| {
            assert_eq!(h[0], "POST /v2/enqueue HTTP/1.1");
            assert_eq!(header(h, "content-type"), Some("application/json"));
            serde_json::from_str(b).expect("JSON body")
        })
        .collect();
    let trigger = &bodies[0];
    assert_eq!(trigger["routing_key"], "R0UT1NGKEY0123456789abcdefABCDEF");
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["dedup_key"], "medic/checkout/production");
    let payload = &trigger["payload"];
    assert_eq!(payload["severity"], "critical");
    assert_eq!(payload["source"], "medic");
    assert_eq!(payload["component"], "checkout");
    assert_eq!(payload["group"], "production");
    assert_eq!(payload["class"], "network");
    assert_eq!(
        payload["custom_details"]["recovery_id"],
        "checkout/production#1"
    );
    assert!(payload["summary"]
        .as_str()
        .is_some_and(|s| s.contains("checkout/production") && s.len() <= 1024));
    assert_eq!(
        trigger["links"][0]["href"],
        "https://github.com/acme/checkout/actions/runs/42"
    );
    assert_eq!(bodies[1]["event_action"], "acknowledge");
    assert_eq!(bodies[2]["event_action"], "resolve");
    for b in &bodies[1..] {
        assert_eq!(b["dedup_key"], "medic/checkout/production");
        assert!(b.get("payload").is_none(), "{b}");
    }
}

/// PagerDuty's answers as documented: 400 (invalid event) is not retried
/// and carries the API's message; 429 and 5xx are.
#[test]
fn pagerduty_errors_say_whether_to_try_again() {
    let (url, _) = common::http::server_answering(vec![
        (
            400,
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#,
        ),
        (429, ""),
        (503, ""),
    ]);
    let sink = PagerdutySink::new(Some(&url), "short").expect("sink");
    let failed = message(
        MessageKind::Outcome,
        Some(Outcome::Failed),
        "checkout/production#1",
    );
    let e = block_on(sink.send("k", &failed)).expect_err("400");
    assert!(!e.retryable);
    assert!(
        e.detail.contains("HTTP 400: Event object is invalid"),
        "{}",
        e.detail
    );
    let e = block_on(sink.send("k", &failed)).expect_err("429");
    assert!(e.retryable);
    let e = block_on(sink.send("k", &failed)).expect_err("503");
    assert!(e.retryable);
    assert!(PagerdutySink::new(None, "has space").is_err());
}

/// Opsgenie: an approval request creates a P3 alert, a failure a P1 alert
/// (GenieKey authorization), both aliased to the deployment; success closes
/// it by alias, percent-encoded as one path segment.
#[test]
fn opsgenie_alerts_and_closes_by_the_deployments_alias() {
    let (url, seen) = common::http::server_answering(vec![
        (202, OPSGENIE_ACCEPTED),
        (202, OPSGENIE_ACCEPTED),
        (202, OPSGENIE_ACCEPTED),
    ]);
    let base = url.replace("/hooks/medic", "");
    let sink =
        OpsgenieSink::new(Some(&base), "eb243592-faa2-4ba2-a551q-1afdf565c889").expect("sink");
    let approval = message(MessageKind::ApprovalNeeded, None, "checkout/production#1");
    block_on(sink.send("k1", &approval)).expect("created");
    let failed = message(
        MessageKind::Outcome,
        Some(Outcome::Failed),
        "checkout/production#1",
    );
    block_on(sink.send("k2", &failed)).expect("created");
    let later = message(
        MessageKind::Outcome,
        Some(Outcome::Succeeded),
        "checkout/production#2",
    );
    block_on(sink.send("k3", &later)).expect("closed");

    let seen = seen.lock().expect("seen").clone();
    assert_eq!(seen.len(), 3);
    for (h, _) in &seen {
        assert_eq!(
            header(h, "authorization"),
            Some("GenieKey eb243592-faa2-4ba2-a551q-1afdf565c889")
        );
    }
    assert_eq!(seen[0].0[0], "POST /v2/alerts HTTP/1.1");
    let create: Value = serde_json::from_str(&seen[0].1).expect("JSON");
    assert_eq!(create["alias"], "medic/checkout/production");
    assert_eq!(create["priority"], "P3");
    assert_eq!(create["source"], "medic");
    assert!(create["message"]
        .as_str()
        .is_some_and(|m| m.chars().count() <= 130));
    let failure: Value = serde_json::from_str(&seen[1].1).expect("JSON");
    assert_eq!(failure["priority"], "P1");
    assert_eq!(
        failure["tags"],
        serde_json::json!(["medic", "network", "production"])
    );
    assert_eq!(failure["details"]["recovery_id"], "checkout/production#1");
    assert_eq!(
        seen[2].0[0],
        "POST /v2/alerts/medic%2Fcheckout%2Fproduction/close?identifierType=alias HTTP/1.1"
    );
    let close: Value = serde_json::from_str(&seen[2].1).expect("JSON");
    assert_eq!(close["source"], "medic");
}

/// Channel configuration: a paging channel needs its key (a secret from env
/// or file), and other kinds refuse one.
#[test]
fn paging_channels_need_their_key_from_env_or_file() {
    let load = |yaml: &str, env: &[(&str, &str)]| {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let file = std::env::temp_dir().join(common::unique_prefix("paging.yaml"));
        std::fs::write(&file, yaml).expect("write");
        medic::config::Config::load(Some(&file), &|name| {
            env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    };
    let ok = load(
        "notify:\n  channels:\n    - {name: oncall, kind: pagerduty, key: \"${env:PD_KEY}\", min_severity: high}\n",
        &[("PD_KEY", "R0UT1NGKEY0123456789abcdefABCDEF")],
    )
    .expect("valid");
    assert_eq!(
        ok.notify.channels[0].key.as_deref(),
        Some("R0UT1NGKEY0123456789abcdefABCDEF")
    );
    let e = load(
        "notify:\n  channels:\n    - {name: oncall, kind: opsgenie}\n",
        &[],
    )
    .expect_err("no key");
    assert!(e.to_string().contains("notify.channels.oncall.key"), "{e}");
    let e = load(
        "notify:\n  channels:\n    - {name: oncall, kind: pagerduty, key: R0UT1NGKEY}\n",
        &[],
    )
    .expect_err("plain key");
    assert!(e.to_string().contains("${env:"), "{e}");
    let e = load(
        "notify:\n  channels:\n    - {name: ops, kind: slack, url: \"${env:SLACK}\", key: \"${env:PD_KEY}\"}\n",
        &[("SLACK", "https://hooks.slack.com/services/T/B/x"), ("PD_KEY", "k")],
    )
    .expect_err("key on slack");
    assert!(
        e.to_string().contains("does not apply to a slack channel"),
        "{e}"
    );
}
