//! How medic reaches a Kubernetes API server, and the namespace and object
//! name each recovery step acts on.
//!
//! The client is [kube](https://docs.rs/kube)'s: every way in becomes a
//! kubeconfig that kube-client loads, so what `kubectl` accepts, medic does.
//! Three ways in, exactly one of them configured:
//!
//! * `in_cluster: true` — the pod's service account, as client-go's
//!   `rest.InClusterConfig` does it: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
//!   the token and CA from the mounted service-account directory. The token
//!   file is read again as kube-client refreshes it, because bound
//!   service-account tokens are rotated while the pod runs.
//! * `kubeconfig: PATH` (and optionally `context`) — what EKS, GKE, AKS and
//!   kind write: CA file or data, `insecure-skip-tls-verify`, bearer tokens
//!   and token files, client certificates, exec credential plugins
//!   (`aws eks get-token`, `gke-gcloud-auth-plugin`, `kubelogin`), OIDC
//!   auth providers, `proxy-url` and `tls-server-name`. The context and its
//!   cluster are checked at start; credentials are obtained at the first
//!   request, as `kubectl` does.
//! * `api_server` with `token` or `token_file` and `ca_file`.
//!
//! When a CA is given it is the only one trusted, as with kubectl. The
//! client never follows redirects.

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize;
use serde_json::json;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where Kubernetes mounts the pod's service-account token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How long a connection to the API server may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection and naming settings shared by the `kubernetes` and
/// `argo_rollouts` executors.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KubernetesConfig {
    /// Use the pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, token
    /// and CA from [`service_account_dir`](Self::service_account_dir)).
    pub in_cluster: bool,
    /// Where the service account is mounted; default
    /// `/var/run/secrets/kubernetes.io/serviceaccount`.
    pub service_account_dir: Option<PathBuf>,
    /// Path of a kubeconfig file to read the server and credentials from.
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of its `current-context`.
    pub context: Option<String>,
    /// API server URL, e.g. `https://10.0.0.1:6443`, when neither
    /// `in_cluster` nor `kubeconfig` is used.
    pub api_server: Option<String>,
    /// Bearer token for `api_server`, `${env:NAME}` or `${file:/path}`.
    pub token: Option<String>,
    /// File holding the bearer token for `api_server`, read again every minute.
    pub token_file: Option<PathBuf>,
    /// PEM file with the CA that signed `api_server`'s certificate.
    pub ca_file: Option<PathBuf>,
    /// Namespace of the object to act on; slots `{service}`, `{environment}`
    /// and `{context_namespace}` (the kubeconfig context's or the service
    /// account's namespace). Must render to a DNS-1123 label.
    pub namespace: String,
    /// Name of the object to act on; slots as for `namespace`. Must render
    /// to a DNS-1123 subdomain. A step parameter `component` replaces it.
    pub name: String,
    /// Whether restarts and rollbacks wait for the rollout to complete
    /// before they succeed (default yes, polling every 2 s, within the
    /// step's timeout).
    pub rollout: super::RolloutWait,
}

impl Default for KubernetesConfig {
    fn default() -> Self {
        KubernetesConfig {
            in_cluster: false,
            service_account_dir: None,
            kubeconfig: None,
            context: None,
            api_server: None,
            token: None,
            token_file: None,
            ca_file: None,
            namespace: "{environment}".into(),
            name: "{service}".into(),
            rollout: super::RolloutWait::default(),
        }
    }
}

/// Why a connection could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The settings contradict each other or are incomplete.
    #[error("kubernetes: {0}")]
    Config(String),
    /// A file named by the settings could not be read.
    #[error("kubernetes: cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The kubeconfig file is malformed or asks for something unsupported.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The kubeconfig file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The service-account mount or environment is incomplete.
    #[error("kubernetes in-cluster: {0}")]
    InCluster(String),
    /// The HTTP client could not be built (e.g. the CA is not PEM).
    #[error("kubernetes: cannot build the HTTP client: {0}")]
    Client(String),
}

fn read_token(path: &Path) -> Result<(), ConnectionError> {
    let token = std::fs::read_to_string(path).map_err(|source| ConnectionError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if token.trim().is_empty() {
        return Err(ConnectionError::Config(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    // kube-client sends the file's text as it is, and a newline cannot be
    // part of an Authorization header.
    if token.trim() != token {
        return Err(ConnectionError::Config(format!(
            "the token file {} has a newline or spaces around the token; write the token alone \
             (printf '%s' \"$TOKEN\" > {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// A CA file medic was pointed at: readable, and holding a PEM certificate
/// (kube-client would only find out at the first request).
fn ca_file(path: &Path) -> Result<(), ConnectionError> {
    let text = std::fs::read(path).map_err(|source| ConnectionError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !String::from_utf8_lossy(&text).contains("-----BEGIN CERTIFICATE-----") {
        return Err(ConnectionError::Client(format!(
            "the CA {} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(())
}

/// How to reach one API server: a kubeconfig and the context to use, checked
/// at start; kube-client's client, built at the first request. `Debug` never
/// shows a credential.
pub struct KubeConnection {
    server: reqwest::Url,
    context_namespace: Option<String>,
    has_credentials: bool,
    kubeconfig: Kubeconfig,
    options: KubeConfigOptions,
    /// Where the kubeconfig came from, for errors.
    origin: PathBuf,
    client: tokio::sync::OnceCell<kube::Client>,
}

impl fmt::Debug for KubeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeConnection")
            .field("server", &self.server.as_str())
            .field("credentials", &self.has_credentials.then_some("<redacted>"))
            .field("context_namespace", &self.context_namespace)
            .finish()
    }
}

/// The kubeconfig of one cluster, one user and one context named `medic`.
fn single(server: &str, cluster: serde_json::Value, user: serde_json::Value) -> serde_json::Value {
    let mut cluster = cluster;
    cluster["server"] = json!(server);
    json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "medic",
        "clusters": [{"name": "medic", "cluster": cluster}],
        "users": [{"name": "medic", "user": user}],
        "contexts": [{"name": "medic", "context": {"cluster": "medic", "user": "medic"}}]
    })
}

impl KubeConnection {
    /// The connection `config` describes, reading the process environment
    /// for the in-cluster variables.
    pub fn from_config(config: &KubernetesConfig) -> Result<KubeConnection, ConnectionError> {
        Self::from_config_with_env(config, &|name| std::env::var(name).ok())
    }

    /// As [`from_config`](Self::from_config), with the environment given as a
    /// lookup function (tests must not change the process environment).
    pub fn from_config_with_env(
        config: &KubernetesConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KubeConnection, ConnectionError> {
        let ways = [
            config.in_cluster,
            config.kubeconfig.is_some(),
            config.api_server.is_some(),
        ];
        if ways.iter().filter(|w| **w).count() != 1 {
            return Err(ConnectionError::Config(
                "set exactly one of in_cluster, kubeconfig and api_server".into(),
            ));
        }
        if config.context.is_some() && config.kubeconfig.is_none() {
            return Err(ConnectionError::Config(
                "context is only used with kubeconfig".into(),
            ));
        }
        let explicit =
            config.token.is_some() || config.token_file.is_some() || config.ca_file.is_some();
        if explicit && config.api_server.is_none() {
            return Err(ConnectionError::Config(
                "token, token_file and ca_file are only used with api_server".into(),
            ));
        }
        if config.service_account_dir.is_some() && !config.in_cluster {
            return Err(ConnectionError::Config(
                "service_account_dir is only used with in_cluster".into(),
            ));
        }
        if config.in_cluster {
            let dir = config
                .service_account_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(SERVICE_ACCOUNT_DIR));
            Self::in_cluster(&dir, env)
        } else if let Some(path) = &config.kubeconfig {
            let kubeconfig =
                Kubeconfig::read_from(path).map_err(|e| ConnectionError::Kubeconfig {
                    path: path.clone(),
                    message: error_chain(&e),
                })?;
            Self::build(kubeconfig, config.context.clone(), path)
        } else {
            let server = config.api_server.as_deref().unwrap_or_default();
            let user = match (&config.token, &config.token_file) {
                (Some(_), Some(_)) => {
                    return Err(ConnectionError::Config(
                        "set token or token_file, not both".into(),
                    ))
                }
                (Some(token), None) if token.trim().is_empty() => {
                    return Err(ConnectionError::Config("the token is empty".into()))
                }
                (Some(token), None) => json!({"token": token.trim()}),
                (None, Some(path)) => {
                    read_token(path)?;
                    json!({"tokenFile": path})
                }
                (None, None) => json!({}),
            };
            let cluster = match &config.ca_file {
                Some(ca) => {
                    ca_file(ca)?;
                    json!({"certificate-authority": ca})
                }
                None => json!({}),
            };
            Self::generated(single(server, cluster, user), Path::new("api_server"))
        }
    }

    /// The pod's service account: `dir` holds `token`, `ca.crt` and
    /// (optionally) `namespace`.
    fn in_cluster(
        dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KubeConnection, ConnectionError> {
        let var = |name: &str| {
            env(name).filter(|v| !v.is_empty()).ok_or_else(|| {
                ConnectionError::InCluster(format!(
                    "{name} is not set: medic is not running in a pod (use kubeconfig or api_server)"
                ))
            })
        };
        let host = var("KUBERNETES_SERVICE_HOST")?;
        let port = var("KUBERNETES_SERVICE_PORT")?;
        if port.parse::<u16>().is_err() {
            return Err(ConnectionError::InCluster(format!(
                "KUBERNETES_SERVICE_PORT '{port}' is not a port"
            )));
        }
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let token = dir.join("token");
        read_token(&token)?;
        let ca = dir.join("ca.crt");
        ca_file(&ca)?;
        let mut doc = single(
            &format!("https://{host}:{port}"),
            json!({"certificate-authority": ca}),
            json!({"tokenFile": token}),
        );
        if let Some(namespace) = std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
        {
            doc["contexts"][0]["context"]["namespace"] = json!(namespace);
        }
        Self::generated(doc, dir)
    }

    /// A connection from a kubeconfig medic wrote itself.
    fn generated(doc: serde_json::Value, origin: &Path) -> Result<KubeConnection, ConnectionError> {
        let kubeconfig: Kubeconfig = serde_json::from_value(doc)
            .map_err(|e| ConnectionError::Config(format!("cannot describe the cluster: {e}")))?;
        Self::build(kubeconfig, None, origin)
    }

    /// Checks the context `kubeconfig` would use (`context`, else its
    /// current one), its cluster's server and its user.
    fn build(
        kubeconfig: Kubeconfig,
        context: Option<String>,
        origin: &Path,
    ) -> Result<KubeConnection, ConnectionError> {
        let bad = |message: String| ConnectionError::Kubeconfig {
            path: origin.to_path_buf(),
            message,
        };
        let name = context
            .clone()
            .or_else(|| kubeconfig.current_context.clone())
            .ok_or_else(|| bad("no current-context, and no context configured".into()))?;
        let named = kubeconfig
            .contexts
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.context.clone())
            .ok_or_else(|| bad(format!("no context named '{name}'")))?;
        let cluster = kubeconfig
            .clusters
            .iter()
            .find(|c| c.name == named.cluster)
            .and_then(|c| c.cluster.clone())
            .ok_or_else(|| bad(format!("context '{name}' names no known cluster")))?;
        let server_text = cluster
            .server
            .clone()
            .ok_or_else(|| bad(format!("cluster '{}' has no server", named.cluster)))?;
        let server = reqwest::Url::parse(&server_text)
            .map_err(|e| ConnectionError::Config(format!("'{server_text}' is not a URL: {e}")))?;
        if !matches!(server.scheme(), "https" | "http") || server.cannot_be_a_base() {
            return Err(ConnectionError::Config(format!(
                "'{server}' is not an http(s) URL"
            )));
        }
        if server.query().is_some() || !server.username().is_empty() || server.password().is_some()
        {
            return Err(ConnectionError::Config(
                "the API server URL must not carry credentials or a query".into(),
            ));
        }
        if cluster.insecure_skip_tls_verify == Some(true) {
            tracing::warn!(
                server = %server,
                "kubeconfig sets insecure-skip-tls-verify: the API server's certificate is not checked"
            );
        }
        let user = named.user.as_deref().and_then(|u| {
            kubeconfig
                .auth_infos
                .iter()
                .find(|a| a.name == u)
                .and_then(|a| a.auth_info.clone())
        });
        let has_credentials = user.as_ref().is_some_and(|u| {
            u.token.is_some()
                || u.token_file.is_some()
                || u.exec.is_some()
                || u.auth_provider.is_some()
                || u.client_certificate.is_some()
                || u.client_certificate_data.is_some()
        });
        Ok(KubeConnection {
            server,
            context_namespace: named.namespace.clone().filter(|n| !n.is_empty()),
            has_credentials,
            kubeconfig,
            options: KubeConfigOptions {
                context: Some(name),
                cluster: None,
                user: None,
            },
            origin: origin.to_path_buf(),
            client: tokio::sync::OnceCell::new(),
        })
    }

    /// The API server's URL.
    pub fn server(&self) -> &reqwest::Url {
        &self.server
    }

    /// The namespace of the kubeconfig context or the service account, when
    /// known: the `{context_namespace}` slot of the name templates.
    pub fn context_namespace(&self) -> Option<&str> {
        self.context_namespace.as_deref()
    }

    /// Whether requests carry credentials (a token, a token file, a client
    /// certificate, an exec plugin or an auth provider).
    pub fn has_token(&self) -> bool {
        self.has_credentials
    }

    /// An API path with escaped `segments`, on a placeholder host: only its
    /// path and query are sent, to the server the client was built for.
    pub(crate) fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = reqwest::Url::parse("http://kubernetes.invalid/").expect("a valid URL");
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// kube-client's client, built on first use: credentials (exec plugins,
    /// OIDC) are obtained as requests need them.
    pub(crate) async fn client(&self) -> Result<&kube::Client, String> {
        self.client
            .get_or_try_init(|| async {
                let mut config =
                    kube::Config::from_custom_kubeconfig(self.kubeconfig.clone(), &self.options)
                        .await
                        .map_err(|e| {
                            format!("kubeconfig {}: {}", self.origin.display(), error_chain(&e))
                        })?;
                config.connect_timeout = Some(CONNECT_TIMEOUT);
                config.headers.push((
                    http::header::USER_AGENT,
                    http::HeaderValue::from_static(concat!("medic/", env!("CARGO_PKG_VERSION"))),
                ));
                kube::Client::try_from(config)
                    .map_err(|e| format!("cannot build the Kubernetes client: {}", error_chain(&e)))
            })
            .await
    }
}

/// An error and its causes, one after the other.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(&format!(": {cause_text}"));
        }
        source = cause.source();
    }
    text
}
