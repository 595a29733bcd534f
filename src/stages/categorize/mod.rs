//! Categorize: signals in, one [`CategorizedFailure`](crate::domain::CategorizedFailure) per deployment failure out.
//!
//! State: the open correlation window of each deployment, written to the
//! compacted changelog `medic.categorize.windows` at the end of every batch in
//! which it changed (one record per changed window, not per signal) and read
//! back on partition assignment.

pub mod config;
pub mod evaluate;
pub mod load;
pub mod model;
pub mod offline;
pub mod rules;
pub mod unknown;
pub mod window;

use crate::codec;
use crate::domain::{CorrelationWindow, Millis, Signal};
use crate::stages::{
    decode_input, Action, InputRecord, Observation, OutputRecord, ProcessError, Processor,
    StageName,
};
use crate::topics::Topics;
use config::CategorizeConfig;
use rules::RulePack;
use std::collections::BTreeMap;

/// An open window and whether it changed since the last changelog write.
struct Slot {
    window: CorrelationWindow,
    dirty: bool,
}

/// The categorize stage.
pub struct Categorize {
    topics: Topics,
    config: CategorizeConfig,
    pack: RulePack,
    windows: BTreeMap<String, Slot>,
    /// Set by a restore: the next timer restarts the quiet time of every
    /// window, so that the time its partition had no owner does not count.
    restored: bool,
    /// Failing deployments' lines no rule matched, for the live report.
    unknown: unknown::UnknownLines,
}

impl Categorize {
    /// A categorize stage using `pack`.
    pub fn new(topics: Topics, config: CategorizeConfig, pack: RulePack) -> Self {
        Categorize {
            topics,
            config,
            pack,
            windows: BTreeMap::new(),
            restored: false,
            unknown: unknown::UnknownLines::default(),
        }
    }

    /// Open windows, in deployment-key order.
    pub fn windows(&self) -> Vec<&CorrelationWindow> {
        self.windows.values().map(|s| &s.window).collect()
    }

    /// Folds one signal into its deployment's window.
    ///
    /// A window never spans more than `window_max_ms` of event time: a signal
    /// that would stretch it further closes it first (the returned actions)
    /// and starts the next one.
    pub fn handle(&mut self, signal: &Signal, now: Millis) -> Result<Vec<Action>, ProcessError> {
        let key = &signal.deployment_key;
        let hits = self.pack.scan(&signal.text);
        let mut actions = Vec::new();
        if let Some(slot) = self.windows.get_mut(key) {
            let typed = hits
                .iter()
                .any(|h| self.pack.rules()[h.rule].failure_type().is_some());
            if !typed && signal.kind == crate::domain::SignalKind::Log {
                for line in signal.text.lines().filter(|l| !l.trim().is_empty()) {
                    self.unknown
                        .record(line, now, self.config.unknown_report_ms > 0);
                }
            }
            // Saturating: `observed_at` is whatever time the record carried.
            if signal.observed_at.saturating_sub(slot.window.first_seen) < self.config.window_max_ms
            {
                let absorbed = window::absorb(
                    Some(&mut slot.window),
                    signal,
                    &hits,
                    &self.pack,
                    &self.config,
                    now,
                );
                slot.dirty |= matches!(absorbed, window::Absorbed::Folded);
                return Ok(actions);
            }
            actions.extend(self.close(key)?);
        }
        if let window::Absorbed::Opened(w) =
            window::absorb(None, signal, &hits, &self.pack, &self.config, now)
        {
            self.windows.insert(
                key.clone(),
                Slot {
                    window: *w,
                    dirty: true,
                },
            );
        }
        Ok(actions)
    }

    /// Closes the window of `key`: its failure, and a tombstone for its changelog entry.
    fn close(&mut self, key: &str) -> Result<Vec<Action>, ProcessError> {
        let Some(slot) = self.windows.remove(key) else {
            return Ok(Vec::new());
        };
        let failure = window::close(&slot.window, &self.pack);
        Ok(vec![
            Action::Emit(
                OutputRecord::encode(
                    &self.topics.failures,
                    key,
                    Some(failure.id.clone()),
                    &failure,
                )?
                .observed(Observation::Failure {
                    failure_type: failure.failure_type,
                    severity: failure.severity,
                }),
            ),
            Action::Emit(OutputRecord::tombstone(&self.topics.windows, key)),
        ])
    }
}

impl Processor for Categorize {
    fn stage(&self) -> StageName {
        StageName::Categorize
    }

    fn input_topics(&self) -> Vec<String> {
        vec![self.topics.signals.clone()]
    }

    fn state_topics(&self) -> Vec<String> {
        vec![self.topics.windows.clone()]
    }

    fn reset(&mut self) {
        self.windows.clear();
    }

    fn restore(
        &mut self,
        _topic: &str,
        key: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<(), ProcessError> {
        let key = String::from_utf8_lossy(key).into_owned();
        match payload {
            None => {
                self.windows.remove(&key);
            }
            Some(bytes) => {
                let window: CorrelationWindow =
                    codec::decode(bytes).map_err(|e| ProcessError::Undecodable(e.to_string()))?;
                self.windows.insert(
                    key,
                    Slot {
                        window,
                        dirty: false,
                    },
                );
                self.restored = true;
            }
        }
        Ok(())
    }

    fn process(
        &mut self,
        input: &InputRecord<'_>,
        now: Millis,
    ) -> Result<Vec<Action>, ProcessError> {
        let signal: Signal = decode_input(input)?;
        self.handle(&signal, now)
    }

    fn on_timer(&mut self, now: Millis) -> Result<Vec<Action>, ProcessError> {
        if std::mem::take(&mut self.restored) {
            // Nobody read the window's signals while its partition moved: a
            // window is quiet only for as long as its new owner saw nothing.
            for slot in self.windows.values_mut() {
                slot.window.touched_at = slot.window.touched_at.max(now);
            }
        }
        let due: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, slot)| window::is_due(&slot.window, &self.config, now))
            .map(|(k, _)| k.clone())
            .collect();
        let mut actions = Vec::with_capacity(due.len() * 2);
        for key in due {
            actions.extend(self.close(&key)?);
        }
        if let Some((top, total)) = self.unknown.report(now, self.config.unknown_report_ms) {
            // Shape counts are estimates from a sample (unknown::SAMPLE_EVERY).
            let shapes: Vec<String> = top.iter().map(|(s, n)| format!("≈{n} × {s}")).collect();
            tracing::info!(
                unmatched_lines = total,
                top_shapes = %shapes.join(" | "),
                "lines of failing deployments that no rule matched (add rules for these: docs/categorization.md)"
            );
        }
        Ok(actions)
    }

    fn end_batch(&mut self, _now: Millis) -> Result<Vec<Action>, ProcessError> {
        let mut actions = Vec::new();
        for (key, slot) in self.windows.iter_mut().filter(|(_, slot)| slot.dirty) {
            slot.dirty = false;
            actions.push(Action::Emit(OutputRecord::encode(
                &self.topics.windows,
                key,
                None,
                &slot.window,
            )?));
        }
        Ok(actions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::*;

    fn signal(key: &str, text: &str, at: Millis) -> Signal {
        Signal::plain_text(&DeploymentKey::parse(key).expect("key"), "t", at, text, at)
    }

    fn stage() -> Categorize {
        Categorize::new(
            Topics::default(),
            CategorizeConfig::default(),
            RulePack::default_pack(),
        )
    }

    fn failures(actions: &[Action]) -> Vec<CategorizedFailure> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Emit(o) if o.topic == "medic.failures" => {
                    codec::decode(o.value.as_deref()?).ok()
                }
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_crash_loop_of_ten_thousand_lines_is_one_failure() {
        let mut c = stage();
        for i in 0..10_000 {
            let closed = c
                .handle(
                    &signal(
                        "checkout/prod",
                        "Last State: Terminated Reason: OOMKilled Exit Code: 137",
                        i,
                    ),
                    1_000 + i / 10,
                )
                .expect("ok");
            assert!(closed.is_empty());
        }
        assert!(
            c.on_timer(2_000).expect("ok").is_empty(),
            "window still open while signals arrive"
        );
        let out = c.on_timer(2_000 + 30_000).expect("ok");
        let fs = failures(&out);
        assert_eq!(fs.len(), 1);
        let f = &fs[0];
        assert_eq!(f.failure_type, FailureType::Resource);
        assert_eq!(f.signal_count, 10_000);
        assert_eq!(f.severity, Severity::High);
        // The tag is the start of the SHA-256 of the opening signal's id, `t/0/0`.
        assert_eq!(f.id, "checkout/production@0.299ef6c0");
        assert!(c.windows().is_empty());
    }

    #[test]
    fn plain_lines_open_nothing() {
        let mut c = stage();
        c.handle(&signal("web/prod", "GET /healthz 200 OK", 1), 1)
            .expect("ok");
        assert!(c.windows().is_empty());
        assert!(c.end_batch(1).expect("ok").is_empty());
        assert!(c.on_timer(1_000_000).expect("ok").is_empty());
    }

    #[test]
    fn the_window_closes_at_its_maximum_even_while_signals_keep_coming() {
        let mut c = stage();
        let mut closed = Vec::new();
        for t in (0..400_000).step_by(1_000) {
            let split = c
                .handle(&signal("api/staging", "dial tcp: connection refused", t), t)
                .expect("ok");
            closed.extend(failures(&split));
            closed.extend(failures(&c.on_timer(t).expect("ok")));
        }
        assert_eq!(closed.len(), 1, "one failure per 5 minutes");
        assert_eq!((closed[0].first_seen, closed[0].last_seen), (0, 299_000));
        assert_eq!(closed[0].failure_type, FailureType::Network);
        assert!(closed[0].transient);
    }

    #[test]
    fn event_times_at_the_ends_of_the_range_split_windows_without_overflow() {
        let mut c = stage();
        let mut closed = Vec::new();
        for at in [1_700_000_000_000, i64::MIN, i64::MAX, i64::MIN] {
            let split = c
                .handle(&signal("api/staging", "OOMKilled", at), 5)
                .expect("ok");
            closed.extend(failures(&split));
        }
        closed.extend(failures(&c.on_timer(1_000_000).expect("ok")));
        // Earlier times fold into the open window; i64::MAX is more than a
        // window after anything and opens the second one.
        let spans: Vec<_> = closed.iter().map(|f| (f.first_seen, f.last_seen)).collect();
        assert_eq!(spans, [(i64::MIN, 1_700_000_000_000), (i64::MIN, i64::MAX)]);
    }

    /// A fresh stage restored from the changelog of one that saw one
    /// deadlock signal for `db/prod` at 5 ms.
    fn restored_after_one_signal() -> Categorize {
        let mut before = stage();
        before
            .handle(&signal("db/prod", "ERROR: deadlock detected", 5), 5)
            .expect("ok");
        let changelog = before.end_batch(5).expect("ok");
        let [Action::Emit(record)] = changelog.as_slice() else {
            panic!("{changelog:?}")
        };
        assert_eq!(record.topic, "medic.categorize.windows");
        let mut after = stage();
        after
            .restore(
                &record.topic,
                record.key.as_bytes(),
                record.value.as_deref(),
            )
            .expect("restores");
        after
    }

    #[test]
    fn windows_survive_a_restart_through_the_changelog() {
        let mut after = restored_after_one_signal();
        assert!(
            failures(&after.on_timer(5 + 30_000).expect("ok")).is_empty(),
            "quiet counts from the restore, not from the last signal"
        );
        let f = failures(&after.on_timer(5 + 60_000).expect("ok"));
        assert_eq!(f[0].failure_type, FailureType::Data);
        assert_eq!(f[0].signal_count, 1);
    }

    #[test]
    fn a_window_restored_after_a_long_move_absorbs_the_signals_that_waited() {
        // The partition had no owner for longer than the quiet time (a crashed
        // member's session timing out); a signal waited in it meanwhile.
        let moved = 5 + 45_000;
        let mut after = restored_after_one_signal();
        assert!(failures(&after.on_timer(moved).expect("ok")).is_empty());
        after
            .handle(
                &signal("db/prod", "ERROR: deadlock detected", 20_000),
                moved,
            )
            .expect("ok");
        let f = failures(&after.on_timer(moved + 30_000).expect("ok"));
        assert_eq!(f.len(), 1, "one failure, not one per owner");
        assert_eq!(f[0].signal_count, 2);
    }

    #[test]
    fn a_restored_window_past_its_maximum_still_closes_at_once() {
        let mut after = restored_after_one_signal();
        assert_eq!(failures(&after.on_timer(5 + 300_000).expect("ok")).len(), 1);
    }

    #[test]
    fn impact_and_type_raise_severity() {
        let mut c = stage();
        let mut s = signal("api/staging", "x509: certificate has expired", 1);
        s.affected_users = Some(5_000);
        c.handle(&s, 1).expect("ok");
        let f = failures(&c.on_timer(100_000).expect("ok"));
        assert_eq!(f[0].failure_type, FailureType::Security);
        assert_eq!(
            f[0].severity,
            Severity::High,
            "staging is capped below critical"
        );
    }

    #[test]
    fn critical_and_auto_recovery_patterns_qualify_the_failure() {
        let mut c = stage();
        c.handle(&signal("orders/staging", "ERROR: deadlock detected", 1), 1)
            .expect("ok");
        c.handle(
            &signal(
                "orders/staging",
                "replica reported data corruption detected on page 7",
                2,
            ),
            2,
        )
        .expect("ok");
        let f = failures(&c.on_timer(100_000).expect("ok"));
        assert_eq!(
            f[0].severity,
            Severity::Critical,
            "critical patterns apply in any environment"
        );
        assert_eq!(f[0].pattern_hits[0].rule_id, "critical.data-loss");

        let mut c = stage();
        c.handle(
            &signal(
                "api/staging",
                "TypeError: x is undefined; upstream returned 503 Service Unavailable",
                1,
            ),
            1,
        )
        .expect("ok");
        let f = failures(&c.on_timer(100_000).expect("ok"));
        assert!(f[0].transient, "marked auto-recoverable");
        assert_eq!(f[0].pattern_hits[0].section, PatternSection::AutoRecovery);
    }

    #[test]
    fn a_replay_closes_windows_by_the_signals_own_time() {
        // Recorded signals replayed in a burst: the core clock barely moves,
        // but event time spans more than the window maximum.
        let mut c = stage();
        let mut closed = Vec::new();
        for t in (0..600_000).step_by(10_000) {
            closed.extend(failures(
                &c.handle(&signal("api/staging", "connection refused", t), 5)
                    .expect("ok"),
            ));
        }
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].signal_count, 30, "the first 300 s of event time");
    }

    #[test]
    fn failures_with_the_same_first_timestamp_get_distinct_ids_that_replays_repeat() {
        // Second-resolution log times: three failures of one deployment, one
        // after another, whose first lines all carry the same timestamp.
        let run = || {
            let mut c = stage();
            let mut ids = Vec::new();
            for (i, now) in [(1, 0), (2, 60_000), (3, 120_000)] {
                let line = Signal::plain_text(
                    &DeploymentKey::parse("checkout/prod").expect("key"),
                    "medic.logs.raw",
                    i,
                    "Last State: Terminated Reason: OOMKilled",
                    1_000,
                );
                c.handle(&line, now).expect("ok");
                ids.extend(
                    failures(&c.on_timer(now + 30_000).expect("ok"))
                        .into_iter()
                        .map(|f| f.id),
                );
            }
            ids
        };
        let ids = run();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids
            .iter()
            .all(|id| id.starts_with("checkout/production@1000.")));
        let distinct: std::collections::BTreeSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 3, "{ids:?}");
        assert_eq!(run(), ids, "the same input gives the same ids");
    }

    #[test]
    fn a_long_line_matched_whole_by_a_regex_keeps_a_short_excerpt() {
        let mut c = stage();
        // Two-byte characters, so that the cut falls inside one.
        let line = format!("eslint {} failed", "é".repeat(150_000));
        c.handle(&signal("web/prod", &line, 1), 1).expect("ok");
        let closed = failures(&c.on_timer(1 + 60_000).expect("ok"));
        assert_eq!(closed.len(), 1);
        let evidence = &closed[0].evidence[0];
        assert_eq!(evidence.rule_id, "application.lint-format");
        assert!(evidence.matched.starts_with("eslint éé"));
        assert!(evidence.matched.len() <= window::MAX_MATCHED_BYTES + '…'.len_utf8());
        assert!(evidence.matched.ends_with('…'));
        assert!(
            evidence.span_end - evidence.span_start > 300_000,
            "the span is the whole match"
        );
    }

    #[test]
    fn a_pattern_alone_opens_no_window() {
        let mut c = stage();
        c.handle(
            &signal(
                "api/staging",
                "backend temporarily unavailable, retrying",
                1,
            ),
            1,
        )
        .expect("ok");
        assert!(c.windows().is_empty());
    }
}
