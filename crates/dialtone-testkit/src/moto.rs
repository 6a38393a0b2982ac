//! A moto server: AWS's EC2 and Elastic Load Balancing APIs as moto implements them, on a
//! loopback port, for the `aws` provider's tests. `scripts/setup` installs it (PyPI's
//! `moto[server]`) in a venv of its own.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_until};

/// Where `scripts/setup` puts moto's venv, unless `DIALTONE_MOTO_VENV` says otherwise.
fn moto_server_binary() -> PathBuf {
    let venv = std::env::var_os("DIALTONE_MOTO_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/dialtone/moto")
        });
    venv.join("bin/moto_server")
}

/// A running moto server, stopped when dropped.
pub struct MotoServer {
    child: Child,
    endpoint: String,
    log: tempfile::NamedTempFile,
}

impl MotoServer {
    pub fn start() -> anyhow::Result<Self> {
        let binary = moto_server_binary();
        if !binary.exists() {
            anyhow::bail!(
                "{} not found: run scripts/setup, which installs moto[server]",
                binary.display()
            );
        }
        let port = free_port();
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(&binary)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen()?)
            .spawn()?;
        let mut server = MotoServer {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            log,
        };
        if !wait_until(Duration::from_secs(30), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        }) {
            let _ = server.child.kill();
            anyhow::bail!("moto did not start on port {port}:\n{}", server.log());
        }
        Ok(server)
    }

    /// `http://127.0.0.1:{port}`, for `--aws-endpoint-url`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// What moto wrote: its request log and any traceback.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
