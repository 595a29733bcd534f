//! The first remedy medic plans for real failures it has never seen,
//! against the remedy that fixed each one according to its source
//! (`tests/data/corpus/remedies.jsonl`: the maintainer's diagnosis or the fix
//! the reporter confirmed, quoted, for dev items only).
//!
//! Each labelled dev item goes through the categorize stage as medic
//! receives it (as `tests/corpus_quality.rs` does), the failure it reports is
//! planned by the built-in policy, and the first acting step of the plan's
//! expected path is reduced to a remedy kind ([`kind_of`]). The figure is how
//! often that kind is the source's. `docs/strategies.md` ("Shown on real
//! failures") quotes what this prints (`cargo test --release --test
//! remedy_quality -- --nocapture`).

#[path = "common/corpus.rs"]
mod corpus;

use corpus::Delivery;
use medic::domain::*;
use medic::stages::decide::program::expected_path;
use medic::stages::decide::Decide;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The remedy kinds of the labels, in report order.
const KINDS: &[&str] = &[
    "retry",
    "wait",
    "rollback",
    "scale",
    "restart",
    "clean_up",
    "renew",
    "fix_config",
    "contain",
    "notify_only",
];

/// The share of labelled items whose first planned remedy is the source's
/// may not drop below this (set from what the policy reaches).
const FLOOR: f64 = 0.25;

/// One label; the fields are documented in `tests/data/corpus/README.md`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Label {
    id: String,
    remedy: String,
    action: String,
    quote: String,
    by: String,
    remedy_source: String,
}

fn labels() -> Vec<Label> {
    let path = format!(
        "{}/tests/data/corpus/remedies.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}", n + 1)))
        .collect()
}

/// Steps that announce, wait or ask rather than change something.
const NOT_ACTING: &[&str] = &["notify", "wait", "gate", "end", "condition", "parallel"];

/// The remedy kind of a plan: its first acting step, read as the labels'
/// kinds are defined. A retry held back two minutes or more is `wait` (back
/// off until a rate limit resets, let a pending release finish); a shorter
/// back-off before it is still a retry ("retried with back-off"); reverting in
/// `configuration_fix` is how medic fixes a configuration (TAXONOMY: "fix
/// or revert the config"); a failover re-runs against a mirror; the steps
/// that cut traffic or writes contain; a plan that acts on nothing and
/// escalates or only notifies leaves it to a person.
fn kind_of(strategy: &str, path: &[&PlanStep]) -> &'static str {
    let first = path
        .iter()
        .skip(1)
        .position(|s| !NOT_ACTING.contains(&s.action.as_str()));
    let Some(i) = first.map(|i| i + 1) else {
        return "notify_only";
    };
    let waited = path[1..i]
        .iter()
        .any(|s| s.action == "wait" && s.timeout_ms >= WAIT_MS);
    match path[i].action.as_str() {
        "retry_deployment" | "failover" if waited => "wait",
        "retry_deployment" | "failover" => "retry",
        "rollback_deployment" if strategy == "configuration_fix" => "fix_config",
        "rollback_deployment" => "rollback",
        "scale_resources" => "scale",
        "restart_service" => "restart",
        "clear_cache" => "clean_up",
        "rotate_credentials" => "renew",
        "enable_circuit_breaker"
        | "isolate_component"
        | "enable_readonly_mode"
        | "shift_traffic" => "contain",
        _ => "notify_only",
    }
}

/// A wait at least this long before a retry makes the remedy `wait`.
const WAIT_MS: i64 = 120_000;

#[derive(Default)]
struct Tally {
    n: usize,
    matched: usize,
}

#[test]
fn the_first_planned_remedy_is_the_one_that_fixed_real_failures() {
    let labels = labels();
    let dev: BTreeMap<String, corpus::Item> = corpus::load("dev")
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    let mut seen = std::collections::HashSet::new();
    for l in &labels {
        assert!(dev.contains_key(&l.id), "{}: not a dev item", l.id);
        assert!(seen.insert(l.id.as_str()), "{}: labelled twice", l.id);
        assert!(
            KINDS.contains(&l.remedy.as_str()),
            "{}: kind {}",
            l.id,
            l.remedy
        );
        assert!(
            l.remedy_source.starts_with("https://"),
            "{}: source {}",
            l.id,
            l.remedy_source
        );
        assert!(
            !l.quote.trim().is_empty() && !l.action.trim().is_empty(),
            "{}: no quote or action",
            l.id
        );
        assert!(
            matches!(l.by.as_str(), "maintainer" | "reporter" | "other"),
            "{}: by {}",
            l.id,
            l.by
        );
    }
    let rules = medic::app::Rules::builtin();
    let decide = Decide::new(
        medic::topics::Topics::default(),
        medic::config::DecideConfig::default(),
        rules.policy.clone(),
    );
    let mut per_type: BTreeMap<String, Tally> = BTreeMap::new();
    let mut confusion: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut total = Tally::default();
    for l in &labels {
        let item = &dev[&l.id];
        let got = match corpus::failure(&rules.pack, item, Delivery::AsReceived) {
            None => "none",
            Some(mut f) => {
                // A runtime item is a deployed service's failure; a CI item
                // keeps the CI environment its webhook event gives it.
                if item.origin == "runtime" {
                    f.environment = "production".into();
                }
                let plan = decide.plan(&f, 1);
                kind_of(&plan.strategy, &expected_path(&plan.steps))
            }
        };
        let hit = got == l.remedy;
        for t in [
            per_type.entry(item.failure_type.to_string()).or_default(),
            &mut total,
        ] {
            t.n += 1;
            t.matched += usize::from(hit);
        }
        *confusion.entry((l.remedy.as_str(), got)).or_default() += 1;
    }
    let share = total.matched as f64 / total.n.max(1) as f64;
    let mut report = format!(
        "{} labelled dev items: the first planned remedy is the source's for {} ({share:.3})\n\n\
         type            items  matched  share\n",
        total.n, total.matched
    );
    for (t, s) in &per_type {
        report.push_str(&format!(
            "{t:<15} {:>5} {:>8} {:>6.3}\n",
            s.n,
            s.matched,
            s.matched as f64 / s.n as f64
        ));
    }
    report.push_str("\nsource's remedy (rows) against medic's first remedy (columns)\n");
    let columns: Vec<&str> = KINDS.iter().copied().chain(["none"]).collect();
    report.push_str(&format!("{:<12}", ""));
    for c in &columns {
        report.push_str(&format!("{:>7}", c.chars().take(6).collect::<String>()));
    }
    report.push('\n');
    for r in KINDS {
        report.push_str(&format!("{r:<12}"));
        for c in &columns {
            report.push_str(&format!("{:>7}", confusion.get(&(*r, *c)).unwrap_or(&0)));
        }
        report.push('\n');
    }
    println!("{report}");
    assert!(
        share >= FLOOR,
        "first planned remedy matches {share:.3} < {FLOOR}\n{report}"
    );
}
