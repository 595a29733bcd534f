//! CI events to signals.

use crate::domain::{
    CiEvent, CiPlatform, CiRef, CiStatus, DeploymentKey, RawLogEnvelope, Shipper, Signal,
    SignalKind,
};
use std::collections::BTreeMap;

/// The signal for a finished-badly CI run; `None` for runs that succeeded or
/// are still going, which say nothing about a failure.
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
    // GitLab job events carry the job's id; its pipeline's is in `pipeline`.
    let (run_id, job_id) = match (event.platform, event.event_type.as_str()) {
        (CiPlatform::GitlabCi, "Job Hook") => (
            event
                .pipeline
                .strip_prefix("pipeline ")
                .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
                .map(str::to_string),
            Some(event.run_id.clone()),
        ),
        (CiPlatform::GitlabCi, "Pipeline Hook") => (Some(event.run_id.clone()), None),
        // Other GitLab events (deployments) carry ids that are not runs.
        (CiPlatform::GitlabCi, _) => (None, None),
        _ => (Some(event.run_id.clone()), None),
    };
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
}
