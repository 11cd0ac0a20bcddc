//! The one way out: every request the registry itself sends (webhooks now; image-cache upstreams
//! and replication targets later) goes through an [`OutboundPolicy`], so a URL a user may set
//! cannot make the registry reach its own host, the cloud metadata service or the private network
//! it runs in (server-side request forgery).
//!
//! Two checks guard a request, and callers need both: [`OutboundPolicy::check_url`] before every
//! send (it parses the URL and judges every address its host resolves to, IP literals included),
//! and the [`OutboundPolicy::client`] the request is sent with, whose DNS resolver judges the
//! addresses again at connect time (so a name re-pointed between the check and the connection,
//! DNS rebinding, is still refused) and which never follows a redirect (a redirect would reach a
//! URL nobody checked). Only addresses that are public, or inside a CIDR the operator allows with
//! `BERTH_OUTBOUND_ALLOW`, pass.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Longest target URL accepted, in bytes.
const MAX_URL_LEN: usize = 2048;

/// How long a DNS lookup in [`OutboundPolicy::check_url`] may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest connect timeout of a [`OutboundPolicy::client`] (shorter if its total timeout is).
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What every outbound request says it is.
const USER_AGENT: &str = concat!("Berth/", env!("CARGO_PKG_VERSION"));

/// Which addresses outbound requests may reach, and the clients that enforce it.
#[derive(Clone)]
pub struct OutboundPolicy {
    /// The operator's allow-list (`BERTH_OUTBOUND_ALLOW`): non-public ranges that may be reached.
    allow: Arc<Vec<IpNet>>,
    /// Clients built so far, by (skip_tls_verify, timeout): each is built once and shared.
    clients: Arc<Mutex<HashMap<(bool, Duration), reqwest::Client>>>,
}

impl std::fmt::Debug for OutboundPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboundPolicy").field("allow", &self.allow).finish_non_exhaustive()
    }
}

/// Why an outbound request was refused or failed before it was sent.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The target URL is not one outbound requests may use; the message says what is wrong.
    #[error("invalid outbound URL: {0}")]
    InvalidUrl(String),
    /// The target's host resolves to an address outside the public internet and the allow-list.
    #[error(
        "{host} resolves to {addr}, a loopback/private/link-local/reserved address outbound requests may not \
         reach (allow it with BERTH_OUTBOUND_ALLOW)"
    )]
    Refused {
        /// The host as the URL names it.
        host: String,
        /// The first address of the host that is not permitted.
        addr: IpAddr,
    },
    /// The target's host could not be resolved, or resolved to no address.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// The host as the URL names it.
        host: String,
        /// Why resolving failed.
        reason: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the outbound HTTP client: {0}")]
    Client(String),
    /// `BERTH_OUTBOUND_ALLOW` holds an entry that is neither a CIDR nor an IP address.
    #[error("invalid BERTH_OUTBOUND_ALLOW: {0}")]
    InvalidAllowList(String),
}

impl OutboundPolicy {
    /// A policy that permits public addresses and those inside `allow`; the operator's way in.
    pub fn new(allow: Vec<IpNet>) -> Self {
        Self { allow: Arc::new(allow), clients: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// Parses `BERTH_OUTBOUND_ALLOW`: CIDRs or bare IPs (a host prefix) separated by commas or
    /// whitespace; an empty text allows nothing beyond the public internet.
    pub fn parse_allow(text: &str) -> Result<Vec<IpNet>, OutboundError> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                if let Ok(net) = entry.parse::<IpNet>() {
                    Ok(net.trunc())
                } else if let Ok(ip) = entry.parse::<IpAddr>() {
                    Ok(IpNet::from(ip))
                } else {
                    Err(OutboundError::InvalidAllowList(format!("{entry:?} is neither a CIDR nor an IP address")))
                }
            })
            .collect()
    }

    /// The operator allow-list, for reporting what the policy lets through.
    pub fn allowed(&self) -> &[IpNet] {
        &self.allow
    }

    /// Whether an address may be reached: it is public, or inside an allowed CIDR.
    pub fn permits(&self, ip: IpAddr) -> bool {
        permits(&self.allow, ip)
    }

    /// Parses and checks a target URL before a request is sent to it: absolute `http`/`https`, a
    /// host, no userinfo, no fragment, at most 2048 bytes, and every address its host resolves
    /// to (an IP literal is its own address) permitted; refused if any is not, or none resolves.
    pub async fn check_url(&self, url: &str) -> Result<Url, OutboundError> {
        if url.len() > MAX_URL_LEN {
            return Err(OutboundError::InvalidUrl(format!(
                "it is {} bytes long, more than the {MAX_URL_LEN} allowed",
                url.len()
            )));
        }
        let parsed = Url::parse(url).map_err(|e| OutboundError::InvalidUrl(format!("{url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(OutboundError::InvalidUrl(format!("scheme {:?} is not http or https", parsed.scheme())));
        }
        let host = match parsed.host_str() {
            Some(host) if !host.is_empty() => host.to_owned(),
            _ => return Err(OutboundError::InvalidUrl("it has no host".to_owned())),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(OutboundError::InvalidUrl("it carries credentials (user:password@)".to_owned()));
        }
        if parsed.fragment().is_some() {
            return Err(OutboundError::InvalidUrl("it has a fragment (#...)".to_owned()));
        }
        let port = parsed.port_or_known_default().unwrap_or(0);
        match tokio::time::timeout(RESOLVE_TIMEOUT, resolve_permitted(&self.allow, &host, port)).await {
            Ok(resolved) => resolved.map(|_| parsed),
            Err(_) => Err(OutboundError::Resolve {
                host,
                reason: format!("no answer within {} s", RESOLVE_TIMEOUT.as_secs()),
            }),
        }
    }

    /// The client outbound requests are sent with (built once per `skip_tls_verify` and
    /// `timeout`, then shared): its DNS resolver returns only permitted addresses, refusing a
    /// whole lookup if any is not (so DNS rebinding between check and connect cannot reach a
    /// private address); it never follows redirects, uses `timeout` for the whole request (and at
    /// most 10 s to connect), sends `User-Agent: Berth/<version>`, ignores proxy settings in the
    /// environment, and accepts invalid TLS certificates only if `skip_tls_verify`.
    ///
    /// reqwest does not consult the resolver for a URL whose host is an IP literal, so the
    /// resolver alone does not guard such a URL: call [`check_url`](Self::check_url) before every
    /// send.
    pub fn client(&self, skip_tls_verify: bool, timeout: Duration) -> Result<reqwest::Client, OutboundError> {
        let mut clients = self.clients.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(client) = clients.get(&(skip_tls_verify, timeout)) {
            return Ok(client.clone());
        }
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(PermittedResolver { allow: Arc::clone(&self.allow) }))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .user_agent(USER_AGENT)
            .no_proxy()
            .danger_accept_invalid_certs(skip_tls_verify)
            .build()
            .map_err(|e| OutboundError::Client(error_chain(&e)))?;
        clients.insert((skip_tls_verify, timeout), client.clone());
        Ok(client)
    }
}

/// The DNS resolver of [`OutboundPolicy::client`]: resolves with the system resolver, then
/// refuses the lookup if any address is not permitted.
struct PermittedResolver {
    /// The policy's allow-list.
    allow: Arc<Vec<IpNet>>,
}

impl Resolve for PermittedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = Arc::clone(&self.allow);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = resolve_permitted(&allow, &host, 0).await?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// Resolves `host` (an IP literal, possibly in brackets, or a DNS name) and returns its addresses
/// if there is at least one and every one is permitted.
async fn resolve_permitted(allow: &[IpNet], host: &str, port: u16) -> Result<Vec<SocketAddr>, OutboundError> {
    let literal = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let addrs: Vec<SocketAddr> = if let Ok(ip) = literal.parse::<IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| OutboundError::Resolve { host: host.to_owned(), reason: e.to_string() })?
            .collect()
    };
    if addrs.is_empty() {
        return Err(OutboundError::Resolve { host: host.to_owned(), reason: "it has no address".to_owned() });
    }
    if let Some(refused) = addrs.iter().find(|addr| !permits(allow, addr.ip())) {
        return Err(OutboundError::Refused { host: host.to_owned(), addr: refused.ip() });
    }
    Ok(addrs)
}

/// Whether `ip` is public or inside `allow`; an IPv4-mapped IPv6 address is judged as its IPv4
/// address, so an IPv4 allow-list entry covers its mapped form too.
fn permits(allow: &[IpNet], ip: IpAddr) -> bool {
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    is_public(ip) || allow.iter().any(|net| net.contains(&ip) || mapped.is_some_and(|v4| net.contains(&v4)))
}

/// IPv4 ranges that are not the public internet (IANA special-purpose registry).
const NOT_PUBLIC_V4: &[(Ipv4Addr, u8)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // carrier-grade NAT
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, incl. cloud metadata 169.254.169.254
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation (TEST-NET-1)
    (Ipv4Addr::new(192, 88, 99, 0), 24),  // 6to4 relay anycast
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation (TEST-NET-2)
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation (TEST-NET-3)
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, incl. broadcast 255.255.255.255
];

/// IPv6 ranges that are not the public internet, other than those embedding an IPv4 address.
const NOT_PUBLIC_V6: &[(Ipv6Addr, u8)] = &[
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96), // unspecified, loopback, deprecated IPv4-compatible
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64), // discard-only
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32), // Teredo (embeds an obfuscated IPv4 address)
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20), // documentation
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7), // unique local
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10), // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10), // deprecated site-local
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8), // multicast
];

/// Whether `ip` is on the public internet; an IPv6 address that embeds an IPv4 one (IPv4-mapped,
/// NAT64, 6to4) is judged by the IPv4 address it leads to.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !NOT_PUBLIC_V4.iter().any(|&(net, len)| in_v4(net, len, v4)),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return is_public(IpAddr::V4(v4));
            }
            !NOT_PUBLIC_V6.iter().any(|&(net, len)| in_v6(net, len, v6))
        }
    }
}

/// The IPv4 address an IPv6 address leads to: IPv4-mapped (`::ffff:0:0/96`), well-known NAT64
/// (`64:ff9b::/96`), or 6to4 (`2002::/16`, the IPv4 address in bits 16-47).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let octets = v6.octets();
    let low = Ipv4Addr::new(octets[12], octets[13], octets[14], octets[15]);
    if in_v6(Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96, v6)
        || in_v6(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96, v6)
    {
        Some(low)
    } else if in_v6(Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16, v6) {
        Some(Ipv4Addr::new(octets[2], octets[3], octets[4], octets[5]))
    } else {
        None
    }
}

fn in_v4(net: Ipv4Addr, len: u8, ip: Ipv4Addr) -> bool {
    Ipv4Net::new(net, len).is_ok_and(|net| net.contains(&ip))
}

fn in_v6(net: Ipv6Addr, len: u8, ip: Ipv6Addr) -> bool {
    Ipv6Net::new(net, len).is_ok_and(|net| net.contains(&ip))
}

/// Why an outbound request failed, as logs and delivery records show it: the kind (timed out,
/// could not connect, failed), then the error and each of its causes.
pub fn describe_failure(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", error_chain(e))
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn policy(allow: &str) -> OutboundPolicy {
        OutboundPolicy::new(OutboundPolicy::parse_allow(allow).unwrap())
    }

    #[test]
    fn addresses_outside_the_public_internet_are_refused() {
        let table: &[(&str, bool)] = &[
            // IPv4
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("10.0.0.1", false),
            ("10.255.255.255", false),
            ("100.64.0.1", false),
            ("100.127.255.254", false),
            ("100.63.255.255", true),
            ("100.128.0.0", true),
            ("127.0.0.1", false),
            ("127.255.255.254", false),
            ("169.254.0.1", false),
            ("169.254.169.254", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("172.15.255.255", true),
            ("172.32.0.0", true),
            ("192.0.0.1", false),
            ("192.0.0.170", false),
            ("192.0.2.1", false),
            ("192.88.99.1", false),
            ("192.168.0.1", false),
            ("192.168.255.255", false),
            ("198.18.0.1", false),
            ("198.19.255.255", false),
            ("198.20.0.0", true),
            ("198.51.100.1", false),
            ("203.0.113.1", false),
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            ("1.1.1.1", true),
            ("8.8.8.8", true),
            ("93.184.216.34", true),
            ("223.255.255.255", true),
            // IPv6
            ("::", false),
            ("::1", false),
            ("::127.0.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:0.0.0.0", false),
            ("::ffff:1.1.1.1", true),
            ("64:ff9b::127.0.0.1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::1.1.1.1", true),
            ("64:ff9b:1::1", false),
            ("100::1", false),
            ("100::ffff:ffff:ffff:ffff", false),
            ("2001:db8::1", false),
            ("2001:db8:ffff::1", false),
            ("2001::1", false),
            ("fc00::1", false),
            ("fd12:3456:789a::1", false),
            ("fe80::1", false),
            ("febf::1", false),
            ("fec0::1", false),
            ("ff02::1", false),
            ("ff05::1:3", false),
            ("2002:7f00:1::", false),
            ("2002:a9fe:a9fe::1", false),
            ("2002:0a00:0001::1", false),
            ("2002:0101:0101::1", true),
            ("2606:4700::1111", true),
            ("2606:4700:4700::1111", true),
            ("2a00:1450:4001:80b::200e", true),
        ];
        let none = policy("");
        for &(addr, public) in table {
            let ip: IpAddr = addr.parse().unwrap();
            assert_eq!(none.permits(ip), public, "{addr}");
        }
    }

    #[test]
    fn the_allow_list_lets_ranges_through() {
        let allowed = policy("127.0.0.0/8, 10.1.0.0/16 fd00::/8 169.254.169.254");
        for addr in ["127.0.0.1", "10.1.2.3", "fd00::1", "169.254.169.254", "::ffff:127.0.0.1", "::ffff:10.1.9.9"] {
            assert!(allowed.permits(addr.parse().unwrap()), "{addr}");
        }
        for addr in ["::1", "10.2.0.1", "fc00::1", "169.254.169.253", "::ffff:10.2.0.1", "192.168.1.1"] {
            assert!(!allowed.permits(addr.parse().unwrap()), "{addr}");
        }
        // A public address stays permitted whatever the list says.
        assert!(allowed.permits("1.1.1.1".parse().unwrap()));
    }

    #[test]
    fn parse_allow_reads_cidrs_and_bare_ips() {
        assert!(OutboundPolicy::parse_allow("").unwrap().is_empty());
        assert!(OutboundPolicy::parse_allow(" , \n\t,").unwrap().is_empty());
        let parsed = OutboundPolicy::parse_allow("10.0.0.0/8,127.0.0.1  ::1\n\tfd00::/8, 10.1.2.3/16,").unwrap();
        let expected: Vec<IpNet> = ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "fd00::/8", "10.1.0.0/16"]
            .iter()
            .map(|net| net.parse().unwrap())
            .collect();
        assert_eq!(parsed, expected);
        assert_eq!(policy("192.168.0.0/16").allowed(), &["192.168.0.0/16".parse::<IpNet>().unwrap()]);

        for bad in ["nope", "10.0.0.0/33", "10.0.0/8", "1.2.3.4/", "::1/129", "10.0.0.0/8;192.168.0.0/16", "[::1]"] {
            assert!(
                matches!(OutboundPolicy::parse_allow(bad), Err(OutboundError::InvalidAllowList(_))),
                "{bad:?} parsed"
            );
        }
    }

    #[tokio::test]
    async fn check_url_refuses_malformed_urls() {
        let policy = policy("");
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://example.com/",
            "http://",
            "https://:443/",
            "http://user:secret@example.com/",
            "http://user@example.com/",
            "https://example.com/#fragment",
            "/relative/path",
            "example.com/hook",
            "",
            long.as_str(),
        ] {
            let refused = policy.check_url(bad).await;
            assert!(matches!(refused, Err(OutboundError::InvalidUrl(_))), "{bad:?}: {refused:?}");
        }
    }

    #[tokio::test]
    async fn check_url_refuses_non_public_hosts_unless_allowed() {
        let none = policy("");
        for url in [
            "http://127.0.0.1:8080/",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:8080/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0/",
            "http://0x7f.1/",
            "http://2130706433/",
            "https://10.0.0.1/",
        ] {
            let refused = none.check_url(url).await;
            assert!(matches!(refused, Err(OutboundError::Refused { .. })), "{url}: {refused:?}");
        }
        let message = none.check_url("http://169.254.169.254/latest/meta-data/").await.unwrap_err().to_string();
        assert!(message.contains("169.254.169.254") && message.contains("BERTH_OUTBOUND_ALLOW"), "{message}");

        let loopback = policy("127.0.0.0/8");
        let url = loopback.check_url("http://127.0.0.1:8080/hook?x=1").await.unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/hook?x=1");
        loopback.check_url("http://[::ffff:127.0.0.1]/").await.unwrap();
        assert!(matches!(loopback.check_url("http://[::1]:8080/").await, Err(OutboundError::Refused { .. })));

        // A public IP literal needs no lookup and passes.
        none.check_url("https://1.1.1.1/").await.unwrap();
        none.check_url("https://[2606:4700::1111]/").await.unwrap();
    }

    /// A server on 127.0.0.1 that answers every request with `response` and counts connections.
    async fn serve(response: String) -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&hits);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let response = response.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        (port, hits)
    }

    fn response(status: &str, extra_headers: &str) -> String {
        format!("HTTP/1.1 {status}\r\n{extra_headers}Content-Length: 2\r\nConnection: close\r\n\r\nok")
    }

    #[tokio::test]
    async fn an_allowed_server_is_reached() {
        let (port, hits) = serve(response("200 OK", "")).await;
        let policy = policy("127.0.0.0/8");
        let url = policy.check_url(&format!("http://127.0.0.1:{port}/hook")).await.unwrap();
        let client = policy.client(false, Duration::from_secs(5)).unwrap();
        let answer = client.post(url).body("{}").send().await.unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
        assert_eq!(answer.text().await.unwrap(), "ok");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_resolver_passes_allowed_names() {
        let (port, _) = serve(response("200 OK", "")).await;
        // localhost may resolve to ::1 as well as 127.0.0.1: both must be allowed.
        let policy = policy("127.0.0.0/8 ::1");
        let url = policy.check_url(&format!("http://localhost:{port}/")).await.unwrap();
        let answer = policy.client(false, Duration::from_secs(5)).unwrap().get(url).send().await.unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::OK);
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (target, target_hits) = serve(response("200 OK", "")).await;
        let (port, _) = serve(response("302 Found", &format!("Location: http://127.0.0.1:{target}/\r\n"))).await;
        let policy = policy("127.0.0.0/8");
        let url = policy.check_url(&format!("http://127.0.0.1:{port}/")).await.unwrap();
        let answer = policy.client(false, Duration::from_secs(5)).unwrap().post(url).send().await.unwrap();
        assert_eq!(answer.status(), reqwest::StatusCode::FOUND);
        assert_eq!(answer.headers()["location"], format!("http://127.0.0.1:{target}/").as_str());
        assert_eq!(target_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn the_resolver_refuses_names_of_non_public_addresses() {
        let (port, hits) = serve(response("200 OK", "")).await;
        // check_url skipped on purpose: the client alone must refuse.
        let client = policy("").client(false, Duration::from_secs(5)).unwrap();
        let failed = client.post(format!("http://localhost:{port}/")).send().await.unwrap_err();
        let chain = error_chain(&failed);
        assert!(chain.contains("may not reach"), "{chain}");
        assert_eq!(hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let policy = policy("127.0.0.0/8");
        let url = policy.check_url(&format!("http://127.0.0.1:{port}/")).await.unwrap();
        let started = Instant::now();
        let failed =
            policy.client(false, Duration::from_secs(1)).unwrap().post(url).body("{}").send().await.unwrap_err();
        assert!(failed.is_timeout(), "{}", error_chain(&failed));
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }

    #[test]
    fn clients_are_cached_per_settings() {
        let policy = policy("");
        let shared = policy.clone();
        policy.client(false, Duration::from_secs(5)).unwrap();
        shared.client(false, Duration::from_secs(5)).unwrap();
        policy.client(true, Duration::from_secs(5)).unwrap();
        policy.client(false, Duration::from_secs(30)).unwrap();
        assert_eq!(policy.clients.lock().unwrap().len(), 3);
    }
}
