//! The dev mailbox: `GET /admin/dev/mailbox` on the admin port, in dev mode only (outside it
//! the route does not exist). It lists the newest messages the courier queued, with their
//! recipient, subject, status and plain-text body, so a recovery or verification code can be
//! read with nothing else installed. In dev mode without `courier.smtp.connection_uri` the
//! courier sends nothing and the messages stay queued here.
//!
//! Plain HTML, no JavaScript; every value is escaped, and the page's CSP allows nothing but
//! its inline style.

use crate::error::ApiResult;
use crate::extract::Query;
use crate::AppState;
use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use portcullis_core::courier::{Message, MessageQuery};
use portcullis_core::identity::rfc3339;
use serde::Deserialize;

/// How many messages the page shows.
const NEWEST: u32 = 50;

pub fn router(dev: bool) -> Router<AppState> {
    if dev {
        Router::new().route("/admin/dev/mailbox", get(mailbox))
    } else {
        Router::new()
    }
}

#[derive(Deserialize)]
struct Filter {
    recipient: Option<String>,
}

async fn mailbox(State(st): State<AppState>, Query(f): Query<Filter>) -> ApiResult<Response> {
    let recipient = f.recipient.filter(|r| !r.is_empty());
    let messages = st
        .core
        .courier_messages(&MessageQuery {
            recipient: recipient.clone(),
            page_size: NEWEST,
            ..Default::default()
        })
        .await?;
    let mut resp = Html(page(&messages, recipient.as_deref())).into_response();
    resp.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ),
    );
    Ok(resp)
}

fn page(messages: &[Message], recipient: Option<&str>) -> String {
    let mut s = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Portcullis dev mailbox</title>\n\
         <style>body{font-family:sans-serif;max-width:56rem;margin:2rem auto;padding:0 1rem;color:#1f2328}\
         article{border:1px solid #d0d7de;border-radius:6px;padding:.75rem 1rem;margin:1rem 0}\
         pre{white-space:pre-wrap;background:#f6f8fa;padding:.75rem;border-radius:6px}\
         .meta{color:#59636e;font-size:.9rem}</style></head>\n<body>\n<h1>Dev mailbox</h1>\n\
         <p class=\"meta\">The newest messages the courier queued (dev mode only). Without <code>courier.smtp.connection_uri</code> nothing is sent: read the codes here.</p>\n\
         <form method=\"get\"><label>Recipient <input name=\"recipient\" type=\"email\" value=\"",
    );
    s += &escape(recipient.unwrap_or_default());
    s += "\"></label> <button type=\"submit\">Filter</button></form>\n";
    if messages.is_empty() {
        s += "<p>No messages yet.</p>\n";
    }
    for m in messages {
        s += &format!(
            "<article>\n<h2>{}</h2>\n<p class=\"meta\">To <strong>{}</strong> · {} · {} · {} · {}</p>\n<pre>{}</pre>\n</article>\n",
            escape(&m.subject),
            escape(&m.recipient),
            escape(m.template.as_str()),
            escape(m.status.as_str()),
            escape(&rfc3339(m.created_at)),
            escape(&m.id.to_string()),
            escape(&m.body),
        );
    }
    s += "</body>\n</html>\n";
    s
}

/// HTML escaping for element content and quoted attributes.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn everything_shown_is_escaped() {
        assert_eq!(
            super::escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
    }
}
