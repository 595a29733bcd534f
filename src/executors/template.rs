//! Text templates with `{slot}` placeholders for the HTTP and command step
//! executors.
//!
//! A template is parsed once, at start, so an unknown slot is a configuration
//! error rather than a failed recovery. `{{` and `}}` stand for literal braces.
//! Rendering takes a function that escapes (or refuses) each slot's value for
//! the place it goes: the template module never decides what is safe.

use super::step::{StepError, StepRequest};

/// A value a template can ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slot {
    /// `{service}`
    Service,
    /// `{environment}`
    Environment,
    /// `{deployment_key}`
    DeploymentKey,
    /// `{recovery_id}`
    RecoveryId,
    /// `{idempotency_key}`
    IdempotencyKey,
    /// `{action}`
    Action,
    /// `{param.NAME}`
    Param(String),
    /// `{ci.repository}`
    CiRepository,
    /// `{ci.commit_sha}`
    CiCommitSha,
    /// `{ci.run_id}`
    CiRunId,
    /// `{ci.job_id}`
    CiJobId,
    /// `{ci.platform}`
    CiPlatform,
}

/// Slot names every template knows, for error messages.
pub(crate) const SLOT_NAMES: &str = "service, environment, deployment_key, recovery_id, \
     idempotency_key, action, param.NAME, ci.repository, ci.commit_sha, ci.run_id, ci.job_id, \
     ci.platform";

impl Slot {
    fn parse(name: &str) -> Option<Slot> {
        Some(match name {
            "service" => Slot::Service,
            "environment" => Slot::Environment,
            "deployment_key" => Slot::DeploymentKey,
            "recovery_id" => Slot::RecoveryId,
            "idempotency_key" => Slot::IdempotencyKey,
            "action" => Slot::Action,
            "ci.repository" => Slot::CiRepository,
            "ci.commit_sha" => Slot::CiCommitSha,
            "ci.run_id" => Slot::CiRunId,
            "ci.job_id" => Slot::CiJobId,
            "ci.platform" => Slot::CiPlatform,
            _ => {
                let param = name.strip_prefix("param.")?;
                let ok = (1..=64).contains(&param.len())
                    && param
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                return ok.then(|| Slot::Param(param.to_string()));
            }
        })
    }

    /// The slot as written in a template.
    pub(crate) fn name(&self) -> String {
        match self {
            Slot::Service => "service".into(),
            Slot::Environment => "environment".into(),
            Slot::DeploymentKey => "deployment_key".into(),
            Slot::RecoveryId => "recovery_id".into(),
            Slot::IdempotencyKey => "idempotency_key".into(),
            Slot::Action => "action".into(),
            Slot::Param(p) => format!("param.{p}"),
            Slot::CiRepository => "ci.repository".into(),
            Slot::CiCommitSha => "ci.commit_sha".into(),
            Slot::CiRunId => "ci.run_id".into(),
            Slot::CiJobId => "ci.job_id".into(),
            Slot::CiPlatform => "ci.platform".into(),
        }
    }

    /// The slot's value for `request`; a permanent error when the request
    /// does not have it (no such parameter, no CI run).
    pub(crate) fn value<'a>(&self, request: &'a StepRequest) -> Result<&'a str, StepError> {
        let ci = |field: &str, get: fn(&crate::domain::CiRef) -> Option<&String>| {
            let Some(ci) = request.ci.as_ref() else {
                return Err(StepError::permanent(format!(
                    "the template needs ci.{field}, but the failure has no CI run"
                )));
            };
            get(ci).map(String::as_str).ok_or_else(|| {
                StepError::permanent(format!(
                    "the template needs ci.{field}, but the failure's CI run has none"
                ))
            })
        };
        Ok(match self {
            Slot::Service => &request.service,
            Slot::Environment => &request.environment,
            Slot::DeploymentKey => &request.deployment_key,
            Slot::RecoveryId => &request.recovery_id,
            Slot::IdempotencyKey => &request.idempotency_key,
            Slot::Action => &request.action,
            Slot::Param(name) => request.params.get(name).ok_or_else(|| {
                StepError::permanent(format!(
                    "the template needs parameter {name}, which the step does not have"
                ))
            })?,
            Slot::CiRepository => ci("repository", |c| c.repository.as_ref())?,
            Slot::CiCommitSha => ci("commit_sha", |c| c.commit_sha.as_ref())?,
            Slot::CiRunId => ci("run_id", |c| c.run_id.as_ref())?,
            Slot::CiJobId => ci("job_id", |c| c.job_id.as_ref())?,
            Slot::CiPlatform => ci("platform", |c| Some(&c.platform))?,
        })
    }
}

/// One part of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Text from the configuration, used as written.
    Literal(String),
    /// A value from the request, escaped where it goes.
    Slot(Slot),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    pub(crate) pieces: Vec<Piece>,
}

impl Template {
    /// Parses `text`; `field` names the configuration field in errors.
    pub(crate) fn parse(text: &str, field: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|(_, c)| *c) == Some('{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().map(|(_, c)| *c) == Some('}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let rest = &text[at + 1..];
                    let Some(end) = rest.find('}') else {
                        return Err(format!(
                            "{field}: '{{' without '}}' (write '{{{{' for a literal brace)"
                        ));
                    };
                    let name = &rest[..end];
                    let slot = Slot::parse(name).ok_or_else(|| {
                        format!("{field}: unknown slot {{{name}}} (known: {SLOT_NAMES})")
                    })?;
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Slot(slot));
                    for _ in 0..=end {
                        chars.next();
                    }
                }
                '}' => {
                    return Err(format!(
                        "{field}: '}}' without '{{' (write '}}}}' for a literal brace)"
                    ))
                }
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(Template { pieces })
    }

    /// The slots of the template.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Slot(s) => Some(s),
            Piece::Literal(_) => None,
        })
    }

    /// Whether the template has no slots.
    pub(crate) fn is_literal(&self) -> bool {
        self.slots().next().is_none()
    }

    /// The text with `placeholder` for every slot (for checking a template's
    /// shape at start).
    pub(crate) fn with_placeholder(&self, placeholder: &str) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(l) => l.as_str(),
                Piece::Slot(_) => placeholder,
            })
            .collect()
    }

    /// The text for `request`, each slot's value passed through `escape`
    /// (which gets the slot and its value and may refuse it).
    pub(crate) fn render(
        &self,
        request: &StepRequest,
        escape: &dyn Fn(&Slot, &str) -> Result<String, StepError>,
    ) -> Result<String, StepError> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(l) => out.push_str(l),
                Piece::Slot(slot) => out.push_str(&escape(slot, slot.value(request)?)?),
            }
        }
        Ok(out)
    }
}

/// Passes a value through unchanged (for places where the consumer escapes,
/// such as JSON strings).
pub(crate) fn verbatim(_: &Slot, value: &str) -> Result<String, StepError> {
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_and_braces_parse() {
        let t = Template::parse("/v1/{service}/{{x}}/{param.to}", "url").expect("parses");
        assert_eq!(
            t.pieces,
            vec![
                Piece::Literal("/v1/".into()),
                Piece::Slot(Slot::Service),
                Piece::Literal("/{x}/".into()),
                Piece::Slot(Slot::Param("to".into())),
            ]
        );
        assert_eq!(t.with_placeholder("x"), "/v1/x/{x}/x");
        for bad in [
            "{nope}",
            "{service",
            "a}b",
            "{param.}",
            "{param.a b}",
            "{ci.url}",
        ] {
            assert!(Template::parse(bad, "f").is_err(), "{bad}");
        }
        let e = Template::parse("x{secret_token}", "actions.a.url").expect_err("unknown");
        assert!(
            e.starts_with("actions.a.url: unknown slot {secret_token}"),
            "{e}"
        );
    }
}
