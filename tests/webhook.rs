//! The generic webhook sink against a real (local) HTTP server.

mod common;

use common::http::server;
use medic::executors::{Executor, Webhook};
use medic::stages::EffectRequest;
use std::net::TcpListener;
use std::time::Duration;

fn notify(body: &str) -> EffectRequest {
    EffectRequest::Notify {
        idempotency_key: "web/staging#1/outcome".into(),
        body: body.into(),
    }
}

#[tokio::test]
async fn a_server_error_is_retried_and_the_delivery_recorded() {
    let (url, seen) = server(vec![503, 200]);
    let sink = Webhook::new(&url, Duration::from_secs(5), 3).expect("sink");
    let result = sink.execute(&notify(r#"{"kind":"outcome"}"#)).await;
    assert!(result.success, "{result:?}");
    assert_eq!((result.attempts, result.http_status), (2, Some(200)));
    let seen = seen.lock().expect("lock");
    assert_eq!(seen.len(), 2);
    let (headers, body) = &seen[1];
    assert_eq!(body, r#"{"kind":"outcome"}"#);
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("idempotency-key: web/staging#1/outcome")),
        "{headers:?}"
    );
    assert!(
        headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case("content-type: application/json")),
        "{headers:?}"
    );
    assert!(headers[0].starts_with("POST /hooks/medic "), "{headers:?}");
}

#[tokio::test]
async fn a_client_error_is_not_retried() {
    let (url, seen) = server(vec![400, 200]);
    let sink = Webhook::new(&url, Duration::from_secs(5), 3).expect("sink");
    let result = sink.execute(&notify("{}")).await;
    assert!(!result.success);
    assert_eq!((result.attempts, result.http_status), (1, Some(400)));
    assert_eq!(result.detail, "HTTP 400 Bad Request");
    assert_eq!(seen.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_after_every_attempt() {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let sink = Webhook::new(
        &format!("http://127.0.0.1:{port}/"),
        Duration::from_secs(2),
        2,
    )
    .expect("sink");
    let result = sink.execute(&notify("{}")).await;
    assert!(!result.success);
    assert_eq!((result.attempts, result.http_status), (2, None));
    assert!(
        result.detail.starts_with("request failed"),
        "{}",
        result.detail
    );
}

#[test]
fn a_malformed_url_is_refused_at_start() {
    let err = Webhook::new("not a url", Duration::from_secs(1), 1)
        .err()
        .expect("refused");
    assert!(err.starts_with("notify.webhook_url is not a URL"), "{err}");
}
