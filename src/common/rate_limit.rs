//! Rate limits (GCRA, the `governor` crate), answered as 429 `rate_limited` with `Retry-After`:
//!
//! - per API key: requests per second, burst twice that (`--rate-limit-per-key`, default
//!   1,000/s), with a per-tenant override of that rate (`--rate-limit-tenant TENANT=RATE`) for a
//!   tenant that needs more (or less) than the rest;
//! - per client IP: requests per second on every route, burst twice that
//!   (`--rate-limit-per-ip`, default 2,000/s);
//! - failed authentications per client IP per minute (`--auth-failures-per-ip`, default 30):
//!   once an address has used them up, its requests that would fail authentication answer 429
//!   instead of 401, while a request with a valid key from the same address is never refused
//!   by this limit.
//!
//! `0` turns a limit off. [`crate::AppState::new`] starts with every limit off (tests, the bench
//! commands); `shequn serve` sets them from its flags. IPv6 clients are limited per /64, the
//! block one subscriber usually holds. The limiters forget idle keys every minute
//! ([`RateLimits::spawn_housekeeping`]) so their memory stays bounded by recent traffic. The
//! limits are per node: with several nodes behind a balancer each enforces its own.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{NotUntil, Quota, RateLimiter};

use super::error::ApiError;
use super::ids::{ApiKeyId, TenantId};
use crate::AppState;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// The limits as configured (`0` = off).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Requests per second per API key (burst twice that).
    pub per_key: u32,
    /// Per-tenant replacements of `per_key` (`0` = no limit for that tenant's keys).
    pub tenant_overrides: Vec<(TenantId, u32)>,
    /// Requests per second per client IP (burst twice that).
    pub per_ip: u32,
    /// Failed authentications per minute per client IP.
    pub auth_failures_per_ip: u32,
}

impl RateLimitConfig {
    /// Every limit off.
    pub fn off() -> Self {
        Self::default()
    }

    /// `shequn serve`'s defaults.
    pub fn defaults() -> Self {
        Self {
            per_key: 1000,
            tenant_overrides: Vec::new(),
            per_ip: 2000,
            auth_failures_per_ip: 30,
        }
    }
}

/// Parse a `TENANT_ID=RATE` override (`--rate-limit-tenant`).
pub fn parse_tenant_override(text: &str) -> Result<(TenantId, u32), String> {
    let (tenant, rate) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: expected TENANT_ID=REQUESTS_PER_SECOND"))?;
    let tenant = TenantId::parse(tenant.trim())
        .ok_or_else(|| format!("{tenant:?} is not a tenant id (ten_…)"))?;
    let rate = rate
        .trim()
        .parse()
        .map_err(|_| format!("{rate:?} is not a number of requests per second"))?;
    Ok((tenant, rate))
}

/// The live limiters of one process.
#[derive(Default)]
pub struct RateLimits {
    per_key: Option<Keyed<ApiKeyId>>,
    /// Tenants with their own per-key rate (`None`: unlimited).
    tenants: HashMap<TenantId, Option<Keyed<ApiKeyId>>>,
    per_ip: Option<Keyed<IpAddr>>,
    auth_failures: Option<Keyed<IpAddr>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("per_key", &self.per_key.is_some())
            .field("tenants", &self.tenants.len())
            .field("per_ip", &self.per_ip.is_some())
            .field("auth_failures", &self.auth_failures.is_some())
            .finish()
    }
}

/// `rate` per second with a burst of twice that; `None` when `rate` is 0.
fn per_second(rate: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(rate.get().saturating_mul(2)).unwrap_or(rate);
    Some(Quota::per_second(rate).allow_burst(burst))
}

/// Keys are limited per address; IPv6 per /64 (one subscriber's block), IPv4-mapped as IPv4.
fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(Ipv6Addr::from(segments))
            }
        },
    }
}

fn refusal(
    limit: &'static str,
    not_until: &NotUntil<<DefaultClock as governor::clock::Clock>::Instant>,
) -> ApiError {
    ApiError::rate_limited(
        limit,
        not_until.wait_time_from(DefaultClock::default().now()),
    )
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Self {
        Self {
            per_key: per_second(config.per_key).map(Keyed::keyed),
            tenants: config
                .tenant_overrides
                .iter()
                .map(|(tenant, rate)| (tenant.clone(), per_second(*rate).map(Keyed::keyed)))
                .collect(),
            per_ip: per_second(config.per_ip).map(Keyed::keyed),
            auth_failures: NonZeroU32::new(config.auth_failures_per_ip)
                .map(|n| Keyed::keyed(Quota::per_minute(n))),
        }
    }

    /// Every limit off.
    pub fn off() -> Self {
        Self::default()
    }

    /// Count one request of an authenticated key (the tenant's own rate, if set, else the
    /// default per-key rate).
    pub fn check_key(&self, tenant_id: &TenantId, key_id: &ApiKeyId) -> Result<(), ApiError> {
        let limiter = match self.tenants.get(tenant_id) {
            Some(own) => own.as_ref(),
            None => self.per_key.as_ref(),
        };
        match limiter {
            Some(limiter) => limiter
                .check_key(key_id)
                .map_err(|not_until| refusal("per_key", &not_until)),
            None => Ok(()),
        }
    }

    /// Count one request from a client address.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        match &self.per_ip {
            Some(limiter) => limiter
                .check_key(&client_key(ip))
                .map_err(|not_until| refusal("per_ip", &not_until)),
            None => Ok(()),
        }
    }

    /// Count one failed authentication from `ip`; `Some(429)` once the address has used up its
    /// failures (answer that instead of the 401).
    pub fn auth_failed(&self, ip: Option<IpAddr>) -> Option<ApiError> {
        let (Some(limiter), Some(ip)) = (&self.auth_failures, ip) else {
            return None;
        };
        limiter
            .check_key(&client_key(ip))
            .err()
            .map(|not_until| refusal("auth_failures_per_ip", &not_until))
    }

    /// Keys tracked now, over all limiters (for tests and metrics).
    pub fn tracked_keys(&self) -> usize {
        self.per_key.as_ref().map_or(0, |l| l.len())
            + self
                .tenants
                .values()
                .flatten()
                .map(|l| l.len())
                .sum::<usize>()
            + self.per_ip.as_ref().map_or(0, |l| l.len())
            + self.auth_failures.as_ref().map_or(0, |l| l.len())
    }

    /// Forget keys whose state is the same as a fresh one, and give the memory back.
    pub fn forget_idle(&self) {
        let key_limiters = self.per_key.iter().chain(self.tenants.values().flatten());
        for limiter in key_limiters {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in self.per_ip.iter().chain(self.auth_failures.iter()) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        metrics::gauge!("rate_limit_tracked_keys").set(self.tracked_keys() as f64);
    }

    /// Run [`Self::forget_idle`] every minute until the task is aborted.
    pub fn spawn_housekeeping(limits: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                limits.forget_idle();
            }
        })
    }
}

/// The client's address, when the server recorded it (`ConnectInfo`).
pub fn peer_ip(request: &Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Middleware on every route: the per-IP limit.
pub async fn per_ip(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(ip) = peer_ip(&request) {
        if let Err(error) = state.limits.check_ip(ip) {
            metrics::counter!("rate_limited_total", "limit" => "per_ip").increment(1);
            return error.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A caller: a tenant and one of its keys.
    struct Caller {
        tenant_id: TenantId,
        key_id: ApiKeyId,
    }

    fn auth(tenant: &TenantId) -> Caller {
        Caller {
            tenant_id: tenant.clone(),
            key_id: ApiKeyId::generate(),
        }
    }

    #[test]
    fn per_key_allows_a_burst_of_twice_the_rate_then_refuses() {
        let limits = RateLimits::new(&RateLimitConfig {
            per_key: 5,
            ..RateLimitConfig::off()
        });
        let caller = auth(&TenantId::generate());
        for _ in 0..10 {
            limits.check_key(&caller.tenant_id, &caller.key_id).unwrap();
        }
        let refused = limits
            .check_key(&caller.tenant_id, &caller.key_id)
            .unwrap_err();
        assert_eq!(refused.status.as_u16(), 429);
        assert_eq!(refused.retry_after, Some(1));
        // Another key has its own budget.
        {
            let other = auth(&TenantId::generate());
            limits.check_key(&other.tenant_id, &other.key_id)
        }
        .unwrap();
    }

    #[test]
    fn tenant_override_replaces_the_rate_and_zero_turns_limits_off() {
        let generous = TenantId::generate();
        let limits = RateLimits::new(&RateLimitConfig {
            per_key: 1,
            tenant_overrides: vec![(generous.clone(), 0)],
            ..RateLimitConfig::off()
        });
        let caller = auth(&generous);
        for _ in 0..1000 {
            limits.check_key(&caller.tenant_id, &caller.key_id).unwrap();
        }
        let off = RateLimits::off();
        for _ in 0..1000 {
            off.check_key(&caller.tenant_id, &caller.key_id).unwrap();
            off.check_ip(IpAddr::from([127, 0, 0, 1])).unwrap();
            assert!(off
                .auth_failed(Some(IpAddr::from([127, 0, 0, 1])))
                .is_none());
        }
    }

    #[test]
    fn auth_failures_are_counted_per_address_and_ipv6_per_64() {
        let limits = RateLimits::new(&RateLimitConfig {
            auth_failures_per_ip: 3,
            ..RateLimitConfig::off()
        });
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::2".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.auth_failed(Some(a)).is_none());
        }
        assert!(limits.auth_failed(Some(b)).is_some(), "same /64");
        assert!(limits
            .auth_failed(Some("2001:db8:0:1::1".parse().unwrap()))
            .is_none());
        assert!(limits.auth_failed(None).is_none());
    }

    #[test]
    fn parses_tenant_overrides() {
        let tenant = TenantId::generate();
        assert_eq!(
            parse_tenant_override(&format!("{tenant}=5000")).unwrap(),
            (tenant.clone(), 5000)
        );
        assert!(parse_tenant_override("ten_x=5").is_err());
        assert!(parse_tenant_override(&format!("{tenant}=lots")).is_err());
    }
}
