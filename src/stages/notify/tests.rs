use super::*;
use crate::codec;

fn outcome() -> RecoveryOutcome {
    RecoveryOutcome {
        recovery_id: "web/staging#1".into(),
        failure_id: "web/staging@1".into(),
        deployment_key: "web/staging".into(),
        service: "web".into(),
        environment: "staging".into(),
        failure_type: FailureType::Network,
        severity: Severity::Medium,
        strategy: "network_recovery".into(),
        outcome: Outcome::Succeeded,
        dry_run: true,
        started_at: 1_000,
        finished_at: 3_500,
        steps_total: 4,
        steps_succeeded: 4,
        detail: "4 of 4 steps recorded (dry run)".into(),
        ci: None,
        approver: None,
        actions: vec![],
        simulated_steps: Vec::new(),
        metrics: None,
        should_retry_deployment: false,
        recommendations: Vec::new(),
    }
}

fn waiting(gate: &str) -> RecoveryState {
    RecoveryState {
        recovery_id: "web/production#7".into(),
        failure_id: "web/production@7".into(),
        deployment_key: "web/production".into(),
        service: "web".into(),
        environment: "production".into(),
        failure_type: FailureType::Application,
        severity: Severity::High,
        strategy: "application_recovery".into(),
        status: RecoveryStatus::AwaitingApproval,
        dry_run: false,
        steps: vec![],
        started_at: 1,
        updated_at: 2,
        approver: None,
        ci: None,
        last_disruptive: Default::default(),
        attached_failures: vec![],
        cursor: Some(gate.into()),
        waiting_until: None,
        phases: vec![PhaseSpan {
            phase: Phase::ImmediateResponse,
            started_at: 1,
            finished_at: None,
        }],
        affected_users: None,
        error_rate: None,
        transient: false,
    }
}

fn channel(name: &str) -> Channel {
    Channel {
        name: name.into(),
        kind: ChannelKind::Slack,
        environments: vec![],
        platforms: vec![],
        min_severity: None,
        events: vec![
            NotificationTrigger::ApprovalNeeded,
            NotificationTrigger::Outcome,
        ],
        rate_limit: RateLimit::default(),
    }
}

fn feed<T: crate::codec::AvroRecord + serde::Serialize>(
    n: &mut Notify,
    topic: &str,
    value: &T,
    now: Millis,
) -> Vec<Action> {
    let bytes = codec::encode(value).expect("encodes");
    let rec = InputRecord {
        topic,
        partition: 0,
        offset: 0,
        key: None,
        payload: Some(&bytes),
        timestamp: None,
    };
    n.process(&rec, now).expect("ok")
}

/// `(channel, notification id)` of every delivery asked for.
fn deliveries(actions: &[Action]) -> Vec<(String, String)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Execute(EffectRequest::Notify {
                idempotency_key,
                channel,
                ..
            }) => Some((channel.clone(), idempotency_key.clone())),
            _ => None,
        })
        .collect()
}

fn records(actions: &[Action]) -> Vec<NotificationRecord> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Emit(o) => Some(codec::decode(o.value.as_deref()?).expect("decodes")),
            _ => None,
        })
        .collect()
}

fn delivered(key: &str, retries: Vec<String>) -> EffectResult {
    EffectResult {
        idempotency_key: key.into(),
        success: true,
        detail: "slack: HTTP 200".into(),
        attempts: retries.len() as u32 + 1,
        http_status: Some(200),
        retries,
        observed: None,
    }
}

#[test]
fn without_channels_one_record_per_outcome_even_when_redelivered() {
    let topics = Topics::default();
    let mut n = Notify::new(topics.clone(), vec![]);
    let first = feed(&mut n, &topics.outcomes, &outcome(), 9);
    assert!(feed(&mut n, &topics.outcomes, &outcome(), 9).is_empty());
    let [record] = records(&first).try_into().expect("one record");
    assert_eq!(record.message, "web/staging: medium network failure; network_recovery succeeded (dry run) in 2.5s: 4 of 4 steps recorded (dry run)");
    assert_eq!(
        (record.channel.as_str(), record.id.as_str()),
        ("log", "web/staging#1/outcome/log")
    );
}

#[test]
fn each_channel_gets_its_environments_platforms_severities_and_events() {
    let topics = Topics::default();
    let production = Channel {
        environments: vec!["production".into()],
        ..channel("prod")
    };
    let github = Channel {
        platforms: vec![CiPlatform::GithubActions],
        ..channel("github")
    };
    let critical = Channel {
        min_severity: Some(Severity::Critical),
        ..channel("pager")
    };
    let outcomes_only = Channel {
        events: vec![NotificationTrigger::Outcome],
        ..channel("outcomes")
    };
    let mut n = Notify::new(
        topics.clone(),
        vec![production, github, critical, outcomes_only],
    );
    let approval = feed(&mut n, &topics.state, &waiting("approve"), 5);
    assert_eq!(
        deliveries(&approval),
        [(
            "prod".to_string(),
            "web/production#7/approval_needed/approve/prod".to_string()
        )]
    );
    let ci = CiRef {
        event_id: "e".into(),
        platform: "github_actions".into(),
        status: "failure".into(),
        pipeline: "CI".into(),
        job: None,
        url: Some("https://github.com/o/r/actions/runs/1".into()),
        commit_sha: None,
        repository: None,
        run_id: None,
        job_id: None,
    };
    let from_github = RecoveryOutcome {
        ci: Some(ci),
        ..outcome()
    };
    let done = feed(&mut n, &topics.outcomes, &from_github, 6);
    let channels: Vec<String> = deliveries(&done).into_iter().map(|(c, _)| c).collect();
    assert_eq!(channels, ["github", "outcomes"]);
    let Some(Action::Execute(EffectRequest::Notify { message, .. })) = done.first() else {
        panic!("{done:?}")
    };
    let about = message.about.as_ref().expect("about");
    assert_eq!(
        about.link.as_deref(),
        Some("https://github.com/o/r/actions/runs/1")
    );
}

#[test]
fn the_same_gate_is_notified_once_and_the_next_gate_again() {
    let topics = Topics::default();
    let mut n = Notify::new(topics.clone(), vec![channel("ops")]);
    let first = feed(&mut n, &topics.state, &waiting("approve_rollback"), 5);
    assert_eq!(deliveries(&first).len(), 1);
    let Action::Execute(EffectRequest::Notify { message, .. }) = &first[0] else {
        panic!()
    };
    let about = message.about.as_ref().expect("about");
    assert_eq!(
        about.approval_command.as_deref(),
        Some("medic approve 'web/production#7' --by \"$USER\"")
    );
    assert_eq!(about.phase, Some(Phase::ImmediateResponse));
    // The state is written again (an attached failure): no second message.
    assert!(feed(&mut n, &topics.state, &waiting("approve_rollback"), 6).is_empty());
    let second = feed(&mut n, &topics.state, &waiting("approve_failover"), 7);
    assert_eq!(
        deliveries(&second)[0].1,
        "web/production#7/approval_needed/approve_failover/ops"
    );
}

#[test]
fn the_delivery_result_and_its_retries_are_recorded() {
    let topics = Topics::default();
    let mut n = Notify::new(topics.clone(), vec![channel("ops")]);
    let actions = feed(&mut n, &topics.outcomes, &outcome(), 9);
    let [(_, key)] = deliveries(&actions).try_into().expect("one");
    let failed = EffectResult {
        idempotency_key: key.clone(),
        success: false,
        detail: "slack: POST to Slack: HTTP 404: no_service".into(),
        attempts: 3,
        http_status: Some(404),
        retries: vec!["HTTP 503".into(), "HTTP 503".into()],
        observed: None,
    };
    let [record] = records(&n.on_effect(failed, 10).expect("ok"))
        .try_into()
        .expect("one");
    assert_eq!(
        (record.status, record.attempts, record.http_status),
        (DeliveryStatus::Failed, 3, Some(404))
    );
    assert_eq!(record.retries, ["HTTP 503", "HTTP 503"]);
    assert_eq!(
        record.error.as_deref(),
        Some("slack: POST to Slack: HTTP 404: no_service")
    );
}

/// PagerDuty and Opsgenie group events per deployment; holding one for a
/// digest could hold back the resolve of an open incident.
#[test]
fn paging_channels_are_not_held_for_a_digest() {
    let topics = Topics::default();
    let pager = Channel {
        kind: ChannelKind::Pagerduty,
        rate_limit: RateLimit {
            max: 1,
            per_seconds: 60,
        },
        ..channel("oncall")
    };
    let mut n = Notify::new(topics.clone(), vec![pager]);
    let mut sent = Vec::new();
    for i in 0..4 {
        let o = RecoveryOutcome {
            recovery_id: format!("web/staging#{i}"),
            ..outcome()
        };
        sent.extend(deliveries(&feed(&mut n, &topics.outcomes, &o, 1_000 + i)));
    }
    assert_eq!(sent.len(), 4, "every page goes out: {sent:?}");
    assert!(n.on_timer(61_000).expect("ok").is_empty(), "no digest");
}

#[test]
fn past_the_rate_limit_messages_wait_for_one_digest() {
    let topics = Topics::default();
    let limited = Channel {
        rate_limit: RateLimit {
            max: 2,
            per_seconds: 60,
        },
        ..channel("ops")
    };
    let mut n = Notify::new(topics.clone(), vec![limited]);
    let mut sent = Vec::new();
    for i in 0..5 {
        let o = RecoveryOutcome {
            recovery_id: format!("web/staging#{i}"),
            ..outcome()
        };
        sent.extend(deliveries(&feed(&mut n, &topics.outcomes, &o, 1_000 + i)));
    }
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(
        n.on_timer(30_000).expect("ok").is_empty(),
        "window still open"
    );
    let flushed = n.on_timer(61_000).expect("ok");
    let [Action::Execute(EffectRequest::Notify {
        idempotency_key,
        message,
        ..
    })] = flushed.as_slice()
    else {
        panic!("{flushed:?}")
    };
    assert_eq!(message.kind, MessageKind::Digest);
    assert_eq!(message.held, 3);
    assert!(message.digest[0].starts_with("web/staging: medium network failure"));
    let held = records(
        &n.on_effect(delivered(idempotency_key, vec![]), 62_000)
            .expect("ok"),
    );
    assert_eq!(held.len(), 3);
    assert!(held
        .iter()
        .all(|r| r.digest.as_deref() == Some(idempotency_key.as_str())
            && r.status == DeliveryStatus::Delivered));
    // The digest used one message of the new window; one more goes out.
    let o = RecoveryOutcome {
        recovery_id: "web/staging#9".into(),
        ..outcome()
    };
    assert_eq!(
        deliveries(&feed(&mut n, &topics.outcomes, &o, 62_500)).len(),
        1
    );
}

#[test]
fn a_late_running_state_does_not_overwrite_the_final_commit_status() {
    let topics = Topics::default();
    let mut n =
        Notify::new(topics.clone(), vec![]).with_commit_statuses(vec![CiPlatform::GithubActions]);
    let ci = CiRef {
        event_id: "e".into(),
        platform: "github_actions".into(),
        status: "failure".into(),
        pipeline: "CodeQL".into(),
        job: None,
        url: None,
        commit_sha: Some("3484a3fb816e0859fd6e1cea078d76385ff50625".into()),
        repository: Some("Codertocat/Hello-World".into()),
        run_id: Some("30433642".into()),
        job_id: None,
    };
    let outcome = RecoveryOutcome {
        ci: Some(ci.clone()),
        ..outcome()
    };
    let actions = feed(&mut n, &topics.outcomes, &outcome, 9);
    let states: Vec<CommitState> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Execute(EffectRequest::CommitStatus { state, .. }) => Some(*state),
            _ => None,
        })
        .collect();
    assert_eq!(states, [CommitState::Success]);
    let state = RecoveryState {
        recovery_id: outcome.recovery_id.clone(),
        failure_id: outcome.failure_id.clone(),
        deployment_key: outcome.deployment_key.clone(),
        status: RecoveryStatus::Running,
        ci: Some(ci),
        ..waiting("gate")
    };
    assert!(
        feed(&mut n, &topics.state, &state, 10).is_empty(),
        "no pending after success"
    );
}

/// A paging channel's `min_severity` keeps minor failures from paging, but
/// not the success that resolves an open page: the later recovery of the
/// deployment may be about a milder failure than the one that paged.
#[test]
fn a_paging_channel_hears_every_success_of_its_deployments() {
    let topics = Topics::default();
    let pager = Channel {
        kind: ChannelKind::Pagerduty,
        min_severity: Some(Severity::Critical),
        ..channel("pager")
    };
    let chat = Channel {
        min_severity: Some(Severity::Critical),
        ..channel("chat")
    };
    let mut n = Notify::new(topics.clone(), vec![pager, chat]);
    let done = feed(&mut n, &topics.outcomes, &outcome(), 6);
    let channels: Vec<String> = deliveries(&done).into_iter().map(|(c, _)| c).collect();
    assert_eq!(channels, ["pager"], "a medium-severity success");
    let failed = RecoveryOutcome {
        recovery_id: "web/staging#2".into(),
        outcome: Outcome::Failed,
        ..outcome()
    };
    let quiet = feed(&mut n, &topics.outcomes, &failed, 7);
    assert!(
        deliveries(&quiet).is_empty(),
        "a medium-severity failure pages nobody"
    );
}
