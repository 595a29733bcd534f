//! A real Prometheus server (Debian's `prometheus` package, which `.ci/run`
//! installs) on a free loopback port, scraping a fixture exporter every
//! second: the exporter serves whatever text the test puts in it, in the
//! text exposition format. Killed and its storage removed when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The `prometheus` binary: `MEDIC_TEST_PROMETHEUS_BIN` (set by `.ci/run`,
/// which then requires the tests to run), else `prometheus` on `PATH`.
pub fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MEDIC_TEST_PROMETHEUS_BIN") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join("prometheus"))
        .find(|p| p.is_file())
}

/// Metrics text an exporter serves; change it while the test runs.
pub type Exposition = Arc<Mutex<String>>;

/// Serves `text` on every request (`GET /metrics` from Prometheus);
/// returns `host:port`.
pub fn exporter(text: Exposition) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let body = text.lock().expect("text").clone();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// One Prometheus process.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Prometheus {
    /// Starts `binary` scraping `target` (`host:port`) every second as job
    /// `fixture`; returns once it answers `/-/ready`.
    pub fn start(binary: PathBuf, target: &str) -> Result<Prometheus, String> {
        let dir = std::env::temp_dir().join(super::unique_prefix("prometheus"));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
                 scrape_configs:\n  - job_name: fixture\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .map_err(|e| e.to_string())?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("prometheus.log")).map_err(|e| e.to_string())?;
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", binary.display()))?;
        let mut p = Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = p.child.try_wait() {
                return Err(format!("prometheus exited ({status}): {}", p.log()));
            }
            if get(&format!("127.0.0.1:{port}"), "/-/ready")
                .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
            {
                return Ok(p);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("prometheus did not get ready: {}", p.log()))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until an instant query for `query` returns data.
    pub fn wait_for_data(&self, query: &str, timeout: Duration) -> bool {
        let addr = self.url.trim_start_matches("http://").to_string();
        let path = format!("/api/v1/query?query={}", encode(query));
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if get(&addr, &path).is_some_and(|r| r.contains("\"value\":[")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.1 GET; the whole answer, or `None` without one.
fn get(addr: &str, path: &str) -> Option<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}
