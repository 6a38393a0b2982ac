//! What tests and benchmarks need to run Dialtone for real on one machine: a real etcd
//! cluster (Debian's `etcd-server`) on loopback ports, a moto server for the AWS APIs, the
//! real `dialtone` binary as a dev server and as a shared sim service, an HTTPS admission
//! webhook, and a TCP proxy that cuts links. Everything started here is stopped when its handle drops.
//!
//! Depends on no Dialtone crate, so that any of them can use it in tests.

mod etcd;
mod moto;
mod proxy;
mod server;
mod sim;
mod webhook;

pub use etcd::EtcdCluster;
pub use moto::MotoServer;
pub use proxy::CutProxy;
pub use server::DevServer;
pub use sim::SimService;
pub use webhook::AdmissionWebhook;

use std::net::TcpListener;
use std::time::{Duration, Instant};

/// The release build of `dialtone` that benchmarks run: `explicit` if given, else
/// `target/release/dialtone`, with the command that builds it when it is missing.
pub fn release_binary(explicit: Option<std::path::PathBuf>) -> anyhow::Result<std::path::PathBuf> {
    let binary = explicit.unwrap_or_else(|| "target/release/dialtone".into());
    if !binary.exists() {
        anyhow::bail!(
            "{} not found; build it first: cargo build --release -p dialtone",
            binary.display()
        );
    }
    Ok(binary)
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a loopback port")
}

/// Polls `check` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
