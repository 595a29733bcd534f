//! What the HTTP, GitHub and GitLab step executors share: one HTTP client
//! setup, escaping of values for URLs, checks of names that come from
//! payloads, and the mapping of answers and transport errors to
//! [`StepError`]s.
//!
//! Nothing here puts text from a request into a URL unescaped: every value
//! from logs or payloads is either checked against what the platform allows
//! or percent-encoded for its position.

use super::step::{StepError, StepRequest};
use crate::domain::CiRef;
use std::time::Duration;

/// Most bytes of a response body read (error messages and created ids are small).
const MAX_BODY: usize = 64 * 1024;

/// A client that never follows redirects: a redirect would carry tokens and
/// signed bodies to wherever the answer points.
pub(crate) fn client(user_agent: &str) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .user_agent(user_agent)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// An API base URL from the configuration: http(s), with a host, no query or
/// fragment, able to take path segments.
pub(crate) fn api_url(text: &str, field: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("{field} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{field} must be an http or https URL"));
    }
    if url.host_str().is_none_or(str::is_empty) || url.cannot_be_a_base() {
        return Err(format!("{field} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{field} must not have a query or fragment"));
    }
    Ok(url)
}

/// An access token for a header: non-empty visible ASCII. The error names the
/// field, never the value.
pub(crate) fn check_token(token: &str, field: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err(format!("{field} is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{field} has characters a header cannot carry (whitespace or non-ASCII)"
        ));
    }
    Ok(())
}

/// `base` with `segments` appended, each percent-encoded as one path segment
/// (`/` becomes `%2F`). Empty, `.` and `..` segments are refused: the URL
/// library would drop them silently and change the path.
pub(crate) fn join(base: &reqwest::Url, segments: &[&str]) -> Result<reqwest::Url, StepError> {
    if let Some(bad) = segments
        .iter()
        .find(|s| s.is_empty() || **s == "." || **s == "..")
    {
        return Err(StepError::permanent(format!(
            "'{bad}' cannot be a path segment"
        )));
    }
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|_| StepError::permanent("the API URL cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// Percent-encodes everything but RFC 3986 unreserved characters: the value
/// becomes exactly one path segment (`/`, `?`, `#`, `%` are all encoded).
pub(crate) fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one name or value: space
/// becomes `+`, `&`, `=`, `+`, `#` and everything non-alphanumeric but `*-._`
/// is percent-encoded.
pub(crate) fn encode_form(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b' ' => out.push('+'),
            b if b.is_ascii_alphanumeric() || b"*-._".contains(&b) => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A commit sha: 7 to 64 hex digits.
pub(crate) fn valid_sha(sha: &str) -> bool {
    (7..=64).contains(&sha.len()) && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A numeric id: 1 to 20 digits.
pub(crate) fn valid_id(id: &str) -> bool {
    (1..=20).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_digit())
}

/// `owner/name` as GitHub allows them.
pub(crate) fn github_repo(repo: &str) -> Option<(&str, &str)> {
    let (owner, name) = repo.split_once('/')?;
    let ok = |s: &str| {
        (1..=100).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            && s != "."
            && s != ".."
    };
    (ok(owner) && ok(name)).then_some((owner, name))
}

/// A GitLab project: a numeric id or a `group/sub/project` path.
pub(crate) fn gitlab_project(project: &str) -> bool {
    (1..=255).contains(&project.len())
        && project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && !project.contains("..")
        && !project.starts_with('/')
        && !project.ends_with('/')
        && !project.contains("//")
}

/// The CI run behind the failure, when it came from `platform` (`what` names
/// the platform in the error).
pub(crate) fn ci_run<'a>(
    request: &'a StepRequest,
    platform: &str,
    what: &str,
) -> Result<&'a CiRef, StepError> {
    let Some(ci) = request.ci.as_ref() else {
        return Err(StepError::permanent(format!(
            "the failure has no {what} run: it was not reported by a CI platform"
        )));
    };
    if ci.platform != platform {
        let from = if ci.platform.len() <= 40
            && ci
                .platform
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            ci.platform.as_str()
        } else {
            "another platform"
        };
        return Err(StepError::permanent(format!(
            "the failure has no {what} run: it came from {from}"
        )));
    }
    Ok(ci)
}

/// Printable text from untrusted bytes, at most `max` bytes from the end:
/// lossy UTF-8, whitespace runs become one space, other control characters go.
pub(crate) fn clean_tail(bytes: &[u8], max: usize) -> String {
    let mut start = bytes.len().saturating_sub(max);
    // Do not start in the middle of a UTF-8 sequence.
    while start < bytes.len() && (bytes[start] & 0xC0) == 0x80 {
        start += 1;
    }
    let text = String::from_utf8_lossy(&bytes[start..]);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_whitespace() {
            if !out.ends_with(' ') {
                out.push(' ');
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
    out.trim().to_string()
}

/// An untrusted value for an error message: at most 80 characters, with
/// control characters and quotes escaped.
pub(crate) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().nth(80).is_some() {
        out.push_str("...");
    }
    format!("'{out}'")
}

/// The error for a request that got no answer. The URL is left out of the
/// text (its query may carry a token).
pub(crate) fn transport_error(what: &str, error: reqwest::Error) -> StepError {
    let builder = error.is_builder();
    let error = error.without_url();
    if builder {
        StepError::permanent(format!("{what}: cannot build the request: {error}"))
    } else {
        StepError::transient(format!("{what}: request failed: {error}"))
    }
}

/// Sends `builder`; returns the status and at most 64 KiB of the body,
/// whatever the status. A body cut off by the connection is an error only
/// for a success status (an error answer's text is a courtesy).
pub(crate) async fn fetch(
    builder: reqwest::RequestBuilder,
    what: &str,
) -> Result<(u16, Vec<u8>), StepError> {
    let mut response = builder.send().await.map_err(|e| transport_error(what, e))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while body.len() < MAX_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(e) if (200..300).contains(&status) => return Err(transport_error(what, e)),
            Err(_) => break,
        }
    }
    body.truncate(MAX_BODY);
    Ok((status, body))
}

/// Sends `builder`; returns the status and (at most 64 KiB of) the body of a
/// success, or the error for a failure status (with the API's `message`).
pub(crate) async fn send(
    builder: reqwest::RequestBuilder,
    what: &str,
) -> Result<(u16, Vec<u8>), StepError> {
    let (status, body) = fetch(builder, what).await?;
    if (200..300).contains(&status) {
        return Ok((status, body));
    }
    let mut detail = format!("{what}: HTTP {status}");
    let message = api_message(&body);
    if !message.is_empty() {
        detail.push_str(": ");
        detail.push_str(&message);
    }
    Err(StepError::from_status(status, detail))
}

/// The `message` (GitHub, GitLab) or `error` (GitLab) of an error answer,
/// cleaned and cut to 200 bytes; empty when there is none.
pub(crate) fn api_message(body: &[u8]) -> String {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        // Some APIs (Slack's incoming webhooks) answer with a short word.
        let text = clean_tail(body, 200);
        return if body.len() > 200 || text.starts_with('<') {
            String::new()
        } else {
            text
        };
    };
    let text = match (value.get("message"), value.get("error")) {
        (Some(serde_json::Value::String(m)), _) => m.clone(),
        (Some(m @ (serde_json::Value::Object(_) | serde_json::Value::Array(_))), _) => {
            m.to_string()
        }
        (_, Some(serde_json::Value::String(e))) => e.clone(),
        _ => return String::new(),
    };
    let text = clean_tail(text.as_bytes(), usize::MAX);
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_become_one_segment_or_one_form_value() {
        assert_eq!(encode_segment("a/../b"), "a%2F..%2Fb");
        assert_eq!(encode_segment("x y?#%"), "x%20y%3F%23%25");
        assert_eq!(encode_form("a b&c=d+e"), "a+b%26c%3Dd%2Be");
        assert_eq!(encode_form("héllo"), "h%C3%A9llo");
    }

    #[test]
    fn joined_paths_keep_their_shape() {
        let base = reqwest::Url::parse("https://gitlab.example/api/v4/").expect("url");
        let url = join(
            &base,
            &["projects", "group/sub/project", "jobs", "1", "retry"],
        )
        .expect("joined");
        assert_eq!(
            url.as_str(),
            "https://gitlab.example/api/v4/projects/group%2Fsub%2Fproject/jobs/1/retry"
        );
        for bad in ["..", ".", ""] {
            assert!(join(&base, &["projects", bad]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_from_payloads_are_checked() {
        assert_eq!(
            github_repo("Codertocat/Hello-World"),
            Some(("Codertocat", "Hello-World"))
        );
        for bad in ["a/b/c", "../x", "owner/..", "own er/x", "owner/x?y=1", "x"] {
            assert_eq!(github_repo(bad), None, "{bad}");
        }
        assert!(gitlab_project("31537070") && gitlab_project("gitlab-org/gitlab-test"));
        for bad in ["a/../b", "a?b", "/a", "a/", "a//b", ""] {
            assert!(!gitlab_project(bad), "{bad}");
        }
        assert!(valid_id("2202229078") && !valid_id("12a") && !valid_id(""));
        assert!(valid_sha("3484a3fb816e0859fd6e1cea078d76385ff50625") && !valid_sha("zz"));
    }

    #[test]
    fn tails_are_printable() {
        assert_eq!(clean_tail(b"one\ntwo\x1b[31m\r\n", 200), "one two[31m");
        assert_eq!(clean_tail("aé".as_bytes(), 1), "");
        assert_eq!(clean_tail(b"abcdef", 3), "def");
        assert_eq!(
            api_message(br#"{"message":"Not Found","documentation_url":"x"}"#),
            "Not Found"
        );
        assert_eq!(
            api_message(br#"{"error":"404 Not\nFound"}"#),
            "404 Not Found"
        );
        assert_eq!(api_message(b"<html>"), "");
    }
}
