//! The part of the kubeconfig format medic understands: the context picks a
//! cluster (server, CA, TLS checking) and a user (bearer token), and may
//! name a namespace. Relative file paths are relative to the kubeconfig's
//! directory, as in client-go.

use super::connection::ConnectionError;
use base64::Engine;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct File {
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
    #[serde(default)]
    contexts: Option<Vec<NamedContext>>,
    #[serde(default)]
    clusters: Option<Vec<NamedCluster>>,
    #[serde(default)]
    users: Option<Vec<NamedUser>>,
}

#[derive(Deserialize)]
struct NamedContext {
    name: String,
    context: Context,
}

#[derive(Deserialize)]
struct Context {
    cluster: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct NamedCluster {
    name: String,
    cluster: Cluster,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Cluster {
    server: String,
    #[serde(default)]
    certificate_authority: Option<PathBuf>,
    #[serde(default)]
    certificate_authority_data: Option<String>,
    #[serde(default)]
    insecure_skip_tls_verify: bool,
    #[serde(default)]
    proxy_url: Option<String>,
    #[serde(default)]
    tls_server_name: Option<String>,
}

#[derive(Deserialize)]
struct NamedUser {
    name: String,
    #[serde(default)]
    user: Option<User>,
}

#[derive(Deserialize, Default)]
struct User {
    #[serde(default)]
    token: Option<String>,
    #[serde(rename = "tokenFile", default)]
    token_file: Option<PathBuf>,
    #[serde(default)]
    exec: Option<serde_yaml_ng::Value>,
    #[serde(rename = "auth-provider", default)]
    auth_provider: Option<serde_yaml_ng::Value>,
    #[serde(rename = "client-certificate", default)]
    client_certificate: Option<serde_yaml_ng::Value>,
    #[serde(rename = "client-certificate-data", default)]
    client_certificate_data: Option<serde_yaml_ng::Value>,
    #[serde(rename = "client-key", default)]
    client_key: Option<serde_yaml_ng::Value>,
    #[serde(rename = "client-key-data", default)]
    client_key_data: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    username: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    password: Option<serde_yaml_ng::Value>,
    #[serde(rename = "as", default)]
    impersonate: Option<serde_yaml_ng::Value>,
}

/// What one context of a kubeconfig resolves to.
pub(crate) struct Resolved {
    pub server: String,
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub namespace: Option<String>,
}

/// Resolves `context` (or the file's `current-context`) of the kubeconfig
/// at `path` whose contents are `text`.
pub(crate) fn resolve(
    path: &Path,
    text: &[u8],
    context: Option<&str>,
) -> Result<Resolved, ConnectionError> {
    let fail = |message: String| ConnectionError::Kubeconfig {
        path: path.to_path_buf(),
        message,
    };
    let file: File = serde_yaml_ng::from_slice(text).map_err(|e| fail(e.to_string()))?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let relative = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let name = match (context, file.current_context.as_deref()) {
        (Some(name), _) => name,
        (None, Some(name)) if !name.is_empty() => name,
        _ => return Err(fail("no context given and no current-context set".into())),
    };
    let context = file
        .contexts
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| fail(format!("no context named '{name}'")))?
        .context;
    let cluster = file
        .clusters
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == context.cluster)
        .ok_or_else(|| fail(format!("no cluster named '{}'", context.cluster)))?
        .cluster;
    let user = match &context.user {
        Some(user) if !user.is_empty() => file
            .users
            .unwrap_or_default()
            .into_iter()
            .find(|u| &u.name == user)
            .ok_or_else(|| fail(format!("no user named '{user}'")))?
            .user
            .unwrap_or_default(),
        _ => User::default(),
    };

    if cluster.proxy_url.is_some() {
        return Err(fail(format!(
            "cluster '{}': proxy-url is not supported (use HTTPS_PROXY)",
            context.cluster
        )));
    }
    if cluster.tls_server_name.is_some() {
        return Err(fail(format!(
            "cluster '{}': tls-server-name is not supported",
            context.cluster
        )));
    }
    let unsupported = [
        (user.exec.is_some(), "exec credential plugins"),
        (user.auth_provider.is_some(), "auth-provider"),
        (
            user.client_certificate.is_some()
                || user.client_certificate_data.is_some()
                || user.client_key.is_some()
                || user.client_key_data.is_some(),
            "client certificates",
        ),
        (
            user.username.is_some() || user.password.is_some(),
            "basic authentication",
        ),
        (user.impersonate.is_some(), "impersonation (as)"),
    ];
    if let Some((_, what)) = unsupported.iter().find(|(present, _)| *present) {
        return Err(fail(format!(
            "user '{}' uses {what}, which medic does not support; give it a bearer token (token or tokenFile), e.g. a service account's",
            context.user.as_deref().unwrap_or_default()
        )));
    }

    let ca_pem = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| {
                    fail(format!(
                        "cluster '{}': certificate-authority-data is not base64: {e}",
                        context.cluster
                    ))
                })?,
        ),
        (None, Some(file)) => {
            let file = relative(file);
            Some(
                std::fs::read(&file)
                    .map_err(|source| ConnectionError::Read { path: file, source })?,
            )
        }
        (None, None) => None,
    };
    let token = user
        .token
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    Ok(Resolved {
        server: cluster.server,
        ca_pem,
        insecure: cluster.insecure_skip_tls_verify,
        token_file: if token.is_none() {
            user.token_file.as_deref().map(relative)
        } else {
            None
        },
        token,
        namespace: context.namespace.filter(|n| !n.is_empty()),
    })
}
