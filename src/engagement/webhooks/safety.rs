//! Which addresses a webhook may reach: not the cloud metadata services (169.254.0.0/16 and
//! the other link-local ranges, `fd00:ec2::254`, Alibaba's `100.100.100.200`,
//! `metadata.google.internal`…), which hand out credentials to whoever asks from inside the
//! host. Loopback and private ranges stay allowed: tests and merchants' local gateways use them.
//!
//! Checked twice: when an endpoint is registered or its URL changed (the URL's host, and the
//! addresses it resolves to then), and at every connection ([`SafeResolver`] resolves the host
//! and refuses it when any of its addresses is forbidden, so a DNS answer that changed since
//! registration is caught; literal IP hosts, which reqwest does not resolve, go through
//! [`check_url`] before each attempt). Redirects are not followed, so a 30x cannot lead there.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

/// Host names of metadata services (lowercase, without a trailing dot).
pub const FORBIDDEN_HOSTS: &[&str] = &[
    "metadata",
    "metadata.google.internal",
    "metadata.goog",
    "metadata.azure.internal",
    "metadata.tencentyun.com",
    "instance-data",
    "instance-data.ec2.internal",
];

/// Longest endpoint URL, in bytes.
pub const MAX_URL_BYTES: usize = 2000;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeUrl {
    #[error("is not an absolute http(s) URL")]
    Malformed,
    #[error("must use http or https")]
    Scheme,
    #[error("is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
    #[error("names a cloud metadata host ({0})")]
    Host(String),
    #[error("reaches a link-local or cloud metadata address ({0})")]
    Address(IpAddr),
}

fn forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    (a == 169 && b == 254)
        || a == 0
        || ip == Ipv4Addr::new(100, 100, 100, 200)
        || ip == Ipv4Addr::new(192, 0, 0, 192)
}

/// A link-local or metadata address (IPv4, IPv6, and IPv4 inside IPv6: mapped, compatible,
/// NAT64).
pub fn forbidden_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let s = v6.segments();
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[..6] == [0; 6] && !v6.is_loopback()) {
                let embedded =
                    Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
                if forbidden_v4(embedded) || v6.is_unspecified() {
                    return true;
                }
            }
            (s[0] & 0xffc0) == 0xfe80 || v6 == Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// A metadata host name.
pub fn forbidden_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    FORBIDDEN_HOSTS.contains(&host.as_str())
}

/// Parse and check an endpoint URL without resolving it.
pub fn check_url(text: &str) -> Result<Url, UnsafeUrl> {
    if text.len() > MAX_URL_BYTES {
        return Err(UnsafeUrl::TooLong);
    }
    let url = Url::parse(text).map_err(|_| UnsafeUrl::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UnsafeUrl::Scheme);
    }
    match url.host() {
        None => Err(UnsafeUrl::Malformed),
        Some(url::Host::Ipv4(ip)) if forbidden_ip(IpAddr::V4(ip)) => {
            Err(UnsafeUrl::Address(IpAddr::V4(ip)))
        }
        Some(url::Host::Ipv6(ip)) if forbidden_ip(IpAddr::V6(ip)) => {
            Err(UnsafeUrl::Address(IpAddr::V6(ip)))
        }
        Some(url::Host::Domain(name)) if forbidden_host(name) => {
            Err(UnsafeUrl::Host(name.to_owned()))
        }
        Some(_) => Ok(url),
    }
}

/// Resolve `host` and refuse it when it is a metadata name or any address is forbidden.
pub async fn resolve_safely(
    host: &str,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    if forbidden_host(host) {
        return Err(Box::new(UnsafeUrl::Host(host.to_owned())));
    }
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    if let Some(bad) = addresses.iter().find(|a| forbidden_ip(a.ip())) {
        return Err(Box::new(UnsafeUrl::Address(bad.ip())));
    }
    Ok(addresses)
}

/// The registration check: [`check_url`], then the addresses the host resolves to now (a host
/// that does not resolve within 2 s is accepted: the connection-time check still applies).
pub async fn check_url_resolved(text: &str) -> Result<Url, UnsafeUrl> {
    let url = check_url(text)?;
    if let Some(url::Host::Domain(name)) = url.host() {
        let lookup = tokio::time::timeout(
            Duration::from_secs(2),
            tokio::net::lookup_host((name.to_owned(), 0)),
        )
        .await;
        if let Ok(Ok(addresses)) = lookup {
            for address in addresses {
                if forbidden_ip(address.ip()) {
                    return Err(UnsafeUrl::Address(address.ip()));
                }
            }
        }
    }
    Ok(url)
}

/// reqwest's resolver for webhook connections: [`resolve_safely`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SafeResolver;

impl reqwest::dns::Resolve for SafeResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolve_safely(&host).await?;
            Ok(Box::new(addresses.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_addresses_are_refused_and_loopback_is_not() {
        for bad in [
            "http://169.254.169.254/latest/meta-data",
            "http://169.254.0.1:8080/",
            "http://0xA9FEA9FE/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[fe80::1]/",
            "http://100.100.100.200/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://METADATA.google.internal./",
            "http://0.0.0.0:9000/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        for good in [
            "http://127.0.0.1:9000/hook",
            "http://localhost/hook",
            "https://hooks.example.com/shequn",
            "http://10.0.0.5/gateway",
            "http://[::1]:8080/",
        ] {
            assert!(check_url(good).is_ok(), "{good}");
        }
        assert_eq!(check_url("ftp://example.com/"), Err(UnsafeUrl::Scheme));
        assert_eq!(check_url("not a url"), Err(UnsafeUrl::Malformed));
    }
}
