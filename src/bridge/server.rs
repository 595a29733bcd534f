//! The bridge's HTTP server: one endpoint per platform, `/healthz`,
//! `/readyz` and `/metrics`.
//!
//! A webhook is answered 202 only after the broker acknowledged its
//! `CiEvent`, so an accepted webhook is never lost; when Kafka cannot take it
//! the answer is 503 and the platform delivers again. Nothing is produced for
//! a rejected request.

use super::config::BridgeConfig;
use super::verify::Verifier;
use crate::ci::{self, Delivery};
use crate::codec;
use crate::domain::{CiPlatform, DeploymentKey, Millis};
use crate::kafka::config::DeliveryMode;
use crate::kafka::dedup::Dedup;
use crate::kafka::runner::ID_HEADER;
use crate::kafka::ClientSettings;
use crate::timefmt::wall_clock;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Everything the handlers share.
pub struct BridgeState {
    producer: FutureProducer,
    settings: ClientSettings,
    topic: String,
    endpoints: Vec<(String, Verifier)>,
    limiter: DefaultKeyedRateLimiter<(CiPlatform, IpAddr)>,
    delivered: Mutex<Dedup>,
    produce_timeout: Duration,
    clock: fn() -> Millis,
    /// The last readiness answer; held across a probe, so concurrent
    /// `/readyz` requests wait for the one probe in flight and share it.
    ready: tokio::sync::Mutex<Option<(Instant, bool)>>,
    /// Probes of the cluster made for `/readyz`.
    ready_probes: std::sync::atomic::AtomicU64,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    produce_unused: bool,
    approvals: Option<super::approvals::Approvals>,
}

fn platform_of(name: &str) -> CiPlatform {
    match name {
        "github" => CiPlatform::GithubActions,
        "gitlab" => CiPlatform::GitlabCi,
        "jenkins" => CiPlatform::Jenkins,
        "azure_devops" => CiPlatform::AzureDevops,
        "circleci" => CiPlatform::Circleci,
        _ => CiPlatform::Generic,
    }
}

impl BridgeState {
    /// How many times `/readyz` has probed the cluster.
    pub fn ready_probes(&self) -> u64 {
        self.ready_probes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// State for `config`, producing to `topic` on `settings`' cluster.
    /// Platforms without secrets get no endpoint.
    pub fn new(
        config: &BridgeConfig,
        settings: &ClientSettings,
        topic: &str,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Result<BridgeState, String> {
        let mut producer_config = settings.producer(DeliveryMode::AtLeastOnce, None);
        // Fail a delivery in time to answer 503, so the platform retries.
        producer_config.set("message.timeout.ms", config.produce_timeout_ms.to_string());
        let producer: FutureProducer = producer_config
            .create()
            .map_err(|e| format!("bridge producer: {e}"))?;
        let endpoints = config
            .endpoints()
            .into_iter()
            .filter(|(_, e)| !e.secrets.is_empty())
            .map(|(name, e)| {
                let verifier = Verifier {
                    platform: platform_of(name),
                    secrets: e.secrets.iter().map(|s| s.as_bytes().to_vec()).collect(),
                    tolerance_secs: e.tolerance_secs,
                    token_header: e.token_header.clone(),
                };
                (e.path.clone(), verifier)
            })
            .collect();
        let per_second = NonZeroU32::new(config.rate_per_second)
            .ok_or("bridge.rate_per_second must be at least 1")?;
        let burst =
            NonZeroU32::new(config.rate_burst).ok_or("bridge.rate_burst must be at least 1")?;
        Ok(BridgeState {
            producer,
            settings: settings.clone(),
            topic: topic.to_string(),
            endpoints,
            limiter: RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            delivered: Mutex::new(Dedup::new(config.dedup_capacity)),
            produce_timeout: Duration::from_millis(config.produce_timeout_ms),
            clock: wall_clock,
            ready: tokio::sync::Mutex::new(None),
            ready_probes: std::sync::atomic::AtomicU64::new(0),
            metrics,
            produce_unused: config.produce_unused_events,
            approvals: None,
        })
    }

    /// Serves `POST {path}/{recovery_id}` for `config`'s tokens, producing
    /// approvals to `topic` (nothing when no token is configured).
    pub fn with_approvals(
        mut self,
        config: &super::config::ApprovalsEndpoint,
        topic: &str,
    ) -> Self {
        self.approvals = super::approvals::Approvals::new(config, topic);
        self
    }

    /// Replaces the clock (tests of timestamped signatures).
    pub fn with_clock(mut self, clock: fn() -> Millis) -> Self {
        self.clock = clock;
        self
    }

    /// Paths with an endpoint, for the start-up message.
    pub fn paths(&self) -> Vec<(String, CiPlatform)> {
        self.endpoints
            .iter()
            .map(|(p, v)| (p.clone(), v.platform))
            .collect()
    }
}

/// The router: one POST route per configured platform plus health and metrics.
pub fn router(state: Arc<BridgeState>, body_limit: usize) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    for (path, verifier) in &state.endpoints {
        let platform = verifier.platform;
        router = router.route(
            path,
            post(
                move |State(state): State<Arc<BridgeState>>,
                      ConnectInfo(addr): ConnectInfo<SocketAddr>,
                      uri: Uri,
                      headers: HeaderMap,
                      body: Bytes| async move {
                    webhook(state, platform, addr, uri, headers, body).await
                },
            ),
        );
    }
    if let Some(approvals) = &state.approvals {
        router = router.route(
            &format!("{}/{{*recovery_id}}", approvals.path),
            post(
                |State(state): State<Arc<BridgeState>>,
                 Path(recovery_id): Path<String>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    match &state.approvals {
                        Some(a) => {
                            super::approvals::decide(
                                a,
                                &state.producer,
                                state.produce_timeout,
                                (state.clock)(),
                                &recovery_id,
                                &headers,
                                &body,
                            )
                            .await
                        }
                        None => StatusCode::NOT_FOUND.into_response(),
                    }
                },
            ),
        );
    }
    router
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// Serves until `shutdown` completes, then finishes in-flight requests.
pub async fn serve(
    state: Arc<BridgeState>,
    body_limit: usize,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state, body_limit).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

fn reply(
    platform: CiPlatform,
    status: StatusCode,
    result: &'static str,
    body: serde_json::Value,
) -> Response {
    metrics::counter!("medic_bridge_requests_total", "platform" => platform.as_str(), "result" => result).increment(1);
    (status, Json(body)).into_response()
}

fn reject(
    platform: CiPlatform,
    addr: SocketAddr,
    status: StatusCode,
    result: &'static str,
    reason: String,
) -> Response {
    // Never the secret, never the body: the reason and where it came from.
    tracing::warn!(platform = %platform, source = %addr.ip(), status = status.as_u16(), %reason, "webhook rejected");
    reply(platform, status, result, json!({ "error": reason }))
}

/// The platform's own delivery id, when it sends one.
fn delivery_id(platform: CiPlatform, headers: &HeaderMap) -> Option<String> {
    let names: &[&str] = match platform {
        CiPlatform::GithubActions => &["x-github-delivery"],
        CiPlatform::GitlabCi => &["x-gitlab-event-uuid", "webhook-id", "idempotency-key"],
        CiPlatform::Generic => &["x-medic-delivery"],
        _ => &[],
    };
    names
        .iter()
        .find_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()))
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(|v| format!("{platform}/{v}"))
}

async fn webhook(
    state: Arc<BridgeState>,
    platform: CiPlatform,
    addr: SocketAddr,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.limiter.check_key(&(platform, addr.ip())).is_err() {
        return reject(
            platform,
            addr,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "rate limit exceeded; retry later".into(),
        );
    }
    let Some((_, verifier)) = state.endpoints.iter().find(|(_, v)| v.platform == platform) else {
        return reject(
            platform,
            addr,
            StatusCode::NOT_FOUND,
            "not_configured",
            "platform not configured".into(),
        );
    };
    let now = (state.clock)();
    if let Err(e) = verifier.verify(&headers, uri.query(), &body, now) {
        return reject(
            platform,
            addr,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            e.to_string(),
        );
    }
    let event_header = match platform {
        CiPlatform::GithubActions => headers.get("x-github-event"),
        CiPlatform::GitlabCi => headers.get("x-gitlab-event"),
        CiPlatform::Circleci => headers.get("circleci-event-type"),
        _ => None,
    }
    .and_then(|v| v.to_str().ok());
    let delivery_id = delivery_id(platform, &headers);
    let delivery = Delivery {
        event: event_header,
        delivery_id: delivery_id.as_deref(),
        received_at: now,
    };
    let event = match ci::normalize(platform, &body, &delivery) {
        Ok(Some(event)) => event,
        Ok(None) if state.produce_unused => {
            unused_event(platform, event_header, &body, delivery_id.as_deref(), now)
        }
        Ok(None) => {
            return reply(
                platform,
                StatusCode::ACCEPTED,
                "ignored",
                json!({"status": "ignored", "reason": "event not used by medic"}),
            )
        }
        Err(e) => {
            return reject(
                platform,
                addr,
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.to_string(),
            )
        }
    };
    let seen = state
        .delivered
        .lock()
        .map(|d| d.contains(&event.id))
        .unwrap_or(false);
    if seen {
        return reply(
            platform,
            StatusCode::ACCEPTED,
            "duplicate",
            json!({"status": "duplicate", "event_id": event.id}),
        );
    }
    let key = DeploymentKey::new(&event.service, &event.environment).to_string();
    let value = match codec::encode(&event) {
        Ok(v) => v,
        Err(e) => {
            return reject(
                platform,
                addr,
                StatusCode::INTERNAL_SERVER_ERROR,
                "error",
                e.to_string(),
            )
        }
    };
    let headers = OwnedHeaders::new().insert(Header {
        key: ID_HEADER,
        value: Some(event.id.as_bytes()),
    });
    let record = FutureRecord::to(&state.topic)
        .key(&key)
        .payload(&value)
        .headers(headers);
    let sent = tokio::time::timeout(
        state.produce_timeout,
        state.producer.send(record, state.produce_timeout),
    )
    .await;
    match sent {
        Ok(Ok(_)) => {
            if let Ok(mut d) = state.delivered.lock() {
                d.check_and_insert(&event.id);
            }
            reply(
                platform,
                StatusCode::ACCEPTED,
                "accepted",
                json!({"status": "accepted", "event_id": event.id, "deployment": key, "ci_status": event.status}),
            )
        }
        Ok(Err((e, _))) => reject(
            platform,
            addr,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("Kafka did not take the event ({e}); retry"),
        ),
        Err(_) => reject(
            platform,
            addr,
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Kafka did not acknowledge in time; retry".into(),
        ),
    }
}

/// A verified event medic has no use for, as a `CiEvent` with status
/// `unknown`, for teams that want every delivery on `medic.ci.events`.
pub(crate) fn unused_event(
    platform: CiPlatform,
    event: Option<&str>,
    body: &[u8],
    delivery_id: Option<&str>,
    now: Millis,
) -> crate::domain::CiEvent {
    let json: serde_json::Value =
        serde_json::from_slice(body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body))
            .unwrap_or_default();
    let text = |pointers: &[&str]| {
        pointers
            .iter()
            .find_map(|p| json.pointer(p).and_then(|v| v.as_str()).map(str::to_string))
    };
    let kind = event
        .map(str::to_string)
        .or_else(|| text(&["/object_kind", "/eventType", "/type"]))
        .unwrap_or_else(|| "event".into());
    let id = delivery_id
        .map(str::to_string)
        .unwrap_or_else(|| format!("{platform}/{kind}/{now}"));
    crate::domain::CiEvent {
        id: id.clone(),
        platform,
        event_type: kind.clone(),
        status: crate::domain::CiStatus::Unknown,
        service: text(&[
            "/repository/name",
            "/project/name",
            "/resource/repository/name",
            "/name",
        ])
        .unwrap_or_else(|| "unknown".into()),
        environment: "ci".into(),
        pipeline: kind,
        job: None,
        run_id: id,
        run_attempt: 1,
        commit_sha: text(&["/after", "/checkout_sha", "/sha"]),
        branch: text(&["/ref"]),
        url: None,
        actor: text(&["/sender/login", "/user_username", "/user/username"]),
        failure_reason: None,
        failed_steps: Vec::new(),
        log_excerpt: None,
        started_at: None,
        finished_at: None,
        received_at: now,
        repository: text(&["/repository/full_name"]),
    }
}

/// How long a readiness answer is reused.
const READY_CACHE: Duration = Duration::from_secs(5);

/// Ready when the cluster answers a metadata request (cached for
/// [`READY_CACHE`]). One probe at a time: requests that arrive while it runs
/// wait for its answer instead of each building a client of their own.
async fn readyz(State(state): State<Arc<BridgeState>>) -> Response {
    let mut ready = state.ready.lock().await;
    let ok = match *ready {
        Some((at, ok)) if at.elapsed() < READY_CACHE => ok,
        _ => {
            state
                .ready_probes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let settings = state.settings.clone();
            let ok = tokio::task::spawn_blocking(move || {
                use rdkafka::consumer::{BaseConsumer, Consumer};
                let consumer: Result<BaseConsumer, _> = settings.base().create();
                consumer.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok())
            })
            .await
            .unwrap_or(false);
            *ready = Some((Instant::now(), ok));
            ok
        }
    };
    drop(ready);
    if ok {
        (StatusCode::OK, "ready").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Kafka unreachable").into_response()
    }
}

async fn metrics_text(State(state): State<Arc<BridgeState>>) -> Response {
    match &state.metrics {
        Some(handle) => (StatusCode::OK, handle.render()).into_response(),
        None => (StatusCode::NOT_FOUND, "metrics are not enabled").into_response(),
    }
}
