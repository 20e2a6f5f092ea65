//! The hosted pages, one file per page kind, and what every page shares: the query it reads,
//! the language and its switcher, the layout's strings and rendering.

pub(super) mod assets;
pub(super) mod error;
pub(super) mod flow;
pub(super) mod welcome;

use super::i18n::LANG_COOKIE;
use crate::browser::see_other;
use crate::cookies::set_cookie;
use crate::AppState;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize, Default)]
pub(super) struct PageQuery {
    #[serde(default)]
    flow: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    lang: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
    #[serde(default)]
    refresh: Option<String>,
    #[serde(default)]
    revoked: Option<u64>,
}

/// What every page shares: language, its switcher and the layout's strings.
pub(super) struct Page<'a> {
    st: &'a AppState,
    lang: String,
    remember_lang: bool,
    ctx: Map<String, Value>,
}

impl<'a> Page<'a> {
    pub(super) fn new(
        st: &'a AppState,
        uri: &axum::http::Uri,
        q: &PageQuery,
        headers: &HeaderMap,
    ) -> Self {
        let ui = &st.ui;
        let (lang, remember_lang) = ui.pick_language(q.lang.as_deref(), headers);
        let keep: Vec<(String, String)> = uri
            .query()
            .map(|qs| {
                url::form_urlencoded::parse(qs.as_bytes())
                    .filter(|(k, _)| k != "lang" && k != "revoked")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let languages: Vec<Value> = ui
            .languages()
            .into_iter()
            .map(|(code, name)| {
                let mut qs = url::form_urlencoded::Serializer::new(String::new());
                for (k, v) in &keep {
                    qs.append_pair(k, v);
                }
                qs.append_pair("lang", code);
                json!({
                    "code": code,
                    "name": name,
                    // On the public URL, which may have a path a proxy strips (`/.ory/`).
                    "href": format!(
                        "{}{}?{}",
                        st.core.public_url(),
                        uri.path().trim_start_matches('/'),
                        qs.finish()
                    ),
                    "current": code == lang,
                })
            })
            .collect();
        let t: Map<String, Value> = [
            "link.skip",
            "language",
            "error.back",
            "error.code",
            "error.not_found",
            "welcome.signed_in_as",
            "welcome.sessions",
            "welcome.this_session",
            "welcome.signed_in_at",
            "welcome.expires_at",
            "welcome.device",
            "welcome.no_other_sessions",
            "welcome.revoke_others",
            "welcome.addresses",
            "welcome.verified",
            "welcome.unverified",
            "welcome.verify_link",
            "link.settings",
            "link.logout",
        ]
        .iter()
        .map(|k| (k.to_string(), Value::String(ui.t(&lang, k))))
        .collect();
        let theme = &st.core.config().ui.theme;
        let mut ctx = Map::new();
        ctx.insert("lang".into(), json!(lang));
        ctx.insert("languages".into(), json!(languages));
        ctx.insert("t".into(), Value::Object(t));
        ctx.insert("base".into(), json!(st.core.public_url()));
        ctx.insert(
            "theme".into(),
            json!({ "logo_url": theme.logo_url, "name": theme.name }),
        );
        ctx.insert("messages".into(), json!([]));
        Page {
            st,
            lang,
            remember_lang,
            ctx,
        }
    }

    pub(super) fn set(&mut self, key: &str, v: Value) {
        self.ctx.insert(key.into(), v);
    }

    pub(super) fn render(mut self, template: &str) -> Response {
        let ctx = std::mem::take(&mut self.ctx);
        let rendered = self
            .st
            .ui
            .env
            .get_template(template)
            .and_then(|t| t.render(Value::Object(ctx)));
        let mut resp = match rendered {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, template, "rendering a hosted UI page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "The page could not be rendered.",
                )
                    .into_response()
            }
        };
        self.finish(&mut resp);
        resp
    }

    /// Remembers an explicitly chosen language.
    pub(super) fn finish(&self, resp: &mut Response) {
        if self.remember_lang {
            if let Some(v) = set_cookie(
                self.st.core.config(),
                LANG_COOKIE,
                Some(&self.lang),
                Some(365 * 24 * 3600),
                "/",
                &self.st.core.config().session.cookie.domain,
                portcullis_core::config::SameSite::Lax,
            ) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }

    pub(super) fn redirect(self, to: &str) -> Response {
        let mut resp = see_other(to);
        self.finish(&mut resp);
        resp
    }
}
