//! The real `dialtone` binary, run as a dev server in a temporary directory.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{free_port, wait_until};

/// A `dialtone server --dev` with its own data directory, port and CLI configuration.
pub struct DevServer {
    binary: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// Where the sim's clusters answer, the same across restarts, as a load balancer's
    /// address is.
    kube_port: u16,
    extra_args: Vec<String>,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl DevServer {
    /// Starts the binary at `binary` (in tests: `env!("CARGO_BIN_EXE_dialtone")`).
    pub fn start(binary: &Path, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_env(binary, extra_args, &[])
    }

    /// Starts it with these environment variables set as well (a cloud's credentials).
    pub fn start_with_env(
        binary: &Path,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut server = DevServer {
            binary: binary.to_path_buf(),
            dir: tempfile::tempdir()?,
            port: free_port(),
            kube_port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        server.start_again()?;
        Ok(server)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts the server again on the same data directory and port, and waits until it
    /// serves and has written the CLI configuration.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let _ = std::fs::remove_file(self.config_path());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))?;
        let child = Command::new(&self.binary)
            .args([
                "server",
                "--dev",
                "--kube-listen",
                &format!("127.0.0.1:{}", self.kube_port),
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(&self.extra_args)
            .env("DIALTONE_CONFIG", self.config_path())
            .env("RUST_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("cannot start dialtone")?;
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(60), || {
            self.config_path().exists() && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        if !ready {
            bail!("dialtone did not start; its log:\n{}", self.log());
        }
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    fn context(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.config_path())
            .expect("the dev server wrote its CLI config");
        let config: serde_json::Value = serde_yaml_ng::from_str(&text).expect("valid YAML");
        config["contexts"][0].clone()
    }

    /// The bootstrap platform admin's token.
    pub fn admin_token(&self) -> String {
        self.context()["token"]
            .as_str()
            .expect("a token")
            .to_string()
    }

    pub fn ca_pem(&self) -> String {
        self.context()["certificateAuthorityData"]
            .as_str()
            .expect("a CA")
            .to_string()
    }

    /// Runs the CLI against this server with its configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .env("DIALTONE_CONFIG", self.config_path())
            .env_remove("DIALTONE_CONTEXT")
            .output()
            .expect("the dialtone binary runs")
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.kill9();
    }
}
