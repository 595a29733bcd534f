//! Against a real Kafka-protocol broker (`MEDIC_TEST_BROKERS`, started by
//! `.ci/run`), at-least-once: brokers like Tansu have no transactions.
//! Skipped, with a message, when the variable is unset.

mod common;

use common::*;
use medic::demo;
use medic::kafka::admin;
use medic::stages::StageName;
use medic::topics::Topics;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use std::time::Duration;

#[test]
fn topics_apply_is_idempotent_and_reports_drift() {
    let Some(c) = real("apply") else { return };
    let again = c
        .runtime
        .block_on(admin::apply(&c.settings, &c.topics))
        .expect("second apply");
    assert!(again.created.is_empty(), "{again:?}");
    assert!(again.drift.is_empty(), "{again:?}");
    assert_eq!(again.unchanged.len(), c.topics.all().len());

    // Someone created two topics by hand, wrongly.
    let prefix = unique_prefix("drift");
    let topics = Topics::new(&prefix);
    let admin_client: AdminClient<DefaultClientContext> =
        c.settings.base().create().expect("admin");
    let wrong = [
        NewTopic::new(&topics.signals, 3, TopicReplication::Fixed(1))
            .set("cleanup.policy", "delete")
            .set("retention.ms", "259200000"),
        NewTopic::new(&topics.state, 6, TopicReplication::Fixed(1)).set("cleanup.policy", "delete"),
    ];
    let created = c
        .runtime
        .block_on(admin_client.create_topics(&wrong, &AdminOptions::new()))
        .expect("create");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let report = c
        .runtime
        .block_on(admin::apply(&c.settings, &topics))
        .expect("apply");
    let drift: Vec<String> = report.drift.iter().map(ToString::to_string).collect();
    assert!(
        drift.contains(&format!(
            "{}: partition count is 3 on the cluster, 6 in topics/",
            topics.signals
        )),
        "{drift:?}"
    );
    assert!(
        drift.contains(&format!(
            "{}: cleanup.policy is delete on the cluster, compact in topics/",
            topics.state
        )),
        "{drift:?}"
    );
    assert_eq!(report.created.len(), topics.all().len() - 2);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("co-partition group deployment-signals")),
        "{:?}",
        report.warnings
    );
}

#[test]
fn the_demo_feed_runs_end_to_end_at_least_once() {
    let Some(c) = real("e2e") else { return };
    let running = c.start(&StageName::ALL);
    let settings = c.settings.clone();
    let mut printed = Vec::new();
    let report = c
        .runtime
        .block_on(demo::drive(
            &settings,
            &c.topics,
            &c.config,
            Duration::from_secs(150),
            &mut printed,
        ))
        .expect("demo ran");
    for result in running.stop() {
        assert!(result.is_ok(), "{result:?}");
    }
    assert!(
        report.problems.is_empty(),
        "{:?}\n{}",
        report.problems,
        String::from_utf8_lossy(&printed)
    );
    assert_eq!(report.outcomes.len(), 10);
}
