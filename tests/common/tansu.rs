//! A Tansu broker process on a free local port, for the fault tests and the
//! end-to-end bench (which includes this file): found on `PATH` or in
//! `~/.cargo/bin`, stopped and started again on the same port and storage,
//! killed and its directory removed when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `tansu` binary on `PATH` or in `~/.cargo/bin` (where `.ci/run`
/// installs it).
pub fn binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let home = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo/bin"));
    on_path
        .into_iter()
        .chain(home)
        .map(|d| d.join("tansu"))
        .find(|p| p.is_file())
}

/// One Tansu process; its log is `tansu.log` in its directory.
pub struct Tansu {
    binary: PathBuf,
    dir: PathBuf,
    storage: String,
    port: u16,
    child: Option<Child>,
}

impl Tansu {
    /// Starts `binary` in `dir` with `storage` (`sqlite://tansu.db`,
    /// `memory://tansu/`) on a free port; returns once it listens.
    pub fn start(binary: PathBuf, dir: PathBuf, storage: &str) -> Result<Tansu, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port: {e}"))?;
        let mut tansu = Tansu {
            binary,
            dir,
            storage: storage.to_string(),
            port,
            child: None,
        };
        tansu.up()?;
        Ok(tansu)
    }

    /// `127.0.0.1:<port>`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the broker again on the same port and storage; returns once it
    /// listens, or with its log when it exits or does not listen in 20 s.
    pub fn up(&mut self) -> Result<(), String> {
        let url = format!("tcp://{}", self.address());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .map_err(|e| format!("tansu.log: {e}"))?;
        let child = Command::new(&self.binary)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", &self.storage])
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(self.address()).is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("tansu.log")).unwrap_or_default();
                return Err(format!(
                    "tansu did not listen on {}:\n{log}",
                    self.address()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Kills the broker (as a crash would); its storage stays.
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
