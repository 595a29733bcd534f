//! How categorization quality is measured: a confusion matrix over the ten
//! types plus "no type", and the figures computed from it (coverage,
//! accuracy, per-type precision and recall, macro-F1, transient F1).
//!
//! The corpus test (`tests/corpus_quality.rs`), the fixture regression check
//! (`tests/categorization_quality.rs`) and `cargo run --example corpus_report`
//! all count with this one implementation, so the figures in
//! `docs/categorization.md` mean the same thing everywhere.

use crate::domain::FailureType;
use std::fmt::Write as _;

/// Counts of (labelled type, predicted type) pairs and of transient agreement.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// `matrix[gold][predicted]`, indexed by [`FailureType::ALL`] order;
    /// column 10 is "no type".
    matrix: [[usize; 11]; 10],
    /// Transient: labelled true and predicted true / predicted only / labelled only.
    transient_tp: usize,
    transient_fp: usize,
    transient_fn: usize,
}

/// Precision, recall and F1 of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassScores {
    /// Correct predictions of the class over all its predictions.
    pub precision: f64,
    /// Correct predictions of the class over all its labelled items.
    pub recall: f64,
    /// Harmonic mean of the two (0 when both are 0).
    pub f1: f64,
    /// Labelled items of the class.
    pub support: usize,
}

fn scores(tp: usize, fp: usize, fn_: usize) -> ClassScores {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = ratio(tp, tp + fp);
    let recall = ratio(tp, tp + fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    ClassScores {
        precision,
        recall,
        f1,
        support: tp + fn_,
    }
}

fn index(t: FailureType) -> usize {
    FailureType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

impl Evaluation {
    /// Counts one item: its label and what medic said (`None`: no type).
    pub fn add(
        &mut self,
        gold: FailureType,
        gold_transient: bool,
        predicted: Option<FailureType>,
        predicted_transient: bool,
    ) {
        self.matrix[index(gold)][predicted.map_or(10, index)] += 1;
        match (gold_transient, predicted_transient) {
            (true, true) => self.transient_tp += 1,
            (false, true) => self.transient_fp += 1,
            (true, false) => self.transient_fn += 1,
            (false, false) => {}
        }
    }

    /// Items counted.
    pub fn total(&self) -> usize {
        self.matrix.iter().flatten().sum()
    }

    /// Share of items given any type.
    pub fn coverage(&self) -> f64 {
        let unnamed: usize = self.matrix.iter().map(|row| row[10]).sum();
        1.0 - unnamed as f64 / self.total().max(1) as f64
    }

    /// Share of items given their labelled type.
    pub fn accuracy(&self) -> f64 {
        let right: usize = (0..10).map(|i| self.matrix[i][i]).sum();
        right as f64 / self.total().max(1) as f64
    }

    /// Precision, recall and F1 of one type. An item with no type counts
    /// against the recall of its labelled type.
    pub fn class(&self, t: FailureType) -> ClassScores {
        let i = index(t);
        let tp = self.matrix[i][i];
        let fp: usize = (0..10).filter(|g| *g != i).map(|g| self.matrix[g][i]).sum();
        let fn_: usize = self.matrix[i].iter().sum::<usize>() - tp;
        scores(tp, fp, fn_)
    }

    /// Mean F1 over the ten types.
    pub fn macro_f1(&self) -> f64 {
        FailureType::ALL
            .iter()
            .map(|t| self.class(*t).f1)
            .sum::<f64>()
            / 10.0
    }

    /// F1 of the transient flag, transient being the positive class.
    pub fn transient_f1(&self) -> f64 {
        scores(self.transient_tp, self.transient_fp, self.transient_fn).f1
    }

    /// The figures, per-type scores and the confusion matrix as a table.
    pub fn report(&self, title: &str) -> String {
        let mut out = format!(
            "{title}: {} items, coverage {:.3}, accuracy {:.3}, macro-F1 {:.3}, transient F1 {:.3}\n\n",
            self.total(),
            self.coverage(),
            self.accuracy(),
            self.macro_f1(),
            self.transient_f1()
        );
        out.push_str("type            precision  recall     f1     n\n");
        for t in FailureType::ALL {
            let c = self.class(*t);
            let _ = writeln!(
                out,
                "{:<15} {:>9.3} {:>7.3} {:>6.3} {:>5}",
                t.as_str(),
                c.precision,
                c.recall,
                c.f1,
                c.support
            );
        }
        out.push_str("\nconfusion (rows: label, columns: medic; - = no type)\n");
        let short = |t: &FailureType| t.as_str().chars().take(5).collect::<String>();
        let _ = write!(out, "{:<15}", "");
        for t in FailureType::ALL {
            let _ = write!(out, " {:>5}", short(t));
        }
        out.push_str("     -\n");
        for (g, t) in FailureType::ALL.iter().enumerate() {
            let _ = write!(out, "{:<15}", t.as_str());
            for n in self.matrix[g] {
                let _ = write!(out, " {n:>5}");
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureType::*;

    #[test]
    fn figures_follow_their_definitions() {
        let mut e = Evaluation::default();
        e.add(Network, true, Some(Network), true);
        e.add(Network, false, Some(Dependency), true);
        e.add(Dependency, false, None, false);
        e.add(Dependency, true, Some(Dependency), false);
        assert_eq!(e.total(), 4);
        assert_eq!(e.coverage(), 0.75);
        assert_eq!(e.accuracy(), 0.5);
        let n = e.class(Network);
        assert_eq!((n.precision, n.recall, n.support), (1.0, 0.5, 2));
        let d = e.class(Dependency);
        assert_eq!((d.precision, d.recall), (0.5, 0.5));
        // Two of ten types have F1 2/3 and 1/2; the eight others 0.
        assert!((e.macro_f1() - (2.0 / 3.0 + 0.5) / 10.0).abs() < 1e-9);
        // Transient: tp 1, fp 1, fn 1.
        assert!((e.transient_f1() - 0.5).abs() < 1e-9);
        assert!(e.report("t").contains("coverage 0.750"));
    }
}
