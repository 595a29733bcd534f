//! Rule packs: what a rule is, and how a text is scanned.
//!
//! Every keyword of every rule goes into a single case-insensitive automaton,
//! built once; a line is scanned once whatever the number of rules. A keyword
//! matches on token boundaries (`KeyError` is not found in `MyKeyErrors`)
//! unless its rule says `substring: true`, and in any case unless the rule says
//! `case_sensitive: true` (sbt's `[error]` is not Maven's `[ERROR]`). A rule's
//! optional regex runs only on lines where one of its keywords was found, to
//! confirm the match or pin down the exact text.
//!
//! A pack file has four sections:
//!
//! * `rules` — typed rules: each votes for a failure type with a weight, as a
//!   cause (the default), a symptom or an operator action ([`Tier`]);
//! * `critical_patterns` — wording that makes a failure critical wherever it appears;
//! * `auto_recovery_patterns` — wording that marks a failure transient
//!   (retrying unchanged is expected to work);
//! * `ignore_patterns` — noise: a line matching one is dropped before any rule
//!   sees it (warnings that are not failures). Only that line: the other lines
//!   of a multi-line text are still scanned.
//!
//! The default pack is compiled in; user packs are applied after it in order
//! (see [`load`](super::load)). An entry whose id already exists replaces it;
//! `enabled: false` removes it.

use crate::domain::{Component, FailureType, Severity};
use aho_corasick::AhoCorasick;
use regex::Regex;
use serde::Deserialize;

/// The main file of the pack compiled into medic: the cause rules.
pub const DEFAULT_PACK: &str = include_str!("default_rules.yaml");

/// Every file of the pack compiled into medic, in load order, as
/// `(path under src/stages/categorize/, text)`: the cause rules, the generic
/// symptom layer, then the rules written from each ecosystem's failures.
pub const DEFAULT_PACKS: &[(&str, &str)] = &[
    ("default_rules.yaml", DEFAULT_PACK),
    ("packs/symptoms.yaml", include_str!("packs/symptoms.yaml")),
    ("packs/java.yaml", include_str!("packs/java.yaml")),
    ("packs/python.yaml", include_str!("packs/python.yaml")),
    (
        "packs/javascript.yaml",
        include_str!("packs/javascript.yaml"),
    ),
    ("packs/ruby.yaml", include_str!("packs/ruby.yaml")),
    ("packs/go.yaml", include_str!("packs/go.yaml")),
    ("packs/rust.yaml", include_str!("packs/rust.yaml")),
    ("packs/cpp.yaml", include_str!("packs/cpp.yaml")),
    ("packs/php.yaml", include_str!("packs/php.yaml")),
    ("packs/dotnet.yaml", include_str!("packs/dotnet.yaml")),
    ("packs/apple.yaml", include_str!("packs/apple.yaml")),
    ("packs/haskell.yaml", include_str!("packs/haskell.yaml")),
    ("packs/elixir.yaml", include_str!("packs/elixir.yaml")),
    ("packs/docker.yaml", include_str!("packs/docker.yaml")),
    ("packs/terraform.yaml", include_str!("packs/terraform.yaml")),
    (
        "packs/helm-gitops.yaml",
        include_str!("packs/helm-gitops.yaml"),
    ),
    (
        "packs/kubernetes.yaml",
        include_str!("packs/kubernetes.yaml"),
    ),
    ("packs/database.yaml", include_str!("packs/database.yaml")),
    ("packs/ci-runner.yaml", include_str!("packs/ci-runner.yaml")),
    (
        "packs/tls-dns-proxy.yaml",
        include_str!("packs/tls-dns-proxy.yaml"),
    ),
    ("packs/cloud-api.yaml", include_str!("packs/cloud-api.yaml")),
];

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

/// How much a typed rule's vote counts against the others
/// (`docs/categorization.md`, "The structure of a verdict").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// An explicit operator action (a cancel, a manual override): outranks
    /// every cause, as the TAXONOMY tie-break exception says.
    Operator,
    /// A root cause an engineer would fix: a missing package, a refused
    /// connection, an expired certificate. Outranks any sum of symptoms.
    #[default]
    Cause,
    /// Generic failure wording that names no cause: a test summary, a
    /// compiler banner, a non-zero exit. Decides only when no cause matched.
    Symptom,
}

impl Tier {
    /// The name used in pack files and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Operator => "operator",
            Tier::Cause => "cause",
            Tier::Symptom => "symptom",
        }
    }
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
    /// Cause, symptom or operator action (typed rules).
    pub tier: Tier,
    /// Keywords match anywhere, not only on token boundaries.
    pub substring: bool,
    /// Keywords match only with the case they are written in.
    pub case_sensitive: bool,
    /// Whether a match opens a correlation window (typed rules).
    pub opens: Opens,
    /// The pack file the rule came from.
    pub file: String,
}

/// When a rule's match opens a correlation window (`opens:` in a pack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(try_from = "OpensFile")]
pub enum Opens {
    /// `opens: true` (the default): a match opens one.
    #[default]
    Always,
    /// `opens: false`: the rule scores only in a window something else
    /// opened (a failed CI run, a cause, a specific symptom). For wording
    /// that healthy services also log, such as an `ERROR` level.
    Never,
    /// `opens: model`: as `false`, except that a line outside any window
    /// opens one when the learned model is sure enough that it names a
    /// specific type (`window::MODEL_OPEN_PROBABILITY`).
    Model,
}

/// `opens:` as written: a flag, or the word `model`.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum OpensFile {
    Flag(bool),
    Word(String),
}

impl TryFrom<OpensFile> for Opens {
    type Error = String;

    fn try_from(f: OpensFile) -> Result<Opens, String> {
        match f {
            OpensFile::Flag(true) => Ok(Opens::Always),
            OpensFile::Flag(false) => Ok(Opens::Never),
            OpensFile::Word(w) if w == "model" => Ok(Opens::Model),
            OpensFile::Word(w) => Err(format!("opens must be true, false or model, not '{w}'")),
        }
    }
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

/// A rule that fired on a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Index into [`RulePack::rules`].
    pub rule: usize,
    /// Byte span of the evidence in the text.
    pub start: usize,
    /// End of the span.
    pub end: usize,
}

/// A compiled rule pack. Cloning is cheap and the clones share the compiled
/// rules, so a regex's search cache warmed by one stage serves the next.
#[derive(Debug, Clone)]
pub struct RulePack {
    pub(super) rules: std::sync::Arc<[Rule]>,
    pub(super) automaton: AhoCorasick,
    /// Every keyword, in automaton pattern order.
    pub(super) keywords: std::sync::Arc<[String]>,
    /// Keyword index → rule index.
    pub(super) keyword_rule: std::sync::Arc<[usize]>,
    pub(super) version: String,
    /// The learned second opinion, when the pack carries one.
    pub(super) model: Option<std::sync::Arc<super::model::Model>>,
}

/// A byte that continues a token: letters, digits, `_`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

impl RulePack {
    /// The rules, in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Short hash of every pack's name and text, carried by every result.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The learned model consulted when no cause rule matched.
    pub fn model(&self) -> Option<&super::model::Model> {
        self.model.as_deref()
    }

    /// The same rules with `model` as the learned second opinion.
    pub fn with_model(mut self, model: super::model::Model) -> RulePack {
        self.model = Some(std::sync::Arc::new(model));
        self
    }

    /// The same rules with no learned model: verdicts from rules alone.
    pub fn without_model(mut self) -> RulePack {
        self.model = None;
        self
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

    /// Every rule that fires on `text`, once per rule, with its evidence
    /// span in `text`. A text of several lines is scanned line by line; a line
    /// an ignore pattern matches is noise and gives no hits, the others do.
    pub fn scan(&self, text: &str) -> Vec<Hit> {
        let mut hits: Vec<Hit> = Vec::new();
        let mut offset = 0;
        for line in text.split('\n') {
            self.scan_line(line, offset, &mut hits);
            offset += line.len() + 1;
        }
        hits
    }

    /// True when keyword `pattern` found at `start..end` of `line` counts:
    /// on token boundaries unless its rule is `substring`, in its own case when
    /// the rule is `case_sensitive`.
    fn keyword_fits(
        &self,
        rule: &Rule,
        pattern: usize,
        line: &[u8],
        start: usize,
        end: usize,
    ) -> bool {
        let keyword = self.keywords[pattern].as_bytes();
        if rule.case_sensitive && line.get(start..end) != Some(keyword) {
            return false;
        }
        if rule.substring {
            return true;
        }
        let (Some(first), Some(last)) = (keyword.first(), keyword.last()) else {
            return false;
        };
        let open = !is_token_byte(*first) || start == 0 || !is_token_byte(line[start - 1]);
        let close = !is_token_byte(*last) || end >= line.len() || !is_token_byte(line[end]);
        open && close
    }

    fn scan_line(&self, line: &str, offset: usize, hits: &mut Vec<Hit>) {
        let before = hits.len();
        let mut checked_regex: Vec<usize> = Vec::new();
        for m in self.automaton.find_overlapping_iter(line) {
            let pattern = m.pattern().as_usize();
            let rule_index = self.keyword_rule[pattern];
            if hits.iter().any(|h| h.rule == rule_index) || checked_regex.contains(&rule_index) {
                continue;
            }
            let rule = &self.rules[rule_index];
            if !self.keyword_fits(rule, pattern, line.as_bytes(), m.start(), m.end()) {
                continue;
            }
            let span = match &rule.regex {
                None => Some((m.start(), m.end())),
                Some(regex) => {
                    checked_regex.push(rule_index);
                    regex.find(line).map(|r| (r.start(), r.end()))
                }
            };
            if let Some((start, end)) = span {
                if rule.kind == RuleKind::Ignore {
                    hits.truncate(before);
                    return;
                }
                hits.push(Hit {
                    rule: rule_index,
                    start: offset + start,
                    end: offset + end,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The types the non-symptom rules give a line: the symptom layer
    /// (error banners, exit codes) says only that something failed.
    fn types_of(pack: &RulePack, line: &str) -> Vec<FailureType> {
        let mut t: Vec<_> = pack
            .scan(line)
            .iter()
            .map(|h| &pack.rules()[h.rule])
            .filter(|r| r.tier != Tier::Symptom)
            .filter_map(|r| r.failure_type())
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
            ("error: eslint found 3 problems in src/cart.ts, lint failed", FailureType::Application),
            ("Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress", FailureType::HumanError),
        ] {
            assert_eq!(types_of(&pack, line), vec![want], "{line}");
        }
        // A crash loop says the application failed, not why: a symptom.
        let line = "Back-off restarting failed container checkout in pod checkout-7d9f";
        let hits = pack.scan(line);
        assert!(hits
            .iter()
            .all(|h| pack.rules()[h.rule].tier == Tier::Symptom));
        assert!(!hits.is_empty());
    }

    #[test]
    fn matching_ignores_case_and_regexes_confirm() {
        let pack = RulePack::default_pack();
        assert_eq!(types_of(&pack, "OOMKILLED"), vec![FailureType::Resource]);
        // "does not exist" alone is not a data failure; the relation wording is.
        assert!(types_of(&pack, "the file does not exist").is_empty());
        let line = "ERROR: relation \"orders\" does not exist";
        let hits = pack.scan(line);
        let relation = hits
            .iter()
            .find(|h| pack.rules()[h.rule].id == "data.missing-relation")
            .expect("the relation rule matches");
        assert_eq!(
            &line[relation.start..relation.end],
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
}
