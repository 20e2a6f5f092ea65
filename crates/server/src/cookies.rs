//! `Set-Cookie` values for the session, CSRF and token cookies.

use axum::http::HeaderValue;
use portcullis_core::config::{Config, SameSite};
use portcullis_core::service::Core;

/// One `Set-Cookie` value: HttpOnly always, `Secure` whenever the public URL is https (which
/// outside dev mode it must be). `value: None` deletes the cookie. `max_age: None` makes a
/// browser-session cookie.
pub fn set_cookie(
    config: &Config,
    name: &str,
    value: Option<&str>,
    max_age: Option<u64>,
    path: &str,
    domain: &str,
    same_site: SameSite,
) -> Option<HeaderValue> {
    let mut s = match (value, max_age) {
        (Some(v), Some(age)) => format!("{name}={v}; Max-Age={age}"),
        (Some(v), None) => format!("{name}={v}"),
        (None, _) => format!("{name}=; Max-Age=0"),
    };
    s += &format!(
        "; Path={}; HttpOnly; SameSite={same_site}",
        if path.is_empty() { "/" } else { path }
    );
    if !domain.is_empty() {
        s += &format!("; Domain={domain}");
    }
    if config.secure_cookies() {
        s += "; Secure";
    }
    HeaderValue::from_str(&s).ok()
}

/// The session cookie carrying `token` (or clearing it), per `session.cookie`.
pub fn session_cookie(core: &Core, token: Option<&str>) -> Option<HeaderValue> {
    let config = core.config();
    let c = &config.session.cookie;
    let max_age = c.persistent.then_some(config.session.lifespan.0.as_secs());
    set_cookie(
        config,
        &c.name,
        token,
        max_age,
        &c.path,
        &c.domain,
        c.same_site,
    )
}

/// The anti-CSRF cookie holding `secret`, on the session cookie's domain but always on `/`
/// (the hosted pages and the self-service endpoints both need it). It lives a year, like
/// nosurf's, so open tabs keep working.
pub fn csrf_cookie(core: &Core, secret: &str) -> Option<HeaderValue> {
    let config = core.config();
    let c = &config.session.cookie;
    set_cookie(
        config,
        config.csrf_cookie_name(),
        Some(secret),
        Some(365 * 24 * 3600),
        "/",
        &c.domain,
        c.same_site,
    )
}
