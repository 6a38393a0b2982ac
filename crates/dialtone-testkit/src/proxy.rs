//! A TCP proxy on loopback that can cut the link it carries, as a network partition does:
//! while cut, it closes every connection it holds and every new one at once. Given several
//! targets, it is a load balancer in front of them: each connection goes to the first that
//! accepts it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A proxy to one address. Stops serving when dropped.
pub struct CutProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    stopped: Arc<AtomicBool>,
}

impl CutProxy {
    /// Proxies a new loopback port to `target`.
    pub fn start(target: SocketAddr) -> anyhow::Result<Self> {
        Self::start_to(vec![target])
    }

    /// Proxies a new loopback port to the first of `targets` that accepts each connection.
    pub fn start_to(targets: Vec<SocketAddr>) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let proxy = CutProxy {
            port,
            cut: Arc::default(),
            open: Arc::default(),
            stopped: Arc::default(),
        };
        let (cut, open, stopped) = (proxy.cut.clone(), proxy.open.clone(), proxy.stopped.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                if cut.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Some(server) = targets.iter().find_map(|t| TcpStream::connect(t).ok()) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut open = open.lock().unwrap();
                    open.extend(client.try_clone());
                    open.extend(server.try_clone());
                }
                pipe(&client, &server);
                pipe(&server, &client);
            }
        });
        Ok(proxy)
    }

    /// Its loopback port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Cuts the link: every connection is closed, and new ones are closed at once.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Carries connections again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so that it sees it has stopped.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copies `from` to `to` on a thread of its own until either end closes.
fn pipe(from: &TcpStream, to: &TcpStream) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
