//! The generic HTTP step executor: one configured request per action, for
//! deploy tools and internal APIs that have no executor of their own.
//!
//! Each action has a request template: method, URL, headers and an optional
//! JSON body, any of which may name values of the step in `{slot}`s
//! (`{service}`, `{param.to}`, `{ci.run_id}`, ... — see [`HttpActionConfig`]).
//! Those values come from logs and webhook payloads, so each is escaped for
//! the place it goes, never pasted:
//!
//! | place | treatment |
//! |---|---|
//! | scheme, host, port | no slots allowed (checked at start) |
//! | path | percent-encoded as exactly one segment; empty, `.` and `..` refused |
//! | query | `application/x-www-form-urlencoded` |
//! | header value | printable ASCII only; CR, LF and other controls refused |
//! | JSON body | inserted into string values, escaped by the serializer |
//!
//! With `hmac_secret` set the request is signed like the bridge's generic
//! webhook scheme: `X-Medic-Timestamp: <unix seconds>` and
//! `X-Medic-Signature: sha256=<hex>` of `timestamp.body`, so a receiver can
//! check it with the same code that checks medic's own inbound webhooks.
//! Every request carries the step's `Idempotency-Key`.

use super::outbound::{self, encode_form, encode_segment, shown};
use super::step::{StepDone, StepError, StepExecutor, StepRequest, StepResult};
use super::template::{verbatim, Slot, Template};
use super::BoxFuture;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;
use std::collections::BTreeMap;

/// Configuration of the HTTP executor.
#[derive(Debug, Clone, PartialEq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Request template per action (e.g. `rollback_deployment`); the executor
    /// supports exactly these actions.
    #[serde(default)]
    pub actions: BTreeMap<String, HttpActionConfig>,
}

/// HTTP method of a request template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
pub enum HttpMethod {
    /// `GET`
    #[serde(rename = "GET", alias = "get")]
    Get,
    /// `POST` (the default)
    #[default]
    #[serde(rename = "POST", alias = "post")]
    Post,
    /// `PUT`
    #[serde(rename = "PUT", alias = "put")]
    Put,
    /// `PATCH`
    #[serde(rename = "PATCH", alias = "patch")]
    Patch,
    /// `DELETE`
    #[serde(rename = "DELETE", alias = "delete")]
    Delete,
}

impl HttpMethod {
    fn to_reqwest(self) -> reqwest::Method {
        match self {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        }
    }
}

/// One action's request template.
///
/// Slots: `{service}`, `{environment}`, `{deployment_key}`, `{recovery_id}`,
/// `{idempotency_key}`, `{action}`, `{param.NAME}`, `{ci.repository}`,
/// `{ci.commit_sha}`, `{ci.run_id}`, `{ci.job_id}`, `{ci.platform}`; `{{` and
/// `}}` are literal braces. A step without a value a slot needs (no such
/// parameter, no CI run) fails permanently without sending anything.
#[derive(Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionConfig {
    /// Method; `POST` when not set.
    #[serde(default)]
    pub method: HttpMethod,
    /// `http://` or `https://` URL; slots only in the path and query.
    pub url: String,
    /// Extra headers (name → value template). `Idempotency-Key`, the
    /// signature headers, `Host`, `Content-Length` and `Transfer-Encoding`
    /// are medic's to set. `Content-Type` defaults to `application/json`
    /// when there is a body.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body template: slots inside string values; a string that is
    /// exactly one slot becomes that value as a JSON string. No body when unset.
    #[serde(default)]
    pub body: Option<Value>,
    /// Secret for signing the body (generic webhook scheme); unsigned when unset.
    #[serde(default)]
    pub hmac_secret: Option<String>,
}

impl std::fmt::Debug for HttpActionConfig {
    /// Header values and the secret may be credentials: only names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpActionConfig")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body", &self.body.as_ref().map(|_| "<set>"))
            .field(
                "hmac_secret",
                &self.hmac_secret.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Headers medic sets itself.
const RESERVED_HEADERS: [&str; 6] = [
    "idempotency-key",
    "x-medic-timestamp",
    "x-medic-signature",
    "host",
    "content-length",
    "transfer-encoding",
];

/// A body template, parsed.
#[derive(Debug, Clone)]
enum Body {
    Literal(Value),
    Text(Template),
    Array(Vec<Body>),
    Object(Vec<(String, Body)>),
}

impl Body {
    fn compile(value: &Value, field: &str) -> Result<Body, String> {
        Ok(match value {
            Value::String(s) => {
                let t = Template::parse(s, field)?;
                if t.is_literal() {
                    Body::Literal(Value::String(t.with_placeholder("")))
                } else {
                    Body::Text(t)
                }
            }
            Value::Array(items) => Body::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Body::compile(v, &format!("{field}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(map) => Body::Object(
                map.iter()
                    .map(|(k, v)| {
                        let key = Template::parse(k, field)?;
                        if !key.is_literal() {
                            return Err(format!("{field}: slots are not allowed in keys ({k})"));
                        }
                        Ok((
                            key.with_placeholder(""),
                            Body::compile(v, &format!("{field}.{k}"))?,
                        ))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            other => Body::Literal(other.clone()),
        })
    }

    fn render(&self, request: &StepRequest) -> Result<Value, StepError> {
        Ok(match self {
            Body::Literal(v) => v.clone(),
            Body::Text(t) => Value::String(t.render(request, &verbatim)?),
            Body::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|b| b.render(request))
                    .collect::<Result<_, _>>()?,
            ),
            Body::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, b)| Ok((k.clone(), b.render(request)?)))
                    .collect::<Result<_, StepError>>()?,
            ),
        })
    }
}

/// One action's request, parsed and checked.
#[derive(Debug, Clone)]
struct Compiled {
    method: reqwest::Method,
    /// `scheme://authority`, exactly as configured.
    origin: String,
    /// `host[:port]`, for the audit trail.
    target: String,
    path: Vec<Template>,
    query: Option<Template>,
    headers: Vec<(HeaderName, Template)>,
    has_content_type: bool,
    body: Option<Body>,
    hmac_secret: Option<Vec<u8>>,
}

fn compile(action: &str, config: &HttpActionConfig) -> Result<Compiled, String> {
    let field = format!("http.actions.{action}.url");
    let (scheme, rest) = config
        .url
        .split_once("://")
        .ok_or_else(|| format!("{field} must start with http:// or https://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if scheme.contains(['{', '}']) || authority.contains(['{', '}']) {
        return Err(format!(
            "{field}: slots are only allowed in the path and query, not in the scheme, host or port"
        ));
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{field} must be an http or https URL"));
    }
    let tail = &rest[end..];
    if tail.contains('#') {
        return Err(format!("{field} must not have a fragment"));
    }
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let path: Vec<Template> = match path.strip_prefix('/') {
        Some(p) => p
            .split('/')
            .map(|s| Template::parse(s, &field))
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    let query = query.map(|q| Template::parse(q, &field)).transpose()?;
    let origin = format!("{scheme}://{authority}");
    // The shape with every slot filled: a valid http(s) URL with a host.
    let probe = assemble(
        &origin,
        path.iter().map(|t| t.with_placeholder("x")),
        query.as_ref().map(|q| q.with_placeholder("x")),
    );
    let url = outbound::api_url(probe.split('?').next().unwrap_or(&probe), &field)?;
    reqwest::Url::parse(&probe).map_err(|e| format!("{field} is not a URL: {e}"))?;
    let target = match url.port() {
        Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };

    let mut headers = Vec::new();
    let mut has_content_type = false;
    for (name, value) in &config.headers {
        let field = format!("http.actions.{action}.headers.{name}");
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{field}: not a valid header name"))?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(format!("{field}: medic sets this header itself"));
        }
        has_content_type |= header == reqwest::header::CONTENT_TYPE;
        let template = Template::parse(value, &field)?;
        let literal = template.with_placeholder("x");
        if !literal.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(format!("{field}: only printable ASCII is allowed"));
        }
        headers.push((header, template));
    }
    let body = config
        .body
        .as_ref()
        .map(|b| Body::compile(b, &format!("http.actions.{action}.body")))
        .transpose()?;
    let hmac_secret = match &config.hmac_secret {
        Some(s) if s.is_empty() => {
            return Err(format!(
                "http.actions.{action}.hmac_secret is empty (leave it out for unsigned requests)"
            ))
        }
        Some(s) => Some(s.as_bytes().to_vec()),
        None => None,
    };
    Ok(Compiled {
        method: config.method.to_reqwest(),
        origin,
        target,
        path,
        query,
        headers,
        has_content_type,
        body,
        hmac_secret,
    })
}

fn assemble(origin: &str, segments: impl Iterator<Item = String>, query: Option<String>) -> String {
    let mut url = origin.to_string();
    for segment in segments {
        url.push('/');
        url.push_str(&segment);
    }
    if let Some(q) = query {
        url.push('?');
        url.push_str(&q);
    }
    url
}

/// A value for a path segment: one segment, never `.` or `..`.
fn path_value(slot: &Slot, value: &str) -> Result<String, StepError> {
    if value.is_empty() || value == "." || value.contains("..") {
        return Err(StepError::permanent(format!(
            "{{{}}} is {} and cannot go into a URL path (empty, '.' or '..')",
            slot.name(),
            shown(value)
        )));
    }
    Ok(encode_segment(value))
}

fn query_value(_: &Slot, value: &str) -> Result<String, StepError> {
    Ok(encode_form(value))
}

fn header_value(slot: &Slot, value: &str) -> Result<String, StepError> {
    if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(StepError::permanent(format!(
            "{{{}}} is {} and cannot go into a header (only printable ASCII, no CR/LF)",
            slot.name(),
            shown(value)
        )));
    }
    Ok(value.to_string())
}

/// Carries out recovery steps as configured HTTP requests.
pub struct HttpExecutor {
    client: reqwest::Client,
    actions: BTreeMap<String, Compiled>,
}

impl HttpExecutor {
    /// An executor for `config`; fails, naming the field, on a template that
    /// is not valid (unknown slot, slot in the host, not http(s), bad header).
    pub fn new(config: &HttpConfig) -> Result<Self, String> {
        if config.actions.is_empty() {
            return Err("http.actions: no action has a request template".into());
        }
        let actions = config
            .actions
            .iter()
            .map(|(action, c)| Ok((action.clone(), compile(action, c)?)))
            .collect::<Result<_, String>>()?;
        Ok(HttpExecutor {
            client: outbound::client(concat!("medic/", env!("CARGO_PKG_VERSION")))?,
            actions,
        })
    }

    fn build(
        &self,
        c: &Compiled,
        request: &StepRequest,
    ) -> Result<reqwest::RequestBuilder, StepError> {
        let segments = c
            .path
            .iter()
            .map(|t| {
                let s = t.render(request, &path_value)?;
                if t.is_literal() || (s != "." && s != "..") {
                    Ok(s)
                } else {
                    Err(StepError::permanent(format!(
                        "the URL path segment would be '{s}'"
                    )))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let query = c
            .query
            .as_ref()
            .map(|q| q.render(request, &query_value))
            .transpose()?;
        let url = assemble(&c.origin, segments.into_iter(), query);
        let url = reqwest::Url::parse(&url)
            .map_err(|e| StepError::permanent(format!("the URL is not valid: {e}")))?;
        let idempotency_key = HeaderValue::from_str(&request.idempotency_key)
            .map_err(|_| StepError::permanent("the idempotency key cannot go into a header"))?;
        let mut builder = self
            .client
            .request(c.method.clone(), url)
            .timeout(request.timeout)
            .header("Idempotency-Key", idempotency_key);
        for (name, template) in &c.headers {
            let value = template.render(request, &header_value)?;
            let value = HeaderValue::from_str(&value).map_err(|_| {
                StepError::permanent(format!("header {name} would not be a valid header value"))
            })?;
            builder = builder.header(name, value);
        }
        let body = match &c.body {
            Some(b) => serde_json::to_vec(&b.render(request)?)
                .map_err(|e| StepError::permanent(format!("cannot encode the body: {e}")))?,
            None => Vec::new(),
        };
        if c.body.is_some() && !c.has_content_type {
            builder = builder.header("Content-Type", "application/json");
        }
        if let Some(secret) = &c.hmac_secret {
            let timestamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0)
                .to_string();
            let signature =
                crate::bridge::verify::sign_hex(secret, &[timestamp.as_bytes(), b".", &body]);
            builder = builder
                .header("X-Medic-Timestamp", timestamp)
                .header("X-Medic-Signature", format!("sha256={signature}"));
        }
        if c.body.is_some() {
            builder = builder.body(body);
        }
        Ok(builder)
    }
}

impl HttpExecutor {
    /// The request of `template` (a key of [`HttpConfig::actions`]) for
    /// `request`, and how to name it in messages (`GET host:port`): for
    /// callers that read the answer themselves, such as health probes.
    pub(crate) fn prepare(
        &self,
        template: &str,
        request: &StepRequest,
    ) -> Result<(reqwest::RequestBuilder, String), StepError> {
        let c = self.actions.get(template).ok_or_else(|| {
            StepError::permanent(format!("no request template for {}", shown(template)))
        })?;
        Ok((
            self.build(c, request)?,
            format!("{} {}", c.method, c.target),
        ))
    }
}

impl StepExecutor for HttpExecutor {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn supports(&self, action: &str) -> bool {
        self.actions.contains_key(action)
    }

    fn run<'a>(&'a self, request: &'a StepRequest) -> BoxFuture<'a, StepResult> {
        Box::pin(async move {
            let Some(c) = self.actions.get(&request.action) else {
                return Err(StepError::permanent(format!(
                    "no request template for {}",
                    shown(&request.action)
                )));
            };
            let builder = self.build(c, request)?;
            let what = format!("{} {}", c.method, c.target);
            let (status, _) = outbound::send(builder, &what).await?;
            Ok(StepDone {
                detail: format!("{what}: HTTP {status}"),
                http_status: Some(status),
                observed: None,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(url: &str) -> HttpActionConfig {
        HttpActionConfig {
            method: HttpMethod::Post,
            url: url.into(),
            headers: BTreeMap::new(),
            body: None,
            hmac_secret: None,
        }
    }

    #[test]
    fn templates_are_checked_at_start() {
        let ok = compile(
            "a",
            &action("https://deploy.example:8443/v1/{service}/x?env={environment}"),
        )
        .expect("valid");
        assert_eq!(ok.target, "deploy.example:8443");
        for (url, why) in [
            ("https://{service}.example/x", "slots are only allowed"),
            (
                "https://deploy.example:{param.port}/x",
                "slots are only allowed",
            ),
            (
                "{param.scheme}://deploy.example/x",
                "slots are only allowed",
            ),
            ("ftp://deploy.example/x", "http or https"),
            ("deploy.example/x", "must start with"),
            ("https://deploy.example/{nope}", "unknown slot {nope}"),
            ("https://deploy.example/x#{service}", "fragment"),
        ] {
            let e = compile("a", &action(url)).expect_err(url);
            assert!(e.contains(why), "{url}: {e}");
        }
        let mut bad_header = action("https://deploy.example/x");
        bad_header
            .headers
            .insert("Idempotency-Key".into(), "x".into());
        assert!(compile("a", &bad_header).is_err());
        let mut bad_body = action("https://deploy.example/x");
        bad_body.body = Some(serde_json::json!({"{service}": 1}));
        assert!(compile("a", &bad_body).is_err());
        assert!(HttpExecutor::new(&HttpConfig::default()).is_err());
    }

    #[test]
    fn the_debug_form_shows_no_secrets() {
        let mut a = action("https://deploy.example/x");
        a.headers
            .insert("Authorization".into(), "Bearer s3cret".into());
        a.hmac_secret = Some("hush".into());
        let text = format!("{a:?}");
        assert!(!text.contains("s3cret") && !text.contains("hush"), "{text}");
    }
}
