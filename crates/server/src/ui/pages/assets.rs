//! The stylesheets: the built-in `style.css` and the operator's theme colours as CSS
//! variables (`ui.theme.colors`), both cacheable for five minutes.

use crate::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use portcullis_core::config::Config;

const STYLE: &str = include_str!("../../../ui/static/style.css");

/// `ui.theme.colors` as `--pc-<name>` custom properties on `:root`.
pub(in crate::ui) fn theme_css(config: &Config) -> String {
    format!(
        ":root {{\n{}}}\n",
        config
            .ui
            .theme
            .colors
            .iter()
            .map(|(k, v)| format!("  --pc-{k}: {v};\n"))
            .collect::<String>()
    )
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

pub(in crate::ui) async fn style() -> Response {
    css(STYLE.to_string())
}

pub(in crate::ui) async fn theme(State(st): State<AppState>) -> Response {
    css(st.ui.theme_css.clone())
}
