//! The hosted UI (`/ui/*` on the public port): server-rendered pages for the browser flows,
//! in English and Korean, that work without JavaScript.
//!
//! Pages render a flow's `ui.nodes` generically: one form per node group (the `default`
//! group, which holds the CSRF token and identifiers, goes into each), so a method added to
//! the core appears here without page code. Every label and message is looked up by its
//! Kratos message id in the language files (`ui/locales/<lang>.json`, extendable from
//! `ui.translations_dir`), with the server's English text as the last resort.
//!
//! This module holds what every page shares: the [`Ui`] built once at start-up (template
//! environment, translations, CSP), the router and the security headers. `i18n` picks the
//! language and translates, `view` turns nodes into the templates' view model, and `pages`
//! has one file per page kind (`flow` renders any flow kind, so a new flow needs no page code).

mod i18n;
pub(crate) use i18n::LANG_COOKIE;
mod pages;
mod view;

use crate::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use portcullis_core::config::Config;
use portcullis_core::flow::FlowKind;
use std::path::PathBuf;

const TEMPLATES: [(&str, &str); 4] = [
    (
        "layout.html",
        include_str!("../../ui/templates/layout.html"),
    ),
    ("flow.html", include_str!("../../ui/templates/flow.html")),
    (
        "welcome.html",
        include_str!("../../ui/templates/welcome.html"),
    ),
    ("error.html", include_str!("../../ui/templates/error.html")),
];

/// Templates, translations and the headers every page carries; built once at start-up.
pub struct Ui {
    env: minijinja::Environment<'static>,
    /// language → key → text.
    texts: i18n::Texts,
    default_lang: String,
    csp: HeaderValue,
    theme_css: String,
    /// Social sign-in provider id → the icon of its kind.
    provider_icons: std::collections::HashMap<String, &'static str>,
}

impl Ui {
    pub fn new(config: &Config) -> anyhow::Result<Ui> {
        let mut env = minijinja::Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        // HTML escaping of the five characters that matter; minijinja's default also escapes
        // `/`, which makes every URL in the page unreadable without making it any safer.
        env.set_formatter(|out, state, value| match value.as_str() {
            Some(s)
                if !value.is_safe()
                    && matches!(state.auto_escape(), minijinja::AutoEscape::Html) =>
            {
                use std::fmt::Write;
                for c in s.chars() {
                    match c {
                        '&' => out.write_str("&amp;"),
                        '<' => out.write_str("&lt;"),
                        '>' => out.write_str("&gt;"),
                        '"' => out.write_str("&quot;"),
                        '\'' => out.write_str("&#x27;"),
                        c => out.write_char(c),
                    }
                    .map_err(|e| {
                        minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string())
                    })?;
                }
                Ok(())
            }
            _ => minijinja::escape_formatter(out, state, value),
        });
        let dir =
            (!config.ui.templates_dir.is_empty()).then(|| PathBuf::from(&config.ui.templates_dir));
        if let Some(d) = &dir {
            anyhow::ensure!(
                d.is_dir(),
                "ui.templates_dir: {} is not a directory",
                d.display()
            );
        }
        env.set_loader(move |name| {
            if let Some(d) = &dir {
                let p = d.join(name);
                if p.is_file() {
                    return std::fs::read_to_string(&p).map(Some).map_err(|e| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("{}: {e}", p.display()),
                        )
                    });
                }
            }
            Ok(TEMPLATES
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, t)| t.to_string()))
        });
        for (name, _) in TEMPLATES {
            env.get_template(name)
                .map_err(|e| anyhow::anyhow!("ui template {name}: {e}"))?;
        }
        let (texts, default_lang) = i18n::load_texts(config)?;
        let theme_css = pages::assets::theme_css(config);
        let provider_icons = config
            .selfservice
            .methods
            .oidc
            .config
            .providers
            .iter()
            .map(|p| (p.id.clone(), pages::assets::icon_for(p.provider.as_str())))
            .collect();
        Ok(Ui {
            env,
            texts,
            default_lang,
            csp: HeaderValue::from_str(&content_security_policy(config))?,
            theme_css,
            provider_icons,
        })
    }
}

/// A strict policy: no scripts (the WebAuthn pages add their one, [`Ui::allow_script`]), styles and images from here only, forms may post
/// here and be redirected only to the return URLs the configuration allows and to the social
/// sign-in providers' pages.
fn content_security_policy(config: &Config) -> String {
    let origin = |u: &str| -> Option<String> {
        let (scheme, rest) = u.split_once("://")?;
        let host = rest.split('/').next()?;
        (!host.is_empty()).then(|| format!("{scheme}://{host}"))
    };
    let s = &config.selfservice;
    let mut targets: Vec<String> = s
        .allowed_return_urls
        .iter()
        .filter_map(|u| origin(u))
        .collect();
    // Every flow's page and after URL, where signing out goes, the error page, the
    // self-service default return URL and our own origin.
    let pages = FlowKind::ALL
        .into_iter()
        .flat_map(|kind| [config.after_url(kind), config.ui_url(kind)])
        .chain([
            config.after_logout_url(),
            config.error_ui_url(),
            &s.default_browser_return_url,
            config.public_url(),
        ]);
    targets.extend(pages.filter_map(origin));
    // A provider's button posts here and is redirected to the provider's sign-in page.
    targets
        .extend(portcullis_core::methods::oidc::provider::authorization_origins(&s.methods.oidc));
    targets.sort();
    targets.dedup();
    let mut img = vec!["'self'".to_string(), "data:".to_string()];
    if let Some(o) = origin(&config.ui.theme.logo_url) {
        img.push(o);
    }
    format!(
        "default-src 'none'; style-src 'self'; img-src {}; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        img.join(" "),
        targets.join(" ")
    )
}

pub fn router(config: &Config) -> Router<AppState> {
    if !config.ui.enabled {
        return Router::new();
    }
    Router::new()
        .route("/", get(pages::welcome::to_welcome))
        .route("/ui", get(pages::welcome::to_welcome))
        .route("/ui/", get(pages::welcome::to_welcome))
        .route("/ui/{page}", get(pages::flow::flow_page))
        .route("/ui/welcome", get(pages::welcome::welcome_page))
        .route("/ui/error", get(pages::error::error_page))
        .route(
            "/ui/sessions/revoke-others",
            post(pages::welcome::revoke_others),
        )
        .route("/ui/static/style.css", get(pages::assets::style))
        .route("/ui/theme.css", get(pages::assets::theme))
        .route("/ui/static/icons/{file}", get(pages::assets::icon))
}

/// A fresh nonce for the one script a page loads.
pub(crate) fn script_nonce() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Ui {
    /// The page's policy with its one script allowed: the WebAuthn pages load the ceremony
    /// script, pinned by `nonce` (and by its integrity hash in the tag). Every other page
    /// runs no script at all.
    pub(crate) fn allow_script(&self, resp: &mut Response, nonce: &str) {
        let base = self.csp.to_str().unwrap_or_default();
        let policy = base.replacen(
            "default-src 'none';",
            &format!("default-src 'none'; script-src 'nonce-{nonce}';"),
            1,
        );
        if let Ok(v) = HeaderValue::from_str(&policy) {
            resp.headers_mut()
                .insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    /// The icon of the buttons of the provider `id` (none for an id not configured).
    pub(super) fn provider_icon(&self, id: &str) -> Option<&'static str> {
        self.provider_icons.get(id).copied()
    }
}

/// The security headers of every page (a page that set its own policy keeps it).
pub async fn security_headers(State(st): State<AppState>, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(header::CONTENT_SECURITY_POLICY, st.ui.csp.clone());
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}
