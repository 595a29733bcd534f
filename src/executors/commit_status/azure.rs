//! Azure DevOps: tags on the build.
//!
//! `PATCH {organization}/{project}/_apis/build/builds/{buildId}/tags?api-version=7.1`
//! with `{"tagsToAdd": [...], "tagsToRemove": [...]}` ("Tags - Update Build
//! Tags"), authenticated with HTTP Basic, an empty user and a personal access
//! token with the Build (read and execute) scope. A finished recovery removes
//! the tag its start added.
//!
//! The project is the path segment before the first `_area` segment of the
//! build URL in the service hook (`…/{project}/_apis/build/Builds/2` or
//! `…/{project}/_build/results?buildId=2`); the request goes to the
//! configured organization URL, never to the host the payload names.

use super::build_path::{append, build_url};
use super::StatusTarget;
use crate::domain::CiRef;
use crate::executors::outbound::valid_id;
use crate::stages::notify::{StatusReport, RECOVERING_TAG};
use crate::stages::CommitState;
use serde_json::json;

/// The REST API version medic speaks.
pub const API_VERSION: &str = "7.1";

/// The project segment of the build URL of `ci`, as it appears there, after
/// checking that the URL is the run's build (`…/{project}/_apis/build/Builds/{id}`
/// or `…/{project}/_build/results?buildId={id}`): a release's URL is not.
pub(super) fn project(ci: &CiRef) -> Result<String, String> {
    let (url, owned) = build_url(ci, "Azure DevOps")?;
    let segments: Vec<&str> = owned.iter().map(String::as_str).collect();
    let area = segments
        .iter()
        .position(|s| s.starts_with('_'))
        .filter(|i| *i > 0)
        .ok_or("the Azure DevOps build URL names no project")?;
    let run = ci.run_id.as_deref().unwrap_or_default();
    let build = match &segments[area..] {
        ["_apis", "build", builds, id] if builds.eq_ignore_ascii_case("builds") => {
            Some(id.to_string())
        }
        ["_build", "results"] | ["_build"] => url
            .query_pairs()
            .find(|(k, _)| k == "buildId")
            .map(|(_, v)| v.into_owned()),
        _ => None,
    };
    if build.as_deref() != Some(run) {
        return Err("the Azure DevOps URL is not the run's build (releases are not tagged)".into());
    }
    Ok(segments[area - 1].to_string())
}

/// The tag request for `report` on the build of `ci`.
pub(super) fn request(
    client: &reqwest::Client,
    target: &StatusTarget,
    ci: &CiRef,
    state: CommitState,
    report: &StatusReport,
) -> Result<reqwest::RequestBuilder, String> {
    let build = ci.run_id.as_deref().unwrap_or_default();
    if !valid_id(build) {
        return Err("the Azure DevOps build id is not a number".into());
    }
    let project = project(ci)?;
    let mut url = append(
        &target.api_url,
        &[&project, "_apis", "build", "builds", build, "tags"],
    )?;
    url.set_query(Some(&format!("api-version={API_VERSION}")));
    let remove: Vec<&str> = match state {
        CommitState::Pending => Vec::new(),
        CommitState::Success | CommitState::Failure => vec![RECOVERING_TAG],
    };
    let body = json!({"tagsToAdd": report.tags(), "tagsToRemove": remove});
    Ok(client
        .patch(url)
        .basic_auth("", Some(&target.token))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ci(url: &str) -> CiRef {
        CiRef {
            event_id: "e".into(),
            platform: "azure_devops".into(),
            status: "failure".into(),
            pipeline: "p".into(),
            job: None,
            url: Some(url.into()),
            commit_sha: None,
            repository: None,
            run_id: Some("2".into()),
            job_id: None,
        }
    }

    #[test]
    fn the_project_is_the_segment_before_the_area() {
        let api = "https://good-company.some.ssl.host/DefaultCollection/71777fbc-1cf2-4bd1-9540-128c1c71f766/_apis/build/Builds/2";
        assert_eq!(
            project(&ci(api)).expect("project"),
            "71777fbc-1cf2-4bd1-9540-128c1c71f766"
        );
        let web = "https://dev.azure.com/fabrikam/Fabrikam%20Fiber/_build/results?buildId=2";
        assert_eq!(project(&ci(web)).expect("project"), "Fabrikam%20Fiber");
        for other in [
            "https://dev.azure.com/_apis/build/Builds/2",
            "https://dev.azure.com/fabrikam/p/builds/2",
            "https://dev.azure.com/fabrikam/p/_apis/build/Builds/3",
            "https://dev.azure.com/fabrikam/p/_release?releaseId=2",
            "https://dev.azure.com/fabrikam/p/_build/results?buildId=..",
        ] {
            assert!(project(&ci(other)).is_err(), "{other}");
        }
    }
}
