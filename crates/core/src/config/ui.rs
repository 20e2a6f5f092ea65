//! `ui`: the hosted UI served on the public port under `/ui`, and its theme.

use super::ConfigError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Serve `/ui/*`. Turn off when an external UI takes every `selfservice.flows.*.ui_url`.
    pub enabled: bool,
    /// Used when neither `?lang=`, the language cookie nor `Accept-Language` picks a known one.
    pub default_language: String,
    /// A folder of `<lang>.json` files whose entries extend or replace the built-in
    /// translations (a new file adds a language).
    pub translations_dir: String,
    /// A folder of templates that replace the built-in ones by file name (`layout.html`, …).
    pub templates_dir: String,
    pub theme: ThemeConfig,
}

const DEFAULT_LANGUAGE: &str = "en";

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: true,
            default_language: DEFAULT_LANGUAGE.into(),
            translations_dir: String::new(),
            templates_dir: String::new(),
            theme: ThemeConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThemeConfig {
    /// Shown above every form; an absolute URL or a path on the public port.
    pub logo_url: String,
    /// The product name shown in titles and above forms.
    pub name: String,
    /// CSS custom properties, without the `--pc-` prefix: `primary: "#4f46e5"`.
    pub colors: BTreeMap<String, String>,
}

impl UiConfig {
    /// An empty language (`default_language: ""`) means the built-in default.
    pub(super) fn fill_defaults(&mut self) {
        if self.default_language.is_empty() {
            self.default_language = DEFAULT_LANGUAGE.into();
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.theme.validate()
    }
}

impl ThemeConfig {
    /// The theme is pasted into a `<style>` block and an `<img>`: only characters that cannot
    /// end the declaration or the attribute pass.
    fn validate(&self) -> Result<(), ConfigError> {
        let safe = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || " #%.,()-_".contains(c))
        };
        for (k, v) in &self.colors {
            if !safe(k) || !safe(v) {
                return Err(ConfigError::Invalid(format!(
                    "ui.theme.colors.{k}: {v:?}: names and values may hold only letters, digits, spaces and # % . , ( ) - _"
                )));
            }
        }
        let logo = &self.logo_url;
        if !logo.is_empty()
            && (logo.contains(['"', '\'', '(', ')', '\\', '<', '>'])
                || !(logo.starts_with('/') || url::Url::parse(logo).is_ok()))
        {
            return Err(ConfigError::Invalid(format!(
                "ui.theme.logo_url: {logo:?} is not a URL or a path"
            )));
        }
        Ok(())
    }
}
