//! What medic does not know, live: lines of a deployment whose window is open
//! (it is failing) that no rule matched. The categorize stage counts them
//! (`medic_categorize_unmatched_lines_total`) and every
//! `categorize.unknown_report_ms` writes the most frequent masked shapes to the
//! log, so an engineer sees which failures need a rule without running
//! `medic categorize --unmatched` on an export.
//!
//! Every line is counted; one in [`SAMPLE_EVERY`] is masked into its shape
//! (six regex passes, the costliest thing the stage would otherwise do per
//! healthy line of a failing deployment), and a shape's count in the report is
//! its sampled count times [`SAMPLE_EVERY`]. The most frequent shapes, the
//! ones a report shows, are estimated well by a sample.

use super::offline::shape;
use crate::domain::Millis;
use std::collections::HashMap;

/// Distinct shapes kept between two reports; later new shapes are counted
/// among the lines but not shaped.
pub const MAX_SHAPES: usize = 1000;

/// Shapes in each report.
pub const REPORT_TOP: usize = 10;

/// One unmatched line in this many is masked into its shape.
pub const SAMPLE_EVERY: u64 = 8;

/// Unmatched lines since the last report, by shape.
#[derive(Debug, Default)]
pub struct UnknownLines {
    shapes: HashMap<String, u64>,
    lines: u64,
    since: Option<Millis>,
}

impl UnknownLines {
    /// Counts one unmatched line of a failing deployment; `shaped` false
    /// (the report is off) counts it without masking.
    pub fn record(&mut self, line: &str, now: Millis, shaped: bool) {
        metrics::counter!("medic_categorize_unmatched_lines_total").increment(1);
        self.since.get_or_insert(now);
        self.lines += 1;
        if !shaped || !(self.lines - 1).is_multiple_of(SAMPLE_EVERY) {
            return;
        }
        let shape = shape(line);
        if shape.is_empty() {
            return;
        }
        let room = self.shapes.len() < MAX_SHAPES;
        match self.shapes.get_mut(&shape) {
            Some(n) => *n += 1,
            None if room => {
                self.shapes.insert(shape, 1);
            }
            None => {}
        }
    }

    /// The most frequent shapes with their estimated counts, and the number
    /// of lines counted, when `interval_ms` has passed since the first line of
    /// this period; the counts start again.
    pub fn report(&mut self, now: Millis, interval_ms: i64) -> Option<(Vec<(String, u64)>, u64)> {
        let since = self.since?;
        if interval_ms <= 0 || now - since < interval_ms {
            return None;
        }
        let total = self.lines;
        let mut top: Vec<(String, u64)> = std::mem::take(&mut self.shapes)
            .into_iter()
            .map(|(shape, n)| (shape, n * SAMPLE_EVERY))
            .collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(REPORT_TOP);
        self.lines = 0;
        self.since = None;
        Some((top, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_most_frequent_shapes_once_per_interval() {
        let mut u = UnknownLines::default();
        for n in 0..40 {
            u.record(&format!("job {n} stuck in queue"), 1_000, true);
        }
        for _ in 0..8 {
            u.record("weird thing", 2_000, true);
        }
        assert!(u.report(50_000, 60_000).is_none(), "not yet");
        let (top, total) = u.report(61_000, 60_000).expect("due");
        assert_eq!(total, 48);
        assert_eq!(top[0], ("job <n> stuck in queue".to_string(), 40));
        assert_eq!(top[1], ("weird thing".to_string(), 8));
        assert!(u.report(200_000, 60_000).is_none(), "nothing since");
        u.record("x", 1, true);
        assert!(u.report(i64::MAX, 0).is_none(), "0 turns reports off");
    }

    #[test]
    fn lines_are_counted_unshaped_when_the_report_is_off() {
        let mut u = UnknownLines::default();
        for _ in 0..16 {
            u.record("worker lost heartbeat", 1, false);
        }
        let (top, total) = u.report(i64::MAX, 1).expect("due");
        assert_eq!(total, 16);
        assert!(top.is_empty());
    }
}
