//! `hashers`: how passwords are hashed. Verification follows the stored hash; these settings
//! decide new hashes and when an old one is re-hashed on login.

use super::{ByteSize, ConfigError, Ctx};
use serde::{Deserialize, Serialize};

choice! {
    /// `hashers.algorithm`.
    pub enum HasherAlgorithm {
        #[default]
        Argon2 = "argon2",
        Bcrypt = "bcrypt",
    }
    ignore_case: false,
    error: "{:?} is not supported: expected \"argon2\" or \"bcrypt\""
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HashersConfig {
    pub algorithm: HasherAlgorithm,
    pub argon2: Argon2Config,
    pub bcrypt: BcryptConfig,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Argon2Config {
    pub memory: ByteSize,
    pub iterations: u32,
    pub parallelism: u32,
    /// Upper bound on memory all concurrent hashes may use; sizes the hashing pool.
    pub dedicated_memory: ByteSize,
}

impl Default for Argon2Config {
    fn default() -> Self {
        // OWASP's first recommended Argon2id setting: m=19 MiB, t=2, p=1.
        Argon2Config {
            memory: ByteSize::mib(19),
            iterations: 2,
            parallelism: 1,
            dedicated_memory: ByteSize(1 << 30),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BcryptConfig {
    pub cost: u32,
}

impl Default for BcryptConfig {
    fn default() -> Self {
        BcryptConfig { cost: 12 }
    }
}

impl HashersConfig {
    pub(super) fn validate(&self, ctx: &Ctx) -> Result<(), ConfigError> {
        let a = &self.argon2;
        if a.iterations == 0
            || a.parallelism == 0
            || a.memory.0 < 8 * 1024 * u64::from(a.parallelism)
        {
            return Err(ConfigError::Invalid(
                "hashers.argon2: iterations and parallelism must be at least 1 and memory at least 8KiB per lane".into(),
            ));
        }
        if !ctx.dev
            && (a.memory.0 < 19 << 20 || a.iterations < 2)
            && self.algorithm == HasherAlgorithm::Argon2
        {
            return Err(ConfigError::Invalid(
                "hashers.argon2: below the OWASP minimum (memory 19MiB, iterations 2); lower values are allowed only with --dev".into(),
            ));
        }
        if !(4..=31).contains(&self.bcrypt.cost) {
            return Err(ConfigError::Invalid(
                "hashers.bcrypt.cost: expected a number from 4 to 31".into(),
            ));
        }
        Ok(())
    }
}
