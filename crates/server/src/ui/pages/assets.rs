//! The stylesheets (the built-in `style.css` and the operator's theme colours as CSS
//! variables, `ui.theme.colors`) and the social sign-in providers' icons, all cacheable for
//! five minutes.

use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::config::Config;

const STYLE: &str = include_str!("../../../ui/static/style.css");

/// Each provider kind's mark on its buttons (drawn for Portcullis); `generic` for the kinds
/// without one of their own.
const ICONS: [(&str, &str); 6] = [
    (
        "google",
        include_str!("../../../ui/static/icons/google.svg"),
    ),
    (
        "github",
        include_str!("../../../ui/static/icons/github.svg"),
    ),
    ("apple", include_str!("../../../ui/static/icons/apple.svg")),
    ("kakao", include_str!("../../../ui/static/icons/kakao.svg")),
    ("naver", include_str!("../../../ui/static/icons/naver.svg")),
    (
        "generic",
        include_str!("../../../ui/static/icons/generic.svg"),
    ),
];

/// The icon a provider kind's buttons show.
pub(in crate::ui) fn icon_for(kind: &str) -> &'static str {
    ICONS
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or("generic", |(k, _)| *k)
}

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

/// `GET /ui/static/icons/{name}.svg`.
pub(in crate::ui) async fn icon(Path(file): Path<String>) -> Response {
    let found = file
        .strip_suffix(".svg")
        .and_then(|name| ICONS.iter().find(|(k, _)| *k == name));
    match found {
        Some((_, svg)) => (
            [
                (header::CONTENT_TYPE, "image/svg+xml"),
                (header::CACHE_CONTROL, "public, max-age=300"),
            ],
            *svg,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(in crate::ui) async fn theme(State(st): State<AppState>) -> Response {
    css(st.ui.theme_css.clone())
}
