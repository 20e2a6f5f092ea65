//! clerk-js's bundles, which it loads from its own server: `/npm/@clerk/clerk-js@<version>/
//! dist/<file>` and `/npm/@clerk/ui@<version>/dist/<file>`, read from the npm packages in
//! `clerk.frontend.assets_dir` (a `node_modules` directory). The path names a major version
//! (`@6`) or the exact one its chunks ask for; the installed package of that major version
//! answers: `@clerk/<name>`, or the npm alias `@clerk/<name>-<major>` for a second generation
//! next to it (`npm install @clerk/clerk-js-5@npm:@clerk/clerk-js@5`, for apps on
//! `@clerk/clerk-react` 5). The deployment chooses the versions by what it installs, and
//! nothing is fetched at run time.

use crate::AppState;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use std::path::PathBuf;

/// The packages whose `dist/` is served.
const PACKAGES: [&str; 2] = ["clerk-js", "ui"];

/// A file's path below `dist/`: plain names only (no `..`, no hidden files, no backslashes),
/// so nothing outside the package's `dist/` can be named.
fn safe_file(file: &str) -> Option<PathBuf> {
    let mut path = PathBuf::new();
    for part in file.split('/') {
        let plain = !part.is_empty()
            && !part.starts_with('.')
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !plain {
            return None;
        }
        path.push(part);
    }
    Some(path)
}

/// The `version` of an installed package's `package.json`.
async fn installed_version(package: &std::path::Path) -> Option<String> {
    let text = tokio::fs::read(package.join("package.json")).await.ok()?;
    let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
    v.get("version")?.as_str().map(str::to_string)
}

/// The installed package that answers for `name@version`, and its version: `@clerk/<name>`
/// when its major version is the one asked for (or the path names none), else the alias
/// `@clerk/<name>-<major>`.
async fn package_for(dir: &str, name: &str, version: &str) -> Option<(PathBuf, String)> {
    let major = version
        .split('.')
        .next()
        .filter(|m| !m.is_empty() && m.bytes().all(|b| b.is_ascii_digit()));
    let scope = PathBuf::from(dir).join("@clerk");
    let mut candidates = vec![scope.join(name)];
    candidates.extend(major.map(|m| scope.join(format!("{name}-{m}"))));
    for package in candidates {
        let Some(installed) = installed_version(&package).await else {
            continue;
        };
        if major.is_none_or(|m| installed.split('.').next() == Some(m)) {
            return Some((package, installed));
        }
    }
    None
}

fn content_type(file: &str) -> &'static str {
    match file.rsplit('.').next() {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("map" | "json") => "application/json",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

/// `GET /npm/@clerk/{package}@{version}/dist/{*file}`.
pub(super) async fn bundle_file(
    State(st): State<AppState>,
    Path((package, file)): Path<(String, String)>,
) -> Response {
    let dir = &st.core.config().clerk.frontend.assets_dir;
    let (name, version) = package.split_once('@').unwrap_or((package.as_str(), ""));
    let (Some(rel), true, false) = (safe_file(&file), PACKAGES.contains(&name), dir.is_empty())
    else {
        return super::not_found().await;
    };
    let Some((package, installed)) = package_for(dir, name, version).await else {
        return super::not_found().await;
    };
    // A path naming an exact version (a chunk) is cached for good: it must be the installed
    // one, or an upgrade would leave stale code in caches under that name.
    let exact = version.split('.').count() == 3;
    if exact && installed != version {
        return super::not_found().await;
    }
    let Ok(bytes) = tokio::fs::read(package.join("dist").join(rel)).await else {
        return super::not_found().await;
    };
    let cache = if exact {
        "public, max-age=31536000, immutable"
    } else {
        "public, max-age=300"
    };
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, content_type(&file)),
            (header::CACHE_CONTROL, cache),
            // The script tag is `crossorigin="anonymous"`: an app on another origin may load it.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        bytes,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_file;

    #[test]
    fn only_plain_names_below_dist_are_served() {
        assert!(safe_file("clerk.browser.js").is_some());
        assert!(safe_file("chunks/vendors_clerk.browser_a68c22_6.40.0.js").is_some());
        for bad in [
            "../package.json",
            "a/../../x",
            ".env",
            "a//b",
            "",
            "a\\b",
            "%2e%2e/x",
        ] {
            assert!(safe_file(bad).is_none(), "{bad}");
        }
    }
}
