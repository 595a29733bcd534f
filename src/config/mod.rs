//! Configuration: one YAML file, every field optional, defaults compiled in.
//!
//! Layering, later wins: built-in defaults, the file given with `--config`,
//! `MEDIC_*` environment variables, command-line flags. Unknown fields are
//! errors, and every error names the file, the line and the field.
//!
//! Secrets never live in the file: a value may be written `${env:NAME}` or
//! `${file:/path}` and is resolved at start; the known secret librdkafka
//! properties (`sasl.password`, `ssl.key.password`, ...) are rejected when given
//! literally. `config/medic.example.yaml` documents every field and is tested to
//! equal the defaults.

// Each section's type lives with the code it configures; `Config` assembles
// them, and loading, layering, secrets and validation stay here.
pub use crate::bridge::config::{ApprovalsEndpoint, BridgeConfig, NamedToken, PlatformEndpoint};
pub use crate::executors::config::ExecutorsConfig;
pub use crate::kafka::config::{DeliveryConfig, DeliveryMode, KafkaConfig};
pub use crate::stages::categorize::config::CategorizeConfig;
pub use crate::stages::decide::config::DecideConfig;
pub use crate::stages::ingest::config::{
    IngestConfig, MAX_LINE_BYTES_CEILING, SIGNAL_HEADROOM_BYTES,
};
pub use crate::stages::notify::config::{
    ChannelConfig, ChannelKind, NotifyConfig, RateLimit, SmtpConfig, SmtpTls, StatusApi,
};
pub use crate::stages::orchestrate::config::{
    DryRun, EnvironmentConstraints, HoldPolicy, OrchestrateConfig,
};
pub use crate::stages::shadow::ShadowConfig;
pub use crate::telemetry::MetricsConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Everything medic can be told.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Cluster connection and naming.
    pub kafka: KafkaConfig,
    /// How records move between stages.
    pub delivery: DeliveryConfig,
    /// Raw log parsing.
    pub ingest: IngestConfig,
    /// Correlation windows.
    pub categorize: CategorizeConfig,
    /// Strategy choice.
    pub decide: DecideConfig,
    /// Recovery execution, with the executors' settings.
    pub orchestrate: OrchestrateConfig<ExecutorsConfig>,
    /// Notifications.
    pub notify: NotifyConfig,
    /// The CI/CD webhook bridge.
    pub bridge: BridgeConfig,
    /// `medic run shadow`: a candidate policy on live failures, acting on nothing.
    pub shadow: ShadowConfig,
    /// Prometheus metrics.
    pub metrics: MetricsConfig,
}

/// A configuration problem, located.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or a value is wrong.
    #[error("{origin}{}: {field}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Invalid {
        /// File name, or the environment variable / flag that set the value.
        origin: String,
        /// 1-based line in the file, when known.
        line: Option<usize>,
        /// Dotted field path, e.g. `delivery.mode`.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Properties that hold secrets and must come from `${env:..}` or `${file:..}`.
const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "sasl.oauthbearer.client.secret",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
];

impl Config {
    /// Parses `text` (the contents of `file`) over the defaults, then validates.
    /// Does not apply environment overrides or resolve secrets.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let de = serde_yaml_ng::Deserializer::from_str(text);
        let config: Config = match serde_path_to_error::deserialize(de) {
            Ok(config) => config,
            Err(e) => {
                let field = e.path().to_string();
                let inner = e.into_inner();
                // serde_yaml_ng already prefixes nested errors with the path.
                let message = strip_location(&inner.to_string())
                    .trim_start_matches(&format!("{field}: "))
                    .to_string();
                return Err(ConfigError::Invalid {
                    origin: file.to_string(),
                    line: inner.location().map(|l| l.line()),
                    field: if field == "." {
                        "(top level)".into()
                    } else {
                        field
                    },
                    message,
                });
            }
        };
        config
            .validate()
            .map_err(|(field, message)| ConfigError::Invalid {
                origin: file.to_string(),
                line: locate(text, &field),
                field,
                message,
            })?;
        Ok(config)
    }

    /// Loads the file (or the defaults when `None`), applies `MEDIC_*` variables
    /// from `env`, resolves `${env:..}`/`${file:..}` references and validates.
    pub fn load(
        path: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let (mut config, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    file: path.to_path_buf(),
                    source,
                })?;
                let origin = path.display().to_string();
                (Config::parse(&text, &origin)?, origin)
            }
            None => (Config::default(), "defaults".to_string()),
        };
        config.apply_env(env)?;
        config.resolve_secrets(env, &origin)?;
        config
            .validate()
            .map_err(|(field, message)| ConfigError::Invalid {
                origin: "environment".into(),
                line: None,
                field,
                message,
            })?;
        Ok(config)
    }

    fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let bad = |var: &str, field: &str, message: String| ConfigError::Invalid {
            origin: format!("environment variable {var}"),
            line: None,
            field: field.into(),
            message,
        };
        if let Some(v) = env("MEDIC_INSTANCE_ID") {
            self.delivery.instance_id = Some(v);
        }
        if let Some(v) = env("MEDIC_BROKERS") {
            self.kafka.brokers = Some(v);
        }
        if let Some(v) = env("MEDIC_TOPIC_PREFIX") {
            self.kafka.topic_prefix = v;
        }
        if let Some(v) = env("MEDIC_GROUP_PREFIX") {
            self.kafka.group_prefix = v;
        }
        if let Some(v) = env("MEDIC_DELIVERY_MODE") {
            self.delivery.mode = match v.as_str() {
                "exactly-once" => DeliveryMode::ExactlyOnce,
                "at-least-once" => DeliveryMode::AtLeastOnce,
                other => {
                    return Err(bad(
                        "MEDIC_DELIVERY_MODE",
                        "delivery.mode",
                        format!("unknown mode '{other}', expected exactly-once or at-least-once"),
                    ))
                }
            };
        }
        if let Some(v) = env("MEDIC_DRY_RUN") {
            self.orchestrate.dry_run = match v.as_str() {
                "true" | "1" => DryRun::All,
                "false" | "0" => DryRun::off(),
                other => {
                    return Err(bad(
                        "MEDIC_DRY_RUN",
                        "orchestrate.dry_run",
                        format!("expected true or false, got '{other}'"),
                    ))
                }
            };
        }
        if let Some(v) = env("MEDIC_METRICS_LISTEN") {
            self.metrics.listen = Some(v);
        }
        if let Some(v) = env("MEDIC_BRIDGE_LISTEN") {
            self.bridge.listen = v;
        }
        if let Some(v) = env("MEDIC_NOTIFY_WEBHOOK_URL") {
            self.notify.webhook_url = Some(v);
        }
        Ok(())
    }

    fn resolve_secrets(
        &mut self,
        env: &dyn Fn(&str) -> Option<String>,
        origin: &str,
    ) -> Result<(), ConfigError> {
        let k = &mut self.kafka;
        let sections = [
            ("properties", &mut k.properties),
            ("consumer_properties", &mut k.consumer_properties),
            ("producer_properties", &mut k.producer_properties),
        ];
        for (section, name, value) in sections
            .into_iter()
            .flat_map(|(section, map)| map.iter_mut().map(move |(n, v)| (section, n, v)))
        {
            let secret = SECRET_PROPERTIES.contains(&name.as_str());
            resolve_secret(
                value,
                env,
                origin,
                &format!("kafka.{section}.{name}"),
                secret,
            )?;
        }
        for (name, endpoint) in self.bridge.endpoints_mut() {
            for secret in endpoint.secrets.iter_mut() {
                let field = format!("bridge.{name}.secrets");
                resolve_secret(secret, env, origin, &field, true)?;
                long_enough(secret, origin, &field)?;
            }
        }
        let x = &mut self.orchestrate.executors;
        if let Some(g) = x.github.as_mut() {
            resolve_secret(
                &mut g.token,
                env,
                origin,
                "orchestrate.executors.github.token",
                true,
            )?;
        }
        if let Some(g) = x.gitlab.as_mut() {
            resolve_secret(
                &mut g.token,
                env,
                origin,
                "orchestrate.executors.gitlab.token",
                true,
            )?;
        }
        for (name, k) in [
            ("kubernetes", x.kubernetes.as_mut()),
            ("argo_rollouts", x.argo_rollouts.as_mut()),
        ] {
            if let Some(token) = k.and_then(|k| k.token.as_mut()) {
                resolve_secret(
                    token,
                    env,
                    origin,
                    &format!("orchestrate.executors.{name}.token"),
                    true,
                )?;
            }
        }
        if let Some(h) = x.http.as_mut() {
            for (action, a) in h.actions.iter_mut() {
                if let Some(secret) = a.hmac_secret.as_mut() {
                    resolve_secret(
                        secret,
                        env,
                        origin,
                        &format!("orchestrate.executors.http.actions.{action}.hmac_secret"),
                        true,
                    )?;
                }
                // Header values may carry credentials (`Authorization`): references are resolved, plain text is allowed.
                for (header, value) in a.headers.iter_mut() {
                    resolve_secret(
                        value,
                        env,
                        origin,
                        &format!("orchestrate.executors.http.actions.{action}.headers.{header}"),
                        false,
                    )?;
                }
            }
        }
        if let Some(c) = x.checks.as_mut() {
            if let Some(token) = c.prometheus.as_mut().and_then(|p| p.token.as_mut()) {
                resolve_secret(
                    token,
                    env,
                    origin,
                    "orchestrate.executors.checks.prometheus.token",
                    true,
                )?;
            }
            for (name, check) in c.health_checks.iter_mut() {
                if let Some(p) = check.http.as_mut() {
                    for (header, value) in p.headers.iter_mut() {
                        resolve_secret(
                            value,
                            env,
                            origin,
                            &format!(
                                "orchestrate.executors.checks.health_checks.{name}.http.headers.{header}"
                            ),
                            false,
                        )?;
                    }
                }
            }
        }
        if let Some(c) = x.command.as_mut() {
            for (action, a) in c.actions.iter_mut() {
                for (name, value) in a.env.iter_mut() {
                    resolve_secret(
                        value,
                        env,
                        origin,
                        &format!("orchestrate.executors.command.actions.{action}.env.{name}"),
                        false,
                    )?;
                }
            }
        }
        for t in self.bridge.approvals.tokens.iter_mut() {
            let field = "bridge.approvals.tokens.token";
            resolve_secret(&mut t.token, env, origin, field, true)?;
            long_enough(&t.token, origin, field)?;
        }
        for (name, api) in [
            ("github_status", &mut self.notify.github_status),
            ("gitlab_status", &mut self.notify.gitlab_status),
            ("jenkins_status", &mut self.notify.jenkins_status),
            ("azure_devops_status", &mut self.notify.azure_devops_status),
        ] {
            if let Some(token) = api.token.as_mut() {
                resolve_secret(token, env, origin, &format!("notify.{name}.token"), true)?;
            }
        }
        for c in self.notify.channels.iter_mut() {
            let field = |name: &str| format!("notify.channels.{}.{name}", c.name);
            if let Some(url) = c.url.as_mut() {
                // A Slack incoming-webhook URL is itself the credential.
                let secret = c.kind == ChannelKind::Slack;
                resolve_secret(url, env, origin, &field("url"), secret)?;
            }
            if let Some(secret) = c.secret.as_mut() {
                resolve_secret(secret, env, origin, &field("secret"), true)?;
            }
            if let Some(key) = c.key.as_mut() {
                resolve_secret(key, env, origin, &field("key"), true)?;
            }
            if let Some(password) = c.smtp.as_mut().and_then(|s| s.password.as_mut()) {
                resolve_secret(password, env, origin, &field("smtp.password"), true)?;
            }
        }
        if let Some(url) = self.notify.webhook_url.as_mut() {
            if let Some(resolved) = resolve_reference(url, env) {
                *url = resolved.map_err(|message| ConfigError::Invalid {
                    origin: origin.into(),
                    line: None,
                    field: "notify.webhook_url".into(),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Checks values that parse but cannot work; returns `(field, message)`.
    /// Each section checks its own fields, in this order.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.kafka.validate()?;
        self.delivery.validate()?;
        self.ingest.validate(self.kafka.record_limit())?;
        self.categorize.validate()?;
        self.bridge.validate()?;
        self.notify.validate()
    }
}

/// Resolves a `${env:..}`/`${file:..}` reference in place. A `secret` must be
/// such a reference and must not resolve to nothing; other values may be literal.
fn resolve_secret(
    value: &mut String,
    env: &dyn Fn(&str) -> Option<String>,
    origin: &str,
    field: &str,
    secret: bool,
) -> Result<(), ConfigError> {
    let invalid = |message: String| ConfigError::Invalid {
        origin: origin.into(),
        line: None,
        field: field.into(),
        message,
    };
    match resolve_reference(value, env) {
        Some(Ok(resolved)) if secret && resolved.is_empty() => {
            Err(invalid("the secret is empty".into()))
        }
        Some(Ok(resolved)) => {
            *value = resolved;
            Ok(())
        }
        Some(Err(message)) => Err(invalid(message)),
        None if secret => Err(invalid(
            "secrets must not be written in the config file; use ${env:NAME} or ${file:/path}"
                .into(),
        )),
        None => Ok(()),
    }
}

/// Refuses a webhook secret or approval token shorter than
/// [`MIN_SECRET_BYTES`]: a guessable one would let anyone post events or
/// approve recoveries.
fn long_enough(value: &str, origin: &str, field: &str) -> Result<(), ConfigError> {
    if value.len() >= crate::bridge::config::MIN_SECRET_BYTES {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        origin: origin.into(),
        line: None,
        field: field.into(),
        message: format!(
            "the secret is {} bytes; webhook secrets and approval tokens need at least {} (e.g. `openssl rand -hex 32`)",
            value.len(),
            crate::bridge::config::MIN_SECRET_BYTES
        ),
    })
}

/// `Some(resolved)` when `value` is a `${env:..}`/`${file:..}` reference.
fn resolve_reference(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Result<String, String>> {
    let inner = value.strip_prefix("${")?.strip_suffix('}')?;
    Some(if let Some(var) = inner.strip_prefix("env:") {
        env(var).ok_or_else(|| format!("environment variable {var} is not set"))
    } else if let Some(path) = inner.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
            .map_err(|e| format!("cannot read secret file {path}: {e}"))
    } else {
        Err(format!(
            "'{value}' is neither ${{env:NAME}} nor ${{file:/path}}"
        ))
    })
}

/// Removes serde_yaml's trailing " at line L column C" (we report the line ourselves).
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// Best-effort line of a dotted field path in YAML text: follows the path's
/// keys in order, each at a deeper indentation than the one before. A field
/// the file does not set (a required one left out) is located at the
/// deepest section of its path that the file has.
fn locate(text: &str, field: &str) -> Option<usize> {
    let mut keys = field.split('.').peekable();
    let mut want = keys.next()?;
    let mut min_indent = 0usize;
    let mut section = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if indent < min_indent || trimmed.starts_with('#') {
            continue;
        }
        let key = trimmed
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if key == want && trimmed.contains(':') {
            match keys.next() {
                Some(next) => {
                    want = next;
                    min_indent = indent + 1;
                    section = Some(i + 1);
                }
                None => return Some(i + 1),
            }
        }
    }
    section
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn the_example_file_documents_exactly_the_defaults() {
        let example = include_str!("../../config/medic.example.yaml");
        let parsed = Config::parse(example, "config/medic.example.yaml").expect("example parses");
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn an_unknown_field_names_file_line_and_field() {
        let text =
            "kafka:\n  topic_prefix: medic\ndelivery:\n  mode: exactly-once\n  batch_size: 10\n";
        let err = Config::parse(text, "medic.yaml").unwrap_err().to_string();
        assert!(err.starts_with("medic.yaml:5: delivery"), "{err}");
        assert!(err.contains("unknown field `batch_size`"), "{err}");
    }

    #[test]
    fn a_bad_enum_value_names_the_field() {
        let err = Config::parse("delivery:\n  mode: twice\n", "m.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("m.yaml:2: delivery.mode:"), "{err}");
        assert!(err.contains("exactly-once"), "{err}");
    }

    #[test]
    fn validation_errors_are_located_too() {
        let text = "categorize:\n  window_quiet_ms: 60000\n  window_max_ms: 1000\n";
        let err = Config::parse(text, "m.yaml").unwrap_err().to_string();
        assert_eq!(
            err,
            "m.yaml:3: categorize.window_max_ms: 1000 is shorter than window_quiet_ms (60000)"
        );
    }

    #[test]
    fn a_ci_write_back_with_a_token_needs_its_api_url_and_jenkins_its_user() {
        let text =
            "notify:\n  jenkins_status:\n    api_url: https://ci.example.com/\n    token: t\n";
        let err = Config::parse(text, "m.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("m.yaml:2: notify.jenkins_status.user: must name the user"),
            "{err}"
        );
        let text =
            "notify:\n  azure_devops_status:\n    api_url: dev.azure.com/fabrikam\n    token: t\n";
        let err = Config::parse(text, "m.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("m.yaml:3: notify.azure_devops_status.api_url: must be an http"),
            "{err}"
        );
        assert!(err.contains("https://dev.azure.com/fabrikam"), "{err}");
    }

    #[test]
    fn a_line_limit_past_what_a_record_holds_is_refused() {
        // Over the producer's default record limit (1,000,000 bytes).
        let text = "ingest:\n  max_line_bytes: 2097152\n";
        let err = Config::parse(text, "m.yaml").unwrap_err().to_string();
        assert!(
            err.starts_with("m.yaml:2: ingest.max_line_bytes: 2097152 is outside 1..=934464"),
            "{err}"
        );
        // With the producer's limit raised, it is accepted.
        let raised = "kafka:\n  producer_properties:\n    message.max.bytes: \"4194304\"\n\
                      ingest:\n  max_line_bytes: 2097152\n";
        let config = Config::parse(raised, "m.yaml").expect("valid");
        assert_eq!(config.ingest.max_line_bytes, 2_097_152);
    }

    #[test]
    fn properties_medic_owns_are_refused() {
        let text = "kafka:\n  properties:\n    enable.auto.commit: \"true\"\n";
        let err = Config::parse(text, "m.yaml").unwrap_err().to_string();
        assert!(err.contains("kafka.properties.enable.auto.commit"), "{err}");
    }

    #[test]
    fn short_webhook_secrets_and_approval_tokens_are_refused_at_start() {
        let env = |k: &str| match k {
            "SHORT" => Some("s3cret".to_string()),
            "LONG" => Some("0123456789abcdef".to_string()),
            _ => None,
        };
        for (text, field) in [
            (
                "bridge:\n  github: {path: /webhooks/github, secrets: [\"${env:SHORT}\"]}\n",
                "bridge.github.secrets",
            ),
            (
                "bridge:\n  approvals: {tokens: [{name: bot, token: \"${env:SHORT}\"}]}\n",
                "bridge.approvals.tokens.token",
            ),
        ] {
            let dir = std::env::temp_dir().join(format!("medic-short-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let path = dir.join("short.yaml");
            std::fs::write(&path, text).expect("write");
            let err = Config::load(Some(&path), &env).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains("6 bytes") && err.contains("at least 16"),
                "{err}"
            );
            std::fs::write(&path, text.replace("SHORT", "LONG")).expect("write");
            Config::load(Some(&path), &env).expect("16 bytes are enough");
        }
    }

    #[test]
    fn secrets_come_from_the_environment_never_the_file() {
        let text = "kafka:\n  properties:\n    sasl.password: hunter2\n";
        let dir = std::env::temp_dir().join(format!("medic-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("literal.yaml");
        std::fs::write(&path, text).expect("write");
        let err = Config::load(Some(&path), &no_env).unwrap_err().to_string();
        assert!(err.contains("secrets must not be written"), "{err}");

        std::fs::write(
            &path,
            "kafka:\n  properties:\n    sasl.password: ${env:KAFKA_PW}\n",
        )
        .expect("write");
        let env = |k: &str| (k == "KAFKA_PW").then(|| "s3cret".to_string());
        let config = Config::load(Some(&path), &env).expect("loads");
        assert_eq!(config.kafka.properties["sasl.password"], "s3cret");
        let missing = Config::load(Some(&path), &no_env).unwrap_err().to_string();
        assert!(missing.contains("KAFKA_PW is not set"), "{missing}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = |k: &str| match k {
            "MEDIC_BROKERS" => Some("k1:9092,k2:9092".to_string()),
            "MEDIC_DELIVERY_MODE" => Some("at-least-once".to_string()),
            _ => None,
        };
        let config = Config::load(None, &env).expect("loads");
        assert_eq!(config.kafka.brokers.as_deref(), Some("k1:9092,k2:9092"));
        assert_eq!(config.delivery.mode, DeliveryMode::AtLeastOnce);
        let bad = |k: &str| (k == "MEDIC_DELIVERY_MODE").then(|| "sometimes".to_string());
        let err = Config::load(None, &bad).unwrap_err().to_string();
        assert!(err.contains("MEDIC_DELIVERY_MODE"), "{err}");
    }
}
