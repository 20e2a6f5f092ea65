//! Keyset paging with Kratos's `page_size`/`page_token` and `Link` headers.

use crate::error::ApiError;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

pub const DEFAULT_PAGE_SIZE: u32 = 250;
pub const MAX_PAGE_SIZE: u32 = 1000;

#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub page_size: Option<String>,
    pub page_token: Option<String>,
}

pub struct Page {
    pub size: u32,
    pub after: Option<Uuid>,
    extra: Vec<(String, String)>,
}

impl Page {
    pub fn from_query(q: &PageQuery) -> Result<Page, ApiError> {
        let size = match q.page_size.as_deref() {
            None | Some("") => DEFAULT_PAGE_SIZE,
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
                _ => {
                    return Err(ApiError::bad_request(format!(
                        "page_size must be a number from 1 to {MAX_PAGE_SIZE}, got {s:?}."
                    )))
                }
            },
        };
        let after = match q.page_token.as_deref() {
            None | Some("") => None,
            Some(t) => Some(decode_token(t).ok_or_else(|| {
                ApiError::bad_request(format!("The page_token {t:?} is invalid."))
            })?),
        };
        Ok(Page {
            size,
            after,
            extra: vec![],
        })
    }

    /// Query parameters to repeat in `Link` URLs (filters).
    pub fn keep(mut self, key: &str, value: Option<&str>) -> Self {
        if let Some(v) = value {
            self.extra.push((key.to_string(), v.to_string()));
        }
        self
    }

    /// A repeated query parameter to repeat in `Link` URLs.
    pub fn keep_all(mut self, key: &str, values: &[String]) -> Self {
        for v in values {
            self.extra.push((key.to_string(), v.clone()));
        }
        self
    }

    /// Responds with at most `size` items (the query fetched `size + 1` to learn whether a next page exists).
    pub fn respond(
        &self,
        base_url: &str,
        path: &str,
        mut items: Vec<Value>,
        ids: Vec<Uuid>,
    ) -> Response {
        let has_next = items.len() > self.size as usize;
        items.truncate(self.size as usize);
        let mut link = format!("<{}>; rel=\"first\"", self.url(base_url, path, None));
        if has_next {
            if let Some(last) = ids.get(self.size as usize - 1) {
                link += &format!(
                    ", <{}>; rel=\"next\"",
                    self.url(base_url, path, Some(*last))
                );
            }
        }
        let mut resp = Json(Value::Array(items)).into_response();
        if let Ok(v) = HeaderValue::from_str(&link) {
            resp.headers_mut().insert("link", v);
        }
        resp
    }

    fn url(&self, base_url: &str, path: &str, after: Option<Uuid>) -> String {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        ser.append_pair("page_size", &self.size.to_string());
        if let Some(a) = after {
            ser.append_pair("page_token", &encode_token(a));
        }
        for (k, v) in &self.extra {
            ser.append_pair(k, v);
        }
        format!("{base_url}{path}?{}", ser.finish())
    }
}

fn encode_token(id: Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

fn decode_token(t: &str) -> Option<Uuid> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .ok()?;
    Uuid::from_slice(&bytes).ok()
}
