//! The deployment key: `service/environment`, the Kafka key of every record
//! between stages, so that everything about one deployment reaches one instance.

use std::fmt;

/// `service/environment`, both parts normalized: lower-case, `/` and whitespace
/// replaced, never empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeploymentKey {
    service: String,
    environment: String,
}

impl DeploymentKey {
    /// Builds a key from raw service and environment names (normalizing both;
    /// the environment through [`normalize_environment`]).
    pub fn new(service: &str, environment: &str) -> Self {
        DeploymentKey {
            service: clean_part(service),
            environment: normalize_environment(environment),
        }
    }

    /// Parses `service/environment`; `None` when either part is missing.
    pub fn parse(text: &str) -> Option<Self> {
        let (service, environment) = text.trim().split_once('/')?;
        if service.trim().is_empty() || environment.trim().is_empty() || environment.contains('/') {
            return None;
        }
        Some(DeploymentKey::new(service, environment))
    }

    /// The deployment key prefix of a recovery id (`service/env#...`).
    pub fn of_recovery_id(recovery_id: &str) -> Option<Self> {
        let (key, _) = recovery_id.split_once('#')?;
        DeploymentKey::parse(key)
    }

    /// The service part.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The environment part.
    pub fn environment(&self) -> &str {
        &self.environment
    }
}

/// When the failure behind a recovery id (`service/env#first_seen.tag`, or
/// `service/env#first_seen` from before 0.2) began, in milliseconds.
pub fn recovery_first_seen(recovery_id: &str) -> Option<super::Millis> {
    let (_, rest) = recovery_id.rsplit_once('#')?;
    let millis = rest.split_once('.').map_or(rest, |(millis, _)| millis);
    millis.parse().ok()
}

impl fmt::Display for DeploymentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.service, self.environment)
    }
}

fn clean_part(raw: &str) -> String {
    let cleaned: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c == '/' || c == '#' || c.is_whitespace() || c.is_control() {
                '-'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    if cleaned.is_empty() {
        "unknown".to_string()
    } else {
        cleaned
    }
}

/// Maps the many spellings of an environment to `production`, `staging` or
/// `development`; anything else (`ci`, `qa`, a namespace name) is kept as written,
/// cleaned. Namespaces like `shop-prod` count as production because that is how
/// most clusters name them.
pub fn normalize_environment(raw: &str) -> String {
    let cleaned = clean_part(raw);
    let tokens: Vec<&str> = cleaned.split(['-', '_', '.']).collect();
    let has = |words: &[&str]| tokens.iter().any(|t| words.contains(t));
    if has(&["prod", "production", "prd", "live"]) {
        "production".to_string()
    } else if has(&["staging", "stage", "stg", "preprod", "uat"]) {
        "staging".to_string()
    } else if has(&["dev", "development", "develop"]) {
        "development".to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_are_normalized_from_common_spellings() {
        for (raw, want) in [
            ("prod", "production"),
            ("Production", "production"),
            ("shop-prod", "production"),
            ("stg", "staging"),
            ("uat", "staging"),
            ("dev", "development"),
            ("ci", "ci"),
            ("kube-system", "kube-system"),
            ("", "unknown"),
        ] {
            assert_eq!(normalize_environment(raw), want, "{raw}");
        }
    }

    #[test]
    fn keys_parse_and_print_symmetrically() {
        let key = DeploymentKey::parse("Checkout/prod").expect("valid key");
        assert_eq!(key.to_string(), "checkout/production");
        assert_eq!(DeploymentKey::parse("no-slash"), None);
        assert_eq!(DeploymentKey::parse("a/b/c"), None);
        assert_eq!(
            DeploymentKey::of_recovery_id("checkout/production#1700000000000"),
            Some(key)
        );
    }

    #[test]
    fn a_recovery_id_gives_its_failures_start_with_or_without_a_tag() {
        assert_eq!(
            recovery_first_seen("checkout/production#1700000000000.3fa2b19c"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            recovery_first_seen("checkout/production#1700000000000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(recovery_first_seen("checkout/production"), None);
        assert_eq!(recovery_first_seen("checkout/production#soon"), None);
    }

    #[test]
    fn separators_inside_parts_cannot_forge_another_key() {
        let key = DeploymentKey::new("team/app", "prod#1");
        assert_eq!(key.service(), "team-app");
        assert_eq!(key.to_string().matches('/').count(), 1);
        assert!(!key.to_string().contains('#'));
    }
}
