//! A scripted local HTTP server that records what it was sent.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Each request the server saw: header lines and body.
pub type Seen = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// Serves one scripted status per request; records each request's headers and body.
pub fn server(statuses: Vec<u16>) -> (String, Seen) {
    server_answering(statuses.into_iter().map(|s| (s, "")).collect())
}

/// Serves one scripted status and body per request; records each request.
pub fn server_answering(answers: Vec<(u16, &'static str)>) -> (String, Seen) {
    server_replying(
        answers
            .into_iter()
            .map(|(status, body)| (status, Vec::new(), body))
            .collect(),
    )
}

/// Serves one scripted status, extra header lines and body per request
/// (`Location: …` for a redirect); records each request.
pub fn server_replying(answers: Vec<(u16, Vec<String>, &'static str)>) -> (String, Seen) {
    serve(answers.into_iter())
}

/// Answers every request with `status` and `body`, for as long as the test
/// runs; records each request.
pub fn server_always(status: u16, body: &'static str) -> (String, Seen) {
    serve(std::iter::repeat_with(move || (status, Vec::new(), body)))
}

fn serve(
    answers: impl Iterator<Item = (u16, Vec<String>, &'static str)> + Send + 'static,
) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!(
        "http://{}/hooks/medic",
        listener.local_addr().expect("addr")
    );
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for (stream, (status, extra, answer)) in listener.incoming().zip(answers) {
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
            let extra: String = extra.iter().map(|h| format!("{h}\r\n")).collect();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
        }
    });
    (url, seen)
}
