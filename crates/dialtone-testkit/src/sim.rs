//! The real `dialtone sim serve`: one simulated cloud that several servers share.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{free_port, wait_until};

/// A sim service with its own data directory and ports, stopped when dropped.
pub struct SimService {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl SimService {
    /// Starts `binary sim serve` with `extra_args` (such as `--sim-time-scale 0`) and waits
    /// until it serves.
    pub fn start(binary: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("sim.log"))?;
        let child = Command::new(binary)
            .args(["sim", "serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--kube-listen", &format!("127.0.0.1:{}", free_port())])
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(extra_args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start dialtone sim serve")?;
        let service = SimService { dir, port, child };
        let ready = wait_until(Duration::from_secs(60), || {
            service.token_file().exists() && TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !ready {
            bail!("the sim service did not start; its log:\n{}", service.log());
        }
        Ok(service)
    }

    /// What a server is given to use this cloud.
    pub fn server_args(&self) -> Vec<String> {
        vec![
            "--sim-url".into(),
            self.url(),
            "--sim-ca".into(),
            self.dir
                .path()
                .join("data/tls/ca.pem")
                .display()
                .to_string(),
            "--sim-token-file".into(),
            self.token_file().display().to_string(),
        ]
    }

    fn token_file(&self) -> PathBuf {
        self.dir.path().join("data/sim-token")
    }

    /// `https://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The service's token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.token_file()).unwrap_or_default()
    }

    /// The CA that signed the service's certificate.
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("data/tls/ca.pem")).unwrap_or_default()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default()
    }

    /// The service's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for SimService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
