//! The message templates: built in (English and Korean, plain text and HTML) and
//! overridable from `courier.template_override_path`.
//!
//! PLACEHOLDER: the courier work replaces this file with the real templates.

use super::{Locale, TemplateKind, TemplateModel};

/// A rendered message.
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub html_body: String,
}

#[derive(Debug, Clone, Default)]
pub struct Templates {}

impl Templates {
    pub fn builtin() -> Templates {
        Templates {}
    }

    pub fn render(
        &self,
        kind: TemplateKind,
        _locale: Locale,
        model: &TemplateModel,
    ) -> Result<Rendered, String> {
        let code = model
            .get("Code")
            .and_then(|c| c.as_str())
            .unwrap_or_default();
        Ok(Rendered {
            subject: kind.as_str().to_string(),
            body: format!("{code}\n"),
            html_body: format!("<p>{code}</p>"),
        })
    }
}
