//! Recovery policy as an operator meets it: `medic plan`, `medic strategies`,
//! `medic simulate`, and the generated strategy docs.

use medic::app::Rules;
use medic::config::DecideConfig;
use medic::stages::decide::policy::Policy;
use medic::stages::decide::render;
use medic::stages::decide::simulate::{self, parse_line};
use std::process::{Command, Output};
use std::sync::Arc;

fn medic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_medic"))
        .args(args)
        .env_remove("MEDIC_CONFIG")
        .output()
        .expect("runs")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const NEXT: &str = "tests/data/simulate/policy-next";
const RECORDED: &str = "tests/data/simulate/recorded.jsonl";

#[test]
fn docs_strategies_md_shows_the_current_built_in_trees() {
    let doc = std::fs::read_to_string("docs/strategies.md").expect("docs/strategies.md");
    let begin = doc.find(render::DOCS_BEGIN).expect("generated part starts");
    let end = doc.find(render::DOCS_END).expect("generated part ends") + render::DOCS_END.len();
    let want = render::docs(&Policy::default_policy());
    assert!(
        doc[begin..=end] == want,
        "docs/strategies.md is out of date: replace its generated part with the output of \
         `cargo run -- strategies docs`"
    );
    for id in [
        "infrastructure_recovery",
        "security_response",
        "network_recovery",
    ] {
        assert!(doc.contains(&format!("(`{id}`)\n")), "{id} is documented");
    }
}

#[test]
fn plan_explains_category_strategy_candidates_and_path() {
    let out = medic(&[
        "plan",
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "--environment",
        "production",
    ]);
    assert!(out.status.success(), "{out:?}");
    let t = text(&out);
    for want in [
        "category   high application",
        "strategy   application_recovery",
        "approval   required",
        "rejected infrastructure_recovery    not for application failures",
        "yes: production requires approval",
        "May rollback_deployment run without a human's approval?",
        "read transient=false",
        "rollback_deployment",
        "ends       resolved",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    let staging = text(&medic(&[
        "plan",
        "panic: runtime error: invalid memory address or nil pointer dereference",
        "--environment",
        "staging",
    ]));
    assert!(staging.contains("approval   not required"), "{staging}");

    let json = medic(&[
        "plan",
        "x509: certificate has expired or is not yet valid",
        "--json",
    ]);
    let plan: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON plan");
    assert_eq!(plan["strategy"], "security_response");
    assert_eq!(plan["policy_version"], Policy::default_policy().version());

    let nothing = text(&medic(&["plan", "deployment finished successfully"]));
    assert!(nothing.starts_with("no rule matched"), "{nothing}");
}

#[test]
fn render_draws_every_node_and_edge_in_both_formats() {
    let policy = Policy::default_policy();
    for s in policy.strategies() {
        let edges: usize = s.nodes.values().map(|n| n.edges().len()).sum();
        let dot = text(&medic(&["strategies", "render", &s.id, "--format", "dot"]));
        assert!(
            dot.starts_with(&format!("digraph \"{}\" {{", s.id)),
            "{dot}"
        );
        assert_eq!(dot.matches("[shape=").count(), s.nodes.len() + 1, "{dot}");
        assert_eq!(dot.matches(" -> ").count(), edges + 1, "{dot}");
        let mermaid = text(&medic(&["strategies", "render", &s.id]));
        assert!(mermaid.starts_with("flowchart TD\n"));
        assert_eq!(
            mermaid.matches("-->|").count() + mermaid.matches("-.->|").count(),
            edges
        );
    }
    let unknown = medic(&["strategies", "render", "nope"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr)
        .contains("no strategy 'nope' (known: infrastructure_recovery"));
}

#[test]
fn validate_and_config_refuse_a_broken_policy_with_file_strategy_and_node() {
    let dir = std::env::temp_dir().join(format!("medic-policy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nstrategies:\n  - id: quick\n    name: Quick\n    estimated_duration_minutes: 1\n    prior_success_rate: 0.5\n    root: a\n    nodes:\n      a: {type: gate, timeout_secs: 60, next: b}\n      b: {type: terminal, outcome: resolved, message: ok}\n",
    )
    .expect("write");
    let bad_path = bad.display().to_string();
    let out = medic(&["strategies", "validate", &bad_path]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{bad_path}: strategy quick: node a: a gate needs on_timeout"
        )),
        "{stderr}"
    );
    let config = dir.join("medic.yaml");
    std::fs::write(&config, format!("decide:\n  policy_files: [{bad_path}]\n")).expect("write");
    let out = medic(&["check-config", "--config", &config.display().to_string()]);
    assert!(!out.status.success(), "a bad policy stops medic at start");
    assert!(String::from_utf8_lossy(&out.stderr).contains("strategy quick: node a"));

    let ok = medic(&[
        "strategies",
        "validate",
        &format!("{NEXT}/application.yaml"),
    ]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(text(&ok).starts_with("ok: 10 strategies, policy version "));
}

#[test]
fn simulate_lists_the_plans_a_policy_change_would_change() {
    let out = medic(&["simulate", "--policy", NEXT, "--input", RECORDED]);
    assert!(out.status.success(), "{out:?}");
    let t = text(&out);
    let expected_head = "7 inputs: 5 failures, 1 matched no rule, 1 unreadable\n";
    assert!(t.starts_with(expected_head), "{t}");
    for want in [
        "2 of 5 plans would change: 1 another strategy, 1 another gate, 2 other actions",
        "line 1  checkout/production  application high\n  gate      approval  ->  none\n  actions   notify, rollback_deployment, run_health_check, notify  ->  notify, restart_service, run_health_check, notify\n",
        "line 2  search/staging  network medium\n  strategy  network_recovery  ->  network_staging_quick\n",
        "line 6: unreadable: invalid failure: unknown variant `meltdown`",
    ] {
        assert!(t.contains(want), "missing {want:?} in\n{t}");
    }
    assert!(
        !t.contains("line 3 "),
        "production network failures keep their plan"
    );

    let gate = medic(&[
        "simulate",
        "--policy",
        NEXT,
        "--input",
        RECORDED,
        "--json",
        "--fail-on-change",
    ]);
    assert_eq!(gate.status.code(), Some(3), "changes fail the check");
    let report: serde_json::Value = serde_json::from_slice(&gate.stdout).expect("JSON");
    assert_eq!(report["differences"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        report["differences"][1]["candidate"]["terminal"],
        "resolved"
    );

    let same = medic(&[
        "simulate",
        "--policy",
        "tests/data/simulate",
        "--input",
        RECORDED,
        "--fail-on-change",
    ]);
    assert!(
        same.status.success(),
        "a directory without policy files changes nothing"
    );
    assert!(text(&same).contains("no plan would change"));
}

/// Replays the 379 labelled real failure lines: the candidate changes
/// application and timing plans (restart instead of rollback) and nothing else.
#[test]
fn simulate_over_real_failure_lines_changes_only_what_the_policy_touches() {
    let rules = Rules::builtin();
    let candidate = Arc::new(Policy::load_dir(std::path::Path::new(NEXT)).expect("valid"));
    let corpus =
        std::fs::read_to_string("tests/data/categorization/labelled.jsonl").expect("corpus");
    let inputs: Vec<_> = corpus
        .lines()
        .enumerate()
        .filter_map(|(n, l)| parse_line(l).transpose().map(|r| (n + 1, r)))
        .collect();
    let report = simulate::simulate(
        &rules.pack,
        &DecideConfig::default(),
        rules.policy.clone(),
        candidate,
        inputs,
    );
    assert_eq!(report.inputs, 379);
    assert!(report.invalid.is_empty(), "{:?}", report.invalid);
    assert!(
        report.failures >= 330,
        "{} of 379 lines became failures",
        report.failures
    );
    assert!(!report.differences.is_empty());
    for d in &report.differences {
        assert!(
            matches!(d.failure_type.as_str(), "application" | "timing"),
            "environment 'unknown' is not staging, so only application plans change: {d:?}"
        );
        assert_eq!(d.current.strategy, d.candidate.strategy);
        assert!(
            d.current
                .actions
                .contains(&"rollback_deployment".to_string())
                || d.current.actions.contains(&"retry_deployment".to_string())
        );
    }
    let application = report.differences.len();
    assert_eq!(report.changed.get("actions").copied(), Some(application));
}
