//! Path segments copied from a build URL the CI platform sent: kept in the
//! percent-encoded form they arrived in, after checking that each is one
//! plain segment (unreserved characters and `%XX` escapes, no encoded `/`,
//! not `.` or `..`), so a payload cannot move the request to another path.

/// Whether `segment` (as it appears in a URL path) is one safe segment.
pub(super) fn plain_segment(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if segment.is_empty() || segment == "." || segment == ".." || segment.len() > 255 {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3);
                let Some(hex) = hex.filter(|h| h.iter().all(u8::is_ascii_hexdigit)) else {
                    return false;
                };
                // An encoded `/`, `\` or `.` could still change the path on the server.
                if hex.eq_ignore_ascii_case(b"2f")
                    || hex.eq_ignore_ascii_case(b"5c")
                    || hex.eq_ignore_ascii_case(b"2e")
                {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~".contains(&b) => i += 1,
            _ => return false,
        }
    }
    true
}

/// The build URL of `ci` and its non-empty path segments, as they appear
/// there (`platform` names the CI platform in errors).
pub(super) fn build_url(
    ci: &crate::domain::CiRef,
    platform: &str,
) -> Result<(reqwest::Url, Vec<String>), String> {
    let link = ci
        .url
        .as_deref()
        .ok_or_else(|| format!("the {platform} build has no URL"))?;
    let url =
        reqwest::Url::parse(link).map_err(|_| format!("the {platform} build URL is not a URL"))?;
    let segments = url
        .path_segments()
        .map(|s| s.filter(|p| !p.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    Ok((url, segments))
}

/// `base` with the already-encoded `segments` appended to its path.
pub(super) fn append(base: &reqwest::Url, segments: &[&str]) -> Result<reqwest::Url, String> {
    if let Some(bad) = segments.iter().find(|s| !plain_segment(s)) {
        return Err(format!(
            "'{}' from the build URL is not a plain path segment",
            super::super::outbound::shown(bad)
        ));
    }
    let mut url = base.clone();
    let path = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        segments.join("/")
    );
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_segments_pass() {
        for good in ["asgard", "my%20job", "caf%C3%A9", "18", "a.b-c_d~e"] {
            assert!(plain_segment(good), "{good}");
        }
        for bad in [
            "", ".", "..", "a/b", "a%2Fb", "%2e%2e", "a%5cb", "a?b", "a#b", "%zz", "a%2",
        ] {
            assert!(!plain_segment(bad), "{bad}");
        }
        let base = reqwest::Url::parse("https://ci.example.com/jenkins/").expect("url");
        let url = append(&base, &["job", "my%20job", "18", "submitDescription"]).expect("ok");
        assert_eq!(
            url.as_str(),
            "https://ci.example.com/jenkins/job/my%20job/18/submitDescription"
        );
        assert!(append(&base, &["job", ".."]).is_err());
    }
}
