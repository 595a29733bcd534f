//! What medic does not know, live: lines of a deployment whose window is open
//! (it is failing) that no rule matched. The categorize stage counts them
//! (`medic_categorize_unmatched_lines_total`) and every
//! `categorize.unknown_report_ms` writes the most frequent masked shapes to the
//! log, so an engineer sees which failures need a rule without running
//! `medic categorize --unmatched` on an export.

use super::offline::shape;
use crate::domain::Millis;
use std::collections::HashMap;

/// Distinct shapes kept between two reports; later new shapes count as "other".
pub const MAX_SHAPES: usize = 1000;

/// Shapes in each report.
pub const REPORT_TOP: usize = 10;

/// Unmatched lines since the last report, by shape.
#[derive(Debug, Default)]
pub struct UnknownLines {
    shapes: HashMap<String, u64>,
    other: u64,
    since: Option<Millis>,
}

impl UnknownLines {
    /// Counts one unmatched line of a failing deployment.
    pub fn record(&mut self, line: &str, now: Millis) {
        metrics::counter!("medic_categorize_unmatched_lines_total").increment(1);
        self.since.get_or_insert(now);
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
            None => self.other += 1,
        }
    }

    /// The most frequent shapes and the total, when `interval_ms` has passed
    /// since the first line of this period; the counts start again.
    pub fn report(&mut self, now: Millis, interval_ms: i64) -> Option<(Vec<(String, u64)>, u64)> {
        let since = self.since?;
        if interval_ms <= 0 || now - since < interval_ms {
            return None;
        }
        let total = self.shapes.values().sum::<u64>() + self.other;
        let mut top: Vec<(String, u64)> = std::mem::take(&mut self.shapes).into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(REPORT_TOP);
        self.other = 0;
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
        for n in 0..5 {
            u.record(&format!("job {n} stuck in queue"), 1_000);
        }
        u.record("weird thing", 2_000);
        assert!(u.report(50_000, 60_000).is_none(), "not yet");
        let (top, total) = u.report(61_000, 60_000).expect("due");
        assert_eq!(total, 6);
        assert_eq!(top[0], ("job <n> stuck in queue".to_string(), 5));
        assert!(u.report(200_000, 60_000).is_none(), "nothing since");
        u.record("x", 1);
        assert!(u.report(i64::MAX, 0).is_none(), "0 turns reports off");
    }
}
