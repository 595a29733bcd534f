//! The `bridge` section: the CI/CD webhook bridge's listener, limits,
//! platform endpoints and the approvals endpoint.

use serde::Deserialize;

/// The CI/CD webhook bridge.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// Address the HTTP server listens on.
    pub listen: String,
    /// Largest accepted body; larger requests get 413.
    pub body_limit_bytes: usize,
    /// Sustained requests per second allowed per platform and source address.
    pub rate_per_second: u32,
    /// Burst above the sustained rate per platform and source address.
    pub rate_burst: u32,
    /// Delivery ids remembered to answer redeliveries without producing twice.
    pub dedup_capacity: usize,
    /// How long to wait for the broker to acknowledge an event before answering 503.
    pub produce_timeout_ms: u64,
    /// Also produce verified events medic has no use for (pushes, merge
    /// requests, ...) as `CiEvent`s with status `unknown`; by default they get
    /// 202 and are only counted.
    pub produce_unused_events: bool,
    /// Per-platform endpoints. A platform without secrets answers 404: medic
    /// never accepts unauthenticated webhooks.
    pub github: PlatformEndpoint,
    /// GitLab (`X-Gitlab-Token` secrets, or `whsec_...` signing tokens).
    pub gitlab: PlatformEndpoint,
    /// Jenkins (shared tokens).
    pub jenkins: PlatformEndpoint,
    /// Azure DevOps (`user:password` for HTTP Basic).
    pub azure_devops: PlatformEndpoint,
    /// CircleCI.
    pub circleci: PlatformEndpoint,
    /// medic's generic signed format.
    pub generic: PlatformEndpoint,
    /// `POST {path}/{recovery_id}`: approve or reject a waiting recovery
    /// (ChatOps bots, dashboards). Without tokens the endpoint answers 404.
    pub approvals: ApprovalsEndpoint,
}

/// The shortest webhook secret or approval token medic starts with: 16
/// bytes, the least a generated secret has (`openssl rand -hex 8`).
pub const MIN_SECRET_BYTES: usize = 16;

/// The approvals endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApprovalsEndpoint {
    /// URL path prefix; the recovery id follows it.
    pub path: String,
    /// Bearer tokens allowed to decide, each with a name for the audit trail.
    /// Tokens must be `${env:NAME}` or `${file:/path}`.
    pub tokens: Vec<NamedToken>,
}

impl Default for ApprovalsEndpoint {
    fn default() -> Self {
        ApprovalsEndpoint {
            path: "/approvals".into(),
            tokens: Vec::new(),
        }
    }
}

/// A bearer token and who holds it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    /// Who holds the token, e.g. `chatops-bot`; recorded with every decision.
    pub name: String,
    /// The token.
    pub token: String,
}

/// One platform's endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformEndpoint {
    /// URL path.
    pub path: String,
    /// Active secrets, each `${env:NAME}` or `${file:/path}`; several during rotation.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Accepted clock difference for timestamped signatures, in seconds.
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
    /// Header carrying a shared token (Jenkins).
    #[serde(default = "default_token_header")]
    pub token_header: String,
}

fn default_tolerance() -> u64 {
    300
}

fn default_token_header() -> String {
    "X-Medic-Token".into()
}

impl PlatformEndpoint {
    fn at(path: &str) -> Self {
        PlatformEndpoint {
            path: path.into(),
            secrets: Vec::new(),
            tolerance_secs: default_tolerance(),
            token_header: default_token_header(),
        }
    }
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            listen: "0.0.0.0:8088".into(),
            body_limit_bytes: 1024 * 1024,
            rate_per_second: 50,
            rate_burst: 200,
            dedup_capacity: 100_000,
            produce_timeout_ms: 10_000,
            produce_unused_events: false,
            github: PlatformEndpoint::at("/webhooks/github"),
            gitlab: PlatformEndpoint::at("/webhooks/gitlab"),
            jenkins: PlatformEndpoint::at("/webhooks/jenkins"),
            azure_devops: PlatformEndpoint::at("/webhooks/azure-devops"),
            circleci: PlatformEndpoint::at("/webhooks/circleci"),
            generic: PlatformEndpoint::at("/webhooks/generic"),
            approvals: ApprovalsEndpoint::default(),
        }
    }
}

impl BridgeConfig {
    /// `(name, endpoint)` of every platform, in a fixed order.
    pub fn endpoints(&self) -> [(&'static str, &PlatformEndpoint); 6] {
        [
            ("github", &self.github),
            ("gitlab", &self.gitlab),
            ("jenkins", &self.jenkins),
            ("azure_devops", &self.azure_devops),
            ("circleci", &self.circleci),
            ("generic", &self.generic),
        ]
    }

    pub(crate) fn endpoints_mut(&mut self) -> [(&'static str, &mut PlatformEndpoint); 6] {
        [
            ("github", &mut self.github),
            ("gitlab", &mut self.gitlab),
            ("jenkins", &mut self.jenkins),
            ("azure_devops", &mut self.azure_devops),
            ("circleci", &mut self.circleci),
            ("generic", &mut self.generic),
        ]
    }
}

impl BridgeConfig {
    /// Checks values that parse but cannot work; returns `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        let b = self;
        if b.body_limit_bytes == 0 || b.rate_per_second == 0 || b.rate_burst == 0 {
            return fail(
                "bridge",
                "body_limit_bytes, rate_per_second and rate_burst must be at least 1".into(),
            );
        }
        let mut paths = std::collections::BTreeSet::new();
        for (name, endpoint) in b.endpoints() {
            if !endpoint.path.starts_with('/') || !paths.insert(endpoint.path.as_str()) {
                return fail(
                    &format!("bridge.{name}.path"),
                    format!(
                        "'{}' must start with / and differ from the other platforms' paths",
                        endpoint.path
                    ),
                );
            }
        }
        Ok(())
    }
}
