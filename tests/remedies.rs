//! The built-in policy against the table in `docs/strategies.md` ("The
//! first remedy for each cause"): every row is planned, and the strategy
//! and the first acting step must be the ones the table names.

use medic::domain::*;
use medic::stages::decide::program::expected_path;
use medic::stages::decide::Decide;
use std::sync::Arc;

/// Steps that announce, wait or ask rather than change something.
const NOT_ACTING: &[&str] = &["notify", "wait", "gate", "end", "condition", "parallel"];

struct Row {
    failure_type: FailureType,
    situation: String,
    evidence: String,
    strategy: String,
    first: String,
}

fn rows() -> Vec<Row> {
    let doc = std::fs::read_to_string(format!("{}/docs/strategies.md", env!("CARGO_MANIFEST_DIR")))
        .expect("docs/strategies.md");
    let begin = doc.find("<!-- remedies: begin -->").expect("table start");
    let end = doc.find("<!-- remedies: end -->").expect("table end");
    doc[begin..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| type ") && !l.starts_with("|---"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            assert_eq!(cells.len(), 7, "{l}");
            Row {
                failure_type: cells[0].parse().expect("a failure type"),
                situation: cells[1].clone(),
                evidence: cells[2].clone(),
                strategy: cells[3].clone(),
                first: cells[4].split_whitespace().next().unwrap_or("").to_string(),
            }
        })
        .collect()
}

fn failure(row: &Row) -> CategorizedFailure {
    let mut f: CategorizedFailure =
        serde_json::from_str(include_str!("../schemas/examples/CategorizedFailure.json"))
            .expect("example");
    f.failure_type = row.failure_type;
    f.severity = Severity::Medium;
    f.environment = "staging".into();
    f.service = "checkout".into();
    f.deployment_key = "checkout/staging".into();
    f.transient = row.evidence == "transient";
    let template = f
        .evidence
        .first()
        .cloned()
        .expect("the example has evidence");
    f.evidence = match row.evidence.as_str() {
        "—" | "transient" => Vec::new(),
        rule => vec![Evidence {
            rule_id: rule.into(),
            failure_type: row.failure_type,
            ..template
        }],
    };
    f
}

#[test]
fn the_built_in_policy_gives_each_cause_the_remedy_the_table_names() {
    let rows = rows();
    assert!(rows.len() >= 20, "{} rows", rows.len());
    for t in FailureType::ALL {
        assert!(
            rows.iter().any(|r| r.failure_type == *t),
            "the table has no row for {t}"
        );
    }
    let rules = medic::app::Rules::builtin();
    let decide = Decide::new(
        medic::topics::Topics::default(),
        medic::config::DecideConfig::default(),
        rules.policy.clone(),
    );
    let known: Vec<&str> = rules.pack.rules().iter().map(|r| r.id.as_str()).collect();
    let mut wrong = Vec::new();
    for row in &rows {
        if !matches!(row.evidence.as_str(), "—" | "transient") {
            assert!(
                known.contains(&row.evidence.as_str()),
                "{}: no rule {} in the default pack",
                row.situation,
                row.evidence
            );
        }
        let plan = decide.plan(&failure(row), 1);
        let path: Vec<&str> = expected_path(&plan.steps)
            .iter()
            .map(|s| s.action.as_str())
            .collect();
        let first = path
            .iter()
            .skip(1)
            .find(|a| !NOT_ACTING.contains(a))
            .copied()
            .unwrap_or("notify");
        if plan.strategy != row.strategy || first != row.first {
            wrong.push(format!(
                "{} / {}: want {} then {}, got {} then {first} ({path:?})",
                row.failure_type, row.situation, row.strategy, row.first, plan.strategy
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// With two strategies for a type, one that keeps failing gives way to the
/// other instead of only being gated.
#[test]
fn a_dedicated_strategy_that_keeps_failing_gives_way_to_its_neighbour() {
    let rules = medic::app::Rules::builtin();
    let mut decide = Decide::new(
        medic::topics::Topics::default(),
        medic::config::DecideConfig::default(),
        Arc::clone(&rules.policy),
    );
    let row = Row {
        failure_type: FailureType::Dependency,
        situation: String::new(),
        evidence: "—".into(),
        strategy: String::new(),
        first: String::new(),
    };
    let f = failure(&row);
    assert_eq!(decide.plan(&f, 1).strategy, "dependency_recovery");
    let example: RecoveryOutcome =
        serde_json::from_str(include_str!("../schemas/examples/RecoveryOutcome.json"))
            .expect("example");
    for i in 0..4 {
        let failed = RecoveryOutcome {
            recovery_id: format!("checkout/staging#{i}"),
            strategy: "dependency_recovery".into(),
            failure_type: FailureType::Dependency,
            outcome: Outcome::Failed,
            dry_run: false,
            simulated_steps: Vec::new(),
            ..example.clone()
        };
        decide.learn(&failed, 1);
    }
    let plan = decide.plan(&f, 2);
    assert_eq!(plan.strategy, "network_recovery", "{:?}", plan.candidates);
}
