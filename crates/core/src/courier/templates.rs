//! The message templates: built in (English and Korean, plain text and HTML) and
//! overridable from `courier.template_override_path` without recompiling.
//!
//! An override directory has Kratos's layout, one folder per message and three files in it:
//!
//! ```text
//! recovery_code/valid/email.subject.gotmpl          the subject
//! recovery_code/valid/email.body.gotmpl             the HTML body
//! recovery_code/valid/email.body.plaintext.gotmpl   the plain-text body
//! recovery_code/invalid/…  verification_code/valid/…  verification_code/invalid/…
//! login_code/valid/…  registration_code/valid/…  password_changed/…  new_sign_in/…
//! ```
//!
//! A file may have a locale variant, the locale before `.gotmpl`: `email.body.ko.gotmpl`.
//! For a message in locale L each of the three parts is the first of: the override's L
//! variant, the override without a locale (it then serves every locale, as in Kratos), the
//! built-in L text. Files are in the Go-template subset of `gotmpl.rs`.
//!
//! Rendering uses minijinja (already the hosted UI's engine, so no new dependency): it is
//! sandboxed (a template reads only the model it is given), escapes HTML by template, and
//! reports errors with the line. Go-template files are translated to its syntax when they
//! are loaded; every template is parsed and rendered once with a sample model then, so a
//! broken override stops the server at start-up, naming the file, not at the first email.

use super::builtin::builtin;
use super::gotmpl;
use super::{Locale, TemplateKind, TemplateModel};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub body: String,
    pub html_body: String,
}

const LOCALES: [Locale; 2] = [Locale::En, Locale::Ko];

/// The three parts of a message: (file stem in Kratos's layout, our template suffix).
const PARTS: [(&str, &str); 3] = [
    ("email.subject", "subject"),
    ("email.body", "html"),
    ("email.body.plaintext", "text"),
];

/// Kratos's folder for each message (ours follow the same pattern).
pub fn folder(kind: TemplateKind) -> &'static str {
    match kind {
        TemplateKind::RecoveryCodeValid => "recovery_code/valid",
        TemplateKind::RecoveryCodeInvalid => "recovery_code/invalid",
        TemplateKind::VerificationCodeValid => "verification_code/valid",
        TemplateKind::VerificationCodeInvalid => "verification_code/invalid",
        TemplateKind::LoginCodeValid => "login_code/valid",
        TemplateKind::RegistrationCodeValid => "registration_code/valid",
        TemplateKind::PasswordChanged => "password_changed",
        TemplateKind::NewSignIn => "new_sign_in",
    }
}

fn name(kind: TemplateKind, locale: Locale, part: &str) -> String {
    format!("{}:{}:{part}", kind.as_str(), locale.as_str())
}

#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        Templates::builtin()
    }
}

/// A source to compile: its text (Go-template subset) and where it came from.
struct Source {
    text: String,
    origin: Option<PathBuf>,
}

impl Templates {
    /// The built-in templates only.
    pub fn builtin() -> Templates {
        // The built-ins are tested to compile (`every_builtin_renders`); were one broken, the
        // message would fail to render and the write that queues it would fail loudly.
        Templates::compile(|_, _, _| Ok(None)).unwrap_or_else(|_| Templates {
            env: Arc::new(Environment::new()),
        })
    }

    /// The built-ins with the overrides in `dir` (Kratos's layout, see the module docs).
    /// Every template is parsed and test-rendered; the error names the file that failed.
    pub fn load(dir: &Path) -> Result<Templates, String> {
        if !dir.is_dir() {
            return Err(format!(
                "courier.template_override_path: {} is not a directory",
                dir.display()
            ));
        }
        warn_unknown_files(dir);
        Templates::compile(|kind, locale, stem| {
            let folder = dir.join(folder(kind));
            for file in [
                folder.join(format!("{stem}.{}.gotmpl", locale.as_str())),
                folder.join(format!("{stem}.gotmpl")),
            ] {
                if file.is_file() {
                    let text = std::fs::read_to_string(&file).map_err(|e| {
                        format!("courier.template_override_path: {}: {e}", file.display())
                    })?;
                    return Ok(Some(Source {
                        text,
                        origin: Some(file),
                    }));
                }
            }
            Ok(None)
        })
    }

    fn compile(
        mut overridden: impl FnMut(TemplateKind, Locale, &str) -> Result<Option<Source>, String>,
    ) -> Result<Templates, String> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_keep_trailing_newline(true);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(":html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        let mut origins = vec![];
        for kind in TemplateKind::ALL {
            for locale in LOCALES {
                let b = builtin(kind, locale);
                for (stem, part) in PARTS {
                    let src = match overridden(kind, locale, stem)? {
                        Some(s) => s,
                        None => Source {
                            text: match part {
                                "subject" => b.subject.to_string(),
                                "html" => b.html(locale),
                                _ => b.plaintext(),
                            },
                            origin: None,
                        },
                    };
                    let where_ = |e: &dyn std::fmt::Display| match &src.origin {
                        Some(f) => format!("courier.template_override_path: {}: {e}", f.display()),
                        None => format!("built-in template {}: {e}", name(kind, locale, part)),
                    };
                    let jinja = gotmpl::to_jinja(&src.text).map_err(|e| where_(&e))?;
                    env.add_template_owned(name(kind, locale, part), jinja)
                        .map_err(|e| where_(&e))?;
                    origins.push((name(kind, locale, part), src.origin.clone()));
                }
            }
        }
        // One render with every field a model can have, so errors that only show when
        // rendering (a comparison of a string with a number, …) show now.
        let sample = sample_model();
        for (n, origin) in &origins {
            let t = env.get_template(n).map_err(|e| e.to_string())?;
            t.render(&sample).map_err(|e| match origin {
                Some(f) => format!("courier.template_override_path: {}: {e}", f.display()),
                None => format!("built-in template {n}: {e}"),
            })?;
        }
        Ok(Templates { env: Arc::new(env) })
    }

    pub fn render(
        &self,
        kind: TemplateKind,
        locale: Locale,
        model: &TemplateModel,
    ) -> Result<Rendered, String> {
        let ctx = minijinja::Value::from_serialize(model);
        let part = |p: &str| -> Result<String, String> {
            let n = name(kind, locale, p);
            self.env
                .get_template(&n)
                .and_then(|t| t.render(&ctx))
                .map_err(|e| format!("rendering the {n} template: {e}"))
        };
        Ok(Rendered {
            // A header line: no line breaks, no surrounding space.
            subject: part("subject")?
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            body: part("text")?,
            html_body: part("html")?,
        })
    }
}

/// A model with every field a message model may have.
fn sample_model() -> minijinja::Value {
    minijinja::Value::from_serialize(serde_json::json!({
        "To": "someone@example.com",
        "Code": "123456",
        "RecoveryCode": "123456",
        "VerificationCode": "123456",
        "LoginCode": "123456",
        "ExpiresInMinutes": 15,
        "RequestURL": "https://example.com/self-service/recovery/browser",
        "IPAddress": "192.0.2.1",
        "UserAgent": "Mozilla/5.0",
        "Identity": { "id": "00000000-0000-0000-0000-000000000000", "traits": { "email": "someone@example.com" } },
    }))
}

/// Logs the `.gotmpl` files under `dir` that no message reads (a typo, or a Kratos template
/// for a flow Portcullis sends no email for), so a file that silently does nothing is seen.
fn warn_unknown_files(dir: &Path) {
    let mut known = vec![];
    for kind in TemplateKind::ALL {
        for (stem, _) in PARTS {
            known.push(format!("{}/{stem}.gotmpl", folder(kind)));
            for l in LOCALES {
                known.push(format!("{}/{stem}.{}.gotmpl", folder(kind), l.as_str()));
            }
        }
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "gotmpl") {
                let rel = p
                    .strip_prefix(dir)
                    .map(|r| r.to_string_lossy().replace('\\', "/"))
                    .unwrap_or_default();
                if !known.contains(&rel) {
                    tracing::warn!(file = %p.display(), "courier.template_override_path: this template is not used by any message");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn model() -> serde_json::Value {
        json!({
            "To": "ada@example.com", "Code": "042424", "RecoveryCode": "042424",
            "VerificationCode": "042424", "LoginCode": "042424", "RegistrationCode": "042424",
            "ExpiresInMinutes": 15,
            "Identity": { "traits": { "email": "ada@example.com" } },
        })
    }

    #[test]
    fn every_builtin_renders_in_both_locales() {
        let t = Templates::builtin();
        for kind in TemplateKind::ALL {
            for locale in LOCALES {
                let r = t.render(kind, locale, &model()).unwrap();
                assert!(!r.subject.is_empty() && !r.subject.contains('\n'));
                assert!(r.html_body.starts_with("<!DOCTYPE html>"), "{kind:?}");
                assert!(r
                    .html_body
                    .contains(&format!("lang=\"{}\"", locale.as_str())));
                assert!(r.body.ends_with('\n'));
                if folder(kind).ends_with("code/valid") {
                    assert!(r.body.contains("042424"), "{kind:?} {locale:?}: {}", r.body);
                    assert!(r.html_body.contains("042424"));
                    assert!(r.body.contains("15"));
                }
            }
        }
        let ko = t
            .render(TemplateKind::RecoveryCodeValid, Locale::Ko, &model())
            .unwrap();
        assert_eq!(ko.subject, "계정 복구 코드");
    }

    #[test]
    fn values_are_escaped_in_html_only() {
        let t = Templates::builtin();
        let m = json!({ "To": "<b>&\"x\"</b>@example.com" });
        let r = t
            .render(TemplateKind::PasswordChanged, Locale::En, &m)
            .unwrap();
        assert!(r.body.contains("<b>&\"x\"</b>@example.com"));
        assert!(
            r.html_body
                .contains("&lt;b&gt;&amp;&quot;x&quot;&lt;&#x2f;b&gt;@example.com"),
            "{}",
            r.html_body
        );
        assert!(!r.html_body.contains("<b>&"));
    }

    fn dir_with(files: &[(&str, &str)]) -> tempdir::Dir {
        let d = tempdir::Dir::new();
        for (path, text) in files {
            let p = d.0.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        d
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!("pc-tpl-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn kratos_layout_overrides_replace_parts_and_locale_variants_win() {
        let d = dir_with(&[
            (
                "recovery_code/valid/email.subject.gotmpl",
                "Your code for {{ .Identity.traits.email }}\n",
            ),
            (
                "recovery_code/valid/email.body.plaintext.gotmpl",
                "Code: {{ .RecoveryCode }}{{ if eq .ExpiresInMinutes 15 }} (15 min){{ end }}\n",
            ),
            (
                "recovery_code/valid/email.body.plaintext.ko.gotmpl",
                "코드: {{ .RecoveryCode }}\n",
            ),
            ("recovery_code/valid/email.body.gotmpl", "<p>{{ .To }}</p>"),
        ]);
        let t = Templates::load(&d.0).unwrap();
        let m = json!({ "To": "<x>", "RecoveryCode": "111222", "ExpiresInMinutes": 15,
                        "Identity": { "traits": { "email": "ada@example.com" } } });
        let en = t
            .render(TemplateKind::RecoveryCodeValid, Locale::En, &m)
            .unwrap();
        assert_eq!(en.subject, "Your code for ada@example.com");
        assert_eq!(en.body, "Code: 111222 (15 min)\n");
        assert_eq!(en.html_body, "<p>&lt;x&gt;</p>");
        let ko = t
            .render(TemplateKind::RecoveryCodeValid, Locale::Ko, &m)
            .unwrap();
        // The override without a locale serves Korean too; the Korean variant wins.
        assert_eq!(ko.subject, "Your code for ada@example.com");
        assert_eq!(ko.body, "코드: 111222\n");
        // Messages without overrides keep the built-ins.
        let v = t
            .render(TemplateKind::VerificationCodeValid, Locale::En, &m)
            .unwrap();
        assert_eq!(
            v,
            Templates::builtin()
                .render(TemplateKind::VerificationCodeValid, Locale::En, &m)
                .unwrap()
        );
    }

    #[test]
    fn a_broken_override_is_an_error_naming_the_file() {
        for (file, text) in [
            (
                "login_code/valid/email.body.gotmpl",
                "{{ if .LoginCode }}never closed",
            ),
            ("new_sign_in/email.subject.ko.gotmpl", "{{ .To | upper }}"),
            (
                "password_changed/email.body.plaintext.gotmpl",
                "{{ html .To }}",
            ),
        ] {
            let d = dir_with(&[(file, text)]);
            let e = Templates::load(&d.0).unwrap_err();
            assert!(e.contains(file), "{e}");
        }
        assert!(Templates::load(Path::new("/nonexistent/templates")).is_err());
    }
}
