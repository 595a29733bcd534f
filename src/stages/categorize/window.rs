//! Correlation windows: every signal of one deployment within a window folds
//! into one failure, so a crash loop printing ten thousand lines is one failure.
//!
//! A window opens on the first signal that matches a rule (or on a failed CI
//! run) and absorbs every later signal of the deployment. It closes when
//!
//! * no matching signal arrived for `window_quiet_ms` on the core's clock (the
//!   `now` the caller passes: wall-clock time under the runner, whatever the
//!   driver says in tests and replays, so closing is deterministic), or
//! * its signals would span more than `window_max_ms` of event time (their own
//!   `observed_at`), so a replay of recorded signals folds exactly as the live
//!   run did, or it has been open `window_max_ms` on the core's clock.

use super::config::CategorizeConfig;
use super::model;
use super::rules::{Hit, Opens, RuleKind, RulePack, Tier};
use crate::domain::*;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// What [`absorb`] did with a signal.
#[derive(Debug)]
pub enum Absorbed {
    /// No window and the signal does not open one.
    Ignored,
    /// Folded into the existing window.
    Folded,
    /// The signal opened this new window.
    Opened(Box<CorrelationWindow>),
}

/// Folds one signal into `window`, or opens a new window when there is none
/// and the signal matters.
pub fn absorb(
    window: Option<&mut CorrelationWindow>,
    signal: &Signal,
    hits: &[Hit],
    pack: &RulePack,
    config: &CategorizeConfig,
    now: Millis,
) -> Absorbed {
    // A CI signal's first line is medic's own summary of the run ("jenkins
    // deploy failed; failed steps: …"): its verb is not failure wording the
    // tool printed, so symptom rules do not count there; causes in a
    // platform's failure reason or step names still do.
    let ci = signal.kind == SignalKind::Ci;
    let kept: Vec<Hit>;
    let hits = if ci {
        let header = signal.text.find('\n').unwrap_or(signal.text.len());
        kept = hits
            .iter()
            .filter(|h| h.start >= header || pack.rules()[h.rule].tier != Tier::Symptom)
            .cloned()
            .collect();
        &kept[..]
    } else {
        hits
    };
    let typed_rules = || {
        hits.iter()
            .map(|h| &pack.rules()[h.rule])
            .filter(|r| r.failure_type().is_some())
    };
    let typed = typed_rules().next().is_some();
    // Only a typed rule that opens windows, or a CI run, opens a window;
    // critical and auto-recovery patterns qualify a failure, they do not make
    // one. Asked only when there is no window to fold into.
    let opens = || {
        ci || typed_rules().any(|r| r.opens == Opens::Always)
            || (typed_rules().any(|r| r.opens == Opens::Model) && model_opens(signal, pack))
    };
    let matters = typed || ci;
    match window {
        Some(w) => {
            fold(w, signal, hits, typed, matters, pack, config, now);
            Absorbed::Folded
        }
        None if !opens() => Absorbed::Ignored,
        None => {
            let mut w = CorrelationWindow {
                deployment_key: signal.deployment_key.clone(),
                service: signal.service.clone(),
                environment: signal.environment.clone(),
                opened_at: now,
                touched_at: now,
                first_seen: signal.observed_at,
                last_seen: signal.observed_at,
                signal_count: 0,
                matched_signals: 0,
                scores: BTreeMap::new(),
                symptom_scores: BTreeMap::new(),
                operator_scores: BTreeMap::new(),
                model_features: BTreeMap::new(),
                evidence: Vec::new(),
                components: Vec::new(),
                transient_votes: 0,
                critical: false,
                severity_hint: None,
                affected_users: None,
                error_rate: None,
                status_codes: Vec::new(),
                ci_failed: false,
                ci_cancelled: false,
                auto_recoverable: false,
                pattern_hits: Vec::new(),
                ci: None,
                opened_by: signal.id.clone(),
            };
            fold(&mut w, signal, hits, typed, matters, pack, config, now);
            Absorbed::Opened(Box::new(w))
        }
    }
}

/// The least probability at which the learned model, reading a line that
/// only `opens: model` rules matched, opens a window for a type other than
/// `application`. Chosen on train by cross-validation with each fold's own
/// rules disabled (`cargo run --release --example train_model -- --cv-ablate`):
/// coverage 0.981 → 0.985 at 0.5, 0.983 at 0.7, 0.982 at 0.9, accuracy
/// unchanged or better (measured with every error-wording line asking; asking
/// for `symptom.error-line` lines only gives the same 0.985 at 0.5); no line
/// of `tests/data/categorization/healthy.txt` opens one.
pub const MODEL_OPEN_PROBABILITY: f64 = 0.5;

/// True when the learned model is sure enough that a line an `opens: model`
/// rule matched names a specific failure: an `Error: Migrating database: …`
/// that no cause rule knows. Asked only for such lines outside a window.
fn model_opens(signal: &Signal, pack: &RulePack) -> bool {
    pack.model()
        .and_then(|model| model.verdict_of(&signal.text))
        .is_some_and(|(t, p)| t != FailureType::Application && p >= MODEL_OPEN_PROBABILITY)
}

/// `deployment@first_seen.tag`: the tag, the first 8 hex digits of the SHA-256
/// of the opening signal's id, keeps apart two windows of one deployment whose
/// first lines share a timestamp (second-resolution log times, a window cut at
/// `window_max_ms`, a shipper's backlog arriving late). The same input gives
/// the same id, so replays stay idempotent.
fn failure_id(window: &CorrelationWindow) -> String {
    if window.opened_by.is_empty() {
        // A window restored from a changelog written before `opened_by`.
        return format!("{}@{}", window.deployment_key, window.first_seen);
    }
    let digest = Sha256::digest(window.opened_by.as_bytes());
    let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}@{}.{tag}", window.deployment_key, window.first_seen)
}

/// The longest matched text kept as evidence, in bytes. A regex may match
/// most of a long line; evidence is for people, and a window with 32 pieces
/// of half a megabyte each would not fit in a Kafka record. The span still
/// gives the whole match.
pub const MAX_MATCHED_BYTES: usize = 256;

/// `text` cut to at most [`MAX_MATCHED_BYTES`] on a character boundary, with
/// `…` when cut.
fn excerpt(text: &str) -> String {
    if text.len() <= MAX_MATCHED_BYTES {
        return text.to_string();
    }
    let mut end = MAX_MATCHED_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[allow(clippy::too_many_arguments)]
fn fold(
    w: &mut CorrelationWindow,
    signal: &Signal,
    hits: &[Hit],
    typed: bool,
    matters: bool,
    pack: &RulePack,
    config: &CategorizeConfig,
    now: Millis,
) {
    let ci_failed = signal.kind == SignalKind::Ci
        && signal.ci.as_ref().is_some_and(|c| c.status != "cancelled");
    let ci_cancelled = signal.kind == SignalKind::Ci && !ci_failed;
    w.signal_count += 1;
    w.first_seen = w.first_seen.min(signal.observed_at);
    w.last_seen = w.last_seen.max(signal.observed_at);
    w.ci_failed |= ci_failed;
    if let Some(ci) = &signal.ci {
        w.ci = Some(ci.clone());
    }
    w.ci_cancelled |= ci_cancelled;
    if let Some(users) = signal.affected_users {
        w.affected_users = Some(w.affected_users.unwrap_or(0).max(users));
    }
    if let Some(rate) = signal.error_rate {
        w.error_rate = Some(w.error_rate.unwrap_or(0.0).max(rate));
    }
    if let Some(code) = signal.status_code {
        if w.status_codes.len() < 256 {
            w.status_codes.push(code);
        }
    }
    if signal.kind == SignalKind::Ci && !w.components.contains(&Component::CiPipeline) {
        w.components.push(Component::CiPipeline);
    }
    if !matters {
        return;
    }
    w.touched_at = now;
    if typed {
        w.matched_signals += 1;
    }
    for hit in hits {
        let rule = &pack.rules()[hit.rule];
        let matched = signal.text.get(hit.start..hit.end).unwrap_or_default();
        let failure_type = match rule.kind {
            RuleKind::Typed(t) => t,
            RuleKind::Critical | RuleKind::AutoRecovery => {
                let section = if rule.kind == RuleKind::Critical {
                    w.critical = true;
                    PatternSection::Critical
                } else {
                    w.auto_recoverable = true;
                    PatternSection::AutoRecovery
                };
                if w.pattern_hits.len() < config.max_evidence
                    && !w.pattern_hits.iter().any(|p| p.rule_id == rule.id)
                {
                    w.pattern_hits.push(PatternHit {
                        section,
                        rule_id: rule.id.clone(),
                        matched: excerpt(matched),
                        signal_id: signal.id.clone(),
                    });
                }
                continue;
            }
            RuleKind::Ignore => continue,
        };
        let scores = match rule.tier {
            Tier::Operator => &mut w.operator_scores,
            Tier::Cause => &mut w.scores,
            Tier::Symptom => &mut w.symptom_scores,
        };
        *scores.entry(failure_type.to_string()).or_insert(0.0) += rule.weight;
        if rule.transient {
            w.transient_votes += 1;
        }
        if let Some(hint) = rule.severity {
            w.severity_hint = Some(w.severity_hint.map_or(hint, |h| h.min(hint)));
        }
        for c in &rule.components {
            if !w.components.contains(c) {
                w.components.push(*c);
            }
        }
        if w.evidence.len() < config.max_evidence
            && !w.evidence.iter().any(|e| e.rule_id == rule.id)
        {
            w.evidence.push(Evidence {
                rule_id: rule.id.clone(),
                failure_type,
                matched: excerpt(matched),
                span_start: i32::try_from(hit.start).unwrap_or(i32::MAX),
                span_end: i32::try_from(hit.end).unwrap_or(i32::MAX),
                signal_id: signal.id.clone(),
                weight: rule.weight,
            });
        }
    }
    // The model is asked only when no operator or cause rule decided, so it
    // reads lines only until one does, and only lines that carry the failure:
    // a failed CI run's text (its log excerpt), lines a typed rule matched
    // and their neighbours' words, not every healthy line a window absorbs.
    let decided = w
        .scores
        .values()
        .chain(w.operator_scores.values())
        .any(|s| *s > 0.0);
    if decided {
        w.model_features.clear();
    } else if let Some(model) = pack.model().filter(|_| typed || ci_failed) {
        for line in signal.text.lines() {
            model::count_known_features(model, line, &mut w.model_features, MAX_MODEL_FEATURES);
        }
    }
}

/// Distinct features a window keeps for the learned model: enough for any
/// excerpt a person would read, bounded so a crash loop of ten thousand
/// different lines cannot grow the changelog record.
pub const MAX_MODEL_FEATURES: usize = 512;

/// True when the window should close at `now`.
pub fn is_due(window: &CorrelationWindow, config: &CategorizeConfig, now: Millis) -> bool {
    now - window.touched_at >= config.window_quiet_ms
        || now - window.opened_at >= config.window_max_ms
}

/// Scores at or above this share of the best score are close: among them the
/// TAXONOMY tie-break order decides, not the exact sum.
pub const CLOSE_SCORE_SHARE: f64 = 0.75;

/// The highest confidence a verdict from symptoms alone reports.
pub const SYMPTOM_CONFIDENCE: f64 = 0.4;

/// Confidence of a failed CI run whose text matched no rule.
pub const UNMATCHED_CI_CONFIDENCE: f64 = 0.2;

/// The scores that decide: operator actions over causes over symptoms
/// (TAXONOMY "Tie-break order"), with the tier they come from.
fn deciding_scores(window: &CorrelationWindow) -> Option<(Tier, Vec<(FailureType, f64)>)> {
    [
        (Tier::Operator, &window.operator_scores),
        (Tier::Cause, &window.scores),
        (Tier::Symptom, &window.symptom_scores),
    ]
    .into_iter()
    .map(|(tier, scores)| {
        let ranked: Vec<(FailureType, f64)> = scores
            .iter()
            .filter(|(_, s)| **s > 0.0)
            .filter_map(|(t, s)| t.parse::<FailureType>().ok().map(|t| (t, *s)))
            .collect();
        (tier, ranked)
    })
    .find(|(_, ranked)| !ranked.is_empty())
}

/// Orders `ranked` so the winner comes first: the tie-break order among the
/// types whose score is close to the best, then everything else by score.
fn rank(ranked: &mut [(FailureType, f64)]) {
    let best = ranked.iter().map(|(_, s)| *s).fold(0.0, f64::max);
    let close = |s: f64| s >= best * CLOSE_SCORE_SHARE;
    ranked.sort_by(|a, b| {
        close(b.1)
            .cmp(&close(a.1))
            .then_with(|| match close(a.1) {
                true => a.0.tie_break_rank().cmp(&b.0.tie_break_rank()),
                false => std::cmp::Ordering::Equal,
            })
            .then(b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal))
            .then(a.0.tie_break_rank().cmp(&b.0.tie_break_rank()))
    });
}

/// The least probability at which the learned model's verdict replaces a
/// verdict from symptoms alone. Chosen on train by 5-fold cross-validation
/// grouped by project (`cargo run --release --example train_model -- --cv`
/// with the threshold varied): rules plus the fold's model reach accuracy
/// 0.916 at 0.15–0.30 against 0.905 at 0.5, with `application` recall
/// 0.917 at 0.3; 0.3 is the highest value on that plateau.
pub const MODEL_MIN_PROBABILITY: f64 = 0.3;

/// A model verdict's confidence is its probability times this: a second
/// opinion never claims the certainty of a matched cause.
pub const MODEL_CONFIDENCE: f64 = 0.6;

/// The id model evidence carries.
pub const MODEL_EVIDENCE_ID: &str = "medic.model";

/// The learned model's verdict, asked only when no operator or cause rule
/// decided, and taken only when it is sure enough.
fn second_opinion(
    window: &CorrelationWindow,
    pack: &RulePack,
    tier: Option<Tier>,
) -> Option<model::Opinion> {
    if !matches!(tier, None | Some(Tier::Symptom)) {
        return None;
    }
    pack.model()?
        .opinion(&window.model_features)
        .filter(|o| o.probability >= MODEL_MIN_PROBABILITY)
}

/// Evidence for a model verdict: the features that weighed most.
fn model_evidence(opinion: &model::Opinion) -> Evidence {
    Evidence {
        rule_id: MODEL_EVIDENCE_ID.into(),
        failure_type: opinion.failure_type,
        matched: excerpt(&opinion.top_features.join(", ")),
        span_start: 0,
        span_end: 0,
        signal_id: String::new(),
        weight: (opinion.probability * 1000.0).round() / 1000.0,
    }
}

/// The failure a closed window reports.
pub fn close(window: &CorrelationWindow, pack: &RulePack) -> CategorizedFailure {
    let mut evidence = window.evidence.clone();
    let (failure_type, confidence, runner_up, tier) = match deciding_scores(window) {
        Some((tier, mut ranked)) => {
            rank(&mut ranked);
            let total: f64 = ranked.iter().map(|(_, s)| s).sum();
            let share = ranked[0].1 / total;
            let confidence = match tier {
                Tier::Symptom => share * SYMPTOM_CONFIDENCE,
                _ => share,
            };
            // The runner-up is the best of the others: kept when its score is
            // at least half the winner's, or when the tie-break order, not the
            // score, put the winner first.
            let runner_up = ranked
                .iter()
                .skip(1)
                .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal))
                .filter(|(_, s)| *s >= ranked[0].1 * 0.5)
                .map(|(t, s)| RunnerUp {
                    failure_type: *t,
                    confidence: (s / total * 1000.0).round() / 1000.0,
                });
            (ranked[0].0, confidence, runner_up, Some(tier))
        }
        None => {
            // A failed CI run whose text matched nothing: application, low confidence.
            evidence.push(Evidence {
                rule_id: "medic.ci-failure-unmatched".into(),
                failure_type: FailureType::Application,
                matched: String::new(),
                span_start: 0,
                span_end: 0,
                signal_id: String::new(),
                weight: 0.0,
            });
            (
                FailureType::Application,
                UNMATCHED_CI_CONFIDENCE,
                None,
                None,
            )
        }
    };
    let (failure_type, confidence, runner_up, tier, by_model) =
        match second_opinion(window, pack, tier) {
            Some(opinion) if opinion.failure_type != failure_type || tier.is_none() => {
                evidence.insert(0, model_evidence(&opinion));
                let runner_up = Some(RunnerUp {
                    failure_type,
                    confidence: (confidence * 1000.0).round() / 1000.0,
                })
                .filter(|r| r.failure_type != opinion.failure_type);
                let confidence = opinion.probability * MODEL_CONFIDENCE;
                (opinion.failure_type, confidence, runner_up, None, true)
            }
            _ => (failure_type, confidence, runner_up, tier, false),
        };
    let rule_of = |id: &str| pack.rules().iter().find(|r| r.id == id);
    // The evidence that decided: the winner's type, from the deciding tier.
    let winning: Vec<&Evidence> = evidence
        .iter()
        .filter(|e| e.failure_type == failure_type)
        .filter(|e| tier.is_none_or(|t| rule_of(&e.rule_id).is_none_or(|r| r.tier == t)))
        .collect();
    let transient_weight: f64 = winning
        .iter()
        .filter(|e| rule_of(&e.rule_id).is_some_and(|r| r.transient))
        .map(|e| e.weight)
        .sum();
    let winning_weight: f64 = winning
        .iter()
        .filter(|e| rule_of(&e.rule_id).is_some())
        .map(|e| e.weight)
        .sum();
    let transient = window.auto_recoverable
        || (winning_weight > 0.0 && transient_weight * 2.0 >= winning_weight);
    let summary = match winning.first() {
        Some(e) if !e.matched.is_empty() => format!(
            "{failure_type}: \"{}\" ({}){}{}",
            e.matched,
            e.rule_id,
            match winning.len() {
                1 => String::new(),
                n => format!(" and {} more rules", n - 1),
            },
            match (tier, by_model) {
                (_, true) => "; no cause rule matched, the learned model's verdict",
                (Some(Tier::Symptom), _) => "; failure wording only, no cause recognised",
                _ => "",
            }
        ),
        _ => format!("{failure_type}: CI run failed with no recognised error text"),
    };
    CategorizedFailure {
        id: failure_id(window),
        deployment_key: window.deployment_key.clone(),
        service: window.service.clone(),
        environment: window.environment.clone(),
        failure_type,
        severity: severity(window, failure_type, &winning, pack),
        confidence: (confidence * 1000.0).round() / 1000.0,
        runner_up,
        evidence,
        components: if window.components.is_empty() {
            vec![Component::Unknown]
        } else {
            window.components.clone()
        },
        transient,
        affected_users: window.affected_users,
        error_rate: window.error_rate,
        status_codes: window.status_codes.clone(),
        rule_pack_version: pack.version().to_string(),
        signal_count: window.signal_count,
        first_seen: window.first_seen,
        last_seen: window.last_seen,
        summary,
        pattern_hits: window.pattern_hits.clone(),
        ci: window.ci.clone(),
    }
}

/// Severity, as tabled in `docs/severity.md`.
fn severity(
    window: &CorrelationWindow,
    failure_type: FailureType,
    winning: &[&Evidence],
    pack: &RulePack,
) -> Severity {
    let production = window.environment == "production";
    let hints: Vec<Severity> = winning
        .iter()
        .filter_map(|e| {
            pack.rules()
                .iter()
                .find(|r| r.id == e.rule_id)
                .and_then(|r| r.severity)
        })
        .collect();
    if !hints.is_empty() && hints.iter().all(|h| *h == Severity::Info) {
        return Severity::Info;
    }
    if window.critical {
        return Severity::Critical;
    }
    let mut severity = match window.environment.as_str() {
        "production" => Severity::High,
        "staging" => Severity::Medium,
        "development" | "ci" => Severity::Low,
        _ => Severity::Medium,
    };
    if let Some(hint) = hints.iter().min() {
        severity = severity.min(*hint);
    }
    let ceiling = if production {
        Severity::Critical
    } else {
        Severity::High
    };
    let raise = |s: Severity| s.raised().max(ceiling);
    if matches!(failure_type, FailureType::Security | FailureType::Data) {
        severity = raise(severity);
    }
    let fives = window
        .status_codes
        .iter()
        .filter(|c| (500..600).contains(*c))
        .count();
    let high_impact = window.affected_users.is_some_and(|u| u >= 1000)
        || window.error_rate.is_some_and(|r| r >= 25.0)
        || (!window.status_codes.is_empty()
            && fives * 2 >= window.status_codes.len()
            && fives >= 10);
    if high_impact {
        severity = raise(severity);
    }
    severity
}
