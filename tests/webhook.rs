//! The generic webhook sink against a real (local) HTTP server.

use medic::executors::{Executor, Webhook};
use medic::stages::EffectRequest;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Each request the server saw: header lines and body.
type Seen = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// Serves one scripted status per request; records each request's headers and body.
fn server(statuses: Vec<u16>) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/hooks/medic",
        listener.local_addr().expect("addr")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for (stream, status) in listener.incoming().zip(statuses) {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut headers = Vec::new();
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let line = line.trim_end().to_string();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push(line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).expect("body");
            record
                .lock()
                .expect("lock")
                .push((headers, String::from_utf8_lossy(&body).into_owned()));
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

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
