//! The dry-run executor: describes what a step would do and succeeds.

use super::{BoxFuture, Executor};
use crate::stages::{EffectRequest, EffectResult};
use std::sync::Mutex;

/// Records each step instead of acting. Keeps the list of idempotency keys it
/// saw, which tests use to prove that no finished step is run twice.
#[derive(Default)]
pub struct DryRun {
    seen: Mutex<Vec<String>>,
}

impl DryRun {
    /// A dry-run executor.
    pub fn new() -> Self {
        DryRun::default()
    }

    /// Idempotency keys of every request, in order.
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Executor for DryRun {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        Box::pin(async move {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request.key().to_string());
            }
            let detail = match request {
                EffectRequest::RecoveryStep { step, .. } => format!(
                    "dry run: would {} on {} ({} phase, timeout {}s)",
                    step.action.replace('_', " "),
                    step.target,
                    step.phase,
                    step.timeout_ms / 1000
                ),
                EffectRequest::Notify { .. } => "dry run: notification not sent".into(),
                EffectRequest::CommitStatus { .. } => "dry run: commit status not set".into(),
            };
            EffectResult {
                idempotency_key: request.key().to_string(),
                success: true,
                detail,
                attempts: 1,
                http_status: None,
                retries: Vec::new(),
                observed: None,
            }
        })
    }
}

impl super::step::StepExecutor for DryRun {
    fn kind(&self) -> &'static str {
        "dry_run"
    }

    fn supports(&self, _action: &str) -> bool {
        true
    }

    fn run<'a>(
        &'a self,
        request: &'a super::step::StepRequest,
    ) -> BoxFuture<'a, super::step::StepResult> {
        Box::pin(async move {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push(request.idempotency_key.clone());
            }
            Ok(super::step::StepDone {
                detail: format!(
                    "dry run: would {} on {}",
                    request.action.replace('_', " "),
                    request.deployment_key
                ),
                http_status: None,
                observed: None,
            })
        })
    }
}
