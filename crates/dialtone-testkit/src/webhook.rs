//! A validating admission webhook for tests: an HTTPS server on a loopback port, with its own
//! CA, that answers every `admission.k8s.io/v1` AdmissionReview with a decision made by the
//! test. One request per connection (it answers `Connection: close`), which every HTTP
//! client handles.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use anyhow::Context;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

/// Decides one AdmissionReview request: `Err(message)` denies it.
pub type Decide = dyn Fn(&Value) -> Result<(), String> + Send + Sync;

pub struct AdmissionWebhook {
    addr: SocketAddr,
    ca_pem: String,
    stopping: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AdmissionWebhook {
    pub fn start(
        decide: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name.push(DnType::CommonName, "webhook CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate()?;
        let cert =
            CertificateParams::new(vec!["127.0.0.1".to_string()])?.signed_by(&key, &issuer)?;
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(cert.der().to_vec())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .context("webhook TLS")?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stopping = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (config, stopping, decide) = (Arc::new(config), stopping.clone(), Arc::new(decide));
            move || {
                for tcp in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(tcp) = tcp else { continue };
                    let (config, decide) = (config.clone(), decide.clone());
                    std::thread::spawn(move || {
                        let _ = answer(tcp, config, &*decide);
                    });
                }
            }
        });
        Ok(AdmissionWebhook {
            addr,
            ca_pem: ca_cert.pem(),
            stopping,
            thread: Some(thread),
        })
    }

    /// Where to send reviews, for a webhook configuration's `clientConfig.url`.
    pub fn url(&self) -> String {
        format!("https://{}/validate", self.addr)
    }

    /// The webhook's CA, base64-encoded as a webhook configuration's `caBundle` wants it.
    pub fn ca_bundle(&self) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(&self.ca_pem)
    }
}

impl Drop for AdmissionWebhook {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and closes the port.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn answer(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    decide: &Decide,
) -> anyhow::Result<()> {
    let connection = rustls::ServerConnection::new(config)?;
    let mut reader = BufReader::new(rustls::StreamOwned::new(connection, tcp));
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            anyhow::bail!("the connection closed inside the headers");
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse()?;
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let review: Value = serde_json::from_slice(&body)?;
    let request = &review["request"];
    let response = match decide(request) {
        Ok(()) => json!({"uid": request["uid"], "allowed": true}),
        Err(message) => json!({
            "uid": request["uid"],
            "allowed": false,
            "status": {"code": 403, "message": message},
        }),
    };
    let body = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    })
    .to_string();
    let stream = reader.get_mut();
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    stream.conn.send_close_notify();
    stream.flush()?;
    Ok(())
}
