//! Notification sinks against local servers that check what Slack, a webhook
//! receiver and a mail server would receive: format, signature, retries.

mod common;

use common::http::{server, server_answering};
use common::smtp::{smtp_server, Answer};
use medic::bridge::verify::Verifier;
use medic::config::{Config, SmtpConfig, SmtpTls};
use medic::domain::*;
use medic::executors::notify::{EmailSink, Sink, SlackSink, WebhookSink};
use medic::executors::{Channels, Executor};
use medic::stages::notify::{approval_command, About, Message, MessageKind};
use medic::stages::EffectRequest;
use std::sync::Arc;
use std::time::Duration;

/// A production recovery waiting at a gate, with text from a log line that
/// tries to ping the whole Slack channel.
fn approval() -> Message {
    Message {
        kind: MessageKind::ApprovalNeeded,
        text: "checkout/production: high application failure <!channel> & friends".into(),
        about: Some(About {
            recovery_id: "checkout/production#17".into(),
            deployment_key: "checkout/production".into(),
            service: "checkout".into(),
            environment: "production".into(),
            failure_type: FailureType::Application,
            severity: Severity::High,
            strategy: "application_recovery".into(),
            phase: Some(Phase::ImmediateResponse),
            outcome: None,
            dry_run: false,
            link: Some("https://github.com/acme/shop/actions/runs/42".into()),
            approval_command: Some(approval_command("checkout/production#17")),
        }),
        digest: vec![],
        held: 0,
    }
}

fn request(channel: &str, message: Message) -> EffectRequest {
    EffectRequest::Notify {
        idempotency_key: format!("checkout/production#17/approval_needed/gate/{channel}"),
        channel: channel.into(),
        message: Arc::new(message),
    }
}

fn channels(name: &str, sink: Arc<dyn Sink>, attempts: u32) -> Channels {
    Channels::none().with(
        name,
        sink,
        attempts,
        Duration::from_secs(5),
        Duration::from_millis(10),
    )
}

fn header<'a>(headers: &'a [String], name: &str) -> Option<&'a str> {
    headers.iter().find_map(|h| {
        let (k, v) = h.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

#[tokio::test]
async fn slack_gets_block_kit_and_a_server_error_is_retried() {
    let (url, seen) = server_answering(vec![(503, "busy"), (200, "ok")]);
    let sink = SlackSink::new(&url).expect("sink");
    let result = channels("ops-slack", Arc::new(sink), 3)
        .execute(&request("ops-slack", approval()))
        .await;
    assert!(result.success, "{result:?}");
    assert_eq!((result.attempts, result.http_status), (2, Some(200)));
    assert_eq!(result.retries.len(), 1);
    assert!(
        result.retries[0].contains("HTTP 503"),
        "{:?}",
        result.retries
    );

    let seen = seen.lock().expect("lock");
    let (headers, body) = &seen[1];
    assert!(headers[0].starts_with("POST /hooks/medic "), "{headers:?}");
    assert_eq!(header(headers, "content-type"), Some("application/json"));
    let payload: serde_json::Value = serde_json::from_str(body).expect("json");
    let blocks = payload["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(
        blocks[0]["text"]["text"],
        "medic: application_recovery recovery of checkout/production waits for approval"
    );
    let fields: Vec<&str> = blocks[1]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "*Failure type*\napplication",
            "*Severity*\nhigh",
            "*Deployment*\ncheckout/production",
            "*Strategy*\napplication_recovery",
            "*Phase*\nimmediate_response",
            "*Outcome*\nwaiting for approval",
        ]
    );
    // Text from logs cannot mention @channel or open a link.
    assert_eq!(
        payload["text"],
        "checkout/production: high application failure &lt;!channel&gt; &amp; friends"
    );
    assert!(!body.contains("<!channel>"), "{body}");
    let all = body.as_str();
    assert!(
        all.contains(r#"medic approve 'checkout/production#17' --by \"$USER\""#),
        "{all}"
    );
    let button = blocks
        .iter()
        .find(|b| b["type"] == "actions")
        .expect("a link button");
    assert_eq!(
        button["elements"][0]["url"],
        "https://github.com/acme/shop/actions/runs/42"
    );
}

#[tokio::test]
async fn slack_refusing_the_webhook_is_not_retried_and_the_reason_kept() {
    let (url, seen) = server_answering(vec![(404, "no_service"), (200, "ok")]);
    let secret_url = format!("{url}/T000/B000/XXXXXXXX");
    let sink = SlackSink::new(&secret_url).expect("sink");
    let result = channels("ops-slack", Arc::new(sink), 3)
        .execute(&request("ops-slack", approval()))
        .await;
    assert!(!result.success);
    assert_eq!((result.attempts, result.http_status), (1, Some(404)));
    assert!(result.detail.contains("no_service"), "{}", result.detail);
    assert!(
        !result.detail.contains("XXXXXXXX"),
        "the webhook URL is a secret: {}",
        result.detail
    );
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn the_generic_webhook_is_signed_the_way_the_bridge_verifies() {
    let (url, seen) = server(vec![200]);
    let sink = WebhookSink::new(&url, Some("hush")).expect("sink");
    let result = channels("audit-hook", Arc::new(sink), 3)
        .execute(&request("audit-hook", approval()))
        .await;
    assert!(result.success, "{result:?}");
    let seen = seen.lock().expect("lock");
    let (headers, body) = &seen[0];
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .skip(1)
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let verifier = Verifier {
        platform: CiPlatform::Generic,
        secrets: vec![b"hush".to_vec()],
        tolerance_secs: 300,
        token_header: String::new(),
    };
    let now = medic::timefmt::wall_clock();
    verifier
        .verify(pairs.as_slice(), None, body.as_bytes(), now)
        .expect("the bridge accepts the signature");
    let wrong = Verifier {
        secrets: vec![b"other".to_vec()],
        ..verifier
    };
    assert!(wrong
        .verify(pairs.as_slice(), None, body.as_bytes(), now)
        .is_err());
    assert_eq!(
        header(headers, "idempotency-key"),
        Some("checkout/production#17/approval_needed/gate/audit-hook")
    );
    let json: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(json["kind"], "approval_needed");
    assert_eq!(json["recovery_id"], "checkout/production#17");
    assert_eq!(json["severity"], "high");
    assert_eq!(json["phase"], "immediate_response");
}

#[tokio::test]
async fn an_unreachable_webhook_fails_after_every_attempt() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sink = WebhookSink::new(&format!("http://127.0.0.1:{port}/"), None).expect("sink");
    let result = channels("hook", Arc::new(sink), 2)
        .execute(&request("hook", approval()))
        .await;
    assert!(!result.success);
    assert_eq!((result.attempts, result.http_status), (2, None));
    assert_eq!(result.retries.len(), 1);
    assert!(
        result.detail.contains("request failed"),
        "{}",
        result.detail
    );
}

fn smtp(port: u16) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: Some(port),
        tls: SmtpTls::None,
        username: None,
        password: None,
    }
}

#[tokio::test]
async fn email_reaches_every_recipient_after_a_busy_server() {
    let (port, received) = smtp_server(vec![Answer::Busy, Answer::Accept]);
    let sink = EmailSink::new(
        &smtp(port),
        "medic <medic@example.com>",
        &["oncall@example.com".into(), "sre-leads@example.com".into()],
        Duration::from_secs(5),
    )
    .expect("sink");
    let result = channels("oncall-mail", Arc::new(sink), 3)
        .execute(&request("oncall-mail", approval()))
        .await;
    assert!(result.success, "{result:?}");
    assert_eq!(result.attempts, 2);
    assert!(
        result.detail.starts_with("email: SMTP 250"),
        "{}",
        result.detail
    );

    let received = received.lock().expect("lock");
    assert_eq!(received.1, 2, "connections");
    let [mail] = received.0.as_slice() else {
        panic!("{:?}", received.0)
    };
    assert!(
        mail.from.starts_with("<medic@example.com>"),
        "{}",
        mail.from
    );
    assert_eq!(mail.to, ["<oncall@example.com>", "<sre-leads@example.com>"]);
    let data = mail.data.replace("\r\n", "\n");
    let (head, _) = data.split_once("\n\n").expect("headers, then the body");
    // Unfold folded header lines (RFC 5322).
    let head = head.replace("\n ", " ");
    assert!(
        head.contains(
            "Subject: [medic] application_recovery recovery of checkout/production waits for approval"
        ),
        "{head}"
    );
    assert!(
        head.contains("To: oncall@example.com, sre-leads@example.com"),
        "{head}"
    );
    assert!(head.contains("Message-ID: <"), "{head}");
    assert!(
        data.contains("Approve with:\n    medic approve 'checkout/production#17' --by \"$USER\""),
        "{data}"
    );
    assert!(data.contains("Phase:        immediate_response"), "{data}");
}

#[tokio::test]
async fn email_to_a_missing_mailbox_fails_without_retrying() {
    let (port, received) = smtp_server(vec![Answer::NoMailbox, Answer::Accept]);
    let sink = EmailSink::new(
        &smtp(port),
        "medic@example.com",
        &["nobody@example.com".into()],
        Duration::from_secs(5),
    )
    .expect("sink");
    let result = channels("mail", Arc::new(sink), 3)
        .execute(&request("mail", approval()))
        .await;
    assert!(!result.success);
    assert_eq!(result.attempts, 1);
    assert!(result.detail.contains("550"), "{}", result.detail);
    assert_eq!(received.lock().expect("lock").1, 1);
}

#[test]
fn bad_channel_configuration_fails_at_start_naming_the_field() {
    let load = |yaml: &str| {
        let dir = std::env::temp_dir().join(format!("medic-channels-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join(format!("{}.yaml", yaml.len()));
        std::fs::write(&path, yaml).expect("write");
        Config::load(Some(&path), &|name: &str| {
            (name == "SLACK_URL").then(|| "https://hooks.slack.com/services/T/B/X".to_string())
        })
        .map_err(|e| e.to_string())
    };
    let plain_slack = load(
        "notify:\n  channels:\n    - {name: ops, kind: slack, url: \"https://hooks.slack.com/services/T/B/X\"}\n",
    )
    .expect_err("a Slack URL is a secret");
    assert!(
        plain_slack.contains("notify.channels.ops.url") && plain_slack.contains("${env:NAME}"),
        "{plain_slack}"
    );
    let no_recipient = load(
        "notify:\n  channels:\n    - name: mail\n      kind: email\n      smtp: {host: smtp.example.com}\n      from: medic@example.com\n",
    )
    .expect_err("no recipient");
    assert!(
        no_recipient.contains("notify.channels.mail.to"),
        "{no_recipient}"
    );
    let config = load(
        "notify:\n  channels:\n    - name: ops\n      kind: slack\n      url: ${env:SLACK_URL}\n      environments: [production]\n      rate_limit: {max: 5, per_seconds: 300}\n",
    )
    .expect("valid");
    assert_eq!(config.notify.channels[0].rate_limit.max, 5);
    assert!(Channels::from_config(&config.notify).is_ok());
}

/// The notify stage on the embedded cluster: an outcome delivered twice
/// reaches the Slack channel once (after a retried 503), the staging-only
/// channel not at all, and the delivery is recorded in medic.notifications.
#[test]
fn the_notify_stage_delivers_once_per_recovery_and_records_the_delivery() {
    let (url, seen) = server_answering(vec![(503, ""), (200, "ok"), (200, "ok")]);
    let mut c = common::embedded("notify-slack");
    let yaml = format!(
        "- {{name: ops-slack, kind: slack, url: \"{url}\", environments: [production]}}\n\
         - {{name: staging-hook, kind: webhook, url: \"http://127.0.0.1:9/\", environments: [staging]}}\n"
    );
    c.config.notify.channels = serde_yaml_ng::from_str(&yaml).expect("channels");
    let executor: Arc<dyn Executor> =
        Arc::new(medic::app::executors(&c.config).expect("executors"));
    let outcome: RecoveryOutcome =
        serde_json::from_str(include_str!("../schemas/examples/RecoveryOutcome.json"))
            .expect("example");
    assert_eq!(outcome.environment, "production");
    c.produce_avro(&c.topics.outcomes, &outcome.deployment_key, &outcome);
    c.produce_avro(&c.topics.outcomes, &outcome.deployment_key, &outcome);
    let (running, _) = c.start_one(medic::stages::StageName::Notify, executor);
    let records: Vec<NotificationRecord> =
        c.read(&c.topics.notifications, 1, Duration::from_secs(60));
    drop(running);

    let [record] = records.as_slice() else {
        panic!("one delivery record: {records:?}")
    };
    assert_eq!(record.channel, "ops-slack");
    assert_eq!(
        record.id,
        format!("{}/outcome/ops-slack", outcome.recovery_id)
    );
    assert_eq!(
        (record.status, record.attempts, record.http_status),
        (DeliveryStatus::Delivered, 2, Some(200))
    );
    assert_eq!(record.retries.len(), 1, "{:?}", record.retries);
    let seen = seen.lock().expect("lock");
    assert_eq!(
        seen.len(),
        2,
        "one 503, then the delivery; no second message"
    );
    assert!(seen[1].1.contains(&outcome.recovery_id), "{}", seen[1].1);
}
