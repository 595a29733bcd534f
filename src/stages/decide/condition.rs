//! How a condition node reads a failure: the value of a field, whether a
//! check holds, and the check in words for the decision record.

use super::policy::{Check, Field, Join};
use super::tree::value_text;
use crate::domain::{CategorizedFailure, Severity};
use serde_yaml_ng::Value;

/// A check in words: "severity at least critical", "readiness healthy".
pub fn describe(check: &Check) -> String {
    if let Some(h) = &check.health_check {
        return format!("{h} healthy");
    }
    if let Some(m) = &check.metric {
        return match (check.below, check.above) {
            (Some(b), Some(a)) => format!("{m} between {a} and {b}"),
            (Some(b), None) => format!("{m} below {b}"),
            (None, Some(a)) => format!("{m} above {a}"),
            (None, None) => m.clone(),
        };
    }
    let name = check.field.map(Field::name).unwrap_or("?");
    let mut parts = Vec::new();
    if let Some(v) = &check.equals {
        parts.push(format!("{name} {}", value_text(v)));
    }
    if let Some(list) = &check.one_of {
        let list: Vec<String> = list.iter().map(value_text).collect();
        parts.push(format!("{name} one of {}", list.join(", ")));
    }
    if let Some(v) = &check.at_least {
        parts.push(format!("{name} at least {}", value_text(v)));
    }
    if let Some(v) = check.at_most {
        parts.push(format!("{name} at most {v}"));
    }
    parts.join(" and ")
}

/// A field's value, as a condition reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// Text (type, environment, service).
    Text(String),
    /// A severity, ordered by how bad.
    Severity(Severity),
    /// A number.
    Number(f64),
    /// true/false.
    Bool(bool),
    /// Several texts (components): a check holds if one matches.
    List(Vec<String>),
    /// Not known for this failure (e.g. no error rate was seen).
    Unknown,
}

impl std::fmt::Display for FieldValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldValue::Text(s) => f.write_str(s),
            FieldValue::Severity(s) => f.write_str(s.as_str()),
            FieldValue::Number(n) => write!(f, "{n}"),
            FieldValue::Bool(b) => write!(f, "{b}"),
            FieldValue::List(l) => f.write_str(&l.join(",")),
            FieldValue::Unknown => f.write_str("unknown"),
        }
    }
}

/// The value of `field` in `failure`.
pub fn read(field: Field, failure: &CategorizedFailure) -> FieldValue {
    match field {
        Field::FailureType => FieldValue::Text(failure.failure_type.as_str().into()),
        Field::Severity => FieldValue::Severity(failure.severity),
        Field::Environment => FieldValue::Text(failure.environment.clone()),
        Field::Service => FieldValue::Text(failure.service.clone()),
        Field::Transient => FieldValue::Bool(failure.transient),
        Field::FromCi => FieldValue::Bool(failure.ci.is_some()),
        Field::Confidence => FieldValue::Number(failure.confidence),
        Field::SignalCount => FieldValue::Number(failure.signal_count as f64),
        Field::AffectedUsers => failure
            .affected_users
            .map_or(FieldValue::Unknown, |n| FieldValue::Number(n as f64)),
        Field::ErrorRate => failure
            .error_rate
            .map_or(FieldValue::Unknown, FieldValue::Number),
        Field::Rules => {
            let mut ids: Vec<String> = Vec::new();
            for e in &failure.evidence {
                if !ids.contains(&e.rule_id) {
                    ids.push(e.rule_id.clone());
                }
            }
            FieldValue::List(ids)
        }
        Field::Components => FieldValue::List(
            failure
                .components
                .iter()
                .map(|c| c.as_str().to_string())
                .collect(),
        ),
    }
}

/// Whether `check` holds for `failure`, and the value it read (as text).
/// Every comparison given must hold; an unknown value holds none.
pub fn evaluate(field: Field, check: &Check, failure: &CategorizedFailure) -> (bool, String) {
    let value = read(field, failure);
    let mut holds = value != FieldValue::Unknown;
    if let Some(want) = &check.equals {
        holds &= equals(&value, want);
    }
    if let Some(list) = &check.one_of {
        holds &= list.iter().any(|want| equals(&value, want));
    }
    if let Some(min) = &check.at_least {
        holds &= match (&value, min) {
            (FieldValue::Severity(s), Value::String(m)) => {
                m.parse::<Severity>().is_ok_and(|m| *s <= m)
            }
            (FieldValue::Number(n), m) => m.as_f64().is_some_and(|m| *n >= m),
            _ => false,
        };
    }
    if let Some(max) = check.at_most {
        holds &= matches!(value, FieldValue::Number(n) if n <= max);
    }
    (holds, value.to_string())
}

fn equals(value: &FieldValue, want: &Value) -> bool {
    match (value, want) {
        (FieldValue::Text(s), Value::String(w)) => s == w,
        (FieldValue::Severity(s), Value::String(w)) => s.as_str() == w,
        (FieldValue::Bool(b), Value::Bool(w)) => b == w,
        (FieldValue::Number(n), w) => w.as_f64().is_some_and(|w| *n == w),
        (FieldValue::List(l), Value::String(w)) => l.iter().any(|x| x == w),
        _ => false,
    }
}

impl Join {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Join::All => "all",
            Join::Any => "any",
        }
    }
}
