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

/// `serialize_with` for an outgoing URL: userinfo and query values blanked.
pub(crate) fn serialize_url<S: serde::Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redact_url(url))
}

/// Query parameters through which a database driver takes a credential: sqlx-postgres reads
/// `password` and `sslpassword`, and `sslkey` names the client's private key.
const DSN_SECRET_PARAMS: &[&str] = &["password", "sslpassword", "sslkey"];

const BLANK: &str = "redacted";

/// A DSN with its password blanked, in the userinfo and in the query, for output and errors.
pub(crate) fn redact_dsn(dsn: &str) -> String {
    let Ok(mut u) = url::Url::parse(dsn) else {
        return dsn.to_string();
    };
    if u.password().is_some() {
        let _ = u.set_password(Some(BLANK));
    }
    let secret = |k: &str| DSN_SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(k));
    if u.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) {
                    BLANK.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// A URL with its userinfo and every query value blanked: an endpoint URL may carry a
/// `user:pass@` or a `?token=`, and which parameter is a credential is the receiver's choice.
/// A URL that does not parse is shown only if it cannot hold either.
pub(crate) fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else {
        return if url.contains(['@', '?']) {
            REDACTED.to_string()
        } else {
            url.to_string()
        };
    };
    if !u.username().is_empty() {
        let _ = u.set_username(BLANK);
    }
    if u.password().is_some() {
        let _ = u.set_password(Some(BLANK));
    }
    if u.query().is_some_and(|q| !q.is_empty()) {
        let keys: Vec<String> = u.query_pairs().map(|(k, _)| k.into_owned()).collect();
        u.query_pairs_mut()
            .clear()
            .extend_pairs(keys.iter().map(|k| (k, BLANK)));
    }
    u.to_string()
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
    fn a_dsn_password_is_blanked_in_the_userinfo() {
        assert_eq!(
            redact_dsn("postgres://u:hunter2@db/app"),
            "postgres://u:redacted@db/app"
        );
        assert_eq!(redact_dsn("sqlite::memory:"), "sqlite::memory:");
    }

    #[test]
    fn a_dsn_password_is_blanked_in_the_query() {
        assert_eq!(
            redact_dsn("postgres://u@db.example/app?password=hunter2secret"),
            "postgres://u@db.example/app?password=redacted"
        );
        assert_eq!(
            redact_dsn(
                "postgres://u@db/app?sslmode=require&sslpassword=hunter2&application_name=pc"
            ),
            "postgres://u@db/app?sslmode=require&sslpassword=redacted&application_name=pc"
        );
        assert_eq!(
            redact_dsn("postgresql://u@db/app?sslkey=/etc/keys/client.key&PASSWORD=x"),
            "postgresql://u@db/app?sslkey=redacted&PASSWORD=redacted"
        );
        let both = redact_dsn("postgres://u:pw1secret@db/app?password=pw2secret");
        assert!(
            !both.contains("pw1secret") && !both.contains("pw2secret"),
            "{both}"
        );
        assert_eq!(
            redact_dsn("sqlite://data/pc.sqlite?mode=rwc"),
            "sqlite://data/pc.sqlite?mode=rwc"
        );
    }

    #[test]
    fn url_credentials_are_blanked() {
        assert_eq!(
            redact_url("https://alice:hunter2@hooks.example/in"),
            "https://redacted:redacted@hooks.example/in"
        );
        assert_eq!(
            redact_url("https://tok3n@hooks.example/in"),
            "https://redacted@hooks.example/in"
        );
        assert_eq!(
            redact_url("https://hooks.example/in?token=hunter2&x=1"),
            "https://hooks.example/in?token=redacted&x=redacted"
        );
        assert_eq!(
            redact_url("https://hooks.example/in"),
            "https://hooks.example/in"
        );
        assert_eq!(redact_url("not a url?token=hunter2"), REDACTED);
    }
}
