//! Pictures of a strategy's tree: Mermaid flowcharts and Graphviz DOT.
//!
//! Node shapes tell the types apart (action: box, condition: diamond, gate:
//! hexagon, parallel: double-bordered box, wait: stadium/ellipse, terminal:
//! circle) and every edge is labelled with the branch it stands for.

use super::policy::{Node, Strategy};
use super::tree::{describe, value_text};

/// Picture formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Mermaid `flowchart`.
    Mermaid,
    /// Graphviz `digraph`.
    Dot,
}

/// The one-line label of a node.
pub fn label(id: &str, node: &Node) -> String {
    let what = match node {
        Node::Action { action, params, .. } => {
            let params: Vec<String> = params
                .iter()
                .map(|(k, v)| format!("{k}={}", value_text(v)))
                .collect();
            if params.is_empty() {
                action.clone()
            } else {
                format!("{action} ({})", params.join(", "))
            }
        }
        Node::Condition { check, .. } => format!("{}?", describe(check)),
        Node::Gate { timeout_secs, .. } => {
            format!("approval, waits {} s", timeout_secs.unwrap_or(0))
        }
        Node::Parallel { join, .. } => format!("together, join {}", join.as_str()),
        Node::Wait {
            delay_secs, until, ..
        } => match (delay_secs, until) {
            (Some(d), _) => format!("wait {d} s"),
            (None, Some(c)) => format!("wait until {}", describe(c)),
            (None, None) => "wait".into(),
        },
        Node::Terminal { outcome, message } => format!("{}, {message}", outcome.as_str()),
    };
    format!("{id}: {what}")
}

/// Draws `strategy` in `format`.
pub fn render(strategy: &Strategy, format: Format) -> String {
    let index = |id: &str| strategy.nodes.keys().position(|k| k == id).unwrap_or(0);
    let mut out = String::new();
    match format {
        Format::Mermaid => {
            out.push_str("flowchart TD\n");
            for (i, (id, node)) in strategy.nodes.iter().enumerate() {
                let text = mermaid_text(&label(id, node));
                let (open, close) = match node {
                    Node::Action { .. } => ("[\"", "\"]"),
                    Node::Condition { .. } => ("{\"", "\"}"),
                    Node::Gate { .. } => ("{{\"", "\"}}"),
                    Node::Parallel { .. } => ("[[\"", "\"]]"),
                    Node::Wait { .. } => ("([\"", "\"])"),
                    Node::Terminal { .. } => ("((\"", "\"))"),
                };
                out.push_str(&format!("    n{i}{open}{text}{close}\n"));
            }
            out.push_str(&format!(
                "    start((start)) --> n{}\n",
                index(&strategy.root)
            ));
            for (i, node) in strategy.nodes.values().enumerate() {
                for (edge, to) in node.edges() {
                    let arrow = if edge == "branch" { "-.->" } else { "-->" };
                    out.push_str(&format!("    n{i} {arrow}|{edge}| n{}\n", index(to)));
                }
            }
        }
        Format::Dot => {
            out.push_str(&format!("digraph \"{}\" {{\n", dot_text(&strategy.id)));
            out.push_str("    rankdir=TB;\n    node [fontname=\"Helvetica\"];\n");
            out.push_str("    start [shape=point];\n");
            for (i, (id, node)) in strategy.nodes.iter().enumerate() {
                let shape = match node {
                    Node::Action { .. } => "box",
                    Node::Condition { .. } => "diamond",
                    Node::Gate { .. } => "hexagon",
                    Node::Parallel { .. } => "box, peripheries=2",
                    Node::Wait { .. } => "ellipse",
                    Node::Terminal { .. } => "doublecircle",
                };
                out.push_str(&format!(
                    "    n{i} [shape={shape}, label=\"{}\"];\n",
                    dot_text(&label(id, node))
                ));
            }
            out.push_str(&format!("    start -> n{};\n", index(&strategy.root)));
            for (i, node) in strategy.nodes.values().enumerate() {
                for (edge, to) in node.edges() {
                    let style = if edge == "branch" {
                        ", style=dashed"
                    } else {
                        ""
                    };
                    out.push_str(&format!(
                        "    n{i} -> n{} [label=\"{edge}\"{style}];\n",
                        index(to)
                    ));
                }
            }
            out.push_str("}\n");
        }
    }
    out
}

/// Text safe inside a quoted Mermaid label.
fn mermaid_text(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// Text safe inside a quoted DOT string.
fn dot_text(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Marks the start of the generated part of `docs/strategies.md`.
pub const DOCS_BEGIN: &str = "<!-- generated by `medic strategies docs`: do not edit below -->";
/// Marks its end.
pub const DOCS_END: &str = "<!-- end of generated part -->";

/// The generated part of `docs/strategies.md`: every strategy of `policy`
/// with what it applies to, its numbers and its tree as a Mermaid diagram.
pub fn docs(policy: &super::policy::Policy) -> String {
    let mut out = format!("{DOCS_BEGIN}\n");
    for s in policy.strategies() {
        let list = |v: Vec<String>| {
            if v.is_empty() {
                "any".to_string()
            } else {
                v.join(", ")
            }
        };
        let a = &s.applies_to;
        out.push_str(&format!(
            "\n### {} (`{}`)\n\n| applies to | |\n|---|---|\n| types | {} |\n| severities | {} |\n| components | {} |\n| environments | {} |\n| estimated duration | {} min |\n| prior success rate | {:.0} % |\n\n```mermaid\n{}```\n",
            s.name,
            s.id,
            list(a.types.iter().map(|t| t.to_string()).collect()),
            list(a.severities.iter().map(|t| t.to_string()).collect()),
            list(a.components.iter().map(|t| t.to_string()).collect()),
            list(a.environments.clone()),
            s.estimated_duration_minutes,
            s.prior_success_rate * 100.0,
            render(s, Format::Mermaid)
        ));
    }
    out.push_str(&format!("\n{DOCS_END}\n"));
    out
}

/// A plan in words, as `medic plan` prints it: the category, the strategy
/// and the candidates it beat, the decision path with what each decision
/// read, and the steps.
pub fn explain(
    failure: &crate::domain::CategorizedFailure,
    plan: &crate::domain::RecoveryPlan,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "category   {} {} (confidence {:.2}, {}, transient {})",
        failure.severity,
        failure.failure_type,
        failure.confidence,
        failure.environment,
        if failure.transient { "yes" } else { "no" }
    );
    let _ = writeln!(out, "strategy   {}", plan.strategy);
    let _ = writeln!(
        out,
        "approval   {}",
        if plan.requires_approval {
            "required"
        } else {
            "not required"
        }
    );
    let _ = writeln!(
        out,
        "ends       {}",
        plan.terminal.as_deref().unwrap_or("-")
    );
    let _ = writeln!(out, "policy     {}", plan.policy_version);
    if !plan.candidates.is_empty() {
        let _ = writeln!(out, "\ncandidates");
        for c in &plan.candidates {
            let mark = if c.verdict == "chosen" {
                "chosen  "
            } else {
                "rejected"
            };
            let _ = writeln!(out, "  {mark} {:<26} {}", c.strategy, c.verdict);
        }
    }
    let _ = writeln!(out, "\ndecision path");
    for (i, d) in plan.decision_path.iter().enumerate() {
        let inputs: Vec<String> = d.inputs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "  {:>2}. {:<20} {}", i + 1, d.node, d.question);
        let _ = writeln!(out, "      {:<20} {}", "", d.answer);
        if !inputs.is_empty() {
            let _ = writeln!(out, "      {:<20} read {}", "", inputs.join(", "));
        }
    }
    let _ = writeln!(
        out,
        "\nprogram ({} nodes; * = expected path: every action succeeds, every check passes)",
        plan.steps.len()
    );
    let expected: Vec<i32> = super::program::expected_path(&plan.steps)
        .iter()
        .map(|s| s.index)
        .collect();
    for s in &plan.steps {
        let params: Vec<String> = s.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(
            out,
            "{} {:>2}. {:<18} {:<22} {}",
            if expected.contains(&s.index) {
                "*"
            } else {
                " "
            },
            s.index,
            s.phase.as_str(),
            s.action,
            params.join(" ")
        );
    }
    out
}
