//! How medic reaches a Kubernetes API server, and the namespace and object
//! name each recovery step acts on.
//!
//! Three ways in, exactly one of them configured:
//!
//! * `in_cluster: true` — the pod's service account, as client-go's
//!   `rest.InClusterConfig` does it: `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`,
//!   the token and CA from the mounted service-account directory. The token
//!   file is read again every minute, because bound service-account tokens
//!   are rotated while the pod runs.
//! * `kubeconfig: PATH` (and optionally `context`) — parsed here: server, CA
//!   (file or inline data), `insecure-skip-tls-verify`, and a bearer token
//!   (`token` or `tokenFile`). Exec plugins, auth providers, client
//!   certificates, basic auth, impersonation, `proxy-url` and
//!   `tls-server-name` are refused with an error that names them: silently
//!   connecting some other way than the file says would be worse.
//! * `api_server` with `token` or `token_file` and `ca_file`.
//!
//! When a CA is given it is the only one trusted, as with kubectl.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where Kubernetes mounts the pod's service-account token, CA and namespace.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How often a token file is read again.
const TOKEN_REFRESH: Duration = Duration::from_secs(60);

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

/// Where the bearer token comes from.
enum TokenSource {
    None,
    Static(String),
    /// Read again after [`TOKEN_REFRESH`]; the last good value is kept when a
    /// read fails.
    File {
        path: PathBuf,
        cached: Mutex<(Instant, String)>,
    },
}

impl TokenSource {
    fn file(path: PathBuf) -> Result<TokenSource, ConnectionError> {
        let token = read_token(&path)?;
        Ok(TokenSource::File {
            path,
            cached: Mutex::new((Instant::now(), token)),
        })
    }

    fn current(&self) -> Option<String> {
        match self {
            TokenSource::None => None,
            TokenSource::Static(token) => Some(token.clone()),
            TokenSource::File { path, cached } => {
                let mut cached = cached
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if cached.0.elapsed() >= TOKEN_REFRESH {
                    match read_token(path) {
                        Ok(token) => *cached = (Instant::now(), token),
                        Err(e) => {
                            tracing::warn!(error = %e, "keeping the previous Kubernetes token");
                            cached.0 = Instant::now();
                        }
                    }
                }
                Some(cached.1.clone())
            }
        }
    }
}

fn read_token(path: &Path) -> Result<String, ConnectionError> {
    let token = std::fs::read_to_string(path).map_err(|source| ConnectionError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = token.trim().to_string();
    if token.is_empty() {
        return Err(ConnectionError::Config(format!(
            "the token file {} is empty",
            path.display()
        )));
    }
    Ok(token)
}

fn read_file(path: &Path) -> Result<Vec<u8>, ConnectionError> {
    std::fs::read(path).map_err(|source| ConnectionError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// How to reach one API server: its URL, an HTTP client trusting its CA, and
/// the bearer token. `Debug` never shows the token.
pub struct KubeConnection {
    server: reqwest::Url,
    client: reqwest::Client,
    token: TokenSource,
    context_namespace: Option<String>,
}

impl fmt::Debug for KubeConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeConnection")
            .field("server", &self.server.as_str())
            .field(
                "token",
                &(!matches!(self.token, TokenSource::None)).then_some("<redacted>"),
            )
            .field("context_namespace", &self.context_namespace)
            .finish()
    }
}

/// TLS settings gathered before the client is built.
#[derive(Default)]
struct Tls {
    ca_pem: Option<Vec<u8>>,
    insecure: bool,
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
            Self::from_kubeconfig(path, config.context.as_deref())
        } else {
            let server = config.api_server.as_deref().unwrap_or_default();
            let token = match (&config.token, &config.token_file) {
                (Some(_), Some(_)) => {
                    return Err(ConnectionError::Config(
                        "set token or token_file, not both".into(),
                    ))
                }
                (Some(token), None) if token.trim().is_empty() => {
                    return Err(ConnectionError::Config("the token is empty".into()))
                }
                (Some(token), None) => TokenSource::Static(token.trim().to_string()),
                (None, Some(path)) => TokenSource::file(path.clone())?,
                (None, None) => TokenSource::None,
            };
            let tls = Tls {
                ca_pem: config.ca_file.as_deref().map(read_file).transpose()?,
                insecure: false,
            };
            Self::build(server, token, tls, None)
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
        let token = TokenSource::file(dir.join("token"))?;
        let tls = Tls {
            ca_pem: Some(read_file(&dir.join("ca.crt"))?),
            insecure: false,
        };
        let namespace = std::fs::read_to_string(dir.join("namespace"))
            .ok()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        Self::build(&format!("https://{host}:{port}"), token, tls, namespace)
    }

    fn from_kubeconfig(
        path: &Path,
        context: Option<&str>,
    ) -> Result<KubeConnection, ConnectionError> {
        let text = read_file(path)?;
        let resolved = super::kubeconfig::resolve(path, &text, context)?;
        let token = match (resolved.token, resolved.token_file) {
            (Some(token), _) => TokenSource::Static(token),
            (None, Some(file)) => TokenSource::file(file)?,
            (None, None) => TokenSource::None,
        };
        let tls = Tls {
            ca_pem: resolved.ca_pem,
            insecure: resolved.insecure,
        };
        if tls.insecure {
            tracing::warn!(
                server = %resolved.server,
                "kubeconfig sets insecure-skip-tls-verify: the API server's certificate is not checked"
            );
        }
        Self::build(&resolved.server, token, tls, resolved.namespace)
    }

    fn build(
        server: &str,
        token: TokenSource,
        tls: Tls,
        context_namespace: Option<String>,
    ) -> Result<KubeConnection, ConnectionError> {
        let server = reqwest::Url::parse(server)
            .map_err(|e| ConnectionError::Config(format!("'{server}' is not a URL: {e}")))?;
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
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            // An API server does not redirect; a redirect is a misconfigured proxy.
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &tls.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ConnectionError::Client(format!("the CA is not PEM: {e}")))?;
            if certs.is_empty() {
                return Err(ConnectionError::Client(
                    "the CA holds no certificate".into(),
                ));
            }
            builder = builder.tls_certs_only(certs);
        }
        if tls.insecure {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let client = builder
            .build()
            .map_err(|e| ConnectionError::Client(e.to_string()))?;
        Ok(KubeConnection {
            server,
            client,
            token,
            context_namespace,
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

    /// Whether requests carry a bearer token.
    pub fn has_token(&self) -> bool {
        !matches!(self.token, TokenSource::None)
    }

    /// `server` joined with escaped path `segments`.
    pub(crate) fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.server.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// A request with the bearer token and `Accept: application/json`.
    pub(crate) fn request(
        &self,
        method: reqwest::Method,
        url: reqwest::Url,
    ) -> reqwest::RequestBuilder {
        let builder = self
            .client
            .request(method, url)
            .header("Accept", "application/json");
        match self.token.current() {
            Some(token) => builder.bearer_auth(token),
            None => builder,
        }
    }
}
