//! The `categorize` section: correlation windows and rule packs.

use serde::Deserialize;
use std::path::PathBuf;

/// Correlation windows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CategorizeConfig {
    /// A window closes this long after its last signal, in milliseconds.
    pub window_quiet_ms: i64,
    /// A window closes at the latest this long after it opened, in milliseconds.
    pub window_max_ms: i64,
    /// Evidence entries kept per window.
    pub max_evidence: usize,
    /// Rule packs applied over the built-in one, in order: a rule with an
    /// existing id replaces it, `enabled: false` removes it.
    pub rule_packs: Vec<PathBuf>,
    /// How often the most frequent shapes of failing deployments' unmatched
    /// lines are logged, in milliseconds; 0 turns the report off.
    pub unknown_report_ms: i64,
}

impl Default for CategorizeConfig {
    fn default() -> Self {
        CategorizeConfig {
            window_quiet_ms: 30_000,
            window_max_ms: 300_000,
            max_evidence: 32,
            rule_packs: Vec::new(),
            unknown_report_ms: 300_000,
        }
    }
}

impl CategorizeConfig {
    /// Checks values that parse but cannot work; returns `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        let c = self;
        if c.window_quiet_ms <= 0 {
            return fail("categorize.window_quiet_ms", "must be positive".into());
        }
        if c.window_max_ms < c.window_quiet_ms {
            return fail(
                "categorize.window_max_ms",
                format!(
                    "{} is shorter than window_quiet_ms ({})",
                    c.window_max_ms, c.window_quiet_ms
                ),
            );
        }
        if c.max_evidence == 0 {
            return fail("categorize.max_evidence", "must be at least 1".into());
        }
        Ok(())
    }
}
