//! Loading rule packs: YAML files parsed, layered (default pack first, user
//! packs over it by id) and compiled into a [`RulePack`].

use super::rules::{Opens, Rule, RuleKind, RulePack, Tier, DEFAULT_PACKS};
use crate::domain::{Component, FailureType, Severity};
use aho_corasick::{AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use super::model::Model;

/// The compiled-in model, parsed once per process.
static DEFAULT_MODEL_ONCE: LazyLock<Arc<Model>> =
    LazyLock::new(|| Arc::new(Model::default_model()));

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
    #[serde(default)]
    tier: Tier,
    #[serde(default)]
    substring: bool,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    opens: Opens,
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
    #[serde(default)]
    substring: bool,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default = "yes")]
    enabled: bool,
}

fn default_weight() -> f64 {
    1.0
}

fn yes() -> bool {
    true
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
        let mut packs: Vec<(String, String)> = DEFAULT_PACKS
            .iter()
            .map(|(file, text)| (file.to_string(), text.to_string()))
            .collect();
        packs.extend(user_packs.iter().cloned());
        let mut pack = RulePack::build(&packs)?;
        pack.model = Some(DEFAULT_MODEL_ONCE.clone());
        Ok(pack)
    }

    /// The default pack read from its source files under `dir` (the
    /// `src/stages/categorize` folder of a checkout) instead of the copy
    /// compiled in, so that a rule writer can edit a pack file and measure
    /// again without rebuilding.
    pub fn default_pack_from(dir: &std::path::Path) -> Result<RulePack, PackError> {
        let mut packs = Vec::with_capacity(DEFAULT_PACKS.len());
        for (file, _) in DEFAULT_PACKS {
            let text = std::fs::read_to_string(dir.join(file)).map_err(|e| PackError {
                file: file.to_string(),
                rule: None,
                reason: e.to_string(),
            })?;
            packs.push((file.to_string(), text));
        }
        let mut pack = RulePack::build(&packs)?;
        let file = dir.join("model.tsv");
        let text = std::fs::read_to_string(&file).map_err(|e| PackError {
            file: file.display().to_string(),
            rule: None,
            reason: e.to_string(),
        })?;
        let model = Model::parse(&text).map_err(|reason| PackError {
            file: file.display().to_string(),
            rule: None,
            reason,
        })?;
        pack.model = Some(Arc::new(model));
        Ok(pack)
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
                tier: Tier::Cause,
                substring: p.substring,
                case_sensitive: p.case_sensitive,
                opens: Opens::Always,
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
                tier: raw.tier,
                substring: raw.substring,
                case_sensitive: raw.case_sensitive,
                opens: raw.opens,
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
            rules: rules.into(),
            automaton,
            keywords: keywords.into(),
            keyword_rule: keyword_rule.into(),
            version,
            model: None,
        })
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
            ("version: 1\nrules:\n  - {id: a, type: data, keywords: [x], opens: maybe}\n", "opens must be true, false or model, not 'maybe'"),
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
