//! CI events to signals.

use crate::domain::{
    CiEvent, CiPlatform, CiRef, CiStatus, DeploymentKey, RawLogEnvelope, Shipper, Signal,
    SignalKind,
};
use std::collections::BTreeMap;

/// The signal for a finished-badly CI run; `None` for runs that succeeded or
/// are still going, which say nothing about a failure. Its text is one line
/// medic writes (platform, pipeline, job, "failed", failed steps, failure
/// reason), then the run's log excerpt as the platform sent it; categorize
/// reads no symptom wording in that first line.
pub fn ci_signal(event: &CiEvent, topic: &str, partition: i32, offset: i64) -> Option<Signal> {
    let verb = match event.status {
        CiStatus::Failure => "failed",
        CiStatus::TimedOut => "timed out",
        CiStatus::Cancelled => "was cancelled",
        _ => return None,
    };
    let key = DeploymentKey::new(&event.service, &event.environment);
    let mut text = format!("{} {}", event.platform, event.pipeline);
    if let Some(job) = &event.job {
        text.push_str(&format!(" job {job}"));
    }
    text.push(' ');
    text.push_str(verb);
    if !event.failed_steps.is_empty() {
        text.push_str(&format!(
            "; failed steps: {}",
            event.failed_steps.join(", ")
        ));
    }
    if let Some(reason) = &event.failure_reason {
        text.push_str(&format!("; failure reason: {reason}"));
    }
    if let Some(excerpt) = &event.log_excerpt {
        text.push('\n');
        text.push_str(excerpt);
    }
    let mut attributes = BTreeMap::new();
    for (name, value) in [
        ("commit_sha", &event.commit_sha),
        ("branch", &event.branch),
        ("actor", &event.actor),
    ] {
        if let Some(v) = value {
            attributes.insert(name.to_string(), v.clone());
        }
    }
    let (run_id, job_id) = run_and_job(event);
    Some(Signal {
        id: format!("ci/{}/{}", event.platform, event.id),
        deployment_key: key.to_string(),
        service: key.service().to_string(),
        environment: key.environment().to_string(),
        kind: SignalKind::Ci,
        observed_at: event.finished_at.unwrap_or(event.received_at),
        text,
        level: Some("error".into()),
        status_code: None,
        affected_users: None,
        error_rate: None,
        ci: Some(CiRef {
            event_id: event.id.clone(),
            platform: event.platform.to_string(),
            status: event.status.to_string(),
            pipeline: event.pipeline.clone(),
            job: event.job.clone(),
            url: event.url.clone(),
            commit_sha: event.commit_sha.clone(),
            repository: event.repository.clone(),
            run_id,
            job_id,
        }),
        origin: RawLogEnvelope::at(Shipper::CiEvent, topic, partition, offset),
        attributes,
    })
}

/// The ids an executor can act on: the pipeline or workflow run, and the
/// job when the event was about one. `CiEvent.run_id` is the id of whatever
/// the event was about; GitHub check runs and deployment statuses and GitLab
/// deployments are not runs that can be retried or cancelled.
fn run_and_job(event: &CiEvent) -> (Option<String>, Option<String>) {
    let run = Some(event.run_id.clone());
    match (event.platform, event.event_type.as_str()) {
        (CiPlatform::GithubActions, "workflow_run" | "workflow_job") => (run, None),
        (CiPlatform::GithubActions, _) => (None, None),
        // A GitLab job event carries the job's id; its pipeline's is in `pipeline`.
        (CiPlatform::GitlabCi, "Job Hook") => (
            event
                .pipeline
                .strip_prefix("pipeline ")
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string),
            run,
        ),
        (CiPlatform::GitlabCi, "Pipeline Hook") => (run, None),
        (CiPlatform::GitlabCi, _) => (None, None),
        _ => (run, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::CiPlatform;

    fn event(status: CiStatus) -> CiEvent {
        CiEvent {
            id: "d1".into(),
            platform: CiPlatform::GithubActions,
            event_type: "workflow_job".into(),
            status,
            service: "Hello-World".into(),
            environment: "ci".into(),
            pipeline: "CodeQL".into(),
            job: Some("linters".into()),
            run_id: "2202229078".into(),
            run_attempt: 1,
            commit_sha: Some("3484a3f".into()),
            branch: Some("main".into()),
            url: None,
            actor: None,
            failure_reason: None,
            failed_steps: vec!["Run yarn run format-check".into()],
            log_excerpt: None,
            started_at: None,
            finished_at: Some(10),
            received_at: 20,
            repository: None,
        }
    }

    #[test]
    fn failed_runs_become_signals_with_their_failed_steps() {
        let s = ci_signal(&event(CiStatus::Failure), "medic.ci.events", 0, 7).expect("signal");
        assert_eq!(s.deployment_key, "hello-world/ci");
        assert_eq!(
            s.text,
            "github_actions CodeQL job linters failed; failed steps: Run yarn run format-check"
        );
        assert_eq!(s.observed_at, 10);
        assert_eq!(s.id, "ci/github_actions/d1");
    }

    #[test]
    fn successful_and_running_runs_say_nothing() {
        for status in [
            CiStatus::Success,
            CiStatus::Running,
            CiStatus::Queued,
            CiStatus::Skipped,
        ] {
            assert!(ci_signal(&event(status), "t", 0, 0).is_none());
        }
        assert!(ci_signal(&event(CiStatus::Cancelled), "t", 0, 0)
            .expect("signal")
            .text
            .contains("was cancelled"));
    }

    #[test]
    fn only_runs_that_can_be_retried_carry_a_run_id() {
        let mut e = event(CiStatus::Failure);
        assert_eq!(
            run_and_job(&e).0.as_deref(),
            Some(e.run_id.as_str()),
            "workflow_job"
        );
        e.event_type = "check_run".into();
        assert_eq!(run_and_job(&e), (None, None));
        e.platform = CiPlatform::GitlabCi;
        e.event_type = "Job Hook".into();
        e.pipeline = "pipeline 7".into();
        assert_eq!(run_and_job(&e), (Some("7".into()), Some(e.run_id.clone())));
        e.event_type = "Deployment Hook".into();
        assert_eq!(run_and_job(&e), (None, None));
    }
}
