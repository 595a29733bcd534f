//! Jenkins: the build's description.
//!
//! `POST {root}/job/<name>[/job/<name>…]/<number>/submitDescription` with the
//! form field `description`, authenticated with HTTP Basic as a user and
//! that user's API token (requests with an API token need no CSRF crumb).
//! Jenkins answers the form post with `302 Found` pointing at the build page;
//! medic does not follow it and counts it as done.
//!
//! The job path comes from the build URL in the notification
//! (`build.full_url`); the request goes to the configured Jenkins root, never
//! to the host the payload names.

use super::build_path::{append, build_url};
use super::StatusTarget;
use crate::domain::CiRef;
use crate::executors::outbound::{encode_form, valid_id};
use crate::stages::notify::StatusReport;

/// `["job", "team", "job", "checkout", "18"]` from the build URL of `ci`:
/// one or more `job/<name>` pairs, then the build number (the run id).
pub(super) fn job_path(ci: &CiRef) -> Result<Vec<String>, String> {
    let (_, owned) = build_url(ci, "Jenkins")?;
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    let start = segments
        .iter()
        .position(|s| *s == "job")
        .ok_or("the Jenkins build URL has no /job/ path")?;
    let rest = &segments[start..];
    let (number, jobs) = rest.split_last().ok_or("the Jenkins build URL is empty")?;
    let pairs_ok =
        !jobs.is_empty() && jobs.len() % 2 == 0 && jobs.chunks(2).all(|pair| pair[0] == "job");
    if !pairs_ok || !valid_id(number) {
        return Err("the Jenkins build URL is not /job/<name>/<number>/".into());
    }
    if ci.run_id.as_deref().is_some_and(|id| id != *number) {
        return Err("the Jenkins build URL names another build than the run".into());
    }
    Ok(rest.iter().map(|s| s.to_string()).collect())
}

/// The description request for `report` on the build of `ci`.
pub(super) fn request(
    client: &reqwest::Client,
    target: &StatusTarget,
    ci: &CiRef,
    report: &StatusReport,
) -> Result<reqwest::RequestBuilder, String> {
    let user = target
        .user
        .as_deref()
        .ok_or("notify.jenkins_status.user is not set")?;
    let mut path = job_path(ci)?;
    path.push("submitDescription".into());
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let url = append(&target.api_url, &segments)?;
    let description = report.lines().join("\n");
    Ok(client
        .post(url)
        .basic_auth(user, Some(&target.token))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("description={}", encode_form(&description))))
}

/// Jenkins's answer to a stored description: `302 Found` to the build page.
/// A redirect to the login page means the credentials were not accepted.
pub(super) fn redirect_to_build(response: &reqwest::Response) -> bool {
    response.status() == reqwest::StatusCode::FOUND
        && response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .is_some_and(|l| !l.contains("/login") && !l.contains("securityRealm"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(url: &str, run: &str) -> CiRef {
        CiRef {
            event_id: "e".into(),
            platform: "jenkins".into(),
            status: "failure".into(),
            pipeline: "asgard".into(),
            job: None,
            url: Some(url.into()),
            commit_sha: None,
            repository: None,
            run_id: Some(run.into()),
            job_id: None,
        }
    }

    #[test]
    fn the_job_path_comes_from_the_build_url() {
        assert_eq!(
            job_path(&ci("http://localhost:8080/job/asgard/18/", "18")).expect("path"),
            ["job", "asgard", "18"]
        );
        assert_eq!(
            job_path(&ci(
                "https://ci.example.com/jenkins/job/team/job/check%20out/7",
                "7"
            ))
            .expect("path"),
            ["job", "team", "job", "check%20out", "7"]
        );
        for (url, run) in [
            ("http://localhost:8080/job/asgard/18/", "19"),
            ("http://localhost:8080/job/asgard/", "18"),
            ("http://localhost:8080/view/all/18/", "18"),
            ("http://localhost:8080/job/asgard/lastBuild/", "18"),
            ("http://localhost:8080/job/asgard/x/18/", "18"),
        ] {
            assert!(job_path(&ci(url, run)).is_err(), "{url}");
        }
    }
}
