//! The one outbound HTTP client: timeouts, pooling, no redirects, and a guard that refuses
//! private and loopback addresses (unless `webhooks.allow_private_networks` or dev mode), so
//! a URL an admin registers cannot reach the internal network, however its DNS answers.
//!
//! Webhook delivery is its only user today; the courier (email/SMS gateways), OIDC discovery
//! and flow web hooks will send through it too, so the guard is written once.

use crate::error::ApiError;
use crate::AppState;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00
                || (seg[0] & 0xffc0) == 0xfe80)
                && v6
                    .to_ipv4_mapped()
                    .is_none_or(|v4| is_public(IpAddr::V4(v4)))
        }
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

/// The one outbound HTTP client: timeouts, pooling, no redirects, the private-address guard.
pub fn http_client(allow_private: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(15))
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(Duration::from_secs(60))
        .dns_resolver(Arc::new(GuardedResolver { allow_private }))
        .user_agent(concat!("Portcullis-Webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_default()
}

/// Checks an endpoint URL when it is registered (an IP literal never reaches the resolver).
pub(crate) fn check_url(url: &str, allow_private: bool) -> Result<(), ApiError> {
    let u = url::Url::parse(url)
        .map_err(|e| ApiError::bad_request(format!("`url` is not a valid URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(ApiError::bad_request("`url` must be http or https."));
    }
    let literal = match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Some(IpAddr::from([127, 0, 0, 1]))
        }
        Some(_) => None,
        None => return Err(ApiError::bad_request("`url` needs a host.")),
    };
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
}
