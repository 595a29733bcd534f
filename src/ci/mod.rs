//! CI/CD webhook payloads to [`CiEvent`]s.
//!
//! Pure functions from a platform's JSON body (and its event-name header) to a
//! normalized event; verification of signatures happens before, in the bridge.
//! Runs that deploy nothing get the environment `ci`; deployments keep theirs.
//! Events medic has no use for (pushes, queued jobs) normalize to `None`.

mod azure;
mod circleci;
mod generic;
mod github;
mod gitlab;
mod jenkins;

use crate::domain::{CiEvent, CiPlatform, Millis};
use serde_json::Value;

/// Why a payload could not be normalized.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NormalizeError {
    /// The body is not JSON.
    #[error("body is not JSON: {0}")]
    NotJson(String),
    /// A field the event type requires is missing or has the wrong type.
    #[error("{event}: missing or invalid field {field}")]
    Missing {
        /// Event type.
        event: String,
        /// JSON pointer of the field.
        field: &'static str,
    },
    /// The event type is not one the platform sends (or medic knows).
    #[error("unknown event type {0}")]
    UnknownEvent(String),
    /// The body does not follow the format.
    #[error("invalid payload: {0}")]
    Invalid(String),
}

/// What the transport told us besides the body.
#[derive(Debug, Clone, Default)]
pub struct Delivery<'a> {
    /// Event name header (`X-GitHub-Event`, `X-Gitlab-Event`, `circleci-event-type`).
    pub event: Option<&'a str>,
    /// Delivery id header, used as the event id when present.
    pub delivery_id: Option<&'a str>,
    /// When medic received it.
    pub received_at: Millis,
}

/// Normalizes one webhook body.
pub fn normalize(
    platform: CiPlatform,
    body: &[u8],
    delivery: &Delivery<'_>,
) -> Result<Option<CiEvent>, NormalizeError> {
    // Some senders (Azure DevOps) prefix a UTF-8 byte order mark.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let json: Value =
        serde_json::from_slice(body).map_err(|e| NormalizeError::NotJson(e.to_string()))?;
    match platform {
        CiPlatform::GithubActions => github::normalize(&json, delivery),
        CiPlatform::GitlabCi => gitlab::normalize(&json, delivery),
        CiPlatform::Circleci => circleci::normalize(&json, delivery),
        CiPlatform::AzureDevops => azure::normalize(&json, delivery),
        CiPlatform::Jenkins => jenkins::normalize(&json, delivery),
        CiPlatform::Generic => generic::normalize(&json, delivery),
    }
}

/// String at a JSON pointer.
fn s(v: &Value, pointer: &str) -> Option<String> {
    match v.pointer(pointer)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Required string at a JSON pointer.
fn req(v: &Value, pointer: &'static str, event: &str) -> Result<String, NormalizeError> {
    s(v, pointer).ok_or_else(|| NormalizeError::Missing {
        event: event.to_string(),
        field: pointer,
    })
}

/// Time at a JSON pointer.
fn t(v: &Value, pointer: &str) -> Option<Millis> {
    v.pointer(pointer).and_then(crate::timefmt::parse_json_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_json_is_an_error_and_a_bom_is_tolerated() {
        let d = Delivery::default();
        assert!(matches!(
            normalize(CiPlatform::GithubActions, b"<html>", &d),
            Err(NormalizeError::NotJson(_))
        ));
        let r = normalize(
            CiPlatform::GithubActions,
            b"\xEF\xBB\xBF{\"zen\":\"Keep it logically awesome.\"}",
            &d,
        );
        assert_eq!(r, Ok(None), "a ping is valid and says nothing");
    }
}
