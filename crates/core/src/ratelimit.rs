//! Brute-force protection: when a password attempt may be checked at all. Pure decisions, time
//! passed in; the counters live in the database (shared by every instance) and the per-IP
//! request rates in the server's in-process limiter.
//!
//! Two counters speak for each attempt, both keyed by the identifier as typed (trimmed and
//! lower-cased), so an unknown identifier is throttled exactly like a known one and the
//! answers tell nobody who has an account:
//! - the **pair** counter (identifier × client IP) slows down whoever is guessing from that
//!   address: after [`ThrottleConfig::free_failures`] consecutive failures each further attempt
//!   waits twice as long as the one before, up to [`ThrottleConfig::max_delay`];
//! - the **account** counter (identifier, every IP) refuses addresses the account has not signed
//!   in from before once [`ThrottleConfig::max_failures_per_hour`] failures landed in the hour
//!   (ASVS 2.2.1). It imposes no growing delay of its own: that would let a few requests an
//!   hour from fresh addresses keep the owner out of every new device for good (found by the
//!   attack on the hardening). Guessing from many addresses is bounded by the hourly cap.
//!
//! A correct password from an address the account already signed in from (a known device) is
//! judged by its own pair counter only, so someone else's failures cannot lock the owner out;
//! that is the reason for delays rather than a hard lock (Rauthy's `login_delay.rs` and
//! Vaultwarden's `ratelimit.rs` make the same trade).

use crate::config::Dur;
use serde::{Deserialize, Serialize};
use std::time::Duration;
use time::OffsetDateTime;

/// `security.brute_force`: the per-account limits. Defaults are on.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottleConfig {
    pub enabled: bool,
    /// Failures per identifier per hour after which unknown addresses are refused.
    pub max_failures_per_hour: u32,
    /// Consecutive failures allowed before delays start.
    pub free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub base_delay: Dur,
    pub max_delay: Dur,
    /// How far back a session from an address makes it a known device.
    pub known_device_window: Dur,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            enabled: true,
            max_failures_per_hour: 100,
            free_failures: 5,
            base_delay: Dur(Duration::from_secs(1)),
            max_delay: Dur(Duration::from_secs(15 * 60)),
            known_device_window: Dur(Duration::from_secs(30 * 24 * 3600)),
        }
    }
}

/// `security.rate_limit`: per-client-IP request rates, a cheap first line kept in each
/// instance's memory (an attacker spread over N instances gets N times the rate; the
/// per-account counters above are shared and hold regardless).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    pub enabled: bool,
    /// Password attempts: login flow submits, `/api/token/`.
    pub login: Quota,
    /// Registration submits.
    pub registration: Quota,
    /// `/api/token/refresh/`.
    pub refresh: Quota,
    /// Creating self-service flows (`GET /self-service/*/api|browser`).
    pub flow_creation: Quota,
    /// Anything that sends an email (recovery, verification, login codes).
    pub email: Quota,
    /// Every request to the Clerk Backend API (`/v1/*` on the admin port).
    pub clerk: Quota,
}

/// A token bucket: `burst` requests at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    pub per_minute: u32,
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            login: Quota {
                per_minute: 60,
                burst: 20,
            },
            registration: Quota {
                per_minute: 30,
                burst: 10,
            },
            refresh: Quota {
                per_minute: 600,
                burst: 120,
            },
            flow_creation: Quota {
                per_minute: 600,
                burst: 120,
            },
            email: Quota {
                per_minute: 6,
                burst: 3,
            },
            // Clerk's own limit for a production instance: 1000 requests per 10 seconds.
            clerk: Quota {
                per_minute: 6000,
                burst: 1000,
            },
        }
    }
}

/// The window the hourly count covers.
pub const WINDOW: Duration = Duration::from_secs(3600);

/// One counter as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failures {
    /// Failures since `window_start` (a fixed one-hour window opened by the first failure).
    pub count: u32,
    pub window_start: OffsetDateTime,
    /// Failures since the last success.
    pub consecutive: u32,
    pub last_failure: OffsetDateTime,
}

impl Failures {
    /// The counter after one more failure at `now`.
    pub fn after_failure(this: Option<&Failures>, now: OffsetDateTime) -> Failures {
        match this {
            Some(f) if now - f.window_start < WINDOW => Failures {
                count: f.count.saturating_add(1),
                window_start: f.window_start,
                consecutive: f.consecutive.saturating_add(1),
                last_failure: now,
            },
            Some(f) => Failures {
                count: 1,
                window_start: now,
                consecutive: f.consecutive.saturating_add(1),
                last_failure: now,
            },
            None => Failures {
                count: 1,
                window_start: now,
                consecutive: 1,
                last_failure: now,
            },
        }
    }

    fn in_window(&self, now: OffsetDateTime) -> u32 {
        if now - self.window_start < WINDOW {
            self.count
        } else {
            0
        }
    }
}

/// The counters' keys for an attempt on `identifier` from `ip`. An identifier longer than any
/// real one is keyed by its hash, so a huge one is not stored as typed (security review F6).
pub fn keys(identifier: &str, ip: Option<&str>) -> (String, String) {
    let mut id = identifier.trim().to_lowercase();
    if id.len() > crate::ui::ECHO_MAX_CHARS {
        use sha2::{Digest, Sha256};
        id = format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes())));
    }
    let pair = format!("pair:{}|{id}", ip.unwrap_or("-"));
    (format!("account:{id}"), pair)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Refused before the password is checked; try again after this long.
    Deny {
        retry_after: Duration,
    },
}

impl ThrottleConfig {
    /// Whether an attempt may go ahead, from the two counters and whether the address is a
    /// known device of the account.
    pub fn decide(
        &self,
        account: Option<&Failures>,
        pair: Option<&Failures>,
        known_device: bool,
        now: OffsetDateTime,
    ) -> Decision {
        if !self.enabled {
            return Decision::Allow;
        }
        let mut wait = pair.map_or(Duration::ZERO, |p| self.delay_left(p, now));
        if let (Some(a), false) = (account, known_device) {
            if a.in_window(now) >= self.max_failures_per_hour {
                let window_left = (a.window_start + WINDOW) - now;
                wait = wait.max(Duration::try_from(window_left).unwrap_or(Duration::ZERO));
            }
        }
        if wait.is_zero() {
            Decision::Allow
        } else {
            // Whole seconds, rounded up, as `Retry-After` speaks.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            Decision::Deny {
                retry_after: Duration::from_secs(secs.max(1)),
            }
        }
    }

    /// The delay a counter imposes, minus the time since its last failure.
    fn delay_left(&self, f: &Failures, now: OffsetDateTime) -> Duration {
        let Some(over) = f.consecutive.checked_sub(self.free_failures) else {
            return Duration::ZERO;
        };
        if over == 0 {
            return Duration::ZERO;
        }
        let delay = self
            .base_delay
            .0
            .checked_mul(1u32.checked_shl(over - 1).unwrap_or(u32::MAX))
            .unwrap_or(self.max_delay.0)
            .min(self.max_delay.0);
        let since = Duration::try_from(now - f.last_failure).unwrap_or(Duration::ZERO);
        delay.saturating_sub(since)
    }

    /// Whether an address seen in a session at `seen` still counts as a known device at `now`.
    pub fn still_known(&self, seen: OffsetDateTime, now: OffsetDateTime) -> bool {
        Duration::try_from(now - seen).is_ok_and(|d| d <= self.known_device_window.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn failed(n: u32, start: OffsetDateTime, step: Duration) -> Failures {
        let mut f = None;
        for i in 0..n {
            f = Some(Failures::after_failure(f.as_ref(), start + step * i));
        }
        f.unwrap()
    }

    #[test]
    fn the_first_failures_are_free_then_delays_double() {
        let cfg = ThrottleConfig::default();
        let five = failed(5, T0, Duration::ZERO);
        assert_eq!(cfg.decide(None, Some(&five), false, T0), Decision::Allow);
        let six = failed(6, T0, Duration::ZERO);
        assert_eq!(
            cfg.decide(None, Some(&six), false, T0),
            Decision::Deny {
                retry_after: Duration::from_secs(1)
            }
        );
        let nine = failed(9, T0, Duration::ZERO);
        assert_eq!(
            cfg.decide(None, Some(&nine), false, T0),
            Decision::Deny {
                retry_after: Duration::from_secs(8)
            }
        );
        // Waiting the delay out allows the next attempt.
        assert_eq!(
            cfg.decide(None, Some(&nine), false, T0 + Duration::from_secs(8)),
            Decision::Allow
        );
        let many = failed(40, T0, Duration::ZERO);
        assert_eq!(
            cfg.decide(None, Some(&many), false, T0),
            Decision::Deny {
                retry_after: cfg.max_delay.0
            }
        );
    }

    #[test]
    fn a_hundred_failures_in_an_hour_refuse_unknown_addresses_until_the_window_ends() {
        let cfg = ThrottleConfig {
            free_failures: 1000,
            ..ThrottleConfig::default()
        };
        let account = failed(100, T0, Duration::from_secs(30));
        let now = T0 + Duration::from_secs(50 * 60);
        assert_eq!(
            cfg.decide(Some(&account), None, false, now),
            Decision::Deny {
                retry_after: Duration::from_secs(10 * 60)
            }
        );
        assert_eq!(
            cfg.decide(Some(&account), None, false, T0 + WINDOW),
            Decision::Allow
        );
        let ninety_nine = failed(99, T0, Duration::from_secs(30));
        assert_eq!(
            cfg.decide(Some(&ninety_nine), None, false, now),
            Decision::Allow
        );
    }

    #[test]
    fn the_owner_on_a_known_device_is_not_blocked_by_someone_elses_failures() {
        let cfg = ThrottleConfig::default();
        let account = failed(150, T0, Duration::from_secs(1));
        let now = T0 + Duration::from_secs(200);
        assert!(matches!(
            cfg.decide(Some(&account), None, false, now),
            Decision::Deny { .. }
        ));
        assert_eq!(cfg.decide(Some(&account), None, true, now), Decision::Allow);
        // Its own failures still slow the known device down.
        let own = failed(7, now, Duration::ZERO);
        assert!(matches!(
            cfg.decide(Some(&account), Some(&own), true, now),
            Decision::Deny { .. }
        ));
    }

    #[test]
    fn a_trickle_of_failures_from_fresh_addresses_never_keeps_the_owner_off_a_new_device() {
        let cfg = ThrottleConfig::default();
        // 4 failures an hour for ten hours: a long consecutive run, never the hourly cap.
        let account = failed(40, T0, Duration::from_secs(15 * 60));
        let now = T0 + Duration::from_secs(10 * 3600);
        assert_eq!(
            cfg.decide(Some(&account), None, false, now),
            Decision::Allow
        );
    }

    #[test]
    fn a_new_window_restarts_the_hourly_count_but_not_the_consecutive_run() {
        let f = failed(3, T0, Duration::ZERO);
        let later = Failures::after_failure(Some(&f), T0 + WINDOW);
        assert_eq!((later.count, later.consecutive), (1, 4));
        assert_eq!(later.window_start, T0 + WINDOW);
    }

    #[test]
    fn disabled_allows_everything_and_keys_ignore_case_and_spaces() {
        let cfg = ThrottleConfig {
            enabled: false,
            ..ThrottleConfig::default()
        };
        let many = failed(500, T0, Duration::ZERO);
        assert_eq!(
            cfg.decide(Some(&many), Some(&many), false, T0),
            Decision::Allow
        );
        assert_eq!(
            keys(" Ada@Example.com ", Some("10.0.0.1")),
            (
                "account:ada@example.com".to_string(),
                "pair:10.0.0.1|ada@example.com".to_string()
            )
        );
    }

    #[test]
    fn huge_identifiers_are_keyed_by_their_hash() {
        let (account, pair) = keys(&"x".repeat(10_000), None);
        assert!(account.starts_with("account:sha256:") && account.len() < 100);
        assert!(pair.starts_with("pair:-|sha256:") && pair.len() < 100);
        assert_ne!(keys(&"x".repeat(300), None), keys(&"x".repeat(301), None));
        assert_eq!(
            keys(&"x".repeat(256), None).0,
            format!("account:{}", "x".repeat(256))
        );
    }
}
