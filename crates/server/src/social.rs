//! Social sign-in's own route: the provider's callback. Starting a sign-in is a login or
//! registration submit naming a `provider` (`public.rs`); the provider sends the browser back
//! here, and the browser goes on to where the flow ends: signed in at the return URL, the
//! flow's page (registration completion, or what went wrong), or the error page.

use crate::browser::{self, see_other, with_query, Step};
use crate::extract::{CallerCtx, Query};
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use portcullis_core::flow::{FlowKind, FlowType};
use portcullis_core::methods::oidc::{Callback, Landed};
use portcullis_core::selfservice::SubmitError;
use portcullis_core::service::urlencode;
use portcullis_core::Error;
use serde::Deserialize;

pub fn router(config: &portcullis_core::config::Config) -> Router<AppState> {
    // A provider's form post is a few short fields: a submit's size at most.
    let submit_limit = axum::extract::DefaultBodyLimit::max(
        usize::try_from(config.serve.max_submit_size.0).unwrap_or(usize::MAX),
    );
    Router::new().route(
        "/self-service/methods/oidc/callback/{provider}",
        get(callback).post(form_post).layer(submit_limit),
    )
}

/// The fields a provider's form post carries on to the GET callback, each with the most
/// characters it may have: nothing else is copied into the redirect.
const FORM_POST_FIELDS: [(&str, usize); 5] = [
    ("code", 2048),
    ("state", 2048),
    ("error", 256),
    ("error_description", 1024),
    ("user", 4096),
];

#[derive(Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    /// Apple's, with `form_post`: the user's name on the first authorization.
    #[serde(default)]
    user: Option<String>,
}

/// `GET /self-service/methods/oidc/callback/{provider}`.
async fn callback(
    State(st): State<AppState>,
    Path(provider): Path<String>,
    Query(q): Query<CallbackQuery>,
    CallerCtx(caller): CallerCtx,
) -> Response {
    let core = &st.core;
    let cb = Callback {
        code: q.code,
        state: q.state,
        error: q.error,
        error_description: q.error_description,
        user: q.user,
    };
    match core.oidc_callback(&provider, cb, &caller, core.now()).await {
        Ok(Landed::Authenticated(a, kind)) => browser::authenticated(&st, kind, "oidc", &a, false),
        Ok(Landed::Native(to)) => see_other(&to),
        // A native app's flow goes back to the app, which reads it by id.
        Ok(Landed::Flow(flow)) | Err(SubmitError::FlowInvalid { flow, .. })
            if flow.flow_type == FlowType::Api =>
        {
            let back = flow
                .return_to
                .clone()
                .unwrap_or_else(|| core.config().selfservice.default_browser_return_url.clone());
            see_other(&with_query(&back, "flow", &flow.id.to_string()))
        }
        Ok(Landed::Flow(flow)) | Err(SubmitError::FlowInvalid { flow, .. }) => {
            see_other(&with_query(
                core.config().ui_url(flow.kind),
                "flow",
                &flow.id.to_string(),
            ))
        }
        Err(SubmitError::Refused(e)) => {
            let kind = match &e {
                Error::FlowExpired { kind, .. } => *kind,
                _ => FlowKind::Login,
            };
            browser::html_error(&st, kind, Step::Submit, e.into()).await
        }
    }
}

/// A provider that answers with `response_mode=form_post` (Apple) posts the callback from its
/// own site, so the browser's SameSite cookies stay behind. As Kratos does, the fields go on
/// in the query of a redirect to the GET callback, which the browser makes with its cookies.
async fn form_post(
    State(st): State<AppState>,
    Path(provider): Path<String>,
    body: Bytes,
) -> Response {
    let mut fields = vec![];
    for (name, value) in url::form_urlencoded::parse(&body) {
        let Some((_, max)) = FORM_POST_FIELDS.iter().find(|(f, _)| *f == name) else {
            continue;
        };
        if value.chars().count() > *max || fields.iter().any(|(n, _)| *n == name) {
            return StatusCode::BAD_REQUEST.into_response();
        }
        fields.push((name, value));
    }
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let target = format!(
        "{}self-service/methods/oidc/callback/{}?{query}",
        st.core.public_url(),
        urlencode(&provider)
    );
    match HeaderValue::from_str(&target) {
        Ok(v) => (StatusCode::FOUND, [(header::LOCATION, v)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
