//! The `approval_body` target: the bridge's approvals endpoint.

use super::*;

/// `approval_body`: `POST /approvals/{recovery_id}` on the bridge. Up to the
/// first newline the input is the recovery id from the path (decoded), the
/// rest the request body.
///
/// Properties: a refusal is a 400 with a reason; an accepted body names the
/// deployment of its recovery id, the approver is who decided "(via the
/// caller)" without control characters, and the approval survives the Avro
/// round trip unchanged.
pub fn approval_body(data: &[u8]) {
    let (id, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let id = String::from_utf8_lossy(id);
    let now = 1_764_400_000_000;
    match crate::bridge::approvals::approval_from_body(&id, "fuzz-bot", body, now) {
        Ok((key, approval)) => {
            assert_eq!(
                DeploymentKey::of_recovery_id(&approval.recovery_id),
                Some(key)
            );
            assert!(
                approval.approver.ends_with(" (via fuzz-bot)"),
                "{approval:?}"
            );
            assert!(
                !approval.approver.chars().any(char::is_control),
                "{approval:?}"
            );
            let bytes = codec::encode(&approval).expect("an accepted approval encodes");
            let back: Approval = codec::decode(&bytes).expect("and decodes");
            assert_eq!(back, approval);
        }
        Err((status, reason)) => {
            assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{reason}");
            assert!(!reason.is_empty());
        }
    }
}
