//! Where the control plane may send a request whose address a tenant chose (a webhook's
//! `clientConfig.url`): over HTTPS only, and never to loopback, link-local or other special
//! addresses, to the control plane's own listeners, or to private ranges, unless the
//! operator's allow-list (`--webhook-allowed-cidrs`) names the range. Otherwise anyone who
//! administers a cluster could make the control plane call, or scan, its own network.
//!
//! A host name is resolved once, every address it resolves to is checked, and the call is
//! pinned to those addresses, so that a second resolution cannot swap in another one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use ipnet::IpNet;

/// The destinations outbound calls may reach.
#[derive(Clone, Debug, Default)]
pub struct Egress {
    /// Ranges the operator allows even though they are private or special.
    pub allowed: Vec<IpNet>,
    /// The control plane's own listeners: never a destination, whatever the allow-list says.
    pub own: Vec<SocketAddr>,
    /// Exact URLs of the control plane's own endpoints that clusters are meant to call
    /// (the drift guard): shared, so that a sim service can trust each Dialtone server's as
    /// the server registers.
    pub trusted: TrustedUrls,
}

/// A set of exact URLs, shared by whoever holds a clone.
#[derive(Clone, Debug, Default)]
pub struct TrustedUrls(std::sync::Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>);

impl TrustedUrls {
    pub fn new(urls: impl IntoIterator<Item = String>) -> Self {
        TrustedUrls(std::sync::Arc::new(std::sync::RwLock::new(
            urls.into_iter().collect(),
        )))
    }

    pub fn add(&self, url: String) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(url);
    }

    pub fn contains(&self, url: &str) -> bool {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(url)
    }
}

/// Where a checked call goes.
#[derive(Debug, PartialEq)]
pub struct Destination {
    pub url: reqwest::Url,
    /// The host name and the addresses it must connect to; empty for an IP literal or a
    /// trusted URL.
    pub pinned: Option<(String, Vec<SocketAddr>)>,
}

/// Parses a comma-separated list of CIDRs (`10.20.0.0/16,fd00::/8`), naming a bad one.
pub fn parse_cidrs(list: &str) -> Result<Vec<IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{s}` is not a CIDR such as 10.20.0.0/16"))
        })
        .collect()
}

/// Why an address is not an ordinary public one; `None` when it is.
fn special(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => {
            let cgnat = v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64;
            let this_network = v4.octets()[0] == 0;
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || this_network || v4 == Ipv4Addr::BROADCAST {
                Some("unroutable")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_private() || cgnat {
                Some("private")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let segment = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if segment & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_unspecified() {
                Some("unroutable")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if segment & 0xfe00 == 0xfc00 {
                Some("private")
            } else {
                None
            }
        }
    }
}

/// Whether `ip` is an address of this host: binding to it works only if it is.
fn is_local(ip: IpAddr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl Egress {
    /// Conservatively: any address of this host on a listener's port.
    fn is_own(&self, addr: SocketAddr) -> bool {
        self.own.iter().any(|own| {
            own.port() == addr.port()
                && (own.ip() == addr.ip() || (is_local(own.ip()) && is_local(addr.ip())))
        })
    }

    /// Why a call to `addr` is refused; `None` when it may go.
    fn refusal(&self, addr: SocketAddr) -> Option<String> {
        if self.is_own(addr) {
            return Some(format!("{addr} is the control plane's own listener"));
        }
        if self.allowed.iter().any(|net| net.contains(&addr.ip())) {
            return None;
        }
        special(addr.ip()).map(|what| {
            format!(
                "{} is a {what} address, outside the operator's allowed ranges (--webhook-allowed-cidrs)",
                addr.ip()
            )
        })
    }

    /// Checks a URL a tenant set, resolving its host; the error says why it is refused.
    pub async fn check(&self, url: &str) -> Result<Destination, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if self.trusted.contains(url) {
            return Ok(Destination {
                url: parsed,
                pinned: None,
            });
        }
        if parsed.scheme() != "https" {
            return Err(format!(
                "`{url}` is not an https URL: webhooks are called over HTTPS only"
            ));
        }
        let port = parsed.port_or_known_default().unwrap_or(443);
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("`{url}` names no host"))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        let (addrs, pinned_host) = match literal.parse::<IpAddr>() {
            Ok(ip) => (vec![SocketAddr::new(ip, port)], None),
            Err(_) => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
                    .await
                    .map_err(|e| format!("cannot resolve {host}: {e}"))?
                    .collect();
                (addrs, Some(host.to_string()))
            }
        };
        if addrs.is_empty() {
            return Err(format!("{url} resolves to no address"));
        }
        if let Some(why) = addrs.iter().find_map(|addr| self.refusal(*addr)) {
            return Err(format!("calls to {url} are not allowed: {why}"));
        }
        Ok(Destination {
            url: parsed,
            pinned: pinned_host.map(|host| (host, addrs)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress() -> Egress {
        Egress {
            allowed: parse_cidrs("10.20.0.0/16").unwrap(),
            own: vec!["127.0.0.1:7443".parse().unwrap()],
            trusted: TrustedUrls::new(["https://127.0.0.1:7443/v1/admission/rbac-guard".into()]),
        }
    }

    #[tokio::test]
    async fn special_and_private_destinations_are_refused() {
        let egress = egress();
        for (url, why) in [
            ("http://203.0.113.9/hook", "https"),
            ("https://127.0.0.1:9000/hook", "loopback"),
            ("https://[::1]:9000/hook", "loopback"),
            ("https://[::ffff:127.0.0.1]:9000/hook", "loopback"),
            ("https://169.254.169.254/latest/meta-data", "link-local"),
            ("https://10.0.0.1/hook", "private"),
            ("https://192.168.1.1/hook", "private"),
            ("https://100.64.0.1/hook", "private"),
            ("https://[fd00::1]/hook", "private"),
            ("https://0.0.0.0:9000/hook", "unroutable"),
            ("https://localhost:9000/hook", "loopback"),
            ("https://127.0.0.1:7443/v1/orgs", "own listener"),
        ] {
            let refused = egress.check(url).await.unwrap_err();
            assert!(refused.contains(why), "{url}: {refused}");
        }
    }

    #[tokio::test]
    async fn public_allowed_and_trusted_destinations_pass() {
        let egress = egress();
        for url in [
            "https://203.0.113.9/hook",
            "https://10.20.3.4:8443/hook",
            "https://127.0.0.1:7443/v1/admission/rbac-guard",
        ] {
            assert!(egress.check(url).await.is_ok(), "{url}");
        }
        assert!(parse_cidrs("10.0.0.0/33").is_err());
        assert_eq!(parse_cidrs(" 127.0.0.1 ,").unwrap().len(), 1);
    }
}
