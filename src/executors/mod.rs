//! Executors: where side effects happen, outside the stage cores.
//!
//! The runner hands every [`EffectRequest`] to an [`Executor`] and feeds the
//! [`EffectResult`] back to the stage. Recovery steps go to [`DryRun`] unless
//! real executors (CI APIs, Kubernetes) are configured; notifications go to
//! their channel's sink ([`notify`]: Slack, webhook, e-mail).
//!
//! Recovery-step executors implement [`step::StepExecutor`]: [`http`]
//! (configured requests), [`command`] (configured programs, never a shell),
//! [`github`] (GitHub Actions runs and deployments), [`gitlab`] (GitLab CI
//! jobs and pipelines), [`kubernetes`] (Deployments) and [`argo_rollouts`]
//! (Argo Rollouts), and [`checks`] (health checks against HTTP endpoints and
//! Prometheus). [`step::StepRouter`] picks one per action.

pub mod argo_rollouts;
pub mod checks;
pub mod command;
mod commit_status;
pub mod config;
mod dry_run;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod kubernetes;
pub mod notify;
mod outbound;
pub mod routing;
pub mod step;
mod template;

pub use commit_status::{CommitStatusSink, StatusTarget, StatusTargets};
pub use dry_run::DryRun;
pub use notify::Channels;

use crate::stages::{EffectRequest, EffectResult};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, so that executors can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Carries out side effects. Must treat a repeated idempotency key as the same
/// request: after a crash the runner may send a started step again.
pub trait Executor: Send + Sync {
    /// Carries out `request`; never panics, reports failure in the result.
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult>;
}

/// Routes each kind of request to its executor.
#[derive(Clone)]
pub struct Executors {
    /// Recovery steps.
    pub steps: Arc<dyn Executor>,
    /// Notifications.
    pub notifications: Arc<dyn Executor>,
    /// Commit statuses on CI platforms.
    pub statuses: Arc<dyn Executor>,
}

impl Executor for Executors {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        match request {
            EffectRequest::RecoveryStep { .. } => self.steps.execute(request),
            EffectRequest::Notify { .. } => self.notifications.execute(request),
            EffectRequest::CommitStatus { .. } => {
                counted("commit_status", self.statuses.execute(request))
            }
        }
    }
}

/// Counts a notification delivery by sink and result (`medic_notifications_total`).
fn counted<'a>(
    sink: &'static str,
    delivery: BoxFuture<'a, EffectResult>,
) -> BoxFuture<'a, EffectResult> {
    Box::pin(async move {
        let result = delivery.await;
        let outcome = if result.success {
            "delivered"
        } else {
            "failed"
        };
        metrics::counter!("medic_notifications_total", "sink" => sink, "result" => outcome)
            .increment(1);
        result
    })
}

/// An executor for requests nobody configured a sink for: fails them, clearly.
pub struct Unconfigured;

impl Executor for Unconfigured {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        Box::pin(async move {
            EffectResult {
                idempotency_key: request.key().to_string(),
                success: false,
                detail: "no executor is configured for this request".into(),
                attempts: 0,
                http_status: None,
                retries: Vec::new(),
                observed: None,
            }
        })
    }
}
