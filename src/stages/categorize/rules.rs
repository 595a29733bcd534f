//! Rule packs: YAML rules compiled into one Aho-Corasick automaton.
//!
//! Every keyword of every rule goes into a single case-insensitive automaton,
//! built once; a line is scanned once whatever the number of rules. A rule's
//! optional regex runs only on lines where one of its keywords was found, to
//! confirm the match or pin down the exact text.

use crate::domain::{Component, FailureType, Severity};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;

/// The pack compiled into medic.
pub const DEFAULT_PACK: &str = include_str!("default_rules.yaml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PackFile {
    version: u32,
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    #[serde(rename = "type")]
    failure_type: String,
    keywords: Vec<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default = "default_weight")]
    weight: f64,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    components: Vec<Component>,
    #[serde(default)]
    transient: bool,
    #[serde(default)]
    critical: bool,
}

fn default_weight() -> f64 {
    1.0
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id, cited in evidence.
    pub id: String,
    /// The type this rule votes for.
    pub failure_type: FailureType,
    /// Confirming / extracting regex.
    pub regex: Option<Regex>,
    /// Vote weight.
    pub weight: f64,
    /// Severity the wording implies, if any.
    pub severity: Option<Severity>,
    /// Components the wording points at.
    pub components: Vec<Component>,
    /// Retrying unchanged may succeed.
    pub transient: bool,
    /// Forces critical severity in production.
    pub critical: bool,
}

/// A rule that fired on a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Index into [`RulePack::rules`].
    pub rule: usize,
    /// Byte span of the evidence in the line.
    pub start: usize,
    /// End of the span.
    pub end: usize,
}

/// A compiled rule pack.
#[derive(Debug, Clone)]
pub struct RulePack {
    rules: Vec<Rule>,
    automaton: AhoCorasick,
    /// Keyword index → rule index.
    keyword_rule: Vec<usize>,
    version: String,
}

/// Why a pack was refused. Always names the file, and the rule when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {}{reason}", rule.as_ref().map(|r| format!("rule {r}: ")).unwrap_or_default())]
pub struct PackError {
    /// Pack file.
    pub file: String,
    /// Offending rule id.
    pub rule: Option<String>,
    /// What is wrong.
    pub reason: String,
}

impl RulePack {
    /// The compiled-in default pack.
    pub fn default_pack() -> RulePack {
        // Compiled-in; `tests` below load it on every test run.
        RulePack::parse(DEFAULT_PACK, "default_rules.yaml")
            .unwrap_or_else(|e| panic!("the default rule pack is invalid: {e}"))
    }

    /// Parses and compiles a pack.
    pub fn parse(text: &str, file: &str) -> Result<RulePack, PackError> {
        let err = |rule: Option<&str>, reason: String| PackError {
            file: file.to_string(),
            rule: rule.map(str::to_string),
            reason,
        };
        let pack: PackFile = serde_yaml_ng::from_str(text).map_err(|e| err(None, e.to_string()))?;
        if pack.version != 1 {
            return Err(err(
                None,
                format!("unsupported pack version {}", pack.version),
            ));
        }
        let mut seen = HashSet::new();
        let mut rules = Vec::with_capacity(pack.rules.len());
        let mut keywords = Vec::new();
        let mut keyword_rule = Vec::new();
        for raw in pack.rules {
            let id = raw.id.as_str();
            if !seen.insert(raw.id.clone()) {
                return Err(err(Some(id), "duplicate rule id".into()));
            }
            let failure_type: FailureType =
                raw.failure_type.parse().map_err(|e| err(Some(id), e))?;
            if raw.keywords.is_empty() {
                return Err(err(Some(id), "has no keywords".into()));
            }
            if !(raw.weight.is_finite() && raw.weight > 0.0) {
                return Err(err(
                    Some(id),
                    format!("weight {} must be positive", raw.weight),
                ));
            }
            for keyword in &raw.keywords {
                if keyword.trim().is_empty() {
                    return Err(err(Some(id), "empty keyword".into()));
                }
                keywords.push(keyword.clone());
                keyword_rule.push(rules.len());
            }
            let regex = raw
                .regex
                .as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| err(Some(id), format!("invalid regex: {e}")))?;
            rules.push(Rule {
                id: raw.id,
                failure_type,
                regex,
                weight: raw.weight,
                severity: raw.severity,
                components: raw.components,
                transient: raw.transient,
                critical: raw.critical,
            });
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .map_err(|e| err(None, format!("cannot build the keyword automaton: {e}")))?;
        let digest = Sha256::digest(text.as_bytes());
        let version = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        Ok(RulePack {
            rules,
            automaton,
            keyword_rule,
            version,
        })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Short hash of the pack text, carried by every result.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every rule that fires on `line`, once per rule, with its evidence span.
    pub fn scan(&self, line: &str) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        let mut checked_regex: Vec<usize> = Vec::new();
        for m in self.automaton.find_overlapping_iter(line) {
            let rule_index = self.keyword_rule[m.pattern().as_usize()];
            if hits.iter().any(|h| h.rule == rule_index) || checked_regex.contains(&rule_index) {
                continue;
            }
            match &self.rules[rule_index].regex {
                None => hits.push(Hit {
                    rule: rule_index,
                    start: m.start(),
                    end: m.end(),
                }),
                Some(regex) => {
                    checked_regex.push(rule_index);
                    if let Some(r) = regex.find(line) {
                        hits.push(Hit {
                            rule: rule_index,
                            start: r.start(),
                            end: r.end(),
                        });
                    }
                }
            }
        }
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types_of(pack: &RulePack, line: &str) -> Vec<FailureType> {
        let mut t: Vec<_> = pack
            .scan(line)
            .iter()
            .map(|h| pack.rules()[h.rule].failure_type)
            .collect();
        t.dedup();
        t
    }

    #[test]
    fn the_default_pack_covers_every_type() {
        let pack = RulePack::default_pack();
        for t in FailureType::ALL {
            assert!(
                pack.rules().iter().any(|r| r.failure_type == *t),
                "no rule for {t}"
            );
        }
        assert_eq!(pack.version().len(), 12);
    }

    #[test]
    fn real_failure_text_gets_the_taxonomy_type() {
        let pack = RulePack::default_pack();
        for (line, want) in [
            ("Memory cgroup out of memory: Kill process 1012 (heapster) score 1035 or sacrifice child", FailureType::Resource),
            ("BUG: unable to handle kernel NULL pointer dereference at 0000000000000078", FailureType::Infrastructure),
            ("dial tcp 10.96.0.1:443: connect: network is unreachable", FailureType::Network),
            ("ERROR: Could not find a version that satisfies the requirement left-pad==9.9", FailureType::Dependency),
            ("Error: INSTALLATION FAILED: validation: chart.metadata.type must be application or library", FailureType::Configuration),
            ("x509: certificate has expired or is not yet valid", FailureType::Security),
            ("FAILED: Target database is not up to date.", FailureType::Data),
            ("rpc error: code = DeadlineExceeded desc = context deadline exceeded", FailureType::Timing),
            ("Back-off restarting failed container checkout in pod checkout-7d9f", FailureType::Application),
            ("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress", FailureType::HumanError),
        ] {
            assert_eq!(types_of(&pack, line), vec![want], "{line}");
        }
    }

    #[test]
    fn matching_ignores_case_and_regexes_confirm() {
        let pack = RulePack::default_pack();
        assert_eq!(types_of(&pack, "OOMKILLED"), vec![FailureType::Resource]);
        // "does not exist" alone is not a data failure; the relation wording is.
        assert!(types_of(&pack, "the file does not exist").is_empty());
        let hits = pack.scan("ERROR: relation \"orders\" does not exist");
        let rule = &pack.rules()[hits[0].rule];
        assert_eq!(rule.id, "data.missing-relation");
        assert_eq!(
            &"ERROR: relation \"orders\" does not exist"[hits[0].start..hits[0].end],
            "relation \"orders\" does not exist"
        );
    }

    #[test]
    fn bad_packs_name_the_file_the_rule_and_the_reason() {
        let cases = [
            ("version: 1\nrules:\n  - {id: a, type: resource, keywords: []}\n", "rule a: has no keywords"),
            ("version: 1\nrules:\n  - {id: a, type: resource, keywords: [\" \"]}\n", "rule a: empty keyword"),
            ("version: 1\nrules:\n  - {id: a, type: weather, keywords: [x]}\n", "rule a: unknown FailureType 'weather'"),
            ("version: 1\nrules:\n  - {id: a, type: data, keywords: [x], regex: \"(\"}\n", "rule a: invalid regex"),
            ("version: 1\nrules:\n  - {id: a, type: data, keywords: [x]}\n  - {id: a, type: data, keywords: [y]}\n", "rule a: duplicate rule id"),
        ];
        for (text, want) in cases {
            let err = RulePack::parse(text, "team.yaml").unwrap_err().to_string();
            assert!(
                err.starts_with("team.yaml: ") && err.contains(want),
                "{err}"
            );
        }
    }
}
