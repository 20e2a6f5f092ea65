//! `security`: brute-force protection, per-IP request rates, the audit log's retention, what a
//! password change ends, and account-enumeration mitigation.
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
    pub password_change: PasswordChangeConfig,
    /// Kratos' `security.account_enumeration`.
    pub account_enumeration: AccountEnumerationConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordChangeConfig {
    /// A password changed through the settings flow ends the identity's other sessions (ASVS
    /// 3.3.3; security review F19); the session that changed it stays. Kratos keeps them
    /// unless the flow has the `revoke_active_sessions` hook: set `false` for that behaviour.
    pub revoke_other_sessions: bool,
}

impl Default for PasswordChangeConfig {
    fn default() -> Self {
        PasswordChangeConfig {
            revoke_other_sessions: true,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountEnumerationConfig {
    /// Answer in ways that do not tell whether an identifier has an account: registration of a
    /// taken identifier answers like a new account (with a verification flow whose code never
    /// goes out). Needs verification on and sign-up without the `session` hook, since a
    /// sign-up that signs in at once would tell the two apart; checked at load.
    pub mitigate: bool,
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
