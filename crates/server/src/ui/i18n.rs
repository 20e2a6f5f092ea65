//! Translations and the choice of language: the built-in language files, the operator's
//! extra ones (`ui.translations_dir`), and `?lang=` → cookie → `Accept-Language` → default.

use super::Ui;
use crate::extract::cookie;
use axum::http::{header, HeaderMap};
use portcullis_core::config::Config;
use portcullis_core::ui::UiText;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use time::OffsetDateTime;

/// language → key → text.
pub(super) type Texts = BTreeMap<String, HashMap<String, String>>;

pub(crate) const LANG_COOKIE: &str = "portcullis_lang";

const LOCALES: [(&str, &str); 2] = [
    ("en", include_str!("../../ui/locales/en.json")),
    ("ko", include_str!("../../ui/locales/ko.json")),
];

/// language → key → text, and the default language (`ui.default_language` when known, else
/// English).
pub(super) fn load_texts(config: &Config) -> anyhow::Result<(Texts, String)> {
    let mut texts: Texts = BTreeMap::new();
    for (lang, raw) in LOCALES {
        texts.insert(lang.into(), serde_json::from_str(raw)?);
    }
    if !config.ui.translations_dir.is_empty() {
        let entries = std::fs::read_dir(&config.ui.translations_dir)
            .map_err(|e| anyhow::anyhow!("ui.translations_dir: {e}"))?;
        for entry in entries {
            let path = entry?.path();
            let (Some(lang), Some("json")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            let extra: HashMap<String, String> =
                serde_json::from_str(&std::fs::read_to_string(&path)?).map_err(|e| {
                    anyhow::anyhow!(
                        "ui.translations_dir: {}: expected an object of strings: {e}",
                        path.display()
                    )
                })?;
            texts
                .entry(lang.to_ascii_lowercase())
                .or_default()
                .extend(extra);
        }
    }
    let mut default_lang = config.ui.default_language.to_ascii_lowercase();
    if !texts.contains_key(&default_lang) {
        default_lang = "en".into();
    }
    Ok((texts, default_lang))
}

/// Placeholders a translation may use that a message's context only implies, named as in
/// Kratos's message list: whole minutes (rounded up) until or since one of its `*_unix`
/// times. Kratos prints these as `%.2f` minutes in its English text, fixed when the message
/// was made; a page counts them from the time it is shown.
const DERIVED_MINUTES: [(&str, &str, bool); 2] = [
    (
        "privileged_session_expires_at_unix",
        "minutes_until_privileged_session_expires",
        true,
    ),
    ("expired_at_unix", "minutes_since_expired_at", false),
];

/// `m` with the [`DERIVED_MINUTES`] its context implies added to the context.
pub(super) fn with_derived_context(mut m: UiText, now: OffsetDateTime) -> UiText {
    let Some(Value::Object(ctx)) = &mut m.context else {
        return m;
    };
    for (source, name, until) in DERIVED_MINUTES {
        let Some(at) = ctx.get(source).and_then(Value::as_i64) else {
            continue;
        };
        let seconds = if until {
            at.saturating_sub(now.unix_timestamp())
        } else {
            now.unix_timestamp().saturating_sub(at)
        };
        let minutes = seconds.max(0).saturating_add(59) / 60;
        ctx.insert(name.to_string(), Value::from(minutes));
    }
    m
}

impl Ui {
    pub(super) fn lookup(&self, lang: &str, key: &str) -> Option<&str> {
        [lang, self.default_lang.as_str(), "en"]
            .iter()
            .find_map(|l| self.texts.get(*l).and_then(|t| t.get(key)))
            .map(String::as_str)
    }

    pub(super) fn t(&self, lang: &str, key: &str) -> String {
        self.lookup(lang, key).unwrap_or(key).to_string()
    }

    /// A message in `lang`: its id's translation with `{context}` filled in, else the
    /// server's own (English) text.
    pub(super) fn message(&self, lang: &str, m: &UiText) -> String {
        let Some(template) = self.lookup(lang, &m.id.to_string()) else {
            return m.text.clone();
        };
        let mut out = template.to_string();
        if let Some(Value::Object(ctx)) = &m.context {
            for (k, v) in ctx {
                let s = match v {
                    // A field named in a sentence reads in the sentence's language when that
                    // language's file names it (`property.code`: "코드"; no fallback, which
                    // would mix languages).
                    Value::String(s) if k == "property" => self
                        .texts
                        .get(lang)
                        .and_then(|t| t.get(&format!("property.{s}")))
                        .unwrap_or(s)
                        .clone(),
                    Value::String(s) => s.clone(),
                    Value::Array(a) => a
                        .iter()
                        .map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string()))
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                };
                out = out.replace(&format!("{{{k}}}"), &s);
            }
        }
        out
    }

    /// The label of a node: a generated label (1070002, from the schema title) is looked
    /// up by the trait's node name, so schema fields can be translated too.
    pub(super) fn label(&self, lang: &str, label: &Value) -> String {
        let Ok(text) = serde_json::from_value::<UiText>(label.clone()) else {
            return String::new();
        };
        if text.id == 1070002 {
            let name = text
                .context
                .as_ref()
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str);
            if let Some(t) = name.and_then(|n| self.lookup(lang, n)) {
                return t.to_string();
            }
        }
        self.message(lang, &text)
    }

    pub(super) fn languages(&self) -> Vec<(&str, &str)> {
        self.texts
            .iter()
            .map(|(code, t)| {
                (
                    code.as_str(),
                    t.get("_language").map(String::as_str).unwrap_or(code),
                )
            })
            .collect()
    }

    /// `?lang=`, then the language cookie, then `Accept-Language`, then the default.
    /// Returns the language and whether to remember it in the cookie.
    pub(super) fn pick_language(&self, query: Option<&str>, headers: &HeaderMap) -> (String, bool) {
        let known = |l: &str| {
            let l = l.trim().to_ascii_lowercase();
            let primary = l.split(['-', '_']).next().unwrap_or("").to_string();
            [l, primary]
                .into_iter()
                .find(|c| self.texts.contains_key(c))
        };
        if let Some(l) = query.and_then(known) {
            return (l, true);
        }
        if let Some(l) = cookie(headers, LANG_COOKIE).and_then(known) {
            return (l, false);
        }
        if let Some(accept) = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
        {
            let mut ranges: Vec<(f32, &str)> = accept
                .split(',')
                .map(|r| {
                    let mut p = r.split(';');
                    let tag = p.next().unwrap_or("").trim();
                    let q = p
                        .filter_map(|x| x.trim().strip_prefix("q="))
                        .find_map(|v| v.parse::<f32>().ok())
                        .unwrap_or(1.0);
                    (q, tag)
                })
                .filter(|(q, _)| *q > 0.0)
                .collect();
            ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
            if let Some(l) = ranges.iter().find_map(|(_, tag)| known(tag)) {
                return (l, false);
            }
        }
        (self.default_lang.clone(), false)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use serde_json::json;

    fn builtin(lang: &str) -> HashMap<String, String> {
        let raw = LOCALES.iter().find(|(l, _)| *l == lang).unwrap().1;
        serde_json::from_str(raw).unwrap()
    }

    /// `{name}` placeholders of a text, sorted.
    fn placeholders(text: &str) -> Vec<&str> {
        let mut out: Vec<&str> = text
            .split('{')
            .skip(1)
            .filter_map(|s| s.split_once('}').map(|(name, _)| name))
            .collect();
        out.sort_unstable();
        out
    }

    #[test]
    fn english_and_korean_have_the_same_keys_and_placeholders() {
        let (en, ko) = (builtin("en"), builtin("ko"));
        for (k, text) in &en {
            let other = ko
                .get(k)
                .unwrap_or_else(|| panic!("{k} has no Korean text"));
            assert_eq!(placeholders(text), placeholders(other), "{k}");
        }
        // Field names for sentences are Korean-only: English keeps Kratos's own.
        for k in ko.keys().filter(|k| !k.starts_with("property.")) {
            assert!(en.contains_key(k), "{k} has no English text");
        }
    }

    #[test]
    fn every_message_of_recovery_and_verification_is_translated() {
        let ids = [
            1060001, 1060003, 1070007, 1070008, 1070009, 1070010, 1070011, 1080002, 1080003,
            4010005, 4010006, 4060001, 4060002, 4060004, 4060005, 4060006, 4070002, 4070003,
            4070005, 4070006,
        ];
        for lang in ["en", "ko"] {
            let texts = builtin(lang);
            for id in ids {
                assert!(texts.contains_key(&id.to_string()), "{lang}: {id}");
            }
        }
    }

    #[test]
    fn minutes_are_counted_from_the_time_the_page_is_shown() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        let recovered = UiText::success_with(
            1060001,
            "…within the next 60.00 minutes.",
            json!({ "privileged_session_expires_at_unix": 1_000_000 + 59 * 60 + 1 }),
        );
        let m = with_derived_context(recovered, now);
        assert_eq!(
            m.context.as_ref().unwrap()["minutes_until_privileged_session_expires"],
            60
        );
        let expired = UiText::error(
            4060005,
            "expired",
            Some(json!({ "expired_at_unix": 1_000_000 - 90 })),
        );
        let m = with_derived_context(expired, now);
        assert_eq!(m.context.as_ref().unwrap()["minutes_since_expired_at"], 2);
        // Past the end, none are left (not a negative count).
        let over = UiText::success_with(
            1060001,
            "",
            json!({ "privileged_session_expires_at_unix": 1_000_000 - 5 }),
        );
        let m = with_derived_context(over, now);
        assert_eq!(
            m.context.as_ref().unwrap()["minutes_until_privileged_session_expires"],
            0
        );
    }
}
