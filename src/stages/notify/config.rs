//! The `notify` section: channels, what each is told, rate limits, SMTP and
//! the commit-status API.

use crate::domain::{CiPlatform, NotificationTrigger, Severity};
use serde::Deserialize;

/// Notifications.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Generic webhook: each notification is POSTed as JSON. May be `${env:NAME}`.
    pub webhook_url: Option<String>,
    /// Per-attempt timeout, in milliseconds.
    pub webhook_timeout_ms: u64,
    /// Attempts before the delivery is recorded as failed.
    pub webhook_attempts: u32,
    /// Commit statuses on GitHub for recoveries of GitHub Actions failures.
    pub github_status: StatusApi,
    /// Commit statuses on GitLab for recoveries of GitLab CI failures.
    pub gitlab_status: StatusApi,
    /// Build descriptions on Jenkins for recoveries of Jenkins failures:
    /// `api_url` is the Jenkins root, `user` and `token` an API token.
    pub jenkins_status: StatusApi,
    /// Build tags on Azure DevOps for recoveries of Azure Pipelines failures:
    /// `api_url` is the organization URL (`https://dev.azure.com/<org>`),
    /// `token` a personal access token.
    pub azure_devops_status: StatusApi,
    /// Where notifications go: Slack, signed webhooks and e-mail, each for
    /// some environments, CI platforms and events. With no channel (and no
    /// `webhook_url`) notifications are only written to `medic.notifications`.
    pub channels: Vec<ChannelConfig>,
    /// Link in messages about failures that came without a CI run (e.g. a
    /// dashboard); failures from CI link to their run.
    pub link_url: Option<String>,
}

/// One notification channel (the original design's `notification_channels`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Name, unique among channels; appears in delivery records.
    pub name: String,
    /// `slack`, `webhook`, `email`, `pagerduty` or `opsgenie`.
    pub kind: ChannelKind,
    /// Environments this channel hears about; empty means all.
    #[serde(default)]
    pub environments: Vec<String>,
    /// CI platforms whose failures this channel hears about; empty means all,
    /// including failures found in logs with no CI run.
    #[serde(default)]
    pub platforms: Vec<CiPlatform>,
    /// Least severity this channel hears about; all by default.
    #[serde(default)]
    pub min_severity: Option<Severity>,
    /// What to notify: `approval_needed`, `outcome`.
    #[serde(default = "default_events")]
    pub events: Vec<NotificationTrigger>,
    /// Slack incoming-webhook URL (a secret: `${env:NAME}` or
    /// `${file:/path}`) or the generic webhook's URL.
    #[serde(default)]
    pub url: Option<String>,
    /// PagerDuty: the integration's routing key; Opsgenie: the API
    /// integration's key. A secret: `${env:NAME}` or `${file:/path}`.
    #[serde(default)]
    pub key: Option<String>,
    /// Generic webhook: HMAC-SHA256 secret, signed like the bridge's generic
    /// scheme (`X-Medic-Timestamp`, `X-Medic-Signature`). Unsigned without it.
    #[serde(default)]
    pub secret: Option<String>,
    /// E-mail: the SMTP server.
    #[serde(default)]
    pub smtp: Option<SmtpConfig>,
    /// E-mail: sender address.
    #[serde(default)]
    pub from: Option<String>,
    /// E-mail: recipients.
    #[serde(default)]
    pub to: Vec<String>,
    /// At most this many messages per window; the rest go out as one digest
    /// when the window ends.
    #[serde(default)]
    pub rate_limit: RateLimit,
    /// Per-attempt timeout, in milliseconds.
    #[serde(default = "default_channel_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts before the delivery is recorded as failed.
    #[serde(default = "default_channel_attempts")]
    pub attempts: u32,
}

/// Kinds of notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// Slack incoming webhook, Block Kit message.
    Slack,
    /// JSON POST, optionally HMAC-signed.
    Webhook,
    /// E-mail over SMTP.
    Email,
    /// PagerDuty Events API v2: pages, acknowledged and resolved.
    Pagerduty,
    /// Opsgenie Alert API: alerts, acknowledged and closed.
    Opsgenie,
}

impl ChannelKind {
    /// The kind as written in the configuration (and in metrics).
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
            ChannelKind::Email => "email",
            ChannelKind::Pagerduty => "pagerduty",
            ChannelKind::Opsgenie => "opsgenie",
        }
    }

    /// Whether the kind pages people (and so resolves what it paged).
    pub fn pages(self) -> bool {
        matches!(self, ChannelKind::Pagerduty | ChannelKind::Opsgenie)
    }
}

/// A channel's rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimit {
    /// Messages per window.
    pub max: u32,
    /// Window length, in seconds.
    pub per_seconds: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            max: 20,
            per_seconds: 60,
        }
    }
}

/// An SMTP server.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Host name.
    pub host: String,
    /// Port; by default 587 for `starttls`, 465 for `tls`, 25 for `none`.
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none` (plain text:
    /// only for a relay on the same host or network).
    #[serde(default)]
    pub tls: SmtpTls,
    /// User name for SMTP AUTH.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for SMTP AUTH: `${env:NAME}` or `${file:/path}`.
    #[serde(default)]
    pub password: Option<String>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte.
    Tls,
    /// No encryption.
    None,
}

fn default_events() -> Vec<NotificationTrigger> {
    vec![
        NotificationTrigger::ApprovalNeeded,
        NotificationTrigger::Outcome,
    ]
}

fn default_channel_timeout_ms() -> u64 {
    5_000
}

fn default_channel_attempts() -> u32 {
    3
}

/// The CI write-back APIs: each one's field under `notify` and the platform
/// it writes to.
pub const STATUS_FIELDS: [(&str, CiPlatform); 4] = [
    ("github_status", CiPlatform::GithubActions),
    ("gitlab_status", CiPlatform::GitlabCi),
    ("jenkins_status", CiPlatform::Jenkins),
    ("azure_devops_status", CiPlatform::AzureDevops),
];

/// The field under `notify` of the API that writes back to `platform`
/// (`github_status` for a platform medic does not write back to).
pub fn status_field(platform: Option<CiPlatform>) -> &'static str {
    STATUS_FIELDS
        .iter()
        .find(|(_, p)| Some(*p) == platform)
        .map_or("github_status", |(name, _)| name)
}

/// Where and how to write commit statuses back to a CI platform.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusApi {
    /// API base URL.
    pub api_url: String,
    /// Access token, `${env:NAME}` or `${file:/path}`; without one no status is written.
    #[serde(default)]
    pub token: Option<String>,
    /// Jenkins only: the user the API token belongs to.
    #[serde(default)]
    pub user: Option<String>,
}

impl StatusApi {
    /// An API at `api_url` with no token: writes nothing until one is set.
    pub fn at(api_url: &str) -> StatusApi {
        StatusApi {
            api_url: api_url.into(),
            token: None,
            user: None,
        }
    }
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            github_status: StatusApi::at("https://api.github.com"),
            gitlab_status: StatusApi::at("https://gitlab.com/api/v4"),
            jenkins_status: StatusApi::at(""),
            azure_devops_status: StatusApi::at(""),
            webhook_url: None,
            webhook_timeout_ms: 5_000,
            webhook_attempts: 3,
            channels: Vec::new(),
            link_url: None,
        }
    }
}

impl NotifyConfig {
    /// Every CI write-back API with its field name under `notify` and the
    /// platform it writes to, in [`STATUS_FIELDS`] order.
    pub fn status_apis(&self) -> [(&'static str, CiPlatform, &StatusApi); 4] {
        let apis = [
            &self.github_status,
            &self.gitlab_status,
            &self.jenkins_status,
            &self.azure_devops_status,
        ];
        std::array::from_fn(|i| (STATUS_FIELDS[i].0, STATUS_FIELDS[i].1, apis[i]))
    }

    /// Checks values that parse but cannot work; returns `(field, message)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let fail = |field: &str, message: String| Err((field.to_string(), message));
        if self.webhook_attempts == 0 {
            return fail("notify.webhook_attempts", "must be at least 1".into());
        }
        if let Some(url) = &self.webhook_url {
            if !(url.starts_with("http://") || url.starts_with("https://") || url.starts_with("${"))
            {
                return fail(
                    "notify.webhook_url",
                    "must be an http:// or https:// URL".into(),
                );
            }
        }
        for (name, _, api) in self.status_apis() {
            if api.token.is_none() {
                continue;
            }
            if !(api.api_url.starts_with("http://") || api.api_url.starts_with("https://")) {
                let example = match name {
                    "jenkins_status" => " (the Jenkins root, e.g. https://ci.example.com/)",
                    "azure_devops_status" => {
                        " (the organization URL, e.g. https://dev.azure.com/fabrikam)"
                    }
                    _ => "",
                };
                return fail(
                    &format!("notify.{name}.api_url"),
                    format!("must be an http:// or https:// URL when a token is set{example}"),
                );
            }
            if name == "jenkins_status" && api.user.as_deref().is_none_or(str::is_empty) {
                return fail(
                    "notify.jenkins_status.user",
                    "must name the user the API token belongs to".into(),
                );
            }
        }
        let mut names = std::collections::BTreeSet::new();
        for c in &self.all_channels() {
            if let Err((field, message)) = c.validate() {
                return fail(&format!("notify.channels.{}.{field}", c.name), message);
            }
            if !names.insert(c.name.clone()) {
                return fail(
                    &format!("notify.channels.{}", c.name),
                    "two channels have this name (notify.webhook_url is the channel 'webhook')"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// Every channel notifications go to: `webhook_url` as the unsigned
    /// channel `webhook` that hears everything, then `channels`.
    pub fn all_channels(&self) -> Vec<ChannelConfig> {
        let legacy = self.webhook_url.as_ref().map(|url| ChannelConfig {
            name: "webhook".into(),
            kind: ChannelKind::Webhook,
            environments: Vec::new(),
            platforms: Vec::new(),
            min_severity: None,
            events: default_events(),
            url: Some(url.clone()),
            key: None,
            secret: None,
            smtp: None,
            from: None,
            to: Vec::new(),
            rate_limit: RateLimit::default(),
            timeout_ms: self.webhook_timeout_ms,
            attempts: self.webhook_attempts,
        });
        legacy.into_iter().chain(self.channels.clone()).collect()
    }
}

impl ChannelConfig {
    /// Checks the fields this channel's kind needs; returns `(field, message)`.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let valid_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid_name {
            return Err((
                "name",
                "must be non-empty and use only letters, digits, '-', '_' and '.'".into(),
            ));
        }
        if self.events.is_empty() {
            return Err(("events", "lists nothing to notify".into()));
        }
        if self.rate_limit.max == 0 || self.rate_limit.per_seconds == 0 {
            return Err((
                "rate_limit",
                "max and per_seconds must be at least 1".into(),
            ));
        }
        if self.attempts == 0 || self.timeout_ms == 0 {
            return Err((
                "attempts",
                "attempts and timeout_ms must be at least 1".into(),
            ));
        }
        let email = self.kind == ChannelKind::Email;
        let unused = |field: &'static str| {
            Err((
                field,
                format!("does not apply to a {} channel", self.kind.as_str()),
            ))
        };
        let paging = self.kind.pages();
        match (&self.key, paging) {
            (None, true) => return Err(("key", "is required".into())),
            (Some(_), false) => return unused("key"),
            _ => {}
        }
        match &self.url {
            // PagerDuty and Opsgenie have default endpoints.
            None if !email && !paging => return Err(("url", "is required".into())),
            Some(_) if email => return unused("url"),
            Some(url)
                if !(url.starts_with("https://")
                    || url.starts_with("http://")
                    || url.starts_with("${")) =>
            {
                return Err(("url", "must be an http:// or https:// URL".into()))
            }
            _ => {}
        }
        if self.secret.is_some() && self.kind != ChannelKind::Webhook {
            return unused("secret");
        }
        if !email {
            if self.smtp.is_some() {
                return unused("smtp");
            }
            if self.from.is_some() {
                return unused("from");
            }
            if !self.to.is_empty() {
                return unused("to");
            }
            return Ok(());
        }
        let Some(smtp) = &self.smtp else {
            return Err(("smtp", "is required for an email channel".into()));
        };
        if smtp.host.is_empty() {
            return Err(("smtp.host", "is empty".into()));
        }
        if smtp.username.is_some() != smtp.password.is_some() {
            return Err(("smtp.password", "username and password go together".into()));
        }
        match &self.from {
            None => return Err(("from", "is required for an email channel".into())),
            Some(from) if from.parse::<lettre::message::Mailbox>().is_err() => {
                return Err(("from", format!("'{from}' is not an e-mail address")))
            }
            Some(_) => {}
        }
        if self.to.is_empty() {
            return Err(("to", "lists no recipient".into()));
        }
        if let Some(bad) = self
            .to
            .iter()
            .find(|to| to.parse::<lettre::message::Mailbox>().is_err())
        {
            return Err(("to", format!("'{bad}' is not an e-mail address")));
        }
        Ok(())
    }
}
