//! `POST /approvals/{recovery_id}`: a human's decision on a waiting recovery,
//! from a ChatOps bot or a dashboard, produced to `medic.recovery.approvals`.
//!
//! The caller authenticates with `Authorization: Bearer <token>`; tokens are
//! compared in constant time (as SHA-256 digests, so their length does not
//! leak). The body names who decided:
//!
//! ```json
//! {"by": "alice", "decision": "approve", "comment": "rollback is fine"}
//! ```
//!
//! `decision` is `approve` (default) or `reject`. The approval is recorded as
//! decided by `alice (via <token name>)`, so the audit trail shows the person
//! and the integration. The answer is 202 once Kafka has the approval; the
//! orchestrator then continues, stops, or dead-letters an approval for a
//! recovery it does not know.

use super::config::ApprovalsEndpoint;
use crate::codec;
use crate::domain::{Approval, ApprovalDecision, DeploymentKey, Millis};
use crate::kafka::runner::ID_HEADER;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The approvals endpoint's settings.
pub struct Approvals {
    /// URL path prefix.
    pub path: String,
    topic: String,
    tokens: Vec<(String, [u8; 32])>,
}

impl Approvals {
    /// The endpoint for `config`, producing to `topic`; `None` without tokens.
    pub fn new(config: &ApprovalsEndpoint, topic: &str) -> Option<Approvals> {
        (!config.tokens.is_empty()).then(|| Approvals {
            path: config.path.trim_end_matches('/').to_string(),
            topic: topic.to_string(),
            tokens: config
                .tokens
                .iter()
                .map(|t| (t.name.clone(), Sha256::digest(t.token.as_bytes()).into()))
                .collect(),
        })
    }

    /// The name of the token in `headers`, if it is one of ours.
    fn caller(&self, headers: &HeaderMap) -> Option<&str> {
        let presented = headers
            .get("authorization")?
            .to_str()
            .ok()?
            .strip_prefix("Bearer ")?;
        let digest: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        let mut found = None;
        for (name, token) in &self.tokens {
            if bool::from(token.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    by: String,
    #[serde(default)]
    decision: Option<String>,
    #[serde(default)]
    comment: Option<String>,
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn refuse(status: StatusCode, reason: impl Into<String>) -> Response {
    let reason = reason.into();
    tracing::info!(%status, %reason, "approval refused");
    answer(status, json!({"status": "refused", "reason": reason}))
}

fn printable(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.chars().count() <= max && !s.chars().any(char::is_control)
}

/// Reads and checks a decision `body` on `recovery_id` sent by the
/// integration `caller`: the deployment and the approval to produce, or the
/// status and reason to refuse it with.
pub fn approval_from_body(
    recovery_id: &str,
    caller: &str,
    body: &[u8],
    now: Millis,
) -> Result<(DeploymentKey, Approval), (StatusCode, String)> {
    let bad = |reason: String| Err((StatusCode::BAD_REQUEST, reason));
    let Some(key) = DeploymentKey::of_recovery_id(recovery_id) else {
        return bad(format!(
            "'{recovery_id}' is not a recovery id (service/environment#millis)"
        ));
    };
    let decision: Decision = match serde_json::from_slice(body) {
        Ok(d) => d,
        Err(e) => return bad(format!("body: {e}")),
    };
    if !printable(&decision.by, 100) {
        return bad("'by' must name who decides (1 to 100 printable characters)".into());
    }
    if decision
        .comment
        .as_deref()
        .is_some_and(|c| !printable(c, 1000))
    {
        return bad("'comment' must be 1 to 1000 printable characters".into());
    }
    let verdict = match decision.decision.as_deref().unwrap_or("approve") {
        "approve" => ApprovalDecision::Approved,
        "reject" => ApprovalDecision::Rejected,
        other => return bad(format!("decision '{other}' is neither approve nor reject")),
    };
    let approval = Approval {
        recovery_id: recovery_id.to_string(),
        decision: verdict,
        approver: format!("{} (via {caller})", decision.by.trim()),
        reason: decision.comment,
        decided_at: now,
    };
    Ok((key, approval))
}

/// Handles one decision.
pub async fn decide(
    approvals: &Approvals,
    producer: &FutureProducer,
    timeout: Duration,
    now: Millis,
    recovery_id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some(caller) = approvals.caller(headers) else {
        return refuse(StatusCode::UNAUTHORIZED, "missing or unknown bearer token");
    };
    let (key, approval) = match approval_from_body(recovery_id, caller, body, now) {
        Ok(found) => found,
        Err((status, reason)) => return refuse(status, reason),
    };
    let value = match codec::encode(&approval) {
        Ok(v) => v,
        Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let key = key.to_string();
    let id = format!("{recovery_id}/{now}");
    let record = FutureRecord::to(&approvals.topic)
        .key(&key)
        .payload(&value)
        .headers(OwnedHeaders::new().insert(Header {
            key: ID_HEADER,
            value: Some(id.as_bytes()),
        }));
    match tokio::time::timeout(timeout, producer.send(record, timeout)).await {
        Ok(Ok(_)) => {
            tracing::info!(recovery_id, decision = %approval.decision, approver = %approval.approver, "approval produced");
            answer(
                StatusCode::ACCEPTED,
                json!({"status": "accepted", "recovery_id": recovery_id, "decision": approval.decision, "approver": approval.approver}),
            )
        }
        Ok(Err((e, _))) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Kafka did not take the approval ({e}); retry"),
        ),
        Err(_) => refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "Kafka did not acknowledge in time; retry",
        ),
    }
}
