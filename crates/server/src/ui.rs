//! The hosted UI (`/ui/*` on the public port): server-rendered pages for the browser flows,
//! in English and Korean, that work without JavaScript.
//!
//! Pages render a flow's `ui.nodes` generically: one form per node group (the `default`
//! group, which holds the CSRF token and identifiers, goes into each), so a method added to
//! the core appears here without page code. Every label and message is looked up by its
//! Kratos message id in the language files (`ui/locales/<lang>.json`, extendable from
//! `ui.translations_dir`), with the server's English text as the last resort.

use crate::browser::see_other;
use crate::cookies::{csrf_cookie, set_cookie};
use crate::extract::{cookie, form_to_json, CallerCtx, Query};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use portcullis_core::config::Config;
use portcullis_core::flow::FlowKind;
use portcullis_core::service::urlencode;
use portcullis_core::store::SessionQuery;
use portcullis_core::ui::UiText;
use portcullis_core::Error;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

const LANG_COOKIE: &str = "portcullis_lang";

const TEMPLATES: [(&str, &str); 4] = [
    ("layout.html", include_str!("../ui/templates/layout.html")),
    ("flow.html", include_str!("../ui/templates/flow.html")),
    ("welcome.html", include_str!("../ui/templates/welcome.html")),
    ("error.html", include_str!("../ui/templates/error.html")),
];
const LOCALES: [(&str, &str); 2] = [
    ("en", include_str!("../ui/locales/en.json")),
    ("ko", include_str!("../ui/locales/ko.json")),
];
const STYLE: &str = include_str!("../ui/static/style.css");

/// Templates, translations and the headers every page carries; built once at start-up.
pub struct Ui {
    env: minijinja::Environment<'static>,
    /// language → key → text.
    texts: BTreeMap<String, HashMap<String, String>>,
    default_lang: String,
    csp: HeaderValue,
    theme_css: String,
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
        let mut texts: BTreeMap<String, HashMap<String, String>> = BTreeMap::new();
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
        let theme_css = format!(
            ":root {{\n{}}}\n",
            config
                .ui
                .theme
                .colors
                .iter()
                .map(|(k, v)| format!("  --pc-{k}: {v};\n"))
                .collect::<String>()
        );
        Ok(Ui {
            env,
            texts,
            default_lang,
            csp: HeaderValue::from_str(&content_security_policy(config))?,
            theme_css,
        })
    }

    fn lookup(&self, lang: &str, key: &str) -> Option<&str> {
        [lang, self.default_lang.as_str(), "en"]
            .iter()
            .find_map(|l| self.texts.get(*l).and_then(|t| t.get(key)))
            .map(String::as_str)
    }

    fn t(&self, lang: &str, key: &str) -> String {
        self.lookup(lang, key).unwrap_or(key).to_string()
    }

    /// A message in `lang`: its id's translation with `{context}` filled in, else the
    /// server's own (English) text.
    fn message(&self, lang: &str, m: &UiText) -> String {
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
    fn label(&self, lang: &str, label: &Value) -> String {
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

    fn languages(&self) -> Vec<(&str, &str)> {
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
    fn pick_language(&self, query: Option<&str>, headers: &HeaderMap) -> (String, bool) {
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

/// A strict policy: no scripts at all, styles and images from here only, forms may post
/// here and be redirected only to the return URLs the configuration allows.
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
    for f in ["login", "registration", "settings", "logout", "error"] {
        if let Some(o) = origin(config.after_url(f)) {
            targets.push(o);
        }
        if let Some(o) = origin(config.ui_url(f)) {
            targets.push(o);
        }
    }
    if let Some(o) = origin(config.public_url()) {
        targets.push(o);
    }
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
        .route("/", get(to_welcome))
        .route("/ui", get(to_welcome))
        .route("/ui/", get(to_welcome))
        .route("/ui/{page}", get(flow_page))
        .route("/ui/welcome", get(welcome_page))
        .route("/ui/error", get(error_page))
        .route("/ui/sessions/revoke-others", post(revoke_others))
        .route("/ui/static/style.css", get(style))
        .route("/ui/theme.css", get(theme))
}

/// The security headers of every page.
pub async fn security_headers(State(st): State<AppState>, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, st.ui.csp.clone());
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

async fn to_welcome(State(st): State<AppState>) -> Response {
    see_other(&format!("{}ui/welcome", st.core.public_url()))
}

fn css(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

async fn style() -> Response {
    css(STYLE.to_string())
}

async fn theme(State(st): State<AppState>) -> Response {
    css(st.ui.theme_css.clone())
}

#[derive(Deserialize, Default)]
struct PageQuery {
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
struct Page<'a> {
    st: &'a AppState,
    lang: String,
    remember_lang: bool,
    ctx: Map<String, Value>,
}

impl<'a> Page<'a> {
    fn new(st: &'a AppState, uri: &axum::http::Uri, q: &PageQuery, headers: &HeaderMap) -> Self {
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
                    "href": format!("{}?{}", uri.path(), qs.finish()),
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
            "link.settings",
            "link.logout",
        ]
        .iter()
        .map(|k| (k.to_string(), Value::String(ui.t(&lang, k))))
        .collect();
        let theme = &st.core.config.ui.theme;
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

    fn set(&mut self, key: &str, v: Value) {
        self.ctx.insert(key.into(), v);
    }

    fn render(mut self, template: &str) -> Response {
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
    fn finish(&self, resp: &mut Response) {
        if self.remember_lang {
            if let Some(v) = set_cookie(
                &self.st.core.config,
                LANG_COOKIE,
                Some(&self.lang),
                Some(365 * 24 * 3600),
                "/",
                &self.st.core.config.session.cookie.domain,
                portcullis_core::config::SameSite::Lax,
            ) {
                resp.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }

    fn redirect(self, to: &str) -> Response {
        let mut resp = see_other(to);
        self.finish(&mut resp);
        resp
    }
}

/// The id attribute of a node's input.
fn field_id(name: &str) -> String {
    format!(
        "field-{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    )
}

/// The template's view of a flow: translated messages and one form per node group.
fn flow_view(st: &AppState, lang: &str, flow: &Value, settings: bool) -> (Vec<Value>, Vec<Value>) {
    let ui = &st.ui;
    let msg = |m: &Value| -> Option<Value> {
        let t: UiText = serde_json::from_value(m.clone()).ok()?;
        Some(json!({ "id": t.id, "type": t.kind, "text": ui.message(lang, &t) }))
    };
    let nodes: Vec<Value> = flow["ui"]["nodes"].as_array().cloned().unwrap_or_default();
    let has_password_field = nodes
        .iter()
        .any(|n| n["attributes"]["name"] == "password" && n["attributes"]["type"] == "password");
    // Wrong credentials belong to the password field on this page (Kratos reports them for
    // the whole flow), so they are read out with it and focus lands there.
    let mut moved: Vec<Value> = vec![];
    let mut messages = vec![];
    for m in flow["ui"]["messages"].as_array().into_iter().flatten() {
        if m["id"] == 4000006 && has_password_field {
            moved.extend(msg(m));
        } else {
            messages.extend(msg(m));
        }
    }
    let mut focused = false;
    let mut view_node = |n: &Value| -> Value {
        let a = &n["attributes"];
        let name = a["name"].as_str().unwrap_or_default();
        let ty = a["type"].as_str().unwrap_or("text");
        let id = field_id(name);
        let mut node_msgs: Vec<Value> = n["messages"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(msg)
            .collect();
        if name == "password" && ty == "password" {
            node_msgs.append(&mut moved);
        }
        let invalid = node_msgs.iter().any(|m| m["type"] == "error");
        let describedby = (1..=node_msgs.len())
            .map(|i| format!("{id}-message-{i}"))
            .collect::<Vec<_>>()
            .join(" ");
        let label = ui.label(lang, &n["meta"]["label"]);
        let kind = match (n["type"].as_str().unwrap_or("input"), ty) {
            ("input", "hidden") => "hidden",
            ("input", "submit" | "button") => "submit",
            ("input", "checkbox") => "checkbox",
            ("input", _) => "input",
            ("text", _) => "text",
            ("a", _) => "a",
            ("img", _) => "img",
            _ => "skip",
        };
        // Focus lands on the first field with an error.
        let autofocus = matches!(kind, "input" | "checkbox") && invalid && !focused;
        if autofocus {
            focused = true;
        }
        let value = match &a["value"] {
            Value::Null => Value::Null,
            Value::String(s) => json!(s),
            other => json!(other.to_string()),
        };
        json!({
            "kind": kind,
            "name": name,
            "type": ty,
            "id": id,
            "value": value,
            "checked": a["value"] == true,
            "label": label,
            "required": a["required"] == true,
            "disabled": a["disabled"] == true,
            "autocomplete": a["autocomplete"],
            "pattern": a["pattern"],
            "maxlength": a["maxlength"],
            "messages": node_msgs,
            "invalid": invalid,
            "describedby": describedby,
            "autofocus": autofocus,
            "text": n["attributes"]["text"]["text"],
            "href": a["href"],
            "src": a["src"],
        })
    };
    let mut groups: Vec<String> = vec![];
    for n in &nodes {
        let g = n["group"].as_str().unwrap_or("default").to_string();
        if g != "default" && !groups.contains(&g) {
            groups.push(g);
        }
    }
    if groups.is_empty() {
        groups.push("default".into());
    }
    let mut forms = vec![];
    for g in &groups {
        let members: Vec<Value> = nodes
            .iter()
            .filter(|n| {
                let ng = n["group"].as_str().unwrap_or("default");
                ng == g || ng == "default"
            })
            .map(&mut view_node)
            .collect();
        forms.push(json!({
            "group": g,
            "title": if settings { ui.lookup(lang, &format!("group.{g}")) } else { None },
            "action": flow["ui"]["action"],
            "method": flow["ui"]["method"],
            "nodes": members,
        }));
    }
    // With no error to point at, sign-in and sign-up start at the first field to fill in
    // (settings pages show saved values, so nothing is singled out there).
    if !focused && !settings {
        'outer: for f in forms.iter_mut() {
            for n in f["nodes"].as_array_mut().into_iter().flatten() {
                if n["kind"] == "input" && n["value"].as_str().is_none_or(str::is_empty) {
                    n["autofocus"] = json!(true);
                    break 'outer;
                }
            }
        }
    }
    (messages, forms)
}

fn init_url(st: &AppState, kind: FlowKind, q: &PageQuery) -> String {
    let refresh = kind == FlowKind::Login && crate::public::truthy(&q.refresh);
    st.core
        .browser_flow_url(kind, refresh, q.return_to.as_deref())
}

/// `/ui/login`, `/ui/registration`, `/ui/settings`: a flow's page.
async fn flow_page(
    State(st): State<AppState>,
    Path(segment): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let kind = match crate::browser::flow_kind(&segment) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let page = Page::new(&st, &uri, &q, &headers);
    let Some(id) = q
        .flow
        .as_deref()
        .and_then(|f| uuid::Uuid::parse_str(f).ok())
    else {
        return page.redirect(&init_url(&st, kind, &q));
    };
    let core = &st.core;
    let now = core.now();
    let loaded = match kind {
        FlowKind::Settings => core
            .get_settings_flow(id, &caller, now)
            .await
            .map(|(f, i)| core.flow_response(&f, Some(&i))),
        _ => core
            .load_flow(kind, id, &caller, now)
            .await
            .map(|f| core.flow_response(&f, None)),
    };
    let flow = match loaded {
        Ok(f) => f,
        // No CSRF cookie came back at all (cookies blocked?): starting afresh would only loop.
        Err(e @ Error::Api { code: 403, .. }) if caller.csrf_secret.is_none() => {
            let mut resp = crate::browser::html_error(&st, kind, e).await;
            page.finish(&mut resp);
            return resp;
        }
        // Unknown, expired, or issued to another browser: start afresh.
        Err(Error::Api {
            code: 403 | 404 | 410,
            ..
        }) => return page.redirect(&init_url(&st, kind, &q)),
        Err(e) => {
            let mut resp = crate::browser::html_error(&st, kind, e).await;
            page.finish(&mut resp);
            return resp;
        }
    };
    let lang = page.lang.clone();
    let (messages, forms) = flow_view(&st, &lang, &flow, kind == FlowKind::Settings);
    let ui = &st.ui;
    let refresh = flow["refresh"] == true;
    let title = match kind {
        FlowKind::Login if refresh => ui.t(&lang, "page.login.refresh"),
        FlowKind::Login => ui.t(&lang, "page.login"),
        FlowKind::Registration => ui.t(&lang, "page.registration"),
        FlowKind::Settings => ui.t(&lang, "page.settings"),
    };
    let base = core.public_url();
    let links = match kind {
        FlowKind::Login if refresh => vec![
            json!({ "href": format!("{base}ui/welcome"), "text": ui.t(&lang, "link.welcome") }),
        ],
        FlowKind::Login if core.config.selfservice.flows.registration.enabled => vec![
            json!({ "href": format!("{base}ui/registration"), "text": ui.t(&lang, "link.registration") }),
        ],
        FlowKind::Login => vec![],
        FlowKind::Registration => {
            vec![json!({ "href": format!("{base}ui/login"), "text": ui.t(&lang, "link.login") })]
        }
        FlowKind::Settings => vec![
            json!({ "href": format!("{base}ui/welcome"), "text": ui.t(&lang, "link.welcome") }),
        ],
    };
    let mut page = page;
    page.set("title", json!(title));
    page.set("messages", json!(messages));
    page.set("forms", json!(forms));
    page.set("links", json!(links));
    page.render("flow.html")
}

async fn welcome_page(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let mut page = Page::new(&st, &uri, &q, &headers);
    let core = &st.core;
    let Some((current, identity)) = &caller.session else {
        return page.redirect(&core.browser_flow_url(FlowKind::Login, false, None));
    };
    let now = core.now();
    let query = SessionQuery {
        identity_id: Some(identity.id),
        active: Some(true),
        page_size: 50,
        after: None,
        except: None,
    };
    let sessions = match core.store.list_sessions(&query, now).await {
        Ok(rows) => rows,
        Err(e) => return crate::error::ApiError(e.into()).into_response(),
    };
    let fmt = |t: time::OffsetDateTime| {
        let f = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
        t.to_offset(time::UtcOffset::UTC)
            .format(&f)
            .unwrap_or_default()
    };
    let mut views: Vec<Value> = sessions
        .iter()
        .map(|(s, _)| {
            json!({
                "current": s.id == current.id,
                "authenticated_at": portcullis_core::identity::rfc3339(s.authenticated_at),
                "authenticated_at_text": fmt(s.authenticated_at),
                "expires_at": portcullis_core::identity::rfc3339(s.expires_at),
                "expires_at_text": fmt(s.expires_at),
                "device": s.devices.last().and_then(|d| d.user_agent.clone()),
            })
        })
        .collect();
    views.sort_by_key(|v| v["current"] != true);
    let who = identity
        .traits
        .get("email")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            identity
                .credentials
                .get("password")
                .and_then(|c| c.identifiers.first().cloned())
        })
        .unwrap_or_else(|| identity.id.to_string());
    let mut caller = caller.clone();
    let fresh = crate::browser::ensure_csrf(&mut caller);
    let csrf = caller
        .csrf_secret
        .as_deref()
        .and_then(portcullis_core::csrf::mask)
        .unwrap_or_default();
    let lang = page.lang.clone();
    let mut messages = vec![];
    if let Some(n) = q.revoked {
        messages.push(json!({
            "id": 0, "type": "success",
            "text": st.ui.t(&lang, "welcome.revoked").replace("{count}", &n.to_string()),
        }));
    }
    page.set("title", json!(st.ui.t(&lang, "page.welcome")));
    page.set("messages", json!(messages));
    page.set("who", json!(who));
    page.set("sessions", json!(views));
    page.set("other_sessions", json!(sessions.len().saturating_sub(1)));
    page.set("csrf_token", json!(csrf));
    page.set(
        "logout_url",
        json!(format!(
            "{}self-service/logout?token={}",
            core.public_url(),
            urlencode(&current.logout_token())
        )),
    );
    page.set(
        "settings_url",
        json!(format!("{}ui/settings", core.public_url())),
    );
    let mut resp = page.render("welcome.html");
    if let Some(secret) = fresh {
        if let Some(v) = csrf_cookie(core, &secret) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    resp
}

/// The welcome page's "sign out of all other sessions" button (a CSRF-checked form post).
async fn revoke_others(
    State(st): State<AppState>,
    CallerCtx(caller): CallerCtx,
    body: Bytes,
) -> Response {
    let core = &st.core;
    let form = form_to_json(&body).unwrap_or_default();
    let token = form
        .get("csrf_token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let csrf_ok = caller
        .csrf_secret
        .as_deref()
        .is_some_and(|s| portcullis_core::csrf::verify(s, token));
    if !csrf_ok {
        let e = Error::api(403, Some("security_csrf_violation"), "The request was rejected to protect you from Cross-Site-Request-Forgery (CSRF). Please reload the page and try again.");
        return crate::browser::html_error(&st, FlowKind::Login, e).await;
    }
    let Some((current, identity)) = &caller.session else {
        return see_other(&core.browser_flow_url(FlowKind::Login, false, None));
    };
    match core
        .store
        .revoke_identity_sessions(identity.id, Some(current.id))
        .await
    {
        Ok(n) => see_other(&format!("{}ui/welcome?revoked={n}", core.public_url())),
        Err(e) => crate::error::ApiError(e.into()).into_response(),
    }
}

async fn error_page(
    State(st): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    let mut page = Page::new(&st, &uri, &q, &headers);
    let lang = page.lang.clone();
    let error = match q.id.as_deref() {
        Some(id) => st.core.flow_error(id, st.core.now()).await.ok().map(|e| {
            let mut e = e["error"].clone();
            // A sentence for people, by error id or status, in their language; the
            // server's reason stays below it for support.
            let by_id = e["id"].as_str().map(|i| format!("error.{i}"));
            let by_code = format!("error.{}", e["code"]);
            if let Some(text) = by_id
                .and_then(|k| st.ui.lookup(&lang, &k))
                .or_else(|| st.ui.lookup(&lang, &by_code))
            {
                e["message"] = json!(text);
            }
            e
        }),
        None => None,
    };
    page.set("title", json!(st.ui.t(&lang, "page.error")));
    page.set("error", error.unwrap_or(Value::Null));
    let mut resp = page.render("error.html");
    if q.id.is_none() {
        *resp.status_mut() = StatusCode::NOT_FOUND;
    }
    resp
}
