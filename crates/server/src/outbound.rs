//! The one outbound HTTP client: timeouts, pooling, no redirects, no proxy, bounded response
//! bodies, and a guard that refuses every reserved address (unless
//! `webhooks.allow_private_networks` or dev mode), so a URL an admin registers cannot reach the
//! internal network, however its DNS answers.
//!
//! Webhook delivery and social sign-in (discovery, keys, token exchange, userinfo: the core's
//! [`Upstream`] port) and flow web hooks send through it, so the guard is written once. A
//! flow web hook's URL is the operator's own (`kratos.yml`), so it alone skips the guard.
//!
//! The guard sits in two places, because neither alone sees every target: the resolver judges
//! what a name resolves to, and [`Client::send`] judges IP literals, which reqwest connects to
//! without asking the resolver. System proxies (`HTTP(S)_PROXY`) are ignored: through a proxy
//! the resolver would only ever judge the proxy's address, and the proxy would reach anything.

use crate::error::ApiError;
use crate::AppState;
use portcullis_core::upstream::{
    HttpBody, HttpMethod, HttpRequest, HttpResponse, Upstream, UpstreamError,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

// ------------------------------------------------------------------ the address guard

/// IPv4 ranges no outbound request may reach: "this network", private, shared (CGNAT),
/// loopback, link-local, IETF protocol assignments, documentation, the deprecated 6to4 relay
/// anycast, benchmarking, multicast, reserved and broadcast (IANA special-purpose registry).
const V4_RESERVED: [(Ipv4Addr, u8); 16] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    (Ipv4Addr::new(240, 0, 0, 0), 4),
    (Ipv4Addr::new(255, 255, 255, 255), 32),
];

/// What an IPv6 range means for the guard.
#[derive(Clone, Copy)]
enum V6Rule {
    /// Never reachable.
    Refuse,
    /// Carries an IPv4 address in its last 32 bits (IPv4-mapped, the NAT64 well-known
    /// prefix): as public as that address.
    Last32,
    /// 6to4: the IPv4 address of the relay is bits 16..48.
    SixToFour,
}

/// IPv6 ranges no outbound request may reach, or may reach only when the IPv4 address they
/// carry is public. First match wins.
///
/// The local-use NAT64 prefix 64:ff9b:1::/48 is refused outright rather than judged: the
/// operator may carve any prefix length from /48 to /96 out of it, which moves the embedded
/// IPv4 address (RFC 6052 §2.2), so no one reading of it is safe. A public IPv4 host is
/// reachable by its IPv4 address instead.
const V6_RESERVED: [(Ipv6Addr, u8, V6Rule); 14] = [
    // ::/96 (IPv4-compatible, deprecated) also covers :: and ::1.
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 128, V6Rule::Refuse),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 1), 128, V6Rule::Refuse),
    (Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0, 0), 96, V6Rule::Refuse),
    (
        Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0),
        96,
        V6Rule::Last32,
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0),
        96,
        V6Rule::Last32,
    ),
    (
        Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0),
        48,
        V6Rule::Refuse,
    ),
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        V6Rule::Refuse,
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        V6Rule::Refuse,
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        V6Rule::Refuse,
    ),
    (
        Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0),
        16,
        V6Rule::SixToFour,
    ),
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        V6Rule::Refuse,
    ),
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Rule::Refuse,
    ),
    (
        Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
        10,
        V6Rule::Refuse,
    ),
    (
        Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
        8,
        V6Rule::Refuse,
    ),
];

fn in_v4(ip: Ipv4Addr, net: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    u32::from(ip) & mask == u32::from(net) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    u128::from(ip) & mask == u128::from(net) & mask
}

/// Whether an outbound request may go to `ip`: not in any reserved range, and for the ranges
/// that carry an IPv4 address, that address is public too.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !V4_RESERVED.iter().any(|&(net, len)| in_v4(v4, net, len)),
        IpAddr::V6(v6) => {
            let Some(&(_, _, rule)) = V6_RESERVED
                .iter()
                .find(|&&(net, len, _)| in_v6(v6, net, len))
            else {
                return true;
            };
            let o = v6.octets();
            match rule {
                V6Rule::Refuse => false,
                V6Rule::Last32 => is_public(IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))),
                V6Rule::SixToFour => is_public(IpAddr::V4(Ipv4Addr::new(o[2], o[3], o[4], o[5]))),
            }
        }
    }
}

/// The IP address a URL names literally (`localhost` counts as one), if it does.
fn literal_host(u: &url::Url) -> Option<IpAddr> {
    match u.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::from([127, 0, 0, 1]))
        }
        url::Host::Domain(_) => None,
    }
}

/// Resolves names for the webhook client and refuses private addresses (unless allowed), so a
/// webhook URL cannot reach the internal network, however its DNS answers.
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if ok.is_empty() {
                return Err(format!(
                    "{} resolves only to private or loopback addresses",
                    name.as_str()
                )
                .into());
            }
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

// ------------------------------------------------------------------ the client

/// How a guarded send fails.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The URL names a reserved address literally.
    #[error("{0} is a private or reserved address; outbound requests may not go there")]
    Refused(IpAddr),
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The one outbound HTTP client: timeouts, pooling, no redirects, no proxy, the guard.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// For URLs the configuration names (flow web hooks): no address guard, everything else
    /// alike. The services a web hook calls are usually on the operator's own network.
    configured: reqwest::Client,
    allow_private: bool,
}

fn builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("Portcullis/", env!("CARGO_PKG_VERSION")))
}

impl Client {
    pub fn new(allow_private: bool) -> Client {
        let http = builder()
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .build()
            .unwrap_or_default();
        Client {
            http,
            configured: builder().build().unwrap_or_default(),
            allow_private,
        }
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.http.post(url)
    }

    /// Sends a request built from [`Client::post`], refusing reserved IP literals first
    /// (names are judged by the resolver when the connection is made).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, SendError> {
        let req = req.build()?;
        if let Some(ip) =
            literal_host(req.url()).filter(|ip| !self.allow_private && !is_public(*ip))
        {
            return Err(SendError::Refused(ip));
        }
        Ok(self.http.execute(req).await?)
    }
}

/// At most `limit` bytes of a response body, read chunk by chunk; the rest is never read; the
/// response is dropped, which closes the connection. A receiver that streams gigabytes costs
/// us `limit` bytes and a chunk.
pub async fn read_excerpt(resp: reqwest::Response, limit: usize) -> String {
    let mut kept = read_bytes(resp, limit).await;
    // A character cut in two at the limit is dropped rather than shown as U+FFFD.
    if let Err(e) = std::str::from_utf8(&kept) {
        if e.error_len().is_none() {
            kept.truncate(e.valid_up_to());
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// At most `limit` bytes of a response body (see [`read_excerpt`]).
async fn read_bytes(mut resp: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut kept: Vec<u8> = Vec::with_capacity(limit.min(4096));
    while kept.len() < limit {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - kept.len();
                kept.extend(chunk.iter().take(room));
            }
            Ok(None) | Err(_) => break,
        }
    }
    kept
}

/// What a provider's answer may weigh: discovery documents, key sets and tokens are a few
/// kilobytes.
const UPSTREAM_BODY_LIMIT: usize = 256 * 1024;

#[async_trait::async_trait]
impl Upstream for Client {
    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, UpstreamError> {
        let http = if req.configured_target {
            &self.configured
        } else {
            &self.http
        };
        let method = match req.method {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        };
        let mut b = http.request(method, &req.url);
        b = match req.body {
            HttpBody::None => b,
            HttpBody::Form(form) => b.form(&form),
            HttpBody::Json(json) => b
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json),
        };
        for (k, v) in &req.headers {
            b = b.header(k.as_str(), v);
        }
        if let Some((user, pass)) = &req.basic_auth {
            b = b.basic_auth(user, Some(pass));
        }
        // The cause without the URL, whose query may hold a credential (the caller names
        // what it called).
        let resp = if req.configured_target {
            b.send()
                .await
                .map_err(|e| UpstreamError(e.without_url().to_string()))?
        } else {
            Client::send(self, b).await.map_err(|e| match e {
                SendError::Http(e) => UpstreamError(e.without_url().to_string()),
                refused => UpstreamError(refused.to_string()),
            })?
        };
        let status = resp.status().as_u16();
        Ok(HttpResponse {
            status,
            body: read_bytes(resp, UPSTREAM_BODY_LIMIT).await,
        })
    }
}

/// Checks an endpoint URL when it is registered (an IP literal never reaches the resolver).
pub(crate) fn check_url(url: &str, allow_private: bool) -> Result<(), ApiError> {
    let u = url::Url::parse(url)
        .map_err(|e| ApiError::bad_request(format!("`url` is not a valid URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ApiError::bad_request("`url` must be http or https."));
    }
    if u.host().is_none() {
        return Err(ApiError::bad_request("`url` needs a host."));
    }
    let literal = literal_host(&u);
    if let Some(ip) = literal.filter(|ip| !allow_private && !is_public(*ip)) {
        return Err(ApiError::bad_request(format!(
            "`url` points at {ip}, a private or loopback address; set webhooks.allow_private_networks to allow it."
        )));
    }
    Ok(())
}

pub(crate) fn allow_private(st: &AppState) -> bool {
    st.core.config().webhooks.allow_private_networks || st.core.config().dev
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn private_and_loopback_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "0.0.0.0",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        assert!(check_url("http://127.0.0.1:9/x", false).is_err());
        assert!(check_url("http://localhost/x", false).is_err());
        assert!(check_url("http://127.0.0.1:9/x", true).is_ok());
        assert!(check_url("ftp://example.com/", true).is_err());
    }

    /// One test per reserved range: its first and last address are refused.
    macro_rules! refused {
        ($($name:ident: $($ip:literal),+;)*) => {$(
            #[test]
            fn $name() {
                for ip in [$($ip),+] {
                    assert!(!is_public(ip.parse().unwrap()), "{ip} should be refused");
                }
            }
        )*};
    }

    refused! {
        refuses_this_network_0_8: "0.0.0.0", "0.0.0.1", "0.255.255.255";
        refuses_private_10_8: "10.0.0.0", "10.255.255.255";
        refuses_shared_100_64_10: "100.64.0.0", "100.127.255.255";
        refuses_loopback_127_8: "127.0.0.1", "127.255.255.255";
        refuses_link_local_169_254_16: "169.254.0.0", "169.254.169.254", "169.254.255.255";
        refuses_private_172_16_12: "172.16.0.0", "172.31.255.255";
        refuses_ietf_192_0_0_24: "192.0.0.0", "192.0.0.255";
        refuses_documentation_192_0_2_24: "192.0.2.0", "192.0.2.255";
        refuses_6to4_relay_192_88_99_24: "192.88.99.0", "192.88.99.255";
        refuses_private_192_168_16: "192.168.0.0", "192.168.255.255";
        refuses_benchmarking_198_18_15: "198.18.0.0", "198.19.255.255";
        refuses_documentation_198_51_100_24: "198.51.100.0", "198.51.100.255";
        refuses_documentation_203_0_113_24: "203.0.113.0", "203.0.113.255";
        refuses_multicast_224_4: "224.0.0.1", "239.255.255.255";
        refuses_reserved_240_4: "240.0.0.0", "255.255.255.254";
        refuses_broadcast: "255.255.255.255";
        refuses_v6_unspecified: "::";
        refuses_v6_loopback: "::1";
        refuses_v4_compatible: "::7f00:1", "::a9fe:a9fe", "::5db8:d822", "::ffff:ffff";
        refuses_v4_mapped_private: "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:0.0.0.1";
        refuses_nat64_private: "64:ff9b::a9fe:a9fe", "64:ff9b::7f00:1", "64:ff9b::c0a8:1";
        refuses_local_nat64: "64:ff9b:1::", "64:ff9b:1::5db8:d822", "64:ff9b:1:ffff:ffff:ffff:ffff:ffff";
        refuses_discard_100_64: "100::", "100::ffff:ffff:ffff:ffff";
        refuses_teredo: "2001::", "2001:0:ffff:ffff:ffff:ffff:ffff:ffff";
        refuses_documentation_2001_db8: "2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff";
        refuses_6to4_private: "2002:7f00:1::", "2002:a00:1::", "2002:a9fe:a9fe::1";
        refuses_unique_local: "fc00::", "fd00::1", "fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        refuses_link_local_v6: "fe80::", "febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        refuses_site_local: "fec0::1", "feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        refuses_multicast_v6: "ff00::", "ff02::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
    }

    #[test]
    fn public_addresses_next_to_the_ranges_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "1.0.0.0",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.0",
            "192.88.98.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:2800:220:1::1",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "::ffff:93.184.216.34",
            "64:ff9b::5db8:d822",
            "2002:5db8:d822::1",
            "2003::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} should be allowed");
        }
    }

    #[test]
    fn every_reserved_range_is_refused_at_registration() {
        for url in [
            "http://0.0.0.1/",
            "http://198.18.0.1/",
            "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
            "http://[::7f00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[fec0::1]/",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
        }
    }

    /// A listener that counts the connections it accepts and answers each with 200.
    async fn counting_receiver() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                });
            }
        });
        (addr, hits)
    }

    #[tokio::test]
    async fn ip_literals_are_refused_when_sending_not_only_when_registering() {
        let (addr, hits) = counting_receiver().await;
        let client = Client::new(false);
        for url in [
            format!("http://{addr}/"),
            format!("http://[::ffff:127.0.0.1]:{}/", addr.port()),
            format!("http://[64:ff9b::7f00:1]:{}/", addr.port()),
        ] {
            let sent = client.send(client.post(&url)).await;
            assert!(
                matches!(sent, Err(SendError::Refused(_))),
                "{url}: {sent:?}"
            );
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // With private networks allowed (local testing) the same literal goes through.
        let open = Client::new(true);
        let r = open
            .send(open.post(&format!("http://{addr}/")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    #[tokio::test]
    async fn system_proxy_variables_cannot_route_around_the_guard() {
        let (proxy, proxy_hits) = counting_receiver().await;
        let (target, target_hits) = counting_receiver().await;
        // Only this test sets these, and only the clients built here read them.
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::set_var(var, format!("http://{proxy}"));
        }
        let client = Client::new(true);
        let sent = client
            .send(client.post(&format!("http://{target}/hook")))
            .await;
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            std::env::remove_var(var);
        }
        assert_eq!(sent.unwrap().status(), 200);
        assert_eq!(target_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(proxy_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_receiver_streaming_an_endless_body_costs_one_kilobyte() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (written_tx, written_rx) = tokio::sync::oneshot::channel::<usize>();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let mut written = 0usize;
            let head = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n";
            if s.write_all(head).await.is_ok() {
                // No length and no end: without a bound the client reads until it times out.
                let chunk = vec![b'a'; 64 * 1024];
                while s.write_all(&chunk).await.is_ok() {
                    written += chunk.len();
                    if written > 1 << 30 {
                        break;
                    }
                }
            }
            let _ = written_tx.send(written);
        });
        let client = Client::new(true);
        let started = std::time::Instant::now();
        let r = client
            .send(client.post(&format!("http://{addr}/")))
            .await
            .unwrap();
        let excerpt = read_excerpt(r, 1024).await;
        assert_eq!(excerpt, "a".repeat(1024));
        // Dropping the response closed the connection, so the receiver's writes fail soon;
        // what it got out is what the socket buffers held, not the stream.
        let written = tokio::time::timeout(Duration::from_secs(5), written_rx)
            .await
            .expect("the receiver kept writing: the body was not dropped")
            .unwrap();
        assert!(
            written < 64 << 20,
            "{written} bytes were taken from the receiver"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn an_excerpt_does_not_end_in_half_a_character() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all("HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\naé€".as_bytes())
                .await;
        });
        let client = Client::new(true);
        let r = client
            .send(client.post(&format!("http://{addr}/")))
            .await
            .unwrap();
        // 'a' (1 byte) + 'é' (2) + '€' (3): a limit of 5 cuts the euro sign.
        assert_eq!(read_excerpt(r, 5).await, "aé");
    }
}
