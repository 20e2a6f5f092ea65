//! Per-client-IP request rates: the in-process first line in front of the endpoints an
//! attacker repeats (password attempts, registrations, refreshes, flow creation, email sends),
//! and in front of the Clerk Backend API on the admin port (every `/v1` request, key guesses
//! and `verify_password` included).
//!
//! One GCRA limiter per bucket from `governor` (the well-kept crate for this; keyed by IP in a
//! concurrent map). IPv6 clients are keyed by their /64, since one host commonly holds a whole
//! /64. The per-account counters that must hold across instances live in the database and are
//! the core's business ([`portcullis_core::ratelimit`]).

use crate::AppState;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as GovQuota};
use portcullis_core::config::TokenPathsConfig;
use portcullis_core::ratelimit::{Quota, RateLimitConfig};
use portcullis_core::Error;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

/// What a request spends from its IP's allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Login,
    Registration,
    Refresh,
    FlowCreation,
    Email,
    Clerk,
}

pub struct IpLimiter {
    enabled: bool,
    login: DefaultKeyedRateLimiter<IpAddr>,
    registration: DefaultKeyedRateLimiter<IpAddr>,
    refresh: DefaultKeyedRateLimiter<IpAddr>,
    flow_creation: DefaultKeyedRateLimiter<IpAddr>,
    email: DefaultKeyedRateLimiter<IpAddr>,
    clerk: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

fn limiter(q: Quota) -> DefaultKeyedRateLimiter<IpAddr> {
    let per_minute = NonZeroU32::new(q.per_minute).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(q.burst).unwrap_or(NonZeroU32::MIN);
    DefaultKeyedRateLimiter::keyed(GovQuota::per_minute(per_minute).allow_burst(burst))
}

impl IpLimiter {
    pub fn new(cfg: &RateLimitConfig) -> Self {
        IpLimiter {
            enabled: cfg.enabled,
            login: limiter(cfg.login),
            registration: limiter(cfg.registration),
            refresh: limiter(cfg.refresh),
            flow_creation: limiter(cfg.flow_creation),
            email: limiter(cfg.email),
            clerk: limiter(cfg.clerk),
            clock: DefaultClock::default(),
        }
    }

    fn bucket(&self, b: Bucket) -> &DefaultKeyedRateLimiter<IpAddr> {
        match b {
            Bucket::Login => &self.login,
            Bucket::Registration => &self.registration,
            Bucket::Refresh => &self.refresh,
            Bucket::FlowCreation => &self.flow_creation,
            Bucket::Email => &self.email,
            Bucket::Clerk => &self.clerk,
        }
    }

    /// Spends one request of `ip` from `bucket`; `Err(retry_after)` when the allowance is gone.
    pub fn check(&self, bucket: Bucket, ip: IpAddr) -> Result<(), Duration> {
        if !self.enabled {
            return Ok(());
        }
        self.bucket(bucket)
            .check_key(&key(ip))
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                // `Retry-After` is in whole seconds; never tell a client to retry at once.
                Duration::from_secs(wait.as_secs() + 1)
            })
    }

    /// Forgets IPs whose allowance is full again, so the maps stay small (housekeeping).
    pub fn forget_idle(&self) {
        for b in [
            &self.login,
            &self.registration,
            &self.refresh,
            &self.flow_creation,
            &self.email,
            &self.clerk,
        ] {
            b.retain_recent();
            b.shrink_to_fit();
        }
    }
}

/// The public port's middleware: spends the request from its IP's bucket, or answers 429 with
/// `Retry-After` in the face's own format (simplejwt on the token paths, Kratos elsewhere).
pub async fn limit(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let paths = &st.core.config().tokens.paths;
    let Some(bucket) = bucket_for(req.method(), req.uri().path(), paths) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let trust = st.core.config().serve.public.trust_forwarded_headers;
    let ip = crate::extract::client_ip(&parts, trust);
    let req = Request::from_parts(parts, body);
    let Some(ip) = ip else {
        return next.run(req).await;
    };
    match st.limiter.check(bucket, ip) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::info!(%ip, ?bucket, "request rate limit reached");
            let e = Error::RateLimited {
                retry_after: wait.as_secs(),
            };
            // Each face answers in its own format: Clerk's Frontend API, the token face, Kratos.
            let path = req.uri().path();
            if path.starts_with("/v1/") {
                crate::clerk::ClerkError::from(e).into_response()
            } else if matches!(bucket, Bucket::Login | Bucket::Refresh)
                && !path.starts_with("/self-service/")
            {
                crate::tokens::SjError::Core(e).into_response()
            } else {
                crate::error::ApiError(e).into_response()
            }
        }
    }
}

/// The Clerk face's middleware (`/v1/*`, before the secret key is checked): every request
/// spends from its IP's `clerk` bucket, or gets 429 with `Retry-After` in Clerk's format. The
/// address is read as `serve.admin.trust_forwarded_headers` says.
pub async fn limit_clerk(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let trust = st.core.config().serve.admin.trust_forwarded_headers;
    let ip = crate::extract::client_ip(&parts, trust);
    let req = Request::from_parts(parts, body);
    let Some(ip) = ip else {
        return next.run(req).await;
    };
    match st.limiter.check(Bucket::Clerk, ip) {
        Ok(()) => next.run(req).await,
        Err(wait) => {
            tracing::info!(%ip, "Clerk API request rate limit reached");
            crate::clerk::ClerkError::from(Error::RateLimited {
                retry_after: wait.as_secs(),
            })
            .into_response()
        }
    }
}

/// IPv4 as is; IPv6 by its /64 (and IPv4-mapped IPv6 as the IPv4 it carries).
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// A Frontend API verification step: mailing a code, or a guess at it.
fn code_step(path: &str) -> Option<Bucket> {
    if path.ends_with("/prepare_verification") {
        Some(Bucket::Email)
    } else if path.ends_with("/attempt_verification") {
        Some(Bucket::Login)
    } else {
        None
    }
}

/// The bucket a public-port request spends from, if any. The token face's paths are the
/// configured ones (`tokens.paths`), with or without their trailing slash.
pub fn bucket_for(method: &Method, path: &str, tokens: &TokenPathsConfig) -> Option<Bucket> {
    let post = method == Method::POST;
    let is = |configured: &str| path.trim_end_matches('/') == configured.trim_end_matches('/');
    match path {
        "/self-service/login" if post => Some(Bucket::Login),
        "/self-service/registration" if post => Some(Bucket::Registration),
        "/self-service/recovery" | "/self-service/verification" if post => Some(Bucket::Email),
        // Clerk's Frontend API: a password or code attempt is a login, and so are a new sign-in
        // (it may carry the password, `signIn.create({identifier, password})`) and a new
        // password after a reset code; mailing a sign-in or reset code spends from the mail
        // bucket.
        p if post
            && (p == "/v1/client/sign_ins"
                || (p.starts_with("/v1/client/sign_ins/")
                    && (p.ends_with("/attempt_first_factor")
                        || p.ends_with("/attempt_second_factor")
                        || p.ends_with("/reset_password")))) =>
        {
            Some(Bucket::Login)
        }
        p if post
            && p.starts_with("/v1/client/sign_ins/")
            && p.ends_with("/prepare_first_factor") =>
        {
            Some(Bucket::Email)
        }
        // Clerk's sign-ups: the account, a mailed code, a guess at it.
        "/v1/client/sign_ups" if post => Some(Bucket::Registration),
        p if post && p.starts_with("/v1/client/sign_ups/") => code_step(p),
        // `<UserProfile/>`: a guess at the current password or at a code, a mailed code.
        "/v1/me/change_password" | "/v1/me/totp/attempt_verification" if post => {
            Some(Bucket::Login)
        }
        // A picture is decoded and encoded again (CPU), and stored.
        "/v1/me/profile_image" if post => Some(Bucket::Registration),
        // Each new address is checked against every account, and stores a flow.
        "/v1/me/email_addresses" if post => Some(Bucket::Registration),
        p if post && p.starts_with("/v1/me/email_addresses/") => code_step(p),
        _ if post && is(&tokens.obtain) => Some(Bucket::Login),
        _ if post && is(&tokens.refresh) => Some(Bucket::Refresh),
        p if method == Method::GET
            && p.starts_with("/self-service/")
            && (p.ends_with("/api") || p.ends_with("/browser")) =>
        {
            Some(Bucket::FlowCreation)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(burst: u32) -> RateLimitConfig {
        let q = Quota {
            per_minute: 1,
            burst,
        };
        RateLimitConfig {
            enabled: true,
            login: q,
            registration: q,
            refresh: q,
            flow_creation: q,
            email: q,
            clerk: q,
        }
    }

    #[test]
    fn a_burst_is_allowed_then_refused_with_a_retry_after() {
        let l = IpLimiter::new(&cfg(3));
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(Bucket::Login, ip).is_ok());
        }
        let wait = l.check(Bucket::Login, ip).unwrap_err();
        assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(61));
        // Other buckets and other addresses have their own allowance.
        assert!(l.check(Bucket::Refresh, ip).is_ok());
        assert!(l
            .check(Bucket::Login, "203.0.113.8".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn ipv6_hosts_share_their_slash_64_and_mapped_ipv4_is_ipv4() {
        let l = IpLimiter::new(&cfg(1));
        assert!(l
            .check(Bucket::Login, "2001:db8:1:2::1".parse().unwrap())
            .is_ok());
        assert!(l
            .check(Bucket::Login, "2001:db8:1:2::ffff".parse().unwrap())
            .is_err());
        assert!(l
            .check(Bucket::Login, "2001:db8:1:3::1".parse().unwrap())
            .is_ok());
        assert!(l.check(Bucket::Login, "10.1.1.1".parse().unwrap()).is_ok());
        assert!(l
            .check(Bucket::Login, "::ffff:10.1.1.1".parse().unwrap())
            .is_err());
    }

    #[test]
    fn disabled_never_refuses() {
        let mut c = cfg(1);
        c.enabled = false;
        let l = IpLimiter::new(&c);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        for _ in 0..10 {
            assert!(l.check(Bucket::Login, ip).is_ok());
        }
    }

    #[test]
    fn buckets_follow_the_routes_attackers_repeat() {
        let paths = TokenPathsConfig::default();
        let b = |m: Method, p: &str| bucket_for(&m, p, &paths);
        assert_eq!(b(Method::POST, "/self-service/login"), Some(Bucket::Login));
        assert_eq!(b(Method::POST, "/api/token/"), Some(Bucket::Login));
        assert_eq!(
            b(Method::POST, "/api/token/refresh/"),
            Some(Bucket::Refresh)
        );
        assert_eq!(b(Method::POST, "/api/token/verify/"), None);
        assert_eq!(
            b(Method::POST, "/self-service/registration"),
            Some(Bucket::Registration)
        );
        assert_eq!(
            b(Method::GET, "/self-service/login/api"),
            Some(Bucket::FlowCreation)
        );
        assert_eq!(
            b(Method::GET, "/self-service/registration/browser"),
            Some(Bucket::FlowCreation)
        );
        assert_eq!(b(Method::GET, "/sessions/whoami"), None);
        assert_eq!(b(Method::GET, "/self-service/login/flows"), None);
        // Clerk's Frontend API: password attempts spend from the login bucket.
        assert_eq!(
            b(
                Method::POST,
                "/v1/client/sign_ins/sia_1/attempt_first_factor"
            ),
            Some(Bucket::Login)
        );
        assert_eq!(b(Method::POST, "/v1/client/sign_ins"), Some(Bucket::Login));
        let sign_in = |step: &str| b(Method::POST, &format!("/v1/client/sign_ins/sia_1/{step}"));
        assert_eq!(sign_in("attempt_second_factor"), Some(Bucket::Login));
        assert_eq!(sign_in("reset_password"), Some(Bucket::Login));
        assert_eq!(sign_in("prepare_first_factor"), Some(Bucket::Email));
        assert_eq!(
            b(Method::POST, "/v1/client/sign_ups"),
            Some(Bucket::Registration)
        );
        let sign_up = |step: &str| b(Method::POST, &format!("/v1/client/sign_ups/sua_1/{step}"));
        assert_eq!(sign_up("prepare_verification"), Some(Bucket::Email));
        assert_eq!(sign_up("attempt_verification"), Some(Bucket::Login));
        assert_eq!(
            b(Method::POST, "/v1/me/change_password"),
            Some(Bucket::Login)
        );
        assert_eq!(
            b(Method::POST, "/v1/me/totp/attempt_verification"),
            Some(Bucket::Login)
        );
        assert_eq!(
            b(Method::POST, "/v1/me/email_addresses"),
            Some(Bucket::Registration)
        );
        let address = |step: &str| {
            b(
                Method::POST,
                &format!("/v1/me/email_addresses/idn_1/{step}"),
            )
        };
        assert_eq!(address("prepare_verification"), Some(Bucket::Email));
        assert_eq!(address("attempt_verification"), Some(Bucket::Login));
        assert_eq!(b(Method::POST, "/v1/client/sessions/sess_1/tokens"), None);
        // Configured token paths are limited where they are, and the defaults are not.
        let custom = TokenPathsConfig {
            obtain: "/auth/jwt/create/".into(),
            refresh: "/auth/jwt/refresh/".into(),
            ..TokenPathsConfig::default()
        };
        let c = |p: &str| bucket_for(&Method::POST, p, &custom);
        assert_eq!(c("/auth/jwt/create/"), Some(Bucket::Login));
        assert_eq!(c("/auth/jwt/create"), Some(Bucket::Login));
        assert_eq!(c("/auth/jwt/refresh/"), Some(Bucket::Refresh));
        assert_eq!(c("/api/token/"), None);
    }
}
