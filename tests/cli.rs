//! The `medic` binary as an operator uses it.

mod common;

use common::*;
use medic::domain::*;
use medic::stages::StageName;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(90);

fn medic() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medic"))
}

#[test]
fn a_bad_config_file_stops_medic_with_file_line_and_field() {
    let dir = std::env::temp_dir().join(unique_prefix("cfg"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("medic.yaml");
    std::fs::write(
        &file,
        "kafka:\n  topic_prefix: medic\ndelivery:\n  mode: sometimes\n",
    )
    .expect("write");
    let out = medic()
        .arg("check-config")
        .arg("--config")
        .arg(&file)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4: delivery.mode: unknown variant `sometimes`",
            file.display()
        )),
        "{stderr}"
    );

    let ok = medic().arg("check-config").output().expect("runs");
    assert!(ok.status.success(), "defaults are valid");
}

#[test]
fn run_all_on_the_embedded_cluster_prints_its_address_and_stops_cleanly_on_sigterm() {
    let mut child = medic()
        .args(["run", "all"])
        .env("RUST_LOG", "warn")
        .env("MEDIC_BRIDGE_LISTEN", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().expect("a line").expect("utf-8");
    assert!(
        first.starts_with("embedded Kafka cluster listening on 127.0.0.1:"),
        "{first}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "medic did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    drop(lines);
}

#[test]
fn a_production_recovery_waits_for_medic_approve_and_records_the_approver() {
    let c = embedded("approve");
    c.produce(
        &c.topics.logs_raw,
        Some("checkout/production"),
        b"panic: runtime error: invalid memory address or nil pointer dereference",
    );
    let running = c.start(&StageName::ALL);

    let mut waiting = None;
    assert!(
        wait_until(LONG, || {
            let states: Vec<RecoveryState> = c.read(&c.topics.state, 1, Duration::from_secs(2));
            waiting = states
                .into_iter()
                .find(|s| s.status == RecoveryStatus::AwaitingApproval);
            waiting.is_some()
        }),
        "no recovery waits for approval"
    );
    let recovery = waiting.expect("state").recovery_id;
    let nothing: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, Duration::from_secs(2));
    assert!(nothing.is_empty(), "nothing runs before the approval");

    let out = medic()
        .args([
            "approve",
            &recovery,
            "--approver",
            "alice",
            "--reason",
            "checked the dashboards",
        ])
        .args([
            "--brokers",
            &c.settings.brokers,
            "--topic-prefix",
            &c.topics.prefix,
        ])
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("approved {recovery} as alice")
    );

    let outcomes: Vec<RecoveryOutcome> = c.read(&c.topics.outcomes, 1, LONG);
    assert_eq!(outcomes.len(), 1);
    assert_eq!(outcomes[0].outcome, Outcome::Succeeded);
    let audit: Vec<AuditRecord> = c.read(&c.topics.audit, 1, LONG);
    let approved = audit
        .iter()
        .find(|a| a.event == AuditEvent::Approved)
        .expect("approval audited");
    assert_eq!(
        (approved.actor.as_str(), approved.detail.as_str()),
        ("alice", "checked the dashboards")
    );
    let notes: Vec<NotificationRecord> = c.read(&c.topics.notifications, 2, LONG);
    assert!(
        notes
            .iter()
            .any(|n| n.trigger == NotificationTrigger::ApprovalNeeded),
        "people were told"
    );
    drop(running);
}
