//! Keeping secrets out of print: the [`Secret`] type, and the serialisers that blank the
//! credentials in connection strings.
//!
//! A secret redacts itself wherever it is shown (`Debug`, `Display`, serialisation), so a new
//! secret field cannot leak through `config check` by being forgotten in a list. The value is
//! reached only through [`Secret::expose`], which makes every use easy to find.
//!
//! Why not the `secrecy` crate: its `SecretString` refuses to serialise at all (or, with the
//! `serde` marker trait, serialises the plain value). We need the opposite: the configuration
//! is serialised to print it, and to derive the environment variable names from the defaults,
//! and in both cases the secret must appear as a string that says `<redacted>`.

use serde::{Deserialize, Serialize};
use std::fmt;

pub(crate) const REDACTED: &str = "<redacted>";

/// A configured secret (a key, a shared secret, a signing secret).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself; for the code that signs, encrypts or compares with it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Length in characters (what the minimum-length rules count).
    pub fn chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_string())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    /// An unset secret prints as `""`, so `config check` shows which ones are configured.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { REDACTED })
    }
}

/// `serialize_with` for a DSN: the same text with its password blanked.
pub(crate) fn serialize_dsn<S: serde::Serializer>(dsn: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_dsn(dsn))
}

/// A DSN with its password blanked, for output and error messages.
pub(crate) fn redact_dsn(dsn: &str) -> String {
    match url::Url::parse(dsn) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("redacted"));
            u.to_string()
        }
        _ => dsn.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_value() {
        let s = Secret::from("hunter2hunter2hunter2hunter2hunter2");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(serde_json::to_value(&s).unwrap(), REDACTED);
        assert_eq!(serde_json::to_value(Secret::default()).unwrap(), "");
        let back: Secret = serde_json::from_value(serde_json::json!("abc")).unwrap();
        assert_eq!(back.expose(), "abc");
    }

    #[test]
    fn a_dsn_password_is_blanked() {
        assert_eq!(
            redact_dsn("postgres://u:hunter2@db/app"),
            "postgres://u:redacted@db/app"
        );
        assert_eq!(redact_dsn("sqlite::memory:"), "sqlite::memory:");
    }
}
