//! A real etcd cluster on loopback ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{free_port, wait_until};

struct Member {
    name: String,
    client_port: u16,
    child: Option<Child>,
}

/// A running etcd cluster; every member is killed when this drops.
pub struct EtcdCluster {
    members: Vec<Member>,
    /// The members' data and logs, removed with the cluster.
    dir: tempfile::TempDir,
}

fn etcd_binary() -> PathBuf {
    std::env::var_os("ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("etcd"))
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

impl EtcdCluster {
    /// Starts `size` members and waits until every one reports healthy. A start that fails
    /// (a loopback port taken between choosing and binding it, under a loaded machine) is
    /// tried again on fresh ports, three times in all.
    pub fn start(size: usize) -> anyhow::Result<Self> {
        let mut failure = None;
        for _ in 0..3 {
            match Self::start_once(size) {
                Ok(cluster) => return Ok(cluster),
                Err(e) => failure = Some(e),
            }
        }
        Err(failure.expect("tried at least once"))
    }

    fn start_once(size: usize) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let peers: Vec<(String, u16, u16)> = (0..size)
            .map(|i| (format!("m{i}"), free_port(), free_port()))
            .collect();
        let initial_cluster = peers
            .iter()
            .map(|(name, _, peer)| format!("{name}=http://127.0.0.1:{peer}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::new();
        for (name, client, peer) in &peers {
            let log = std::fs::File::create(dir.path().join(format!("{name}.log")))?;
            let child = Command::new(etcd_binary())
                .args(["--name", name])
                .arg("--data-dir")
                .arg(dir.path().join(name))
                .args([
                    "--listen-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args([
                    "--advertise-client-urls",
                    &format!("http://127.0.0.1:{client}"),
                ])
                .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
                .args([
                    "--initial-advertise-peer-urls",
                    &format!("http://127.0.0.1:{peer}"),
                ])
                .args(["--initial-cluster", &initial_cluster])
                .args([
                    "--initial-cluster-state",
                    "new",
                    "--initial-cluster-token",
                    "dialtone-test",
                ])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("cannot start etcd: install Debian's etcd-server, or set ETCD_BIN")?;
            members.push(Member {
                name: name.clone(),
                client_port: *client,
                child: Some(child),
            });
        }
        let cluster = EtcdCluster { members, dir };
        for member in &cluster.members {
            if !wait_until(Duration::from_secs(30), || healthy(member.client_port)) {
                let log = std::fs::read_to_string(
                    cluster.dir.path().join(format!("{}.log", member.name)),
                )
                .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                bail!(
                    "etcd member {} did not become healthy; its log ends: {:?}",
                    member.name,
                    tail
                );
            }
        }
        Ok(cluster)
    }

    /// `127.0.0.1:port` of every member, including killed ones.
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The `--store` URL for dialtone.
    pub fn url(&self) -> String {
        format!("etcd://{}", self.endpoints().join(","))
    }

    /// Kills member `index` with SIGKILL.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.members[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
