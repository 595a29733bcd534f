//! Rule packs: YAML rules compiled into one Aho-Corasick automaton.
//!
//! Every keyword of every rule goes into a single case-insensitive automaton,
//! built once; a line is scanned once whatever the number of rules. A rule's
//! optional regex runs only on lines where one of its keywords was found, to
//! confirm the match or pin down the exact text.
//!
//! A pack file has four sections:
//!
//! * `rules` — typed rules: each votes for a failure type with a weight;
//! * `critical_patterns` — wording that makes a failure critical wherever it appears;
//! * `auto_recovery_patterns` — wording that marks a failure transient
//!   (retrying unchanged is expected to work);
//! * `ignore_patterns` — noise: a line matching one is dropped before any rule
//!   sees it (warnings that are not failures).
//!
//! The default pack is compiled in; user packs are applied after it in order.
//! An entry whose id already exists replaces it; `enabled: false` removes it.

use crate::domain::{Component, FailureType, Severity};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
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
    #[serde(default)]
    rules: Vec<RuleFile>,
    #[serde(default)]
    critical_patterns: Vec<PatternFile>,
    #[serde(default)]
    auto_recovery_patterns: Vec<PatternFile>,
    #[serde(default)]
    ignore_patterns: Vec<PatternFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    id: String,
    #[serde(rename = "type")]
    failure_type: Option<String>,
    #[serde(default)]
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
    #[serde(default = "yes")]
    enabled: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PatternFile {
    id: String,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default = "yes")]
    enabled: bool,
}

fn default_weight() -> f64 {
    1.0
}

fn yes() -> bool {
    true
}

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleKind {
    /// Votes for a failure type.
    Typed(FailureType),
    /// Makes the failure critical.
    Critical,
    /// Marks the failure transient.
    AutoRecovery,
    /// Drops the line.
    Ignore,
}

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique id, cited in evidence.
    pub id: String,
    /// What it does.
    pub kind: RuleKind,
    /// Confirming / extracting regex.
    pub regex: Option<Regex>,
    /// Vote weight (typed rules).
    pub weight: f64,
    /// Severity the wording implies, if any.
    pub severity: Option<Severity>,
    /// Components the wording points at.
    pub components: Vec<Component>,
    /// Retrying unchanged may succeed.
    pub transient: bool,
    /// The pack file the rule came from.
    pub file: String,
}

impl Rule {
    /// The type a typed rule votes for.
    pub fn failure_type(&self) -> Option<FailureType> {
        match self.kind {
            RuleKind::Typed(t) => Some(t),
            _ => None,
        }
    }
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
    /// Every keyword, in automaton pattern order.
    keywords: Vec<String>,
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

/// One entry before compilation, with where it came from.
struct Entry {
    raw: RuleFile,
    kind: Option<RuleKind>,
    file: String,
}

impl RulePack {
    /// The compiled-in default pack.
    pub fn default_pack() -> RulePack {
        // Compiled-in; the tests below load it on every test run.
        RulePack::load(&[]).unwrap_or_else(|e| panic!("the default rule pack is invalid: {e}"))
    }

    /// Parses and compiles one pack on its own.
    pub fn parse(text: &str, file: &str) -> Result<RulePack, PackError> {
        RulePack::build(&[(file.to_string(), text.to_string())])
    }

    /// The default pack with `user_packs` (`(file name, text)`) applied in order.
    pub fn load(user_packs: &[(String, String)]) -> Result<RulePack, PackError> {
        let mut packs = vec![("default_rules.yaml".to_string(), DEFAULT_PACK.to_string())];
        packs.extend(user_packs.iter().cloned());
        RulePack::build(&packs)
    }

    /// Reads user pack files from disk and loads them over the default pack.
    pub fn load_files(paths: &[std::path::PathBuf]) -> Result<RulePack, PackError> {
        let mut packs = Vec::with_capacity(paths.len());
        for path in paths {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|e| PackError {
                file: file.clone(),
                rule: None,
                reason: e.to_string(),
            })?;
            packs.push((file, text));
        }
        RulePack::load(&packs)
    }

    pub(crate) fn build(packs: &[(String, String)]) -> Result<RulePack, PackError> {
        let mut entries: Vec<Entry> = Vec::new();
        let mut digest = Sha256::new();
        for (file, text) in packs {
            digest.update(file.as_bytes());
            digest.update(text.as_bytes());
            let err = |rule: Option<&str>, reason: String| PackError {
                file: file.clone(),
                rule: rule.map(str::to_string),
                reason,
            };
            let pack: PackFile =
                serde_yaml_ng::from_str(text).map_err(|e| err(None, e.to_string()))?;
            if pack.version != 1 {
                return Err(err(
                    None,
                    format!(
                        "unsupported pack version {} (this medic reads version 1)",
                        pack.version
                    ),
                ));
            }
            let pattern = |p: PatternFile| RuleFile {
                id: p.id,
                failure_type: None,
                keywords: p.keywords,
                regex: p.regex,
                weight: 1.0,
                severity: None,
                components: Vec::new(),
                transient: false,
                enabled: p.enabled,
            };
            let mut in_file: Vec<(RuleFile, Option<RuleKind>)> = Vec::new();
            for r in pack.rules {
                let kind = match &r.failure_type {
                    Some(t) => Some(RuleKind::Typed(
                        t.parse::<FailureType>().map_err(|e| err(Some(&r.id), e))?,
                    )),
                    None if !r.enabled => None,
                    None => return Err(err(Some(&r.id), "has no type".into())),
                };
                in_file.push((r, kind));
            }
            for (list, kind) in [
                (pack.critical_patterns, RuleKind::Critical),
                (pack.auto_recovery_patterns, RuleKind::AutoRecovery),
                (pack.ignore_patterns, RuleKind::Ignore),
            ] {
                in_file.extend(list.into_iter().map(|p| (pattern(p), Some(kind))));
            }
            let mut seen = HashSet::new();
            for (raw, kind) in in_file {
                if !seen.insert(raw.id.clone()) {
                    return Err(err(Some(&raw.id), "duplicate rule id".into()));
                }
                let existing = entries.iter().position(|e| e.raw.id == raw.id);
                match (existing, raw.enabled) {
                    (Some(i), false) => {
                        entries.remove(i);
                    }
                    (None, false) => {
                        return Err(err(
                            Some(&raw.id),
                            "disables a rule that does not exist".into(),
                        ))
                    }
                    (Some(i), true) => {
                        entries[i] = Entry {
                            raw,
                            kind,
                            file: file.clone(),
                        }
                    }
                    (None, true) => entries.push(Entry {
                        raw,
                        kind,
                        file: file.clone(),
                    }),
                }
            }
        }
        let mut rules = Vec::with_capacity(entries.len());
        let mut keywords = Vec::new();
        let mut keyword_rule = Vec::new();
        for Entry { raw, kind, file } in entries {
            let err = |reason: String| PackError {
                file: file.clone(),
                rule: Some(raw.id.clone()),
                reason,
            };
            let kind = kind.ok_or_else(|| err("has no type".into()))?;
            if raw.keywords.is_empty() {
                return Err(err("has no keywords".into()));
            }
            if !(raw.weight.is_finite() && raw.weight > 0.0) {
                return Err(err(format!("weight {} must be positive", raw.weight)));
            }
            for keyword in &raw.keywords {
                if keyword.trim().is_empty() {
                    return Err(err("empty keyword".into()));
                }
                keywords.push(keyword.clone());
                keyword_rule.push(rules.len());
            }
            let regex = raw
                .regex
                .as_deref()
                .map(Regex::new)
                .transpose()
                .map_err(|e| err(format!("invalid regex: {e}")))?;
            rules.push(Rule {
                id: raw.id,
                kind,
                regex,
                weight: raw.weight,
                severity: raw.severity,
                components: raw.components,
                transient: raw.transient,
                file,
            });
        }
        // A DFA scans several times faster than the NFA aho-corasick picks on
        // its own above ~100 patterns; it costs memory, so fall back to the
        // automatic choice for very large packs.
        let build = |kind: Option<AhoCorasickKind>| {
            AhoCorasickBuilder::new()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::Standard)
                .kind(kind)
                .build(&keywords)
        };
        let automaton = build(Some(AhoCorasickKind::DFA))
            .or_else(|_| build(None))
            .map_err(|e| PackError {
                file: "(all packs)".into(),
                rule: None,
                reason: format!("cannot build the keyword automaton: {e}"),
            })?;
        let version = crate::stages::short_version(digest);
        Ok(RulePack {
            rules,
            automaton,
            keywords,
            keyword_rule,
            version,
        })
    }

    /// The rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Short hash of every pack's name and text, carried by every result.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Every keyword with the index of its rule.
    pub fn keywords(&self) -> impl Iterator<Item = (&str, usize)> {
        self.keywords
            .iter()
            .map(String::as_str)
            .zip(self.keyword_rule.iter().copied())
    }

    /// Bytes of heap the automaton uses.
    pub fn automaton_bytes(&self) -> usize {
        self.automaton.memory_usage()
    }

    /// Every rule that fires on `line`, once per rule, with its evidence span.
    /// Empty when an ignore pattern matches: the line is noise.
    pub fn scan(&self, line: &str) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        let mut checked_regex: Vec<usize> = Vec::new();
        for m in self.automaton.find_overlapping_iter(line) {
            let rule_index = self.keyword_rule[m.pattern().as_usize()];
            if hits.iter().any(|h| h.rule == rule_index) || checked_regex.contains(&rule_index) {
                continue;
            }
            let rule = &self.rules[rule_index];
            let hit = match &rule.regex {
                None => Some(Hit {
                    rule: rule_index,
                    start: m.start(),
                    end: m.end(),
                }),
                Some(regex) => {
                    checked_regex.push(rule_index);
                    regex.find(line).map(|r| Hit {
                        rule: rule_index,
                        start: r.start(),
                        end: r.end(),
                    })
                }
            };
            if let Some(hit) = hit {
                if rule.kind == RuleKind::Ignore {
                    return Vec::new();
                }
                hits.push(hit);
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
            .filter_map(|h| pack.rules()[h.rule].failure_type())
            .collect();
        t.dedup();
        t
    }

    #[test]
    fn the_default_pack_covers_every_type() {
        let pack = RulePack::default_pack();
        for t in FailureType::ALL {
            assert!(
                pack.rules().iter().any(|r| r.failure_type() == Some(*t)),
                "no rule for {t}"
            );
        }
        for kind in [RuleKind::Critical, RuleKind::AutoRecovery, RuleKind::Ignore] {
            assert!(
                pack.rules().iter().any(|r| r.kind == kind),
                "no {kind:?} pattern"
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
        let line = "ERROR: relation \"orders\" does not exist";
        let hits = pack.scan(line);
        assert_eq!(pack.rules()[hits[0].rule].id, "data.missing-relation");
        assert_eq!(
            &line[hits[0].start..hits[0].end],
            "relation \"orders\" does not exist"
        );
    }

    #[test]
    fn ignore_patterns_drop_the_whole_line() {
        let pack = RulePack::default_pack();
        assert!(pack
            .scan("[WARNING] templates/: connection refused while rendering")
            .is_empty());
        assert!(!pack.scan("dial tcp: connection refused").is_empty());
    }

    #[test]
    fn user_packs_add_override_and_disable_rules_by_id() {
        let user = "version: 1\nrules:\n  - {id: team.flaky-cache, type: timing, keywords: [\"cache warmup exceeded\"], transient: true}\n  - {id: network.connection-refused, type: application, keywords: [\"connection refused\"]}\n  - {id: resource.oom-killed, enabled: false}\n";
        let pack = RulePack::load(&[("team.yaml".into(), user.into())]).expect("loads");
        assert_eq!(
            types_of(&pack, "cache warmup exceeded after 30s"),
            vec![FailureType::Timing]
        );
        assert_eq!(
            types_of(&pack, "dial tcp: connection refused"),
            vec![FailureType::Application],
            "overridden"
        );
        let oom = pack
            .rules()
            .iter()
            .find(|r| r.id == "network.connection-refused")
            .expect("kept");
        assert_eq!(oom.file, "team.yaml");
        assert!(
            pack.rules().iter().all(|r| r.id != "resource.oom-killed"),
            "disabled"
        );
        assert_ne!(pack.version(), RulePack::default_pack().version());
    }

    #[test]
    fn bad_packs_name_the_file_the_rule_and_the_reason() {
        let cases = [
            ("version: 1\nrules:\n  - {id: a, type: resource, keywords: []}\n", "rule a: has no keywords"),
            ("version: 1\nrules:\n  - {id: a, type: resource, keywords: [\" \"]}\n", "rule a: empty keyword"),
            ("version: 1\nrules:\n  - {id: a, type: weather, keywords: [x]}\n", "rule a: unknown FailureType 'weather'"),
            ("version: 1\nrules:\n  - {id: a, type: data, keywords: [x], regex: \"(\"}\n", "rule a: invalid regex"),
            ("version: 1\nrules:\n  - {id: a, type: data, keywords: [x]}\n  - {id: a, type: data, keywords: [y]}\n", "rule a: duplicate rule id"),
            ("version: 1\nrules:\n  - {id: a, keywords: [x]}\n", "rule a: has no type"),
            ("version: 1\nignore_patterns:\n  - {id: nope, enabled: false}\n", "rule nope: disables a rule that does not exist"),
            ("version: 2\nrules: []\n", "unsupported pack version 2"),
            ("version: 1\nrules:\n  - {id: a, type: data, keywords: [x], wieght: 2}\n", "unknown field `wieght`"),
        ];
        for (text, want) in cases {
            let err = RulePack::load(&[("team.yaml".into(), text.into())])
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("team.yaml: ") && err.contains(want),
                "{err}"
            );
        }
    }
}
