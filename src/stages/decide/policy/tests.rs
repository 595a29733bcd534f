use super::*;

fn strategy(nodes: &str) -> String {
    format!(
            "version: 1\nstrategies:\n  - id: s\n    name: S\n    estimated_duration_minutes: 5\n    prior_success_rate: 0.5\n    root: a\n    nodes:\n{nodes}"
        )
}

fn refused(nodes: &str) -> PolicyError {
    Policy::load(&[("user.yaml".into(), strategy(nodes))]).expect_err("refused")
}

const END: &str = "      end: {type: terminal, outcome: resolved, message: done}\n";

#[test]
fn the_built_in_policy_keeps_the_original_six_and_adds_four() {
    let p = Policy::default_policy();
    let ids: Vec<&str> = p.strategies().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "infrastructure_recovery",
            "application_recovery",
            "database_recovery",
            "configuration_fix",
            "security_response",
            "network_recovery",
            "dependency_recovery",
            "timing_recovery",
            "human_error_response",
            "resource_recovery",
        ]
    );
    let priors: Vec<f64> = p
        .strategies()
        .iter()
        .map(|s| s.prior_success_rate)
        .collect();
    assert_eq!(
        priors,
        [0.85, 0.75, 0.80, 0.90, 0.70, 0.80, 0.85, 0.80, 0.92, 0.88]
    );
    let kinds: BTreeSet<&str> = p
        .strategies()
        .iter()
        .flat_map(|s| s.nodes.values().map(Node::kind))
        .collect();
    assert_eq!(
        kinds.len(),
        6,
        "the built-ins use every node type: {kinds:?}"
    );
}

#[test]
fn a_user_file_replaces_a_strategy_by_id_and_changes_the_version() {
    let base = Policy::default_policy();
    let text = strategy(&format!(
        "      a: {{type: action, action: notify, next: end}}\n{END}"
    ))
    .replace("id: s", "id: network_recovery");
    let p = Policy::load(&[("user.yaml".into(), text)]).expect("valid");
    assert_eq!(p.strategies().len(), base.strategies().len());
    let s = p.strategy("network_recovery").expect("replaced");
    assert_eq!((s.name.as_str(), s.file.as_str()), ("S", "user.yaml"));
    assert_ne!(p.version(), base.version());
}

#[test]
fn every_error_names_file_strategy_and_node() {
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
            ("      a: {type: action, action: notify, next: nowhere}\n", "unknown node 'nowhere'", Some("a"), "unknown reference"),
            (
                "      a: {type: action, action: notify, next: b}\n      b: {type: action, action: notify, next: a}\n",
                "cycle: a -> b -> a",
                None,
                "cycle",
            ),
            (
                &format!("      a: {{type: action, action: notify, next: end}}\n      orphan: {{type: terminal, outcome: failed, message: x}}\n{END}"),
                "unreachable from root 'a'",
                Some("orphan"),
                "unreachable",
            ),
            ("      a: {type: action, action: notify}\n", "without a terminal", Some("a"), "dead end"),
            (&format!("      a: {{type: gate, on_timeout: end, next: end}}\n{END}"), "timeout_secs above 0", Some("a"), "gate without timeout"),
            (&format!("      a: {{type: gate, timeout_secs: 60, next: end}}\n{END}"), "needs on_timeout", Some("a"), "gate without timeout branch"),
            (&format!("      a: {{type: action, action: reboot_datacenter, next: end}}\n{END}"), "unknown action 'reboot_datacenter'", Some("a"), "unknown action"),
            (
                &format!("      a: {{type: action, action: scale_resources, params: {{max_replicas: many}}, next: end}}\n{END}"),
                "parameter 'max_replicas' of scale_resources must be Int",
                Some("a"),
                "wrong parameter type",
            ),
            (&format!("      a: {{type: action, action: notify, params: {{colour: red}}, next: end}}\n{END}"), "notify has no parameter 'colour'", Some("a"), "unknown parameter"),
            (
                &format!("      a: {{type: condition, check: {{field: severity, at_least: apocalyptic}}, on_true: end, on_false: end}}\n{END}"),
                "severity cannot be compared with apocalyptic",
                Some("a"),
                "bad field value",
            ),
            (
                &format!("      a: {{type: condition, check: {{field: severity, health_check: readiness, at_least: high}}, on_true: end, on_false: end}}\n{END}"),
                "exactly one of",
                Some("a"),
                "two checks",
            ),
            (
                &format!("      a: {{type: wait, until: {{metric: lag, below: 5}}, next: end}}\n{END}"),
                "deadline_secs and on_deadline",
                Some("a"),
                "wait without deadline",
            ),
            (
                &format!("      a: {{type: parallel, branches: [x, y], next: end}}\n      x: {{type: action, action: notify, next: end}}\n      y: {{type: action, action: notify}}\n{END}"),
                "branch 'x' must be an action without next",
                Some("a"),
                "parallel branch that goes on",
            ),
        ];
    let branch_as_next = "      a: {type: parallel, branches: [x, y], join: any, next: x}\n      x: {type: action, action: clear_cache}\n      y: {type: action, action: notify}\n";
    let cases: Vec<(&str, &str, Option<&str>, &str)> = cases
        .iter()
        .copied()
        .chain([(
            branch_as_next,
            "'x' is a parallel branch; only its parallel node may lead to it",
            Some("a"),
            "parallel that goes on into its own branch (found by the property test)",
        )])
        .collect();
    for (nodes, reason, node, what) in &cases {
        let e = refused(nodes);
        assert_eq!(e.file, "user.yaml", "{what}");
        assert_eq!(e.strategy.as_deref(), Some("s"), "{what}");
        assert_eq!(e.node.as_deref(), *node, "{what}: {e}");
        assert!(e.reason.contains(reason), "{what}: {e}");
        assert!(e.to_string().starts_with("user.yaml: strategy s: "), "{e}");
    }
}

#[test]
fn file_level_errors_name_the_file() {
    let e = Policy::load(&[("bad.yaml".into(), "version: 2\nstrategies: []\n".into())])
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        "bad.yaml: unsupported policy version 2 (this medic reads version 1)"
    );
    let e = Policy::load(&[("typo.yaml".into(), strategy(END).replace("root:", "roots:"))])
        .expect_err("refused");
    assert!(e.to_string().starts_with("typo.yaml: "), "{e}");
    assert!(e.reason.contains("roots"), "{e}");
    let twice = format!("{}{}", strategy(&format!("      a: {{type: action, action: notify, next: end}}\n{END}")), "  - id: s\n    name: again\n    estimated_duration_minutes: 1\n    prior_success_rate: 0.5\n    root: end\n    nodes:\n      end: {type: terminal, outcome: failed, message: x}\n");
    let e = Policy::load(&[("dup.yaml".into(), twice)]).expect_err("refused");
    assert_eq!(e.to_string(), "dup.yaml: strategy s: duplicate strategy id");
}
