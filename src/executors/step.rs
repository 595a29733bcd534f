//! Recovery-step executors: one trait, one router that picks the executor per
//! action from the configuration and applies timeouts and retries.
//!
//! An executor gets a [`StepRequest`] — the action, its parameters, the
//! deployment and the CI run behind the failure — and returns the outcome of
//! one attempt. The [`StepRouter`] gives every attempt the step's timeout,
//! retries failures the executor marks retryable with exponential backoff,
//! and reports the last outcome as an [`EffectResult`]. The idempotency key
//! (`recovery_id/step`) is the same on every attempt and after a restart;
//! executors pass it on where the API has a place for it.

use super::{BoxFuture, Executor};
use crate::domain::CiRef;
use crate::stages::{EffectRequest, EffectResult, Measured};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One recovery step for an executor.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    /// `recovery_id/step`: the same on every attempt of this step.
    pub idempotency_key: String,
    /// The recovery.
    pub recovery_id: String,
    /// `service/environment`.
    pub deployment_key: String,
    /// Service name (from logs or payloads: validate before use).
    pub service: String,
    /// Environment name (from logs or payloads: validate before use).
    pub environment: String,
    /// Action, e.g. `rollback_deployment`.
    pub action: String,
    /// Parameters from the strategy (and medic's own: `node`, `on_failure`).
    pub params: BTreeMap<String, String>,
    /// The CI run behind the failure, when there was one.
    pub ci: Option<CiRef>,
    /// The failure and strategy behind the step, when known.
    pub context: Option<crate::stages::StepContext>,
    /// Longest one attempt may take.
    pub timeout: Duration,
}

impl StepRequest {
    /// How long an executor that waits (for a rollout, for a probe to
    /// settle) may take: nine tenths of the timeout, so the step answers
    /// before the router's timeout would cut it off (and retry what
    /// already happened).
    pub fn budget(&self) -> Duration {
        self.timeout.mul_f64(0.9)
    }
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub struct StepError {
    /// Worth another attempt (timeouts, connection errors, 429, 5xx).
    pub retryable: bool,
    /// What happened, for the audit trail (no secrets).
    pub detail: String,
    /// HTTP status, when an HTTP API answered.
    pub http_status: Option<u16>,
    /// What a check measured before it failed.
    pub observed: Option<Measured>,
}

impl StepError {
    /// A failure another attempt will not fix (bad input, 4xx, refused by policy).
    pub fn permanent(detail: impl Into<String>) -> StepError {
        StepError {
            retryable: false,
            detail: detail.into(),
            http_status: None,
            observed: None,
        }
    }

    /// A failure another attempt may fix.
    pub fn transient(detail: impl Into<String>) -> StepError {
        StepError {
            retryable: true,
            detail: detail.into(),
            http_status: None,
            observed: None,
        }
    }

    /// The error for an HTTP answer that was not a success: 408, 429 and 5xx
    /// are retryable, other statuses are not.
    pub fn from_status(status: u16, detail: impl Into<String>) -> StepError {
        StepError {
            retryable: status == 408 || status == 429 || status >= 500,
            detail: detail.into(),
            http_status: Some(status),
            observed: None,
        }
    }
}

/// What one successful attempt did.
#[derive(Debug, Clone, PartialEq)]
pub struct StepDone {
    /// What was done, for the audit trail (no secrets).
    pub detail: String,
    /// HTTP status, when an HTTP API answered.
    pub http_status: Option<u16>,
    /// What a check measured.
    pub observed: Option<Measured>,
}

/// The result of one attempt.
pub type StepResult = Result<StepDone, StepError>;

/// Carries out recovery steps of some kind (dry run, HTTP, GitHub, ...).
pub trait StepExecutor: Send + Sync {
    /// Executor kind as named in the configuration, e.g. `github`.
    fn kind(&self) -> &'static str;
    /// Whether this executor can carry out `action` (checked at start for
    /// every configured route).
    fn supports(&self, action: &str) -> bool;
    /// Whether a step of `action` with `params` (as a strategy writes
    /// them) can be carried out; checked at start for every step the loaded
    /// policy can reach, so that `to_revision: banana` fails there.
    fn check(&self, _action: &str, _params: &BTreeMap<String, String>) -> Result<(), String> {
        Ok(())
    }
    /// One attempt. Must not panic; must not put text from the request into a
    /// URL path, query, header or command without validating or escaping it.
    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult>;
}

/// Retry policy for step attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubles each time.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 3,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Routes each recovery step to the executor configured for its action.
pub struct StepRouter {
    routes: BTreeMap<String, Arc<dyn StepExecutor>>,
    fallback: Arc<dyn StepExecutor>,
    dry_run: Arc<dyn StepExecutor>,
    retry: Retry,
}

impl StepRouter {
    /// A router sending `routes` (action → executor) to their executor,
    /// every other action to `fallback`, and dry-run requests to `dry_run`.
    /// Fails when an executor does not support an action routed to it.
    pub fn new(
        routes: BTreeMap<String, Arc<dyn StepExecutor>>,
        fallback: Arc<dyn StepExecutor>,
        dry_run: Arc<dyn StepExecutor>,
        retry: Retry,
    ) -> Result<StepRouter, String> {
        for (action, executor) in &routes {
            if !executor.supports(action) {
                return Err(format!(
                    "executor {} cannot carry out {action}",
                    executor.kind()
                ));
            }
        }
        Ok(StepRouter {
            routes,
            fallback,
            dry_run,
            retry,
        })
    }

    /// The executor for `action`.
    pub fn route(&self, action: &str) -> &Arc<dyn StepExecutor> {
        self.routes.get(action).unwrap_or(&self.fallback)
    }

    /// Runs `request` with the timeout per attempt and the retry policy.
    pub async fn run(&self, executor: &dyn StepExecutor, request: &StepRequest) -> EffectResult {
        let attempted = with_retries(
            &self.retry,
            request.timeout,
            || executor.run(request),
            |attempt, outcome, retry| {
                let label = match (outcome, retry) {
                    (Ok(_), _) => "succeeded",
                    (Err(_), true) => "retried",
                    (Err(_), false) => "failed",
                };
                metrics::counter!("medic_executor_calls_total", "kind" => executor.kind(), "result" => label)
                    .increment(1);
                if let Err(e) = outcome {
                    tracing::warn!(
                        key = %request.idempotency_key,
                        executor = executor.kind(),
                        attempt,
                        retry,
                        error = %e.detail,
                        "recovery step attempt failed"
                    );
                }
            },
        )
        .await;
        attempted.into_effect_result(&request.idempotency_key, executor.kind())
    }
}

/// A call made with retries: the last attempt's result, how many attempts
/// were made, and why each attempt before the last failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempted {
    /// The last attempt's result.
    pub result: StepResult,
    /// Attempts made (at least 1).
    pub attempts: u32,
    /// Why each retried attempt failed, in order.
    pub retries: Vec<String>,
}

impl Attempted {
    /// The result a stage sees, details prefixed with `kind`.
    pub fn into_effect_result(self, idempotency_key: &str, kind: &str) -> EffectResult {
        let (success, detail, http_status, observed) = match self.result {
            Ok(done) => (true, done.detail, done.http_status, done.observed),
            Err(e) => (false, e.detail, e.http_status, e.observed),
        };
        EffectResult {
            idempotency_key: idempotency_key.to_string(),
            success,
            detail: format!("{kind}: {detail}"),
            attempts: self.attempts,
            http_status,
            retries: self.retries,
            observed,
        }
    }
}

/// Calls `attempt` until it succeeds, fails for good, or `retry.attempts`
/// are used up; each attempt gets `timeout`, and the waits between attempts
/// double from `retry.initial_backoff` up to `retry.max_backoff`. `observe`
/// sees each attempt's number, result, and whether another attempt follows.
pub async fn with_retries<'a>(
    retry: &Retry,
    timeout: Duration,
    mut attempt: impl FnMut() -> BoxFuture<'a, StepResult>,
    mut observe: impl FnMut(u32, &StepResult, bool),
) -> Attempted {
    let attempts = retry.attempts.max(1);
    let mut backoff = retry.initial_backoff;
    let mut retries = Vec::new();
    let mut number = 1;
    loop {
        let outcome = match tokio::time::timeout(timeout, attempt()).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StepError::transient(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
        };
        let again = matches!(&outcome, Err(e) if e.retryable) && number < attempts;
        observe(number, &outcome, again);
        match outcome {
            Err(e) if again => {
                retries.push(e.detail);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(retry.max_backoff);
                number += 1;
            }
            result => {
                return Attempted {
                    result,
                    attempts: number,
                    retries,
                }
            }
        }
    }
}

impl Executor for StepRouter {
    fn execute<'a>(&'a self, request: &'a EffectRequest) -> BoxFuture<'a, EffectResult> {
        Box::pin(async move {
            let EffectRequest::RecoveryStep {
                idempotency_key,
                recovery_id,
                deployment_key,
                service,
                environment,
                step,
                ci,
                context,
                dry_run,
            } = request
            else {
                return EffectResult {
                    idempotency_key: request.key().to_string(),
                    success: false,
                    detail: "the step router only carries out recovery steps".into(),
                    attempts: 0,
                    http_status: None,
                    retries: Vec::new(),
                    observed: None,
                };
            };
            let step_request = StepRequest {
                idempotency_key: idempotency_key.clone(),
                recovery_id: recovery_id.clone(),
                deployment_key: deployment_key.clone(),
                service: service.clone(),
                environment: environment.clone(),
                action: step.action.clone(),
                params: step.owned_params(),
                ci: ci.as_deref().cloned(),
                context: context.as_deref().cloned(),
                timeout: Duration::from_millis(step.timeout_ms.max(1) as u64),
            };
            let executor = if *dry_run {
                &self.dry_run
            } else {
                self.route(&step.action)
            };
            if !*dry_run && executor.kind() == self.dry_run.kind() {
                // Never report as done what was only recorded.
                return EffectResult {
                    idempotency_key: idempotency_key.clone(),
                    success: false,
                    detail: format!(
                        "no executor carries out {}: route it under orchestrate.executors.routes, \
                         or list it in orchestrate.dry_run to simulate it on purpose",
                        step.action
                    ),
                    attempts: 0,
                    http_status: None,
                    retries: Vec::new(),
                    observed: None,
                };
            }
            self.run(executor.as_ref(), &step_request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Fails with `errors` in turn, then succeeds; or sleeps forever when `hang`.
    struct Scripted {
        errors: Vec<StepError>,
        calls: AtomicU32,
        hang: bool,
    }

    impl StepExecutor for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }
        fn supports(&self, action: &str) -> bool {
            action != "failover"
        }
        fn run<'a>(&'a self, _request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) as usize;
            Box::pin(async move {
                if self.hang {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                match self.errors.get(n) {
                    Some(e) => Err(e.clone()),
                    None => Ok(StepDone {
                        detail: format!("done on call {}", n + 1),
                        http_status: Some(200),
                        observed: None,
                    }),
                }
            })
        }
    }

    fn request(timeout_ms: u64) -> StepRequest {
        StepRequest {
            idempotency_key: "web/prod#1/2".into(),
            recovery_id: "web/prod#1".into(),
            deployment_key: "web/prod".into(),
            service: "web".into(),
            environment: "prod".into(),
            action: "restart_service".into(),
            params: BTreeMap::new(),
            ci: None,
            context: None,
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    fn router(executor: Arc<dyn StepExecutor>) -> StepRouter {
        StepRouter::new(
            BTreeMap::from([("restart_service".to_string(), executor.clone())]),
            executor.clone(),
            executor,
            Retry {
                attempts: 3,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(2),
            },
        )
        .expect("router")
    }

    fn run(executor: Scripted, timeout_ms: u64) -> (EffectResult, u32) {
        let executor = Arc::new(executor);
        let r = router(executor.clone());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let result = rt.block_on(r.run(executor.as_ref(), &request(timeout_ms)));
        (result, executor.calls.load(Ordering::SeqCst))
    }

    #[test]
    fn retryable_failures_are_retried_with_the_same_key_and_permanent_ones_are_not() {
        let (result, calls) = run(
            Scripted {
                errors: vec![
                    StepError::from_status(503, "busy"),
                    StepError::transient("reset"),
                ],
                calls: AtomicU32::new(0),
                hang: false,
            },
            1000,
        );
        assert!(result.success, "{result:?}");
        assert_eq!((calls, result.attempts), (3, 3));
        assert_eq!(result.idempotency_key, "web/prod#1/2");
        assert_eq!(result.detail, "scripted: done on call 3");

        let (result, calls) = run(
            Scripted {
                errors: vec![StepError::from_status(404, "no such deployment")],
                calls: AtomicU32::new(0),
                hang: false,
            },
            1000,
        );
        assert!(!result.success);
        assert_eq!(calls, 1, "a 404 is not retried");
        assert_eq!(result.http_status, Some(404));
        assert_eq!(result.detail, "scripted: no such deployment");
    }

    #[test]
    fn an_attempt_that_outlives_its_timeout_fails_and_is_retried() {
        let (result, calls) = run(
            Scripted {
                errors: vec![],
                calls: AtomicU32::new(0),
                hang: true,
            },
            20,
        );
        assert!(!result.success);
        assert_eq!(calls, 3);
        assert_eq!(result.detail, "scripted: no answer within 20 ms");
    }

    #[test]
    fn a_route_to_an_executor_that_cannot_do_the_action_is_refused_at_start() {
        let e: Arc<dyn StepExecutor> = Arc::new(Scripted {
            errors: vec![],
            calls: AtomicU32::new(0),
            hang: false,
        });
        let refused = StepRouter::new(
            BTreeMap::from([("failover".to_string(), e.clone())]),
            e.clone(),
            e,
            Retry::default(),
        );
        assert_eq!(
            refused.err().as_deref(),
            Some("executor scripted cannot carry out failover")
        );
    }

    /// An action without a route falls to the default; when that is the
    /// dry-run executor and the step is not a dry run, it fails instead of
    /// "succeeding" without doing anything.
    #[test]
    fn a_real_step_never_lands_on_the_dry_run_executor() {
        let dry: Arc<dyn StepExecutor> = Arc::new(crate::executors::DryRun::new());
        let r =
            StepRouter::new(BTreeMap::new(), dry.clone(), dry, Retry::default()).expect("router");
        let step = |dry_run: bool| EffectRequest::RecoveryStep {
            idempotency_key: "web/prod#1/2".into(),
            recovery_id: "web/prod#1".into(),
            deployment_key: "web/prod".into(),
            service: "web".into(),
            environment: "prod".into(),
            step: crate::domain::PlanStep {
                index: 2,
                phase: crate::domain::Phase::Validation,
                action: "run_health_check".into(),
                target: "web/prod".into(),
                params: Default::default(),
                timeout_ms: 1000,
            },
            ci: None,
            context: None,
            dry_run,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let real = rt.block_on(r.execute(&step(false)));
        assert!(!real.success);
        assert_eq!(real.attempts, 0);
        assert!(
            real.detail
                .starts_with("no executor carries out run_health_check"),
            "{}",
            real.detail
        );
        let simulated = rt.block_on(r.execute(&step(true)));
        assert!(simulated.success, "{simulated:?}");
        assert!(
            simulated.detail.contains("dry run: would"),
            "{}",
            simulated.detail
        );
    }
}
