//! What a provider says about the user, normalised as Kratos's `Claims`: the input of the
//! Jsonnet mapper (`std.extVar('claims')`). Kratos serialises every field `omitempty`, so an
//! empty string, `false` or `0` is *absent* — mappers rely on it (`{email_verified: false} +
//! std.extVar('claims')`, `'email' in claims`), and so does [`Claims::to_value`].

use serde_json::{Map, Value};

/// The normalised claims. `raw` is everything the provider sent (`raw_claims`), absent for
/// providers Kratos gives none (GitHub).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub name: String,
    pub given_name: String,
    pub family_name: String,
    pub last_name: String,
    pub middle_name: String,
    pub nickname: String,
    pub preferred_username: String,
    pub profile: String,
    pub picture: String,
    pub website: String,
    pub email: String,
    pub email_verified: bool,
    pub gender: String,
    pub birthdate: String,
    pub zoneinfo: String,
    pub locale: String,
    pub phone_number: String,
    pub phone_number_verified: bool,
    pub updated_at: i64,
    pub hd: String,
    pub team: String,
    pub nonce: String,
    pub nonce_supported: bool,
    pub raw: Option<Map<String, Value>>,
}

/// A claim as a string: strings as they are, numbers in decimal (GitHub's ids), else empty.
fn text(m: &Map<String, Value>, key: &str) -> String {
    match m.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// A boolean claim; Apple sends `"true"` and `"false"` as strings.
fn flag(m: &Map<String, Value>, key: &str) -> bool {
    match m.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

impl Claims {
    /// The standard OpenID Connect claims of an ID token or userinfo answer, with all of it
    /// as `raw_claims`.
    pub fn from_standard(m: &Map<String, Value>) -> Claims {
        // LinkedIn-style `{language, country}` locales become "language-COUNTRY", as in Kratos.
        let locale = match m.get("locale") {
            Some(Value::Object(l)) => {
                let (lang, country) = (text(l, "language"), text(l, "country"));
                if country.is_empty() {
                    lang
                } else {
                    format!("{lang}-{country}")
                }
            }
            _ => text(m, "locale"),
        };
        Claims {
            iss: text(m, "iss"),
            sub: text(m, "sub"),
            name: text(m, "name"),
            given_name: text(m, "given_name"),
            family_name: text(m, "family_name"),
            last_name: text(m, "last_name"),
            middle_name: text(m, "middle_name"),
            nickname: text(m, "nickname"),
            preferred_username: text(m, "preferred_username"),
            profile: text(m, "profile"),
            picture: text(m, "picture"),
            website: text(m, "website"),
            email: text(m, "email"),
            email_verified: flag(m, "email_verified"),
            gender: text(m, "gender"),
            birthdate: text(m, "birthdate"),
            zoneinfo: text(m, "zoneinfo"),
            locale,
            phone_number: text(m, "phone_number"),
            phone_number_verified: flag(m, "phone_number_verified"),
            updated_at: m.get("updated_at").and_then(Value::as_i64).unwrap_or(0),
            hd: text(m, "hd"),
            team: text(m, "team"),
            nonce: text(m, "nonce"),
            nonce_supported: flag(m, "nonce_supported"),
            raw: Some(m.clone()),
        }
    }

    /// The mapper's `claims`: every non-empty field, as Kratos's `omitempty` JSON.
    pub fn to_value(&self) -> Value {
        let mut o = Map::new();
        let texts = [
            ("iss", &self.iss),
            ("sub", &self.sub),
            ("name", &self.name),
            ("given_name", &self.given_name),
            ("family_name", &self.family_name),
            ("last_name", &self.last_name),
            ("middle_name", &self.middle_name),
            ("nickname", &self.nickname),
            ("preferred_username", &self.preferred_username),
            ("profile", &self.profile),
            ("picture", &self.picture),
            ("website", &self.website),
            ("email", &self.email),
        ];
        for (k, v) in texts {
            if !v.is_empty() {
                o.insert(k.into(), Value::String(v.clone()));
            }
        }
        if self.email_verified {
            o.insert("email_verified".into(), Value::Bool(true));
        }
        let more = [
            ("gender", &self.gender),
            ("birthdate", &self.birthdate),
            ("zoneinfo", &self.zoneinfo),
            ("locale", &self.locale),
            ("phone_number", &self.phone_number),
        ];
        for (k, v) in more {
            if !v.is_empty() {
                o.insert(k.into(), Value::String(v.clone()));
            }
        }
        if self.phone_number_verified {
            o.insert("phone_number_verified".into(), Value::Bool(true));
        }
        if self.updated_at != 0 {
            o.insert("updated_at".into(), Value::from(self.updated_at));
        }
        for (k, v) in [
            ("hd", &self.hd),
            ("team", &self.team),
            ("nonce", &self.nonce),
        ] {
            if !v.is_empty() {
                o.insert(k.into(), Value::String(v.clone()));
            }
        }
        if self.nonce_supported {
            o.insert("nonce_supported".into(), Value::Bool(true));
        }
        if let Some(raw) = &self.raw {
            o.insert("raw_claims".into(), Value::Object(raw.clone()));
        }
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn empty_and_false_claims_are_absent_as_in_kratos() {
        let c = Claims::from_standard(&map(json!({
            "iss": "https://idp.example", "sub": "u1", "email": "a@example.com",
            "email_verified": false, "name": "", "updated_at": 0,
        })));
        let v = c.to_value();
        assert_eq!(v["sub"], "u1");
        assert_eq!(v["email"], "a@example.com");
        for absent in [
            "email_verified",
            "name",
            "updated_at",
            "phone_number_verified",
        ] {
            assert!(v.get(absent).is_none(), "{absent} in {v}");
        }
        assert_eq!(v["raw_claims"]["email_verified"], false);
    }

    #[test]
    fn string_booleans_numeric_subjects_and_object_locales_are_normalised() {
        let c = Claims::from_standard(&map(json!({
            "sub": 4242, "email_verified": "true", "locale": {"language": "ko", "country": "KR"},
        })));
        assert_eq!(c.sub, "4242");
        assert!(c.email_verified);
        assert_eq!(c.locale, "ko-KR");
    }
}
