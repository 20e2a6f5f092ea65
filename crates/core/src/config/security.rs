//! `security`: brute-force protection, per-IP request rates and the audit log's retention.
//! The rules themselves live in [`crate::ratelimit`] and [`crate::audit`].

use super::units::Dur;
use super::ConfigError;
use crate::ratelimit::{RateLimitConfig, ThrottleConfig};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// Per-account (per identifier) failure counting, shared by every instance.
    pub brute_force: ThrottleConfig,
    /// Per-client-IP request rates, kept by each instance.
    pub rate_limit: RateLimitConfig,
    pub audit: AuditConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// How long audit records are kept.
    pub retention: Dur,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention: Dur(Duration::from_secs(90 * 24 * 3600)),
        }
    }
}

impl SecurityConfig {
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        let bf = &self.brute_force;
        if bf.max_failures_per_hour == 0 {
            return Err(ConfigError::Invalid(
                "security.brute_force.max_failures_per_hour: must be at least 1".into(),
            ));
        }
        if bf.base_delay.0 > bf.max_delay.0 {
            return Err(ConfigError::Invalid(
                "security.brute_force.base_delay: is longer than max_delay".into(),
            ));
        }
        let rl = &self.rate_limit;
        for (name, q) in [
            ("login", rl.login),
            ("registration", rl.registration),
            ("refresh", rl.refresh),
            ("flow_creation", rl.flow_creation),
            ("email", rl.email),
            ("clerk", rl.clerk),
        ] {
            if q.per_minute == 0 || q.burst == 0 {
                return Err(ConfigError::Invalid(format!(
                    "security.rate_limit.{name}: per_minute and burst must be at least 1 (set security.rate_limit.enabled: false to turn the limits off)"
                )));
            }
        }
        if self.audit.retention.0 < Duration::from_secs(24 * 3600) {
            return Err(ConfigError::Invalid(
                "security.audit.retention: must be at least 24h".into(),
            ));
        }
        Ok(())
    }
}
