//! Recognises what log shippers write to Kafka and pulls out the fields medic
//! needs: message text, time, level and the deployment's service and environment.
//!
//! | shipper | text | Kubernetes metadata |
//! |---|---|---|
//! | Fluent Bit | `log` (trailing newline) | `kubernetes.pod_name`, `namespace_name`, `host`, `container_name`, `labels` |
//! | Vector | `message` | `kubernetes.pod_name`, `pod_namespace`, `pod_node_name`, `container_name`, `pod_labels` |
//! | Filebeat | `message` beside `@metadata` | `kubernetes.pod.name`, `namespace`, `node.name`, `container.name`, `labels` (dedotted) |
//! | other JSON | `message`, `msg`, `log`, `text` | ECS `service.name` / `service.environment`, `service`, `environment`, `env` |
//! | plain text | the line (a CRI `<time> <stream> <P/F> ` prefix is removed) | the record key when it is `service/environment` |

use super::config::IngestConfig;
use crate::domain::{DeploymentKey, Millis, Shipper};
use crate::timefmt::{parse_datetime, parse_json_time};
use serde_json::Value;
use std::collections::BTreeMap;

/// What ingest learned from one raw record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ParsedLog {
    /// Recognised shape.
    pub shipper: Option<Shipper>,
    /// Message text.
    pub text: String,
    /// Event time from the record itself.
    pub observed_at: Option<Millis>,
    /// Log level.
    pub level: Option<String>,
    /// Service name, when something named it.
    pub service: Option<String>,
    /// Environment, when something named it.
    pub environment: Option<String>,
    /// Node / host.
    pub host: Option<String>,
    /// Pod.
    pub pod: Option<String>,
    /// Namespace.
    pub namespace: Option<String>,
    /// Container.
    pub container: Option<String>,
    /// HTTP status code.
    pub status_code: Option<i32>,
    /// Users affected, when the application logged it.
    pub affected_users: Option<i64>,
    /// Error rate in percent.
    pub error_rate: Option<f64>,
    /// Labels worth keeping.
    pub attributes: BTreeMap<String, String>,
}

/// Why a raw record is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not UTF-8: not a log line at all.
    #[error("raw record is not UTF-8 text (first invalid byte at offset {0})")]
    NotText(usize),
    /// Longer than `ingest.max_line_bytes`: its signal might not fit in a
    /// Kafka record.
    #[error(
        "raw record of {size} bytes is over the limit of {limit} bytes for a log line (ingest.max_line_bytes)"
    )]
    TooLarge {
        /// The record's size.
        size: usize,
        /// `ingest.max_line_bytes`.
        limit: usize,
    },
    /// A JSON object nested deeper than the parser follows.
    #[error("raw record is JSON nested deeper than {MAX_JSON_DEPTH} levels")]
    TooDeep,
}

/// The default longest raw record read as a log line (`ingest.max_line_bytes`).
/// Its signal carries the text, and must stay under the 1 MB default limit of
/// a Kafka record.
pub const DEFAULT_MAX_LINE_BYTES: usize = 512 * 1024;

/// How deep the JSON parser follows nested objects and arrays (serde_json's limit).
pub const MAX_JSON_DEPTH: usize = 128;

/// Whether `text` nests objects or arrays deeper than [`MAX_JSON_DEPTH`]
/// (brackets inside strings do not count).
fn nested_too_deep(text: &str) -> bool {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for b in text.bytes() {
        match (in_string, escaped, b) {
            (true, true, _) => escaped = false,
            (true, false, b'\\') => escaped = true,
            (true, false, b'"') => in_string = false,
            (true, false, _) => {}
            (false, _, b'"') => in_string = true,
            (false, _, b'{' | b'[') => {
                depth += 1;
                if depth > MAX_JSON_DEPTH {
                    return true;
                }
            }
            (false, _, b'}' | b']') => depth = depth.saturating_sub(1),
            (false, _, _) => {}
        }
    }
    false
}

/// Parses one raw record value; `key` is the Kafka record key.
pub fn parse(
    payload: &[u8],
    key: Option<&[u8]>,
    cfg: &IngestConfig,
) -> Result<ParsedLog, ParseError> {
    if payload.len() > cfg.max_line_bytes {
        return Err(ParseError::TooLarge {
            size: payload.len(),
            limit: cfg.max_line_bytes,
        });
    }
    let text = std::str::from_utf8(payload).map_err(|e| ParseError::NotText(e.valid_up_to()))?;
    let keyed = key
        .and_then(|k| std::str::from_utf8(k).ok())
        .and_then(DeploymentKey::parse);
    let trimmed = text.trim();
    let mut parsed = match trimmed.starts_with('{') {
        true => match serde_json::from_str::<Value>(trimmed) {
            Ok(object @ Value::Object(_)) => parse_json(&object, cfg),
            Err(_) if nested_too_deep(trimmed) => return Err(ParseError::TooDeep),
            _ => parse_plain(trimmed),
        },
        false => parse_plain(trimmed),
    };
    if let Some(key) = keyed {
        parsed
            .service
            .get_or_insert_with(|| key.service().to_string());
        parsed
            .environment
            .get_or_insert_with(|| key.environment().to_string());
    }
    Ok(parsed)
}

fn parse_plain(line: &str) -> ParsedLog {
    let (observed_at, text) = strip_cri_prefix(line);
    ParsedLog {
        shipper: Some(Shipper::PlainText),
        level: level_from_text(text),
        text: text.to_string(),
        observed_at,
        ..ParsedLog::default()
    }
}

/// `2016-10-06T00:17:09.669794202Z stdout F text` → (time, text).
fn strip_cri_prefix(line: &str) -> (Option<Millis>, &str) {
    let mut parts = line.splitn(4, ' ');
    if let (Some(ts), Some(stream), Some(tag), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    {
        if matches!(stream, "stdout" | "stderr") && matches!(tag, "P" | "F") {
            if let Some(t) = parse_datetime(ts) {
                return (Some(t), rest);
            }
        }
    }
    (None, line)
}

fn level_from_text(text: &str) -> Option<String> {
    let head: String = text
        .chars()
        .take(48)
        .collect::<String>()
        .to_ascii_uppercase();
    ["FATAL", "CRITICAL", "ERROR", "WARN", "INFO", "DEBUG"]
        .iter()
        .find(|l| head.contains(*l))
        .map(|l| l.to_ascii_lowercase())
}

/// `value.pointer(pointer)` without serde_json's unescaping of every
/// segment, which allocates a string per segment: medic's own pointers have
/// no `~` escapes. Pointers with escapes, and paths through arrays, are left
/// to serde_json.
fn at<'a>(value: &'a Value, pointer: &str) -> Option<&'a Value> {
    let Some(path) = pointer.strip_prefix('/').filter(|p| !p.contains('~')) else {
        return value.pointer(pointer);
    };
    let mut current = value;
    for segment in path.split('/') {
        current = match current {
            Value::Object(map) => map.get(segment)?,
            _ => return value.pointer(pointer),
        };
    }
    Some(current)
}

fn pointer_str(object: &Value, pointer: &str) -> Option<String> {
    match at(object, pointer)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn first_str(object: &Value, pointers: &[&str]) -> Option<String> {
    pointers.iter().find_map(|p| pointer_str(object, p))
}

fn configured(object: &Value, pointers: &[String]) -> Option<String> {
    pointers.iter().find_map(|p| pointer_str(object, p))
}

fn parse_json(object: &Value, cfg: &IngestConfig) -> ParsedLog {
    let has = |k: &str| object.get(k).is_some();
    let shipper = if has("@metadata") && has("message") {
        Shipper::Filebeat
    } else if object.get("log").is_some_and(Value::is_string) {
        Shipper::FluentBit
    } else if has("message") && (has("source_type") || has("timestamp") || has("kubernetes")) {
        Shipper::Vector
    } else {
        Shipper::Json
    };
    let o = object;

    let text = configured(o, &cfg.message_fields)
        .or_else(|| match shipper {
            Shipper::FluentBit => first_str(o, &["/log"]),
            _ => first_str(o, &["/message", "/msg", "/log", "/text", "/error/message"]),
        })
        .map(|t| t.trim_end_matches(['\n', '\r']).to_string())
        .unwrap_or_default();

    let (pod, namespace, host, container, labels) = match shipper {
        Shipper::Filebeat => (
            first_str(o, &["/kubernetes/pod/name"]),
            first_str(o, &["/kubernetes/namespace"]),
            first_str(
                o,
                &["/kubernetes/node/name", "/host/name", "/host/hostname"],
            ),
            first_str(o, &["/kubernetes/container/name", "/container/name"]),
            at(o, "/kubernetes/labels"),
        ),
        Shipper::Vector => (
            first_str(o, &["/kubernetes/pod_name"]),
            first_str(o, &["/kubernetes/pod_namespace"]),
            first_str(o, &["/kubernetes/pod_node_name", "/host"]),
            first_str(o, &["/kubernetes/container_name"]),
            at(o, "/kubernetes/pod_labels"),
        ),
        _ => (
            first_str(o, &["/kubernetes/pod_name"]),
            first_str(o, &["/kubernetes/namespace_name", "/kubernetes/namespace"]),
            first_str(o, &["/kubernetes/host", "/host", "/hostname"]),
            first_str(o, &["/kubernetes/container_name"]),
            at(o, "/kubernetes/labels"),
        ),
    };
    let label = |names: &[&str]| -> Option<String> {
        let labels = labels?.as_object()?;
        names.iter().find_map(|n| {
            // Filebeat dedots label keys: app.kubernetes.io/name → app_kubernetes_io/name.
            labels
                .get(*n)
                .or_else(|| labels.get(&n.replace('.', "_")))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    };

    let service = configured(o, &cfg.service_fields)
        .or_else(|| first_str(o, &["/service/name", "/service", "/app", "/application"]))
        .or_else(|| label(&["app.kubernetes.io/name", "app", "k8s-app", "service"]))
        .or_else(|| container.clone())
        .or_else(|| pod.as_deref().map(strip_pod_suffix));
    let environment = configured(o, &cfg.environment_fields)
        .or_else(|| {
            first_str(
                o,
                &[
                    "/service/environment",
                    "/environment",
                    "/env",
                    "/deployment/environment",
                ],
            )
        })
        .or_else(|| label(&["environment", "env", "app.kubernetes.io/environment"]))
        .or_else(|| namespace.clone());

    let observed_at = ["/@timestamp", "/timestamp", "/time", "/ts"]
        .iter()
        .find_map(|p| at(o, p).and_then(parse_json_time));
    let level = first_str(
        o,
        &["/level", "/log/level", "/severity", "/levelname", "/lvl"],
    )
    .map(|l| l.to_ascii_lowercase())
    .or_else(|| level_from_text(&text));
    let status_code = [
        "/status_code",
        "/status",
        "/http/response/status_code",
        "/response_code",
    ]
    .iter()
    .find_map(|p| at(o, p).and_then(as_i64))
    .and_then(|c| i32::try_from(c).ok())
    .filter(|c| (100..600).contains(c));
    let affected_users = at(o, "/affected_users")
        .and_then(as_i64)
        .filter(|n| *n >= 0);
    let error_rate = at(o, "/error_rate")
        .and_then(Value::as_f64)
        .filter(|r| r.is_finite() && *r >= 0.0);

    let mut attributes = BTreeMap::new();
    for (name, pointer) in [
        ("trace_id", "/trace_id"),
        ("trace_id", "/trace/id"),
        ("image", "/kubernetes/container_image"),
    ] {
        if let Some(v) = pointer_str(o, pointer) {
            attributes.entry(name.to_string()).or_insert(v);
        }
    }

    ParsedLog {
        shipper: Some(shipper),
        text,
        observed_at,
        level,
        service,
        environment,
        host,
        pod,
        namespace,
        container,
        status_code,
        affected_users,
        error_rate,
        attributes,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// `checkout-7d9f8b6c5-x2x9q` → `checkout`: drops the ReplicaSet hash and pod
/// suffix Deployments add; other names are kept. Kubernetes builds both from
/// an alphabet without vowels (`bcdfghjklmnpqrstvwxz2456789`), which is what
/// tells `-x2x9q` from a word like `-exporter`.
fn strip_pod_suffix(pod: &str) -> String {
    const ALPHABET: &str = "bcdfghjklmnpqrstvwxz0123456789";
    let parts: Vec<&str> = pod.split('-').collect();
    let is_suffix = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.chars().all(|c| ALPHABET.contains(c))
    };
    if parts.len() >= 3
        && is_suffix(parts[parts.len() - 1], 5, 5)
        && is_suffix(parts[parts.len() - 2], 8, 10)
    {
        return parts[..parts.len() - 2].join("-");
    }
    if parts.len() >= 2 && is_suffix(parts[parts.len() - 1], 5, 5) {
        return parts[..parts.len() - 1].join("-");
    }
    pod.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> IngestConfig {
        IngestConfig::default()
    }

    #[test]
    fn fluent_bit_record_from_the_kubernetes_filter_fixture() {
        // shared/fixtures/shippers/SHIPPER_FORMATS.md, Fluent Bit DERIVED Kafka value.
        let raw = br#"{"@timestamp":1554141513.598656,"log":"Fluent Bit is logging\n","stream":"stdout","kubernetes":{"pod_name":"base","namespace_name":"core","host":"ip-10-49-18-80.eu-west-1.compute.internal","container_name":"fluent-bit","container_image":"fluent/fluent-bit:latest"}}"#;
        let p = parse(raw, None, &cfg()).expect("parses");
        assert_eq!(p.shipper, Some(Shipper::FluentBit));
        assert_eq!(p.text, "Fluent Bit is logging");
        assert_eq!(p.observed_at, Some(1_554_141_513_599));
        assert_eq!(p.service.as_deref(), Some("fluent-bit"));
        assert_eq!(p.environment.as_deref(), Some("core"));
        assert_eq!(p.pod.as_deref(), Some("base"));
        assert_eq!(
            p.attributes.get("image").map(String::as_str),
            Some("fluent/fluent-bit:latest")
        );
    }

    #[test]
    fn vector_kubernetes_logs_event() {
        let raw = br#"{"file":"/var/log/pods/x.log","kubernetes":{"container_name":"coredns","pod_name":"coredns-5d78c9869d-tw7bq","pod_namespace":"kube-system","pod_node_name":"node-1","pod_labels":{"k8s-app":"kube-dns"}},"message":"F1015 11:01:46.499073       1 main.go:39] error getting server version: Get \"https://10.96.0.1:443/version?timeout=32s\": dial tcp 10.96.0.1:443: connect: network is unreachable","source_type":"kubernetes_logs","stream":"stderr","timestamp":"2020-10-15T11:01:46.499555308Z"}"#;
        let p = parse(raw, None, &cfg()).expect("parses");
        assert_eq!(p.shipper, Some(Shipper::Vector));
        assert!(p.text.contains("network is unreachable"));
        assert_eq!(p.service.as_deref(), Some("kube-dns"));
        assert_eq!(p.environment.as_deref(), Some("kube-system"));
        assert_eq!(p.host.as_deref(), Some("node-1"));
        assert_eq!(p.observed_at, Some(1_602_759_706_499));
    }

    #[test]
    fn filebeat_event_with_dedotted_labels() {
        let raw = br#"{"@timestamp":"2024-03-01T10:00:00.000Z","@metadata":{"beat":"filebeat","type":"_doc","version":"8.12.0"},"message":"ERROR connection refused","kubernetes":{"pod":{"name":"search-6f7d8c9b5d-bcdfg"},"namespace":"shop-prod","node":{"name":"node-7"},"labels":{"app_kubernetes_io/name":"search"}},"container":{"name":"search"}}"#;
        let p = parse(raw, None, &cfg()).expect("parses");
        assert_eq!(p.shipper, Some(Shipper::Filebeat));
        assert_eq!(p.service.as_deref(), Some("search"));
        assert_eq!(p.environment.as_deref(), Some("shop-prod"));
        assert_eq!(p.level.as_deref(), Some("error"));
        assert_eq!(p.observed_at, Some(1_709_287_200_000));
    }

    #[test]
    fn ecs_json_and_impact_fields() {
        let raw = br#"{"message":"checkout failed","service":{"name":"checkout","environment":"prod"},"log":{"level":"ERROR"},"http":{"response":{"status_code":503}},"affected_users":1200,"error_rate":31.5}"#;
        let p = parse(raw, None, &cfg()).expect("parses");
        assert_eq!(p.shipper, Some(Shipper::Json));
        assert_eq!(p.service.as_deref(), Some("checkout"));
        assert_eq!(p.environment.as_deref(), Some("prod"));
        assert_eq!(p.level.as_deref(), Some("error"));
        assert_eq!(p.status_code, Some(503));
        assert_eq!(p.affected_users, Some(1200));
        assert_eq!(p.error_rate, Some(31.5));
    }

    #[test]
    fn configured_pointers_win_over_the_built_in_shapes() {
        let config = IngestConfig {
            service_fields: vec!["/meta/svc".into()],
            environment_fields: vec!["/meta/stage".into()],
            message_fields: vec!["/payload/line".into()],
            ..IngestConfig::default()
        };
        let raw = br#"{"meta":{"svc":"billing","stage":"staging"},"payload":{"line":"boom"},"message":"ignored"}"#;
        let p = parse(raw, None, &config).expect("parses");
        assert_eq!(
            (
                p.service.as_deref(),
                p.environment.as_deref(),
                p.text.as_str()
            ),
            (Some("billing"), Some("staging"), "boom")
        );
    }

    #[test]
    fn plain_text_uses_the_record_key_and_strips_cri_prefixes() {
        let p = parse(
            b"2016-10-06T00:17:09.669794202Z stderr F Error: UPGRADE FAILED: another operation (install/upgrade/rollback) is in progress",
            Some(b"billing/production"),
            &cfg(),
        )
        .expect("parses");
        assert_eq!(p.shipper, Some(Shipper::PlainText));
        assert!(p.text.starts_with("Error: UPGRADE FAILED"));
        assert_eq!(p.observed_at, Some(1_475_713_029_669));
        assert_eq!(
            (p.service.as_deref(), p.environment.as_deref()),
            (Some("billing"), Some("production"))
        );
    }

    #[test]
    fn broken_json_is_still_a_log_line_but_binary_is_refused() {
        let p = parse(b"{not json", None, &cfg()).expect("parses");
        assert_eq!(p.shipper, Some(Shipper::PlainText));
        assert_eq!(p.text, "{not json");
        assert_eq!(
            parse(b"\xff\xfe\x00", None, &cfg()),
            Err(ParseError::NotText(0))
        );
    }

    #[test]
    fn oversized_and_too_deeply_nested_records_are_refused() {
        let big = vec![b'x'; DEFAULT_MAX_LINE_BYTES + 1];
        assert_eq!(
            parse(&big, None, &cfg()),
            Err(ParseError::TooLarge {
                size: DEFAULT_MAX_LINE_BYTES + 1,
                limit: DEFAULT_MAX_LINE_BYTES
            })
        );
        // The limit is the operator's: a line of 2 MiB passes at 4 MiB.
        let roomy = IngestConfig {
            max_line_bytes: 4 * 1024 * 1024,
            ..cfg()
        };
        let long = vec![b'x'; 2 * 1024 * 1024];
        assert_eq!(
            parse(&long, None, &roomy).expect("parses").text.len(),
            long.len()
        );
        let deep = format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
        assert_eq!(
            parse(deep.as_bytes(), None, &cfg()),
            Err(ParseError::TooDeep)
        );
        // Brackets inside strings do not nest: this broken JSON is a plain line.
        let quoted = format!(r#"{{"message":"{}\" {}" broken"#, "[{".repeat(200), "]");
        let p = parse(quoted.as_bytes(), None, &cfg()).expect("a plain line");
        assert_eq!(p.shipper, Some(Shipper::PlainText));
        let broken = format!("{{not json {}", "[".repeat(200));
        assert_eq!(
            parse(broken.as_bytes(), None, &cfg()),
            Err(ParseError::TooDeep)
        );
    }

    #[test]
    fn pod_names_lose_their_generated_suffixes() {
        assert_eq!(strip_pod_suffix("checkout-7d9f8b6c5-x2x9q"), "checkout");
        assert_eq!(strip_pod_suffix("kairosdb-914055854-b63vq"), "kairosdb");
        assert_eq!(strip_pod_suffix("node-exporter-x7k2p"), "node-exporter");
        assert_eq!(strip_pod_suffix("base"), "base");
    }

    #[test]
    fn pointer_lookup_answers_like_serde_json() {
        let v: Value = serde_json::from_str(
            r#"{"a":{"b":[{"c":1}],"":{"d":2},"x/y":3,"m~n":4},"s":"t","k":{"l":null}}"#,
        )
        .expect("json");
        for p in [
            "", "/", "/a", "/a/b", "/a/b/0", "/a/b/0/c", "/a/b/01", "/a/b/x", "/a//d", "/a/x~1y",
            "/a/m~0n", "/a/x/y", "/s", "/s/t", "/k/l", "/k/l/m", "/missing", "a",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
        }
    }
}
