//! Which object a step acts on: the namespace and name templates of the
//! `kubernetes` and `argo_rollouts` executors, rendered from the failure's
//! service and environment and checked as Kubernetes names.

use super::{ConnectionError, KubeConnection, KubernetesConfig, StepError, StepRequest};

/// Whether `s` is a DNS-1123 label: at most 63 lowercase letters, digits and
/// `-`, starting and ending with a letter or digit (namespaces).
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `s` is a DNS-1123 subdomain: at most 253 characters of
/// DNS-1123 labels joined by `.` (names of most objects).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

/// Namespace and name templates over `{service}`, `{environment}` and
/// `{context_namespace}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameTemplates {
    namespace: String,
    name: String,
}

/// The object one step acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Namespace (a DNS-1123 label).
    pub namespace: String,
    /// Object name (a DNS-1123 subdomain).
    pub name: String,
}

const SLOTS: &[&str] = &["service", "environment", "context_namespace"];

/// Replaces the slots of `template` in one pass (values are never expanded
/// again); `None` for a missing value, `Err` for an unknown slot.
pub(super) fn render(
    template: &str,
    value: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err(format!("unclosed '{{' in '{template}'"));
        };
        let slot = &rest[start + 1..start + len];
        if !SLOTS.contains(&slot) {
            return Err(format!(
                "unknown slot {{{slot}}} in '{template}' (known: {{service}}, {{environment}}, {{context_namespace}})"
            ));
        }
        match value(slot) {
            Some(v) => out.push_str(&v),
            None => return Err(format!("{{{slot}}} in '{template}' has no value here")),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Shortens text from outside for error details.
pub(super) fn shown(s: &str) -> String {
    let short: String = s.chars().take(80).collect();
    format!("{short:?}")
}

impl NameTemplates {
    /// Templates from the configuration; fails on an unknown slot.
    pub fn new(namespace: &str, name: &str) -> Result<NameTemplates, ConnectionError> {
        for template in [namespace, name] {
            render(template, &|_| Some(String::new())).map_err(ConnectionError::Config)?;
        }
        Ok(NameTemplates {
            namespace: namespace.into(),
            name: name.into(),
        })
    }

    /// Templates of `config`.
    pub fn from_config(config: &KubernetesConfig) -> Result<NameTemplates, ConnectionError> {
        Self::new(&config.namespace, &config.name)
    }

    /// Namespace and name for `request`, validated; a permanent error when
    /// they are not valid Kubernetes names.
    pub fn target(
        &self,
        connection: &KubeConnection,
        request: &StepRequest,
    ) -> Result<Target, StepError> {
        let value = |slot: &str| match slot {
            "service" => Some(request.service.clone()),
            "environment" => Some(request.environment.clone()),
            "context_namespace" => connection.context_namespace().map(str::to_string),
            _ => None,
        };
        let namespace = render(&self.namespace, &value).map_err(StepError::permanent)?;
        if !is_dns1123_label(&namespace) {
            return Err(StepError::permanent(format!(
                "namespace {} (from '{}') is not a DNS-1123 label",
                shown(&namespace),
                self.namespace
            )));
        }
        let name = match request.params.get("component") {
            Some(component) => {
                if !is_dns1123_subdomain(component) {
                    return Err(StepError::permanent(format!(
                        "component {} is not a DNS-1123 subdomain",
                        shown(component)
                    )));
                }
                component.clone()
            }
            None => {
                let name = render(&self.name, &value).map_err(StepError::permanent)?;
                if !is_dns1123_subdomain(&name) {
                    return Err(StepError::permanent(format!(
                        "name {} (from '{}') is not a DNS-1123 subdomain",
                        shown(&name),
                        self.name
                    )));
                }
                name
            }
        };
        Ok(Target { namespace, name })
    }
}
