//! Translations and the choice of language: the built-in language files, the operator's
//! extra ones (`ui.translations_dir`), and `?lang=` → cookie → `Accept-Language` → default.

use super::Ui;
use crate::extract::cookie;
use axum::http::{header, HeaderMap};
use portcullis_core::config::Config;
use portcullis_core::ui::UiText;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

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
